"""Hypothesis strategies for syntactically valid .flow texts, with comments, blank lines and
spacing sprinkled the way people write them.

`flow_texts()` gives whole files (workspace declarations optional, one to three flows);
`expressions(steps)` gives condition texts. Other tests import these:

    from tests.dsl.strategies import flow_texts
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

OR, AND, NOT, COMPARISON, SUM, PRODUCT, UNARY, ATOM = range(1, 9)

STEP_NAMES = [
    "hello",
    "pause",
    "check",
    "nudge",
    "done",
    "guide",
    "hot",
    "cool_down",
    "s1",
    "s_2",
    "follow_up",
    "last_call",
]
FRESH_NAMES = ["fresh", "added", "extra_step", "n1"]
FLOW_NAMES = ["welcome", "nurture", "cold", "f1"]
TEMPLATES = ["welcome_email", "guide_email", "t1"]
LISTS = ["product_a", "newsletter"]
EVENTS = ["signed_up", "click", "open", '"purchase"', '"meeting_booked"']
PATHS = [
    ["lead", "score"],
    ["lead", "industry"],
    ["settings", "click_threshold"],
    ["lead", "a", "b"],
]
STRINGS = ['"a"', '"pricing"', '"x y"', '"q\\"uote"', '""', '"한국어 {{ name }}"']
DURATIONS = ["1d", "7d", "12h", "30m", "2w", "45s"]
PERCENTS = ["50%", "10%", "2.5%", "100%"]
TIMES = ["09:00", "21:00", "8:30"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

Tokens = list[str]


@dataclass
class Expr:
    level: int
    tokens: Tokens


@dataclass
class Line:
    depth: int
    tokens: Tokens


# ---------------------------------------------------------------------------- expressions


def _atom(draw: st.DrawFn, steps: list[str]) -> Tokens:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return [draw(st.sampled_from(["0", "1", "3", "10", "2.5"]))]
    if kind == 1:
        return [draw(st.sampled_from(STRINGS))]
    if kind == 2:
        return [draw(st.sampled_from(DURATIONS))]
    if kind == 3:
        return [draw(st.sampled_from(PERCENTS))]
    if kind == 4:
        return [draw(st.sampled_from(["2026-01-31", "true", "false", "null"]))]
    if kind == 5:
        return [draw(st.sampled_from(["click", "open", "x", *steps]))]
    if kind == 6:
        path = draw(st.sampled_from(PATHS))
        return _join(path, ".")
    if kind == 7 and steps:
        function = draw(st.sampled_from(["opened", "clicked", "replied", "delivered"]))
        args: list[Tokens] = [[draw(st.sampled_from(steps))]]
        if function == "clicked" and draw(st.booleans()):
            args.append(["link", "=", draw(st.sampled_from(STRINGS))])
        return [function, "(", *_join_lists(args, ","), ")"]
    if kind == 8:
        return ["count", "(", "click", ",", "within", "=", draw(st.sampled_from(DURATIONS)), ")"]
    if kind == 9:
        return [draw(st.sampled_from(["replied", "opened", "now", "unsubscribed"])), "(", ")"]
    if kind == 10:
        items = [[draw(st.sampled_from(["1", '"a"', "x"]))] for _ in range(draw(st.integers(0, 3)))]
        return ["[", *_join_lists(items, ","), "]"]
    return ["count", "(", "open", ",", "step", "=", draw(st.sampled_from(steps or ["x"])), ")"]


def _join(words: list[str], sep: str) -> Tokens:
    out: Tokens = []
    for i, word in enumerate(words):
        if i:
            out.append(sep)
        out.append(word)
    return out


def _join_lists(parts: list[Tokens], sep: str) -> Tokens:
    out: Tokens = []
    for i, part in enumerate(parts):
        if i:
            out.append(sep)
        out.extend(part)
    return out


def _operand(draw: st.DrawFn, expr: Expr, at_least: int) -> Tokens:
    """Parentheses where the precedence needs them, and now and then where it does not."""
    if expr.level < at_least or draw(st.integers(0, 9)) == 0:
        return ["(", *expr.tokens, ")"]
    return expr.tokens


def _expr(draw: st.DrawFn, steps: list[str], depth: int) -> Expr:
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return Expr(ATOM, _atom(draw, steps))
    kind = draw(st.integers(0, 7))
    sub = depth - 1
    if kind == 0:
        parts = [_expr(draw, steps, sub) for _ in range(draw(st.integers(2, 3)))]
        return Expr(OR, _join_lists([_operand(draw, p, AND) for p in parts], "or"))
    if kind == 1:
        parts = [_expr(draw, steps, sub) for _ in range(draw(st.integers(2, 3)))]
        return Expr(AND, _join_lists([_operand(draw, p, NOT) for p in parts], "and"))
    if kind == 2:
        return Expr(NOT, ["not", *_operand(draw, _expr(draw, steps, sub), NOT)])
    if kind == 3:
        op = draw(
            st.sampled_from(
                ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "starts_with"]
            )
        )
        left = _operand(draw, _expr(draw, steps, sub), SUM)
        right = _operand(draw, _expr(draw, steps, sub), SUM)
        return Expr(COMPARISON, [*left, *op.split(), *right])
    if kind in (4, 5):
        op = draw(st.sampled_from(["+", "-"] if kind == 4 else ["*", "/"]))
        own = SUM if kind == 4 else PRODUCT
        left = _operand(draw, _expr(draw, steps, sub), own)
        right = _operand(draw, _expr(draw, steps, sub), own + 1)
        return Expr(own, [*left, op, *right])
    if kind == 6:
        return Expr(UNARY, ["-", *_operand(draw, _expr(draw, steps, sub), UNARY)])
    return Expr(ATOM, ["(", *_expr(draw, steps, sub).tokens, ")"])


@st.composite
def expression_tokens(draw: st.DrawFn, steps: list[str], depth: int = 3) -> Tokens:
    return _expr(draw, steps, depth).tokens


def expressions(steps: list[str] | None = None) -> st.SearchStrategy[str]:
    """Condition texts (tokens joined by single spaces)."""
    return expression_tokens(steps or []).map(" ".join)


# ---------------------------------------------------------------------------- flows


def _edge(draw: st.DrawFn, steps: list[str]) -> Tokens:
    return ["->", draw(st.sampled_from(steps))] if draw(st.booleans()) else []


def _weekdays(draw: st.DrawFn) -> Tokens:
    ranges = []
    for _ in range(draw(st.integers(1, 3))):
        day = [draw(st.sampled_from(WEEKDAYS))]
        if draw(st.booleans()):
            day += ["-", draw(st.sampled_from(WEEKDAYS))]
        ranges.append(day)
    return _join_lists(ranges, ",")


def _send_options(draw: st.DrawFn) -> Tokens:
    out: Tokens = []
    for word in draw(st.lists(st.sampled_from(["subject", "preheader", "from"]), max_size=2)):
        out += [word, draw(st.sampled_from(STRINGS))]
    return out


def _step(draw: st.DrawFn, name: str, steps: list[str], depth: int) -> list[Line]:
    """The lines of one step: `name: action`, with its block when it has one."""
    head = [name, ":"]
    inner = depth + 1
    kind = draw(st.integers(0, 14))
    if kind == 0:
        head += ["send", draw(st.sampled_from(TEMPLATES)), *_send_options(draw)]
        if draw(st.integers(0, 3)) == 0:
            variants = [
                Line(inner, ["variant", v, draw(st.sampled_from(PERCENTS)), *_send_options(draw)])
                for v in draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True))
            ]
            return [Line(depth, [*head, "{"]), *variants, Line(depth, ["}", *_edge(draw, steps)])]
        return [Line(depth, [*head, *_edge(draw, steps)])]
    if kind == 1:
        return [Line(depth, [*head, "wait", draw(st.sampled_from(DURATIONS)), *_edge(draw, steps)])]
    if kind == 2:
        n = draw(st.sampled_from(["1", "3", "10"]))
        return [Line(depth, [*head, "wait", n, "business", "days", *_edge(draw, steps)])]
    if kind == 3:
        on = ["on", *_weekdays(draw)] if draw(st.booleans()) else []
        time = draw(st.sampled_from(TIMES))
        return [Line(depth, [*head, "wait", "until", time, *on, *_edge(draw, steps)])]
    if kind == 4:
        date = draw(expression_tokens(steps, 2))
        return [Line(depth, [*head, "wait", "until", *date, *_edge(draw, steps)])]
    if kind == 5:
        head += ["wait", "for", *draw(expression_tokens(steps, 2))]
        if draw(st.booleans()):
            head += ["up", "to", draw(st.sampled_from(DURATIONS))]
        shape = draw(st.integers(0, 2))
        if shape == 0:
            return [Line(depth, [*head, *_edge(draw, steps)])]
        arms = [
            Line(inner, [word, "->", draw(st.sampled_from(steps))])
            for word in draw(
                st.lists(st.sampled_from(["then", "timeout"]), max_size=2, unique=True)
            )
        ]
        return [Line(depth, [*head, "{"]), *arms, Line(depth, ["}"])]
    if kind == 6:
        arms = []
        for i in range(draw(st.integers(0, 3))):
            word = ["if"] if i == 0 else ["else", "if"]
            condition = draw(expression_tokens(steps, 2))
            arms.append(Line(inner, [*word, *condition, "->", draw(st.sampled_from(steps))]))
        if draw(st.booleans()):
            arms.append(Line(inner, ["else", "->", draw(st.sampled_from(steps))]))
        return [Line(depth, [*head, "branch", "{"]), *arms, Line(depth, ["}"])]
    if kind == 7:
        paths = [
            Line(inner, [draw(st.sampled_from(PERCENTS)), "->", draw(st.sampled_from(steps))])
            for _ in range(draw(st.integers(1, 3)))
        ]
        if draw(st.booleans()):
            at = draw(st.integers(0, len(paths)))
            paths.insert(at, Line(inner, ["holdout", draw(st.sampled_from(PERCENTS))]))
        return [Line(depth, [*head, "split", "{"]), *paths, Line(depth, ["}"])]
    if kind == 8:
        path = _join(draw(st.sampled_from(PATHS)), ".")
        op = draw(st.sampled_from(["=", "+=", "-="]))
        value = draw(expression_tokens(steps, 2))
        return [Line(depth, [*head, "update", *path, op, *value, *_edge(draw, steps)])]
    if kind == 9:
        words = draw(st.sampled_from([["add", "to", "list"], ["remove", "from", "list"]]))
        return [Line(depth, [*head, *words, draw(st.sampled_from(LISTS)), *_edge(draw, steps)])]
    if kind == 10:
        return [Line(depth, [*head, "move", "to", "flow", draw(st.sampled_from(FLOW_NAMES))])]
    if kind == 11:
        url = draw(st.sampled_from(['"https://crm.example.com/hook"', '"u"']))
        return [Line(depth, [*head, "webhook", url, *_edge(draw, steps)])]
    if kind == 12:
        return [Line(depth, [*head, "goal", "converted", *_edge(draw, steps)])]
    reason = [draw(st.sampled_from(STRINGS))] if draw(st.booleans()) else []
    return [Line(depth, [*head, "end", *reason])]


def _policy(draw: st.DrawFn, steps: list[str], depth: int) -> Tokens:
    kind = draw(st.integers(0, 12))
    if kind == 0:
        where = ["where", *draw(expression_tokens([], 2))] if draw(st.booleans()) else []
        return ["trigger", "event", draw(st.sampled_from(EVENTS)), *where]
    if kind == 1:
        kind_word = draw(st.sampled_from(["list", "segment", "stage"]))
        return ["trigger", "entered", kind_word, "engaged"]
    if kind == 2:
        return ["trigger", "schedule", '"0 9 * * mon"', "for", "list", "newsletter"]
    if kind == 3:
        return draw(
            st.sampled_from([["entry", "once"], ["entry", "always"], ["entry", "every", "30d"]])
        )
    if kind == 4:
        scope = ["for", "account"] if draw(st.booleans()) else []
        return ["exit", "when", *draw(expression_tokens(steps, 2)), *scope]
    if kind == 5:
        within = ["within", "14d"] if draw(st.booleans()) else []
        return ["goal", "converted", "when", *draw(expression_tokens([], 2)), *within]
    if kind == 6:
        return ["kind", draw(st.sampled_from(["cold", "marketing"]))]
    if kind == 7:
        days = _weekdays(draw) if draw(st.booleans()) else []
        return ["send", "window", "09:00", "-", "18:00", *days]
    if kind == 8:
        return ["quiet", "hours", "21:00", "-", "08:00"]
    if kind == 9:
        return ["business", "days", *(['"KR"'] if draw(st.booleans()) else [])]
    if kind == 10:
        return ["frequency", "cap", "2", "per", "1d"]
    if kind == 11:
        return ["trigger", "date", "lead", ".", "birthday", "at", "09:00"]
    return ["timezone", '"Asia/Seoul"']


@st.composite
def flow_lines(draw: st.DrawFn, name: str) -> list[Line]:
    """The lines of one flow: policies, steps, and perhaps layout and migrate blocks."""
    steps = draw(st.lists(st.sampled_from(STEP_NAMES), min_size=1, max_size=7, unique=True))
    title = [draw(st.sampled_from(STRINGS))] if draw(st.booleans()) else []
    lines = [Line(0, ["flow", name, *title, "{"])]
    lines += [Line(1, _policy(draw, steps, 1)) for _ in range(draw(st.integers(0, 3)))]
    for step in steps:
        lines += _step(draw, step, steps, 1)
    if draw(st.booleans()):
        lines.append(Line(1, ["layout", "{"]))
        for step in draw(st.lists(st.sampled_from(steps), unique=True)):
            y = draw(st.integers(-300, 300))
            lines.append(Line(2, [step, ":", str(draw(st.integers(0, 900))), ",", *_signed(y)]))
        lines.append(Line(1, ["}"]))
    if draw(st.integers(0, 3)) == 0:
        lines.append(Line(1, ["migrate", "{"]))
        lines.append(Line(2, ["old_step", "->", draw(st.sampled_from([*steps, "exit"]))]))
        lines.append(Line(1, ["}"]))
    lines.append(Line(0, ["}"]))
    return lines


def _signed(value: int) -> Tokens:
    return ["-", str(-value)] if value < 0 else [str(value)]


def _declaration(draw: st.DrawFn) -> list[Line]:
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return [
            Line(0, ["workspace", "acme", '"Acme"', "{"]),
            Line(1, ["timezone", '"Asia/Seoul"']),
            Line(1, ["sender", '"Acme"', '"m@acme.example"']),
            Line(1, ["region", "kr"]),
            Line(0, ["}"]),
        ]
    if kind == 1:
        value = draw(expression_tokens([], 2))
        return [
            Line(0, ["settings", "{"]),
            Line(1, ["click_threshold", "=", *value]),
            Line(0, ["}"]),
        ]
    if kind == 2:
        required = ["required"] if draw(st.booleans()) else []
        return [Line(0, ["attribute", "first_name", ":", "string", *required, '"Given name"'])]
    if kind == 3:
        return [Line(0, ["segment", "engaged", "where", *draw(expression_tokens([], 3))])]
    if kind == 4:
        if draw(st.booleans()):
            return [Line(0, ["list", draw(st.sampled_from(LISTS)), '"A list"'])]
        rule = ["add", "when", *draw(expression_tokens([], 2))]
        return [Line(0, ["list", "clickers", "{"]), Line(1, rule), Line(0, ["}"])]
    if kind == 5:
        return [
            Line(0, ["stages", "{"]),
            Line(1, ["stage", "sql", '"Sales"', "when", *draw(expression_tokens([], 2))]),
            Line(1, ["stage", "new"]),
            Line(0, ["}"]),
        ]
    if kind == 6:
        return [
            Line(0, ["scoring", "{"]),
            Line(1, ["fit", "+", "20", "when", *draw(expression_tokens([], 2))]),
            Line(1, ["engagement", "-", "5", "per", "click", "within", "90d"]),
            Line(1, ["decay", "50%", "every", "30d"]),
            Line(0, ["}"]),
        ]
    if kind == 7:
        return [
            Line(0, ["form", "contact_us", "{"]),
            Line(1, ["field", "interest", ":", "choice", "[", '"a"', ",", '"b"', "]", "required"]),
            Line(1, ["consent", '"I agree"']),
            Line(1, ["route", "when", "answer", ".", "interest", "==", '"a"', "->", "list", "a"]),
            Line(0, ["}"]),
        ]
    return [
        Line(0, ["template", draw(st.sampled_from(TEMPLATES)), "{"]),
        Line(1, ["subject", draw(st.sampled_from(STRINGS))]),
        Line(1, ["html", '"t.html"']),
        Line(0, ["}"]),
    ]


# ---------------------------------------------------------------------------- rendering

_WORDISH = set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"%')
COMMENT_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=16).map(
    lambda s: "#" + s
)


@st.composite
def render(draw: st.DrawFn, lines: list[Line]) -> str:
    """The lines as text, with random indentation, spacing, blank lines and comments."""
    messy = draw(st.booleans())
    newline = "\r\n" if draw(st.integers(0, 5)) == 0 else "\n"
    out: list[str] = []
    for line in [*lines, None]:
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            if draw(st.booleans()):
                out.append(draw(st.sampled_from(["", "  ", "\t"])))
            else:
                indent = draw(st.sampled_from(["", "  ", "    ", "\t"]))
                out.append(indent + draw(COMMENT_TEXT))
        if line is None:
            break
        indent = "  " * line.depth
        if messy:
            indent = draw(st.sampled_from([indent, "", " ", "\t" * line.depth, indent + "   "]))
        text = indent + line.tokens[0]
        for before, token in zip(line.tokens, line.tokens[1:], strict=False):
            needs_space = before[-1] in _WORDISH and token[0] in _WORDISH
            choices = [" ", "  ", "\t"] if needs_space else ["", " ", "  "]
            text += draw(st.sampled_from(choices)) if messy else " "
            text += token
        if draw(st.integers(0, 4)) == 0:
            text += draw(st.sampled_from(["", " ", "   "])) + draw(COMMENT_TEXT)
        out.append(text)
    final = newline if draw(st.integers(0, 5)) else ""
    return newline.join(out) + final


@st.composite
def flow_texts(draw: st.DrawFn) -> str:
    """A syntactically valid .flow file: some workspace declarations and one to three flows."""
    blocks = [_declaration(draw) for _ in range(draw(st.integers(0, 3)))]
    names = draw(st.lists(st.sampled_from(FLOW_NAMES), min_size=1, max_size=3, unique=True))
    blocks += [draw(flow_lines(name)) for name in names]
    blocks = draw(st.permutations(blocks))
    return draw(render([line for block in blocks for line in block]))
