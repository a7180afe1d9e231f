"""Four worker processes share 100,000 due enrollments and 5,000 new events on one PostgreSQL
store: every enrollment advances exactly once, every event enrolls its lead once, and no outbox
key is written twice. Batches of 200 make each worker claim hundreds of times next to the others,
so every claim skips rows the others hold."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from bench.fleet import (
    Fleet,
    Invariants,
    done,
    invariants,
    make_due,
    post_go,
    seed,
    wait_for,
)

ENROLLMENTS = int(os.environ.get("FLOWBUILDER_SCALE_ENROLLMENTS", "100000"))
EVENTS = 5_000
WORKERS = 4


def test_four_workers_advance_every_enrollment_exactly_once(
    postgres_url: str, fleet_store: Engine, tmp_path: Path
) -> None:
    engine = fleet_store
    seed(engine, ENROLLMENTS, None)
    with Fleet(postgres_url, tmp_path) as fleet:
        workers = [fleet.start(batch=200, interval=0.5) for _ in range(WORKERS)]
        fleet.wait_ready()
        make_due(engine, datetime.now(UTC))
        post_go(engine, 0, EVENTS, datetime.now(UTC))
        wait_for(lambda: done(engine) >= ENROLLMENTS + EVENTS, 900, "the fleet to finish")
        decided = [w.metric("flowbuilder_decisions_total") for w in workers]
        matched = [w.metric("flowbuilder_events_processed_total") for w in workers]
        assert all(w.alive() for w in workers)

    assert invariants(engine) == Invariants.expected(ENROLLMENTS, EVENTS)
    # Each worker counts only what it committed: together, each enrollment once and each event once.
    assert sum(decided) == ENROLLMENTS + EVENTS
    assert sum(matched) == EVENTS
    assert all(d > 0 for d in decided), f"the work was not shared: {decided}"
