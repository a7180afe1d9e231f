"""A fleet of `flowbuilder worker` processes on one PostgreSQL store, for the scale benchmark and
the scale tests: seed due enrollments, start workers, wait for them, and check the invariants.

As a benchmark (`python -m bench.fleet [--enrollments N] [--workers W] [--rounds R]`): N seeded
enrollments become due at once, and the time until every one has advanced is measured with W
workers and with one, each on a fresh schema with its workers started and ready beforehand. The
row counts duplicates too (enrollments advanced twice, outbox keys written twice): it meets its
goal only with none. Goal ≥ 1.25× on a 2-core machine.

Two flows, each deciding an enrollment exactly once:

- `fleet`: seeded enrollments due at `pause` (a day has passed) send `hello` and hold at `rest`
  for another day — after a run each is at `rest`, advanced once, with one outbox row and one
  `send` decision of its own;
- `burst`: an event `go` enrolls the lead, which is sent `hello` and completes at once — each
  event enrolls once (the events pass claims it once), one outbox row per enrollment.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, create_engine, insert, text

from bench.table import Row, print_rows
from dsl.compile import compile_paths
from dsl.lint import lint
from flowbuilder.intake import parse_event
from flowbuilder.publish import publish
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.ingest import record_events
from flowbuilder.store.published import current
from flowbuilder.store.schema import EnrollmentRow, Lead

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get(
    "FLOWBUILDER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

FLOW = """
workspace fleet "The fleet" {
  sender "Fleet" "fleet@example.com"
}

template hello {
  subject "Hello"
  text "hello.txt"
  class transactional
}

flow fleet "One wait, one send, one wait" {
  trigger event seeded
  kind transactional
  pause: wait 1d
  hello: send hello
  rest: wait 1d
  done: end
}

flow burst "Enrolled by an event, one send" {
  trigger event go
  kind transactional
  first: send hello
  done: end
}
"""
TEXT = "Hello from the fleet.\n"


@contextmanager
def schema(base: str = POSTGRES) -> Iterator[str]:
    """A PostgreSQL schema of its own for one run, dropped afterwards; yields its URL."""
    name = f"s_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{base}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def published_store(url: str, folder: Path, now: datetime) -> Engine:
    """The store at `url` with the fleet's workspace (written to `folder`) published."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fleet.flow").write_text(FLOW, encoding="utf-8")
    (folder / "hello.txt").write_text(TEXT, encoding="utf-8")
    engine = open_store(url)
    compilation = compile_paths([folder])
    assert compilation.ok, compilation.diagnostics
    publish(engine, compilation, lint(compilation), now - timedelta(days=2))
    return engine


def post_go(engine: Engine, first: int, count: int, now: datetime) -> None:
    """`count` events `go`, for new leads `burst{first}` … (each enrolls one lead in `burst`)."""
    with engine.begin() as conn:
        record_events(
            conn,
            [
                parse_event({"type": "go", "email": f"burst{i}@example{i % 89}.com"})
                for i in range(first, first + count)
            ],
            now,
        )


def seed(engine: Engine, n: int, due: datetime | None, *, chunk: int = 10_000) -> None:
    """`n` leads, each at `pause` of the flow `fleet` for a day, due at `due` (None: not due)."""
    entered = datetime.now(UTC) - timedelta(days=1, minutes=1)
    with engine.begin() as conn:
        published = current(conn)
        assert published is not None
        version = published.versions["fleet"][0]
    for start in range(0, n, chunk):
        with engine.begin() as conn:
            ids = (
                conn.execute(
                    insert(Lead).returning(Lead.id, sort_by_parameter_order=True),
                    [
                        {
                            "email": f"lead{i}@example{i % 97}.com",
                            "attributes": {"first_name": f"Lead {i}"},
                            "timezone": "Asia/Seoul",
                            "score": 0.0,
                            "tags": [],
                            "consent": "granted",
                            "unsubscribed": False,
                            "created_at": entered,
                            "updated_at": entered,
                        }
                        for i in range(start, min(n, start + chunk))
                    ],
                )
                .scalars()
                .all()
            )
            conn.execute(
                insert(EnrollmentRow),
                [
                    {
                        "lead_id": lead_id,
                        "flow": "fleet",
                        "version_id": version,
                        "step": "pause",
                        "status": "active",
                        "entered_at": entered,
                        "step_entered_at": entered,
                        "due_at": due,
                        "waiting_for_facts": False,
                        "context": {},
                        "advanced": 0,
                        "updated_at": entered,
                    }
                    for lead_id in ids
                ],
            )


