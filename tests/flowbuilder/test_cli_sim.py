"""`flowbuilder test` and `flowbuilder simulate` as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowbuilder.cli import Exit, app

runner = CliRunner()

FLOW = """\
template hello {
  subject "Hello"
}

flow f "F" {
  trigger event go
  exit when replied()
  ask: send hello
  answer: wait for clicked(ask) up to 3d {
    then -> yes
    timeout -> no
  }
  yes: end "clicked"
  no: end "silent"
}
"""

SILENT = """\
flow = "f"

[[case]]
name = "silent"
events = [{ at = "0h", type = "go" }]

[case.expect]
sends = ["ask@0h"]
reason = "silent"
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "f.flow").write_text(FLOW, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "f.test.toml").write_text(SILENT, encoding="utf-8")
    return tmp_path


def test_passing_cases_exit_0(workspace: Path) -> None:
    result = runner.invoke(app, ["test", str(workspace / "tests")])
    assert result.exit_code == Exit.OK, result.output
    assert "PASS" in result.output and "1 passed, 0 failed" in result.output


def test_a_failing_case_says_what_differs_and_exits_1(workspace: Path) -> None:
    test_file = workspace / "tests" / "f.test.toml"
    test_file.write_text(
        SILENT.replace('reason = "silent"', 'reason = "clicked"'), encoding="utf-8"
    )
    result = runner.invoke(app, ["test", str(test_file)])
    assert result.exit_code == Exit.PROBLEMS
    assert "FAIL" in result.output
    assert "reason: expected a reason containing `clicked`, got `silent`" in result.output


def test_coverage_fails_on_a_branch_no_case_takes(workspace: Path) -> None:
    result = runner.invoke(app, ["test", str(workspace / "tests"), "--coverage"])
    assert result.exit_code == Exit.PROBLEMS
    assert "UNCOVERED f: answer -> yes" in result.output


def test_a_broken_test_file_names_its_line(workspace: Path) -> None:
    (workspace / "tests" / "f.test.toml").write_text(SILENT + "oops = [\n", encoding="utf-8")
    result = runner.invoke(app, ["test", str(workspace / "tests")])
    assert result.exit_code == Exit.USAGE
    assert "f.test.toml:" in result.output and "not TOML" in result.output


def test_an_expectation_about_an_unknown_step_is_a_mistake_in_the_test(workspace: Path) -> None:
    test_file = workspace / "tests" / "f.test.toml"
    test_file.write_text(SILENT.replace('"ask@0h"', '"asked"'), encoding="utf-8")
    result = runner.invoke(app, ["test", str(test_file)])
    assert result.exit_code == Exit.USAGE
    assert "flow `f` has no step `asked`" in result.output


def _population(folder: Path, *, reply: bool) -> tuple[Path, Path]:
    leads = folder / "leads.csv"
    leads.write_text("id,email,timezone\nann,ann@example.com,Asia/Seoul\nbo,bo@example.com,\n")
    events = folder / "events.jsonl"
    lines = [
        '{"lead": "ann", "type": "go", "at": "0h"}',
        '{"lead": "bo", "type": "go", "at": "1h"}',
    ]
    if reply:
        lines.append('{"lead": "bo", "type": "click", "at": "5h", "flow": "f", "step": "ask"}')
    events.write_text("\n".join(lines) + "\n")
    return leads, events


def test_simulate_prints_every_path_and_a_summary_the_same_every_time(workspace: Path) -> None:
    leads, events = _population(workspace, reply=True)
    args = ["simulate", str(workspace / "f.flow"), "--leads", str(leads), "--events", str(events)]
    first = runner.invoke(app, args)
    assert first.exit_code == Exit.OK, first.output
    assert "ann" in first.output and "silent" in first.output and "clicked" in first.output
    assert "summary" in first.output
    assert runner.invoke(app, args).output == first.output


def test_simulate_diff_reports_what_a_change_does(workspace: Path) -> None:
    leads, events = _population(workspace, reply=False)
    changed = workspace / "changed"
    changed.mkdir()
    reminder = FLOW.replace('no: end "silent"', 'no: send hello\n  bye: end "silent"')
    (changed / "f.flow").write_text(reminder, encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "simulate",
            str(workspace / "f.flow"),
            "--leads",
            str(leads),
            "--events",
            str(events),
            "--diff",
            str(changed / "f.flow"),
            "--format",
            "markdown",
        ],
    )
    assert result.exit_code == Exit.OK, result.output
    assert "ann" in result.output and "bo" in result.output


def test_simulate_names_the_row_of_a_bad_lead(workspace: Path) -> None:
    leads = workspace / "leads.csv"
    leads.write_text("id,timezone\nann,Asia/Seoul\nbo,Mars/Olympus\n")
    result = runner.invoke(app, ["simulate", str(workspace / "f.flow"), "--leads", str(leads)])
    assert result.exit_code == Exit.USAGE
    assert "row 3" in result.output and "Mars/Olympus" in result.output


def test_the_examples_pass_with_full_coverage(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "acme"
    copy = shutil.copytree(examples, tmp_path / "acme")
    result = runner.invoke(app, ["test", str(copy / "tests"), "--coverage"])
    assert result.exit_code == Exit.OK, result.output
    assert "every branch of every flow is taken by a case" in result.output
