from __future__ import annotations

import doctest
import json
from typing import Any

import pytest

import dsl.report
from dsl.diagnostics import Diagnostic, Severity, Span
from dsl.parse import parse_tree
from dsl.report import (
    FORMATS,
    render,
    render_concise,
    render_github,
    render_human,
    render_json,
    render_sarif,
)
from dsl.rules import RULES, make

SOURCE_A = 'flow welcome "Welcome" {\n  pick: branch {\n    when tier == "vip" -> vip\n  }\n}\n'
SOURCE_B = "segment s where true\n"
SOURCES = {"flows/a.flow": SOURCE_A, "flows/b.flow": SOURCE_B, "flows/c.flow": ""}


def _diagnostics() -> list[Diagnostic]:
    return [
        make("FB200", "step 'vip' is not defined", "flows/a.flow", Span(3, 25, 3, 28), hint="x"),
        make("FB302", "branch `pick` has no `else` arm", "flows/a.flow", Span(2, 3, 2, 7)),
        make("FB100", "unexpected `where`", "flows/b.flow", Span(1, 11, 1, 16)),
        make("FB500", "name 'S' is not snake_case", "flows/b.flow", Span.point(1, 9)),
    ]


def test_human_output_prints_each_diagnostic_with_its_caret_and_a_summary() -> None:
    text = render_human(_diagnostics(), SOURCES, files_checked=3)
    blocks = text.rstrip("\n").split("\n\n")
    assert len(blocks) == 5
    assert blocks[0].splitlines() == [
        "flows/a.flow:3:25: FB200 step 'vip' is not defined [error]",
        '   3 |     when tier == "vip" -> vip',
        "     |                         ^^^",
        "     = hint: x",
    ]
    assert blocks[-1] == "2 errors, 1 warning, 1 info in 3 files."
    assert "\x1b[" not in text


def test_human_output_says_no_problems_and_counts_files_from_the_sources() -> None:
    assert render_human([], SOURCES) == "No problems found in 3 files.\n"
    assert render_human([], {"a.flow": ""}) == "No problems found in 1 file.\n"


def test_human_output_in_colour_marks_the_severity_and_the_carets() -> None:
    text = render_human(_diagnostics()[:1], SOURCES, color=True, files_checked=1)
    assert "\x1b[1;31m[error]\x1b[0m" in text
    assert "\x1b[1;31m^^^\x1b[0m" in text
    assert "\x1b[1mflows/a.flow:3:25:\x1b[0m" in text


def test_concise_output_is_one_line_per_diagnostic() -> None:
    assert render_concise(_diagnostics()).splitlines() == [
        "flows/a.flow:3:25: FB200 step 'vip' is not defined",
        "flows/a.flow:2:3: FB302 branch `pick` has no `else` arm",
        "flows/b.flow:1:11: FB100 unexpected `where`",
        "flows/b.flow:1:9: FB500 name 'S' is not snake_case",
    ]
    assert render_concise([]) == ""


def test_json_output_counts_by_severity_and_describes_each_diagnostic() -> None:
    doc = json.loads(render_json(_diagnostics(), files_checked=3))
    assert list(doc) == [
        "format_version",
        "valid",
        "error_count",
        "warning_count",
        "info_count",
        "files_checked",
        "diagnostics",
    ]
    assert doc["format_version"] == "1.0"
    assert (doc["valid"], doc["error_count"], doc["warning_count"], doc["info_count"]) == (
        False,
        2,
        1,
        1,
    )
    assert doc["files_checked"] == 3
    first = doc["diagnostics"][0]
    assert list(first) == [
        "code",
        "severity",
        "family",
        "rule",
        "message",
        "hint",
        "path",
        "range",
    ]
    assert first["rule"] == "undefined-step" and first["family"] == "semantic"
    assert first["range"] == {"start": {"line": 3, "column": 25}, "end": {"line": 3, "column": 28}}
    assert doc["diagnostics"][1]["hint"] is None


def test_json_output_is_valid_when_only_warnings_remain_and_is_indented() -> None:
    warnings = [d for d in _diagnostics() if d.severity is not Severity.ERROR]
    text = render_json(warnings, files_checked=1)
    assert json.loads(text)["valid"] is True
    assert text.startswith('{\n  "format_version": "1.0",\n')
    empty = json.loads(render_json([], files_checked=0))
    assert empty["valid"] is True and empty["diagnostics"] == []


