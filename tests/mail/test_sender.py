"""The sender against real aiosmtpd servers: delivery with events, send-time holds, retries on
4xx, permanent failure and a hard bounce on 5xx, `unknown` when the server drops after DATA, every
payload marked in the store before it goes out, and claims that never wait on a held row."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, select, text, update

from flowbuilder.config import Settings
from flowbuilder.mail import outbox
from flowbuilder.mail.consent import record_consent
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SenderOptions, SendStats
from flowbuilder.store.schema import DecisionRow, DomainPace, Event, Lead, Outbox, Suppression
from tests.mail.conftest import (
    NOW,
    Box,
    BoxHandler,
    add_lead,
    free_port,
    published,
    queue,
    row,
)


def drain(engine: Engine, settings: Settings, port: int, **kw: object) -> SendStats:
    async def go() -> SendStats:
        sender = Sender(engine, settings, Relay("127.0.0.1", port), clock=lambda: NOW, **kw)  # type: ignore[arg-type]
        try:
            return await sender.drain()
        finally:
            await sender.close()

    return asyncio.run(go())


def events(engine: Engine, type_: str) -> list[Event]:
    with engine.connect() as conn:
        return list(conn.execute(select(Event).where(Event.type == type_)).all())


def test_a_message_is_delivered_with_its_headers_event_and_decision(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    lead = add_lead(store, "ann@example.com", {"first_name": "Ann"})
    oid = queue(store, lead, "welcome_email")
    stats = drain(store, settings, port)
    assert stats.sent == 1
    r = row(store, oid)
    assert r.state == "sent" and r.message_id and r.links
    [envelope] = box.messages
    assert envelope.mail_from.startswith(f"bounce+{oid}-") and envelope.rcpt_tos == [
        "ann@example.com"
    ]
    [delivery] = events(store, "delivery")
    assert (delivery.flow, delivery.step, delivery.message_key) == ("welcome", "hello", r.key)
    with store.connect() as conn:
        decision = conn.execute(select(DecisionRow).where(DecisionRow.kind == "deliver")).one()
    assert decision.data["consent"] is not None and "consent #" in decision.reason


def test_send_time_checks_hold_what_must_not_go(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    no_consent = add_lead(store, "nc@example.com", {}, consent=False)
    suppressed = add_lead(store, "sup@example.com", {})
    unsubscribed = add_lead(store, "un@example.com", {})
    with store.begin() as conn:
        conn.execute(
            Suppression.__table__.insert().values(
                email="sup@example.com", reason="complaint", at=NOW
            )
        )
        conn.execute(
            Lead.__table__.update().where(Lead.id == unsubscribed).values(unsubscribed=True)
        )
    ids = [queue(store, i, "welcome_email") for i in (no_consent, suppressed, unsubscribed)]
    # A transactional template in a transactional flow needs no marketing consent.
    receipt = queue(store, no_consent, "ebook_delivery", flow="ebook_nurture", step="deliver")
    stats = drain(store, settings, port)
    assert (stats.held, stats.sent) == (3, 1)
    reasons = [row(store, i).last_error for i in ids]
    assert "no marketing consent record" in reasons[0]
    assert "suppressed (complaint)" in reasons[1]
    assert "unsubscribed" in reasons[2]
    assert row(store, receipt).state == "sent" and len(box.messages) == 1


def test_korean_advertising_waits_for_the_morning_without_night_consent(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    _, port = smtp_box
    night = NOW.replace(hour=14)  # 23:00 in Seoul
    lead = add_lead(store, "owl@example.com", {})
    oid = queue(store, lead, "welcome_email")

    async def go(clock: object) -> SendStats:
        sender = Sender(store, settings, Relay("127.0.0.1", port), clock=clock)  # type: ignore[arg-type]
        try:
            return await sender.drain()
        finally:
            await sender.close()

    assert asyncio.run(go(lambda: night)).deferred == 1
    r = row(store, oid)
    assert r.state == "pending" and r.next_attempt_at == night.replace(hour=23)  # 08:00 KST
    assert r.attempts == 0  # a deferral is not an attempt
    with store.begin() as conn:
        record_consent(
            conn,
            lead,
            scope="night",
            granted=True,
            who="owl@example.com",
            source="form",
            wording="야간 수신 동의",
            at=night,
            now=night,
        )
    assert asyncio.run(go(lambda: night + timedelta(hours=9, minutes=1))).sent == 1


def test_a_4xx_is_retried_later_and_slows_the_domain_down(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    box.refuse["busy@example.net"] = "451 4.7.1 Try again later"
    lead = add_lead(store, "busy@example.net", {})
    oid = queue(store, lead, "welcome_email")
    assert drain(store, settings, port).deferred == 1
    r = row(store, oid)
    assert r.state == "pending" and r.attempts == 1
    assert r.next_attempt_at == NOW + timedelta(seconds=settings.send_retry_seconds)
    assert "451 4.7.1" in r.last_error
    assert not events(store, "bounce")
    # The domain is slowed down and paused for every sender of the store: a new sender (as in
    # another process) sends nothing to it until the pause is over.
    with store.connect() as conn:
        pace = conn.execute(select(DomainPace).where(DomainPace.domain == "example.net")).one()
    assert pace.rate == settings.send_rate_per_domain / 2
    assert pace.paused_until > time.time() + settings.send_retry_seconds - 10
    other = queue(store, add_lead(store, "calm@example.net", {}), "welcome_email")
    assert drain(store, settings, port).deferred == 1  # the first row is not due yet
    assert row(store, other).state == "pending"
    assert row(store, other).attempts == 0  # never tried: its retries are all still to come
    assert row(store, other).last_error == "paced: example.net"
    assert row(store, other).next_attempt_at > NOW + timedelta(seconds=30)


def test_a_5xx_recipient_fails_for_good_as_a_hard_bounce_that_suppresses(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    box.refuse["gone@example.org"] = "550 5.1.1 No such user"
    lead = add_lead(store, "gone@example.org", {})
    oid = queue(store, lead, "welcome_email")
    assert drain(store, settings, port).failed == 1
    assert row(store, oid).state == "failed"
    [bounce] = events(store, "bounce")
    assert bounce.properties["kind"] == "hard" and bounce.properties["status"] == "5.1.1"
    assert bounce.step == "hello"
    with store.connect() as conn:
        assert conn.execute(select(Suppression.reason)).scalar_one().startswith("hard bounce 5.1.1")


def test_a_server_that_drops_after_data_leaves_the_message_unknown(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    box.drop_after_data = True
    lead = add_lead(store, "ann@example.com", {})
    oid = queue(store, lead, "welcome_email")
    stats = drain(store, settings, port)
    assert stats.unknown == 1
    r = row(store, oid)
    assert r.state == "unknown" and r.uncertain and "after DATA" in r.last_error
    # Held for review: a second drain does not send it again.
    assert drain(store, settings, port).claimed == 0


def test_with_the_retry_policy_an_unknown_message_is_sent_again_and_marked(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    box.drop_after_data = True
    retrying = settings.model_copy(update={"unknown_policy": "retry"})
    lead = add_lead(store, "ann@example.com", {})
    oid = queue(store, lead, "welcome_email")
    assert drain(store, retrying, port).deferred == 1
    r = row(store, oid)
    assert r.state == "pending" and r.uncertain and "may arrive twice" in r.last_error


def test_a_template_that_cannot_render_fails_with_the_reason_and_is_never_sent(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int], tmp_path: object
) -> None:
    box, port = smtp_box
    lead = add_lead(store, "ann@example.com", {})
    oid = queue(store, lead, "no_such_template")
    assert drain(store, settings, port).failed == 1
    assert "`no_such_template` is not in the published workspace" in row(store, oid).last_error
    assert not box.messages


class CutsAtRcpt(BoxHandler):
    """Drops the connection, without a reply, when one recipient is named."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == "cut@example.com":
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(0)
            return "421 closing"
        return await super().handle_RCPT(server, session, envelope, address, options)


