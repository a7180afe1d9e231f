"""Parse tree to IR nodes, one file at a time; cross-file checks happen in `dsl.check`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from lark import Token, Tree

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.functions import FUNCTIONS, REF_KINDS

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def span_of(node: Tree[Token] | Token) -> Span:
    if isinstance(node, Token):
        line = node.line or 1
        col = node.column or 1
        return _new_span(line, col, node.end_line or line, node.end_column or col + len(node.value))
    meta = node.meta
    if getattr(meta, "empty", True):
        return Span(1, 1, 1, 2)
    return _new_span(meta.line, meta.column, meta.end_line, meta.end_column)


_new = object.__new__
_set = object.__setattr__


def _new_span(line: int, col: int, end_line: int, end_col: int) -> Span:
    """`Span(line, col, end_line, end_col)` without the frozen dataclass's four guarded
    `__setattr__` calls: the compiler makes one per IR node."""
    span = _new(Span)
    _set(span, "__dict__", {"line": line, "col": col, "end_line": end_line, "end_col": end_col})
    return span


def unquote(token: Token | str) -> str:
    body = str(token)[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def seconds(token: Token) -> int:
    text = str(token)
    return int(text[:-1]) * UNIT_SECONDS[text[-1]]


def percent(token: Token) -> float:
    return float(str(token)[:-1])


def number(token: Token) -> int | float:
    text = str(token)
    return float(text) if "." in text else int(text)


@dataclass
class Layout:
    """Canvas positions of a flow's steps, by step name; never part of the IR."""

    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    spans: dict[str, Span] = field(default_factory=dict)


