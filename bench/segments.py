"""Lead rules at scale (`python -m bench.segments [--leads N]`), on SQLite, printed as a table.

- incremental re-evaluation of 10,000 new events (the runtime's events pass, which re-checks only
  the rules those events can change) against a full recompute of every rule for every lead;
- a windowed-count segment computed by flowbuilder (the condition compiled to SQL) against the
  equivalent hand-written SQL query on the same database.

The population: 100,000 leads with 2,000,000 events over 90 days (opens, clicks, deliveries,
purchases, document views), classified by stages, scoring, rule-fed lists and segments.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from rich.progress import Progress
from sqlalchemy import Engine, insert, select, text, update

from bench.table import Row, print_rows
from dsl.compile import compile_text
from dsl.lint import lint
from flowbuilder.publish import publish
from flowbuilder.runtime import lifecycle
from flowbuilder.runtime.tick import TickStats, events_pass
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.published import Published, current
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead
from flowbuilder.store.segments_sql import members

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BATCH = 1000

RULES = """
settings {
  click_threshold = 3
  icp = ["saas", "fintech"]
}

attribute industry: string
attribute age: number

stages {
  stage sql "Sales-qualified" when lead.industry in settings.icp or count(click) >= settings.click_threshold or viewed("pricing", depth=50%)
  stage mql "Marketing-qualified" when opened() and not clicked() or count(click, within=90d) >= 1
  stage lead "New"
}

scoring {
  fit +20 when lead.industry in settings.icp
  engagement +1 per open within 30d
  engagement +3 per click within 30d
  decay 20% every 30d
}

list repeat_clickers "Clicked repeatedly in 30 days" {
  add when count(click, within=30d) >= settings.click_threshold
  remove when count(click, within=30d) == 0
}

list buyers "Bought something" {
  add when occurred("purchase")
}

