"""`/metrics`, `/healthz` and `/readyz` of the web app (docs/operations.md).

`/metrics` is Prometheus's text format: the backlog of the store, the runtime's counters when
this process ticks (`flowbuilder serve --tick`), and the app's responses by status class. It shows
counts only, never a lead; with `FLOWBUILDER_METRICS_TOKEN` set it asks for
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowbuilder.health import Check, readiness
from flowbuilder.observability import REGISTRY

RESPONSES = Counter(
    "flowbuilder_http_responses",
    "Responses of the web app, by area (api: /v1/…, pages: the rest) and status class.",
    ["area", "status"],
    registry=REGISTRY,
)


def _json(check: Check) -> Response:
    return Response(check.body(), status_code=check.status, media_type="application/json")


async def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse(
                {"error": "send Authorization: Bearer <FLOWBUILDER_METRICS_TOKEN>"},
                status_code=401,
            )
    body = generate_latest(request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return _json(Check(True, {"web": "answering"}))


async def readyz(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    check = await run_in_threadpool(readiness, request.app.state.engine)
    return _json(check)


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]


class CountResponses:
    """ASGI middleware: count every response by area and status class (2xx, 4xx, 5xx …)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        area = "api" if scope.get("path", "").startswith("/v1/") else "pages"
        status = 500  # an exception that escapes every handler is answered with a 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            RESPONSES.labels(area, f"{status // 100}xx").inc()
