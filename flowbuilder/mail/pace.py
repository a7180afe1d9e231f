"""How fast mail goes to each recipient domain, shared by every sender of a store.

A domain gets `rate` messages a second, in bursts of up to `burst`, by the generic cell rate
algorithm (GCRA): the store keeps one time per domain, its next free slot. A sender reserves the
slots of a claimed batch at once (`Pace.reserve`, one transaction), so senders in any number of
processes and hosts share the rate instead of each sending at it. A message whose slot would be
further off than the sender's horizon gets none and goes back to the outbox, due when its domain
is (`Slots.next_free`).

A temporary failure (4xx) from the relay halves the domain's rate, down to 1/64 of the configured
one, and pauses the domain, for every sender (`Pace.adjust`); each later success gives back a
twentieth of the configured rate. Times are seconds since the epoch (`time.time()`): pacing
follows the real clock of the hosts, whatever clock the decisions use.

    >>> pace = Pace(rate=2.0, burst=3)
    >>> slots = pace.plan(PaceRow("example.com", 0.0, None, 0.0), 6, now=100.0, horizon=1.0)
    >>> slots.times, slots.next_free
    ([100.0, 100.0, 100.0, 100.5, 101.0], 101.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Connection

from flowbuilder.store.bulk import among, update_rows
from flowbuilder.store.schema import DomainPace
from flowbuilder.store.writes import insert_ignoring

SLOWEST = 64  # a 4xx lowers a domain's rate to no less than the configured rate / SLOWEST
RECOVERY = 20  # each success gives back the configured rate / RECOVERY


def recipient_domain(address: str) -> str:
    """The domain an address is paced by."""
    return address.rpartition("@")[2].lower()


class PaceRow(NamedTuple):
    domain: str
    next_slot: float
    rate: float | None  # lowered by a 4xx; None: the configured rate
    paused_until: float


@dataclass(frozen=True)
class Slots:
    """The slots reserved for a domain's messages, in order, and when the next could go."""

    times: list[float]
    next_free: float
    slowed: bool  # the domain's rate is lowered: successes are worth reporting (`adjust`)
    next_slot: float  # the domain's next slot (GCRA's theoretical arrival time) after these


@dataclass(frozen=True)
class Pace:
    rate: float  # messages a second to one domain
    burst: float = 0.0  # messages that may go at once; 0: `max(1, rate)`

    @property
    def bucket(self) -> float:
        return self.burst or max(1.0, self.rate)

    def plan(self, row: PaceRow, wanted: int, *, now: float, horizon: float) -> Slots:
        """Up to `wanted` slots for the domain of `row`, none later than `now + horizon`
        (pure: `reserve` stores the new next slot)."""
        rate = min(self.rate, row.rate) if row.rate else self.rate
        step = 1.0 / rate
        tolerance = (self.bucket - 1.0) * step  # how far ahead of its slot a burst may go
        start = max(now, row.paused_until)
        limit = now + horizon
        next_slot = row.next_slot
        times: list[float] = []
        slot = max(start, next_slot - tolerance)
        while len(times) < wanted and slot <= limit:
            times.append(slot)
            next_slot = max(next_slot, slot) + step
            slot = max(start, next_slot - tolerance)
        return Slots(times, slot, rate < self.rate, next_slot)

    def reserve(
        self, conn: Connection, wanted: Mapping[str, int], *, now: float, horizon: float
    ) -> dict[str, Slots]:
        """Reserve slots for `wanted[domain]` messages of each domain (see `plan`), for every
        sender of the store: the domains' rows are locked until the transaction ends."""
        out: dict[str, Slots] = {}
        updates = []
        for row in _locked(conn, wanted):
            slots = out[row.domain] = self.plan(row, wanted[row.domain], now=now, horizon=horizon)
            if slots.times:
                updates.append({"domain": row.domain, "next_slot": slots.next_slot})
        update_rows(conn, DomainPace.__table__, updates, key="domain")  # type: ignore[arg-type]
        return out

    def adjust(
        self,
        conn: Connection,
        *,
        slowed: Mapping[str, float],
        succeeded: Mapping[str, int],
        now: float,
    ) -> None:
        """Domains that answered a temporary failure (paused for their seconds from `now`, rate
        halved) and successes of domains whose rate is lowered (each gives some back)."""
        updates = []
        for row in _locked(conn, {**succeeded, **slowed}):
            rate = row.rate
            if rate is not None and succeeded.get(row.domain):
                rate += succeeded[row.domain] * self.rate / RECOVERY
                rate = None if rate >= self.rate else rate
            paused = row.paused_until
            if row.domain in slowed:
                rate = max(self.rate / SLOWEST, (rate or self.rate) / 2)
                paused = max(paused, now + slowed[row.domain])
            if (rate, paused) != (row.rate, row.paused_until):
                updates.append({"domain": row.domain, "rate": rate, "paused_until": paused})
        update_rows(conn, DomainPace.__table__, updates, key="domain")  # type: ignore[arg-type]


def _locked(conn: Connection, domains: Mapping[str, object]) -> list[PaceRow]:
    """The rows of `domains`, made if new, locked in domain order (two senders locking the
    same domains take them in the same order: no deadlock)."""
    if not domains:
        return []
    names = sorted(domains)
    insert_ignoring(
        conn,
        DomainPace.__table__,  # type: ignore[arg-type]
        [{"domain": d, "next_slot": 0.0, "rate": None, "paused_until": 0.0} for d in names],
    )
    query = (
        select(DomainPace.domain, DomainPace.next_slot, DomainPace.rate, DomainPace.paused_until)
        .where(among(conn, DomainPace.domain, names))
        .order_by(DomainPace.domain)
        .with_for_update()
    )
    return [PaceRow(*r) for r in conn.execute(query)]
