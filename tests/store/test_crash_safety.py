"""Crash safety: SIGKILL the runtime at random points while it works through thousands of
enrollments, restart it, and check that nothing was lost and nothing was done twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from flowbuilder.intake import parse_event
from flowbuilder.runtime.tick import pending_work
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import record_events
from tests.store.driver import publish_text, rows

LEADS = 6000
FLOW = """
template first {
  subject "One"
}
template second {
  subject "Two"
}

flow pair "Two sends" {
  trigger event go
  one: send first
  two: send second
  done: end
}
"""


def _backlog(store: Engine) -> int:
    with reading(store) as conn:
        events, due = pending_work(conn, datetime.now(UTC))
    return events + due


def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(store: Engine, store_url: str) -> None:
    now = datetime.now(UTC)
    publish_text(store, FLOW, now)
    with store.begin() as conn:
        record_events(
            conn,
            [parse_event({"type": "go", "email": f"l{n}@example.com"}) for n in range(LEADS)],
            now,
        )
    rng = random.Random(20261123)
    env = {**os.environ, "FLOWBUILDER_DATABASE_URL": store_url}
    kills_mid_work = 0
    # Kill points are chosen by progress, not by wall time, so that a fast or a slow machine is
    # killed mid-work alike: each round lets the runtime take a random bite of the backlog.
    for _ in range(12):
        before = _backlog(store)
        if before == 0:
            break
        target = before - rng.randint(1, max(1, before // 6))
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowbuilder", "run", "--interval", "0.1", "--batch", "25"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while _backlog(store) > target and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere in the batch under way
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        after = _backlog(store)
        print("ROUND", before, target, after)
        if 0 < after < before:
            kills_mid_work += 1
    finish = subprocess.run(
        [sys.executable, "-m", "flowbuilder", "run", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finish.returncode == 0, finish.stderr
    assert kills_mid_work >= 2, "the runtime was never killed while it had work in progress"

    assert rows(
        store, "SELECT status, advanced, count(*) FROM enrollments GROUP BY status, advanced"
    ) == [("completed", 1, LEADS)]
    [(sends, keys)] = rows(store, "SELECT count(*), count(DISTINCT key) FROM outbox")
    assert (sends, keys) == (2 * LEADS, 2 * LEADS)
    per_enrollment = rows(
        store,
        "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM outbox GROUP BY enrollment_id) AS t",
    )
    assert per_enrollment == [(2, 2)]
    assert rows(store, "SELECT count(*) FROM decisions WHERE kind = 'send'") == [(2 * LEADS,)]
    assert rows(store, "SELECT count(*) FROM events WHERE pending") == [(0,)]
