"""Text to parse tree: the Lark LALR parser, comments, and every syntax error of a file in one pass.

Recovery works at statement boundaries: after an error the statement's line (or the whole block it
opens) is blanked with spaces, so every position stays where it was, and the text is parsed again.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from dsl import rules
from dsl.collector import without_collector
from dsl.diagnostics import Diagnostic, Span
from dsl.grammar import load_parser

MAX_BYTES = 2_000_000
MAX_NESTING = 64
MAX_SYNTAX_ERRORS = 50


@dataclass(frozen=True)
class Comment:
    """A `#` comment; `trailing` when code precedes it on the same line."""

    line: int
    col: int
    text: str
    trailing: bool


@dataclass
class ParsedFile:
    path: str
    text: str
    tree: Tree[Token] | None
    comments: list[Comment] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The grammar, loaded once per process (its analysis kept in Lark's cache file)."""
    return load_parser(cache=True)


def keywords() -> frozenset[str]:
    """Every reserved word of the language."""
    return _keywords()


@lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    return frozenset(
        t.pattern.value
        for t in parser().terminals
        if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()
    )


# ---------------------------------------------------------------------------- scanning


@dataclass
class _Scan:
    comments: list[Comment]
    problems: list[Diagnostic]


# What the scan looks at: a string (to its closing quote or the end of its line; a backslash takes
# the next character with it), a comment, a bracket, or a pair of round or square brackets with
# nothing of these between them (`opened(welcome)`), balanced by itself. The rest is skipped.
_SCANNED = re.compile(
    r'"(?:[^"\\\n]|\\[^\n]|\\)*"?|#[^\n]*|\([^(){}\[\]"#\n]*\)|\[[^(){}\[\]"#\n]*\]|[{}()\[\]]'
)
_CLOSES = {"}": "{", ")": "(", "]": "["}


def _scan(text: str, path: str) -> _Scan:
    """Find comments, unbalanced braces and too-deep nesting without the parser (strings respected)."""
    comments: list[Comment] = []
    problems: list[Diagnostic] = []
    opened: list[tuple[str, int]] = []  # bracket, offset: a line and column only for a problem
    line, line_start, counted = 1, 0, 0
    for m in _SCANNED.finditer(text):
        pos = m.start()
        first = text[pos]
        if first == '"':
            continue
        if first == "#":
            newlines = text.count("\n", counted, pos)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", counted, pos) + 1
            counted = pos
            trailing = pos > line_start and not text[line_start:pos].isspace()
            comments.append(_comment(line, pos - line_start + 1, m.group().rstrip("\r"), trailing))
        elif first in "{([":
            if m.end() - pos > 1 and first != "{":  # a closed pair: one level, for a moment
                if len(opened) < MAX_NESTING:
                    continue
                opened.append((first, pos))
            else:
                opened.append((first, pos))
            if len(opened) > MAX_NESTING:
                problems.append(
                    rules.make(
                        "FB104",
                        f"nesting is deeper than {MAX_NESTING} levels",
                        path,
                        _point(text, pos),
                        hint="split the condition into named segments",
                    )
                )
                return _Scan(comments, problems)
        elif opened and opened[-1][0] == _CLOSES[first]:
            opened.pop()
        elif first == "}":
            problems.append(
                rules.make(
                    "FB102",
                    "this `}` closes nothing",
                    path,
                    _point(text, pos),
                    hint="remove it, or add the `{` it was meant to close",
                )
            )
    for ch, pos in opened:
        if ch == "{":
            problems.append(
                rules.make(
                    "FB102",
                    "this `{` is never closed",
                    path,
                    _point(text, pos),
                    hint="add a `}` on its own line where the block ends",
                )
            )
    return _Scan(comments, problems)


def _point(text: str, pos: int) -> Span:
    """The line and column of an offset."""
    line_start = text.rfind("\n", 0, pos) + 1
    return Span.point(text.count("\n", 0, pos) + 1, pos - line_start + 1)


_new = object.__new__
_set = object.__setattr__


def _comment(line: int, col: int, text: str, trailing: bool) -> Comment:
    """`Comment(line, col, text, trailing)` without the frozen dataclass's guarded `__setattr__`s."""
    comment = _new(Comment)
    _set(comment, "__dict__", {"line": line, "col": col, "text": text, "trailing": trailing})
    return comment


# ---------------------------------------------------------------------------- messages

