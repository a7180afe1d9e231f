"""The TextMate grammar of the .flow language, for VS Code and every tool that reads TextMate grammars.

It is built from the keyword groups and patterns of `flowbuilder.highlight`, so the two highlighters
agree, and written to `editors/vscode/syntaxes/flow.tmLanguage.json`:

    python -m flowbuilder.textmate > editors/vscode/syntaxes/flow.tmLanguage.json

A test fails when the file differs from what this module builds. The patterns use only regular
expression syntax that Oniguruma (TextMate, VS Code) and Python's `re` read alike.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from flowbuilder import highlight as h

SCOPE = "source.flow"
Rule = dict[str, Any]

_KEYWORD_SCOPES = (
    (h.DECLARATION_KEYWORDS, "keyword.other.declaration.flow"),
    (h.OPERATOR_KEYWORDS, "keyword.operator.word.flow"),
    (h.CONSTANT_KEYWORDS, "keyword.other.constant.flow"),
    (h.WEEKDAY_KEYWORDS, "keyword.other.weekday.flow"),
    (h.CONTROL_KEYWORDS, "keyword.control.flow"),
)


def keyword_scope(word: str) -> str:
    """The scope of a keyword by its group."""
    for group, scope in _KEYWORD_SCOPES:
        if word in group:
            return scope
    raise KeyError(word)


def _alternatives(words: tuple[str, ...]) -> str:
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def _captures(*names: str | None) -> dict[str, dict[str, str]]:
    return {str(i): {"name": n} for i, n in enumerate(names, start=1) if n is not None}


def _naming_rules() -> list[Rule]:
    """`template welcome_email`, `add to list newsletter`, `entered segment vip` …"""
    return [
        {
            "match": rf"{h.ALONE}({word})\b(\s+)({h.NAME})",
            "captures": _captures(keyword_scope(word), None, f"entity.name.type.{word}.flow"),
        }
        for word in h.NAMING_KEYWORDS
    ]


def _keyword_rules() -> list[Rule]:
    return [
        {"match": rf"{h.ALONE}\b(?:{_alternatives(group)})\b", "name": scope}
        for group, scope in _KEYWORD_SCOPES
    ]


def grammar() -> Rule:
    """The grammar as a JSON-ready dict."""
    step = "entity.name.function.step.flow"
    repository: dict[str, Rule] = {
        "comment": {
            "begin": "#",
            "beginCaptures": {"0": {"name": "punctuation.definition.comment.flow"}},
            "end": "$",
            "name": "comment.line.number-sign.flow",
            "patterns": [
                {"match": r"\blint:\s*ignore\b", "name": "keyword.other.suppression.flow"},
                {"match": r"\b[Ff][Bb]\d{3}\b", "name": "constant.other.rule-code.flow"},
            ],
        },
        "string": {
            "begin": '"',
            "beginCaptures": {"0": {"name": "punctuation.definition.string.begin.flow"}},
            "end": '(")|$',
            "endCaptures": _captures("punctuation.definition.string.end.flow"),
            "name": "string.quoted.double.flow",
            "patterns": [
                {"match": r"\\.", "name": "constant.character.escape.flow"},
                {"match": r"\{\{.*?\}\}", "name": "constant.other.placeholder.flow"},
            ],
        },
        "step": {
            "comment": "`name:` at the start of a line: a step, or its place in a layout block",
            "match": rf"^([^\S\n]*)({h.NAME})([^\S\n]*)(:)",
            "captures": _captures(None, step, None, "punctuation.separator.colon.flow"),
        },
        "edge": {
            "match": rf"(->)\s*{h.NOT_ROUTE}({h.NAME})",
            "captures": _captures("keyword.operator.arrow.flow", step),
        },
        "send": {
            "match": rf"{h.ALONE}(send)(\s+)(?!window\b)({h.NAME})",
            "captures": _captures(keyword_scope("send"), None, "entity.name.type.template.flow"),
        },
        "names": {"patterns": _naming_rules()},
        "events": {
            "comment": "the event type after `trigger event` and `per`, keyword or not",
            "match": rf"{h.ALONE}(event|per)\b(\s+)({h.NAME})",
            "captures": _captures("keyword.control.flow", None, "variable.other.event.flow"),
        },
        "values": {
            "match": rf"{h.ALONE}({'|'.join(h.VALUE_KEYWORDS)})\b(\s+)({h.NAME})",
            "captures": _captures("keyword.control.flow", None, "constant.other.flow"),
        },
        "types": {
            "match": rf"(:)(\s*)({'|'.join(h.TYPES)})\b",
            "captures": _captures("punctuation.separator.colon.flow", None, "storage.type.flow"),
        },
        "calls": {
            "patterns": [
                {
                    "match": rf"{h.ALONE}({'|'.join(h.STEP_FUNCTIONS)})(\s*)(\()(\s*){h.NOT_VALUE_WORD}({h.NAME})(?=\s*[,)])",
                    "captures": _captures(
                        "support.function.builtin.flow",
                        None,
                        "punctuation.section.parens.begin.flow",
                        None,
                        step,
                    ),
                },
                {
                    "match": rf"{h.ALONE}(step)(\s*)(=)(\s*){h.NOT_VALUE_WORD}({h.NAME})",
                    "captures": _captures(
                        "variable.parameter.flow",
                        None,
                        "keyword.operator.assignment.flow",
                        None,
                        step,
                    ),
                },
                {
                    "comment": "a bare name as an argument (an event type, a list …), keyword or not",
                    "match": rf"(\()(\s*){h.NOT_CONSTANT}({h.NAME})(?=\s*[,)])",
                    "captures": _captures(
                        "punctuation.section.parens.begin.flow", None, "variable.other.flow"
                    ),
                },
                {
                    "match": rf"{h.ALONE}\b(?:{_alternatives(h.FUNCTIONS)})\b(?=\s*\()",
                    "name": "support.function.builtin.flow",
                },
                {"match": rf"{h.NOT_KEYWORD}{h.NAME}(?=\s*\()", "name": "variable.function.flow"},
            ]
        },
        "paths": {
            "patterns": [
                {
                    "match": rf"(\.)({h.NAME})",
                    "captures": _captures(
                        "punctuation.accessor.flow", "variable.other.property.flow"
                    ),
                },
                {
                    "match": rf"{h.ALONE}\b(?:{'|'.join(h.PATH_ROOTS)})\b(?=\s*\.)",
                    "name": "variable.language.flow",
                },
                {"match": rf"{h.NAME}(?=\s*=(?!=))", "name": "variable.parameter.flow"},
            ]
        },
        "keywords": {"patterns": _keyword_rules()},
        "literals": {
            "patterns": [
                {"match": h.DATE, "name": "constant.numeric.date.flow"},
                {"match": h.TIME, "name": "constant.numeric.time.flow"},
                {"match": h.DURATION, "name": "constant.numeric.duration.flow"},
                {"match": h.PERCENT, "name": "constant.numeric.percentage.flow"},
                {"match": h.NUMBER, "name": "constant.numeric.flow"},
            ]
        },
        "operators": {
            "patterns": [
                {"match": "->", "name": "keyword.operator.arrow.flow"},
                {"match": r"\+=|-=", "name": "keyword.operator.assignment.compound.flow"},
                {"match": "==|!=|<=|>=|<|>", "name": "keyword.operator.comparison.flow"},
                {"match": "=", "name": "keyword.operator.assignment.flow"},
                {"match": r"[-+*/]", "name": "keyword.operator.arithmetic.flow"},
            ]
        },
        "punctuation": {
            "patterns": [
                {"match": r"\{", "name": "punctuation.section.block.begin.flow"},
                {"match": r"\}", "name": "punctuation.section.block.end.flow"},
                {"match": r"\(", "name": "punctuation.section.parens.begin.flow"},
                {"match": r"\)", "name": "punctuation.section.parens.end.flow"},
                {"match": r"\[", "name": "punctuation.section.brackets.begin.flow"},
                {"match": r"\]", "name": "punctuation.section.brackets.end.flow"},
                {"match": ",", "name": "punctuation.separator.comma.flow"},
                {"match": ":", "name": "punctuation.separator.colon.flow"},
                {"match": r"\.", "name": "punctuation.accessor.flow"},
            ]
        },
        "name": {"match": h.NAME, "name": "variable.other.flow"},
    }
    order = [
        "comment",
        "string",
        "step",
        "edge",
        "send",
        "names",
        "events",
        "values",
        "types",
        "calls",
        "paths",
        "keywords",
        "literals",
        "name",
        "operators",
        "punctuation",
    ]
    assert set(order) == set(repository)
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "flowbuilder flow",
        "scopeName": SCOPE,
        "fileTypes": ["flow"],
        "comment": "Generated by `python -m flowbuilder.textmate`; edit flowbuilder/highlight.py instead.",
        "patterns": [{"include": f"#{key}"} for key in order],
        "repository": repository,
    }


def render() -> str:
    return json.dumps(grammar(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
