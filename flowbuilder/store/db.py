"""Opening the store: SQLite by default (WAL, busy timeout, one writer with `BEGIN IMMEDIATE`),
PostgreSQL by URL, and Alembic migrations applied on open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection

from flowbuilder.store.bulk import json_text

DEFAULT_URL = "sqlite:///flowbuilder.db"
READ_ONLY = "flowbuilder_read_only"
BUSY_TIMEOUT_MS = 30_000
# How long a claimed batch may sit in an open transaction between statements (PostgreSQL).
CLAIM_LEASE_SECONDS = 60.0


def database_url(url: str | None = None) -> str:
    """The URL given, else `FLOWBUILDER_DATABASE_URL`, else `flowbuilder.db` in the working folder."""
    return url or os.environ.get("FLOWBUILDER_DATABASE_URL") or DEFAULT_URL


def make_engine(url: str | None = None, *, lease_seconds: float = CLAIM_LEASE_SECONDS) -> Engine:
    url = database_url(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
            json_serializer=json_text,
            json_deserializer=orjson.loads,
        )
        _sqlite_setup(engine)
        return engine
    engine = create_engine(
        url, pool_pre_ping=True, json_serializer=json_text, json_deserializer=orjson.loads
    )
    _postgresql_setup(engine, lease_seconds)
    return engine


def _postgresql_setup(engine: Engine, lease_seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # A claim is a transaction holding row locks (docs/decisions/0004-claims.md). A worker
        # that stops answering mid-batch must not hold them for ever: PostgreSQL ends a session
        # idle in its transaction for longer than the lease, and the rows go back to the pool.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                f"SET idle_in_transaction_session_timeout = '{int(lease_seconds * 1000)}ms'"
            )
        dbapi_connection.commit()


def _sqlite_setup(engine: Engine) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # One writer at a time, decided at BEGIN: no deadlock-prone lock upgrades mid-transaction.
        # Readers (`reading`) take a deferred BEGIN and, with WAL, never queue behind the writer.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: it never takes SQLite's write lock."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


def alembic_config(engine: Engine) -> Config:
    script = resources.files("flowbuilder.store").joinpath("migrations")
    config = Config()
    config.set_main_option("script_location", str(Path(str(script))))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creating it on an empty database)."""
    command.upgrade(alembic_config(engine), "head")


def open_store(url: str | None = None) -> Engine:
    """An engine on a migrated database."""
    engine = make_engine(url)
    migrate(engine)
    return engine


def tables(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
