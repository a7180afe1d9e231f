"""The lead rules in the runtime: classification, rule-fed lists and segments, each change with
its reason, at the moment the simulator says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from dsl.compile import compile_text
from flowbuilder.engine.facts import Event
from flowbuilder.engine.rules import LEAD_RULES
from flowbuilder.simulate import Lead, Result, Simulation, simulate
from tests.store.driver import add_lead, publish_text, rows, run_until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
Moments = list[tuple[datetime, str]]


def ann_through_the_runtime(store: Engine, text: str, events: Moments, until: datetime) -> None:
    """Publish `text`, add ann, and tick the runtime through her `events` (moment, type)."""
    publish_text(store, text, T0)
    add_lead(store, "ann@example.com", T0)
    run_until(store, T0, until, [(at, "ann@example.com", kind) for at, kind in events])


def ann_through_the_simulator(
    text: str, events: Moments, until: datetime
) -> tuple[Simulation, Result]:
    """The same lead and events through the simulator."""
    ws = compile_text(text, "ann.flow").workspace
    assert ws is not None
    sim = Simulation(ws, [Lead("1", {"email": "ann@example.com"})], T0)
    sim.add_events([("1", Event(kind, at)) for at, kind in events])
    return sim, sim.run(until)


RULES = """
template intro {
  subject "Let's talk"
}

settings {
  click_threshold = 3
}

stages {
  stage sql "Sales-qualified" when count(click) >= settings.click_threshold
  stage mql "Marketing-qualified" when opened()
  stage lead "New"
}

scoring {
  engagement +3 per click within 30d
}

list repeat_clickers "Clicked repeatedly" {
  add when count(click, within=30d) >= settings.click_threshold
  remove when count(click, within=30d) == 0
}

segment engaged "Opened in the last 7 days" where occurred(open, within=7d)

