"""Marketing-safety rules (FB4xx): what protects readers and the sender's reputation."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.ir_text import duration_text, trigger_text
from dsl.lint.config import LintConfig
from dsl.lint.graph import FlowGraph, walk

WAITS = (ir.Wait, ir.WaitBusinessDays, ir.WaitUntilTime, ir.WaitUntilDate, ir.WaitFor)
_MERGE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _span(node: ir.Node) -> Span:
    return node.span or Span(1, 1, 1, 2)


def _min_seconds(step: ir.Step) -> int:
    if type(step) is ir.Wait:
        return step.seconds
    if type(step) is ir.WaitBusinessDays:
        return step.days * 86400
    return 0


def _window_sends(
    forward: dict[str, list[str]],
    sends: set[str],
    delay: dict[str, int],
    first: str,
    budget: int,
) -> int:
    """The most sends on one path from `first` (a send) before `budget` seconds of waiting pass."""
    best = 0
    seen: dict[tuple[str, int], int] = {}
    work = [(first, 0, 0)]
    visits = 0
    while work and visits < 100_000:
        name, elapsed, count = work.pop()
        visits += 1
        elapsed += delay.get(name, 0)
        if elapsed >= budget:
            continue
        if name in sends:
            count += 1
        if count > best:
            best = count
        if seen.get((name, elapsed), -1) >= count:
            continue
        seen[(name, elapsed)] = count
        work.extend((child, elapsed, count) for child in forward[name])
    return best


# Step kinds by exact type: a model's `isinstance` goes through `ABCMeta`, and these run per step.
_WAIT_TYPES: frozenset[type] = frozenset(WAITS)


def check(
    ws: ir.Workspace, flow: ir.Flow, config: LintConfig, graph: FlowGraph | None = None
) -> Iterator[Diagnostic]:
    path = flow.path
    reported: set[tuple[str, str]] = set()

    def once(code: str, step: ir.Step, message: str, hint: str) -> Iterator[Diagnostic]:
        if (code, step.name) not in reported:
            reported.add((code, step.name))
            yield rules.make(code, message, path, _span(step), hint=hint)

    steps = flow.steps
    sends = {name for name, step in steps.items() if type(step) is ir.Send}
    waits = {name for name, step in steps.items() if type(step) in _WAIT_TYPES}
    cap = flow.policy.frequency_cap or ws.policy.frequency_cap
    graph = graph or walk(flow)
    order, forward = graph.order, graph.forward
    # A send reached from another send with no wait on the way (FB400).
    reaches: dict[str, str | None] = {}
    for name in reversed(order):
        found: str | None = None
        for child in forward[name]:
            later_name = reaches[child]
            if later_name is None:
                continue
            if name in sends:
                later = steps[later_name]
                yield from once(
                    "FB400",
                    later,
                    f"`{later.name}` is sent right after `{name}` with no wait between them",
                    "add a wait such as `wait 2d` between the two sends",
                )
            if found is None:
                found = later_name
        reaches[name] = name if name in sends else None if name in waits else found
    # The most sends on any path (FB402) and within the frequency cap's period (FB401).
    most: dict[str, int] = {}
    for name in reversed(order):
        deepest = 0
        for child in forward[name]:
            if most[child] > deepest:
                deepest = most[child]
        most[name] = (name in sends) + deepest
    if flow.kind == "cold" and order and most[order[0]] > config.max_cold_touches:
        total = most[order[0]]
        over = [n for n in order if n in sends and most[n] == total - config.max_cold_touches]
        step = steps[over[0]] if over else steps[order[0]]
        yield from once(
            "FB402",
            step,
            f"this cold sequence sends {total} touches; the most a cold sequence should send is {config.max_cold_touches}",
            "keep cold sequences to 3–5 touches",
        )
    if cap is not None:
        delay = {name: seconds for name in order if (seconds := _min_seconds(steps[name]))}
        for name in order:
            step = steps[name]
            if name in sends:
                count = _window_sends(forward, sends, delay, name, cap.per_seconds)
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
        if type(step) is not ir.Send:
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
