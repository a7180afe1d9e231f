"""What a running flowbuilder process tells its operators: Prometheus metrics and structured logs.

Two kinds of measures (docs/operations.md says what their values mean):

- **this process's work**, counted as it commits: ticks and their batches, enrollments decided,
  events matched, sends decided, messages handed to the relay by outcome, failures, and when each
  loop last made progress. Summed over every process by Prometheus (`sum(rate(...))`).
- **the store's backlog**, read from the database when scraped (at most every few seconds, on a
  connection of its own): work that is due and not yet done, and how late the oldest of it is.
  Every process that exposes it shows the same numbers.

    >>> registry = CollectorRegistry()
    >>> measures = Measures(registry)
    >>> measures.committed("due", 0.25, {"decided": 500, "sends": 120})
    >>> registry.get_sample_value("flowbuilder_decisions_total")
    500.0
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from flowbuilder.store.db import reading
from flowbuilder.store.schema import PENDING_EVENTS, EnrollmentRow, Lead, Outbox
from flowbuilder.store.schema import Event as EventRow

# What a tick's counts are called as metrics: TickStats field → (metric name, help).
TICK_COUNTS = {
    "decided": ("flowbuilder_decisions_total", "Enrollments decided (one decide() call each)."),
    "events": ("flowbuilder_events_processed_total", "New events matched to triggers."),
    "enrolled": ("flowbuilder_enrollments_started_total", "Leads that entered a flow."),
    "sends": ("flowbuilder_sends_decided_total", "Emails decided (outbox rows written)."),
    "classified": ("flowbuilder_rule_checks_total", "Leads whose lead rules were looked at."),
    "changes": (
        "flowbuilder_lead_changes_total",
        "Stage, list and segment changes the lead rules made.",
    ),
}
# The sender's outcomes (`SendStats` fields) and the state each one leaves a message in.
SEND_STATES = {
    "sent": "sent",
    "deferred": "pending",
    "held": "held",
    "failed": "failed",
    "unknown": "unknown",
}
# Counters' `_created` series say when a process started counting: noise on every scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Measures:
    """The metrics of one process, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.counts = {
            name: Counter(metric.removesuffix("_total"), text, registry=registry)
            for name, (metric, text) in TICK_COUNTS.items()
        }
        self.ticks = Counter("flowbuilder_ticks", "Ticks completed.", registry=registry)
        self.tick_seconds = Histogram(
            "flowbuilder_tick_duration_seconds",
            "Time a whole tick took (every pass until nothing was left at its moment).",
            buckets=SECONDS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "flowbuilder_batch_duration_seconds",
            "Time one batch transaction took, claim to commit, by pass.",
            ["pass"],
            buckets=SECONDS,
            registry=registry,
        )
        self.sends = Counter(
            "flowbuilder_sends",
            "Messages the sender finished with, by the state it left them in.",
            ["state"],
            registry=registry,
        )
        self.failures = Counter(
            "flowbuilder_failures",
            "Passes that failed and were rolled back (they run again), by component.",
            ["component"],
            registry=registry,
        )
        self.wakeups = Counter(
            "flowbuilder_wakeups",
            "Times a loop was woken early by new work (coalesced), by loop.",
            ["loop"],
            registry=registry,
        )
        self.stalled = Counter(
            "flowbuilder_stalled_sessions_ended",
            "Sessions of workers that held a claim past the lease, ended so others take the rows.",
            registry=registry,
        )
        self.progress = Gauge(
            "flowbuilder_last_progress_timestamp_seconds",
            "When the loop last committed a batch or finished a pass (Unix time).",
            ["loop"],
            registry=registry,
        )
        self._last_progress: dict[str, float] = {}
        for state in SEND_STATES.values():
            self.sends.labels(state)
        for component in ("tick", "send", "listener", "reap"):
            self.failures.labels(component)

    def committed(self, pass_name: str, seconds: float, counts: Mapping[str, int]) -> None:
        """A batch of `pass_name` committed after `seconds`, having done `counts`."""
        self.batch_seconds.labels(pass_name).observe(seconds)
        for name, n in counts.items():
            counter = self.counts.get(name)
            if counter is not None and n > 0:
                counter.inc(n)
        self.made_progress("tick")

    def tick_done(self, seconds: float) -> None:
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        self.made_progress("tick")

    def sent(self, stats: object) -> None:
        """A drain of the sender finished with these `SendStats`."""
        for name, state in SEND_STATES.items():
            n = int(getattr(stats, name, 0))
            if n:
                self.sends.labels(state).inc(n)
        self.made_progress("send")

    def failed(self, component: str) -> None:
        self.failures.labels(component).inc()

    def woken(self, loop: str) -> None:
        self.wakeups.labels(loop).inc()

    def made_progress(self, loop: str) -> None:
        now = time.time()
        self._last_progress[loop] = now
        self.progress.labels(loop).set(now)

    def last_progress(self, loop: str) -> float | None:
        return self._last_progress.get(loop)


