"""The workspace's lead rules, evaluated per lead: stage classification, scoring, rule-fed lists and
segments. Pure: facts and a moment in, the lead's new standing and the reasons out.

Both drivers call it — the runtime when a lead's facts change or a window slides, the simulator on
its virtual clock — so a stage change or a segment entry happens at the same moment in both.

- **Stages** are tried top to bottom; the first whose rule holds is the lead's stage. Rules only
  move a lead up (a lead that is `sql` stays `sql` when its 30-day open count drops); a flow's
  `update lead.stage = …` sets any stage (from which the rules may move the lead up again).
- **Scoring**: fit points for each rule that holds now, engagement points per event in its window,
  and the points flows add (`update lead.score += 5`, recorded as `score.adjusted` events), all
  reduced by the decay for each full period of their age.
- **Lists** with rules: a lead joins when an `add when` rule holds and leaves when a `remove when`
  rule holds; members added by hand or import leave only by a `remove when` rule.
- **Segments**: a lead is in a segment exactly while its condition holds.

`RuleSet.affected_by` names the rules a new event can change, so a click re-checks the rules that
count clicks and nothing else; `RuleSet.reached_from` adds the rules such a re-check can move on to
and `RuleSet.history_read` says which part of a lead's history all of them read, so that only that
part needs loading. `next_check` says when sliding windows, decay or the clock can change a rule's
answer without any new fact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from dsl import ir
from dsl.ir_text import expr_text
from flowbuilder.engine.evaluate import REACTIONS, Context, evaluate, holds
from flowbuilder.engine.facts import Event, LeadFacts

SCORE_ADJUSTED = "score.adjusted"  # the event a flow's `update lead.score …` leaves behind
LEAD_RULES = "(lead rules)"  # where stage, list and segment changes show in a trace
CLOCK_RECHECK = timedelta(hours=1)  # rules that read the clock (days_since, now) are re-checked

# Event types each function reads through its first argument (an event name) or by itself.
_EVENT_ARG = {"count", "occurred", "days_since", "total", "average"}
_POPULATION_OF_EVENT = {"recency_score", "frequency_score", "monetary_score"}
_FIXED_EVENTS = {
    **REACTIONS,
    "unsubscribed": "unsubscribe",
    "complained": "complaint",
    "submitted": "form",
    "viewed": "view",
}
_CLOCK = {"now", "today", "days_since", "days_until"}
_MEMBERSHIP_OF = {
    "stage.changed": "stage",
    "list.entered": "list",
    "list.left": "list",
    "segment.entered": "segment",
    "segment.left": "segment",
}


@dataclass(frozen=True)
class Reads:
    """What a condition's answer depends on."""

    events: frozenset[str] = frozenset()  # event types whose arrival may change it
    attributes: frozenset[str] = frozenset()  # lead.<name>
    memberships: frozenset[str] = frozenset()  # "stage", "score", "list:<n>", "segment:<n>"
    windows: frozenset[tuple[str, int]] = frozenset()  # (event type, seconds) aging out
    clock: bool = False
    population: frozenset[str] = frozenset()  # population measure keys
    history: frozenset[str] = frozenset()  # event types read without a window (all of them)

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.events | other.events,
            self.attributes | other.attributes,
            self.memberships | other.memberships,
            self.windows | other.windows,
            self.clock or other.clock,
            self.population | other.population,
            self.history | other.history,
        )


def reads(expr: ir.Expr | None) -> Reads:
    """What `expr` depends on, found by walking it."""
    if expr is None:
        return Reads()
    match expr:
        case ir.Path(root="lead"):
            name = expr.attrs[0]
            if name in ("stage", "score"):
                return Reads(memberships=frozenset({name}))
            if name == "unsubscribed":
                unsubscribe = frozenset({"unsubscribe"})
                return Reads(events=unsubscribe, attributes=frozenset({name}), history=unsubscribe)
            return Reads(attributes=frozenset({name}))
        case ir.Call():
            return _call_reads(expr)
        case ir.Not() | ir.Negate():
            return reads(expr.operand)
        case ir.Logic():
            return _union(reads(o) for o in expr.operands)
        case ir.Compare() | ir.Arith():
            return reads(expr.left) | reads(expr.right)
        case ir.ListExpr():
            return _union(reads(i) for i in expr.items)
    return Reads()


