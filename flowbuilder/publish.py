"""Publishing: a new version of each changed flow, and an explicit answer for every lead in flight.

A lead at a step that still exists continues there; a lead at a step the new version renames or
removes goes where the flow's `migrate` block says (a step, or `exit`); without a mapping it exits
with the reason recorded. `plan` computes all of this without writing, for `publish --dry-run`.
A workspace with errors is never published, nor one whose template files are missing or do not
compile; the template files are stored with the publication (`flowbuilder.mail.snapshot`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection

from dsl import ir
from dsl.compile import Compilation
from dsl.diagnostics import Diagnostic, Severity
from flowbuilder.mail.snapshot import take_snapshot
from flowbuilder.store.published import current
from flowbuilder.store.schema import DecisionRow, EnrollmentRow, FlowVersion, Publication

Status = Literal["new", "changed", "unchanged", "removed"]


class PublishRefused(Exception):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} error(s); nothing was published")
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Move:
    """`count` leads at `step` go to `to` (None: they exit) because of `why`."""

    step: str | None
    to: str | None
    count: int
    why: str


@dataclass
class FlowChange:
    flow: str
    status: Status
    old_version: int | None
    new_version: int | None
    changed_steps: list[str] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return sum(m.count for m in self.moves)


@dataclass
class Plan:
    changes: list[FlowChange]
    workspace_changed: bool

    @property
    def anything(self) -> bool:
        return self.workspace_changed or any(c.status != "unchanged" for c in self.changes)


def _destination(new: ir.Flow, step: str | None) -> tuple[str | None, str]:
    if step is not None and step in new.steps:
        return step, "same step"
    if step in new.migrate:
        to = new.migrate[step]
        return to, f"migrate {step} -> {to or 'exit'}"
    return None, f"step `{step}` is not in the new version and `migrate` does not map it"


def _changed_steps(old: ir.Flow | None, new: ir.Flow | None) -> list[str]:
    old_steps = old.steps if old else {}
    new_steps = new.steps if new else {}
    names = sorted(set(old_steps) | set(new_steps))
    return [
        n
        for n in names
        if n not in old_steps
        or n not in new_steps
        or ir.content_hash(old_steps[n]) != ir.content_hash(new_steps[n])
    ]


def plan(conn: Connection, ws: ir.Workspace) -> Plan:
    published = current(conn)
    old_ws = published.ws if published else None
    changes: list[FlowChange] = []
    names = sorted(set(ws.flows) | set(old_ws.flows if old_ws else {}))
    for name in names:
        new = ws.flows.get(name)
        old = old_ws.flows.get(name) if old_ws else None
        old_version = published.versions.get(name, (0, None))[1] if published else None
        if old is None and new is not None:
            changes.append(FlowChange(name, "new", None, 1))
            continue
        assert old is not None
        if new is not None and published and published.hashes.get(name) == new.content_hash():
            changes.append(FlowChange(name, "unchanged", old_version, None))
            continue
        counts = Counter(
            step
            for (step,) in conn.execute(
                select(EnrollmentRow.step).where(
                    EnrollmentRow.flow == name, EnrollmentRow.status == "active"
                )
            )
        )
        moves = []
        for step, count in sorted(counts.items(), key=lambda kv: str(kv[0])):
            if new is None:
                moves.append(Move(step, None, count, "the flow is no longer published"))
            else:
                to, why = _destination(new, step)
                moves.append(Move(step, to, count, why))
        status: Status = "removed" if new is None else "changed"
        new_version = None if new is None else (old_version or 0) + 1
        changes.append(
            FlowChange(name, status, old_version, new_version, _changed_steps(old, new), moves)
        )
    workspace_changed = published is None or _shared_hash(old_ws) != _shared_hash(ws)
    return Plan(changes, workspace_changed)


def _shared_hash(ws: ir.Workspace | None) -> str | None:
    """The hash of everything but the flows (settings, segments, templates, policy …)."""
    if ws is None:
        return None
    return ws.model_copy(update={"flows": {}}).content_hash()


def errors_of(compilation: Compilation, findings: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in [*compilation.diagnostics, *findings] if d.severity == Severity.ERROR]


def publish(
    engine: Engine,
    compilation: Compilation,
    findings: list[Diagnostic],
    now: datetime,
    *,
    dry_run: bool = False,
) -> Plan:
    """Store a new version of every new or changed flow and migrate the leads in flight."""
    problems = errors_of(compilation, findings)
    if problems or compilation.workspace is None:
        raise PublishRefused(problems)
    templates = take_snapshot(compilation)  # the template files go with the publication
    if templates.diagnostics:
        raise PublishRefused(templates.diagnostics)
    ws = compilation.workspace
    with engine.begin() as conn:
        the_plan = plan(conn, ws)
        if templates.changed(conn):
            the_plan.workspace_changed = True
        if dry_run or not the_plan.anything:
            conn.rollback()
            return the_plan
        publication_id = conn.execute(
            insert(Publication)
            .values(
                workspace_ir=ws.model_dump(mode="json"), hash=ws.content_hash(), published_at=now
            )
            .returning(Publication.id)
        ).scalar_one()
        templates.store(conn, publication_id)
        for change in the_plan.changes:
            flow = ws.flows.get(change.flow)
            if flow is not None and change.new_version is not None:
                version_id = conn.execute(
                    insert(FlowVersion)
                    .values(
                        flow=flow.name,
                        version=change.new_version,
                        publication_id=publication_id,
                        text=_text(compilation, flow.path),
                        path=flow.path,
                        ir=flow.model_dump(mode="json"),
                        hash=flow.content_hash(),
                        published_at=now,
                    )
                    .returning(FlowVersion.id)
                ).scalar_one()
                _migrate(conn, change, version_id, now)
            elif change.status == "removed":
                _migrate(conn, change, None, now)
    return the_plan


def _text(compilation: Compilation, path: str) -> str:
    parsed = compilation.files.get(path)
    if parsed is not None:
        return parsed.text
    return Path(path).read_text(encoding="utf-8") if path and Path(path).exists() else ""


def _migrate(conn: Connection, change: FlowChange, version_id: int | None, now: datetime) -> None:
    active = (EnrollmentRow.flow == change.flow) & (EnrollmentRow.status == "active")
    for move in change.moves:
        at_step = active & (
            EnrollmentRow.step.is_(None) if move.step is None else EnrollmentRow.step == move.step
        )
        rows = conn.execute(select(EnrollmentRow.id, EnrollmentRow.lead_id).where(at_step)).all()
        if not rows:
            continue
        reason = f"published version {change.new_version}: {move.why}"
        if move.to is None or version_id is None:
            values: dict[str, object] = {
                "status": "exited",
                "due_at": None,
                "waiting_for_facts": False,
                "updated_at": now,
            }
            kind = "leave"
        elif move.to == move.step:
            values = {"version_id": version_id, "due_at": now, "updated_at": now}
            kind = "migrate"
        else:
            values = {
                "version_id": version_id,
                "step": move.to,
                "step_entered_at": now,
                "due_at": now,
                "waiting_for_facts": False,
                "updated_at": now,
            }
            kind = "migrate"
        conn.execute(update(EnrollmentRow).where(at_step).values(**values))
        conn.execute(
            insert(DecisionRow),
            [
                {
                    "enrollment_id": r.id,
                    "lead_id": r.lead_id,
                    "flow": change.flow,
                    "step": move.step,
                    "kind": kind,
                    "reason": reason,
                    "data": {"to": move.to},
                    "at": now,
                }
                for r in rows
            ],
        )
    if version_id is not None:
        conn.execute(
            update(EnrollmentRow).where(active).values(version_id=version_id, updated_at=now)
        )
