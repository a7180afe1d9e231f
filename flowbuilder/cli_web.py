"""The commands of the web app: `serve` and `user add`."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from flowbuilder.config import Settings, SettingsError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
USAGE = 2

user_app = typer.Typer(name="user", help="People who sign in to the web app.", no_args_is_help=True)


def _settings(db: str | None, workspace: Path | None) -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}")
        raise typer.Exit(USAGE) from None
    changes: dict[str, object] = {}
    if db:
        changes["database_url"] = db
    if workspace is not None:
        changes["workspace"] = workspace
    return settings.model_copy(update=changes)


def _now() -> datetime:
    return datetime.now(UTC)


def serve(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=1, max=65535)] = 8000,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL (default: $FLOWBUILDER_DATABASE_URL; with --demo, .flowbuilder/web.db).",
        ),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(help="The folder of .flow files to load into the editor (once per store)."),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="The embedded demo: publish the workspace (default examples/acme), let 200 demo "
            "leads live 28 days, and make a demo login.",
        ),
    ] = False,
    tick: Annotated[
        float,
        typer.Option(
            help="Seconds between runtime ticks in this process, which also runs the sender "
            "(and, without a relay, the built-in SMTP sink); 0 runs no runtime here.",
            min=0,
        ),
    ] = 5.0,
) -> None:
    """Serve the web app (flows, canvas editor, metrics, leads, forms and the event API)."""
    import uvicorn

    from flowbuilder import embedded
    from flowbuilder.store.db import open_store
    from web.app import create_app

    if demo and workspace is None and Path("examples/acme").is_dir():
        workspace = Path("examples/acme")
    settings = _settings(db, workspace)
    if demo and db is None and "FLOWBUILDER_DATABASE_URL" not in os.environ:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings = settings.model_copy(
            update={"database_url": embedded.embedded_url(settings.data_dir)}
        )
    if settings.workspace is not None and not settings.workspace.is_dir():
        err.print(f"[bold red]error:[/] the workspace folder {settings.workspace} does not exist")
        raise typer.Exit(USAGE)
    engine = open_store(settings.database_url)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("preparing the store", total=1.0)
        done = embedded.prepare(
            engine,
            settings.workspace,
            _now(),
            with_demo=demo,
            progress=lambda what, share: progress.update(task, description=what, completed=share),
        )
    for line in done:
        err.print(line)
    app = create_app(settings, engine)
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
    out.print(f"\nflowbuilder is at [bold]{url}[/]")
    if demo:
        login = embedded.demo_login(engine, settings.data_dir, _now())
        out.print(f"sign in as [bold]{login.email}[/] with the password [bold]{login.password}[/]")
    out.print("Ctrl-C stops it.\n")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    runtime = None
    # A send job that overlaps itself is skipped by design; that is no news for the console.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if tick > 0:
        from flowbuilder.mail.runtime import start_runtime_thread

        try:
            runtime = start_runtime_thread(engine, settings, interval=tick)
        except OSError as e:
            err.print(
                f"[yellow]the runtime did not start ({escape(str(e))}); serving without it — "
                "run `flowbuilder run` elsewhere, or free the SMTP sink's address "
                f"{settings.sink_listen}[/]"
            )
    try:
        server.run()
    finally:
        if runtime is not None:
            runtime.stop()


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The person's email: what they sign in with.")],
    name: Annotated[str, typer.Option(help="The name the app shows.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    db: Annotated[str | None, typer.Option("--db", help="Database URL.")] = None,
) -> None:
    """Create a user who can sign in to the web app (asks for the password twice)."""
    from flowbuilder.store.db import open_store
    from flowbuilder.users import UserError, add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings(db, None)
    engine = open_store(settings.database_url)
    try:
        account = add_user(engine, email, password, _now(), name=name)
    except UserError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}")
        raise typer.Exit(USAGE) from None
    out.print(f"added {account.email}; they can sign in at {settings.public_url}/login")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(user_app)
