"""One pass of the runtime over the store.

A tick (1) matches new events to triggers and wakes the enrollments of the leads they concern,
(2) fires time-driven triggers (dates, anniversaries, inactivity, schedules), then (3) claims due
enrollments in batches, loads their leads' facts in bulk, calls the pure interpreter and writes the
new positions, the outbox rows and the decision log in the same transaction as the claim. A crash
anywhere rolls the whole batch back: each enrollment advances once, each send is decided once.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.engine.decide import decide
from flowbuilder.engine.decisions import (
    Advance,
    CallWebhook,
    ChangeList,
    Decision,
    Enrollment,
    Hold,
    Leave,
    MoveToFlow,
    ReachGoal,
    SendEmail,
    Suppress,
    UpdateLead,
)
from flowbuilder.engine.entry import admit, date_trigger_fires, inactive_since, matching_trigger
from flowbuilder.engine.facts import Event, LeadFacts, updated
from flowbuilder.engine.facts import lead_facts as lead_facts_of
from flowbuilder.engine.rules import SCORE_ADJUSTED
from flowbuilder.observability import MEASURES
from flowbuilder.pulse import close_silent_views
from flowbuilder.runtime import lifecycle
from flowbuilder.store import clocks
from flowbuilder.store.bulk import among
from flowbuilder.store.db import reading
from flowbuilder.store.facts import lead_key, lead_row_values, load_facts, to_event
from flowbuilder.store.published import Published, current
from flowbuilder.store.schema import PENDING_EVENTS, EnrollmentRow, Lead
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.writes import Batch
from flowbuilder.wakeups import OUTBOX, notify

BATCH = 500
MAX_BATCHES = 10_000
MAX_ROUNDS = 20  # a cascade of rules, events and steps at one moment is bounded by this
# Time-driven triggers (dates, anniversaries, inactivity, schedules) are scanned at most this often;
# an enrollment still starts at the exact moment its trigger fired.
SCAN_EVERY = timedelta(minutes=15)
TIME_TRIGGERS_CLOCK = "time_triggers"
TIME_TRIGGERS = (ir.DateTrigger, ir.AnniversaryTrigger, ir.InactiveTrigger, ir.ScheduleTrigger)


@dataclass
class TickStats:
    events: int = 0
    enrolled: int = 0
    decided: int = 0
    sends: int = 0
    batches: int = 0
    classified: int = 0  # leads whose rules were all looked at
    changes: int = 0  # stage, list and segment changes the rules made

    def __str__(self) -> str:
        return (
            f"{self.events} events, {self.classified} leads classified, {self.changes} stage "
            f"and membership changes, {self.enrolled} enrolled, {self.decided} decided, "
            f"{self.sends} sends in {self.batches} batches"
        )


@contextmanager
def _measured(pass_name: str, stats: TickStats) -> Iterator[None]:
    """Count what a batch did once it has committed (a batch rolled back counts for nothing)."""
    before = dataclasses.astuple(stats)
    started = time.perf_counter()
    yield
    done = {
        f.name: after - was
        for f, was, after in zip(
            dataclasses.fields(stats), before, dataclasses.astuple(stats), strict=True
        )
    }
    MEASURES.committed(pass_name, time.perf_counter() - started, done)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A batch allocates many short-lived containers, freed by reference counting; the cyclic
    collector would rescan the whole heap many times per batch for nothing. Memory stays bounded
    by the batch size, and the collector runs as usual between batches."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _never() -> bool:
    return False


def _batches(most: int, should_stop: Callable[[], bool]) -> Iterator[int]:
    """Up to `most` batches, until the process is asked to stop (between batches, all committed)."""
    for n in range(most):
        if should_stop():
            return
        yield n


def tick(
    engine: Engine,
    now: datetime,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    should_stop: Callable[[], bool] = _never,
) -> TickStats:
    """Everything due at `now`, in batches of `batch` enrollments or events; when `should_stop`
    says so, it returns after the batch in progress has committed."""
    stats = TickStats()
    started = time.perf_counter()
    with reading(engine) as conn:
        published = current(conn)
    if published is None:
        MEASURES.tick_done(time.perf_counter() - started)
        return stats
    clocks.ensure(engine, [TIME_TRIGGERS_CLOCK, *lifecycle.CLOCKS], now)
    # Document views whose readers went quiet become `view` events, acted on in this tick.
    for _ in range(max_batches):
        with engine.begin() as conn:
            if close_silent_views(conn, now, limit=batch) < batch:
                break
    with engine.begin() as conn:
        lifecycle.rules_changed_pass(conn, published, now)
        lifecycle.population_pass(conn, published, now)
    # What one pass does can give the others work at the same moment: a click makes a lead
    # sales-qualified (rules), the stage change starts a flow (events), its first step sends
    # (due) and moves the lead to a list (events again). Rounds repeat until nothing is left.
    for round_ in range(MAX_ROUNDS):
        work = 0
        for _ in _batches(max_batches, should_stop):
            with _measured("rules", stats), _no_cycle_collection(), engine.begin() as conn:
                checked, changes = lifecycle.due_rules_pass(conn, published, now, batch)
                stats.classified += checked
                stats.changes += changes
            work += checked
            if checked < batch:
                break
        for _ in _batches(max_batches, should_stop):
            with _measured("events", stats), _no_cycle_collection(), engine.begin() as conn:
                handled = events_pass(conn, published, now, batch, stats)
            work += handled
            if handled == 0:
                break
        if round_ == 0:
            with _measured("time_triggers", stats), engine.begin() as conn:
                time_triggers_pass(conn, published, now, stats)
        for _ in _batches(max_batches, should_stop):
            with _measured("due", stats), _no_cycle_collection(), engine.begin() as conn:
                decided = due_pass(conn, published, now, batch, stats)
            work += decided
            if decided < batch:
                break
        if work == 0 or should_stop():
            break
    MEASURES.tick_done(time.perf_counter() - started)
    return stats


# ---------------------------------------------------------------------------- enrolling


@dataclass
class _Entries:
    """Who is and was in which flow, for the entry policy, kept current within a batch."""

    history: dict[tuple[int, str], list[Enrollment]]

    @classmethod
    def load(cls, conn: Connection, lead_ids: Iterable[int]) -> _Entries:
        history: dict[tuple[int, str], list[Enrollment]] = defaultdict(list)
        ids = sorted(set(lead_ids))
        if ids:
            for row in conn.execute(
                select(
                    EnrollmentRow.lead_id,
                    EnrollmentRow.flow,
                    EnrollmentRow.status,
                    EnrollmentRow.entered_at,
                ).where(among(conn, EnrollmentRow.lead_id, ids))
            ):
                history[(row.lead_id, row.flow)].append(
                    Enrollment(
                        lead_key(row.lead_id),
                        row.flow,
                        None,
                        row.entered_at,
                        row.entered_at,
                        status=row.status,
                    )
                )
        return cls(history)

    def enter(
        self,
        out: Batch,
        published: Published,
        flow: ir.Flow,
        lead_id: int,
        at: datetime,
        reason: str,
    ) -> bool:
        """Admit the lead by the flow's entry policy; the row is written by `Batch.write`."""
        key = (lead_id, flow.name)
        admission = admit(flow, self.history[key], at)
        if not admission.admitted:
            out.decision(lead_id, None, flow.name, None, "skip", f"{reason}; {admission.reason}")
            return False
        out.entries.append(
            (
                {
                    "lead_id": lead_id,
                    "flow": flow.name,
                    "version_id": published.versions[flow.name][0],
                    "step": flow.start,
                    "status": "active",
                    "entered_at": at,
                    "step_entered_at": at,
                    "due_at": at,
                    "waiting_for_facts": False,
                    "context": {},
                    "advanced": 0,
                    "updated_at": out.now,
                },
                reason,
            )
        )
        self.history[key].append(
            Enrollment(lead_key(lead_id), flow.name, flow.start, at, at, status="active")
        )
        return True


