"""Bad input never crashes the language tools: it yields diagnostics with real positions."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compile import compile_text
from dsl.diagnostics import Diagnostic

KITCHEN_SINK = (
    Path(__file__).resolve().parents[1] / "fixtures" / "valid" / "kitchen_sink.flow"
).read_text()
ALPHABET = st.sampled_from(
    [
        *list('{}()[]:,.->=<!+*/%#"\\\n\t 0123456789abcdxyz_'),
        "send",
        "wait",
        "flow",
        "if",
        "else",
        "3d",
        "09:00",
        "50%",
    ]
)


def assert_well_placed(diagnostics: list[Diagnostic], text: str) -> None:
    lines = max(text.count("\n") + 1, 1)
    for d in diagnostics:
        assert d.message
        assert 1 <= d.line <= lines + 1, d
        assert d.col >= 1, d


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_diagnostics_not_crashes(data: bytes) -> None:
    result = compile_text(data, "random.flow")
    text = data.decode("utf-8", "replace")
    assert_well_placed(result.diagnostics, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=80).map("".join))
def test_token_soup_gives_diagnostics_not_crashes(text: str) -> None:
    assert_well_placed(compile_text(text, "soup.flow").diagnostics, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(KITCHEN_SINK) - 1),
    st.integers(0, 12),
    st.text(alphabet='{}()x:-> \n"#0123d%', max_size=6),
)
def test_a_damaged_valid_file_gives_diagnostics_not_crashes(at: int, cut: int, insert: str) -> None:
    text = KITCHEN_SINK[:at] + insert + KITCHEN_SINK[at + cut :]
    assert_well_placed(compile_text(text, "damaged.flow").diagnostics, text)


def test_deeply_nested_conditions_within_the_limit_compile() -> None:
    text = "segment s where " + "(" * 60 + "true" + ")" * 60 + "\n"
    assert compile_text(text, "deep.flow").diagnostics == []


def test_a_long_chain_of_operators_does_not_exhaust_the_stack() -> None:
    text = "segment s where " + " and ".join(["lead.score > 1"] * 3000) + "\n"
    assert compile_text(text, "long.flow").diagnostics == []


def test_a_very_long_arithmetic_chain_is_refused_with_a_diagnostic() -> None:
    text = "segment s where lead.score > " + " + ".join(["1"] * 3000) + "\n"
    assert [d.code for d in compile_text(text, "chain.flow").diagnostics] == ["FB104"]


def test_thousands_of_nots_are_refused_with_a_diagnostic() -> None:
    text = "segment s where " + "not " * 3000 + "true\n"
    assert [d.code for d in compile_text(text, "nots.flow").diagnostics] == ["FB104"]
