"""Edits of one step's exits and properties: Connect, SetProperty, AddArm and RemoveArm.

Each function returns the patches of one edit; every patch lies inside the edited statement.
"""

from __future__ import annotations

import re

from lark import Token, Tree

from dsl.edit_doc import (
    EDGE_SLOT,
    KIND_WORDS,
    Doc,
    EditError,
    Patch,
    action_of,
    conditional_arms,
    exits,
    listing,
    parse_port,
    tok,
    trees,
)
from dsl.edit_ops import AddArm, Connect, RemoveArm, SetProperty
from dsl.fmt_expr import Node

# The properties of each action, as SetProperty names them.
PROPERTIES = {
    "send": ["template", "subject", "preheader", "from"],
    "wait": ["duration"],
    "wait_business": ["days"],
    "wait_until_time": ["time"],
    "wait_until_date": ["date"],
    "wait_for": ["condition", "timeout"],
    "branch": ["arm:N.condition"],
    "split": ["path:N.percent", "holdout"],
    "update": ["value"],
    "add_to_list": ["list"],
    "remove_from_list": ["list"],
    "move_to_flow": ["flow"],
    "webhook": ["url"],
    "suppress": ["reason"],
    "end": ["reason"],
    "reach_goal": ["goal"],
}

_OPTION_RULES = {"subject": "subject", "preheader": "preheader", "from": "sender"}
_ARM_KEY = re.compile(r"(arm|path):(\d+)\.(condition|percent)")
_ELSE_PREFIX = re.compile(r"else[ \t\f]+")


def _kind(step: Tree[Token]) -> str:
    return str(action_of(step).data)


def _describe(doc: Doc, step: Tree[Token]) -> str:
    return f"step '{doc.step_name(step)}' is {KIND_WORDS[_kind(step)]}"


def _target(doc: Doc, flow: Tree[Token], target: str | None) -> str | None:
    if target is not None:
        doc.step(flow, target)
    return target


# ---------------------------------------------------------------------------- Connect


def connect(doc: Doc, op: Connect) -> list[Patch]:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.step)
    target = _target(doc, flow, op.target)
    return connect_step(doc, step, op.port, target)


def connect_step(doc: Doc, step: Tree[Token], port: str | None, target: str | None) -> list[Patch]:
    action = action_of(step)
    kind = str(action.data)
    c = action.children
    if port is None and kind == "wait_for" and len(exits(step)) == 1:
        port = "then"
    if port is None:
        if kind in EDGE_SLOT:
            return _set_edge(doc, action, c[EDGE_SLOT[kind]], target)
        ports = doc.ports(step)
        hint = f"connect one of its ports: {ports}" if exits(step) else "it has no exit to connect"
        raise doc.error("FB209", f"{_describe(doc, step)}; {hint}", step.children[0])
    if kind == "wait_for" and port in ("then", "timeout"):
        return _connect_wait(doc, step, port, target)
    parsed = parse_port(port)
    if kind == "branch" and (port == "else" or (parsed and parsed[0] == "arm")):
        if port == "else":
            return _connect_else(doc, step, target)
        arm = _nth(doc, step, conditional_arms(action), port)
        return [_required(doc, step, port, target, tok(arm.children[1]))]
    if kind == "split" and parsed and parsed[0] == "path":
        path = _nth(doc, step, _paths(action), port)
        return [_required(doc, step, port, target, tok(path.children[1]))]
    raise _unknown_port(doc, step, port)


def _unknown_port(doc: Doc, step: Tree[Token], port: str | None) -> EditError:
    return doc.error(
        "FB209",
        f"{_describe(doc, step)} and has no port '{port}'; its ports are: {doc.ports(step)}",
        step.children[0],
    )


def _nth(doc: Doc, step: Tree[Token], items: list[Tree[Token]], port: str) -> Tree[Token]:
    parsed = parse_port(port)
    if parsed is None or parsed[1] >= len(items):
        raise _unknown_port(doc, step, port)
    return items[parsed[1]]


def _required(doc: Doc, step: Tree[Token], port: str, target: str | None, token: Token) -> Patch:
    if target is None:
        raise doc.error(
            "FB209",
            f"port '{port}' of step '{doc.step_name(step)}' needs a target; "
            "to drop it, remove the arm (RemoveArm)",
            token,
        )
    return doc.token_patch(token, target)


