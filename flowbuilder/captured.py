"""Reading the mail the built-in SMTP sink captured: the list, and one message's headers and parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from flowbuilder.store.schema import CapturedMessage, Outbox

PAGE = 50


@dataclass(frozen=True)
class Summary:
    id: int
    to: str
    subject: str
    captured_at: datetime
    flow: str | None
    step: str | None


@dataclass
class Message:
    summary: Summary
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None
    size: int
    attachments: list[str] = field(default_factory=list)


def listing(
    conn: Connection, page: int = 1, lead_email: str | None = None
) -> tuple[list[Summary], int]:
    """Captured messages, newest first, and how many there are."""
    query = select(
        CapturedMessage.id,
        CapturedMessage.rcpt_tos,
        CapturedMessage.subject,
        CapturedMessage.captured_at,
        Outbox.flow,
        Outbox.step,
    ).outerjoin(Outbox, Outbox.id == CapturedMessage.outbox_id)
    rows = conn.execute(
        query.order_by(CapturedMessage.captured_at.desc(), CapturedMessage.id.desc())
        .limit(PAGE)
        .offset((max(page, 1) - 1) * PAGE)
    ).all()
    total = conn.execute(select(func.count()).select_from(CapturedMessage)).scalar_one()
    out = [
        Summary(
            r.id,
            ", ".join(r.rcpt_tos or []),
            r.subject or "(no subject)",
            r.captured_at,
            r.flow,
            r.step,
        )
        for r in rows
        if lead_email is None or lead_email in (r.rcpt_tos or [])
    ]
    return out, int(total)


def for_outbox(conn: Connection, outbox_ids: list[int]) -> dict[int, int]:
    """The captured message of each outbox row that has one."""
    if not outbox_ids:
        return {}
    return {
        int(o or 0): int(m)
        for m, o in conn.execute(
            select(CapturedMessage.id, CapturedMessage.outbox_id).where(
                CapturedMessage.outbox_id.in_(outbox_ids)
            )
        )
    }


def read(conn: Connection, message_id: int) -> Message | None:
    captured = conn.execute(select(CapturedMessage).where(CapturedMessage.id == message_id)).first()
    if captured is None:
        return None
    flow = step = None
    if captured.outbox_id is not None:
        sent = conn.execute(
            select(Outbox.flow, Outbox.step).where(Outbox.id == captured.outbox_id)
        ).first()
        if sent is not None:
            flow, step = sent.flow, sent.step
    parsed = message_from_bytes(captured.raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    html = parsed.get_body(preferencelist=("html",))
    text = parsed.get_body(preferencelist=("plain",))
    attachments = [a.get_filename() or "attachment" for a in parsed.iter_attachments()]
    return Message(
        Summary(
            captured.id,
            ", ".join(captured.rcpt_tos or []),
            captured.subject or str(parsed.get("subject", "(no subject)")),
            captured.captured_at,
            flow,
            step,
        ),
        [(k, str(v)) for k, v in parsed.items()],
        html.get_content() if html is not None else None,
        text.get_content() if text is not None else None,
        len(captured.raw),
        attachments,
    )
