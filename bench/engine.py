"""Engine speed (`python -m bench.engine [--enrollments N]`), on SQLite, printed as a table.

- the runtime's tick over N due enrollments, against (a) one APScheduler 3.11 job per wait doing
  the same work, one lead per job and transaction, and (b) raw SQL claim + advance writing the same
  rows on the same schema;
- the simulator over 10k leads × 90 virtual days, against the runtime driven through the same days.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, func, insert, select, text

from bench.table import Row, print_rows
from dsl import ir
from dsl.compile import compile_text
from dsl.lint import lint
from flowbuilder.engine.facts import Event
from flowbuilder.intake import EventIn
from flowbuilder.publish import publish
from flowbuilder.runtime.replay import replay
from flowbuilder.runtime.tick import TickStats, due_pass, tick
from flowbuilder.simulate import Lead, simulate
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.published import current
from flowbuilder.store.schema import EnrollmentRow, Outbox
from flowbuilder.store.schema import Lead as LeadRow

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)

STEP_FLOW = """
template hello {
  subject "Hello"
}

flow bench "One wait, one send, one wait" {
  trigger event go
  pause: wait 1d
  hello: send hello
  rest: wait 1d
  done: end
}
"""

NURTURE_FLOW = """
template a {
  subject "A"
}
template b {
  subject "B"
}
template c {
  subject "C"
}

