"""Semantic checks across a workspace: names resolve, types fit, values make sense.

Also resolves bare names in conditions (`opened(welcome)` names a step, `count(click)` an event
type) into typed references.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import is_
from typing import Any, TypeVar

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.functions import BUILTIN_EVENTS, FUNCTIONS, REF_KINDS

LEAD_FIELDS: dict[str, str] = {
    "email": "string",
    "score": "number",
    "stage": "string",
    "tags": "list",
    "timezone": "string",
    "account": "string",
    "created_at": "date",
}
REGIONS = ("kr", "us", "eu", "global")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_N = TypeVar("_N", bound=ir.Node)


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def _known(kind: str, names: Iterable[str]) -> str:
    items = sorted(names)
    if not items:
        return f"no {kind}s are defined"
    shown = ", ".join(f"`{n}`" for n in items[:12]) + (", …" if len(items) > 12 else "")
    return f"known {kind}s: {shown}"


@dataclass
class Scope:
    """What a condition may refer to where it stands."""

    roots: frozenset[str] = frozenset({"lead", "settings"})
    steps: frozenset[str] | None = None


@lru_cache(maxsize=1)
def _holiday_countries() -> dict[str, list[str]]:
    """Country codes with public-holiday calendars, and their subdivisions."""
    import holidays

    return {k: list(v) for k, v in holidays.list_supported_countries().items()}


def _holiday_calendar_problem(code: str) -> str | None:
    if not re.fullmatch(r"[A-Z]{2}(-[A-Z0-9]{1,3})?", code):
        return f'`{code}` is not a country code for holidays; use e.g. "KR" or "US-CA"'
    country, _, subdivision = code.partition("-")
    known = _holiday_countries()
    if country not in known:
        return f"no public-holiday calendar for country `{country}`"
    if subdivision and subdivision not in known[country]:
        return f"`{country}` has no subdivision `{subdivision}`; known: {', '.join(known[country][:12])} …"
    return None


@dataclass
class Checker:
    ws: ir.Workspace
    diagnostics: list[Diagnostic] = field(default_factory=list)
    path: str = ""

    def error(self, code: str, message: str, span: Span | None, hint: str | None = None) -> None:
        self.diagnostics.append(
            rules.make(code, message, self.path, span or Span(1, 1, 1, 2), hint=hint)
        )

    # ------------------------------------------------------------------ names

    def names(self, kind: str) -> Collection[str]:
        match kind:
            case "segment":
                return self.ws.segments
            case "list":
                return self.ws.lists
            case "stage":
                return [s.name for s in self.ws.stages]
            case "form":
                return self.ws.forms
            case "template":
                return self.ws.templates
            case "flow":
                return self.ws.flows
        return []

    def require(self, kind: str, name: str, span: Span | None) -> None:
        names = self.names(kind)
        if name not in names:
            known = list(names)
            code = {
                "segment": "FB201",
                "list": "FB202",
                "template": "FB203",
                "stage": "FB204",
                "form": "FB205",
                "flow": "FB206",
            }[kind]
            self.error(
                code,
                f"{kind} `{name}` is not defined; {_known(kind, known)}",
                span,
                hint=did_you_mean(name, known),
            )

    def require_step(
        self, name: str | None, steps: Collection[str], span: Span | None, flow: str
    ) -> None:
        if name is None or name in steps:
            return
        known = list(steps)
        self.error(
            "FB200",
            f"flow `{flow}` has no step `{name}`; {_known('step', known)}",
            span,
            hint=did_you_mean(name, known),
        )

    # ------------------------------------------------------------------ values

    def time(self, value: str | None, span: Span | None) -> None:
        if value is None:
            return
        m = _TIME.match(value)
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            self.error("FB212", f"`{value}` is not a time of day; use 00:00 to 23:59", span)

    def timezone(self, value: str | None, span: Span | None) -> None:
        if value is not None and value not in _timezones():
            hint = (
                did_you_mean(value, _timezones())
                or "use an IANA name such as Asia/Seoul or America/New_York"
            )
            self.error("FB213", f"`{value}` is not a known timezone", span, hint=hint)

    def policy(self, policy: ir.Policy, span: Span | None) -> None:
        for window in (policy.send_window, policy.quiet_hours):
            if window is not None:
                self.time(window.start, window.span)
                self.time(window.end, window.span)
                if window.start == window.end:
                    self.error(
                        "FB212", f"the window {window.start}-{window.end} is empty", window.span
                    )
        cap = policy.frequency_cap
        if cap is not None and (cap.count <= 0 or cap.per_seconds <= 0):
            self.error("FB212", "a frequency cap needs a count and a period above zero", cap.span)
        self.timezone(policy.timezone, span)
        if policy.business_days not in (None, "default"):
            problem = _holiday_calendar_problem(policy.business_days)
            if problem:
                country = policy.business_days.partition("-")[0]
                known = _holiday_countries()
                hint = None if country in known else did_you_mean(country, known)
                self.error("FB212", problem, span, hint=hint)

    # ------------------------------------------------------------------ expressions

    def condition(self, expr: ir.Expr, scope: Scope) -> ir.Expr:
        resolved, typ = self.expr(expr, scope)
        self.expect(typ, "bool", expr, "a condition")
        return resolved

    def expect(self, typ: str, want: str, expr: ir.Node, what: str) -> None:
        if typ in ("any", want) or (want == "number" and typ == "percent"):
            return
        self.error(
            "FB211",
            f"{what} must be a {_type_words(want)}, but this is a {_type_words(typ)}",
            expr.span,
        )

    def expr(self, expr: ir.Expr, scope: Scope) -> tuple[ir.Expr, str]:
        # The common nodes by exact type first: a class pattern's `isinstance` on a model goes
        # through `ABCMeta`, and conditions are checked node by node.
        kind = type(expr)
        if kind is ir.Call:
            return self.call(expr, scope)  # type: ignore[arg-type]
        if kind is ir.Const:
            return expr, expr.type  # type: ignore[union-attr]
        if kind is ir.Compare:
            return self.compare(expr, scope)  # type: ignore[arg-type]
        match expr:
            case ir.Const():
                return expr, expr.type
            case ir.ListExpr():
                items = [self.expr(i, scope)[0] for i in expr.items]
                return replaced(expr, items=items), "list"
            case ir.Path():
                return expr, self.path_type(expr, scope)
            case ir.Ref():
                hint = f"did you mean `lead.{expr.name}`?"
                if expr.name in FUNCTIONS:
                    hint = f"call it: `{expr.name}()`"
                self.error("FB208", f"`{expr.name}` is not a value here", expr.span, hint=hint)
                return expr, "any"
            case ir.Not():
                operand, typ = self.expr(expr.operand, scope)
                self.expect(typ, "bool", expr.operand, "the operand of `not`")
                return replaced(expr, operand=operand), "bool"
            case ir.Negate():
                operand, typ = self.expr(expr.operand, scope)
                if typ not in ("number", "duration", "percent", "any"):
                    self.error(
                        "FB211",
                        f"only numbers and durations can be negated, not a {_type_words(typ)}",
                        expr.span,
                    )
                return replaced(expr, operand=operand), typ
            case ir.Logic():
                operands = []
                for operand in expr.operands:
                    resolved, typ = self.expr(operand, scope)
                    self.expect(typ, "bool", operand, f"each side of `{expr.op}`")
                    operands.append(resolved)
                return replaced(expr, operands=operands), "bool"
            case ir.Compare():
                return self.compare(expr, scope)
            case ir.Arith():
                return self.arith(expr, scope)
            case ir.Call():
                return self.call(expr, scope)
        raise AssertionError(expr)

    def path_type(self, path: ir.Path, scope: Scope) -> str:
        if path.root not in scope.roots:
            where = ", ".join(f"`{r}.`" for r in sorted(scope.roots))
            self.error(
                "FB208", f"`{path.root}.` cannot be used here; usable here: {where}", path.span
            )
            return "any"
        if path.root == "settings":
            key = path.attrs[0]
            if key not in self.ws.settings:
                self.error(
                    "FB207",
                    f"setting `{key}` is not defined; {_known('setting', self.ws.settings)}",
                    path.span,
                    hint=did_you_mean(key, self.ws.settings),
                )
                return "any"
            return _value_type(self.ws.settings[key]) if len(path.attrs) == 1 else "any"
        if path.root == "lead" and len(path.attrs) == 1:
            name = path.attrs[0]
            if name in self.ws.attributes:
                return self.ws.attributes[name].type
            return LEAD_FIELDS.get(name, "any")
        return "any"

    def compare(self, expr: ir.Compare, scope: Scope) -> tuple[ir.Expr, str]:
        left, lt = self.expr(expr.left, scope)
        right, rt = self.expr(expr.right, scope)
        op = expr.op
        if op in ("in", "not in"):
            if rt not in ("list", "string", "any"):
                self.error(
                    "FB211",
                    f"the right side of `{op}` must be a list or a text, but this is a {_type_words(rt)}",
                    expr.right.span,
                )
        elif op in ("contains", "starts_with", "ends_with", "matches"):
            if op != "contains" or lt != "list":
                self.expect(lt, "string", expr.left, f"the left side of `{op}`")
            self.expect(rt, "string", expr.right, f"the right side of `{op}`")
            if op == "matches" and isinstance(right, ir.Const) and isinstance(right.value, str):
                try:
                    re.compile(right.value)
                except re.error as exc:
                    self.error(
                        "FB212",
                        f"the pattern is not a valid regular expression: {exc}",
                        expr.right.span,
                    )
        elif op in ("<", "<=", ">", ">="):
            ordered = {"number", "duration", "date", "percent", "string", "any"}
            if (
                lt not in ordered
                or rt not in ordered
                or (lt != rt and "any" not in (lt, rt) and {lt, rt} != {"number", "percent"})
            ):
                self.error(
                    "FB211",
                    f"cannot compare a {_type_words(lt)} with a {_type_words(rt)} using `{op}`",
                    expr.span,
                )
        elif (
            lt != rt
            and "any" not in (lt, rt)
            and "null" not in (lt, rt)
            and {lt, rt} != {"number", "percent"}
        ):
            self.error(
                "FB211", f"a {_type_words(lt)} is never equal to a {_type_words(rt)}", expr.span
            )
        self.stage_literal(left, right)
        return replaced(expr, left=left, right=right), "bool"

    def stage_literal(self, left: ir.Expr, right: ir.Expr) -> None:
        """`lead.stage == "sqll"` names a stage that does not exist."""
        if (
            isinstance(left, ir.Path)
            and left.dotted() == "lead.stage"
            and isinstance(right, ir.Const)
            and isinstance(right.value, str)
            and self.ws.stages
        ):
            self.require("stage", right.value, right.span)

    def arith(self, expr: ir.Arith, scope: Scope) -> tuple[ir.Expr, str]:
        left, lt = self.expr(expr.left, scope)
        right, rt = self.expr(expr.right, scope)
        result = _arith_type(expr.op, lt, rt)
        if result is None:
            self.error(
                "FB211",
                f"cannot compute a {_type_words(lt)} {expr.op} a {_type_words(rt)}",
                expr.span,
            )
            result = "any"
        return replaced(expr, left=left, right=right), result

    def call(self, expr: ir.Call, scope: Scope) -> tuple[ir.Expr, str]:
        fn = FUNCTIONS.get(expr.function)
        if fn is None:
            self.error(
                "FB208",
                f"`{expr.function}` is not a function",
                expr.span,
                hint=did_you_mean(expr.function, FUNCTIONS),
            )
            return expr, "any"
        required = [p for p in fn.params if not p.optional]
        if not len(required) <= len(expr.args) <= len(fn.params):
            wanted = ", ".join(p.name + ("?" if p.optional else "") for p in fn.params)
            self.error(
                "FB209",
                f"`{fn.name}` takes ({wanted}), but {len(expr.args)} argument(s) were given",
                expr.span,
                hint=f"for example: {fn.example}",
            )
        args = [
            self.argument(arg, param.kind, scope, fn.name)
            for arg, param in zip(expr.args, fn.params, strict=False)
        ]
        kwargs: dict[str, ir.Expr] = {}
        for key, value in expr.kwargs.items():
            if key not in fn.kwargs:
                known = ", ".join(f"`{k}=`" for k in fn.kwargs) or "none"
                self.error(
                    "FB209",
                    f"`{fn.name}` has no argument `{key}`; its named arguments: {known}",
                    value.span,
                )
                kwargs[key] = value
                continue
            inner = scope
            if key == "where":
                inner = Scope(roots=scope.roots | {"event"}, steps=scope.steps)
            kwargs[key] = self.argument(value, fn.kwargs[key], inner, fn.name)
        return replaced(expr, args=args, kwargs=kwargs), fn.returns

    def argument(self, arg: ir.Expr, kind: str, scope: Scope, function: str) -> ir.Expr:
        if kind in REF_KINDS:
            return self.reference(arg, kind, scope, function)
        resolved, typ = self.expr(arg, scope)
        if kind != "any":
            self.expect(typ, kind, arg, f"this argument of `{function}`")
        return resolved

    def reference(self, arg: ir.Expr, kind: str, scope: Scope, function: str) -> ir.Expr:
        if kind == "event" and isinstance(arg, ir.Const) and isinstance(arg.value, str):
            return ir.Ref(kind="event", name=arg.value, span=arg.span)
        if not isinstance(arg, ir.Ref):
            example = "a step name such as `welcome`" if kind == "step" else f"a {kind} name"
            self.error("FB211", f"`{function}` expects {example} here", arg.span)
            return arg
        name = arg.name
        if kind == "step":
            if scope.steps is None:
                self.error(
                    "FB208",
                    f"`{function}({name})` refers to a step, and steps exist only inside a flow",
                    arg.span,
                    hint=f"use `{function}()` for any email",
                )
            elif name not in scope.steps:
                known = sorted(scope.steps)
                self.error(
                    "FB200",
                    f"this flow has no step `{name}`; {_known('step', known)}",
                    arg.span,
                    hint=did_you_mean(name, known),
                )
        elif kind == "event":
            if name not in BUILTIN_EVENTS:
                close = did_you_mean(name, BUILTIN_EVENTS)
                if close is not None:
                    self.error(
                        "FB208",
                        f"`{name}` is not a built-in event type",
                        arg.span,
                        hint=f'{close} Custom events are fine: quote them, "{name}", to say so',
                    )
        else:
            self.require(kind, name, arg.span)
        if arg.kind == kind:
            return arg
        return ir.Ref(kind=kind, name=name, span=arg.span)  # type: ignore[arg-type]


def replaced(node: _N, **changes: Any) -> _N:
    """`node` with `changes`, or `node` itself when each change holds the very values it has."""
    for key, new in changes.items():
        old = getattr(node, key)
        if new is old:
            continue
        if type(new) is list and type(old) is list:
            if len(new) == len(old) and all(map(is_, new, old)):
                continue
        elif (
            type(new) is dict
            and type(old) is dict
            and new.keys() == old.keys()
            and all(new[k] is old[k] for k in new)
        ):
            continue
        return node.model_copy(update=changes)
    return node


def _type_words(typ: str) -> str:
    return {"bool": "true/false condition", "string": "text", "list": "list", "any": "value"}.get(
        typ, typ
    )


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "any"


def _arith_type(op: str, lt: str, rt: str) -> str | None:
    if "any" in (lt, rt):
        return "any" if {lt, rt} <= {"any", "number", "duration", "date", "percent"} else None
    numeric = {"number", "percent"}
    if lt in numeric and rt in numeric:
        return "number"
    if op in ("+", "-"):
        if lt == "date" and rt == "duration":
            return "date"
        if lt == rt == "duration":
            return "duration"
        if op == "-" and lt == rt == "date":
            return "duration"
        if op == "+" and lt == rt == "string":
            return "string"
    if op in ("*", "/") and lt == "duration" and rt == "number":
        return "duration"
    return None
