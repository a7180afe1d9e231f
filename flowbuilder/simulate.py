"""The simulator: the same interpreter as production, driven by a virtual clock instead of APScheduler.

Given a workspace, a population of leads and a scripted timeline, it enrolls leads on their
triggers, decides at every event and every due time, turns sends into `send` events, plays the
scripted reactions to those sends (open 2 h after the welcome email, reply to the second touch …)
and records every decision with its reason. The same inputs give the same output, byte for byte.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from apscheduler.triggers.cron import CronTrigger

from dsl import ir
from dsl.collector import collector_paused
from flowbuilder.engine.decide import decide
from flowbuilder.engine.decisions import (
    Advance,
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
from flowbuilder.engine.entry import (
    admit,
    date_trigger_fires,
    inactive_since,
    matching_trigger,
    start,
)
from flowbuilder.engine.facts import Event, LeadFacts, Population, updated
from flowbuilder.engine.rules import (
    LEAD_RULES,
    SCORE_ADJUSTED,
    RuleId,
    RuleSet,
    account_event_types,
    membership_event,
    next_check,
    population_values,
    reevaluate,
)


@dataclass(frozen=True)
class Lead:
    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    lists: frozenset[str] = frozenset()
    stage: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class Reaction:
    """When `lead` is sent the email of `flow`.`step`, it does `type` after `after` (open, click, reply …)."""

    lead: str
    step: str
    type: str
    after: timedelta
    flow: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


class TraceLine(NamedTuple):
    """One line of a lead's trace (a tuple: the simulator writes one for every decision)."""

    at: datetime
    lead: str
    flow: str
    step: str | None
    what: str
    reason: str

    def render(self) -> str:
        where = f"{self.flow}.{self.step}" if self.step else self.flow
        return f"{self.at:%Y-%m-%d %H:%M} {self.lead:<10} {where:<32} {self.what:<9} {self.reason}"


@dataclass
class Result:
    trace: list[TraceLine] = field(default_factory=list)
    enrollments: dict[tuple[str, str], list[Enrollment]] = field(default_factory=dict)

    def sends(self) -> list[TraceLine]:
        return [t for t in self.trace if t.what == "send"]

    def summary(self) -> dict[str, Counter[str]]:
        """Per flow: entered, sends per step, exits by reason, goals reached."""
        out: dict[str, Counter[str]] = {}
        for t in self.trace:
            c = out.setdefault(t.flow, Counter())
            if t.what == "enter":
                c["entered"] += 1
            elif t.what == "send":
                c[f"sent {t.step}"] += 1
            elif t.what in ("exit", "complete", "move"):
                c[f"{t.what}: {t.reason.split(':')[0]}"] += 1
            elif t.what == "goal":
                c[f"goal {t.reason.split(':')[0].removeprefix('goal ')}"] += 1
        return out


# The queue holds (time, sequence number, kind, lead, payload): tuples compare in C, and the unique
# sequence number keeps equal times in the order they were pushed.
_Item = tuple[datetime, int, str, str, Any]


