"""IR expressions and steps back to the language's words, for labels, traces and messages."""

from __future__ import annotations

import json
from functools import lru_cache

from dsl import ir

_UNITS = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "not": 3,
    "compare": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "negate": 7,
}


@lru_cache(maxsize=4096)
def duration_text(seconds: int) -> str:
    """The largest exact unit: 604800 → 1w, 90000 → 25h."""
    for unit, size in _UNITS:
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _const(c: ir.Const) -> str:
    match c.type:
        case "string":
            return json.dumps(c.value, ensure_ascii=False)
        case "duration":
            assert isinstance(c.value, int)
            return duration_text(c.value)
        case "percent":
            assert isinstance(c.value, int | float)
            return _number(c.value) + "%"
        case "bool":
            return "true" if c.value else "false"
        case "null":
            return "null"
        case "number":
            assert isinstance(c.value, int | float)
            return _number(c.value)
    return str(c.value)


def _level(e: ir.Expr) -> int:
    match e:
        case ir.Logic():
            return _PRECEDENCE[e.op]
        case ir.Not():
            return _PRECEDENCE["not"]
        case ir.Compare():
            return _PRECEDENCE["compare"]
        case ir.Arith():
            return _PRECEDENCE[e.op]
        case ir.Negate():
            return _PRECEDENCE["negate"]
    return 9


def _wrap(e: ir.Expr, minimum: int) -> str:
    text = expr_text(e)
    return f"({text})" if _level(e) < minimum else text


def expr_text(e: ir.Expr) -> str:
    """An expression as the language writes it, with the fewest parentheses."""
    match e:
        case ir.Const():
            return _const(e)
        case ir.Path():
            return e.dotted()
        case ir.Ref():
            return json.dumps(e.name) if e.kind == "event" and not e.name.isidentifier() else e.name
        case ir.ListExpr():
            return "[" + ", ".join(expr_text(i) for i in e.items) + "]"
        case ir.Call():
            args = [expr_text(a) for a in e.args] + [
                f"{k}={expr_text(v)}" for k, v in e.kwargs.items()
            ]
            return f"{e.function}({', '.join(args)})"
        case ir.Not():
            return "not " + _wrap(e.operand, _PRECEDENCE["not"])
        case ir.Negate():
            return "-" + _wrap(e.operand, _PRECEDENCE["negate"])
        case ir.Logic():
            level = _PRECEDENCE[e.op]
            return f" {e.op} ".join(
                _wrap(o, level + 1 if o is not e.operands[0] else level) for o in e.operands
            )
        case ir.Compare():
            level = _PRECEDENCE["compare"]
            return f"{_wrap(e.left, level + 1)} {e.op} {_wrap(e.right, level + 1)}"
        case ir.Arith():
            level = _PRECEDENCE[e.op]
            return f"{_wrap(e.left, level)} {e.op} {_wrap(e.right, level + 1)}"
    raise AssertionError(e)


def step_text(step: ir.Step) -> str:
    """A one-line summary of what a step does."""
    match step:
        case ir.Send():
            extra = f" ({len(step.variants)} variants)" if step.variants else ""
            return f"send {step.template}{extra}"
        case ir.Wait():
            return f"wait {duration_text(step.seconds)}"
        case ir.WaitBusinessDays():
            return f"wait {step.days} business days"
        case ir.WaitUntilTime():
            days = f" on {', '.join(step.weekdays)}" if step.weekdays else ""
            return f"wait until {step.time}{days}"
        case ir.WaitUntilDate():
            return f"wait until {expr_text(step.date)}"
        case ir.WaitFor():
            limit = f" up to {duration_text(step.timeout_seconds)}" if step.timeout_seconds else ""
            return f"wait for {expr_text(step.condition)}{limit}"
        case ir.Branch():
            return "branch"
        case ir.Split():
            return "split"
        case ir.Update():
            return f"update {step.target.dotted()} {step.op} {expr_text(step.value)}"
        case ir.AddToList():
            return f"add to list {step.list}"
        case ir.RemoveFromList():
            return f"remove from list {step.list}"
        case ir.MoveToFlow():
            return f"move to flow {step.flow}"
        case ir.Webhook():
            return f"webhook {step.url}"
        case ir.ReachGoal():
            return f"goal {step.goal}"
        case ir.Suppress():
            return "suppress" + (f" ({step.reason})" if step.reason else "")
        case ir.End():
            return "end" + (f" ({step.reason})" if step.reason else "")
    raise AssertionError(step)


def trigger_text(t: ir.Trigger) -> str:
    match t:
        case ir.EventTrigger():
            where = f" where {expr_text(t.where)}" if t.where is not None else ""
            return f"event {t.event}{where}"
        case ir.EnteredTrigger():
            return f"entered {t.membership} {t.name}"
        case ir.FormTrigger():
            return f"form {t.form}"
        case ir.DateTrigger():
            return f"date {expr_text(t.date)}" + (f" at {t.at}" if t.at else "")
        case ir.AnniversaryTrigger():
            return f"anniversary {expr_text(t.date)}" + (f" at {t.at}" if t.at else "")
        case ir.InactiveTrigger():
            return f"inactive {duration_text(t.seconds)}"
        case ir.ScheduleTrigger():
            audience = f" for {t.audience.kind} {t.audience.name}" if t.audience else ""
            return f'schedule "{t.cron}"{audience}'
    raise AssertionError(t)
