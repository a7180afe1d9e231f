"""Lark's contextual lexer, with each parser state's terminals fused into one regular expression.

Lark's own contextual lexer matches one terminal per call and treats spaces and comments as tokens
it then drops, so most of its time goes to Python-level bookkeeping between `re` calls. This lexer
keeps its decisions (the same terminal set per parser state, the same order of alternatives, the
same keyword-or-name choice) and compiles each state's set once into a single pattern that also
skips the ignored terminals, so one `re` match yields one token.

It is a drop-in for `Lark(..., lexer=FlowLexer)`: tokens and positions are Lark's (1-based lines
and columns, 0-based offsets), and wherever a pattern does not match, Lark's contextual lexer
takes over from that position, so errors (`UnexpectedCharacters`, `UnexpectedToken`) are exactly
Lark's. `tests/dsl/test_lexer.py` holds it to that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from typing import Any

import interegular
from lark import Token
from lark.common import LexerConf
from lark.lexer import BasicLexer, ContextualLexer, Lexer, LexerState, PatternStr, UnlessCallback

_new_str = str.__new__

Match = Callable[[str, int, int], "re.Match[str] | None"]
# What one parser state accepts: its fused pattern's `match`, the keywords hidden in each terminal
# that also matches them (NAME: `send`, `wait` …), and the terminals whose tokens can hold newlines.
StateLexer = tuple[Match, dict[str, dict[str, str]], frozenset[str]]


def _no_match(text: str, pos: int, end: int) -> None:
    return None


_LARK_DECIDES: StateLexer = (_no_match, {}, frozenset())


class FlowLexer(Lexer):
    """A contextual lexer for LALR parsing that matches each token with one `re` call."""

    __future_interface__ = 2

    def __init__(self, conf: LexerConf) -> None:
        self.conf = conf
        self._table: _States | None = None
        self._contextual: ContextualLexer | None = None
        self._skip: re.Pattern[str] | None = None
        self._skip_newlines = True

    def _prepare(self, parser_state: Any) -> _States:
        """Lark's contextual lexer for this parse table; each state's pattern comes when needed."""
        table = parser_state.parse_conf.parse_table
        states: dict[int, Collection[str]] = {idx: list(t) for idx, t in table.states.items()}
        contextual = ContextualLexer(self.conf, states)
        ignored = [t for t in self.conf.terminals if t.name in self.conf.ignore]
        # Atomic: once skipped, a comment is never given back to match a token inside it.
        alternatives = "|".join(f"(?:{t.pattern.to_regexp()})" for t in ignored)
        skip = f"(?>(?:{alternatives})*)" if ignored else ""
        # Lark counts the lines in the tokens of the terminals it guesses may hold a line break;
        # of those, only the ones that really can need counting.
        root = contextual.root_lexer
        guessed = root.newline_types if isinstance(root, BasicLexer) else frozenset()
        lark_lexers = isinstance(root, BasicLexer)
        newline_types = frozenset(
            t.name
            for t in self.conf.terminals
            if t.name in guessed and _can_hold_newline(t.pattern.to_regexp())
        )
        # A skipped stretch is counted whole; that is Lark's count unless an ignored terminal can
        # hold a line break that Lark would not count (then Lark's lexer does all the work).
        fusable = lark_lexers and not any(
            t.name not in guessed and _can_hold_newline(t.pattern.to_regexp()) for t in ignored
        )
        self._skip = re.compile(skip, self.conf.g_regex_flags)
        self._skip_newlines = any(t.name in newline_types for t in ignored)
        self._contextual = contextual
        self._table = _States(contextual, skip, self.conf.g_regex_flags, newline_types, fusable)
        return self._table

    def state_lexers(self, parser_state: Any) -> _States:
        """Each parser state's fused pattern (`StateLexer`), by state number."""
        return self._table if self._table is not None else self._prepare(parser_state)

    @property
    def skips_newlines(self) -> bool:
        """Whether a skipped stretch (spaces, comments) can hold line breaks to count."""
        return self._skip_newlines

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        # Lark's own loop drives this generator in a resumed or interactive parse (completion).
        # A parse from the start runs `dsl.lalr.FusedParser`, which makes tokens the same way
        # inside its parse loop, in C (dsl/_fused.c) or in Python (`FusedParser._py_run`); a
        # call per token there would cost a tenth of the parse. A change to one is a change to
        # all three; tests/dsl/test_lexer.py and test_tree_builder.py hold each to Lark's own.
        table = self.state_lexers(parser_state)
        skip_newlines = self._skip_newlines
        text_slice = lexer_state.text
        text: str = text_slice.text
        end: int = text_slice.end
        counter = lexer_state.line_ctr
        pos: int = counter.char_pos
        line: int = counter.line
        line_start: int = counter.line_start_pos
        state_stack = parser_state.state_stack
        token = lexer_state.last_token
        try:
            while pos < end:
                match, keywords, newline_types = table[state_stack[-1]]
                m = match(text, pos, end)
                if m is None:
                    break
                type_: str = m.lastgroup  # type: ignore[assignment]
                start, stop = m.span(type_)
                if skip_newlines and start != pos:
                    newlines = text.count("\n", pos, start)
                    if newlines:
                        line += newlines
                        line_start = text.rindex("\n", pos, start) + 1
                value = text[start:stop]
                if type_ in keywords:
                    type_ = keywords[type_].get(value, type_)
                token = _new_str(Token, value)
                token.type = type_
                token.start_pos = start
                token.value = value
                token.line = line
                token.column = start - line_start + 1
                if type_ in newline_types:
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = start + value.rindex("\n") + 1
                token.end_line = line
                token.end_column = stop - line_start + 1
                token.end_pos = pos = stop
                yield token
        finally:
            # Where Lark's lexer would be: for the parser's error reports, and to go on from here.
            counter.char_pos = pos
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = pos - line_start + 1
            lexer_state.last_token = token
        if pos < end:
            yield from self.rest(lexer_state, parser_state)

    def rest(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        """The tokens from where no fused pattern matched: none if only spaces and comments
        are left, else Lark's contextual lexer's from there."""
        text: str = lexer_state.text.text
        end: int = lexer_state.text.end
        counter = lexer_state.line_ctr
        pos, line, line_start = counter.char_pos, counter.line, counter.line_start_pos
        assert self._skip is not None and self._contextual is not None
        skipped = self._skip.match(text, pos, end)
        if skipped is not None and skipped.end() == end:
            newlines = text.count("\n", pos, end)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", pos, end) + 1
            counter.char_pos = end
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = end - line_start + 1
            return
        # Not a token this state accepts: Lark's lexer reports it (or lexes on) from here.
        yield from self._contextual.lex(lexer_state, parser_state)


class _States(dict[int, StateLexer]):
    """Each parser state's fused pattern, compiled the first time the parser is in that state."""

    def __init__(
        self,
        contextual: ContextualLexer,
        skip: str,
        flags: int,
        newline_types: frozenset[str],
        fusable: bool,
    ) -> None:
        super().__init__()
        self.lexers = contextual.lexers
        self.skip = skip
        self.flags = flags
        self.newline_types = newline_types
        self.fusable = fusable
        self.by_lexer: dict[int, StateLexer] = {}

    def __missing__(self, state: int) -> StateLexer:
        basic = self.lexers.get(state)
        if not isinstance(basic, BasicLexer) or not self.fusable:
            entry = _LARK_DECIDES
        else:
            # States that accept the same terminals share Lark's lexer, and so one pattern.
            entry = self.by_lexer.get(id(basic)) or _fuse(
                basic, self.skip, self.flags, self.newline_types
            )
            self.by_lexer[id(basic)] = entry
        self[state] = entry
        return entry


def _can_hold_newline(regexp: str) -> bool:
    """Whether some text the pattern matches contains a line break (decided on its automaton)."""
    try:
        pattern = interegular.parse_pattern(regexp).to_fsm()
    except Exception:  # a construct interegular cannot model: assume it can, and count
        return True
    with_newline = interegular.parse_pattern(r"(?:.|\n)*\n(?:.|\n)*").to_fsm()
    return not (pattern & with_newline).empty()


def _fuse(basic: BasicLexer, skip: str, flags: int, newline_types: frozenset[str]) -> StateLexer:
    """One pattern for a state's terminals in Lark's order, after its ignored terminals.

    Lark's own lexer decides in a state whose terminals cannot be fused faithfully.
    """
    scanner = basic.scanner
    keywords: dict[str, dict[str, str]] = {}
    for type_, callback in basic.callback.items():
        if not isinstance(callback, UnlessCallback):
            return _LARK_DECIDES
        words: dict[str, str] = {}
        for t in callback.scanner.terminals:
            if not isinstance(t.pattern, PatternStr) or t.pattern.flags:
                return _LARK_DECIDES
            words[t.pattern.value] = t.name
        keywords[type_] = words
    terminals = [t for t in scanner.terminals if t.name not in basic.ignore_types]
    if not terminals:
        return _LARK_DECIDES
    alternatives = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals)
    try:
        pattern = re.compile(f"{skip}(?:{alternatives})", flags)
    except (re.error, AssertionError):
        return _LARK_DECIDES
    return pattern.match, keywords, newline_types & {t.name for t in terminals}
