"""Diagnostics: one record for every problem the language tools find, and the error hierarchy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, order=True)
class Span:
    """A range in a source file; lines and columns are 1-based, the end is exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int

    @classmethod
    def point(cls, line: int, col: int) -> Span:
        return cls(line, col, line, col + 1)


@dataclass(frozen=True)
class Diagnostic:
    """A problem in a file: what (code, message), where (path, span) and what to do (hint)."""

    code: str
    severity: Severity
    message: str
    path: str
    span: Span
    hint: str | None = None
    # The rule family (syntax, semantic, graph, safety, style) - filled from the code's registry.
    family: str = field(default="", compare=False)

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def col(self) -> int:
        return self.span.col

    def concise(self) -> str:
        """The `path:line:col: CODE message` form."""
        return f"{self.path}:{self.span.line}:{self.span.col}: {self.code} {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.span.line, self.span.col, self.code)


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=Diagnostic.sort_key)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def caret_snippet(source: str, span: Span) -> str:
    """The source line of `span` with a caret line under it; tabs in the prefix are kept so it aligns."""
    lines = source.splitlines()
    if not 1 <= span.line <= len(lines):
        return ""
    text = lines[span.line - 1]
    prefix = "".join(ch if ch == "\t" else " " for ch in text[: max(span.col - 1, 0)])
    if span.end_line == span.line:
        width = max(span.end_col - span.col, 1)
    else:
        width = max(len(text) - span.col + 1, 1)
    gutter = f"{span.line:>4} | "
    return f"{gutter}{text}\n{' ' * (len(gutter) - 2)}| {prefix}{'^' * width}"


def long_form(diagnostic: Diagnostic, source: str) -> str:
    """The human form: the concise line, the caret snippet and the hint."""
    parts = [f"{diagnostic.concise()} [{diagnostic.severity.value}]"]
    snippet = caret_snippet(source, diagnostic.span)
    if snippet:
        parts.append(snippet)
    if diagnostic.hint:
        parts.append(f"     = hint: {diagnostic.hint}")
    return "\n".join(parts)


class FlowError(Exception):
    """Raised by the json-style API when a text has errors; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        first = diagnostics[0].concise() if diagnostics else "unknown error"
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(first + more)


class FlowSyntaxError(FlowError):
    """The text does not follow the grammar."""


class FlowSemanticError(FlowError):
    """The text parses but does not make sense (undefined names, wrong types, bad values)."""


class StaleRevisionError(FlowError):
    """An edit was made against a revision that is no longer current."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        Exception.__init__(
            self,
            f"the text changed since revision {expected[:12]}; the current revision is "
            f"{actual[:12]}. Reload and apply the edit again.",
        )
        self.diagnostics = []