def _paths(split: Tree[Token]) -> list[Tree[Token]]:
    return [a for a in trees(split.children) if a.data == "split_path"]


def _set_edge(doc: Doc, action: Tree[Token], edge: Node, target: str | None) -> list[Patch]:
    if isinstance(edge, Tree):
        if target is None:
            return [doc.remove_with_space(edge.meta.start_pos, edge.meta.end_pos)]
        return [doc.token_patch(tok(edge.children[0]), target)]
    if target is None:
        return []
    end = doc.extent(action)[1]
    return [Patch(end, end, f" -> {target}")]


def _connect_wait(doc: Doc, step: Tree[Token], port: str, target: str | None) -> list[Patch]:
    action = action_of(step)
    c = action.children
    tail = c[2]
    indent = doc.indent(step.meta.line)
    if port == "timeout" and target is not None and c[1] is None:
        raise doc.error(
            "FB212",
            f"step '{doc.step_name(step)}' waits without a timeout; "
            "set its `timeout` property (such as 7d) before connecting its timeout port",
            step.children[0],
        )
    if isinstance(tail, Tree) and tail.data == "wait_arms":
        arms = trees(tail.children)
        want = "then_arm" if port == "then" else "timeout_arm"
        found = [a for a in arms if a.data == want]
        if found and target is not None:
            return [doc.token_patch(tok(found[0].children[0]), target)]
        if found:
            return _remove_entry(doc, tail, arms, found[0])
        if target is None:
            return []
        return [doc.add_before_close(tail, arms, step.meta.line, f"{port} -> {target}")]
    if isinstance(tail, Tree):  # `-> next` is the `then` exit
        if port == "then":
            return _set_edge(doc, action, tail, target)
        if target is None:
            return []
        then = tok(tail.children[0])
        block = _arms_block(doc, indent, [f"then -> {then}", f"timeout -> {target}"])
        return [Patch(tail.meta.start_pos, tail.meta.end_pos, block.lstrip())]
    if target is None:
        return []
    if port == "then":
        return _set_edge(doc, action, None, target)
    end = doc.extent(action)[1]
    return [Patch(end, end, _arms_block(doc, indent, [f"timeout -> {target}"]))]


def _arms_block(doc: Doc, indent: str, arms: list[str]) -> str:
    inner = "".join(f"{indent}  {arm}{doc.nl}" for arm in arms)
    return f" {{{doc.nl}{inner}{indent}}}"


def _remove_entry(
    doc: Doc, block: Tree[Token], entries: list[Tree[Token]], entry: Tree[Token]
) -> list[Patch]:
    """Remove one entry's line; a `wait for` block left empty (and without comments) goes too."""
    start, end = block.meta.start_pos, block.meta.end_pos
    if block.data == "wait_arms" and len(entries) == 1 and not doc.has_comments(start, end):
        return [doc.remove_with_space(start, end)]
    return [doc.lines(entry.meta.line, entry.meta.end_line)]


def _connect_else(doc: Doc, step: Tree[Token], target: str | None) -> list[Patch]:
    action = action_of(step)
    arms = trees(action.children)
    elses = [a for a in arms if a.data == "else_arm"]
    if elses and target is not None:
        return [doc.token_patch(tok(elses[0].children[0]), target)]
    if elses:
        return [doc.lines(elses[0].meta.line, elses[0].meta.line)]
    if target is None:
        return []
    return [doc.add_before_close(action, arms, step.meta.line, f"else -> {target}")]


# ---------------------------------------------------------------------------- arms


