"""Random scenarios for the property tests: a flow that compiles and lints clean (sends, waits,
waits for events, branches, splits, updates, lists, goals, early ends, exits, send windows,
frequency caps), a few leads, and a timeline of their events over ten days.

Event times have seconds in 1..59 while every time the engine computes (sign-ups, waits, windows)
falls on a whole minute, so no event lands on the exact moment a timer is due: at such a tie the
order of the two is a matter of convention, not of correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import assume
from hypothesis import strategies as st

from dsl import ir
from dsl.compile import compile_text
from dsl.diagnostics import has_errors
from dsl.lint import lint
from flowbuilder.engine.facts import Event
from flowbuilder.intake import EventIn

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
DAYS = 10
DURATIONS = ["30m", "1h", "6h", "1d", "2d", "3d"]
REACTIONS = ["open", "click", "reply", "purchase"]


@dataclass(frozen=True)
class Scripted:
    """One event of the timeline: the lead (index), type, time and the step it reacts to."""

    lead: int
    type: str
    at: datetime
    step: str | None = None

    def for_simulator(self, lead_id: str) -> tuple[str, Event]:
        flow = "f" if self.step else None
        return lead_id, Event(self.type, self.at, {}, flow=flow, step=self.step)

    def for_runtime(self, email: str) -> EventIn:
        flow = "f" if self.step else None
        return EventIn(type=self.type, email=email, at=self.at, flow=flow, step=self.step)


@dataclass(frozen=True)
class Scenario:
    text: str
    ws: ir.Workspace
    leads: int
    events: tuple[Scripted, ...]

    def emails(self) -> list[str]:
        return [f"lead{n}@example.com" for n in range(self.leads)]


def _condition(draw: st.DrawFn, sends: list[str]) -> str:
    options = ["replied()", 'occurred("purchase")', "count(click) >= 2", "lead.score >= 10"]
    options.append("opened(within=2d)")
    if sends:
        step = draw(st.sampled_from(sends))
        options += [f"opened({step})", f"clicked({step})"]
    return draw(st.sampled_from(options))


def _target(draw: st.DrawFn, names: list[str], i: int) -> str:
    """A later step (edges only go forward, so every path ends)."""
    return draw(st.sampled_from([*names[i + 1 :], "done"]))


@st.composite
def flow_texts(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 7))
    names = [f"s{n}" for n in range(1, count + 1)]
    sends: list[str] = []
    goal = draw(st.booleans())
    lines: list[str] = []
    for i, name in enumerate(names):
        kinds = ["send", "send", "wait", "wait_for", "branch", "split", "update", "list", "end"]
        kinds += ["move", "wait_until", "wait_business", "variants", "webhook", "suppress"]
        if goal:
            kinds.append("goal")
        kind = draw(st.sampled_from(kinds))
        if kind == "send":
            lines.append(f"  {name}: send {draw(st.sampled_from(['t1', 't2']))}")
            sends.append(name)
        elif kind == "wait":
            lines.append(f"  {name}: wait {draw(st.sampled_from(DURATIONS))}")
        elif kind == "wait_for":
            cond = _condition(draw, sends)
            then, timeout = _target(draw, names, i), _target(draw, names, i)
            lines += [
                f"  {name}: wait for {cond} up to {draw(st.sampled_from(DURATIONS))} {{",
                f"    then -> {then}",
                f"    timeout -> {timeout}",
                "  }",
            ]
        elif kind == "branch":
            cond = _condition(draw, sends)
            yes, no = _target(draw, names, i), _target(draw, names, i)
            lines += [f"  {name}: branch {{", f"    if {cond} -> {yes}", f"    else -> {no}", "  }"]
        elif kind == "split":
            a, b = _target(draw, names, i), _target(draw, names, i)
            share = draw(st.sampled_from([30, 50, 70]))
            lines += [f"  {name}: split {{", f"    {share}% -> {a}"]
            if draw(st.booleans()):
                lines += [f"    {90 - share}% -> {b}", "    holdout 10%"]
            else:
                lines.append(f"    {100 - share}% -> {b}")
            lines.append("  }")
        elif kind == "update":
            lines.append(f"  {name}: update lead.score += {draw(st.sampled_from([5, 10]))}")
        elif kind == "list":
            verb = draw(st.sampled_from(["add to list hot", "remove from list hot"]))
            lines.append(f"  {name}: {verb}")
        elif kind == "wait_until":
            days = draw(st.sampled_from(["", " on tue, thu", " on sat"]))
            lines.append(f"  {name}: wait until {draw(st.sampled_from(['10:00', '23:30']))}{days}")
        elif kind == "wait_business":
            lines.append(f"  {name}: wait {draw(st.integers(1, 3))} business days")
        elif kind == "variants":
            lines += [
                f"  {name}: send t1 {{",
                "    variant control 50%",
                '    variant other 50% subject "Other"',
                "  }",
            ]
            sends.append(name)
        elif kind == "webhook":
            lines.append(f'  {name}: webhook "https://crm.example.com/hooks/{name}"')
        elif kind == "suppress":
            lines.append(f'  {name}: suppress "random"')
        elif kind == "move":
            lines.append(f"  {name}: move to flow g")
        elif kind == "goal":
            lines.append(f"  {name}: goal converted")
        else:
            lines.append(f'  {name}: end "early"')
    header = ['flow f "Random" {', "  trigger event signed_up", "  kind transactional"]
    header.append(f"  entry {draw(st.sampled_from(['once', 'always']))}")
    if draw(st.booleans()):
        header.append("  exit when replied()")
    if goal:
        header.append('  goal converted when occurred("purchase") within 7d')
    if draw(st.booleans()):
        header.append("  send window 09:00-18:00 mon-fri")
    if draw(st.booleans()):
        header.append("  frequency cap 2 per 1d")
    if draw(st.booleans()):
        header.append("  quiet hours 21:00-08:00")
    if draw(st.booleans()):
        header.append('  business days "KR"')
    if draw(st.booleans()):
        header.append('  timezone "Asia/Seoul"')
    templates = [
        'template t1 {\n  subject "One"\n  class transactional\n}',
        'template t2 {\n  subject "Two"\n  class transactional\n}',
        'list hot "Hot"',
    ]
    body = "\n".join([*header, *lines, "  done: end", "}"])
    # A second flow, entered from the list `hot` or by `move to flow g`.
    second = [
        'flow g "Second" {',
        "  trigger entered list hot",
        "  kind transactional",
        f"  entry {draw(st.sampled_from(['once', 'always']))}",
        "  exit when replied()" if draw(st.booleans()) else "",
        "  g1: send t2",
        f"  g2: wait {draw(st.sampled_from(DURATIONS))}",
        "  g3: remove from list hot" if draw(st.booleans()) else "  g3: update lead.score += 1",
        "  done: end",
        "}",
    ]
    return "\n\n".join([*templates, body, "\n".join(x for x in second if x)]) + "\n"


def compiled(text: str) -> ir.Workspace | None:
    """The workspace, when the text compiles and lints without an error."""
    compilation = compile_text(text, "random.flow")
    if not compilation.ok or compilation.workspace is None:
        return None
    if has_errors(lint(compilation)):
        return None
    return compilation.workspace


@st.composite
def scenarios(draw: st.DrawFn, max_leads: int = 3, max_events: int = 6) -> Scenario:
    text = draw(flow_texts())
    ws = compiled(text)
    assume(ws is not None)
    assert ws is not None
    flow = ws.flows["f"]
    sends = [name for name, s in flow.steps.items() if isinstance(s, ir.Send)]
    leads = draw(st.integers(1, max_leads))
    events: list[Scripted] = []
    for lead in range(leads):
        minutes = draw(st.integers(0, 600))
        events.append(Scripted(lead, "signed_up", T0 + timedelta(minutes=minutes)))
        if draw(st.booleans()):  # sometimes a second sign-up (entry always / once)
            later = draw(st.integers(minutes + 60, DAYS * 24 * 60 - 60))
            events.append(Scripted(lead, "signed_up", T0 + timedelta(minutes=later, seconds=30)))
    for _ in range(draw(st.integers(0, max_events))):
        at = T0 + timedelta(
            minutes=draw(st.integers(0, DAYS * 24 * 60 - 1)), seconds=draw(st.integers(1, 59))
        )
        kind = draw(st.sampled_from(REACTIONS))
        step = draw(st.sampled_from([None, *sends])) if kind in ("open", "click") else None
        events.append(Scripted(draw(st.integers(0, leads - 1)), kind, at, step))
    # One event per lead per moment: the order of two at the same instant is not defined.
    seen: set[tuple[int, datetime]] = set()
    unique = []
    for e in sorted(events, key=lambda e: (e.at, e.lead)):
        if (e.lead, e.at) not in seen:
            seen.add((e.lead, e.at))
            unique.append(e)
    return Scenario(text, ws, leads, tuple(unique))
