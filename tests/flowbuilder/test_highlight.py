"""The Pygments lexer, against every example and reference block, and its keyword lists against the
grammar."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from pygments import highlight, lexers
from pygments.formatters import HtmlFormatter
from pygments.token import Comment, Error, Keyword, Name, Number, String, _TokenType

from dsl.functions import FUNCTIONS
from dsl.parse import keywords
from flowbuilder import highlight as h
from flowbuilder.highlight import FlowLexer
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

LEXER = FlowLexer()
LITERAL_TOKENS = {
    "STRING": String,
    "DURATION": Number.Duration,
    "TIME": Number.Time,
    "PERCENT": Number.Percent,
    "NUMBER": Number,
    "DATE": Number.Date,
}


def _types(text: str) -> dict[tuple[int, int], _TokenType]:
    """(1-based line, 1-based column) -> the token type of that character."""
    found: dict[tuple[int, int], _TokenType] = {}
    line, col = 1, 1
    for _, kind, value in LEXER.get_tokens_unprocessed(text):
        for char in value:
            found[(line, col)] = kind
            line, col = (line + 1, 1) if char == "\n" else (line, col + 1)
    return found


def test_the_keyword_lists_are_exactly_the_grammars_keywords() -> None:
    groups = (
        h.DECLARATION_KEYWORDS,
        h.OPERATOR_KEYWORDS,
        h.CONSTANT_KEYWORDS,
        h.WEEKDAY_KEYWORDS,
        h.CONTROL_KEYWORDS,
    )
    listed = [w for group in groups for w in group]
    assert len(listed) == len(set(listed)), "a keyword is listed in two groups"
    assert set(listed) == keywords()


def test_the_function_list_is_exactly_the_languages_functions() -> None:
    assert set(h.FUNCTIONS) == set(FUNCTIONS)
    assert set(h.STEP_FUNCTIONS) == {
        name for name, fn in FUNCTIONS.items() if fn.params and fn.params[0].kind == "step"
    }


def test_pygments_finds_the_lexer_by_name_and_file_name_through_the_entry_point() -> None:
    (entry,) = [e for e in entry_points(group="pygments.lexers") if e.name == "flow"]
    assert entry.load() is FlowLexer
    assert isinstance(lexers.get_lexer_by_name("flow"), FlowLexer)
    assert isinstance(lexers.get_lexer_for_filename("welcome.flow"), FlowLexer)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_parsers_tokens_get_tokens_of_their_kind(case: Case) -> None:
    types = _types(case.text)
    problems = []
    for token in lark_tokens(case.text):
        assert token.line is not None and token.column is not None
        here = types.get((token.line, token.column))
        where = f"{token.line}:{token.column} {token.value!r} ({token.type}): {here}"
        if is_keyword(token):
            ok = here is not None and here in Keyword
        elif token.type in LITERALS:
            ok = all(
                (found := types.get((token.line, c))) is not None
                and found in LITERAL_TOKENS[token.type]
                for c in range(token.column, token.column + len(token.value))
            )
            if token.type == "NUMBER":
                ok = ok and here not in (Number.Duration, Number.Time, Number.Percent, Number.Date)
        elif token.type == "NAME":
            ok = here is not None and (here in Name or here is Keyword.Type)
        else:
            ok = here is not None and str(here).startswith(("Token.Operator", "Token.Punctuation"))
        if not ok:
            problems.append(where)
    assert problems == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_comments_and_step_names_are_recognised_and_nothing_is_an_error(case: Case) -> None:
    types = _types(case.text)
    assert not [pos for pos, kind in types.items() if kind in Error]
    for line, start, end in comments(case.text):
        assert all(types[(line, c)] in Comment for c in range(start, end)), line
    for line, start, end in step_names(case.text):
        assert all(types[(line, c)] is Name.Function for c in range(start, end)), (line, start)


def test_the_lexer_renders_html_with_a_class_per_kind() -> None:
    html = highlight("a: wait 3d  # pause\n", FlowLexer(), HtmlFormatter(nowrap=True))
    assert '<span class="nf">a</span>' in html
    assert '<span class="k">wait</span>' in html
    assert '<span class="c1"># pause</span>' in html
