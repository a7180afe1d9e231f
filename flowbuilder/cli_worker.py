"""The commands that run flowbuilder as a fleet: `worker` and `migrate`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from flowbuilder.worker import Role

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
OK = 0
PROBLEMS = 1
USAGE = 2

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $FLOWBUILDER_DATABASE_URL, else sqlite:///flowbuilder.db).",
    ),
]


def _error(message: str) -> typer.Exit:
    err.print("[bold red]error:[/] " + escape(message))
    return typer.Exit(USAGE)


def _listen(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise _error(f"--metrics: `{value}` is not PORT or HOST:PORT, such as 0.0.0.0:9464")
    return (host if sep and host else "127.0.0.1"), int(port)


def _named(url: str, name: str) -> str:
    """The URL with the worker's name as PostgreSQL's `application_name`, so that
    `pg_stat_activity` shows which worker holds which session."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return url
    application = f"flowbuilder {name}"[:63]
    named = parsed.update_query_dict({"application_name": application})
    return named.render_as_string(hide_password=False)


def _open(url: str, lease: float) -> Engine:
    """The store, migrated to this code's schema; a store newer than this code is refused."""
    from flowbuilder.health import known_revision, schema_head, schema_revision
    from flowbuilder.store.db import make_engine, migrate

    engine = make_engine(url, lease_seconds=lease)
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        revision = schema_revision(engine)
        if revision is not None and not known_revision(revision):
            raise _error(
                f"the store {shown} is at schema revision {revision}, newer than this "
                f"flowbuilder (which knows up to {schema_head()}); upgrade flowbuilder on this host"
            )
        migrate(engine)
    except OperationalError as e:
        raise _error(f"cannot open the database {shown}: {e.orig}") from None
    return engine


def worker(
    role: Annotated[
        Role,
        typer.Option(help="engine: the tick; sender: the outbox over SMTP; all: both."),
    ] = Role.all,
    db: DbOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between ticks.", min=0.05)] = 5.0,
    send_interval: Annotated[
        float, typer.Option(help="Seconds between passes of the sender.", min=0.05)
    ] = 1.0,
    batch: Annotated[
        int, typer.Option(help="Enrollments or events claimed per transaction.", min=1)
    ] = 500,
    metrics: Annotated[
        str | None,
        typer.Option(
            help="Serve /metrics, /healthz and /readyz on HOST:PORT (or PORT on 127.0.0.1).",
            metavar="HOST:PORT",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The worker's name in logs and in pg_stat_activity (default host:pid)."),
    ] = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json: one object per line.")
    ] = "text",
    wake: Annotated[
        bool,
        typer.Option(help="On PostgreSQL, wake at once on new events and messages (LISTEN)."),
    ] = True,
    stall: Annotated[
        float,
        typer.Option(help="Seconds without progress before /healthz reports a failure.", min=1),
    ] = 300.0,
) -> None:
    """Run a worker: the engine's tick, the sender, or both, against the store at
    FLOWBUILDER_DATABASE_URL; run as many as you like, on as many hosts (docs/operations.md)."""
    from flowbuilder.config import Settings, SettingsError
    from flowbuilder.observability import configure_logging
    from flowbuilder.runtime.scheduler import stop_early_on_signals
    from flowbuilder.worker import WorkerOptions, default_name, run_worker

    stop_early_on_signals()
    if log_format not in ("text", "json"):
        raise _error(f"--log-format: `{log_format}` is not text or json")
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        raise _error(str(e)) from None
    options = WorkerOptions(
        role=role,
        interval=interval,
        send_interval=send_interval,
        batch=batch,
        stall=stall,
        metrics=_listen(metrics),
        name=name or default_name(),
        wake=wake,
    )
    configure_logging(log_format, worker=options.name, role=role.value)
    url = db or settings.database_url
    engine = _open(_named(url, options.name), settings.claim_lease_seconds)
    if engine.dialect.name == "sqlite":
        err.print(
            "SQLite has one writer at a time: workers take turns; use PostgreSQL to share the work"
        )
    try:
        run_worker(engine, settings, options)
    except OSError as e:
        raise _error(f"cannot start the worker: {e}") from None
    finally:
        engine.dispose()


def migrate(
    db: DbOption = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 1 when the store needs migrating."),
    ] = False,
) -> None:
    """Bring the store's schema to this version of flowbuilder (one process at a time: others
    wait), or with --check say whether it is current."""
    from flowbuilder.config import Settings, SettingsError
    from flowbuilder.health import known_revision, schema_head, schema_revision
    from flowbuilder.store.db import make_engine, migrate

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        raise _error(str(e)) from None
    url = db or settings.database_url
    engine = make_engine(url)
    shown = make_url(url).render_as_string(hide_password=True)
    head = schema_head()
    try:
        revision = schema_revision(engine)
        if revision is not None and not known_revision(revision):
            raise _error(
                f"the store is at schema revision {revision}, newer than this flowbuilder "
                f"(which knows up to {head})"
            )
        if check:
            if revision == head:
                out.print(f"{shown}: schema current ({head})")
                return
            out.print(f"{shown}: schema at {revision or 'nothing'}, {head} available")
            raise typer.Exit(PROBLEMS)
        if revision == head:
            out.print(f"{shown}: schema already current ({head})")
            return
        migrate(engine)
        out.print(f"{shown}: migrated from {revision or 'nothing'} to {head}")
    except OperationalError as e:
        raise _error(f"cannot open the database {shown}: {e.orig}") from None
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(migrate)
