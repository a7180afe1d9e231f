"""A text being edited: its parse tree, where each flow, step and exit is, and text patches.

Every edit is a list of `Patch`es located through the tree's positions; `Doc.patched` applies them
and re-parses, so an edit never leaves a text that does not parse.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from lark import Token, Tree

from dsl import rules
from dsl.diagnostics import Diagnostic, FlowError, FlowSyntaxError, Span
from dsl.fmt import format_node
from dsl.fmt_expr import Node
from dsl.functions import FUNCTIONS
from dsl.parse import keywords, parse_tree, parser

# The child index of the optional `-> target` of each one-exit action.
EDGE_SLOT = {
    "send": -1,
    "wait": 1,
    "wait_business": 1,
    "wait_until_time": 2,
    "wait_until_date": 1,
    "update": 3,
    "add_to_list": 1,
    "remove_from_list": 1,
    "webhook": 1,
    "reach_goal": 1,
    "suppress": 1,
}

# How a person reads each action's kind in a message.
KIND_WORDS = {
    "send": "a `send`",
    "wait": "a `wait`",
    "wait_business": "a `wait … business days`",
    "wait_until_time": "a `wait until` a time",
    "wait_until_date": "a `wait until` a date",
    "wait_for": "a `wait for`",
    "branch": "a `branch`",
    "split": "a `split`",
    "update": "an `update`",
    "add_to_list": "an `add to list`",
    "remove_from_list": "a `remove from list`",
    "move_to_flow": "a `move to flow`",
    "webhook": "a `webhook`",
    "reach_goal": "a `goal`",
    "suppress": "a `suppress`",
    "end": "an `end`",
}

_PORT = re.compile(r"(arm|path):(\d+)")


class EditError(FlowError):
    """An edit that cannot be applied; `diagnostic` says what and where."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class Patch:
    """Replace `text[start:end]` with `new`."""

    start: int
    end: int
    new: str


@dataclass(frozen=True)
class Exit:
    """One exit of a step: its port, its explicit target (None: falls through), where it is written."""

    port: str | None
    target: str | None
    token: Token | None
    required: bool


def parse_port(port: str) -> tuple[str, int] | None:
    """`arm:2` gives ("arm", 2); other ports give None."""
    match = _PORT.fullmatch(port)
    return (match.group(1), int(match.group(2))) if match else None


def listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def action_of(step: Tree[Token]) -> Tree[Token]:
    action = step.children[1]
    assert isinstance(action, Tree)
    return action


def trees(nodes: Sequence[Node]) -> list[Tree[Token]]:
    return [n for n in nodes if isinstance(n, Tree)]


def tok(node: Node) -> Token:
    assert isinstance(node, Token), node
    return node


def conditional_arms(branch: Tree[Token]) -> list[Tree[Token]]:
    return [a for a in trees(branch.children) if a.data in ("if_arm", "else_if_arm")]


def exits(step: Tree[Token]) -> list[Exit]:
    """Every exit of a step, in port order."""
    action = action_of(step)
    kind = str(action.data)
    c = action.children
    if kind in EDGE_SLOT:
        edge = c[EDGE_SLOT[kind]]
        token = tok(edge.children[0]) if isinstance(edge, Tree) else None
        return [Exit(None, _str(token), token, False)]
    if kind == "wait_for":
        then: Token | None = None
        timeout: Token | None = None
        if isinstance(c[2], Tree) and c[2].data == "edge":
            then = tok(c[2].children[0])
        elif isinstance(c[2], Tree):
            for arm in trees(c[2].children):
                if arm.data == "then_arm":
                    then = then or tok(arm.children[0])
                else:
                    timeout = timeout or tok(arm.children[0])
        out = [Exit("then", _str(then), then, False)]
        if c[1] is not None or timeout is not None:
            out.append(Exit("timeout", _str(timeout), timeout, False))
        return out
    if kind == "branch":
        out = [
            Exit(f"arm:{i}", str(arm.children[1]), tok(arm.children[1]), True)
            for i, arm in enumerate(conditional_arms(action))
        ]
        otherwise = [tok(a.children[0]) for a in trees(c) if a.data == "else_arm"]
        token = otherwise[0] if otherwise else None
        return [*out, Exit("else", _str(token), token, False)]
    if kind == "split":
        paths = [a for a in trees(c) if a.data == "split_path"]
        return [
            Exit(f"path:{i}", str(p.children[1]), tok(p.children[1]), True)
            for i, p in enumerate(paths)
        ]
    return []


