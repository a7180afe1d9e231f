"""Lark's LALR loop with the fused lexer inside it: one loop per parse, not two calls per token.

Lark drives a parse as a generator of tokens (the lexer) and a method call per token
(`ParserState.feed_token`), which looks up the parser state's actions, shifts or reduces, and
returns. Both are cheap one at a time and most of a parse in bulk. `FusedParser` replaces Lark's
parser loop (`_Parser.parse_from_state`) for a parse that starts at the beginning of a text with
`FlowLexer`: it matches each token with the state's fused pattern (`dsl.lexer`) and applies the
same parse table's shifts and reductions in the same loop, with every reduction's size, goto
symbol and callback looked up once per parse table. The loop runs in C (`dsl/_fused.c`, built by
`pip install`) and, step for step the same, in Python (`FusedParser._py_run`) where the C module is
not built; the patterns, the parse table and the tree-building callbacks are the same Python objects
for both, and the tests run both.

Everything a person sees stays Lark's. Where the fused pattern does not match, Lark's contextual
lexer goes on from that position through Lark's own loop; where the table has no action for a
token, Lark's `feed_token` is called on the same stacks, so it raises its own `UnexpectedToken`
with the same state; the end of the text is fed by Lark. A resumed or interactive parse
(completion, error inspection) runs Lark's loop with `FlowLexer.lex`. `tests/dsl/test_tree_builder.py`
holds the trees, positions and errors to Lark's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedInput
from lark.parsers.lalr_analysis import Shift
from lark.parsers.lalr_interactive_parser import InteractiveParser
from lark.parsers.lalr_parser import _Parser

from dsl.lexer import FlowLexer
from dsl.tree_builder import first_child

compiled_run: Callable[..., int] | None
try:  # the same loop in C (dsl/_fused.c), built by `pip install`; this module's loop otherwise
    from dsl._fused import run as compiled_run
except ImportError:  # pragma: no cover - a checkout used without installing it
    compiled_run = None

_new_str = str.__new__

# A state's actions: a terminal or rule name to the next state (a shift or a goto), or to a
# reduction: how many values it takes, the rule's name (for the goto) and its callback, or only
# the rule's name where the value stays as it is.
Actions = dict[str, "int | str | tuple[int, str, Any]"]


def _reduction(rule: Any, callback: Any) -> str | tuple[int, str, Any]:
    """A reduction as the loop applies it: the rule's name alone when its value is its one
    child's (a collapsed `?rule`), else how many values it takes, its name and its callback."""
    size = len(rule.expansion)
    if size == 1 and callback is first_child:
        return str(rule.origin.name)
    return size, str(rule.origin.name), callback


