"""The `flowbuilder` command line: lint, fmt, compile, graph and report."""

from __future__ import annotations

import json
import sys
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dsl import ir
from dsl.compile import compile_paths, flow_files
from dsl.diagnostics import FlowSyntaxError
from dsl.graph import mermaid
from flowbuilder import __version__


class Exit(IntEnum):
    """Exit codes: 0 clean, 1 problems found, 2 usage error."""

    OK = 0
    PROBLEMS = 1
    USAGE = 2


class OutputFormat(StrEnum):
    human = "human"
    concise = "concise"
    json = "json"
    sarif = "sarif"
    github = "github"


# The language commands, defined here; the others (store, web, mail, worker…) are registered onto
# the same app when a command needs them (`__getattr__`, `main`): `flowbuilder lint` in CI starts
# without importing the web server, the store and the mail stack.
_app = typer.Typer(
    name="flowbuilder",
    help="Marketing-automation flows as text: lint, format, compile and draw .flow files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)
# Piped output (CI logs, `make run | less`) gets room for the report tables instead of 80 columns.
report_console = Console(highlight=False, width=None if out.is_terminal else 150)

PathsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Files or folders; every .flow file under a folder is part of one workspace."
    ),
]


def _usage(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(Exit.USAGE)


def _existing(paths: list[Path]) -> list[Path]:
    for p in paths:
        if not p.exists():
            raise _usage(f"{p} does not exist.")
    files = flow_files(paths)
    if not files:
        raise _usage(f"no .flow files found in {', '.join(map(str, paths))}.")
    return files


def _version(value: bool) -> None:
    if value:
        out.print(f"flowbuilder {__version__}")
        raise typer.Exit(Exit.OK)


@_app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Marketing-automation flows as text."""


@_app.command()
def lint(
    paths: PathsArg,
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.human,
    color: Annotated[bool, typer.Option(help="Colour the human output.")] = False,
) -> None:
    """Check flows for errors and risky patterns; exit 1 when anything is found."""
    _existing(paths)
    from dsl.lint.config import ConfigError
    from dsl.report import render
    from flowbuilder.mail.lint import lint_paths  # the flows' rules and the template files

    try:
        result = lint_paths(paths)
    except ConfigError as exc:
        raise _usage(str(exc)) from exc
    text = render(
        output.value,
        result.diagnostics,
        sources=result.sources,
        files_checked=result.files_checked,
        tool_version=__version__,
        color=color,
    )
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(Exit.PROBLEMS if result.diagnostics else Exit.OK)


@_app.command()
def fmt(
    paths: PathsArg,
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file is not formatted.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Change nothing; print what would change.")
    ] = False,
    strip_layout: Annotated[
        bool, typer.Option("--strip-layout", help="Drop the layout blocks.")
    ] = False,
) -> None:
    """Rewrite files in the canonical format, keeping every comment."""
    from dsl import fmt as formatter

    files = _existing(paths)
    changed: list[Path] = []
    broken = 0
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
            formatted = formatter.format_text(text, str(path), strip_layout=strip_layout)
        except (UnicodeDecodeError, FlowSyntaxError) as exc:
            broken += 1
            from dsl.parse import parse_tree

            for d in parse_tree(raw, str(path)).diagnostics or getattr(exc, "diagnostics", []):
                err.print(d.concise(), markup=False)
            continue
        if formatted == text:
            continue
        changed.append(path)
        if diff:
            sys.stdout.write(formatter.diff(text, str(path), strip_layout=strip_layout))
        elif check:
            err.print(f"would reformat {path}", markup=False)
        else:
            path.write_text(formatted, encoding="utf-8")
            err.print(f"reformatted {path}", markup=False)
    verb = "would be reformatted" if (check or diff) else "reformatted"
    err.print(
        f"{len(changed)} file(s) {verb}, {len(files) - len(changed) - broken} unchanged, {broken} with syntax errors"
    )
    if broken or ((check or diff) and changed):
        raise typer.Exit(Exit.PROBLEMS)


@_app.command(name="compile")
def compile_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders of one workspace.")
    ] = None,
    flow: Annotated[str | None, typer.Option(help="Print only this flow's IR.")] = None,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the IR's JSON Schema instead.")
    ] = False,
) -> None:
    """Print the compiled IR as JSON (with its content hash), or the IR's JSON Schema."""
    if schema:
        out.print_json(json.dumps(ir.json_schema()), indent=2)
        return
    if not paths:
        raise _usage("give the .flow files or folders to compile (or --schema).")
    _existing(paths)
    compilation = compile_paths(paths)
    for d in compilation.diagnostics:
        err.print(d.concise(), markup=False)
    if not compilation.ok or compilation.workspace is None:
        raise typer.Exit(Exit.PROBLEMS)
    ws = compilation.workspace
    if flow is not None:
        if flow not in ws.flows:
            raise _usage(
                f"there is no flow '{flow}'; flows: {', '.join(sorted(ws.flows)) or 'none'}."
            )
        doc = {
            "hash": ws.flows[flow].content_hash(),
            "flow": ws.flows[flow].model_dump(mode="json"),
        }
    else:
        doc = {"hash": ws.content_hash(), "workspace": ws.model_dump(mode="json")}
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


@_app.command()
def graph(
    paths: PathsArg,
    flow: Annotated[
        str | None, typer.Option(help="The flow to draw (required when there are several).")
    ] = None,
) -> None:
    """Print a flow as a Mermaid flowchart."""
    _existing(paths)
    compilation = compile_paths(paths)
    ws = compilation.workspace
    if ws is None:
        for d in compilation.diagnostics:
            err.print(d.concise(), markup=False)
        raise typer.Exit(Exit.PROBLEMS)
    if flow is None:
        if len(ws.flows) != 1:
            raise _usage(
                f"choose a flow with --flow; flows: {', '.join(sorted(ws.flows)) or 'none'}."
            )
        flow = next(iter(ws.flows))
    if flow not in ws.flows:
        raise _usage(f"there is no flow '{flow}'; flows: {', '.join(sorted(ws.flows))}.")
    sys.stdout.write(mermaid(ws.flows[flow]))


@_app.command()
def report(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Workspace folders (default: examples).")
    ] = None,
) -> None:
    """Lint and compile workspaces and print a readable overview of their flows."""
    from flowbuilder.overview import print_overview

    targets = paths or [Path("examples")]
    _existing(targets)
    ok = print_overview(targets, report_console)
    raise typer.Exit(Exit.OK if ok else Exit.PROBLEMS)


CORE_COMMANDS = frozenset({"lint", "fmt", "compile", "graph", "report"})


def main() -> None:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    if not words or words[0] not in CORE_COMMANDS:
        _register_more_commands()
    _app()


_registered = False


def _register_more_commands() -> typer.Typer:
    global _registered
    if not _registered:
        from flowbuilder import (
            cli_lsp,
            cli_mail,
            cli_pulse,
            cli_sim,
            cli_store,
            cli_web,
            cli_worker,
        )

        for module in (cli_store, cli_sim, cli_web, cli_lsp, cli_mail, cli_pulse, cli_worker):
            module.register(_app)
        _registered = True
    return _app


def __getattr__(name: str) -> typer.Typer:
    """`flowbuilder.cli.app`: the app with every command (tests, docs generation)."""
    if name == "app":
        return _register_more_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
