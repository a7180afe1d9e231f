"""The sender: drains the outbox over a pool of SMTP connections.

One drain claims due email rows in batches, checks each at send time (`gate`), builds it
(`message.Composer`) and hands it to one of `connections` SMTP sessions to the relay, paced per
recipient domain (`pace`: a batch's slots are reserved in the store when it is claimed, so every
sender of the store keeps to one rate per domain):

- claiming, the reads of the send-time checks and the checks run in a worker thread (the
  database releases the interpreter while it works); only the messages the checks let go take
  a slot of their domain's pace, so held or deferred ones slow no one down; building runs on the event loop in slices of about one
  message, so the connections' replies are answered between messages instead of waiting for
  a thread's turn;
- RSA DKIM signatures are made in a worker thread, a slice's messages at a time: OpenSSL signs
  without holding the interpreter, so the loop goes on building and answering the relay;
- each connection takes a lot of up to `lot` messages; the payloads of a lot are marked
  (`data_started_at`) in a committed transaction before any of them goes out, and the next lot is
  marked while the current one is sent. Marks of all connections are committed together (group
  commit), and so are results: one transaction for many messages;
- a lot goes out as one `smtp.Session.send`: aiosmtplib opens the session (TLS, EHLO, AUTH), and
  each reply is answered from the protocol's callback, without a task switch between commands or
  between the messages of the lot; a relay that announces PIPELINING gets a transaction's
  commands at once, and each payload with the next message's commands.

That mark is the line between "safe to send again" and "may have been delivered":

- a refusal before DATA, or a connection lost before the relay asked for the message (its 354
  reply to DATA; until then nothing of it was transferred) → sent again later (exponential
  back-off after a 4xx, and the recipient's domain is slowed down);
- a 5xx → `failed` for good; a refused recipient is a hard bounce, which suppresses the address;
- a relay that answers DATA with a success code but not 354 (RFC 5321 allows only 354 there)
  never asked for the message: the session is closed and the message sent again later;
- a connection lost after the 354 → `unknown` (`unknown_policy = "hold"`, for review) or sent
  again (`"retry"`, marked `uncertain`: it may arrive twice);
- once the relay answered, the result never sends the message again because its bookkeeping
  failed (an accepted message is `sent`, if need be without its `delivery` event);
- a sender that dies leaves its marked rows to become `unknown` when their lease runs out — at
  most two lots per connection that had not gone out yet among them — and its unmarked rows to be
  sent again. So does a connection task that dies of an unexpected error: the drain then stops
  and raises `DrainError`, the other connections finish the lots they took, and the rows no
  connection took go back to the outbox. A journal task (the one that writes marks and results)
  that dies stops the drain the same way, with `DrainError`; as nothing can be written any
  more, every row of the drain without a written result waits for its lease, and no connection
  sends a lot whose mark was not written.

Addresses that are not ASCII go as RFC 6531 says: an internationalized domain in its ASCII form
(IDNA) in the envelope and the To: header; a local part that is not ASCII with SMTPUTF8 (and a
UTF-8 To: header, RFC 6532) when the relay offers it, else that message `failed`. A message that
cannot be built fails alone, with the reason; it never stops the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import aiosmtplib
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.config import Settings
from flowbuilder.mail import consent as consents
from flowbuilder.mail import outbox, snapshot
from flowbuilder.mail.classify import bounce_kind, enhanced_status
from flowbuilder.mail.consent import Consent
from flowbuilder.mail.gate import Recipient, Verdict, judge
from flowbuilder.mail.message import Composer, MailConfig, Outgoing, Spec
from flowbuilder.mail.outbox import Claimed, Result, event_key, mail_event
from flowbuilder.mail.pace import Pace, recipient_domain
from flowbuilder.mail.personalize import LeadView
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sandbox import RenderError
from flowbuilder.mail.signing import DkimKey, DkimKeyError, Unsigned
from flowbuilder.mail.smtp import Dropped, NeedsSmtpUtf8, Outcome, Refused, Session, payload
from flowbuilder.mail.templates import TemplateSet
from flowbuilder.store.bulk import among
from flowbuilder.store.db import reading
from flowbuilder.store.facts import LEAD_COLUMNS
from flowbuilder.store.published import current
from flowbuilder.store.schema import FlowVersion, Lead, Membership, Preference, Suppression
from flowbuilder.store.schema import Outbox as OutboxRow
from flowbuilder.store.writes import insert_ignoring

log = logging.getLogger("flowbuilder.mail.sender")

# Building yields to the event loop after this long, so replies waiting on the connections are read.
# About one message: a connection waits for a reply to each group of commands (to each command
# where the relay does not pipeline), and a reply left waiting behind a longer slice leaves the
# relay idle (without pipelining, 0.5 ms gave 5–6% fewer messages a second).
SLICE_SECONDS = 0.0001
# Signatures handed to the signing thread at once, unless the connections run short sooner.
SIGN_GROUP = 16


class _Lead(NamedTuple):
    """What the send-time checks and the render read of a lead. Read as a plain tuple in the
    reading thread: a database row's fields by name cost twenty times more on the event loop."""

    id: int
    email: str
    attributes: dict[str, Any] | None
    stage: str | None
    score: float
    tags: list[Any] | None
    timezone: str | None
    account: str | None
    unsubscribed: bool


class _Preference(NamedTuple):
    lead_id: int
    topics_off: list[Any] | None
    frequency: str


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SendStats:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    held: int = 0
    failed: int = 0
    unknown: int = 0

    def add(self, state: str) -> None:
        field_name = {"pending": "deferred"}.get(state, state)
        setattr(self, field_name, getattr(self, field_name) + 1)

    def __str__(self) -> str:
        return (
            f"{self.sent} sent, {self.deferred} deferred, {self.held} held, "
            f"{self.failed} failed, {self.unknown} unknown"
        )


