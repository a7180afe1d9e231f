"""Opening the store: migrations on open, and SQLite's one-writer discipline."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from flowbuilder.store.db import open_store, reading, tables


def test_opening_an_empty_database_creates_every_table(store: Engine) -> None:
    assert {"leads", "events", "enrollments", "outbox", "decisions", "flow_versions"} <= set(
        tables(store)
    )


def test_a_reader_on_sqlite_is_not_blocked_by_a_writer(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/one.db")
    other = open_store(f"sqlite:///{tmp_path}/one.db")
    try:
        with engine.begin() as writer:
            writer.execute(
                text("INSERT INTO suppressions VALUES ('a@example.com', 'test', '2026-01-01')")
            )
            # A write transaction is open; a reader still sees the committed state at once.
            with reading(other) as reader:
                assert reader.execute(text("SELECT count(*) FROM suppressions")).scalar_one() == 0
        with reading(other) as reader:
            assert reader.execute(text("SELECT count(*) FROM suppressions")).scalar_one() == 1
    finally:
        engine.dispose()
        other.dispose()


def test_the_migrations_create_exactly_the_models(store: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from flowbuilder.store.schema import Base

    with store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        drift = compare_metadata(context, Base.metadata)
    assert drift == [], "a model changed without a migration (or the other way round)"


def test_a_postgresql_claim_returns_to_the_pool_when_its_worker_stops_answering(
    postgres_url: str,
) -> None:
    import time

    from sqlalchemy.exc import DBAPIError

    from flowbuilder.store.db import make_engine, migrate

    stuck = make_engine(postgres_url, lease_seconds=0.5)
    other = make_engine(postgres_url)
    migrate(other)
    try:
        with other.begin() as conn:
            conn.execute(text("INSERT INTO clocks VALUES ('probe', now())"))
        claim = "SELECT name FROM clocks FOR UPDATE SKIP LOCKED"
        hung = stuck.connect()
        hung.begin()
        assert hung.execute(text(claim)).all() == [("probe",)]
        with other.begin() as conn:
            assert conn.execute(text(claim)).all() == []  # claimed, so skipped
        time.sleep(1.5)  # the worker holding the claim goes quiet past its lease
        with other.begin() as conn:
            assert conn.execute(text(claim)).all() == [("probe",)]  # reclaimed
        with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
            hung.execute(text("SELECT 1"))  # the stuck worker's transaction is gone
        hung.invalidate()
    finally:
        stuck.dispose()
        other.dispose()
