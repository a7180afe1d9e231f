"""A small TextMate tokenizer, enough to test flowbuilder's grammar the way an editor reads it.

It implements the subset of TextMate rules the grammar uses, with the semantics of vscode-textmate:
a text is tokenized line by line (each line with its `\\n`); at each position every pattern of the
current rule (with `include`s of `#repository` entries and `$self` expanded) and the current `end`
are searched; the match that starts first wins, the `end` pattern on a tie, then the earlier
pattern. `match` rules give their `name` and `captures`; `begin`/`end` rules push a scope that
holds until `end` matches, possibly lines later. Regular expressions are compiled with Python's `re`;
the grammar keeps to syntax both engines read alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

Rule = dict[str, Any]


@dataclass(frozen=True)
class Token:
    line: int  # 1-based
    start: int  # 0-based character offsets in the line
    end: int
    scopes: tuple[str, ...]


@dataclass
class _Frame:
    rule: Rule | None
    scopes: tuple[str, ...]
    end: re.Pattern[str] | None


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Tokenizer:
    def __init__(self, grammar: Rule) -> None:
        self.grammar = grammar
        self.root_scope: str = grammar["scopeName"]

    def _patterns(self, rule: Rule | None) -> list[Rule]:
        """The rules to try inside `rule` (the grammar itself when None), includes expanded."""
        found: list[Rule] = []
        source = self.grammar["patterns"] if rule is None else rule.get("patterns", [])
        for item in source:
            found += self._expand(item)
        return found

    def _expand(self, item: Rule) -> list[Rule]:
        if "include" in item:
            target = item["include"]
            if target == "$self":
                return self._patterns(None)
            assert target.startswith("#"), f"unsupported include {target}"
            return self._expand(self.grammar["repository"][target[1:]])
        if "match" in item or "begin" in item:
            return [item]
        return [r for sub in item.get("patterns", []) for r in self._expand(sub)]

    @staticmethod
    def _scoped(scopes: tuple[str, ...], name: str | None) -> tuple[str, ...]:
        return scopes + tuple(name.split()) if name else scopes

    def _captured(
        self,
        match: re.Match[str],
        base: tuple[str, ...],
        captures: dict[str, dict[str, str]] | None,
    ) -> list[tuple[str, ...]]:
        """Scopes of each character of a match: the base, then each capture containing it."""
        chars = [base] * (match.end() - match.start())
        for key, spec in sorted((captures or {}).items(), key=lambda kv: int(kv[0])):
            group = int(key)
            if match.start(group) == -1 or "name" not in spec:
                continue
            for i in range(match.start(group), match.end(group)):
                chars[i - match.start()] = chars[i - match.start()] + (spec["name"],)
        return chars

    def tokenize(self, text: str) -> list[Token]:
        stack = [_Frame(None, (self.root_scope,), None)]
        tokens: list[Token] = []
        for number, body in enumerate(text.split("\n"), start=1):
            line = body + "\n"
            scopes: list[tuple[str, ...]] = []
            pos = 0
            while pos < len(line):
                frame = stack[-1]
                best: tuple[int, int, re.Match[str], Rule | None] | None = None
                if frame.end is not None:
                    m = frame.end.search(line, pos)
                    if m is not None:
                        best = (m.start(), -1, m, None)
                for order, rule in enumerate(self._patterns(frame.rule)):
                    m = _compile(rule.get("match") or rule["begin"]).search(line, pos)
                    if m is not None and (best is None or (m.start(), order) < best[:2]):
                        best = (m.start(), order, m, rule)
                if best is None:
                    scopes += [frame.scopes] * (len(line) - pos)
                    break
                start, _, m, rule = best
                scopes += [frame.scopes] * (start - pos)
                if rule is None:  # the end of the current begin/end rule
                    assert frame.rule is not None
                    scopes += self._captured(
                        m, frame.scopes, frame.rule.get("endCaptures") or frame.rule.get("captures")
                    )
                    stack.pop()
                    pos = m.end()
                elif "match" in rule:
                    scopes += self._captured(
                        m, self._scoped(frame.scopes, rule.get("name")), rule.get("captures")
                    )
                    pos = m.end()
                    if m.end() == m.start():
                        scopes.append(frame.scopes)  # an empty match: step over one character
                        pos += 1
                else:
                    inner = self._scoped(frame.scopes, rule.get("name"))
                    scopes += self._captured(
                        m, inner, rule.get("beginCaptures") or rule.get("captures")
                    )
                    stack.append(
                        _Frame(
                            rule,
                            self._scoped(inner, rule.get("contentName")),
                            _compile(rule["end"]),
                        )
                    )
                    pos = m.end()
            scopes = scopes[: len(body)]
            start = 0
            for i in range(1, len(scopes) + 1):
                if i == len(scopes) or scopes[i] != scopes[start]:
                    tokens.append(Token(number, start, i, scopes[start]))
                    start = i
        return tokens


def scopes_by_position(tokens: list[Token]) -> dict[tuple[int, int], tuple[str, ...]]:
    """(1-based line, 1-based column) -> the scopes of that character."""
    found: dict[tuple[int, int], tuple[str, ...]] = {}
    for t in tokens:
        for col in range(t.start, t.end):
            found[(t.line, col + 1)] = t.scopes
    return found
