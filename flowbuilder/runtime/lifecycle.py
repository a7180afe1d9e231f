"""The runtime's side of the lead rules (stages, scoring, rule-fed lists, segments).

- **New facts** re-check only the rules they can change: the events pass hands each batch's events
  to `on_events`, in the same transaction that marks them processed.
- **Time** re-checks a lead when one of its windows slides, its score decays or a clock-reading
  rule may have turned: `leads.rules_due_at` holds that moment (`rules.next_check`), and
  `due_rules_pass` claims due leads in batches, as the due pass claims enrollments. An import or an
  attribute change sets it to now.
- **Publishing** new rules sets every lead due once (`rules_changed_pass`), so the whole population
  is classified by the new rules; segments whose condition compiles to SQL are computed with one
  query each (`flowbuilder.store.segments_sql`) and only the leads that move are loaded.
- **Population measures** (`top()`, RFM scores) are recomputed once a day (`population_pass`).

Every change is written with its reason: the lead row (stage, score), the membership tables, a
decision-log row without a flow, and an event (`stage.changed`, `segment.entered`, …) that
triggers and the lead's timeline see.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from flowbuilder.engine.facts import Event, LeadFacts
from flowbuilder.engine.rules import (
    Change,
    RuleId,
    RuleSet,
    account_event_types,
    membership_event,
    next_check,
    population_values,
    reevaluate,
)
from flowbuilder.store import clocks
from flowbuilder.store.bulk import among
from flowbuilder.store.facts import load_facts
from flowbuilder.store.published import Published
from flowbuilder.store.schema import Lead, PopulationRow, SegmentMember
from flowbuilder.store.segments_sql import members
from flowbuilder.store.writes import Batch

RULES_CLOCK = "rules"
POPULATION_CLOCK = "population"
CLOCKS = (RULES_CLOCK, POPULATION_CLOCK)

# Per publication (the `Published` object, which `store.published.current` keeps one of per
# database and publication): its rule set and the event types its account-wide exits read.
_compiled: dict[int, tuple[Published, RuleSet, frozenset[str]]] = {}


def _for(published: Published) -> tuple[Published, RuleSet, frozenset[str]]:
    found = _compiled.get(id(published))
    if found is None or found[0] is not published:
        if len(_compiled) > 16:
            _compiled.clear()
        found = (published, RuleSet.of(published.ws), account_event_types(published.ws))
        _compiled[id(published)] = found
    return found


def rules_for(published: Published) -> RuleSet:
    """The rule set of a publication, compiled once per process."""
    return _for(published)[1]


def account_types_for(published: Published) -> frozenset[str]:
    """The event types account-wide exits of the publication read."""
    return _for(published)[2]


def load(
    conn: Connection, published: Published, lead_ids: Iterable[int], now: datetime
) -> dict[int, LeadFacts]:
    """The leads as the interpreter and the rules read them: history, memberships, the stored
    population, and the events of their colleagues that account-wide exits read."""
    return load_facts(
        conn,
        list(lead_ids),
        published.ws,
        now,
        population=population(conn),
        account_types=account_types_for(published),
    )


def record(
    out: Batch, lead_id: int, facts: LeadFacts, changes: list[Change], now: datetime
) -> None:
    """Write what the rules changed for one lead, each change with its reason."""
    for change in changes:
        event = membership_event(change, now)
        out.decision(
            lead_id,
            None,
            None,
            None,
            change.what,
            change.reason,
            {"name": change.name, "from": change.before},
        )
        out.event(lead_id, change.what, now, dict(event.properties))
        match change.what:
            case "list.entered":
                out.lists.add(change.name)
                out.joins.append(
                    {
                        "list_name": change.name,
                        "lead_id": lead_id,
                        "added_at": now,
                        "reason": change.reason,
                    }
                )
            case "list.left":
                out.leaves.append((change.name, lead_id))
            case "segment.entered":
                out.segment_joins.append(
                    {
                        "segment": change.name,
                        "lead_id": lead_id,
                        "since": now,
                        "reason": change.reason,
                    }
                )
            case "segment.left":
                out.segment_leaves.append((change.name, lead_id))
            case "stage.changed":
                out.lead_values(lead_id, stage=change.name)


def check(
    rules: RuleSet,
    out: Batch,
    lead_id: int,
    facts: LeadFacts,
    now: datetime,
    only: Iterable[RuleId] | None,
) -> LeadFacts:
    """Re-check the lead's rules (`only` those, or all), record the changes, and keep its score
    and the moment its rules are next due."""
    before = facts.score
    facts, changes = reevaluate(rules, facts, now, only)
    record(out, lead_id, facts, changes, now)
    if facts.score != before:
        out.lead_values(lead_id, score=facts.score)
    out.lead_values(lead_id, rules_due_at=next_check(rules, facts, now))
    return facts


def on_events(
    conn: Connection,
    published: Published,
    events: Iterable[tuple[int, Event]],
    facts: dict[int, LeadFacts],
    out: Batch,
    now: datetime,
) -> None:
    """New facts: each lead's rules that its new events can change."""
    rules = rules_for(published)
    if rules.empty:
        return
    by_lead: dict[int, list[Event]] = defaultdict(list)
    for lead_id, event in events:
        by_lead[lead_id].append(event)
    for lead_id in sorted(by_lead):
        only = rules.affected_by(by_lead[lead_id])
        lead = facts.get(lead_id)
        if only and lead is not None:
            facts[lead_id] = check(rules, out, lead_id, lead, now, only)


