"""Semantic edits of .flow text, as the canvas and the language server make them.

An edit names what to change (a flow, a step, a port), never where; `apply` finds it through the
parse tree and changes only the bytes of the statement concerned, so comments, blank lines and
everything else stay as they were. An edit made against an older revision is refused.

>>> text = 'flow welcome {\\n  hello: send welcome_email  # first touch\\n  done: end\\n}\\n'
>>> result = apply(text, RenameStep(flow="welcome", old="hello", new="greet"), revision(text))
>>> print(result.text, end="")
flow welcome {
  greet: send welcome_email  # first touch
  done: end
}
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from lark import Token, Tree

from dsl.diagnostics import StaleRevisionError
from dsl.edit_doc import (
    KIND_WORDS,
    Doc,
    EditError,
    Patch,
    action_of,
    exits,
    listing,
    step_refs_in_calls,
    target_tokens,
    tok,
    trees,
)
from dsl.edit_ops import (
    AddArm,
    AddStep,
    Connect,
    DeleteStep,
    EditOp,
    EditResult,
    MoveStep,
    RemoveArm,
    RenameStep,
    SetProperty,
    parse_op,
)
from dsl.edit_ports import add_arm, connect, connect_step, remove_arm, set_property
from dsl.fmt import format_text
from dsl.fmt_expr import Node
from dsl.parse import parse_tree

__all__ = [
    "AddArm",
    "AddStep",
    "Connect",
    "DeleteStep",
    "EditError",
    "EditOp",
    "EditResult",
    "MoveStep",
    "RemoveArm",
    "RenameStep",
    "SetProperty",
    "apply",
    "apply_many",
    "parse_op",
    "revision",
]


def revision(text: str) -> str:
    """The revision of a text: the sha256 of its UTF-8 bytes, in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def apply(text: str, op: EditOp, base_revision: str, path: str = "<string>") -> EditResult:
    """Apply one edit to the text of revision `base_revision`.

    Raises StaleRevisionError when the text has changed since, EditError when the edit names
    something that does not exist or would break the text, FlowSyntaxError when the text itself
    does not parse.
    """
    return apply_many(text, [op], base_revision, path)


def apply_many(
    text: str, ops: Sequence[EditOp], base_revision: str, path: str = "<string>"
) -> EditResult:
    """Apply edits in order, all or none; the revision is checked once, before the first."""
    current = revision(text)
    if current != base_revision:
        raise StaleRevisionError(expected=base_revision, actual=current)
    for number, op in enumerate(ops, start=1):
        try:
            text = _apply_one(text, op, path)
        except EditError as error:
            if len(ops) == 1:
                raise
            message = f"edit {number} of {len(ops)} ({op.op}): {error.diagnostic.message}"
            raise EditError(dataclasses.replace(error.diagnostic, message=message)) from error
    return EditResult(text=text, revision=revision(text))


def _apply_one(text: str, op: EditOp, path: str) -> str:
    doc = Doc(text, path)
    if isinstance(op, DeleteStep):
        return _delete_step(doc, op)
    handler: Callable[[Doc, Any], list[Patch]] = _HANDLERS[type(op)]
    patches = handler(doc, op)
    return doc.patched(patches) if patches else text


# ---------------------------------------------------------------------------- AddStep


def _add_step(doc: Doc, op: AddStep) -> list[Patch]:
    flow = doc.flow(op.flow)
    doc.new_name(flow, op.name, flow.children[0])
    lines = _step_lines(doc, op, flow.children[0])
    steps = doc.steps(flow)
    items = trees(flow.children[2:])
    if op.after is not None:
        after = doc.step(flow, op.after)
        at, indent = after.meta.end_line + 1, doc.indent(after.meta.line)
    elif steps:
        at, indent = _above_comments(doc, steps[0].meta.line), doc.indent(steps[0].meta.line)
    else:
        tail = [i for i in items if i.data in ("layout", "migrate")]
        at = tail[0].meta.line if tail else flow.meta.end_line
        indent = doc.indent(items[0].meta.line) if items else doc.indent(flow.meta.line) + "  "
    offset = doc.line_start(at)
    return [Patch(offset, offset, "".join((indent + x if x else x) + doc.nl for x in lines))]


def _step_lines(doc: Doc, op: AddStep, at: Node) -> list[str]:
    """The canonical lines of `name: action`, unindented."""
    action = op.action.replace("\r\n", "\n").strip()
    snippet = f"flow __edit__ {{\n{op.name}: {action}\n}}\n"
    parsed = parse_tree(snippet, doc.path)
    if parsed.tree is None:
        problem = parsed.diagnostics[0].message if parsed.diagnostics else "it does not parse"
        raise doc.error("FB100", f"the action '{op.action}' is not valid: {problem}", at)
    flows = trees(parsed.tree.children)
    items = trees(flows[0].children[2:]) if len(flows) == 1 else []
    if len(items) != 1 or items[0].data != "step":
        raise doc.error("FB100", f"the action '{op.action}' is not one step action", at)
    return [line[2:] for line in format_text(snippet, doc.path).split("\n")[1:-2]]


def _above_comments(doc: Doc, line: int) -> int:
    """The first line of the own-line comments directly above `line` (they belong to it)."""
    own = {c.line for c in doc.comments if not c.trailing}
    while line - 1 in own:
        line -= 1
    return line


# ---------------------------------------------------------------------------- RenameStep


