"""Template lint: the example templates are clean, and `flowbuilder lint` shows template findings
with their file:line:col in every output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowbuilder.cli import app
from flowbuilder.mail.lint import lint_paths
from tests.mail.conftest import ACME

FLOW = """attribute first_name: string
template hi "Hi" {
  subject "Hi"
  html "templates/hi.html"
}
flow f "F" {
  trigger event go
  a: send hi
  done: end
}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "w.flow").write_text(FLOW)
    (tmp_path / "templates" / "hi.html").write_text(
        "<html><body>\n<p>Hi {{ first_name }}</p>\n"
        "{% if first_name %}<p>{{ first_name }}</p>{% endif %}\n"
        '<p><a href="/pricing">prices</a></p>\n</body></html>\n'
    )
    return tmp_path


def test_the_example_templates_pass_the_template_lint() -> None:
    result = lint_paths([ACME])
    assert [
        d.concise()
        for d in result.diagnostics
        if d.code.startswith("FB6") or d.path.endswith((".html", ".txt"))
    ] == []
    assert result.files_checked > 40


def test_findings_point_into_the_template_file(workspace: Path) -> None:
    found = {
        (d.code, Path(d.path).name, d.line, d.col) for d in lint_paths([workspace]).diagnostics
    }
    assert ("FB405", "hi.html", 2, 10) in found  # the unguarded field, not the one inside the if
    assert not any(code == "FB405" and line == 3 for code, _, line, _ in found)
    assert ("FB603", "hi.html", 4, 13) in found
    assert ("FB602", "hi.html", 5, 1) in found


@pytest.mark.parametrize("fmt", ["human", "concise", "json", "sarif", "github"])
def test_every_output_format_carries_template_findings(workspace: Path, fmt: str) -> None:
    result = CliRunner().invoke(app, ["lint", str(workspace), "--format", fmt])
    assert result.exit_code == 1
    assert "FB602" in result.output and "hi.html" in result.output
    if fmt in ("json", "sarif"):
        json.loads(result.output)


def test_a_missing_file_is_reported_at_the_declaration(tmp_path: Path) -> None:
    (tmp_path / "w.flow").write_text(FLOW)
    [d] = [d for d in lint_paths([tmp_path]).diagnostics if d.code == "FB600"]
    assert (Path(d.path).name, d.line, d.col) == ("w.flow", 2, 10)
    assert "templates/hi.html" in d.message
