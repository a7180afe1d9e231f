"""Evaluate IR conditions against a lead's facts at a moment, recording why each part came out as it did.

Missing values are `None` and never raise: a comparison with a missing value is false (except
`== null`), arithmetic with one is missing, and `and` / `or` treat it as false.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dsl import ir
from dsl.ir_text import expr_text
from flowbuilder.engine.facts import Event, LeadFacts, window_start

REACTIONS = {
    "opened": "open",
    "clicked": "click",
    "replied": "reply",
    "delivered": "delivery",
    "bounced": "bounce",
}


@dataclass(frozen=True)
class Check:
    """One evaluated part of a condition and the value that decided it, for the why-trace.

    The words are written only when a reason is read: segment tests and trigger filters evaluate
    far more conditions than end up in a decision log."""

    expr: ir.Expr
    value: Any

    @property
    def text(self) -> str:
        return expr_text(self.expr)

    def __str__(self) -> str:
        return f"{self.text} = {_show(self.value)}"


@dataclass
class Context:
    facts: LeadFacts
    now: datetime
    settings: Mapping[str, Any] = field(default_factory=dict)
    flow: str | None = None
    event: Event | None = None
    answers: Mapping[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    value: bool
    checks: tuple[Check, ...]

    def reason(self) -> str:
        return "; ".join(str(c) for c in self.checks)


def holds(expr: ir.Expr, ctx: Context) -> Verdict:
    """Whether a condition holds, with the checks that decided it."""
    ctx.checks = []
    value = evaluate(expr, ctx)
    return Verdict(value is True, tuple(ctx.checks))


def evaluate(expr: ir.Expr, ctx: Context) -> Any:
    # One dictionary lookup per node: conditions are evaluated for every lead at every decision.
    return _EVALUATORS[type(expr)](expr, ctx)


def _eval_logic(expr: ir.Logic, ctx: Context) -> bool:
    if expr.op == "and":
        return all(_truthy(evaluate(o, ctx)) for o in expr.operands)
    return any(_truthy(evaluate(o, ctx)) for o in expr.operands)


def _eval_compare(expr: ir.Compare, ctx: Context) -> Any:
    left, right = evaluate(expr.left, ctx), evaluate(expr.right, ctx)
    result = _compare(expr.op, left, right)
    if not isinstance(expr.left, ir.Const):
        ctx.checks.append(Check(expr.left, left))
    return result


def _eval_call(expr: ir.Call, ctx: Context) -> Any:
    value = _FUNCTIONS[expr.function](expr, ctx)
    if isinstance(value, bool):
        ctx.checks.append(Check(expr, value))
    return value


def _eval_negate(expr: ir.Negate, ctx: Context) -> Any:
    value = evaluate(expr.operand, ctx)
    return None if value is None else -value


_EVALUATORS: dict[type, Callable[[Any, Context], Any]] = {
    ir.Const: lambda e, ctx: _const(e),
    ir.Path: lambda e, ctx: _path(e, ctx),
    ir.Ref: lambda e, ctx: e.name,
    ir.ListExpr: lambda e, ctx: [evaluate(i, ctx) for i in e.items],
    ir.Not: lambda e, ctx: not _truthy(evaluate(e.operand, ctx)),
    ir.Negate: _eval_negate,
    ir.Logic: _eval_logic,
    ir.Compare: _eval_compare,
    ir.Arith: lambda e, ctx: _arith(e.op, evaluate(e.left, ctx), evaluate(e.right, ctx)),
    ir.Call: _eval_call,
}


# ---------------------------------------------------------------------------- values


def _const(c: ir.Const) -> Any:
    match c.type:
        case "duration":
            assert isinstance(c.value, int)
            return timedelta(seconds=c.value)
        case "date":
            assert isinstance(c.value, str)
            return as_datetime(c.value)
    return c.value


def as_datetime(value: Any) -> datetime | None:
    """Attribute dates arrive as ISO text or dates; inside they are aware UTC datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _path(p: ir.Path, ctx: Context) -> Any:
    first, rest = p.attrs[0], p.attrs[1:]
    value: Any
    match p.root:
        case "lead":
            value = ctx.facts.lead_value(first)
        case "settings":
            value = ctx.settings.get(first)
        case "event":
            value = None if ctx.event is None else ctx.event.properties.get(first)
        case "answer":
            value = None if ctx.answers is None else ctx.answers.get(first)
        case _:
            value = None
    for key in rest:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _truthy(value: Any) -> bool:
    return value is True


