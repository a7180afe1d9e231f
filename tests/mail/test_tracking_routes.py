"""The email routes on a small Starlette app built from `web.tracking.routes`, with the engine and
settings in `app.state`, driven by Starlette's TestClient."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flowbuilder.config import Settings
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender
from flowbuilder.mail.tracking import Tokens
from flowbuilder.store.schema import ConsentRecord, Event, Lead, Outbox, Preference
from tests.mail.conftest import NOW, Box, add_lead, queue, row
from web import tracking

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 Version/17.3 Safari/605.1.15"
)


@pytest.fixture
def sent(store: Engine, settings: Settings, smtp_box: tuple[Box, int]) -> dict[str, Any]:
    _, port = smtp_box
    lead = add_lead(store, "ann@example.com", {"first_name": "Ann"})
    oid = queue(store, lead, "reengage_optin", flow="reengagement", step="optin_renewal")

    async def go() -> None:
        sender = Sender(store, settings, Relay("127.0.0.1", port), clock=lambda: NOW)
        await sender.drain()
        await sender.close()

    asyncio.run(go())
    assert row(store, oid).state == "sent"
    with store.begin() as conn:  # sent an hour ago: a fetch now is no scanner's first look
        conn.execute(
            update(Outbox).where(Outbox.id == oid).values(sent_at=NOW - timedelta(hours=1))
        )
    tokens = Tokens(settings.secret())
    return {"id": oid, "lead": lead, "tokens": tokens, "row": row(store, oid)}


@pytest.fixture
def client(store: Engine, settings: Settings) -> Iterator[TestClient]:
    app = Starlette(routes=tracking.routes)
    app.state.engine = store
    app.state.settings = settings
    with TestClient(app, base_url="https://mail.acme.example") as c:
        yield c


def events(store: Engine, type_: str) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(select(Event).where(Event.type == type_)).all())


def test_the_pixel_records_a_human_open_and_a_proxy_open_as_machine(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    url = f"/t/o/{sent['tokens'].open(sent['id'])}.gif"
    person = client.get(url, headers={"user-agent": BROWSER})
    assert person.status_code == 200 and person.headers["content-type"] == "image/gif"
    client.get(url, headers={"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"})
    opens = events(store, "open")
    assert [o.machine for o in opens] == [False, True]
    assert (opens[0].flow, opens[0].step) == ("reengagement", "optin_renewal")


def test_a_click_redirects_only_to_the_link_the_message_had(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    links = sent["row"].links
    n = next(i for i, link in enumerate(links) if link["name"] == "stay_subscribed")
    response = client.get(
        f"/t/c/{sent['tokens'].click(sent['id'], n)}",
        headers={"user-agent": BROWSER},
        follow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["location"] == "https://acme.example/stay-subscribed"
    [click] = events(store, "click")
    assert click.properties == {
        "url": "https://acme.example/stay-subscribed",
        "link": "stay_subscribed",
    }


def test_a_tampered_click_token_gets_400_and_no_redirect(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    token = sent["tokens"].click(sent["id"], 0)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (
        tampered,
        Tokens("another-secret").click(sent["id"], 0),
        sent["tokens"].click(sent["id"], 99),
    ):
        response = client.get(f"/t/c/{bad}", follow_redirects=False)
        assert response.status_code == 400 and "location" not in response.headers
    assert not events(store, "click")


def test_one_click_post_unsubscribes_without_cookies_or_csrf(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    url = f"/u/{sent['tokens'].reader(sent['id'])}"
    response = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    with store.connect() as conn:
        assert conn.execute(select(Lead.unsubscribed).where(Lead.id == sent["lead"])).scalar_one()
        withdrawal = conn.execute(
            select(ConsentRecord).where(ConsentRecord.granted.is_(False))
        ).one()
    assert "one-click" in withdrawal.source
    [event] = events(store, "unsubscribe")
    assert event.step == "optin_renewal" and event.properties["method"] == "one-click"


def test_the_unsubscribe_page_never_unsubscribes_by_itself(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    url = f"/u/{sent['tokens'].reader(sent['id'])}"
    page = client.get(url)
    assert (
        page.status_code == 200 and "ann@example.com" in page.text and 'method="post"' in page.text
    )
    with store.connect() as conn:
        assert not conn.execute(
            select(Lead.unsubscribed).where(Lead.id == sent["lead"])
        ).scalar_one()
    done = client.post(url, data={"confirm": "yes", "reason": "too_many"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert events(store, "unsubscribe")[0].properties == {"method": "page", "reason": "too_many"}


def test_the_preference_center_keeps_chosen_topics_and_names_a_wrong_field(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    url = f"/p/{sent['tokens'].reader(sent['id'])}"
    page = client.get(url)
    assert page.status_code == 200 and 'value="offers"' in page.text
    saved = client.post(
        url,
        data={
            "action": "save",
            "topics": ["offers", "insights"],
            "frequency": "weekly",
            "reason": "too_many",
        },
    )
    assert saved.status_code == 200 and "saved" in saved.text
    with store.connect() as conn:
        pref = conn.execute(select(Preference)).one()
    assert "product_news" in pref.topics_off and "offers" not in pref.topics_off
    assert pref.frequency == "weekly" and pref.reason == "too_many"
    wrong = client.post(url, data={"action": "save", "frequency": "hourly"})
    assert wrong.status_code == 400 and "`frequency`: `hourly` is not one of" in wrong.text


def test_a_bad_reader_token_is_refused(client: TestClient) -> None:
    assert client.get("/u/not-a-token").status_code == 400
    assert client.post("/u/not-a-token", content=b"List-Unsubscribe=One-Click").status_code == 400
    assert client.get("/p/not-a-token").status_code == 400
    assert client.get("/t/o/not-a-token.gif").status_code == 200  # an image never breaks


def test_one_click_unsubscribes_a_message_with_the_longest_outbox_key(
    client: TestClient, store: Engine, sent: dict[str, Any]
) -> None:
    """An outbox key may be 255 characters: the `unsubscribe` event key and the consent
    record's source (255 characters on PostgreSQL) still fit, and the unsubscribe goes through;
    so does subscribing again from the preference center."""
    key = "k" * 250 + "/ann1"
    with store.begin() as conn:
        conn.execute(update(Outbox).where(Outbox.id == sent["id"]).values(key=key))
    token = sent["tokens"].reader(sent["id"])
    response = client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    [event] = events(store, "unsubscribe")
    assert event.message_key == key and len(event.idempotency_key) <= 255
    again = client.post(f"/p/{token}", data={"action": "resubscribe", "agree": "yes"})
    assert again.status_code == 200
    with store.connect() as conn:
        assert not conn.execute(
            select(Lead.unsubscribed).where(Lead.id == sent["lead"])
        ).scalar_one()
        records = conn.execute(
            select(ConsentRecord)
            .where(ConsentRecord.lead_id == sent["lead"])
            .order_by(ConsentRecord.id)
        ).all()
    withdrawal, renewal = records[-2:]
    assert not withdrawal.granted and renewal.granted
    for record in (withdrawal, renewal):
        assert len(record.source) <= 255 and "kkk/ann1" in record.source
    assert withdrawal.source.startswith("unsubscribe (one-click) from message kkk")
