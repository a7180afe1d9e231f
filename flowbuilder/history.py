"""A flow's published versions, and what changed between two of them — or between the newest one
and the draft: the text diff, and the outcome diff of the simulator replaying the same demo
population through both (who gets which email, who ends where, who reaches a goal).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder import demo
from flowbuilder.engine.facts import Event
from flowbuilder.simdiff import Diff, compare
from flowbuilder.simulate import Lead as SimLead
from flowbuilder.simulate import Reaction, simulate
from flowbuilder.store.schema import FlowVersion

POPULATION = 120
DAYS = 28
SEED = 11


def _chance(*parts: str) -> float:
    """A stable number in [0, 1) per lead, step and reaction."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Version:
    number: int
    published_at: datetime
    hash: str
    text: str
    flow: ir.Flow


def versions(conn: Connection, flow: str) -> list[Version]:
    """Every published version of a flow, newest first."""
    return [
        Version(r.version, r.published_at, r.hash, r.text, ir.Flow.model_validate(r.ir))
        for r in conn.execute(
            select(FlowVersion).where(FlowVersion.flow == flow).order_by(FlowVersion.version.desc())
        ).all()
    ]


@dataclass(frozen=True)
class Line:
    kind: str  # " " same, "-" removed, "+" added, "@" a hunk header
    text: str
    old: int | None
    new: int | None


def text_diff(old: str, new: str, context: int = 3) -> list[Line]:
    """A unified diff as numbered lines, for display."""
    out: list[Line] = []
    a, b = old.splitlines(), new.splitlines()
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        out.append(
            Line("@", f"lines {first[1] + 1}–{last[2]} → {first[3] + 1}–{last[4]}", None, None)
        )
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [Line(" ", a[i], i + 1, j1 + i - i1 + 1) for i in range(i1, i2)]
                continue
            out += [Line("-", a[i], i + 1, None) for i in range(i1, i2)]
            out += [Line("+", b[j], None, j + 1) for j in range(j1, j2)]
    return out


def population(
    ws: ir.Workspace, start: datetime
) -> tuple[list[SimLead], list[tuple[str, Event]], list[Reaction]]:
    """The demo population as the simulator takes it, with reactions to every send step of the
    workspace drawn from the demo's odds (the same seed gives the same people and reactions)."""
    built = demo.build(POPULATION, start, DAYS, SEED)
    leads = [
        SimLead(
            lead.email,
            {**lead.attributes, "email": lead.email},
            lead.timezone,
            frozenset({"cold_prospects_kr"}) if lead.email in built.cold else frozenset(),
        )
        for lead in built.leads
    ]
    events = [(e.email or "", Event(e.type, e.at or start, e.properties)) for e in built.events]
    events += [
        (email, Event("list.entered", start, {"list": "cold_prospects_kr"})) for email in built.cold
    ]
    reactions: list[Reaction] = []
    for flow in ws.flows.values():
        odds = demo.ODDS.get(flow.name, demo.Odds())
        sends = [s.name for s in flow.steps.values() if isinstance(s, ir.Send)]
        for lead in leads:
            for step in sends:
                key = f"{lead.id}/{flow.name}/{step}"
                if _chance(key, "open") >= odds.open:
                    continue
                reactions.append(Reaction(lead.id, step, "open", timedelta(hours=2), flow.name))
                if _chance(key, "reply") < odds.reply:
                    reactions.append(
                        Reaction(lead.id, step, "reply", timedelta(hours=3), flow.name)
                    )
                if _chance(key, "click") < odds.click:
                    reactions.append(
                        Reaction(lead.id, step, "click", timedelta(hours=2, minutes=5), flow.name)
                    )
    return leads, events, reactions


@dataclass
class OutcomeDiff:
    diff: Diff
    leads: int
    days: int
    sends_before: int
    sends_after: int


def outcome_diff(
    ws: ir.Workspace, old: ir.Flow | None, new: ir.Flow | None, start: datetime
) -> OutcomeDiff:
    """Replay the demo population through the workspace with `old`, then with `new`, in place of
    the flow of that name (None: without it), and compare what happened."""
    either = new or old
    name = either.name if either is not None else ""

    def with_flow(flow: ir.Flow | None) -> ir.Workspace:
        flows = {k: v for k, v in ws.flows.items() if k != name}
        if flow is not None:
            flows[name] = flow
        return ws.model_copy(update={"flows": flows})

    leads, events, reactions = population(ws, start)
    before = simulate(with_flow(old), leads, events, start, DAYS, reactions)
    after = simulate(with_flow(new), leads, events, start, DAYS, reactions)
    return OutcomeDiff(
        compare(before, after),
        len(leads),
        DAYS,
        sum(1 for t in before.sends() if t.flow == name),
        sum(1 for t in after.sends() if t.flow == name),
    )