class JournalFailed(RuntimeError):
    """A mark that was never written: the journal task died (the cause is its error)."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(f"the journal task failed: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


class DrainError(RuntimeError):
    """A drain that stopped because one of its tasks — a connection task or the journal task —
    failed unexpectedly (the cause is the error). `stats` tells what had been done; the rows the
    failed task held (every row without a written result, for the journal) stay claimed until
    their lease runs out, and are then sent again or, if marked, left `unknown`."""

    def __init__(self, message: str, stats: SendStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(frozen=True)
class SenderOptions:
    connections: int = 4
    batch: int = 200
    lot: int = 8  # messages a connection marks at once, and sends before marking more
    rate_per_domain: float = 10.0
    max_attempts: int = 8
    retry_seconds: float = 60.0
    lease_seconds: float = 60.0
    retry_unknown: bool = False
    timeout: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> SenderOptions:
        return cls(
            connections=settings.smtp_connections,
            rate_per_domain=settings.send_rate_per_domain,
            max_attempts=settings.send_max_attempts,
            retry_seconds=settings.send_retry_seconds,
            lease_seconds=settings.send_lease_seconds,
            retry_unknown=settings.unknown_policy == "retry",
        )


def mail_config(settings: Settings) -> MailConfig:
    dkim = None
    if settings.dkim_key is not None:
        if not (settings.dkim_selector and settings.dkim_domain):
            raise ValueError(
                "FLOWBUILDER_DKIM_KEY is set: set FLOWBUILDER_DKIM_SELECTOR and FLOWBUILDER_DKIM_DOMAIN too"
            )
        try:
            dkim = DkimKey.load(settings.dkim_key, settings.dkim_selector, settings.dkim_domain)
        except DkimKeyError as e:
            raise ValueError(f"FLOWBUILDER_DKIM_KEY: {e}") from None
    return MailConfig(
        public_url=settings.public_url,
        secret=settings.secret(),
        bounce_domain=settings.bounce_domain,
        reply_domain=settings.reply_domain,
        dkim=dkim,
    )


def workspace_folder(conn: Connection, settings: Settings) -> Path:
    """Where the template files of a publication without a snapshot are read: the setting, else
    the folder the flows were published from."""
    if settings.workspace is not None:
        return settings.workspace
    paths = [Path(p) for (p,) in conn.execute(select(FlowVersion.path).distinct()) if p]
    if not paths:
        return Path(".")
    parents = [p.parent.resolve() for p in paths]
    common = parents[0]
    for p in parents[1:]:
        while common not in (p, *p.parents):
            common = common.parent
    return common


@dataclass
class _Prepared:
    row: Claimed
    out: Outgoing | None = None
    result: Result | None = None
    consent_id: int | None = None
    basis: str = ""  # why it may be sent: the consent record relied on, or why none is needed
    domain: str = ""
    slot: float = 0.0  # when its domain's pace lets it go (seconds since the epoch)


@dataclass
class _Batch:
    """One claimed batch and what its send-time checks read, in one read transaction."""

    rows: list[Claimed]
    ws: ir.Workspace
    composer: Composer
    leads: dict[int, _Lead]
    suppressed: dict[str, str]
    prefs: dict[int, _Preference]
    lists: dict[int, set[str]]
    marketing: dict[int, Consent]
    night: dict[int, Consent]
    last_sent: dict[int, datetime | None]
    # The pace of the recipients' domains (`mail.pace`): each row's slot, or, for a row that got
    # none within the horizon, when its domain is free; the domains whose rate a 4xx lowered.
    slots: dict[int, float] = field(default_factory=dict)
    later: dict[int, tuple[str, float]] = field(default_factory=dict)
    slowed: set[str] = field(default_factory=set)
    # Each row's send-time check (`Sender._check`): the verdict to send it, or its result (failed,
    # held or deferred), which needs no slot of its domain's pace.
    checked: dict[int, Verdict | Result] = field(default_factory=dict)


@dataclass
class _Journal:
    """Group commit of data marks and results: one transaction per round, whatever the number.

    A mark is written within a millisecond, with the marks of the other connections that come
    meanwhile, unless it says by when it is needed (`mark`'s `by`): the mark of a connection's
    next lot, made while the current one goes out, waits for company until then, and at most
    `patience` seconds. A mark a connection waits on (`hurry`) is written at once. Results wait
    up to `patience` seconds for company."""

    engine: Engine
    clock: Callable[[], datetime] = utcnow
    patience: float = 0.01
    marks: list[tuple[list[tuple[int, str]], asyncio.Future[None]]] = field(default_factory=list)
    due: float = math.inf  # the event loop's time of the next write
    urgent: bool = False  # a connection waits on a mark
    writing: list[tuple[list[tuple[int, str]], asyncio.Future[None]]] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    suppress: dict[str, str] = field(default_factory=dict)
    pace: Pace | None = None
    slowed: dict[str, float] = field(default_factory=dict)  # domain → seconds paused, after a 4xx
    succeeded: dict[str, int] = field(default_factory=dict)  # domain (rate lowered) → successes
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    closing: bool = False
    failure: BaseException | None = None  # the task died of it: nothing is written any more
    on_failure: Callable[[BaseException], None] | None = None

    def start(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Start the task that writes; `on_failure` is called if it dies."""
        self.on_failure = on_failure
        self.task = asyncio.create_task(self._run(), name="flowbuilder-mail-journal")
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The task ended: unless it was closed, it died (an error outside the guarded write,
        or cancelled). Every mark waited on fails — its rows may not go out, and stay claimed
        for their lease — and the drain is told (`on_failure`)."""
        if self.closing and not task.cancelled() and task.exception() is None:
            return
        error: BaseException = (
            asyncio.CancelledError("the journal task was cancelled")
            if task.cancelled()
            else task.exception() or RuntimeError("the journal task ended")
        )
        self.failure = error
        log.error(
            "the journal task failed; the rows of this drain wait for their lease",
            exc_info=error,
            extra={"action": "journal"},
        )
        self._fail_marks()
        if self.on_failure is not None:
            self.on_failure(error)

    def _fail_marks(self) -> None:
        marks, self.marks, self.writing = self.writing + self.marks, [], []
        for _, f in marks:
            if not f.done():
                f.set_exception(JournalFailed(self.failure))
        self.results.clear()
        self.suppress.clear()
        self.slowed.clear()
        self.succeeded.clear()

    def mark(self, rows: list[tuple[int, str]], *, by: float | None = None) -> asyncio.Future[None]:
        """Mark these rows (outbox id, Message-ID): the future is done once committed. With
        `by`, a time of the event loop's clock, the mark may wait for company until then
        (`hurry` when it is waited on sooner). Once the task has died, the future fails with
        `JournalFailed`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.failure is not None:
            future.set_exception(JournalFailed(self.failure))
            return future
        self.marks.append((rows, future))
        now = loop.time()
        self._write_by(now if by is None else min(by, now + self.patience))
        return future

    def hurry(self) -> None:
        """A connection waits on a mark: write now, without waiting for company."""
        self.urgent = True
        self._write_by(-math.inf)

    def result(self, r: Result) -> None:
        if self.failure is not None:
            return  # never written: the row waits for its lease
        self.results.append(r)
        if len(self.results) >= 256:
            self._write_by(-math.inf)
        elif len(self.results) == 1:
            self._write_by(asyncio.get_running_loop().time() + self.patience)

    def _write_by(self, when: float) -> None:
        if when < self.due:
            self.due = when
            self.wake.set()  # the task waits for a later time

    async def flush(self) -> None:
        while (self.marks or self.results) and self.failure is None:
            self._write_by(-math.inf)
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        """Write what is left and stop; after the task died (`failure`), nothing is written."""
        await self.flush()
        self.closing = True
        self.wake.set()
        if self.task is not None and self.failure is None:
            await asyncio.wait({self.task})  # a death while closing is `_ended`'s to report

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            wait = self.due - loop.time()
            if wait > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), min(wait, 0.05))
                if self.due > loop.time() and not self.closing:
                    continue  # woken for an earlier time, or nothing to write yet
            # A millisecond gathers the marks of the other connections into the same commit,
            # unless a connection waits.
            if not self.urgent:
                await asyncio.sleep(0.001)
            self.urgent, self.due = False, math.inf
            marks, self.marks = self.marks, []
            self.writing = marks  # failed by `_ended` if the task dies while they are written
            results, self.results = self.results, []
            suppress, self.suppress = self.suppress, {}
            paces, self.slowed, self.succeeded = (self.slowed, self.succeeded), {}, {}
            if not (marks or results):
                continue
            try:
                await asyncio.to_thread(
                    self._write, [m for rows, _ in marks for m in rows], results, suppress, paces
                )
            except Exception as e:  # the store is down: nothing marked, nothing may go out
                log.exception("cannot write to the store", extra={"action": "journal"})
                for _, f in marks:
                    if not f.done():
                        f.set_exception(e)
                self.writing = []
                continue
            for _, f in marks:
                if not f.done():
                    f.set_result(None)
            self.writing = []

    def _write(
        self,
        marks: list[tuple[int, str]],
        results: list[Result],
        suppress: dict[str, str],
        paces: tuple[dict[str, float], dict[str, int]] = ({}, {}),
    ) -> None:
        now = self.clock()
        slowed, succeeded = paces
        with self.engine.begin() as conn:
            outbox.mark_data(conn, marks, now)
            outbox.finish(conn, results, now)
            insert_ignoring(
                conn,
                Suppression.__table__,  # type: ignore[arg-type]
                [{"email": e, "reason": r, "at": now} for e, r in sorted(suppress.items())],
            )
            if self.pace is not None and (slowed or succeeded):
                self.pace.adjust(conn, slowed=slowed, succeeded=succeeded, now=time.time())


