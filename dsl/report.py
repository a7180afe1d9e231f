"""Diagnostics to text: human, concise, JSON, SARIF 2.1.0 and GitHub Actions workflow commands.

Every renderer keeps the order it is given (the linter sorts); spans are 1-based with an exclusive end,
which JSON and SARIF keep as they are (SARIF's `endColumn` is exclusive too) and GitHub gets inclusive.

>>> from dsl.rules import make
>>> from dsl.diagnostics import Span
>>> d = make("FB302", "branch `tier` has no `else` arm", "flows/a.flow", Span(3, 5, 3, 11))
>>> print(render_concise([d]), end="")
flows/a.flow:3:5: FB302 branch `tier` has no `else` arm
>>> print(render_github([d]), end="")
::warning file=flows/a.flow,line=3,col=5,endLine=3,endColumn=10,title=FB302 branch-without-else::branch `tier` has no `else` arm
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from dsl.diagnostics import Diagnostic, Severity, long_form
from dsl.rules import RULES

FORMATS = ("human", "concise", "json", "sarif", "github")

PROJECT_URI = "https://github.com/flowbuilder/flowbuilder"
RULE_DOCS_URI = f"{PROJECT_URI}/blob/main/docs/lint/"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
_ANSI = {Severity.ERROR: "\x1b[1;31m", Severity.WARNING: "\x1b[1;33m", Severity.INFO: "\x1b[1;36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _counts(diagnostics: Sequence[Diagnostic]) -> Counter[Severity]:
    return Counter(d.severity for d in diagnostics)


def summary(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    """`2 errors, 1 warning in 3 files.` or `No problems found in 3 files.`"""
    files = _plural(files_checked, "file")
    if not diagnostics:
        return f"No problems found in {files}."
    counts = _counts(diagnostics)
    parts = [_plural(counts[s], s.value) for s in Severity if counts[s]]
    return f"{', '.join(parts)} in {files}."


def _colorize(diagnostic: Diagnostic, text: str) -> str:
    """Bold the location, colour the severity tag and the carets of a long-form block."""
    tone = _ANSI[diagnostic.severity]
    head, _, rest = text.partition("\n")
    tag = f"[{diagnostic.severity.value}]"
    location = f"{diagnostic.path}:{diagnostic.line}:{diagnostic.col}:"
    head = head.replace(location, f"{_BOLD}{location}{_RESET}", 1)
    head = head[: -len(tag)] + f"{tone}{tag}{_RESET}"
    lines = []
    for line in rest.splitlines():
        gutter, bar, body = line.partition("| ")
        if bar and body.strip() and set(body.strip()) == {"^"}:
            line = f"{gutter}{bar}{body.replace('^', f'{tone}^', 1)}{_RESET}"
        lines.append(line)
    return "\n".join([head, *lines])


def render_human(
    diagnostics: Sequence[Diagnostic],
    sources: Mapping[str, str],
    *,
    color: bool = False,
    files_checked: int | None = None,
) -> str:
    """Each diagnostic in long form (caret snippet, hint), a blank line between, then a summary."""
    if files_checked is None:
        files_checked = len(set(sources) | {d.path for d in diagnostics})
    blocks = []
    for d in diagnostics:
        block = long_form(d, sources.get(d.path, ""))
        blocks.append(_colorize(d, block) if color else block)
    blocks.append(summary(diagnostics, files_checked))
    return "\n\n".join(blocks) + "\n"


def render_concise(diagnostics: Sequence[Diagnostic]) -> str:
    """One `path:line:col: CODE message` line per diagnostic."""
    return "".join(d.concise() + "\n" for d in diagnostics)


def _rule_name(code: str) -> str:
    rule = RULES.get(code)
    return rule.name if rule else ""


def _family(d: Diagnostic) -> str:
    rule = RULES.get(d.code)
    return d.family or (rule.family if rule else "")


def render_json(diagnostics: Sequence[Diagnostic], *, files_checked: int) -> str:
    """A versioned JSON document in the spirit of `terraform validate -json`."""
    counts = _counts(diagnostics)
    doc = {
        "format_version": "1.0",
        "valid": counts[Severity.ERROR] == 0,
        "error_count": counts[Severity.ERROR],
        "warning_count": counts[Severity.WARNING],
        "info_count": counts[Severity.INFO],
        "files_checked": files_checked,
        "diagnostics": [
            {
                "code": d.code,
                "severity": d.severity.value,
                "family": _family(d),
                "rule": _rule_name(d.code),
                "message": d.message,
                "hint": d.hint,
                "path": d.path,
                "range": {
                    "start": {"line": d.span.line, "column": d.span.col},
                    "end": {"line": d.span.end_line, "column": d.span.end_col},
                },
            }
            for d in diagnostics
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _artifact_location(path: str) -> dict[str, str]:
    """A relative path becomes a URI reference under %SRCROOT%; an absolute one a file:// URI."""
    windows = PureWindowsPath(path)
    if windows.drive:
        return {"uri": "file:///" + quote(windows.as_posix(), safe="/:")}
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute():
        return {"uri": "file://" + quote(posix.as_posix())}
    return {"uri": quote(posix.as_posix()), "uriBaseId": "%SRCROOT%"}


