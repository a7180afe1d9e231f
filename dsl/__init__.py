"""flowbuilder's .flow language: parse, compile, lint, format and edit.

A json-style API: `loads(text)` / `load(path)` give the checked IR `Workspace` (raising `FlowError`
with every diagnostic when the text has errors), `dumps(workspace)` gives its canonical JSON. The
stages stay public for tools: `parse_tree`, `compile_files`, `dsl.lint`, `dsl.fmt`, `dsl.edit`.

>>> ws = loads('''
... template hello_email {
...   subject "Hello"
... }
... flow welcome "Welcome" {
...   trigger event signed_up
...   hello: send hello_email
...   done: end
... }
... ''')
>>> ws.flows["welcome"].steps["hello"].next
'done'
"""

from __future__ import annotations

import json
from pathlib import Path

from dsl.compile import Compilation, compile_files, compile_paths, compile_text
from dsl.diagnostics import (
    Diagnostic,
    FlowError,
    FlowSemanticError,
    FlowSyntaxError,
    Severity,
    Span,
)
from dsl.ir import Flow, Workspace, canonical_json, content_hash
from dsl.parse import ParsedFile, parse_tree

__all__ = [
    "Compilation",
    "Diagnostic",
    "Flow",
    "FlowError",
    "FlowSemanticError",
    "FlowSyntaxError",
    "ParsedFile",
    "Severity",
    "Span",
    "Workspace",
    "compile_files",
    "compile_paths",
    "compile_text",
    "content_hash",
    "dumps",
    "load",
    "loads",
    "parse_tree",
]


def _result(compilation: Compilation) -> Workspace:
    errors = [d for d in compilation.diagnostics if d.severity is Severity.ERROR]
    if compilation.workspace is None:
        raise FlowSyntaxError(errors)
    if errors:
        raise FlowSemanticError(errors)
    return compilation.workspace


def loads(text: str | bytes, path: str = "<string>") -> Workspace:
    """Compile one .flow text to its IR; raises FlowError carrying every error found."""
    return _result(compile_text(text, path))


def load(path: str | Path) -> Workspace:
    """Compile a .flow file, or every .flow file under a folder, as one workspace."""
    return _result(compile_paths([path]))


def dumps(workspace: Workspace, *, indent: int | None = 2) -> str:
    """The IR as JSON (spans, comments and layout never appear)."""
    if indent is None:
        return canonical_json(workspace)
    return json.dumps(
        workspace.model_dump(mode="json"), indent=indent, sort_keys=True, ensure_ascii=False
    )
