"""Scale tests run worker processes against the PostgreSQL of `tests/store/conftest.py` (a schema
of their own per test; mandatory with FLOWBUILDER_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bench.fleet import published_store
from tests.store.conftest import postgres_missing, postgres_url

__all__ = ["fleet_store", "postgres_missing", "postgres_url"]


@pytest.fixture
def fleet_store(postgres_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The fleet's workspace published on the test's PostgreSQL schema; closed afterwards, pass
    or fail, so no connection outlives its test."""
    engine = published_store(postgres_url, tmp_path / "workspace", datetime.now(UTC))
    yield engine
    engine.dispose()
