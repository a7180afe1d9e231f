from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowbuilder.cli import Exit, app

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "tests" / "fixtures" / "valid"
runner = CliRunner()

CLEAN = """\
template hello_email "Hello" {
  subject "Hello"
  html "hello.html"
}

flow welcome "Welcome" {
  trigger event signed_up
  exit when replied()

  hello: send hello_email
  done: end
}
"""
BROKEN = 'flow welcome "Welcome" {\n  pause: wait soon\n  other: wiat 3d\n}\n'


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "welcome.flow").write_text(CLEAN)
    # `flowbuilder lint` reads the template files too: a clean workspace has them.
    (tmp_path / "hello.html").write_text(
        '<p>Hello</p>\n<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n'
    )
    return tmp_path


def test_lint_of_a_clean_workspace_exits_0(workspace: Path) -> None:
    result = runner.invoke(app, ["lint", str(workspace)])
    assert result.exit_code == Exit.OK, result.output
    assert "No problems found in 2 files" in result.output


def test_lint_reports_every_syntax_error_with_a_caret_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.flow"
    bad.write_text(BROKEN)
    result = runner.invoke(app, ["lint", str(bad)])
    assert result.exit_code == Exit.PROBLEMS
    assert f"{bad}:2:15: FB100 expected a duration such as 3d or 12h" in result.output
    assert f"{bad}:3:10: FB100" in result.output
    assert "^^^^" in result.output


@pytest.mark.parametrize("fmt", ["concise", "json", "sarif", "github"])
def test_lint_speaks_every_output_format(tmp_path: Path, fmt: str) -> None:
    bad = tmp_path / "bad.flow"
    bad.write_text(BROKEN)
    result = runner.invoke(app, ["lint", str(bad), "--format", fmt])
    assert result.exit_code == Exit.PROBLEMS
    if fmt == "concise":
        assert (
            result.output.splitlines()[0]
            == f"{bad}:2:15: FB100 expected a duration such as 3d or 12h, a number, `for` or `until` after `wait`, found `soon`"
        )
    elif fmt == "json":
        doc = json.loads(result.output)
        assert doc["valid"] is False and doc["error_count"] == 2
    elif fmt == "sarif":
        doc = json.loads(result.output)
        assert doc["version"] == "2.1.0"
        assert len(doc["runs"][0]["results"]) == 2
    else:
        assert result.output.startswith("::error file=")


def test_an_unknown_format_is_a_usage_error(workspace: Path) -> None:
    assert runner.invoke(app, ["lint", str(workspace), "--format", "xml"]).exit_code == Exit.USAGE


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lint", str(tmp_path / "nope.flow")])
    assert result.exit_code == Exit.USAGE
    assert "does not exist" in result.output


def test_a_folder_without_flows_is_a_usage_error(tmp_path: Path) -> None:
    assert runner.invoke(app, ["lint", str(tmp_path)]).exit_code == Exit.USAGE


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("random.flow", bytes(range(256)) * 4, "FB103"),
        ("latin1.flow", 'flow café "x" {\n}\n'.encode("latin-1"), "FB103"),
        ("huge.flow", b"# comment line\n" * 700_000, "FB104"),
        (
            "deep.flow",
            b"segment s where " + b"(" * 10_000 + b"true" + b")" * 10_000 + b"\n",
            "FB104",
        ),
    ],
)
def test_bad_input_yields_a_diagnostic_and_exit_1_never_a_crash(
    tmp_path: Path, name: str, content: bytes, code: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(app, ["lint", str(path), "--format", "concise"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == Exit.PROBLEMS
    assert f": {code} " in result.output


def test_fmt_check_flags_an_unformatted_file_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "messy.flow"
    messy = CLEAN.replace("hello: send hello_email", "hello:send   hello_email")
    path.write_text(messy)
    result = runner.invoke(app, ["fmt", "--check", str(path)])
    assert result.exit_code == Exit.PROBLEMS
    assert path.read_text() == messy


def test_fmt_diff_prints_a_unified_diff(tmp_path: Path) -> None:
    path = tmp_path / "messy.flow"
    path.write_text(CLEAN.replace("hello: send hello_email", "hello:send   hello_email"))
    result = runner.invoke(app, ["fmt", "--diff", str(path)])
    assert result.exit_code == Exit.PROBLEMS
    assert "-  hello:send   hello_email" in result.output
    assert "+  hello: send hello_email" in result.output


def test_fmt_rewrites_in_place_and_then_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "messy.flow"
    path.write_text(CLEAN.replace("hello: send hello_email", "hello:send   hello_email"))
    assert runner.invoke(app, ["fmt", str(path)]).exit_code == Exit.OK
    assert path.read_text() == CLEAN
    assert runner.invoke(app, ["fmt", "--check", str(path)]).exit_code == Exit.OK


def test_fmt_refuses_a_file_with_syntax_errors_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "bad.flow"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["fmt", str(path)])
    assert result.exit_code == Exit.PROBLEMS
    assert "FB100" in result.output
    assert path.read_text() == BROKEN


def test_compile_prints_the_ir_with_its_hash(workspace: Path) -> None:
    result = runner.invoke(app, ["compile", str(workspace), "--flow", "welcome"])
    assert result.exit_code == Exit.OK, result.output
    doc = json.loads(result.output)
    assert len(doc["hash"]) == 64
    assert doc["flow"]["steps"]["hello"]["next"] == "done"


def test_compile_of_a_broken_file_exits_1_with_diagnostics(tmp_path: Path) -> None:
    (tmp_path / "bad.flow").write_text(BROKEN)
    result = runner.invoke(app, ["compile", str(tmp_path)])
    assert result.exit_code == Exit.PROBLEMS
    assert "FB100" in result.output


def test_compile_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["compile", "--schema"])
    assert result.exit_code == Exit.OK
    assert json.loads(result.output)["title"].startswith("flowbuilder IR")


def test_graph_prints_a_mermaid_flowchart(workspace: Path) -> None:
    result = runner.invoke(app, ["graph", str(workspace)])
    assert result.exit_code == Exit.OK
    assert result.output.startswith("flowchart TD")
    assert "s_hello --> s_done" in result.output


def test_graph_asks_which_flow_when_there_are_several() -> None:
    result = runner.invoke(app, ["graph", str(VALID)])
    assert result.exit_code == Exit.USAGE
    assert "nurture, welcome" in result.output


def test_the_installed_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowbuilder", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("flowbuilder ")


def test_the_cli_reference_in_the_docs_is_generated_from_the_cli() -> None:
    from flowbuilder.docgen import DOC, render

    assert DOC.read_text() == render(), "regenerate it: python -m flowbuilder.docgen"


_STARTED = """
import sys
sys.argv = ["flowbuilder", *sys.argv[1:]]
from flowbuilder.cli import main
try:
    main()
except SystemExit as done:
    code = done.code
print("EXIT", code, "WEB" if "flowbuilder.cli_web" in sys.modules else "NO-WEB")
"""


def _start(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _STARTED, *args], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_language_command_starts_without_the_server_and_store_commands() -> None:
    assert _start("lint", str(ROOT / "examples" / "acme")) == "EXIT 0 NO-WEB"
    assert _start("graph", "--help") == "EXIT 0 NO-WEB"


def test_every_other_command_is_there_when_asked_for() -> None:
    assert _start("serve", "--help") == "EXIT 0 WEB"
    assert _start("--help") == "EXIT 0 WEB"
    assert "serve" in [c.callback.__name__ for c in app.registered_commands if c.callback]
