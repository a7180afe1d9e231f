"""The command that makes Pulse tracked links: `flowbuilder pulse-link`."""

from __future__ import annotations

from typing import Annotated

import typer

from flowbuilder.cli_store import USAGE, DbOption, _error, _store, out


def pulse_link(
    document: Annotated[
        str, typer.Option(help='The document\'s name, as conditions test it: viewed("pricing").')
    ],
    url: Annotated[str, typer.Option(help="The page the link leads to (http:// or https://).")],
    email: Annotated[str | None, typer.Option(help="The lead the link is for.")] = None,
    message: Annotated[
        str | None,
        typer.Option(
            help="The outbox key of the email the link is in, so views count for its step."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Print a tracked link for one lead: it redirects to URL and records how long and how far
    the page is read (the page needs the Pulse script; see docs/pulse.md)."""
    from sqlalchemy import select

    from flowbuilder.config import Settings, SettingsError
    from flowbuilder.intake import normalize_email
    from flowbuilder.pulse import check_document, check_url, tracked_link
    from flowbuilder.store.db import reading
    from flowbuilder.store.schema import Lead

    if email is None:
        _error("name the lead with --email")
        raise typer.Exit(USAGE)
    try:
        address = normalize_email(email)
        check_document(document)
        check_url(url)
        settings = Settings.from_env()
    except (ValueError, SettingsError) as exc:
        _error(str(exc))
        raise typer.Exit(USAGE) from None
    with reading(_store(db)) as conn:
        lead_id = conn.execute(select(Lead.id).where(Lead.email == address)).scalar()
    if lead_id is None:
        _error(f"no lead has the email {address}; import it first (flowbuilder import)")
        raise typer.Exit(USAGE)
    out.print(tracked_link(settings, int(lead_id), document, url, message), markup=False)


def register(app: typer.Typer) -> None:
    app.command(name="pulse-link")(pulse_link)
