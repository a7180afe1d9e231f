"""A flow as the canvas draws it: nodes with labelled ports, the edges they lead along, saved
positions and the lint findings on each node — read from the parse tree, so a flow with semantic
errors still draws. Also what the palette adds: a fresh step name and a valid default action.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lark import Token, Tree

from dsl import ir
from dsl.compile import Compilation
from dsl.diagnostics import Diagnostic
from dsl.edit import AddStep, EditOp, MoveStep, RenameStep, apply_many, revision
from dsl.edit_doc import Doc, action_of, conditional_arms, exits, trees
from dsl.fmt import format_node

# The palette: every step kind, in the order a marketer reaches for them.
PALETTE: list[tuple[str, str, str]] = [
    ("send", "Send email", "Send one of the workspace's email templates"),
    ("wait", "Wait", "Pause for a time such as 1d or 12h"),
    ("wait_for", "Wait for a reaction", "Wait until the lead opens, clicks … or time runs out"),
    ("branch", "Branch", "Go one way or another by a condition (yes / no)"),
    ("split", "A/B split", "Divide leads at random between paths"),
    ("wait_until_time", "Wait until a time", "Wait for a time of day, such as 10:00"),
    ("wait_business", "Wait business days", "Pause for working days only"),
    ("wait_until_date", "Wait until a date", "Wait for a date computed from the lead"),
    ("update", "Update lead", "Change the score, the stage, a tag or an attribute"),
    ("add_to_list", "Add to list", "Put the lead on a list"),
    ("remove_from_list", "Remove from list", "Take the lead off a list"),
    ("webhook", "Notify sales", "Tell the CRM or a sales rep (a webhook)"),
    ("reach_goal", "Goal reached", "Count the flow's goal as reached here"),
    ("move_to_flow", "Move to flow", "Continue in another flow"),
    ("suppress", "Suppress", "Never email this address again"),
    ("end", "End", "The lead's path ends here"),
]
LABELS = {kind: label for kind, label, _ in PALETTE}
# The first name a new step of each kind gets (`email`, then `email_2` …); none is a reserved word.
BASE_NAMES = {
    "send": "email",
    "wait": "pause",
    "wait_for": "reaction",
    "branch": "check",
    "split": "ab_test",
    "wait_until_time": "at_time",
    "wait_business": "business_pause",
    "wait_until_date": "until_date",
    "update": "update_lead",
    "add_to_list": "join_list",
    "remove_from_list": "leave_list",
    "webhook": "notify_sales",
    "reach_goal": "goal_reached",
    "move_to_flow": "handoff",
    "suppress": "suppress_address",
    "end": "finish",
}
_EDGE = re.compile(r"\s+->\s+[A-Za-z_][A-Za-z0-9_]*$")
_TRAILING_BRACE = re.compile(r"\s*\{$")


class CanvasError(ValueError):
    """What the palette cannot add to this flow, and why."""


@dataclass
class Port:
    id: str  # "next" for the single exit, else the edit port: then, timeout, arm:N, else, path:N
    label: str
    title: str
    target: str | None  # where the lead goes (fall-through resolved); None: it leaves the flow
    explicit: bool  # written as an edge in the text (a fall-through is not)
    required: bool  # a branch arm or split path: it cannot be disconnected, only removed


@dataclass
class Node:
    name: str
    kind: str
    label: str
    detail: str
    action: str
    line: int
    end_line: int
    ports: list[Port]
    notes: list[str] = field(default_factory=list)
    position: tuple[int, int] | None = None
    diagnostics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FlowModel:
    flow: str
    title: str
    path: str
    revision: str
    text: str
    start: str | None
    triggers: list[str]
    policies: list[str]
    nodes: list[Node]
    diagnostics: list[dict[str, Any]]  # findings of the flow that are not on one step
    file_diagnostics: list[dict[str, Any]]  # every finding in the file, for the text pane

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def unquote(token: str) -> str:
    """A STRING token's text (`"say \\"hi\\""` → `say "hi"`)."""
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        return token.strip('"')
    return str(value)