def due_rules_pass(
    conn: Connection, published: Published, now: datetime, batch: int
) -> tuple[int, int]:
    """Leads whose rules are due (imported, changed, a window slid): all their rules.
    Returns (leads checked, changes made)."""
    rules = rules_for(published)
    rows = conn.execute(
        select(Lead.id)
        .where(Lead.rules_due_at <= now)
        .order_by(Lead.rules_due_at, Lead.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0, 0
    ids = [r.id for r in rows]
    out = Batch(now)
    if rules.empty:
        conn.execute(update(Lead).where(among(conn, Lead.id, ids)).values(rules_due_at=None))
        return len(ids), 0
    facts = load(conn, published, ids, now)
    for lead_id in ids:
        lead = facts.get(lead_id)
        if lead is not None:
            check(rules, out, lead_id, lead, now, None)
    changes = len(out.decisions)
    out.write(conn)
    return len(ids), changes


def rules_changed_pass(conn: Connection, published: Published, now: datetime) -> set[str]:
    """When the published rules differ from those the leads were last classified by: a new or
    changed segment is computed at once (one query when its condition compiles to SQL), and any
    other changed rule makes every lead due once. Returns the rules that changed."""
    rules = rules_for(published)
    current = rules.hashes()
    claimed = clocks.claim(conn, RULES_CLOCK)
    if claimed is None:
        return set()  # another worker is at it
    stored: dict[str, str] = json.loads(claimed.value) if claimed.value else {}
    if claimed.value is not None and stored == current:
        return set()
    changed = {key for key, digest in current.items() if stored.get(key) != digest}
    for key in set(stored) - set(current):
        if key.startswith("segment:"):  # a segment that is gone has no members
            segment = key.removeprefix("segment:")
            conn.execute(delete(SegmentMember).where(SegmentMember.segment == segment))
    if any(not key.startswith("segment:") for key in changed):
        conn.execute(update(Lead).values(rules_due_at=now))
    else:
        for key in sorted(changed):
            recompute_segment(conn, published, key.removeprefix("segment:"), now)
    clocks.advance(conn, RULES_CLOCK, now, json.dumps(current, sort_keys=True))
    return changed


def recompute_segment(conn: Connection, published: Published, name: str, now: datetime) -> int:
    """A segment's members computed afresh — in one query when its condition compiles to SQL —
    and the leads that enter or leave it recorded with their reasons. Returns how many moved."""
    ws = published.ws
    rules = rules_for(published)

    def facts_of(ids: list[int]) -> dict[int, LeadFacts]:
        return load(conn, published, ids, now)

    inside = members(conn, ws, ws.segments[name].condition, now, facts_of)
    stored = set(
        conn.execute(select(SegmentMember.lead_id).where(SegmentMember.segment == name)).scalars()
    )
    moved = sorted(inside ^ stored)
    for start in range(0, len(moved), 1000):
        chunk = moved[start : start + 1000]
        out = Batch(now)
        for lead_id, lead in facts_of(chunk).items():
            check(rules, out, lead_id, lead, now, [("segment", name)])
        out.write(conn)
    return len(moved)


_populations: dict[tuple[str, datetime | None], dict[str, list[float]]] = {}


def population(conn: Connection) -> dict[str, list[float]]:
    """The stored population measures (read again only when a population pass stored new ones)."""
    stamp = conn.execute(select(func.max(PopulationRow.computed_at))).scalar()
    if stamp is None:
        return {}
    key = (str(conn.engine.url), stamp)
    found = _populations.get(key)
    if found is None:
        _populations.clear()
        found = _populations[key] = {
            row.measure: list(row.values)
            for row in conn.execute(select(PopulationRow.measure, PopulationRow.values))
        }
    return found


def population_pass(
    conn: Connection, published: Published, now: datetime, *, every: timedelta = timedelta(days=1)
) -> bool:
    """Once a day (at the first tick after 00:00 UTC): every lead's value of each population
    measure, and the rules that rank leads by them due for everyone."""
    rules = rules_for(published)
    if not rules.measures:
        return False
    claimed = clocks.claim(conn, POPULATION_CLOCK)
    if claimed is None:
        return False  # another worker is ranking
    last = claimed.at if claimed.value else None  # `value` marks a ranking that ran
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if last and last >= day and now - last < every:
        return False
    ids = [i for (i,) in conn.execute(select(Lead.id).order_by(Lead.id))]
    values: dict[str, list[float]] = {key: [] for key in rules.measures}
    for start in range(0, len(ids), 1000):
        chunk = load_facts(conn, ids[start : start + 1000], published.ws, now, segments=False)
        for key, found in population_values(rules, chunk.values(), now).items():
            values[key].extend(found)
    conn.execute(delete(PopulationRow))
    if values:
        conn.execute(
            insert(PopulationRow),
            [{"measure": k, "values": sorted(v), "computed_at": now} for k, v in values.items()],
        )
    clocks.advance(conn, POPULATION_CLOCK, now, "ranked")
    if any(r.population for r in rules.reads.values()):
        conn.execute(update(Lead).values(rules_due_at=now))
    return True
