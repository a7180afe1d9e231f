"""The pre-commit hooks and the GitHub Actions recipe, run for real on a repository of flows, and
the docs that show their output (docs/ci.md, docs/editors.md) checked against a fresh capture."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pre_commit.clientlib import load_manifest

from flowbuilder import doccapture
from flowbuilder.doccapture import CiCapture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def captured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CiCapture, dict[str, str]]]:
    yield doccapture.capture_all(tmp_path_factory.mktemp("capture"))


def _branch_line(capture: CiCapture) -> int:
    """The line of the change's branch without an `else`."""
    text = (capture.checkout / "flows" / "cart_abandonment.flow").read_text(encoding="utf-8")
    return text.split("\n").index("  interested:branch {") + 1


def test_the_hook_manifest_is_one_pre_commit_reads() -> None:
    manifest = load_manifest(str(doccapture.HOOKS))
    assert [h["id"] for h in manifest] == [
        "flowbuilder-lint",
        "flowbuilder-fmt",
        "flowbuilder-test",
    ]
    for hook in manifest:
        assert hook["language"] == "python"
        assert shlex.split(hook["entry"])[0] == "flowbuilder"
    # pre-commit installs the package, whose console script is the entry's command; here it is
    # this environment's.
    assert shutil.which("flowbuilder", path=str(Path(sys.executable).parent)) is not None


def test_the_hooks_pass_on_a_clean_repository(captured: tuple[CiCapture, dict[str, str]]) -> None:
    capture, _ = captured
    assert {hook: run.code for hook, run in capture.main_hooks.items()} == {
        "flowbuilder-lint": 0,
        "flowbuilder-fmt": 0,
    }
    assert "No problems found" in capture.main_hooks["flowbuilder-lint"].stdout


def test_each_hook_stops_the_commit_of_a_change_and_says_why(
    captured: tuple[CiCapture, dict[str, str]],
) -> None:
    capture, _ = captured
    lint, fmt, test = (capture.change_hooks[f"flowbuilder-{h}"] for h in ("lint", "fmt", "test"))
    assert lint.command == "flowbuilder lint flows"
    assert (lint.code, fmt.code, test.code) == (1, 1, 1)
    assert (
        "flows/cart_abandonment.flow:27:3: FB302 branch `interested` has no `else` arm"
        in lint.stdout
    )
    assert fmt.command.startswith("flowbuilder fmt --check flows/cart_abandonment.flow flows/")
    assert "would reformat flows/cart_abandonment.flow" in fmt.stderr
    assert "FAIL flows/tests/cart_abandonment.test.toml" in test.stdout


def test_the_workflow_runs_every_step_it_can_without_github(
    captured: tuple[CiCapture, dict[str, str]],
) -> None:
    capture, _ = captured
    steps = {step.get("id"): step for _, step in doccapture.workflow_steps()}
    assert set(capture.steps) == doccapture.OFFLINE_STEPS
    skipped = {i for i, s in steps.items() if "run" in s and i not in doccapture.OFFLINE_STEPS}
    assert skipped == {"install", "comment"} | set(doccapture.STEPS_RUN_AS_HOOKS)
    assert steps["fmt"]["run"] == 'flowbuilder fmt --check "$WORKSPACE"'
    assert steps["test"]["run"] == 'flowbuilder test "$WORKSPACE"'
    assert all("${{" not in capture.steps[i].command for i in doccapture.OFFLINE_STEPS)
    uses = {s["uses"].split("@")[0] for _, s in doccapture.workflow_steps() if "uses" in s}
    assert uses == {
        "actions/checkout",
        "actions/setup-python",
        "github/codeql-action/upload-sarif",
    }


def test_lint_annotates_the_changed_line_and_writes_a_sarif_log(
    captured: tuple[CiCapture, dict[str, str]],
) -> None:
    capture, _ = captured
    assert capture.steps["lint"].code == 1
    assert capture.steps["lint"].stdout.startswith(
        f"::warning file=flows/cart_abandonment.flow,line={_branch_line(capture)},col=3,"
    )
    assert capture.steps["sarif"].code == 0
    (result,) = capture.sarif["runs"][0]["results"]
    assert result["ruleId"] == "FB302"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {
        "uri": "flows/cart_abandonment.flow",
        "uriBaseId": "%SRCROOT%",
    }


def test_the_replayed_population_gives_a_markdown_summary_of_the_change(
    captured: tuple[CiCapture, dict[str, str]],
) -> None:
    capture, _ = captured
    assert capture.steps["base"].code == 0 and capture.steps["simulate"].code == 0
    summary = capture.simulation
    assert re.match(r"### Replayed population: 1 send removed, \d+ sends moved in time\n", summary)
    assert "Before: `../base/flows` · after: `flows` · times in UTC" in summary
    # The reminder goes out after 4 hours instead of 24: every moved cart email is earlier.
    row = re.search(
        r"^\| `cart_abandonment.reminder` \| 0 \| 0 \| (\d+) \| (.+) \|$", summary, re.M
    )
    assert row is not None and int(row.group(1)) > 0 and row.group(2).endswith("earlier")
    moved = [line for line in summary.splitlines() if line.startswith("- ") and "cart_" in line]
    assert moved and all(line.endswith("earlier)") for line in moved if "→" in line)
    # Ann clicked the reminder, so the new branch skips her low-stock notice.
    assert re.search(
        r"^- ann `cart_abandonment.low_stock` at 2026-03-\d\d \d\d:\d\d$", summary, re.M
    )
    assert capture.step_summary == summary


@pytest.mark.parametrize("page", doccapture.PAGES, ids=lambda p: p.name)
def test_the_page_shows_what_the_commands_print_now(
    page: Path, captured: tuple[CiCapture, dict[str, str]]
) -> None:
    _, blocks = captured
    current = page.read_text(encoding="utf-8")
    assert doccapture.fill(current, blocks) == current, (
        f"{page.relative_to(ROOT)} is stale: run python -m flowbuilder.doccapture"
    )