flow sales "Sales follow-up" {
  trigger entered stage sql
  intro: send intro
  done: end
}
"""

EVENTS = [
    (T0 + timedelta(hours=1), "open"),
    (T0 + DAY, "click"),
    (T0 + 2 * DAY, "click"),
    (T0 + 3 * DAY, "click"),
]


def test_a_lead_is_classified_and_moved_by_its_reactions_with_reasons(store: Engine) -> None:
    publish_text(store, RULES, T0)
    add_lead(store, "ann@example.com", T0)
    run_until(store, T0, T0 + 40 * DAY, [(at, "ann@example.com", kind) for at, kind in EVENTS])

    changes = rows(
        store,
        "SELECT kind, data, reason FROM decisions WHERE flow IS NULL ORDER BY at, id",
    )
    kinds = [(str(k), str(d)) for k, d, _ in changes]
    assert [k for k, _ in kinds] == [
        "stage.changed",  # lead, on arrival
        "segment.entered",  # on the open
        "stage.changed",  # mql, on the open
        "list.entered",  # on the third click
        "stage.changed",  # sql, on the third click
        "segment.left",  # 7 days after the open
        "list.left",  # when the last click is 30 days old
    ]
    reasons = [str(r) for _, _, r in changes]
    assert reasons[3].startswith("list repeat_clickers: add when")
    assert "count(click) = 3" in reasons[4]
    [(stage, score)] = rows(store, "SELECT stage, score FROM leads")
    assert stage == "sql" and score == 0.0  # every click has left the 30-day window
    assert rows(store, "SELECT step FROM outbox") == [("intro",)]
    assert rows(store, "SELECT count(*) FROM segment_members") == [(0,)]
    assert rows(store, "SELECT count(*) FROM memberships") == [(0,)]


def test_the_runtime_and_the_simulator_change_a_lead_at_the_same_moments(store: Engine) -> None:
    publish_text(store, RULES, T0)
    add_lead(store, "ann@example.com", T0)
    run_until(store, T0, T0 + 40 * DAY, [(at, "ann@example.com", kind) for at, kind in EVENTS])
    runtime = [
        (str(k), str(at)[:16])
        for k, at in rows(
            store, "SELECT type, at FROM events WHERE type LIKE '%.%' ORDER BY at, id"
        )
    ]
    ws = compile_text(RULES, "rules.flow").workspace
    assert ws is not None
    result = simulate(
        ws,
        [Lead("1", {"email": "ann@example.com"})],
        [("1", Event(kind, at)) for at, kind in EVENTS],
        T0,
        40,
    )
    simulated = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M")) for t in result.trace if t.flow == LEAD_RULES
    ]
    assert runtime == simulated


def test_publishing_a_new_segment_computes_its_members_at_once(store: Engine) -> None:
    publish_text(store, RULES, T0)
    for n in range(6):
        add_lead(store, f"l{n}@example.com", T0)
    run_until(
        store,
        T0,
        T0 + 2 * DAY,
        [(T0 + timedelta(hours=n), f"l{n}@example.com", "click") for n in range(0, 6, 2)],
    )
    clicked = RULES + '\nsegment clicked_once "Clicked" where count(click) >= 1\n'
    publish_text(store, clicked, T0 + 2 * DAY)
    run_until(store, T0 + 2 * DAY, T0 + 2 * DAY)
    members = rows(
        store,
        "SELECT l.email FROM segment_members m JOIN leads l ON l.id = m.lead_id "
        "WHERE m.segment = 'clicked_once' ORDER BY l.email",
    )
    assert members == [("l0@example.com",), ("l2@example.com",), ("l4@example.com",)]
    reasons = rows(
        store, "SELECT reason FROM decisions WHERE kind = 'segment.entered' AND flow IS NULL"
    )
    assert len(reasons) == 3 and all("count(click) = 1" in str(r) for (r,) in reasons)
    # Only the new segment was looked at: no other rule decided anything at the publication.
    published_at = str(T0 + 2 * DAY)[:16]
    at_publication = [
        str(kind)
        for kind, at in rows(store, "SELECT kind, at FROM decisions WHERE flow IS NULL")
        if str(at)[:16] == published_at
    ]
    assert at_publication == ["segment.entered"] * 3

    publish_text(store, RULES, T0 + 3 * DAY)  # the segment is gone again
    run_until(store, T0 + 3 * DAY, T0 + 3 * DAY)
    assert rows(store, "SELECT count(*) FROM segment_members") == [(0,)]


def test_a_publication_keeps_the_look_a_lead_it_moves_was_due_for(store: Engine) -> None:
    publish_text(store, RULES, T0)
    add_lead(store, "ann@example.com", T0)
    clicks = [(T0 + timedelta(hours=h), "ann@example.com", "click") for h in (1, 2, 3)]
    run_until(store, T0, T0 + 3 * DAY, clicks)
    assert rows(store, "SELECT list_name FROM memberships") == [("repeat_clickers",)]
    [(due,)] = rows(store, "SELECT rules_due_at FROM leads")
    assert str(due)[:16] == "2026-04-01 10:00"  # the first click leaves the 30-day window
    # Published a day after the lead came due, before a tick looked at it: the new segment takes
    # the lead in, and its check must not put off what the lead was due for (leaving the list).
    clicked = RULES + '\nsegment clicked_once "Clicked" where count(click) >= 1\n'
    publish_text(store, clicked, T0 + 31 * DAY)
    run_until(store, T0 + 31 * DAY, T0 + 31 * DAY)
    assert rows(store, "SELECT segment FROM segment_members") == [("clicked_once",)]
    assert rows(store, "SELECT count(*) FROM memberships") == [(0,)]
    assert rows(store, "SELECT stage, score, rules_due_at FROM leads") == [("sql", 0.0, None)]


POINTS = """
stages {
  stage sql "Sales-qualified" when lead.score >= 10
  stage mql "Marketing-qualified" when opened()
  stage lead "New"
}

scoring {
  engagement +1 per open within 30d
}

segment scored "Scored" where lead.score >= 5

flow demo "Points for a demo request" {
  trigger event demo_requested
  points: update lead.score += 10
  done: end
}

