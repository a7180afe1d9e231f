"""CSRF, the Content-Security-Policy and the other security headers, and rate limits.

CSRF is starlette-csrf's double-submit cookie. htmx and the canvas send the token in the
`x-csrftoken` header; a plain HTML form (the login page, a hosted form without JavaScript) sends it
as the `csrftoken` field, which this subclass reads from the body and hands on untouched.
"""

from __future__ import annotations

import http.cookies
import re
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette_csrf.middleware import CSRFMiddleware

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
CSRF_FIELD = "csrftoken"
MAX_FORM_BYTES = 1_000_000

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
# A captured email is shown in a sandboxed frame: its own inline styles, no script, no remote
# images (they would report an open to the sender's tracker).
MAIL_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'"
)


class FormCSRFMiddleware(CSRFMiddleware):
    """starlette-csrf, also accepting the token from an urlencoded form's `csrftoken` field.

    A request without the cookie gets one made here, before the page is rendered, so the page can
    put the same token in its forms (`csrf_token(request)`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope)
        if self._url_is_exempt(request.url):
            # Public endpoints (tracking, one-click unsubscribe, the beacon, the API) need no
            # token and get no cookie: a tracked link sets nothing in the reader's browser.
            await self.app(scope, receive, send)
            return
        if self.cookie_name not in request.cookies and request.method in self.safe_methods:
            token = self._generate_csrf_token()
            scope = dict(scope)
            cookies = request.headers.get("cookie")
            jar = (
                f"{cookies}; {self.cookie_name}={token}"
                if cookies
                else f"{self.cookie_name}={token}"
            )
            scope["headers"] = [
                *[(k, v) for k, v in scope["headers"] if k != b"cookie"],
                (b"cookie", jar.encode("latin-1")),
            ]
            send = self._setting_cookie(send, token)
            request = Request(scope)
        content_type = request.headers.get("content-type", "")
        if (
            request.method in self.safe_methods
            or CSRF_HEADER in request.headers
            or not content_type.startswith("application/x-www-form-urlencoded")
        ):
            await super().__call__(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM_BYTES:
                break
        token = parse_qs(body.decode("latin-1"), max_num_fields=200).get(CSRF_FIELD, [""])[0]
        if token:
            scope = dict(scope)
            scope["headers"] = [*scope["headers"], (CSRF_HEADER.encode(), token.encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await super().__call__(scope, replay, send)

    def _setting_cookie(self, send: Send, token: str) -> Send:
        cookie = http.cookies.SimpleCookie()
        cookie[self.cookie_name] = token
        cookie[self.cookie_name]["path"] = self.cookie_path
        cookie[self.cookie_name]["samesite"] = self.cookie_samesite
        if self.cookie_secure:
            cookie[self.cookie_name]["secure"] = True
        header = cookie.output(header="").strip()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", header)
            await send(message)

        return sending


def csrf_token(request: Request) -> str:
    """The token a page puts in its forms: the one in the request's (possibly new) cookie."""
    return request.cookies.get(CSRF_COOKIE, "")


class SecurityHeaders:
    """A strict CSP and the usual hardening headers on every response that sets none itself."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("cross-origin-opener-policy", "same-origin")
                headers.setdefault("permissions-policy", "camera=(), microphone=(), geolocation=()")
                if self.https:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, with_headers)


class RateLimit:
    """At most `limit` hits per key in any `window` seconds (in this process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        hits = self.hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self.hits) > 50_000:  # forget idle keys rather than grow without bound
            for stale in [k for k, v in self.hits.items() if not v or v[-1] <= now - self.window]:
                del self.hits[stale]
        return True

    def retry_after(self, key: str) -> int:
        hits = self.hits.get(key)
        if not hits:
            return 0
        return max(1, int(self.window - (time.monotonic() - hits[0])) + 1)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def exempt(paths: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in paths]
