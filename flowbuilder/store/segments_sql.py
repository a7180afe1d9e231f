"""Segment conditions as SQL: a segment over 100,000 leads is one query, not 100,000 evaluations.

`compile_condition` turns a condition into a `WHERE` clause over `leads` — attribute tests, event
counts in windows, list, segment and stage membership, sums and averages of event properties —
with the evaluator's semantics: a missing or mistyped value compares false (never SQL's unknown),
an event window is open at its far end, machine opens and clicks are not reactions.

What SQL cannot say (population ranks, regular expressions, dates in attributes, …) is left out:
the clause then selects a superset (`exact=False`) and the leads it selects are checked one by one
with the evaluator. `members` does both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import KeyedColumnElement

from dsl import ir
from flowbuilder.engine.evaluate import REACTIONS, Context, holds
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead, Membership, SegmentMember, UtcDateTime

_WHOLE: ColumnElement[Any] = literal_column(
    "'{}'::text[]"
)  # `json #>> '{}'`: a JSON scalar as text (PostgreSQL)


class NotCompiled(Exception):
    """This part of a condition has no SQL form; the evaluator decides it."""


@dataclass(frozen=True)
class Compiled:
    """A WHERE clause over `leads`; `exact` when it selects exactly the leads the condition holds
    for, otherwise a superset to check one by one. `where=None` selects every lead."""

    where: ColumnElement[bool] | None
    exact: bool


# A value with the type the evaluator would compare it as: "number", "string", "bool" or "list".
@dataclass(frozen=True)
class _Value:
    sql: ColumnElement[Any]
    kind: str


class _Compiler:
    def __init__(self, ws: ir.Workspace, now: datetime, dialect: str, row: Any = None) -> None:
        self.ws = ws
        self.now = now
        self.pg = dialect == "postgresql"
        self.row = row  # the events row of a `where=` filter, when compiling one

    # ------------------------------------------------------------------ conditions

    def condition(self, expr: ir.Expr) -> Compiled:
        match expr:
            case ir.Logic(op="and"):
                parts = [self._try(o) for o in expr.operands]
                kept = [p.where for p in parts if p.where is not None]
                return Compiled(and_(*kept) if kept else None, all(p.exact for p in parts))
            case ir.Logic(op="or"):
                parts = [self._try(o) for o in expr.operands]
                if any(p.where is None for p in parts):
                    return Compiled(None, False)
                return Compiled(
                    or_(*[p.where for p in parts if p.where is not None]),
                    all(p.exact for p in parts),
                )
            case ir.Not():
                inner = self.condition(expr.operand)
                if not inner.exact or inner.where is None:
                    raise NotCompiled("`not` of a condition SQL cannot decide exactly")
                return Compiled(not_(inner.where), True)
            case ir.Compare():
                return Compiled(self.compare(expr), True)
            case ir.Call():
                return Compiled(self.boolean_call(expr), True)
            case ir.Const(type="bool"):
                return Compiled(true() if expr.value else false(), True)
        raise NotCompiled(f"no SQL for `{type(expr).__name__}` as a condition")

    def _try(self, expr: ir.Expr) -> Compiled:
        try:
            return self.condition(expr)
        except NotCompiled:
            return Compiled(None, False)

    # ------------------------------------------------------------------ comparisons

    def compare(self, c: ir.Compare) -> ColumnElement[bool]:
        hint = self._kind_of(c.left) or self._kind_of(c.right)
        if c.op in ("==", "!=") and (_is_null(c.left) or _is_null(c.right)):
            other = c.right if _is_null(c.left) else c.left
            missing = self.missing(other)
            return missing if c.op == "==" else not_(missing)
        if c.op in ("in", "not in"):
            items = self._items(c.right)
            kinds = {k for _, k in items}
            if len(kinds) != 1:
                raise NotCompiled("`in` over values of mixed types")
            kind = kinds.pop()
            typed = self._as(self.value(c.left, kind), kind)
            inside = typed.in_([literal(v) for v, _ in items]) if items else false()
            if c.op == "in":
                return func.coalesce(inside, false())
            # A value of another type is not in the list: only an absent one compares false.
            return and_(not_(self.missing(c.left)), not_(func.coalesce(inside, false())))
        if c.op in ("starts_with", "ends_with"):
            left = self._as(self.value(c.left, "string"), "string")
            text = self._constant(c.right)
            if not isinstance(text, str):
                raise NotCompiled("starts_with/ends_with need a text")
            pattern = _like(text, prefix=c.op == "starts_with")
            return func.coalesce(left.like(pattern, escape="\\"), false())
        if c.op == "contains":
            return self._contains(c)
        if c.op == "matches":
            raise NotCompiled("regular expressions are checked by the evaluator")
        if hint is None:
            raise NotCompiled("a comparison whose types are not known")
        left = self._as(self.value(c.left, hint), hint)
        right = self._as(self.value(c.right, hint), hint)
        test = {
            "==": left == right,
            "!=": left == right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[c.op]
        decided = func.coalesce(test, false())
        return not_(decided) if c.op == "!=" else decided

    def _contains(self, c: ir.Compare) -> ColumnElement[bool]:
        """`x contains v`: v is an element of the list x, or (for a text v) a part of the text x —
        whichever x turns out to be for the lead."""
        needle = self._constant(c.right)
        if not isinstance(needle, str | int | float) or isinstance(needle, bool):
            raise NotCompiled("contains needs a text or a number")
        if isinstance(c.left, ir.Path) and c.left.root in ("lead", "event"):
            column, key = self._json_place(c.left)
            if column is None:
                if not isinstance(needle, str):
                    return false()
                text = self._column(c.left)
                return func.coalesce(text.like(_like(needle, prefix=None), escape="\\"), false())
            return self._json_contains(column, key, needle)
        raise NotCompiled("contains on a computed value")

    def _json_contains(self, column: Any, key: str, needle: str | float) -> ColumnElement[bool]:
        is_text = isinstance(needle, str)
        if self.pg:
            node = column.op("->")(key) if key else column
            element = func.json_array_elements(node).table_valued("value")
            typeof = func.json_typeof(element.c.value)
            if is_text:
                same = and_(
                    typeof == "string",
                    element.c.value.op("#>>", return_type=String())(_WHOLE) == needle,
                )
            else:
                same = and_(
                    typeof == "number",
                    cast(element.c.value.op("#>>", return_type=String())(_WHOLE), Float())
                    == needle,
                )
            in_list = exists(select(1).select_from(element).where(same))
            kind = func.json_typeof(node)
            whens: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = [
                (kind == "array", in_list)
            ]
            if is_text:
                part = node.op("#>>", return_type=String())(_WHOLE).like(
                    _like(str(needle), prefix=None), escape="\\"
                )
                whens.append((kind == "string", part))
            return case(*whens, else_=false())
        path = f'$."{key}"' if key else "$"
        each = func.json_each(column, path).table_valued("value", "type")
        if is_text:
            same = and_(each.c.type == "text", each.c.value == needle)
        else:
            same = and_(each.c.type.in_(["integer", "real"]), each.c.value == needle)
        in_list = exists(select(1).select_from(each).where(same))
        kind = func.json_type(column, path)
        tests = [and_(kind == "array", in_list)]
        if is_text:
            text = func.json_extract(column, path)
            tests.append(
                and_(kind == "text", text.like(_like(str(needle), prefix=None), escape="\\"))
            )
        return or_(*tests)

    def missing(self, expr: ir.Expr) -> ColumnElement[bool]:
        """`expr == null` as the evaluator reads it: absent, or JSON null."""
        if isinstance(expr, ir.Path) and expr.root in ("lead", "event"):
            column, key = self._json_place(expr)
            if column is None:
                return self._column(expr).is_(None)
            if self.pg:
                return func.coalesce(func.json_typeof(column.op("->")(key)), "null") == "null"
            return func.coalesce(func.json_type(column, f'$."{key}"'), "null") == "null"
        return self.value(expr, None).sql.is_(None)

    # ------------------------------------------------------------------ values

    def value(self, expr: ir.Expr, hint: str | None) -> _Value:
        match expr:
            case ir.Const(type="number"):
                return _Value(literal(expr.value, Float()), "number")
            case ir.Const(type="percent"):
                return _Value(literal(expr.value, Float()), "number")
            case ir.Const(type="string"):
                return _Value(literal(expr.value, String()), "string")
            case ir.Const(type="bool"):
                return _Value(literal(expr.value, Boolean()), "bool")
            case ir.Path(root="settings"):
                return self._setting(expr)
            case ir.Path(root="lead") | ir.Path(root="event"):
                return self._path(expr, hint)
            case ir.Call():
                return self.number_call(expr)
            case ir.Arith():
                left = self._as(self.value(expr.left, "number"), "number")
                right = self._as(self.value(expr.right, "number"), "number")
                if expr.op == "/":
                    return _Value(left / func.nullif(right, 0), "number")
                op: Callable[[Any, Any], Any] = {
                    "+": lambda a, b: a + b,
                    "-": lambda a, b: a - b,
                    "*": lambda a, b: a * b,
                }[expr.op]
                return _Value(op(left, right), "number")
            case ir.Negate():
                inner = self._as(self.value(expr.operand, "number"), "number")
                return _Value(-inner, "number")
        raise NotCompiled(f"no SQL value for `{type(expr).__name__}`")

    def _setting(self, p: ir.Path) -> _Value:
        value: Any = self.ws.settings.get(p.attrs[0])
        for key in p.attrs[1:]:
            value = value.get(key) if isinstance(value, Mapping) else None
        kind = _kind_of_python(value)
        if kind is None or kind == "list":
            raise NotCompiled(f"setting {p.dotted()} is not a single number, text or truth value")
        return _Value(literal(value), kind)

    def _items(self, expr: ir.Expr) -> list[tuple[Any, str]]:
        value: Any
        if isinstance(expr, ir.ListExpr):
            value = [self._constant(i) for i in expr.items]
        elif isinstance(expr, ir.Path) and expr.root == "settings":
            value = self.ws.settings.get(expr.attrs[0])
        else:
            raise NotCompiled("`in` needs a list written out or a setting")
        if not isinstance(value, list):
            raise NotCompiled("`in` needs a list")
        out = []
        for v in value:
            kind = _kind_of_python(v)
            if kind is None or kind == "list":
                raise NotCompiled("`in` over a list of lists")
            out.append((v, kind))
        return out

    def _constant(self, expr: ir.Expr) -> Any:
        if isinstance(expr, ir.Const):
            return expr.value
        if isinstance(expr, ir.Path) and expr.root == "settings":
            return self.ws.settings.get(expr.attrs[0])
        raise NotCompiled("a constant was expected")

    def _kind_of(self, expr: ir.Expr) -> str | None:
        match expr:
            case ir.Const(type="number") | ir.Const(type="percent"):
                return "number"
            case ir.Const(type="string"):
                return "string"
            case ir.Const(type="bool"):
                return "bool"
            case ir.Path(root="settings"):
                return _kind_of_python(self.ws.settings.get(expr.attrs[0]))
            case ir.Path(root="lead"):
                name = expr.attrs[0]
                builtin = {"score": "number", "stage": "string", "email": "string"}
                if name in builtin:
                    return builtin[name]
                if name in ("timezone", "account"):
                    return "string"
                if name == "tags":
                    return "list"
                declared = self.ws.attributes.get(name)
                if declared is not None:
                    return {
                        "string": "string",
                        "number": "number",
                        "bool": "bool",
                        "list": "list",
                    }.get(declared.type)
                return None
            case ir.Call(function=("count" | "total" | "average" | "days_since")):
                return "number"
            case ir.Arith() | ir.Negate():
                return "number"
        return None

    def _json_place(self, p: ir.Expr) -> tuple[Any, str]:
        """(the JSON column, the key) a path reads, or (None, "") for a real column."""
        if not isinstance(p, ir.Path) or len(p.attrs) != 1:
            raise NotCompiled("nested paths are checked by the evaluator")
        name = p.attrs[0]
        if p.root == "event":
            if self.row is None:
                raise NotCompiled("`event.` outside an event filter")
            return self.row.properties, name
        if name in ("score", "stage", "email", "timezone", "account"):
            return None, ""
        if name == "tags":
            return Lead.tags, ""
        return Lead.attributes, name

    def _column(self, p: ir.Path) -> KeyedColumnElement[Any]:
        return {
            "score": Lead.score,
            "stage": Lead.stage,
            "email": Lead.email,
            "timezone": Lead.timezone,
            "account": Lead.account,
        }[p.attrs[0]].expression  # type: ignore[return-value]

    def _path(self, p: ir.Path, hint: str | None) -> _Value:
        column, key = self._json_place(p)
        if column is None:
            kind = "number" if p.attrs[0] == "score" else "string"
            return _Value(self._column(p), kind)
        return _Value(
            self._json_value(column, key, hint or self._kind_of(p) or "any"), hint or "any"
        )

    def _json_value(self, column: Any, key: str, kind: str) -> ColumnElement[Any]:
        """The JSON value at `key`, as `kind`, or NULL when it is absent or of another type."""
        if self.pg:
            node = column.op("->")(key)
            text: ColumnElement[Any] = column.op("->>", return_type=String())(key)
            typeof = func.json_typeof(node)
            match kind:
                case "number":
                    return case((typeof == "number", cast(text, Float())), else_=null())
                case "string":
                    return case((typeof == "string", text), else_=null())
                case "bool":
                    return case((typeof == "boolean", text == "true"), else_=null())
            return text
        path = f'$."{key}"'
        value = func.json_extract(column, path)
        typeof = func.json_type(column, path)
        match kind:
            case "number":
                return case((typeof.in_(["integer", "real"]), value), else_=null())
            case "string":
                return case((typeof == "text", value), else_=null())
            case "bool":
                return case((typeof.in_(["true", "false"]), value == 1), else_=null())
        return value

    def _as(self, v: _Value, kind: str) -> ColumnElement[Any]:
        if v.kind in (kind, "any"):
            return v.sql
        raise NotCompiled(f"a {v.kind} compared as a {kind}")

    # ------------------------------------------------------------------ functions

    def _events(self, call: ir.Call, types: Iterable[str]) -> Any:
        """The lead's events of `types` in the call's window, as the evaluator counts them."""
        if "step" in call.kwargs or "link" in call.kwargs:
            raise NotCompiled("step and link filters are checked by the evaluator")
        e = EventRow.__table__.alias("e")
        conditions: list[ColumnElement[bool]] = [
            e.c.lead_id == Lead.id,
            e.c.type.in_(sorted(types)),
            e.c.at <= literal(self.now, UtcDateTime()),
            e.c.machine == false(),
        ]
        within = call.kwargs.get("within")
        if within is not None:
            if not (isinstance(within, ir.Const) and isinstance(within.value, int)):
                raise NotCompiled("a window that is not a fixed duration")
            since = self.now - timedelta(seconds=within.value)
            conditions.append(e.c.at > literal(since, UtcDateTime()))
        where = call.kwargs.get("where")
        if where is not None:
            inner = _Compiler(self.ws, self.now, "postgresql" if self.pg else "sqlite", row=e.c)
            filtered = inner.condition(where)
            if not filtered.exact or filtered.where is None:
                raise NotCompiled("an event filter SQL cannot decide exactly")
            conditions.append(filtered.where)
        return e, and_(*conditions)

    def boolean_call(self, call: ir.Call) -> ColumnElement[bool]:
        fn = call.function
        name = call.args[0].name if call.args and isinstance(call.args[0], ir.Ref) else None
        if fn in REACTIONS:
            if call.args:
                raise NotCompiled("a reaction to a step's message")
            e, where = self._events(call, [REACTIONS[fn]])
            return exists(select(1).select_from(e).where(where))
        match fn:
            case "occurred":
                assert name is not None
                e, where = self._events(call, [name])
                return exists(select(1).select_from(e).where(where))
            case "in_list":
                return exists(
                    select(1).where(Membership.lead_id == Lead.id, Membership.list_name == name)
                )
            case "in_segment":
                return exists(
                    select(1).where(SegmentMember.lead_id == Lead.id, SegmentMember.segment == name)
                )
            case "in_stage":
                return func.coalesce(Lead.stage == name, false())
            case "unsubscribed":
                e, where = self._events(call, ["unsubscribe"])
                return or_(
                    Lead.unsubscribed == true(), exists(select(1).select_from(e).where(where))
                )
            case "complained":
                e, where = self._events(call, ["complaint"])
                return exists(select(1).select_from(e).where(where))
            case "submitted":
                e, where = self._events(call, ["form"])
                form = self._json_value(e.c.properties, "form", "string")
                return exists(select(1).select_from(e).where(where, form == name))
            case "viewed":
                return self._viewed(call)
        raise NotCompiled(f"`{fn}` is decided by the evaluator")

    def _viewed(self, call: ir.Call) -> ColumnElement[bool]:
        document = self._constant(call.args[0])
        if not isinstance(document, str):
            raise NotCompiled("viewed() needs a document name")
        e, where = self._events(
            ir.Call(
                function="viewed",
                args=[],
                kwargs={k: v for k, v in call.kwargs.items() if k == "within"},
            ),
            ["view"],
        )
        tests = [where, self._json_value(e.c.properties, "document", "string") == document]
        for key in ("depth", "seconds"):
            bound = call.kwargs.get(key)
            if bound is not None:
                limit = self._constant(bound)
                if not isinstance(limit, int | float):
                    raise NotCompiled(f"viewed({key}=…) needs a number")
                measured = func.coalesce(self._json_value(e.c.properties, key, "number"), 0)
                tests.append(measured >= limit)
        return exists(select(1).select_from(e).where(*tests))

    def number_call(self, call: ir.Call) -> _Value:
        fn = call.function
        name = call.args[0].name if call.args and isinstance(call.args[0], ir.Ref) else None
        if fn == "count" and name is not None:
            e, where = self._events(call, [name])
            return _Value(
                select(func.count()).select_from(e).where(where).scalar_subquery(), "number"
            )
        if fn in ("total", "average") and name is not None and len(call.args) > 1:
            prop = self._constant(call.args[1])
            if not isinstance(prop, str):
                raise NotCompiled("a property name was expected")
            e, where = self._events(call, [name])
            amount = self._json_value(e.c.properties, prop, "number")
            if fn == "total":
                summed = func.coalesce(func.sum(amount), 0)
                return _Value(
                    select(summed).select_from(e).where(where).scalar_subquery(), "number"
                )
            return _Value(
                select(func.avg(amount)).select_from(e).where(where).scalar_subquery(), "number"
            )
        if fn == "days_since" and name is not None:
            e, where = self._events(call, [name])
            latest = func.max(e.c.at)
            now = literal(self.now, UtcDateTime())
            if self.pg:
                days = func.extract("epoch", now - latest) / 86400
            else:
                days = func.julianday(now) - func.julianday(latest)
            return _Value(select(days).select_from(e).where(where).scalar_subquery(), "number")
        raise NotCompiled(f"`{fn}` is decided by the evaluator")


def _is_null(expr: ir.Expr) -> bool:
    return isinstance(expr, ir.Const) and expr.type == "null"


def _kind_of_python(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return None


def _like(text: str, *, prefix: bool | None) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if prefix is None:
        return f"%{escaped}%"
    return f"{escaped}%" if prefix else f"%{escaped}"


def compile_condition(expr: ir.Expr, ws: ir.Workspace, now: datetime, dialect: str) -> Compiled:
    """The condition as a WHERE clause over `leads` (see the module's docstring)."""
    compiler = _Compiler(ws, now, dialect)
    try:
        return compiler.condition(expr)
    except NotCompiled:
        return Compiled(None, False)


def members(
    conn: Connection,
    ws: ir.Workspace,
    condition: ir.Expr,
    now: datetime,
    check: Callable[[list[int]], Mapping[int, Any]] | None = None,
) -> set[int]:
    """The ids of the leads a condition holds for: one query when it compiles exactly; otherwise
    the query's candidates checked with the evaluator through `check` (ids → LeadFacts)."""
    compiled = compile_condition(condition, ws, now, conn.dialect.name)
    query = select(Lead.id)
    if compiled.where is not None:
        query = query.where(compiled.where)
    ids = [i for (i,) in conn.execute(query.order_by(Lead.id))]
    if compiled.exact:
        return set(ids)
    if check is None:
        raise ValueError("the condition does not compile exactly; pass `check` to decide the rest")
    inside: set[int] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        for lead_id, facts in check(chunk).items():
            if holds(condition, Context(facts, now, settings=ws.settings)).value:
                inside.add(lead_id)
    return inside
