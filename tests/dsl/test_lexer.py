"""The fused-pattern lexer gives exactly the tokens and the errors of Lark's contextual lexer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl.lexer import _can_hold_newline
from dsl.parse import parser
from tests.dsl.lark_reference import corpus, reference, token_shape
from tests.dsl.strategies import flow_texts

DAMAGE = st.sampled_from(
    [*"'@{}()\"#%\t\r\f:\n\\é3=", "", " and", "->", "wait", "1d", "within", "send", "09:00", "50%"]
)


def lexed(lark: Lark, text: str) -> tuple[list[tuple[object, ...]], tuple[object, ...] | None]:
    """The tokens the parser was fed, in context, and how the text ended (None: it parsed)."""
    interactive = lark.parse_interactive(text)
    tokens = []
    try:
        for token in interactive.iter_parse():
            tokens.append(token_shape(token))
        interactive.feed_eof()
    except UnexpectedInput as error:
        return tokens, describe(error)
    return tokens, None


def describe(error: UnexpectedInput) -> tuple[object, ...]:
    if isinstance(error, UnexpectedToken):
        return ("token", token_shape(error.token), frozenset(error.expected))
    assert isinstance(error, UnexpectedCharacters)
    return ("character", error.pos_in_stream, error.line, error.column, frozenset(error.allowed))


def assert_same_tokens(text: str) -> None:
    assert lexed(parser(), text) == lexed(reference(), text)


@pytest.mark.parametrize(("name", "text"), corpus(), ids=[name for name, _ in corpus()])
def test_every_project_file_lexes_to_lark_s_tokens(name: str, text: str) -> None:
    assert_same_tokens(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "# only a comment",
        "# a comment\n\n  # another\n",
        "flow f {\n  a: send  # no template yet\n  b: end\n}\n",
        "flow f {\r\n  a: wait 1d\r\n  b: end\r\n}\r\n",
        "flow f {\n\ta:\twait\f1d\n  b: end}\n",
        "flow f {\n  a: branch {\n    if count(click, within=30d) >= 3 -> b\n  }\n  b: end\n}\n",
        'flow f {\n  a: send x subject "unterminated\n}\n',
        "flow f {\n  a: wait 3 business days\n  b: end\n}",
        "flow f {\n  a: wait 3dd\n}\n",
        "flow f {\n  a: wait until 09:00 on mon-fri\n  b: end  # trailing",
        "flow f {\n  send: end\n}\n",
        "flow f {\n  a: sendhello\n  b: wait 1d ->b2\n  b2: end\n}\n",
        'stages {\n  stagenew "New"\n}\n',
        "flow f {\n  a: end ' oops\n}\n",
        "segment é where lead.score > 1\n",
    ],
)
def test_edge_cases_lex_to_lark_s_tokens(text: str) -> None:
    assert_same_tokens(text)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_texts())
def test_generated_flows_lex_to_lark_s_tokens(text: str) -> None:
    assert_same_tokens(text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_texts(), st.integers(0, 10_000), st.integers(0, 3), DAMAGE)
def test_damaged_flows_fail_exactly_where_and_how_lark_fails(
    text: str, at: int, cut: int, insert: str
) -> None:
    at %= len(text) + 1
    damaged = text[:at] + insert + text[at + cut :]
    assert_same_tokens(damaged)


def test_a_keyword_stands_for_a_name_where_the_grammar_wants_a_name() -> None:
    tokens, error = lexed(parser(), "segment s where count(click, within=30d) > 1\n")
    assert error is None
    assert ("NAME", "within") in [(t[0], t[1]) for t in tokens]


def test_only_terminals_that_can_hold_a_line_break_have_their_lines_counted() -> None:
    assert _can_hold_newline(r"(\r?\n[\t \f]*)+")
    assert _can_hold_newline(r"a|b\n")
    assert not _can_hold_newline(r"#[^\n]*")
    assert not _can_hold_newline(r'"(?:[^"\\\n]|\\.)*"')
    assert not _can_hold_newline(r"[\t \f]+")