def test_a_connection_dropped_before_data_retries_that_message_and_sends_the_rest(
    store: Engine, settings: Settings
) -> None:
    """A lot goes out as one run of transactions: the message the connection dropped under
    goes back to the outbox (its payload never left), and the lot's later messages go out over
    a new connection in the same drain, each once."""
    box = Box()
    port = free_port()
    controller = Controller(CutsAtRcpt(box), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        names = ["a@example.com", "b@example.com", "cut@example.com", "c@example.com"]
        ids = {
            name: queue(
                store,
                add_lead(store, name, {}, consent=False),
                "ebook_delivery",
                flow="ebook_nurture",
                step="deliver",
            )
            for name in names
        }
        options = SenderOptions(connections=1, lot=8, rate_per_domain=1e6)
        stats = drain(store, settings, port, options=options)
    finally:
        controller.stop()
    assert (stats.sent, stats.deferred) == (3, 1)
    cut = row(store, ids["cut@example.com"])
    assert cut.state == "pending" and "before DATA" in cut.last_error and not cut.uncertain
    assert sorted(e.rcpt_tos[0] for e in box.messages) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]


class MarkChecker(BoxHandler):
    """Looks in the store, when a payload arrives, for its row's mark."""

    def __init__(self, box: Box, engine: Engine) -> None:
        super().__init__(box)
        self.engine = engine
        self.unmarked: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mid = re.search(rb"(?mi)^message-id: (<[^>]+>)", raw)
        assert mid is not None
        with self.engine.connect() as conn:
            marked = conn.execute(
                select(Outbox.data_started_at).where(Outbox.message_id == mid.group(1).decode())
            ).scalar()
        if marked is None:
            self.unmarked.append(mid.group(1).decode())
        return await super().handle_DATA(server, session, envelope)