_PHRASES: dict[str, str] = {
    "DURATION": "a duration such as 3d or 12h",
    "TIME": "a time of day such as 09:00",
    "PERCENT": "a percentage such as 50%",
    "DATE": "a date such as 2026-01-31",
    "NUMBER": "a number",
    "STRING": 'a text in double quotes such as "Welcome"',
    "NAME": "a name",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}
_PHRASE_ORDER = ["DURATION", "TIME", "PERCENT", "DATE", "NUMBER", "STRING", "NAME"]
_EXPRESSION_STARTS = {"NUMBER", "STRING", "NAME", "LPAR", "LSQB"}


def _terminal_text(name: str) -> str | None:
    for t in parser().terminals:
        if t.name == name and isinstance(t.pattern, PatternStr):
            return t.pattern.value
    return None


def _describe_expected(expected: set[str]) -> str:
    if expected >= _EXPRESSION_STARTS:
        return "a condition or a value"
    named = [_PHRASES[n] for n in _PHRASE_ORDER if n in expected]
    literal = sorted(
        f"`{text}`"
        for n in expected
        if n not in _PHRASES and (text := _terminal_text(n)) is not None
    )
    if len(literal) > 8:
        literal = [*literal[:8], "…"]
    parts = named + literal
    if not parts:
        parts = [_PHRASES[n] for n in ("_NL", "$END") if n in expected]
    if not parts:
        return "something else"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


_HINTS = {
    "elif": "write `else if`",
    "then": "a branch arm is written `if <condition> -> <step>`",
    "=>": "edges are written `->`",
    "and": "a condition is missing before `and`",
}


def _last_token(value: object) -> Token | None:
    if isinstance(value, Token):
        return value
    if isinstance(value, Tree):
        for child in reversed(value.children):
            tok = _last_token(child)
            if tok is not None:
                return tok
    return None


