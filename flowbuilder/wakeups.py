"""Waking idle workers when new work arrives, instead of waiting for their next tick (PostgreSQL).

A transaction that stores new events or new outbox rows calls `notify(conn, EVENTS)` (or
`OUTBOX`); PostgreSQL delivers the notification when, and only if, the transaction commits, and
folds identical notifications of one transaction into one. Workers `LISTEN` on a connection of
their own (`Listener`) and wake the matching loop; wake-ups that arrive while a loop is busy
collapse into one more pass after it. A notification is a hint: the periodic tick still finds
everything, so a lost one only delays work until then.

Notifications are database-wide, so each names the schema it is about (`<schema>:<what>`), and a
listener hears only its own schema's. SQLite has a single process, which ticks on its interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

log = logging.getLogger("flowbuilder.wakeups")

CHANNEL = "flowbuilder_work"
EVENTS = "events"  # new events to match (the engine's events pass)
OUTBOX = "outbox"  # new messages to send (the sender)
WHAT = (EVENTS, OUTBOX)

_NOTIFY = text("SELECT pg_notify(:channel, current_schema() || ':' || :what)")


def notify(conn: Connection, what: str) -> None:
    """Wake the workers listening for `what` once this transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"channel": CHANNEL, "what": what})


def libpq_url(engine: Engine) -> str:
    """The engine's URL as libpq takes it (no SQLAlchemy driver name, password kept)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """`LISTEN` on a connection of its own, in a daemon thread; calls `on_wake(what)` for each
    notification about this schema. Reconnects (after `retry` seconds) when the connection drops."""

    def __init__(
        self,
        engine: Engine,
        on_wake: Callable[[str], None],
        *,
        on_error: Callable[[], None] | None = None,
        retry: float = 2.0,
    ) -> None:
        self.url = libpq_url(engine)
        self.on_wake = on_wake
        self.on_error = on_error
        self.retry = retry
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowbuilder-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = str(row[0]) if row else "public"
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        # A short timeout so that stopping never waits for a notification.
                        for n in conn.notifies(timeout=0.5):
                            where, _, what = n.payload.rpartition(":")
                            if where == schema and what in WHAT:
                                self.on_wake(what)
            except Exception:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "lost the wake-up connection; listening again in %.0f s",
                    self.retry,
                    exc_info=True,
                    extra={"action": "listen"},
                )
                if self.on_error is not None:
                    self.on_error()
                self._stop.wait(self.retry)
