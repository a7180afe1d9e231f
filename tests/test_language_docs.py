"""The language reference is tested: every example compiles, every keyword and function is documented,
and the example workspaces compile (and lint) clean."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsl.compile import compile_paths, compile_text
from dsl.diagnostics import Severity
from dsl.fmt import diff, format_text
from dsl.functions import FUNCTIONS
from dsl.lint import lint_paths
from dsl.parse import keywords

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_MD = ROOT / "docs" / "language.md"
EXAMPLES = ROOT / "examples"

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    heading: str
    line: int
    code: str


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.replace("`", "").lower()).strip("-")


def flow_blocks(text: str) -> list[Block]:
    """Every ```flow block of the page, with the heading it stands under."""
    blocks: list[Block] = []
    heading = "top"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if match := _HEADING.match(lines[i]):
            heading = match.group(2)
        elif (match := _FENCE.match(lines[i])) and match.group(1):
            start = i + 1
            i = start
            while not lines[i].startswith("```"):
                i += 1
            if match.group(1) == "flow":
                blocks.append(Block(heading, start, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return blocks


def prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```\s*$", "", text, flags=re.MULTILINE | re.DOTALL)


def _block_ids(blocks: list[Block]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for block in blocks:
        slug = _slug(block.heading)
        seen[slug] = seen.get(slug, 0) + 1
        ids.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return ids


DOC = LANGUAGE_MD.read_text(encoding="utf-8")
BLOCKS = flow_blocks(DOC)


def workspaces() -> list[Path]:
    """Each folder directly under examples/ is one workspace."""
    return sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and any(p.rglob("*.flow")))


def test_the_reference_is_read_as_dozens_of_flow_blocks() -> None:
    assert len(BLOCKS) >= 40


@pytest.mark.parametrize("block", BLOCKS, ids=_block_ids(BLOCKS))
def test_every_flow_block_in_the_reference_compiles_without_errors(block: Block) -> None:
    compilation = compile_text(block.code, f"docs/language.md:{block.line}")
    errors = [d.concise() for d in compilation.diagnostics if d.severity is Severity.ERROR]
    assert compilation.workspace is not None, errors
    assert errors == []


@pytest.mark.parametrize("word", sorted(keywords()))
def test_every_keyword_appears_in_backticks_in_the_reference(word: str) -> None:
    words = {w for span in _INLINE_CODE.findall(prose(DOC)) for w in re.findall(r"\w+", span)}
    assert word in words, (
        f"`{word}` is a keyword of the grammar but docs/language.md never shows it"
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_a_row_with_its_named_arguments(name: str) -> None:
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{name}(")]
    assert len(rows) == 1, f"docs/language.md needs one function-table row for `{name}`"
    signature = rows[0].split("|")[1]
    for kwarg in FUNCTIONS[name].kwargs:
        assert f"{kwarg}=" in signature, f"the row of `{name}` does not show `{kwarg}=`"


def test_every_construct_heading_is_present() -> None:
    headings = {m.group(2) for line in DOC.splitlines() if (m := _HEADING.match(line))}
    for construct in [
        "`workspace`",
        "`settings`",
        "`attribute`",
        "`segment`",
        "`list`",
        "`stages` and `stage`",
        "`scoring`",
        "`form`",
        "`template`",
        "`flow`",
        "`trigger`",
        "`entry`",
        "`exit`",
        "`goal`",
        "`kind`",
        "`send window`",
        "`quiet hours`",
        "`business days`",
        "`frequency cap`",
        "`timezone`",
        "`layout`",
        "`migrate`",
        "`send`",
        "`wait`",
        "`branch`",
        "`split`",
        "`update`",
        "`add to list`",
        "`remove from list`",
        "`move to flow`",
        "`webhook`",
        "`end`",
    ]:
        assert construct in headings, f"docs/language.md has no section `## {construct}`"


@pytest.mark.parametrize("workspace", workspaces(), ids=lambda p: p.name)
def test_every_example_workspace_compiles_without_errors(workspace: Path) -> None:
    compilation = compile_paths([workspace])
    errors = [d.concise() for d in compilation.diagnostics if d.severity is Severity.ERROR]
    assert compilation.workspace is not None, errors
    assert errors == []


@pytest.mark.parametrize("workspace", workspaces(), ids=lambda p: p.name)
def test_every_template_file_of_the_examples_exists(workspace: Path) -> None:
    compilation = compile_paths([workspace])
    assert compilation.workspace is not None
    for template in compilation.workspace.templates.values():
        for relative in (template.html, template.text):
            if relative is not None:
                body = workspace / relative
                assert body.is_file(), f"template `{template.name}` names a missing {relative}"
                assert "{{ unsubscribe_url }}" in body.read_text(encoding="utf-8")


def test_the_acme_workspace_is_lint_clean() -> None:
    result = lint_paths([EXAMPLES / "acme"])
    assert [d.concise() for d in result.diagnostics] == []


def test_the_layout_block_never_changes_the_ir_hash() -> None:
    (block,) = [b for b in BLOCKS if b.heading == "The layout block and the IR hash"]
    without = re.sub(r"\n  layout \{.*?\n  \}\n", "\n", block.code, flags=re.DOTALL)
    assert "layout {" in block.code and "layout {" not in without
    with_layout, plain = compile_text(block.code).workspace, compile_text(without).workspace
    assert with_layout is not None and plain is not None
    assert with_layout.content_hash() == plain.content_hash()


@pytest.mark.parametrize("block", BLOCKS, ids=_block_ids(BLOCKS))
def test_every_flow_block_in_the_reference_is_in_canonical_format(block: Block) -> None:
    assert format_text(block.code) == block.code, diff(block.code)