def _union(parts: Iterable[Reads]) -> Reads:
    out = Reads()
    for p in parts:
        out = out | p
    return out


def _name(arg: ir.Expr | None) -> str | None:
    return arg.name if isinstance(arg, ir.Ref) else None


def _call_reads(call: ir.Call) -> Reads:
    fn = call.function
    inner = _union(reads(a) for a in call.args) | _union(
        reads(v) for k, v in call.kwargs.items() if k not in ("where", "within")
    )
    events: set[str] = set()
    if fn in _FIXED_EVENTS:
        events.add(_FIXED_EVENTS[fn])
    first = _name(call.args[0]) if call.args else None
    if (fn in _EVENT_ARG or fn in _POPULATION_OF_EVENT) and first is not None:
        events.add(first)
    memberships: set[str] = set()
    if fn == "in_list" and first:
        memberships.add(f"list:{first}")
    elif fn == "in_segment" and first:
        memberships.add(f"segment:{first}")
    elif fn == "in_stage":
        memberships.add("stage")
    windows: set[tuple[str, int]] = set()
    history: set[str] = set()
    within = call.kwargs.get("within")
    if isinstance(within, ir.Const) and isinstance(within.value, int):
        windows |= {(e, within.value) for e in events}
    else:
        history |= events
    population = (
        {population_key(call)} if fn in ("top", "bottom") or fn in _POPULATION_OF_EVENT else set()
    )
    return inner | Reads(
        events=frozenset(events),
        memberships=frozenset(memberships),
        windows=frozenset(windows),
        clock=fn in _CLOCK,
        population=frozenset(k for k in population if k),
        history=frozenset(history),
    )


def account_event_types(ws: ir.Workspace) -> frozenset[str]:
    """The event types the account-wide exits read (`exit when … for account`): such an event
    of one lead concerns every lead of its account."""
    found: set[str] = set()
    for flow in ws.flows.values():
        for rule in flow.exits:
            if rule.scope == "account":
                found |= reads(rule.condition).events
    return frozenset(found)


def population_key(call: ir.Call) -> str:
    """The key under which the population of a `top`/`bottom`/RFM measure is kept (as the
    evaluator looks it up)."""
    match call.function:
        case "top" | "bottom":
            return expr_text(call.args[0])
        case "recency_score":
            return f"days_since({expr_text(call.args[0])})"
        case "frequency_score":
            return f"count({expr_text(call.args[0])})"
        case "monetary_score":
            return expr_text(call)
    return ""


def population_measures(ws: ir.Workspace) -> dict[str, ir.Expr]:
    """Every population measure the workspace's conditions use, as an expression whose value for
    one lead is that lead's place in the population."""
    out: dict[str, ir.Expr] = {}

    def walk(expr: ir.Expr | None) -> None:
        if expr is None:
            return
        if isinstance(expr, ir.Call):
            key = population_key(expr)
            if key:
                out[key] = _measure(expr)
            for a in [*expr.args, *expr.kwargs.values()]:
                walk(a)
        elif isinstance(expr, ir.Not | ir.Negate):
            walk(expr.operand)
        elif isinstance(expr, ir.Logic):
            for o in expr.operands:
                walk(o)
        elif isinstance(expr, ir.Compare | ir.Arith):
            walk(expr.left)
            walk(expr.right)

    for condition in _all_conditions(ws):
        walk(condition)
    return dict(sorted(out.items()))


def _measure(call: ir.Call) -> ir.Expr:
    match call.function:
        case "top" | "bottom":
            return call.args[0]
        case "recency_score":
            return ir.Call(function="days_since", args=call.args[:1])
        case "frequency_score":
            return ir.Call(function="count", args=call.args[:1])
    return ir.Call(function="total", args=call.args[:2], kwargs=call.kwargs)


