"""Marketing-safety rules (FB4xx): what protects readers and the sender's reputation."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.ir_text import duration_text, trigger_text
from dsl.lint.config import LintConfig

WAITS = (ir.Wait, ir.WaitBusinessDays, ir.WaitUntilTime, ir.WaitUntilDate, ir.WaitFor)
_MERGE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _span(node: ir.Node) -> Span:
    return node.span or Span(1, 1, 1, 2)


def _min_seconds(step: ir.Step) -> int:
    match step:
        case ir.Wait():
            return step.seconds
        case ir.WaitBusinessDays():
            return step.days * 86400
    return 0


def _order(flow: ir.Flow) -> tuple[list[str], dict[str, list[str]]]:
    """Reachable steps in topological order of the graph without its back edges (loops cut once)."""
    forward: dict[str, list[str]] = {}
    post: list[str] = []
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done
    if flow.start is None or flow.start not in flow.steps:
        return [], forward
    stack: list[tuple[str, Iterator[str]]] = [
        (flow.start, iter(ir.successors(flow.steps[flow.start])))
    ]
    state[flow.start] = 1
    forward[flow.start] = []
    while stack:
        name, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            state[name] = 2
            post.append(name)
        elif child in flow.steps and state.get(child) != 1:
            forward[name].append(child)
            if child not in state:
                state[child] = 1
                forward[child] = []
                stack.append((child, iter(ir.successors(flow.steps[child]))))
    return post[::-1], forward


def _window_sends(flow: ir.Flow, forward: dict[str, list[str]], first: str, budget: int) -> int:
    """The most sends on one path from `first` (a send) before `budget` seconds of waiting pass."""
    best = 0
    seen: dict[tuple[str, int], int] = {}
    work = [(first, 0, 0)]
    visits = 0
    while work and visits < 100_000:
        name, elapsed, sends = work.pop()
        visits += 1
        step = flow.steps[name]
        elapsed += _min_seconds(step)
        if elapsed >= budget:
            continue
        sends += isinstance(step, ir.Send)
        best = max(best, sends)
        if seen.get((name, elapsed), -1) >= sends:
            continue
        seen[(name, elapsed)] = sends
        work.extend((child, elapsed, sends) for child in forward[name])
    return best


def check(ws: ir.Workspace, flow: ir.Flow, config: LintConfig) -> Iterator[Diagnostic]:
    path = flow.path
    reported: set[tuple[str, str]] = set()

    def once(code: str, step: ir.Step, message: str, hint: str) -> Iterator[Diagnostic]:
        if (code, step.name) not in reported:
            reported.add((code, step.name))
            yield rules.make(code, message, path, _span(step), hint=hint)

    cap = flow.policy.frequency_cap or ws.policy.frequency_cap
    order, forward = _order(flow)
    # A send reached from another send with no wait on the way (FB400).
    reaches: dict[str, str | None] = {}
    for name in reversed(order):
        step = flow.steps[name]
        for child in forward[name]:
            later_name = reaches[child]
            if isinstance(step, ir.Send) and later_name is not None:
                later = flow.steps[later_name]
                yield from once(
                    "FB400",
                    later,
                    f"`{later.name}` is sent right after `{step.name}` with no wait between them",
                    "add a wait such as `wait 2d` between the two sends",
                )
        found = next((r for c in forward[name] if (r := reaches[c]) is not None), None)
        reaches[name] = (
            name if isinstance(step, ir.Send) else None if isinstance(step, WAITS) else found
        )
    # The most sends on any path (FB402) and within the frequency cap's period (FB401).
    most: dict[str, int] = {}
    for name in reversed(order):
        most[name] = isinstance(flow.steps[name], ir.Send) + max(
            (most[c] for c in forward[name]), default=0
        )
    if flow.kind == "cold" and order and most[order[0]] > config.max_cold_touches:
        total = most[order[0]]
        over = [
            n
            for n in order
            if isinstance(flow.steps[n], ir.Send) and most[n] == total - config.max_cold_touches
        ]
        step = flow.steps[over[0]] if over else flow.steps[order[0]]
        yield from once(
            "FB402",
            step,
            f"this cold sequence sends {total} touches; the most a cold sequence should send is {config.max_cold_touches}",
            "keep cold sequences to 3–5 touches",
        )
    if cap is not None:
        for name in order:
            step = flow.steps[name]
            if isinstance(step, ir.Send):
                count = _window_sends(flow, forward, name, cap.per_seconds)
                if count > cap.count:
                    yield from once(
                        "FB401",
                        step,
                        f"from `{step.name}`, a path makes {count} sends within {duration_text(cap.per_seconds)}, over the frequency cap of {cap.count}",
                        "space the sends out with longer waits",
                    )
    if flow.kind in ("cold", "sales") and not any(
        _calls(rule.condition, "replied") for rule in flow.exits
    ):
        yield rules.make(
            "FB403",
            f"the {flow.kind} flow `{flow.name}` does not stop when the lead replies",
            path,
            _span(flow),
            hint="add `exit when replied()`",
        )
    yield from _duplicate_triggers(ws, flow)
    yield from _merge_fields(ws, flow)


def _calls(expr: ir.Expr, function: str) -> bool:
    match expr:
        case ir.Call():
            return expr.function == function or any(
                _calls(a, function) for a in [*expr.args, *expr.kwargs.values()]
            )
        case ir.Logic():
            return any(_calls(o, function) for o in expr.operands)
        case ir.Not() | ir.Negate():
            return _calls(expr.operand, function)
        case ir.Compare() | ir.Arith():
            return _calls(expr.left, function) or _calls(expr.right, function)
    return False


def _duplicate_triggers(ws: ir.Workspace, flow: ir.Flow) -> Iterator[Diagnostic]:
    names = list(ws.flows)
    for other_name in names[: names.index(flow.name)]:
        other = ws.flows[other_name]
        theirs = [t.model_dump() for t in other.triggers]
        for trigger in flow.triggers:
            if trigger.model_dump() in theirs:
                yield rules.make(
                    "FB404",
                    f"flow `{other_name}` already enrolls leads on `trigger {trigger_text(trigger)}`",
                    flow.path,
                    _span(trigger),
                    hint="narrow one trigger with `where`, or merge the flows",
                )


def _missing_fallback(text: str, ws: ir.Workspace) -> list[str]:
    missing = []
    for inner in _MERGE.findall(text):
        if "default(" in inner or re.search(r"\|\s*d\(", inner) or " or " in inner:
            continue
        name = inner.split("|")[0].strip().removeprefix("lead.")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in (
            "email",
            "unsubscribe_url",
            "preferences_url",
        ):
            continue
        attribute = ws.attributes.get(name)
        if attribute is None or not attribute.required:
            missing.append(name)
    return missing


def _merge_fields(ws: ir.Workspace, flow: ir.Flow) -> Iterator[Diagnostic]:
    for step in flow.steps.values():
        if not isinstance(step, ir.Send):
            continue
        texts = [step.subject, step.preheader] + [
            t for v in step.variants for t in (v.subject, v.preheader)
        ]
        for text in texts:
            for name in _missing_fallback(text or "", ws):
                yield rules.make(
                    "FB405",
                    f"the merge field `{name}` in `{step.name}` has no fallback and a lead may lack it",
                    flow.path,
                    _span(step),
                    hint=f"write {{{{ {name} | default('…') }}}} or declare `attribute {name}: string required`",
                )


def check_templates(ws: ir.Workspace) -> Iterator[Diagnostic]:
    for template in ws.templates.values():
        for text in (template.subject, template.preheader):
            for name in _missing_fallback(text or "", ws):
                yield rules.make(
                    "FB405",
                    f"the merge field `{name}` in template `{template.name}` has no fallback and a lead may lack it",
                    template.path,
                    _span(template),
                    hint=f"write {{{{ {name} | default('…') }}}}",
                )