def _word(text: str) -> bool:
    return bool(text) and (text.isalnum() or text in '_"%')


def _str(token: Token | None) -> str | None:
    return None if token is None else str(token)


@lru_cache(maxsize=16)
def _terminal(name: str) -> re.Pattern[str]:
    return re.compile(parser().get_terminal(name).pattern.to_regexp())


_EXAMPLES = {
    "NAME": "a name such as `welcome_email`",
    "STRING": 'a text in double quotes such as "Welcome"',
    "DURATION": "a duration such as 3d or 12h",
    "PERCENT": "a percentage such as 50%",
    "TIME": "a time of day such as 09:00",
    "NUMBER": "a number such as 3",
}


class Doc:
    """A parsed text (a byte-order mark, if any, is set aside and kept)."""

    def __init__(self, text: str, path: str) -> None:
        self.bom = "\ufeff" if text.startswith("\ufeff") else ""
        self.text = text[len(self.bom) :]
        self.path = path
        parsed = parse_tree(self.text, path)
        if parsed.tree is None:
            raise FlowSyntaxError(parsed.diagnostics)
        self.tree: Tree[Token] = parsed.tree
        self.comments = parsed.comments
        self.nl = "\r\n" if "\r\n" in self.text else "\n"
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]

    # ------------------------------------------------------------------ errors

    def error(self, code: str, message: str, at: Node = None, hint: str | None = None) -> EditError:
        span = Span.point(1, 1)
        if isinstance(at, Token) and at.line is not None and at.column is not None:
            span = Span(at.line, at.column, at.line, at.column + len(at))
        elif isinstance(at, Tree) and not at.meta.empty:
            span = Span(at.meta.line, at.meta.column, at.meta.line, at.meta.column + 1)
        return EditError(rules.make(code, message, self.path, span, hint=hint))

    @staticmethod
    def did_you_mean(name: str, known: list[str]) -> str | None:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else None

    # ------------------------------------------------------------------ finding things

    def flows(self) -> list[Tree[Token]]:
        return [d for d in trees(self.tree.children) if d.data == "flow"]

    def flow(self, name: str) -> Tree[Token]:
        flows = self.flows()
        for flow in flows:
            if str(flow.children[0]) == name:
                return flow
        names = [str(f.children[0]) for f in flows]
        raise self.error(
            "FB206",
            f"there is no flow '{name}'; flows are: {listing(names)}",
            hint=self.did_you_mean(name, names),
        )

    @staticmethod
    def steps(flow: Tree[Token]) -> list[Tree[Token]]:
        return [i for i in trees(flow.children) if i.data == "step"]

    @staticmethod
    def step_name(step: Tree[Token]) -> str:
        return str(step.children[0])

    def step(self, flow: Tree[Token], name: str) -> Tree[Token]:
        steps = self.steps(flow)
        for step in steps:
            if self.step_name(step) == name:
                return step
        names = [self.step_name(s) for s in steps]
        raise self.error(
            "FB200",
            f"flow '{flow.children[0]}' has no step '{name}'; steps are: {listing(names)}",
            flow.children[0],
            hint=self.did_you_mean(name, names),
        )

    def following(self, flow: Tree[Token], step: Tree[Token]) -> str | None:
        """The step a fall-through from `step` reaches: the next step of the flow."""
        steps = self.steps(flow)
        index = next(i for i, s in enumerate(steps) if s is step)
        return self.step_name(steps[index + 1]) if index + 1 < len(steps) else None

    def ports(self, step: Tree[Token]) -> str:
        names = ["(none: the single exit)" if e.port is None else e.port for e in exits(step)]
        return listing(names)

    # ------------------------------------------------------------------ lines

    def line_start(self, line: int) -> int:
        return self.line_starts[line - 1]

    def line_after(self, line: int) -> int:
        """The offset just after line `line` (after its newline)."""
        return self.line_starts[line] if line < len(self.line_starts) else len(self.text)

    def indent(self, line: int) -> str:
        start = self.line_start(line)
        text = self.text[start : self.line_after(line)]
        return text[: len(text) - len(text.lstrip(" \t\f"))]

    def lines(self, first: int, last: int) -> Patch:
        """A patch that removes lines `first` to `last`, newlines included."""
        return Patch(self.line_start(first), self.line_after(last), "")

    def block_indent(self, block: Tree[Token], entries: list[Tree[Token]], head_line: int) -> str:
        """The indentation of a block's entries (one level deeper than its head when empty)."""
        if entries:
            return self.indent(entries[0].meta.line)
        return self.indent(head_line) + "  "

    def insert_line(self, at_line: int, indent: str, text: str) -> Patch:
        """A patch that puts a new line before line `at_line`."""
        offset = self.line_start(at_line)
        return Patch(offset, offset, indent + text + self.nl)

    def add_before_close(
        self, block: Tree[Token], entries: list[Tree[Token]], head_line: int, text: str
    ) -> Patch:
        """A patch that adds the line `text` just before the `}` of a block."""
        indent = self.block_indent(block, entries, head_line)
        return self.insert_line(block.meta.end_line, indent, text)

    def has_comments(self, start: int, end: int) -> bool:
        """Whether a comment starts within `text[start:end]`."""
        return any(start <= self.line_start(c.line) + c.col - 1 < end for c in self.comments)

    def token_patch(self, token: Token, new: str) -> Patch:
        assert token.start_pos is not None and token.end_pos is not None
        return Patch(token.start_pos, token.end_pos, new)

    def remove_with_space(self, start: int, end: int) -> Patch:
        """Remove `text[start:end]` and the spaces before it (one stays between two words)."""
        while start > 0 and self.text[start - 1] in " \t\f":
            start -= 1
        apart = start > 0 and end < len(self.text)
        keep = " " if apart and _word(self.text[start - 1]) and _word(self.text[end]) else ""
        return Patch(start, end, keep)

    def extent(self, node: Tree[Token]) -> tuple[int, int]:
        """Where a statement, or an expression that is a statement's part, is written, with the
        parentheses the tree dropped around its ends."""
        start, end = node.meta.start_pos, node.meta.end_pos
        unclosed, unopened, in_string, escaped = 0, 0, False, False
        for ch in self.text[start:end]:
            if in_string:
                in_string = not (ch == '"' and not escaped)
                escaped = ch == "\\" and not escaped
            elif ch == '"':
                in_string = True
            elif ch == "(":
                unclosed += 1
            elif ch == ")":
                if unclosed:
                    unclosed -= 1
                else:
                    unopened += 1
        for _ in range(unopened):
            start -= 1
            while self.text[start] != "(":
                start -= 1
        for _ in range(unclosed):
            while self.text[end] != ")":
                end += 1
            end += 1
        # Parentheses around the whole of a statement's expression belong to it too.
        while True:
            before = self.text[:start].rstrip(" \t\f")
            after = self.text[end:].lstrip(" \t\f")
            if not (before.endswith("(") and after.startswith(")")):
                return start, end
            start, end = len(before) - 1, len(self.text) - len(after) + 1

    def expr_patch(self, node: Tree[Token], new: str) -> Patch:
        """Replace a statement's expression, keeping it apart from the words around it."""
        start, end = self.extent(node)
        if start > 0 and _word(self.text[start - 1]) and _word(new[:1]):
            new = " " + new
        if end < len(self.text) and _word(self.text[end]) and _word(new[-1:]):
            new += " "
        return Patch(start, end, new)

    # ------------------------------------------------------------------ values

    def value(self, kind: str, value: str, what: str, at: Node) -> str:
        """A value of a terminal kind (NAME, STRING, DURATION, ...), checked against the grammar."""
        text = value.strip()
        ok = _terminal(kind).fullmatch(text) is not None
        if kind == "NAME" and text in keywords():
            raise self.error(
                "FB105",
                f"'{text}' is a reserved word and cannot be used as a {what}",
                at,
                hint=f"choose another name, such as '{text}_step'",
            )
        if not ok:
            raise self.error(
                "FB100",
                f"'{value}' is not a valid {what}; expected {_EXAMPLES[kind]}",
                at,
            )
        return text

    def expression(self, value: str, what: str, at: Node) -> str:
        """A condition or value in canonical form; refused when it does not parse."""
        if "\n" in value or "\r" in value:
            raise self.error("FB100", f"{what} must be written on one line", at)
        parsed = parse_tree(f"segment __edit__ where {value}\n", self.path)
        if parsed.tree is None:
            problem = parsed.diagnostics[0].message if parsed.diagnostics else "it does not parse"
            raise self.error("FB100", f"'{value}' is not a valid {what}: {problem}", at)
        if parsed.comments:
            raise self.error("FB100", f"{what} cannot hold a comment", at)
        segments = trees(parsed.tree.children)
        if len(segments) != 1 or segments[0].data != "segment":
            raise self.error("FB100", f"'{value}' is not a valid {what}", at)
        condition = segments[0].children[2]
        assert isinstance(condition, Tree)
        return format_node(condition)

    def new_name(self, flow: Tree[Token], name: str, at: Node) -> str:
        """A name for a new step: an identifier, not a reserved word, not taken."""
        if name != name.strip():
            raise self.error("FB100", f"'{name}' is not a valid step name", at)
        self.value("NAME", name, "step name", at)
        taken = [self.step_name(s) for s in self.steps(flow)]
        if name in taken:
            raise self.error("FB210", f"flow '{flow.children[0]}' already has a step '{name}'", at)
        return name

    # ------------------------------------------------------------------ result

    def patched(self, patches: list[Patch]) -> str:
        """The text with the patches applied; refused when the result would not parse."""
        out = self.text
        last = len(out) + 1
        # Insertions at one offset keep their order: the later one is applied first.
        order = sorted(enumerate(patches), key=lambda ip: (ip[1].start, ip[1].end, ip[0]))
        for _, patch in reversed(order):
            if patch.end > last:
                raise AssertionError(f"overlapping edits at offset {patch.start}")
            out = out[: patch.start] + patch.new + out[patch.end :]
            last = patch.start
        parsed = parse_tree(out, self.path)
        if parsed.tree is None:
            problem = parsed.diagnostics[0] if parsed.diagnostics else None
            raise EditError(
                rules.make(
                    "FB100",
                    "the edit would leave text that does not parse"
                    + (f": {problem.message}" if problem else ""),
                    self.path,
                    problem.span if problem else Span.point(1, 1),
                )
            )
        return self.bom + out


