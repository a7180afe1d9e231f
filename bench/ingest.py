"""Event ingest (`python -m bench.ingest [--events N] [--batch B] [--clients C]`), on PostgreSQL.

- **HTTP API**: `flowbuilder serve` (uvicorn, one process, no runtime in it) takes N track
  calls as `POST /v1/batch` bodies of B calls each, from C clients at once over keep-alive
  connections: authentication, JSON, validation of every call, lead lookup by email, idempotency
  check on `messageId`, one transaction per call, the wake-up notification.
- **reference**: a raw batched insert of the same N rows into `events` (SQLAlchemy Core
  `executemany`, one transaction per B rows, C threads), leads already known — the least any
  ingest can do.

The leads exist before either run, so both measure the ingest of events, into a store with a
history of 20,000 events and planner statistics, as in one that has been running. The two
alternate on fresh schemas; the row shows medians. Goal ≥ 0.3×.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, insert, select, text

from bench.fleet import POSTGRES, ROOT, free_port, schema, wait_for
from bench.table import Row, print_rows
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Event, Lead
from flowbuilder.users import add_api_key

LEADS = 1_000
HISTORY = 20_000
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _email(i: int) -> str:
    lead = i % LEADS
    return f"lead{lead}@example{lead % 17}.com"


def _leads(engine: Engine) -> dict[str, int]:
    """The leads, and a history of events before the measured ones, with planner statistics, as
    in a store that has been running (a fresh table without statistics is scanned whole)."""
    with engine.begin() as conn:
        conn.execute(
            insert(Lead),
            [
                {
                    "email": _email(i),
                    "attributes": {},
                    "score": 0.0,
                    "tags": [],
                    "consent": "granted",
                    "unsubscribed": False,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(LEADS)
            ],
        )
        ids = {e: i for e, i in conn.execute(select(Lead.email, Lead.id))}
        conn.execute(
            insert(Event),
            [
                {
                    "lead_id": ids[_email(i)],
                    "type": "page_viewed",
                    "at": NOW - timedelta(minutes=i),
                    "properties": {},
                    "machine": False,
                    "idempotency_key": f"history-{i}",
                    "received_at": NOW,
                    "pending": False,
                }
                for i in range(HISTORY)
            ],
        )
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return ids


def _calls(n: int, batch: int) -> list[list[dict[str, object]]]:
    """N track calls in bodies of `batch`, each with its own messageId and time."""
    calls: list[dict[str, object]] = [
        {
            "type": "track",
            "messageId": f"m-{i}-{uuid.uuid4().hex[:8]}",
            "userId": _email(i),
            "event": "Page Viewed" if i % 3 else "Order Completed",
            "timestamp": (NOW + timedelta(seconds=i)).isoformat(),
            "properties": {"path": f"/pricing/{i % 7}", "amount": i % 100},
        }
        for i in range(n)
    ]
    return [calls[i : i + batch] for i in range(0, n, batch)]


def _split(
    work: list[list[dict[str, object]]], clients: int
) -> list[list[list[dict[str, object]]]]:
    return [work[c::clients] for c in range(clients)]


def _in_threads(
    parts: list[list[list[dict[str, object]]]], run: Callable[[list[list[dict[str, object]]]], None]
) -> float:
    failures: list[BaseException] = []

    def guarded(part: list[list[dict[str, object]]]) -> None:
        try:
            run(part)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=guarded, args=(part,)) for part in parts]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if failures:
        raise failures[0]
    return seconds


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())


def through_api(n: int, batch: int, clients: int, folder: Path) -> float:
    """Seconds for N events through `POST /v1/batch` of a `flowbuilder serve` process."""
    with schema() as url:
        engine = open_store(url)
        _leads(engine)
        key = add_api_key(engine, "bench", NOW)
        port = free_port()
        log = (folder / f"serve-{port}.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowbuilder",
                "serve",
                "--db",
                url,
                "--tick",
                "0",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "FLOWBUILDER_DATA_DIR": str(folder),
                "FLOWBUILDER_SECRET_KEY": "bench-" + "x" * 32,
            },
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    assert server.poll() is None, (folder / f"serve-{port}.log").read_text()
                    return False

            wait_for(ready, 120, "the web app to start", every=0.1)
            work = _calls(n, batch)

            def post(part: list[list[dict[str, object]]]) -> None:
                with httpx.Client(
                    base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=60
                ) as client:
                    for body in part:
                        r = client.post("/v1/batch", content=json.dumps({"batch": body}))
                        assert r.status_code == 200, r.text

            seconds = _in_threads(_split(work, clients), post)
            assert _count(engine) == HISTORY + n, f"{_count(engine) - HISTORY} of {n} stored"
            return seconds
        finally:
            server.terminate()
            server.wait(30)
            log.close()
            engine.dispose()


def raw_insert(n: int, batch: int, clients: int) -> float:
    """Seconds for the same N rows inserted in batches of `batch`, one transaction each."""
    with schema() as url:
        engine = open_store(url)
        ids = _leads(engine)
        work = _calls(n, batch)
        received = datetime.now(UTC)

        def insert_all(part: list[list[dict[str, object]]]) -> None:
            for body in part:
                rows = [
                    {
                        "lead_id": ids[str(c["userId"])],
                        "type": "page_viewed" if c["event"] == "Page Viewed" else "order_completed",
                        "at": datetime.fromisoformat(str(c["timestamp"])),
                        "properties": c["properties"],
                        "machine": False,
                        "idempotency_key": c["messageId"],
                        "received_at": received,
                        "pending": True,
                    }
                    for c in body
                ]
                with engine.begin() as conn:
                    conn.execute(insert(Event), rows)

        seconds = _in_threads(_split(work, clients), insert_all)
        assert _count(engine) == HISTORY + n
        engine.dispose()
        return seconds


def rows(events: int = 50_000, batch: int = 100, clients: int = 2, rounds: int = 3) -> list[Row]:
    import tempfile

    api: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            api.append(through_api(events, batch, clients, Path(tmp)) / events)
            raw.append(raw_insert(events, batch, clients) / events)
    a, r = statistics.median(api), statistics.median(raw)
    return [
        Row(
            f"event ingest, HTTP API /v1/batch ×{batch} ({events:,}, PostgreSQL)",
            a,
            "raw batched INSERT, same rows",
            r,
            "≥ 0.3×",
            r / a >= 0.3,
            per="events",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"PostgreSQL {POSTGRES}; load average {os.getloadavg()[0]:.2f}")
    print_rows(rows(args.events, args.batch, args.clients, args.rounds), "Event ingest")


if __name__ == "__main__":
    main()
