"""Loading what the interpreter reads — leads, their events, lists, segments — for many leads at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.engine.facts import Event, LeadFacts, Population, lead_facts
from flowbuilder.store.bulk import among
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead, Membership, SegmentMember, Suppression


def lead_key(lead_id: int) -> str:
    """Leads are `str` ids in the interpreter (its idempotency keys are text)."""
    return str(lead_id)


def to_event(row: Any) -> Event:
    return Event(row.type, row.at, row.properties or {}, row.flow, row.step, bool(row.machine))


# What an event of a lead's history is read from.
_EVENT_COLUMNS = (
    EventRow.lead_id,
    EventRow.type,
    EventRow.at,
    EventRow.properties,
    EventRow.flow,
    EventRow.step,
    EventRow.machine,
)


# What decisions and the send-time checks read of a lead, in this order (the sender reads rows
# positionally).
LEAD_COLUMNS = (
    Lead.id,
    Lead.email,
    Lead.attributes,
    Lead.stage,
    Lead.score,
    Lead.tags,
    Lead.timezone,
    Lead.account,
    Lead.unsubscribed,
)


def load_facts(
    conn: Connection,
    lead_ids: Collection[int],
    ws: ir.Workspace,
    now: datetime,
    *,
    event_types: Collection[str] | None = None,
    history_of: Mapping[int, Mapping[str, datetime | None]] | None = None,
    segments: bool = True,
    population: Mapping[str, Sequence[float]] | None = None,
    account_types: Collection[str] = (),
) -> dict[int, LeadFacts]:
    """LeadFacts for every lead in `lead_ids` (five queries, whatever their number).

    `event_types` limits the events loaded (None: all of them) and `segments=False` skips
    segment membership, for passes that read neither. `history_of` narrows the history of the
    leads it names to the event types it maps, each since the moment it maps it to (None: all of
    them), with one more query per different narrowing. `population` is the stored population
    measures, for conditions that rank a lead among all others. `account_types` are the event
    types account-wide exits read: those of the leads' colleagues are loaded too."""
    if not lead_ids:
        return {}
    ids = sorted(set(lead_ids))
    leads = conn.execute(select(*LEAD_COLUMNS).where(among(conn, Lead.id, ids))).all()
    events: dict[int, list[Event]] = defaultdict(list)
    whole = [i for i in ids if i not in history_of] if history_of else ids
    query = select(*_EVENT_COLUMNS).where(among(conn, EventRow.lead_id, whole))
    if event_types is not None:
        query = query.where(EventRow.type.in_(sorted(event_types)))
    if whole and (event_types is None or event_types):
        for row in conn.execute(query.order_by(EventRow.at, EventRow.id)):
            events[row.lead_id].append(to_event(row))
    if history_of:
        _narrowed_history(conn, history_of, events)
    lists: dict[int, set[str]] = defaultdict(set)
    for lead_id, name in conn.execute(
        select(Membership.lead_id, Membership.list_name).where(among(conn, Membership.lead_id, ids))
    ):
        lists[lead_id].add(name)
    in_segments: dict[int, set[str]] = defaultdict(set)
    if segments:
        for lead_id, name in conn.execute(
            select(SegmentMember.lead_id, SegmentMember.segment).where(
                among(conn, SegmentMember.lead_id, ids)
            )
        ):
            in_segments[lead_id].add(name)
    shared = Population(population) if population else Population()
    colleagues = _account_events(conn, leads, account_types)
    suppressed = set(
        conn.execute(
            select(Suppression.email).where(
                among(conn, Suppression.email, [r.email for r in leads])
            )
        ).scalars()
    )
    out: dict[int, LeadFacts] = {}
    for lead in leads:
        facts = lead_facts(
            lead_id=lead_key(lead.id),
            attributes={**(lead.attributes or {}), "email": lead.email},
            events=tuple(events[lead.id]),
            lists=frozenset(lists[lead.id]),
            stage=lead.stage,
            score=lead.score,
            tags=frozenset(lead.tags or ()),
            timezone=lead.timezone,
            account=lead.account,
            unsubscribed=lead.unsubscribed,
            suppressed=lead.email in suppressed,
            segments=frozenset(in_segments[lead.id]),
            population=shared,
            account_events=tuple(
                e for other, e in colleagues.get(lead.account or "", ()) if other != lead.id
            ),
        )
        out[lead.id] = facts
    return out


def _narrowed_history(
    conn: Connection,
    history_of: Mapping[int, Mapping[str, datetime | None]],
    events: dict[int, list[Event]],
) -> None:
    """The events `history_of` names (see `load_facts`): one query for the leads that want the
    same, each lead's events in time order."""
    alike: dict[frozenset[tuple[str, datetime | None]], list[int]] = defaultdict(list)
    for lead_id, wanted in history_of.items():
        alike[frozenset(wanted.items())].append(lead_id)
    for same, lead_ids in alike.items():
        by_since: dict[datetime | None, list[str]] = defaultdict(list)
        for event_type, since in sorted(same, key=itemgetter(0)):
            by_since[since].append(event_type)
        parts = [
            EventRow.type.in_(types)
            if since is None
            else and_(EventRow.type.in_(types), EventRow.at > since)
            for since, types in by_since.items()
        ]
        if not parts:
            continue
        query = (
            select(*_EVENT_COLUMNS)
            .where(among(conn, EventRow.lead_id, lead_ids), or_(*parts))
            .order_by(EventRow.lead_id, EventRow.at, EventRow.id)  # the index's order
        )
        for row in conn.execute(query):
            events[row.lead_id].append(to_event(row))


def _account_events(
    conn: Connection, leads: Sequence[Any], types: Collection[str]
) -> dict[str, list[tuple[int, Event]]]:
    """Per account, the events of `types` of all its leads (with whose they are)."""
    accounts = sorted({lead.account for lead in leads if lead.account})
    if not types or not accounts:
        return {}
    out: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for row in conn.execute(
        select(EventRow, Lead.account)
        .join(Lead, Lead.id == EventRow.lead_id)
        .where(among(conn, Lead.account, accounts), EventRow.type.in_(sorted(types)))
        .order_by(EventRow.at, EventRow.id)
    ):
        out[row.account].append((row.lead_id, to_event(row)))
    return out


def lead_row_values(facts: LeadFacts) -> Mapping[str, Any]:
    """The columns of `leads` that decisions can change, from the lead's facts after them."""
    attributes = {k: v for k, v in facts.attributes.items() if k != "email"}
    return {
        "attributes": attributes,
        "stage": facts.stage,
        "score": facts.score,
        "tags": sorted(facts.tags),
    }
