"""The pure interpreter: `decide(flow, enrollment, facts, now)` → the new enrollment and its decisions.

No I/O and no clock: the real runtime calls it on APScheduler's ticks and on incoming events, the
simulator on a virtual clock; both see the same decisions. A timer that completes hands its due time
(not the moment it was noticed) to the next step, so paths never drift with tick granularity.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dsl import ir
from dsl.ir_text import duration_text, expr_text
from flowbuilder.engine import calendar
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
    Status,
    Suppress,
    UpdateLead,
)
from flowbuilder.engine.evaluate import Context, as_datetime, evaluate, holds
from flowbuilder.engine.facts import LeadFacts, updated

# A flow without waits in a loop is refused by lint (FB305); this bounds one call all the same.
MAX_STEPS_PER_CALL = 500


@dataclass(frozen=True)
class Outcome:
    enrollment: Enrollment
    decisions: list[Decision] = field(default_factory=list)


def bucket(*parts: str) -> float:
    """A stable number in [0, 100) per lead and step: splits and variants never reshuffle."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


@dataclass
class _Run:
    flow: ir.Flow
    policy: ir.WorkspacePolicy
    settings: dict[str, Any]
    enrollment: Enrollment
    facts: LeadFacts
    now: datetime
    decisions: list[Decision] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    sent: list[datetime] = field(default_factory=list)

    @property
    def tz(self) -> str:
        return self.facts.timezone or self.flow.policy.timezone or self.policy.timezone or "UTC"

    def ctx(self, at: datetime | None = None) -> Context:
        return Context(self.facts, at or self.now, settings=self.settings, flow=self.flow.name)


def decide(
    flow: ir.Flow,
    enrollment: Enrollment,
    facts: LeadFacts,
    now: datetime,
    *,
    policy: ir.WorkspacePolicy | None = None,
    settings: dict[str, Any] | None = None,
) -> Outcome:
    """Move one enrollment as far as it can go at `now`."""
    if enrollment.status != "active" or enrollment.step is None:
        return Outcome(enrollment)
    run = _Run(
        flow,
        policy or ir.WorkspacePolicy(),
        settings or {},
        enrollment,
        facts,
        now,
        context=dict(enrollment.context),
    )
    # Goals first: a purchase that both converts and ends the flow must still count as a conversion.
    _goals(run)
    left = _exits(run)
    if left is not None:
        return left
    step_name: str | None = enrollment.step
    arrived = enrollment.step_entered_at
    for _ in range(MAX_STEPS_PER_CALL):
        if step_name is None:
            return _leave(run, None, "completed", "reached the end of the flow", arrived)
        step = flow.steps.get(step_name)
        if step is None:
            return _leave(
                run,
                step_name,
                "exited",
                f"step `{step_name}` no longer exists in this version",
                arrived,
            )
        moved = _step(run, step, arrived)
        if isinstance(moved, Outcome):
            return moved
        target, at, reason = moved
        run.decisions.append(Advance(step.name, reason, to=target or "(end)", at=at))
        if target is not None:
            visits = run.context["visits"] = dict(run.context.get("visits", ()))
            visits[target] = visits.get(target, 0) + 1
        step_name, arrived = target, at
    return _leave(
        run, step_name, "exited", f"more than {MAX_STEPS_PER_CALL} steps without a wait", arrived
    )


# ---------------------------------------------------------------------------- policy checks


def _exits(run: _Run) -> Outcome | None:
    for rule in run.flow.exits:
        ctx = run.ctx()
        if rule.scope == "account":
            ctx.facts = run.facts.for_account()
        verdict = holds(rule.condition, ctx)
        if verdict.value:
            scope = " (for the account)" if rule.scope == "account" else ""
            reason = f"exit when {expr_text(rule.condition)}{scope}: {verdict.reason()}"
            return _leave(run, run.enrollment.step, "exited", reason, run.now)
    return None


