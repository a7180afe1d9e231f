"""Lint settings from `[tool.flowbuilder.lint]` in pyproject.toml, and `# lint: ignore[...]` comments.

A *selector* names rules in `select`, `ignore` and inside `ignore[...]`: a code (`FB302`), a code
prefix (`FB3`, or `FB` for every rule), a family (`graph`) or a rule name (`branch-without-else`).
`ignore` wins over `select`. Syntax errors (FB1xx) are always reported, always as errors: a file that
does not parse cannot be checked, so hiding that would make a broken file look clean.

>>> config = config_from_table({"select": ["safety", "FB302"], "severity": {"FB302": "error"}})
>>> config.enabled("FB400"), config.enabled("FB300"), config.enabled("FB100")
(True, False, True)
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from dsl.diagnostics import Diagnostic, Severity, sorted_diagnostics
from dsl.rules import RULES

TABLE = "tool.flowbuilder.lint"
KEYS = ("ignore", "max-cold-touches", "select", "severity")
_CODE_PREFIX = re.compile(r"FB\d{0,3}", re.IGNORECASE)
_SUPPRESSION = re.compile(
    r"#\s*lint:\s*ignore(?:\s*\[(?P<codes>[^\]]*)\]|(?!\s*\[)(?![\w-]))", re.IGNORECASE
)


class ConfigError(ValueError):
    """The lint table of a pyproject.toml is malformed; the message names the file and the key."""


def is_syntax(code: str) -> bool:
    rule = RULES.get(code)
    return rule.family == "syntax" if rule else code.startswith("FB1")


def matches(selector: str, code: str) -> bool:
    """Whether `selector` (code, code prefix, family or rule name) names the rule `code`."""
    rule = RULES.get(code)
    if rule and selector in (rule.family, rule.name):
        return True
    return _CODE_PREFIX.fullmatch(selector) is not None and code.startswith(selector.upper())


SUPPRESSIBLE = frozenset(code for code in RULES if not is_syntax(code))


def _empty_severity() -> Mapping[str, Severity]:
    return MappingProxyType({})


@dataclass(frozen=True)
class LintConfig:
    """Which rules run (`select`, `ignore`), per-code severity overrides and rule parameters."""

    select: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    severity: Mapping[str, Severity] = field(default_factory=_empty_severity)
    max_cold_touches: int = 5

    def enabled(self, code: str) -> bool:
        if is_syntax(code):
            return True
        if self.select is not None and not any(matches(s, code) for s in self.select):
            return False
        return not any(matches(s, code) for s in self.ignore)


_SCALARS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
)


def _kind(value: object) -> str:
    """What a TOML value is, for messages: `a string ('fatal')`, `a list`."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    for cls, name in _SCALARS:
        if isinstance(value, cls):
            return f"{name} ({value!r})"
    return "a date or time"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A suggestion for a misspelt name; codes get none, as a near code is a different rule."""
    if _CODE_PREFIX.fullmatch(word):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Reader:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.origin}: [{TABLE}] {key}: {problem}")

    def selectors(self, key: str, value: object) -> frozenset[str]:
        if not isinstance(value, list):
            expected = 'a list of rule selectors such as ["FB4", "safety"]'
            raise self.error(key, f"expected {expected}, found {_kind(value)}")
        words = [*RULES, *{r.family for r in RULES.values()}, *(r.name for r in RULES.values())]
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"expected a string, found {_kind(item)}")
            if not any(matches(item, code) for code in RULES):
                raise self.error(
                    f"{key}[{i}]",
                    f"'{item}' matches no rule; expected a code ({_code_range()}), a prefix such "
                    f"as FB4, a family ({', '.join(_families())}) or a rule name"
                    + _did_you_mean(item, words),
                )
        return frozenset(value)

    def severity(self, value: object) -> Mapping[str, Severity]:
        if not isinstance(value, dict):
            expected = 'a table of codes and severities such as {FB302 = "error"}'
            raise self.error("severity", f"expected {expected}, found {_kind(value)}")
        levels = [s.value for s in Severity]
        out: dict[str, Severity] = {}
        for code, level in value.items():
            key = f"severity.{code}"
            if code not in RULES:
                problem = f"unknown rule code; known codes are {_code_range()}"
                raise self.error(key, problem)
            if is_syntax(code):
                raise self.error(key, "syntax errors are always errors; their severity is fixed")
            if level not in levels:
                expected = ", ".join(f'"{name}"' for name in levels)
                raise self.error(key, f"expected one of {expected}, found {_kind(level)}")
            out[code] = Severity(level)
        return MappingProxyType(out)

    def positive_int(self, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, f"expected a whole number of at least 1, found {_kind(value)}")
        return value


def _code_range() -> str:
    codes = sorted(RULES)
    return f"{codes[0]}…{codes[-1]}"


def _families() -> list[str]:
    return list(dict.fromkeys(r.family for r in RULES.values()))


def config_from_table(table: Mapping[str, object], origin: str = "pyproject.toml") -> LintConfig:
    """Build a `LintConfig` from the contents of a `[tool.flowbuilder.lint]` table."""
    reader = _Reader(origin)
    for key in table:
        if key not in KEYS:
            problem = f"unknown key; known keys are {', '.join(KEYS)}"
            raise reader.error(key, problem + _did_you_mean(key, KEYS))
    config = LintConfig()
    if "select" in table:
        config = replace(config, select=reader.selectors("select", table["select"]))
    if "ignore" in table:
        config = replace(config, ignore=reader.selectors("ignore", table["ignore"]))
    if "severity" in table:
        config = replace(config, severity=reader.severity(table["severity"]))
    if "max-cold-touches" in table:
        touches = reader.positive_int("max-cold-touches", table["max-cold-touches"])
        config = replace(config, max_cold_touches=touches)
    return config


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` (a file's folder, or a folder) or above it."""
    start = start.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder / "pyproject.toml", *(p / "pyproject.toml" for p in folder.parents)):
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path) -> LintConfig:
    """The lint settings of the nearest pyproject.toml; defaults when it or its table is missing."""
    path = find_pyproject(start)
    if path is None:
        return LintConfig()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    node: object = data
    parts = TABLE.split(".")
    for depth, part in enumerate(parts):
        assert isinstance(node, dict)
        node = node.get(part)
        if node is None:
            return LintConfig()
        if not isinstance(node, dict):
            name = ".".join(parts[: depth + 1])
            raise ConfigError(f"{path}: [{name}] must be a table, found {_kind(node)}")
    assert isinstance(node, dict)
    return config_from_table(node, str(path))


