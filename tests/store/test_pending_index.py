"""Pending events are found through the partial index `ix_events_pending` (`WHERE pending`), not
by scanning the events table: SQLite uses a partial index only when the query's condition is that
very term, and SQLAlchemy writes a boolean column as `pending = 1` there. Every query that looks
for pending events — the events pass, the tick's backlog (`pending_work`) and the backlog gauges
(`read_backlog`) — is checked with EXPLAIN QUERY PLAN as it runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.engine import Connection

from flowbuilder.observability import read_backlog
from flowbuilder.runtime.tick import TickStats, events_pass, pending_work
from flowbuilder.store.db import open_store
from flowbuilder.store.published import current
from flowbuilder.store.schema import Event as EventRow
from tests.store.driver import add_lead, post, publish_text

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

FLOW = """
flow hello "Hello" {
  trigger event signed_up
  done: end
}
"""


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path}/flowbuilder.db")
    yield engine
    engine.dispose()


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on `engine` meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Connection, cursor: Any, sql: str, params: Any, context: Any, many: bool
    ) -> None:
        if not many:
            seen.append((sql, params))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _plans_of_pending(engine: Engine, run: Callable[[Connection], None]) -> list[str]:
    """The query plan of each statement `run` makes that reads pending events."""
    with _statements(engine) as seen, engine.begin() as conn:
        run(conn)
        conn.rollback()
    found = [
        (sql, params)
        for sql, params in seen
        if "FROM events" in sql and "pending" in sql.split("WHERE", 1)[-1]
    ]
    assert found, "no query for pending events was run"
    plans = []
    with engine.connect() as conn:
        for sql, params in found:
            rows: Sequence[Any] = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            plans.append(" / ".join(str(row[-1]) for row in rows))
    return plans


def _store_with_pending_events(engine: Engine) -> None:
    publish_text(engine, FLOW, T0)
    add_lead(engine, "ann@example.com", T0)
    for _ in range(3):
        post(engine, "ann@example.com", "signed_up", T0)


def _events_pass(conn: Connection) -> None:
    published = current(conn)
    assert published is not None
    events_pass(conn, published, T0, 50, TickStats())


def _pending_work(conn: Connection) -> None:
    pending_work(conn, T0)


def _read_backlog(conn: Connection) -> None:
    read_backlog(conn, T0)


@pytest.mark.parametrize("run", [_events_pass, _pending_work, _read_backlog])
def test_pending_events_are_found_through_the_partial_index(
    lite: Engine, run: Callable[[Connection], None]
) -> None:
    _store_with_pending_events(lite)
    for plan in _plans_of_pending(lite, run):
        assert "ix_events_pending" in plan, f"{run.__name__} scans the events table: {plan}"


def test_the_counts_read_through_the_index_are_the_pending_events(store: Engine) -> None:
    _store_with_pending_events(store)
    with store.begin() as conn:
        assert pending_work(conn, T0)[0] == 3
        assert read_backlog(conn, T0).due["events"] == 3
        first = conn.execute(select(func.min(EventRow.id))).scalar_one()
        conn.execute(update(EventRow).where(EventRow.id == first).values(pending=False))
        assert pending_work(conn, T0)[0] == 2
        assert read_backlog(conn, T0).due["events"] == 2
