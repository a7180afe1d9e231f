"""The formatter prints canonical text from the parse tree and keeps every comment."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from lark import Token, Tree

import dsl.fmt
from dsl.diagnostics import FlowSyntaxError
from dsl.fmt import check, diff, format_node, format_text
from dsl.parse import parse_tree
from tests.dsl.strategies import flow_texts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IDENTITY = sorted((FIXTURES / "identity").glob("*.flow"))
VALID = sorted((FIXTURES / "valid").glob("*.flow"))


def tree_of(text: str) -> Tree[Token]:
    parsed = parse_tree(text)
    assert parsed.tree is not None, parsed.diagnostics
    return parsed.tree


def comments_of(text: str) -> list[tuple[str, bool]]:
    return [(c.text.rstrip(), c.trailing) for c in parse_tree(text).comments]


def assert_canonical_form_of(text: str) -> str:
    """The formatted text: a fixed point, with the same tree and the same comments in order."""
    formatted = format_text(text)
    assert format_text(formatted) == formatted
    assert tree_of(formatted) == tree_of(text)
    assert comments_of(formatted) == comments_of(text)
    return formatted


# ---------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("path", IDENTITY, ids=[p.stem for p in IDENTITY])
def test_an_identity_fixture_is_already_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert format_text(text) == text


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_a_valid_fixture_formats_to_a_fixed_point_with_its_tree_and_comments(path: Path) -> None:
    assert_canonical_form_of(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- messy input


def test_odd_spacing_becomes_single_spaces_and_two_space_indentation() -> None:
    messy = (
        "flow   welcome\t{\n"
        "\t\ttrigger  event\tsigned_up\n"
        'hello :send welcome_email   subject\t"Hi"->done\n'
        "      check:branch{\n"
        'if opened( hello,link = "x" )->done\n'
        " else->  done\n"
        "                }\n"
        "  done :end\n"
        "layout{\n"
        "hello:100 ,- 20\n"
        "}\n"
        "}"
    )
    assert format_text(messy) == (
        "flow welcome {\n"
        "  trigger event signed_up\n"
        '  hello: send welcome_email subject "Hi" -> done\n'
        "  check: branch {\n"
        '    if opened(hello, link="x") -> done\n'
        "    else -> done\n"
        "  }\n"
        "  done: end\n"
        "  layout {\n"
        "    hello: 100, -20\n"
        "  }\n"
        "}\n"
    )


def test_policies_print_ranges_lists_and_scores_without_inner_spaces() -> None:
    messy = (
        "workspace w {\n  quiet hours 21:00 - 08:00\n  send window 9:00 -18:00 mon - fri , sun\n}\n"
        "scoring {\n  fit + 20 when lead . score > 1\n  engagement - 5 per click\n}\n"
    )
    assert format_text(messy) == (
        "workspace w {\n  quiet hours 21:00-08:00\n  send window 9:00-18:00 mon-fri, sun\n}\n\n"
        "scoring {\n  fit +20 when lead.score > 1\n  engagement -5 per click\n}\n"
    )


def test_runs_of_blank_lines_collapse_to_one_and_vanish_at_block_edges() -> None:
    messy = (
        "\n\n\nflow f {\n\n\n  a: wait 1d\n\n\n\n  b: end\n\n\n}\n\n\n\nflow g {\n  c: end\n}\n\n\n"
    )
    assert format_text(messy) == "flow f {\n  a: wait 1d\n\n  b: end\n}\n\nflow g {\n  c: end\n}\n"


def test_top_level_declarations_are_separated_by_one_blank_line() -> None:
    text = "flow f {\n  a: end\n}\nsegment s where true\nflow g {\n  b: end\n}\n"
    assert format_text(text) == (
        "flow f {\n  a: end\n}\n\nsegment s where true\n\nflow g {\n  b: end\n}\n"
    )


def test_a_run_of_one_line_declarations_of_one_kind_stays_together() -> None:
    text = "attribute a: string\nattribute b: number\nlist x\nlist y\n\nlist z\n"
    assert (
        format_text(text)
        == "attribute a: string\nattribute b: number\n\nlist x\nlist y\n\nlist z\n"
    )


def test_redundant_parentheses_are_dropped_and_needed_ones_kept() -> None:
    text = (
        "segment s where ((opened())) and (lead.a + (lead.b * 2)) > ((lead.c - 1) - (lead.d - 2))"
        " or (not (replied()))\n"
    )
    formatted = assert_canonical_form_of(text)
    assert formatted == (
        "segment s where opened() and lead.a + lead.b * 2 > lead.c - 1 - (lead.d - 2)"
        " or not replied()\n"
    )


def test_a_nested_or_keeps_its_parentheses_so_the_tree_stays_the_same() -> None:
    text = "segment s where opened() or (clicked() or replied())\n"
    assert assert_canonical_form_of(text) == text


def test_crlf_line_endings_become_lf() -> None:
    text = "flow f {\r\n  a: wait 1d  # soon\r\n\r\n  b: end\r\n}\r\n"
    assert format_text(text) == "flow f {\n  a: wait 1d  # soon\n\n  b: end\n}\n"


def test_a_byte_order_mark_is_dropped_and_a_missing_final_newline_added() -> None:
    assert format_text("\ufeffflow f {\n  a: end\n}") == "flow f {\n  a: end\n}\n"


def test_strings_and_numbers_are_kept_exactly_as_written() -> None:
    text = 'settings {\n  a = 007.50\n  b = "tab\\t \\"quoted\\" 한국어"\n}\n'
    assert format_text(text) == text


def test_an_empty_or_comment_only_file_formats_to_itself() -> None:
    assert format_text("") == ""
    assert format_text("\n\n") == ""
    assert format_text("# only a comment\n\n\n# and another   \n") == (
        "# only a comment\n\n# and another\n"
    )


# ---------------------------------------------------------------------------- comments


def test_a_trailing_comment_stays_on_its_line_after_two_spaces() -> None:
    text = "flow f {\n  a: wait 1d        # why one day\n  b: end#bare\n}\n"
    assert format_text(text) == "flow f {\n  a: wait 1d  # why one day\n  b: end  #bare\n}\n"


def test_an_own_line_comment_takes_the_indentation_of_the_item_below_it() -> None:
    text = "flow f {\n# about a\n      # more about a\n  a: branch {\n# about the arm\n    else -> b\n  }\n  b: end\n}\n"
    assert format_text(text) == (
        "flow f {\n  # about a\n  # more about a\n  a: branch {\n    # about the arm\n"
        "    else -> b\n  }\n  b: end\n}\n"
    )


def test_comments_after_the_last_item_stay_inside_the_block() -> None:
    text = "flow f {\n  a: end\n# closing thoughts\n\n}\n# end of file\n"
    assert format_text(text) == "flow f {\n  a: end\n  # closing thoughts\n}\n\n# end of file\n"


def test_comments_on_block_braces_stay_on_those_lines() -> None:
    text = "flow f {#open\n  a: send t {   # variants\n    variant v 50%\n  }->b # edge\n  b: end\n}   # close\n"
    assert format_text(text) == (
        "flow f {  #open\n  a: send t {  # variants\n    variant v 50%\n  } -> b  # edge\n"
        "  b: end\n}  # close\n"
    )


def test_trailing_whitespace_of_a_comment_is_removed() -> None:
    assert format_text("flow f {\n  a: end  # x   \t\n}\n") == "flow f {\n  a: end  # x\n}\n"


# ---------------------------------------------------------------------------- options and API


def test_strip_layout_drops_the_layout_block_and_its_comments() -> None:
    text = (
        "flow f {\n  # the steps\n  a: end\n\n  layout {  # positions\n    # canvas\n"
        "    a: 1, 2\n  }\n  # kept\n}\n"
    )
    assert (
        format_text(text, strip_layout=True) == "flow f {\n  # the steps\n  a: end\n\n  # kept\n}\n"
    )


def test_a_file_with_syntax_errors_is_refused_with_its_diagnostics() -> None:
    with pytest.raises(FlowSyntaxError) as caught:
        format_text("flow f {\n  a: wait soon\n}\n", "broken.flow")
    assert caught.value.diagnostics[0].path == "broken.flow"
    assert caught.value.diagnostics[0].line == 2


def test_check_tells_whether_a_text_is_canonical() -> None:
    assert check("flow f {\n  a: end\n}\n")
    assert not check("flow f {\n a: end\n}\n")


def test_diff_shows_what_formatting_would_change() -> None:
    out = diff("flow f {\n a: end\n}\n", "f.flow")
    assert out.startswith("--- f.flow\n+++ f.flow (formatted)\n")
    assert "- a: end\n+  a: end\n" in out
    assert diff("flow f {\n  a: end\n}\n", "f.flow") == ""


def test_format_node_prints_one_statement_or_expression() -> None:
    tree = tree_of("flow f {\n  a : branch {\n   if (x)->b\n  }\n  b: wait  1d->a\n}\n")
    flow = tree.children[0]
    assert isinstance(flow, Tree)
    branch, wait = flow.children[2], flow.children[3]
    assert isinstance(branch, Tree) and isinstance(wait, Tree)
    assert format_node(wait) == "b: wait 1d -> a"
    assert format_node(branch) == "a: branch {\n  if x -> b\n}"
    condition = next(branch.find_data("if_arm")).children[0]
    assert isinstance(condition, Tree)
    assert format_node(condition) == "x"
    assert (
        format_node(tree) == "flow f {\n  a: branch {\n    if x -> b\n  }\n  b: wait 1d -> a\n}\n"
    )
    edge = next(wait.find_data("edge"))
    with pytest.raises(ValueError, match="part of a statement"):
        format_node(edge)


# ---------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_texts())
def test_formatting_any_valid_flow_is_idempotent_and_keeps_its_tree_and_comments(
    text: str,
) -> None:
    assert_canonical_form_of(text)


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(dsl.fmt).failed == 0


def test_check_and_diff_can_strip_the_layout_too() -> None:
    text = "flow f {\n  a: end\n  layout {\n    a: 1, 2\n  }\n}\n"
    assert check(text)
    assert not check(text, strip_layout=True)
    assert "-  layout {\n" in diff(text, "f.flow", strip_layout=True)
