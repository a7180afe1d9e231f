"""The registry of every diagnostic code: its family, default severity and one-line summary.

Codes are stable. Families: syntax (FB1xx), semantic (FB2xx), graph (FB3xx),
marketing safety (FB4xx), style (FB5xx), templates (FB6xx). Each code has a page `docs/lint/<CODE>.md`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.diagnostics import Diagnostic, Severity, Span


@dataclass(frozen=True)
class Rule:
    code: str
    family: str
    severity: Severity
    name: str
    summary: str


_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO

RULES: dict[str, Rule] = {
    r.code: r
    for r in [
        # syntax: the text does not follow the grammar
        Rule(
            "FB100",
            "syntax",
            _E,
            "unexpected-token",
            "The text has a word or symbol where the grammar expects something else.",
        ),
        Rule(
            "FB101",
            "syntax",
            _E,
            "unexpected-character",
            "The text has a character that is not part of the language.",
        ),
        Rule(
            "FB102",
            "syntax",
            _E,
            "unbalanced-braces",
            "A `{` is never closed, or a `}` closes nothing.",
        ),
        Rule(
            "FB103",
            "syntax",
            _E,
            "unreadable-file",
            "The file is not UTF-8 text (binary data or another encoding).",
        ),
        Rule(
            "FB104",
            "syntax",
            _E,
            "file-too-large",
            "The file is too large or too deeply nested to be a flow.",
        ),
        Rule(
            "FB105",
            "syntax",
            _E,
            "reserved-word",
            "A reserved word of the language is used as a name.",
        ),
        # semantic: the text parses but does not make sense
        Rule(
            "FB200",
            "semantic",
            _E,
            "undefined-step",
            "A reference names a step that the flow does not define.",
        ),
        Rule(
            "FB201",
            "semantic",
            _E,
            "undefined-segment",
            "A reference names a segment that the workspace does not define.",
        ),
        Rule(
            "FB202",
            "semantic",
            _E,
            "undefined-list",
            "A reference names a list that the workspace does not define.",
        ),
        Rule(
            "FB203",
            "semantic",
            _E,
            "undefined-template",
            "A send names a template that the workspace does not define.",
        ),
        Rule(
            "FB204",
            "semantic",
            _E,
            "undefined-stage",
            "A reference names a stage that the workspace does not define.",
        ),
        Rule(
            "FB205",
            "semantic",
            _E,
            "undefined-form",
            "A reference names a form that the workspace does not define.",
        ),
        Rule(
            "FB206",
            "semantic",
            _E,
            "undefined-flow",
            "A move names a flow that the workspace does not define.",
        ),
        Rule(
            "FB207",
            "semantic",
            _E,
            "undefined-setting",
            "A `settings.` path names a setting that the workspace does not define.",
        ),
        Rule(
            "FB208",
            "semantic",
            _E,
            "unknown-name",
            "A name in a condition is not a function, path or known reference.",
        ),
        Rule(
            "FB209",
            "semantic",
            _E,
            "bad-arguments",
            "A function is called with missing, extra or unknown arguments.",
        ),
        Rule(
            "FB210", "semantic", _E, "duplicate-name", "Two things of the same kind share a name."
        ),
        Rule(
            "FB211",
            "semantic",
            _E,
            "wrong-type",
            "A value has the wrong type for where it is used.",
        ),
        Rule(
            "FB212",
            "semantic",
            _E,
            "bad-value",
            "A value is out of range or has a unit that does not fit (a time of 25:00, a zero duration).",
        ),
        Rule(
            "FB213",
            "semantic",
            _E,
            "unknown-timezone",
            "A timezone is not an IANA name such as Asia/Seoul.",
        ),
        Rule(
            "FB214",
            "semantic",
            _E,
            "split-not-100",
            "The percentages of a random split (holdout included) do not add up to 100%.",
        ),
        Rule(
            "FB215",
            "semantic",
            _E,
            "duplicate-policy",
            "A flow or workspace sets the same policy twice.",
        ),
        Rule("FB216", "semantic", _E, "empty-flow", "A flow has no steps."),
        Rule(
            "FB217",
            "semantic",
            _W,
            "layout-unknown-step",
            "The layout block places a step that the flow does not define.",
        ),
        # graph: the shape of the flow
        Rule(
            "FB300",
            "graph",
            _W,
            "unreachable-step",
            "No path from the first step reaches this step.",
        ),
        Rule(
            "FB301",
            "graph",
            _W,
            "missing-end",
            "A path runs off the end of the flow without an explicit `end`.",
        ),
        Rule(
            "FB302",
            "graph",
            _W,
            "branch-without-else",
            "A branch has no `else` arm, so leads that match no arm fall through silently.",
        ),
        Rule(
            "FB303",
            "graph",
            _W,
            "unreachable-arm",
            "A branch arm can never be taken because an earlier arm always matches first.",
        ),
        Rule(
            "FB304",
            "graph",
            _W,
            "wait-without-timeout",
            "A wait for an event has no `up to` timeout, so leads may wait forever.",
        ),
        Rule(
            "FB305",
            "graph",
            _E,
            "loop-without-wait",
            "A loop in the flow contains no wait, so a lead would cycle without end.",
        ),
        Rule(
            "FB306",
            "graph",
            _W,
            "no-trigger",
            "A flow has no trigger, so no lead can ever enter it.",
        ),
        # marketing safety: what protects the readers and the sender's reputation
        Rule(
            "FB400",
            "safety",
            _W,
            "sends-without-wait",
            "Two sends follow each other with no wait between them.",
        ),
        Rule(
            "FB401",
            "safety",
            _W,
            "over-frequency-cap",
            "A path sends more emails within the cap window than the frequency cap allows.",
        ),
        Rule(
            "FB402", "safety", _W, "long-cold-sequence", "A cold sequence has more than 5 touches."
        ),
        Rule(
            "FB403",
            "safety",
            _E,
            "no-exit-on-reply",
            "A cold or sales sequence does not stop when the lead replies.",
        ),
        Rule(
            "FB404",
            "safety",
            _W,
            "duplicate-trigger",
            "Two flows enroll the same lead on the same trigger.",
        ),
        Rule(
            "FB405",
            "safety",
            _W,
            "merge-field-without-fallback",
            "A merge field has no fallback and the lead may not have that attribute.",
        ),
        # templates: the email files templates name (checked by flowbuilder.mail.lint)
        Rule(
            "FB600",
            "template",
            _E,
            "template-file-missing",
            "A template names an HTML or text file that does not exist, or has no body file.",
        ),
        Rule(
            "FB601",
            "template",
            _E,
            "template-syntax",
            "A template file is not valid template syntax.",
        ),
        Rule(
            "FB602",
            "template",
            _W,
            "no-unsubscribe-link",
            "The HTML of a marketing template has no unsubscribe link.",
        ),
        Rule(
            "FB603",
            "template",
            _W,
            "link-goes-nowhere",
            "A link in a template is empty, `#`, relative or `javascript:`.",
        ),
        # style: readability
        Rule(
            "FB500",
            "style",
            _I,
            "name-not-snake-case",
            "Names of steps, flows and declarations are written in snake_case.",
        ),
        Rule(
            "FB501", "style", _I, "flow-without-title", "A flow has no human title after its name."
        ),
    ]
}


def make(
    code: str,
    message: str,
    path: str,
    span: Span,
    hint: str | None = None,
    severity: Severity | None = None,
) -> Diagnostic:
    """Build a diagnostic for a registered code, with the code's family and default severity."""
    rule = RULES[code]
    return Diagnostic(
        code=code,
        severity=severity or rule.severity,
        message=message,
        path=path,
        span=span,
        hint=hint,
        family=rule.family,
    )