def quote(text: str) -> str:
    """A text as the language writes it, in double quotes."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    return {
        "code": d.code,
        "severity": d.severity.value,
        "message": d.message,
        "hint": d.hint,
        "line": d.span.line,
        "col": d.span.col,
        "end_line": d.span.end_line,
        "end_col": d.span.end_col,
        "path": d.path,
    }


def _step_text(step: Tree[Token]) -> tuple[str, str]:
    """(the canonical action text, its one-line summary without the edge)."""
    name = str(step.children[0])
    text = format_node(step)[len(name) + 2 :]
    first = text.split("\n", 1)[0]
    return text, _TRAILING_BRACE.sub("", _EDGE.sub("", first))


def _ports(doc: Doc, flow: Tree[Token], step: Tree[Token]) -> tuple[list[Port], list[str]]:
    action = action_of(step)
    kind = str(action.data)
    following = doc.following(flow, step)
    arms = conditional_arms(action) if kind == "branch" else []
    ports: list[Port] = []
    notes: list[str] = []
    for e in exits(step):
        target = e.target if e.target is not None else following
        port_id = "next" if e.port is None else e.port
        label, title = "", ""
        if kind == "wait_for" and e.port == "then":
            label, title = "met", "the condition held"
        elif e.port == "timeout":
            timeout = action.children[1]
            label = f"timeout {timeout}" if timeout is not None else "timeout"
            title = "the time ran out"
        elif e.port is not None and e.port.startswith("arm:"):
            condition = format_node(_tree(arms[int(e.port[4:])].children[0]))
            label = "yes" if len(arms) == 1 else f"if {_short(condition)}"
            title = f"if {condition}"
        elif e.port == "else":
            label = "no" if len(arms) == 1 else "else"
            title = "when no condition above holds"
        elif e.port is not None and e.port.startswith("path:"):
            path = [a for a in trees(action.children) if a.data == "split_path"][int(e.port[5:])]
            label = str(path.children[0])
            title = f"{label} of leads"
        ports.append(Port(port_id, label, title, target, e.target is not None, e.required))
    if kind == "split":
        notes += [f"holdout {h.children[0]}" for h in trees(action.children) if h.data == "holdout"]
    if kind == "send" and isinstance(action.children[-2], Tree):
        variants = trees(action.children[-2].children)
        notes.append("A/B: " + ", ".join(f"{v.children[0]} {v.children[1]}" for v in variants))
    return ports, notes


def _tree(node: object) -> Tree[Token]:
    assert isinstance(node, Tree)
    return node


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model(
    text: str,
    path: str,
    flow_name: str,
    compilation: Compilation | None,
    diagnostics: list[Diagnostic],
) -> FlowModel:
    """The canvas model of `flow_name` in the file `text` (which must parse)."""
    doc = Doc(text, path)
    flow = doc.flow(flow_name)
    steps = doc.steps(flow)
    layout = compilation.layouts.get(flow_name) if compilation is not None else None
    mine = [diagnostic_json(d) for d in diagnostics if d.path == path]
    nodes: list[Node] = []
    claimed: set[int] = set()
    for step in steps:
        name = doc.step_name(step)
        kind = str(action_of(step).data)
        action, detail = _step_text(step)
        ports, notes = _ports(doc, flow, step)
        first, last = step.meta.line, step.meta.end_line
        own = [i for i, d in enumerate(mine) if first <= d["line"] <= last]
        claimed.update(own)
        nodes.append(
            Node(
                name=name,
                kind=kind,
                label=LABELS[kind],
                detail=detail.split(" ", 1)[1] if " " in detail else "",
                action=action,
                line=first,
                end_line=last,
                ports=ports,
                notes=notes,
                position=layout.positions.get(name) if layout else None,
                diagnostics=[mine[i] for i in own],
            )
        )
    inside = [
        i
        for i, d in enumerate(mine)
        if i not in claimed and flow.meta.line <= d["line"] <= flow.meta.end_line
    ]
    items = trees(flow.children[2:])
    title = flow.children[1]
    return FlowModel(
        flow=flow_name,
        title=unquote(str(title)) if title is not None else flow_name,
        path=path,
        revision=revision(text),
        text=text,
        start=doc.step_name(steps[0]) if steps else None,
        triggers=[format_node(i) for i in items if i.data.startswith("trigger")],
        policies=[
            format_node(i)
            for i in items
            if i.data
            in (
                "entry",
                "exit_rule",
                "goal",
                "kind",
                "send_window",
                "quiet_hours",
                "business_days",
                "frequency_cap",
                "timezone",
            )
        ],
        nodes=nodes,
        diagnostics=[mine[i] for i in inside],
        file_diagnostics=mine,
    )


# ---------------------------------------------------------------------------- adding steps


def fresh_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3` … whichever is free."""
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def default_action(kind: str, ws: ir.Workspace | None, flow: str, targets: list[str]) -> str:
    """A valid action of `kind` to start from; the property panel then refines it."""
    if kind not in LABELS:
        raise CanvasError(f"there is no step kind '{kind}'; kinds are: {', '.join(LABELS)}")
    templates = sorted(ws.templates) if ws else []
    lists = sorted(ws.lists) if ws else []
    flows = sorted(f for f in (ws.flows if ws else {}) if f != flow)
    goals = [g.name for g in ws.flows[flow].goals] if ws and flow in ws.flows else []
    target = targets[-1] if targets else None
    need = {
        "send": (templates, "an email template"),
        "add_to_list": (lists, "a list"),
        "remove_from_list": (lists, "a list"),
        "move_to_flow": (flows, "another flow"),
        "reach_goal": (goals, "a goal (a `goal … when …` line)"),
    }
    if kind in need and not need[kind][0]:
        raise CanvasError(f"a '{LABELS[kind]}' step needs {need[kind][1]}; declare one first")
    if kind in ("branch", "split") and target is None:
        raise CanvasError(f"a '{LABELS[kind]}' step needs a step to lead to; add one first")
    actions: dict[str, Callable[[], str]] = {
        "send": lambda: f"send {templates[0] if templates else ''}",
        "wait": lambda: "wait 1d",
        "wait_business": lambda: "wait 2 business days",
        "wait_until_time": lambda: "wait until 10:00",
        "wait_until_date": lambda: "wait until now() + 7d",
        "wait_for": lambda: "wait for opened() up to 3d",
        "branch": lambda: f"branch {{\nif opened() -> {target}\nelse -> {target}\n}}",
        "split": lambda: f"split {{\n50% -> {target}\n50% -> {target}\n}}",
        "update": lambda: "update lead.score += 1",
        "add_to_list": lambda: f"add to list {lists[0] if lists else ''}",
        "remove_from_list": lambda: f"remove from list {lists[0] if lists else ''}",
        "move_to_flow": lambda: f"move to flow {flows[0] if flows else ''}",
        "webhook": lambda: 'webhook "https://crm.example.com/hooks/flowbuilder"',
        "reach_goal": lambda: f"goal {goals[0] if goals else ''}",
        "suppress": lambda: "suppress",
        "end": lambda: "end",
    }
    return actions[kind]()


