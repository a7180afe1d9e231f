from __future__ import annotations

import doctest
from dataclasses import dataclass
from pathlib import Path

import pytest

import dsl.lint.config
from dsl.diagnostics import Diagnostic, Severity, Span
from dsl.lint.config import (
    ConfigError,
    LintConfig,
    apply,
    config_from_table,
    load_config,
    suppressions,
)
from dsl.parse import parse_tree
from dsl.rules import RULES, make


@dataclass(frozen=True)
class Comment:
    line: int
    text: str
    trailing: bool = False


def _write(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n\n' + body, encoding="utf-8")
    return path


def test_the_lint_table_of_the_nearest_pyproject_is_read(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "[tool.flowbuilder.lint]\n"
        'select = ["FB3", "safety"]\n'
        'ignore = ["FB304"]\n'
        'severity = { FB302 = "error", FB500 = "warning" }\n'
        "max-cold-touches = 3\n",
    )
    flows = tmp_path / "flows" / "sales"
    flows.mkdir(parents=True)
    (flows / "a.flow").write_text("")
    config = load_config(flows / "a.flow")
    assert config.select == frozenset({"FB3", "safety"})
    assert config.ignore == frozenset({"FB304"})
    assert dict(config.severity) == {"FB302": Severity.ERROR, "FB500": Severity.WARNING}
    assert config.max_cold_touches == 3
    assert load_config(flows) == config


def test_a_nearer_pyproject_without_the_table_gives_the_defaults(tmp_path: Path) -> None:
    _write(tmp_path, '[tool.flowbuilder.lint]\nignore = ["style"]\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    _write(inner, "[tool.ruff]\nline-length = 100\n")
    assert load_config(inner) == LintConfig()
    assert load_config(tmp_path).ignore == frozenset({"style"})


def test_no_pyproject_at_all_gives_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever folders above the temporary directory hold, this machine-independent test sees none.
    monkeypatch.setattr("dsl.lint.config.find_pyproject", lambda start: None)
    assert load_config(tmp_path / "missing.flow") == LintConfig()


def test_the_defaults_select_every_rule_and_allow_five_cold_touches() -> None:
    config = LintConfig()
    assert config.select is None and config.ignore == frozenset()
    assert dict(config.severity) == {} and config.max_cold_touches == 5
    assert all(config.enabled(code) for code in RULES)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'severity = { FB999 = "error" }',
            "severity.FB999: unknown rule code; known codes are FB100…FB603",
        ),
        (
            'severity = { FB302 = "fatal" }',
            'severity.FB302: expected one of "error", "warning", "info", found a string (\'fatal\')',
        ),
        (
            'severity = { FB100 = "warning" }',
            "severity.FB100: syntax errors are always errors; their severity is fixed",
        ),
        (
            'severity = "error"',
            'severity: expected a table of codes and severities such as {FB302 = "error"}, '
            "found a string ('error')",
        ),
        (
            'select = "FB4"',
            'select: expected a list of rule selectors such as ["FB4", "safety"], '
            "found a string ('FB4')",
        ),
        ("ignore = [302]", "ignore[0]: expected a string, found an integer (302)"),
        (
            'ignore = ["FB302", "FB9"]',
            "ignore[1]: 'FB9' matches no rule; expected a code (FB100…FB603), a prefix such as "
            "FB4, a family (syntax, semantic, graph, safety, template, style) or a rule name",
        ),
        ('select = ["saftey"]', "select[0]: 'saftey' matches no rule; expected a code"),
        ('select = ["saftey"]', "or a rule name; did you mean 'safety'?"),
        (
            "max-cold-touches = 0",
            "max-cold-touches: expected a whole number of at least 1, found an integer (0)",
        ),
        (
            "max-cold-touches = true",
            "max-cold-touches: expected a whole number of at least 1, found a boolean (True)",
        ),
        (
            "max_cold_touches = 3",
            "max_cold_touches: unknown key; known keys are ignore, max-cold-touches, select, "
            "severity; did you mean 'max-cold-touches'?",
        ),
    ],
)
def test_a_malformed_lint_table_names_the_file_the_key_and_what_is_expected(
    tmp_path: Path, body: str, message: str
) -> None:
    path = _write(tmp_path, f"[tool.flowbuilder.lint]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{path}: [tool.flowbuilder.lint] ")
    assert message in text


def test_an_unknown_code_gets_no_guessed_suggestion_since_a_near_code_is_another_rule() -> None:
    for table in ({"severity": {"FB999": "error"}}, {"ignore": ["FB9"]}):
        with pytest.raises(ConfigError) as info:
            config_from_table(table)
        assert "did you mean" not in str(info.value)


