"""Unsubscribe and the preference center: what a reader may change, and what it changes.

A reader reaches these through the signed token of a message (`Tokens.reader`): the one-click
POST of RFC 8058, the unsubscribe page, the preference center or the `mailto:` unsubscribe. Every
change is honoured at once — the sender reads it before each message — and is recorded: an
`unsubscribe` event attributed to the message's flow and step, a consent record for the
withdrawal, the chosen topics and frequency with the optional reason. A test message never
changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.intake import EventIn
from flowbuilder.mail.consent import record_consent
from flowbuilder.mail.gate import FREQUENCIES
from flowbuilder.mail.outbox import event_key
from flowbuilder.store.ingest import record_events
from flowbuilder.store.schema import Lead, Outbox, Preference

REASONS = {
    "too_many": "Too many emails",
    "not_relevant": "Not relevant to me",
    "never_signed_up": "I never signed up",
    "other": "Something else",
}
WITHDRAWAL = "Unsubscribed from all marketing email through the link in a message."
# The longest outbox key a consent record's `source` quotes in full (the column takes 255
# characters); a longer one is quoted by its beginning and its end (`cite`).
CITED_KEY = 120


class ReaderError(ValueError):
    """A preference form with a field flowbuilder cannot take; the message names the field."""


@dataclass(frozen=True)
class Reader:
    """The reader behind one message, as the pages show them."""

    outbox_id: int
    lead_id: int
    email: str
    flow: str
    step: str | None
    key: str
    test: bool
    unsubscribed: bool
    topics_off: frozenset[str]
    frequency: str
    reason: str | None
    sent_at: datetime | None


def reader(conn: Connection, outbox_id: int) -> Reader | None:
    row = conn.execute(
        select(
            Outbox.id,
            Outbox.lead_id,
            Outbox.flow,
            Outbox.step,
            Outbox.key,
            Outbox.test,
            Outbox.sent_at,
            Lead.email,
            Lead.unsubscribed,
        )
        .join(Lead, Lead.id == Outbox.lead_id)
        .where(Outbox.id == outbox_id)
    ).first()
    if row is None:
        return None
    pref = conn.execute(select(Preference).where(Preference.lead_id == row.lead_id)).first()
    return Reader(
        outbox_id=row.id,
        lead_id=row.lead_id,
        email=row.email,
        flow=row.flow,
        step=row.step,
        key=row.key,
        test=bool(row.test),
        unsubscribed=bool(row.unsubscribed),
        topics_off=frozenset(pref.topics_off or ()) if pref else frozenset(),
        frequency=pref.frequency if pref else "all",
        reason=pref.reason if pref else None,
        sent_at=row.sent_at,
    )


def cite(key: str) -> str:
    """An outbox key as a consent record's `source` quotes it: whole up to `CITED_KEY`
    characters, else its beginning and its end around `…` (the event of the change keeps the
    whole key in `message_key`).

    >>> cite("42/welcome/2026-03-03/hello/0")
    '42/welcome/2026-03-03/hello/0'
    >>> short = cite("k" * 200 + "/ann1")
    >>> len(short), short[-8:]
    (120, 'kkk/ann1')
    """
    if len(key) <= CITED_KEY:
        return key
    tail = CITED_KEY // 3
    return f"{key[: CITED_KEY - tail - 1]}…{key[-tail:]}"


def topics(ws: ir.Workspace) -> dict[str, str]:
    """The preference center's topics: every template topic, with a readable name."""
    found: dict[str, str] = {}
    for t in ws.templates.values():
        if t.topic and t.message_class == "marketing":
            found.setdefault(t.topic, t.topic.replace("_", " ").capitalize())
    return dict(sorted(found.items()))


def unsubscribe(
    conn: Connection,
    who: Reader,
    now: datetime,
    *,
    method: str,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Unsubscribe the reader from all marketing email; False for a test message (no change)."""
    if who.test:
        return False
    if reason is not None and reason not in REASONS:
        raise ReaderError(f"`reason`: `{reason}` is not one of {', '.join(REASONS)}")
    if not who.unsubscribed:
        record_events(
            conn,
            [
                EventIn(
                    type="unsubscribe",
                    lead_id=who.lead_id,
                    at=now,
                    properties={"method": method, **({"reason": reason} if reason else {})},
                    flow=who.flow,
                    step=who.step,
                    message_key=who.key,
                    idempotency_key=event_key("unsubscribe", who.key),
                )
            ],
            now,
        )
        record_consent(
            conn,
            who.lead_id,
            scope="marketing",
            granted=False,
            who=who.email,
            source=f"unsubscribe ({method[:40]}) from message {cite(who.key)}",
            wording=WITHDRAWAL,
            at=now,
            now=now,
            evidence=evidence,
        )
    if reason:
        _save(conn, who, now, topics_off=who.topics_off, frequency=who.frequency, reason=reason)
    return True


def update_preferences(
    conn: Connection,
    who: Reader,
    ws: ir.Workspace,
    now: datetime,
    *,
    topics_kept: list[str],
    frequency: str,
    reason: str | None,
) -> bool:
    """Keep only `topics_kept` of the workspace's topics, at `frequency`; False for a test message."""
    known = topics(ws)
    unknown = [t for t in topics_kept if t not in known]
    if unknown:
        raise ReaderError(f"`topics`: `{unknown[0]}` is not a topic; topics: {', '.join(known)}")
    if frequency not in FREQUENCIES:
        raise ReaderError(f"`frequency`: `{frequency}` is not one of {', '.join(FREQUENCIES)}")
    if reason is not None and reason not in REASONS:
        raise ReaderError(f"`reason`: `{reason}` is not one of {', '.join(REASONS)}")
    if who.test:
        return False
    off = sorted(set(known) - set(topics_kept))
    _save(conn, who, now, topics_off=frozenset(off), frequency=frequency, reason=reason)
    return True


def resubscribe(conn: Connection, who: Reader, now: datetime, *, wording: str) -> bool:
    """The reader opts back in from the preference center: a new consent record."""
    if who.test:
        return False
    conn.execute(
        update(Lead).where(Lead.id == who.lead_id).values(unsubscribed=False, updated_at=now)
    )
    record_consent(
        conn,
        who.lead_id,
        scope="marketing",
        granted=True,
        who=who.email,
        source=f"preference center, from message {cite(who.key)}",
        wording=wording,
        at=now,
        now=now,
    )
    return True


def _save(
    conn: Connection,
    who: Reader,
    now: datetime,
    *,
    topics_off: frozenset[str],
    frequency: str,
    reason: str | None,
) -> None:
    values = {
        "topics_off": sorted(topics_off),
        "frequency": frequency,
        "reason": reason,
        "updated_at": now,
    }
    exists = conn.execute(
        select(Preference.lead_id).where(Preference.lead_id == who.lead_id)
    ).first()
    if exists:
        conn.execute(update(Preference).where(Preference.lead_id == who.lead_id).values(**values))
    else:
        conn.execute(insert(Preference).values(lead_id=who.lead_id, **values))
