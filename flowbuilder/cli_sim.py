"""The commands that run flows on a virtual clock: simulate (and --diff) and test."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsl import ir
from flowbuilder.scenario import ScenarioError

if TYPE_CHECKING:
    from flowbuilder import flowtest

err = Console(stderr=True, highlight=False, soft_wrap=True)
USAGE = 2
PROBLEMS = 1


class SimFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def _usage(message: str) -> typer.Exit:
    err.print("[bold red]error:[/] " + escape(message))
    return typer.Exit(USAGE)


def _workspace(paths: list[Path]) -> ir.Workspace:
    from dsl.compile import compile_paths
    from flowbuilder.cli import _existing

    _existing(paths)
    compilation = compile_paths(paths)
    if not compilation.ok or compilation.workspace is None:
        for d in compilation.diagnostics[:20]:
            err.print(f"{d.path}:{d.span.line}:{d.span.col}: {d.code} {d.message}", markup=False)
        raise _usage(f"{', '.join(map(str, paths))} does not compile; nothing was simulated")
    return compilation.workspace


def simulate(
    paths: Annotated[list[Path], typer.Argument(help="The workspace: files or folders.")],
    leads: Annotated[Path, typer.Option(help="Leads: CSV or JSON.")],
    events: Annotated[
        Path | None,
        typer.Option(help="Events: JSON lines or a JSON list; `at` is ISO or an offset."),
    ] = None,
    reactions: Annotated[
        Path | None, typer.Option(help="Reactions to sends: JSON lines or a JSON list.")
    ] = None,
    days: Annotated[int, typer.Option(help="Virtual days to run.", min=1)] = 30,
    start: Annotated[
        str, typer.Option(help="The virtual start (ISO 8601).")
    ] = "2026-03-02T09:00:00Z",
    flow: Annotated[str | None, typer.Option(help="Show only this flow.")] = None,
    diff: Annotated[
        list[Path] | None,
        typer.Option(
            "--diff", help="Replay the same population through this workspace too and compare."
        ),
    ] = None,
    output: Annotated[
        SimFormat, typer.Option("--format", "-f", help="Output format.")
    ] = SimFormat.text,
) -> None:
    """Run flows over a population and a timeline on a virtual clock (no scheduler, no email):
    every lead's path with reasons, and a summary. Same inputs, same output, byte for byte."""
    from flowbuilder import scenario, simdiff
    from flowbuilder.intake import parse_time
    from flowbuilder.simulate import Result
    from flowbuilder.simulate import simulate as run_simulation

    try:
        begin = parse_time(start)
    except ValueError as e:
        raise _usage(f"--start: {e}") from None
    try:
        population = scenario.read_leads(leads)
        timeline = scenario.read_events(events, begin) if events else []
        scripted = scenario.read_reactions(reactions) if reactions else []
    except ScenarioError as e:
        raise _usage(str(e)) from None
    known = {lead.id for lead in population}
    for lead_id, _ in timeline:
        if lead_id not in known:
            raise _usage(f"{events}: event for `{lead_id}`, who is not in {leads}")
    ws = _workspace(paths)
    if flow is not None and flow not in ws.flows:
        raise _usage(f"no flow `{flow}`; known: {', '.join(sorted(ws.flows))}")

    def run(workspace: ir.Workspace) -> Result:
        return run_simulation(workspace, population, timeline, begin, days, scripted)

    result = run(ws)
    if diff:
        other = run(_workspace(diff))
        change = simdiff.compare(result, other)
        label_old, label_new = ", ".join(map(str, paths)), ", ".join(map(str, diff))
        if output is SimFormat.markdown:
            sys.stdout.write(simdiff.markdown(change, label_old, label_new))
        elif output is SimFormat.json:
            sys.stdout.write(_diff_json(change) + "\n")
        else:
            sys.stdout.write(simdiff.text(change))
        raise typer.Exit(0)
    lines = [t for t in result.trace if flow is None or t.flow == flow]
    summary = result.summary()
    if output is SimFormat.json:
        payload = {
            "trace": [
                {
                    "at": t.at.isoformat(),
                    "lead": t.lead,
                    "flow": t.flow,
                    "step": t.step,
                    "what": t.what,
                    "reason": t.reason,
                }
                for t in lines
            ],
            "summary": {name: dict(sorted(c.items())) for name, c in sorted(summary.items())},
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    if output is SimFormat.markdown:
        sys.stdout.write(_summary_markdown(summary, flow))
        return
    for t in lines:
        sys.stdout.write(t.render() + "\n")
    console = Console(
        highlight=False, width=120, file=sys.stdout, force_terminal=False, color_system=None
    )
    table = Table(title="summary")
    for column in ("flow", "what", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for name, counter in sorted(summary.items()):
        if flow is None or name == flow:
            for what, count in sorted(counter.items()):
                table.add_row(name, what, str(count))
    console.print(table)


def _summary_markdown(summary: Mapping[str, Counter[str]], flow: str | None) -> str:
    lines = ["| flow | what | count |", "|---|---|---:|"]
    for name, counter in sorted(summary.items()):
        if flow is None or name == flow:
            lines += [f"| {name} | {what} | {count} |" for what, count in sorted(counter.items())]
    return "\n".join(lines) + "\n"


def _diff_json(change: object) -> str:
    from flowbuilder.simdiff import Diff

    assert isinstance(change, Diff)
    return json.dumps(
        {
            "added": [
                {"lead": lead, "step": s, "at": at.isoformat()} for lead, s, at in change.added
            ],
            "removed": [
                {"lead": lead, "step": s, "at": at.isoformat()} for lead, s, at in change.removed
            ],
            "moved": [
                {"lead": lead, "step": s, "from": a.isoformat(), "to": b.isoformat()}
                for lead, s, a, b in change.moved
            ],
            "endings": [
                {"lead": lead, "flow": f, "from": a, "to": b} for lead, f, a, b in change.endings
            ],
            "goals": [{"lead": lead, "goal": g, "change": sign} for lead, g, sign in change.goals],
        },
        ensure_ascii=False,
        indent=2,
    )


def test(
    paths: Annotated[
        list[Path], typer.Argument(help="Test files (*.test.toml) or folders holding them.")
    ],
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Also fail when a branch of a flow (an edge of its graph) is taken by no case, "
            "or a flow of the workspace has no tests.",
        ),
    ] = False,
) -> None:
    """Run flow tests: each case simulates one lead and checks its sends, ending, goals and stage."""
    from dsl.compile import compile_paths
    from flowbuilder import flowtest

    for p in paths:
        if not p.exists():
            raise _usage(f"{p} does not exist")
    files = flowtest.find_test_files(paths)
    if not files:
        raise _usage(f"no *.test.toml files in {', '.join(map(str, paths))}")
    out = Console(highlight=False, soft_wrap=True)
    workspaces: dict[Path, ir.Workspace] = {}
    outcomes: dict[Path, list[flowtest.Outcome]] = {}
    failed = 0
    total = 0
    started = datetime.now(UTC)
    for file in files:
        try:
            folder = flowtest.workspace_for(file)
            if folder not in workspaces:
                compilation = compile_paths([folder])
                if compilation.workspace is None or not compilation.ok:
                    raise ScenarioError(
                        str(folder), "the workspace does not compile; run `flowbuilder lint`"
                    )
                workspaces[folder] = compilation.workspace
            cases = flowtest.load(file)
            for case in cases:
                total += 1
                outcome = flowtest.run_case(case, workspaces[folder])
                outcomes.setdefault(folder, []).append(outcome)
                if outcome.passed:
                    out.print(f"[green]PASS[/] {escape(case.where)} {escape(case.name)}")
                    continue
                failed += 1
                out.print(f"[red]FAIL[/] {escape(case.where)} {escape(case.name)}")
                for problem in outcome.problems:
                    out.print(f"     {problem}", markup=False)
                for t in outcome.trace:
                    out.print(f"       {t.render()}", markup=False, highlight=False)
        except ScenarioError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}")
            raise typer.Exit(USAGE) from None
    seconds = (datetime.now(UTC) - started).total_seconds()
    colour = "red" if failed else "green"
    out.print(
        f"[{colour}]{total - failed} passed, {failed} failed[/] in {len(files)} files ({seconds:.1f}s)"
    )
    gaps = _coverage(out, workspaces, outcomes) if coverage else 0
    raise typer.Exit(PROBLEMS if failed or gaps else 0)


def _coverage(
    out: Console,
    workspaces: Mapping[Path, ir.Workspace],
    outcomes: Mapping[Path, list[flowtest.Outcome]],
) -> int:
    """Print the branches no case takes; return how many there are."""
    from flowbuilder import flowtest

    gaps = 0
    for folder, ws in sorted(workspaces.items()):
        runs = outcomes.get(folder, [])
        tested = {o.case.flow for o in runs}
        for name in sorted(set(ws.flows) - tested):
            gaps += 1
            out.print(f"[red]UNTESTED[/] flow {escape(name)} ({escape(str(folder))}) has no cases")
        for name, missing in flowtest.untested_edges(ws, tested, runs).items():
            gaps += len(missing)
            edges = ", ".join(f"{a} -> {b}" for a, b in missing)
            out.print(f"[red]UNCOVERED[/] {escape(name)}: {escape(edges)}")
    if not gaps:
        out.print("[green]every branch of every flow is taken by a case[/]")
    return gaps


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command(name="test")(test)
