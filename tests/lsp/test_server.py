"""`flowbuilder lsp` driven as an editor drives it: a subprocess, JSON-RPC over stdio."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsl.edit import RenameStep, apply, revision
from dsl.fmt import format_text
from dsl.lint import lint_paths
from flowbuilder.lsp.client import LspClient, LspError, position
from flowbuilder.lsp.textedits import TextEdit, apply_edits

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "examples" / "acme"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("acme") / "acme"
    shutil.copytree(ACME, folder)
    return folder


@pytest.fixture(scope="module")
def client(workspace: Path) -> Iterator[LspClient]:
    with LspClient(workspace) as lsp:
        yield lsp
    assert lsp.exit_code == 0


class Doc:
    """An open document whose edits the test sends, and puts back afterwards."""

    def __init__(self, client: LspClient, path: Path) -> None:
        self.client = client
        self.path = path
        self.original = path.read_text(encoding="utf-8")
        self.text = self.original
        self.version = 1
        self.uri = client.open(path, self.text, self.version)
        self.diagnostics = client.diagnostics(self.uri, self.version)

    def change(self, text: str) -> list[dict[str, Any]]:
        self.version += 1
        self.text = text
        self.client.change(self.uri, text, self.version)
        self.diagnostics = self.client.diagnostics(self.uri, self.version)
        return self.diagnostics

    def close(self) -> None:
        if self.text != self.original:
            self.change(self.original)
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})

    def request(self, method: str, needle: str, offset: int = 0, **extra: Any) -> Any:
        params = {
            "textDocument": {"uri": self.uri},
            "position": position(self.text, needle, offset),
        }
        return self.client.request(method, {**params, **extra})


@pytest.fixture
def welcome(client: LspClient, workspace: Path) -> Iterator[Doc]:
    doc = Doc(client, workspace / "welcome.flow")
    yield doc
    doc.close()


def _edits(result: list[dict[str, Any]]) -> list[TextEdit]:
    return [
        TextEdit(
            (e["range"]["start"]["line"], e["range"]["start"]["character"]),
            (e["range"]["end"]["line"], e["range"]["end"]["character"]),
            e["newText"],
        )
        for e in result
    ]


def test_initialize_announces_every_feature(client: LspClient) -> None:
    capabilities = client.initialize_result["capabilities"]
    assert client.initialize_result["serverInfo"]["name"] == "flowbuilder"
    assert capabilities["completionProvider"]["triggerCharacters"] == [".", "("]
    assert capabilities["hoverProvider"] is True
    assert capabilities["definitionProvider"] is True
    assert capabilities["renameProvider"] == {"prepareProvider": True}
    assert capabilities["documentFormattingProvider"] is True
    assert capabilities["textDocumentSync"]["openClose"] is True


def test_a_clean_file_gets_an_empty_list_of_diagnostics(welcome: Doc) -> None:
    assert welcome.diagnostics == []


def test_every_syntax_error_is_published_at_once_as_the_cli_reports_it(
    welcome: Doc, tmp_path: Path
) -> None:
    broken = welcome.text.replace("guide: send service_guide", "guide: sned service_guide")
    broken = broken.replace("story_day: wait until 10:00", "story_day: wait untill 10:00")
    published = welcome.change(broken)
    copy = tmp_path / "acme"
    shutil.copytree(welcome.path.parent, copy)
    (copy / "welcome.flow").write_text(broken, encoding="utf-8")
    cli = [d for d in lint_paths([copy]).diagnostics if d.path.endswith("welcome.flow")]
    assert [(d["code"], d["range"]["start"]["line"] + 1, d["message"]) for d in published] == [
        (d.code, d.line, d.message + (f"\nhint: {d.hint}" if d.hint else "")) for d in cli
    ]
    assert len(published) == 2 and {d["code"] for d in published} == {"FB100"}
    assert all(d["source"] == "flowbuilder" and d["severity"] == 1 for d in published)
    assert published[0]["codeDescription"]["href"].endswith("/docs/lint/FB100.md")


def test_a_change_in_one_file_is_reported_in_the_other_files_of_the_workspace(
    client: LspClient, workspace: Path
) -> None:
    shared = Doc(client, workspace / "workspace.flow")
    try:
        without = shared.text.replace("template service_guide ", "template service_manual ")
        shared.change(without)
        other = (workspace / "welcome.flow").resolve().as_uri()
        found = client.published(other)
        assert [(d["code"], d["range"]["start"]["line"] + 1) for d in found] == [("FB203", 22)]
        assert "template `service_guide` is not defined" in found[0]["message"]
        shared.change(shared.original)
        assert client.published(other) == []
    finally:
        shared.close()


def test_completion_after_send_offers_the_templates_of_the_workspace(welcome: Doc) -> None:
    result = welcome.request("textDocument/completion", "send service_guide", len("send "))
    labels = [item["label"] for item in result["items"]]
    assert "service_guide" in labels and "welcome_email" in labels and "cold_interest" in labels
    assert {item["kind"] for item in result["items"]} == {17}  # File: templates only


def test_completion_after_an_arrow_offers_the_steps_of_the_flow(welcome: Doc) -> None:
    result = welcome.request("textDocument/completion", "then -> engaged", len("then -> "))
    labels = {item["label"] for item in result["items"]}
    assert {"engaged", "story_day", "guide", "done"} <= labels
    assert "booking" not in labels  # a step of another flow


def test_completion_after_lead_dot_offers_the_declared_attributes(welcome: Doc) -> None:
    result = welcome.request("textDocument/completion", "lead.score", len("lead."))
    details = {item["label"]: item["detail"] for item in result["items"]}
    assert "revenue" in details and "first_name" in details and "score" in details
    assert "Annual revenue in KRW" in details["revenue"]


def test_completion_while_typing_a_new_step_offers_actions_then_lists(welcome: Doc) -> None:
    typed = welcome.text.replace("  not_activated: end", "  tag: \n  not_activated: end")
    welcome.change(typed)
    actions = welcome.request("textDocument/completion", "tag: ", len("tag: "))
    assert {"send", "wait", "branch", "add", "webhook"} <= {i["label"] for i in actions["items"]}
    typed = typed.replace("  tag: \n", "  tag: add to list \n")
    welcome.change(typed)
    lists = welcome.request("textDocument/completion", "add to list ", len("add to list "))
    assert {"newsletter", "pricing_clickers"} <= {i["label"] for i in lists["items"]}


def test_hover_on_a_keyword_shows_its_section_of_the_language_reference(welcome: Doc) -> None:
    hover = welcome.request("textDocument/hover", "guide_pause: wait", len("guide_pause: w"))
    text = hover["contents"]["value"]
    assert hover["contents"]["kind"] == "markdown"
    assert text.startswith("### `wait`") and "`wait <duration>`" in text
    trigger = welcome.request("textDocument/hover", "trigger event", 2)
    assert trigger["contents"]["value"].startswith("#### `trigger event`")


def test_hover_on_a_finding_shows_the_rule_page(welcome: Doc) -> None:
    unreachable = welcome.text.replace(
        "  not_activated: end", "  orphan: end\n  not_activated: end"
    )
    unreachable = unreachable.replace("  ask_for_help: webhook", "  ask_for_help: webhook").replace(
        '"https://crm.acme.example/hooks/onboarding-help"\n  orphan',
        '"https://crm.acme.example/hooks/onboarding-help" -> not_activated\n  orphan',
    )
    found = welcome.change(unreachable)
    assert [d["code"] for d in found] == ["FB300"]
    assert found[0]["tags"] == [1]  # Unnecessary: editors grey the dead step out
    hover = welcome.request("textDocument/hover", "orphan: end", 1)
    assert hover["contents"]["value"].startswith("# FB300 unreachable-step")


def test_hover_on_a_code_in_a_suppression_comment_shows_the_rule_page(welcome: Doc) -> None:
    welcome.change(welcome.text.replace("entry once  #", "entry once  # lint: ignore[FB404]"))
    hover = welcome.request("textDocument/hover", "FB404", 2)
    assert hover["contents"]["value"].startswith("# FB404 duplicate-trigger")


def test_hover_on_a_name_shows_its_declaration(welcome: Doc) -> None:
    hover = welcome.request("textDocument/hover", "send service_guide", len("send s"))
    text = hover["contents"]["value"]
    assert "**template `service_guide`**" in text and "workspace.flow" in text
    assert 'html "templates/service_guide.html"' in text


def test_definition_of_a_template_is_its_declaration_in_another_file(
    welcome: Doc, workspace: Path
) -> None:
    (location,) = welcome.request("textDocument/definition", "send service_guide", len("send s"))
    assert location["uri"] == (workspace / "workspace.flow").resolve().as_uri()
    declared = (workspace / "workspace.flow").read_text(encoding="utf-8").split("\n")
    line = declared[location["range"]["start"]["line"]]
    start, end = location["range"]["start"]["character"], location["range"]["end"]["character"]
    assert line.startswith("template service_guide") and line[start:end] == "service_guide"


def test_definition_of_a_templates_file_opens_the_file(client: LspClient, workspace: Path) -> None:
    shared = Doc(client, workspace / "workspace.flow")
    try:
        (body,) = shared.request("textDocument/definition", '"templates/service_guide.html"', 3)
        assert body["uri"] == (workspace / "templates" / "service_guide.html").resolve().as_uri()
        (own,) = shared.request("textDocument/definition", "template service_guide", 10)
        assert own["uri"] == body["uri"]
    finally:
        shared.close()


def test_definition_of_steps_segments_and_lists(client: LspClient, workspace: Path) -> None:
    doc = Doc(client, workspace / "welcome.flow")
    try:
        (step,) = doc.request("textDocument/definition", "then -> engaged", len("then -> e"))
        line = doc.text.split("\n")[step["range"]["start"]["line"]]
        assert line.strip().startswith("engaged: update")
    finally:
        doc.close()
    recruitment = Doc(client, workspace / "recruitment.flow")
    try:
        use = "trigger entered segment "
        (segment,) = recruitment.request("textDocument/definition", use, len(use))
        assert segment["uri"].endswith("/segments.flow")
    finally:
        recruitment.close()
    reengagement = Doc(client, workspace / "reengagement.flow")
    try:
        use = "remove from list "
        (declared,) = reengagement.request("textDocument/definition", use, len(use))
        assert declared["uri"].endswith("/workspace.flow")
        lines = (workspace / "workspace.flow").read_text(encoding="utf-8").split("\n")
        assert lines[declared["range"]["start"]["line"]].startswith("list newsletter")
    finally:
        reengagement.close()


def test_rename_of_a_step_is_the_canvas_edit_applied(welcome: Doc) -> None:
    result = welcome.request("textDocument/rename", "then -> engaged", 9, newName="clicked_guide")
    (edits,) = result["changes"].values()
    renamed = apply_edits(welcome.text, _edits(edits))
    expected = apply(
        welcome.text,
        RenameStep(flow="welcome", old="engaged", new="clicked_guide"),
        revision(welcome.text),
    )
    assert renamed == expected.text
    assert renamed.count("clicked_guide") == 3  # the step, the arm and its layout place
    assert len(edits) == 3  # only the three lines that change


def test_prepare_rename_names_the_step_and_refuses_anything_else(welcome: Doc) -> None:
    prepared = welcome.request("textDocument/prepareRename", "then -> engaged", 9)
    assert prepared["placeholder"] == "engaged"
    assert welcome.request("textDocument/prepareRename", "send service_guide", 7) is None


def test_rename_refuses_a_reserved_word_and_a_name_already_taken(welcome: Doc) -> None:
    with pytest.raises(LspError, match="reserved word"):
        welcome.request("textDocument/rename", "then -> engaged", 9, newName="send")
    with pytest.raises(LspError, match="story"):
        welcome.request("textDocument/rename", "then -> engaged", 9, newName="story")
    with pytest.raises(LspError, match="only a step"):
        welcome.request("textDocument/rename", "send service_guide", 7, newName="x")


def test_formatting_returns_the_edits_to_the_fmt_text(welcome: Doc) -> None:
    messy = welcome.text.replace("  guide_pause: wait 1d", "  guide_pause :wait   1d")
    welcome.change(messy)
    edits = welcome.client.request(
        "textDocument/formatting",
        {"textDocument": {"uri": welcome.uri}, "options": {"tabSize": 2, "insertSpaces": True}},
    )
    assert len(edits) == 1
    assert apply_edits(messy, _edits(edits)) == format_text(messy) == welcome.original


def test_formatting_a_text_that_does_not_parse_changes_nothing(welcome: Doc) -> None:
    welcome.change(welcome.text.replace("guide: send", "guide: sned"))
    edits = welcome.client.request(
        "textDocument/formatting",
        {"textDocument": {"uri": welcome.uri}, "options": {"tabSize": 2, "insertSpaces": True}},
    )
    assert edits == []


def test_an_untitled_document_is_checked_alone_and_exit_ends_the_server(tmp_path: Path) -> None:
    with LspClient(tmp_path) as lsp:
        uri = "untitled:Untitled-1"
        text = "flow hello {\n  greet: sned hi\n  done: end\n}\n"
        lsp.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": text}},
        )
        (problem,) = lsp.diagnostics(uri, 1)
        assert problem["code"] == "FB100" and problem["range"]["start"] == {
            "line": 1,
            "character": 9,
        }
        lsp.change(uri, text.replace("sned hi", "end"), 2)
        found = lsp.diagnostics(uri, 2)
        assert [d["code"] for d in found] == [
            "FB306",
            "FB501",
            "FB300",
        ]  # no trigger, no title, dead step
    assert lsp.exit_code == 0
