"""Facts in: leads (created or merged by normalized email) and events (stored once per key)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from flowbuilder.intake import EventIn, IntakeError, LeadIn
from flowbuilder.store.bulk import among
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead, ListRow, Membership, Outbox, Suppression
from flowbuilder.store.writes import insert_ignoring
from flowbuilder.wakeups import EVENTS, notify


@dataclass
class LeadsWritten:
    created: int = 0
    updated: int = 0


def upsert_leads(conn: Connection, leads: Sequence[LeadIn], now: datetime) -> LeadsWritten:
    """Create new leads; merge into existing ones (attributes overlaid, given fields replaced)."""
    result = LeadsWritten()
    if not leads:
        return result
    emails = [lead.email for lead in leads]
    existing = {
        row.email: row
        for chunk in _chunks(emails, 500)
        for row in conn.execute(select(Lead).where(Lead.email.in_(chunk)))
    }
    new_rows: list[dict[str, Any]] = []
    for lead in leads:
        row = existing.get(lead.email)
        if row is None:
            new_rows.append(
                {
                    "email": lead.email,
                    "attributes": dict(lead.attributes),
                    "timezone": lead.timezone,
                    "account": lead.account or _domain(lead.email),
                    "stage": lead.stage,
                    "score": 0.0,
                    "tags": [],
                    "consent": lead.consent or "unknown",
                    "unsubscribed": lead.consent == "withdrawn",
                    "created_at": now,
                    "updated_at": now,
                    "rules_due_at": now,  # a new lead is classified at the next tick
                }
            )
            continue
        values: dict[str, object] = {
            "attributes": {**(row.attributes or {}), **lead.attributes},
            "updated_at": now,
            "rules_due_at": now,  # new attributes may change its stage, lists and segments
        }
        for name in ("timezone", "account", "stage", "consent"):
            if getattr(lead, name) is not None:
                values[name] = getattr(lead, name)
        if lead.consent == "withdrawn":
            values["unsubscribed"] = True
        conn.execute(update(Lead).where(Lead.id == row.id).values(**values))
        result.updated += 1
    if new_rows:
        conn.execute(insert(Lead), new_rows)
        result.created += len(new_rows)
    withdrawn = [{"email": x.email} for x in leads if x.consent == "withdrawn"]
    for item in withdrawn:
        if conn.execute(
            select(Suppression.email).where(Suppression.email == item["email"])
        ).first():
            continue
        conn.execute(
            insert(Suppression).values(email=item["email"], reason="consent withdrawn", at=now)
        )
    return result


def add_to_list(
    conn: Connection, name: str, emails: Sequence[str], now: datetime, reason: str
) -> int:
    """Put leads on a list; each lead new to it gets a `list.entered` event (which triggers flows).
    Returns how many joined."""
    insert_ignoring(
        conn,
        ListRow.__table__,  # type: ignore[arg-type]
        [{"name": name, "kind": "manual", "created_at": now}],
    )
    ids = [
        i
        for chunk in _chunks(emails, 500)
        for (i,) in conn.execute(select(Lead.id).where(Lead.email.in_(chunk)))
    ]
    # Only the memberships of these leads: an import adds a list's members a chunk at a time.
    members = (
        {
            i
            for (i,) in conn.execute(
                select(Membership.lead_id).where(
                    Membership.list_name == name, among(conn, Membership.lead_id, ids)
                )
            )
        }
        if ids
        else set()
    )
    joining = sorted(set(ids) - members)
    if joining:
        conn.execute(
            insert(Membership),
            [{"list_name": name, "lead_id": i, "added_at": now, "reason": reason} for i in joining],
        )
        conn.execute(
            insert(EventRow),
            [
                {
                    "lead_id": i,
                    "type": "list.entered",
                    "at": now,
                    "properties": {"list": name},
                    "machine": False,
                    "received_at": now,
                    "pending": True,
                }
                for i in joining
            ],
        )
        notify(conn, EVENTS)  # idle workers match them at once (flowbuilder.wakeups)
    return len(joining)


def _domain(email: str) -> str:
    """The account a lead belongs to when none is given: its company domain."""
    return email.rpartition("@")[2]


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class EventsWritten:
    stored: int = 0
    duplicates: int = 0
    leads_created: int = 0
    rejected: list[IntakeError] = field(default_factory=list)


def record_events(
    conn: Connection,
    events: Sequence[EventIn],
    now: datetime,
    where: Callable[[int], str] = lambda i: f"event {i + 1}",
) -> EventsWritten:
    """Store events once per idempotency key. A lead named by `email` is created when unknown; a
    `lead_id` that does not exist rejects that event (and only that one)."""
    result = EventsWritten()
    emails = sorted({e.email for e in events if e.email is not None})
    ids_by_email = {
        row.email: row.id
        for chunk in _chunks(emails, 500)
        for row in conn.execute(select(Lead.id, Lead.email).where(among(conn, Lead.email, chunk)))
    }
    missing = [e for e in emails if e not in ids_by_email]
    if missing:
        upsert_leads(conn, [LeadIn(email=e) for e in missing], now)
        result.leads_created = len(missing)
        for chunk in _chunks(missing, 500):
            for row in conn.execute(select(Lead.id, Lead.email).where(Lead.email.in_(chunk))):
                ids_by_email[row.email] = row.id
    wanted_ids = sorted({e.lead_id for e in events if e.lead_id is not None})
    known_ids = (
        {i for (i,) in conn.execute(select(Lead.id).where(Lead.id.in_(wanted_ids)))}
        if wanted_ids
        else set()
    )
    keys = sorted({e.idempotency_key for e in events if e.idempotency_key})
    seen_keys = {
        k
        for chunk in _chunks(keys, 500)
        for (k,) in conn.execute(
            select(EventRow.idempotency_key).where(among(conn, EventRow.idempotency_key, chunk))
        )
    }
    messages = _messages(conn, sorted({e.message_key for e in events if e.message_key}))
    rows: list[dict[str, Any]] = []
    unsubscribed: list[int] = []
    for i, e in enumerate(events):
        if e.lead_id is not None and e.lead_id not in known_ids:
            result.rejected.append(IntakeError(where(i), f"no lead has id {e.lead_id}"))
            continue
        if e.idempotency_key:
            if e.idempotency_key in seen_keys:
                result.duplicates += 1
                continue
            seen_keys.add(e.idempotency_key)
        lead_id = e.lead_id if e.lead_id is not None else ids_by_email[e.email or ""]
        if e.type == "unsubscribe":
            unsubscribed.append(lead_id)
        flow, step = e.flow, e.step
        if e.message_key and flow is None and step is None:
            flow, step = messages.get(e.message_key, (None, None))
        rows.append(
            {
                "lead_id": lead_id,
                "type": e.type,
                "at": e.at or now,
                "properties": e.properties,
                "flow": flow,
                "step": step,
                "message_key": e.message_key,
                "machine": e.machine,
                "idempotency_key": e.idempotency_key,
                "received_at": now,
                "pending": True,
            }
        )
    if rows:
        conn.execute(insert(EventRow), rows)
        notify(conn, EVENTS)  # idle workers match them at once (flowbuilder.wakeups)
    result.stored = len(rows)
    if unsubscribed:
        _unsubscribe(conn, unsubscribed, now)
    return result


def _messages(conn: Connection, keys: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """The flow and step of each message key: an open of a message is an open of that step's email."""
    return {
        row.key: (row.flow, row.step)
        for chunk in _chunks(keys, 500)
        for row in conn.execute(
            select(Outbox.key, Outbox.flow, Outbox.step).where(Outbox.key.in_(chunk))
        )
    }


def _unsubscribe(conn: Connection, lead_ids: list[int], now: datetime) -> None:
    conn.execute(
        update(Lead).where(Lead.id.in_(lead_ids)).values(unsubscribed=True, updated_at=now)
    )
