"""The whole runtime in one event loop: the tick, the sender, the sink and the inbound receiver.

APScheduler 3.11's `AsyncIOScheduler` runs two periodic jobs, neither ever overlapping itself and
missed runs coalesced: the **tick** (in a worker thread, as it is synchronous database work) and
the **send** job (on the loop: it drains the outbox over the SMTP pool). Without a relay
configured, the built-in sink listens on `sink_listen` and the sender delivers to it; with
`inbound_listen` set, the bounce / reply receiver listens there too.

Inside a program that has its own event loop (the web app):

```python
runtime = await start_runtime(engine, settings)   # returns once everything listens
...
await runtime.stop()                              # the tick and the send in progress finish
```

From a program without one, in a thread of its own:

```python
thread = start_runtime_thread(engine, settings)
...
thread.stop()
```
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from flowbuilder.config import Settings
from flowbuilder.mail.inbound import InboundHandler
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SendStats, mail_config
from flowbuilder.mail.sink import SinkHandler, parse_listen, serve
from flowbuilder.runtime.tick import BATCH, TickStats, tick

log = logging.getLogger("flowbuilder.runtime")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """The tick, the sender and the SMTP servers of one process (see the module docstring)."""

    engine: Engine
    settings: Settings
    interval: float = 5.0
    send_interval: float = 1.0
    batch: int = BATCH
    on_tick: Callable[[TickStats], None] | None = None
    on_send: Callable[[SendStats], None] | None = None
    sender: Sender | None = None
    relay: Relay | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    _scheduler: object | None = None
    _tick_lock: threading.Lock = field(default_factory=threading.Lock)
    _draining: asyncio.Task[SendStats] | None = None

    async def start_mail(self) -> None:
        """The sink (without a relay), the inbound receiver (when configured) and the sender."""
        s = self.settings
        if s.smtp_relay:
            self.relay = Relay.parse(s.smtp_relay)
        else:
            host, port = parse_listen(s.sink_listen, "FLOWBUILDER_SINK_LISTEN")
            try:
                sink = await serve(SinkHandler(self.engine), host, port)
                self.servers.append(sink)
                port = sink.sockets[0].getsockname()[1]  # the port it took, when asked for 0
                log.info("no relay configured: capturing mail in the sink on %s:%d", host, port)
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                # Another runtime of this host (a second worker) already listens there: its sink
                # captures this runtime's mail as well.
                log.warning(
                    "the sink address %s:%d is in use; sending to the sink there", host, port
                )
            self.relay = Relay(host, port)
        if s.inbound_listen:
            host, port = parse_listen(s.inbound_listen, "FLOWBUILDER_INBOUND_LISTEN")
            handler = InboundHandler(self.engine, mail_config(s))
            self.servers.append(await serve(handler, host, port))
        self.sender = Sender(self.engine, s, self.relay)

    async def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        await self.start_mail()
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.interval,
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        scheduler.add_job(
            self._send,
            "interval",
            seconds=self.send_interval,
            id="send",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        scheduler.start()
        self._scheduler = scheduler

    def _tick(self) -> None:
        with self._tick_lock:
            stats = tick(self.engine, utcnow(), batch=self.batch)
        if self.on_tick is not None:
            self.on_tick(stats)

    async def _send(self) -> None:
        assert self.sender is not None
        self._draining = asyncio.current_task()
        try:
            stats = await self.drain()
        except Exception:
            log.exception("the send job failed; it runs again at the next interval")
            return
        finally:
            self._draining = None
        if self.on_send is not None and stats.claimed:
            self.on_send(stats)

    async def drain(self) -> SendStats:
        """One pass of the sender over everything due."""
        assert self.sender is not None
        return await self.sender.drain()

    async def stop(self) -> None:
        """Stop the jobs; the tick and the send in progress finish and commit first."""
        scheduler = self._scheduler
        if scheduler is not None:
            # No new runs; the runs under way finish first. (APScheduler's shutdown cancels the
            # coroutine jobs in progress: a send cut there would stay `sending` until its lease
            # ran out and then go out again.)
            scheduler.pause()  # type: ignore[attr-defined]
        await self._settle()
        await asyncio.to_thread(self._tick_lock.acquire)
        self._tick_lock.release()
        await self._settle()
        if scheduler is not None:
            scheduler.shutdown(wait=False)  # type: ignore[attr-defined]
            self._scheduler = None
        if self.sender is not None:
            await self.sender.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.servers.clear()

    async def _settle(self) -> None:
        """Wait until no send is in progress (one submitted a moment ago starts and finishes)."""
        await asyncio.sleep(0)
        while (draining := self._draining) is not None:
            await asyncio.gather(draining, return_exceptions=True)
            await asyncio.sleep(0)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


async def start_runtime(engine: Engine, settings: Settings, **options: object) -> Runtime:
    """Start the runtime on the running event loop; `await runtime.stop()` ends it."""
    runtime = Runtime(engine, settings, **options)  # type: ignore[arg-type]
    await runtime.start()
    return runtime


@dataclass
class RuntimeThread:
    """The runtime on an event loop of its own, in a daemon thread."""

    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    stopping: asyncio.Event
    runtime: Runtime

    def stop(self, timeout: float = 60.0) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout)


def start_runtime_thread(engine: Engine, settings: Settings, **options: object) -> RuntimeThread:
    """Start the runtime in a new thread; returns once it is running (or raises why it could not)."""
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    runtime = Runtime(engine, settings, **options)  # type: ignore[arg-type]
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await runtime.start()
        except BaseException as e:
            failure.append(e)
            started.set()
            return
        started.set()
        try:
            await stopping.wait()
        finally:
            await runtime.stop()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="flowbuilder-runtime", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    return RuntimeThread(thread, loop, stopping, runtime)