def _comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    if isinstance(left, datetime) or isinstance(right, datetime):
        a, b = as_datetime(left), as_datetime(right)
        return None if a is None or b is None else (a, b)
    if isinstance(left, bool) or isinstance(right, bool):
        return (left, right) if type(left) is type(right) else None
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left, right
    if isinstance(left, timedelta) and isinstance(right, timedelta):
        return left, right
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        pair = _comparable(left, right)
        equal = (pair[0] == pair[1]) if pair is not None else (left is None and right is None)
        return equal if op == "==" else not equal
    if left is None or right is None:
        return False
    match op:
        case "in" | "not in":
            inside = (
                left in right
                if isinstance(right, list | str)
                and (isinstance(right, list) or isinstance(left, str))
                else False
            )
            return inside if op == "in" else not inside
        case "contains":
            return (
                (right in left)
                if isinstance(left, list) or (isinstance(left, str) and isinstance(right, str))
                else False
            )
        case "starts_with":
            return isinstance(left, str) and isinstance(right, str) and left.startswith(right)
        case "ends_with":
            return isinstance(left, str) and isinstance(right, str) and left.endswith(right)
        case "matches":
            return (
                isinstance(left, str)
                and isinstance(right, str)
                and re.search(right, left) is not None
            )
    pair = _comparable(left, right)
    if pair is None:
        return False
    a, b = pair
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _arith(op: str, left: Any, right: Any) -> Any:
    if left is None or right is None:
        return None
    if isinstance(left, str) and op in ("+", "-") and isinstance(right, timedelta):
        left = as_datetime(left)
        if left is None:
            return None
    try:
        match op:
            case "+":
                return left + right
            case "-":
                return left - right
            case "*":
                return left * right
            case "/":
                return None if right == 0 else left / right
    except TypeError:
        return None
    raise AssertionError(op)


# ---------------------------------------------------------------------------- functions


def _kw(call: ir.Call, key: str, ctx: Context) -> Any:
    node = call.kwargs.get(key)
    return None if node is None else evaluate(node, ctx)


def _within(call: ir.Call, ctx: Context) -> datetime | None:
    window = _kw(call, "within", ctx)
    return None if window is None else ctx.now - window


def _events(call: ir.Call, ctx: Context, type_: str) -> list[Event]:
    step = call.kwargs.get("step")
    events = ctx.facts.matching(
        [type_],
        since=_within(call, ctx),
        until=ctx.now,
        flow=ctx.flow,
        step=step.name if isinstance(step, ir.Ref) else None,
    )
    where = call.kwargs.get("where")
    if where is None:
        return events
    saved, saved_checks = ctx.event, ctx.checks
    kept = []
    for e in events:
        ctx.event, ctx.checks = e, []
        if _truthy(evaluate(where, ctx)):
            kept.append(e)
    ctx.event, ctx.checks = saved, saved_checks
    return kept


def _event_name(call: ir.Call, index: int = 0) -> str:
    arg = call.args[index]
    assert isinstance(arg, ir.Ref)
    return arg.name


def _numbers(events: list[Event], prop: str) -> list[float]:
    return [
        float(v)
        for e in events
        if isinstance(v := e.properties.get(prop), int | float) and not isinstance(v, bool)
    ]


def _reaction(call: ir.Call, ctx: Context) -> bool:
    type_ = REACTIONS[call.function]
    if not ctx.facts.of_type(type_):
        return False  # asked at every decision (exit when replied()); most leads never did
    step = call.args[0].name if call.args and isinstance(call.args[0], ir.Ref) else None
    events = ctx.facts.matching(
        [type_],
        since=_within(call, ctx),
        until=ctx.now,
        flow=ctx.flow,
        step=step,
    )
    link = _kw(call, "link", ctx)
    if link is not None:
        events = [
            e
            for e in events
            if link in (e.properties.get("link"), e.properties.get("label"))
            or link in str(e.properties.get("url", ""))
        ]
    return bool(events)


def _quintile(ctx: Context, key: str, value: float | None, higher_is_better: bool) -> int | None:
    """RFM score 1–5: 5 for the best fifth of all leads on this measure."""
    if value is None:
        return None
    population = ctx.facts.population
    share = (
        population.share_at_or_above(key, value)
        if higher_is_better
        else population.share_at_or_below(key, value)
    )
    if share is None:
        return None
    return max(1, min(5, 6 - math.ceil(share * 5)))


