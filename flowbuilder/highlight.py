"""Syntax highlighting of .flow text: the keyword groups of the language and a Pygments lexer.

The lexer is registered under the `pygments.lexers` entry point, so once flowbuilder is installed
every Pygments user — MkDocs, Sphinx, `pygmentize`, rich — colours ```flow blocks:

>>> from pygments import lex
>>> [(str(t), v) for t, v in lex("a: wait 3d", FlowLexer()) if v.strip()][:4]
[('Token.Name.Function', 'a'), ('Token.Punctuation', ':'), ('Token.Keyword', 'wait'), ('Token.Literal.Number.Duration', '3d')]

The TextMate grammar of editors/vscode is built from the same groups (`flowbuilder.textmate`).
The word lists are written out here, so that loading the lexer does not load the parser; a test
checks that together they are exactly the grammar's keywords.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

# Words that open a declaration and name what they declare (or, after `to`/`entered`, refer to it).
DECLARATION_KEYWORDS = (
    "attribute",
    "field",
    "flow",
    "form",
    "goal",
    "list",
    "segment",
    "stage",
    "stages",
    "scoring",
    "settings",
    "template",
    "variant",
    "workspace",
)
OPERATOR_KEYWORDS = ("and", "contains", "ends_with", "in", "matches", "not", "or", "starts_with")
CONSTANT_KEYWORDS = ("false", "null", "true")
WEEKDAY_KEYWORDS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CONTROL_KEYWORDS = (
    "account",
    "add",
    "address",
    "always",
    "anniversary",
    "at",
    "branch",
    "business",
    "cap",
    "class",
    "consent",
    "contact",
    "date",
    "days",
    "decay",
    "else",
    "end",
    "engagement",
    "entered",
    "entry",
    "event",
    "every",
    "exit",
    "fit",
    "for",
    "frequency",
    "from",
    "holdout",
    "hours",
    "html",
    "if",
    "inactive",
    "kind",
    "layout",
    "migrate",
    "move",
    "on",
    "once",
    "per",
    "preheader",
    "quiet",
    "region",
    "remove",
    "required",
    "route",
    "schedule",
    "send",
    "sender",
    "split",
    "subject",
    "suppress",
    "text",
    "then",
    "timeout",
    "timezone",
    "to",
    "topic",
    "trigger",
    "until",
    "up",
    "update",
    "wait",
    "webhook",
    "when",
    "where",
    "window",
    "within",
)
KEYWORDS = frozenset(
    DECLARATION_KEYWORDS
    + OPERATOR_KEYWORDS
    + CONSTANT_KEYWORDS
    + WEEKDAY_KEYWORDS
    + CONTROL_KEYWORDS
)

# Names declared by a word: the kind of thing the name after it is.
NAMING_KEYWORDS = (
    "attribute",
    "field",
    "flow",
    "form",
    "goal",
    "list",
    "segment",
    "stage",
    "template",
    "variant",
    "workspace",
)
# Words followed by a fixed value rather than a declared name.
VALUE_KEYWORDS = ("class", "kind", "region", "topic")
# The types an attribute or a form field is declared with.
TYPES = (
    "bool",
    "checkbox",
    "choice",
    "date",
    "email",
    "list",
    "number",
    "phone",
    "string",
    "text",
    "textarea",
)
# The roots of a path (`lead.revenue`).
PATH_ROOTS = ("answer", "event", "lead", "settings")
# Condition functions (dsl.functions.FUNCTIONS; a test keeps the two equal).
FUNCTIONS = (
    "average",
    "bottom",
    "bounced",
    "clicked",
    "complained",
    "count",
    "days_since",
    "days_until",
    "delivered",
    "frequency_score",
    "in_list",
    "in_segment",
    "in_stage",
    "length",
    "lower",
    "monetary_score",
    "now",
    "occurred",
    "opened",
    "recency_score",
    "replied",
    "submitted",
    "today",
    "top",
    "total",
    "unsubscribed",
    "viewed",
)

# The functions whose first argument is a step.
STEP_FUNCTIONS = ("bounced", "clicked", "delivered", "opened", "replied")

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A name that is not a keyword, and a keyword that is not part of a path or a longer name.
NOT_KEYWORD = r"(?!(?:" + "|".join(sorted(KEYWORDS, key=lambda w: (-len(w), w))) + r")\b)"
NOT_CONSTANT = r"(?!(?:true|false|null)\b)"
# Where a condition may go, these words are read as keywords; any other word is a name.
NOT_VALUE_WORD = r"(?!(?:true|false|null|not)\b)"
# After `->`: a step, except `list <name>` (a form route) and `exit` (a migration).
NOT_ROUTE = r"(?!exit\b|list\s+\w)"
ALONE = r"(?<![.\w])"

DATE = r"\b\d{4}-\d{2}-\d{2}\b"
TIME = r"\b\d{1,2}:\d{2}\b"
DURATION = r"\b\d+[wdhms](?![A-Za-z0-9_])"
PERCENT = r"\b\d+(?:\.\d+)?%"
NUMBER = r"\b\d+(?:\.\d+)?\b"


def _groups(*kinds: Any) -> Any:
    """Pygments' `bygroups`, typed (its stubs leave it untyped)."""
    return bygroups(*kinds)  # type: ignore[no-untyped-call]


