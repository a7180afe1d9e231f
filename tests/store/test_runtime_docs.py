"""The Python example in docs/runtime.md runs as written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def test_the_python_intake_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = DOC.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(DOC), "exec"), {})
    assert os.path.exists(tmp_path / "flowbuilder.db")