def _all_conditions(ws: ir.Workspace) -> list[ir.Expr]:
    conditions: list[ir.Expr] = [s.condition for s in ws.segments.values()]
    conditions += [s.condition for s in ws.stages if s.condition is not None]
    for decl in ws.lists.values():
        conditions += [*decl.add_when, *decl.remove_when]
    conditions += [r.when for r in ws.scoring.rules if r.when is not None]
    for flow in ws.flows.values():
        conditions += [x.condition for x in flow.exits] + [g.condition for g in flow.goals]
        for step in flow.steps.values():
            if isinstance(step, ir.Branch):
                conditions += [a.condition for a in step.arms]
            elif isinstance(step, ir.WaitFor):
                conditions.append(step.condition)
    return conditions


# ---------------------------------------------------------------------------- the rule set

RuleKind = Literal["stage", "score", "list", "segment"]
RuleId = tuple[RuleKind, str]  # ("stage", "*"), ("score", "*"), ("list", name), ("segment", name)
STAGES: RuleId = ("stage", "*")
SCORE: RuleId = ("score", "*")


@dataclass(frozen=True)
class Change:
    """A lead's standing moved: `what` is `stage.changed`, `segment.entered`, `segment.left`,
    `list.entered` or `list.left`; `reason` is the rule and the values that decided it."""

    what: str
    name: str
    reason: str
    before: str | None = None


