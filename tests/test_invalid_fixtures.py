"""Each file in tests/fixtures/invalid/ declares its expected diagnostics in `# expect: CODE line:col` headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsl.lint import lint_paths

INVALID = sorted((Path(__file__).parent / "fixtures" / "invalid").glob("*.flow"))


def expected(path: Path) -> set[tuple[str, int, int]]:
    found = re.findall(r"^# expect: (FB\d{3}) (\d+):(\d+)$", path.read_text(errors="replace"), re.M)
    return {(code, int(line), int(col)) for code, line, col in found}


def test_there_are_invalid_fixtures() -> None:
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_reports_exactly_its_expected_diagnostics(path: Path) -> None:
    want = expected(path)
    assert want, f"{path.name} has no `# expect:` header"
    got = {(d.code, d.line, d.col) for d in lint_paths([path]).diagnostics}
    assert got == want