def _assert_sarif_shape(log: dict[str, Any]) -> None:
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert isinstance(log["runs"], list) and len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "flowbuilder"
    assert driver["informationUri"].startswith("https://")
    for rule in driver["rules"]:
        assert isinstance(rule["id"], str) and isinstance(rule["name"], str)
        assert isinstance(rule["shortDescription"]["text"], str)
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
        assert rule["helpUri"].startswith("https://")
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"error", "warning", "note"}
        assert isinstance(result["message"]["text"], str) and result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert isinstance(location["artifactLocation"]["uri"], str)
        region = location["region"]
        assert all(isinstance(v, int) and v >= 1 for v in region.values())
        assert set(region) == {"startLine", "startColumn", "endLine", "endColumn"}
        assert (region["endLine"], region["endColumn"]) >= (
            region["startLine"],
            region["startColumn"],
        )


def test_sarif_output_lists_every_rule_and_locates_results() -> None:
    log = json.loads(render_sarif(_diagnostics(), tool_version="1.2.3"))
    _assert_sarif_shape(log)
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["version"] == "1.2.3"
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    fb302 = next(r for r in driver["rules"] if r["id"] == "FB302")
    assert fb302["name"] == "branch-without-else"
    assert fb302["helpUri"].endswith("docs/lint/FB302.md")
    assert fb302["defaultConfiguration"]["level"] == "warning"
    results = log["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["FB200", "FB302", "FB100", "FB500"]
    assert [r["level"] for r in results] == ["error", "warning", "error", "note"]
    assert results[0]["message"]["text"] == "step 'vip' is not defined\nhint: x"
    location = results[0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "flows/a.flow"
    assert location["region"] == {"startLine": 3, "startColumn": 25, "endLine": 3, "endColumn": 28}


def test_sarif_result_level_follows_an_overridden_severity_not_the_rule_default() -> None:
    raised = make("FB302", "no else", "a.flow", Span.point(1, 1), severity=Severity.ERROR)
    log = json.loads(render_sarif([raised], tool_version="0"))
    _assert_sarif_shape(log)
    assert log["runs"][0]["results"][0]["level"] == "error"


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("flows\\my flows\\a.flow", "flows/my%20flows/a.flow"),
        ("/home/me/a.flow", "file:///home/me/a.flow"),
        ("C:\\work\\a.flow", "file:///C:/work/a.flow"),
    ],
)
def test_sarif_artifact_uris_use_forward_slashes_and_are_escaped(path: str, uri: str) -> None:
    log = json.loads(
        render_sarif([make("FB216", "empty", path, Span.point(1, 1))], tool_version="")
    )
    artifact = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact["uri"] == uri


def test_github_output_is_one_workflow_command_per_diagnostic_by_severity() -> None:
    lines = render_github(_diagnostics()).splitlines()
    assert lines[0] == (
        "::error file=flows/a.flow,line=3,col=25,endLine=3,endColumn=27,"
        "title=FB200 undefined-step::step 'vip' is not defined%0Ahint: x"
    )
    assert lines[1].startswith("::warning file=flows/a.flow,line=2,col=3,")
    assert lines[3].startswith("::notice file=flows/b.flow,line=1,col=9,endLine=1,endColumn=9,")
    assert render_github([]) == ""


def test_github_output_escapes_messages_and_properties() -> None:
    d = make("FB212", "100% off\r\nnow: ok, done", "dir,x/a:b.flow", Span(2, 4, 5, 1))
    (line,) = render_github([d]).splitlines()
    assert line == (
        "::error file=dir%2Cx/a%3Ab.flow,line=2,col=4,endLine=5,title=FB212 bad-value"
        "::100%25 off%0D%0Anow: ok, done"
    )


def test_render_dispatches_every_format_and_refuses_an_unknown_one() -> None:
    diagnostics = _diagnostics()
    options: dict[str, Any] = {"sources": SOURCES, "files_checked": 3, "tool_version": "9"}
    assert render("human", diagnostics, **options) == render_human(
        diagnostics, SOURCES, files_checked=3
    )
    assert render("concise", diagnostics, **options) == render_concise(diagnostics)
    assert render("json", diagnostics, **options) == render_json(diagnostics, files_checked=3)
    assert render("sarif", diagnostics, **options) == render_sarif(diagnostics, tool_version="9")
    assert render("github", diagnostics, **options) == render_github(diagnostics)
    assert set(FORMATS) == {"human", "concise", "json", "sarif", "github"}
    with pytest.raises(ValueError, match="unknown format 'xml'; expected one of human"):
        render("xml", diagnostics, **options)


def test_a_real_syntax_error_renders_with_its_caret() -> None:
    text = 'flow welcome "Welcome" {\n  pause: wait soon\n}\n'
    parsed = parse_tree(text, "w.flow")
    assert parsed.diagnostics
    human = render_human(parsed.diagnostics, {"w.flow": text}, files_checked=1)
    assert "w.flow:2:15: FB100" in human
    assert "   2 |   pause: wait soon\n     |               ^^^^" in human
    assert human.endswith("1 error in 1 file.\n")


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(dsl.report).failed == 0
