"""The runtime's side of the lead rules (stages, scoring, rule-fed lists, segments).

- **New facts** re-check only the rules they can change: the events pass hands each batch's events
  to `on_events`, in the same transaction that marks them processed. Of such a lead,
  `load_for_events` loads only the part of its history those rules read (`InPart`).
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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from flowbuilder.engine.facts import Event, LeadFacts, lead_facts
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
from flowbuilder.store.schema import Event as EventRow
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
    conn: Connection,
    published: Published,
    lead_ids: Iterable[int],
    now: datetime,
    *,
    history_of: Mapping[int, Mapping[str, datetime | None]] | None = None,
) -> dict[int, LeadFacts]:
    """The leads as the interpreter and the rules read them: history (of the leads in
    `history_of`, only that part of it), memberships, the stored population, and the events of
    their colleagues that account-wide exits read."""
    return load_facts(
        conn,
        list(lead_ids),
        published.ws,
        now,
        history_of=history_of,
        population=population(conn),
        account_types=account_types_for(published),
    )


@dataclass(frozen=True)
class InPart:
    """A lead whose new events only its rules read, loaded with only the part of its history the
    rules those events can change (and those their changes can lead to) read.

    Its `rules_due_at`, `due`, is ahead: the next moment of all its rules, computed when its
    last events were handled. Such a moment stays what it is until it has passed (see
    `next_check`), so the lead's next moment is the earlier of `due` and that of its `events`,
    the new ones, alone — what `next_check` over its whole history gives, without reading it.
    With rules that read the clock, whose next look moves with every check, leads are loaded
    whole."""

    due: datetime
    stage: str | None  # the stage the part of the history was chosen for
    events: tuple[Event, ...]


def load_for_events(
    conn: Connection,
    published: Published,
    events: Sequence[tuple[int, Event]],
    whole: Collection[str],
    now: datetime,
) -> tuple[dict[int, LeadFacts], dict[int, InPart]]:
    """The leads that something must read for their new events: whole when one of them is of a
    type in `whole` (a trigger filter or an account-wide exit reads the lead), or when its rules
    are due or have no next moment; otherwise with only the part of its history that the rules
    its events can change read (`RuleSet.history_read`), returned as `InPart`. Leads whose events
    nothing reads are not loaded."""
    rules = rules_for(published)
    by_lead: dict[int, list[Event]] = defaultdict(list)
    for lead_id, event in events:
        by_lead[lead_id].append(event)
    full: set[int] = set()
    reached: dict[int, frozenset[RuleId]] = {}
    closures: dict[frozenset[RuleId], frozenset[RuleId]] = {}
    for lead_id, mine in by_lead.items():
        if any(e.type in whole for e in mine):
            full.add(lead_id)
            continue
        only = frozenset(rules.affected_by(mine))
        if only:
            found = closures.get(only)
            if found is None:
                found = closures[only] = rules.reached_from(only)
            reached[lead_id] = found
    parts: dict[int, InPart] = {}
    history_of: dict[int, dict[str, datetime | None]] = {}
    if reached and not rules.clock:
        read: dict[tuple[frozenset[RuleId], str | None], dict[str, datetime | None]] = {}
        for lead_id, due, stage in conn.execute(
            select(Lead.id, Lead.rules_due_at, Lead.stage).where(among(conn, Lead.id, reached))
        ):
            if due is None or due <= now:
                continue
            key = (reached[lead_id], stage)
            if key not in read:
                read[key] = {
                    event_type: None if seconds is None else now - timedelta(seconds=seconds)
                    for event_type, seconds in rules.history_read(*key).items()
                }
            mine = sorted(by_lead[lead_id], key=lambda e: e.at)
            parts[lead_id] = InPart(due, stage, tuple(mine))
            history_of[lead_id] = read[key]
    full |= reached.keys() - parts.keys()
    facts = load(conn, published, full | parts.keys(), now, history_of=history_of)
    moved = [i for i, part in parts.items() if i in facts and facts[i].stage != part.stage]
    if moved:  # its stage changed in between (another worker): read it whole
        for lead_id in moved:
            del parts[lead_id]
        facts.update(load(conn, published, moved, now))
    return facts, parts


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
    part: InPart | None = None,
    *,
    due: datetime | None = None,
) -> LeadFacts:
    """Re-check the lead's rules (`only` those, or all), record the changes, and keep its score
    and the moment its rules are next due (`part`: the facts hold only part of its history, and
    that moment moves only when its new events bring an earlier one; `due`: the moment the lead
    was due, kept when it comes first, as `only` some of its rules were looked at)."""
    before = facts.score
    facts, changes = reevaluate(rules, facts, now, only)
    record(out, lead_id, facts, changes, now)
    if facts.score != before:
        out.lead_values(lead_id, score=facts.score)
    if part is None:
        found = next_check(rules, facts, now)
        if due is not None and (found is None or due < found):
            found = due
        out.lead_values(lead_id, rules_due_at=found)
    elif rules.soonest is not None and any(
        (e.at if e.at > now else e.at + rules.soonest) < part.due for e in part.events
    ):  # a moment of the new events may come first (none comes sooner than that)
        new = lead_facts(lead_id=facts.lead_id, attributes={}, events=part.events)
        found = next_check(rules, new, now)
        if found is not None and found < part.due:
            out.lead_values(lead_id, rules_due_at=found)
    return facts


def on_events(
    conn: Connection,
    published: Published,
    events: Iterable[tuple[int, Event]],
    facts: dict[int, LeadFacts],
    out: Batch,
    now: datetime,
    parts: Mapping[int, InPart] | None = None,
) -> None:
    """New facts: each lead's rules that its new events can change (`parts`: the leads
    `load_for_events` loaded with only the events of those rules)."""
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
            part = parts.get(lead_id) if parts else None
            facts[lead_id] = check(rules, out, lead_id, lead, now, only, part)


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
    and the leads that enter or leave it recorded with their reasons; every lead's next moment
    then includes those of the segment's windows. A lead that moves keeps the moment it was due,
    when that comes first: only the segment's rule (and those it leads to) looked at it, and a
    lead due already is still due for all of them. Returns how many moved."""
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
        due: dict[int, datetime | None] = {
            lead_id: at
            for lead_id, at in conn.execute(
                select(Lead.id, Lead.rules_due_at).where(among(conn, Lead.id, chunk))
            )
        }
        out = Batch(now)
        for lead_id, lead in facts_of(chunk).items():
            check(rules, out, lead_id, lead, now, [("segment", name)], due=due.get(lead_id))
        out.write(conn)
    _watch_windows(conn, rules, ("segment", name), now)
    return len(moved)


def _watch_windows(conn: Connection, rules: RuleSet, rule: RuleId, now: datetime) -> None:
    """Bring forward every lead's `rules_due_at` to the next moment one of the windows of `rule`,
    new or changed, slides: the leads it did not move were not looked at, and the next moment
    they keep knows only the other rules (the events pass relies on it, see `InPart`)."""
    leads = cast(Table, Lead.__table__)
    for event_type, seconds in sorted(rules.reads[rule].windows):
        width = timedelta(seconds=seconds)
        firsts = conn.execute(
            select(EventRow.lead_id, func.min(EventRow.at).label("at"))
            .where(EventRow.type == event_type, EventRow.at > now - width)
            .group_by(EventRow.lead_id)
        ).all()
        if firsts:
            conn.execute(
                update(leads)
                .where(
                    leads.c.id == bindparam("lead"),
                    or_(leads.c.rules_due_at.is_(None), leads.c.rules_due_at > bindparam("end")),
                )
                .values(rules_due_at=bindparam("end")),
                [{"lead": row.lead_id, "end": row.at + width} for row in firsts],
            )


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
