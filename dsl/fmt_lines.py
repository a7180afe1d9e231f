"""Statements back to text: one function per grammar rule, each giving its line in canonical form.

`lines.item(node)` turns a declaration, a flow item or a block entry into an `Item`: the text of its
first line and, for a block, its entries and the text of its closing line. The layout of items
(indentation, blank lines, comments) is `dsl.fmt`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lark import Token, Tree

from dsl.fmt_expr import Node, expr_text, token_text


@dataclass
class Item:
    """One printed line, or a block: `head {`, its entries, then `close` (`}` or `} -> next`)."""

    node: Tree[Token]
    head: str
    line: int
    end_line: int
    entries: list[Item] | None = None
    close: str = "}"


def _opt(prefix: str, node: Node) -> str:
    return "" if node is None else f"{prefix}{token_text(node)}"


def _opt_expr(prefix: str, node: Node) -> str:
    return "" if node is None else f"{prefix}{expr_text(node)}"


def _edge(node: Node) -> str:
    if isinstance(node, Tree) and node.data == "edge":
        return f" -> {token_text(node.children[0])}"
    return ""


def _titled(word: str, c: list[Node]) -> str:
    return f"{word} {token_text(c[0])}{_opt(' ', c[1])}"


def weekdays_text(node: Node) -> str:
    assert isinstance(node, Tree)
    ranges = []
    for day_range in node.children:
        assert isinstance(day_range, Tree)
        first, last = day_range.children
        ranges.append(token_text(first) + _opt("-", last))
    return ", ".join(ranges)


def _membership(node: Node) -> str:
    assert isinstance(node, Tree)
    return f"{token_text(node.children[0])} {token_text(node.children[1])}"


def _number(node: Node) -> str:
    assert isinstance(node, Tree)
    sign, value = node.children
    return ("-" if sign is not None else "") + token_text(value)


def _sender(c: list[Node]) -> str:
    if len(c) == 2:
        return f"sender {token_text(c[0])} {token_text(c[1])}"
    return f"from {token_text(c[0])}"


def _field(c: list[Node]) -> str:
    choices = ""
    if isinstance(c[2], Tree):
        choices = " [" + ", ".join(token_text(x) for x in c[2].children) + "]"
    required = " required" if c[3] is not None else ""
    return f"field {token_text(c[0])}: {token_text(c[1])}{choices}{required}{_opt(' ', c[4])}"


def _signed(c: list[Node]) -> str:
    return f"{token_text(c[0])} {token_text(c[1])}{token_text(c[2])}"


def _send_options(options: list[Node]) -> str:
    return "".join(" " + _line(o) for o in options if isinstance(o, Tree))


# The line of each single-line rule, from its children.
_LINES: dict[str, Callable[[list[Node]], str]] = {
    # policies
    "send_window": lambda c: (
        f"send window {token_text(c[0])}-{token_text(c[1])}"
        + ("" if c[2] is None else " " + weekdays_text(c[2]))
    ),
    "quiet_hours": lambda c: f"quiet hours {token_text(c[0])}-{token_text(c[1])}",
    "business_days": lambda c: "business days" + _opt(" ", c[0]),
    "frequency_cap": lambda c: f"frequency cap {token_text(c[0])} per {token_text(c[1])}",
    "timezone": lambda c: f"timezone {token_text(c[0])}",
    # workspace, settings and other declarations
    "sender": _sender,
    "postal_address": lambda c: f"address {token_text(c[0])}",
    "contact": lambda c: f"contact {token_text(c[0])}",
    "region": lambda c: f"region {token_text(c[0])}",
    "setting": lambda c: f"{token_text(c[0])} = {expr_text(c[1])}",
    "attribute": lambda c: (
        f"attribute {token_text(c[0])}: {token_text(c[1])}"
        + (" required" if c[2] is not None else "")
        + _opt(" ", c[3])
    ),
    "segment": lambda c: _titled("segment", c) + f" where {expr_text(c[2])}",
    "list_decl": lambda c: _titled("list", c),
    "list_add_rule": lambda c: f"add when {expr_text(c[0])}",
    "list_remove_rule": lambda c: f"remove when {expr_text(c[0])}",
    "stage": lambda c: _titled("stage", c) + _opt_expr(" when ", c[2]),
    "score_when": lambda c: _signed(c) + f" when {expr_text(c[3])}",
    "score_per": lambda c: _signed(c) + f" per {token_text(c[3])}" + _opt(" within ", c[4]),
    "score_decay": lambda c: f"decay {token_text(c[0])} every {token_text(c[1])}",
    "form_field": _field,
    "form_consent": lambda c: f"consent {token_text(c[0])}",
    "form_route": lambda c: f"route when {expr_text(c[0])} -> list {token_text(c[1])}",
    "subject": lambda c: f"subject {token_text(c[0])}",
    "preheader": lambda c: f"preheader {token_text(c[0])}",
    "template_html": lambda c: f"html {token_text(c[0])}",
    "template_text": lambda c: f"text {token_text(c[0])}",
    "template_topic": lambda c: f"topic {token_text(c[0])}",
    "template_class": lambda c: f"class {token_text(c[0])}",
    # flow policy
    "trigger_event": lambda c: f"trigger event {token_text(c[0])}" + _opt_expr(" where ", c[1]),
    "trigger_entered": lambda c: f"trigger entered {_membership(c[0])}",
    "trigger_form": lambda c: f"trigger form {token_text(c[0])}" + _opt_expr(" where ", c[1]),
    "trigger_date": lambda c: f"trigger date {expr_text(c[0])}" + _opt(" at ", c[1]),
    "trigger_anniversary": lambda c: f"trigger anniversary {expr_text(c[0])}" + _opt(" at ", c[1]),
    "trigger_inactive": lambda c: f"trigger inactive {token_text(c[0])}",
    "trigger_schedule": lambda c: (
        f"trigger schedule {token_text(c[0])}"
        + ("" if c[1] is None else " for " + _membership(c[1]))
    ),
    "entry": lambda c: " ".join(token_text(x) for x in c),
    "exit_rule": lambda c: (
        f"exit when {expr_text(c[0])}" + (" for account" if c[1] is not None else "")
    ),
    "goal": lambda c: f"goal {token_text(c[0])} when {expr_text(c[1])}" + _opt(" within ", c[2]),
    "kind": lambda c: f"kind {token_text(c[0])}",
    # actions (their block, if any, is added by `item`)
    "send": lambda c: f"send {token_text(c[0])}" + _send_options(c[1:-2]) + _edge(c[-1]),
    "wait": lambda c: f"wait {token_text(c[0])}" + _edge(c[1]),
    "wait_business": lambda c: f"wait {token_text(c[0])} business days" + _edge(c[1]),
    "wait_until_time": lambda c: (
        f"wait until {token_text(c[0])}"
        + ("" if c[1] is None else " on " + weekdays_text(c[1]))
        + _edge(c[2])
    ),
    "wait_until_date": lambda c: f"wait until {expr_text(c[0])}" + _edge(c[1]),
    "wait_for": lambda c: f"wait for {expr_text(c[0])}" + _opt(" up to ", c[1]) + _edge(c[2]),
    "branch": lambda c: "branch",
    "split": lambda c: "split",
    "update": lambda c: (
        f"update {expr_text(c[0])} {token_text(c[1])} {expr_text(c[2])}" + _edge(c[3])
    ),
    "add_to_list": lambda c: f"add to list {token_text(c[0])}" + _edge(c[1]),
    "remove_from_list": lambda c: f"remove from list {token_text(c[0])}" + _edge(c[1]),
    "move_to_flow": lambda c: f"move to flow {token_text(c[0])}",
    "webhook": lambda c: f"webhook {token_text(c[0])}" + _edge(c[1]),
    "reach_goal": lambda c: f"goal {token_text(c[0])}" + _edge(c[1]),
    "suppress": lambda c: "suppress" + _opt(" ", c[0]) + _edge(c[1]),
    "end": lambda c: "end" + _opt(" ", c[0]),
    # block entries
    "variant": lambda c: f"variant {token_text(c[0])} {token_text(c[1])}" + _send_options(c[2:]),
    "variant_template": lambda c: f"template {token_text(c[0])}",
    "then_arm": lambda c: f"then -> {token_text(c[0])}",
    "timeout_arm": lambda c: f"timeout -> {token_text(c[0])}",
    "if_arm": lambda c: f"if {expr_text(c[0])} -> {token_text(c[1])}",
    "else_if_arm": lambda c: f"else if {expr_text(c[0])} -> {token_text(c[1])}",
    "else_arm": lambda c: f"else -> {token_text(c[0])}",
    "split_path": lambda c: f"{token_text(c[0])} -> {token_text(c[1])}",
    "holdout": lambda c: f"holdout {token_text(c[0])}",
    "position": lambda c: f"{token_text(c[0])}: {_number(c[1])}, {_number(c[2])}",
    "mapping": lambda c: f"{token_text(c[0])} -> {token_text(c[1])}",
}

# Declarations that are blocks: their head, and where their entries start among the children.
_BLOCKS: dict[str, tuple[Callable[[list[Node]], str], int]] = {
    "flow": (lambda c: _titled("flow", c), 2),
    "workspace": (lambda c: _titled("workspace", c), 2),
    "form": (lambda c: _titled("form", c), 2),
    "template": (lambda c: _titled("template", c), 2),
    "settings": (lambda c: "settings", 0),
    "stages": (lambda c: "stages", 0),
    "scoring": (lambda c: "scoring", 0),
    "layout": (lambda c: "layout", 0),
    "migrate": (lambda c: "migrate", 0),
}


def is_item(data: str) -> bool:
    """Whether a rule is printed as lines of its own: a declaration, a statement, an entry."""
    return data in _LINES or data in _BLOCKS or data == "step"


def _line(node: Tree[Token]) -> str:
    # Placeholders (`None`) stand among the children, which Lark's types do not say.
    return _LINES[node.data](node.children)  # type: ignore[arg-type]


def _entries(nodes: Sequence[Node], skip: Callable[[Tree[Token]], bool]) -> list[Item]:
    return [item(n, skip) for n in nodes if isinstance(n, Tree) and not skip(n)]


def item(node: Tree[Token], skip: Callable[[Tree[Token]], bool] = lambda n: False) -> Item:
    """The printed form of a declaration, flow item or block entry (entries `skip` drops left out)."""
    data = str(node.data)
    if data == "step":
        return _step(node, skip)
    c: list[Node] = node.children  # type: ignore[assignment]
    meta = node.meta
    line, end_line = meta.line, meta.end_line
    if data in _BLOCKS:
        head, start = _BLOCKS[data]
        return Item(node, head(c), line, end_line, _entries(c[start:], skip))
    if data == "list_decl" and isinstance(c[2], Tree):
        rules = c[2]
        return Item(node, _line(node), line, rules.meta.end_line, _entries(rules.children, skip))
    return Item(node, _line(node), line, line)


def _step(node: Tree[Token], skip: Callable[[Tree[Token]], bool]) -> Item:
    name, action = node.children
    assert isinstance(action, Tree)
    kind = action.data
    c = action.children
    head = f"{name}: {_LINES[kind](c)}"  # type: ignore[arg-type]
    line = node.meta.line
    block: Tree[Token] | None = None
    close = "}"
    if kind == "branch" or kind == "split":
        block = action
    elif kind == "send" and isinstance(c[-2], Tree):
        block, close = c[-2], "}" + _edge(c[-1])
        head = head.removesuffix(_edge(c[-1]))
    elif kind == "wait_for" and isinstance(c[2], Tree) and c[2].data == "wait_arms":
        block = c[2]
    if block is None:
        return Item(node, head, line, line)
    return Item(node, head, line, block.meta.end_line, _entries(block.children, skip), close)