def _sarif_rule(code: str) -> dict[str, Any]:
    rule = RULES[code]
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "helpUri": f"{RULE_DOCS_URI}{rule.code}.md",
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"tags": [rule.family]},
    }


def _sarif_result(d: Diagnostic, rule_index: Mapping[str, int]) -> dict[str, Any]:
    text = f"{d.message}\nhint: {d.hint}" if d.hint else d.message
    result: dict[str, Any] = {"ruleId": d.code}
    if d.code in rule_index:
        result["ruleIndex"] = rule_index[d.code]
    result["level"] = _SARIF_LEVEL[d.severity]
    result["message"] = {"text": text}
    result["locations"] = [
        {
            "physicalLocation": {
                "artifactLocation": _artifact_location(d.path),
                "region": {
                    "startLine": d.span.line,
                    "startColumn": d.span.col,
                    "endLine": d.span.end_line,
                    "endColumn": d.span.end_col,
                },
            }
        }
    ]
    return result


def render_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str) -> str:
    """A SARIF 2.1.0 log with one run; its rules list every registered code."""
    codes = list(RULES)
    rule_index = {code: i for i, code in enumerate(codes)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "flowbuilder",
                        "version": tool_version,
                        "informationUri": PROJECT_URI,
                        "rules": [_sarif_rule(code) for code in codes],
                    }
                },
                # Columns count characters, as Python strings do, not UTF-16 code units.
                "columnKind": "unicodeCodePoints",
                "results": [_sarif_result(d, rule_index) for d in diagnostics],
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def escape_github_data(text: str) -> str:
    """Escape a workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_github_property(text: str) -> str:
    """Escape a workflow command's property value (`:` and `,` delimit properties)."""
    return escape_github_data(text).replace(":", "%3A").replace(",", "%2C")


def _github_line(d: Diagnostic) -> str:
    title = f"{d.code} {_rule_name(d.code)}".rstrip()
    props = [("file", d.path), ("line", str(d.span.line)), ("col", str(d.span.col))]
    props.append(("endLine", str(d.span.end_line)))
    # GitHub's end column is inclusive and only means something on a one-line range.
    if d.span.end_line == d.span.line:
        props.append(("endColumn", str(max(d.span.end_col - 1, d.span.col))))
    props.append(("title", title))
    joined = ",".join(f"{key}={escape_github_property(value)}" for key, value in props)
    text = f"{d.message}\nhint: {d.hint}" if d.hint else d.message
    return f"::{_GITHUB_COMMAND[d.severity]} {joined}::{escape_github_data(text)}"


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands (`::error file=…::message`), one per diagnostic."""
    return "".join(_github_line(d) + "\n" for d in diagnostics)


def render(
    fmt_name: str,
    diagnostics: Sequence[Diagnostic],
    *,
    sources: Mapping[str, str],
    files_checked: int,
    tool_version: str,
    color: bool = False,
) -> str:
    """Render in the named format, one of `FORMATS`."""
    renderers: dict[str, Callable[[], str]] = {
        "human": lambda: render_human(
            diagnostics, sources, color=color, files_checked=files_checked
        ),
        "concise": lambda: render_concise(diagnostics),
        "json": lambda: render_json(diagnostics, files_checked=files_checked),
        "sarif": lambda: render_sarif(diagnostics, tool_version=tool_version),
        "github": lambda: render_github(diagnostics),
    }
    if fmt_name not in renderers:
        raise ValueError(f"unknown format '{fmt_name}'; expected one of {', '.join(FORMATS)}")
    return renderers[fmt_name]()
