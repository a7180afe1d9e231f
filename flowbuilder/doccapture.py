"""Captured output in docs/editors.md and docs/ci.md, produced by running the real thing.

The pages hold blocks between `<!-- captured: NAME -->` and `<!-- /captured -->`. This module fills
them: it builds a small git repository of flows (the acme workspace as `flows/`, a `main` branch on
a local origin and a pull request's change), runs the pre-commit hooks of `.pre-commit-hooks.yaml`
and the steps of the GitHub Actions workflow `docs/ci/flowbuilder.yml` on it, and drives
`flowbuilder lsp` through a short editing session. A test fails when a page is stale:

    python -m flowbuilder.doccapture          # rewrite the captured blocks
    python -m flowbuilder.doccapture --check  # exit 1 when a page is stale
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACME = ROOT / "examples" / "acme"
WORKFLOW = ROOT / "docs" / "ci" / "flowbuilder.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
PAGES = (ROOT / "docs" / "editors.md", ROOT / "docs" / "ci.md")
# The workflow steps run here. Installing from PyPI and commenting need GitHub itself; `fmt` and
# `test` are the commands of the flowbuilder-fmt and flowbuilder-test hooks, which run on the same
# checkout.
OFFLINE_STEPS = frozenset({"lint", "sarif", "base", "simulate"})
STEPS_RUN_AS_HOOKS = {"fmt": "flowbuilder-fmt", "test": "flowbuilder-test"}
_BLOCK = re.compile(
    r"(<!-- captured: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /captured -->)", re.DOTALL
)
_GIT = ("git", "-c", "user.name=flowbuilder", "-c", "user.email=docs@flowbuilder.example")


@dataclass(frozen=True)
class Run:
    """One command: what was run, where, its exit code and output."""

    command: str
    code: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GIT_"))}
    # The flowbuilder of this interpreter comes first, as pre-commit's own environment would.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "100"
    env.update(extra or {})
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(
        args, cwd=cwd, env=env or _env(), capture_output=True, text=True, check=False, timeout=300
    )
    return Run(shlex.join(args), done.returncode, done.stdout, done.stderr)


def _git(cwd: Path, *args: str) -> None:
    run = _run([*_GIT, *args], cwd)
    if run.code != 0:
        raise RuntimeError(f"{run.command} failed: {run.stderr}")


# ---------------------------------------------------------------------------- the repository


def pull_request_change(flows: Path) -> None:
    """The change under review: the cart reminder goes out after 4 hours instead of 24, and leads
    who clicked get no low-stock notice — written with a missing `else` and a formatting slip."""
    path = flows / "cart_abandonment.flow"
    text = path.read_text(encoding="utf-8")
    text = text.replace("  first_day: wait 24h\n", "  first_day: wait 4h\n")
    text = text.replace(
        "  low_stock: send cart_low_stock\n",
        "  # A lead who clicked and still did not buy has seen enough.\n"
        "  interested:branch {\n"
        "    if clicked(reminder) or clicked(coupon) -> done\n"
        "  }\n"
        "  low_stock: send cart_low_stock\n",
    )
    path.write_text(text, encoding="utf-8")


def make_repository(folder: Path) -> tuple[Path, Path]:
    """A team's repository of flows: `main` on a bare origin, and two clones — one on `main`, one
    on a pull request's branch that changes the cart abandonment flow."""
    origin = folder / "origin.git"
    main, change = folder / "main", folder / "repo"
    _git(folder, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    _git(folder, "clone", "--quiet", str(origin), str(change))
    shutil.copytree(ACME, change / "flows")
    (change / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG, encoding="utf-8")
    _git(change, "checkout", "--quiet", "-b", "main")
    _git(change, "add", "flows", ".pre-commit-config.yaml")
    _git(change, "commit", "--quiet", "-m", "The acme flows")
    _git(change, "push", "--quiet", "origin", "main")
    _git(folder, "clone", "--quiet", "--branch", "main", str(origin), str(main))
    _git(change, "checkout", "--quiet", "-b", "faster-cart-reminder")
    pull_request_change(change / "flows")
    _git(change, "commit", "--quiet", "-am", "Remind abandoned carts after 4 hours")
    return main, change


# ---------------------------------------------------------------------------- hooks and workflow


def hooks() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    return loaded


# The repository's .pre-commit-config.yaml: the hooks of this repository, told where the flows are.
PRE_COMMIT_CONFIG = """\
repos:
  - repo: https://github.com/flowbuilder/flowbuilder
    rev: v0.1.0
    hooks:
      - id: flowbuilder-lint
        args: [flows]
      - id: flowbuilder-fmt
      - id: flowbuilder-test
        args: [flows/tests]
"""


def configured_hooks(checkout: Path) -> list[dict[str, Any]]:
    """The hooks of the manifest as the repository's .pre-commit-config.yaml configures them."""
    config = yaml.safe_load((checkout / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    by_id = {h["id"]: h for h in hooks()}
    return [
        {**by_id[entry["id"]], **{k: v for k, v in entry.items() if k != "id"}}
        for repo in config["repos"]
        for entry in repo["hooks"]
    ]


def hook_command(hook: dict[str, Any], checkout: Path) -> list[str]:
    """The command pre-commit runs for a hook with `--all-files`: entry, args, matching files."""
    command = [*shlex.split(hook["entry"]), *hook.get("args", [])]
    if hook.get("pass_filenames", True):
        tracked = _run(["git", "ls-files"], checkout).stdout.split()
        pattern = re.compile(hook.get("files", ""))
        command += [f for f in tracked if pattern.search(f)]
    return command


def run_hooks(checkout: Path, only: frozenset[str] | None = None) -> dict[str, Run]:
    """The hooks (all, or those named), as `pre-commit run --all-files` runs them."""
    chosen = [h for h in configured_hooks(checkout) if only is None or h["id"] in only]
    return {h["id"]: _run(hook_command(h, checkout), checkout) for h in chosen}


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def workflow_steps() -> list[tuple[str, dict[str, Any]]]:
    """(job, step) for every step of the workflow, in order."""
    return [(job, step) for job, spec in workflow()["jobs"].items() for step in spec["steps"]]


def run_workflow(checkout: Path, temp: Path) -> dict[str, Run]:
    """Run the workflow's offline steps (by `id`) in the checkout, as a runner's bash would."""
    summary = temp / "step-summary.md"
    env = _env(
        {
            **{k: str(v) for k, v in workflow()["env"].items()},
            "GITHUB_BASE_REF": "main",
            "GITHUB_WORKSPACE": str(checkout),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(temp),
        }
    )
    runs = {}
    for _, step in workflow_steps():
        if step.get("id") in OFFLINE_STEPS:
            script = step["run"]
            done = _run(["bash", "--noprofile", "--norc", "-e", "-c", script], checkout, env)
            runs[step["id"]] = Run(script.strip(), done.code, done.stdout, done.stderr)
    return runs


@dataclass
class CiCapture:
    """Everything the CI page shows, from one run on one repository."""

    checkout: Path
    main_hooks: dict[str, Run] = field(default_factory=dict)
    change_hooks: dict[str, Run] = field(default_factory=dict)
    steps: dict[str, Run] = field(default_factory=dict)
    simulation: str = ""
    step_summary: str = ""
    sarif: dict[str, Any] = field(default_factory=dict)


def _both_hook_runs(main: Path, change: Path) -> tuple[dict[str, Run], dict[str, Run]]:
    # On `main` the flow tests are those the test suite runs through the pytest plugin.
    return run_hooks(main, frozenset({"flowbuilder-lint", "flowbuilder-fmt"})), run_hooks(change)


def capture_ci(temp: Path) -> CiCapture:
    """Run the hooks on `main` and on the change, and the workflow on the change: the hooks and
    the workflow side by side, one process each at a time."""
    main, change = make_repository(temp)
    with ThreadPoolExecutor(max_workers=2) as pool:
        hook_runs = pool.submit(_both_hook_runs, main, change)
        steps = pool.submit(run_workflow, change, temp)
        main_hooks, change_hooks = hook_runs.result()
        result = CiCapture(change, main_hooks, change_hooks, steps.result())
    for name in ("sarif", "base", "simulate"):
        run = result.steps[name]
        if run.code != 0:
            raise RuntimeError(f"the workflow step `{name}` failed ({run.code}): {run.stderr}")
    result.simulation = (change / "simulation.md").read_text(encoding="utf-8")
    result.step_summary = (temp / "step-summary.md").read_text(encoding="utf-8")
    result.sarif = json.loads((change / "flowbuilder.sarif").read_text(encoding="utf-8"))
    return result


def _failures_only(output: str) -> str:
    """The FAIL blocks of `flowbuilder test` (PASS lines and the timed summary left out)."""
    kept: list[str] = []
    keep = False
    for line in output.splitlines():
        if line.startswith(("PASS", "FAIL")):
            keep = line.startswith("FAIL")
        elif not line.startswith(" "):
            keep = False
        if keep:
            kept.append(line)
    return "\n".join(kept)


def _fenced(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```\n"


def ci_blocks(capture: CiCapture) -> dict[str, str]:
    hooks_run = capture.change_hooks
    run = capture.sarif["runs"][0]
    sarif_excerpt = {
        "tool": {"driver": {"name": run["tool"]["driver"]["name"], "rules": ["… every rule …"]}},
        "results": run["results"],
    }
    return {
        "pre-commit-lint": _fenced(
            f"$ {hooks_run['flowbuilder-lint'].command}\n{hooks_run['flowbuilder-lint'].stdout}"
        ),
        "pre-commit-fmt": _fenced(
            f"$ {hooks_run['flowbuilder-fmt'].command}\n{hooks_run['flowbuilder-fmt'].stderr}"
        ),
        "pre-commit-test": _fenced(
            f"$ {hooks_run['flowbuilder-test'].command}\n"
            + _failures_only(hooks_run["flowbuilder-test"].stdout)
        ),
        "github-annotations": _fenced(
            f"$ {capture.steps['lint'].command}\n{capture.steps['lint'].stdout}"
        ),
        "sarif": _fenced(json.dumps(sarif_excerpt, indent=2, ensure_ascii=False), "json"),
        "simulation-markdown": _fenced(capture.simulation, "markdown"),
    }


# ---------------------------------------------------------------------------- the editor session


def editor_blocks(temp: Path) -> dict[str, str]:
    from flowbuilder.lsp.client import LspClient, position
    from flowbuilder.textmate import grammar

    folder = temp / "acme"
    shutil.copytree(ACME, folder)
    path = folder / "welcome.flow"
    text = path.read_text(encoding="utf-8")
    typo = text.replace("guide: send service_guide", "guide: sned service_guide").replace(
        "update lead.score += 5", "update lead.score + 5"
    )
    lines: list[str] = []

    def at(needle: str, offset: int) -> dict[str, Any]:
        return {"textDocument": {"uri": uri}, "position": position(text, needle, offset)}

    with LspClient(folder) as client:
        uri = client.open(path, typo, 1)
        lines.append("→ textDocument/didOpen welcome.flow, with two typos")
        lines.append("← textDocument/publishDiagnostics welcome.flow")
        for d in client.diagnostics(uri, 1):
            start = d["range"]["start"]
            message = d["message"].replace("\n", "\n      ")
            lines.append(f"    {start['line'] + 1}:{start['character'] + 1} {d['code']} {message}")
        client.change(uri, text, 2)
        client.diagnostics(uri, 2)
        lines.append("→ textDocument/didChange (typos fixed)")
        lines.append("← textDocument/publishDiagnostics welcome.flow: none")

        items = client.request("textDocument/completion", at("send service_guide", 5))["items"]
        lines.append("→ textDocument/completion after `guide: send `")
        shown = ", ".join(i["label"] for i in items[:6])
        lines.append(f"← {len(items)} templates: {shown}, …")

        items = client.request("textDocument/completion", at("then -> engaged", 8))["items"]
        lines.append("→ textDocument/completion after `then -> `")
        lines.append(
            f"← {len(items)} steps of flow welcome: {', '.join(i['label'] for i in items[:6])}, …"
        )

        hover = client.request("textDocument/hover", at("guide_pause: wait", 13))
        first = hover["contents"]["value"].split("\n")
        lines.append("→ textDocument/hover on `wait`")
        lines.append("← " + "\n".join(("  " + x).rstrip() for x in first[:3]).lstrip() + "\n  …")

        (location,) = client.request("textDocument/definition", at("send service_guide", 6))
        target = Path(location["uri"].removeprefix("file://")).name
        lines.append("→ textDocument/definition on `service_guide`")
        lines.append(f"← {target}:{location['range']['start']['line'] + 1}")

        params = {**at("then -> engaged", 9), "newName": "clicked_guide"}
        edits = client.request("textDocument/rename", params)["changes"][uri]
        lines.append("→ textDocument/rename `engaged` → `clicked_guide`")
        lines.append(f"← {len(edits)} edits:")
        lines += [
            f"    line {e['range']['start']['line'] + 1}: {e['newText'].rstrip()}" for e in edits
        ]

        messy = text.replace("  guide_pause: wait 1d", "  guide_pause :wait   1d")
        client.change(uri, messy, 3)
        client.diagnostics(uri, 3)
        params = {"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": True}}
        edits = client.request("textDocument/formatting", params)
        lines.append("→ textDocument/formatting with `  guide_pause :wait   1d`")
        lines += [
            f"← line {e['range']['start']['line'] + 1}: {e['newText'].rstrip()}" for e in edits
        ]
        lines.append("→ shutdown, exit")

    scopes = sorted(
        {
            name
            for name in re.findall(r'"name": "([^"]+)"', json.dumps(grammar()))
            if name.endswith(".flow")
        }
    )
    return {
        "lsp-session": _fenced("\n".join(lines)),
        "textmate-scopes": _fenced("\n".join(scopes)),
    }


# ---------------------------------------------------------------------------- pages


def fill(page: str, blocks: dict[str, str]) -> str:
    """The page with each captured block replaced by its new content."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in blocks:
            raise KeyError(f"no captured output named {name!r}")
        return match.group(1) + blocks[name] + match.group(4)

    return _BLOCK.sub(replace, page)


def capture_all(temp: Path) -> tuple[CiCapture, dict[str, str]]:
    ci_folder, editor_folder = temp / "ci", temp / "editor"
    ci_folder.mkdir()
    editor_folder.mkdir()
    capture = capture_ci(ci_folder)
    return capture, {**ci_blocks(capture), **editor_blocks(editor_folder)}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory() as temp:
        _, blocks = capture_all(Path(temp))
    stale = []
    for page in PAGES:
        current = page.read_text(encoding="utf-8")
        filled = fill(current, blocks)
        if filled != current:
            stale.append(page)
            if not check:
                page.write_text(filled, encoding="utf-8")
    verb = "is stale" if check else "rewritten"
    for page in stale:
        sys.stdout.write(f"{page.relative_to(ROOT)} {verb}\n")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
