"""The Pulse routes: the tracked-link redirect and the beacon of tracked pages.

No rules live here: tokens, views, what a beat may say and when a view closes are
`flowbuilder.pulse`'s. These routes read the store from `app.state.engine` and the settings from
`app.state.settings`; they need no session or CSRF token (each URL carries a signed token) and
set no cookie.

| route | does |
|---|---|
| `GET /pulse/l/<token>` | starts a view, redirects to the page with `?fbv=<view token>`; 400 for a bad link |
| `POST /pulse/v/<view token>` | a heartbeat or the final beacon (JSON, or `navigator.sendBeacon` text): 204 |
| `OPTIONS /pulse/v/<view token>` | the CORS preflight, for the tracked page's origin only |

The beacon answers 204 when it was taken (a replay included), and otherwise a 4xx whose JSON body
says why: 400 not a beat, 403 a forged token or another site, 404 an unknown view, 409 a closed
view or an older beat, 410 an expired token, 413 too large, 415 not JSON or text, 422 a value
out of range, 429 too many (with Retry-After).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from flowbuilder.config import Settings
from flowbuilder.pulse import PulseTokens, Refused, parse_beat, record_beat, start_view
from web.security import RateLimit, client_ip

# The paths these routes serve, for the app's CSRF middleware: each carries its own signed token.
CSRF_EXEMPT = [r"^/pulse/"]
MAX_BEAT_BYTES = 2048
STATUS = {
    "malformed": 400,
    "forged": 403,
    "origin": 403,
    "unknown": 404,
    "closed": 409,
    "stale": 409,
    "expired": 410,
    "invalid": 422,
}
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _tokens(request: Request) -> PulseTokens:
    settings: Settings = request.app.state.settings
    return PulseTokens(settings.secret())


def _limits(request: Request) -> dict[str, RateLimit]:
    """Per view: a heartbeat every few seconds at most; per address: many readers behind one
    office NAT."""
    state = request.app.state
    if not hasattr(state, "pulse_limits"):
        state.pulse_limits = {"view": RateLimit(30, 60.0), "address": RateLimit(1200, 60.0)}
    limits: dict[str, RateLimit] = state.pulse_limits
    return limits


async def follow(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        with _engine(request).begin() as conn:
            url = start_view(conn, _tokens(request), token, _now())
    except Refused as e:
        return PlainTextResponse(
            f"This link is not valid: {e}. Nothing was recorded.", status_code=400, headers=NO_STORE
        )
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


def _refused(kind: str, message: str, cors: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": message, "kind": kind},
        status_code=STATUS.get(kind, 400),
        headers={**NO_STORE, **(cors or {})},
    )


def _cors(request: Request, origin: str) -> dict[str, str] | None:
    """CORS headers for the tracked page's origin; None when the request comes from another."""
    sent = request.headers.get("origin")
    if sent is None:  # not a browser's cross-origin request (or an older browser's beacon)
        return {}
    if sent.lower() != origin:
        return None
    return {"Access-Control-Allow-Origin": sent, "Vary": "Origin"}


async def beacon(request: Request) -> Response:
    now = _now()
    try:
        view_id, origin = _tokens(request).read_view(request.path_params["token"], now)
    except Refused as e:
        return _refused(e.kind, str(e))
    cors = _cors(request, origin)
    if cors is None:
        return _refused("origin", f"beacons of this view come from {origin}")
    if request.method == "OPTIONS":
        return Response(
            status_code=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )
    limits = _limits(request)
    for name, key in (("view", str(view_id)), ("address", client_ip(request))):
        if not limits[name].allow(key):
            return JSONResponse(
                {"error": "too many beacons; slow down", "kind": "rate"},
                status_code=429,
                headers={**cors, "Retry-After": str(limits[name].retry_after(key))},
            )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "text/plain", ""):
        return JSONResponse(
            {"error": f"a beat is JSON (application/json or text/plain), not {content_type}"},
            status_code=415,
            headers=cors,
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BEAT_BYTES:
        return JSONResponse(
            {"error": f"a beat is at most {MAX_BEAT_BYTES} bytes"}, status_code=413, headers=cors
        )
    body = await request.body()
    if len(body) > MAX_BEAT_BYTES:
        return JSONResponse(
            {"error": f"a beat is at most {MAX_BEAT_BYTES} bytes"}, status_code=413, headers=cors
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return _refused("malformed", f"a beat is a JSON object: {e}", cors)
    try:
        beat = parse_beat(data)
        with _engine(request).begin() as conn:
            record_beat(conn, view_id, beat, now)
    except Refused as e:
        return _refused(e.kind, str(e), cors)
    return Response(status_code=204, headers={**NO_STORE, **cors})


routes: list[BaseRoute] = [
    Route("/pulse/l/{token}", follow, methods=["GET"], name="pulse_link"),
    Route("/pulse/v/{token}", beacon, methods=["POST", "OPTIONS"], name="pulse_beacon"),
]