def step_refs_in_calls(node: Tree[Token]) -> list[Token]:
    """The bare names that fill a `step` parameter of a call (`opened(hello)`, `count(x, step=a)`)."""
    found: list[Token] = []
    for call in node.find_data("call"):
        function = FUNCTIONS.get(str(call.children[0]))
        if function is None:
            continue
        positional = 0
        for arg in trees(call.children[1:]):
            if arg.data == "kwarg":
                if function.kwargs.get(str(arg.children[0])) == "step":
                    found.extend(_bare_name(arg.children[1]))
                continue
            params = function.params
            if positional < len(params) and params[positional].kind == "step":
                found.extend(_bare_name(arg))
            positional += 1
    return found


def target_tokens(step: Tree[Token]) -> list[Token]:
    """Every step name an edge or arm of a step points at."""
    found: list[Token] = []
    for node in action_of(step).iter_subtrees():
        if node.data in ("edge", "then_arm", "timeout_arm", "else_arm"):
            found.append(tok(node.children[0]))
        elif node.data in ("if_arm", "else_if_arm", "split_path"):
            found.append(tok(node.children[1]))
    return found


def _bare_name(node: Node) -> list[Token]:
    if isinstance(node, Tree) and node.data == "name":
        return [tok(node.children[0])]
    return []