REGISTRY = CollectorRegistry()
MEASURES = Measures(REGISTRY)


# ---------------------------------------------------------------------------- the store's backlog


@dataclass(frozen=True)
class Backlog:
    """Work due now and not done yet, and since when the oldest of it has waited."""

    at: datetime
    due: dict[str, int]  # work → how many items
    oldest: dict[str, datetime | None]  # work → when the oldest item became due
    outbox: dict[str, int]  # non-final outbox state → messages

    def lag(self, work: str) -> float:
        oldest = self.oldest.get(work)
        return 0.0 if oldest is None else max(0.0, (self.at - oldest).total_seconds())


def read_backlog(conn: Connection, now: datetime) -> Backlog:
    """Four indexed queries: due enrollments, unmatched events, leads whose rules are due, and
    messages due to go out."""
    enrollments = conn.execute(
        select(func.count(), func.min(EnrollmentRow.due_at)).where(
            EnrollmentRow.status == "active", EnrollmentRow.due_at <= now
        )
    ).one()
    events = conn.execute(
        select(func.count(), func.min(EventRow.received_at)).where(PENDING_EVENTS)
    ).one()
    rules = conn.execute(
        select(func.count(), func.min(Lead.rules_due_at)).where(Lead.rules_due_at <= now)
    ).one()
    due_at = func.coalesce(Outbox.next_attempt_at, Outbox.created_at)
    outbox = conn.execute(
        select(func.count(), func.min(due_at)).where(
            Outbox.channel == "email",
            Outbox.state == "pending",
            (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= now),
        )
    ).one()
    states = dict(
        conn.execute(
            select(Outbox.state, func.count())
            .where(Outbox.state.in_(("pending", "sending", "unknown")))
            .group_by(Outbox.state)
        ).all()
    )
    return Backlog(
        at=now,
        due={
            "enrollments": int(enrollments[0]),
            "events": int(events[0]),
            "rules": int(rules[0]),
            "outbox": int(outbox[0]),
        },
        oldest={
            "enrollments": enrollments[1],
            "events": events[1],
            "rules": rules[1],
            "outbox": outbox[1],
        },
        outbox={s: int(states.get(s, 0)) for s in ("pending", "sending", "unknown")},
    )


@dataclass(eq=False)
class StoreCollector(Collector):
    """The backlog gauges, read from the store when scraped and kept for `ttl` seconds so that a
    busy scraper costs the database at most one read per `ttl`."""

    engine: Engine
    ttl: float = 5.0
    _cached: tuple[float, Backlog | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def backlog(self) -> Backlog | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            try:
                with reading(self.engine) as conn:
                    found: Backlog | None = read_backlog(conn, datetime.now(UTC))
            except Exception:
                logging.getLogger("flowbuilder.observability").exception(
                    "cannot read the backlog from the store", extra={"action": "metrics"}
                )
                found = None
            self._cached = (time.monotonic(), found)
            return found

    def collect(self) -> Iterator[Metric]:
        backlog = self.backlog()
        up = GaugeMetricFamily(
            "flowbuilder_store_up", "1 when the store answered the last backlog read."
        )
        up.add_metric([], 0.0 if backlog is None else 1.0)
        yield up
        if backlog is None:
            return
        due = GaugeMetricFamily(
            "flowbuilder_due_backlog", "Items due now and not yet done, by work.", labels=["work"]
        )
        lag = GaugeMetricFamily(
            "flowbuilder_tick_lag_seconds",
            "How long the oldest due item has waited (0 when nothing is due), by work.",
            labels=["work"],
        )
        for work, n in backlog.due.items():
            due.add_metric([work], float(n))
            lag.add_metric([work], backlog.lag(work))
        yield due
        yield lag
        states = GaugeMetricFamily(
            "flowbuilder_outbox_messages",
            "Messages in the outbox's non-final states (pending, sending, unknown).",
            labels=["state"],
        )
        for state, n in backlog.outbox.items():
            states.add_metric([state], float(n))
        yield states

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time: nothing to collect while registering


def store_registry(engine: Engine, *, ttl: float = 5.0) -> CollectorRegistry:
    """A registry with this process's measures and the store's backlog, for `/metrics`."""
    registry = CollectorRegistry()
    registry.register(_Forward(REGISTRY))
    registry.register(StoreCollector(engine, ttl))
    return registry


@dataclass(eq=False)
class _Forward(Collector):
    """The process-wide measures, shown in another registry."""

    source: CollectorRegistry

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()

    def describe(self) -> Iterable[Metric]:
        return []


# ---------------------------------------------------------------------------- structured logs

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra={...}` field."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(fmt: str, level: str = "info", **static: Any) -> None:
    """Send flowbuilder's logs to stderr, as JSON lines (`fmt="json"`) or as plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(static))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler reports a skipped overlapping run at WARNING; that is by design here. Alembic
    # says which dialect it migrates at every start.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