@dataclass
class RuleSet:
    """The workspace's lead rules, with what each reads, compiled once per published workspace."""

    ws: ir.Workspace
    reads: dict[RuleId, Reads] = field(default_factory=dict)
    by_event: dict[str, set[RuleId]] = field(default_factory=dict)
    by_membership: dict[str, set[RuleId]] = field(default_factory=dict)
    by_attribute: dict[str, set[RuleId]] = field(default_factory=dict)
    measures: dict[str, ir.Expr] = field(default_factory=dict)
    clock: bool = False  # some rule reads the clock (`days_since`, `now`, …)
    stage_reads: list[Reads] = field(default_factory=list)  # each stage's rule, in order
    # The shortest window or decay period: an event's `next_check` moments are at least that
    # long after it (or, dated ahead, the event itself). None: events bring no moments.
    soonest: timedelta | None = None

    @classmethod
    def of(cls, ws: ir.Workspace) -> RuleSet:
        rules = cls(ws)
        if ws.stages:
            rules.stage_reads = [reads(s.condition) for s in ws.stages]
            rules.reads[STAGES] = _union(rules.stage_reads)
        if ws.scoring.rules:
            score = _union(reads(r.when) for r in ws.scoring.rules)
            engaged = {r.per_event for r in ws.scoring.rules if r.per_event}
            windows = {
                (r.per_event, r.within_seconds)
                for r in ws.scoring.rules
                if r.per_event and r.within_seconds
            }
            always = {r.per_event for r in ws.scoring.rules if r.per_event and not r.within_seconds}
            rules.reads[SCORE] = score | Reads(
                events=frozenset({*engaged, SCORE_ADJUSTED}),
                windows=frozenset(windows),
                history=frozenset({*always, SCORE_ADJUSTED}),  # flows' points decay, never leave
            )
        for name, decl in ws.lists.items():
            if decl.add_when or decl.remove_when:
                rules.reads[("list", name)] = _union(
                    reads(c) for c in [*decl.add_when, *decl.remove_when]
                )
        for name, segment in ws.segments.items():
            rules.reads[("segment", name)] = reads(segment.condition)
        for rule, r in rules.reads.items():
            for e in r.events:
                rules.by_event.setdefault(e, set()).add(rule)
            for m in r.memberships:
                rules.by_membership.setdefault(m, set()).add(rule)
            for a in r.attributes:
                rules.by_attribute.setdefault(a, set()).add(rule)
        rules.measures = population_measures(ws)
        rules.clock = any(r.clock for r in rules.reads.values())
        spans = [seconds for r in rules.reads.values() for _, seconds in r.windows]
        if SCORE in rules.reads and ws.scoring.decay is not None:
            spans.append(ws.scoring.decay.every_seconds)
        rules.soonest = timedelta(seconds=min(spans)) if spans else None
        return rules

    @property
    def empty(self) -> bool:
        return not self.reads

    def affected_by(self, events: Iterable[Event]) -> set[RuleId]:
        """The rules whose answer the events can change: those that read the event types, and
        for membership events (a stage, list or segment changed) those that read the membership.

        What a flow writes to the lead comes with such an event, and the lead read with it
        already holds the new value: `score.adjusted` (`update lead.score …`) names the rules
        that read the score too, as re-checking the score finds it unchanged and would not lead
        to them; `stage.changed` (`update lead.stage = …`) names the stage rules, which move a
        lead up from the stage it is at. (An attribute or a tag a flow changes leaves no event: the
        drivers re-check the lead for it, `reading_attributes`, or make it due.)

        A lead put on or taken off a rule-fed list by anything but the list's rules (a flow's
        `add to list` / `remove from list`, an import, a form's route: a `list.entered` or
        `list.left` without the `reason` the rules give theirs) names the list's own rules too,
        so that they win at once, as in a full recompute: a flow adds a lead to `repeat_clickers`
        and `remove when count(click, within=30d) == 0` takes it off again in the same tick. The
        rules' own changes do not, or contradictory rules would flip the lead forever."""
        out: set[RuleId] = set()
        for e in events:
            out |= self.by_event.get(e.type, set())
            if e.type == SCORE_ADJUSTED:
                out |= self.by_membership.get("score", set())
            elif e.type == "stage.changed" and STAGES in self.reads:
                out.add(STAGES)
            membership = _MEMBERSHIP_OF.get(e.type)
            if membership is not None:
                name = e.properties.get(membership)
                key = membership if membership == "stage" else f"{membership}:{name}"
                out |= self.by_membership.get(key, set())
                if membership == "list" and "reason" not in e.properties:
                    rule: RuleId = ("list", str(name))
                    if rule in self.reads:
                        out.add(rule)
        return out

    def reached_from(self, only: Iterable[RuleId]) -> frozenset[RuleId]:
        """`only` and every rule that re-checking them can lead `reevaluate` to: those reading a
        standing (stage, score, list or segment membership) one of them may change, and so on."""
        found = set(only) & self.reads.keys()
        todo = list(found)
        while todo:
            for rule in self.by_membership.get(_standing(todo.pop()), ()):
                if rule not in found:
                    found.add(rule)
                    todo.append(rule)
        return frozenset(found)

    def history_read(self, rules: Iterable[RuleId], stage: str | None) -> dict[str, int | None]:
        """What re-checking `rules` reads of the history of a lead at `stage`: per event type,
        the longest window it is read within, in seconds (None: all of it). The stage rule reads
        only the rules of the stages above the lead's, as it only ever moves a lead up."""
        out: dict[str, int | None] = {}
        for rule in rules:
            r = self._stages_above(stage) if rule == STAGES else self.reads[rule]
            for event_type in r.history | (r.events - {t for t, _ in r.windows}):
                out[event_type] = None
            for event_type, seconds in r.windows:
                if event_type not in out:
                    out[event_type] = seconds
                elif (longest := out[event_type]) is not None:
                    out[event_type] = max(longest, seconds)
        return out

    def _stages_above(self, stage: str | None) -> Reads:
        """What the stage rule reads for a lead at `stage` (as `_check_stages` tries them)."""
        order = [s.name for s in self.ws.stages]
        if stage is None:
            return self.reads.get(STAGES, Reads())
        if stage not in order:
            return Reads()  # set by hand or import: the rules leave it
        return _union(self.stage_reads[: order.index(stage)])

    def reading_attributes(self, names: Iterable[str]) -> set[RuleId]:
        out: set[RuleId] = set()
        for n in names:
            out |= self.by_attribute.get(n, set())
        return out

    def hashes(self) -> dict[str, str]:
        """A hash per rule (`stage`, `score`, `list:<name>`, `segment:<name>`) that changes when
        the rule or the settings change: what a new publication changes of the rules."""
        ws = self.ws
        parts: dict[str, Any] = {}
        if ws.stages:
            parts["stage"] = [s.model_dump(mode="json") for s in ws.stages]
        if ws.scoring.rules:
            parts["score"] = ws.scoring.model_dump(mode="json")
        for name, decl in ws.lists.items():
            if decl.add_when or decl.remove_when:
                parts[f"list:{name}"] = decl.model_dump(mode="json")
        for name, segment in ws.segments.items():
            parts[f"segment:{name}"] = segment.condition.model_dump(mode="json")
        return {key: _digest([value, ws.settings]) for key, value in parts.items()}