def _goals(run: _Run) -> None:
    if not run.flow.goals:
        return
    reached = set(run.context.get("goals", []))
    for goal in run.flow.goals:
        if goal.name in reached:
            continue
        if goal.within_seconds is not None and run.now > run.enrollment.entered_at + timedelta(
            seconds=goal.within_seconds
        ):
            continue
        verdict = holds(goal.condition, run.ctx())
        if verdict.value:
            reached.add(goal.name)
            run.decisions.append(
                ReachGoal(
                    run.enrollment.step, f"goal {goal.name}: {verdict.reason()}", goal=goal.name
                )
            )
    run.context["goals"] = sorted(reached)


def _moved(enrollment: Enrollment, **changes: Any) -> Enrollment:
    """`dataclasses.replace` without its per-call field introspection (this runs per decision)."""
    new = object.__new__(Enrollment)
    new.__dict__.update(enrollment.__dict__)
    new.__dict__.update(changes)
    return new


def _leave(run: _Run, step: str | None, status: Status, reason: str, at: datetime) -> Outcome:
    run.decisions.append(Leave(step, reason, status=status))
    enrollment = _moved(
        run.enrollment,
        step=step,
        status=status,
        step_entered_at=at,
        due_at=None,
        waiting_for_facts=False,
        context=run.context,
    )
    return Outcome(enrollment, run.decisions)


def _hold(
    run: _Run,
    step: str,
    arrived: datetime,
    until: datetime | None,
    reason: str,
    *,
    facts: bool = False,
) -> Outcome:
    if until is not None and until <= run.now:
        # Both drivers decide again at `until`; a hold that is already due would never progress.
        raise AssertionError(f"{run.flow.name}.{step}: hold until {until} is not after {run.now}")
    run.decisions.append(Hold(step, reason, until=until))
    enrollment = _moved(
        run.enrollment,
        step=step,
        step_entered_at=arrived,
        due_at=until,
        waiting_for_facts=facts,
        context=run.context,
    )
    return Outcome(enrollment, run.decisions)


# ---------------------------------------------------------------------------- steps

_Move = tuple[str | None, datetime, str]


def _step(run: _Run, step: ir.Step, arrived: datetime) -> Outcome | _Move:
    """Run one step: an Outcome when the lead stops here, else (next step, logical time, reason)."""
    match step:
        case ir.Send():
            return _send(run, step, arrived)
        case ir.Wait():
            return _timer(
                run,
                step,
                arrived,
                arrived + timedelta(seconds=step.seconds),
                f"waited {duration_text(step.seconds)}",
            )
        case ir.WaitBusinessDays():
            calendar_name = run.flow.policy.business_days or run.policy.business_days or "default"
            due = calendar.add_business_days(arrived, step.days, run.tz, calendar_name)
            return _timer(run, step, arrived, due, f"waited {step.days} business days")
        case ir.WaitUntilTime():
            due = calendar.next_time_of_day(arrived, step.time, step.weekdays, run.tz)
            return _timer(run, step, arrived, due, f"waited until {step.time} ({run.tz})")
        case ir.WaitUntilDate():
            when = as_datetime(evaluate(step.date, run.ctx()))
            if when is None:
                return (
                    step.next,
                    arrived,
                    f"{expr_text(step.date)} is unknown for this lead, so there is nothing to wait for",
                )
            return _timer(
                run,
                step,
                arrived,
                max(when, arrived),
                f"waited until {expr_text(step.date)} = {when.isoformat()}",
            )
        case ir.WaitFor():
            return _wait_for(run, step, arrived)
        case ir.Branch():
            ctx = run.ctx()
            tried = []
            for index, arm in enumerate(step.arms):
                verdict = holds(arm.condition, ctx)
                if verdict.value:
                    return (
                        arm.target,
                        arrived,
                        f"arm {index + 1} `{expr_text(arm.condition)}` holds: {verdict.reason()}",
                    )
                tried.append(verdict.reason())
            label = "else" if step.has_else else "no arm matched"
            return step.otherwise, arrived, f"{label}: " + " | ".join(tried)
        case ir.Split():
            return _split(run, step, arrived)
        case ir.Update():
            return _update(run, step, arrived)
        case ir.AddToList() | ir.RemoveFromList():
            add = isinstance(step, ir.AddToList)
            lists = run.facts.lists | {step.list} if add else run.facts.lists - {step.list}
            run.facts = dataclasses.replace(run.facts, lists=frozenset(lists))
            verb = "added to" if add else "removed from"
            run.decisions.append(
                ChangeList(step.name, f"{verb} list {step.list}", list=step.list, add=add)
            )
            return step.next, arrived, f"{verb} list {step.list}"
        case ir.MoveToFlow():
            run.decisions.append(
                MoveToFlow(step.name, f"moved to flow {step.flow}", flow=step.flow)
            )
            return _leave(run, step.name, "moved", f"moved to flow {step.flow}", arrived)
        case ir.Webhook():
            run.decisions.append(
                CallWebhook(
                    step.name, f"webhook {step.url}", url=step.url, key=_key(run, step.name)
                )
            )
            return step.next, arrived, "webhook called"
        case ir.ReachGoal():
            goals = set(run.context.get("goals", []))
            if step.goal not in goals:
                run.decisions.append(
                    ReachGoal(step.name, f"reached goal step {step.name}", goal=step.goal)
                )
                run.context["goals"] = sorted(goals | {step.goal})
            return step.next, arrived, f"goal {step.goal} reached"
        case ir.Suppress():
            why = step.reason or f"suppressed by flow {run.flow.name}, step {step.name}"
            if not run.facts.suppressed:
                run.decisions.append(Suppress(step.name, f"suppressed: {why}", why=why))
                run.facts = dataclasses.replace(run.facts, suppressed=True)
            return step.next, arrived, "address suppressed"
        case ir.End():
            return _leave(run, step.name, "completed", step.reason or "reached `end`", arrived)
    raise AssertionError(step)


