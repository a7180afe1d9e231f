"""Every rule has a page in docs/lint/ whose Bad example triggers it and whose Good example does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsl.compile import compile_text
from dsl.diagnostics import Diagnostic, Severity
from dsl.lint import lint
from dsl.rules import RULES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lint"
NOT_TEXT = {"FB103", "FB104"}  # binary data and oversized input: built in code below


def example(code: str, heading: str) -> str | None:
    page = (DOCS / f"{code}.md").read_text()
    section = page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```flow\n(.*?)```", section, re.S)
    return None if block is None else block.group(1)


def files(code: str, heading: str) -> dict[str, str]:
    """Template files shown beside the example: ```html templates/hello.html blocks."""
    page = (DOCS / f"{code}.md").read_text()
    section = page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```\w+ (\S+)\n(.*?)```", section, re.S))


def lint_example(code: str, heading: str, text: str, tmp_path: Path) -> list[Diagnostic]:
    """Template rules read files, so their examples are linted as a workspace on disk."""
    extra = files(code, heading)
    if RULES[code].family != "template" and not extra:
        return lint(compile_text(text, f"{code}-{heading.lower()}.flow"))
    from flowbuilder.mail.lint import lint_paths

    (tmp_path / f"{code}.flow").write_text(text, encoding="utf-8")
    for name, body in extra.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    return lint_paths([tmp_path]).diagnostics


def codes(text: str | bytes, path: str) -> set[str]:
    return {d.code for d in lint(compile_text(text, path))}


@pytest.mark.parametrize("code", sorted(RULES))
def test_every_rule_has_a_page_and_an_index_row(code: str) -> None:
    page = (DOCS / f"{code}.md").read_text()
    assert page.startswith(f"# {code} {RULES[code].name}\n")
    assert f"[{code}]({code}.md)" in (DOCS / "README.md").read_text()


@pytest.mark.parametrize("code", sorted(set(RULES) - NOT_TEXT))
def test_the_bad_example_triggers_the_rule(code: str, tmp_path: Path) -> None:
    bad = example(code, "Bad")
    assert bad is not None
    assert code in {d.code for d in lint_example(code, "Bad", bad, tmp_path)}


@pytest.mark.parametrize("code", sorted(RULES))
def test_the_good_example_is_free_of_the_rule_and_of_errors(code: str, tmp_path: Path) -> None:
    good = example(code, "Good")
    assert good is not None
    diagnostics = lint_example(code, "Good", good, tmp_path)
    assert code not in {d.code for d in diagnostics}
    assert not [d for d in diagnostics if d.severity is Severity.ERROR]


def test_fb103_binary_and_foreign_encodings_are_reported() -> None:
    assert "FB103" in codes(b"\x00\x01binary", "bin.flow")
    assert "FB103" in codes("flow café {}".encode("euc-kr", "replace") + b"\xff", "euckr.flow")


def test_fb104_oversized_and_deeply_nested_input_is_reported() -> None:
    assert "FB104" in codes(b"#" * 3_000_000, "big.flow")
    assert "FB104" in codes("segment s where " + "(" * 100 + "true" + ")" * 100 + "\n", "deep.flow")
