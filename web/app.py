"""The Starlette app: `create_app(settings)` wires routes, templates, static files and security.

>>> from flowbuilder.config import Settings
>>> app = create_app(Settings(database_url="sqlite://", secret_key="x" * 32))
>>> app.state.settings.public_url
'http://127.0.0.1:8000'
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from flowbuilder.config import Settings
from flowbuilder.observability import store_registry
from flowbuilder.store.db import open_store
from flowbuilder.store.limits import SharedLimit
from web import api, auth, editor, health, hosted_forms, pages, panels
from web.editor import Problem
from web.render import STATIC, make_templates, page
from web.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    FormCSRFMiddleware,
    RateLimit,
    SecurityHeaders,
)

SESSION_COOKIE = "flowbuilder_session"
SESSION_DAYS = 14
# Routes that carry their own proof instead of a CSRF token: the event API (an API key); the email
# routes name theirs (the RFC 8058 one-click unsubscribe POST, sent by mail clients without
# cookies, with a signed token in its URL) in `web.tracking.CSRF_EXEMPT`.
API_EXEMPT = [r"^/v1/"]


# Route modules written alongside the app: the email tracking, unsubscribe and preference-center
# routes, and the Pulse document tracking. Each lists its `routes` and, in `CSRF_EXEMPT`, the paths
# that carry a signed token of their own instead of a CSRF token.
EXTRA_ROUTES = ("web.tracking", "web.pulse")


def extra_routes() -> tuple[list[BaseRoute], list[str]]:
    """The routes (and CSRF exemptions) of the route modules that are installed."""
    routes: list[BaseRoute] = []
    exempt: list[str] = []
    for name in EXTRA_ROUTES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        routes += list(getattr(module, "routes", []))
        exempt += list(getattr(module, "CSRF_EXEMPT", []))
    return routes, exempt


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if request.url.path.startswith("/api/"):
        return exc.response()
    return page(request, "not_found.html", {"what": exc.body["error"]}, status=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(("/api/", "/v1/")):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    what = "this page does not exist" if exc.status_code == 404 else str(exc.detail)
    return page(request, "not_found.html", {"what": what}, status=exc.status_code)


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """The web app on `settings` (and on `engine`, or a store opened from the settings)."""
    store = engine if engine is not None else open_store(settings.database_url)
    https = settings.public_url.startswith("https://")
    more_routes, extra_exempt = extra_routes()
    routes: list[BaseRoute] = [
        *auth.routes,
        *pages.routes,
        *editor.routes,
        *panels.routes,
        *api.routes,
        *hosted_forms.routes,
        *health.routes,
        *more_routes,
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = [
        Middleware(health.CountResponses),
        Middleware(SecurityHeaders, https=https),
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret(),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_DAYS * 86400,
            same_site="lax",
            https_only=https,
        ),
        Middleware(
            FormCSRFMiddleware,
            secret=settings.secret(),
            exempt_urls=[re.compile(p) for p in [*API_EXEMPT, *extra_exempt]],
            cookie_name=CSRF_COOKIE,
            header_name=CSRF_HEADER,
            cookie_secure=https,
            cookie_samesite="strict",
        ),
    ]
    handlers: dict[Any, Any] = {Problem: _problem, HTTPException: _http_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.engine = store
    app.state.settings = settings
    app.state.templates = make_templates()
    app.state.metrics = store_registry(store)
    app.state.limits = {
        # Shared by every web process of the store: a guesser gains nothing from spreading
        # attempts over processes or hosts.
        "login": SharedLimit(store, "login", 10, 60.0),
        "forms": SharedLimit(store, "forms", 10, 60.0),
        # Kept in each process: a check in the store per event-API call would cost more than
        # the flood it holds back.
        "api": RateLimit(6000, 60.0),
    }
    return app
