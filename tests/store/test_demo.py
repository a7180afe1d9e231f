"""The demo population on the real runtime: deterministic, and the example flows behave."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from dsl.compile import compile_paths
from dsl.lint import lint
from flowbuilder import demo
from flowbuilder.cli import app
from flowbuilder.publish import publish
from flowbuilder.store.db import open_store
from tests.store.driver import rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "acme"
START = datetime(2026, 10, 5, tzinfo=UTC)


def _live(url: str, days: int = 12, size: int = 60) -> Engine:
    engine = open_store(url)
    compilation = compile_paths([EXAMPLES])
    publish(engine, compilation, lint(compilation), START)
    demo.run(engine, START, days, size, seed=3)
    return engine


def test_the_same_seed_gives_the_same_weeks(tmp_path: Path) -> None:
    first = demo.outcomes(_live(f"sqlite:///{tmp_path}/a.db"))
    second = demo.outcomes(_live(f"sqlite:///{tmp_path}/b.db"))
    assert first == second
    assert {o.flow for o in first} >= {"welcome", "cold_outreach"}


def test_the_example_flows_do_what_they_promise(tmp_path: Path) -> None:
    engine = _live(f"sqlite:///{tmp_path}/c.db", days=20, size=120)
    signed_up = {
        lead for (lead,) in rows(engine, "SELECT lead_id FROM events WHERE type = 'signed_up'")
    }
    welcomed = {
        lead
        for (lead,) in rows(engine, "SELECT lead_id FROM outbox WHERE template = 'welcome_email'")
    }
    assert signed_up and welcomed == signed_up, "every sign-up gets exactly the welcome flow"
    # a reply stops the cold sequence: nothing is sent to that lead in the flow after the reply
    for lead, replied_at in rows(
        engine,
        "SELECT lead_id, min(at) FROM events WHERE type = 'reply' AND flow = 'cold_outreach' GROUP BY lead_id",
    ):
        later = rows(
            engine,
            "SELECT count(*) FROM events WHERE type = 'send' AND flow = 'cold_outreach' "
            "AND lead_id = :lead AND at > :at",
            lead=lead,
            at=replied_at,
        )
        assert later == [(0,)]
    [(duplicates,)] = rows(engine, "SELECT count(*) - count(DISTINCT key) FROM outbox")
    assert duplicates == 0


def test_the_demo_command_prints_every_flow_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", str(EXAMPLES), "--leads", "30", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "welcome" in result.stdout and "30 leads, 7 days" in result.stdout
    assert (tmp_path / ".flowbuilder" / "demo.db").exists()
