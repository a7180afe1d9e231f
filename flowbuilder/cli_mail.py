"""The email commands: preview, send-test, outbox, consent and receive."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, insert, select, update

from flowbuilder.cli_store import DbOption, _error, _store

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
tables = Console(highlight=False, width=None if out.is_terminal else 150)
USAGE = 2
PROBLEMS = 1

EmailOption = Annotated[
    str, typer.Option("--email", help="The lead whose data fills the template.")
]
WorkspaceOption = Annotated[
    Path,
    typer.Option(help="The workspace folder the template is declared in."),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _settings() -> Any:
    from flowbuilder.config import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        _error(str(exc))
        raise typer.Exit(USAGE) from None


def _templates(workspace: Path) -> Any:
    from dsl.compile import compile_paths
    from flowbuilder.cli import _existing
    from flowbuilder.mail.templates import TemplateSet

    _existing([workspace])
    compilation = compile_paths([workspace])
    if compilation.workspace is None or not compilation.ok:
        for d in compilation.diagnostics:
            err.print(d.concise(), markup=False)
        _error(f"{workspace} does not compile; run `flowbuilder lint {workspace}`")
        raise typer.Exit(PROBLEMS)
    return TemplateSet(compilation.workspace, workspace if workspace.is_dir() else workspace.parent)


def _lead(engine: Engine, email: str) -> Any:
    from flowbuilder.intake import normalize_email
    from flowbuilder.mail.personalize import LeadView
    from flowbuilder.store.db import reading
    from flowbuilder.store.schema import Lead, Membership

    try:
        address = normalize_email(email)
    except ValueError as exc:
        _error(f"--email: {exc}")
        raise typer.Exit(USAGE) from None
    with reading(engine) as conn:
        row = conn.execute(select(Lead).where(Lead.email == address)).first()
        if row is None:
            _error(f"no lead has the address {address}; import it or record an event for it first")
            raise typer.Exit(USAGE)
        lists = frozenset(
            conn.execute(select(Membership.list_name).where(Membership.lead_id == row.id)).scalars()
        )
    return LeadView(
        id=row.id,
        email=row.email,
        attributes=row.attributes or {},
        stage=row.stage,
        score=row.score,
        tags=frozenset(row.tags or ()),
        lists=lists,
        timezone=row.timezone,
        account=row.account,
    )


def preview(
    template: Annotated[str, typer.Argument(help="The template to render.")],
    email: EmailOption,
    workspace: WorkspaceOption = Path("."),
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML part to this file.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Render a template for a real lead: subject, preheader and text part, exactly as it would be
    sent (footer, tracking links and all); nothing is sent or recorded."""
    from flowbuilder.mail.message import Spec, compose
    from flowbuilder.mail.sandbox import RenderError
    from flowbuilder.mail.sender import mail_config

    ts = _templates(workspace)
    engine = _store(db)
    lead = _lead(engine, email)
    spec = Spec(outbox_id=0, key=f"preview/{template}/{lead.id}", template=template, flow="preview")
    try:
        message = compose(ts, mail_config(_settings()), spec, lead, _now())
    except RenderError as exc:
        _error(f"{template} cannot be sent to {lead.email}: {exc}")
        raise typer.Exit(PROBLEMS) from None
    from email import message_from_bytes, policy

    parsed = message_from_bytes(message.data, policy=policy.default)
    out.print(f"[bold]Subject:[/] {escape(message.subject)}")
    out.print(f"[bold]From:[/] {escape(str(parsed['From']))}    [bold]To:[/] {escape(lead.email)}")
    out.print(f"[bold]Size:[/] {len(message.data):,} bytes, {len(message.links)} tracked links")
    out.print()
    text = parsed.get_body(("plain",))
    if text is not None:
        out.print(text.get_content(), markup=False)
    if html is not None:
        body = parsed.get_body(("html",))
        if body is None:
            _error(f"template {template} has no HTML part")
            raise typer.Exit(PROBLEMS)
        html.write_text(body.get_content(), encoding="utf-8")
        err.print(f"wrote the HTML part to {html}")


