"""The event API: Segment-compatible `POST /v1/identify`, `/v1/track` and `/v1/batch`, with
per-workspace API keys, and its OpenAPI document at `/openapi.json`.

A key is sent as HTTP Basic user name (as Segment's libraries do, password empty) or as
`Authorization: Bearer <key>`. Answers: 200 `{"success": true, …}`; 400 / 422 with every problem
named by its field, and nothing stored; 401 without a live key; 413 for a body over 500 kB;
429 over the rate limit.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowbuilder import __version__, intake_api
from flowbuilder.users import check_api_key

MAX_BODY = 500_000


def _key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _error(
    status: int, message: str, problems: list[tuple[str, str]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if problems:
        body["problems"] = [{"field": f, "message": m} for f, m in problems]
    return JSONResponse(body, status_code=status)


async def _call(request: Request, kind: str) -> Response:
    key = _key(request)
    now = datetime.now(UTC)
    if key is None:
        response = _error(
            401, "send an API key: HTTP Basic user name, or Authorization: Bearer <key>"
        )
        response.headers["www-authenticate"] = 'Basic realm="flowbuilder"'
        return response
    limit = request.app.state.limits["api"]
    if not limit.allow(key[:16]):
        response = _error(429, "too many calls with this key; slow down")
        response.headers["retry-after"] = str(limit.retry_after(key[:16]))
        return response
    # The store's work runs in worker threads: while one request waits for the database, the
    # event loop reads and answers the others (the calls of concurrent requests are stored side
    # by side; `intake_api.store` keeps each messageId stored once).
    engine = request.app.state.engine
    if await run_in_threadpool(check_api_key, engine, key, now) is None:
        return _error(401, "the API key is unknown or was revoked")
    raw = await request.body()
    return await run_in_threadpool(_take, engine, kind, raw, now)


def _take(engine: Engine, kind: str, raw: bytes, now: datetime) -> Response:
    """Check the body and store its calls, in one transaction."""
    if len(raw) > MAX_BODY:
        return _error(413, f"the body has {len(raw)} bytes; at most {MAX_BODY}")
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return _error(400, f"the body is not JSON: {e}")
    try:
        calls = intake_api.parse(kind, data)
    except intake_api.PayloadError as e:
        return _error(422, f"nothing was stored: {e}", e.problems)
    stored = intake_api.store_batch(engine, calls, now)
    return JSONResponse({"success": True, "stored": stored.stored, "duplicates": stored.duplicates})


async def identify(request: Request) -> Response:
    return await _call(request, "identify")


async def track(request: Request) -> Response:
    return await _call(request, "track")


async def batch(request: Request) -> Response:
    return await _call(request, "batch")


def openapi_document() -> dict[str, Any]:
    schemas = intake_api.schemas()
    components: dict[str, Any] = {}
    for name, schema in schemas.items():
        for inner, definition in schema.pop("$defs", {}).items():
            components[inner] = definition
        components[name] = schema

    def operation(summary: str, schema: str) -> dict[str, Any]:
        return {
            "summary": summary,
            "security": [{"basic": []}, {"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                },
            },
            "responses": {
                "200": {
                    "description": "Stored (or skipped as a duplicate messageId).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Success"}}
                    },
                },
                "400": {"description": "The body is not JSON."},
                "401": {"description": "No API key, or an unknown or revoked one."},
                "413": {"description": "The body is over 500 kB."},
                "422": {
                    "description": "Problems, each named by its field; nothing was stored.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Problems"}}
                    },
                },
                "429": {"description": "Too many calls with this key."},
            },
        }

    components["Success"] = {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "stored": {"type": "integer"},
            "duplicates": {"type": "integer"},
        },
    }
    components["Problems"] = {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "error": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flowbuilder event API",
            "version": __version__,
            "description": "Segment-compatible identify, track and batch calls.",
        },
        "paths": {
            "/v1/identify": {
                "post": operation("Say who a lead is (traits become attributes)", "Identify")
            },
            "/v1/track": {"post": operation("Record what a lead did (an event)", "Track")},
            "/v1/batch": {"post": operation("Many identify and track calls at once", "Batch")},
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic", "description": "the key as user name"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


routes = [
    Route("/v1/identify", identify, methods=["POST"]),
    Route("/v1/track", track, methods=["POST"]),
    Route("/v1/batch", batch, methods=["POST"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
