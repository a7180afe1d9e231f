"""Hosted forms: a submission creates the lead, records consent, routes it to lists by its
answers and fires the form trigger; spam and mistakes store nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.testclient import TestClient

from flowbuilder.store.db import reading
from flowbuilder.store.schema import ConsentRecord, Event, Lead, Membership
from tests.web.conftest import Site, csrf

GOOD = {
    "email": "Mina@Startup.example",
    "company": "Startup",
    "interest": "product_a",
    "message": "Hello",
    "consent": "yes",
}


def counts(site: Site) -> tuple[int, int]:
    with reading(site.engine) as conn:
        leads = conn.execute(select(func.count()).select_from(Lead)).scalar_one()
        events = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    return int(leads), int(events)


def test_the_form_page_shows_every_declared_field(client: TestClient) -> None:
    html = client.get("/f/contact_us").text
    for name in ("email", "company", "interest", "message", "website", "consent"):
        assert f'name="{name}"' in html
    assert 'value="product_a"' in html


def test_a_submission_makes_the_lead_records_consent_routes_and_fires_the_trigger(
    site: Site, client: TestClient
) -> None:
    response = client.post("/f/contact_us", data={**GOOD, "csrftoken": csrf(client)})
    assert response.status_code == 200 and "Thank you" in response.text
    with reading(site.engine) as conn:
        lead = conn.execute(select(Lead).where(Lead.email == "mina@startup.example")).one()
        assert lead.consent == "granted"
        assert lead.attributes["company"] == "Startup"
        consent = conn.execute(select(ConsentRecord).where(ConsentRecord.lead_id == lead.id)).one()
        assert consent.source.startswith("form contact_us") and "Acme" in consent.wording
        lists = set(
            conn.execute(
                select(Membership.list_name).where(Membership.lead_id == lead.id)
            ).scalars()
        )
        assert "product_a" in lists
        form = conn.execute(
            select(Event).where(Event.lead_id == lead.id, Event.type == "form")
        ).one()
        assert form.properties["form"] == "contact_us"
        assert form.properties["answers"]["interest"] == "product_a"
        assert form.pending


def test_mistakes_are_shown_on_their_fields_and_nothing_is_stored(
    site: Site, client: TestClient
) -> None:
    before = counts(site)
    response = client.post(
        "/f/contact_us",
        data={"email": "not-an-address", "interest": "product_z", "csrftoken": csrf(client)},
    )
    assert response.status_code == 422
    html = response.text
    assert 'id="fe-email"' in html and "not an email address" in html
    assert 'id="fe-interest"' in html and "not one of: product_a, product_b, pricing, other" in html
    assert 'id="fe-company"' in html and "is required" in html
    assert counts(site) == before


def test_a_filled_honeypot_is_thanked_and_dropped(site: Site, client: TestClient) -> None:
    before = counts(site)
    response = client.post(
        "/f/contact_us", data={**GOOD, "website": "http://spam", "csrftoken": csrf(client)}
    )
    assert response.status_code == 200 and "Thank you" in response.text
    assert counts(site) == before


def test_submissions_from_one_address_are_rate_limited(client: TestClient) -> None:
    statuses = [
        client.post("/f/contact_us", data={"email": "x", "csrftoken": csrf(client)}).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [422] * 10 and statuses[10] == 429


def test_an_unknown_form_is_404(client: TestClient) -> None:
    assert client.get("/f/nowhere").status_code == 404
    assert client.post("/f/nowhere", data={"csrftoken": csrf(client)}).status_code == 404