def send_test(
    template: Annotated[str, typer.Argument(help="The template to send.")],
    email: EmailOption,
    to: Annotated[str, typer.Option("--to", help="Where the test goes (not the lead).")],
    workspace: WorkspaceOption = Path("."),
    db: DbOption = None,
) -> None:
    """Render a template for a real lead and send it to another address, marked as a test.

    A test message goes through the same building and the same relay (or the built-in sink), is
    kept in the outbox as a test, and never counts in a flow's metrics: its opens and clicks are
    not recorded, and its unsubscribe link changes nothing."""
    from uuid import uuid4

    from flowbuilder.intake import normalize_email
    from flowbuilder.mail.relay import Relay
    from flowbuilder.mail.sender import Sender, SenderOptions
    from flowbuilder.mail.sink import SinkHandler, serve
    from flowbuilder.store.schema import Outbox

    try:
        address = normalize_email(to)
    except ValueError as exc:
        _error(f"--to: {exc}")
        raise typer.Exit(USAGE) from None
    ts = _templates(workspace)
    if template not in ts.ws.templates:
        _error(
            f"there is no template '{template}'; templates: {', '.join(sorted(ts.ws.templates))}"
        )
        raise typer.Exit(USAGE)
    settings = _settings()
    engine = _store(db)
    lead = _lead(engine, email)
    now = _now()
    with engine.begin() as conn:
        outbox_id = conn.execute(
            insert(Outbox)
            .values(
                key=f"test/{uuid4().hex}",
                lead_id=lead.id,
                flow="test",
                step=None,
                channel="email",
                template=template,
                payload={"template": template},
                state="pending",
                attempts=0,
                test=True,
                recipient=address,
                created_at=now,
                updated_at=now,
            )
            .returning(Outbox.id)
        ).scalar_one()

    async def send() -> Any:
        server = None
        if settings.smtp_relay:
            relay = Relay.parse(settings.smtp_relay)
        else:
            server = await serve(SinkHandler(engine), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            relay = Relay("127.0.0.1", port)
        sender = Sender(
            engine,
            settings,
            relay,
            options=SenderOptions(connections=1, max_attempts=1),
            templates=ts,
        )
        try:
            return await sender.drain(only=[outbox_id])
        finally:
            await sender.close()
            if server is not None:
                server.close()
                await server.wait_closed()

    try:
        asyncio.run(send())
    except (OSError, ValueError) as exc:
        _error(f"cannot send: {exc}")
        raise typer.Exit(PROBLEMS) from None
    with engine.connect() as conn:
        row = conn.execute(select(Outbox).where(Outbox.id == outbox_id)).one()
    where = settings.smtp_relay or "the built-in sink (see `flowbuilder outbox`)"
    if row.state == "sent":
        out.print(f"test message {outbox_id} sent to {address} through {where}: {row.subject}")
        return
    _error(f"test message {outbox_id} was not sent ({row.state}): {row.last_error}")
    raise typer.Exit(PROBLEMS)


def outbox(
    message: Annotated[
        int | None, typer.Argument(help="Show this message (its outbox id) in full.")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            help="Only messages in this state: pending, sending, sent, held, failed, unknown."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many of the newest messages.", min=1)] = 50,
    tests: Annotated[bool, typer.Option("--tests", help="Only test messages.")] = False,
    retry: Annotated[
        bool,
        typer.Option("--retry", help="Send MESSAGE again (it is `unknown`, `failed` or `held`)."),
    ] = False,
    db: DbOption = None,
) -> None:
    """List the outbox — sent, captured, held and failed messages — or show one message."""
    from flowbuilder.mail.outbox import STATES
    from flowbuilder.store.schema import Outbox

    if state is not None and state not in STATES:
        _error(f"--state `{state}` is not one of {', '.join(STATES)}")
        raise typer.Exit(USAGE)
    engine = _store(db)
    if message is not None:
        if retry:
            _retry(engine, message)
            return
        _show(engine, message)
        return
    if retry:
        _error("--retry needs the MESSAGE to send again")
        raise typer.Exit(USAGE)
    query = select(Outbox).where(Outbox.channel == "email")
    if state is not None:
        query = query.where(Outbox.state == state)
    if tests:
        query = query.where(Outbox.test.is_(True))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(Outbox.id.desc()).limit(limit)).all()
    table = Table(title=f"outbox: the newest {len(rows)} email messages")
    for column in ("id", "state", "to", "flow / step", "template", "subject or reason", "updated"):
        table.add_column(column)
    for r in rows:
        detail = r.subject if r.state == "sent" else (r.last_error or "")
        table.add_row(
            str(r.id),
            r.state + (" (test)" if r.test else "") + (" ?" if r.uncertain else ""),
            r.recipient or "",
            f"{r.flow} / {r.step or '-'}",
            r.template or "",
            detail or "",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    tables.print(table)


def _show(engine: Engine, message: int) -> None:
    from flowbuilder.store.schema import CapturedMessage, Outbox

    with engine.connect() as conn:
        row = conn.execute(select(Outbox).where(Outbox.id == message)).first()
        captured = conn.execute(
            select(CapturedMessage)
            .where(CapturedMessage.outbox_id == message)
            .order_by(CapturedMessage.id.desc())
        ).first()
    if row is None:
        _error(f"there is no outbox message {message}")
        raise typer.Exit(USAGE)
    for name, value in (
        ("id", row.id),
        ("key", row.key),
        ("state", row.state + (" (test)" if row.test else "")),
        ("to", row.recipient),
        ("flow / step", f"{row.flow} / {row.step or '-'}"),
        ("template", row.template),
        ("subject", row.subject),
        ("message-id", row.message_id),
        ("attempts", row.attempts),
        ("relay", row.relay),
        ("sent at", row.sent_at),
        ("next attempt", row.next_attempt_at),
        ("reason", row.last_error),
        ("may have arrived twice", "yes" if row.uncertain else None),
    ):
        if value is not None:
            out.print(f"[bold]{name}:[/] {escape(str(value))}")
    if captured is not None:
        out.print(f"\n[bold]captured by the sink[/] at {captured.captured_at:%Y-%m-%d %H:%M:%S}:\n")
        sys.stdout.write(captured.raw.decode("utf-8", "replace").replace("\r\n", "\n"))


def _retry(engine: Engine, message: int) -> None:
    from flowbuilder.store.schema import Outbox

    with engine.begin() as conn:
        row = conn.execute(select(Outbox).where(Outbox.id == message)).first()
        if row is None:
            _error(f"there is no outbox message {message}")
            raise typer.Exit(USAGE)
        if row.state not in ("unknown", "failed", "held"):
            _error(
                f"message {message} is {row.state}; only unknown, failed or held messages are sent again"
            )
            raise typer.Exit(USAGE)
        conn.execute(
            update(Outbox)
            .where(Outbox.id == message)
            .values(
                state="pending",
                next_attempt_at=None,
                attempts=0,
                uncertain=row.uncertain or row.state == "unknown",
                updated_at=_now(),
            )
        )
    out.print(f"message {message} is pending again; the sender sends it at its next pass")


def consent(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    source: Annotated[
        str, typer.Option(help="Where it was given: a form, a call, an import file.")
    ],
    wording: Annotated[str, typer.Option(help="The exact text the person agreed to.")],
    who: Annotated[
        str | None, typer.Option(help="Who gave it (default: the lead's own address).")
    ] = None,
    scope: Annotated[
        str, typer.Option(help="marketing (advertising email) or night (21:00-08:00, Korea).")
    ] = "marketing",
    at: Annotated[str | None, typer.Option(help="When (ISO 8601; default now).")] = None,
    withdraw: Annotated[
        bool, typer.Option("--withdraw", help="Record a withdrawal instead.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Record a consent (or its withdrawal) for a lead: who, when, from which source, to which
    wording. Advertising email in marketing flows is sent only with a current consent record."""
    from flowbuilder.intake import parse_time
    from flowbuilder.mail.consent import SCOPES, record_consent

    if scope not in SCOPES:
        _error(f"--scope `{scope}` is not one of {', '.join(SCOPES)}")
        raise typer.Exit(USAGE)
    try:
        when = parse_time(at) if at else _now()
    except ValueError as exc:
        _error(f"--at: {exc}")
        raise typer.Exit(USAGE) from None
    engine = _store(db)
    lead = _lead(engine, email)
    try:
        with engine.begin() as conn:
            consent_id = record_consent(
                conn,
                lead.id,
                scope=scope,
                granted=not withdraw,
                who=who or lead.email,
                source=source,
                wording=wording,
                at=when,
                now=_now(),
            )
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(USAGE) from None
    verb = "withdrawal" if withdraw else "consent"
    out.print(f"{scope} {verb} #{consent_id} recorded for {lead.email}")


def receive(
    files: Annotated[
        list[Path], typer.Argument(help="Messages (.eml) to take in; '-' reads one from stdin.")
    ],
    rcpt: Annotated[
        str | None,
        typer.Option(help="The address it was sent to (a VERP bounce+… or reply+… address)."),
    ] = None,
    sender: Annotated[str, typer.Option("--from", help="The envelope sender.")] = "",
    db: DbOption = None,
) -> None:
    """Take in bounces, complaints and replies from files, as the inbound receiver would (for an
    MTA that pipes mail to a command)."""
    from flowbuilder.mail.inbound import handle
    from flowbuilder.mail.sender import mail_config

    config = mail_config(_settings())
    engine = _store(db)
    for f in files:
        try:
            raw = sys.stdin.buffer.read() if str(f) == "-" else f.read_bytes()
        except OSError as exc:
            _error(f"cannot read {f}: {exc.strerror}")
            raise typer.Exit(USAGE) from None
        with engine.begin() as conn:
            handled = handle(conn, config, sender, rcpt or "", raw, _now())
        target = f"message {handled.outbox_id}" if handled.outbox_id else "no known message"
        out.print(
            f"{f}: {handled.kind} ({handled.note}); {target}"
            + (f"; recorded `{handled.event}`" if handled.event else "")
        )


def register(app: typer.Typer) -> None:
    app.command()(preview)
    app.command(name="send-test")(send_test)
    app.command()(outbox)
    app.command()(consent)
    app.command()(receive)
