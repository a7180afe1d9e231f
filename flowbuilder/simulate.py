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
from typing import Any

from dsl import ir
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
    UpdateLead,
)
from flowbuilder.engine.entry import admit, matching_trigger, start
from flowbuilder.engine.facts import Event, LeadFacts


@dataclass(frozen=True)
class Lead:
    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    lists: frozenset[str] = frozenset()
    stage: str | None = None


@dataclass(frozen=True)
class Reaction:
    """When `lead` is sent the email of `flow`.`step`, it does `type` after `after` (open, click, reply …)."""

    lead: str
    step: str
    type: str
    after: timedelta
    flow: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceLine:
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


@dataclass(order=True)
class _Item:
    at: datetime
    seq: int
    kind: str = field(compare=False)
    lead: str = field(compare=False)
    payload: Any = field(compare=False)


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
            )
            for lead in leads
        }
        self.queue: list[_Item] = []
        self.seq = 0
        self.start_at = start_at
        self.reactions: dict[tuple[str, str], list[Reaction]] = {}
        self.result = Result()
        self.active: dict[tuple[str, str], Enrollment] = {}

    def push(self, at: datetime, kind: str, lead: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, _Item(at, self.seq, kind, lead, payload))

    def add_events(self, events: Iterable[tuple[str, Event]]) -> None:
        for lead, event in events:
            self.push(event.at, "event", lead, event)

    def add_reactions(self, reactions: Iterable[Reaction]) -> None:
        for r in reactions:
            self.reactions.setdefault((r.lead, r.step), []).append(r)

    def run(self, until: datetime) -> Result:
        while self.queue and self.queue[0].at <= until:
            item = heapq.heappop(self.queue)
            if item.kind == "event":
                self._on_event(item.lead, item.payload, item.at)
            else:
                key = item.payload
                enrollment = self.active.get(key)
                if enrollment is not None and enrollment.due_at == item.at:
                    self._decide(key, item.at)
        return self.result

    # ------------------------------------------------------------------ driving

    def _record(
        self, at: datetime, lead: str, flow: str, step: str | None, what: str, reason: str
    ) -> None:
        self.result.trace.append(TraceLine(at, lead, flow, step, what, reason))

    def _on_event(self, lead_id: str, event: Event, at: datetime) -> None:
        facts = self.facts[lead_id]
        self.facts[lead_id] = dataclasses.replace(facts, events=(*facts.events, event))
        for (lead, flow_name), enrollment in sorted(self.active.items()):
            if lead == lead_id and enrollment.status == "active":
                self._decide((lead, flow_name), at)
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
            settings=dict(self.ws.settings),
        )
        self.active[key] = outcome.enrollment
        self.result.enrollments[key][-1] = outcome.enrollment
        follow_ups: list[tuple[str, Event]] = []
        for d in outcome.decisions:
            follow_ups.extend(self._apply(lead_id, flow_name, d, at))
        if outcome.enrollment.status != "active":
            del self.active[key]
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
                self.facts[lead_id] = dataclasses.replace(facts, events=(*facts.events, sent))
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
            case ReachGoal():
                self._record(at, lead_id, flow, d.step, "goal", f"goal {d.goal}: {d.reason}")
            case MoveToFlow():
                target = self.ws.flows.get(d.flow)
                if target is not None:
                    follow.append((lead_id, Event("flow.moved", at, {"from": flow, "to": d.flow})))
                    self._enter(target, lead_id, at, f"moved from flow {flow}")
            case UpdateLead():
                self._record(at, lead_id, flow, d.step, "update", d.reason)
                follow.extend(self._update(lead_id, d, at))
            case ChangeList():
                self._record(at, lead_id, flow, d.step, "list", d.reason)
                lists = facts.lists | {d.list} if d.add else facts.lists - {d.list}
                self.facts[lead_id] = dataclasses.replace(facts, lists=frozenset(lists))
                if d.add and d.list not in facts.lists:
                    follow.append((lead_id, Event("list.entered", at, {"list": d.list})))
            case _:
                self._record(at, lead_id, flow, d.step, type(d).__name__.lower(), d.reason)
        return follow

    def _update(self, lead_id: str, d: UpdateLead, at: datetime) -> list[tuple[str, Event]]:
        facts = self.facts[lead_id]
        name = d.attribute.removeprefix("lead.")
        if name == "stage":
            self.facts[lead_id] = dataclasses.replace(facts, stage=d.value)
            if d.value != facts.stage:
                return [
                    (lead_id, Event("stage.changed", at, {"stage": d.value, "from": facts.stage}))
                ]
        elif name == "score":
            delta = float(d.value or 0)
            score = delta if d.op == "=" else facts.score + (delta if d.op == "+=" else -delta)
            self.facts[lead_id] = dataclasses.replace(facts, score=score)
        elif name == "tags":
            tags = facts.tags | {str(d.value)} if d.op == "+=" else facts.tags - {str(d.value)}
            self.facts[lead_id] = dataclasses.replace(facts, tags=frozenset(tags))
        else:
            self.facts[lead_id] = dataclasses.replace(
                facts, attributes={**facts.attributes, name: d.value}
            )
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
