"""Completion: what may be written at a position of a .flow text, from the parser's acceptable tokens.

The text up to the cursor is fed to Lark's interactive parser and `accepts()` gives the terminals
that may come next. Keywords among them are offered as they are. Where a name may come, the tokens
before the cursor say which kind: a template after `send`, a step after `->`, a list after
`add to list`, an attribute after `lead.`, a step inside `opened(…)`. The names come from `Known`,
what the workspace declares. A statement with a syntax error on an earlier line is blanked (the
parser's recovery), so one broken line does not stop completion below it.

>>> known = Known(templates={"welcome_email": "Welcome"})
>>> [c.label for c in complete("flow f {\\n  hello: send w", 2, 16, known)]
['welcome_email']
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Token, Tree
from lark.exceptions import UnexpectedInput
from lark.lexer import PatternStr

from dsl import ir
from dsl.check import LEAD_FIELDS, REGIONS
from dsl.functions import BUILTIN_EVENTS, FUNCTIONS, REF_KINDS, Function
from dsl.lalr import FusedParser
from dsl.parse import _blank, _brace_delta, _syntax_diagnostic, outside_strings, parser

__all__ = ["Candidate", "Known", "complete", "recovered_tree", "signature"]

MAX_RECOVERIES = 50
_WORD = re.compile(r"[A-Za-z0-9_]")
_EXPRESSION_STARTS = frozenset({"LPAR", "NUMBER", "STRING"})


@dataclass(frozen=True)
class Candidate:
    """One thing that may be written at the cursor: `kind` is `keyword`, a kind of name (`step`,
    `template`, `segment`, `list`, `stage`, `flow`, `form`, `goal`, `attribute`, `setting`,
    `event`, `field`), `function`, `parameter`, `type` or `value`."""

    label: str
    kind: str
    detail: str = ""
    documentation: str = ""


@dataclass
class Known:
    """The names a workspace declares, by kind, each with a one-line detail; steps, goals and form
    fields per flow or form."""

    templates: dict[str, str] = field(default_factory=dict)
    segments: dict[str, str] = field(default_factory=dict)
    lists: dict[str, str] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    flows: dict[str, str] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    goals: dict[str, dict[str, str]] = field(default_factory=dict)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_workspace(cls, ws: ir.Workspace) -> Known:
        """What a compiled workspace declares (the canvas has the IR at hand)."""
        return cls(
            templates={n: t.title or t.subject or "" for n, t in ws.templates.items()},
            segments={n: s.title or "" for n, s in ws.segments.items()},
            lists={n: x.title or "" for n, x in ws.lists.items()},
            stages={s.name: s.title or "" for s in ws.stages},
            flows={n: f.title or "" for n, f in ws.flows.items()},
            forms={n: f.title or "" for n, f in ws.forms.items()},
            attributes={
                n: f"{a.type}" + (f" — {a.description}" if a.description else "")
                for n, a in ws.attributes.items()
            },
            settings={n: "setting" for n in ws.settings},
            steps={
                n: {s: type(step).__name__ for s, step in f.steps.items()}
                for n, f in ws.flows.items()
            },
            goals={n: {g.name: "goal" for g in f.goals} for n, f in ws.flows.items()},
            fields={n: {x.name: x.type for x in f.fields} for n, f in ws.forms.items()},
        )

    def of_kind(self, kind: str, flow: str | None) -> dict[str, str]:
        """The names of one kind (steps and goals of `flow`)."""
        match kind:
            case "step":
                return self.steps.get(flow or "", {})
            case "goal":
                return self.goals.get(flow or "", {})
            case "event":
                builtin = {e: "recorded by flowbuilder" for e in BUILTIN_EVENTS}
                return {**builtin, **{e: d for e, d in self.events.items() if e not in builtin}}
            case "attribute":
                builtin = {f"{n}": f"{t} (every lead)" for n, t in LEAD_FIELDS.items()}
                return {**builtin, **self.attributes}
        table: dict[str, str] = getattr(self, kind + "s", {})
        return table


# ---------------------------------------------------------------------------- recovery


def recovered_tree(text: str) -> Tree[Token] | None:
    """The parse tree of the text with its bad statements blanked and unclosed blocks closed, so
    that the rest of a file being edited still has names and positions; None when nothing parses."""
    work = text if text.endswith("\n") else text + "\n"
    depth = sum(_brace_delta(line) for line in work.split("\n"))
    if depth > 0:
        work += "}\n" * depth
    for _ in range(MAX_RECOVERIES):
        try:
            return parser().parse(work)
        except UnexpectedInput as error:
            blanked = _blank(work, _syntax_diagnostic(error, "", work).span.line)
            if blanked is None:
                return None
            work = blanked
    return None


def _error_line(error: UnexpectedInput) -> int | None:
    token = getattr(error, "token", None)
    line = getattr(token, "line", None) if token is not None else None
    return line if isinstance(line, int) else error.line if error.line > 0 else None


def _opens_unclosed_block(text: str, line: int) -> bool:
    """Whether the statement on `line` opens a block that is still open at the end of `text`."""
    lines = text.split("\n")[line - 1 :]
    depth = 0
    for current in lines:
        depth += _brace_delta(current)
        if depth <= 0:
            return False
    return True


def _feed(prefix: str, cursor_line: int) -> tuple[list[Token], set[str]] | None:
    """The tokens of `prefix` and the terminals the parser accepts after them."""
    work = prefix
    for _ in range(MAX_RECOVERIES):
        lark = parser()
        interactive = lark.parse_interactive(work)
        tokens: list[Token] = []
        try:
            loop = lark.parser.parser.parser
            if isinstance(loop, FusedParser):
                loop.feed_text(interactive, tokens)  # the parse's own loop, not a call per token
            else:
                tokens.extend(interactive.iter_parse())
            return tokens, set(interactive.accepts())  # type: ignore[no-untyped-call]
        except UnexpectedInput as error:
            line = _error_line(error)
            if line is None or line >= cursor_line:
                return None
            if _opens_unclosed_block(work, line):
                return None  # the broken statement opens the block the cursor stands in
            blanked = _blank(work, line)
            if blanked is None:
                return None
            work = blanked
    return None


# ---------------------------------------------------------------------------- context


@dataclass
class _Context:
    """Where the cursor stands: the tokens of its statement and the headers of the blocks around it."""

    statement: list[Token]
    blocks: list[list[Token]]

    @classmethod
    def of(cls, tokens: Sequence[Token]) -> _Context:
        statement: list[Token] = []
        blocks: list[list[Token]] = []
        for token in tokens:
            if token.type == "_NL":
                statement = []
            elif token.type == "LBRACE":
                blocks.append(statement)
                statement = []
            elif token.type == "RBRACE":
                if blocks:
                    blocks.pop()
                statement = []
            else:
                statement.append(token)
        return cls(statement, blocks)

    def block(self, keyword: str) -> list[Token] | None:
        """The innermost enclosing block whose header starts with `keyword`."""
        for header in reversed(self.blocks):
            if header and header[0].value == keyword:
                return header
        return None

    @property
    def flow(self) -> str | None:
        header = self.block("flow")
        return str(header[1].value) if header and len(header) > 1 else None

    @property
    def innermost(self) -> str:
        if not self.blocks or not self.blocks[-1]:
            return ""
        header = self.blocks[-1]
        # A step's block (`ask: branch {`) is named by its action.
        if len(header) > 2 and header[1].type == "COLON":
            return str(header[2].value)
        return str(header[0].value)

    def words(self, count: int) -> list[str]:
        """The values of the last `count` tokens of the statement, oldest first, padded with ''."""
        values = [str(t.value) for t in self.statement[-count:]]
        return [""] * (count - len(values)) + values


# ---------------------------------------------------------------------------- candidates


@lru_cache(maxsize=1)
def _keyword_terminals() -> dict[str, str]:
    return {
        t.name: t.pattern.value
        for t in parser().terminals
        if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()
    }


def signature(fn: Function) -> str:
    """`count(event, within=duration, where=bool, step=step) → number`"""
    params = [p.name + ("?" if p.optional else "") for p in fn.params]
    params += [f"{k}={v}" for k, v in fn.kwargs.items()]
    return f"{fn.name}({', '.join(params)}) → {fn.returns}"


def _names(kind: str, known: Known, flow: str | None) -> list[Candidate]:
    return [
        Candidate(name, kind, detail) for name, detail in sorted(known.of_kind(kind, flow).items())
    ]


def _values(kind: str, values: Iterable[str]) -> list[Candidate]:
    return [Candidate(v, kind) for v in values]


def _literal_types(model: type[ir.Node], name: str) -> tuple[str, ...]:
    return typing.get_args(model.model_fields[name].annotation)


def _call_context(statement: Sequence[Token]) -> tuple[str, int, str | None, bool] | None:
    """Inside a call's parentheses: (function, argument index, keyword, at an argument's start)."""
    depth = 0
    commas = 0
    for i in range(len(statement) - 1, -1, -1):
        t = statement[i]
        if t.type in ("RPAR", "RSQB"):
            depth += 1
        elif t.type in ("LPAR", "LSQB"):
            if depth == 0:
                if t.type == "LSQB" or i == 0 or statement[i - 1].type != "NAME":
                    return None
                after = statement[i + 1 :]
                last_comma = max((j for j, x in enumerate(after) if x.type == "COMMA"), default=-1)
                current = after[last_comma + 1 :]
                keyword = None
                if len(current) >= 2 and current[0].type == "NAME" and current[1].type == "EQUAL":
                    keyword = str(current[0].value)
                return str(statement[i - 1].value), commas, keyword, not current
            depth -= 1
        elif t.type == "COMMA" and depth == 0:
            commas += 1
    return None


def _expression(ctx: _Context, known: Known) -> list[Candidate]:
    flow = ctx.flow
    call = _call_context(ctx.statement)
    out: list[Candidate] = []
    if call is not None:
        name, index, keyword, at_start = call
        fn = FUNCTIONS.get(name)
        if fn is not None:
            if keyword is not None:
                kind = "step" if keyword == "step" else fn.kwargs.get(keyword, "")
            else:
                kind = fn.params[index].kind if index < len(fn.params) else ""
                if at_start and index >= min(len(fn.params), 1):
                    out += [
                        Candidate(f"{k}=", "parameter", f"{k}: {v}") for k, v in fn.kwargs.items()
                    ]
                if at_start and index >= len(fn.params):
                    return out  # past the positional parameters only keywords may follow
            if kind in REF_KINDS:
                return _names(kind, known, flow) + out
    out += [
        Candidate(fn.name, "function", signature(fn), f"{fn.doc}\n\n    {fn.example}")
        for fn in FUNCTIONS.values()
    ]
    roots = ["lead", "settings"]
    words = [str(t.value) for t in ctx.statement]
    if words[:1] == ["trigger"] or "where" in words:
        roots.append("event")
    if words[:1] == ["route"] or words[:2] == ["trigger", "form"]:
        roots.append("answer")
    out += [Candidate(r, "value", f"{r}.…") for r in roots]
    return out


def _path(ctx: _Context, known: Known) -> list[Candidate]:
    """After `root.`: a lead's attributes, the settings, a form's fields."""
    statement = ctx.statement
    if len(statement) < 2 or statement[-2].type != "NAME":
        return []
    if len(statement) >= 3 and statement[-3].type == "DOT":
        return []  # deeper paths: event properties and nested values are not declared
    root = statement[-2].value
    if root == "lead":
        return _names("attribute", known, None)
    if root == "settings":
        return _names("setting", known, None)
    if root == "answer":
        words = [str(t.value) for t in statement]
        form = words[2] if words[:2] == ["trigger", "form"] and len(words) > 2 else None
        header = ctx.block("form")
        if header is not None and len(header) > 1:
            form = str(header[1].value)
        return _values("field", sorted(known.fields.get(form or "", {})))
    return []


def _name_candidates(ctx: _Context, known: Known, accepts: set[str]) -> list[Candidate]:
    statement = ctx.statement
    flow = ctx.flow
    before2, before = ctx.words(2)
    first = str(statement[0].value) if statement else ""
    if not statement:
        # The start of a statement: a new name, except in blocks that list existing steps.
        return _names("step", known, flow) if ctx.innermost in ("layout", "migrate") else []
    if statement[-1].type == "DOT":
        return _path(ctx, known)
    if before == "send" or (before == "template" and first == "variant"):
        return _names("template", known, flow)
    if before == "->":
        return _names("step", known, flow)
    if before in ("list", "segment", "stage") and before2 in ("to", "from", "entered", "for", "->"):
        return _names(before, known, flow)
    if before == "flow" and before2 == "to":
        return _names("flow", known, flow)
    if before == "form" and before2 == "trigger":
        return _names("form", known, flow)
    if before == "goal" and len(statement) >= 3 and statement[1].type == "COLON":
        return _names("goal", known, flow)
    if (before == "event" and before2 == "trigger") or before == "per":
        return _names("event", known, flow)
    if before == "kind":
        return _values("value", ir.FLOW_KINDS)
    if before == "region":
        return _values("value", REGIONS)
    if before == "class" and ctx.innermost == "template":
        return _values("value", _literal_types(ir.Template, "message_class"))
    if before == ":" and first == "attribute":
        return _values("type", _literal_types(ir.Attribute, "type"))
    if before == ":" and first == "field":
        return _values("type", _literal_types(ir.FormField, "type"))
    if ctx.innermost == "migrate" and before == "->":
        return _names("step", known, flow)
    if accepts & _EXPRESSION_STARTS:
        return _expression(ctx, known)
    return []


def _position_offset(text: str, line: int, col: int) -> int:
    """The offset of a 1-based line and column (clamped to the text)."""
    offset = 0
    for _ in range(line - 1):
        newline = text.find("\n", offset)
        if newline == -1:
            return len(text)
        offset = newline + 1
    end = text.find("\n", offset)
    end = len(text) if end == -1 else end
    return min(offset + max(col - 1, 0), end)


def _in_string_or_comment(line_text: str) -> bool:
    quotes = 0
    for _, ch in outside_strings(line_text):
        if ch == "#":
            return True
        quotes += ch == '"'
    return quotes % 2 == 1  # a string opened and not closed yet


def complete(text: str, line: int, col: int, known: Known) -> list[Candidate]:
    """What may be written at line `line`, column `col` (1-based; the cursor stands before `col`)."""
    offset = _position_offset(text, line, col)
    start = offset
    while start > 0 and _WORD.match(text[start - 1]):
        start -= 1
    line_start = text.rfind("\n", 0, start) + 1
    if _in_string_or_comment(text[line_start:start]):
        return []
    fed = _feed(text[:start], text.count("\n", 0, start) + 1)
    if fed is None:
        return []
    tokens, accepts = fed
    ctx = _Context.of(tokens)
    terminals = _keyword_terminals()
    out = [Candidate(terminals[t], "keyword") for t in sorted(accepts) if t in terminals]
    if "NAME" in accepts:
        names = _name_candidates(ctx, known, accepts)
        if any(c.kind in REF_KINDS for c in names) and accepts & _EXPRESSION_STARTS:
            out = []  # a function's reference argument: `true` or `not` make no sense there
        out += names
    seen: set[tuple[str, str]] = set()
    unique = []
    for c in out:
        if (c.label, c.kind) not in seen:
            seen.add((c.label, c.kind))
            unique.append(c)
    return unique