flow quiet "Back to nurture" {
  trigger event went_quiet
  back: update lead.stage = "lead"
  done: end
}
"""


def test_a_flows_points_move_the_lead_at_once_as_a_full_recompute_would(store: Engine) -> None:
    # The flow writes the new score with its `score.adjusted` event; the rules that read the
    # score (the sql stage, the segment) are re-checked when that event is handled, in the same
    # tick, not when the lead is next due (when its open leaves the 30-day window). A stage a
    # flow sets lower is raised again by the stage rules, as a full recompute of the lead does.
    events = [
        (T0 + timedelta(hours=1), "open"),
        (T0 + timedelta(hours=2), "demo_requested"),
        (T0 + timedelta(hours=3), "went_quiet"),
    ]
    ann_through_the_runtime(store, POINTS, events, T0 + 2 * DAY)
    runtime = [
        (str(k), str(at)[:16])
        for k, at in rows(
            store,
            "SELECT kind, at FROM decisions WHERE flow IS NULL OR kind = 'update' ORDER BY at, id",
        )
    ]
    assert runtime == [
        ("stage.changed", "2026-03-02 09:00"),  # lead
        ("stage.changed", "2026-03-02 10:00"),  # mql, on the open
        ("update", "2026-03-02 11:00"),  # the flow's 10 points
        ("segment.entered", "2026-03-02 11:00"),
        ("stage.changed", "2026-03-02 11:00"),  # sql, on the points
        ("update", "2026-03-02 12:00"),  # the flow sets the stage back to lead
        ("stage.changed", "2026-03-02 12:00"),  # and the rules raise it to sql again
    ]
    assert rows(store, "SELECT stage, score FROM leads") == [("sql", 11.0)]
    runtime_points = [
        (str(at)[:16], _json(p))
        for at, p in rows(
            store, "SELECT at, properties FROM events WHERE type = 'score.adjusted' ORDER BY id"
        )
    ]
    assert runtime_points == [("2026-03-02 11:00", {"delta": 10, "flow": "demo", "step": "points"})]
    sim, result = ann_through_the_simulator(POINTS, events, T0 + 2 * DAY)
    # Both drivers write the same `score.adjusted` event: the points, the flow and the step.
    simulated_points = [
        (e.at.strftime("%Y-%m-%d %H:%M"), dict(e.properties))
        for e in sim.facts["1"].events
        if e.type == "score.adjusted"
    ]
    assert simulated_points == runtime_points
    simulated = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M"))
        for t in result.trace
        if t.flow == LEAD_RULES or t.what == "update"
    ]
    assert simulated == runtime


RANKED = """
segment big_spenders "Top 20% by purchases" where top(total("purchase", "amount"), 20%)
"""


def test_population_ranks_are_taken_daily_and_agree_with_the_simulator(store: Engine) -> None:
    publish_text(store, RANKED, T0)
    emails = [f"l{n}@example.com" for n in range(10)]
    for email in emails:
        add_lead(store, email, T0)
    purchases = [
        (T0 + timedelta(hours=n), email, "purchase", {"properties": {"amount": 10 * (n + 1)}})
        for n, email in enumerate(emails)
    ]
    run_until(store, T0, T0 + 3 * DAY, purchases)
    members = rows(
        store,
        "SELECT l.email FROM segment_members m JOIN leads l ON l.id = m.lead_id ORDER BY l.email",
    )
    assert members == [("l8@example.com",), ("l9@example.com",)]
    runtime = [
        (str(k), str(at)[:16])
        for k, at in rows(
            store, "SELECT type, at FROM events WHERE type LIKE 'segment.%' ORDER BY at, id"
        )
    ]
    ws = compile_text(RANKED, "ranked.flow").workspace
    assert ws is not None
    result = simulate(
        ws,
        [Lead(email, {"email": email}) for email in emails],
        [
            (email, Event("purchase", at, {"amount": 10 * (n + 1)}))
            for n, (at, email, _, _) in enumerate(purchases)
        ],
        T0,
        3,
    )
    simulated = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M")) for t in result.trace if t.flow == LEAD_RULES
    ]
    assert runtime == simulated
    assert ("segment.left", "2026-03-03 00:00") in runtime  # ranked again at midnight


def test_one_worker_at_a_time_runs_a_periodic_pass(postgres_url: str) -> None:
    from flowbuilder.store import clocks
    from flowbuilder.store.db import open_store

    engine = open_store(postgres_url)
    try:
        clocks.ensure(engine, ["population"], T0)
        clocks.ensure(engine, ["population"], T0)  # a second worker finds it there
        with engine.begin() as first:
            assert clocks.claim(first, "population") is not None
            with engine.begin() as second:
                assert clocks.claim(second, "population") is None
        with engine.begin() as third:
            assert clocks.claim(third, "population") is not None
    finally:
        engine.dispose()


FLOW_LISTS = """
template hello {
  subject "Hello"
}

