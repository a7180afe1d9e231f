"""The inbound receiver: bounces, complaints, replies and `mailto:` unsubscribes.

An aiosmtpd server on `FLOWBUILDER_INBOUND_LISTEN` takes mail for the bounce and reply domains.
Each message is classified (`classify.classify`), attributed to the message it is about — by the
VERP address it was sent to (`bounce+<id>-<mac>@`, `reply+<id>-<mac>@`), else by the Message-IDs
it names — stored in `inbound_messages`, and acted on:

| what | event | and |
|---|---|---|
| hard bounce | `bounce` (kind hard, status) | the address is suppressed |
| soft bounce | `bounce` (kind soft, status) | — |
| complaint (ARF) | `complaint` | the address is suppressed |
| reply | `reply` | sequences with `exit when replied()` stop |
| auto-reply, out of office | — | stored only |
| mail to `unsubscribe+<token>@` | `unsubscribe` | the lead is unsubscribed |

The address a report names is normalized as intake normalizes lead addresses
(`intake.normalize_email`): a DSN or ARF report names an internationalized domain in its ASCII
form (`user@xn--bcher-kva.example`), the lead is stored as `user@bücher.example`, and the
suppression must be of the address the sender checks. A Message-ID longer than the column
(255 characters) is stored, and looked up, as `sha256:` and its SHA-256 (`stored_id`), and its
event key is hashed as the sender's are (`outbox.event_key`): a message from outside is never
refused for its length, which would have its sender retry it forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection

from flowbuilder.intake import EventIn, normalize_email
from flowbuilder.mail import preferences
from flowbuilder.mail.classify import Classification, classify
from flowbuilder.mail.message import MailConfig
from flowbuilder.mail.outbox import event_key
from flowbuilder.mail.sink import _MID, header_of
from flowbuilder.mail.tracking import BadToken
from flowbuilder.store.ingest import record_events
from flowbuilder.store.schema import InboundMessage, Outbox, Suppression
from flowbuilder.store.writes import insert_ignoring

log = logging.getLogger("flowbuilder.mail.inbound")

# The longest Message-ID `inbound_messages.message_id` takes as it is.
MAX_MESSAGE_ID = 255
ADDRESS_MAX = 320  # `inbound_messages.mail_from` and `rcpt_to`
_HASHED = "sha256:"


@dataclass(frozen=True)
class Handled:
    kind: str
    outbox_id: int | None
    lead_id: int | None
    event: str | None
    note: str


def stored_id(message_id: str) -> str:
    """A Message-ID as `inbound_messages` stores it and is searched by: as it is when it fits,
    else `sha256:` and its SHA-256 (so is a literal one that begins so: never mistaken for a
    hashed one).

    >>> stored_id("<dsn-1@mx.google.com>")
    '<dsn-1@mx.google.com>'
    >>> long = stored_id("<" + "x" * 300 + "@example.com>")
    >>> len(long), long[:7]
    (71, 'sha256:')
    """
    if len(message_id) <= MAX_MESSAGE_ID and not message_id.startswith(_HASHED):
        return message_id
    return _HASHED + hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()


def reported_address(address: str) -> str:
    """The address a report names, as leads and suppressions are keyed: normalized as intake
    does (an IDNA domain in its Unicode form, lower case), or lower-cased when it is no
    address email-validator takes (suppressing it then is still right).

    >>> reported_address("User@XN--BCHER-KVA.example")
    'user@bücher.example'
    """
    try:
        return normalize_email(address)
    except ValueError:
        return address.strip().lower()


def _message_by_ids(conn: Connection, ids: list[str]) -> Any:
    if not ids:
        return None
    return conn.execute(select(Outbox).where(Outbox.message_id.in_(ids))).first()


def _by_address(conn: Connection, config: MailConfig, rcpt: str) -> tuple[str | None, Any]:
    local = rcpt.partition("@")[0].lower()
    for prefix in ("bounce+", "reply+"):
        if local.startswith(prefix):
            ident, _, mac = local.removeprefix(prefix).partition("-")
            if ident.isdigit() and mac == config.mac(int(ident)):
                row = conn.execute(select(Outbox).where(Outbox.id == int(ident))).first()
                return prefix.rstrip("+"), row
    return None, None


def handle(
    conn: Connection, config: MailConfig, mail_from: str, rcpt: str, raw: bytes, now: datetime
) -> Handled:
    """Classify, attribute, store and act on one inbound message for one recipient address."""
    message_id = header_of(raw, _MID)
    if (
        message_id
        and conn.execute(
            select(InboundMessage.id).where(InboundMessage.message_id == stored_id(message_id))
        ).first()
    ):
        return Handled("duplicate", None, None, None, f"{message_id} was handled before")
    local = rcpt.partition("@")[0]
    if local.lower().startswith("unsubscribe+"):
        return _mailto_unsubscribe(
            conn, config, local[len("unsubscribe+") :], mail_from, rcpt, raw, message_id, now
        )
    c = classify(raw)
    role, row = _by_address(conn, config, rcpt)
    if row is None:
        row = _message_by_ids(conn, c.refers_to)
    event = _event(c, row, message_id, now)
    if event is not None:
        record_events(conn, [event], now)
        if c.kind == "complaint" or (c.kind == "bounce" and c.bounce == "hard"):
            address = c.recipient or (row.recipient if row is not None else None)
            if address:
                why = "complaint (ARF)" if c.kind == "complaint" else f"hard bounce {c.status}"
                insert_ignoring(
                    conn,
                    Suppression.__table__,  # type: ignore[arg-type]
                    [{"email": reported_address(address), "reason": why, "at": now}],
                )
    _store(
        conn,
        c.kind,
        c.detail() | ({"via": role} if role else {}),
        mail_from,
        rcpt,
        message_id,
        row,
        raw,
        now,
    )
    return Handled(
        c.kind,
        row.id if row is not None else None,
        row.lead_id if row is not None else None,
        event.type if event is not None else None,
        c.reason,
    )


def _event(c: Classification, row: Any, message_id: str | None, now: datetime) -> EventIn | None:
    if row is None or row.test:
        return None
    key = event_key("inbound", message_id) if message_id else None
    if c.kind == "bounce":
        props: dict[str, object] = {"kind": c.bounce, "status": c.status}
        if c.diagnostic:
            props["diagnostic"] = c.diagnostic[:300]
    elif c.kind == "complaint":
        props = {"feedback_type": c.feedback_type}
    elif c.kind == "reply":
        props = {"subject": (c.subject or "")[:200]}
    else:
        return None
    return EventIn(
        type=c.kind,
        lead_id=row.lead_id,
        at=now,
        properties=props,
        flow=row.flow,
        step=row.step,
        message_key=row.key,
        idempotency_key=key,
    )


def _store(
    conn: Connection,
    kind: str,
    detail: dict[str, object],
    mail_from: str,
    rcpt: str,
    message_id: str | None,
    row: Any,
    raw: bytes,
    now: datetime,
) -> None:
    conn.execute(
        insert(InboundMessage).values(
            kind=kind,
            detail=detail,
            # as received, cut to the columns (a longer envelope address is not a real one)
            mail_from=mail_from[:ADDRESS_MAX],
            rcpt_to=rcpt[:ADDRESS_MAX],
            message_id=stored_id(message_id) if message_id else None,
            outbox_id=row.id if row is not None else None,
            lead_id=row.lead_id if row is not None else None,
            raw=raw,
            received_at=now,
        )
    )


def _mailto_unsubscribe(
    conn: Connection,
    config: MailConfig,
    token: str,
    mail_from: str,
    rcpt: str,
    raw: bytes,
    message_id: str | None,
    now: datetime,
) -> Handled:
    try:
        outbox_id = config.tokens.read_reader(token)
    except BadToken:
        _store(
            conn,
            "other",
            {"reason": "an unsubscribe address with a bad token"},
            mail_from,
            rcpt,
            message_id,
            None,
            raw,
            now,
        )
        return Handled("other", None, None, None, "bad unsubscribe token")
    who = preferences.reader(conn, outbox_id)
    row = conn.execute(select(Outbox).where(Outbox.id == outbox_id)).first()
    changed = who is not None and preferences.unsubscribe(
        conn, who, now, method="mailto", evidence={"from": mail_from}
    )
    _store(conn, "unsubscribe", {"changed": changed}, mail_from, rcpt, message_id, row, raw, now)
    return Handled(
        "unsubscribe",
        outbox_id,
        who.lead_id if who else None,
        "unsubscribe" if changed else None,
        "mailto unsubscribe",
    )


class InboundHandler:
    """aiosmtpd handler: one transaction per message and recipient."""

    def __init__(
        self, engine: Engine, config: MailConfig, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))

    def _handle(self, mail_from: str, rcpts: list[str], raw: bytes) -> list[Handled]:
        out = []
        for rcpt in rcpts:
            with self.engine.begin() as conn:
                out.append(handle(conn, self.config, mail_from, rcpt, raw, self.clock()))
        return out

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        try:
            handled = await asyncio.to_thread(
                self._handle, envelope.mail_from or "", list(envelope.rcpt_tos), raw
            )
        except Exception:
            log.exception("inbound message not stored", extra={"action": "inbound"})
            return "451 4.3.0 cannot store the message now; try again later"
        for h in handled:
            log.info(
                "inbound %s",
                h.kind,
                extra={"action": "inbound", "kind": h.kind, "outbox": h.outbox_id},
            )
        return "250 OK"
