"""Health and readiness of a flowbuilder process, and the small HTTP server workers answer on.

- **Readiness** (`/readyz`): the store answers and its schema is the one this code was written
  for (the Alembic head). A process that is stopping is not ready.
- **Health** (`/healthz`): each loop the process runs (the tick, the sender) made progress —
  committed a batch or finished a pass — within its stall limit. A worker that is alive but stuck
  fails it, so that the supervisor restarts it.
- **Metrics** (`/metrics`): `flowbuilder.observability`, in Prometheus's text format.

Workers serve these on a port of their own (`flowbuilder worker --metrics 0.0.0.0:9464`); the web
app serves the same paths beside its pages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text

log = logging.getLogger("flowbuilder.health")


@dataclass(frozen=True)
class Check:
    """The answer of a health or readiness check: ok, and why (per part)."""

    ok: bool
    parts: dict[str, str]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503

    def body(self) -> bytes:
        doc = {"status": "ok" if self.ok else "failing", **self.parts}
        return json.dumps(doc, sort_keys=True).encode()


@lru_cache(maxsize=1)
def _scripts() -> Any:
    from importlib import resources

    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(resources.files("flowbuilder.store").joinpath("migrations")))


def schema_head() -> str:
    """The newest migration this code ships."""
    return str(_scripts().get_current_head())


def known_revision(revision: str) -> bool:
    """Is `revision` one of this code's migrations (and not one from a newer flowbuilder)?"""
    return any(script.revision == revision for script in _scripts().walk_revisions())


def schema_revision(engine: Engine) -> str | None:
    """The migration the store is at (None before the first)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    return None if revision is None else str(revision)


def store_check(engine: Engine) -> tuple[bool, str]:
    """Does the store answer, at this code's schema?"""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.rollback()
        revision = schema_revision(engine)
    except Exception as e:
        return False, f"the store does not answer: {type(e).__name__}: {str(e).splitlines()[0]}"
    head = schema_head()
    if revision != head:
        return False, f"the store's schema is at {revision}, this code expects {head}"
    return True, f"answers, schema at {head}"


def readiness(engine: Engine, *, stopping: bool = False) -> Check:
    ok, why = store_check(engine)
    parts = {"store": why}
    if stopping:
        parts["process"] = "stopping: finishing the batch in progress"
        ok = False
    return Check(ok, parts)


def liveness(loops: dict[str, tuple[float | None, float]], now: float | None = None) -> Check:
    """`loops`: name → (when it last made progress, Unix time or None; how long it may stall)."""
    now = time.time() if now is None else now
    parts: dict[str, str] = {}
    ok = True
    for name, (last, stall) in sorted(loops.items()):
        if last is None:
            parts[name] = "starting"
            continue
        quiet = now - last
        if quiet > stall:
            ok = False
            parts[name] = f"no progress for {quiet:.0f} s (limit {stall:.0f} s)"
        else:
            parts[name] = f"progress {quiet:.1f} s ago"
    return Check(ok, parts)


# ---------------------------------------------------------------------------- the HTTP server

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are no news."""


@dataclass
class Endpoints:
    """`/metrics`, `/healthz` and `/readyz` of a worker, as a WSGI application."""

    registry: CollectorRegistry
    health: Callable[[], Check]
    ready: Callable[[], Check]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest(self.registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        checks = {"/healthz": self.health, "/readyz": self.ready}
        if path in checks:
            check = checks[path]()
            status = "200 OK" if check.ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [check.body()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]


@dataclass
class HttpServer:
    """A threaded HTTP server for `Endpoints`, in a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_endpoints(app: Endpoints, host: str, port: int) -> HttpServer:
    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, name="flowbuilder-metrics", kwargs={"poll_interval": 0.5}
    )
    thread.daemon = True
    thread.start()
    return HttpServer(server, thread)
