from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dsl
from dsl import ir
from flowbuilder.engine.decide import Outcome, bucket, decide
from flowbuilder.engine.decisions import (
    Advance,
    Enrollment,
    Hold,
    Leave,
    ReachGoal,
    SendEmail,
    UpdateLead,
)
from flowbuilder.engine.facts import Event, LeadFacts

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 10:00 in Seoul
TEMPLATES = "".join(
    f'template {n} {{\n  subject "{n}"\n}}\n'
    for n in ("welcome", "guide", "story", "nudge", "a", "b")
)


def workspace(body: str, head: str = "") -> ir.Workspace:
    return dsl.loads(TEMPLATES + head + 'flow f "F" {\n' + body + "}\n")


def enroll(flow: ir.Flow, lead: str = "lead-1", at: datetime = T0) -> Enrollment:
    assert flow.start is not None
    return Enrollment(
        lead_id=lead, flow=flow.name, step=flow.start, entered_at=at, step_entered_at=at
    )


def facts(*events: Event, lead: str = "lead-1", tz: str | None = "Asia/Seoul") -> LeadFacts:
    return LeadFacts(lead_id=lead, attributes={}, events=events, timezone=tz)


def run(
    ws: ir.Workspace, events: list[Event], until: datetime, lead: str = "lead-1"
) -> tuple[Enrollment, list[tuple[datetime, object]]]:
    """A virtual clock: decide at the start, at every due time and at every event, as the runtime would."""
    flow = ws.flows["f"]
    enrollment = enroll(flow, lead)
    now = T0
    log: list[tuple[datetime, object]] = []
    sent: list[Event] = []
    while True:
        known = tuple(e for e in events if e.at <= now) + tuple(sent)
        outcome: Outcome = decide(flow, enrollment, facts(*known, lead=lead), now, policy=ws.policy)
        for d in outcome.decisions:
            log.append((now, d))
            if isinstance(d, SendEmail):
                sent.append(Event("send", now, flow="f", step=d.step))
        enrollment = outcome.enrollment
        if enrollment.status != "active":
            return enrollment, log
        candidates = [e.at for e in events if e.at > now]
        if enrollment.due_at is not None:
            candidates.append(enrollment.due_at)
        upcoming = [c for c in candidates if c <= until]
        if not upcoming:
            return enrollment, log
        now = min(upcoming)


def sends(log: list[tuple[datetime, object]]) -> list[tuple[datetime, str]]:
    return [(t, d.step or "") for t, d in log if isinstance(d, SendEmail)]


WELCOME = """\
  exit when replied()
  hello: send welcome
  pause: wait 1d
  await: wait for clicked(hello) up to 7d {
    timeout -> nudge
  }
  story: send story
  done: end
  nudge: send nudge
  bye: end
"""


def test_a_lead_who_clicks_gets_the_story_the_day_after_the_click() -> None:
    click = Event("click", T0 + timedelta(days=3), flow="f", step="hello")
    enrollment, log = run(workspace(WELCOME), [click], T0 + timedelta(days=30))
    assert sends(log) == [(T0, "hello"), (T0 + timedelta(days=3), "story")]
    assert enrollment.status == "completed" and enrollment.step == "done"


def test_wait_for_event_takes_timeout_path_after_7_days() -> None:
    _, log = run(workspace(WELCOME), [], T0 + timedelta(days=30))
    assert sends(log) == [(T0, "hello"), (T0 + timedelta(days=8), "nudge")]
    timeout = next(d for _, d in log if isinstance(d, Advance) and d.step == "await")
    assert timeout.to == "nudge" and "within 7d" in timeout.reason
    assert timeout.at == T0 + timedelta(days=8)


def test_a_reply_exits_the_flow_with_the_reason() -> None:
    reply = Event("reply", T0 + timedelta(hours=30), flow="f", step="hello")
    enrollment, log = run(workspace(WELCOME), [reply], T0 + timedelta(days=30))
    assert enrollment.status == "exited"
    leave = log[-1][1]
    assert isinstance(leave, Leave) and leave.reason == "exit when replied(): replied() = true"
    assert sends(log) == [(T0, "hello")]