segment clickers_30d "Clicked 3 times in 30 days" where count(click, within=30d) >= 3
segment openers_7d "Opened in the last 7 days" where occurred(open, within=7d)
segment thirties "In their thirties" where lead.age >= 30 and lead.age <= 39
segment spenders "Spent over 100 in 60 days" where total("purchase", "amount", within=60d) > 100
"""

# The hand-written equivalent of `clickers_30d`.
RAW_SEGMENT = text(
    "SELECT lead_id FROM events WHERE type = 'click' AND machine = 0 AND at > :since "
    "AND at <= :now GROUP BY lead_id HAVING count(*) >= 3"
)

KINDS = ["open"] * 8 + ["click"] * 4 + ["delivery"] * 6 + ["purchase", "view"]


def _event(rng: random.Random, lead_id: int, at: datetime) -> dict[str, object]:
    kind = rng.choice(KINDS)
    properties: dict[str, object] = {}
    if kind == "purchase":
        properties["amount"] = rng.choice([20, 45, 80, 150])
    elif kind == "view":
        properties = {"document": rng.choice(["pricing", "guide"]), "depth": rng.randint(5, 100)}
    return {
        "lead_id": lead_id,
        "type": kind,
        "at": at,
        "properties": properties,
        "machine": False,
        "received_at": at,
        "pending": False,
    }


def populate(folder: Path, leads: int, events: int) -> Engine:
    engine = open_store(f"sqlite:///{folder / 'segments.db'}")
    compilation = compile_text(RULES, "rules.flow")
    publish(engine, compilation, lint(compilation), NOW - timedelta(days=91))
    rng = random.Random(20261123)
    start = NOW - timedelta(days=90)
    with Progress(transient=True) as progress:
        task = progress.add_task("population", total=leads + events)
        with engine.begin() as conn:
            for first in range(0, leads, 10_000):
                conn.execute(
                    insert(Lead),
                    [
                        {
                            "email": f"lead{i}@example.com",
                            "attributes": {
                                "industry": rng.choice(["saas", "retail", "fintech", "media"]),
                                "age": rng.randint(20, 60),
                            },
                            "score": 0.0,
                            "tags": [],
                            "consent": "granted",
                            "unsubscribed": False,
                            "created_at": start,
                            "updated_at": start,
                        }
                        for i in range(first, min(leads, first + 10_000))
                    ],
                )
                progress.advance(task, min(10_000, leads - first))
            for first in range(0, events, 50_000):
                rows = [
                    _event(
                        rng,
                        rng.randint(1, leads),
                        start + timedelta(seconds=rng.randint(0, 90 * 86400)),
                    )
                    for _ in range(min(50_000, events - first))
                ]
                conn.execute(insert(EventRow), rows)
                progress.advance(task, len(rows))
    return engine


def full_recompute(engine: Engine) -> float:
    """Every rule for every lead: what a system without incremental re-evaluation does."""
    with engine.begin() as conn:
        conn.execute(update(Lead).values(rules_due_at=NOW))
    with reading(engine) as conn:
        published = current(conn)
    assert published is not None
    started = time.perf_counter()
    while True:
        with engine.begin() as conn:
            checked, _ = lifecycle.due_rules_pass(conn, published, NOW, BATCH)
        if checked < BATCH:
            break
    _drain(engine, published)  # the changes' own events, as the runtime handles them
    return time.perf_counter() - started


def _drain(engine: Engine, published: Published) -> None:
    while True:
        with engine.begin() as conn:
            if events_pass(conn, published, NOW, BATCH, TickStats()) == 0:
                return


def incremental(engine: Engine, new_events: int, seed: int) -> float:
    """New events through the runtime's events pass: each lead's rules those events can change."""
    rng = random.Random(seed)
    with reading(engine) as conn:
        published = current(conn)
        leads = conn.execute(select(Lead.id).order_by(Lead.id.desc()).limit(1)).scalar_one()
    assert published is not None
    with engine.begin() as conn:
        rows = [
            _event(rng, rng.randint(1, leads), NOW - timedelta(minutes=5))
            for _ in range(new_events)
        ]
        for row in rows:
            row["pending"] = True
        conn.execute(insert(EventRow), rows)
    started = time.perf_counter()
    _drain(engine, published)
    return time.perf_counter() - started


def segment_by_flowbuilder(engine: Engine) -> tuple[float, int]:
    with reading(engine) as conn:
        published = current(conn)
        assert published is not None
        condition = published.ws.segments["clickers_30d"].condition
        started = time.perf_counter()
        found = members(conn, published.ws, condition, NOW)
    return time.perf_counter() - started, len(found)


def segment_by_hand(engine: Engine) -> tuple[float, int]:
    since = (NOW - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    now = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    with reading(engine) as conn:
        started = time.perf_counter()
        found = {i for (i,) in conn.execute(RAW_SEGMENT, {"since": since, "now": now})}
    return time.perf_counter() - started, len(found)


def rows(leads: int = 100_000, events: int = 2_000_000, new_events: int = 10_000) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = populate(Path(tmp), leads, events)
        full = full_recompute(engine)
        fast = incremental(engine, new_events, seed=1)
        ours, theirs = [], []
        for _ in range(5):  # alternate, so that load elsewhere skews neither side
            t, a = segment_by_flowbuilder(engine)
            ours.append(t)
            t, b = segment_by_hand(engine)
            theirs.append(t)
            assert a == b, f"flowbuilder found {a} members, the hand-written query {b}"
        engine.dispose()
    return [
        Row(
            f"incremental: {new_events:,} new events",
            fast,
            f"full recompute, {leads:,} leads",
            full,
            "≥ 20×",
            full / fast >= 20,
            speedup=True,
        ),
        Row(
            f"windowed-count segment, {leads:,} leads",
            median(ours),
            "hand-written SQL",
            median(theirs),
            "≤ 3×",
            median(ours) / median(theirs) <= 3,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--new-events", type=int, default=10_000)
    args = parser.parse_args(argv)
    print_rows(rows(args.leads, args.events, args.new_events), "Lead rules")


if __name__ == "__main__":
    main()
