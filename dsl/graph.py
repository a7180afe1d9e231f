"""A flow as a Mermaid flowchart, for pull-request previews and docs."""

from __future__ import annotations

from dsl import ir
from dsl.ir_text import duration_text, expr_text, step_text, trigger_text


def _label(text: str) -> str:
    """Mermaid-safe quoted label text."""
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def _node(step: ir.Step) -> str:
    label = _label(f"{step.name}: {step_text(step)}")
    match step:
        case ir.Branch() | ir.Split():
            return f"{{{label}}}"
        case (
            ir.Wait()
            | ir.WaitBusinessDays()
            | ir.WaitUntilTime()
            | ir.WaitUntilDate()
            | ir.WaitFor()
        ):
            return f"[/{label}/]"
        case ir.End() | ir.MoveToFlow():
            return f"([{label}])"
        case ir.Send():
            return f"[{label}]"
    return f"[[{label}]]"


def _id(name: str) -> str:
    return f"s_{name}"


def mermaid(flow: ir.Flow) -> str:
    """The flowchart: triggers into the first step, one node per step, labelled edges per port."""
    lines = ["flowchart TD"]
    title = flow.title or flow.name
    lines.append(f"  start(({_label(title)}))")
    for i, trigger in enumerate(flow.triggers):
        lines.append(f"  t{i}>{_label('trigger ' + trigger_text(trigger))}] --> start")
    for step in flow.steps.values():
        lines.append(f"  {_id(step.name)}{_node(step)}")
    if flow.start is not None:
        lines.append(f"  start --> {_id(flow.start)}")
    for step in flow.steps.values():
        for label, target in _edges(step):
            arrow = f" -- {_label(label)} --> " if label else " --> "
            lines.append(f"  {_id(step.name)}{arrow}{_id(target)}")
        if isinstance(step, ir.Split) and step.holdout:
            lines.append(
                f"  {_id(step.name)} -. {_label(f'holdout {step.holdout:g}%')} .-> exit_{step.name}(((exit)))"
            )
    if flow.exits:
        reasons = "; ".join(
            ("account: " if e.scope == "account" else "") + expr_text(e.condition)
            for e in flow.exits
        )
        lines.append(f"  exits[{_label('exit when ' + reasons)}]")
        lines.append("  style exits stroke-dasharray: 4 4")
    return "\n".join(lines) + "\n"


def _edges(step: ir.Step) -> list[tuple[str, str]]:
    match step:
        case ir.Branch():
            out = [(expr_text(arm.condition), arm.target) for arm in step.arms]
            if step.otherwise:
                out.append(("else" if step.has_else else "no match", step.otherwise))
            return out
        case ir.Split():
            return [(f"{p.percent:g}%", p.target) for p in step.paths]
        case ir.WaitFor():
            out = [("then", step.next)] if step.next else []
            if step.timeout_next and step.timeout_seconds:
                out.append((f"timeout {duration_text(step.timeout_seconds)}", step.timeout_next))
            return out
    return [("", t) for t in ir.successors(step)]