class Simulation:
    def __init__(self, ws: ir.Workspace, leads: Sequence[Lead], start_at: datetime) -> None:
        self.ws = ws
        self.leads = {lead.id: lead for lead in leads}
        self.facts: dict[str, LeadFacts] = {
            lead.id: LeadFacts(
                lead_id=lead.id,
                attributes=dict(lead.attributes),
                timezone=lead.timezone,
                lists=lead.lists,
                stage=lead.stage,
                account=lead.account,
            )
            for lead in leads
        }
        self.rules = RuleSet.of(ws)
        self.account_types = account_event_types(ws)
        self.sends_read = "send" in self.rules.by_event  # some rule reads `send` events
        self.colleagues: dict[str, list[str]] = {}
        for lead in leads:
            if lead.account:
                self.colleagues.setdefault(lead.account, []).append(lead.id)
        self.rules_at: dict[str, datetime] = {}  # lead → when its rules are looked at next
        self.queue: list[_Item] = []
        self.seq = 0
        self.start_at = start_at
        self.reactions: dict[tuple[str, str], list[Reaction]] = {}
        self.result = Result()
        self.active: dict[tuple[str, str], Enrollment] = {}
        self.flows_of: dict[str, set[str]] = {}  # lead → flows it is active in

    def push(self, at: datetime, kind: str, lead: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, lead, payload))

    def add_events(self, events: Iterable[tuple[str, Event]]) -> None:
        for lead, event in events:
            self.push(event.at, "event", lead, event)

    def add_reactions(self, reactions: Iterable[Reaction]) -> None:
        for r in reactions:
            self.reactions.setdefault((r.lead, r.step), []).append(r)

    def run(self, until: datetime) -> Result:
        with collector_paused():
            return self._run(until)

    def _run(self, until: datetime) -> Result:
        self._schedule_time_triggers(until)
        self._start_rules(until)
        while self.queue and self.queue[0][0] <= until:
            at, _, kind, lead, payload = heapq.heappop(self.queue)
            if kind == "event":
                self._on_event(lead, payload, at)
            elif kind == "trigger":
                flow, reason = payload
                self._enter(self.ws.flows[flow], lead, at, reason)
            elif kind == "schedule":
                self._on_schedule(payload, at)
            elif kind == "inactive":
                self._on_inactive(lead, payload, at)
            elif kind == "rules":
                if self.rules_at.get(lead) == at:
                    # Every rule, as the runtime's due pass: a rule no fact re-checked may move
                    # the lead now in both drivers.
                    self._rules(lead, at, None)
            elif kind == "population":
                self._population(at)
            else:
                enrollment = self.active.get(payload)
                if enrollment is not None and enrollment.due_at == at:
                    self._decide(payload, at)
        return self.result

    # ------------------------------------------------------------------ lead rules

    def _start_rules(self, until: datetime) -> None:
        """Classify every lead at the start, as publishing the workspace does, and look at the
        population every day at 00:00 UTC."""
        if self.rules.empty:
            return
        if self.rules.measures:
            self._population(self.start_at, recheck=False)
            day = self.start_at.replace(hour=0, minute=0, second=0, microsecond=0)
            while (day := day + timedelta(days=1)) <= until:
                self.push(day, "population", "", None)
        for lead_id in sorted(self.facts):
            self._rules(lead_id, self.start_at, None)

    def _population(self, at: datetime, *, recheck: bool = True) -> None:
        values = population_values(self.rules, self.facts.values(), at)
        population = Population(values)
        for lead_id in sorted(self.facts):
            self.facts[lead_id] = dataclasses.replace(self.facts[lead_id], population=population)
        if recheck:
            reading = {r for r, x in self.rules.reads.items() if x.population}
            for lead_id in sorted(self.facts):
                self._rules(lead_id, at, reading)

    def _rules(self, lead_id: str, at: datetime, only: Iterable[RuleId] | None) -> None:
        """Re-check the lead's rules; each change is recorded and becomes an event of its own."""
        if self.rules.empty:
            return
        facts, changes = reevaluate(self.rules, self.facts[lead_id], at, only)
        self.facts[lead_id] = facts
        for change in changes:
            self._record(at, lead_id, LEAD_RULES, None, change.what, change.reason)
            self.push(at, "event", lead_id, membership_event(change, at))
        nxt = next_check(self.rules, facts, at)
        if nxt is not None and self.rules_at.get(lead_id) != nxt:
            self.rules_at[lead_id] = nxt
            self.push(nxt, "rules", lead_id, None)

    # ------------------------------------------------------------------ time-driven triggers

    def _schedule_time_triggers(self, until: datetime) -> None:
        """Dates, anniversaries and schedules that fire within the run; inactivity checks."""
        for flow in self.ws.flows.values():
            for n, trigger in enumerate(flow.triggers):
                match trigger:
                    case ir.DateTrigger() | ir.AnniversaryTrigger():
                        for lead_id in sorted(self.facts):
                            after = self.start_at
                            # An anniversary fires once a year: every firing within the run.
                            while moment := date_trigger_fires(
                                trigger, self.facts[lead_id], after, until
                            ):
                                reason = f"trigger {trigger.source} on {moment.date().isoformat()}"
                                self.push(moment, "trigger", lead_id, (flow.name, reason))
                                after = moment
                    case ir.ScheduleTrigger():
                        cron = CronTrigger.from_crontab(
                            trigger.cron, timezone=self.ws.policy.timezone or "UTC"
                        )
                        fire = cron.get_next_fire_time(None, self.start_at + timedelta(seconds=1))
                        while fire is not None and fire <= until:
                            self.push(fire, "schedule", "", (flow.name, n))
                            fire = cron.get_next_fire_time(fire, fire + timedelta(seconds=1))
                    case ir.InactiveTrigger():
                        for lead_id in sorted(self.facts):
                            self._check_inactive_later(lead_id, flow.name, trigger)

    def _check_inactive_later(self, lead_id: str, flow: str, trigger: ir.InactiveTrigger) -> None:
        since = inactive_since(self.facts[lead_id], self.start_at)
        if since is not None:
            moment = since + timedelta(seconds=trigger.seconds)
            if moment > self.start_at:
                self.push(moment, "inactive", lead_id, (flow, trigger.seconds))

    def _on_inactive(self, lead_id: str, payload: tuple[str, int], at: datetime) -> None:
        flow, seconds = payload
        since = inactive_since(self.facts[lead_id], at)
        if since is not None and since + timedelta(seconds=seconds) == at:
            self._enter(
                self.ws.flows[flow],
                lead_id,
                at,
                f"trigger inactive: no open or click since {since:%Y-%m-%d}",
            )

    def _on_schedule(self, payload: tuple[str, int], at: datetime) -> None:
        flow_name, n = payload
        flow = self.ws.flows[flow_name]
        trigger = flow.triggers[n]
        assert isinstance(trigger, ir.ScheduleTrigger)
        for lead_id in sorted(self.facts):
            facts = self.facts[lead_id]
            audience = trigger.audience
            if audience is None or (
                (audience.kind == "list" and audience.name in facts.lists)
                or (audience.kind == "segment" and audience.name in facts.segments)
                or (audience.kind == "stage" and facts.stage == audience.name)
            ):
                self._enter(flow, lead_id, at, f"trigger schedule `{trigger.cron}`")

    # ------------------------------------------------------------------ driving

    def _record(
        self, at: datetime, lead: str, flow: str, step: str | None, what: str, reason: str
    ) -> None:
        self.result.trace.append(TraceLine(at, lead, flow, step, what, reason))

    def _on_event(self, lead_id: str, event: Event, at: datetime) -> None:
        facts = self.facts[lead_id]
        self.facts[lead_id] = facts.with_event(event)
        affected = self.rules.affected_by([event])
        if affected:
            self._rules(lead_id, at, affected)
        if event.type in ("open", "click") and not event.machine:
            for flow in self.ws.flows.values():
                for trigger in flow.triggers:
                    if isinstance(trigger, ir.InactiveTrigger):
                        self.push(
                            at + timedelta(seconds=trigger.seconds),
                            "inactive",
                            lead_id,
                            (flow.name, trigger.seconds),
                        )
        for flow_name in sorted(self.flows_of.get(lead_id, ())):
            enrollment = self.active.get((lead_id, flow_name))
            if enrollment is not None and enrollment.status == "active":
                self._decide((lead_id, flow_name), at)
        account = self.facts[lead_id].account
        if event.type in self.account_types and account:
            # An account-wide exit reads this event for every colleague of the lead.
            for other in self.colleagues.get(account, []):
                if other == lead_id:
                    continue
                facts_of = self.facts[other]
                self.facts[other] = dataclasses.replace(
                    facts_of, account_events=(*facts_of.account_events, event)
                )
                for flow_name in sorted(self.flows_of.get(other, ())):
                    if (other, flow_name) in self.active:
                        self._decide((other, flow_name), at)
        for flow in self.ws.flows.values():
            matched = matching_trigger(flow, event, self.facts[lead_id], at)
            if matched is not None:
                self._enter(flow, lead_id, at, matched[1])

    def _enter(self, flow: ir.Flow, lead_id: str, at: datetime, reason: str) -> None:
        key = (lead_id, flow.name)
        history = self.result.enrollments.get(key, [])
        admission = admit(flow, history, at)
        if not admission.admitted:
            self._record(at, lead_id, flow.name, None, "skip", admission.reason)
            return
        enrollment = start(flow, lead_id, at)
        self.result.enrollments.setdefault(key, []).append(enrollment)
        self.active[key] = enrollment
        self.flows_of.setdefault(lead_id, set()).add(flow.name)
        self._record(at, lead_id, flow.name, flow.start, "enter", reason)
        self._decide(key, at)

    def _decide(self, key: tuple[str, str], at: datetime) -> None:
        lead_id, flow_name = key
        flow = self.ws.flows[flow_name]
        outcome = decide(
            flow,
            self.active[key],
            self.facts[lead_id],
            at,
            policy=self.ws.policy,
            settings=self.ws.settings,
        )
        self.active[key] = outcome.enrollment
        self.result.enrollments[key][-1] = outcome.enrollment
        follow_ups: list[tuple[str, Event]] = []
        for d in outcome.decisions:
            follow_ups.extend(self._apply(lead_id, flow_name, d, at))
        if outcome.enrollment.status != "active":
            del self.active[key]
            self.flows_of[lead_id].discard(flow_name)
        elif outcome.enrollment.due_at is not None:
            self.push(outcome.enrollment.due_at, "due", lead_id, key)
        for lead, event in follow_ups:
            self.push(event.at, "event", lead, event)

    def _apply(self, lead_id: str, flow: str, d: Decision, at: datetime) -> list[tuple[str, Event]]:
        """Record a decision and turn it into the facts it creates."""
        follow: list[tuple[str, Event]] = []
        facts = self.facts[lead_id]
        match d:
            case SendEmail():
                self._record(at, lead_id, flow, d.step, "send", d.reason)
                sent = Event(
                    "send",
                    at,
                    {"template": d.template, "variant": d.variant},
                    flow=flow,
                    step=d.step,
                )
                self.facts[lead_id] = facts.with_event(sent)
                if self.sends_read:
                    # As the runtime makes the lead due at the send: the rules reading sends.
                    self._rules(lead_id, at, self.rules.affected_by([sent]))
                for r in self.reactions.get((lead_id, d.step or ""), []):
                    if r.flow in (None, flow):
                        follow.append(
                            (
                                lead_id,
                                Event(r.type, at + r.after, r.properties, flow=flow, step=d.step),
                            )
                        )
            case Advance():
                self._record(at, lead_id, flow, d.step, "advance", f"→ {d.to}: {d.reason}")
            case Hold():
                self._record(at, lead_id, flow, d.step, "wait", d.reason)
            case Leave():
                what = {"completed": "complete", "exited": "exit", "moved": "move"}.get(
                    d.status, d.status
                )
                self._record(at, lead_id, flow, d.step, what, d.reason)
            case Suppress():
                self._record(at, lead_id, flow, d.step, "suppress", d.reason)
                self.facts[lead_id] = dataclasses.replace(facts, suppressed=True)
                follow.append((lead_id, Event("suppressed", at, {"reason": d.why})))
            case ReachGoal():
                self._record(at, lead_id, flow, d.step, "goal", f"goal {d.goal}: {d.reason}")
            case MoveToFlow():
                target = self.ws.flows.get(d.flow)
                if target is not None:
                    follow.append((lead_id, Event("flow.moved", at, {"from": flow, "to": d.flow})))
                    self._enter(target, lead_id, at, f"moved from flow {flow}")
            case UpdateLead():
                self._record(at, lead_id, flow, d.step, "update", d.reason)
                follow.extend(self._update(lead_id, flow, d, at))
            case ChangeList():
                self._record(at, lead_id, flow, d.step, "list", d.reason)
                # As the runtime's due pass writes it: an event only when the lead moves.
                if d.add and d.list not in facts.lists:
                    lists = facts.lists | {d.list}
                    follow.append((lead_id, Event("list.entered", at, {"list": d.list})))
                elif not d.add and d.list in facts.lists:
                    lists = facts.lists - {d.list}
                    follow.append((lead_id, Event("list.left", at, {"list": d.list})))
                else:
                    lists = facts.lists
                self.facts[lead_id] = dataclasses.replace(facts, lists=frozenset(lists))
            case _:
                self._record(at, lead_id, flow, d.step, type(d).__name__.lower(), d.reason)
        return follow

    def _update(
        self, lead_id: str, flow: str, d: UpdateLead, at: datetime
    ) -> list[tuple[str, Event]]:
        before = self.facts[lead_id]
        self.facts[lead_id] = updated(before, d.attribute, d.op, d.value)
        name = d.attribute.removeprefix("lead.")
        if name == "stage":
            if d.value == before.stage:
                return []
            return [(lead_id, Event("stage.changed", at, {"stage": d.value, "from": before.stage}))]
        if name == "score":
            delta = self.facts[lead_id].score - before.score
            if not delta:
                return []
            # As the runtime writes it: the points and the step that gave them.
            points = {"delta": delta, "flow": flow, "step": d.step}
            return [(lead_id, Event(SCORE_ADJUSTED, at, points))]
        affected = self.rules.reading_attributes([name])
        if affected:
            self._rules(lead_id, at, affected)
        return []


def simulate(
    ws: ir.Workspace,
    leads: Sequence[Lead],
    events: Iterable[tuple[str, Event]],
    start_at: datetime,
    days: int,
    reactions: Iterable[Reaction] = (),
) -> Result:
    """Run the workspace's flows over `leads` for `days` virtual days from `start_at`."""
    sim = Simulation(ws, leads, start_at)
    sim.add_events(events)
    sim.add_reactions(reactions)
    return sim.run(start_at + timedelta(days=days))
