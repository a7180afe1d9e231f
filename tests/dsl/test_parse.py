from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token, Tree

from dsl.diagnostics import long_form
from dsl.parse import (
    MAX_NESTING,
    MAX_TREE_DEPTH,
    _has_long_line,
    _scan,
    keywords,
    parse_tree,
    parser,
)

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


# ---------------------------------------------------------------------------- the quick scan


def scanned_one_character_at_a_time(
    text: str,
) -> tuple[list[tuple[int, int, str, bool]], list[str]]:
    """The scan's meaning, read one character at a time: comments (line, col, text, trailing) and
    the brace problems (code line:col), strings respected, stopping at too-deep nesting."""
    comments: list[tuple[int, int, str, bool]] = []
    problems: list[str] = []
    opened: list[tuple[str, int, int]] = []
    line, col, code_on_line, in_string, i = 1, 1, False, False, 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\" and i + 1 < len(text) and text[i + 1] != "\n":
                i, col = i + 2, col + 2
                continue
            if ch in '"\n':
                in_string = False
        elif ch == "#":
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            comments.append((line, col, text[i:end].rstrip("\r"), code_on_line))
            col, i = col + end - i, end
            continue
        elif ch == '"':
            in_string = code_on_line = True
        elif ch in "{([":
            opened.append((ch, line, col))
            code_on_line = True
            if len(opened) > MAX_NESTING:
                return comments, [*problems, f"FB104 {line}:{col}"]
        elif ch in "})]":
            code_on_line = True
            if opened and opened[-1][0] == {"}": "{", ")": "(", "]": "["}[ch]:
                opened.pop()
            elif ch == "}":
                problems.append(f"FB102 {line}:{col}")
        elif not ch.isspace():
            code_on_line = True
        if ch == "\n":
            line, col, code_on_line = line + 1, 1, False
        else:
            col += 1
        i += 1
    problems += [f"FB102 {ln}:{cl}" for ch, ln, cl in opened if ch == "{"]
    return comments, problems


SCAN_ALPHABET = st.sampled_from(list('"\\#{}()[]\n \t\rab1\xa0\u3000'))


@settings(max_examples=400, deadline=None)
@given(st.lists(SCAN_ALPHABET, max_size=60).map("".join))
def test_the_scan_finds_what_a_character_by_character_reading_finds(text: str) -> None:
    scan = _scan(text, "s.flow")
    comments = [(c.line, c.col, c.text, c.trailing) for c in scan.comments]
    problems = [f"{d.code} {d.line}:{d.col}" for d in scan.problems]
    assert (comments, problems) == scanned_one_character_at_a_time(text)


@pytest.mark.parametrize("tail", ["[[[[[", "(x)", "[1, 2]", "()", "{}"])
def test_the_scan_stops_at_the_first_bracket_past_the_nesting_limit(tail: str) -> None:
    text = "segment s where " + "[" * MAX_NESTING + tail
    expected = [f"FB104 1:{17 + MAX_NESTING}"]
    assert scanned_one_character_at_a_time(text)[1] == expected
    assert [f"{d.code} {d.line}:{d.col}" for d in _scan(text, "s.flow").problems] == expected


# ---------------------------------------------------------------------------- tree depth


def depth(node: Tree[Token]) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        tree, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in tree.children if isinstance(c, Tree))
    return deepest


# How each operator wraps a condition: (text, the precedence its operand needs, its own).
# Precedence, highest first: 5 unary, 4 sum, 3 comparison, 2 not, 1 and.
WRAPS = [
    ("-{}", 5, 5),
    ("not {}", 2, 2),
    ("[{}]", 0, 5),
    ("{}+1", 4, 4),
    ("opened({})", 0, 5),
    ("{} == 1", 4, 3),
    ("{} and x", 2, 1),
]


@st.composite
def nested_conditions(draw: st.DrawFn) -> str:
    """A condition built by wrapping operators around each other, as tightly written as it goes."""
    text, level = "x", 5
    for wrap, needs, gives in (WRAPS[i] for i in draw(st.lists(st.integers(0, 6), max_size=60))):
        operand = text if level >= needs else f"({text})"
        text, level = wrap.format(operand), gives
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested_conditions())
def test_a_tree_is_never_deeper_than_its_longest_line_is_long(condition: str) -> None:
    """Why only a file with a long line needs its tree depth measured: nesting grows a line."""
    text = f'flow f "F" {{\n  a: branch {{\n    if {condition} -> b\n  }}\n  b: end\n}}\n'
    tree = parser().parse(text)
    longest = max(len(line) for line in text.split("\n"))
    assert depth(tree) <= longest + 8
    assert _has_long_line(text) == (longest >= MAX_TREE_DEPTH - 32)


def test_a_deep_tree_on_a_long_line_is_still_measured_and_refused() -> None:
    text = "segment s where " + "not " * 300 + "true\n"
    assert _has_long_line(text)
    assert [d.code for d in parse_tree(text, "deep.flow").diagnostics] == ["FB104"]


@pytest.mark.parametrize(
    ("line", "word", "keyword", "col"),
    [
        ("first: wait untill 09:00", "untill", "until", 15),
        ("first: sendd hello", "sendd", "send", 10),
        ("first: sendhello", "sendhello", "send", 10),  # never read as `send hello`
        ("first: wait untill09:00", "untill09", "until", 15),
        ("first: wait 1d unles replied", "unles", None, None),
    ],
)
def test_a_keyword_with_extra_letters_is_reported_as_the_whole_word(
    line: str, word: str, keyword: str | None, col: int | None
) -> None:
    source = f'flow a "A" {{\n  trigger event signed_up\n  {line}\n  done: end\n}}\n'
    parsed = parse_tree(source, "glued.flow")
    assert parsed.diagnostics, "the typo was accepted"
    first = parsed.diagnostics[0]
    if keyword is None:  # not a keyword's prefix: the usual message about what was expected
        assert "unknown word" not in first.message
        return
    assert first.message == f"unknown word `{word}`"
    assert first.hint == f"did you mean `{keyword}`?"
    assert (first.span.line, first.span.col, first.span.end_col) == (3, col, col + len(word))
