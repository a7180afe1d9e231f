"""The pace of each recipient domain, shared by every sender of the store (`mail.pace`): slots
reserved in the store, a 4xx slowing the domain for all, senders together keeping to one rate —
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from sqlalchemy import Engine, select

from flowbuilder.config import Settings
from flowbuilder.mail.pace import Pace, PaceRow
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SenderOptions, SendStats
from flowbuilder.store.schema import DomainPace
from tests.mail.conftest import Box, add_lead, queue, row
from tests.together import at_once


def test_a_paused_domain_starts_after_its_pause_at_its_lowered_rate() -> None:
    pace = Pace(rate=4.0, burst=1)
    slots = pace.plan(PaceRow("example.com", 0.0, 1.0, 105.0), 3, now=100.0, horizon=60.0)
    assert slots.times == [105.0, 106.0, 107.0] and slots.slowed
    assert slots.next_free == 108.0


def test_reservations_share_the_domain_and_stop_at_the_horizon(store: Engine) -> None:
    pace = Pace(rate=10.0)  # bursts of 10
    now = time.time()
    with store.begin() as conn:
        first = pace.reserve(conn, {"example.com": 12, "example.org": 1}, now=now, horizon=1.05)
    assert first["example.com"].times[:10] == [now] * 10
    assert first["example.com"].times[10:] == pytest.approx([now + 0.1, now + 0.2])
    assert first["example.org"].times == [now]
    with store.begin() as conn:  # another sender, at the same moment
        second = pace.reserve(conn, {"example.com": 20}, now=now, horizon=1.05)
    times = second["example.com"].times
    assert times == pytest.approx([now + 0.1 * i for i in range(3, 11)])
    assert second["example.com"].next_free == pytest.approx(now + 1.1)  # the other 12 wait


def test_a_temporary_failure_slows_the_domain_and_successes_give_the_rate_back(
    store: Engine,
) -> None:
    pace = Pace(rate=100.0)
    now = time.time()
    with store.begin() as conn:
        pace.adjust(conn, slowed={"example.net": 30.0}, succeeded={}, now=now)
        pace.adjust(conn, slowed={"example.net": 5.0}, succeeded={}, now=now)
    with store.connect() as conn:
        stored = conn.execute(select(DomainPace).where(DomainPace.domain == "example.net")).one()
    assert stored.rate == 25.0 and stored.paused_until == now + 30.0  # halved twice; the longer
    with store.begin() as conn:
        slots = pace.reserve(conn, {"example.net": 3}, now=now, horizon=60.0)["example.net"]
    assert slots.slowed and slots.times[0] == now + 30.0
    with store.begin() as conn:
        pace.adjust(conn, slowed={}, succeeded={"example.net": 10}, now=now)  # 25 + 10 × 5
    with store.connect() as conn:
        assert conn.execute(select(DomainPace.rate)).scalar_one() == 75.0
    with store.begin() as conn:
        pace.adjust(conn, slowed={}, succeeded={"example.net": 5}, now=now)
    with store.connect() as conn:
        assert conn.execute(select(DomainPace.rate)).scalar_one() is None  # the configured rate


def test_senders_reserving_at_once_never_share_a_slot(store: Engine) -> None:
    pace = Pace(rate=1000.0, burst=1)
    now = time.time() + 5  # the same start for every thread
    got: list[float] = []

    def sender() -> None:
        for _ in range(10):
            with store.begin() as conn:
                slots = pace.reserve(conn, {"example.com": 5}, now=now, horizon=60.0)
            got.extend(slots["example.com"].times)

    at_once(4, sender)
    assert len(got) == 200
    ordered = sorted(got)
    assert all(b - a > 0.00099 for a, b in itertools.pairwise(ordered))


def _drain(engine: Engine, settings: Settings, port: int, only: list[int]) -> SendStats:
    async def go() -> SendStats:
        options = SenderOptions(connections=2, rate_per_domain=10.0, lease_seconds=60)
        sender = Sender(engine, settings, Relay("127.0.0.1", port), options=options)
        try:
            return await sender.drain(only=only)
        finally:
            await sender.close()

    return asyncio.run(go())


def test_two_senders_together_keep_to_the_rate_of_one_domain(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    """30 messages to one domain at 10 a second (bursts of 10), half of them through each of two
    senders running at once: together they take at least 2 s. Each pacing alone would let both
    halves go within half a second."""
    box, port = smtp_box
    ids = [
        queue(store, add_lead(store, f"r{i}@example.com", {}), "welcome_email") for i in range(30)
    ]
    stats: list[SendStats] = []
    threads = [
        threading.Thread(target=lambda part=part: stats.append(_drain(store, settings, port, part)))
        for part in (ids[::2], ids[1::2])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s.sent for s in stats) == [15, 15]
    assert len(box.arrived) == 30
    assert max(box.arrived) - min(box.arrived) >= 1.9  # (30 − 10) / 10 s, less a little jitter
    assert {row(store, i).state for i in ids} == {"sent"}


def test_messages_the_send_time_checks_hold_take_no_slot_of_their_domain(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    """Five messages held (no marketing consent) and one to send, all to one domain at one a
    second: only the one sent takes a slot, so the domain's next slot is a second after it,
    where reserving for all six would put it six seconds away (and make it wait five)."""
    _, port = smtp_box
    held = [
        queue(store, add_lead(store, f"h{i}@example.com", {}, consent=False), "welcome_email")
        for i in range(5)
    ]
    sent = queue(store, add_lead(store, "ok@example.com", {}), "welcome_email")
    start = time.time()

    async def go() -> SendStats:
        options = SenderOptions(connections=1, rate_per_domain=1.0, lease_seconds=60)
        sender = Sender(store, settings, Relay("127.0.0.1", port), options=options)
        try:
            return await sender.drain()
        finally:
            await sender.close()

    stats = asyncio.run(go())
    assert (stats.held, stats.sent) == (5, 1)
    assert {row(store, i).state for i in held} == {"held"} and row(store, sent).state == "sent"
    with store.connect() as conn:
        next_slot = conn.execute(
            select(DomainPace.next_slot).where(DomainPace.domain == "example.com")
        ).scalar_one()
    assert next_slot < start + 3.0
