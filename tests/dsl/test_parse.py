from __future__ import annotations

from dsl.diagnostics import long_form
from dsl.parse import keywords, parse_tree

BROKEN = """\
flow welcome "Welcome" {
  trigger event signed_up
  hello: send welcome_email
  pause: wait soon
  send: send x
  guide: sned guide_email
  check: branch {
    if opened(hello) -> guide
    elif opened(guide) -> done
  }
  done: end
}
"""


def test_every_syntax_error_of_a_file_is_reported_in_one_pass() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    assert parsed.tree is None
    assert [(d.code, d.line, d.col) for d in parsed.diagnostics] == [
        ("FB100", 4, 15),
        ("FB105", 5, 3),
        ("FB100", 6, 10),
        ("FB100", 9, 5),
    ]


def test_a_missing_duration_is_explained_in_a_marketers_words() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    first = parsed.diagnostics[0]
    assert "expected a duration such as 3d or 12h" in first.message
    assert "after `wait`" in first.message
    assert "found `soon`" in first.message


def test_the_long_form_shows_the_line_and_a_caret_under_the_problem() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    text = long_form(parsed.diagnostics[0], BROKEN)
    assert "   4 |   pause: wait soon" in text
    assert text.splitlines()[2].endswith("^^^^")


def test_the_caret_stays_aligned_under_tab_indentation() -> None:
    source = "flow f {\n\ta: wait soon\n}\n"
    parsed = parse_tree(source, "tabs.flow")
    caret_line = long_form(parsed.diagnostics[0], source).splitlines()[2]
    assert caret_line.endswith("| \t        ^^^^")


def test_a_typo_in_a_step_keyword_gets_a_did_you_mean_hint() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    assert parsed.diagnostics[2].hint == "did you mean `send`?"


def test_a_reserved_word_used_as_a_step_name_is_named_as_such() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    assert parsed.diagnostics[1].message == "`send` is a reserved word and cannot name a step"


def test_elif_is_answered_with_else_if() -> None:
    parsed = parse_tree(BROKEN, "broken.flow")
    assert parsed.diagnostics[3].hint == "write `else if`"


def test_an_unclosed_block_points_at_its_opening_brace() -> None:
    parsed = parse_tree('flow f "F" {\n  a: end\n', "open.flow")
    assert [(d.code, d.line, d.col) for d in parsed.diagnostics] == [("FB102", 1, 12)]


def test_a_stray_closing_brace_is_reported() -> None:
    parsed = parse_tree("}\n", "stray.flow")
    assert [(d.code, d.line, d.col) for d in parsed.diagnostics] == [("FB102", 1, 1)]


def test_braces_inside_strings_and_comments_do_not_count() -> None:
    text = "template t {\n  subject \"Hi {{ first_name | default('x') }} }\"  # } {\n}\n"
    assert parse_tree(text, "t.flow").diagnostics == []


def test_comments_are_captured_with_their_position_and_kind() -> None:
    text = '# header\nflow f "F" {  # trailing\n  a: end\n  # before close\n}\n'
    parsed = parse_tree(text, "c.flow")
    assert [(c.line, c.col, c.text, c.trailing) for c in parsed.comments] == [
        (1, 1, "# header", False),
        (2, 15, "# trailing", True),
        (4, 3, "# before close", False),
    ]


def test_a_hash_inside_a_string_is_not_a_comment() -> None:
    parsed = parse_tree('template t {\n  subject "Deal #1"\n}\n', "s.flow")
    assert parsed.comments == []
    assert parsed.diagnostics == []


def test_non_utf8_bytes_are_reported_with_their_offset() -> None:
    parsed = parse_tree(b"flow f {\n\xff\xfe}\n", "latin.flow")
    assert [(d.code, d.line) for d in parsed.diagnostics] == [("FB103", 2)]
    assert "0xff" in parsed.diagnostics[0].message


def test_binary_data_is_reported_not_parsed() -> None:
    parsed = parse_tree("flow\x00", "bin.flow")
    assert [d.code for d in parsed.diagnostics] == ["FB103"]


def test_a_ten_megabyte_file_is_refused_with_its_size() -> None:
    parsed = parse_tree(b"#" * 10_000_000, "huge.flow")
    assert [d.code for d in parsed.diagnostics] == ["FB104"]
    assert "10.0 MB" in parsed.diagnostics[0].message


def test_deep_nesting_is_refused_before_parsing() -> None:
    text = "segment s where " + "(" * 500 + "true" + ")" * 500 + "\n"
    parsed = parse_tree(text, "deep.flow")
    assert [d.code for d in parsed.diagnostics] == ["FB104"]


def test_a_file_without_a_final_newline_parses() -> None:
    assert parse_tree('flow f "F" {\n  a: end\n}', "n.flow").diagnostics == []


def test_a_file_with_crlf_line_endings_parses() -> None:
    assert parse_tree('flow f "F" {\r\n  a: end\r\n}\r\n', "crlf.flow").diagnostics == []


def test_keywords_include_the_step_actions() -> None:
    assert {"send", "wait", "branch", "split", "update", "end", "trigger"} <= keywords()
