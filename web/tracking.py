"""The email routes: open pixel, click redirect, unsubscribe (RFC 8058 one-click and the
confirmation page) and the preference center.

These routes hold no rules of their own: tokens, attribution, machine-open detection and what an
unsubscribe changes live in `flowbuilder.mail`. They read the store from `app.state.engine` and
the settings from `app.state.settings`, and need neither a session nor a CSRF token: each URL
carries a signed token, and mail clients send the one-click POST without cookies.

| route | does |
|---|---|
| `GET /t/o/<token>.gif` | records an open, answers a 1×1 GIF (always, so no image breaks) |
| `GET /t/c/<token>` | records a click, redirects to the link the message had; 400 for a bad token |
| `POST /u/<token>` | unsubscribes: the one-click body `List-Unsubscribe=One-Click`, or the page's form |
| `GET /u/<token>` | a confirmation page; never unsubscribes |
| `GET`, `POST /p/<token>` | the preference center: topics, frequency, an optional reason |
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from dsl import ir
from flowbuilder.config import Settings
from flowbuilder.mail import preferences
from flowbuilder.mail.engagement import Visit, click_target, record_open
from flowbuilder.mail.gate import FREQUENCIES
from flowbuilder.mail.tracking import BadToken, Tokens, Urls
from flowbuilder.store.db import reading
from flowbuilder.store.published import current

# The paths these routes serve, for the app's CSRF middleware: each carries its own signed token.
CSRF_EXEMPT = [r"^/t/", r"^/u/", r"^/p/"]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
FREQUENCY_LABELS = {
    "all": "Every email we send",
    "weekly": "At most one a week",
    "monthly": "At most one a month",
}
RESUBSCRIBE = "I want to receive marketing email again."
assert set(FREQUENCY_LABELS) == set(FREQUENCIES)


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _tokens(request: Request) -> Tokens:
    settings: Settings = request.app.state.settings
    return Tokens(settings.secret())


def _urls(request: Request) -> Urls:
    settings: Settings = request.app.state.settings
    return Urls(settings.public_url)


def _visit(request: Request) -> Visit:
    client = request.client
    return Visit(request.headers.get("user-agent"), client.host if client else None, request.method)


def _invalid(request: Request, what: str) -> Response:
    return templates.TemplateResponse(
        request,
        "mail/done.html",
        {"title": "This link is not valid", "message": what, "preferences_url": None},
        status_code=400,
        headers=NO_STORE,
    )


async def open_pixel(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        with _engine(request).begin() as conn:
            record_open(conn, _tokens(request), token, _visit(request), _now())
    except BadToken:
        pass  # an image must never break: answer the pixel, record nothing
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        with _engine(request).begin() as conn:
            url = click_target(conn, _tokens(request), token, _visit(request), _now())
    except BadToken as e:
        return _invalid(request, f"{e}. Nothing was recorded and you were not redirected.")
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


def _reader(request: Request) -> preferences.Reader | Response:
    try:
        outbox_id = _tokens(request).read_reader(request.path_params["token"])
    except BadToken as e:
        return _invalid(request, str(e))
    with reading(_engine(request)) as conn:
        who = preferences.reader(conn, outbox_id)
    if who is None:
        return _invalid(request, "the message this link belongs to no longer exists")
    return who


def _sender(request: Request) -> str:
    with reading(_engine(request)) as conn:
        published = current(conn)
    ws = published.ws if published is not None else ir.Workspace()
    if ws.policy.sender is not None:
        return ws.policy.sender.name
    return ws.title or ws.name or "us"


def _workspace(request: Request) -> ir.Workspace:
    with reading(_engine(request)) as conn:
        published = current(conn)
    return published.ws if published is not None else ir.Workspace()


async def unsubscribe_page(request: Request) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    token = request.path_params["token"]
    return templates.TemplateResponse(
        request,
        "mail/unsubscribe.html",
        {
            "reader": who,
            "sender": _sender(request),
            "reasons": preferences.REASONS,
            "action": request.url.path,
            "preferences_url": _urls(request).preferences(token),
        },
        headers=NO_STORE,
    )


async def unsubscribe_post(request: Request) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if not one_click and form.get("confirm") != "yes":
        return PlainTextResponse(
            "The form needs `List-Unsubscribe=One-Click` (RFC 8058) or `confirm=yes`.",
            status_code=400,
            headers=NO_STORE,
        )
    reason = str(form.get("reason") or "") or None
    try:
        with _engine(request).begin() as conn:
            changed = preferences.unsubscribe(
                conn,
                who,
                _now(),
                method="one-click" if one_click else "page",
                reason=reason,
                evidence={"user_agent": request.headers.get("user-agent", "")[:200]},
            )
    except preferences.ReaderError as e:
        return PlainTextResponse(str(e), status_code=400, headers=NO_STORE)
    if one_click:
        return PlainTextResponse("Unsubscribed.", headers=NO_STORE)
    message = (
        f"{who.email} will receive no more marketing email."
        if changed
        else "This was a test message: nothing changed."
    )
    token = request.path_params["token"]
    return templates.TemplateResponse(
        request,
        "mail/done.html",
        {
            "title": "You are unsubscribed" if changed else "Nothing changed",
            "message": message,
            "preferences_url": _urls(request).preferences(token),
        },
        headers=NO_STORE,
    )


def _preferences_page(
    request: Request,
    who: preferences.Reader,
    *,
    error: str | None = None,
    saved: bool = False,
    status: int = 200,
) -> Response:
    token = request.path_params["token"]
    context: dict[str, Any] = {
        "reader": who,
        "topics": preferences.topics(_workspace(request)),
        "frequencies": FREQUENCY_LABELS,
        "reasons": preferences.REASONS,
        "action": request.url.path,
        "unsubscribe_action": _urls(request).unsubscribe(token).removeprefix(_urls(request).base),
        "resubscribe_wording": RESUBSCRIBE,
        "error": error,
        "saved": saved,
    }
    return templates.TemplateResponse(
        request, "mail/preferences.html", context, status_code=status, headers=NO_STORE
    )


async def preferences_page(request: Request) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    return _preferences_page(request, who)


async def preferences_post(request: Request) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    form = await request.form()
    action = form.get("action")
    try:
        with _engine(request).begin() as conn:
            if action == "resubscribe":
                if form.get("agree") != "yes":
                    raise preferences.ReaderError("`agree`: tick the box to subscribe again")
                preferences.resubscribe(conn, who, _now(), wording=RESUBSCRIBE)
            elif action == "save":
                preferences.update_preferences(
                    conn,
                    who,
                    _workspace(request),
                    _now(),
                    topics_kept=[str(t) for t in form.getlist("topics")],
                    frequency=str(form.get("frequency") or "all"),
                    reason=str(form.get("reason") or "") or None,
                )
            else:
                raise preferences.ReaderError("`action`: expected `save` or `resubscribe`")
    except preferences.ReaderError as e:
        return _preferences_page(request, who, error=str(e), status=400)
    with reading(_engine(request)) as conn:
        fresh = preferences.reader(conn, who.outbox_id) or who
    return _preferences_page(request, fresh, saved=not who.test)


routes: list[BaseRoute] = [
    Route("/t/o/{token}.gif", open_pixel, methods=["GET"], name="mail_open"),
    Route("/t/c/{token}", click, methods=["GET", "HEAD"], name="mail_click"),
    Route("/u/{token}", unsubscribe_page, methods=["GET"], name="mail_unsubscribe_page"),
    Route("/u/{token}", unsubscribe_post, methods=["POST"], name="mail_unsubscribe"),
    Route("/p/{token}", preferences_page, methods=["GET"], name="mail_preferences"),
    Route("/p/{token}", preferences_post, methods=["POST"], name="mail_preferences_save"),
]
