"""`flowbuilder lsp`: the language server, on pygls over stdio.

Diagnostics come from the same compiler and linter as `flowbuilder lint`, for every file of the
workspace the edited file belongs to. Completion, hover, go to definition, rename (the canvas's
`RenameStep` edit) and formatting (`fmt`) work on the same parse trees. Positions inside are 1-based
lines and code-point columns, as diagnostics have them; they are converted to the client's position
encoding (UTF-16 unless it asks for another) at the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace.position_codec import PositionCodec, ServerTextPosition

from dsl.complete import Candidate, complete
from dsl.diagnostics import Diagnostic, FlowError, Severity, Span
from dsl.edit import RenameStep, apply, revision
from dsl.fmt import format_text
from dsl.parse import keywords
from dsl.report import RULE_DOCS_URI
from flowbuilder import __version__
from flowbuilder.lsp.hover import hover
from flowbuilder.lsp.session import Analysis, Session
from flowbuilder.lsp.symbols import Occurrence, TemplateFile
from flowbuilder.lsp.textedits import TextEdit, line_edits

log = logging.getLogger(__name__)

_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}
_KIND = {
    "keyword": types.CompletionItemKind.Keyword,
    "step": types.CompletionItemKind.Function,
    "template": types.CompletionItemKind.File,
    "segment": types.CompletionItemKind.Class,
    "list": types.CompletionItemKind.Enum,
    "stage": types.CompletionItemKind.EnumMember,
    "flow": types.CompletionItemKind.Module,
    "form": types.CompletionItemKind.Interface,
    "goal": types.CompletionItemKind.Event,
    "attribute": types.CompletionItemKind.Field,
    "setting": types.CompletionItemKind.Constant,
    "event": types.CompletionItemKind.Event,
    "field": types.CompletionItemKind.Field,
    "function": types.CompletionItemKind.Method,
    "parameter": types.CompletionItemKind.Property,
    "type": types.CompletionItemKind.TypeParameter,
    "value": types.CompletionItemKind.Value,
}
# Findings that say code is dead: editors grey it out.
_UNNECESSARY = {"FB300", "FB303"}


class FlowLanguageServer(LanguageServer):
    """The server and what it knows (`session`); handlers are registered in `build_server`."""

    def __init__(self) -> None:
        super().__init__(
            "flowbuilder", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full
        )
        self.session = Session()
        # What each workspace last published to, so that fixed files get an empty list.
        self.published: dict[Path | None, set[Path]] = {}
        self.config_problems: set[str] = set()


# ---------------------------------------------------------------------------- positions


def _path(uri: str) -> Path:
    fs = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(fs).resolve() if fs else Path(uri)


def _uri(path: Path) -> str:
    if not path.is_absolute():
        return str(path)  # a document that is not a file, such as `untitled:Untitled-1`
    return from_fs_path(str(path)) or str(path)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [""]


class _Positions:
    """Converts between the server's 1-based code-point positions and the client's."""

    def __init__(self, ls: FlowLanguageServer, text: str) -> None:
        self.codec: PositionCodec = ls.workspace.position_codec
        self.lines = _lines(text)

    def to_client(self, line: int, col: int) -> types.Position:
        return self.codec.position_to_client_units(
            self.lines, ServerTextPosition(max(line - 1, 0), max(col - 1, 0))
        )

    def range(self, span: Span) -> types.Range:
        return types.Range(
            start=self.to_client(span.line, span.col),
            end=self.to_client(span.end_line, span.end_col),
        )

    def from_client(self, position: types.Position) -> tuple[int, int]:
        server = self.codec.position_from_client_units(
            self.lines, types.Position(line=position.line, character=position.character)
        )
        return server.line + 1, server.character + 1

    def edit(self, edit: TextEdit) -> types.TextEdit:
        (l1, c1), (l2, c2) = edit.start, edit.end
        return types.TextEdit(
            range=types.Range(
                start=self.to_client(l1 + 1, c1 + 1), end=self.to_client(l2 + 1, c2 + 1)
            ),
            new_text=edit.text,
        )


# ---------------------------------------------------------------------------- diagnostics


def to_lsp(d: Diagnostic, positions: _Positions) -> types.Diagnostic:
    message = f"{d.message}\nhint: {d.hint}" if d.hint else d.message
    return types.Diagnostic(
        range=positions.range(d.span),
        severity=_SEVERITY[d.severity],
        code=d.code,
        code_description=types.CodeDescription(href=f"{RULE_DOCS_URI}{d.code}.md"),
        source="flowbuilder",
        message=message,
        tags=[types.DiagnosticTag.Unnecessary] if d.code in _UNNECESSARY else None,
    )


def publish(ls: FlowLanguageServer, path: Path) -> None:
    """Analyse the workspace of `path` and publish the diagnostics of each of its files."""
    analysis = ls.session.analyse(path)
    if analysis.config_problem and analysis.config_problem not in ls.config_problems:
        ls.config_problems.add(analysis.config_problem)
        ls.window_show_message(
            types.ShowMessageParams(
                type=types.MessageType.Warning,
                message=f"flowbuilder: {analysis.config_problem}; using the default lint settings",
            )
        )
    before = ls.published.get(analysis.root, set())
    for file in sorted(before - set(analysis.diagnostics)):
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=_uri(file), diagnostics=[])
        )
    # The file that changed goes last: when a client sees its version, the others are there too.
    ordered = sorted(analysis.diagnostics.items(), key=lambda item: (item[0] == path, item[0]))
    for file, found in ordered:
        text = ls.session.text(file) or ""
        positions = _Positions(ls, text)
        version = None
        if file in ls.session.open:
            version = ls.workspace.get_text_document(_uri(file)).version
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=_uri(file),
                version=version,
                diagnostics=[to_lsp(d, positions) for d in found],
            )
        )
    ls.published[analysis.root] = set(analysis.diagnostics)


# ---------------------------------------------------------------------------- requests


@dataclass
class _Document:
    """A request's document: its file, text, positions and (on demand) its workspace's analysis."""

    ls: FlowLanguageServer
    path: Path
    text: str
    positions: _Positions

    @classmethod
    def of(cls, ls: FlowLanguageServer, uri: str) -> _Document:
        path = _path(uri)
        text = ls.session.text(path)
        if text is None:
            raise JsonRpcInvalidParams(f"{uri} is neither open nor a readable file")
        return cls(ls, path, text, _Positions(ls, text))

    @property
    def label(self) -> str:
        return self.ls.session.label(self.path)

    @property
    def analysis(self) -> Analysis:
        return self.ls.session.analyse(self.path)

    def at(self, position: types.Position) -> Occurrence | TemplateFile | None:
        line, col = self.positions.from_client(position)
        return self.analysis.index.at(self.label, line, col)


def _completion_item(c: Candidate) -> types.CompletionItem:
    documentation = (
        types.MarkupContent(kind=types.MarkupKind.Markdown, value=c.documentation)
        if c.documentation
        else None
    )
    return types.CompletionItem(
        label=c.label,
        kind=_KIND.get(c.kind, types.CompletionItemKind.Text),
        detail=c.detail or c.kind,
        documentation=documentation,
        # Names before keywords: after `send ` the templates matter more than `window`.
        sort_text=("1" if c.kind == "keyword" else "0") + c.label,
    )


def completion(ls: FlowLanguageServer, params: types.CompletionParams) -> types.CompletionList:
    doc = _Document.of(ls, params.text_document.uri)
    line, col = doc.positions.from_client(params.position)
    candidates = complete(doc.text, line, col, doc.analysis.index.known())
    return types.CompletionList(
        is_incomplete=False, items=[_completion_item(c) for c in candidates]
    )


def hover_request(ls: FlowLanguageServer, params: types.HoverParams) -> types.Hover | None:
    doc = _Document.of(ls, params.text_document.uri)
    line, col = doc.positions.from_client(params.position)
    analysis = doc.analysis
    found = hover(
        analysis, doc.path, doc.label, doc.text, line, col, analysis.diagnostics.get(doc.path, [])
    )
    if found is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=found))


def _location(ls: FlowLanguageServer, label: str, span: Span) -> types.Location:
    path = ls.session.path_of(label)
    positions = _Positions(ls, ls.session.text(path) or "")
    return types.Location(uri=_uri(path), range=positions.range(span))


def _file_location(path: Path) -> types.Location:
    start = types.Position(line=0, character=0)
    return types.Location(uri=_uri(path), range=types.Range(start=start, end=start))


def definition(
    ls: FlowLanguageServer, params: types.DefinitionParams
) -> list[types.Location] | None:
    doc = _Document.of(ls, params.text_document.uri)
    found = doc.at(params.position)
    analysis = doc.analysis
    folder = analysis.root or doc.path.parent
    if isinstance(found, TemplateFile):
        body = folder / found.relative
        return [_file_location(body)] if body.is_file() else None
    if not isinstance(found, Occurrence):
        return None
    if found.declaration and found.kind == "template":
        # On a template's own name: its body files.
        bodies = [folder / f.relative for f in analysis.index.files_of(found.name)]
        return [_file_location(b) for b in bodies if b.is_file()] or None
    decls = analysis.index.declared(found)
    return [_location(ls, d.occurrence.path, d.occurrence.span) for d in decls] or None


def _step(found: Occurrence | TemplateFile | None) -> Occurrence:
    if not isinstance(found, Occurrence) or found.kind != "step" or found.flow is None:
        raise JsonRpcInvalidRequest(
            "only a step can be renamed here; place the cursor on a step name"
        )
    return found


def prepare_rename(
    ls: FlowLanguageServer, params: types.PrepareRenameParams
) -> types.PrepareRenamePlaceholder | None:
    doc = _Document.of(ls, params.text_document.uri)
    found = doc.at(params.position)
    if not isinstance(found, Occurrence) or found.kind != "step" or found.flow is None:
        return None
    return types.PrepareRenamePlaceholder(
        range=doc.positions.range(found.span), placeholder=found.name
    )


def rename(ls: FlowLanguageServer, params: types.RenameParams) -> types.WorkspaceEdit:
    doc = _Document.of(ls, params.text_document.uri)
    step = _step(doc.at(params.position))
    new = params.new_name.strip()
    if not new.isidentifier() or not new.isascii():
        raise JsonRpcInvalidParams(f"'{new}' is not a step name; use letters, digits and _")
    if new in keywords():
        raise JsonRpcInvalidParams(f"'{new}' is a reserved word and cannot name a step")
    assert step.flow is not None
    try:
        result = apply(
            doc.text,
            RenameStep(flow=step.flow, old=step.name, new=new),
            revision(doc.text),
            doc.label,
        )
    except FlowError as error:
        first = error.diagnostics[0].message if error.diagnostics else str(error)
        raise JsonRpcInvalidRequest(f"cannot rename `{step.name}`: {first}") from error
    edits = [doc.positions.edit(e) for e in line_edits(doc.text, result.text)]
    return types.WorkspaceEdit(changes={params.text_document.uri: edits})


def formatting(
    ls: FlowLanguageServer, params: types.DocumentFormattingParams
) -> list[types.TextEdit]:
    doc = _Document.of(ls, params.text_document.uri)
    try:
        formatted = format_text(doc.text, doc.label)
    except FlowError:
        return []  # a text that does not parse is left as it is; its diagnostics say why
    return [doc.positions.edit(e) for e in line_edits(doc.text, formatted)]


# ---------------------------------------------------------------------------- notifications


def did_open(ls: FlowLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    path = _path(params.text_document.uri)
    ls.session.set_text(path, params.text_document.text)
    publish(ls, path)


def did_change(ls: FlowLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    path = _path(params.text_document.uri)
    ls.session.set_text(path, ls.workspace.get_text_document(params.text_document.uri).source)
    publish(ls, path)


def did_save(ls: FlowLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.session.changed()
    publish(ls, _path(params.text_document.uri))


def did_close(ls: FlowLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    path = _path(params.text_document.uri)
    ls.session.close(path)
    if path.is_file():
        publish(ls, path)
    else:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )


def did_change_watched(ls: FlowLanguageServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.session.changed()
    for change in params.changes:
        path = _path(change.uri)
        if path.suffix == ".flow" and path.exists():
            publish(ls, path)


def initialized(ls: FlowLanguageServer, params: types.InitializedParams) -> None:
    folders: Sequence[types.WorkspaceFolder] = list(ls.workspace.folders.values())
    root = ls.workspace.root_path
    if folders:
        ls.session.base = _path(folders[0].uri)
    elif root:
        ls.session.base = Path(root).resolve()


def build_server() -> FlowLanguageServer:
    ls = FlowLanguageServer()
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_SAVE)(did_save)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched)
    ls.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "("])
    )(completion)
    ls.feature(types.TEXT_DOCUMENT_HOVER)(hover_request)
    ls.feature(types.TEXT_DOCUMENT_DEFINITION)(definition)
    ls.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)(prepare_rename)
    ls.feature(types.TEXT_DOCUMENT_RENAME)(rename)
    ls.feature(types.TEXT_DOCUMENT_FORMATTING)(formatting)
    return ls


def serve() -> None:
    """Serve over stdin and stdout until the client says `exit`."""
    build_server().start_io()
