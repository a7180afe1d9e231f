"""`flowbuilder worker`: one process of a fleet that shares one store (PostgreSQL), on any host.

A worker runs the **engine** (the tick: events, lead rules, time triggers, due enrollments), the
**sender** (draining the outbox over SMTP), or both (`all`). Any number of them may run at once:

- every pass claims its rows in batches with `FOR UPDATE SKIP LOCKED`, so workers never wait for
  each other's batches, and a batch is decided and written in the transaction that claimed it;
  the server ends a worker's session once it is idle in a transaction for longer than the lease
  (`FLOWBUILDER_CLAIM_LEASE_SECONDS`), and a killed worker's connection closes at once — either
  way its rows go back to the others (decision 0004);
- a worker that stops in the middle of a statement (a paused VM, a stopped process) is not idle
  to the server, so every worker on PostgreSQL also ends, a few times per lease, the sessions
  that have waited on their worker longer than the lease (`flowbuilder.store.leases`);
- the sender's rows carry a lease (`leased_until`) that another sender takes over when it runs
  out;
- the periodic passes (time triggers, population ranks, new rules) are claimed through their
  clock rows, one worker at a time;
- APScheduler runs the tick every `interval` seconds and the sender every `send_interval`
  seconds, never overlapping themselves; on PostgreSQL a worker also `LISTEN`s for new events and
  new messages (`flowbuilder.wakeups`) and runs the matching loop at once — wake-ups that arrive
  while the loop is busy collapse into one more pass.

SIGTERM (or Ctrl-C) makes the worker not ready, stops the tick after the batch in progress has
committed and the sender after the messages in flight, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine

from flowbuilder.config import Settings
from flowbuilder.health import Check, Endpoints, HttpServer, liveness, readiness, serve_endpoints
from flowbuilder.observability import MEASURES, store_registry
from flowbuilder.runtime.tick import BATCH, TickStats, tick
from flowbuilder.wakeups import EVENTS, OUTBOX, Listener

log = logging.getLogger("flowbuilder.worker")

# The sender drains this many batches between looks at whether the worker is stopping.
DRAIN_BATCHES = 5


class Role(StrEnum):
    engine = "engine"
    sender = "sender"
    all = "all"


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WorkerOptions:
    role: Role = Role.all
    interval: float = 5.0  # seconds between ticks
    send_interval: float = 1.0  # seconds between passes of the sender
    batch: int = BATCH  # enrollments or events per claim
    coalesce: float = 0.05  # seconds a wake-up waits for more of a burst
    stall: float = 300.0  # seconds without progress before /healthz fails
    metrics: tuple[str, int] | None = None  # where /metrics, /healthz and /readyz listen
    name: str = field(default_factory=default_name)
    wake: bool = True  # LISTEN for wake-ups (PostgreSQL)

    @property
    def ticks(self) -> bool:
        return self.role in (Role.engine, Role.all)

    @property
    def sends(self) -> bool:
        return self.role in (Role.sender, Role.all)


@dataclass
class _Loop:
    """One periodic job: whether it runs, whether a wake-up is pending, and its task."""

    name: str
    running: bool = False
    woken: bool = False
    scheduled: bool = False
    failures: int = 0
    task: asyncio.Task[None] | None = None


class Worker:
    """The loops of one worker process on the running event loop (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        options: WorkerOptions,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.options = options
        self.clock = clock
        self.loops: dict[str, _Loop] = {}
        if options.ticks:
            self.loops["tick"] = _Loop("tick")
        if options.sends:
            self.loops["send"] = _Loop("send")
        self.stopping = False
        self.http: HttpServer | None = None
        self._runtime: Any = None  # flowbuilder.mail.runtime.Runtime, when sending
        self._listener: Listener | None = None
        self._scheduler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._started: float | None = None

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        o = self.options
        self._loop = asyncio.get_running_loop()
        self._started = time.time()
        if o.metrics is not None:
            endpoints = Endpoints(store_registry(self.engine), self.health, self.ready)
            self.http = serve_endpoints(endpoints, *o.metrics)
        if o.sends:
            from flowbuilder.mail.runtime import Runtime

            self._runtime = Runtime(self.engine, self.settings)
            await self._runtime.start_mail()
        scheduler = AsyncIOScheduler(event_loop=self._loop, timezone=UTC)
        jobs = {"tick": (self._tick_job, o.interval), "send": (self._send_job, o.send_interval)}
        for name in self.loops:
            job, every = jobs[name]
            scheduler.add_job(
                job,
                "interval",
                seconds=every,
                # Workers started together spread their ticks instead of arriving in step.
                jitter=every / 5,
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=self.clock(),
            )
        if self.postgresql:
            lease = self.settings.claim_lease_seconds
            scheduler.add_job(
                self._reap_job,
                "interval",
                seconds=max(0.5, lease / 4),
                id="reap",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler
        if o.wake and self.postgresql:
            self._listener = Listener(
                self.engine, self._heard, on_error=lambda: MEASURES.failed("listener")
            )
            self._listener.start()
        where = ""
        if o.metrics is not None and self.http is not None:
            where = f"; metrics on {o.metrics[0]}:{self.http.port}"
        log.info(
            "worker %s started: %s%s",
            o.name,
            o.role.value,
            where,
            extra={"action": "start", "worker": o.name, "role": o.role.value},
        )

    async def stop(self) -> None:
        """Finish the batch and the sends in progress, then stop everything."""
        self.stopping = True
        self._stop.set()
        scheduler = self._scheduler
        if scheduler is not None:
            # No new runs; the runs under way finish first (APScheduler's shutdown would cancel
            # them: a send cut mid-conversation stays `sending` until its lease runs out).
            scheduler.pause()
        await asyncio.sleep(0)  # a run submitted a moment ago starts, sees `stopping`, returns
        while running := [loop.task for loop in self.loops.values() if loop.task is not None]:
            await asyncio.gather(*running, return_exceptions=True)
            await asyncio.sleep(0)
        if scheduler is not None:
            scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._runtime is not None:
            await self._runtime.stop()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self.http is not None:
            await asyncio.to_thread(self.http.stop)
        log.info("worker %s stopped", self.options.name, extra={"action": "stop"})

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # -- health --------------------------------------------------------------------------------

    def health(self) -> Check:
        return liveness(
            {
                name: (MEASURES.last_progress(name) or self._started, self._stall(name))
                for name in sorted(self.loops)
            }
        )

    def _stall(self, name: str) -> float:
        every = self.options.interval if name == "tick" else self.options.send_interval
        return max(self.options.stall, 3 * every)

    def ready(self) -> Check:
        return readiness(self.engine, stopping=self.stopping or self._scheduler is None)

    # -- wake-ups ------------------------------------------------------------------------------

    def _heard(self, what: str) -> None:
        """A notification (on the listener's thread): wake the loop that has new work."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            name = {EVENTS: "tick", OUTBOX: "send"}[what]
            loop.call_soon_threadsafe(self.wake, name)

    def wake(self, name: str) -> None:
        """Run the loop `name` soon: at once when idle, or once more when it finishes."""
        state = self.loops.get(name)
        if state is None or self.stopping or self._scheduler is None:
            return
        MEASURES.woken(name)
        if state.running:
            state.woken = True
        elif not state.scheduled:
            state.scheduled = True
            when = self.clock() + timedelta(seconds=self.options.coalesce)
            self._scheduler.modify_job(name, next_run_time=when)

    # -- the loops -----------------------------------------------------------------------------

    async def _run(self, state: _Loop, once: Callable[[], Any]) -> None:
        """One run of a job: passes until no wake-up came in meanwhile; a failure is logged,
        counted and tried again after a back-off (it rolled back: nothing is lost)."""
        state.running, state.scheduled = True, False
        state.task = asyncio.current_task()
        try:
            while not self.stopping:
                state.woken = False
                try:
                    await once()
                    state.failures = 0
                except Exception as e:
                    state.failures += 1
                    MEASURES.failed(state.name)
                    every = self.options.interval if state.name == "tick" else 1.0
                    pause = min(every, 0.25 * 2 ** min(state.failures, 8))
                    log.warning(
                        "the %s pass failed (%s); trying again in %.2f s",
                        state.name,
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        pause,
                        exc_info=state.failures > 3,
                        extra={"action": state.name, "failures": state.failures},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), pause)
                    continue
                if not state.woken:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.options.coalesce)
        finally:
            state.running = False
            state.task = None

    async def _tick_job(self) -> None:
        await self._run(self.loops["tick"], self._tick_once)

    async def _tick_once(self) -> None:
        stats: TickStats = await asyncio.to_thread(
            tick,
            self.engine,
            self.clock(),
            batch=self.options.batch,
            should_stop=lambda: self.stopping,
        )
        if stats.decided or stats.events or stats.classified:
            log.info("tick: %s", stats, extra={"action": "tick", **asdict(stats)})
        if stats.sends and "send" in self.loops:
            self.wake("send")

    async def _reap_job(self) -> None:
        from flowbuilder.store.leases import end_stalled_claims

        try:
            ended = await asyncio.to_thread(
                end_stalled_claims, self.engine, self.settings.claim_lease_seconds
            )
        except Exception as e:  # the next run tries again; the work loops do not depend on it
            MEASURES.failed("reap")
            log.warning("ending stalled sessions failed: %s", e, extra={"action": "reap"})
            return
        for session in ended:
            MEASURES.stalled.inc()
            log.warning(
                "ended session %s of %s: it held a claim longer than the %.0f s lease",
                session.pid,
                session.application,
                self.settings.claim_lease_seconds,
                extra={"action": "reap", "pid": session.pid, "session": session.application},
            )

    async def _send_job(self) -> None:
        await self._run(self.loops["send"], self._send_once)

    async def _send_once(self) -> None:
        sender = self._runtime.sender
        while True:
            stats = await sender.drain(max_batches=DRAIN_BATCHES)
            MEASURES.sent(stats)
            if stats.claimed:
                log.info(
                    "send: %s",
                    stats,
                    extra={"action": "send", **{k: v for k, v in vars(stats).items()}},
                )
            if self.stopping or stats.claimed < DRAIN_BATCHES * sender.options.batch:
                return


def run_worker(engine: Engine, settings: Settings, options: WorkerOptions) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopper(signum: signal.Signals) -> None:
            log.info(
                "received %s; finishing the batch in progress",
                signum.name,
                extra={"action": "stop"},
            )
            stop.set()

        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stopper, s)
        try:
            await Worker(engine, settings, options).serve(stop)
        finally:
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(s)

    asyncio.run(main())
