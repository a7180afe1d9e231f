"""What the highlighters are tested against: every example file and every ```flow block of the
language reference, with the parser's own reading of each as the expected answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lark import Token

from dsl.parse import keywords, parse_tree, parser
from flowbuilder.lsp.symbols import Index
from tests.test_language_docs import BLOCKS, _block_ids

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.flow"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "valid").glob("*.flow")) + sorted(
    (ROOT / "tests" / "fixtures" / "identity").glob("*.flow")
)


@dataclass(frozen=True)
class Case:
    name: str
    text: str


def cases() -> list[Case]:
    found = [
        Case(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in EXAMPLES + FIXTURES
    ]
    found += [
        Case(f"docs/language.md#{ident}", block.code)
        for ident, block in zip(_block_ids(BLOCKS), BLOCKS, strict=True)
    ]
    return found


CASES = cases()
IDS = [c.name for c in CASES]


def lark_tokens(text: str) -> list[Token]:
    """Every token the parser reads (comments aside), with the contextual lexer's types."""
    interactive = parser().parse_interactive(text if text.endswith("\n") else text + "\n")
    return [t for t in interactive.iter_parse() if t.type != "_NL"]


def is_keyword(token: Token) -> bool:
    return token.type != "NAME" and str(token.value) in keywords()


def comments(text: str) -> list[tuple[int, int, int]]:
    """(line, first column, last column + 1) of every comment."""
    parsed = parse_tree(text)
    return [(c.line, c.col, c.col + len(c.text)) for c in parsed.comments]


def step_names(text: str) -> list[tuple[int, int, int]]:
    """(line, column, end column) of every step name: declarations, edges, arms, `opened(step)`,
    `step=`, layout places."""
    tree = parse_tree(text).tree
    assert tree is not None
    index = Index.build({"x": tree})
    return [
        (o.span.line, o.span.col, o.span.end_col)
        for o in index.occurrences["x"]
        if o.kind == "step"
    ]


LITERALS = {"STRING", "DURATION", "TIME", "PERCENT", "NUMBER", "DATE"}