def test_a_timer_hands_its_due_time_to_the_next_step_so_late_ticks_do_not_drift() -> None:
    ws = workspace("  a: wait 1d\n  b: wait 1d\n  c: end\n")
    flow = ws.flows["f"]
    first = decide(flow, enroll(flow), facts(), T0 + timedelta(days=1, minutes=7))
    assert first.enrollment.step == "b"
    assert first.enrollment.step_entered_at == T0 + timedelta(days=1)
    assert first.enrollment.due_at == T0 + timedelta(days=2)


def test_deciding_twice_at_the_same_moment_gives_the_same_send_key() -> None:
    ws = workspace(WELCOME)
    flow = ws.flows["f"]
    a = decide(flow, enroll(flow), facts(), T0)
    b = decide(flow, enroll(flow), facts(), T0)
    keys = [d.key for d in a.decisions if isinstance(d, SendEmail)]
    assert keys == [d.key for d in b.decisions if isinstance(d, SendEmail)] and len(keys) == 1


def test_quiet_hours_hold_a_send_until_morning_in_the_leads_timezone() -> None:
    ws = workspace("  quiet hours 21:00-08:00\n  a: send welcome\n  b: end\n")
    flow = ws.flows["f"]
    late = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)  # 22:30 in Seoul
    held = decide(flow, enroll(flow, at=late), facts(), late)
    assert [type(d) for d in held.decisions] == [Hold]
    assert held.enrollment.due_at == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 08:00 in Seoul
    sent = decide(flow, held.enrollment, facts(), held.enrollment.due_at)
    assert any(isinstance(d, SendEmail) for d in sent.decisions)


def test_the_send_window_waits_for_a_weekday() -> None:
    ws = workspace("  send window 09:00-18:00 mon-fri\n  a: send welcome\n  b: end\n")
    flow = ws.flows["f"]
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    held = decide(flow, enroll(flow, at=saturday), facts(), saturday)
    assert held.enrollment.due_at == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday 09:00 Seoul


def test_the_frequency_cap_counts_sends_from_every_flow() -> None:
    ws = workspace("  frequency cap 2 per 1d\n  a: send welcome\n  b: end\n")
    flow = ws.flows["f"]
    earlier = [Event("send", T0 - timedelta(hours=h), flow="other") for h in (2, 5)]
    held = decide(flow, enroll(flow), facts(*earlier), T0)
    assert held.enrollment.due_at == T0 - timedelta(hours=5) + timedelta(
        days=1
    )  # the oldest ages out
    assert "frequency cap 2 per 1d reached" in held.decisions[-1].reason


def test_the_frequency_cap_sends_at_the_moment_it_names() -> None:
    ws = workspace("  frequency cap 2 per 1d\n  a: send welcome\n  b: end\n")
    flow = ws.flows["f"]
    earlier = [Event("send", T0 - timedelta(hours=h), flow="other") for h in (2, 5)]
    held = decide(flow, enroll(flow), facts(*earlier), T0)
    assert held.enrollment.due_at is not None
    again = decide(flow, held.enrollment, facts(*earlier), held.enrollment.due_at)
    assert isinstance(again.decisions[0], SendEmail)  # the oldest send is exactly a day old


def test_business_days_skip_weekends_and_korean_holidays() -> None:
    ws = workspace('  business days "KR"\n  a: wait 2 business days\n  b: end\n')
    flow = ws.flows["f"]
    before_chuseok = datetime(2026, 9, 23, 1, 0, tzinfo=UTC)  # Wednesday; 24-26 Sept is Chuseok
    held = decide(flow, enroll(flow, at=before_chuseok), facts(), before_chuseok)
    assert held.enrollment.due_at == datetime(2026, 9, 29, 1, 0, tzinfo=UTC)


