"""The TextMate grammar, tokenized as an editor does, against every example and reference block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.parse import keywords
from flowbuilder import textmate
from tests.flowbuilder.highlight_cases import (
    CASES,
    IDS,
    LITERALS,
    Case,
    comments,
    is_keyword,
    lark_tokens,
    step_names,
)
from tests.flowbuilder.textmate_tokenizer import Tokenizer, scopes_by_position

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_FILE = ROOT / "editors" / "vscode" / "syntaxes" / "flow.tmLanguage.json"
GRAMMAR = json.loads(GRAMMAR_FILE.read_text(encoding="utf-8"))
TOKENIZER = Tokenizer(GRAMMAR)
LITERAL_SCOPES = {
    "STRING": "string.quoted.double.flow",
    "DURATION": "constant.numeric.duration.flow",
    "TIME": "constant.numeric.time.flow",
    "PERCENT": "constant.numeric.percentage.flow",
    "NUMBER": "constant.numeric.flow",
    "DATE": "constant.numeric.date.flow",
}
NAME_SCOPES = ("entity.name.", "variable.", "support.function.", "storage.type.", "constant.other.")


def _scopes(case: Case) -> dict[tuple[int, int], tuple[str, ...]]:
    return scopes_by_position(TOKENIZER.tokenize(case.text))


def test_the_grammar_file_is_the_one_flowbuilder_textmate_builds() -> None:
    assert GRAMMAR_FILE.read_text(encoding="utf-8") == textmate.render(), (
        "run: python -m flowbuilder.textmate > editors/vscode/syntaxes/flow.tmLanguage.json"
    )


def test_every_keyword_of_the_grammar_has_a_keyword_scope() -> None:
    for word in sorted(keywords()):
        assert textmate.keyword_scope(word).startswith("keyword."), word


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_parsers_tokens_get_the_scopes_of_their_kind(case: Case) -> None:
    scopes = _scopes(case)
    problems = []
    for token in lark_tokens(case.text):
        assert token.line is not None and token.column is not None
        here = scopes.get((token.line, token.column), ())
        where = f"{token.line}:{token.column} {token.value!r} ({token.type})"
        if is_keyword(token):
            if textmate.keyword_scope(str(token.value)) not in here:
                problems.append(f"{where}: {here}")
        elif token.type in LITERALS:
            for col in range(token.column, token.column + len(token.value)):
                if LITERAL_SCOPES[token.type] not in scopes.get((token.line, col), ()):
                    problems.append(f"{where} at column {col}: {scopes.get((token.line, col))}")
                    break
        elif token.type == "NAME":
            if not any(s.startswith(NAME_SCOPES) for s in here) or any(
                s.startswith("keyword.") for s in here
            ):
                problems.append(f"{where}: {here}")
        elif not any(s.startswith(("keyword.operator.", "punctuation.")) for s in here):
            problems.append(f"{where}: {here}")
    assert problems == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_comments_and_step_names_are_recognised(case: Case) -> None:
    scopes = _scopes(case)
    for line, start, end in comments(case.text):
        for col in range(start, end):
            assert "comment.line.number-sign.flow" in scopes[(line, col)], (line, col)
    for line, start, end in step_names(case.text):
        for col in range(start, end):
            assert "entity.name.function.step.flow" in scopes[(line, col)], (line, col)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_character_has_a_scope_and_none_is_invalid(case: Case) -> None:
    lines = case.text.split("\n")
    for (line, col), found in _scopes(case).items():
        char = lines[line - 1][col - 1]
        assert not any(s.startswith("invalid") for s in found), (line, col, found)
        if not char.isspace():
            assert len(found) > 1, f"{line}:{col} {char!r} has only {found}"


def test_a_merge_field_and_an_escape_inside_a_string_stay_in_the_string() -> None:
    text = 'template t {\n  subject "Hi {{ first_name | default(\'there\') }} \\"x\\""\n}\n'
    scopes = scopes_by_position(TOKENIZER.tokenize(text))
    line = text.split("\n")[1]
    merge = line.index("{{") + 1
    escape = line.index("\\") + 1
    assert "constant.other.placeholder.flow" in scopes[(2, merge)]
    assert "constant.character.escape.flow" in scopes[(2, escape)]
    assert all("string.quoted.double.flow" in scopes[(2, c)] for c in range(merge, len(line) + 1))


def test_a_lint_suppression_comment_marks_the_rule_code() -> None:
    text = "flow f {\n  a: end  # lint: ignore[FB302]\n}\n"
    scopes = scopes_by_position(TOKENIZER.tokenize(text))
    col = text.split("\n")[1].index("FB302") + 1
    assert "constant.other.rule-code.flow" in scopes[(2, col)]
    assert "comment.line.number-sign.flow" in scopes[(2, col)]
