"""Rate limits shared by every process of a store (`store.limits`), on SQLite and PostgreSQL:
the burst, then one hit an interval; concurrent checks never pass the limit together; the
store keeps digests, and forgets keys whose time has passed."""

from __future__ import annotations

import time

from sqlalchemy import Engine, func, insert, select

from flowbuilder.store import limits
from flowbuilder.store.limits import SharedLimit
from flowbuilder.store.schema import RateLimitRow
from tests.together import at_once


def test_the_burst_then_refusals_until_the_interval_passes(store: Engine) -> None:
    limit = SharedLimit(store, "login", 3, 60.0)
    assert [limit.allow("10.0.0.1|ann@example.com") for _ in range(4)] == [True] * 3 + [False]
    assert 19 <= limit.retry_after("10.0.0.1|ann@example.com") <= 21  # one hit each 20 s
    assert limit.allow("10.0.0.2|ann@example.com")  # another key, its own count
    assert SharedLimit(store, "forms", 3, 60.0).allow("10.0.0.1|ann@example.com")  # another limit
    with store.connect() as conn:
        keys = conn.execute(select(RateLimitRow.key)).scalars().all()
    assert len(keys) == 3 and all(len(k) == 64 and "@" not in k for k in keys)


def test_checks_at_once_never_pass_the_limit_together(store: Engine) -> None:
    limit = SharedLimit(store, "login", 10, 60.0)
    allowed: list[bool] = []

    def guesser() -> None:
        for _ in range(10):
            allowed.append(limit.allow("10.0.0.9|bob@example.com"))

    at_once(4, guesser)
    assert len(allowed) == 40 and allowed.count(True) == 10


def test_keys_whose_time_has_passed_are_forgotten(store: Engine) -> None:
    with store.begin() as conn:
        conn.execute(
            insert(RateLimitRow), [{"key": f"{i:064x}", "tat": time.time() - 5} for i in range(5)]
        )
    limit = SharedLimit(store, "login", 10, 60.0)
    limit._hits = iter(range(limits.CLEAN_EVERY - 1, limits.CLEAN_EVERY + 1))  # type: ignore[assignment]
    assert limit.allow("a")  # not yet the round of cleaning
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RateLimitRow)).scalar_one() == 6
    assert limit.allow("b")
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RateLimitRow)).scalar_one() == 2