def test_invalid_toml_and_a_lint_key_that_is_not_a_table_are_config_errors(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "[tool.flowbuilder\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)
    path.write_text("[tool.flowbuilder]\nlint = 3\n")
    with pytest.raises(ConfigError, match=r"\[tool\.flowbuilder\.lint\] must be a table"):
        load_config(path)


def test_config_errors_are_value_errors() -> None:
    assert issubclass(ConfigError, ValueError)


def test_select_and_ignore_accept_codes_prefixes_families_and_rule_names() -> None:
    config = config_from_table({"select": ["FB4", "graph"], "ignore": ["branch-without-else"]})
    assert config.enabled("FB400") and config.enabled("FB300")
    assert not config.enabled("FB302")
    assert not config.enabled("FB500")
    everything = config_from_table({"select": ["FB"]})
    assert all(everything.enabled(code) for code in RULES)


def test_syntax_errors_are_enabled_whatever_the_selection() -> None:
    config = config_from_table({"select": ["style"], "ignore": ["FB1", "syntax"]})
    assert config.enabled("FB100") and config.enabled("FB105")


def test_a_trailing_suppression_applies_to_its_own_line() -> None:
    found = suppressions([Comment(7, "# lint: ignore[FB302, FB400]", trailing=True)])
    assert found == {7: frozenset({"FB302", "FB400"})}


def test_a_suppression_alone_on_its_line_applies_to_the_next_line() -> None:
    found = suppressions([Comment(7, "#lint:ignore[fb302]  -- legacy flow")])
    assert found == {8: frozenset({"FB302"})}


def test_a_bare_suppression_covers_every_rule_but_the_syntax_ones() -> None:
    (codes,) = suppressions([Comment(1, "# lint: ignore", trailing=True)]).values()
    assert "FB302" in codes and "FB501" in codes
    assert not any(code.startswith("FB1") for code in codes)


@pytest.mark.parametrize(
    "text",
    [
        "# a comment",
        "# lint: ignored",
        "# lint: ignore-all",
        "# lint: ignore [FB302",
        "# lint: ignore[]",
        "# see lint: ignore[FB302]",
    ],
)
def test_comments_that_are_not_suppressions_suppress_nothing(text: str) -> None:
    assert suppressions([Comment(1, text, trailing=True)]) == {}


def test_suppressions_on_the_same_target_line_are_merged() -> None:
    found = suppressions(
        [Comment(2, "# lint: ignore[FB302]"), Comment(3, "# lint: ignore[FB400]", trailing=True)]
    )
    assert found == {3: frozenset({"FB302", "FB400"})}


def test_suppressions_read_the_comments_the_parser_collects() -> None:
    text = (
        'flow welcome "Welcome" {\n'
        "  # lint: ignore[FB400]\n"
        "  a: send x\n"
        "  b: send y  # lint: ignore[FB302]\n"
        "}\n"
    )
    assert suppressions(parse_tree(text, "w.flow").comments) == {
        3: frozenset({"FB400"}),
        4: frozenset({"FB302"}),
    }


def _at(code: str, line: int, path: str = "a.flow") -> Diagnostic:
    return make(code, f"{code} here", path, Span.point(line, 3))


def test_apply_drops_suppressed_and_unselected_diagnostics_and_sorts_the_rest() -> None:
    diagnostics = [_at("FB500", 9), _at("FB400", 4), _at("FB302", 2), _at("FB302", 2, "b.flow")]
    config = config_from_table({"ignore": ["style"]})
    kept = apply(diagnostics, config, {"a.flow": {2: frozenset({"FB302"})}})
    assert [(d.path, d.code, d.line) for d in kept] == [
        ("a.flow", "FB400", 4),
        ("b.flow", "FB302", 2),
    ]


def test_apply_suppresses_by_family_or_prefix_inside_the_brackets() -> None:
    kept = apply(
        [_at("FB400", 1), _at("FB401", 1), _at("FB302", 1)],
        LintConfig(),
        {"a.flow": {1: frozenset({"safety"})}},
    )
    assert [d.code for d in kept] == ["FB302"]


def test_syntax_errors_can_never_be_suppressed_or_ignored() -> None:
    comment = Comment(1, "# lint: ignore[FB100, FB1, syntax]", trailing=True)
    suppressed = {"a.flow": suppressions([comment])}
    config = LintConfig(select=frozenset({"style"}), ignore=frozenset({"FB100"}))
    bare = {"a.flow": suppressions([Comment(1, "# lint: ignore", trailing=True)])}
    assert [d.code for d in apply([_at("FB100", 1)], config, suppressed)] == ["FB100"]
    assert [d.code for d in apply([_at("FB101", 1)], LintConfig(), bare)] == ["FB101"]


def test_apply_overrides_severity_with_a_new_diagnostic() -> None:
    original = _at("FB302", 2)
    config = config_from_table({"severity": {"FB302": "error"}})
    (raised,) = apply([original], config, {})
    assert raised.severity is Severity.ERROR
    assert original.severity is Severity.WARNING
    assert (raised.code, raised.span, raised.family) == ("FB302", original.span, "graph")


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(dsl.lint.config).failed == 0
