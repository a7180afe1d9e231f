"""`flowbuilder run`: APScheduler 3.11 runs the tick and the sender; there are no per-lead jobs.

Both jobs never overlap themselves (`max_instances=1`) and missed runs collapse into one
(`coalesce`): the tick every `interval` seconds, the send job (draining the outbox over SMTP, or
into the built-in sink when no relay is configured) every `send_interval` seconds. SIGTERM and
SIGINT stop the scheduler after the tick and the send in progress commit. The same runtime can run
inside another program: see `flowbuilder.mail.runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from sqlalchemy import Engine

from flowbuilder.config import Settings
from flowbuilder.runtime.tick import BATCH, TickStats

log = logging.getLogger("flowbuilder.runtime")


def utcnow() -> datetime:
    return datetime.now(UTC)


_early_stop = threading.Event()


def stop_early_on_signals() -> None:
    """Remember a SIGTERM / SIGINT that arrives while the runtime is still starting, so that it
    stops as soon as it has started instead of dying half-way."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        _early_stop.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, handler)


def run_forever(
    engine: Engine,
    *,
    interval: float = 5.0,
    batch: int = BATCH,
    on_tick: Callable[[TickStats], None] | None = None,
    settings: Settings | None = None,
    send_interval: float = 1.0,
    on_send: Callable[[object], None] | None = None,
) -> None:
    """Tick every `interval` seconds and send every `send_interval` seconds until SIGTERM / SIGINT."""
    from flowbuilder.mail.runtime import Runtime

    runtime = Runtime(
        engine,
        settings or Settings.from_env(),
        interval=interval,
        send_interval=send_interval,
        batch=batch,
        on_tick=on_tick,
        on_send=on_send,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, _stopper(s, stop))
        if _early_stop.is_set():
            stop.set()
        try:
            await runtime.serve(stop)
        finally:
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(s)

    asyncio.run(main())


def _stopper(signum: signal.Signals, stop: asyncio.Event) -> Callable[[], None]:
    def handler() -> None:
        log.info("received %s; finishing the current tick and send", signum.name)
        stop.set()

    return handler