@dataclass
class _Run:
    """One drain: the messages ready for the connections, and what is still on its way."""

    journal: _Journal
    stats: SendStats
    connections: int
    ready: deque[_Prepared] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    # Claimed rows without a result yet, and those of them a connection task took.
    in_flight: dict[int, Claimed] = field(default_factory=dict)
    taken: set[int] = field(default_factory=set)
    later: list[asyncio.TimerHandle] = field(default_factory=list)
    outstanding: int = 0  # handed to the connections (now or after pacing), not yet done
    closing: bool = False
    failure: BaseException | None = None  # a connection task (or the journal) died of it
    failed: str = "a connection task"

    def put(self, p: _Prepared) -> None:
        self.ready.append(p)
        self.arrived.set()

    def take_now(self, most: int) -> list[_Prepared]:
        """Up to `most` ready messages, sharing what is ready among the connections."""
        if self.failure is not None:
            return []
        n = min(most, max(1, len(self.ready) // self.connections), len(self.ready))
        lot = [self.ready.popleft() for _ in range(n)]
        self.taken.update(p.row.id for p in lot)
        return lot

    async def take(self, most: int) -> list[_Prepared] | None:
        """The next lot, waiting for one; None once the drain is over or has failed."""
        while not self.ready:
            if self.closing or self.failure is not None:
                return None
            self.arrived.clear()
            await self.arrived.wait()
        return self.take_now(most) or None

    def close(self) -> None:
        self.closing = True
        self.arrived.set()

    def fail(self, error: BaseException, what: str = "a connection task") -> None:
        """A connection task (or the journal task, `what`) died: no lot is taken any more,
        and whoever waits on the connections gives up (`check`)."""
        if self.failure is None:
            self.failure = error
            self.failed = what
        self.arrived.set()
        self.progress.set()

    def check(self) -> None:
        if self.failure is not None:
            raise DrainError(
                f"{self.failed} failed: {type(self.failure).__name__}: {self.failure}",
                self.stats,
            ) from self.failure

    def record(self, p: _Prepared, result: Result) -> None:
        """A result of a row that never went to a connection (held, deferred, failed to build)."""
        self.journal.result(result)
        self.stats.add(result.state)
        self.in_flight.pop(p.row.id, None)
        self.taken.discard(p.row.id)

    def done(self, p: _Prepared, result: Result) -> None:
        self.record(p, result)
        self.outstanding -= 1
        self.progress.set()

    def untaken(self) -> list[Claimed]:
        """The rows without a result that no connection task took: never marked, never sent."""
        return [c for i, c in self.in_flight.items() if i not in self.taken]

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than `limit` messages are with the connections; raises
        `DrainError` once a connection task has died (its lot would never be done)."""
        self.check()
        while self.outstanding >= limit:
            self.progress.clear()
            await self.progress.wait()
            self.check()


def _not_asked(outcome: Refused) -> str:
    """Why a message whose DATA the relay answered with a success code other than 354 is sent
    again: that reply breaks RFC 5321 (§4.1.1.4, §4.3.2), the payload was not transferred, and
    the session is closed, as the relay's state is not known."""
    return (
        f"the relay answered DATA with {outcome} instead of 354: a protocol violation, "
        "the message was not sent"
    )


class Sender:
    """Drains the outbox to one relay. Use it inside a running event loop:

    ```python
    sender = Sender(engine, settings, Relay.parse("smtp://127.0.0.1:2526"))
    stats = await sender.drain()
    await sender.close()
    ```
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        relay: Relay,
        *,
        options: SenderOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        templates: TemplateSet | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.relay = relay
        self.options = options or SenderOptions.of(settings)
        self.config = mail_config(settings)
        self.clock = clock
        self.pace = Pace(self.options.rate_per_domain)
        # Domains this sender saw a 4xx from, or could not reach the relay for: until when it
        # holds their messages (seconds since the epoch).
        self._paused: dict[str, float] = {}
        self._slowed: set[str] = set()  # domains whose rate a 4xx lowered: successes count
        self._composer: tuple[int, Composer] | None = None
        self._fixed = Composer(templates, self.config) if templates is not None else None
        self._connections: list[Session | None] = [None] * self.options.connections
        self._lock = asyncio.Lock()
        self._signing: ThreadPoolExecutor | None = None

    # -- the drain ---------------------------------------------------------------------------

    async def drain(
        self, *, max_batches: int = 10_000, only: Sequence[int] | None = None
    ) -> SendStats:
        """Send everything due now (of `only`, when given); returns what happened to each.

        The next batch is claimed while the connections send the current one."""
        stats = SendStats()
        o = self.options
        async with self._lock:
            journal = _Journal(self.engine, self.clock, pace=self.pace)
            run = _Run(journal, stats, o.connections)
            journal.start(functools.partial(run.fail, what="the journal task"))
            workers = []
            for n in range(o.connections):
                worker = asyncio.create_task(
                    self._worker(n, run), name=f"flowbuilder-mail-smtp-{n}"
                )
                worker.add_done_callback(functools.partial(self._worker_ended, n, run=run))
                workers.append(worker)
            renewer = asyncio.create_task(self._renew(run), name="flowbuilder-mail-lease")
            # Enough built ahead that every connection has its next lot, no more.
            ahead = o.connections * o.lot * 3
            try:
                for _ in range(max_batches):
                    await run.wait_below(max(ahead, o.batch // 2))
                    batch = await asyncio.to_thread(self._claim_and_read, only)
                    if batch is None:
                        break
                    self._slowed = set(batch.slowed)  # as the store has it now
                    stats.claimed += len(batch.rows)
                    run.in_flight.update((r.id, r) for r in batch.rows)
                    await self._build(batch, run, ahead)
                    if len(batch.rows) < o.batch:
                        break
                await run.wait_below(1)
            finally:
                run.close()
                # The connection tasks finish the lots they took (their marks are committed);
                # one that died leaves its rows claimed, for their lease.
                await asyncio.gather(*workers, return_exceptions=True)
                renewer.cancel()
                for handle in run.later:
                    handle.cancel()
                # Claimed rows no connection took (a drain cut short): back to the outbox —
                # unless the journal died, which leaves them to their lease.
                why = "not sent: the drain stopped" + (
                    f" ({type(run.failure).__name__}: {run.failure})" if run.failure else ""
                )
                for c in run.untaken() if journal.failure is None else ():
                    run.record(_Prepared(c), self._retry(_Prepared(c), why))
                await journal.close()
            run.check()  # a connection task (or the journal) that died after its last lot
        return stats

    def _worker_ended(self, n: int, task: asyncio.Task[None], *, run: _Run) -> None:
        """A connection task that ended with an error: the drain stops, and the connection,
        maybe in the middle of a transaction, is closed."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        log.error(
            "connection task %s failed; its rows wait for their lease",
            n,
            exc_info=error,
            extra={"action": "send"},
        )
        self._drop(n)
        run.fail(error)

    async def _build(self, batch: _Batch, run: _Run, ahead: int) -> None:
        """Check and build each row of `batch`, handing it to the connections as it is ready.

        RSA signatures are made in a worker thread, where OpenSSL runs without holding the
        interpreter: the loop builds the next messages, and the connections keep sending,
        while they are signed. The messages built in one slice go to the thread together (one
        hand-over for several signatures); the rest of each DKIM header is written here."""
        now = self.clock()
        start = time.perf_counter()
        composer = batch.composer
        key = self.config.dkim
        offload = key is not None and key.algorithm == "rsa-sha256"
        signing: deque[tuple[list[tuple[_Prepared, Unsigned]], asyncio.Future[list[bytes]]]]
        signing = deque()
        group: list[tuple[_Prepared, Unsigned]] = []
        counts = [0]  # messages handed to the thread and not back yet
        hungry = self.options.connections * self.options.lot

        def hand_over() -> None:
            if group:
                assert key is not None
                future = asyncio.get_running_loop().run_in_executor(
                    self._signers(), key.signatures, [u.data for _, u in group]
                )
                signing.append((group.copy(), future))
                counts[0] += len(group)
                group.clear()

        for row in batch.rows:
            if run.outstanding + counts[0] + len(group) >= ahead:
                hand_over()
                counts[0] -= await self._signed(signing, run, wait=True)
                await run.wait_below(ahead)
                start = time.perf_counter()
            try:
                p = self._prepare(row, batch, now, sign=not offload)
            except Exception as e:  # one message that cannot be built never stops the drain
                log.exception("cannot build", extra={"action": "send", "outbox": row.id})
                p = _Prepared(row)
                p.result = Result(
                    row, "failed", f"not sent: cannot build it: {type(e).__name__}: {e}"
                )
            try:
                todo = composer.unsigned(p.out) if p.out is not None else None
            except Exception as e:  # never sent unsigned
                log.exception("cannot sign", extra={"action": "send", "outbox": p.row.id})
                p.out, p.result = None, Result(p.row, "failed", f"cannot sign with DKIM: {e}")
                todo = None
            if todo is not None:
                group.append((p, todo))
            else:
                self._dispatch(p, run)
            if signing and signing[0][1].done():
                counts[0] -= await self._signed(signing, run, wait=False)
            if len(group) >= SIGN_GROUP:
                hand_over()
            if time.perf_counter() - start > SLICE_SECONDS:
                if len(run.ready) < hungry:  # the connections are short of messages
                    hand_over()
                await asyncio.sleep(0)  # the replies waiting on the connections are read now
                start = time.perf_counter()
        hand_over()
        while signing:
            counts[0] -= await self._signed(signing, run, wait=True)

    async def _signed(
        self,
        signing: deque[tuple[list[tuple[_Prepared, Unsigned]], asyncio.Future[list[bytes]]]],
        run: _Run,
        *,
        wait: bool,
    ) -> int:
        """Hand the signed messages to the connections, in order; with `wait`, at least one
        group. Returns how many messages came back."""
        back = 0
        while signing and (wait or signing[0][1].done()):
            group, future = signing.popleft()
            wait = False
            back += len(group)
            try:
                signatures = await future
            except Exception as e:  # an unusable key shows on the first message: never sent
                log.exception("cannot sign", extra={"action": "send"})
                for p, _ in group:
                    p.out, p.result = None, Result(p.row, "failed", f"cannot sign with DKIM: {e}")
                    self._dispatch(p, run)
                continue
            for (p, todo), signature in zip(group, signatures, strict=True):
                assert p.out is not None
                p.out = Composer.signed(p.out, todo.header(signature))
                self._dispatch(p, run)
        return back

    def _signers(self) -> ThreadPoolExecutor:
        if self._signing is None:
            workers = max(1, min(4, (os.cpu_count() or 2) - 1))
            self._signing = ThreadPoolExecutor(workers, thread_name_prefix="flowbuilder-dkim")
        return self._signing

    def _claim_and_read(self, only: Sequence[int] | None) -> _Batch | None:
        now = self.clock()
        with self.engine.begin() as conn:
            rows = outbox.claim(
                conn,
                now,
                self.options.batch,
                timedelta(seconds=self.options.lease_seconds),
                retry_unknown=self.options.retry_unknown,
                only=only,
            )
        if not rows:
            return None
        batch = self._read(rows)
        batch.checked = {r.id: self._check(r, batch, now) for r in rows}
        self._reserve(batch)
        return batch

    def _reserve(self, b: _Batch) -> None:
        """Reserve the slot of each row the send-time checks let go in the pace of its
        recipient's domain, for every sender."""
        domains: list[tuple[int, str]] = []
        wanted: dict[str, int] = {}
        for r in b.rows:
            if not isinstance(b.checked.get(r.id), Verdict):
                continue  # failed, held or deferred: it takes no slot
            lead = b.leads.get(r.lead_id)
            address = r.recipient or (lead.email if lead is not None else None)
            if address:  # a row without one fails when it is built
                domain = recipient_domain(address)
                domains.append((r.id, domain))
                wanted[domain] = wanted.get(domain, 0) + 1
        with self.engine.begin() as conn:
            reserved = self.pace.reserve(
                conn, wanted, now=time.time(), horizon=self.options.lease_seconds / 4
            )
        taken = dict.fromkeys(reserved, 0)
        for row_id, domain in domains:
            slots = reserved[domain]
            if taken[domain] < len(slots.times):
                b.slots[row_id] = slots.times[taken[domain]]
                taken[domain] += 1
            else:
                b.later[row_id] = (domain, slots.next_free)
        b.slowed = {d for d, s in reserved.items() if s.slowed}

    def _dispatch(self, p: _Prepared, run: _Run) -> None:
        if p.result is not None:
            run.record(p, p.result)
            return
        wait = max(p.slot, self._paused.get(p.domain, 0.0)) - time.time()
        if wait > self.options.lease_seconds / 4:
            # Too long to hold a connection for: back to the outbox, due when the domain is.
            until = self.clock() + timedelta(seconds=wait)
            paced = Result(
                p.row, "pending", f"paced: {p.domain}", next_attempt_at=until, attempted=False
            )
            run.record(p, paced)
            return
        run.outstanding += 1
        if wait > 0:
            run.later.append(asyncio.get_running_loop().call_later(wait, run.put, p))
        else:
            run.put(p)

    async def _renew(self, run: _Run) -> None:
        """Keep the lease alive while in-flight sends drain. A renewal that fails (the store
        is unreachable for a moment) is tried again at the next turn: this task must not end,
        or the rows' leases would run out under the connections and another sender take them."""
        every = self.options.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            until = self.clock() + timedelta(seconds=self.options.lease_seconds)
            try:
                await asyncio.to_thread(self._renew_now, sorted(run.in_flight), until)
            except Exception:
                log.exception("cannot renew the lease", extra={"action": "send"})

    def _renew_now(self, ids: list[int], until: datetime) -> None:
        with self.engine.begin() as conn:
            outbox.renew(conn, ids, until)

    # -- preparing: send-time checks and building ----------------------------------------------

    def _read(self, rows: list[Claimed]) -> _Batch:
        with reading(self.engine) as conn:
            if self._fixed is not None:
                composer = self._fixed
            else:
                published = current(conn)
                ws = published.ws if published is not None else ir.Workspace()
                composer = self._composer_for(
                    conn, ws, published.publication_id if published else 0
                )
            # The ids go as one bound value (`among`): an IN list of a batch's hundreds of ids
            # costs more to compile than the query takes. Only the columns the checks and the
            # render read are loaded.
            ids = sorted({r.lead_id for r in rows})
            leads = {
                x[0]: _Lead(*x)
                for x in conn.execute(select(*LEAD_COLUMNS).where(among(conn, Lead.id, ids)))
            }
            emails = sorted(x.email for x in leads.values())
            suppressed = (
                dict(
                    conn.execute(
                        select(Suppression.email, Suppression.reason).where(
                            among(conn, Suppression.email, emails)
                        )
                    ).all()
                )
                if emails  # none when every lead of the batch is gone (an empty array has no type)
                else {}
            )
            prefs = {
                p[0]: _Preference(*p)
                for p in conn.execute(
                    select(Preference.lead_id, Preference.topics_off, Preference.frequency).where(
                        among(conn, Preference.lead_id, ids)
                    )
                )
            }
            lists: dict[int, set[str]] = {}
            for lead_id, name in conn.execute(
                select(Membership.lead_id, Membership.list_name).where(
                    among(conn, Membership.lead_id, ids)
                )
            ):
                lists.setdefault(lead_id, set()).add(name)
            marketing = consents.latest(conn, ids, "marketing")
            night = consents.latest(conn, ids, "night")
            slow = [i for i, p in prefs.items() if p.frequency != "all"]
            last_sent = (
                dict(
                    conn.execute(
                        select(OutboxRow.lead_id, func.max(OutboxRow.sent_at))
                        .where(
                            among(conn, OutboxRow.lead_id, slow),
                            OutboxRow.state == "sent",
                            OutboxRow.test.is_(False),
                        )
                        .group_by(OutboxRow.lead_id)
                    ).all()
                )
                if slow
                else {}
            )
        return _Batch(
            rows,
            composer.ws,
            composer,
            leads,
            suppressed,
            prefs,
            lists,
            marketing,
            night,
            last_sent,
        )

    def _check(self, row: Claimed, b: _Batch, now: datetime) -> Verdict | Result:
        """The send-time checks of a row (`gate.judge`), made when its batch is claimed: the
        verdict to send it, or its result — failed (no lead, no such template), held or
        deferred. A check that raises fails that row alone."""
        try:
            return self._judge(row, b, now)
        except Exception as e:
            log.exception("cannot check", extra={"action": "send", "outbox": row.id})
            return Result(row, "failed", f"not sent: cannot check it: {type(e).__name__}: {e}")

    def _judge(self, row: Claimed, b: _Batch, now: datetime) -> Verdict | Result:
        ws = b.ws
        lead = b.leads.get(row.lead_id)
        if lead is None:
            return Result(row, "failed", f"lead {row.lead_id} no longer exists")
        name = str(row.template or row.payload.get("template") or "")
        if not name or name not in ws.templates:
            known = ", ".join(sorted(ws.templates)) or "none"
            return Result(
                row,
                "failed",
                f"template `{name}` is not in the published workspace; templates: {known}",
            )
        template = ws.templates[name]
        flow = ws.flows.get(row.flow)
        pref = b.prefs.get(lead.id)
        who = Recipient(
            email=lead.email,
            timezone=lead.timezone,
            unsubscribed=lead.unsubscribed,
            suppressed=b.suppressed.get(lead.email),
            topics_off=frozenset(pref.topics_off or ()) if pref else frozenset(),
            frequency=pref.frequency if pref else "all",
            last_marketing_at=b.last_sent.get(lead.id),
            marketing_consent=b.marketing.get(lead.id),
            night_consent=b.night.get(lead.id),
        )
        verdict = judge(template, flow.kind if flow else "marketing", ws, who, now, test=row.test)
        if verdict.action == "hold":
            return Result(row, "held", verdict.reason)
        if verdict.action == "defer":
            return Result(
                row, "pending", verdict.reason, next_attempt_at=verdict.until, attempted=False
            )
        return verdict

    def _prepare(self, row: Claimed, b: _Batch, now: datetime, *, sign: bool = True) -> _Prepared:
        p = _Prepared(row)
        verdict = b.checked.get(row.id)
        if verdict is None:
            verdict = self._check(row, b, now)
        if isinstance(verdict, Result):
            p.result = verdict
            return p
        if row.id in b.later:  # the domain's pace has no slot for it within the horizon
            domain, free = b.later[row.id]
            due = self.clock() + timedelta(seconds=max(0.0, free - time.time()))
            p.result = Result(
                row, "pending", f"paced: {domain}", next_attempt_at=due, attempted=False
            )
            return p
        p.slot = b.slots.get(row.id, 0.0)
        lead = b.leads[row.lead_id]
        name = str(row.template or row.payload.get("template"))
        view = LeadView(
            id=lead.id,
            email=lead.email,
            attributes=lead.attributes or {},
            stage=lead.stage,
            score=lead.score,
            tags=frozenset(lead.tags or ()),
            lists=frozenset(b.lists.get(lead.id, ())),
            timezone=lead.timezone,
            account=lead.account,
        )
        spec = Spec(
            outbox_id=row.id,
            key=row.key,
            template=name,
            flow=row.flow,
            step=row.step,
            subject=row.payload.get("subject"),
            preheader=row.payload.get("preheader"),
            sender=row.payload.get("sender"),
            test=row.test,
        )
        try:
            p.out = b.composer.compose(spec, view, now, to=row.recipient, sign=sign)
        except RenderError as e:
            p.result = Result(row, "failed", f"not sent: {e}")
            return p
        p.consent_id = verdict.consent.id if verdict.consent else None
        p.basis = verdict.reason
        p.domain = recipient_domain(p.out.rcpt)
        return p

    def _composer_for(self, conn: Connection, ws: ir.Workspace, publication: int) -> Composer:
        """The composer of a publication, rendering its snapshot of the template files."""
        if self._composer is None or self._composer[0] != publication:
            files = snapshot.load(conn, publication)
            if files or not snapshot.uses_files(ws):
                templates = TemplateSet(ws, files=files)
            else:
                # Published before template files were kept with publications: read them from
                # disk, as then; the next publish snapshots them.
                folder = workspace_folder(conn, self.settings)
                log.warning(
                    "publication %s has no template snapshot; reading templates from %s",
                    publication,
                    folder,
                    extra={"action": "send"},
                )
                templates = TemplateSet(ws, folder)
            self._composer = (publication, Composer(templates, self.config))
        return self._composer[1]

    # -- delivering ----------------------------------------------------------------------------

    async def _worker(self, n: int, run: _Run) -> None:
        """One connection: mark a lot, and while it goes out, mark the next — needed once half
        of the current lot has gone out, reckoned by how long the last lot took."""
        most = self.options.lot
        loop = asyncio.get_running_loop()
        took = 0.0  # how long the last lot took to go out
        lot = await run.take(most)
        marking = self._mark(lot, run) if lot else None
        while lot:
            assert marking is not None
            if not marking.done():
                run.journal.hurry()
            try:
                await marking
            except JournalFailed:  # nothing is written any more: the rows wait for their lease
                return
            except Exception as e:  # the store is down: nothing of this lot may go out
                for p in lot:
                    run.done(p, self._retry(p, f"cannot record the send in the store: {e}"))
                lot = None
            following = run.take_now(most) if run.ready else []
            start = loop.time()
            ahead = self._mark(following, run, by=start + took / 2) if following else None
            if lot:
                try:
                    await self._deliver(n, lot, run)
                    took = loop.time() - start
                except Exception as e:  # never lose a claimed row: report it as a retry
                    log.exception("delivery failed unexpectedly", extra={"action": "send"})
                    self._drop(n)
                    for p in lot:
                        if p.row.id in run.in_flight:
                            run.done(p, self._retry(p, f"unexpected error: {e}"))
            if following:
                lot, marking = following, ahead
            else:
                lot = await run.take(most)
                marking = self._mark(lot, run) if lot else None

    def _mark(
        self, lot: list[_Prepared], run: _Run, *, by: float | None = None
    ) -> asyncio.Future[None]:
        rows = []
        for p in lot:
            assert p.out is not None
            rows.append((p.out.outbox_id, p.out.message_id))
        return run.journal.mark(rows, by=by)

    async def _connection(self, n: int) -> Session:
        session = self._connections[n]
        if session is not None and session.is_open:
            return session
        r = self.relay
        context = None
        if r.use_tls or r.start_tls:  # loading the CA store takes tens of milliseconds
            context = ssl.create_default_context()
            if not r.validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        smtp = aiosmtplib.SMTP(
            hostname=r.host,
            port=r.port,
            use_tls=r.use_tls,
            start_tls=r.start_tls,
            tls_context=context,
            timeout=self.options.timeout,
        )
        await smtp.connect()
        try:
            if smtp.is_ehlo_or_helo_needed:  # a server without EHLO gets HELO
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
            if r.username:
                await smtp.login(r.username, r.password or "")
            session = Session.over(smtp, self.options.timeout, pipelining=r.pipelining)
        except BaseException:
            smtp.close()
            raise
        self._connections[n] = session
        return session

    async def _deliver(self, n: int, lot: list[_Prepared], run: _Run) -> None:
        """Send a marked lot over connection `n`, one transaction after the other (see
        `smtp.Session.send`); what a dropped connection left not begun goes on a new one."""
        todo = lot
        while todo:
            try:
                session = await self._connection(n)
            except (aiosmtplib.SMTPException, OSError) as e:
                for p in todo:
                    self._pause(p.domain, self.options.retry_seconds)
                    run.done(p, self._retry(p, f"cannot reach the relay {self.relay.name}: {e}"))
                return
            going: list[_Prepared] = []
            messages: list[tuple[bytes, bytes, bytes]] = []
            for p in todo:
                assert p.out is not None
                try:
                    envelope = session.envelope(p.out.mail_from, p.out.rcpt)
                except NeedsSmtpUtf8 as e:  # this relay cannot take it: it never will
                    run.done(p, Result(p.row, "failed", f"not sent: {e}", recipient=p.out.rcpt))
                    continue
                except ValueError as e:  # not an address SMTP carries
                    why = f"not sent: not an address for SMTP: {e}"
                    run.done(p, Result(p.row, "failed", why, recipient=p.out.rcpt))
                    continue
                going.append(p)
                messages.append((*envelope, payload(p.out.data)))
            outcomes = await session.send(messages)
            if not session.is_open:
                self._drop(n)
            todo = []
            for p, outcome in zip(going, outcomes, strict=True):
                if outcome is None:
                    todo.append(p)  # not begun: the connection ended before its turn
                    continue
                try:
                    result = self._outcome(p, outcome, run.journal)
                except Exception as e:  # the relay answered: never "not sent" from here
                    log.exception("cannot record an outcome", extra={"action": "send"})
                    result = self._unrecorded(p, outcome, e)
                run.done(p, result)

    def _outcome(self, p: _Prepared, outcome: Outcome, journal: _Journal) -> Result:
        """The result of one message the relay answered (or did not). A row refused before
        DATA gets its definite result written over its mark."""
        out = p.out
        assert out is not None
        if isinstance(outcome, Refused):
            if outcome.stage in ("mail", "rcpt"):
                return self._refused(
                    p, outcome.code, outcome.message, at_rcpt=True, journal=journal
                )
            if outcome.code >= 400:
                return self._refused(
                    p, outcome.code, outcome.message, at_rcpt=False, journal=journal
                )
            if outcome.stage == "data":  # not 354: the relay never asked for the message
                return self._retry(p, _not_asked(outcome))
            return self._unknown(p, str(outcome))
        if isinstance(outcome, Dropped):
            if outcome.after_data:
                return self._unknown(p, str(outcome))
            if outcome.stage == "data":  # no 354: the message was not transferred
                return self._retry(
                    p, f"the connection ended at DATA, before the message went out: {outcome}"
                )
            return self._retry(p, f"the relay closed the connection before DATA: {outcome}")
        if p.domain in self._slowed:
            journal.succeeded[p.domain] = journal.succeeded.get(p.domain, 0) + 1
        relay = self.relay.name  # a property that formats host and port: once a message
        events = (
            []
            if p.row.test
            else [
                mail_event(
                    p.row,
                    "delivery",
                    self.clock(),
                    {"relay": relay},
                    key=event_key("delivery", p.row.key),
                )
            ]
        )
        return Result(
            p.row,
            "sent",
            f"accepted by {relay}; {p.basis}",
            recipient=out.rcpt,
            message_id=out.message_id,
            subject=out.subject,
            links=[{"url": link.url, "name": link.name} for link in out.links],
            relay=relay,
            consent_id=p.consent_id,
            events=events,
        )

    def _unrecorded(self, p: _Prepared, outcome: Outcome, error: Exception) -> Result:
        """The result of a message whose proper result could not be made (`_outcome` failed):
        plain, and never one that sends again a message the relay accepted or may have."""
        out = p.out
        assert out is not None
        why = f"recording it failed: {type(error).__name__}: {error}"
        if isinstance(outcome, tuple):  # accepted: sent, without its event
            return Result(
                p.row,
                "sent",
                f"accepted by {self.relay.name}; {why}",
                recipient=out.rcpt,
                message_id=out.message_id,
                subject=out.subject,
                relay=self.relay.name,
                consent_id=p.consent_id,
            )
        if isinstance(outcome, Refused) and outcome.code >= 500:
            return Result(
                p.row, "failed", f"the relay refused it: {outcome}; {why}", recipient=out.rcpt
            )
        not_sent = (  # deferred, or ended before the relay asked for the message
            outcome.code >= 400 or outcome.stage == "data"
            if isinstance(outcome, Refused)
            else isinstance(outcome, Dropped) and not outcome.after_data
        )
        if not_sent:
            return self._retry(p, f"{outcome}; {why}")
        return self._unknown(p, f"{outcome}; {why}")

    def _retry(self, p: _Prepared, why: str) -> Result:
        attempts = p.row.attempts
        if attempts >= self.options.max_attempts:
            return Result(p.row, "failed", f"gave up after {attempts} attempts: {why}")
        delay = min(self.options.retry_seconds * 2 ** (attempts - 1), 6 * 3600)
        return Result(
            p.row,
            "pending",
            f"attempt {attempts} failed, retrying in {delay:g} s: {why}",
            next_attempt_at=self.clock() + timedelta(seconds=delay),
            recipient=p.out.rcpt if p.out else None,
        )

    def _refused(
        self, p: _Prepared, code: int, message: str, *, at_rcpt: bool, journal: _Journal
    ) -> Result:
        why = f"{code} {message}".strip()
        if code < 500:  # the domain slows down, for every sender
            self._pause(p.domain, self.options.retry_seconds)
            self._slowed.add(p.domain)
            journal.slowed[p.domain] = self.options.retry_seconds
            return self._retry(p, f"the relay deferred it: {why}")
        status = enhanced_status(message) or f"{code // 100}.0.0"
        kind = "hard" if at_rcpt and status.startswith("5.0") else bounce_kind(status)
        events = []
        if not p.row.test:
            events.append(
                mail_event(
                    p.row,
                    "bounce",
                    self.clock(),
                    {"kind": kind, "status": status, "diagnostic": why[:300], "during": "smtp"},
                    key=event_key("bounce", p.row.key),
                )
            )
            if kind == "hard" and p.out is not None:
                journal.suppress[p.out.rcpt] = f"hard bounce {status}: {why[:200]}"
        return Result(
            p.row,
            "failed",
            f"the relay refused it: {why}",
            recipient=p.out.rcpt if p.out else None,
            events=events,
        )

    def _unknown(self, p: _Prepared, why: str) -> Result:
        assert p.out is not None
        text = f"the connection dropped after DATA ({why or 'no reply'}); delivery unknown"
        if self.options.retry_unknown:
            r = self._retry(p, text)
            r.message_id = p.out.message_id
            return Result(
                **{**r.__dict__, "reason": r.reason + " (may arrive twice)", "uncertain": True}
            )
        return Result(
            p.row,
            "unknown",
            text,
            recipient=p.out.rcpt,
            message_id=p.out.message_id,
            subject=p.out.subject,
        )

    def _pause(self, domain: str, seconds: float) -> None:
        """Hold this sender's messages to `domain` for `seconds`."""
        until = time.time() + seconds
        if until > self._paused.get(domain, 0.0):
            self._paused[domain] = until

    def _drop(self, n: int) -> None:
        session = self._connections[n]
        self._connections[n] = None
        if session is not None:
            session.close()

    async def close(self) -> None:
        if self._signing is not None:
            self._signing.shutdown(wait=True)
            self._signing = None
        for n, session in enumerate(self._connections):
            if session is not None:
                await session.quit()
            self._connections[n] = None
