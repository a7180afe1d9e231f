"""The flow editor: its page, and the JSON the canvas talks to.

Every change the canvas makes is a list of semantic edit operations sent with the revision it was
made against; the text is changed by `dsl.edit`, stored with its history by `flowbuilder.drafts`,
and the new model goes back. A stale revision answers 409 with the current model; a malformed
payload or an edit that cannot apply answers 4xx and stores nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark import Tree
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dsl.compile import Compilation
from dsl.diagnostics import Diagnostic, StaleRevisionError
from dsl.edit import (
    AddArm,
    AddStep,
    Connect,
    DeleteStep,
    EditError,
    EditOp,
    MoveStep,
    RemoveArm,
    RenameStep,
    SetProperty,
    apply_many,
    parse_op,
)
from dsl.parse import parse_tree
from flowbuilder import canvas, drafts, lead_path, metrics
from flowbuilder.drafts import DraftError
from flowbuilder.store.db import reading
from flowbuilder.store.published import current
from web.auth import login_required
from web.render import page

MAX_OPS = 500
MAX_TEXT = 2_000_000


@dataclass
class Loaded:
    path: str
    draft: drafts.Draft
    compilation: Compilation
    findings: list[Diagnostic]


class Problem(Exception):
    """An answer other than success: a status and a JSON body."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, **extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def _now() -> datetime:
    return datetime.now(UTC)


def author(request: Request) -> str | None:
    user = request.scope.get("user")
    return getattr(user, "email", None)


def load(request: Request, flow: str) -> Loaded:
    with reading(request.app.state.engine) as conn:
        compilation, findings = drafts.checked(drafts.texts(conn))
        path = drafts.file_of_flow(compilation, flow)
        if path is None:
            raise Problem(404, f"there is no flow '{flow}' in the workspace")
        draft = drafts.draft(conn, path)
    return Loaded(path, draft, compilation, findings)


