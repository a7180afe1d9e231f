"""Rate limits shared by every process of a store: sign-in attempts and form submissions.

A web app that runs as several processes, on several hosts, must not let each of them allow the
limit: a guesser spreading attempts over N processes would get N times as many. `SharedLimit`
keeps one time per key in the store, by the generic cell rate algorithm (GCRA, as
`mail.pace` does for recipient domains): `limit` hits in any `window` seconds, a hit every
`window / limit` seconds once the burst is spent. A check is one statement, an upsert that only
moves the key's time on when the hit is allowed, so processes checking at once never both take
the last hit. Keys are stored as SHA-256 digests: the store keeps no address or IP of its own.
Times are seconds since the epoch (`time.time()`): the hosts' clocks must agree.

    >>> rule = Gcra(limit=3, window=60.0)
    >>> [rule.next_time(None, now=100.0), rule.next_time(120.0, now=100.0)]
    [120.0, 140.0]
    >>> rule.next_time(160.0, now=100.0) is None  # three hits within the window: refused
    True
    >>> rule.wait(160.0, now=100.0)
    20.0
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass

from sqlalchemy import Engine, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from flowbuilder.store.schema import RateLimitRow

CLEAN_EVERY = 1000  # allowed hits between two deletions of the keys whose time has passed


@dataclass(frozen=True)
class Gcra:
    """`limit` hits in any `window` seconds: the arithmetic, without the store."""

    limit: int
    window: float

    @property
    def interval(self) -> float:
        return self.window / self.limit

    @property
    def tolerance(self) -> float:
        return self.window - self.interval

    def next_time(self, stored: float | None, *, now: float) -> float | None:
        """The key's time after a hit at `now`, or None when the hit is refused."""
        start = now if stored is None else max(stored, now)
        if start - now > self.tolerance:
            return None
        return start + self.interval

    def wait(self, stored: float | None, *, now: float) -> float:
        """Seconds until a hit would be allowed."""
        if stored is None:
            return 0.0
        return max(0.0, stored - now - self.tolerance)


class SharedLimit:
    """At most `limit` hits per key in any `window` seconds, for every process of the store:
    `allow` takes a hit, `retry_after` says in how many seconds one would be allowed."""

    def __init__(self, engine: Engine, name: str, limit: int, window: float) -> None:
        self.engine = engine
        self.name = name
        self.rule = Gcra(limit, window)
        self._hits = itertools.count(1)

    def _key(self, key: str) -> str:
        return hashlib.sha256(f"{self.name}\0{key}".encode()).hexdigest()

    def allow(self, key: str) -> bool:
        now = time.time()
        rule = self.rule
        table = RateLimitRow.__table__
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).values(key=self._key(key), tat=now + rule.interval)
        stored = table.c.tat
        start = case((stored > now, stored), else_=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"tat": start + rule.interval},
            where=start - now <= rule.tolerance,
        ).returning(table.c.tat)
        with self.engine.begin() as conn:
            allowed = conn.execute(stmt).first() is not None
            if allowed and next(self._hits) % CLEAN_EVERY == 0:
                conn.execute(delete(RateLimitRow).where(RateLimitRow.tat < now))
        return allowed

    def retry_after(self, key: str) -> int:
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(RateLimitRow.tat).where(RateLimitRow.key == self._key(key))
            ).scalar()
        return max(1, int(self.rule.wait(stored, now=time.time())) + 1)
