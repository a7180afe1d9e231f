"""Signing in and out, and the guard every private route wears.

The session is Starlette's signed cookie holding the user's id; each request checks that the user
still exists and is active. Pages send a visitor who is not signed in to the login page; the JSON
and partial routes answer 401.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from flowbuilder.store.db import reading
from flowbuilder.users import Account, account, authenticate
from web.render import page
from web.security import client_ip

Handler = Callable[[Request], Awaitable[Response]]


def current_user(request: Request) -> Account | None:
    user_id = request.session.get("user")
    if not isinstance(user_id, int):
        return None
    with reading(request.app.state.engine) as conn:
        return account(conn, user_id)


def login_required(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            wants_page = request.method == "GET" and "hx-request" not in request.headers
            if wants_page and not request.url.path.startswith("/api/"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            return JSONResponse(
                {"error": "sign in first: this needs a signed-in user"}, status_code=401
            )
        request.scope["user"] = user
        return await handler(request)

    return guarded


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/flows"


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return page(request, "login.html", {"next": request.query_params.get("next", "")})


async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")) or None)
    limit = request.app.state.limits["login"]
    key = f"{client_ip(request)}|{email.lower()}"
    if not limit.allow(key):
        wait = limit.retry_after(key)
        response = page(
            request,
            "login.html",
            {
                "error": f"Too many sign-in attempts. Try again in {wait} seconds.",
                "email": email,
                "next": target,
            },
            status=429,
        )
        response.headers["retry-after"] = str(wait)
        return response
    if not email or not password:
        return page(
            request,
            "login.html",
            {"error": "Enter your email and your password.", "email": email, "next": target},
            status=400,
        )
    user = authenticate(request.app.state.engine, email, password, datetime.now(UTC))
    if user is None:
        return page(
            request,
            "login.html",
            {"error": "That email and password do not match.", "email": email, "next": target},
            status=401,
        )
    request.session.clear()
    request.session["user"] = user.id
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