list newsletter "Newsletter subscribers"

segment subscribed "On the newsletter" where in_list(newsletter)

flow join "On the newsletter for a day" {
  trigger event signed_up
  join: add to list newsletter
  pause: wait 1d
  leave: remove from list newsletter
  again: remove from list newsletter
  done: end
}
"""


def _json(value: object) -> dict[str, Any]:
    """A JSON column as read back (a dict on PostgreSQL, text on SQLite)."""
    found = json.loads(value) if isinstance(value, str) else value
    assert isinstance(found, dict)
    return found


def _sim_events(events: list[Event]) -> list[tuple[str, str, object]]:
    return [(e.type, e.at.strftime("%Y-%m-%d %H:%M"), e.properties.get("list")) for e in events]


def test_a_flows_list_steps_leave_the_same_events_in_both_drivers(store: Engine) -> None:
    # `remove from list` leaves a `list.left` event in the runtime; the simulator leaves the same
    # one (and none for a lead already off the list), so `in_list(newsletter)` moves the segment
    # at the same moment in both.
    events = [(T0 + timedelta(hours=1), "signed_up")]
    ann_through_the_runtime(store, FLOW_LISTS, events, T0 + 3 * DAY)
    runtime_events = [
        (str(t), str(at)[:16], _json(p).get("list"))
        for t, at, p in rows(
            store,
            "SELECT type, at, properties FROM events WHERE type LIKE 'list.%' ORDER BY at, id",
        )
    ]
    assert runtime_events == [
        ("list.entered", "2026-03-02 10:00", "newsletter"),
        ("list.left", "2026-03-03 10:00", "newsletter"),
    ]
    runtime_properties = [
        _json(p)
        for (p,) in rows(
            store, "SELECT properties FROM events WHERE type LIKE 'list.%' ORDER BY id"
        )
    ]
    runtime_rules = [
        (str(k), str(at)[:16])
        for k, at in rows(store, "SELECT kind, at FROM decisions WHERE flow IS NULL ORDER BY at")
    ]
    sim, result = ann_through_the_simulator(FLOW_LISTS, events, T0 + 3 * DAY)
    simulated = [e for e in sim.facts["1"].events if e.type.startswith("list.")]
    assert _sim_events(simulated) == runtime_events
    assert [dict(e.properties) for e in simulated] == runtime_properties
    assert sim.facts["1"].lists == frozenset()
    simulated_rules = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M")) for t in result.trace if t.flow == LEAD_RULES
    ]
    assert runtime_rules == [
        ("segment.entered", "2026-03-02 10:00"),
        ("segment.left", "2026-03-03 10:00"),
    ]
    assert simulated_rules == runtime_rules
    # The steps themselves are logged alike, the second `remove` (nothing to take off) too.
    runtime_steps = [
        (str(step), str(at)[:16])
        for step, at in rows(
            store, "SELECT step, at FROM decisions WHERE kind = 'list' ORDER BY id"
        )
    ]
    assert [s for s, _ in runtime_steps] == ["join", "leave", "again"]
    simulated_steps = [
        (t.step, t.at.strftime("%Y-%m-%d %H:%M")) for t in result.trace if t.what == "list"
    ]
    assert simulated_steps == runtime_steps


FED_LISTS = """
list repeat_clickers "Clicked repeatedly" {
  add when count(click, within=30d) >= 3
  remove when count(click, within=30d) == 0
}

list buyers "Bought something" {
  add when occurred("purchase")
}

