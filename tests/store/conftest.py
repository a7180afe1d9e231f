"""Store and runtime tests run on SQLite and on PostgreSQL.

PostgreSQL is the one at 127.0.0.1:5432 (user postgres, database test), or
$FLOWBUILDER_TEST_POSTGRES_URL. Each test gets a schema of its own, dropped afterwards. Without a
server the PostgreSQL cases are skipped with the reason, unless FLOWBUILDER_REQUIRE_POSTGRES=1
(set by .ci/run), where a missing server fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from flowbuilder.store.db import open_store

POSTGRES = os.environ.get(
    "FLOWBUILDER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_missing() -> str | None:
    try:
        engine = create_engine(POSTGRES, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL is not reachable at {POSTGRES}: {str(exc.orig).strip()}"
    return None


@pytest.fixture(scope="session")
def postgres_missing() -> str | None:
    return _postgres_missing()


@contextmanager
def postgres_schema(missing: str | None) -> Iterator[str]:
    """A schema of its own on the test server, dropped afterwards; yields its URL. Without a
    server (`missing` says why) the test is skipped, or fails with FLOWBUILDER_REQUIRE_POSTGRES=1."""
    if missing:
        if os.environ.get("FLOWBUILDER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{missing} (FLOWBUILDER_REQUIRE_POSTGRES=1)")
        pytest.skip(f"{missing}; set FLOWBUILDER_REQUIRE_POSTGRES=1 to make this an error")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_missing: str | None) -> Iterator[str]:
    with postgres_schema(postgres_missing) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flowbuilder.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = open_store(store_url)
    yield engine
    engine.dispose()