def make_due(engine: Engine, at: datetime) -> None:
    """Everything seeded becomes due at once (the clock starts here)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE enrollments SET due_at = :at WHERE status = 'active' AND step = 'pause'"),
            {"at": at},
        )


def done(engine: Engine) -> int:
    """Enrollments that reached their end: `fleet` at `rest`, `burst` completed."""
    with reading(engine) as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM enrollments WHERE advanced >= 1 AND "
                    "((flow = 'fleet' AND step = 'rest') OR (flow = 'burst' AND status = 'completed'))"
                )
            ).scalar_one()
        )


def backlog(engine: Engine) -> int:
    """Events not yet matched and enrollments due: the engine's work still to do."""
    with reading(engine) as conn:
        return int(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM events WHERE pending) + (SELECT count(*) FROM "
                    "enrollments WHERE status = 'active' AND due_at <= now())"
                )
            ).scalar_one()
        )


@dataclass(frozen=True)
class Invariants:
    """What a run left behind, to be compared with `Invariants.expected(seeded, burst)`."""

    advanced: list[tuple[str, str, str, int, int]]  # (flow, status, step, advanced, enrollments)
    outbox: tuple[int, int]  # (rows, distinct keys)
    per_enrollment: tuple[int, int]  # (fewest, most) outbox rows of one enrollment
    send_decisions: int
    decisions_per_enrollment: tuple[int, int]  # (fewest, most) send decisions of one enrollment

    @staticmethod
    def expected(seeded: int, burst: int = 0) -> Invariants:
        groups = []
        if burst:
            groups.append(("burst", "completed", "done", 1, burst))
        if seeded:
            groups.append(("fleet", "active", "rest", 1, seeded))
        n = seeded + burst
        return Invariants(groups, (n, n), (1, 1), n, (1, 1))


def invariants(engine: Engine) -> Invariants:
    with reading(engine) as conn:

        def rows(sql: str) -> list[Any]:
            return list(conn.execute(text(sql)).all())

        advanced = [
            (str(f), str(st), str(s), int(a), int(c))
            for f, st, s, a, c in rows(
                "SELECT flow, status, step, advanced, count(*) FROM enrollments "
                "GROUP BY flow, status, step, advanced ORDER BY flow, status, step, advanced"
            )
        ]
        [(total, keys)] = rows("SELECT count(*), count(DISTINCT key) FROM outbox")
        [(low, high)] = rows(
            "SELECT coalesce(min(n), 0), coalesce(max(n), 0) FROM "
            "(SELECT count(*) AS n FROM outbox GROUP BY enrollment_id) AS t"
        )
        [(sends,)] = rows("SELECT count(*) FROM decisions WHERE kind = 'send'")
        [(d_low, d_high)] = rows(
            "SELECT coalesce(min(n), 0), coalesce(max(n), 0) FROM (SELECT count(*) AS n "
            "FROM decisions WHERE kind = 'send' GROUP BY enrollment_id) AS t"
        )
    return Invariants(
        advanced,
        (int(total), int(keys)),
        (int(low), int(high)),
        int(sends),
        (int(d_low), int(d_high)),
    )


