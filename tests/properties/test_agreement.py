"""Random flows × random event timelines: the runtime on SQLite, the runtime on PostgreSQL and the
simulator take every lead down the same path — the same decisions, at the same steps, at the same
moments (to the second).

Each example runs on a fresh SQLite file (copied from one migrated once) and on one PostgreSQL
schema emptied between examples, so lead ids — from which a `split` draws — are 1, 2, 3 on both.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, text

from flowbuilder.store.db import make_engine, open_store
from tests.properties.paths import difference, run, simulated
from tests.properties.scenarios import Scenario, scenarios

# Kept from one example to the next: publications only grow, so a publication id never means
# two different workspaces to the runtime's per-process cache of them.
KEPT = {"alembic_version", "publications", "flow_versions"}
_examples = itertools.count()


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("agreement") / "template.db"
    open_store(f"sqlite:///{file}").dispose()
    return file


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[Engine]:
    engine = open_store(postgres_url)
    yield engine
    engine.dispose()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        names = [
            n
            for (n,) in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
            if n not in KEPT
        ]
        conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@settings(
    max_examples=int(os.environ.get("FLOWBUILDER_AGREEMENT_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_the_runtime_on_both_stores_and_the_simulator_agree_on_every_path(
    scenario: Scenario, sqlite_template: Path, postgres: Engine, tmp_path: Path
) -> None:
    # A new file name per example: the runtime keeps each (database URL, publication id) it read.
    file = tmp_path / f"example-{next(_examples)}.db"
    shutil.copy(sqlite_template, file)
    lite = make_engine(f"sqlite:///{file}")
    try:
        lite_ids, on_sqlite = run(lite, scenario)
    finally:
        lite.dispose()
    _empty(postgres)
    pg_ids, on_postgres = run(postgres, scenario)
    assert lite_ids == pg_ids == list(range(1, scenario.leads + 1))
    expected = simulated(scenario, lite_ids)
    assert on_sqlite == expected, difference(scenario, on_sqlite, expected)
    assert on_postgres == expected, difference(scenario, on_postgres, expected)
