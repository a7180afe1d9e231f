"""Scale tests run worker processes against the PostgreSQL of `tests/store/conftest.py` (a schema
of their own per test; mandatory with FLOWBUILDER_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

from tests.store.conftest import postgres_missing, postgres_url

__all__ = ["postgres_missing", "postgres_url"]
