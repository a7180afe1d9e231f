"""The commands that work on the store: publish, import, event and run."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from flowbuilder import __version__
from flowbuilder.intake import IntakeError, parse_event, parse_time

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $FLOWBUILDER_DATABASE_URL, else sqlite:///flowbuilder.db).",
    ),
]
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
# Tables piped into logs get room instead of 80 columns.
tables = Console(highlight=False, width=None if out.is_terminal else 150)
USAGE = 2
PROBLEMS = 1


def _error(message: str) -> None:
    err.print("[bold red]error:[/] " + escape(message))


def _now() -> datetime:
    return datetime.now(UTC)


def _store(url: str | None) -> Engine:
    from flowbuilder.store.db import database_url, open_store

    try:
        return open_store(url)
    except OperationalError as exc:
        _error(f"cannot open the database {database_url(url)}: {exc.orig}")
        raise typer.Exit(USAGE) from None


def publish(
    paths: Annotated[list[Path], typer.Argument(help="The workspace: files or folders.")],
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change, and store nothing.")
    ] = False,
) -> None:
    """Store a new version of every changed flow and move the leads in flight as the flows say."""
    from dsl.compile import compile_paths
    from dsl.lint import lint
    from dsl.report import render
    from flowbuilder.cli import _existing
    from flowbuilder.publish import PublishRefused
    from flowbuilder.publish import publish as do_publish

    _existing(paths)
    compilation = compile_paths(paths)
    findings = lint(compilation)
    engine = _store(db)
    try:
        plan = do_publish(engine, compilation, findings, _now(), dry_run=dry_run)
    except PublishRefused as refused:
        sources = {p: f.text for p, f in compilation.files.items()}
        text = render(
            "human",
            refused.diagnostics,
            sources=sources,
            files_checked=len(sources),
            tool_version=__version__,
        )
        sys.stdout.write(text)
        err.print(f"[bold red]not published:[/] {refused}")
        raise typer.Exit(PROBLEMS) from None
    table = Table(title="dry run: nothing stored" if dry_run else "published")
    for column in ("flow", "change", "version", "in flight", "where they go"):
        table.add_column(column)
    for c in plan.changes:
        version = (
            f"{c.old_version or '-'} → {c.new_version}" if c.new_version else str(c.old_version)
        )
        moves = "\n".join(
            f"{m.count} at {m.step} → {m.to or 'exit'} ({m.why})"
            for m in c.moves
            if m.to != m.step or m.step in c.changed_steps
        )
        table.add_row(c.flow, c.status, version, str(c.in_flight), moves or "-")
    tables.print(table)
    if not plan.anything:
        out.print("Nothing changed since the last publication.")


def import_leads(
    csv_file: Annotated[
        Path, typer.Argument(help="A CSV file with a header row and an email column.")
    ],
    db: DbOption = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="Name a column's field: 'E-mail address=email', '#3=phone' (by position), "
            "'Notes=-' (skip it). Repeatable.",
        ),
    ] = None,
    to_list: Annotated[
        str | None,
        typer.Option(
            "--list", help="Also put every imported lead on this list (it may trigger flows)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Give every lead an attribute value where its cell is empty: 'source=import'. "
            "Repeatable.",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="The file's encoding (utf-8, utf-16, cp949, euc-kr …); without it, detected."
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(help="The separator: ',', ';', 'tab' or '|'; without it, from the header."),
    ] = None,
    consent_wording: Annotated[
        str | None,
        typer.Option(
            help="The wording leads agreed to, for consent records of rows without a "
            "consent_wording column."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Write the rejected rows, with their line and problem, to this CSV file to fix "
            "and import again."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and count everything, and store nothing.")
    ] = False,
) -> None:
    """Import leads from CSV in one transaction: bad rows are listed with their line and reason,
    good rows are stored, rows with the same email are merged."""
    from flowbuilder.lead_import import DELIMITERS, ImportOptions, ImportRefused, import_csv

    mapping = _pairs(map_, "--map", "'Column=field'")
    defaults = _pairs(set_, "--set", "'name=value'")
    for name in defaults:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            _error(f"--set names an attribute such as source, not `{name}`")
            raise typer.Exit(USAGE)
    if delimiter is not None:
        delimiter = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
        if delimiter not in DELIMITERS:
            _error(f"--delimiter is one of ',', ';', 'tab' or '|', not `{delimiter}`")
            raise typer.Exit(USAGE)
    if to_list is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", to_list):
        _error(f"--list takes a list name such as cold_prospects_kr, not `{to_list}`")
        raise typer.Exit(USAGE)
    options = ImportOptions(
        mapping=mapping,
        to_list=to_list,
        encoding=encoding,
        delimiter=delimiter,
        defaults=defaults,
        consent_wording=consent_wording,
        dry_run=dry_run,
    )
    engine = _store(db)
    rejected = _Rejects(rejects)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("import", total=None, rows=0)
    shown: list[str] = []

    def on_header(header: Any, report: Any) -> None:
        columns = ", ".join(c.described() for c in header.columns)
        err.print(
            f"{csv_file}: {report.encoding}, {DELIMITERS[report.delimiter]}-separated; "
            f"columns: {columns}",
            markup=False,
        )
        for notice in header.notices:
            err.print(f"{csv_file}:1: note: {notice}", markup=False)
            shown.append(notice)
        rejected.open([c.header for c in header.columns])

    def on_problem(problem: Any) -> None:
        progress.console.print(f"{csv_file}:{problem.where()}: {problem.message}", markup=False)
        rejected.write(problem)

    try:
        with progress:
            report = import_csv(
                engine,
                csv_file,
                options,
                on_problem=on_problem,
                on_header=on_header,
                on_progress=lambda done, size, rows: progress.update(
                    task, completed=done, total=size, rows=rows
                ),
            )
    except ImportRefused as refused:
        for problem in refused.problems:
            _error(problem)
        err.print("nothing was imported")
        raise typer.Exit(USAGE) from None
    except KeyboardInterrupt:
        _error("interrupted; nothing was imported")
        raise typer.Exit(130) from None
    finally:
        rejected.close()
    for notice in report.notices[len(shown) :]:  # found while reading the rows
        err.print(f"{csv_file}: note: {notice}", markup=False)
    counts = [
        f"{report.created} leads created, {report.updated} updated, "
        f"{report.merged} duplicate rows merged, {report.rejected} rows rejected"
    ]
    if to_list:
        counts.append(f"{report.joined} joined list {to_list}")
    if report.consents:
        counts.append(f"{report.consents} consent records")
    if report.suppressed:
        counts.append(f"{report.suppressed} said no to consent (suppressed)")
    if report.kept_unsubscribed:
        counts.append(
            f"{report.kept_unsubscribed} rows said yes for leads who had unsubscribed "
            "(left unsubscribed)"
        )
    if report.blank:
        counts.append(f"{report.blank} blank rows skipped")
    out.print("; ".join(counts), markup=False)
    if dry_run:
        out.print("dry run: nothing was stored")
    if rejects is not None and report.rejected:
        out.print(f"rejected rows written to {rejects}", markup=False)
    raise typer.Exit(PROBLEMS if report.rejected else 0)


def _pairs(items: list[str] | None, option: str, form: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            _error(f"{option} takes {form}, not `{item}`")
            raise typer.Exit(USAGE)
        pairs[source.strip()] = target.strip()
    return pairs


class _Rejects:
    """The rejected rows as CSV (UTF-8 with BOM, for spreadsheets): line, problem, then the
    file's own columns. The importer skips the first two when the file comes back."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: Any = None
        self.writer: Any = None

    def open(self, headers: list[str]) -> None:
        if self.path is None:
            return
        import csv

        try:
            self.file = self.path.open("w", encoding="utf-8-sig", newline="")
        except OSError as exc:
            _error(f"cannot write {self.path}: {exc.strerror or exc}")
            raise typer.Exit(USAGE) from None
        self.writer = csv.writer(self.file)
        self.writer.writerow(["import_line", "import_problem", *headers])

    def write(self, problem: Any) -> None:
        if self.writer is not None:
            self.writer.writerow([problem.line, problem.message, *problem.cells])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def event(
    type_: Annotated[
        str | None, typer.Argument(metavar="TYPE", help="The event type, e.g. click or signed_up.")
    ] = None,
    email: Annotated[str | None, typer.Option(help="The lead's email address.")] = None,
    at: Annotated[
        str | None, typer.Option(help="When it happened (ISO 8601; default now).")
    ] = None,
    prop: Annotated[
        list[str] | None, typer.Option("--prop", help="A property 'name=value'. Repeatable.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key: stored once per key.")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Events as JSON lines (one object per line); '-' for stdin."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Record events: one from the options, or many from a JSON-lines file."""
    from flowbuilder.store.ingest import record_events

    records: list[tuple[str, Any]] = []
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else _read(file)
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"{file}:{n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    records.append((f"{file}:{n}", IntakeError(f"{file}:{n}", f"not JSON: {exc}")))
    elif type_ is not None:
        data: dict[str, Any] = {"type": type_, "email": email, "properties": {}}
        for item in prop or []:
            name, sep, value = item.partition("=")
            if not sep:
                _error(f"--prop takes 'name=value', not `{item}`")
                raise typer.Exit(USAGE)
            data["properties"][name] = value
        if at is not None:
            try:
                data["at"] = parse_time(at).isoformat()
            except ValueError as exc:
                _error(f"--at: {exc}")
                raise typer.Exit(USAGE) from None
        if key:
            data["idempotency_key"] = key
        records.append(("event", data))
    else:
        err.print("[bold red]error:[/] give an event TYPE with --email, or --file")
        raise typer.Exit(USAGE)
    events, wheres, problems = [], [], []
    for where, data in records:
        try:
            if isinstance(data, IntakeError):
                raise data
            events.append(parse_event(data, where))
            wheres.append(where)
        except IntakeError as exc:
            problems.append(exc)
    engine = _store(db)
    with engine.begin() as conn:
        written = record_events(conn, events, _now(), lambda i: wheres[i])
    problems.extend(written.rejected)
    for p in problems:
        err.print(f"{p.where}: {p.message}", markup=False)
    out.print(
        f"{written.stored} stored, {written.duplicates} duplicates skipped, "
        f"{len(problems)} rejected"
        + (f", {written.leads_created} new leads" if written.leads_created else "")
    )
    raise typer.Exit(PROBLEMS if problems else 0)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"cannot read {path}: {exc}")
        raise typer.Exit(USAGE) from None


def run(
    db: DbOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass over everything due, then exit.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between ticks.", min=0.1)] = 5.0,
    batch: Annotated[int, typer.Option(help="Enrollments claimed per transaction.", min=1)] = 500,
    send_interval: Annotated[
        float, typer.Option(help="Seconds between passes of the sender over the outbox.", min=0.1)
    ] = 1.0,
) -> None:
    """Run the published flows: a tick every INTERVAL seconds and the sender draining the outbox
    (to FLOWBUILDER_SMTP_RELAY, or into the built-in SMTP sink without one), until SIGTERM or Ctrl-C."""
    import asyncio

    from flowbuilder.runtime.scheduler import stop_early_on_signals

    if not once:
        stop_early_on_signals()

    from flowbuilder.config import Settings, SettingsError
    from flowbuilder.mail.runtime import Runtime
    from flowbuilder.runtime.scheduler import run_forever, utcnow
    from flowbuilder.runtime.tick import tick

    engine = _store(db)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _error(str(exc))
        raise typer.Exit(USAGE) from None
    where = settings.smtp_relay or f"the built-in sink on {settings.sink_listen}"
    if once:
        stats = tick(engine, utcnow(), batch=batch)
        out.print(f"tick: {stats}")

        async def send_once() -> object:
            runtime = Runtime(engine, settings)
            await runtime.start_mail()
            try:
                return await runtime.drain()
            finally:
                await runtime.stop()

        try:
            sent = asyncio.run(send_once())
        except (OSError, ValueError) as exc:
            _error(f"cannot send through {where}: {exc}")
            raise typer.Exit(USAGE) from None
        out.print(f"send: {sent}")
        return
    err.print(
        f"flowbuilder running: a tick every {interval:g}s, mail to {where} every "
        f"{send_interval:g}s; Ctrl-C or SIGTERM stops it"
    )
    try:
        run_forever(
            engine,
            interval=interval,
            batch=batch,
            on_tick=lambda s: err.print(f"tick: {s}") if s.decided or s.events else None,
            settings=settings,
            send_interval=send_interval,
            on_send=lambda s: err.print(f"send: {s}"),
        )
    except (OSError, ValueError) as exc:
        _error(f"cannot start the sender ({where}): {exc}")
        raise typer.Exit(USAGE) from None
    err.print("stopped")


DEMO_DB = Path(".flowbuilder") / "demo.db"


def demo(
    examples: Annotated[Path, typer.Argument(help="The workspace to publish.")] = Path(
        "examples/acme"
    ),
    leads: Annotated[int, typer.Option(help="How many leads.", min=1)] = 200,
    days: Annotated[int, typer.Option(help="How many days they live.", min=1)] = 28,
    seed: Annotated[int, typer.Option(help="Same seed, same weeks.")] = 7,
) -> None:
    """Publish a workspace into a fresh demo store (.flowbuilder/demo.db), let a demo population
    live DAYS days on the real runtime — sign-ups, forms, carts, opens, clicks, replies — and print
    what every flow did."""
    from datetime import timedelta

    from dsl.compile import compile_paths
    from dsl.lint import lint
    from flowbuilder import demo as demo_population
    from flowbuilder.cli import _existing
    from flowbuilder.publish import PublishRefused
    from flowbuilder.publish import publish as do_publish

    _existing([examples])
    DEMO_DB.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
    engine = _store(f"sqlite:///{DEMO_DB}")
    today = _now().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    compilation = compile_paths([examples])
    try:
        do_publish(engine, compilation, lint(compilation), start)
    except PublishRefused as refused:
        _error(f"{examples} does not compile: {refused}; run `flowbuilder lint {examples}`")
        raise typer.Exit(PROBLEMS) from None
    with Progress(
        TextColumn("living day"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("demo", total=days)
        demo_population.run(
            engine,
            start,
            days,
            leads,
            seed,
            lambda now: progress.update(task, completed=min(days, (now - start).days)),
        )
    table = Table(title=f"{leads} leads, {days} days, from {start:%Y-%m-%d} ({DEMO_DB})")
    for column in ("flow", "entered", "still in", "emails sent", "how enrollments ended", "goals"):
        table.add_column(column, justify="right" if column in ("entered", "still in") else "left")
    for o in demo_population.outcomes(engine):
        table.add_row(
            o.flow,
            str(o.entered),
            str(o.active),
            "\n".join(f"{n} {step}" for step, n in o.sends.most_common()),
            "\n".join(f"{n} {why}" for why, n in o.endings.most_common()) or "-",
            "\n".join(f"{n} {goal}" for goal, n in o.goals.most_common()) or "-",
        )
    tables.print(table)


def register(app: typer.Typer) -> None:
    app.command()(publish)
    app.command(name="import")(import_leads)
    app.command()(event)
    app.command()(run)
    app.command()(demo)