Duration = Number.Duration
Time = Number.Time
Percent = Number.Percent
Date = Number.Date


class FlowLexer(RegexLexer):
    """flowbuilder's .flow language."""

    name = "flowbuilder flow"
    aliases: ClassVar[list[str]] = ["flow", "flowbuilder"]
    filenames: ClassVar[list[str]] = ["*.flow"]
    mimetypes: ClassVar[list[str]] = ["text/x-flowbuilder"]
    url = "https://github.com/flowbuilder/flowbuilder"

    tokens: ClassVar[dict[str, list[Any]]] = {
        "root": [
            (r"(#)(\s*lint:\s*ignore)", _groups(Comment.Single, Comment.Special), "suppression"),
            (r"#.*?$", Comment.Single),
            (r'"', String.Double, "string"),
            # `name:` at the start of a line: a step (or its place in a `layout` block).
            (
                r"^([^\S\n]*)(" + NAME + r")([^\S\n]*)(:)",
                _groups(Whitespace, Name.Function, Whitespace, Punctuation),
            ),
            (r"\n", Whitespace),
            (r"[^\S\n]+", Whitespace),
            (
                r"(->)(\s*)" + NOT_ROUTE + "(" + NAME + ")",
                _groups(Operator, Whitespace, Name.Function),
            ),
            (
                ALONE + r"(send)(\s+)(?!window\b)(" + NAME + ")",
                _groups(Keyword, Whitespace, Name.Class),
            ),
            (
                ALONE + r"(" + "|".join(NAMING_KEYWORDS) + r")\b(\s+)(" + NAME + ")",
                _groups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (
                ALONE + r"(" + "|".join(VALUE_KEYWORDS) + r")\b(\s+)(" + NAME + ")",
                _groups(Keyword, Whitespace, Name.Constant),
            ),
            # The event type after `trigger event` and `per`, keyword or not.
            (
                ALONE + r"(event|per)\b(\s+)(" + NAME + ")",
                _groups(Keyword, Whitespace, Name.Entity),
            ),
            (
                r"(:)(\s*)(" + "|".join(TYPES) + r")\b",
                _groups(Punctuation, Whitespace, Keyword.Type),
            ),
            # The reaction functions and `step=` name a step of the flow.
            (
                ALONE
                + "("
                + "|".join(STEP_FUNCTIONS)
                + r")(\s*)(\()(\s*)"
                + NOT_VALUE_WORD
                + "("
                + NAME
                + r")(?=\s*[,)])",
                _groups(Name.Builtin, Whitespace, Punctuation, Whitespace, Name.Function),
            ),
            (
                ALONE + r"(step)(\s*)(=)(\s*)" + NOT_VALUE_WORD + "(" + NAME + ")",
                _groups(Name.Variable, Whitespace, Operator, Whitespace, Name.Function),
            ),
            # A bare name as an argument: an event type (`count(send)`), a list, a segment …
            (
                r"(\()(\s*)" + NOT_CONSTANT + "(" + NAME + r")(?=\s*[,)])",
                _groups(Punctuation, Whitespace, Name),
            ),
            (words(FUNCTIONS, prefix=ALONE, suffix=r"\b(?=\s*\()"), Name.Builtin),
            (NOT_KEYWORD + NAME + r"(?=\s*\()", Name.Function),
            (r"(\.)(" + NAME + ")", _groups(Punctuation, Name.Attribute)),
            (words(PATH_ROOTS, prefix=ALONE, suffix=r"\b(?=\s*\.)"), Name.Builtin.Pseudo),
            (NAME + r"(?=\s*=(?!=))", Name.Variable),
            (words(DECLARATION_KEYWORDS, prefix=ALONE, suffix=r"\b"), Keyword.Declaration),
            (words(OPERATOR_KEYWORDS, prefix=ALONE, suffix=r"\b"), Keyword),
            (words(CONSTANT_KEYWORDS, prefix=ALONE, suffix=r"\b"), Keyword.Constant),
            (words(WEEKDAY_KEYWORDS, prefix=ALONE, suffix=r"\b"), Keyword.Pseudo),
            (words(CONTROL_KEYWORDS, prefix=ALONE, suffix=r"\b"), Keyword),
            (DATE, Date),
            (TIME, Time),
            (DURATION, Duration),
            (PERCENT, Percent),
            (NUMBER, Number),
            (NAME, Name),
            (r"->|\+=|-=|==|!=|<=|>=|[-+*/<>=]", Operator),
            (r"[{}()\[\],:.]", Punctuation),
        ],
        "string": [
            (r"\\.", String.Escape),
            (r"\{\{.*?\}\}", String.Interpol),
            (r'"', String.Double, "#pop"),
            (r'[^"\\{\n]+', String.Double),
            (r"\{", String.Double),
            (r"\n", Whitespace, "#pop"),
        ],
        "suppression": [
            (r"\b[Ff][Bb]\d{3}\b", Comment.Preproc),
            (r"\n", Whitespace, "#pop"),
            (r"[^\n]", Comment.Special),
        ],
    }
