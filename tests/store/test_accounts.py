"""Accounts: a flow can stop for the whole account when anyone there books a meeting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from dsl.compile import compile_text
from flowbuilder.engine.facts import Event
from flowbuilder.simulate import Lead, simulate
from tests.store.driver import add_lead, publish_text, rows, run_until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

FLOW = """
template touch {
  subject "Hello"
}

flow outreach "Outreach" {
  trigger event imported
  exit when replied()
  exit when occurred("meeting_booked") for account
  first: send touch
  pause: wait 3d
  second: send touch
  pause_2: wait 3d
  third: send touch
  done: end
}
"""

LEADS = ["ann@hanbit.example", "bo@hanbit.example", "cy@other.example"]
EVENTS = [(T0, email, "imported") for email in LEADS] + [
    (T0 + 4 * DAY, "bo@hanbit.example", "meeting_booked")
]


def test_a_meeting_booked_by_a_colleague_ends_the_sequence_for_the_account(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    for email in LEADS:
        add_lead(store, email, T0)
    run_until(store, T0, T0 + 10 * DAY, EVENTS)
    sends = rows(
        store,
        "SELECT l.email, count(*) FROM outbox o JOIN leads l ON l.id = o.lead_id "
        "GROUP BY l.email ORDER BY l.email",
    )
    assert sends == [("ann@hanbit.example", 2), ("bo@hanbit.example", 2), ("cy@other.example", 3)]
    ends = dict(
        rows(
            store,
            "SELECT l.email, e.status FROM enrollments e JOIN leads l ON l.id = e.lead_id",
        )
    )
    assert ends == {
        "ann@hanbit.example": "exited",
        "bo@hanbit.example": "exited",
        "cy@other.example": "completed",
    }
    [(reason,)] = rows(
        store,
        "SELECT d.reason FROM decisions d JOIN leads l ON l.id = d.lead_id "
        "WHERE d.kind = 'leave' AND l.email = 'ann@hanbit.example'",
    )
    assert "(for the account)" in str(reason)


def test_the_simulator_stops_the_account_at_the_same_moment() -> None:
    ws = compile_text(FLOW, "outreach.flow").workspace
    assert ws is not None
    leads = [Lead(email, {"email": email}, account=email.split("@")[1]) for email in LEADS]
    result = simulate(ws, leads, [(email, Event(kind, at)) for at, email, kind in EVENTS], T0, 10)
    exits = {(t.lead, t.at) for t in result.trace if t.what == "exit"}
    assert exits == {
        ("ann@hanbit.example", T0 + 4 * DAY),
        ("bo@hanbit.example", T0 + 4 * DAY),
    }
