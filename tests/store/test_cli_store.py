"""`flowbuilder publish`, `import`, `event` and `run` against a real store, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from flowbuilder.cli import app
from flowbuilder.store.db import open_store
from tests.store.driver import rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "acme"
runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_publish_import_event_and_one_run(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    code, out, _ = _invoke("publish", str(EXAMPLES), "--db", db, "--dry-run")
    assert code == 0 and "dry run" in out and "welcome" in out
    assert rows(open_store(db), "SELECT count(*) FROM flow_versions") == [(0,)]

    code, out, _ = _invoke("publish", str(EXAMPLES), "--db", db)
    assert code == 0 and "published" in out

    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,timezone\n"
        "ann@example.com,Ann,Asia/Seoul\n"
        "broken,Bob,\n"
        "ANN@example.com,Annie,\n",
        encoding="utf-8",
    )
    code, _, err = _invoke("import", str(leads), "--db", db)
    assert code == 2  # the examples require `source` on every lead
    assert "the workspace requires `source` on every lead" in err
    code, out, err = _invoke(
        "import", str(leads), "--db", db, "--list", "cold_prospects_kr", "--set", "source=import"
    )
    assert code == 1  # one bad row
    assert f"{leads}:3: `broken` is not an email address" in err
    assert "1 leads created, 0 updated, 1 duplicate rows merged, 1 rows rejected" in out
    assert "1 joined list cold_prospects_kr" in out

    code, out, _ = _invoke(
        "event", "signed_up", "--email", "ann@example.com", "--key", "k1", "--db", db
    )
    assert code == 0 and "1 stored" in out
    code, out, _ = _invoke(
        "event", "signed_up", "--email", "ann@example.com", "--key", "k1", "--db", db
    )
    assert code == 0 and "0 stored, 1 duplicates skipped" in out

    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "click", "email": "ann@example.com"}\n{"type": "click", "lead_id": 999}\n{oops\n',
        encoding="utf-8",
    )
    code, out, err = _invoke("event", "--file", str(events), "--db", db)
    assert code == 1
    assert f"{events}:2: no lead has id 999" in err
    assert f"{events}:3: not JSON" in err

    code, out, _ = _invoke("run", "--once", "--db", db)
    assert code == 0 and "enrolled" in out
    store = open_store(db)
    flows = {f for (f,) in rows(store, "SELECT flow FROM enrollments")}
    assert {"welcome", "cold_outreach"} <= flows


def test_bad_input_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    code, _, err = _invoke("event", "--db", db)
    assert code == 2 and "give an event TYPE" in err
    code, _, err = _invoke("event", "click", "--email", "a@b.io", "--at", "yesterday", "--db", db)
    assert code == 2 and "not an ISO 8601 time" in err
    code, _, err = _invoke("import", str(tmp_path / "missing.csv"), "--db", db)
    assert code == 2 and "cannot read" in err
    code, _, err = _invoke("run", "--once", "--db", "sqlite:////nonexistent/dir/x.db")
    assert code == 2 and "cannot open the database" in err


def test_publish_refuses_a_workspace_with_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.flow"
    bad.write_text('flow f "F" {\n  trigger event x\n  a: send nowhere\n}\n', encoding="utf-8")
    code, out, err = _invoke("publish", str(bad), "--db", f"sqlite:///{tmp_path}/fb.db")
    assert code == 1
    assert "FB203" in out and "not published" in err


def test_run_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fb.db"
    assert _invoke("publish", str(EXAMPLES), "--db", db)[0] == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbuilder", "run", "--db", db, "--interval", "0.2"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err