class HasLineText(Protocol):
    """A comment: its 1-based line, its text from the `#`, and whether code precedes it."""

    @property
    def line(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def trailing(self) -> bool: ...


def suppressions(comments: Iterable[HasLineText]) -> dict[int, frozenset[str]]:
    """Line -> selectors suppressed there, from `# lint: ignore[FB302, FB400]` comments.

    A trailing comment applies to its own line; a comment alone on line N applies to line N+1 only
    (not to the next line with code). A bare `# lint: ignore` suppresses every rule but syntax ones.

    >>> from types import SimpleNamespace as C
    >>> found = suppressions([C(line=3, text="# lint: ignore[fb302, safety]", trailing=False)])
    >>> {line: sorted(codes) for line, codes in found.items()}
    {4: ['FB302', 'safety']}
    """
    found: dict[int, frozenset[str]] = {}
    for comment in comments:
        match = _SUPPRESSION.match(comment.text)
        if match is None:
            continue
        listed = match.group("codes")
        if listed is None:
            codes = SUPPRESSIBLE
        else:
            words = (w.strip() for w in listed.split(","))
            codes = frozenset(w.upper() if _CODE_PREFIX.fullmatch(w) else w for w in words if w)
        if codes:
            line = comment.line if comment.trailing else comment.line + 1
            found[line] = found.get(line, frozenset()) | codes
    return found


def apply(
    diagnostics: Iterable[Diagnostic],
    config: LintConfig,
    suppressed: Mapping[str, Mapping[int, frozenset[str]]],
) -> list[Diagnostic]:
    """Drop what `config` and the suppressions (path -> line -> selectors) turn off, set severities.

    Syntax errors pass untouched. The result is sorted by path, line, column and code.
    """
    kept: list[Diagnostic] = []
    for d in diagnostics:
        if is_syntax(d.code):
            kept.append(d)
            continue
        if not config.enabled(d.code):
            continue
        if any(matches(s, d.code) for s in suppressed.get(d.path, {}).get(d.line, ())):
            continue
        level = config.severity.get(d.code, d.severity)
        kept.append(d if level is d.severity else replace(d, severity=level))
    return sorted_diagnostics(kept)