def events_pass(
    conn: Connection, published: Published, now: datetime, batch: int, stats: TickStats
) -> int:
    """New events: enroll on the triggers they fire, wake the enrollments of their leads."""
    rows = conn.execute(
        select(EventRow)
        .where(PENDING_EVENTS)
        .order_by(EventRow.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    ws = published.ws
    lead_ids = {r.lead_id for r in rows}
    account_types = lifecycle.account_types_for(published)
    events = [(r.lead_id, to_event(r)) for r in rows]
    # A lead's history is loaded only when something reads it: a trigger filter on the event or
    # an account-wide exit (the whole history), a rule the event can change (the events of the
    # rules it can change). A stage change that only starts a flow needs none of it.
    reading_types = _trigger_filtered(published) | account_types
    facts, parts = lifecycle.load_for_events(conn, published, events, reading_types, now)
    entries = _Entries.load(conn, lead_ids)
    out = Batch(now)
    # The lead rules first: a click that makes a lead sales-qualified is a stage change that
    # triggers and the lead's enrollments see in this same pass.
    lifecycle.on_events(conn, published, events, facts, out, now, parts)
    stats.changes += len(out.decisions)
    flows = [ws.flows[name] for name in sorted(published.versions)]
    for row, (_, event) in zip(rows, events, strict=True):
        lead_facts = facts.get(row.lead_id) or lead_facts_of(
            lead_id=lead_key(row.lead_id), attributes={}
        )
        at = min(row.at, now)
        for flow in flows:
            matched = matching_trigger(flow, event, lead_facts, at)
            if matched is not None and entries.enter(
                out, published, flow, row.lead_id, at, matched[1]
            ):
                stats.enrolled += 1
    # Every event can decide an exit, a goal or a wait-for-event: wake the lead's enrollments now,
    # and those of its whole account when an account-wide exit reads the event.
    waking = among(conn, EnrollmentRow.lead_id, lead_ids)
    accounts = {
        lead.account
        for row in rows
        if row.type in account_types
        and (lead := facts.get(row.lead_id)) is not None
        and lead.account
    }
    if accounts:
        colleagues = select(Lead.id).where(among(conn, Lead.account, accounts))
        waking = or_(waking, EnrollmentRow.lead_id.in_(colleagues))
    conn.execute(
        update(EnrollmentRow)
        .where(
            waking,
            EnrollmentRow.status == "active",
            or_(EnrollmentRow.due_at.is_(None), EnrollmentRow.due_at > now),
        )
        .values(due_at=now)
    )
    conn.execute(
        update(EventRow).where(among(conn, EventRow.id, [r.id for r in rows])).values(pending=False)
    )
    out.write(conn)
    stats.events += len(rows)
    return len(rows)


_filtered: dict[int, tuple[Published, frozenset[str]]] = {}


def _trigger_filtered(published: Published) -> frozenset[str]:
    """Event types some trigger filters with a condition (`trigger event x where …`)."""
    found = _filtered.get(id(published))
    if found is None or found[0] is not published:
        types: set[str] = set()
        for flow in published.ws.flows.values():
            for t in flow.triggers:
                if isinstance(t, ir.EventTrigger) and t.where is not None:
                    types.add(t.event)
                elif isinstance(t, ir.FormTrigger) and t.where is not None:
                    types.add("form")
        if len(_filtered) > 16:
            _filtered.clear()
        found = _filtered[id(published)] = (published, frozenset(types))
    return found[1]


def time_triggers_pass(
    conn: Connection, published: Published, now: datetime, stats: TickStats
) -> None:
    """Dates, anniversaries, inactivity and schedules that came due since the last scan."""
    ws = published.ws
    flows = [
        ws.flows[name]
        for name in sorted(published.versions)
        if any(isinstance(t, TIME_TRIGGERS) for t in ws.flows[name].triggers)
    ]
    claimed = clocks.claim(conn, TIME_TRIGGERS_CLOCK)
    if claimed is None:
        return  # another worker is scanning
    if claimed.value is None:
        clocks.advance(conn, TIME_TRIGGERS_CLOCK, now, "scanned")  # the first scan starts here
        return
    if not flows or now - claimed.at < SCAN_EVERY:
        return
    after = claimed.at
    clocks.advance(conn, TIME_TRIGGERS_CLOCK, now)
    out = Batch(now)
    lead_ids = [i for (i,) in conn.execute(select(Lead.id).order_by(Lead.id))]
    schedules = {
        (flow.name, n): _cron_fire(t, ws, after, now)
        for flow in flows
        for n, t in enumerate(flow.triggers)
        if isinstance(t, ir.ScheduleTrigger)
    }
    triggers = [t for flow in flows for t in flow.triggers]
    inactivity = any(isinstance(t, ir.InactiveTrigger) for t in triggers)
    by_segment = any(
        isinstance(t, ir.ScheduleTrigger) and t.audience and t.audience.kind == "segment"
        for t in triggers
    )
    for start in range(0, len(lead_ids), 1000):
        chunk = lead_ids[start : start + 1000]
        facts = load_facts(
            conn,
            chunk,
            ws,
            now,
            event_types={"open", "click"} if inactivity else (),
            segments=by_segment,
        )
        entries = _Entries.load(conn, chunk)
        for lead_id in chunk:
            lead = facts[lead_id]
            for flow in flows:
                fired = _time_trigger(flow, lead, schedules, after, now)
                if fired is not None and entries.enter(
                    out, published, flow, lead_id, fired[0], fired[1]
                ):
                    stats.enrolled += 1
    out.write(conn)


def _cron_fire(
    trigger: ir.ScheduleTrigger, ws: ir.Workspace, after: datetime, now: datetime
) -> datetime | None:
    cron = CronTrigger.from_crontab(trigger.cron, timezone=ws.policy.timezone or "UTC")
    fire: datetime | None = cron.get_next_fire_time(None, after + timedelta(seconds=1))
    return fire if fire is not None and fire <= now else None


def _time_trigger(
    flow: ir.Flow,
    lead: LeadFacts,
    schedules: dict[tuple[str, int], datetime | None],
    after: datetime,
    now: datetime,
) -> tuple[datetime, str] | None:
    for n, trigger in enumerate(flow.triggers):
        match trigger:
            case ir.DateTrigger() | ir.AnniversaryTrigger():
                moment = date_trigger_fires(trigger, lead, after, now)
                if moment is not None:
                    return moment, f"trigger {trigger.source} on {moment.date().isoformat()}"
            case ir.InactiveTrigger():
                since = inactive_since(lead, now)
                if since is not None:
                    moment = since + timedelta(seconds=trigger.seconds)
                    if after < moment <= now:
                        return moment, f"trigger inactive: no open or click since {since:%Y-%m-%d}"
            case ir.ScheduleTrigger():
                moment = schedules.get((flow.name, n))
                if moment is not None and _in_audience(trigger.audience, lead):
                    return moment, f"trigger schedule `{trigger.cron}`"
    return None


def _in_audience(audience: ir.Membership | None, lead: LeadFacts) -> bool:
    if audience is None:
        return True
    match audience.kind:
        case "list":
            return audience.name in lead.lists
        case "segment":
            return audience.name in lead.segments
    return lead.stage == audience.name


# ---------------------------------------------------------------------------- deciding


def due_pass(
    conn: Connection,
    published: Published,
    now: datetime,
    batch: int,
    stats: TickStats,
    *,
    only: int | None = None,
) -> int:
    """Claim due enrollments (or just the enrollment `only`), decide each, write everything back."""
    claim = select(*_CLAIMED).where(EnrollmentRow.status == "active", EnrollmentRow.due_at <= now)
    if only is not None:
        claim = claim.where(EnrollmentRow.id == only)
    rows = conn.execute(
        claim.order_by(EnrollmentRow.due_at, EnrollmentRow.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    ws = published.ws
    lead_ids = {r.lead_id for r in rows}
    facts = lifecycle.load(conn, published, lead_ids, now)
    entries: _Entries | None = None
    out = Batch(now)
    settings = dict(ws.settings)
    # A send is written as handled (no trigger hears it): when a rule reads sends, the lead is
    # made due now instead, so the rules pass of the next round re-checks it at the send.
    sends_read = "send" in lifecycle.rules_for(published).by_event
    for row in sorted(rows, key=lambda r: (r.lead_id, r.due_at, r.id)):
        flow = ws.flows.get(row.flow) if row.flow in published.versions else None
        lead = facts.get(row.lead_id)
        if flow is None or lead is None:
            why = "the flow is no longer published" if flow is None else "the lead was deleted"
            out.enrollments.append(_row_values(row, status="exited", due_at=None, updated_at=now))
            out.decision(row.lead_id, row.id, row.flow, row.step, "leave", why)
            continue
        outcome = decide(flow, _enrollment(row), lead, now, policy=ws.policy, settings=settings)
        stats.decided += 1
        hold: Hold | None = None
        for d in outcome.decisions:
            # Moves and waits are most of the log: recorded here without the general dispatch.
            if isinstance(d, Advance):
                data: dict[str, Any] = {"to": d.to, "at": out.iso(d.at)}
                out.decision(row.lead_id, row.id, row.flow, d.step, "advance", d.reason, data)
                continue
            if isinstance(d, Hold):
                hold = d
                data = {"until": out.iso(d.until) if d.until else None}
                out.decision(row.lead_id, row.id, row.flow, d.step, "wait", d.reason, data)
                continue
            lead = _apply(conn, out, published, row, d, lead, stats)
            if sends_read and isinstance(d, SendEmail):
                out.lead_values(row.lead_id, rules_due_at=now)  # the rules reading sends
            if isinstance(d, MoveToFlow) and d.flow in published.versions:
                entries = entries or _Entries.load(conn, lead_ids)
                if entries.enter(
                    out,
                    published,
                    ws.flows[d.flow],
                    row.lead_id,
                    now,
                    f"moved from flow {row.flow}",
                ):
                    stats.enrolled += 1
        facts[row.lead_id] = lead
        e = outcome.enrollment
        out.enrollments.append(
            {
                "id": row.id,
                "advanced": row.advanced + 1,
                "updated_at": now,
                "step": e.step,
                "status": e.status,
                "step_entered_at": e.step_entered_at,
                "due_at": e.due_at if e.status == "active" else None,
                "waiting_for_facts": e.waiting_for_facts,
                "waits_for": hold.reason if hold is not None and e.status == "active" else None,
                "context": dict(e.context),
            }
        )
    out.write(conn)
    if out.outbox:
        notify(conn, OUTBOX)  # senders waiting for work hear of it when this batch commits
    stats.batches += 1
    return len(rows)


# What deciding an enrollment reads of its row.
_CLAIMED = (
    EnrollmentRow.id,
    EnrollmentRow.lead_id,
    EnrollmentRow.flow,
    EnrollmentRow.step,
    EnrollmentRow.status,
    EnrollmentRow.entered_at,
    EnrollmentRow.step_entered_at,
    EnrollmentRow.due_at,
    EnrollmentRow.waiting_for_facts,
    EnrollmentRow.waits_for,
    EnrollmentRow.context,
    EnrollmentRow.advanced,
)


def _enrollment(row: Any) -> Enrollment:
    # Built field by field: a frozen dataclass's __init__ costs more than the decision it feeds.
    e = object.__new__(Enrollment)
    e.__dict__.update(
        lead_id=lead_key(row.lead_id),
        flow=row.flow,
        step=row.step,
        entered_at=row.entered_at,
        step_entered_at=row.step_entered_at,
        status=row.status,
        due_at=row.due_at,
        waiting_for_facts=row.waiting_for_facts,
        context=row.context or {},
    )
    return e


def _row_values(row: Any, **changes: Any) -> dict[str, Any]:
    values = {
        "id": row.id,
        "advanced": row.advanced + 1,
        "step": row.step,
        "status": row.status,
        "step_entered_at": row.step_entered_at,
        "due_at": row.due_at,
        "waiting_for_facts": row.waiting_for_facts,
        "waits_for": row.waits_for,
        "context": row.context or {},
    }
    values.update(changes)
    return values


def _apply(
    conn: Connection,
    out: Batch,
    published: Published,
    row: Any,
    d: Decision,
    lead: LeadFacts,
    stats: TickStats,
) -> LeadFacts:
    """Record one decision and return the lead as it is after it."""
    lead_id, flow = row.lead_id, row.flow
    kind = _KINDS.get(type(d), type(d).__name__.lower())
    data: dict[str, Any] = {}
    match d:
        case SendEmail():
            payload = {
                "template": d.template,
                "variant": d.variant,
                "subject": d.subject,
                "preheader": d.preheader,
                "sender": d.sender,
            }
            out.outbox.append(
                {
                    "key": d.key,
                    "lead_id": lead_id,
                    "enrollment_id": row.id,
                    "flow": flow,
                    "step": d.step,
                    "channel": "email",
                    "template": d.template,
                    "payload": payload,
                    "state": "pending",
                    "attempts": 0,
                    "created_at": out.now,
                    "updated_at": out.now,
                }
            )
            properties = {"template": d.template, "variant": d.variant}
            out.event(
                lead_id,
                "send",
                out.now,
                properties,
                flow=flow,
                step=d.step,
                message_key=d.key,
                pending=False,
            )
            lead = lead.with_event(Event("send", out.now, properties, flow=flow, step=d.step))
            data = {"key": d.key, "template": d.template, "variant": d.variant}
            stats.sends += 1
        case CallWebhook():
            out.outbox.append(
                {
                    "key": d.key,
                    "lead_id": lead_id,
                    "enrollment_id": row.id,
                    "flow": flow,
                    "step": d.step,
                    "channel": "webhook",
                    "template": None,
                    "payload": {"url": d.url},
                    "state": "pending",
                    "attempts": 0,
                    "created_at": out.now,
                    "updated_at": out.now,
                }
            )
            data = {"key": d.key, "url": d.url}
        case UpdateLead():
            before = lead
            lead = updated(lead, d.attribute, d.op, d.value)
            out.lead_values(lead_id, **lead_row_values(lead))
            name = d.attribute.removeprefix("lead.")
            if name == "stage":
                if d.value != before.stage:
                    properties = {"stage": d.value, "from": before.stage}
                    out.event(lead_id, "stage.changed", out.now, properties)
            elif name == "score":
                # The score is kept by the lead rules from facts: a flow's points are one more.
                if lead.score != before.score:
                    delta = {"delta": lead.score - before.score, "flow": flow, "step": d.step}
                    out.event(lead_id, SCORE_ADJUSTED, out.now, delta)
            else:
                out.lead_values(lead_id, rules_due_at=out.now)  # the new value may move it
            data = {"attribute": d.attribute, "op": d.op, "value": d.value}
        case ChangeList():
            if d.add and d.list not in lead.lists:
                out.lists.add(d.list)
                out.joins.append(
                    {
                        "list_name": d.list,
                        "lead_id": lead_id,
                        "added_at": out.now,
                        "reason": d.reason,
                    }
                )
                out.event(lead_id, "list.entered", out.now, {"list": d.list})
                lead = dataclasses.replace(lead, lists=lead.lists | {d.list})
            elif not d.add and d.list in lead.lists:
                out.leaves.append((d.list, lead_id))
                out.event(lead_id, "list.left", out.now, {"list": d.list})
                lead = dataclasses.replace(lead, lists=lead.lists - {d.list})
            data = {"list": d.list, "add": d.add}
        case Suppress():
            out.suppressions[str(lead.attributes["email"])] = d.why
            out.event(lead_id, "suppressed", out.now, {"reason": d.why})
            lead = dataclasses.replace(lead, suppressed=True)
            data = {"reason": d.why}
        case ReachGoal():
            out.event(lead_id, "goal.reached", out.now, {"flow": flow, "goal": d.goal})
            data = {"goal": d.goal}
        case MoveToFlow():
            out.event(lead_id, "flow.moved", out.now, {"from": flow, "to": d.flow})
            data = {"to": d.flow}
        case Advance():
            data = {"to": d.to, "at": out.iso(d.at)}
        case Hold():
            data = {"until": out.iso(d.until) if d.until else None}
        case Leave():
            data = {"status": d.status}
    out.decision(lead_id, row.id, flow, d.step, kind, d.reason, data)
    return lead


_KINDS: dict[type, str] = {
    SendEmail: "send",
    CallWebhook: "webhook",
    UpdateLead: "update",
    ChangeList: "list",
    ReachGoal: "goal",
    Suppress: "suppress",
    MoveToFlow: "move",
    Advance: "advance",
    Hold: "wait",
    Leave: "leave",
}


def pending_work(conn: Connection, now: datetime) -> tuple[int, int]:
    """(events not yet matched, enrollments due) — the backlog a tick would take on."""
    events = conn.execute(
        select(func.count()).select_from(EventRow).where(PENDING_EVENTS)
    ).scalar_one()
    due = conn.execute(
        select(func.count()).where(EnrollmentRow.status == "active", EnrollmentRow.due_at <= now)
    ).scalar_one()
    return int(events), int(due)
