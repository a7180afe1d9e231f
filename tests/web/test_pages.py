"""The pages around the editor: flows, dashboards, versions, leads, lists, segments, captured mail
and settings."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from starlette.testclient import TestClient

from flowbuilder.store.db import reading
from flowbuilder.store.schema import CapturedMessage, Lead, Outbox
from tests.web.conftest import Site, csrf, post_json


def test_the_flows_page_lists_every_flow_with_its_status_and_numbers(user: TestClient) -> None:
    html = user.get("/flows").text
    assert "Welcome series" in html and "published v1" in html
    assert html.count('class="flow-title"') >= 8
    assert "clean" in html


def test_a_new_flow_opens_in_the_editor(site: Site, user: TestClient) -> None:
    response = user.post(
        "/flows", data={"name": "spring_promo", "title": "Spring", "csrftoken": csrf(user)}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/flows/spring_promo"
    model = user.get("/api/flows/spring_promo").json()
    assert model["path"] == "examples/acme/spring_promo.flow" or model["path"].endswith(
        "/spring_promo.flow"
    )
    assert model["nodes"][0]["name"] == "done"


def test_a_bad_new_flow_name_is_explained(user: TestClient) -> None:
    for name, message in [
        ("Spring Promo", "is not a valid flow name"),
        ("welcome", "already a flow &#39;welcome&#39;"),
        ("send", "reserved word"),
    ]:
        response = user.post("/flows", data={"name": name, "csrftoken": csrf(user)})
        assert response.status_code == 422
        assert message in response.text


def test_the_dashboard_draws_series_funnel_and_variants(user: TestClient) -> None:
    html = user.get("/flows/welcome/dashboard").text
    assert (
        'id="chart-series"' in html
        and 'id="chart-funnel"' in html
        and 'id="chart-variants"' in html
    )
    assert "data-metrics=" in html and "Open rate" in html
    assert "the baseline" in html


def test_versions_compare_texts_and_outcomes(user: TestClient) -> None:
    model = user.get("/api/flows/welcome").json()
    op = {
        "op": "set_property",
        "flow": "welcome",
        "step": "guide_pause",
        "key": "duration",
        "value": "2d",
    }
    post_json(user, "/api/flows/welcome/ops", {"revision": model["revision"], "ops": [op]})
    html = user.get("/flows/welcome/versions", params={"from": "1", "to": "draft"}).text
    assert "-   guide_pause: wait 1d" in html.replace("<code>", "").replace("</code>", "")
    assert "+   guide_pause: wait 2d" in html.replace("<code>", "").replace("</code>", "")
    assert "Outcome in the simulator" in html and "sends moved in time" in html
    wrong = user.get("/flows/welcome/versions", params={"from": "7"}).text
    assert "choose versions among" in wrong
    assert user.get("/flows/nowhere/versions").status_code == 404


def test_leads_are_searched_and_filtered(user: TestClient) -> None:
    everyone = user.get("/leads").text
    assert "40 leads" in everyone
    one = user.get("/leads", params={"q": "lead0001@"}).text
    assert "1 lead" in one and "lead0001@" in one
    listed = user.get(
        "/leads", params={"list": "cold_prospects_kr"}, headers={"hx-request": "true"}
    )
    assert "<html" not in listed.text and "lead" in listed.text
    staged = user.get("/leads", params={"stage": "nonexistent"}).text
    assert "No lead matches." in staged


def test_a_lead_page_tells_its_whole_story(site: Site, user: TestClient) -> None:
    with reading(site.engine) as conn:
        lead_id = conn.execute(
            select(Outbox.lead_id).where(Outbox.flow == "welcome").limit(1)
        ).scalar_one()
    html = user.get(f"/leads/{lead_id}").text
    assert "Timeline" in html and "signed_up" in html
    assert "welcome.welcome" in html
    assert "Why:" in html and "decision" in html
    assert user.get("/leads/999999").status_code == 404
    assert user.get("/leads/abc").status_code == 404


def test_lists_and_segments_show_members(user: TestClient) -> None:
    lists = user.get("/lists").text
    assert "cold_prospects_kr" in lists and "joined in the last 28 days" in lists
    segments = user.get("/segments").text
    assert "<code>" in segments and "lead" in segments


def test_captured_mail_is_shown_in_a_sandboxed_frame(site: Site, user: TestClient) -> None:
    raw = (
        b"From: Acme <hello@acme.example>\r\nTo: ann@example.com\r\nSubject: Welcome\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p style='color:red'>Hello <script>alert(1)</script></p>\r\n"
    )
    with site.engine.begin() as conn:
        conn.execute(
            insert(CapturedMessage).values(
                id=77,
                mail_from="hello@acme.example",
                rcpt_tos=["ann@example.com"],
                subject="Welcome",
                raw=raw,
                captured_at=datetime.now(UTC),
            )
        )
    assert "Welcome" in user.get("/mail").text
    page = user.get("/mail/77").text
    assert 'sandbox=""' in page and "Subject" in page
    frame = user.get("/mail/77/html")
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert "script" not in frame.headers["content-security-policy"]
    assert user.get("/mail/78").status_code == 404


def test_api_keys_are_made_shown_once_and_revoked(user: TestClient) -> None:
    made = user.post("/settings/api-keys", data={"name": "Website", "csrftoken": csrf(user)})
    assert made.status_code == 200
    assert 'id="new-key">fbk_' in made.text
    listing = user.get("/settings").text
    assert "Website" in listing and 'id="new-key"' not in listing
    assert (
        user.post("/settings/api-keys", data={"name": " ", "csrftoken": csrf(user)}).status_code
        == 422
    )
    revoked = user.post("/settings/api-keys/1/revoke", data={"csrftoken": csrf(user)})
    assert "The key was revoked." in revoked.text
    again = user.post("/settings/api-keys/1/revoke", data={"csrftoken": csrf(user)})
    assert again.status_code == 404


def test_unknown_pages_say_so(user: TestClient) -> None:
    assert "This page does not exist" in user.get("/nowhere").text
    assert user.get("/flows/nowhere").status_code == 404
    assert user.get("/healthz").text == "ok"


def test_lead_count_matches_the_store(site: Site, user: TestClient) -> None:
    with reading(site.engine) as conn:
        count = len(conn.execute(select(Lead.id)).all())
    assert f"{count} leads" in user.get("/leads").text
