"""What the sender's journal writes for a batch of results (`outbox.finish`), column by column,
and what the send-time checks read (`consent.latest`, `Sender._read`), on SQLite and
PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine, select, update

from flowbuilder.config import Settings
from flowbuilder.mail import outbox
from flowbuilder.mail.consent import latest, record_consent
from flowbuilder.mail.outbox import Result, event_key, mail_event
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender
from flowbuilder.store.schema import DecisionRow, Event, Outbox
from tests.mail.conftest import NOW, add_lead, queue, row


def test_finish_writes_each_result_its_event_and_its_decision(store: Engine) -> None:
    ann = add_lead(store, "ann@example.com", {})
    bob = add_lead(store, "bob@example.com", {})
    cid = add_lead(store, "cid@example.com", {})
    sent, later, lost, trial = (
        queue(store, ann, "welcome_email"),
        queue(store, bob, "welcome_email"),
        queue(store, cid, "welcome_email"),
        queue(store, ann, "welcome_email", n=1),
    )
    with store.begin() as conn:
        conn.execute(update(Outbox).where(Outbox.id == trial).values(test=True))
        conn.execute(update(Outbox).where(Outbox.id == later).values(uncertain=True))
        claimed = {
            c.id: c for c in outbox.claim(conn, NOW, 10, timedelta(minutes=1), retry_unknown=False)
        }
    retry_at = NOW + timedelta(minutes=5)
    delivered_at = NOW - timedelta(seconds=3)
    results = [  # not in id order: the rows are written in id order all the same
        Result(
            claimed[lost],
            "unknown",
            "dropped after DATA",
            recipient="c@x.example",
            message_id="<l>",
        ),
        Result(
            claimed[sent],
            "sent",
            "accepted by relay:25; transactional",
            recipient="ann@example.com",
            message_id="<s@acme.example>",
            subject="Welcome, Ann",
            links=[{"url": "https://acme.example/a", "name": "docs"}],
            relay="relay:25",
            consent_id=None,
            events=[
                mail_event(
                    claimed[sent],
                    "delivery",
                    delivered_at,
                    {"relay": "relay:25"},
                    key=event_key("delivery", claimed[sent].key),
                )
            ],
        ),
        Result(claimed[later], "pending", "deferred: 451", next_attempt_at=retry_at),
        Result(claimed[trial], "held", "test held", events=[mail_event(claimed[trial], "x", NOW)]),
    ]
    with store.begin() as conn:
        outbox.finish(conn, results, NOW)

    s = row(store, sent)
    assert (s.state, s.recipient, s.message_id, s.subject, s.relay) == (
        "sent",
        "ann@example.com",
        "<s@acme.example>",
        "Welcome, Ann",
        "relay:25",
    )
    assert s.links == [{"url": "https://acme.example/a", "name": "docs"}]
    assert s.sent_at == NOW and s.updated_at == NOW and s.last_error is None
    assert s.leased_until is None and s.data_started_at is None and s.next_attempt_at is None
    assert s.uncertain is False and s.attempts == 1
    p = row(store, later)
    assert (p.state, p.last_error, p.next_attempt_at, p.sent_at) == (
        "pending",
        "deferred: 451",
        retry_at,
        None,
    )
    assert p.uncertain is True and p.links is None  # it was uncertain when claimed
    u = row(store, lost)
    assert (u.state, u.uncertain, u.message_id, u.recipient) == (
        "unknown",
        True,
        "<l>",
        "c@x.example",
    )
    t = row(store, trial)
    assert (t.state, t.last_error, t.uncertain) == ("held", "test held", False)

    with store.connect() as conn:
        events = conn.execute(select(Event).order_by(Event.id)).all()
        decisions = conn.execute(
            select(DecisionRow).where(DecisionRow.kind == "deliver").order_by(DecisionRow.id)
        ).all()
    [delivery, other] = events
    assert (delivery.lead_id, delivery.type, delivery.at, delivery.received_at) == (
        ann,
        "delivery",
        delivered_at,
        NOW,
    )
    assert delivery.properties == {"relay": "relay:25"} and delivery.pending is True
    assert (delivery.flow, delivery.step, delivery.message_key) == ("welcome", "hello", s.key)
    assert delivery.idempotency_key == f"delivery:{s.key}" and delivery.machine is False
    assert (other.type, other.at, other.properties) == ("x", NOW, {})
    # One line a row, but none for the test message, in the order of the results.
    assert [(d.lead_id, d.reason, d.at) for d in decisions] == [
        (cid, "unknown: dropped after DATA", NOW),
        (ann, "sent: accepted by relay:25; transactional", NOW),
        (bob, "pending: deferred: 451", NOW),
    ]
    assert decisions[1].data == {
        "outbox": sent,
        "key": s.key,
        "state": "sent",
        "message_id": "<s@acme.example>",
        "consent": None,
        "attempt": 1,
    }
    assert (decisions[1].flow, decisions[1].step, decisions[1].enrollment_id) == (
        "welcome",
        "hello",
        None,
    )

    # A result written twice (a journal that wrote it, then died before saying so) records its
    # event once.
    with store.begin() as conn:
        outbox.finish(conn, results[1:2], NOW)
    with store.connect() as conn:
        assert len(conn.execute(select(Event).where(Event.type == "delivery")).all()) == 1


def test_latest_gives_each_lead_its_newest_record_of_the_scope(store: Engine) -> None:
    ann = add_lead(store, "ann@example.com", {}, consent=False)
    bob = add_lead(store, "bob@example.com", {}, consent=False)
    nobody = add_lead(store, "cid@example.com", {}, consent=False)
    with store.begin() as conn:
        for lead, scope, granted, hours in [
            (ann, "marketing", True, 1),
            (ann, "marketing", False, 3),
            (ann, "night", True, 2),
            (bob, "marketing", True, 5),
            (bob, "marketing", True, 4),
        ]:
            record_consent(
                conn,
                lead,
                scope=scope,
                granted=granted,
                who="ann@example.com",
                source="form",
                wording="yes",
                at=NOW + timedelta(hours=hours),
                now=NOW,
            )
        marketing = latest(conn, [bob, ann, nobody, ann], "marketing")
        night = latest(conn, [ann, bob], "night")
    assert sorted(marketing) == sorted([ann, bob])
    assert (marketing[ann].granted, marketing[ann].at) == (False, NOW + timedelta(hours=3))
    assert (marketing[bob].granted, marketing[bob].at) == (True, NOW + timedelta(hours=5))
    assert marketing[ann].lead_id == ann and marketing[ann].scope == "marketing"
    assert (marketing[ann].who, marketing[ann].source, marketing[ann].wording) == (
        "ann@example.com",
        "form",
        "yes",
    )
    assert list(night) == [ann] and night[ann].granted is True


def test_a_batch_whose_leads_are_all_gone_is_read_and_its_rows_fail_alone(
    store: Engine, settings: Settings
) -> None:
    lead = add_lead(store, "ann@example.com", {})
    queue(store, lead, "welcome_email")
    sender = Sender(store, settings, Relay("127.0.0.1", 1), clock=lambda: NOW)
    with store.begin() as conn:
        [claimed] = outbox.claim(conn, NOW, 10, timedelta(minutes=1), retry_unknown=False)
    gone = replace(claimed, lead_id=10**9)
    # No lead, so no address to look up among the suppressions (on PostgreSQL an empty array
    # of unknown type would fail the whole batch).
    p = sender._prepare(gone, sender._read([gone]), NOW)
    assert p.result is not None and p.result.state == "failed"
    assert p.result.reason == f"lead {10**9} no longer exists"
    batch = sender._read([claimed, gone])
    assert sender._prepare(claimed, batch, NOW).out is not None