def insertion_point(text: str, path: str, flow_name: str) -> str | None:
    """Where a new step goes: after the last step, so no step falls through into it unless the
    last one would have left the flow there anyway."""
    doc = Doc(text, path)
    steps = doc.steps(doc.flow(flow_name))
    return doc.step_name(steps[-1]) if steps else None


def add_step_ops(
    text: str,
    path: str,
    flow_name: str,
    kind: str,
    ws: ir.Workspace | None,
    at: tuple[int, int] | None,
) -> tuple[str, list[EditOp]]:
    """The name of the new step and the edits that add it (and place it, when `at` is given)."""
    doc = Doc(text, path)
    flow = doc.flow(flow_name)
    names = [doc.step_name(s) for s in doc.steps(flow)]
    ends = [doc.step_name(s) for s in doc.steps(flow) if action_of(s).data == "end"]
    action = default_action(kind, ws, flow_name, ends or names)
    name = fresh_name(BASE_NAMES[kind], set(names))
    ops: list[EditOp] = [
        AddStep(
            flow=flow_name,
            name=name,
            action=action,
            after=insertion_point(text, path, flow_name),
        )
    ]
    if at is not None:
        ops.append(MoveStep(flow=flow_name, step=name, x=at[0], y=at[1]))
    return name, ops


def paste_ops(
    text: str,
    path: str,
    flow_name: str,
    steps: list[tuple[str, str]],
    at: tuple[int, int] | None,
) -> tuple[list[str], list[EditOp]]:
    """Edits that paste copied steps (name, action) under fresh names; edges and conditions among
    the pasted steps follow the new names, edges to other steps stay as they were."""
    if not steps:
        raise CanvasError("there is nothing to paste")
    doc = Doc(text, path)
    taken = {doc.step_name(s) for s in doc.steps(doc.flow(flow_name))}
    scratch = "flow __paste__ {\n" + "".join(f"  {n}: {a}\n" for n, a in steps) + "}\n"
    renames: list[EditOp] = []
    new_names: list[str] = []
    copied = {n for n, _ in steps}
    for name, _ in steps:
        new = fresh_name(f"{name}_copy", taken | copied | set(new_names))
        new_names.append(new)
    # Rename through temporary names first, so a new name never collides with an old one.
    for i, (name, _) in enumerate(steps):
        renames.append(RenameStep(flow="__paste__", old=name, new=f"__tmp_{i}"))
    for i, new in enumerate(new_names):
        renames.append(RenameStep(flow="__paste__", old=f"__tmp_{i}", new=new))
    try:
        renamed = apply_many(scratch, renames, revision(scratch), "<clipboard>").text
    except Exception as e:
        raise CanvasError(f"the copied steps cannot be pasted: {e}") from None
    pasted = Doc(renamed, "<clipboard>")
    ops: list[EditOp] = []
    after = insertion_point(text, path, flow_name)
    for i, step in enumerate(pasted.steps(pasted.flow("__paste__"))):
        action, _ = _step_text(step)
        ops.append(AddStep(flow=flow_name, name=new_names[i], action=action, after=after))
        after = new_names[i]
        if at is not None:
            ops.append(
                MoveStep(flow=flow_name, step=new_names[i], x=at[0] + 40 * i, y=at[1] + 40 * i)
            )
    return new_names, ops