# ---------------------------------------------------------------------------- evaluation


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reevaluate(
    rules: RuleSet,
    facts: LeadFacts,
    now: datetime,
    only: Iterable[RuleId] | None = None,
) -> tuple[LeadFacts, list[Change]]:
    """The lead's standing after checking `only` those rules (all of them when None), and every
    rule that reads a standing that changed on the way."""
    pending = set(rules.reads) if only is None else set(only) & set(rules.reads)
    changes: list[Change] = []
    for _ in range(len(rules.reads) + 1):  # each round only follows a change; this bounds cycles
        if not pending:
            break
        moved: set[str] = set()
        # Score first: stage and segment rules may read it; then lists, segments, stages.
        for rule in sorted(pending, key=_order):
            facts, changed = _check(rules, rule, facts, now, changes)
            moved |= changed
        pending = set()
        for m in moved:
            pending |= rules.by_membership.get(m, set())
    return facts, changes


def _standing(rule: RuleId) -> str:
    """The membership key (as `Reads.memberships` names it) of what the rule decides."""
    kind, name = rule
    return kind if kind in ("stage", "score") else f"{kind}:{name}"


def _order(rule: RuleId) -> tuple[int, str]:
    return ({"score": 0, "list": 1, "segment": 2, "stage": 3}[rule[0]], rule[1])


def _check(
    rules: RuleSet, rule: RuleId, facts: LeadFacts, now: datetime, changes: list[Change]
) -> tuple[LeadFacts, set[str]]:
    kind, name = rule
    ctx = Context(facts, now, settings=rules.ws.settings)
    match kind:
        case "score":
            score = round(score_of(rules.ws, facts, now), 6)
            if score == facts.score:
                return facts, set()
            return dataclasses.replace(facts, score=score), {"score"}
        case "segment":
            return _check_segment(rules.ws.segments[name], facts, ctx, changes)
        case "list":
            return _check_list(rules.ws.lists[name], facts, ctx, changes)
    return _check_stages(rules.ws.stages, facts, ctx, changes)


def _check_segment(
    segment: ir.Segment, facts: LeadFacts, ctx: Context, changes: list[Change]
) -> tuple[LeadFacts, set[str]]:
    verdict = holds(segment.condition, ctx)
    name = segment.name
    if verdict.value == (name in facts.segments):
        return facts, set()
    what = "segment.entered" if verdict.value else "segment.left"
    state = "holds" if verdict.value else "no longer holds"
    reason = f"segment {name}: `{expr_text(segment.condition)}` {state}"
    changes.append(Change(what, name, _with_values(reason, verdict.reason())))
    segments = facts.segments | {name} if verdict.value else facts.segments - {name}
    return dataclasses.replace(facts, segments=frozenset(segments)), {f"segment:{name}"}


def _check_list(
    decl: ir.ListDecl, facts: LeadFacts, ctx: Context, changes: list[Change]
) -> tuple[LeadFacts, set[str]]:
    member = decl.name in facts.lists
    for condition in decl.remove_when if member else decl.add_when:
        verdict = holds(condition, ctx)
        if verdict.value:
            what = "list.left" if member else "list.entered"
            verb = "remove" if member else "add"
            reason = f"list {decl.name}: {verb} when `{expr_text(condition)}`"
            changes.append(Change(what, decl.name, _with_values(reason, verdict.reason())))
            lists = facts.lists - {decl.name} if member else facts.lists | {decl.name}
            return dataclasses.replace(facts, lists=frozenset(lists)), {f"list:{decl.name}"}
    return facts, set()


