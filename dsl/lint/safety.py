"""Marketing-safety rules (FB4xx): what protects readers and the sender's reputation."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.ir_text import duration_text, trigger_text
from dsl.lint.config import LintConfig

WAITS = (ir.Wait, ir.WaitBusinessDays, ir.WaitUntilTime, ir.WaitUntilDate, ir.WaitFor)
MAX_PATHS = 20_000
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


def _paths(flow: ir.Flow) -> Iterator[list[ir.Step]]:
    """Every path from the first step (each loop taken once), bounded for very large flows."""
    if flow.start is None:
        return
    stack: list[tuple[str, tuple[str, ...]]] = [(flow.start, ())]
    emitted = 0
    while stack and emitted < MAX_PATHS:
        name, trail = stack.pop()
        step = flow.steps.get(name)
        nexts = (
            []
            if step is None or name in trail
            else [t for t in ir.successors(step) if t in flow.steps]
        )
        trail = trail if step is None or name in trail else (*trail, name)
        if not nexts:
            emitted += 1
            yield [flow.steps[n] for n in trail]
            continue
        stack.extend((t, trail) for t in nexts)


def check(ws: ir.Workspace, flow: ir.Flow, config: LintConfig) -> Iterator[Diagnostic]:
    path = flow.path
    reported: set[tuple[str, str]] = set()

    def once(code: str, step: ir.Step, message: str, hint: str) -> Iterator[Diagnostic]:
        if (code, step.name) not in reported:
            reported.add((code, step.name))
            yield rules.make(code, message, path, _span(step), hint=hint)

    cap = flow.policy.frequency_cap or ws.policy.frequency_cap
    for trail in _paths(flow):
        sends: list[tuple[int, ir.Send]] = []
        elapsed = 0
        last_send: ir.Send | None = None
        waited = False
        for step in trail:
            if isinstance(step, WAITS):
                waited = True
            elapsed += _min_seconds(step)
            if isinstance(step, ir.Send):
                if last_send is not None and not waited:
                    yield from once(
                        "FB400",
                        step,
                        f"`{step.name}` is sent right after `{last_send.name}` with no wait between them",
                        "add a wait such as `wait 2d` between the two sends",
                    )
                last_send, waited = step, False
                sends.append((elapsed, step))
                if cap is not None:
                    in_window = [s for t, s in sends if elapsed - t < cap.per_seconds]
                    if len(in_window) > cap.count:
                        yield from once(
                            "FB401",
                            step,
                            f"`{step.name}` makes {len(in_window)} sends within {duration_text(cap.per_seconds)}, over the frequency cap of {cap.count}",
                            "space the sends out with longer waits",
                        )
        if flow.kind == "cold" and len(sends) > config.max_cold_touches:
            step = sends[config.max_cold_touches][1]
            yield from once(
                "FB402",
                step,
                f"this cold sequence sends {len(sends)} touches; the most a cold sequence should send is {config.max_cold_touches}",
                "keep cold sequences to 3–5 touches",
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