def _found(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_NL":
        return "the end of the line"
    return f"`{token.value}`"


def _syntax_diagnostic(error: UnexpectedInput, path: str, text: str) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        pos = error.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else "?"
        hint = "texts are written in double quotes" if ch in "'‘’“”" else None
        return rules.make(
            "FB101",
            f"unexpected character `{ch}`",
            path,
            Span.point(error.line, error.column),
            hint=hint,
        )
    assert isinstance(error, UnexpectedToken)
    token = error.token
    expected = set(error.expected)
    previous = None
    stack = error.interactive_parser.parser_state.value_stack if error.interactive_parser else []
    if stack:
        previous = _last_token(stack[-1])
    after = f" after `{previous.value}`" if previous is not None and previous.type != "_NL" else ""
    message = f"expected {_describe_expected(expected)}{after}, found {_found(token)}"
    code = "FB100"
    hint = _HINTS.get(str(token.value))
    if (
        token.value == ":"
        and previous is not None
        and previous.value in keywords()
        and "COLON" not in expected
    ):
        code = "FB105"
        message = f"`{previous.value}` is a reserved word and cannot name a step"
        hint = f"choose another step name, such as `{previous.value}_step`"
        token = previous
    elif token.type not in ("$END", "_NL") and token.value in keywords() and "NAME" in expected:
        code = "FB105"
        message = f"`{token.value}` is a reserved word and cannot be used as a name here"
        hint = f"choose another name, such as `{token.value}_step`"
    elif token.type == "NAME":
        words = [t for n in expected if (t := _terminal_text(n)) is not None and t.isidentifier()]
        # A keyword with letters glued on (`sendhello`, `untill`): keywords are whole words.
        glued = max((w for w in words if token.value.startswith(w)), key=len, default=None)
        close = [glued] if glued else difflib.get_close_matches(token.value, words, 1, 0.75)
        if glued:
            message = f"unknown word `{token.value}`"
        if close:
            hint = f"did you mean `{close[0]}`?"
    line = token.line if token.line is not None else text.count("\n") + 1
    col = token.column if token.column is not None else 1
    end_col = col + max(len(token.value), 1) if token.type not in ("_NL", "$END") else col + 1
    return rules.make(code, message, path, Span(line, col, line, end_col), hint=hint)


# ---------------------------------------------------------------------------- recovery


def _blank(text: str, line: int) -> str | None:
    """Blank the statement on `line` (and the block it opens), keeping newlines and stray `}`."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    first = line - 1
    depth = _brace_delta(lines[first])
    last = first
    while depth > 0 and last + 1 < len(lines):
        last += 1
        depth += _brace_delta(lines[last])
    changed = False
    for idx in range(first, last + 1):
        original = lines[idx]
        keep_close = idx == first and depth < 0 and last == first
        blanked = "".join(
            ch if (ch == "}" and keep_close) or ch in "\r" else " " for ch in original
        )
        if blanked != original:
            changed = True
        lines[idx] = blanked
    return "\n".join(lines) if changed else None


def outside_strings(line: str) -> Iterator[tuple[int, str]]:
    """The characters of a line of .flow text that are not inside a string, with their 0-based
    columns: the quotes that open and close strings are among them, and a `#` among them starts
    the comment."""
    in_string = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
                yield i, ch
        else:
            if ch == '"':
                in_string = True
            yield i, ch
        i += 1


def comment_start(line: str) -> int | None:
    """The column where the line's comment starts, if it has one."""
    return next((i for i, ch in outside_strings(line) if ch == "#"), None)


def _brace_delta(line: str) -> int:
    delta = 0
    for _, ch in outside_strings(line):
        if ch == "#":
            break
        delta += (ch == "{") - (ch == "}")
    return delta


@without_collector
def parse_tree(source: str | bytes, path: str = "<string>") -> ParsedFile:
    """Parse a .flow text; syntax problems are returned as diagnostics, never raised."""
    if isinstance(source, bytes):
        if len(source) > MAX_BYTES:
            return _too_large(path, len(source))
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            col = exc.start - (source.rfind(b"\n", 0, exc.start) + 1) + 1
            diag = rules.make(
                "FB103",
                f"the file is not UTF-8 text (byte 0x{source[exc.start]:02x} at offset {exc.start})",
                path,
                Span.point(line, col),
                hint="save the file as UTF-8",
            )
            return ParsedFile(path, "", None, [], [diag])
    else:
        text = source
        if len(text) > MAX_BYTES:
            return _too_large(path, len(text.encode("utf-8", "surrogatepass")))
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        diag = rules.make(
            "FB103",
            "the file holds binary data (a NUL byte)",
            path,
            Span.point(line, 1),
            hint="flows are plain UTF-8 text files",
        )
        return ParsedFile(path, text, None, [], [diag])

    scan = _scan(text, path)
    if scan.problems:
        return ParsedFile(path, text, None, scan.comments, scan.problems)

    work = text if text.endswith("\n") else text + "\n"
    diagnostics: list[Diagnostic] = []
    while True:
        try:
            tree = parser().parse(work)
        except UnexpectedInput as error:
            diagnostic = _syntax_diagnostic(error, path, work)
            diagnostics.append(diagnostic)
            blanked = _blank(work, diagnostic.span.line)
            if blanked is None or len(diagnostics) >= MAX_SYNTAX_ERRORS:
                break
            work = blanked
            continue
        if not diagnostics:
            too_deep = _too_deep(tree, path) if _has_long_line(text) else None
            if too_deep is not None:
                return ParsedFile(path, text, None, scan.comments, [too_deep])
            return ParsedFile(path, text, tree, scan.comments, [])
        break
    return ParsedFile(path, text, None, scan.comments, diagnostics)


MAX_TREE_DEPTH = 200


def _has_long_line(text: str) -> bool:
    """Whether a line is long enough to hold a tree deeper than `MAX_TREE_DEPTH`.

    Blocks nest a fixed few levels (file, flow, step, action, block, arm); below a statement, every
    node on the way down an expression spans at least one token more than the child it leads to
    (an operator, a keyword, a bracket), and each token is at least one character, so a line of n
    characters nests at most about n levels.
    """
    return max(map(len, text.split("\n"))) >= MAX_TREE_DEPTH - 32


def _too_deep(tree: Tree[Token], path: str) -> Diagnostic | None:
    """Refuse trees too deep for the recursive stages after parsing (long operator chains)."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            meta = node.meta
            return rules.make(
                "FB104",
                f"this condition is nested more than {MAX_TREE_DEPTH} levels deep",
                path,
                Span.point(getattr(meta, "line", 1), getattr(meta, "column", 1)),
                hint="split it into named segments",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    return None


def _too_large(path: str, size: int) -> ParsedFile:
    diag = rules.make(
        "FB104",
        f"the file is {size / 1_000_000:.1f} MB; a flow file may be at most {MAX_BYTES / 1_000_000:.0f} MB",
        path,
        Span.point(1, 1),
        hint="split the workspace into several .flow files",
    )
    return ParsedFile(path, "", None, [], [diag])
