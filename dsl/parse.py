"""Text to parse tree: the Lark LALR parser, comments, and every syntax error of a file in one pass.

Recovery works at statement boundaries: after an error the statement's line (or the whole block it
opens) is blanked with spaces, so every position stays where it was, and the text is parsed again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from dsl import rules
from dsl.diagnostics import Diagnostic, Span

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
    """The grammar, loaded once."""
    grammar = resources.files("grammars").joinpath("flow.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
    )


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


def _scan(text: str, path: str) -> _Scan:
    """Find comments, unbalanced braces and too-deep nesting without the parser (strings respected)."""
    comments: list[Comment] = []
    problems: list[Diagnostic] = []
    opened: list[tuple[str, int, int]] = []
    line, col = 1, 1
    code_on_line = False
    in_string = False
    i, n = 0, len(text)
    pairs = {"}": "{", ")": "(", "]": "["}
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\" and i + 1 < n and text[i + 1] != "\n":
                i += 2
                col += 2
                continue
            if ch == '"' or ch == "\n":
                in_string = False
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end == -1 else end
            comments.append(Comment(line, col, text[i:end].rstrip("\r"), code_on_line))
            col += end - i
            i = end
            continue
        elif ch == '"':
            in_string = True
            code_on_line = True
        elif ch in "{([":
            opened.append((ch, line, col))
            code_on_line = True
            if len(opened) > MAX_NESTING:
                problems.append(
                    rules.make(
                        "FB104",
                        f"nesting is deeper than {MAX_NESTING} levels",
                        path,
                        Span.point(line, col),
                        hint="split the condition into named segments",
                    )
                )
                return _Scan(comments, problems)
        elif ch in "})]":
            code_on_line = True
            if opened and opened[-1][0] == pairs[ch]:
                opened.pop()
            elif ch == "}":
                problems.append(
                    rules.make(
                        "FB102",
                        "this `}` closes nothing",
                        path,
                        Span.point(line, col),
                        hint="remove it, or add the `{` it was meant to close",
                    )
                )
        elif not ch.isspace():
            code_on_line = True
        if ch == "\n":
            line += 1
            col = 1
            code_on_line = False
        else:
            col += 1
        i += 1
    for ch, ln, cl in opened:
        if ch == "{":
            problems.append(
                rules.make(
                    "FB102",
                    "this `{` is never closed",
                    path,
                    Span.point(ln, cl),
                    hint="add a `}` on its own line where the block ends",
                )
            )
    return _Scan(comments, problems)


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
        close = difflib.get_close_matches(token.value, words, n=1, cutoff=0.75)
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


def _brace_delta(line: str) -> int:
    delta = 0
    in_string = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            break
        elif ch == "{":
            delta += 1
        elif ch == "}":
            delta -= 1
        i += 1
    return delta


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
            too_deep = _too_deep(tree, path)
            if too_deep is not None:
                return ParsedFile(path, text, None, scan.comments, [too_deep])
            return ParsedFile(path, text, tree, scan.comments, [])
        break
    return ParsedFile(path, text, None, scan.comments, diagnostics)


MAX_TREE_DEPTH = 200


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
