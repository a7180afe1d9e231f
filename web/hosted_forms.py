"""Hosted forms: the public page of every form the published workspace declares, and its submission.

Spam resistance: a honeypot field people never see (a filled one is thanked and dropped) and a rate
limit per address. The page works without JavaScript: the CSRF token travels as a form field.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dsl import ir
from flowbuilder import forms
from flowbuilder.store.db import reading
from flowbuilder.store.published import current
from web.render import page
from web.security import CSRF_FIELD, client_ip

HONEYPOT = "website"


def _form(request: Request) -> tuple[ir.Workspace | None, ir.Form | None]:
    name = request.path_params["form"]
    with reading(request.app.state.engine) as conn:
        published = current(conn)
    if published is None:
        return None, None
    return published.ws, published.ws.forms.get(name)


def _missing(request: Request) -> Response:
    return page(
        request,
        "form_missing.html",
        {"name": request.path_params["form"]},
        status=404,
    )


async def show(request: Request) -> Response:
    ws, form = _form(request)
    if ws is None or form is None:
        return _missing(request)
    return page(request, "form.html", {"form": form, "values": {}, "errors": {}, "ws": ws})


async def submit(request: Request) -> Response:
    ws, form = _form(request)
    if ws is None or form is None:
        return _missing(request)
    limit = request.app.state.limits["forms"]
    key = client_ip(request)
    if not limit.allow(key):
        response = page(
            request,
            "form.html",
            {
                "form": form,
                "values": {},
                "errors": {
                    "form": "Too many submissions from your address; try again in a minute."
                },
                "ws": ws,
            },
            status=429,
        )
        response.headers["retry-after"] = str(limit.retry_after(key))
        return response
    data = {k: str(v) for k, v in (await request.form()).items() if k != CSRF_FIELD}
    if data.get(HONEYPOT, "").strip():
        return page(request, "form_thanks.html", {"form": form})
    try:
        forms.submit(request.app.state.engine, ws, form, data, datetime.now(UTC), "hosted form")
    except forms.FormErrors as e:
        return page(
            request,
            "form.html",
            {"form": form, "values": data, "errors": e.errors, "ws": ws},
            status=422,
        )
    return page(request, "form_thanks.html", {"form": form})


routes = [
    Route("/f/{form}", show, methods=["GET"]),
    Route("/f/{form}", submit, methods=["POST"]),
]