def _timer(
    run: _Run, step: ir.Step, arrived: datetime, due: datetime, done: str
) -> Outcome | _Move:
    if run.now >= due:
        following = ir.successors(step)
        return following[0] if following else None, due, done
    return _hold(run, step.name, arrived, due, f"waiting until {due.isoformat()}")


def _wait_for(run: _Run, step: ir.WaitFor, arrived: datetime) -> Outcome | _Move:
    verdict = holds(step.condition, run.ctx())
    if verdict.value:
        return (
            step.next,
            max(arrived, run.now),
            f"`{_text(step.condition)}` holds: {verdict.reason()}",
        )
    if step.timeout_seconds is not None:
        deadline = arrived + timedelta(seconds=step.timeout_seconds)
        if run.now >= deadline:
            return (
                step.timeout_next,
                deadline,
                f"no `{_text(step.condition)}` within {duration_text(step.timeout_seconds)}",
            )
        return _hold(
            run,
            step.name,
            arrived,
            deadline,
            f"waiting up to {deadline.isoformat()} for {_text(step.condition)}",
            facts=True,
        )
    return _hold(run, step.name, arrived, None, f"waiting for {_text(step.condition)}", facts=True)


_TEXTS: dict[int, tuple[ir.Expr, str]] = {}


def _text(expr: ir.Expr) -> str:
    """`expr_text`, remembered per condition: a wait's reason is written at every decision."""
    hit = _TEXTS.get(id(expr))
    if hit is not None and hit[0] is expr:
        return hit[1]
    if len(_TEXTS) > 10_000:  # workspaces come and go in a long-running process
        _TEXTS.clear()
    text = expr_text(expr)
    _TEXTS[id(expr)] = (expr, text)
    return text


def _key(run: _Run, step: str) -> str:
    """An idempotency key that is the same however often the decision is made again."""
    visit = run.context.get("visits", {}).get(step, 1)
    e = run.enrollment
    return f"{e.lead_id}/{e.flow}/{e.entered_at.isoformat()}/{step}/{visit}"