flow nurture "Nurture over a month" {
  trigger event signed_up
  exit when replied()
  first: send a
  w1: wait 3d
  second: send b
  read: wait for clicked(second) up to 4d {
    then -> hot
    timeout -> w2
  }
  w2: wait 7d
  third: send c
  w3: wait 14d
  done: end
  hot: update lead.score += 10
  thanks: send c
  finish: end
}
"""


def _workspace(source: str) -> ir.Workspace:
    compilation = compile_text(source, "bench.flow")
    assert compilation.ok and compilation.workspace is not None, compilation.diagnostics
    return compilation.workspace


def _store(folder: Path, name: str, source: str) -> Engine:
    engine = open_store(f"sqlite:///{folder / name}.db")
    compilation = compile_text(source, "bench.flow")
    publish(engine, compilation, lint(compilation), NOW - timedelta(days=2))
    return engine


def _seed_due(engine: Engine, n: int) -> None:
    """`n` leads, each at `pause` for a day: all due at NOW."""
    with engine.begin() as conn:
        published = current(conn)
        assert published is not None
        version = published.versions["bench"][0]
        entered = NOW - timedelta(days=1)
        conn.execute(
            insert(LeadRow),
            [
                {
                    "email": f"lead{i}@example.com",
                    "attributes": {"first_name": f"Lead {i}"},
                    "score": 0.0,
                    "tags": [],
                    "consent": "granted",
                    "unsubscribed": False,
                    "created_at": entered,
                    "updated_at": entered,
                }
                for i in range(n)
            ],
        )
        ids = [i for (i,) in conn.execute(select(LeadRow.id).order_by(LeadRow.id))]
        conn.execute(
            insert(EnrollmentRow),
            [
                {
                    "lead_id": lead_id,
                    "flow": "bench",
                    "version_id": version,
                    "step": "pause",
                    "status": "active",
                    "entered_at": entered,
                    "step_entered_at": entered,
                    "due_at": NOW,
                    "waiting_for_facts": False,
                    "context": {},
                    "advanced": 0,
                    "updated_at": entered,
                }
                for lead_id in ids
            ],
        )


def _at_rest(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    EnrollmentRow.step == "rest", EnrollmentRow.advanced == 1
                )
            ).scalar_one()
        )


def engine_tick(engine: Engine) -> float:
    start = time.perf_counter()
    tick(engine, NOW, batch=1000)
    return time.perf_counter() - start


def one_job_per_wait(engine: Engine) -> float:
    """The design flowbuilder avoids: a scheduler job per waiting lead, one transaction each."""
    with reading(engine) as conn:
        published = current(conn)
        ids = [i for (i,) in conn.execute(select(EnrollmentRow.id).order_by(EnrollmentRow.id))]
    assert published is not None
    done = threading.Event()
    remaining = [len(ids)]
    lock = threading.Lock()

    def job(enrollment_id: int) -> None:
        with engine.begin() as conn:
            due_pass(conn, published, NOW, 1, TickStats(), only=enrollment_id)
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"misfire_grace_time": None},
    )
    start = time.perf_counter()
    scheduler.start(paused=True)
    for enrollment_id in ids:
        scheduler.add_job(job, "date", run_date=datetime.now(UTC), args=[enrollment_id])
    scheduler.resume()
    done.wait()
    elapsed = time.perf_counter() - start
    scheduler.shutdown()
    return elapsed


RAW_DECISIONS = text(
    "INSERT INTO decisions (enrollment_id, lead_id, flow, step, kind, reason, data, at) "
    "VALUES (:e, :l, 'bench', :step, :kind, :reason, '{}', :at)"
)


def raw_sql(engine: Engine) -> float:
    """Claim and advance with hand-written SQL, writing the rows the runtime writes."""
    start = time.perf_counter()
    stamp = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores datetimes in SQLite
    at = NOW.strftime(stamp)
    rest_until = (NOW + timedelta(days=1)).strftime(stamp)
    while True:
        with engine.begin() as conn:
            claimed = conn.execute(
                text(
                    "SELECT id, lead_id, entered_at FROM enrollments WHERE status = 'active' "
                    "AND due_at <= :now ORDER BY due_at, id LIMIT 1000"
                ),
                {"now": at},
            ).all()
            if not claimed:
                break
            conn.execute(
                text(
                    "UPDATE enrollments SET step = 'rest', step_entered_at = :at, due_at = :due, "
                    """context = '{"visits": {"hello": 1, "rest": 1}}', """
                    "advanced = advanced + 1, updated_at = :at WHERE id = :id"
                ),
                [{"at": at, "due": rest_until, "id": r.id} for r in claimed],
            )
            conn.execute(
                text(
                    "INSERT INTO outbox (key, lead_id, enrollment_id, flow, step, channel, template, "
                    "payload, state, attempts, created_at, updated_at) VALUES (:key, :l, :e, "
                    "'bench', 'hello', 'email', 'hello', '{}', 'pending', 0, :at, :at)"
                ),
                [
                    {
                        "key": f"{r.lead_id}/bench/{r.entered_at}/hello/1",
                        "l": r.lead_id,
                        "e": r.id,
                        "at": at,
                    }
                    for r in claimed
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO events (lead_id, type, at, properties, flow, step, machine, "
                    "received_at, pending) VALUES (:l, 'send', :at, '{}', 'bench', 'hello', 0, :at, 0)"
                ),
                [{"l": r.lead_id, "at": at} for r in claimed],
            )
            conn.execute(
                RAW_DECISIONS,
                [
                    {
                        "e": r.id,
                        "l": r.lead_id,
                        "step": step,
                        "kind": kind,
                        "reason": reason,
                        "at": at,
                    }
                    for r in claimed
                    for step, kind, reason in (
                        ("pause", "advance", "waited 1d"),
                        ("hello", "send", "send hello"),
                        ("hello", "advance", "sent"),
                        (
                            "rest",
                            "wait",
                            f"waiting until {NOW + timedelta(days=1):%Y-%m-%dT%H:%M:%S%z}",
                        ),
                    )
                ],
            )
    return time.perf_counter() - start


def _timed(folder: Path, name: str, n: int, run: Callable[[Engine], float]) -> float:
    engine = _store(folder, name, STEP_FLOW)
    _seed_due(engine, n)
    seconds = run(engine)
    advanced = _at_rest(engine)
    assert advanced == n, f"{name}: {advanced} of {n} enrollments advanced"
    engine.dispose()
    return seconds / n


def simulator_vs_runtime(folder: Path, leads: int, days: int) -> tuple[float, float]:
    """Seconds per lead for the simulator and for the runtime on a virtual clock, same inputs."""
    ws = _workspace(NURTURE_FLOW)
    population = [Lead(str(i), {"email": f"l{i}@example.com"}) for i in range(leads)]
    events = [(str(i), Event("signed_up", NOW + timedelta(minutes=i % 60))) for i in range(leads)]
    clicks = [
        (str(i), Event("click", NOW + timedelta(days=4), flow="nurture", step="second"))
        for i in range(0, leads, 3)
    ]
    start = time.perf_counter()
    result = simulate(ws, population, [*events, *clicks], NOW, days)
    simulated = time.perf_counter() - start
    sends = len(result.sends())

    engine = _store(folder, "runtime-path", NURTURE_FLOW)
    script = [
        EventIn(type=e.type, email=f"l{lead}@example.com", at=e.at, flow=e.flow, step=e.step)
        for lead, e in [*events, *clicks]
    ]
    start = time.perf_counter()
    replay(engine, NOW, NOW + timedelta(days=days), script)
    runtime = time.perf_counter() - start
    with reading(engine) as conn:
        runtime_sends = conn.execute(select(func.count()).select_from(Outbox)).scalar_one()
    engine.dispose()
    assert runtime_sends == sends, f"runtime sent {runtime_sends}, simulator {sends}"
    return simulated / leads, runtime / leads


def rows(
    enrollments: int = 100_000, jobs: int = 5_000, leads: int = 10_000, rounds: int = 3
) -> list[Row]:
    """Each measure and its reference run alternately, `rounds` times; the table shows medians,
    so a burst of load elsewhere on the machine skews one round, not the result."""
    engine_s: list[float] = []
    jobs_s: list[float] = []
    raw_s: list[float] = []
    sim_s: list[float] = []
    runtime_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in range(rounds):
            engine_s.append(_timed(folder, f"engine{n}", enrollments, engine_tick))
            jobs_s.append(_timed(folder, f"jobs{n}", jobs, one_job_per_wait))
            raw_s.append(_timed(folder, f"raw{n}", enrollments, raw_sql))
            (folder / f"round{n}").mkdir()
            simulated, runtime = simulator_vs_runtime(folder / f"round{n}", leads, 90)
            sim_s.append(simulated)
            runtime_s.append(runtime)
    engine, job, raw = median(engine_s), median(jobs_s), median(raw_s)
    sim, run = median(sim_s), median(runtime_s)
    return [
        Row(
            f"engine tick, {enrollments:,} due",
            engine,
            f"APScheduler job per wait ({jobs:,})",
            job,
            "≥ 15×",
            job / engine >= 15,
            per="lead-steps",
        ),
        Row(
            f"engine tick, {enrollments:,} due",
            engine,
            "raw SQL claim + advance",
            raw,
            "≥ 0.5×",
            raw / engine >= 0.5,
            per="lead-steps",
        ),
        Row(
            f"simulator, {leads:,} leads × 90 d",
            sim,
            "runtime, same days",
            run,
            "≥ 5×",
            run / sim >= 5,
            per="leads",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print_rows(rows(args.enrollments, args.jobs, args.leads, args.rounds), "Engine")


if __name__ == "__main__":
    main()