@dataclass
class FileDecls:
    """Everything one file declares, with the spans of the names for duplicate checks."""

    path: str
    workspaces: list[tuple[ir.Workspace, Span]] = field(default_factory=list)
    settings: list[tuple[str, Any, Span]] = field(default_factory=list)
    attributes: list[ir.Attribute] = field(default_factory=list)
    segments: list[ir.Segment] = field(default_factory=list)
    lists: list[ir.ListDecl] = field(default_factory=list)
    stages: list[ir.Stage] = field(default_factory=list)
    scoring: list[ir.Scoring] = field(default_factory=list)
    forms: list[ir.Form] = field(default_factory=list)
    templates: list[ir.Template] = field(default_factory=list)
    flows: list[ir.Flow] = field(default_factory=list)
    layouts: dict[str, Layout] = field(default_factory=dict)
    # (flow name, step names in order with their name spans) for duplicate-step checks
    step_names: dict[str, list[tuple[str, Span]]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


class Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.out = FileDecls(path)

    def error(
        self, code: str, message: str, node: Tree[Token] | Token | Span, hint: str | None = None
    ) -> None:
        span = node if isinstance(node, Span) else span_of(node)
        self.out.diagnostics.append(rules.make(code, message, self.path, span, hint=hint))

    # ------------------------------------------------------------------ top level

    def build(self, tree: Tree[Token]) -> FileDecls:
        handlers: dict[str, Callable[[Tree[Token]], None]] = {
            "flow": self.flow,
            "workspace": self.workspace,
            "settings": self.settings,
            "attribute": self.attribute,
            "segment": self.segment,
            "list_decl": self.list_decl,
            "stages": self.stages,
            "scoring": self.scoring,
            "form": self.form,
            "template": self.template,
        }
        for child in tree.children:
            if isinstance(child, Tree):
                handlers[str(child.data)](child)
        return self.out

    def workspace(self, tree: Tree[Token]) -> None:
        name, title, *items = tree.children
        policy: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        for item in items:
            assert isinstance(item, Tree)
            key = str(item.data)
            self._once(key, item, seen)
            match key:
                case "sender":
                    a, b = item.children
                    policy["sender"] = ir.Sender(
                        name=unquote(_tok(a)), address=unquote(_tok(b)), span=span_of(item)
                    )
                case "postal_address":
                    policy["postal_address"] = unquote(_tok(item.children[0]))
                case "contact":
                    policy["contact"] = unquote(_tok(item.children[0]))
                case "region":
                    policy["region"] = str(item.children[0])
                case _:
                    policy.update(self.policy_item(item))
        ws = ir.Workspace(
            name=str(name),
            title=unquote(_tok(title)) if title is not None else None,
            policy=ir.WorkspacePolicy(**policy),
            span=span_of(tree),
        )
        self.out.workspaces.append((ws, span_of(_tok(name))))

    def _once(self, key: str, item: Tree[Token], seen: dict[str, Span]) -> None:
        if key in seen:
            words = key.replace("_", " ")
            self.error(
                "FB215",
                f"`{words}` is set twice (first on line {seen[key].line})",
                item,
                hint="keep one of them",
            )
        seen[key] = span_of(item)

    def policy_item(self, item: Tree[Token]) -> dict[str, Any]:
        c = item.children
        match str(item.data):
            case "send_window":
                return {
                    "send_window": ir.TimeWindow(
                        start=str(c[0]),
                        end=str(c[1]),
                        weekdays=self.weekdays(c[2]),
                        span=span_of(item),
                    )
                }
            case "quiet_hours":
                return {
                    "quiet_hours": ir.TimeWindow(start=str(c[0]), end=str(c[1]), span=span_of(item))
                }
            case "business_days":
                return {"business_days": unquote(_tok(c[0])) if c[0] is not None else "default"}
            case "frequency_cap":
                return {
                    "frequency_cap": ir.FrequencyCap(
                        count=int(float(str(c[0]))),
                        per_seconds=seconds(_tok(c[1])),
                        span=span_of(item),
                    )
                }
            case "timezone":
                return {"timezone": unquote(_tok(c[0]))}
        raise AssertionError(item.data)

    def weekdays(self, tree: Tree[Token] | Token | None) -> list[str]:
        if tree is None:
            return []
        order = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        days: list[str] = []
        assert isinstance(tree, Tree)
        for rng in tree.children:
            assert isinstance(rng, Tree)
            first = _weekday(rng.children[0])
            last = _weekday(rng.children[1]) if rng.children[1] is not None else first
            i, j = order.index(first), order.index(last)
            if j < i:
                self.error(
                    "FB212",
                    f"the weekday range `{first}-{last}` runs backwards",
                    rng,
                    hint=f"write `{last}-{first}` or list the days",
                )
                continue
            days.extend(d for d in order[i : j + 1] if d not in days)
        return days

    # ------------------------------------------------------------------ declarations

    def settings(self, tree: Tree[Token]) -> None:
        for item in tree.children:
            assert isinstance(item, Tree)
            name, value = item.children
            self.out.settings.append((str(name), self.setting_value(value), span_of(_tok(name))))

    def setting_value(self, node: Tree[Token] | Token | None) -> Any:
        expr = self.expr(node)
        match expr:
            case ir.Const():
                return expr.value
            case ir.Negate(operand=ir.Const(type="number", value=v)) if isinstance(v, int | float):
                return -v
            case ir.ListExpr():
                values = []
                for item in expr.items:
                    if isinstance(item, ir.Const):
                        values.append(item.value)
                    else:
                        self.error(
                            "FB211",
                            'a setting list may only hold plain values such as "saas" or 3',
                            _span(item),
                        )
                return values
        self.error(
            "FB211",
            "a setting must be a plain value (a number, a text, a duration, a list of those)",
            _span(expr),
        )
        return None

    def attribute(self, tree: Tree[Token]) -> None:
        name, type_, required, description = tree.children
        types = ("string", "number", "bool", "date", "list")
        type_name = str(type_)
        if type_name not in types:
            self.error(
                "FB212",
                f"unknown attribute type `{type_name}`; known types: {', '.join(types)}",
                _tok(type_),
            )
            type_name = "string"
        self.out.attributes.append(
            ir.Attribute(
                path=self.path,
                name=str(name),
                type=cast(Any, type_name),
                required=required is not None,
                description=unquote(_tok(description)) if description is not None else None,
                span=span_of(_tok(name)),
            )
        )

    def segment(self, tree: Tree[Token]) -> None:
        name, title, condition = tree.children
        self.out.segments.append(
            ir.Segment(
                path=self.path,
                name=str(name),
                title=_opt_str(title),
                condition=self.expr(condition),
                span=span_of(_tok(name)),
            )
        )

    def list_decl(self, tree: Tree[Token]) -> None:
        name, title, rules_tree = tree.children
        add: list[ir.Expr] = []
        remove: list[ir.Expr] = []
        if isinstance(rules_tree, Tree):
            for rule in rules_tree.children:
                assert isinstance(rule, Tree)
                (add if rule.data == "list_add_rule" else remove).append(
                    self.expr(rule.children[0])
                )
        self.out.lists.append(
            ir.ListDecl(
                path=self.path,
                name=str(name),
                title=_opt_str(title),
                add_when=add,
                remove_when=remove,
                span=span_of(_tok(name)),
            )
        )

    def stages(self, tree: Tree[Token]) -> None:
        for item in tree.children:
            assert isinstance(item, Tree)
            name, title, condition = item.children
            self.out.stages.append(
                ir.Stage(
                    path=self.path,
                    name=str(name),
                    title=_opt_str(title),
                    condition=self.expr(condition) if condition is not None else None,
                    span=span_of(_tok(name)),
                )
            )

    def scoring(self, tree: Tree[Token]) -> None:
        score_rules: list[ir.ScoreRule] = []
        decay: ir.Decay | None = None
        for item in tree.children:
            assert isinstance(item, Tree)
            c = item.children
            if item.data == "score_decay":
                if decay is not None:
                    self.error("FB215", "`decay` is set twice", item)
                decay = ir.Decay(
                    percent=percent(_tok(c[0])),
                    every_seconds=seconds(_tok(c[1])),
                    span=span_of(item),
                )
                continue
            kind = str(_first_token(c[0]))
            points = float(str(c[2])) * (-1 if str(_first_token(c[1])) == "-" else 1)
            if item.data == "score_when":
                score_rules.append(
                    ir.ScoreRule(
                        kind=cast(Any, kind),
                        points=points,
                        when=self.expr(c[3]),
                        span=span_of(item),
                    )
                )
            else:
                score_rules.append(
                    ir.ScoreRule(
                        kind=cast(Any, kind),
                        points=points,
                        per_event=self.event_name(c[3]),
                        within_seconds=seconds(_tok(c[4])) if c[4] is not None else None,
                        span=span_of(item),
                    )
                )
        self.out.scoring.append(ir.Scoring(rules=score_rules, decay=decay, span=span_of(tree)))

    def form(self, tree: Tree[Token]) -> None:
        name, title, *items = tree.children
        fields: list[ir.FormField] = []
        consent: str | None = None
        routes: list[ir.FormRoute] = []
        field_types = ("text", "email", "number", "choice", "checkbox", "phone", "date", "textarea")
        for item in items:
            assert isinstance(item, Tree)
            c = item.children
            if item.data == "form_field":
                fname, ftype, choices, required, label = c
                type_name = str(ftype)
                if type_name not in field_types:
                    self.error(
                        "FB212",
                        f"unknown field type `{type_name}`; known types: {', '.join(field_types)}",
                        _tok(ftype),
                    )
                    type_name = "text"
                options = (
                    [unquote(_tok(t)) for t in choices.children]
                    if isinstance(choices, Tree)
                    else []
                )
                if type_name == "choice" and not options:
                    self.error(
                        "FB212",
                        f"the choice field `{fname}` lists no choices",
                        item,
                        hint='add them: choice ["a", "b"]',
                    )
                fields.append(
                    ir.FormField(
                        name=str(fname),
                        type=cast(Any, type_name),
                        choices=options,
                        required=required is not None,
                        label=_opt_str(label),
                        span=span_of(_tok(fname)),
                    )
                )
            elif item.data == "form_consent":
                consent = unquote(_tok(c[0]))
            else:
                routes.append(
                    ir.FormRoute(
                        condition=self.expr(c[0]), list=str(c[1]), span=span_of(_tok(c[1]))
                    )
                )
        self.out.forms.append(
            ir.Form(
                path=self.path,
                name=str(name),
                title=_opt_str(title),
                fields=fields,
                consent=consent,
                routes=routes,
                span=span_of(_tok(name)),
            )
        )

    def template(self, tree: Tree[Token]) -> None:
        name, title, *items = tree.children
        values: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        keys = {
            "subject": "subject",
            "preheader": "preheader",
            "sender": "sender",
            "template_html": "html",
            "template_text": "text",
            "template_topic": "topic",
            "template_class": "message_class",
        }
        for item in items:
            assert isinstance(item, Tree)
            key = keys[str(item.data)]
            self._once(key, item, seen)
            token = _tok(item.children[0])
            if key == "message_class":
                if str(token) not in ("marketing", "transactional"):
                    self.error(
                        "FB212",
                        f"unknown message class `{token}`; use `marketing` or `transactional`",
                        token,
                    )
                    continue
                values[key] = str(token)
            elif key == "topic":
                values[key] = str(token)
            else:
                values[key] = unquote(token)
        self.out.templates.append(
            ir.Template(
                path=self.path,
                name=str(name),
                title=_opt_str(title),
                span=span_of(_tok(name)),
                **values,
            )
        )

    # ------------------------------------------------------------------ flows

    def flow(self, tree: Tree[Token]) -> None:
        name_tok, title, *items = tree.children
        flow_name = str(name_tok)
        triggers: list[Any] = []
        exits: list[ir.ExitRule] = []
        goals: list[ir.Goal] = []
        policy: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        entry = ir.Entry()
        kind = "marketing"
        step_trees: list[Tree[Token]] = []
        migrate: dict[str, str | None] = {}
        for item in items:
            assert isinstance(item, Tree)
            key = str(item.data)
            c = item.children
            if key == "step":
                step_trees.append(item)
            elif key.startswith("trigger_"):
                triggers.append(self.trigger(item))
            elif key == "entry":
                self._once(key, item, seen)
                words = [str(t) for t in c if isinstance(t, Token)]
                if words[1] == "every":
                    entry = ir.Entry(
                        mode="every", every_seconds=seconds(_tok(c[2])), span=span_of(item)
                    )
                else:
                    entry = ir.Entry(mode=cast(Any, words[1]), span=span_of(item))
            elif key == "exit_rule":
                exits.append(
                    ir.ExitRule(
                        condition=self.expr(c[0]),
                        scope="account" if c[1] is not None else "lead",
                        span=span_of(item),
                    )
                )
            elif key == "goal":
                goals.append(
                    ir.Goal(
                        name=str(c[0]),
                        condition=self.expr(c[1]),
                        within_seconds=seconds(_tok(c[2])) if c[2] is not None else None,
                        span=span_of(item),
                    )
                )
            elif key == "kind":
                self._once(key, item, seen)
                kind = str(c[0])
                if kind not in ir.FLOW_KINDS:
                    self.error(
                        "FB212",
                        f"unknown flow kind `{kind}`; known kinds: {', '.join(ir.FLOW_KINDS)}",
                        _tok(c[0]),
                    )
                    kind = "marketing"
            elif key == "layout":
                self.layout(flow_name, item)
            elif key == "migrate":
                for mapping in item.children:
                    assert isinstance(mapping, Tree)
                    old, new = mapping.children
                    migrate[str(old)] = None if isinstance(new, Tree) else str(new)
            else:
                self._once(key, item, seen)
                policy.update(self.policy_item(item))
        names = [(str(s.children[0]), span_of(_tok(s.children[0]))) for s in step_trees]
        self.out.step_names[flow_name] = names
        steps: dict[str, ir.Step] = {}
        for index, step_tree in enumerate(step_trees):
            following = names[index + 1][0] if index + 1 < len(names) else None
            step = self.step(step_tree, following, names[index][1])
            steps.setdefault(step.name, step)
        self.out.flows.append(
            ir.Flow(
                path=self.path,
                name=flow_name,
                title=_opt_str(title),
                kind=cast(Any, kind),
                triggers=triggers,
                entry=entry,
                exits=exits,
                goals=goals,
                policy=ir.Policy(**policy),
                start=names[0][0] if names else None,
                steps=steps,
                migrate=migrate,
                span=span_of(_tok(name_tok)),
            )
        )

    def layout(self, flow_name: str, tree: Tree[Token]) -> None:
        layout = self.out.layouts.setdefault(flow_name, Layout())
        for position in tree.children:
            assert isinstance(position, Tree)
            name, x, y = position.children
            layout.positions[str(name)] = (_signed(x), _signed(y))
            layout.spans[str(name)] = span_of(_tok(name))

    def trigger(self, tree: Tree[Token]) -> Any:
        c = tree.children
        sp = span_of(tree)
        match str(tree.data):
            case "trigger_event":
                return ir.EventTrigger(
                    event=self.event_name(c[0]), where=self.opt_expr(c[1]), span=sp
                )
            case "trigger_entered":
                m = self.membership(c[0])
                return ir.EnteredTrigger(membership=m.kind, name=m.name, span=sp)
            case "trigger_form":
                return ir.FormTrigger(form=str(c[0]), where=self.opt_expr(c[1]), span=sp)
            case "trigger_date":
                return ir.DateTrigger(date=self.expr(c[0]), at=_opt_plain(c[1]), span=sp)
            case "trigger_anniversary":
                return ir.AnniversaryTrigger(date=self.expr(c[0]), at=_opt_plain(c[1]), span=sp)
            case "trigger_inactive":
                return ir.InactiveTrigger(seconds=seconds(_tok(c[0])), span=sp)
            case "trigger_schedule":
                audience = self.membership(c[1]) if c[1] is not None else None
                return ir.ScheduleTrigger(cron=unquote(_tok(c[0])), audience=audience, span=sp)
        raise AssertionError(tree.data)

    def membership(self, node: Tree[Token] | Token | None) -> ir.Membership:
        assert isinstance(node, Tree)
        kind_tree, name = node.children
        return ir.Membership(
            kind=cast(Any, str(_first_token(kind_tree))), name=str(name), span=span_of(_tok(name))
        )

    def event_name(self, node: Tree[Token] | Token | None) -> str:
        token = _first_token(node)
        return unquote(token) if token.type == "STRING" else str(token)

    def step(self, tree: Tree[Token], following: str | None, sp: Span) -> ir.Step:
        """The step `tree` (its name at `sp`); `following` is where it falls through to."""
        name_tok, action = tree.children
        assert isinstance(action, Tree)
        name = str(name_tok)
        c = action.children

        def edge(node: Tree[Token] | Token | None) -> str | None:
            if isinstance(node, Tree) and node.data == "edge":
                return str(node.children[0])
            return following

        match str(action.data):
            case "send":
                options, variants_tree, edge_tree = c[1:-2], c[-2], c[-1]
                opts = self.send_options(options)
                variants = []
                if isinstance(variants_tree, Tree):
                    for v in variants_tree.children:
                        assert isinstance(v, Tree)
                        vname, vpercent, *vopts = v.children
                        variants.append(
                            ir.Variant(
                                name=str(vname),
                                percent=percent(_tok(vpercent)),
                                span=span_of(v),
                                **self.send_options(vopts),
                            )
                        )
                return ir.Send(
                    name=name,
                    template=str(c[0]),
                    variants=variants,
                    next=edge(edge_tree),
                    span=sp,
                    **opts,
                )
            case "wait":
                return ir.Wait(name=name, seconds=seconds(_tok(c[0])), next=edge(c[1]), span=sp)
            case "wait_business":
                days = number(_tok(c[0]))
                if not isinstance(days, int):
                    self.error("FB212", f"business days are whole days, not `{c[0]}`", _tok(c[0]))
                return ir.WaitBusinessDays(name=name, days=int(days), next=edge(c[1]), span=sp)
            case "wait_until_time":
                return ir.WaitUntilTime(
                    name=name,
                    time=str(c[0]),
                    weekdays=self.weekdays(c[1]),
                    next=edge(c[2]),
                    span=sp,
                )
            case "wait_until_date":
                return ir.WaitUntilDate(name=name, date=self.expr(c[0]), next=edge(c[1]), span=sp)
            case "wait_for":
                then, timeout_next = following, following if c[1] is not None else None
                tail = c[2]
                if isinstance(tail, Tree) and tail.data == "edge":
                    then = str(tail.children[0])
                elif isinstance(tail, Tree):
                    for arm in tail.children:
                        assert isinstance(arm, Tree)
                        if arm.data == "then_arm":
                            then = str(arm.children[0])
                        else:
                            if c[1] is None:
                                self.error(
                                    "FB212",
                                    "a `timeout` arm needs a timeout: add `up to 7d` after the condition",
                                    arm,
                                )
                            timeout_next = str(arm.children[0])
                return ir.WaitFor(
                    name=name,
                    condition=self.expr(c[0]),
                    timeout_seconds=seconds(_tok(c[1])) if c[1] is not None else None,
                    next=then,
                    timeout_next=timeout_next,
                    span=sp,
                )
            case "branch":
                arms: list[ir.Arm] = []
                otherwise, has_else = following, False
                for arm in c:
                    assert isinstance(arm, Tree)
                    if arm.data == "else_arm":
                        otherwise, has_else = str(arm.children[0]), True
                    else:
                        arms.append(
                            ir.Arm(
                                condition=self.expr(arm.children[0]),
                                target=str(arm.children[1]),
                                span=span_of(arm),
                            )
                        )
                return ir.Branch(
                    name=name, arms=arms, has_else=has_else, otherwise=otherwise, span=sp
                )
            case "split":
                paths: list[ir.SplitPath] = []
                holdout = 0.0
                for arm in c:
                    assert isinstance(arm, Tree)
                    if arm.data == "holdout":
                        holdout += percent(_tok(arm.children[0]))
                    else:
                        paths.append(
                            ir.SplitPath(
                                percent=percent(_tok(arm.children[0])),
                                target=str(arm.children[1]),
                                span=span_of(arm),
                            )
                        )
                return ir.Split(name=name, paths=paths, holdout=holdout, span=sp)
            case "update":
                target = self.expr(c[0])
                assert isinstance(target, ir.Path)
                op = str(_first_token(c[1]))
                return ir.Update(
                    name=name,
                    target=target,
                    op=cast(Any, op),
                    value=self.expr(c[2]),
                    next=edge(c[3]),
                    span=sp,
                )
            case "add_to_list":
                return ir.AddToList(name=name, list=str(c[0]), next=edge(c[1]), span=sp)
            case "remove_from_list":
                return ir.RemoveFromList(name=name, list=str(c[0]), next=edge(c[1]), span=sp)
            case "move_to_flow":
                return ir.MoveToFlow(name=name, flow=str(c[0]), span=sp)
            case "webhook":
                return ir.Webhook(name=name, url=unquote(_tok(c[0])), next=edge(c[1]), span=sp)
            case "reach_goal":
                return ir.ReachGoal(name=name, goal=str(c[0]), next=edge(c[1]), span=sp)
            case "suppress":
                return ir.Suppress(name=name, reason=_opt_str(c[0]), next=edge(c[1]), span=sp)
            case "end":
                return ir.End(name=name, reason=_opt_str(c[0]), span=sp)
        raise AssertionError(action.data)

    def send_options(self, options: Sequence[Tree[Token] | Token | None]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        keys = {
            "subject": "subject",
            "preheader": "preheader",
            "sender": "sender",
            "variant_template": "template",
        }
        for option in options:
            assert isinstance(option, Tree)
            key = keys[str(option.data)]
            if key in out:
                self.error("FB215", f"`{key}` is set twice on this send", option)
            token = _tok(option.children[0])
            out[key] = str(token) if key == "template" else unquote(token)
        return out

    # ------------------------------------------------------------------ expressions

    def opt_expr(self, node: Tree[Token] | Token | None) -> ir.Expr | None:
        return None if node is None else self.expr(node)

    def argument(self, node: Tree[Token] | Token | None, kind: str | None) -> ir.Expr:
        """A function's argument; a bare name where the function takes a step (a list, a
        segment …) names one, so the checker only checks it instead of rebuilding the call."""
        if kind in REF_KINDS and isinstance(node, Tree) and node.data == "name":
            return ir.Ref(kind=cast(Any, kind), name=str(node.children[0]), span=span_of(node))
        return self.expr(node)

    def expr(self, node: Tree[Token] | Token | None) -> ir.Expr:
        assert isinstance(node, Tree), node
        sp = span_of(node)
        c = node.children
        match str(node.data):
            # the commonest first: a match tries its cases in order
            case "call":
                function = str(c[0])
                fn = FUNCTIONS.get(function)
                args: list[ir.Expr] = []
                kwargs: dict[str, ir.Expr] = {}
                for arg in c[1:]:
                    if arg is None:
                        continue
                    assert isinstance(arg, Tree)
                    if arg.data == "kwarg":
                        key = str(arg.children[0])
                        if key in kwargs:
                            self.error("FB209", f"the argument `{key}` is given twice", arg)
                        kind = fn.kwargs.get(key) if fn is not None else None
                        kwargs[key] = self.argument(arg.children[1], kind)
                    else:
                        if kwargs:
                            self.error("FB209", "a positional argument follows a named one", arg)
                        at = len(args)
                        kind = (
                            fn.params[at].kind if fn is not None and at < len(fn.params) else None
                        )
                        args.append(self.argument(arg, kind))
                return ir.Call(function=function, args=args, kwargs=kwargs, span=sp)
            case "or_test" | "and_test":
                op: Literal["and", "or"] = "or" if node.data == "or_test" else "and"
                return ir.Logic(op=op, operands=[self.expr(x) for x in c], span=sp)
            case "not_test":
                return ir.Not(operand=self.expr(c[0]), span=sp)
            case "negate":
                return ir.Negate(operand=self.expr(c[0]), span=sp)
            case "compare" | "string_test":
                return ir.Compare(
                    op=cast(Any, str(_first_token(c[1]))),
                    left=self.expr(c[0]),
                    right=self.expr(c[2]),
                    span=sp,
                )
            case "in_test":
                return ir.Compare(op="in", left=self.expr(c[0]), right=self.expr(c[1]), span=sp)
            case "not_in_test":
                return ir.Compare(op="not in", left=self.expr(c[0]), right=self.expr(c[1]), span=sp)
            case "arith":
                return ir.Arith(
                    op=cast(Any, str(_first_token(c[1]))),
                    left=self.expr(c[0]),
                    right=self.expr(c[2]),
                    span=sp,
                )
            case "number_lit":
                return ir.Const(type="number", value=number(_tok(c[0])), span=sp)
            case "string_lit":
                return ir.Const(type="string", value=unquote(_tok(c[0])), span=sp)
            case "duration_lit":
                return ir.Const(type="duration", value=seconds(_tok(c[0])), span=sp)
            case "percent_lit":
                return ir.Const(type="percent", value=percent(_tok(c[0])), span=sp)
            case "date_lit":
                return ir.Const(type="date", value=str(c[0]), span=sp)
            case "true_lit" | "false_lit":
                return ir.Const(type="bool", value=node.data == "true_lit", span=sp)
            case "null_lit":
                return ir.Const(type="null", value=None, span=sp)
            case "list_lit":
                return ir.ListExpr(items=[self.expr(x) for x in c if x is not None], span=sp)
            case "name":
                # Resolved by the checker from where it stands; a bare event name is the default.
                return ir.Ref(kind="event", name=str(c[0]), span=sp)
            case "path":
                names = [str(x) for x in c]
                return ir.Path(root=names[0], attrs=names[1:], span=sp)
        raise AssertionError(node.data)


def _tok(node: Tree[Token] | Token | None) -> Token:
    assert isinstance(node, Token), node
    return node


def _first_token(node: Tree[Token] | Token | None) -> Token:
    if isinstance(node, Token):
        return node
    assert isinstance(node, Tree)
    for child in node.children:
        if child is not None:
            return _first_token(child)
    raise AssertionError("empty tree")


def _weekday(node: Tree[Token] | Token | None) -> str:
    return str(_first_token(node))


def _signed(node: Tree[Token] | Token | None) -> int:
    assert isinstance(node, Tree)
    sign, value = node.children
    return int(float(str(value))) * (-1 if sign is not None else 1)


def _opt_str(node: Tree[Token] | Token | None) -> str | None:
    return unquote(_tok(node)) if node is not None else None


def _opt_plain(node: Tree[Token] | Token | None) -> str | None:
    return str(node) if node is not None else None


def _span(expr: ir.Node) -> Span:
    return expr.span or Span(1, 1, 1, 2)
