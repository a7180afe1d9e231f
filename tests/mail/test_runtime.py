"""The runtime inside another program: tick, sender and built-in sink on one event loop or in a
thread of its own; without a relay, every message is captured by the sink."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Engine, func, select

from flowbuilder.config import Settings
from flowbuilder.mail.runtime import start_runtime, start_runtime_thread
from flowbuilder.store.schema import CapturedMessage
from tests.mail.conftest import add_lead, free_port, queue, row


def captured(store: Engine) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CapturedMessage)).scalar_one())


def test_the_runtime_runs_inside_a_running_event_loop(store: Engine, settings: Settings) -> None:
    local = settings.model_copy(update={"sink_listen": f"127.0.0.1:{free_port()}"})
    lead = add_lead(store, "ann@example.com", {})
    oid = queue(store, lead, "ebook_delivery", flow="ebook_nurture", step="deliver")

    async def main() -> None:
        runtime = await start_runtime(store, local, interval=0.2, send_interval=0.1)
        try:
            for _ in range(100):
                if captured(store):
                    break
                await asyncio.sleep(0.05)
        finally:
            await runtime.stop()

    asyncio.run(main())
    assert captured(store) == 1
    r = row(store, oid)
    assert r.state == "sent"
    with store.connect() as conn:
        assert conn.execute(select(CapturedMessage.outbox_id)).scalar_one() == oid


def test_the_runtime_runs_in_a_thread_of_its_own(store: Engine, settings: Settings) -> None:
    local = settings.model_copy(update={"sink_listen": f"127.0.0.1:{free_port()}"})
    lead = add_lead(store, "ann@example.com", {})
    queue(store, lead, "ebook_delivery", flow="ebook_nurture", step="deliver")
    thread = start_runtime_thread(store, local, interval=0.2, send_interval=0.1)
    try:
        deadline = time.monotonic() + 10
        while not captured(store) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    assert captured(store) == 1
    assert not thread.thread.is_alive()


def test_stopping_lets_the_send_in_progress_finish(store: Engine, settings: Settings) -> None:
    """A stop that comes while a message is on the wire waits for the relay's answer and records
    it: the message ends `sent`, not `sending` (which would send it again after its lease)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    from tests.mail.conftest import Box, BoxHandler

    class SlowRelay(BoxHandler):
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            await asyncio.sleep(0.5)
            return await super().handle_DATA(server, session, envelope)

    box = Box()
    port = free_port()
    controller = Controller(SlowRelay(box), hostname="127.0.0.1", port=port)
    controller.start()
    relay = settings.model_copy(update={"smtp_relay": f"smtp://127.0.0.1:{port}"})
    lead = add_lead(store, "ann@example.com", {})
    oid = queue(store, lead, "ebook_delivery", flow="ebook_nurture", step="deliver")

    async def main() -> None:
        runtime = await start_runtime(store, relay, interval=0.2, send_interval=0.1)
        try:
            for _ in range(200):
                if row(store, oid).state == "sending":
                    break
                await asyncio.sleep(0.01)
            assert row(store, oid).state == "sending"
        finally:
            await runtime.stop()

    try:
        asyncio.run(main())
    finally:
        controller.stop()
    assert len(box.messages) == 1
    assert row(store, oid).state == "sent"