def test_every_row_is_marked_in_the_store_before_its_payload_goes_out(
    store: Engine, settings: Settings
) -> None:
    checker = MarkChecker(Box(), store)
    port = free_port()
    controller = Controller(checker, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for i in range(40):
            lead = add_lead(store, f"reader{i}@example{i % 3}.com", {}, consent=False)
            queue(store, lead, "ebook_delivery", flow="ebook_nurture", step="deliver")
        options = SenderOptions(connections=3, lot=4, batch=16, rate_per_domain=1e6)
        stats = drain(store, settings, port, options=options)
    finally:
        controller.stop()
    assert (stats.claimed, stats.sent) == (40, 40)
    assert len(checker.box.messages) == 40 and checker.unmarked == []
    with store.connect() as conn:
        states = conn.execute(select(Outbox.state, Outbox.data_started_at)).all()
    assert {s for s, _ in states} == {"sent"} and all(d is None for _, d in states)


def test_recovery_and_lease_renewal_skip_rows_another_transaction_holds(
    postgres_url: str,
) -> None:
    engine = published(postgres_url)
    try:
        lead = add_lead(engine, "ann@example.com", {})
        oid = queue(engine, lead, "welcome_email")
        with engine.begin() as conn:
            conn.execute(
                update(Outbox)
                .where(Outbox.id == oid)
                .values(
                    state="sending",
                    leased_until=NOW - timedelta(minutes=5),
                    data_started_at=NOW - timedelta(minutes=6),
                )
            )
        with engine.connect() as holder:
            holder.begin()
            holder.execute(select(Outbox.id).where(Outbox.id == oid).with_for_update())
            with engine.begin() as conn:
                # A wait for the held row would end in this error instead of skipping it.
                conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                assert outbox.claim(conn, NOW, 10, timedelta(minutes=1), retry_unknown=False) == []
                outbox.renew(conn, [oid], NOW + timedelta(hours=1))
            holder.rollback()
        assert row(engine, oid).state == "sending"
        with engine.begin() as conn:
            assert outbox.claim(conn, NOW, 10, timedelta(minutes=1), retry_unknown=False) == []
        r = row(engine, oid)
        assert r.state == "unknown" and r.uncertain  # its payload had started going out
    finally:
        engine.dispose()
