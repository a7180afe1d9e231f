"""A worker dies or hangs in the middle of a batch: the others take its rows and nothing is lost
or done twice.

- SIGKILL: the worker's connection closes, PostgreSQL rolls its batch back and releases the row
  locks at once; the other workers decide those enrollments.
- SIGSTOP (a hung worker, a paused VM): its session sits idle in its transaction, or waits in the
  middle of a pipelined statement; after the claim lease PostgreSQL (idle) or the other workers
  (mid-statement, `flowbuilder.store.leases`) end it and the rows go back to the pool. When the
  worker wakes up its commit fails — it cannot write a result for rows another worker took — and it
  carries on.

"Mid-batch" is read from PostgreSQL, not guessed from the clock: the victim is stopped while its
session holds an open claim (`FOR UPDATE`) on `enrollments`.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from bench.fleet import (
    Fleet,
    Invariants,
    Process,
    done,
    invariants,
    make_due,
    seed,
    wait_for,
)
from flowbuilder.store.db import reading

ENROLLMENTS = 20_000
LEASE = 3.0


def _claiming(engine: Engine, worker: Process) -> bool:
    """Does the worker's session hold a claim on `enrollments` right now?"""
    with reading(engine) as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.application_name = :app AND l.relation = 'enrollments'::regclass "
                    "AND l.mode = 'RowShareLock'"
                ),
                {"app": f"flowbuilder {worker.name}"},
            ).scalar_one()
        )


def _sessions(engine: Engine, worker: Process) -> int:
    with reading(engine) as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app "
                    "AND xact_start IS NOT NULL"
                ),
                {"app": f"flowbuilder {worker.name}"},
            ).scalar_one()
        )


def _catch_mid_batch(engine: Engine, victim: Process) -> None:
    deadline = time.monotonic() + 120
    while not _claiming(engine, victim):
        assert done(engine) < ENROLLMENTS, "the work finished before the victim was caught"
        assert time.monotonic() < deadline, "the victim never claimed a batch"
        time.sleep(0.002)


def _freeze_mid_batch(engine: Engine, victim: Process) -> None:
    """SIGSTOP the victim while it holds a claim: a stop that lands just after a commit is
    undone (SIGCONT) and tried again."""
    for _ in range(100):
        _catch_mid_batch(engine, victim)
        victim.kill(signal.SIGSTOP)
        time.sleep(0.05)  # the stop has landed; whatever the worker held, it holds now
        if _claiming(engine, victim):
            return
        victim.kill(signal.SIGCONT)
    raise AssertionError("the victim was never stopped while holding a claim")


def test_sigkill_mid_batch_the_others_take_its_rows(
    postgres_url: str, fleet_store: Engine, tmp_path: Path
) -> None:
    engine = fleet_store
    seed(engine, ENROLLMENTS, None)
    with Fleet(postgres_url, tmp_path) as fleet:
        victim, *others = [fleet.start(batch=100, interval=0.5) for _ in range(3)]
        fleet.wait_ready()
        make_due(engine, datetime.now(UTC))
        wait_for(lambda: done(engine) > ENROLLMENTS // 10, 300, "a tenth of the work")
        _catch_mid_batch(engine, victim)
        victim.kill(signal.SIGKILL)
        victim.popen.wait(30)
        at_kill = done(engine)
        wait_for(lambda: done(engine) >= ENROLLMENTS, 600, "the others to finish")
        assert all(w.alive() for w in others)
        by_others = sum(w.metric("flowbuilder_decisions_total") for w in others)
    assert at_kill < ENROLLMENTS
    assert invariants(engine) == Invariants.expected(ENROLLMENTS)
    # The victim's batch was rolled back: the survivors decided everything it never committed.
    assert by_others >= ENROLLMENTS - at_kill
    engine.dispose()


def test_a_hung_worker_loses_its_batch_after_the_lease_and_cannot_commit_it(
    postgres_url: str, fleet_store: Engine, tmp_path: Path
) -> None:
    engine = fleet_store
    seed(engine, ENROLLMENTS, None)
    with Fleet(
        postgres_url, tmp_path, env={"FLOWBUILDER_CLAIM_LEASE_SECONDS": str(LEASE)}
    ) as fleet:
        victim, *others = [fleet.start(batch=100, interval=0.5) for _ in range(3)]
        fleet.wait_ready()
        make_due(engine, datetime.now(UTC))
        wait_for(lambda: done(engine) > ENROLLMENTS // 10, 300, "a tenth of the work")
        _freeze_mid_batch(engine, victim)
        frozen = time.monotonic()
        try:
            # While it is frozen, the others finish everything, its claimed rows included.
            wait_for(lambda: done(engine) >= ENROLLMENTS, 600, "the others to finish")
            assert _sessions(engine, victim) == 0, "the hung worker's claim outlived its lease"
            assert time.monotonic() - frozen >= LEASE
        finally:
            victim.kill(signal.SIGCONT)
        # Awake again, its stale batch fails to commit; it counts the failure and ticks on.
        wait_for(
            lambda: victim.metric("flowbuilder_failures_total", {"component": "tick"}) >= 1,
            60,
            "the woken worker to report its failed batch",
        )
        wait_for(lambda: victim.get("/healthz")[0] == 200, 60, "the woken worker to be healthy")
        assert victim.alive() and all(w.alive() for w in others)
    assert invariants(engine) == Invariants.expected(ENROLLMENTS)