def _send(run: _Run, step: ir.Send, arrived: datetime) -> Outcome | _Move:
    unsent = _unsendable(run)
    if unsent is not None:
        return step.next, arrived, f"not sent: {unsent}"
    flow_policy, ws = run.flow.policy, run.policy
    window = flow_policy.send_window or ws.send_window
    quiet = flow_policy.quiet_hours or ws.quiet_hours
    business = flow_policy.business_days or ws.business_days
    allowed = calendar.sendable_from(run.now, run.tz, window, quiet, business)
    if allowed > run.now:
        return _hold(
            run,
            step.name,
            arrived,
            allowed,
            f"outside the send window or in quiet hours ({run.tz}); sending at {allowed.isoformat()}",
        )
    for cap in (flow_policy.frequency_cap, ws.frequency_cap):
        if cap is None:
            continue
        # The cap counts sends in the half-open window (now - per, now]: a send exactly `per` ago
        # no longer counts, so the moment the cap names as the next send is one it allows.
        since = run.now - timedelta(seconds=cap.per_seconds)
        recent = sorted(
            [
                e.at
                for e in run.facts.matching(["send"], since=since, until=run.now, humans_only=False)
                if e.at > since
            ]
            + [t for t in run.sent if t > since]
        )
        if len(recent) >= cap.count:
            until = recent[len(recent) - cap.count] + timedelta(seconds=cap.per_seconds)
            return _hold(
                run,
                step.name,
                arrived,
                until,
                f"frequency cap {cap.count} per {duration_text(cap.per_seconds)} reached ({len(recent)} sent); next send at {until.isoformat()}",
            )
    variant = _variant(run, step)
    chosen = variant or _NO_VARIANT
    run.decisions.append(
        SendEmail(
            step.name,
            f"send {chosen.template or step.template}"
            + (f" (variant {variant.name})" if variant else ""),
            template=chosen.template or step.template,
            key=_key(run, step.name),
            variant=variant.name if variant else None,
            subject=chosen.subject or step.subject,
            preheader=chosen.preheader or step.preheader,
            sender=chosen.sender or step.sender,
        )
    )
    run.sent.append(run.now)
    return step.next, max(arrived, run.now), "sent"


_NO_VARIANT = ir.Variant(name="", percent=100)


def _unsendable(run: _Run) -> str | None:
    """Why no email may go to this lead at all; the lead still walks the flow."""
    if run.facts.suppressed:
        return "the address is suppressed"
    if run.facts.unsubscribed and run.flow.kind != "transactional":
        return f"the lead unsubscribed, and `{run.flow.name}` is a {run.flow.kind} flow"
    return None


def _variant(run: _Run, step: ir.Send) -> ir.Variant | None:
    if not step.variants:
        return None
    drawn = run.context.get(f"variant:{step.name}")
    if drawn is None:
        point, total = bucket(run.enrollment.lead_id, run.flow.name, step.name, "variant"), 0.0
        for v in step.variants:
            total += v.percent
            if point < total:
                drawn = v.name
                break
        drawn = drawn or step.variants[-1].name
        run.context[f"variant:{step.name}"] = drawn
    return next(v for v in step.variants if v.name == drawn)


def _split(run: _Run, step: ir.Split, arrived: datetime) -> Outcome | _Move:
    point = bucket(run.enrollment.lead_id, run.flow.name, step.name, "split")
    total = 0.0
    for path in step.paths:
        total += path.percent
        if point < total:
            return (
                path.target,
                arrived,
                f"split: drawn {point:.1f} falls in the {path.percent:g}% path to {path.target}",
            )
    return _leave(
        run,
        step.name,
        "exited",
        f"split: drawn {point:.1f} falls in the {step.holdout:g}% holdout (control group)",
        arrived,
    )


def _update(run: _Run, step: ir.Update, arrived: datetime) -> _Move:
    value = evaluate(step.value, run.ctx())
    name = step.target.attrs[0]
    if name not in ("score", "stage", "tags") and step.op != "=":
        current = run.facts.attributes.get(name)
        base = current if isinstance(current, int | float) else 0
        value = base + value if step.op == "+=" else base - value
    run.facts = updated(run.facts, step.target.dotted(), step.op, value)
    text = f"{step.target.dotted()} {step.op} {value!r}"
    run.decisions.append(
        UpdateLead(step.name, text, attribute=step.target.dotted(), op=step.op, value=value)
    )
    return step.next, arrived, text
