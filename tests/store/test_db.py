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


def test_a_claim_stalled_mid_statement_is_ended_after_the_lease(postgres_url: str) -> None:
    """A worker stopped in the middle of a pipelined statement (as `executemany` sends them)
    leaves its session `active`, not idle, so the idle timeout never fires; `end_stalled_claims`
    ends it once the lease is over, and leaves alone the sessions that are not flowbuilder's."""
    import time

    import psycopg

    from flowbuilder.store.db import make_engine, migrate
    from flowbuilder.store.leases import end_stalled_claims

    worker = make_engine(f"{postgres_url}&application_name=flowbuilder%20victim")
    stranger = make_engine(f"{postgres_url}&application_name=psql")
    other = make_engine(postgres_url)
    migrate(other)
    claim = "SELECT name FROM clocks FOR UPDATE SKIP LOCKED"

    def victim_state() -> str | None:
        with other.connect() as conn:
            return conn.execute(
                text(
                    "SELECT state FROM pg_stat_activity "
                    "WHERE application_name = 'flowbuilder victim'"
                )
            ).scalar_one_or_none()

    raw = worker.raw_connection()
    busy_stranger = stranger.connect()
    try:
        with other.begin() as conn:
            conn.execute(text("INSERT INTO clocks VALUES ('probe', now()), ('other', now())"))
        busy_stranger.begin()
        assert busy_stranger.execute(
            text("SELECT name FROM clocks WHERE name = 'other' FOR UPDATE")
        ).all() == [("other",)]
        pg = raw.driver_connection
        assert isinstance(pg, psycopg.Connection)
        # What libpq sends for a pipelined batch, cut off before its Sync: the worker stopped.
        pq = pg.pgconn
        pq.enter_pipeline_mode()
        pq.send_query_params(b"BEGIN", None)
        pq.send_query_params(b"SELECT name FROM clocks WHERE name = 'probe' FOR UPDATE", None)
        pq.send_flush_request()
        pq.flush()
        deadline = time.monotonic() + 10
        while True:
            with other.connect() as conn:
                if conn.execute(text(claim)).all() == []:
                    break  # both rows are held
            assert time.monotonic() < deadline, "the pipelined claim never took its row"
            time.sleep(0.05)
        assert victim_state() == "active"
        assert end_stalled_claims(other, 30.0) == []  # within its lease: left alone
        time.sleep(1.0)
        ended = end_stalled_claims(other, 0.5)
        assert [e.application for e in ended] == ["flowbuilder victim"]
        with other.begin() as conn:
            assert conn.execute(text(claim)).all() == [("probe",)]  # reclaimed
        assert victim_state() is None
    finally:
        raw.invalidate()
        busy_stranger.rollback()  # the stranger's lock was left alone until now
        busy_stranger.close()
        worker.dispose()
        stranger.dispose()
        other.dispose()
