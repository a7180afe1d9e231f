"""The one-call-per-rule tree builder gives Lark's trees: same shape, same positions, same
placeholders; and the parse diagnostics built on them are the ones Lark's trees give."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark, Tree
from lark.exceptions import UnexpectedInput

import dsl.parse
from dsl.grammar import load_parser
from dsl.lalr import FusedParser, compiled_run
from dsl.parse import parse_tree, parser
from tests.dsl.lark_reference import corpus, reference, shape
from tests.dsl.strategies import flow_texts


@pytest.fixture(autouse=True, params=["C loop", "Python loop"])
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the fused loop in C (dsl/_fused.c) and with its Python twin."""
    monkeypatch.setattr(FusedParser, "compiled_loop", request.param == "C loop")
    return str(request.param)


def test_the_compiled_loop_is_built() -> None:
    assert compiled_run is not None, (
        "dsl/_fused.c is not built: `make test` builds it with `pip install -e .`, which needs a C "
        "compiler and Python's headers (Debian: gcc, python3-dev)"
    )


def parsed(lark: Lark, text: str) -> object:
    work = text if text.endswith("\n") else text + "\n"
    try:
        return shape(lark.parse(work))
    except UnexpectedInput as error:
        return type(error).__name__, error.line, error.column


@pytest.mark.parametrize(("name", "text"), corpus(), ids=[name for name, _ in corpus()])
def test_every_project_file_parses_to_lark_s_tree(name: str, text: str) -> None:
    tree = parsed(parser(), text)
    assert "invalid" in name or tree[0] == "start", tree  # type: ignore[index]
    assert tree == parsed(reference(), text)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(flow_texts())
def test_generated_flows_parse_to_lark_s_tree(text: str) -> None:
    assert parsed(parser(), text) == parsed(reference(), text)


def test_no_inlined_rule_is_left_in_a_tree() -> None:
    for _, text in corpus():
        tree = parse_tree(text).tree
        for node in tree.iter_subtrees() if tree is not None else ():
            assert type(node) is Tree
            assert not str(node.data).startswith("_"), node.data
            assert isinstance(node.data, str) and type(node.data) is str


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(flow_texts(), st.integers(0, 10_000), st.integers(0, 3), st.sampled_from(list("{}():#\n")))
def test_syntax_diagnostics_are_the_ones_lark_s_trees_give(
    text: str, at: int, cut: int, insert: str
) -> None:
    at %= len(text) + 1
    damaged = text[:at] + insert + text[at + cut :]
    ours = parse_tree(damaged, "d.flow").diagnostics
    with mock.patch.object(dsl.parse, "parser", reference):
        theirs = parse_tree(damaged, "d.flow").diagnostics
    assert ours == theirs


def test_a_parser_loaded_from_lark_s_cache_builds_the_same_trees(tmp_path: Path) -> None:
    cache = str(tmp_path / "flow.lark.cache")
    fresh = load_parser(cache=cache)
    assert Path(cache).exists()
    cached = load_parser(cache=cache)
    for _, text in corpus()[:4]:
        work = text if text.endswith("\n") else text + "\n"
        assert shape(cached.parse(work)) == shape(fresh.parse(work)) == parsed(reference(), text)


@pytest.mark.parametrize(
    "text",
    [
        "flow f {\n  a: wait 1d\n  b: end\n}\n   # only a comment after the last token",
        "flow f {\n  a: end ' oops\n}\n",  # a character no pattern matches: Lark's lexer decides
        "flow f {\n  a: wait 1d\n  b: end\n",  # the end of the text where `}` is expected
        "flow f {\n  a: wait wait\n}\n",  # a token the parse table has no action for
        # text of every width (1, 2 and 4 bytes a character) and Windows line ends
        'flow f "환영 👋" {  # 주석 🎉\r\n  # 🎉\r\n  a: wait 1d\r\n  b: end  # é\r\n}\r\n',
        'flow f "👋" {\n  a: wait 1d 🎉\n}\n',
    ],
)
def test_the_fused_parser_loop_ends_and_fails_as_lark_s_does(text: str) -> None:
    lark = parser()
    assert type(lark.parser.parser.parser) is FusedParser
    assert parsed(lark, text) == parsed(reference(), text)
    assert parse_tree(text, "f.flow").diagnostics == _reference_diagnostics(text)


def _reference_diagnostics(text: str) -> object:
    with mock.patch.object(dsl.parse, "parser", reference):
        return parse_tree(text, "f.flow").diagnostics


def test_an_error_raised_while_building_a_tree_leaves_the_loop_cleanly(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree-building callback that raises ends the parse with its own error (the C loop gives
    back every object it holds), and the next parse is whole again."""
    lark = parser()
    fused = lark.parser.parser.parser
    text = "flow f {\n  a: wait 1d\n  b: end\n}\n"
    lark.parse(text)  # the loop's table is made on the first parse
    actions = fused._actions
    assert actions is not None

    def refuse(children: list[object]) -> object:
        raise RuntimeError("refused")

    broken = {
        state: {
            symbol: (a[0], a[1], refuse) if isinstance(a, tuple) and a[1] == "wait" else a
            for symbol, a in row.items()
        }
        for state, row in actions.items()
    }
    monkeypatch.setattr(fused, "_actions", broken)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="refused"):
            lark.parse(text)
    monkeypatch.setattr(fused, "_actions", actions)
    assert shape(lark.parse(text)) == parsed(reference(), text)