def _rename_step(doc: Doc, op: RenameStep) -> list[Patch]:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.old)
    if op.new == op.old:
        return []
    doc.new_name(flow, op.new, step.children[0])
    tokens = [tok(step.children[0])]
    for other in doc.steps(flow):
        tokens.extend(t for t in target_tokens(other) if t == op.old)
    tokens.extend(t for t in step_refs_in_calls(flow) if t == op.old)
    for item in trees(flow.children):
        if item.data == "layout":
            tokens.extend(
                tok(p.children[0]) for p in trees(item.children) if p.children[0] == op.old
            )
        elif item.data == "migrate":
            tokens.extend(
                m.children[1]
                for m in trees(item.children)
                if isinstance(m.children[1], Token) and m.children[1] == op.old
            )
    return [doc.token_patch(tok(t), op.new) for t in tokens]


# ---------------------------------------------------------------------------- MoveStep


def _move_step(doc: Doc, op: MoveStep) -> list[Patch]:
    flow = doc.flow(op.flow)
    doc.step(flow, op.step)
    layouts = [i for i in trees(flow.children) if i.data == "layout"]
    for layout in layouts:
        for position in trees(layout.children):
            if position.children[0] == op.step:
                x, y = position.children[1:]
                assert isinstance(x, Tree) and isinstance(y, Tree)
                return [Patch(x.meta.start_pos, y.meta.end_pos, f"{op.x}, {op.y}")]
    line = f"{op.step}: {op.x}, {op.y}"
    if layouts:
        layout = layouts[-1]
        return [doc.add_before_close(layout, trees(layout.children), layout.meta.line, line)]
    items = trees(flow.children[2:])
    indent = doc.indent(items[0].meta.line) if items else doc.indent(flow.meta.line) + "  "
    close = flow.meta.end_line
    above = doc.text[doc.line_start(close - 1) : doc.line_start(close)] if items else ""
    blank = doc.nl if above.strip() else ""
    block = f"{blank}{indent}layout {{{doc.nl}{indent}  {line}{doc.nl}{indent}}}{doc.nl}"
    offset = doc.line_start(close)
    return [Patch(offset, offset, block)]


# ---------------------------------------------------------------------------- DeleteStep


def _delete_step(doc: Doc, op: DeleteStep) -> str:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.step)
    name = op.step
    following = doc.following(flow, step)
    successor, why = _successor(doc, step, following)
    others = [s for s in doc.steps(flow) if s is not step]
    incoming = [
        f"{doc.step_name(s)} (-> {name})" for s in others for t in target_tokens(s) if t == name
    ]
    migrations = [m for m in _migrations(flow) if m.children[1] == name]
    incoming += [f"migrate ({m.children[0]} -> {name})" for m in migrations]
    if incoming and successor is None:
        raise doc.error(
            "FB200",
            f"step '{name}' cannot be deleted: it is the target of {listing(incoming)}, and {why}; "
            "connect them elsewhere first",
            step.children[0],
        )
    inside = range(step.meta.start_pos, step.meta.end_pos)
    mentions = [t for t in step_refs_in_calls(flow) if t == name and t.start_pos not in inside]
    if mentions:
        users = [s for s in others if any(t == name for t in step_refs_in_calls(s))]
        where = [f"step '{doc.step_name(s)}'" for s in users]
        if len(mentions) > sum(1 for s in users for t in step_refs_in_calls(s) if t == name):
            where.append("the flow's policies")
        raise doc.error(
            "FB200",
            f"step '{name}' cannot be deleted: conditions of {listing(where)} refer to it; "
            "change them first",
            mentions[0],
        )
    text = doc.bom + doc.text
    if successor is not None and successor != following:
        # The step before falls through into the deleted one: send it to the successor instead.
        for before in others:
            if doc.following(flow, before) != name:
                continue
            for exit_ in exits(before):
                if exit_.target is None:
                    current = Doc(text, doc.path)
                    target = current.step(current.flow(op.flow), doc.step_name(before))
                    patches = connect_step(current, target, exit_.port, successor)
                    text = current.patched(patches)
    doc = Doc(text, doc.path)
    flow = doc.flow(op.flow)
    step = doc.step(flow, name)
    patches = [doc.lines(step.meta.line, step.meta.end_line)]
    if successor is not None:
        stale = [t for s in doc.steps(flow) if s is not step for t in target_tokens(s)]
        stale += [t for m in _migrations(flow) if isinstance(t := m.children[1], Token)]
        patches += [doc.token_patch(t, successor) for t in stale if t == name]
    for item in trees(flow.children):
        if item.data == "layout":
            patches += [
                doc.lines(p.meta.line, p.meta.line)
                for p in trees(item.children)
                if p.children[0] == name
            ]
    return doc.patched(patches)


def _migrations(flow: Tree[Token]) -> list[Tree[Token]]:
    return [
        m for item in trees(flow.children) if item.data == "migrate" for m in trees(item.children)
    ]


def _successor(doc: Doc, step: Tree[Token], following: str | None) -> tuple[str | None, str]:
    """The one step every exit of `step` leads to, or None and why there is none."""
    name = doc.step_name(step)
    leads = {e.target if e.target is not None else following for e in exits(step)}
    if not leads:
        return None, f"it is {KIND_WORDS[str(action_of(step).data)]} step, which has no exit"
    if len(leads) > 1:
        return None, f"it has several exits ({listing(sorted(t or 'the end' for t in leads))})"
    (only,) = leads
    if only is None:
        return None, "it is the last step of the flow"
    if only == name:
        return None, "it only leads to itself"
    return only, ""


_HANDLERS: dict[type, Callable[[Doc, Any], list[Patch]]] = {
    AddStep: _add_step,
    Connect: connect,
    SetProperty: set_property,
    RenameStep: _rename_step,
    MoveStep: _move_step,
    AddArm: add_arm,
    RemoveArm: remove_arm,
}
