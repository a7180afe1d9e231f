"""`POST /v1/batch` on SQLite and on PostgreSQL: every new call stored once, repeats counted and
changing nothing, malformed calls named by their index, concurrent requests side by side, and the
wake-up for the runtime.

PostgreSQL is the test server of `tests/store/conftest.py` (a schema of its own per test); without
one the PostgreSQL cases are skipped, unless FLOWBUILDER_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, Table, func, select
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from flowbuilder import intake_api
from flowbuilder.config import Settings
from flowbuilder.intake import LeadIn
from flowbuilder.store.bulk import insert_new
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import Event, Lead
from flowbuilder.users import add_api_key
from flowbuilder.wakeups import CHANNEL, libpq_url
from tests.store.conftest import _postgres_missing, postgres_schema
from web.app import create_app

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_missing() -> str | None:
    return _postgres_missing()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_missing: str | None
) -> Iterator[Engine]:
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path}/api.db")
        yield store
        store.dispose()
        return
    with postgres_schema(postgres_missing) as url:
        store = open_store(url)
        yield store
        store.dispose()


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=str(engine.url), data_dir=tmp_path, secret_key="test-secret-" + "x" * 32
    )
    key = add_api_key(engine, "tests", NOW)
    with TestClient(create_app(settings, engine), headers={"authorization": f"Bearer {key}"}) as c:
        yield c


def track(message_id: str, email: str, event: str = "Page Viewed", **more: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "userId": email, "event": event, **more}


def stored_keys(engine: Engine) -> list[str]:
    """The idempotency keys of the stored events, in the order they were stored."""
    with reading(engine) as conn:
        return [
            str(k) for k in conn.execute(select(Event.idempotency_key).order_by(Event.id)).scalars()
        ]


def lead(engine: Engine, email: str) -> Any:
    with reading(engine) as conn:
        return conn.execute(select(Lead).where(Lead.email == email)).first()


def test_a_batch_stores_each_new_call_once_in_order_and_counts_the_repeats(
    engine: Engine, client: TestClient
) -> None:
    first = client.post("/v1/batch", json={"batch": [track("m-1", "ann@example.com")]})
    assert first.json() == {"success": True, "stored": 1, "duplicates": 0}
    batch = [
        track("m-2", "Ann@Example.com", "Order Completed", properties={"total": 129000}),
        track("m-1", "ann@example.com"),  # stored by the first request
        track("m-3", "new.lead@example.com", timestamp="2026-03-02T19:00:00+09:00"),
        track("m-2", "ann@example.com", "Something Else"),  # earlier in this batch
        {
            "type": "identify",
            "messageId": "m-4",
            "traits": {"email": "bo@example.com", "first_name": "Bo", "timezone": "Asia/Seoul"},
        },
    ]
    answer = client.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "stored": 3, "duplicates": 2}
    assert stored_keys(engine) == ["segment:m-1", "segment:m-2", "segment:m-3", "segment:m-4"]
    with reading(engine) as conn:
        rows = conn.execute(
            select(Event.type, Event.properties, Event.at, Event.pending, Lead.email)
            .join(Lead, Lead.id == Event.lead_id)
            .order_by(Event.id)
        ).all()
    assert [(r.type, r.email) for r in rows] == [
        ("page_viewed", "ann@example.com"),
        ("order_completed", "ann@example.com"),
        ("page_viewed", "new.lead@example.com"),
        ("identify", "bo@example.com"),
    ]
    assert rows[1].properties == {"total": 129000}
    assert rows[2].at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert all(r.pending for r in rows)
    # The lead named by a new email was created; the identify's traits became attributes.
    assert lead(engine, "new.lead@example.com").account == "example.com"
    bo = lead(engine, "bo@example.com")
    assert bo.attributes == {"first_name": "Bo"} and bo.timezone == "Asia/Seoul"


def test_malformed_calls_are_named_by_index_and_field_and_nothing_is_stored(
    engine: Engine, client: TestClient
) -> None:
    client.post("/v1/batch", json={"batch": [track("m-1", "ann@example.com")]})
    batch = [
        track("m-2", "ann@example.com"),
        {"type": "track", "messageId": "m-3", "userId": "ann@example.com"},
        track("m-4", "ann@example.com", timestamp="soon"),
        track("m-5", "not an address"),
        track("m-1", "ann@example.com"),
        track("m-6", "ann@example.com", "9 lives"),
    ]
    refused = client.post("/v1/batch", json={"batch": batch})
    assert refused.status_code == 422
    fields = [p["field"] for p in refused.json()["problems"]]
    assert fields == ["batch.1.event", "batch.2.timestamp", "batch.5.event"]
    # The lead check comes once the shapes are right: each call without an email, by index.
    fixed = [c for i, c in enumerate(batch) if i not in (1, 2, 5)]
    refused = client.post("/v1/batch", json={"batch": fixed})
    assert [p["field"] for p in refused.json()["problems"]] == ["batch.1.userId"]
    assert stored_keys(engine) == ["segment:m-1"]
    # The good ones, sent again with the repeat, are stored exactly once.
    good = [batch[0], batch[4]]
    assert client.post("/v1/batch", json={"batch": good}).json() == {
        "success": True,
        "stored": 1,
        "duplicates": 1,
    }
    assert client.post("/v1/batch", json={"batch": good}).json()["duplicates"] == 2
    assert stored_keys(engine) == ["segment:m-1", "segment:m-2"]


def test_a_repeat_changes_nothing_not_even_the_leads(engine: Engine, client: TestClient) -> None:
    identify = {"type": "identify", "messageId": "i-1", "traits": {"email": "bo@example.com"}}
    first = [
        {**identify, "traits": {**identify["traits"], "plan": "free"}},
        track("t-1", "ann@example.com"),
    ]
    assert client.post("/v1/batch", json={"batch": first}).json()["stored"] == 2
    again = [
        {**identify, "traits": {**identify["traits"], "plan": "pro"}},
        # the same messageId naming a lead nobody knows: it must not create that lead
        track("t-1", "nobody@example.com"),
        track("t-2", "Unsubscribe@example.com", "Unsubscribe"),
    ]
    answer = client.post("/v1/batch", json={"batch": again})
    assert answer.json() == {"success": True, "stored": 1, "duplicates": 2}
    assert lead(engine, "bo@example.com").attributes == {"plan": "free"}
    assert lead(engine, "nobody@example.com") is None
    # An `unsubscribe` event unsubscribes its lead; its repeat for another lead does not.
    assert lead(engine, "unsubscribe@example.com").unsubscribed is True
    repeat = [track("t-2", "ann@example.com", "Unsubscribe")]
    assert client.post("/v1/batch", json={"batch": repeat}).json()["duplicates"] == 1
    assert lead(engine, "ann@example.com").unsubscribed is False


def test_concurrent_batches_store_every_message_once(engine: Engine) -> None:
    """Requests are stored side by side (in worker threads, and in other processes): batches
    that share messageIds and name the same new leads each store their part, none fails."""
    upsert_leads_known(engine)
    batches = [
        [track(f"m-{(b * 7 + i) % 40}", f"lead{(b + i) % 12}@example.com") for i in range(20)]
        for b in range(8)
    ]
    results: list[intake_api.Stored] = []
    failures: list[BaseException] = []
    start = threading.Barrier(len(batches))

    def post(batch: list[dict[str, Any]]) -> None:
        try:
            calls = intake_api.parse("batch", {"batch": batch})
            start.wait()
            with engine.begin() as conn:
                results.append(intake_api.store(conn, calls, NOW))
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=post, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    keys = stored_keys(engine)
    wanted = {f"segment:{c['messageId']}" for b in batches for c in b}
    assert sorted(keys) == sorted(wanted)
    assert sum(r.stored for r in results) == len(wanted)
    assert sum(r.duplicates for r in results) == sum(len(b) for b in batches) - len(wanted)
    with reading(engine) as conn:
        emails = list(conn.execute(select(Lead.email).order_by(Lead.email)).scalars())
    assert emails == sorted(f"lead{i}@example.com" for i in range(12))


def upsert_leads_known(engine: Engine) -> None:
    """Half the leads the concurrent batches name exist; the others are created by them."""
    with engine.begin() as conn:
        upsert_leads(conn, [LeadIn(email=f"lead{i}@example.com") for i in range(6)], NOW)


# PostgreSQL only: the runtime on SQLite is one process that ticks on its interval.
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_batch_that_stores_events_wakes_the_runtime(engine: Engine, client: TestClient) -> None:
    with psycopg.connect(libpq_url(engine), autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        body = {"batch": [track("m-1", "ann@example.com"), track("m-2", "ann@example.com")]}
        assert client.post("/v1/batch", json=body).json()["stored"] == 2
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        assert len(heard) == 1 and heard[0].endswith(":events")
        # Repeats only: nothing new to match, nobody woken.
        assert client.post("/v1/batch", json=body).json()["duplicates"] == 2
        assert [n.payload for n in listener.notifies(timeout=0.5)] == []


def test_insert_new_returns_the_keys_it_stored_and_refuses_a_too_long_text(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        upsert_leads(conn, [LeadIn(email="ann@example.com")], NOW)
        lead_id = conn.execute(select(Lead.id)).scalar_one()
    columns = intake_api.EVENT_COLUMNS
    table: Table = Event.__table__  # type: ignore[assignment]

    def row(key: str, type_: str = "x") -> tuple[Any, ...]:
        return (lead_id, type_, NOW, {"k": [1, "é"]}, False, key, NOW, True)

    with engine.begin() as conn:
        assert insert_new(conn, table, columns, [row("a"), row("b")], "idempotency_key") == [
            "a",
            "b",
        ]
        assert insert_new(conn, table, columns, [row("b"), row("c")], "idempotency_key") == ["c"]
        assert insert_new(conn, table, columns, [], "idempotency_key") == []
    with reading(engine) as conn:
        stored = conn.execute(select(Event.properties, Event.at).order_by(Event.id)).all()
        count = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    assert count == 3 and stored[0] == ({"k": [1, "é"]}, NOW)
    if engine.dialect.name == "postgresql":
        # `events.type` is varchar(64): a longer type is refused, not cut to fit.
        with pytest.raises(DBAPIError), engine.begin() as conn:
            insert_new(conn, table, columns, [row("d", "t" * 65)], "idempotency_key")


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_batch_rolled_back_for_a_deadlock_is_stored_again_once(
    engine: Engine, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL rolls one of two deadlocked transactions back whole; the request runs its
    transaction again instead of failing, and every call is stored once."""
    real = intake_api.store
    attempts: list[int] = []

    def store_after_a_deadlock(conn: Any, calls: Any, now: datetime) -> intake_api.Stored:
        attempts.append(len(attempts) + 1)
        stored = real(conn, calls, now)  # written, then rolled back with the transaction
        if len(attempts) == 1:
            raise DBAPIError("INSERT INTO events …", {}, _Deadlock())
        return stored

    monkeypatch.setattr(intake_api, "store", store_after_a_deadlock)
    batch = [track("m-1", "ann@example.com"), track("m-2", "bob@example.com")]
    answer = client.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "stored": 2, "duplicates": 0}
    assert attempts == [1, 2]
    with reading(engine) as conn:
        assert conn.scalar(select(func.count()).select_from(Event)) == 2


def test_other_database_errors_are_not_run_again(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    def broken(conn: Any, calls: Any, now: datetime) -> intake_api.Stored:
        attempts.append(1)
        raise DBAPIError("INSERT INTO events …", {}, Exception("disk full"))

    monkeypatch.setattr(intake_api, "store", broken)
    with pytest.raises(DBAPIError):
        client.post("/v1/batch", json={"batch": [track("m-1", "ann@example.com")]})
    assert attempts == [1]
