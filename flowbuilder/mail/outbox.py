"""The sender's side of the outbox: claiming rows, marking the point of no return, writing results.

States of an email row:

| state | meaning |
|---|---|
| `pending` | to send, at `next_attempt_at` or now |
| `sending` | claimed by a sender until `leased_until` |
| `sent` | accepted by the relay (or captured by the sink); a `delivery` event is recorded |
| `held` | never sent, by a rule checked at send time (suppressed, unsubscribed, no consent …) |
| `failed` | never sent: the relay refused it for good (5xx), retries ran out, or it could not be rendered |
| `unknown` | the connection dropped after the relay's 354 to DATA: the relay may have it; held for review or retried |

A crash leaves claimed rows `sending`; once their lease runs out the next sender takes them over:
rows whose payload never started going out (`data_started_at` empty) are sent again, rows whose
payload had started are `unknown`, because the relay may already have accepted them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from flowbuilder.intake import EventIn
from flowbuilder.store.bulk import (
    among,
    driver_value,
    insert_converted,
    update_converted,
    update_rows,
)
from flowbuilder.store.schema import DecisionRow, Outbox
from flowbuilder.store.schema import Event as EventRow

STATES = ("pending", "sending", "sent", "held", "failed", "unknown")
# The longest idempotency key an event takes (`EventIn`, and the column of `events`).
MAX_EVENT_KEY = 255
_HASHED = "sha256:"


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    lead_id: int
    enrollment_id: int | None
    flow: str
    step: str | None
    template: str | None
    payload: dict[str, Any]
    attempts: int
    test: bool
    recipient: str | None
    uncertain: bool


def claim(
    conn: Connection,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    retry_unknown: bool,
    only: Sequence[int] | None = None,
) -> list[Claimed]:
    """Take up to `limit` due email rows (of `only`, when given) until `now + lease`."""
    _recover(conn, now, retry_unknown=retry_unknown)
    query = select(
        Outbox.id,
        Outbox.key,
        Outbox.lead_id,
        Outbox.enrollment_id,
        Outbox.flow,
        Outbox.step,
        Outbox.template,
        Outbox.payload,
        Outbox.attempts,
        Outbox.test,
        Outbox.recipient,
        Outbox.uncertain,
    )
    if only is not None:
        query = query.where(Outbox.id.in_(list(only)))
    rows = conn.execute(
        query.where(
            Outbox.channel == "email",
            or_(
                and_(
                    Outbox.state == "pending",
                    or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= now),
                ),
                and_(Outbox.state == "sending", Outbox.leased_until < now),
            ),
        )
        .order_by(Outbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    # One statement for the whole batch (the rows are locked on PostgreSQL; SQLite's writer
    # holds the database).
    conn.execute(
        update(Outbox)
        .where(among(conn, Outbox.id, [r[0] for r in rows]))
        .values(
            state="sending",
            leased_until=now + lease,
            attempts=Outbox.attempts + 1,
            updated_at=now,
        )
    )
    # Rows unpacked as tuples: reading a row's fields by name costs more than the rest here.
    return [
        Claimed(
            id_,
            key,
            lead_id,
            enrollment_id,
            flow,
            step,
            template,
            dict(payload or {}),
            attempts + 1,
            bool(test),
            recipient,
            bool(uncertain),
        )
        for (
            id_,
            key,
            lead_id,
            enrollment_id,
            flow,
            step,
            template,
            payload,
            attempts,
            test,
            recipient,
            uncertain,
        ) in rows
    ]


def _recover(conn: Connection, now: datetime, *, retry_unknown: bool) -> None:
    """Rows whose sender died after their payload began going out may have been delivered.

    Only rows no transaction holds are taken (`SKIP LOCKED`): a live sender writing results
    never waits on this, nor this on it, so the two cannot deadlock on PostgreSQL."""
    expired = (
        select(Outbox.id)
        .where(
            Outbox.channel == "email",
            Outbox.state == "sending",
            Outbox.leased_until < now,
            Outbox.data_started_at.is_not(None),
        )
        .with_for_update(skip_locked=True)
    )
    conn.execute(
        update(Outbox)
        .where(Outbox.id.in_(expired.scalar_subquery()))
        .values(
            state="pending" if retry_unknown else "unknown",
            uncertain=True,
            leased_until=None,
            data_started_at=None,
            next_attempt_at=None,
            last_error="the sender stopped while the message was going out; delivery unknown",
            updated_at=now,
        )
    )


def renew(conn: Connection, ids: Sequence[int], until: datetime) -> None:
    """Keep the lease of in-flight rows alive while they drain; a row whose result is being
    written (locked) needs none and is skipped rather than waited for."""
    if ids:
        held = (
            select(Outbox.id)
            .where(among(conn, Outbox.id, ids), Outbox.state == "sending")
            .with_for_update(skip_locked=True)
        )
        conn.execute(
            update(Outbox).where(Outbox.id.in_(held.scalar_subquery())).values(leased_until=until)
        )


def mark_data(conn: Connection, marks: Sequence[tuple[int, str]], now: datetime) -> None:
    """The payloads of these rows (id, Message-ID) are about to go out: from here on a crash
    leaves them `unknown` instead of sending them again."""
    update_rows(
        conn,
        Outbox.__table__,  # type: ignore[arg-type]
        [{"id": i, "data_started_at": now, "message_id": mid} for i, mid in sorted(marks)],
    )


@dataclass
class Result:
    """The outcome of one claimed row."""

    row: Claimed
    state: str  # sent / pending / held / failed / unknown
    reason: str
    recipient: str | None = None
    message_id: str | None = None
    subject: str | None = None
    links: list[dict[str, Any]] | None = None
    next_attempt_at: datetime | None = None
    relay: str | None = None
    bounce_status: str | None = None  # a 5xx at SMTP time: the recipient's address is refused
    consent_id: int | None = None
    events: list[EventIn] = field(default_factory=list)
    # False for a row put back before any try (paced, or deferred by the send-time checks): its
    # claim does not count as an attempt, which the retries' back-off and limit count.
    attempted: bool = True
    uncertain: bool = False  # it may have been delivered already (sent again after `unknown`)


_FINISHED = (
    "state",
    "updated_at",
    "leased_until",
    "next_attempt_at",
    "last_error",
    "recipient",
    "message_id",
    "subject",
    "links",
    "relay",
    "sent_at",
    "data_started_at",
    "uncertain",
    "id",
)
_DECIDED = ("enrollment_id", "lead_id", "flow", "step", "kind", "reason", "data", "at")
_EVENTS = (
    "lead_id",
    "type",
    "at",
    "properties",
    "flow",
    "step",
    "message_key",
    "machine",
    "idempotency_key",
    "received_at",
    "pending",
)


def finish(conn: Connection, results: Sequence[Result], now: datetime) -> None:
    """Write the outcomes, their events and their decision-log lines in one transaction.

    The rows are made as the driver takes them, each value converted once here (the moment
    `now`, shared by every row, only once): the journal writes every message's result, and
    building and converting dictionaries cost more than the three statements."""
    table = Outbox.__table__
    moment = driver_value(conn, table, "updated_at")  # type: ignore[arg-type]
    json = driver_value(conn, table, "links")  # type: ignore[arg-type]
    flag = driver_value(conn, table, "uncertain")  # type: ignore[arg-type]
    at = moment(now)
    rows: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    decisions: list[tuple[Any, ...]] = []
    for r in results:
        c = r.row
        sent = r.state == "sent"
        rows.append(
            (
                r.state,
                at,
                None,
                moment(r.next_attempt_at),
                None if sent else r.reason,
                r.recipient or c.recipient,
                r.message_id,
                r.subject,
                json(r.links),
                r.relay,
                at if sent else None,
                None,
                flag(c.uncertain or r.uncertain or r.state == "unknown"),
                c.id,
            )
        )
        for e in r.events:
            # The sender knows each event's lead, flow, step and message.
            events.append(
                (
                    e.lead_id,
                    e.type,
                    moment(e.at) if e.at is not None else at,
                    json(e.properties),
                    e.flow,
                    e.step,
                    e.message_key,
                    flag(e.machine),
                    e.idempotency_key,
                    at,
                    flag(True),
                )
            )
        if not c.test:
            decisions.append(
                (
                    c.enrollment_id,
                    c.lead_id,
                    c.flow,
                    c.step,
                    "deliver",
                    f"{r.state}: {r.reason}",
                    json(
                        {
                            "outbox": c.id,
                            "key": c.key,
                            "state": r.state,
                            "message_id": r.message_id,
                            "consent": r.consent_id,
                            "attempt": c.attempts,
                        }
                    ),
                    at,
                )
            )
    if rows:
        # In id order, as every writer of many rows locks them, so none waits on another in turn.
        rows.sort(key=itemgetter(-1))
        update_converted(conn, table, _FINISHED, rows)  # type: ignore[arg-type]
    untried = [r.row.id for r in results if not r.attempted]
    if untried:
        conn.execute(
            update(Outbox)
            .where(among(conn, Outbox.id, untried))
            .values(attempts=Outbox.attempts - 1)
        )
    insert_converted(conn, DecisionRow.__table__, _DECIDED, decisions)  # type: ignore[arg-type]
    # Written in one statement, once per idempotency key (a result written twice records its
    # event once).
    insert_converted(
        conn,
        EventRow.__table__,  # type: ignore[arg-type]
        _EVENTS,
        events,
        ignore_conflicts=True,
    )


def event_key(kind: str, outbox_key: str) -> str:
    """The idempotency key of the `kind` event of the message with this outbox key:
    `kind:outbox key`, or, when that is longer than an event key may be (outbox keys take up to
    255 characters), `kind:sha256:` and the key's SHA-256. The same row always gets the same
    key, and two rows never share one (a literal key is never mistaken for a hashed one).

    >>> event_key("delivery", "42/welcome/2026-03-03/hello/0")
    'delivery:42/welcome/2026-03-03/hello/0'
    >>> key = event_key("delivery", "k" * 255)
    >>> len(key), key[:16]
    (80, 'delivery:sha256:')
    """
    key = f"{kind}:{outbox_key}"
    if len(key) <= MAX_EVENT_KEY and not outbox_key.startswith(_HASHED):
        return key
    return f"{kind}:{_HASHED}{hashlib.sha256(outbox_key.encode()).hexdigest()}"


def mail_event(
    c: Claimed,
    type_: str,
    at: datetime,
    properties: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    machine: bool = False,
) -> EventIn:
    """An event about the message of outbox row `c`, attributed to its flow and step."""
    return EventIn(
        type=type_,
        lead_id=c.lead_id,
        at=at,
        properties=properties or {},
        flow=c.flow,
        step=c.step,
        message_key=c.key,
        machine=machine,
        idempotency_key=key,
    )