def add_arm(doc: Doc, op: AddArm) -> list[Patch]:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.step)
    target = _target(doc, flow, op.target)
    action = action_of(step)
    if action.data != "branch":
        raise doc.error(
            "FB209",
            f"{_describe(doc, step)}; only a branch takes new arms",
            step.children[0],
        )
    entries = trees(action.children)
    if op.condition is None:
        if any(a.data == "else_arm" for a in entries):
            raise doc.error(
                "FB215",
                f"branch '{op.step}' already has an else arm; connect its 'else' port instead",
                step.children[0],
            )
        if op.index is not None:
            raise doc.error(
                "FB209", "the else arm always comes last; leave its index empty", step.children[0]
            )
        return [doc.add_before_close(action, entries, step.meta.line, f"else -> {target}")]
    condition = doc.expression(op.condition, "condition", step.children[0])
    arms = conditional_arms(action)
    index = len(arms) if op.index is None else op.index
    if not 0 <= index <= len(arms):
        raise doc.error(
            "FB209",
            f"branch '{op.step}' has {len(arms)} conditional arm(s); "
            f"an arm can go at index 0 to {len(arms)}",
            step.children[0],
        )
    word = "if" if index == 0 else "else if"
    line = f"{word} {condition} -> {target}"
    indent = doc.block_indent(action, entries, step.meta.line)
    if index < len(arms):
        patches = [doc.insert_line(arms[index].meta.line, indent, line)]
        if index == 0 and arms[0].data == "if_arm":
            start = arms[0].meta.start_pos
            patches.append(Patch(start, start, "else "))
        return patches
    if arms:
        return [doc.insert_line(arms[-1].meta.end_line + 1, indent, line)]
    elses = [a for a in entries if a.data == "else_arm"]
    if elses:
        return [doc.insert_line(elses[0].meta.line, indent, line)]
    return [doc.add_before_close(action, entries, step.meta.line, line)]


def remove_arm(doc: Doc, op: RemoveArm) -> list[Patch]:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.step)
    action = action_of(step)
    kind = str(action.data)
    parsed = parse_port(op.port)
    entries = trees(action.children)
    if kind == "wait_for" and op.port in ("then", "timeout"):
        return _connect_wait(doc, step, op.port, None)
    if kind == "branch" and op.port == "else":
        return _connect_else(doc, step, None)
    if kind == "branch" and parsed and parsed[0] == "arm":
        arms = conditional_arms(action)
        arm = _nth(doc, step, arms, op.port)
        patches = [doc.lines(arm.meta.line, arm.meta.end_line)]
        if parsed[1] == 0 and arm.data == "if_arm" and len(arms) > 1:
            after = arms[1]
            if after.data == "else_if_arm":
                start = after.meta.start_pos
                match = _ELSE_PREFIX.match(doc.text, start)
                assert match is not None
                patches.append(Patch(start, match.end(), ""))
        return patches
    if kind == "split" and op.port == "holdout":
        holdouts = [a for a in entries if a.data == "holdout"]
        if not holdouts:
            return []
        return [doc.lines(holdouts[0].meta.line, holdouts[0].meta.line)]
    if kind == "split" and parsed and parsed[0] == "path":
        path = _nth(doc, step, _paths(action), op.port)
        return [doc.lines(path.meta.line, path.meta.line)]
    raise _unknown_port(doc, step, op.port)


# ---------------------------------------------------------------------------- SetProperty


def set_property(doc: Doc, op: SetProperty) -> list[Patch]:
    flow = doc.flow(op.flow)
    step = doc.step(flow, op.step)
    action = action_of(step)
    kind = str(action.data)
    c = action.children
    key, value = op.key, op.value
    what = f"`{key}` of step '{op.step}'"
    single: dict[tuple[str, str], tuple[int, str]] = {
        ("send", "template"): (0, "NAME"),
        ("wait", "duration"): (0, "DURATION"),
        ("wait_business", "days"): (0, "NUMBER"),
        ("wait_until_time", "time"): (0, "TIME"),
        ("add_to_list", "list"): (0, "NAME"),
        ("remove_from_list", "list"): (0, "NAME"),
        ("move_to_flow", "flow"): (0, "NAME"),
        ("webhook", "url"): (0, "STRING"),
        ("reach_goal", "goal"): (0, "NAME"),
    }
    expressions = {
        ("wait_until_date", "date"): 0,
        ("wait_for", "condition"): 0,
        ("update", "value"): 2,
    }
    if (kind, key) in single:
        index, terminal = single[(kind, key)]
        token = tok(c[index])
        return [doc.token_patch(token, doc.value(terminal, value, what, token))]
    if (kind, key) in expressions:
        node = c[expressions[(kind, key)]]
        assert isinstance(node, Tree)
        return [doc.expr_patch(node, doc.expression(value, what, node))]
    if kind == "send" and key in _OPTION_RULES:
        return _send_option(doc, action, _OPTION_RULES[key], key, value, what)
    if kind == "wait_for" and key == "timeout":
        return _timeout(doc, step, value, what)
    if kind in ("end", "suppress") and key == "reason":
        return _optional_string(doc, action, c[0], value, what)
    arm_key = _ARM_KEY.fullmatch(key)
    if kind == "branch" and arm_key and arm_key.group(3) == "condition":
        arm = _nth(doc, step, conditional_arms(action), f"arm:{arm_key.group(2)}")
        condition = arm.children[0]
        assert isinstance(condition, Tree)
        return [doc.expr_patch(condition, doc.expression(value, what, condition))]
    if kind == "split" and arm_key and arm_key.group(3) == "percent":
        path = _nth(doc, step, _paths(action), f"path:{arm_key.group(2)}")
        token = tok(path.children[0])
        return [doc.token_patch(token, doc.value("PERCENT", value, what, token))]
    if kind == "split" and key == "holdout":
        return _holdout(doc, step, value, what)
    raise doc.error(
        "FB209",
        f"{_describe(doc, step)} and has no property '{key}'; "
        f"its properties are: {listing(PROPERTIES[kind])}",
        step.children[0],
    )