def _check_stages(
    stages: list[ir.Stage], facts: LeadFacts, ctx: Context, changes: list[Change]
) -> tuple[LeadFacts, set[str]]:
    """The first stage whose rule holds, and only ever upwards."""
    order = [s.name for s in stages]
    current = facts.stage
    rank = order.index(current) if current in order else None
    if current is not None and rank is None:
        return facts, set()  # a stage the rules do not know was set by hand or import: kept
    for index, stage in enumerate(stages):
        if rank is not None and index >= rank:
            return facts, set()
        if stage.condition is None:
            reason = f"stage {stage.name}: the first stage without a rule"
        else:
            verdict = holds(stage.condition, ctx)
            if not verdict.value:
                continue
            reason = _with_values(
                f"stage {stage.name}: `{expr_text(stage.condition)}` holds", verdict.reason()
            )
        changes.append(Change("stage.changed", stage.name, reason, before=current))
        return dataclasses.replace(facts, stage=stage.name), {"stage"}
    return facts, set()


def membership_event(change: Change, at: datetime) -> Event:
    """The event a change becomes, for triggers (`trigger entered segment …`) and the timeline."""
    key = change.what.split(".")[0]
    properties: dict[str, Any] = {key: change.name, "reason": change.reason}
    if change.what == "stage.changed":
        properties["from"] = change.before
    return Event(change.what, at, properties)


def _with_values(reason: str, values: str) -> str:
    return f"{reason}: {values}" if values else reason


# ---------------------------------------------------------------------------- scoring


def _decay(ws: ir.Workspace, age: timedelta) -> float:
    decay = ws.scoring.decay
    if decay is None or age.total_seconds() <= 0:
        return 1.0
    periods = math.floor(age.total_seconds() / decay.every_seconds)
    return float((1 - decay.percent / 100) ** periods)


def score_of(ws: ir.Workspace, facts: LeadFacts, now: datetime) -> float:
    """Fit points for every rule that holds, engagement points per event in its window, and the
    points flows added; engagement and added points fade by the decay for each full period."""
    ctx = Context(facts, now, settings=ws.settings)
    total = 0.0
    for rule in ws.scoring.rules:
        if rule.kind == "fit" or rule.per_event is None:
            if rule.when is not None and holds(rule.when, ctx).value:
                total += rule.points
            continue
        since = now - timedelta(seconds=rule.within_seconds) if rule.within_seconds else None
        for e in facts.matching([rule.per_event], since=since, until=now):
            total += rule.points * _decay(ws, now - e.at)
    for e in facts.matching([SCORE_ADJUSTED], until=now, humans_only=False):
        delta = e.properties.get("delta")
        if isinstance(delta, int | float) and not isinstance(delta, bool):
            total += float(delta) * _decay(ws, now - e.at)
    return total


def next_check(rules: RuleSet, facts: LeadFacts, now: datetime) -> datetime | None:
    """The next moment the lead's rules can change their answer without a new fact: an event
    leaving a window, a decay period ending (or a dated event starting to count towards the
    score), or the hourly look at rules that read the clock.

    An event's moments after `now` stay what they are until the first of them has passed. So,
    without rules that read the clock, the earlier of this moment, computed before and still
    ahead, and this over new events alone is this over all events (`lifecycle.InPart`)."""
    moments: list[datetime] = []
    decay = rules.ws.scoring.decay
    for rule, r in rules.reads.items():
        for event_type, seconds in r.windows:
            for e in facts.of_type(event_type):
                end = e.at + timedelta(seconds=seconds)
                if end > now:
                    moments.append(end)
                    break  # events are in time order: the earliest still inside ends first
        if r.clock:
            moments.append(now + CLOCK_RECHECK)
        if rule == SCORE and decay is not None:
            period = timedelta(seconds=decay.every_seconds)
            for event_type in r.events:
                for e in facts.of_type(event_type):
                    if e.at > now:
                        moments.append(e.at)
                        continue
                    periods = math.floor((now - e.at) / period) + 1
                    moments.append(e.at + periods * period)
    later = [m for m in moments if m > now]
    return min(later) if later else None


# ---------------------------------------------------------------------------- population


def population_values(
    rules: RuleSet, leads: Iterable[LeadFacts], now: datetime
) -> dict[str, list[float]]:
    """For each population measure, every lead's value, sorted (what `Population` holds)."""
    out: dict[str, list[float]] = {key: [] for key in rules.measures}
    for facts in leads:
        ctx = Context(facts, now, settings=rules.ws.settings)
        for key, measure in rules.measures.items():
            value = evaluate(measure, ctx)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key].append(float(value))
    return {k: sorted(v) for k, v in out.items()}
