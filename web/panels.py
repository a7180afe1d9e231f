"""The editor's server-rendered parts, swapped in by htmx: a step's property panel, the keyboard
outline editor, and publishing with its impact preview.

A successful change answers with the new part and an `HX-Trigger: flowChanged` event that makes
the canvas reload; a refused one answers 4xx with the part showing the error where it belongs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dsl import ir
from dsl.diagnostics import StaleRevisionError
from dsl.edit import AddArm, Connect, DeleteStep, EditError, EditOp, RemoveArm, RenameStep, apply
from flowbuilder import canvas, drafts, history, step_form
from flowbuilder.publish import PublishRefused
from flowbuilder.store.db import reading
from flowbuilder.store.published import current
from web.auth import login_required
from web.editor import Loaded, Problem, author, describe, load
from web.render import page

STALE = (
    "This flow was changed since this panel was loaded. Nothing was applied; "
    "the canvas shows the current version."
)


def _now() -> datetime:
    return datetime.now(UTC)


def _changed(response: Response, revision: str) -> Response:
    response.headers["hx-trigger"] = json.dumps({"flowChanged": {"revision": revision}})
    return response


def choices(loaded: Loaded, flow: str) -> step_form.Choices:
    ws = loaded.compilation.workspace
    if ws is None:
        return step_form.Choices([], [], [], [])
    goals = [g.name for g in ws.flows[flow].goals] if flow in ws.flows else []
    return step_form.Choices(
        sorted(ws.templates), sorted(ws.lists), sorted(f for f in ws.flows if f != flow), goals
    )


def _load(request: Request) -> tuple[str, Loaded]:
    flow = request.path_params["flow"]
    return flow, load(request, flow)


# ---------------------------------------------------------------------------- property panel


async def panel_get(request: Request) -> Response:
    try:
        flow, loaded = _load(request)
        step = request.path_params["step"]
        data = step_form.panel(loaded.draft.text, loaded.path, flow, step, choices(loaded, flow))
    except (Problem, EditError) as e:
        return page(request, "_panel_missing.html", {"error": str(e)}, status=404)
    return _panel(request, flow, loaded, data)


def _panel(
    request: Request,
    flow: str,
    loaded: Loaded,
    data: step_form.Panel,
    status: int = 200,
    message: str | None = None,
) -> Response:
    node = next(
        (
            n
            for n in canvas.model(
                loaded.draft.text, loaded.path, flow, loaded.compilation, loaded.findings
            ).nodes
            if n.name == data.step
        ),
        None,
    )
    return page(
        request,
        "_panel.html",
        {
            "flow": flow,
            "panel": data,
            "node": node,
            "revision": loaded.draft.revision,
            "label": canvas.LABELS.get(data.kind, data.kind),
            "message": message,
        },
        status=status,
    )


async def panel_post(request: Request) -> Response:
    flow, loaded = _load(request)
    step = request.path_params["step"]
    form = {k: str(v) for k, v in (await request.form()).items()}
    base = form.pop("revision", "")
    form.pop("csrftoken", None)
    choice = choices(loaded, flow)
    if base != loaded.draft.revision:
        try:
            data = step_form.panel(loaded.draft.text, loaded.path, flow, step, choice)
        except EditError as e:
            return page(request, "_panel_missing.html", {"error": str(e)}, status=409)
        return _changed(_panel(request, flow, loaded, data, 409, STALE), loaded.draft.revision)
    submitted = step_form.submit(loaded.draft.text, loaded.path, flow, step, form, choice)
    if submitted.text is None:
        return _panel(request, flow, loaded, submitted.panel, 422)
    if submitted.ops:
        try:
            drafts.save(
                request.app.state.engine,
                loaded.path,
                base,
                submitted.text,
                describe(submitted.ops),
                author(request),
                _now(),
            )
        except StaleRevisionError:
            return _changed(
                _panel(request, flow, loaded, submitted.panel, 409, STALE), loaded.draft.revision
            )
    after = load(request, flow)
    name = form.get("name", step).strip() or step
    data = step_form.panel(after.draft.text, after.path, flow, name, choices(after, flow))
    saved = "Saved." if submitted.ops else "Nothing changed."
    return _changed(_panel(request, flow, after, data, 200, saved), after.draft.revision)


# ---------------------------------------------------------------------------- outline editor


def _outline(
    request: Request,
    flow: str,
    loaded: Loaded,
    status: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    model = canvas.model(loaded.draft.text, loaded.path, flow, loaded.compilation, loaded.findings)
    return page(
        request,
        "_outline.html",
        {
            "flow": flow,
            "model": model,
            "revision": loaded.draft.revision,
            "palette": canvas.PALETTE,
            "error": error,
            "done": done,
        },
        status=status,
    )


async def outline_get(request: Request) -> Response:
    flow, loaded = _load(request)
    return _outline(request, flow, loaded)


def _outline_ops(form: dict[str, str], flow: str, loaded: Loaded) -> tuple[list[EditOp], str]:
    action = form.get("action", "")
    step = form.get("step", "").strip()
    if action == "connect":
        port = form.get("port") or None
        target = form.get("target") or None
        return (
            [Connect(flow=flow, step=step, port=None if port == "next" else port, target=target)],
            f"Connected {step}{'' if port in (None, 'next') else ' ' + str(port)} to {target or 'the next step'}.",
        )
    if action == "rename":
        new = form.get("new_name", "").strip()
        return [RenameStep(flow=flow, old=step, new=new)], f"Renamed {step} to {new}."
    if action == "delete":
        return [DeleteStep(flow=flow, step=step)], f"Deleted {step}."
    if action == "add_arm":
        return [
            AddArm(
                flow=flow,
                step=step,
                condition=form.get("condition", "").strip() or None,
                target=form.get("target", ""),
            )
        ], f"Added an arm to {step}."
    if action == "remove_arm":
        port = form.get("port", "")
        return [RemoveArm(flow=flow, step=step, port=port)], f"Removed {port} of {step}."
    if action == "add":
        kind = form.get("kind", "")
        try:
            name, ops = canvas.add_step_ops(
                loaded.draft.text, loaded.path, flow, kind, loaded.compilation.workspace, None
            )
        except canvas.CanvasError as e:
            raise Problem(422, str(e)) from None
        wanted = form.get("name", "").strip()
        if wanted and wanted != name:
            ops.append(RenameStep(flow=flow, old=name, new=wanted))
            name = wanted
        return ops, f"Added step {name} ({canvas.LABELS[kind]})."
    raise Problem(422, f"unknown outline action '{action}'")


async def outline_post(request: Request) -> Response:
    flow, loaded = _load(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if form.get("revision") != loaded.draft.revision:
        return _changed(_outline(request, flow, loaded, 409, STALE), loaded.draft.revision)
    try:
        ops, done = _outline_ops(form, flow, loaded)
        text = loaded.draft.text
        for op in ops:
            text = apply(text, op, _rev(text), loaded.path).text
    except (EditError, Problem, ValueError) as e:
        message = e.diagnostic.message if isinstance(e, EditError) else str(e)
        return _outline(request, flow, loaded, 422, message)
    drafts.save(
        request.app.state.engine,
        loaded.path,
        loaded.draft.revision,
        text,
        describe(ops),
        author(request),
        _now(),
    )
    after = load(request, flow)
    return _changed(_outline(request, flow, after, 200, done=done), after.draft.revision)


def _rev(text: str) -> str:
    from dsl.edit import revision

    return revision(text)


# ---------------------------------------------------------------------------- publishing


def _impact(request: Request, flow: str) -> dict[str, Any]:
    engine = request.app.state.engine
    now = _now()
    context: dict[str, Any] = {"flow": flow, "errors": [], "plan": None, "outcome": None}
    try:
        result = drafts.publish_drafts(engine, now, dry_run=True)
    except PublishRefused as refused:
        context["errors"] = refused.diagnostics
        return context
    context["plan"] = result.plan
    ws = result.compilation.workspace
    with reading(engine) as conn:
        published = current(conn)
    if ws is not None:
        old: ir.Flow | None = published.ws.flows.get(flow) if published else None
        new = ws.flows.get(flow)
        if old is not None or new is not None:
            start = now.replace(hour=9, minute=0, second=0, microsecond=0)
            context["outcome"] = history.outcome_diff(ws, old, new, start)
    return context


async def publish_preview(request: Request) -> Response:
    flow = request.path_params["flow"]
    return page(request, "_publish.html", _impact(request, flow))


async def publish_now(request: Request) -> Response:
    flow = request.path_params["flow"]
    try:
        result = drafts.publish_drafts(request.app.state.engine, _now())
    except PublishRefused as refused:
        return page(
            request,
            "_publish.html",
            {"flow": flow, "errors": refused.diagnostics, "plan": None, "outcome": None},
            status=422,
        )
    response = page(request, "_published.html", {"flow": flow, "plan": result.plan})
    loaded = load(request, flow)
    return _changed(response, loaded.draft.revision)


routes = [
    Route("/flows/{flow}/steps/{step}/panel", login_required(panel_get), methods=["GET"]),
    Route("/flows/{flow}/steps/{step}/panel", login_required(panel_post), methods=["POST"]),
    Route("/flows/{flow}/outline", login_required(outline_get), methods=["GET"]),
    Route("/flows/{flow}/outline", login_required(outline_post), methods=["POST"]),
    Route("/flows/{flow}/publish", login_required(publish_preview), methods=["GET"]),
    Route("/flows/{flow}/publish", login_required(publish_now), methods=["POST"]),
]
