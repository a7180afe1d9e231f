"""When the sender's journal writes: a mark at once unless it says by when it is needed, a
mark a connection waits on at once, results after `patience` — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from flowbuilder.mail.sender import _Journal
from tests.mail.conftest import NOW, add_lead, queue, row


def _rows(store: Engine, n: int) -> list[tuple[int, str]]:
    lead = add_lead(store, "ann@example.com", {})
    return [(queue(store, lead, "welcome_email", n=i), f"<m{i}@acme.example>") for i in range(n)]


def _with_journal(
    store: Engine, patience: float, body: Callable[[_Journal], Awaitable[None]]
) -> None:
    async def run() -> None:
        journal = _Journal(store, lambda: NOW, patience=patience)
        journal.start()
        try:
            await body(journal)
        finally:
            await journal.close()

    asyncio.run(run())


def _marked(store: Engine, outbox_id: int) -> Any:
    return row(store, outbox_id).data_started_at


def test_a_mark_without_a_time_is_written_at_once(store: Engine) -> None:
    [(first, mid)] = _rows(store, 1)

    async def body(journal: _Journal) -> None:
        await asyncio.wait_for(journal.mark([(first, mid)]), 5)

    _with_journal(store, 30.0, body)
    assert _marked(store, first) is not None
    assert row(store, first).message_id == mid


def test_a_mark_needed_later_waits_for_company_until_then(store: Engine) -> None:
    (early, a), (late, b) = _rows(store, 2)

    async def body(journal: _Journal) -> None:
        loop = asyncio.get_running_loop()
        later = journal.mark([(late, b)], by=loop.time() + 1.5)
        await asyncio.sleep(0.3)
        assert not later.done()  # not needed yet
        assert _marked(store, late) is None
        # A mark needed now takes the waiting one along, in the same transaction.
        await asyncio.wait_for(journal.mark([(early, a)]), 5)
        assert later.done()

    _with_journal(store, 30.0, body)
    assert _marked(store, early) == _marked(store, late) is not None


def test_a_mark_is_written_by_its_time(store: Engine) -> None:
    [(first, mid)] = _rows(store, 1)

    async def body(journal: _Journal) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(journal.mark([(first, mid)], by=start + 0.4), 5)
        assert loop.time() - start >= 0.39  # it waited for company as long as it could

    _with_journal(store, 30.0, body)
    assert _marked(store, first) is not None


def test_a_mark_waited_on_is_written_at_once(store: Engine) -> None:
    [(first, mid)] = _rows(store, 1)

    async def body(journal: _Journal) -> None:
        loop = asyncio.get_running_loop()
        mark = journal.mark([(first, mid)], by=loop.time() + 60)
        await asyncio.sleep(0.1)
        assert not mark.done()
        journal.hurry()
        await asyncio.wait_for(mark, 5)

    _with_journal(store, 30.0, body)
    assert _marked(store, first) is not None


def test_patience_bounds_the_wait_of_a_mark_needed_later(store: Engine) -> None:
    [(first, mid)] = _rows(store, 1)

    async def body(journal: _Journal) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(journal.mark([(first, mid)], by=loop.time() + 60), 5)

    _with_journal(store, 0.2, body)
    assert _marked(store, first) is not None