def test_splits_are_deterministic_per_lead_and_respect_the_holdout() -> None:
    ws = workspace(
        "  s: split {\n    50% -> a\n    30% -> b\n    holdout 20%\n  }\n  a: end\n  b: end\n"
    )
    flow = ws.flows["f"]
    outcomes = {}
    for i in range(400):
        lead = f"lead-{i}"
        first = decide(flow, enroll(flow, lead), facts(lead=lead), T0)
        again = decide(flow, enroll(flow, lead), facts(lead=lead), T0)
        assert first.enrollment == again.enrollment
        key = first.enrollment.step if first.enrollment.status == "completed" else "holdout"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert (
        160 <= outcomes["a"] <= 240
        and 90 <= outcomes["b"] <= 150
        and 50 <= outcomes["holdout"] <= 110
    )
    assert 0 <= bucket("x") < 100


def test_variants_are_drawn_once_and_kept() -> None:
    ws = workspace(
        '  a: send welcome {\n    variant x 50% subject "X"\n    variant y 50% template b\n  }\n  b: end\n'
    )
    flow = ws.flows["f"]
    drawn = {}
    for i in range(200):
        out = decide(flow, enroll(flow, f"l{i}"), facts(lead=f"l{i}"), T0)
        send = next(d for d in out.decisions if isinstance(d, SendEmail))
        drawn[send.variant] = drawn.get(send.variant, 0) + 1
        assert (send.template, send.subject) in (("welcome", "X"), ("b", None))
        assert out.enrollment.context[f"variant:{send.step}"] == send.variant
    assert 70 <= drawn["x"] <= 130


def test_a_branch_says_which_values_decided_it() -> None:
    ws = workspace(
        "  c: branch {\n    if count(click) >= 3 -> hot\n    else -> cold\n  }\n  hot: end\n  cold: end\n"
    )
    flow = ws.flows["f"]
    clicks = [Event("click", T0 - timedelta(hours=i)) for i in range(4)]
    out = decide(flow, enroll(flow), facts(*clicks), T0)
    advance = next(d for d in out.decisions if isinstance(d, Advance))
    assert advance.to == "hot"
    assert advance.reason == "arm 1 `count(click) >= 3` holds: count(click) = 4"


def test_updates_are_visible_to_later_steps_in_the_same_pass() -> None:
    ws = workspace(
        "  u: update lead.score += 10\n  c: branch {\n    if lead.score >= 10 -> hot\n    else -> cold\n  }\n  hot: end\n  cold: end\n"
    )
    out = decide(ws.flows["f"], enroll(ws.flows["f"]), facts(), T0)
    assert any(isinstance(d, UpdateLead) and d.value == 10 for d in out.decisions)
    assert out.enrollment.step == "hot"


def test_a_goal_is_recorded_once_within_its_window() -> None:
    ws = workspace('  goal bought when occurred("purchase") within 14d\n  a: wait 30d\n  b: end\n')
    flow = ws.flows["f"]
    purchase = Event("purchase", T0 + timedelta(days=2))
    first = decide(flow, enroll(flow), facts(purchase), T0 + timedelta(days=3))
    assert [d.goal for d in first.decisions if isinstance(d, ReachGoal)] == ["bought"]
    second = decide(flow, first.enrollment, facts(purchase), T0 + timedelta(days=4))
    assert not [d for d in second.decisions if isinstance(d, ReachGoal)]


def test_a_step_removed_in_a_new_version_exits_the_lead_with_the_reason() -> None:
    ws = workspace("  a: end\n")
    stale = Enrollment("l", "f", "gone", T0, T0)
    out = decide(ws.flows["f"], stale, facts(), T0)
    assert out.enrollment.status == "exited"
    assert "no longer exists" in out.decisions[-1].reason


def test_a_goal_that_is_also_an_exit_is_counted_before_the_lead_leaves() -> None:
    ws = workspace(
        '  exit when occurred("purchase")\n  goal bought when occurred("purchase") within 7d\n  a: wait 30d\n  b: end\n'
    )
    flow = ws.flows["f"]
    out = decide(
        flow, enroll(flow), facts(Event("purchase", T0 + timedelta(days=1))), T0 + timedelta(days=1)
    )
    assert [type(d).__name__ for d in out.decisions] == ["ReachGoal", "Leave"]
    assert out.enrollment.status == "exited"
