"""The path one lead takes through a flow, on the simulator: for a real lead replayed from its
recorded facts, or for a case of the flow's tests. The editor draws it on the canvas.

Engine-written events (sends, goals, moves, stage and list changes) are left out of a real lead's
replay: the simulator makes them itself, from the flow being edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder import flowtest
from flowbuilder.engine.facts import ENGINE_EVENTS, Event
from flowbuilder.scenario import ScenarioError
from flowbuilder.simulate import Lead as SimLead
from flowbuilder.simulate import Simulation, TraceLine
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead, Membership

DAYS = 30


class PathError(ValueError):
    """The path cannot be simulated; the message says why."""


@dataclass
class Visit:
    at: datetime
    step: str | None
    what: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "step": self.step,
            "what": self.what,
            "reason": self.reason,
        }


@dataclass
class LeadPath:
    flow: str
    who: str
    start: datetime
    visits: list[Visit] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (from, to) in order
    problems: list[str] = field(default_factory=list)  # a test case's failed expectations

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "who": self.who,
            "start": self.start.isoformat(),
            "visits": [v.as_json() for v in self.visits],
            "steps": sorted({v.step for v in self.visits if v.step}),
            "edges": [list(e) for e in self.edges],
            "problems": self.problems,
        }


def _path(flow: str, who: str, start: datetime, trace: list[TraceLine], lead: str) -> LeadPath:
    path = LeadPath(flow, who, start)
    for t in trace:
        if t.lead != lead or t.flow != flow:
            continue
        path.visits.append(Visit(t.at, t.step, t.what, t.reason))
        if t.what == "advance" and t.step and t.reason.startswith("→ "):
            path.edges.append((t.step, t.reason[2:].split(":")[0].strip()))
    return path


def for_lead(
    conn: Connection, ws: ir.Workspace, flow: str, lead_id: int, now: datetime
) -> LeadPath:
    """Replay a stored lead's own facts through the workspace, from its first event."""
    if flow not in ws.flows:
        raise PathError(f"there is no flow '{flow}' in the workspace")
    lead = conn.execute(select(Lead).where(Lead.id == lead_id)).first()
    if lead is None:
        raise PathError(f"there is no lead {lead_id}")
    rows = conn.execute(
        select(EventRow)
        .where(EventRow.lead_id == lead_id, EventRow.type.not_in(sorted(ENGINE_EVENTS)))
        .order_by(EventRow.at, EventRow.id)
    ).all()
    events = [
        (
            "lead",
            Event(r.type, r.at, r.properties or {}, flow=r.flow, step=r.step, machine=r.machine),
        )
        for r in rows
    ]
    start = min([e.at for _, e in events] + [lead.created_at]) - timedelta(minutes=1)
    lists = frozenset(
        conn.execute(select(Membership.list_name).where(Membership.lead_id == lead_id)).scalars()
    )
    entered = [
        ("lead", Event("list.entered", start + timedelta(seconds=30), {"list": name}))
        for name in sorted(lists)
    ]
    sim_lead = SimLead(
        "lead",
        {**(lead.attributes or {}), "email": lead.email},
        lead.timezone,
        lists,
        lead.stage,
    )
    sim = Simulation(ws, [sim_lead], start)
    sim.add_events([*entered, *events])
    end = min(now, start + timedelta(days=DAYS)) if now > start else start + timedelta(days=DAYS)
    result = sim.run(end)
    return _path(flow, lead.email, start, result.trace, "lead")


@dataclass(frozen=True)
class Fixture:
    id: str  # file name and case number, as the editor names it
    name: str
    file: str


def fixtures(folder: Path | None, flow: str) -> list[Fixture]:
    """The cases of the flow's tests (`tests/*.test.toml` in the workspace folder)."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    for file in flowtest.find_test_files([folder]):
        try:
            cases = flowtest.load(file)
        except ScenarioError:
            continue
        out += [
            Fixture(f"{file.name}#{n}", c.name, str(file))
            for n, c in enumerate(cases, 1)
            if c.flow == flow
        ]
    return out


def for_fixture(folder: Path | None, ws: ir.Workspace, flow: str, fixture_id: str) -> LeadPath:
    """Run one test case of the flow and report the path with the case's failed expectations."""
    _, _, number = fixture_id.partition("#")
    match = [f for f in fixtures(folder, flow) if f.id == fixture_id]
    if not match or not number.isdigit():
        raise PathError(f"there is no test case '{fixture_id}' for flow '{flow}'")
    cases = flowtest.load(Path(match[0].file))
    case = cases[int(number) - 1]
    try:
        outcome = flowtest.run_case(case, ws)
    except ScenarioError as e:
        raise PathError(str(e)) from None
    path = _path(flow, case.name, case.start, outcome.trace, flowtest.LEAD)
    path.problems = outcome.problems
    return path
