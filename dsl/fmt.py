"""The formatter: the only printer of .flow text, from the parse tree, keeping every comment.

Canonical style: two spaces per block level, one statement per line, one blank line between
top-level declarations, at most one blank line (where the user had some) between the items of a
block, single spaces between words, and the fewest parentheses the precedence needs.

>>> print(format_text('flow  f {\\n\\n  a :wait 1d->b   # soon\\n  b: end\\n}'), end="")
flow f {
  a: wait 1d -> b  # soon
  b: end
}

The output parses to the same tree as the input, keeps every comment in order, and is a fixed
point: `format_text(format_text(x)) == format_text(x)`.
"""

from __future__ import annotations

import difflib
import sys
from collections import deque
from collections.abc import Iterable
from itertools import accumulate
from operator import attrgetter

from lark import Token, Tree

from dsl.collector import without_collector
from dsl.diagnostics import FlowSyntaxError
from dsl.fmt_expr import expr_text, is_expression
from dsl.fmt_lines import Item, is_item, item
from dsl.parse import Comment, ParsedFile, parse_tree

__all__ = ["check", "diff", "format_node", "format_parsed", "format_text"]

INDENT = "  "


@without_collector
def format_text(text: str, path: str = "<string>", *, strip_layout: bool = False) -> str:
    """The canonical text of a .flow file; raises FlowSyntaxError when the text does not parse."""
    parsed = parse_tree(text, path)
    if parsed.tree is None:
        raise FlowSyntaxError(parsed.diagnostics)
    return format_parsed(parsed, strip_layout=strip_layout)


def format_parsed(parsed: ParsedFile, *, strip_layout: bool = False) -> str:
    """The canonical text of an already parsed file (its tree must be there)."""
    if parsed.tree is None:
        raise FlowSyntaxError(parsed.diagnostics)
    comments = parsed.comments
    skip = _skip_layout if strip_layout else _keep
    if strip_layout:
        dropped = [
            (n.meta.line, n.meta.end_line) for n in parsed.tree.find_data("layout") if n.meta.line
        ]
        comments = [c for c in comments if not any(a <= c.line <= b for a, b in dropped)]
    printer = _Printer(parsed.text.split("\n"), comments)
    printer.top([item(d, skip) for d in _trees(parsed.tree.children) if not skip(d)])
    return printer.result()


def check(text: str, path: str = "<string>", *, strip_layout: bool = False) -> bool:
    """True when the text is already canonical (`fmt --check`)."""
    return format_text(text, path, strip_layout=strip_layout) == text


def diff(text: str, path: str = "<string>", *, strip_layout: bool = False) -> str:
    """A unified diff from the text to its canonical form; empty when it is canonical (`fmt --diff`)."""
    formatted = format_text(text, path, strip_layout=strip_layout)
    return "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            formatted.splitlines(keepends=True),
            fromfile=path,
            tofile=f"{path} (formatted)",
        )
    )


def format_node(node: Tree[Token]) -> str:
    """One node of a parse tree in canonical form, without comments.

    A statement or declaration gives its line (a block gives its lines, unindented, without a final
    newline); an expression gives its text; the whole tree (`start`) gives the file.
    """
    if node.data == "start":
        printer = _Printer(None, [])
        printer.top([item(d) for d in _trees(node.children)])
        return printer.result()
    if is_expression(node) and not is_item(str(node.data)):
        return expr_text(node)
    if not is_item(str(node.data)):
        raise ValueError(f"`{node.data}` is part of a statement; format the statement instead")
    printer = _Printer(None, [])
    printer.item(item(node), 0)
    return "\n".join(printer.out)


def _trees(nodes: Iterable[Tree[Token] | Token | None]) -> list[Tree[Token]]:
    return [n for n in nodes if isinstance(n, Tree)]


def _one_line_run(before: Item, after: Item) -> bool:
    return before.entries is None and after.entries is None and before.node.data == after.node.data


def _skip_layout(node: Tree[Token]) -> bool:
    return node.data == "layout"


def _keep(node: Tree[Token]) -> bool:
    return False


class _Printer:
    """Lays out items: indentation, blank lines, and each comment where the user put it."""

    def __init__(self, source_lines: list[str] | None, comments: list[Comment]) -> None:
        self.out: list[str] = []
        self.comments = deque(sorted(comments, key=attrgetter("line", "col")))
        # blank_before[n]: how many blank source lines there are among lines 1..n
        blank = [not text.strip() for text in source_lines or []]
        self.blank_before = list(accumulate(blank, initial=0))

    def result(self) -> str:
        return "\n".join(self.out) + "\n" if self.out else ""

    def gap(self, after: int | None, before: int) -> bool:
        """Whether the source has a blank line between line `after` and line `before`."""
        if after is None or before - after < 2 or before - 1 >= len(self.blank_before):
            return False
        return self.blank_before[before - 1] > self.blank_before[after]

    def trailing(self, line: int) -> str:
        if self.comments and self.comments[0].trailing and self.comments[0].line == line:
            return "  " + self.comments.popleft().text.rstrip()
        return ""

    def comments_before(self, line: int, indent: str, prev: int | None, force: bool) -> int | None:
        """Print the comments above `line`; `force` puts one blank line before the first one."""
        while self.comments and self.comments[0].line < line:
            comment = self.comments.popleft()
            if force or self.gap(prev, comment.line):
                self.out.append("")
            force = False
            self.out.append(indent + comment.text.rstrip())
            prev = comment.line
        return prev

    def top(self, items: list[Item]) -> None:
        prev: int | None = None
        last: Item | None = None
        for decl in items:
            # A run of one-line declarations of one kind (attributes, lists) stays as written.
            run = last is not None and _one_line_run(last, decl)
            force = bool(self.out) and not run
            commented = bool(self.comments) and self.comments[0].line < decl.line
            prev = self.comments_before(decl.line, "", prev, force)
            if self.gap(prev, decl.line) or (force and not commented):
                self.out.append("")
            self.item(decl, 0)
            prev, last = decl.end_line, decl
        self.comments_before(sys.maxsize, "", prev, bool(self.out))

    def item(self, it: Item, depth: int) -> None:
        indent = INDENT * depth
        if it.entries is None:
            self.out.append(indent + it.head + self.trailing(it.line))
            return
        self.out.append(f"{indent}{it.head} {{{self.trailing(it.line)}")
        inner = indent + INDENT
        out, comments = self.out, self.comments
        prev: int | None = None
        for entry in it.entries:
            line = entry.line
            # The checks of `comments_before`, `gap` and `trailing`, spelled out for the common
            # entry: a flow holds one per step.
            if comments and comments[0].line < line:
                prev = self.comments_before(line, inner, prev, False)
            if prev is not None and line - prev >= 2 and self.gap(prev, line):
                out.append("")
            if entry.entries is None:
                if comments and comments[0].trailing and comments[0].line == line:
                    out.append(inner + entry.head + "  " + comments.popleft().text.rstrip())
                else:
                    out.append(inner + entry.head)
            else:
                self.item(entry, depth + 1)
            prev = entry.end_line
        self.comments_before(it.end_line, inner, prev, False)
        self.out.append(indent + it.close + self.trailing(it.end_line))
