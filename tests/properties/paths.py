"""Each lead's path through each flow, as the simulator and as the runtime record it, in one
shape: (time, step, what) per decision, `what` in the simulator's words. Paths are kept per lead
and flow: when one flow moves a lead into another, the two drivers log the two flows' lines of
that moment in different orders, each flow's own lines in the same order."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select, text

from flowbuilder.runtime.replay import replay
from flowbuilder.simulate import Lead, simulate
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import DecisionRow
from tests.properties.scenarios import DAYS, T0, Scenario
from tests.store.driver import publish_text

Path = list[tuple[str, str | None, str]]


def _add(path: Path, line: tuple[str, str | None, str]) -> None:
    """Append the line, unless it says the lead still holds (`wait`): when a holding enrollment
    is looked at again depends on which facts wake it — the runtime wakes a lead's enrollments for
    every event it stores, its own `goal.reached` and `list.left` included — and changes nothing
    on the path. What the lead does and when (enter, send, advance, list, goal, leave …) is
    compared line by line; a different answer from a look at a different moment would show there.

    A refused entry (`skip`, by the entry policy) is no step of the path the lead is on: it goes
    last among the lines of its moment, where the simulator and the runtime log it in different
    orders relative to the lead's other enrollment being looked at."""
    if line[2] == "wait":
        return
    at = len(path)
    if line[2] != "skip":
        while at and path[at - 1][2] == "skip" and path[at - 1][0] == line[0]:
            at -= 1
    if at and path[at - 1] == line:
        return
    path.insert(at, line)


# The runtime's `leave` decision carries the status; the simulator names it.
LEFT = {"completed": "complete", "exited": "exit", "moved": "move"}
# The simulator's trace names a webhook call by its decision class.
SIMULATOR_WORDS = {"callwebhook": "webhook"}


Paths = dict[tuple[int, str], Path]  # (lead index, flow) → path


def simulated(s: Scenario, ids: list[int]) -> Paths:
    """Paths by lead index and flow; `ids` are the leads' ids (a `split` draws from them)."""
    leads = [Lead(str(i), {"email": email}) for i, email in zip(ids, s.emails(), strict=True)]
    events = [e.for_simulator(str(ids[e.lead])) for e in s.events]
    result = simulate(s.ws, leads, events, T0, DAYS)
    index = {str(i): n for n, i in enumerate(ids)}
    paths: Paths = {}
    for t in result.trace:
        if t.flow in s.ws.flows:
            line = (f"{t.at:%Y-%m-%d %H:%M:%S}", t.step, SIMULATOR_WORDS.get(t.what, t.what))
            _add(paths.setdefault((index[t.lead], t.flow), []), line)
    return paths


def add_leads(engine: Engine, s: Scenario) -> list[int]:
    """Store the scenario's leads, in order; returns their ids."""
    from flowbuilder.intake import LeadIn

    with engine.begin() as conn:
        upsert_leads(conn, [LeadIn(email) for email in s.emails()], T0)
        found = dict(conn.execute(text("SELECT email, id FROM leads")).all())
    return [int(found[email]) for email in s.emails()]


def run(engine: Engine, s: Scenario) -> tuple[list[int], Paths]:
    """Publish, add the leads, replay the timeline on the runtime; (lead ids, paths by index)."""
    publish_text(engine, s.text, T0 - timedelta(days=1))
    ids = add_leads(engine, s)
    emails = s.emails()
    replay(engine, T0, T0 + timedelta(days=DAYS), [e.for_runtime(emails[e.lead]) for e in s.events])
    index = {i: n for n, i in enumerate(ids)}
    paths: Paths = {}
    d = DecisionRow
    with reading(engine) as conn:
        rows = conn.execute(
            select(d.at, d.lead_id, d.flow, d.step, d.kind, d.data)
            .where(d.flow.in_(sorted(s.ws.flows)))
            .order_by(d.id)
        ).all()
    for at, lead_id, flow, step, kind, data in rows:
        what = LEFT.get(str((data or {}).get("status")), kind) if kind == "leave" else kind
        line = (f"{at:%Y-%m-%d %H:%M:%S}", step, what)
        _add(paths.setdefault((index[int(lead_id)], flow), []), line)
    return ids, paths


def difference(scenario: Scenario, got: Paths, expected: Paths) -> str:
    """The flow, the timeline and a line diff of the paths, for a failing example."""
    import difflib

    def lines(paths: Paths) -> list[str]:
        return [
            f"lead {n} {flow}: {at} {step} {what}"
            for (n, flow), p in sorted(paths.items())
            for at, step, what in p
        ]

    timeline = [
        f"  {e.at:%Y-%m-%d %H:%M:%S} lead {e.lead} {e.type} {e.step or ''}" for e in scenario.events
    ]
    diff = difflib.unified_diff(lines(expected), lines(got), "simulator", "runtime", lineterm="")
    return "\n".join([scenario.text, "timeline:", *timeline, *diff])
