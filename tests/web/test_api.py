"""The Segment-compatible event API: keys, idempotency, and refusals that name the field."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from flowbuilder.intake_api import event_type
from flowbuilder.store.db import reading
from flowbuilder.store.schema import Event, Lead
from flowbuilder.users import add_api_key
from tests.web.conftest import Site


@pytest.fixture
def key(site: Site) -> str:
    return add_api_key(site.engine, "tests", datetime.now(UTC))


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def events(site: Site, type_: str) -> int:
    with reading(site.engine) as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(Event).where(Event.type == type_)
            ).scalar_one()
        )


def test_track_records_an_event_once_per_message_id(
    site: Site, client: TestClient, key: str
) -> None:
    body = {
        "messageId": "m-1",
        "userId": "new.lead@example.com",
        "event": "Order Completed",
        "properties": {"total": 129000},
        "timestamp": "2026-03-02T10:00:00Z",
    }
    first = client.post("/v1/track", json=body, headers=basic(key))
    assert first.json() == {"success": True, "stored": 1, "duplicates": 0}
    again = client.post("/v1/track", json=body, headers={"authorization": f"Bearer {key}"})
    assert again.json() == {"success": True, "stored": 0, "duplicates": 1}
    assert events(site, "order_completed") == 1


def test_identify_sets_attributes_and_the_time_zone(
    site: Site, client: TestClient, key: str
) -> None:
    body = {
        "messageId": "m-2",
        "traits": {"email": "Jin@Example.com", "first_name": "진", "timezone": "Asia/Seoul"},
    }
    assert client.post("/v1/identify", json=body, headers=basic(key)).status_code == 200
    with reading(site.engine) as conn:
        lead = conn.execute(select(Lead).where(Lead.email == "jin@example.com")).one()
    assert lead.attributes["first_name"] == "진" and lead.timezone == "Asia/Seoul"


def test_a_batch_is_stored_whole_or_not_at_all(site: Site, client: TestClient, key: str) -> None:
    good = {"type": "track", "messageId": "b-1", "userId": "a@example.com", "event": "signed_up"}
    bad = {"type": "track", "messageId": "b-2", "anonymousId": "x", "event": "signed_up"}
    refused = client.post("/v1/batch", json={"batch": [good, bad]}, headers=basic(key))
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        {
            "field": "batch.1.userId",
            "message": "name the lead by email: give traits.email (or context.traits.email), "
            "or a userId that is an email address",
        }
    ]
    assert events(site, "signed_up") == events(site, "signed_up")
    before = events(site, "signed_up")
    fixed = {**bad, "context": {"traits": {"email": "b@example.com"}}}
    stored = client.post("/v1/batch", json={"batch": [good, fixed]}, headers=basic(key))
    assert stored.json()["stored"] == 2
    assert events(site, "signed_up") == before + 2


@pytest.mark.parametrize(
    ("url", "body", "status", "field"),
    [
        ("/v1/track", b"{", 400, None),
        ("/v1/track", b"[]", 422, "body"),
        ("/v1/track", b'{"userId": "a@example.com", "event": "x"}', 422, "messageId"),
        ("/v1/track", b'{"messageId": "1", "userId": "a@example.com"}', 422, "event"),
        (
            "/v1/track",
            b'{"messageId": "1", "userId": "a@example.com", "event": "9 lives"}',
            422,
            "event",
        ),
        (
            "/v1/track",
            b'{"messageId": "1", "userId": "a@example.com", "event": "x", "timestamp": "soon"}',
            422,
            "timestamp",
        ),
        (  # flowbuilder records opens itself
            "/v1/track",
            b'{"messageId": "1", "userId": "a@example.com", "event": "Open"}',
            422,
            "event",
        ),
        (
            "/v1/batch",
            b'{"batch": [{"type": "track", "messageId": "1", "userId": "a@example.com",'
            b' "event": "order_completed"}, {"type": "track", "messageId": "2",'
            b' "userId": "a@example.com", "event": "goal.reached"}]}',
            422,
            "batch.1.event",
        ),
        (
            "/v1/identify",
            b'{"messageId": "1", "traits": {"email": "not an address"}}',
            422,
            "traits.email",
        ),
        (
            "/v1/identify",
            b'{"messageId": "1", "traits": {"email": "a@example.com", "timezone": "Mars/Base"}}',
            422,
            "traits.timezone",
        ),
        (
            "/v1/batch",
            b'{"batch": [{"messageId": "1", "userId": "a@example.com"}]}',
            422,
            "batch.0",
        ),
        ("/v1/batch", b'{"batch": []}', 422, "batch"),
    ],
)
def test_a_malformed_call_names_the_field_and_stores_nothing(
    site: Site, client: TestClient, key: str, url: str, body: bytes, status: int, field: str | None
) -> None:
    with reading(site.engine) as conn:
        before = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    response = client.post(
        url, content=body, headers={**basic(key), "content-type": "application/json"}
    )
    assert response.status_code == status
    data = response.json()
    assert data["success"] is False
    if field is not None:
        assert any(p["field"] == field for p in data["problems"]), data
    with reading(site.engine) as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar_one() == before


def test_a_call_without_a_live_key_is_refused(site: Site, client: TestClient, key: str) -> None:
    body = {"messageId": "k", "userId": "a@example.com", "event": "x"}
    assert client.post("/v1/track", json=body).status_code == 401
    assert client.post("/v1/track", json=body, headers=basic("fbk_wrong")).status_code == 401
    assert (
        client.post("/v1/track", json=body, headers={"authorization": "Basic !!"}).status_code
        == 401
    )
    from flowbuilder.users import revoke_api_key

    revoke_api_key(site.engine, 1, datetime.now(UTC))
    assert client.post("/v1/track", json=body, headers=basic(key)).status_code == 401


def test_the_api_needs_no_csrf_token_but_a_big_body_is_refused(
    client: TestClient, key: str
) -> None:
    big = (
        b'{"messageId": "1", "userId": "a@example.com", "event": "x", "properties": {"p": "'
        + b"a" * 600_000
        + b'"}}'
    )
    response = client.post(
        "/v1/track", content=big, headers={**basic(key), "content-type": "application/json"}
    )
    assert response.status_code == 413


def test_the_openapi_document_describes_the_three_calls(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/v1/identify", "/v1/track", "/v1/batch"}
    schemas = doc["components"]["schemas"]
    assert {"Identify", "Track", "Batch", "Traits"} <= set(schemas)
    assert "messageId" in schemas["Track"]["required"]


@pytest.mark.parametrize("event", ["open", "Delivery", "bounce", "stage.changed"])
def test_a_track_call_cannot_claim_an_event_flowbuilder_records(
    site: Site, client: TestClient, key: str, event: str
) -> None:
    before = events(site, event_type(event))
    body = {"messageId": f"m-{event}", "userId": "a@example.com", "event": event}
    response = client.post("/v1/track", json=body, headers=basic(key))
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["field"] == "event"
    assert "records itself" in problem["message"] and "_external" in problem["message"]
    assert events(site, event_type(event)) == before