# ---------------------------------------------------------------------------- worker processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """One `flowbuilder worker` process, its metrics port and its JSON log."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path
    _log_file: IO[bytes] | None = None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2.0)[0] == 200
        except OSError:
            return False

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample of this worker's /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in (labels or {}).items()
                ):
                    return float(sample.value)
        return 0.0

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.popen.send_signal(sig)

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Fleet:
    """Start and stop worker processes against one store."""

    url: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def start(
        self, role: str = "engine", *, batch: int = 500, interval: float = 0.5, name: str = ""
    ) -> Process:
        name = name or f"w{len(self.processes) + 1}"
        port = free_port()
        log = self.folder / f"{name}.log"
        out = log.open("ab")
        command = [
            sys.executable,
            "-m",
            "flowbuilder",
            "worker",
            "--role",
            role,
            "--batch",
            str(batch),
            "--interval",
            str(interval),
            "--send-interval",
            str(min(interval, 0.5)),
            "--metrics",
            f"127.0.0.1:{port}",
            "--name",
            name,
            "--log-format",
            "json",
        ]
        env = {**os.environ, "FLOWBUILDER_DATABASE_URL": self.url, **self.env}
        popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        process = Process(name, popen, port, log, out)
        self.processes.append(process)
        return process

    def wait_ready(self, processes: Sequence[Process] | None = None, timeout: float = 120) -> None:
        waiting = list(processes if processes is not None else self.processes)
        deadline = time.monotonic() + timeout
        while waiting:
            for p in list(waiting):
                if not p.alive():
                    raise RuntimeError(f"worker {p.name} exited: {p.log.read_text()[-2000:]}")
                if p.ready():
                    waiting.remove(p)
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready: {[p.name for p in waiting]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        for p in self.processes:
            if p.alive():
                p.kill(signal.SIGTERM)
        for p in self.processes:
            try:
                p.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill(signal.SIGKILL)
                p.popen.wait()
            if p._log_file is not None:
                p._log_file.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    every: float = 0.05,
    status: Callable[[], str] | None = None,
) -> None:
    """Poll `condition` until it holds; after `timeout` seconds fail, saying what was awaited
    (and `status()`, the state things were in)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            where = f": {status()}" if status is not None else ""
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}{where}")
        time.sleep(every)


# ---------------------------------------------------------------------------- the benchmark


def duplicates(found: Invariants, seeded: int) -> int:
    """Work done more than once in a run of `seeded` enrollments: extra outbox rows, extra send
    decisions, and enrollments not advanced exactly once."""
    rows, keys = found.outbox
    advanced_once = sum(n for flow, _, _, a, n in found.advanced if flow == "fleet" and a == 1)
    return (rows - keys) + max(0, found.send_decisions - seeded) + (seeded - advanced_once)


def timed_run(workers: int, enrollments: int, folder: Path, batch: int = 500) -> tuple[float, int]:
    """Seconds for `workers` processes to advance `enrollments` due ones, and the duplicates."""
    with schema() as url:
        engine = published_store(url, folder / "workspace", datetime.now(UTC))
        seed(engine, enrollments, None)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        with Fleet(url, folder) as fleet:
            for _ in range(workers):
                fleet.start(batch=batch, interval=0.5)
            fleet.wait_ready()
            start = time.perf_counter()
            make_due(engine, datetime.now(UTC))
            wait_for(lambda: done(engine) >= enrollments, 1800, "the fleet to finish", every=0.1)
            seconds = time.perf_counter() - start
        found = invariants(engine)
        engine.dispose()
    if found != Invariants.expected(enrollments):
        raise AssertionError(f"the fleet left {found}, not {Invariants.expected(enrollments)}")
    return seconds, duplicates(found, enrollments)


def rows(enrollments: int = 50_000, workers: int = 4, rounds: int = 3) -> list[Row]:
    """W workers and one worker alternate `rounds` times; the row shows medians."""
    many: list[float] = []
    one: list[float] = []
    doubled = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            for count, times in ((workers, many), (1, one)):
                folder = Path(tmp) / f"w{count}r{n}"
                folder.mkdir()
                seconds, dup = timed_run(count, enrollments, folder)
                times.append(seconds / enrollments)
                doubled += dup
    m, o = statistics.median(many), statistics.median(one)
    return [
        Row(
            f"{workers} workers, PostgreSQL, {enrollments:,} due, {doubled} duplicates",
            m,
            "1 worker, same work",
            o,
            "≥ 1.25×, 0 duplicates",
            o / m >= 1.25 and doubled == 0,
            per="lead-steps",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PostgreSQL workers: W against one")
    parser.add_argument("--enrollments", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"PostgreSQL {POSTGRES}; {os.cpu_count()} cores")
    print_rows(rows(args.enrollments, args.workers, args.rounds), "Workers")


if __name__ == "__main__":
    main()
