"""The overview `flowbuilder report` prints: lint results and what every flow does, at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from dsl import ir
from dsl.diagnostics import Severity
from dsl.ir_text import duration_text, trigger_text
from dsl.lint import lint_paths

_WAITS = (ir.Wait, ir.WaitBusinessDays, ir.WaitUntilTime, ir.WaitUntilDate, ir.WaitFor)


@dataclass(frozen=True)
class PathStats:
    """The most sends on any path from the first step, and the longest minimum duration of a path."""

    max_sends: int
    max_days: float
    paths: int


def _min_seconds(step: ir.Step) -> int:
    match step:
        case ir.Wait():
            return step.seconds
        case ir.WaitBusinessDays():
            return step.days * 86400
    return 0


def path_stats(flow: ir.Flow, limit: int = 10_000) -> PathStats:
    """Walk every path (cycles cut at the first repeat), counting sends and fixed waits."""
    best_sends, best_seconds, count = 0, 0, 0
    if flow.start is None:
        return PathStats(0, 0.0, 0)
    stack: list[tuple[str, int, int, frozenset[str]]] = [(flow.start, 0, 0, frozenset())]
    while stack and count < limit:
        name, sends, seconds, seen = stack.pop()
        step = flow.steps.get(name)
        if step is None or name in seen:
            count += 1
            continue
        sends += isinstance(step, ir.Send)
        seconds += _min_seconds(step)
        best_sends, best_seconds = max(best_sends, sends), max(best_seconds, seconds)
        nexts = ir.successors(step)
        if not nexts:
            count += 1
        for target in nexts:
            stack.append((target, sends, seconds, seen | {name}))
    return PathStats(best_sends, best_seconds / 86400, count)


def print_overview(paths: Sequence[Path], console: Console) -> bool:
    """Print the overview; returns False when any error or warning was found."""
    result = lint_paths(list(paths))
    errors = sum(d.severity is Severity.ERROR for d in result.diagnostics)
    warnings = sum(d.severity is Severity.WARNING for d in result.diagnostics)
    status = (
        "[green]clean[/]"
        if not result.diagnostics
        else f"[red]{errors} errors[/], [yellow]{warnings} warnings[/]"
    )
    console.print(
        Panel.fit(
            f"[bold]flowbuilder[/] workspace {', '.join(map(str, paths))}\n"
            f"{result.files_checked} files linted: {status}",
            title="report",
        )
    )
    for d in result.diagnostics:
        console.print(f"  {d.concise()}", markup=False)

    from dsl.compile import compile_paths

    compilation = compile_paths(list(paths))
    ws = compilation.workspace
    if ws is None:
        return False
    table = Table(title="Flows", title_justify="left", show_lines=False)
    for column in (
        "flow",
        "kind",
        "triggers",
        "steps",
        "sends",
        "max touches",
        "min days to finish",
        "goals",
        "exits",
        "IR hash",
    ):
        table.add_column(column, overflow="fold")
    for flow in ws.flows.values():
        stats = path_stats(flow)
        sends = sum(isinstance(s, ir.Send) for s in flow.steps.values())
        table.add_row(
            f"[bold]{flow.name}[/]",
            flow.kind,
            "\n".join(trigger_text(t) for t in flow.triggers) or "-",
            str(len(flow.steps)),
            str(sends),
            str(stats.max_sends),
            f"{stats.max_days:g}",
            "\n".join(
                g.name + (f" ({duration_text(g.within_seconds)})" if g.within_seconds else "")
                for g in flow.goals
            )
            or "-",
            str(len(flow.exits)),
            flow.content_hash()[:12],
        )
    console.print(table)
    decls = Table(title="Workspace declarations", title_justify="left")
    decls.add_column("kind")
    decls.add_column("count", justify="right")
    decls.add_column("names", overflow="fold")
    for kind, names in (
        ("segments", list(ws.segments)),
        ("lists", list(ws.lists)),
        ("stages", [s.name for s in ws.stages]),
        ("forms", list(ws.forms)),
        ("templates", list(ws.templates)),
        ("attributes", list(ws.attributes)),
        ("settings", list(ws.settings)),
    ):
        decls.add_row(kind, str(len(names)), ", ".join(names))
    console.print(decls)
    return not result.diagnostics
