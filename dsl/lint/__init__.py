"""The linter: compile diagnostics plus the graph, marketing-safety and style rules.

`lint(compilation)` runs every rule family on a compiled workspace; `lint_paths(paths)` loads the
configuration (`[tool.flowbuilder.lint]` in the nearest pyproject.toml), compiles and lints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dsl import ir, rules
from dsl.collector import without_collector
from dsl.compile import Compilation, compile_paths, flow_files
from dsl.diagnostics import Diagnostic, Span
from dsl.lint import graph, safety
from dsl.lint.config import LintConfig, apply, load_config, suppressions

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class LintResult:
    diagnostics: list[Diagnostic]
    files_checked: int
    sources: dict[str, str]


def _style(ws: ir.Workspace) -> Iterator[Diagnostic]:
    named: list[tuple[str, str, ir.Node, str]] = []
    for kind, items in (
        ("segment", ws.segments),
        ("list", ws.lists),
        ("template", ws.templates),
        ("form", ws.forms),
    ):
        named += [(kind, name, item, item.path) for name, item in items.items()]
    named += [("stage", s.name, s, s.path) for s in ws.stages]
    for flow in ws.flows.values():
        named.append(("flow", flow.name, flow, flow.path))
        named += [("step", name, step, flow.path) for name, step in flow.steps.items()]
        if not flow.title:
            yield rules.make(
                "FB501",
                f"flow `{flow.name}` has no title",
                flow.path,
                flow.span or Span(1, 1, 1, 2),
                hint=f'write `flow {flow.name} "A title people understand" {{`',
            )
    for kind, name, node, path in named:
        if not _SNAKE.match(name):
            yield rules.make(
                "FB500",
                f"{kind} name `{name}` is not snake_case",
                path,
                node.span or Span(1, 1, 1, 2),
                hint=f"rename it `{re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()}`",
            )


def findings(ws: ir.Workspace, config: LintConfig) -> list[Diagnostic]:
    """Every rule finding on a compiled workspace (compile diagnostics not included)."""
    out: list[Diagnostic] = []
    for flow in ws.flows.values():
        walked = graph.walk(flow)
        out += graph.check(ws, flow, walked)
        out += safety.check(ws, flow, config, walked)
    out += safety.check_templates(ws)
    out += _style(ws)
    return out


@without_collector
def lint(compilation: Compilation, config: LintConfig | None = None) -> list[Diagnostic]:
    """Compile diagnostics and rule findings, filtered by the configuration and inline suppressions."""
    config = config or LintConfig()
    diagnostics = list(compilation.diagnostics)
    if compilation.workspace is not None:
        diagnostics += findings(compilation.workspace, config)
    suppressed = {path: suppressions(parsed.comments) for path, parsed in compilation.files.items()}
    return apply(diagnostics, config, suppressed)


@without_collector
def lint_paths(paths: Iterable[str | Path], config: LintConfig | None = None) -> LintResult:
    targets = [Path(p) for p in paths]
    if config is None:
        config = load_config(targets[0]) if targets else LintConfig()
    compilation = compile_paths(targets)
    return LintResult(
        diagnostics=lint(compilation, config),
        files_checked=len(flow_files(targets)),
        sources={path: parsed.text for path, parsed in compilation.files.items()},
    )


__all__ = ["LintConfig", "LintResult", "findings", "lint", "lint_paths"]
