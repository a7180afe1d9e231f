"""Templates: the Jinja2 environment, its filters, and the page and partial responses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from web.security import csrf_token

HERE = Path(__file__).parent
STATIC = HERE / "static"
NAV = [
    ("flows", "Flows", "/flows"),
    ("leads", "Leads", "/leads"),
    ("lists", "Lists", "/lists"),
    ("segments", "Segments", "/segments"),
    ("mail", "Captured mail", "/mail"),
    ("settings", "Settings", "/settings"),
]


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime(fmt) + (" UTC" if "%H" in fmt else "")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (datetime.now(UTC) - value.astimezone(UTC)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            n = int(seconds // size)
            return f"{n} {unit} ago" if n >= 0 else f"in {-n} {unit}"
    return "just now"


def _percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _json_attr(value: Any) -> Markup:
    """JSON for a `data-` attribute (escaped by the attribute quoting)."""
    return Markup.escape(json.dumps(value, ensure_ascii=False, default=str))


def vendor(name: str) -> str:
    """The URL of a vendored file by its name without the version: `htmx.min.js`."""
    stem, _, ext = name.partition(".")
    for file in sorted((STATIC / "vendor").glob(f"{stem}-[0-9]*.{ext}")):
        return f"/static/vendor/{file.name}"
    raise FileNotFoundError(f"no vendored {name} in {STATIC / 'vendor'}")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["percent"] = _percent
    env.filters["json_attr"] = _json_attr
    env.globals["vendor"] = vendor
    env.globals["nav"] = NAV
    env.globals["csrf_token"] = csrf_token
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


def page(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    values = {"user": request.scope.get("user"), **(context or {})}
    response = templates.TemplateResponse(request, name, values, status_code=status)
    assert isinstance(response, HTMLResponse)
    return response
