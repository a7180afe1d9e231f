"""Lark as it comes, on the same grammar: the reference the fast lexer and tree builder match.

`reference()` is the grammar loaded with Lark's own contextual lexer and tree builder
(`propagate_positions=True`), exactly as `dsl.parse` loaded it before it got faster, with the one
rule the grammar file cannot say: keywords are whole words (`dsl.grammar.whole_words`); `shape()`
gives a tree with every position Lark sets, so two trees compare equal only when nothing differs.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree

from bench.flows import generated_flow
from dsl.grammar import whole_words

ROOT = Path(__file__).resolve().parents[2]
META = (
    "empty",
    "line",
    "column",
    "start_pos",
    "end_line",
    "end_column",
    "end_pos",
    "container_line",
    "container_column",
    "container_start_pos",
    "container_end_line",
    "container_end_column",
    "container_end_pos",
)


@lru_cache(maxsize=1)
def reference() -> Lark:
    grammar = resources.files("grammars").joinpath("flow.lark").read_text(encoding="utf-8")
    return whole_words(
        Lark(
            grammar,
            parser="lalr",
            lexer="contextual",
            strict=True,
            propagate_positions=True,
            maybe_placeholders=True,
        )
    )


def token_shape(token: Token) -> tuple[Any, ...]:
    return (
        token.type,
        str(token),
        token.start_pos,
        token.line,
        token.column,
        token.end_line,
        token.end_column,
        token.end_pos,
    )


def shape(node: object) -> object:
    """A tree as nested tuples: rule names, every `meta` position, every token with its own."""
    if isinstance(node, Token):
        return token_shape(node)
    if isinstance(node, Tree):
        meta = tuple(getattr(node.meta, name, None) for name in META)
        return (str(node.data), meta, tuple(shape(child) for child in node.children))
    return node


def corpus() -> list[tuple[str, str]]:
    """Every .flow text the project holds (fixtures, examples) and a generated flow, by name."""
    files = sorted(
        [
            *ROOT.joinpath("tests", "fixtures").rglob("*.flow"),
            *ROOT.joinpath("examples").rglob("*.flow"),
        ]
    )
    texts = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in files]
    return [*texts, ("bench.flows.generated_flow(40)", generated_flow(40))]
