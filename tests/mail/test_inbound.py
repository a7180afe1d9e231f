"""The inbound receiver over real SMTP: bounces suppress, complaints suppress, replies become
`reply` events that stop sequences, auto-replies are only stored, and mailto unsubscribes work."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import Engine, select, update

from flowbuilder.config import Settings
from flowbuilder.mail.inbound import InboundHandler
from flowbuilder.mail.sender import mail_config
from flowbuilder.mail.sink import serve
from flowbuilder.mail.tracking import Tokens
from flowbuilder.store.schema import Event, InboundMessage, Lead, Outbox, Suppression
from tests.mail.conftest import add_lead, queue

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
OURS = "<5e8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d@acme.example>"


@pytest.fixture
def sent(store: Engine) -> dict[str, Any]:
    lead = add_lead(store, "jane.doe.1987@gmail.com", {})
    oid = queue(store, lead, "cold_interest", flow="cold_outreach", step="interest")
    with store.begin() as conn:
        conn.execute(
            update(Outbox)
            .where(Outbox.id == oid)
            .values(state="sent", message_id=OURS, recipient="jane.doe.1987@gmail.com")
        )
    return {"id": oid, "lead": lead}


def deliver(store: Engine, settings: Settings, rcpt: str, raw: bytes, mail_from: str = "") -> None:
    async def go() -> None:
        server = await serve(InboundHandler(store, mail_config(settings)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            # Bounces come from the null sender, MAIL FROM:<>.
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
            await smtp.connect()
            await smtp.mail(mail_from)
            await smtp.rcpt(rcpt)
            await smtp.data(raw)
            await smtp.quit()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(go())


def ours(name: str) -> bytes:
    """A corpus message rewritten to be about our message (its quoted Message-ID)."""
    raw = (CORPUS / f"{name}.eml").read_bytes()
    return re.sub(rb"(?m)^(Message-ID: )<\d+@acme\.example>", rb"\1" + OURS.encode(), raw)


def kinds(store: Engine) -> list[tuple[str, str]]:
    with store.connect() as conn:
        return [
            (r.type, r.step)
            for r in conn.execute(
                select(Event.type, Event.step).where(
                    Event.type.in_(("bounce", "complaint", "reply"))
                )
            )
        ]


def test_a_hard_bounce_is_attributed_by_its_quoted_message_and_suppresses(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    deliver(store, settings, "postmaster@bounces.acme.example", ours("dsn_gmail_no_such_user"))
    assert kinds(store) == [("bounce", "interest")]
    with store.connect() as conn:
        assert conn.execute(select(Suppression.email)).scalar_one() == "jane.doe.1987@gmail.com"
        stored = conn.execute(select(InboundMessage)).one()
    assert (
        stored.kind == "bounce"
        and stored.outbox_id == sent["id"]
        and stored.detail["status"] == "5.1.1"
    )


def test_the_verp_address_attributes_a_bounce_that_quotes_nothing(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    config = mail_config(settings)
    verp = config.verp(sent["id"], "hello@acme.example")
    deliver(store, settings, verp, (CORPUS / "exim_failure.eml").read_bytes())
    assert kinds(store) == [("bounce", "interest")]


def test_a_soft_bounce_is_recorded_but_does_not_suppress(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    deliver(store, settings, "postmaster@bounces.acme.example", ours("dsn_mailbox_full"))
    with store.connect() as conn:
        bounce = conn.execute(select(Event).where(Event.type == "bounce")).one()
        assert not conn.execute(select(Suppression.email)).all()
    assert bounce.properties["kind"] == "soft"


def test_a_complaint_suppresses_and_a_reply_becomes_a_reply_event(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    deliver(store, settings, "fbl@bounces.acme.example", ours("arf_yahoo_abuse"))
    deliver(
        store, settings, "reply+x@reply.acme.example", (CORPUS / "reply_gmail.eml").read_bytes()
    )
    deliver(
        store, settings, "reply+x@reply.acme.example", (CORPUS / "ooo_exchange.eml").read_bytes()
    )
    assert sorted(kinds(store)) == [("complaint", "interest"), ("reply", "interest")]
    with store.connect() as conn:
        stored = [
            r.kind for r in conn.execute(select(InboundMessage.kind).order_by(InboundMessage.id))
        ]
        assert conn.execute(select(Suppression.reason)).scalar_one() == "complaint (ARF)"
    assert stored == ["complaint", "reply", "auto_reply"]


def test_the_same_report_twice_is_taken_once(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    raw = ours("dsn_gmail_no_such_user")
    deliver(store, settings, "postmaster@bounces.acme.example", raw)
    deliver(store, settings, "postmaster@bounces.acme.example", raw)
    assert len(kinds(store)) == 1


def test_mail_to_the_unsubscribe_address_unsubscribes(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    token = Tokens(settings.secret()).reader(sent["id"])
    message = b"From: jane.doe.1987@gmail.com\r\nTo: x\r\nSubject: unsubscribe\r\nMessage-ID: <u1@gmail.com>\r\n\r\n\r\n"
    deliver(store, settings, f"unsubscribe+{token}@reply.acme.example", message)
    with store.connect() as conn:
        assert conn.execute(select(Lead.unsubscribed).where(Lead.id == sent["lead"])).scalar_one()


IDN_LEAD = "user@bücher.example"  # as intake stores it (email-validator's Unicode form)
IDN_REPORTED = b"user@xn--bcher-kva.example"  # as the receiving MTA's report names it


@pytest.mark.parametrize(
    ("name", "rcpt", "about"),
    [
        ("dsn_gmail_no_such_user", "postmaster@bounces.acme.example", b"jane.doe.1987@gmail.com"),
        ("arf_yahoo_abuse", "fbl@bounces.acme.example", b"reader@yahoo.com"),
    ],
)
def test_a_report_naming_an_idn_address_in_ascii_suppresses_the_lead_as_stored(
    store: Engine, settings: Settings, name: str, rcpt: str, about: bytes
) -> None:
    """A hard bounce or a complaint names the domain in its ASCII form (IDNA); the suppression
    is of the address the lead has, the one the sender checks before each message."""
    lead = add_lead(store, IDN_LEAD, {})
    oid = queue(store, lead, "cold_interest", flow="cold_outreach", step="interest")
    with store.begin() as conn:
        conn.execute(
            update(Outbox)
            .where(Outbox.id == oid)
            .values(state="sent", message_id=OURS, recipient=IDN_LEAD)
        )
        stored = conn.execute(select(Lead.email).where(Lead.id == lead)).scalar_one()
    report = ours(name).replace(about, IDN_REPORTED)
    assert IDN_REPORTED in report and about not in report
    deliver(store, settings, rcpt, report)
    assert [k for k, _ in kinds(store)] == ["bounce" if name.startswith("dsn") else "complaint"]
    with store.connect() as conn:
        assert conn.execute(select(Suppression.email)).scalar_one() == stored == IDN_LEAD


def test_a_message_id_longer_than_the_column_is_taken_once_and_not_refused(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    """A Message-ID from outside may be longer than the 255 characters the column and the
    event key take: the message is stored and acted on (not answered 451 again and again, which
    has its sender retry it forever), and the same message again is still a duplicate."""
    long_id = "<" + "x" * 400 + "@mx.google.com>"
    raw = ours("dsn_gmail_no_such_user").replace(
        b"<dsn-dsn_gmail_no_such_user@mx.google.com>", long_id.encode()
    )
    assert long_id.encode() in raw
    deliver(store, settings, "postmaster@bounces.acme.example", raw)
    deliver(store, settings, "postmaster@bounces.acme.example", raw)
    other = raw.replace(long_id.encode(), long_id.replace("x@", "y@").encode())
    deliver(store, settings, "postmaster@bounces.acme.example", other)  # another report
    with store.connect() as conn:
        stored = conn.execute(select(InboundMessage).order_by(InboundMessage.id)).all()
        bounces = conn.execute(select(Event).where(Event.type == "bounce")).all()
    assert len(stored) == 2 and all(len(s.message_id) <= 255 for s in stored)
    assert stored[0].message_id != stored[1].message_id
    assert stored[0].outbox_id == sent["id"] and stored[0].kind == "bounce"
    assert len(bounces) == 2 and all(len(b.idempotency_key) <= 255 for b in bounces)


def test_an_envelope_sender_longer_than_the_column_is_stored_cut_and_not_refused(
    store: Engine, settings: Settings, sent: dict[str, Any]
) -> None:
    """A reply from an envelope address longer than any real one (the column holds 320
    characters) is still taken and acted on, never answered 451 again and again."""
    sender = "r" * 380 + "@example.com"
    deliver(
        store, settings, "postmaster@bounces.acme.example", ours("dsn_gmail_no_such_user"), sender
    )
    with store.connect() as conn:
        stored = conn.execute(select(InboundMessage)).all()
    assert len(stored) == 1
    assert stored[0].mail_from == sender[:320] and stored[0].kind == "bounce"
