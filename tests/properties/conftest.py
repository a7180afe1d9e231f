"""Property tests that drive the runtime use the PostgreSQL of `tests/store/conftest.py`."""

from __future__ import annotations

from tests.store.conftest import postgres_missing, postgres_url

__all__ = ["postgres_missing", "postgres_url"]