class FusedParser(_Parser):
    """Lark's `_Parser` with its loop fused with `FlowLexer` (installed by `dsl.grammar`)."""

    _actions: dict[int, Actions] | None = None
    # Whether `_run` uses the C loop when it is built (the tests run both).
    compiled_loop = True

    def parse_from_state(self, state: Any, last_token: Token | None = None) -> Any:
        thread = state.lexer
        lexer = thread.lexer
        if last_token is not None or not isinstance(lexer, FlowLexer) or thread.state is None:
            return super().parse_from_state(state, last_token)
        try:
            token = self._run(lexer, thread.state, state)
            end = Token.new_borrow_pos("$END", "", token) if token else Token("$END", "", 0, 1, 1)
            return state.feed_token(end, True)
        except UnexpectedInput as error:
            error.interactive_parser = InteractiveParser(self, state, thread)
            raise

    def feed_text(self, interactive: InteractiveParser, made: list[Token]) -> None:
        """Feed every token of an interactive parse's text, from its start, as a parse does, but
        not the end of the text (completion asks what may follow); `made` gets each token fed.
        Raises Lark's `UnexpectedInput` as the parse would."""
        thread = interactive.lexer_thread
        lexer = thread.lexer
        state = interactive.parser_state
        if not isinstance(lexer, FlowLexer) or thread.state is None or len(state.state_stack) != 1:
            made.extend(interactive.iter_parse())
            return
        try:
            self._run(lexer, thread.state, state, made)
        except UnexpectedInput as error:
            error.interactive_parser = interactive
            raise

    def _table(self, parse_conf: Any) -> dict[int, Actions]:
        if self._actions is None:
            callbacks = parse_conf.callbacks
            self._actions = {
                number: {
                    symbol: arg if action is Shift else _reduction(arg, callbacks[arg])
                    for symbol, (action, arg) in row.items()
                }
                for number, row in parse_conf.states.items()
            }
        return self._actions

    def _run(
        self, lexer: FlowLexer, lexer_state: Any, parser_state: Any, made: list[Token] | None = None
    ) -> Token | None:
        """Lex and parse from the start of the text; the last token fed (None: none). `made`,
        when given, gets every token fed."""
        if compiled_run is None or not self.compiled_loop:
            return self._py_run(lexer, lexer_state, parser_state, made)
        parse_conf = parser_state.parse_conf
        counter = lexer_state.line_ctr
        progress = [counter.char_pos, counter.line, counter.line_start_pos, lexer_state.last_token]
        try:
            no_action = compiled_run(
                lexer_state.text.text,
                lexer_state.text.end,
                progress,
                lexer.state_lexers(parser_state),
                self._table(parse_conf),
                self._token_callbacks(parse_conf),
                lexer.skips_newlines,
                Token,
                parser_state.state_stack,
                parser_state.value_stack,
                made,
            )
        finally:
            pos, line, line_start = progress[:3]
            token: Token | None = progress[3]
            counter.char_pos = pos
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = pos - line_start + 1
            lexer_state.last_token = token
        if no_action:
            parser_state.feed_token(token)  # Lark reports it, from the same stacks
            raise AssertionError("the parse table has no action here")
        if pos < lexer_state.text.end:
            token = _feed_rest(lexer, lexer_state, parser_state, made) or token
        return token

    def _token_callbacks(self, parse_conf: Any) -> dict[str, Any]:
        return {k: v for k, v in parse_conf.callbacks.items() if isinstance(k, str)}

    def _py_run(
        self, lexer: FlowLexer, lexer_state: Any, parser_state: Any, made: list[Token] | None
    ) -> Token | None:
        """`_run` in Python: what dsl/_fused.c does, step for step."""
        parse_conf = parser_state.parse_conf
        actions = self._table(parse_conf)
        token_callbacks = self._token_callbacks(parse_conf)
        table = lexer.state_lexers(parser_state)
        skip_newlines = lexer.skips_newlines
        text_slice = lexer_state.text
        text: str = text_slice.text
        end: int = text_slice.end
        counter = lexer_state.line_ctr
        pos: int = counter.char_pos
        line: int = counter.line
        line_start: int = counter.line_start_pos
        state_stack: list[int] = parser_state.state_stack
        value_stack: list[Any] = parser_state.value_stack
        token: Token | None = lexer_state.last_token
        state = state_stack[-1]
        try:
            while pos < end:
                # The token, made as `FlowLexer.lex` makes it (see there); then its actions.
                match, keywords, newline_types = table[state]
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
                if made is not None:
                    made.append(token)
                while True:
                    action: Any = actions[state].get(type_)
                    if action is None:
                        # Lark reports it, from the same stacks.
                        parser_state.feed_token(token)
                        raise AssertionError("the parse table has no action here")
                    if action.__class__ is int:
                        state_stack.append(action)
                        value_stack.append(
                            token_callbacks[type_](token) if type_ in token_callbacks else token
                        )
                        state = action
                        break
                    if action.__class__ is str:  # a `?rule` that is its one child: value stays
                        state_stack.pop()
                        state = actions[state_stack[-1]][action]  # type: ignore[assignment]
                        state_stack.append(state)
                        continue
                    size, origin, callback = action
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    state = actions[state_stack[-1]][origin]  # type: ignore[assignment]
                    state_stack.append(state)
                    value_stack.append(callback(children))
        finally:
            counter.char_pos = pos
            counter.line = line
            counter.line_start_pos = line_start
            counter.column = pos - line_start + 1
            lexer_state.last_token = token
        if pos < end:
            # Only spaces and comments left, or what Lark's own lexer has to decide.
            token = _feed_rest(lexer, lexer_state, parser_state, made) or token
        return token


def _feed_rest(
    lexer: FlowLexer, lexer_state: Any, parser_state: Any, made: list[Token] | None
) -> Token | None:
    """Feed the tokens from where no fused pattern matched (Lark's lexer decides); the last."""
    last = None
    for last in lexer.rest(lexer_state, parser_state):
        if made is not None:
            made.append(last)
        parser_state.feed_token(last)
    return last
