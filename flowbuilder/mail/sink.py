"""The built-in SMTP sink: where mail goes when no relay is configured.

An aiosmtpd server on `FLOWBUILDER_SINK_LISTEN` (127.0.0.1:2526 by default) accepts every message
and stores it, as a final delivery would, with the envelope sender as `Return-Path`, in
`captured_messages` — linked to its outbox row by Message-ID — for the web app and
`flowbuilder outbox`. So a fresh machine shows real messages without sending any.

It announces PIPELINING (RFC 2920), as the relays of production do (Postfix, Gmail, SendGrid),
so the sender talks to it as it talks to them: aiosmtpd reads one command after the other off
the connection's buffer, and commands that came at once are answered in order.
"""

from __future__ import annotations

import asyncio
import email.header
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, insert, select

from flowbuilder.store.schema import CapturedMessage, Outbox

_MID = re.compile(rb"^message-id:\s*(<[^>\r\n]+>)", re.I | re.M)
_SUBJECT = re.compile(rb"^subject:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def header_of(raw: bytes, pattern: re.Pattern[bytes]) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    match = pattern.search(head)
    if match is None:
        return None
    value = re.sub(rb"\r?\n[ \t]", b" ", match.group(1)).strip()
    return value.decode("ascii", "replace")


def decoded_subject(raw: bytes) -> str | None:
    value = header_of(raw, _SUBJECT)
    if value is None:
        return None
    return str(email.header.make_header(email.header.decode_header(value)))


def capture(engine: Engine, mail_from: str, rcpt_tos: list[str], raw: bytes, now: datetime) -> int:
    """Store one message as the sink received it; returns its id."""
    message_id = header_of(raw, _MID)
    data = f"Return-Path: <{mail_from}>\r\n".encode() + raw
    with engine.begin() as conn:
        outbox_id = (
            conn.execute(select(Outbox.id).where(Outbox.message_id == message_id)).scalar()
            if message_id
            else None
        )
        return int(
            conn.execute(
                insert(CapturedMessage)
                .values(
                    outbox_id=outbox_id,
                    message_id=message_id,
                    mail_from=mail_from,
                    rcpt_tos=list(rcpt_tos),
                    subject=decoded_subject(raw),
                    raw=data,
                    captured_at=now,
                )
                .returning(CapturedMessage.id)
            ).scalar_one()
        )


def with_pipelining(session: Session, hostname: str, responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO reply (`responses`, its last line `250 HELP`) with PIPELINING announced:
    the body of a handler's `handle_EHLO` hook, which must also name the client's host."""
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class SinkHandler:
    """aiosmtpd handler: capture every message into the store."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))
        self.captured = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return with_pipelining(session, hostname, responses)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        await asyncio.to_thread(
            capture,
            self.engine,
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            raw,
            self.clock(),
        )
        self.captured += 1
        return "250 OK captured"


def parse_listen(value: str, setting: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{setting}: `{value}` is not host:port, such as 127.0.0.1:2526")
    return host or "127.0.0.1", int(port)


async def serve(handler: Any, host: str, port: int) -> asyncio.Server:
    """An aiosmtpd server for `handler` on this event loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, data_size_limit=25 * 1024 * 1024, enable_SMTPUTF8=True),
        host=host,
        port=port,
    )
