"""Flow tests: "given this lead and these events, expect these sends and this ending", in TOML
files kept next to the flows (`tests/*.test.toml`), run by `flowbuilder test` and by pytest.

```toml
flow = "welcome"                      # the flow under test; the whole workspace runs
start = 2026-03-02T09:00:00Z          # optional (this Monday 09:00 UTC is the default)

[[case]]
name = "a sign-up who never clicks gets three emails"
days = 30                             # how long to simulate (default 30)
lead = { timezone = "Asia/Seoul", first_name = "지민" }   # attributes; timezone, stage, lists
events = [{ at = "0h", type = "signed_up" }]              # `at`: offset from start, or ISO time
reactions = [{ step = "guide", type = "click", after = "2h" }]  # to the email of a step

[case.expect]
sends = ["welcome@0h", "guide@1d", "story"]   # this flow's sends in order; `@offset` pins the time
end = "completed"                     # completed / exited / moved / active (still in the flow)
reason = "not activated"              # a part of the ending's reason
goals = ["activated"]                 # goals reached, in any order (`[]`: none)
stage = "sql"                         # the lead's stage at the end
entered = ["sales_follow_up"]         # other flows the lead entered
lists = ["newsletter"]                # lists the lead is on at the end
off_lists = ["product_a"]             # lists the lead is not on at the end
suppressed = true                     # whether the address ends on the suppression list
```
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dsl import ir
from flowbuilder.scenario import ScenarioError, event_from, lead_from, offset, reaction_from
from flowbuilder.simulate import Result, Simulation, TraceLine

DEFAULT_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
LEAD = "lead"
ENDINGS = {"completed", "exited", "moved", "active"}
_CASE_KEYS = {"name", "days", "lead", "events", "reactions", "expect"}
_EXPECT_KEYS = {
    "sends",
    "end",
    "reason",
    "goals",
    "stage",
    "entered",
    "lists",
    "off_lists",
    "suppressed",
}
_ENDING_OF = {"complete": "completed", "exit": "exited", "move": "moved"}


@dataclass(frozen=True)
class Send:
    step: str
    at: timedelta | None = None

    def __str__(self) -> str:
        return self.step if self.at is None else f"{self.step}@{_offset_text(self.at)}"


@dataclass
class Case:
    file: Path
    line: int
    name: str
    flow: str
    start: datetime
    days: int
    lead: Mapping[str, Any]
    events: list[Mapping[str, Any]]
    reactions: list[Mapping[str, Any]]
    expect: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Outcome:
    case: Case
    problems: list[str] = field(default_factory=list)
    trace: list[TraceLine] = field(default_factory=list)
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (flow, from step, to step)

    @property
    def passed(self) -> bool:
        return not self.problems


def _offset_text(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts) or "0h"


def _line_of(text: str, name: str, fallback: int) -> int:
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(r"\s*name\s*=", line) and name in line:
            return n
    return fallback


def load(path: Path) -> list[Case]:
    """The cases of one test file; ScenarioError names the file and line of any problem."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"line (\d+)", str(e))
        raise ScenarioError(f"{path}:{at.group(1) if at else 1}", f"not TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), f"cannot read: {e}") from None
    unknown = set(data) - {"flow", "start", "days", "case"}
    if unknown:
        raise ScenarioError(f"{path}:1", f"unknown key(s) {', '.join(sorted(unknown))}")
    flow = data.get("flow")
    if not isinstance(flow, str):
        raise ScenarioError(f"{path}:1", 'name the flow under test: flow = "welcome"')
    start = data.get("start", DEFAULT_START)
    if not isinstance(start, datetime):
        raise ScenarioError(f"{path}:1", "`start` is a TOML date-time such as 2026-03-02T09:00:00Z")
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    cases = []
    for n, raw in enumerate(data.get("case", []), 1):
        name = str(raw.get("name") or f"case {n}")
        line = _line_of(text, name, 1)
        where = f"{path}:{line}"
        bad = set(raw) - _CASE_KEYS
        if bad:
            raise ScenarioError(where, f"case `{name}`: unknown key(s) {', '.join(sorted(bad))}")
        expect = raw.get("expect", {})
        bad = set(expect) - _EXPECT_KEYS
        if bad:
            raise ScenarioError(
                where, f"case `{name}`: unknown expectation(s) {', '.join(sorted(bad))}"
            )
        if "end" in expect and expect["end"] not in ENDINGS:
            raise ScenarioError(
                where, f"case `{name}`: `end` is one of {', '.join(sorted(ENDINGS))}"
            )
        cases.append(
            Case(
                path,
                line,
                name,
                flow,
                start,
                int(raw.get("days", data.get("days", 30))),
                raw.get("lead", {}),
                list(raw.get("events", [])),
                list(raw.get("reactions", [])),
                expect,
            )
        )
    return cases


def _send(entry: str, where: str) -> Send:
    step, _, at = entry.partition("@")
    try:
        return Send(step.strip(), offset(at) if at else None)
    except ValueError as e:
        raise ScenarioError(where, str(e)) from None


def check_references(case: Case, ws: ir.Workspace) -> None:
    """Names in the case that the workspace does not know are mistakes in the test."""
    flow = ws.flows.get(case.flow)
    if flow is None:
        raise ScenarioError(
            case.where, f"no flow `{case.flow}`; known: {', '.join(sorted(ws.flows))}"
        )
    steps = {(f.name, s) for f in ws.flows.values() for s in f.steps}
    for entry in case.expect.get("sends", []):
        step = _send(str(entry), case.where).step
        if (case.flow, step) not in steps:
            raise ScenarioError(
                case.where, f"case `{case.name}`: flow `{case.flow}` has no step `{step}`"
            )
    for r in case.reactions:
        target = r.get("flow", case.flow)
        if (target, r.get("step")) not in steps:
            raise ScenarioError(
                case.where,
                f"case `{case.name}`: reaction to unknown step `{target}.{r.get('step')}`",
            )
    for other in case.expect.get("entered", []):
        if other not in ws.flows:
            raise ScenarioError(case.where, f"case `{case.name}`: no flow `{other}`")


def run_case(case: Case, ws: ir.Workspace) -> Outcome:
    check_references(case, ws)
    lead = lead_from({"id": LEAD, **case.lead}, case.where)
    events = [event_from({"lead": lead.id, **e}, case.start, case.where) for e in case.events]
    reactions = [reaction_from({"lead": lead.id, **r}, case.where) for r in case.reactions]
    sim = Simulation(ws, [lead], case.start)
    sim.add_events(events)
    sim.add_reactions(reactions)
    result = sim.run(case.start + timedelta(days=case.days))
    outcome = Outcome(case, trace=result.trace, edges=edges(result))
    outcome.problems = _compare(case, result, sim, lead.id)
    return outcome


HOLDOUT = "(holdout)"


def edges(result: Result) -> set[tuple[str, str, str]]:
    """Every (flow, from, to) a lead moved along; a split's holdout counts as the edge to
    `(holdout)`."""
    taken = set()
    for t in result.trace:
        if t.what == "advance" and t.step and t.reason.startswith("→ "):
            taken.add((t.flow, t.step, t.reason[2:].split(":")[0]))
        elif t.what == "exit" and t.step and "holdout" in t.reason:
            taken.add((t.flow, t.step, HOLDOUT))
    return taken


def flow_edges(flow: ir.Flow) -> set[tuple[str, str, str]]:
    """Every edge of a flow's graph: each step to each step it can lead to, and each holdout."""
    out = set()
    for step in flow.steps.values():
        for target in ir.successors(step):
            out.add((flow.name, step.name, target))
        if isinstance(step, ir.Split) and step.holdout:
            out.add((flow.name, step.name, HOLDOUT))
    return out


def untested_edges(
    ws: ir.Workspace, flows: Iterable[str], outcomes: Iterable[Outcome]
) -> dict[str, list[tuple[str, str]]]:
    """Per flow, the (from, to) edges no case took: the branches its tests leave unproven."""
    taken: set[tuple[str, str, str]] = set()
    for outcome in outcomes:
        taken |= outcome.edges
    missing: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(set(flows)):
        left = sorted((a, b) for f, a, b in flow_edges(ws.flows[name]) - taken)
        if left:
            missing[name] = left
    return missing


def _compare(case: Case, result: Result, sim: Simulation, lead_id: str) -> list[str]:
    expect = case.expect
    problems: list[str] = []
    mine = [t for t in result.trace if t.flow == case.flow]
    if "sends" in expect:
        wanted = [_send(str(e), case.where) for e in expect["sends"]]
        got = [Send(str(t.step), t.at - case.start) for t in mine if t.what == "send"]
        steps_ok = [w.step for w in wanted] == [g.step for g in got]
        times_ok = steps_ok and all(
            w.at is None or w.at == g.at for w, g in zip(wanted, got, strict=True)
        )
        if not (steps_ok and times_ok):
            shown = [
                str(g) if w.at is not None else g.step for w, g in zip(wanted, got, strict=False)
            ]
            shown += [str(g) for g in got[len(wanted) :]]
            problems.append(f"sends: expected {[str(w) for w in wanted]}, got {shown}")
    endings = [t for t in mine if t.what in _ENDING_OF]
    if "end" in expect:
        status = _ENDING_OF[endings[-1].what] if endings else "active"
        if status != expect["end"]:
            why = f" ({endings[-1].reason})" if endings else ""
            problems.append(f"end: expected {expect['end']}, got {status}{why}")
    if "reason" in expect:
        reason = endings[-1].reason if endings else ""
        if str(expect["reason"]) not in reason:
            problems.append(
                f"reason: expected a reason containing `{expect['reason']}`, got `{reason or 'none: still in the flow'}`"
            )
    if "goals" in expect:
        got_goals = sorted(
            {t.reason.split(":")[0].removeprefix("goal ") for t in mine if t.what == "goal"}
        )
        if got_goals != sorted(expect["goals"]):
            problems.append(f"goals: expected {sorted(expect['goals'])}, got {got_goals}")
    facts = sim.facts[lead_id]
    if "stage" in expect and facts.stage != expect["stage"]:
        problems.append(f"stage: expected {expect['stage']!r}, got {facts.stage!r}")
    if "lists" in expect:
        missing = sorted(set(expect["lists"]) - facts.lists)
        if missing:
            problems.append(
                f"lists: expected the lead on {missing}; it is on {sorted(facts.lists)}"
            )
    if "off_lists" in expect:
        still = sorted(set(expect["off_lists"]) & facts.lists)
        if still:
            problems.append(f"off_lists: expected the lead off {still}; it is still on them")
    if "suppressed" in expect and facts.suppressed != bool(expect["suppressed"]):
        problems.append(
            f"suppressed: expected {str(bool(expect['suppressed'])).lower()}, "
            f"got {str(facts.suppressed).lower()}"
        )
    if "entered" in expect:
        entered = {t.flow for t in result.trace if t.what == "enter"}
        missing = sorted(set(expect["entered"]) - entered)
        if missing:
            problems.append(
                f"entered: expected the lead to enter {missing}; it entered {sorted(entered)}"
            )
    return problems


def find_test_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob("*.test.toml")))
        elif p.name.endswith(".test.toml"):
            found.append(p)
    return found


def workspace_for(test_file: Path) -> Path:
    """The workspace a test file belongs to: the nearest folder above it holding .flow files."""
    for folder in test_file.resolve().parents:
        if any(folder.glob("*.flow")):
            return folder
    raise ScenarioError(str(test_file), "no .flow files in any folder above this test file")