def _top(call: ir.Call, ctx: Context, top: bool) -> bool:
    """`top(x, 20%)`: the lead's value is among the highest 20% of all leads' values."""
    value = evaluate(call.args[0], ctx)
    share = evaluate(call.args[1], ctx)
    if not isinstance(value, int | float) or not isinstance(share, int | float):
        return False
    key = expr_text(call.args[0])
    above = ctx.facts.population.share_at_or_above(key, value)
    if above is None:
        return False
    if top:
        return above <= share / 100
    below = ctx.facts.population.share_at_or_below(key, value)
    return below is not None and below <= share / 100


def _days_since(call: ir.Call, ctx: Context) -> float | None:
    events = ctx.facts.matching([_event_name(call)], until=ctx.now)
    if not events:
        return None
    return (ctx.now - max(e.at for e in events)).total_seconds() / 86400


def _today(ctx: Context) -> datetime:
    local = ctx.now.astimezone(ZoneInfo(ctx.facts.timezone or "UTC"))
    return datetime.combine(local.date(), time(), tzinfo=local.tzinfo).astimezone(UTC)


def _total(call: ir.Call, ctx: Context) -> float:
    return sum(_numbers(_events(call, ctx, _event_name(call)), _prop(call, ctx)))


def _prop(call: ir.Call, ctx: Context) -> str:
    return str(evaluate(call.args[1], ctx))


def _average(call: ir.Call, ctx: Context) -> float | None:
    values = _numbers(_events(call, ctx, _event_name(call)), _prop(call, ctx))
    return sum(values) / len(values) if values else None


def _viewed(call: ir.Call, ctx: Context) -> bool:
    document = evaluate(call.args[0], ctx)
    depth, seconds = _kw(call, "depth", ctx), _kw(call, "seconds", ctx)
    for e in ctx.facts.matching(["view"], since=_within(call, ctx), until=ctx.now):
        if e.properties.get("document") != document:
            continue
        if depth is not None and float(e.properties.get("depth", 0)) < depth:
            continue
        if seconds is not None and float(e.properties.get("seconds", 0)) < seconds:
            continue
        return True
    return False


_FUNCTIONS: dict[str, Callable[[ir.Call, Context], Any]] = {
    **{name: _reaction for name in REACTIONS},
    "unsubscribed": lambda c, ctx: (
        ctx.facts.unsubscribed or bool(ctx.facts.matching(["unsubscribe"], until=ctx.now))
    ),
    "complained": lambda c, ctx: bool(ctx.facts.matching(["complaint"], until=ctx.now)),
    "count": lambda c, ctx: len(_events(c, ctx, _event_name(c))),
    "occurred": lambda c, ctx: bool(_events(c, ctx, _event_name(c))),
    "days_since": _days_since,
    "days_until": lambda c, ctx: (
        None
        if (d := as_datetime(evaluate(c.args[0], ctx))) is None
        else (d - ctx.now).total_seconds() / 86400
    ),
    "in_list": lambda c, ctx: _event_name(c) in ctx.facts.lists,
    "in_segment": lambda c, ctx: _event_name(c) in ctx.facts.segments,
    "in_stage": lambda c, ctx: ctx.facts.stage == _event_name(c),
    "submitted": lambda c, ctx: any(
        e.properties.get("form") == _event_name(c)
        for e in ctx.facts.matching(["form"], since=_within(c, ctx), until=ctx.now)
    ),
    "viewed": _viewed,
    "total": _total,
    "average": _average,
    "top": lambda c, ctx: _top(c, ctx, top=True),
    "bottom": lambda c, ctx: _top(c, ctx, top=False),
    "recency_score": lambda c, ctx: _quintile(
        ctx, f"days_since({expr_text(c.args[0])})", _days_since(c, ctx), higher_is_better=False
    ),
    "frequency_score": lambda c, ctx: _quintile(
        ctx,
        f"count({expr_text(c.args[0])})",
        float(len(ctx.facts.matching([_event_name(c)], until=ctx.now))),
        higher_is_better=True,
    ),
    "monetary_score": lambda c, ctx: _quintile(
        ctx, expr_text(c), _total(c, ctx), higher_is_better=True
    ),
    "now": lambda c, ctx: ctx.now,
    "today": lambda c, ctx: _today(ctx),
    "lower": lambda c, ctx: v.lower() if isinstance(v := evaluate(c.args[0], ctx), str) else None,
    "length": lambda c, ctx: (
        len(v) if isinstance(v := evaluate(c.args[0], ctx), str | list) else None
    ),
}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 86400:g}d"
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str | list) else str(value)


__all__ = ["Check", "Context", "Verdict", "as_datetime", "evaluate", "holds", "window_start"]
