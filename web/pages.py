"""The pages around the editor: flows, a flow's dashboard and versions, leads, lists, segments,
captured mail and settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from dsl import ir
from flowbuilder import captured, drafts, explore, history, metrics, users
from flowbuilder.drafts import DraftError
from flowbuilder.store.db import reading
from flowbuilder.store.published import current
from web.auth import login_required
from web.render import page
from web.security import MAIL_CSP


def _now() -> datetime:
    return datetime.now(UTC)


def _published_ws(request: Request) -> ir.Workspace | None:
    with reading(request.app.state.engine) as conn:
        published = current(conn)
    return published.ws if published else None


async def home(request: Request) -> Response:
    return RedirectResponse("/flows", status_code=303)


async def health(request: Request) -> Response:
    with reading(request.app.state.engine) as conn:
        conn.exec_driver_sql("SELECT 1")
    return HTMLResponse("ok")


# ---------------------------------------------------------------------------- flows


def _flow_rows(request: Request) -> list[dict[str, Any]]:
    engine = request.app.state.engine
    with reading(engine) as conn:
        compilation, findings = drafts.checked(drafts.texts(conn))
        published = current(conn)
        totals = metrics.overview(conn)
    ws = compilation.workspace
    names = sorted(set(ws.flows if ws else {}) | set(published.versions if published else {}))
    rows = []
    for name in names:
        flow = ws.flows.get(name) if ws else None
        path = drafts.file_of_flow(compilation, name)
        mine = [d for d in findings if d.path == path and _in_flow(compilation, path, name, d.line)]
        version = published.versions.get(name) if published else None
        same = bool(published and flow and published.hashes.get(name) == flow.content_hash())
        if flow is None:
            status = "removed from the draft"
        elif version is None:
            status = "draft, never published"
        elif same:
            status = f"published v{version[1]}"
        else:
            status = f"v{version[1]} published, draft changed"
        rows.append(
            {
                "name": name,
                "title": (flow.title if flow else None) or name,
                "path": path,
                "status": status,
                "live": version is not None,
                "changed": flow is not None and not same,
                "errors": sum(1 for d in mine if d.severity.value == "error"),
                "warnings": sum(1 for d in mine if d.severity.value != "error"),
                "steps": len(flow.steps) if flow else 0,
                "counts": totals.get(name, metrics.Counts()),
            }
        )
    return rows


def _in_flow(compilation: Any, path: str | None, flow: str, line: int) -> bool:
    parsed = compilation.files.get(path) if path else None
    if parsed is None or parsed.tree is None:
        return True
    for decl in parsed.tree.children:
        if getattr(decl, "data", None) == "flow" and str(decl.children[0]) == flow:
            return bool(decl.meta.line <= line <= decl.meta.end_line)
    return False


async def flows(request: Request) -> Response:
    return page(request, "flows.html", {"flows": _flow_rows(request), "section": "flows"})


async def new_flow(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    title = str(form.get("title", ""))
    try:
        drafts.new_flow(request.app.state.engine, name, title, _author(request), _now())
    except DraftError as e:
        return page(
            request,
            "flows.html",
            {
                "flows": _flow_rows(request),
                "section": "flows",
                "new_error": str(e),
                "new_name": name,
                "new_title": title,
            },
            status=422,
        )
    return RedirectResponse(f"/flows/{name}", status_code=303)


def _author(request: Request) -> str | None:
    user = request.scope.get("user")
    return getattr(user, "email", None)


async def dashboard(request: Request) -> Response:
    flow = request.path_params["flow"]
    ws = _published_ws(request)
    order: dict[str, list[str]] = {}
    title = flow
    if ws is not None and flow in ws.flows:
        title = ws.flows[flow].title or flow
        order = {
            s.name: [v.name for v in s.variants]
            for s in ws.flows[flow].steps.values()
            if isinstance(s, ir.Send) and s.variants
        }
    with reading(request.app.state.engine) as conn:
        result = metrics.flow_metrics(conn, flow, _now(), variant_order=order)
    return page(
        request,
        "dashboard.html",
        {
            "flow": flow,
            "title": title,
            "m": result,
            "data": result.as_json(),
            "section": "flows",
            "steps": list(ws.flows[flow].steps) if ws and flow in ws.flows else list(result.steps),
        },
    )


async def versions(request: Request) -> Response:
    flow = request.path_params["flow"]
    engine = request.app.state.engine
    with reading(engine) as conn:
        found = history.versions(conn, flow)
        compilation = drafts.compile_drafts(conn)
        path = drafts.file_of_flow(compilation, flow)
        draft_text = drafts.texts(conn).get(path or "", None)
    if not found and draft_text is None:
        return page(request, "not_found.html", {"what": f"there is no flow '{flow}'"}, status=404)
    options = [("draft", "the draft")] if draft_text is not None else []
    options += [(str(v.number), f"version {v.number}") for v in found]
    numbers = [value for value, _ in options]
    old = request.query_params.get("from") or (numbers[1] if len(numbers) > 1 else numbers[0])
    new = request.query_params.get("to") or numbers[0]
    error = None
    if old not in numbers or new not in numbers:
        error = f"choose versions among: {', '.join(numbers)}"
        old, new = numbers[-1], numbers[0]

    def pick(value: str) -> tuple[str, ir.Flow | None]:
        if value == "draft":
            ws = compilation.workspace
            return draft_text or "", ws.flows.get(flow) if ws else None
        v = next(x for x in found if str(x.number) == value)
        return v.text, v.flow

    old_text, old_flow = pick(old)
    new_text, new_flow = pick(new)
    outcome = None
    ws = compilation.workspace or _published_ws(request)
    if ws is not None and old != new and (old_flow or new_flow):
        start = _now().replace(hour=9, minute=0, second=0, microsecond=0)
        outcome = history.outcome_diff(ws, old_flow, new_flow, start)
    return page(
        request,
        "versions.html",
        {
            "flow": flow,
            "versions": found,
            "options": options,
            "old": old,
            "new": new,
            "lines": history.text_diff(old_text, new_text),
            "outcome": outcome,
            "error": error,
            "section": "flows",
        },
    )


# ---------------------------------------------------------------------------- leads


async def leads(request: Request) -> Response:
    q = request.query_params
    ws = _published_ws(request)
    page_number = int(q["page"]) if q.get("page", "").isdigit() else 1
    with reading(request.app.state.engine) as conn:
        found = explore.search(
            conn,
            text=q.get("q", "")[:200],
            list_name=q.get("list") or None,
            stage=q.get("stage") or None,
            segment=q.get("segment") or None,
            ws=ws,
            now=_now(),
            page=page_number,
        )
        stages = explore.stages(conn)
        lists = [g.name for g in explore.lists_overview(conn, ws, _now(), days=1)]
    context = {
        "found": found,
        "q": q.get("q", ""),
        "list": q.get("list", ""),
        "stage": q.get("stage", ""),
        "segment": q.get("segment", ""),
        "stages": stages,
        "lists": lists,
        "segments": sorted(ws.segments) if ws else [],
        "section": "leads",
    }
    if "hx-request" in request.headers:
        return page(request, "_lead_rows.html", context)
    return page(request, "leads.html", context)


async def lead(request: Request) -> Response:
    raw = request.path_params["lead"]
    if not raw.isdigit():
        return page(request, "not_found.html", {"what": f"there is no lead '{raw}'"}, status=404)
    ws = _published_ws(request)
    with reading(request.app.state.engine) as conn:
        story = explore.story(conn, int(raw), ws, _now())
        previews = captured.for_outbox(conn, [e["id"] for e in story.emails]) if story else {}
    if story is None:
        return page(request, "not_found.html", {"what": f"there is no lead {raw}"}, status=404)
    return page(request, "lead.html", {"story": story, "previews": previews, "section": "leads"})


# ---------------------------------------------------------------------------- lists and segments


async def lists(request: Request) -> Response:
    ws = _published_ws(request)
    with reading(request.app.state.engine) as conn:
        groups = explore.lists_overview(conn, ws, _now())
    return page(request, "lists.html", {"groups": groups, "section": "lists"})


async def segments(request: Request) -> Response:
    ws = _published_ws(request)
    with reading(request.app.state.engine) as conn:
        groups = explore.segments_overview(conn, ws, _now())
    conditions = {}
    if ws is not None:
        from dsl.ir_text import expr_text

        conditions = {name: expr_text(s.condition) for name, s in ws.segments.items()}
    return page(
        request,
        "segments.html",
        {"groups": groups, "conditions": conditions, "section": "segments"},
    )


# ---------------------------------------------------------------------------- captured mail


async def mail(request: Request) -> Response:
    q = request.query_params
    page_number = int(q["page"]) if q.get("page", "").isdigit() else 1
    with reading(request.app.state.engine) as conn:
        messages, total = captured.listing(conn, page_number)
    return page(
        request,
        "mail.html",
        {"messages": messages, "total": total, "page": page_number, "section": "mail"},
    )


async def mail_message(request: Request) -> Response:
    raw = request.path_params["message"]
    message = None
    if raw.isdigit():
        with reading(request.app.state.engine) as conn:
            message = captured.read(conn, int(raw))
    if message is None:
        return page(request, "not_found.html", {"what": f"there is no message {raw}"}, status=404)
    return page(request, "mail_message.html", {"m": message, "section": "mail"})


async def mail_html(request: Request) -> Response:
    raw = request.path_params["message"]
    message = None
    if raw.isdigit():
        with reading(request.app.state.engine) as conn:
            message = captured.read(conn, int(raw))
    if message is None:
        return HTMLResponse("no such message", status_code=404)
    body = message.html or "<pre>" + _escape(message.text or "") + "</pre>"
    response = HTMLResponse(body)
    response.headers["content-security-policy"] = MAIL_CSP
    response.headers["x-frame-options"] = "SAMEORIGIN"
    return response


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------- settings


async def settings_page(
    request: Request, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    engine = request.app.state.engine
    with reading(engine) as conn:
        people = users.users(conn)
        keys = users.api_keys(conn)
        ws_files = sorted(drafts.texts(conn))
    s = request.app.state.settings
    return page(
        request,
        "settings.html",
        {
            "people": people,
            "keys": keys,
            "files": ws_files,
            "database": _redacted(s.database_url),
            "workspace": s.workspace,
            "public_url": s.public_url,
            "section": "settings",
            **(context or {}),
        },
        status=status,
    )


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return url


async def settings_get(request: Request) -> Response:
    return await settings_page(request)


async def api_key_new(request: Request) -> Response:
    form = await request.form()
    try:
        key = users.add_api_key(
            request.app.state.engine, str(form.get("name", "")), _now(), _author(request)
        )
    except users.UserError as e:
        return await settings_page(request, {"key_error": str(e)}, status=422)
    return await settings_page(request, {"new_key": key})


async def api_key_revoke(request: Request) -> Response:
    raw = request.path_params["key"]
    if not raw.isdigit() or not users.revoke_api_key(request.app.state.engine, int(raw), _now()):
        return await settings_page(
            request, {"key_error": f"there is no live key {raw}"}, status=404
        )
    return await settings_page(request, {"key_done": "The key was revoked."})


routes = [
    Route("/", login_required(home), methods=["GET"]),
    Route("/healthz", health, methods=["GET"]),
    Route("/flows", login_required(flows), methods=["GET"]),
    Route("/flows", login_required(new_flow), methods=["POST"]),
    Route("/flows/{flow}/dashboard", login_required(dashboard), methods=["GET"]),
    Route("/flows/{flow}/versions", login_required(versions), methods=["GET"]),
    Route("/leads", login_required(leads), methods=["GET"]),
    Route("/leads/{lead}", login_required(lead), methods=["GET"]),
    Route("/lists", login_required(lists), methods=["GET"]),
    Route("/segments", login_required(segments), methods=["GET"]),
    Route("/mail", login_required(mail), methods=["GET"]),
    Route("/mail/{message}", login_required(mail_message), methods=["GET"]),
    Route("/mail/{message}/html", login_required(mail_html), methods=["GET"]),
    Route("/settings", login_required(settings_get), methods=["GET"]),
    Route("/settings/api-keys", login_required(api_key_new), methods=["POST"]),
    Route("/settings/api-keys/{key}/revoke", login_required(api_key_revoke), methods=["POST"]),
]