def _send_option(
    doc: Doc, action: Tree[Token], rule: str, word: str, value: str, what: str
) -> list[Patch]:
    c = action.children
    options = trees(c[1:-2])
    found = [o for o in options if o.data == rule]
    if not value.strip():
        if not found:
            return []
        return [doc.remove_with_space(found[0].meta.start_pos, found[0].meta.end_pos)]
    if found:
        token = tok(found[0].children[0])
        return [doc.token_patch(token, doc.value("STRING", value, what, token))]
    text = doc.value("STRING", value, what, c[0])
    at = options[-1].meta.end_pos if options else tok(c[0]).end_pos
    assert at is not None
    return [Patch(at, at, f" {word} {text}")]


def _timeout(doc: Doc, step: Tree[Token], value: str, what: str) -> list[Patch]:
    c = action_of(step).children
    condition = c[0]
    assert isinstance(condition, Tree)
    after_condition = doc.extent(condition)[1]
    if not value.strip():
        if c[1] is None:
            return []
        if any(e.port == "timeout" and e.target is not None for e in exits(step)):
            raise doc.error(
                "FB212",
                f"step '{doc.step_name(step)}' has a `timeout` arm; "
                "remove it (RemoveArm, port 'timeout') before removing the timeout",
                step.children[0],
            )
        end = tok(c[1]).end_pos
        assert end is not None
        return [Patch(after_condition, end, "")]
    if c[1] is not None:
        token = tok(c[1])
        return [doc.token_patch(token, doc.value("DURATION", value, what, token))]
    duration = doc.value("DURATION", value, what, step.children[0])
    return [Patch(after_condition, after_condition, f" up to {duration}")]


def _optional_string(
    doc: Doc, action: Tree[Token], current: Node, value: str, what: str
) -> list[Patch]:
    if isinstance(current, Token):
        if not value.strip():
            assert current.start_pos is not None and current.end_pos is not None
            return [doc.remove_with_space(current.start_pos, current.end_pos)]
        return [doc.token_patch(current, doc.value("STRING", value, what, current))]
    if not value.strip():
        return []
    text = doc.value("STRING", value, what, action)
    end = action.meta.end_pos
    return [Patch(end, end, f" {text}")]


def _holdout(doc: Doc, step: Tree[Token], value: str, what: str) -> list[Patch]:
    action = action_of(step)
    entries = trees(action.children)
    holdouts = [a for a in entries if a.data == "holdout"]
    if not value.strip():
        if not holdouts:
            return []
        return [doc.lines(holdouts[0].meta.line, holdouts[0].meta.line)]
    if holdouts:
        token = tok(holdouts[0].children[0])
        return [doc.token_patch(token, doc.value("PERCENT", value, what, token))]
    percent = doc.value("PERCENT", value, what, step.children[0])
    return [doc.add_before_close(action, entries, step.meta.line, f"holdout {percent}")]
