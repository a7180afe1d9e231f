"""`grammars/flow.lark` loaded into Lark's LALR parser, set up to parse fast.

The parser is Lark's, unchanged in what it accepts and reports but for one rule of the language
that the grammar file cannot say: a keyword is a whole word (`whole_words`). Around it:
- `FlowLexer` (`dsl.lexer`): Lark's contextual lexer with each state's terminals in one pattern;
- `FusedParser` (`dsl.lalr`): Lark's parser loop with that lexer inside it;
- `tree_callbacks` (`dsl.tree_builder`): Lark's tree shaping and positions in one call per rule;
- the grammar's symbol names as plain strings and its rules compared by identity, so that the
  parse table's lookups, done for every token and every reduction, stay in C.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from lark import Lark
from lark.grammar import Rule
from lark.lexer import PatternStr
from lark.parsers.lalr_analysis import Reduce

from dsl.lalr import FusedParser
from dsl.lexer import FlowLexer
from dsl.tree_builder import tree_callbacks


class _IdentityRule(Rule):
    """A rule compared and hashed by identity: the parse table holds each rule once, and
    `Rule.__eq__` / `__hash__` are Python functions called on every reduction."""

    __slots__ = ()
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


class _FlowLark(Lark):
    """Lark with the tree builder, the symbol names and the rules described above."""

    def __init__(self, grammar: str, **options: Any) -> None:
        super().__init__(grammar, **options)
        _identity_rules(self)
        self.parser.parser.parser.__class__ = FusedParser

    def _prepare_callbacks(self) -> None:
        self._callbacks = tree_callbacks(self.rules)
        # The grammar's own names are `Token`s, whose Python-level `__eq__` would run on every
        # lookup in the parse table; as plain strings (same text, same hash) they compare in C.
        for rule in self.rules:
            for symbol in (rule.origin, *rule.expansion):
                if type(symbol.name) is not str:
                    symbol.name = str.__str__(symbol.name)


def _identity_rules(lark: Lark) -> None:
    """Turn the rules the parse table reduces by into `_IdentityRule`s, keyed so in the callbacks.

    The callbacks are looked up by the table's own rule objects (equal, and after a load from the
    cache not always the same objects as `lark.rules`), before their comparison changes.
    """
    lalr = lark.parser.parser.parser
    callbacks: dict[Any, Any] = lalr.callbacks
    rules = {
        id(arg): arg
        for actions in lalr.parse_table.states.values()
        for action, arg in actions.values()
        if action is Reduce
    }
    pairs = [(rule, callbacks[rule]) for rule in rules.values()]
    for rule in rules.values():
        rule.__class__ = _IdentityRule
    callbacks.clear()
    for rule, callback in pairs:  # hashed anew (a dict's `update` from a dict keeps old hashes)
        callbacks[rule] = callback


def load_parser(cache: bool | str = False) -> Lark:
    """The grammar loaded anew (`cache` as Lark's option: a cache file path, or True for Lark's
    file, keyed by the grammar's text, the options and Lark's version)."""
    grammar = resources.files("grammars").joinpath("flow.lark").read_text(encoding="utf-8")
    return whole_words(
        _FlowLark(
            grammar,
            parser="lalr",
            lexer=FlowLexer,
            strict=True,
            propagate_positions=True,
            maybe_placeholders=True,
            cache=cache,
        )
    )


# What may not follow a keyword: a letter, digit or underscore (the characters of a name).
_WORD_GOES_ON = "(?![A-Za-z0-9_])"


def whole_words(lark: Lark) -> Lark:
    """`lark` with its keywords matching only as whole words, before its first parse.

    Where the grammar expects a name, Lark reads a word as a name and then as the keyword it
    spells, if any, so `sender` stays a name. Where only keywords may come (after `s1:`), a
    literal matched the front of a longer word: `s1: sendhello` read as `send hello`. A keyword
    is now followed by no letter, digit or underscore, as `DURATION` already is: `sendhello`
    is an unknown word there. Each keyword stays a string pattern (`PatternStr`), as Lark
    needs to tell keywords from names; only the regular expression it is matched by changes."""
    for terminal in lark.terminals:
        pattern = terminal.pattern
        if isinstance(pattern, PatternStr) and pattern.value.isidentifier():
            pattern.to_regexp = _regexp(re.escape(pattern.value) + _WORD_GOES_ON)  # type: ignore[method-assign]
    return lark


def _regexp(text: str) -> Callable[[], str]:
    return lambda: text
