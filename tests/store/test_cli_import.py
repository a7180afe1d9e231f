"""`flowbuilder import` as a user runs it: the report, its options, exit codes, and a crash that
leaves nothing half-written."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.intake import generate
from flowbuilder.cli import app
from flowbuilder.store.db import open_store
from tests.store.driver import rows

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_korean_excel_export_with_bad_rows_imports_the_good_ones_and_lists_the_rest(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    leads = tmp_path / "고객.csv"
    leads.write_bytes(
        (
            "이메일;이름;회사명;수신동의\n"
            "kim@example.co.kr;김철수;에이씨엠이;동의\n"
            "lee@example;이영희;;\n"
            "park@example.co.kr;박민수;;maybe\n"
        ).encode("cp949")
    )
    code, out, err = _invoke(
        "import",
        str(leads),
        "--db",
        db,
        "--map",
        "이름=name",
        "--map",
        "#3=company",
        "--consent-wording",
        "광고성 정보 수신에 동의합니다",
        "--rejects",
        str(tmp_path / "rejects.csv"),
    )
    assert code == 1, err
    assert (
        f"{leads}: CP949 (EUC-KR), semicolon-separated; columns: 이메일 → email, 이름 → name, "
        "회사명 → company, 수신동의 → consent"
    ) in err
    assert f"{leads}:3: `lee@example` is not an email address" in err
    assert f"{leads}:4: consent `maybe` is not one of yes/no/granted/withdrawn/unknown" in err
    assert "1 leads created, 0 updated, 0 duplicate rows merged, 2 rows rejected" in out
    assert "1 consent records" in out
    assert rows(open_store(db), "SELECT email, attributes FROM leads") == [
        ("kim@example.co.kr", '{"name":"김철수","company":"에이씨엠이"}')
    ]
    assert rows(open_store(db), "SELECT source, wording FROM consents") == [
        (f"import:{leads.name}", "광고성 정보 수신에 동의합니다")
    ]
    with (tmp_path / "rejects.csv").open(encoding="utf-8-sig", newline="") as f:
        rejected = list(csv.reader(f))
    assert rejected[0] == ["import_line", "import_problem", "이메일", "이름", "회사명", "수신동의"]
    assert [r[0] for r in rejected[1:]] == ["3", "4"]
    # Fixed, the rejects file imports as it is: its two first columns are skipped.
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", encoding="utf-8-sig", newline="") as f:
        out_rows = [
            rejected[0],
            *[
                [*r[:2], r[2].replace("@example", "@example.kr"), *r[3:5], "yes"]
                for r in rejected[1:]
            ],
        ]
        csv.writer(f).writerows(out_rows)
    code, out, err = _invoke("import", str(fixed), "--db", db, "--map", "이름=name")
    assert code == 0, err
    assert "2 leads created" in out


def test_a_dry_run_stores_nothing_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    leads = tmp_path / "leads.csv"
    leads.write_text("email\tcity\nann@example.com\tSeoul\n", encoding="utf-16")
    code, out, err = _invoke("import", str(leads), "--db", db, "--dry-run")
    assert code == 0, err
    assert "UTF-16 LE with BOM, tab-separated" in err
    assert "1 leads created" in out and "dry run: nothing was stored" in out
    assert rows(open_store(db), "SELECT count(*) FROM leads") == [(0,)]


def test_a_file_that_cannot_be_imported_exits_2_with_every_reason(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    leads = tmp_path / "leads.csv"
    leads.write_text("Email,email,score\n", encoding="utf-8")
    code, _, err = _invoke("import", str(leads), "--db", db)
    assert code == 2
    assert f"error: {leads}:1: columns 1 `Email`, 2 `email` give the same field `email`" in err
    assert f"error: {leads}:1: column 3 `score` cannot be imported" in err
    assert "nothing was imported" in err
    leads.write_bytes(b"email\nann@example.com\nbob@exam\xffple.com\n")
    code, _, err = _invoke("import", str(leads), "--db", db, "--encoding", "utf-8")
    assert code == 2 and "is not UTF-8 text: byte 30 (line 3) is 0xff" in err
    for option, value, message in (
        ("--map", "email", "--map takes 'Column=field'"),
        ("--set", "1x=2", "--set names an attribute"),
        ("--delimiter", ":", "--delimiter is one of"),
        ("--list", "no spaces", "--list takes a list name"),
    ):
        code, _, err = _invoke("import", str(leads), "--db", db, option, value)
        assert code == 2 and message in err, (option, err)


def test_an_import_killed_half_way_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    open_store(f"sqlite:///{db}").dispose()
    leads = tmp_path / "leads.csv"
    generate(leads, 30_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbuilder", "import", str(leads), "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wal = Path(f"{db}-wal")
    deadline = time.monotonic() + 60
    # Rows are going in (the write-ahead log grows) but the import has not committed.
    while not (wal.exists() and wal.stat().st_size > 2_000_000):
        assert proc.poll() is None, "the import ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    store = open_store(f"sqlite:///{db}")
    assert rows(store, "SELECT count(*) FROM leads") == [(0,)]
    assert rows(store, "SELECT count(*) FROM consents") == [(0,)]
    store.dispose()


def test_the_python_example_in_the_intake_docs_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "intake.md"
    block = doc.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leads.csv").write_text("E-post,name\nann@example.com,Ann\nbob,Bob\n")
    exec(compile(block, str(doc), "exec"), {})
    assert capsys.readouterr().out == (
        "leads.csv:3: `bob` is not an email address: An email address must have an @-sign.\n"
    )
    assert rows(open_store("sqlite:///flowbuilder.db"), "SELECT count(*) FROM leads") == [(0,)]
