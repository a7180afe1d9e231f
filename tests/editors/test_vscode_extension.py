"""The VS Code extension folder: its manifest points at files that exist and agree with each other,
and extension.js starts `flowbuilder lsp` for the language it declares."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flowbuilder import textmate

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
MANIFEST = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
NODE = shutil.which("node")
NEEDS_NODE = pytest.mark.skipif(
    NODE is None,
    reason="Node.js is not installed; scripts/system-packages installs it (make test does)",
)


def test_the_manifest_names_files_that_exist() -> None:
    contributes = MANIFEST["contributes"]
    (language,) = contributes["languages"]
    (grammar,) = contributes["grammars"]
    assert (EXTENSION / MANIFEST["main"]).is_file()
    assert (EXTENSION / language["configuration"]).is_file()
    assert (EXTENSION / grammar["path"]).is_file()
    assert language["extensions"] == [".flow"]
    assert grammar["language"] == language["id"]
    assert grammar["scopeName"] == textmate.SCOPE
    loaded = json.loads((EXTENSION / grammar["path"]).read_text(encoding="utf-8"))
    assert loaded["scopeName"] == textmate.SCOPE


def test_the_language_configuration_matches_the_language() -> None:
    config = json.loads((EXTENSION / "language-configuration.json").read_text(encoding="utf-8"))
    assert config["comments"] == {"lineComment": "#"}
    assert config["brackets"] == [["{", "}"], ["[", "]"], ["(", ")"]]


def test_the_server_setting_defaults_to_flowbuilder_lsp() -> None:
    properties = MANIFEST["contributes"]["configuration"]["properties"]
    assert properties["flowbuilder.server.command"]["default"] == ["flowbuilder", "lsp"]
    assert MANIFEST["dependencies"] == {"vscode-languageclient": "^9.0.1"}


# A stand-in for the editor host, which cannot run here: it records what extension.js asks of it.
_HOST = """
const Module = require("module");
const calls = [];
const vscode = {
  workspace: {
    getConfiguration: () => ({ get: (key, fallback) => fallback }),
    createFileSystemWatcher: (glob) => ({ glob }),
  },
  window: { showWarningMessage: (text) => calls.push({ warning: text }) },
};
const languageclient = {
  TransportKind: { stdio: 0 },
  LanguageClient: class {
    constructor(id, name, server, client) { calls.push({ id, server, client }); }
    start() { calls.push({ started: true }); return Promise.resolve(); }
    stop() { return Promise.resolve(); }
  },
};
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === "vscode") return vscode;
  if (request === "vscode-languageclient/node") {
    if (process.env.WITHOUT_CLIENT) throw new Error("Cannot find module");
    return languageclient;
  }
  return load.apply(this, arguments);
};
const extension = require(process.argv[2]);
extension.activate({ subscriptions: [] }).then(() => console.log(JSON.stringify(calls)));
"""


def _activate(tmp_path: Path, without_client: bool = False) -> list[dict[str, object]]:
    assert NODE is not None
    host = tmp_path / "host.js"
    host.write_text(_HOST, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", **({"WITHOUT_CLIENT": "1"} if without_client else {})}
    done = subprocess.run(
        [NODE, str(host), str(EXTENSION / "extension.js")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    calls: list[dict[str, object]] = json.loads(done.stdout)
    return calls


@NEEDS_NODE
def test_activating_the_extension_starts_flowbuilder_lsp_for_flow_files(tmp_path: Path) -> None:
    created, started = _activate(tmp_path)
    assert created["id"] == "flowbuilder"
    assert created["server"] == {"command": "flowbuilder", "args": ["lsp"], "transport": 0}
    client = created["client"]
    assert isinstance(client, dict)
    (language,) = MANIFEST["contributes"]["languages"]
    assert client["documentSelector"] == [
        {"scheme": "file", "language": language["id"]},
        {"scheme": "untitled", "language": language["id"]},
    ]
    assert client["synchronize"] == {"fileEvents": {"glob": "**/*.{flow,html,txt}"}}
    assert started == {"started": True}


@NEEDS_NODE
def test_without_npm_install_the_extension_says_so_and_keeps_the_colours(tmp_path: Path) -> None:
    (warning,) = _activate(tmp_path, without_client=True)
    assert "npm install" in str(warning["warning"])