def flow_json(request: Request, loaded: Loaded, flow: str) -> dict[str, Any]:
    model = canvas.model(
        loaded.draft.text, loaded.path, flow, loaded.compilation, loaded.findings
    ).as_json()
    with reading(request.app.state.engine) as conn:
        published = current(conn)
    version = published.versions.get(flow) if published else None
    ws = loaded.compilation.workspace
    draft_hash = ws.flows[flow].content_hash() if ws and flow in ws.flows else None
    model.update(
        undo=loaded.draft.undo,
        redo=loaded.draft.redo,
        published={
            "version": version[1] if version else None,
            "current": bool(published and draft_hash and published.hashes.get(flow) == draft_hash),
        },
        errors=sum(1 for d in loaded.findings if d.severity.value == "error"),
        warnings=sum(1 for d in loaded.findings if d.severity.value == "warning"),
    )
    return model


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_TEXT + 10_000:
        raise Problem(413, f"the request is too large ({len(raw)} bytes; at most {MAX_TEXT})")
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Problem(400, f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise Problem(400, f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _revision(data: dict[str, Any]) -> str:
    value = data.get("revision")
    if not isinstance(value, str) or len(value) != 64:
        raise Problem(
            422,
            "`revision`: give the revision of the text the change was made on "
            "(64 hex characters, from the model)",
            field="revision",
        )
    return value


def _conflict(request: Request, flow: str, error: StaleRevisionError) -> JSONResponse:
    loaded = load(request, flow)
    return JSONResponse(
        {
            "error": "This flow was changed since you loaded it (in another tab, by someone "
            "else, or in the text). Nothing was applied; the current version is shown.",
            "detail": str(error),
            "model": flow_json(request, loaded, flow),
        },
        status_code=409,
    )


def describe(ops: list[EditOp]) -> str:
    """A change's label in the undo history."""
    if len(ops) > 1 and all(isinstance(op, MoveStep) for op in ops):
        return f"arrange {len(ops)} steps"
    words = []
    for op in ops:
        match op:
            case AddStep():
                words.append(f"add step {op.name}")
            case Connect():
                words.append(
                    f"connect {op.step}{'.' + op.port if op.port else ''} → {op.target or 'next'}"
                )
            case SetProperty():
                words.append(f"set {op.key} of {op.step}")
            case DeleteStep():
                words.append(f"delete step {op.step}")
            case RenameStep():
                words.append(f"rename {op.old} to {op.new}")
            case MoveStep():
                words.append(f"move {op.step}")
            case AddArm():
                words.append(f"add an arm to {op.step}")
            case RemoveArm():
                words.append(f"remove {op.port} of {op.step}")
    unique = list(dict.fromkeys(words))
    return ", ".join(unique[:3]) + (f" and {len(unique) - 3} more" if len(unique) > 3 else "")


def commit(
    request: Request, flow: str, loaded: Loaded, base: str, new_text: str, label: str
) -> JSONResponse:
    """Store a new text made from revision `base` and answer with the new model."""
    drafts.save(
        request.app.state.engine, loaded.path, base, new_text, label, author(request), _now()
    )
    return JSONResponse(flow_json(request, load(request, flow), flow))


def apply_ops(
    request: Request, flow: str, base: str, ops: list[EditOp], label: str
) -> JSONResponse:
    loaded = load(request, flow)
    if loaded.draft.revision != base:
        raise StaleRevisionError(expected=base, actual=loaded.draft.revision)
    try:
        result = apply_many(loaded.draft.text, ops, base, loaded.path)
    except EditError as e:
        d = e.diagnostic
        raise Problem(
            422, d.message, hint=d.hint, code=d.code, line=d.span.line, col=d.span.col
        ) from None
    return commit(request, flow, loaded, base, result.text, label)


def guarded(handler: Any) -> Any:
    """Turn Problem and StaleRevisionError into their answers."""

    async def run(request: Request) -> Response:
        flow = request.path_params.get("flow", "")
        try:
            response: Response = await handler(request)
            return response
        except Problem as p:
            return p.response()
        except StaleRevisionError as e:
            return _conflict(request, flow, e)
        except DraftError as e:
            return JSONResponse({"error": str(e)}, status_code=422)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return login_required(run)


# ---------------------------------------------------------------------------- routes


async def editor_page(request: Request) -> Response:
    flow = request.path_params["flow"]
    try:
        loaded = load(request, flow)
    except Problem as p:
        return page(request, "not_found.html", {"what": p.body["error"]}, status=404)
    with reading(request.app.state.engine) as conn:
        published = current(conn)
    fixtures = lead_path.fixtures(request.app.state.settings.workspace, flow)
    return page(
        request,
        "editor.html",
        {
            "flow": flow,
            "path": loaded.path,
            "palette": canvas.PALETTE,
            "fixtures": fixtures,
            "published": published.versions.get(flow) if published else None,
            "section": "flows",
        },
    )


async def model_json(request: Request) -> Response:
    flow = request.path_params["flow"]
    return JSONResponse(flow_json(request, load(request, flow), flow))


async def post_ops(request: Request) -> Response:
    flow = request.path_params["flow"]
    data = await _body(request)
    base = _revision(data)
    raw = data.get("ops")
    if not isinstance(raw, list) or not raw:
        raise Problem(422, "`ops`: give a non-empty list of edit operations", field="ops")
    if len(raw) > MAX_OPS:
        raise Problem(422, f"`ops`: at most {MAX_OPS} operations at once; got {len(raw)}")
    ops: list[EditOp] = []
    for i, item in enumerate(raw):
        try:
            op = parse_op(item)
        except ValidationError as e:
            problems = [
                {
                    "field": ".".join(
                        ["ops", str(i), *[str(p) for p in err["loc"][1:]]]
                        + (["op"] if err["type"].startswith("union_tag") else [])
                    ),
                    "message": err["msg"],
                }
                for err in e.errors()
            ]
            first = problems[0]
            raise Problem(
                422, f"`{first['field']}`: {first['message']}", problems=problems
            ) from None
        if op.flow != flow:
            raise Problem(422, f"`ops.{i}.flow`: this editor edits flow '{flow}', not '{op.flow}'")
        ops.append(op)
    return apply_ops(request, flow, base, ops, describe(ops))


async def post_add(request: Request) -> Response:
    flow = request.path_params["flow"]
    data = await _body(request)
    base = _revision(data)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in canvas.LABELS:
        raise Problem(422, f"`kind`: one of {', '.join(canvas.LABELS)}; got {kind!r}", field="kind")
    at = _point(data)
    loaded = load(request, flow)
    try:
        name, ops = canvas.add_step_ops(
            loaded.draft.text, loaded.path, flow, kind, loaded.compilation.workspace, at
        )
    except canvas.CanvasError as e:
        raise Problem(422, str(e)) from None
    response = apply_ops(request, flow, base, ops, f"add step {name}")
    response.headers["x-added-step"] = name
    return response


def _point(data: dict[str, Any]) -> tuple[int, int] | None:
    x, y = data.get("x"), data.get("y")
    if x is None and y is None:
        return None
    if not all(isinstance(v, int | float) and abs(v) < 1_000_000 for v in (x, y)):
        raise Problem(422, "`x` and `y`: give the position as two numbers", field="x")
    assert isinstance(x, int | float) and isinstance(y, int | float)
    return round(x), round(y)


async def post_paste(request: Request) -> Response:
    flow = request.path_params["flow"]
    data = await _body(request)
    base = _revision(data)
    steps = data.get("steps")
    if (
        not isinstance(steps, list)
        or not steps
        or len(steps) > 100
        or not all(
            isinstance(s, dict)
            and isinstance(s.get("name"), str)
            and isinstance(s.get("action"), str)
            for s in steps
        )
    ):
        raise Problem(
            422, '`steps`: give 1 to 100 copied steps, each {"name": …, "action": …}', field="steps"
        )
    loaded = load(request, flow)
    try:
        names, ops = canvas.paste_ops(
            loaded.draft.text,
            loaded.path,
            flow,
            [(s["name"], s["action"]) for s in steps],
            _point(data),
        )
    except canvas.CanvasError as e:
        raise Problem(422, str(e)) from None
    response = apply_ops(request, flow, base, ops, f"paste {', '.join(names)}")
    response.headers["x-added-step"] = ",".join(names)
    return response


async def post_text(request: Request) -> Response:
    flow = request.path_params["flow"]
    data = await _body(request)
    base = _revision(data)
    text = data.get("text")
    if not isinstance(text, str):
        raise Problem(422, "`text`: give the whole text of the file", field="text")
    if len(text) > MAX_TEXT:
        raise Problem(413, f"`text`: at most {MAX_TEXT} characters; this has {len(text)}")
    loaded = load(request, flow)
    if loaded.draft.revision != base:
        raise StaleRevisionError(expected=base, actual=loaded.draft.revision)
    parsed = parse_tree(text, loaded.path)
    if parsed.tree is None:
        raise Problem(
            422,
            "Not saved: the text has syntax errors; the canvas keeps the last version that parsed.",
            diagnostics=[canvas.diagnostic_json(d) for d in parsed.diagnostics],
        )
    declared = [
        str(d.children[0]) for d in parsed.tree.children if isinstance(d, Tree) and d.data == "flow"
    ]
    if flow not in declared:
        raise Problem(
            422,
            f"Not saved: the text no longer declares flow '{flow}' (it declares: "
            f"{', '.join(declared) or 'no flow'}). Rename a flow in its own file's editor.",
        )
    return commit(request, flow, loaded, base, text, "edit the text")


async def post_undo(request: Request) -> Response:
    return await _history(request, back=True)


async def post_redo(request: Request) -> Response:
    return await _history(request, back=False)


async def _history(request: Request, back: bool) -> Response:
    flow = request.path_params["flow"]
    base = _revision(await _body(request))
    loaded = load(request, flow)
    move = drafts.undo if back else drafts.redo
    move(request.app.state.engine, loaded.path, base, author(request), _now())
    after = load(request, flow)
    return JSONResponse(flow_json(request, after, flow))


async def metrics_json(request: Request) -> Response:
    flow = request.path_params["flow"]
    with reading(request.app.state.engine) as conn:
        published = current(conn)
        order: dict[str, list[str]] = {}
        if published and flow in published.ws.flows:
            from dsl import ir

            for step in published.ws.flows[flow].steps.values():
                if isinstance(step, ir.Send) and step.variants:
                    order[step.name] = [v.name for v in step.variants]
        result = metrics.flow_metrics(conn, flow, _now(), variant_order=order)
    return JSONResponse(result.as_json())


async def path_json(request: Request) -> Response:
    flow = request.path_params["flow"]
    loaded = load(request, flow)
    ws = loaded.compilation.workspace
    if ws is None or not loaded.compilation.ok:
        raise Problem(
            422, "The workspace has errors; fix them before simulating (see the problems list)."
        )
    lead = request.query_params.get("lead")
    fixture = request.query_params.get("fixture")
    try:
        if lead:
            if not lead.isdigit():
                raise Problem(422, "`lead`: give a lead's id (a number)", field="lead")
            with reading(request.app.state.engine) as conn:
                result = lead_path.for_lead(conn, ws, flow, int(lead), _now())
        elif fixture:
            result = lead_path.for_fixture(request.app.state.settings.workspace, ws, flow, fixture)
        else:
            raise Problem(422, "choose a lead (`lead`) or a test case (`fixture`) to simulate")
    except lead_path.PathError as e:
        raise Problem(422, str(e)) from None
    return JSONResponse(result.as_json())


async def leads_json(request: Request) -> Response:
    from flowbuilder import explore

    text = request.query_params.get("q", "")[:200]
    with reading(request.app.state.engine) as conn:
        found = explore.search(conn, text=text)
    return JSONResponse(
        [
            {"id": lead.id, "email": lead.email, "name": lead.name, "company": lead.company}
            for lead in found.leads[:15]
        ]
    )


routes = [
    Route("/flows/{flow}", login_required(editor_page), methods=["GET"]),
    Route("/api/flows/{flow}", guarded(model_json), methods=["GET"]),
    Route("/api/flows/{flow}/ops", guarded(post_ops), methods=["POST"]),
    Route("/api/flows/{flow}/add", guarded(post_add), methods=["POST"]),
    Route("/api/flows/{flow}/paste", guarded(post_paste), methods=["POST"]),
    Route("/api/flows/{flow}/text", guarded(post_text), methods=["POST"]),
    Route("/api/flows/{flow}/undo", guarded(post_undo), methods=["POST"]),
    Route("/api/flows/{flow}/redo", guarded(post_redo), methods=["POST"]),
    Route("/api/flows/{flow}/metrics", guarded(metrics_json), methods=["GET"]),
    Route("/api/flows/{flow}/path", guarded(path_json), methods=["GET"]),
    Route("/api/leads", guarded(leads_json), methods=["GET"]),
]