flow promote "Promoted by hand" {
  trigger event promoted
  entry always
  promote: add to list repeat_clickers
  done: end
}

flow tidy "Cleaned up by hand" {
  trigger event tidied
  entry always
  unlist: remove from list buyers
  done: end
}
"""


def test_a_rule_fed_lists_own_rules_win_over_a_flows_list_step_at_once(store: Engine) -> None:
    # A flow adds a lead without clicks to `repeat_clickers`: its `remove when` holds, so the
    # rules take the lead off again in the same tick, as a full recompute would (the lead has no
    # window to slide, so it would otherwise stay forever). A flow takes a buyer off `buyers`:
    # `add when occurred("purchase")` puts it back. The simulator agrees moment for moment.
    events = [
        (T0 + timedelta(hours=1), "promoted"),
        (T0 + timedelta(hours=2), "purchase"),
        (T0 + timedelta(hours=3), "tidied"),
    ]
    ann_through_the_runtime(store, FED_LISTS, events, T0 + 2 * DAY)
    runtime = [
        (str(k), str(at)[:16], str(r).split(":")[0])
        for k, at, r in rows(
            store,
            "SELECT kind, at, reason FROM decisions "
            "WHERE flow IS NULL OR kind = 'list' ORDER BY at, id",
        )
    ]
    assert runtime == [
        ("list", "2026-03-02 10:00", "added to list repeat_clickers"),
        ("list.left", "2026-03-02 10:00", "list repeat_clickers"),
        ("list.entered", "2026-03-02 11:00", "list buyers"),
        ("list", "2026-03-02 12:00", "removed from list buyers"),
        ("list.entered", "2026-03-02 12:00", "list buyers"),
    ]
    assert rows(store, "SELECT list_name FROM memberships") == [("buyers",)]
    assert rows(store, "SELECT rules_due_at FROM leads") == [(None,)]
    _, result = ann_through_the_simulator(FED_LISTS, events, T0 + 2 * DAY)
    simulated = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M"), t.reason.split(":")[0])
        for t in result.trace
        if t.flow == LEAD_RULES or t.what == "list"
    ]
    assert simulated == runtime


MAILED = """
template hello {
  subject "Hello"
}

stages {
  stage contacted "Contacted" when count(send) >= 1
  stage lead "New"
}

segment mailed "Sent something" where count(send) >= 1
segment openers "Opened lately" where occurred(open, within=7d)

flow welcome "Welcome" {
  trigger event signed_up
  hello: send hello
  done: end
}
"""


def test_a_send_moves_the_rules_reading_sends_at_once_in_both_drivers(store: Engine) -> None:
    # The welcome's send re-checks the rules that read sends (the stage, `mailed`) at the send,
    # as a full recompute right after it would, not when the lead is next due (when the open
    # leaves `openers`' window, and never for a lead without windowed rules). The runtime makes
    # the lead due at the send, the simulator re-checks what the send can change: the same moves.
    events = [(T0 + timedelta(hours=1), "open"), (T0 + timedelta(hours=2), "signed_up")]
    ann_through_the_runtime(store, MAILED, events, T0 + 10 * DAY)
    runtime = [
        (str(k), str(at)[:16], str(r).split(":")[0])
        for k, at, r in rows(
            store, "SELECT kind, at, reason FROM decisions WHERE flow IS NULL ORDER BY at, id"
        )
    ]
    assert runtime == [
        ("stage.changed", "2026-03-02 09:00", "stage lead"),
        ("segment.entered", "2026-03-02 10:00", "segment openers"),
        ("segment.entered", "2026-03-02 11:00", "segment mailed"),
        ("stage.changed", "2026-03-02 11:00", "stage contacted"),
        ("segment.left", "2026-03-09 10:00", "segment openers"),
    ]
    _, result = ann_through_the_simulator(MAILED, events, T0 + 10 * DAY)
    simulated = [
        (t.what, t.at.strftime("%Y-%m-%d %H:%M"), t.reason.split(":")[0])
        for t in result.trace
        if t.flow == LEAD_RULES
    ]
    assert simulated == runtime
