"""The Pulse routes on a small Starlette app built from `web.pulse.routes`, with the engine and
settings in `app.state`, driven by Starlette's TestClient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from flowbuilder.config import Settings
from flowbuilder.intake import LeadIn
from flowbuilder.pulse import PulseTokens, tracked_link
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import DocumentView, Event, Lead
from web import pulse

STATIC = Path(pulse.__file__).parent / "static"
PAGE = "https://acme.example/pricing"
ORIGIN = "https://acme.example"


@dataclass
class Pulse:
    client: TestClient
    engine: Engine
    settings: Settings
    lead: int

    def link(self, document: str = "pricing", url: str = PAGE) -> str:
        return urlsplit(tracked_link(self.settings, self.lead, document, url)).path

    def view(self) -> str:
        """Follow a tracked link; the view token of the page it redirects to."""
        answer = self.client.get(self.link())
        assert answer.status_code == 302, answer.text
        return parse_qs(urlsplit(answer.headers["location"]).query)["fbv"][0]

    def beat(self, token: str, body: Any, **headers: str) -> Any:
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            f"/pulse/v/{token}",
            content=content,
            headers={"content-type": "text/plain;charset=UTF-8", "origin": ORIGIN, **headers},
        )


def app(engine: Engine, settings: Settings) -> Starlette:
    application = Starlette(
        routes=[*pulse.routes, Mount("/static", app=StaticFiles(directory=STATIC))]
    )
    application.state.engine = engine
    application.state.settings = settings
    return application


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Pulse]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/fb.db",
        data_dir=tmp_path,
        secret_key="pulse-secret-" + "x" * 32,
        public_url="https://fb.acme.example",
    )
    engine = open_store(settings.database_url)
    with engine.begin() as conn:
        upsert_leads(conn, [LeadIn("ann@example.com")], datetime.now(UTC))
        lead = conn.execute(select(Lead.id)).scalar_one()
    with TestClient(
        app(engine, settings), base_url="https://fb.acme.example", follow_redirects=False
    ) as client:
        yield Pulse(client, engine, settings, lead)
    engine.dispose()


def _views(site: Pulse) -> list[Any]:
    with reading(site.engine) as conn:
        return list(conn.execute(select(DocumentView)))


def _events(site: Pulse) -> list[Any]:
    with reading(site.engine) as conn:
        return list(conn.execute(select(Event).where(Event.type == "view")))


def test_a_tracked_link_redirects_with_a_view_token_and_sets_nothing_else(site: Pulse) -> None:
    answer = site.client.get(site.link(url=PAGE + "?utm_source=mail#top"))
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path, location.fragment) == (
        "https",
        "acme.example",
        "/pricing",
        "top",
    )
    query = parse_qs(location.query)
    assert query["utm_source"] == ["mail"] and len(query["fbv"][0]) > 20
    assert "set-cookie" not in answer.headers
    assert answer.headers["cache-control"] == "no-store, private"
    [view] = _views(site)
    assert (view.lead_id, view.document, view.url) == (
        site.lead,
        "pricing",
        PAGE + "?utm_source=mail#top",
    )


def test_a_changed_link_is_refused_and_records_nothing(site: Pulse) -> None:
    path = site.link()
    answer = site.client.get(path[:-3] + "abc")
    assert answer.status_code == 400
    assert "This link is not valid: the link token is not valid" in answer.text
    assert _views(site) == []


def test_beacons_as_json_and_as_sendbeacon_text_are_taken_and_the_last_closes_the_view(
    site: Pulse,
) -> None:
    token = site.view()
    answer = site.beat(token, {"depth": 30, "seconds": 0}, **{"content-type": "application/json"})
    assert answer.status_code == 204, answer.text
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert site.beat(token, '{"depth": 55, "seconds": 0.5}').status_code == 204
    assert site.beat(token, {"depth": 55, "seconds": 0.5, "final": True}).status_code == 204
    [view] = _views(site)
    assert (view.max_depth, view.beats, view.closed_by) == (55, 3, "beacon")
    [event] = _events(site)
    assert (event.properties["document"], event.properties["depth"]) == ("pricing", 55)
    replay = site.beat(token, {"depth": 55, "seconds": 0.5, "final": True})
    assert replay.status_code == 204  # a replay of the final beacon is no error
    more = site.beat(token, {"depth": 90, "seconds": 1})
    assert more.status_code == 409 and more.json()["kind"] == "closed"
    assert len(_events(site)) == 1


def test_the_preflight_answers_the_tracked_pages_origin_only(site: Pulse) -> None:
    token = site.view()
    ok = site.client.options(
        f"/pulse/v/{token}",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["access-control-allow-methods"] == "POST"
    other = site.client.options(f"/pulse/v/{token}", headers={"origin": "https://evil.example"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    posted = site.beat(token, {"depth": 50, "seconds": 0}, origin="https://evil.example")
    assert posted.status_code == 403
    assert posted.json()["error"] == "beacons of this view come from https://acme.example"
    assert _views(site)[0].beats == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{not json", 400, "a beat is a JSON object"),
        ("[1, 2]", 400, "a beat is a JSON object, not list"),
        ({"depth": 50, "seconds": 1, "scroll": 3}, 400, "not scroll"),
        ({"depth": 150, "seconds": 0}, 422, "`depth` is a percentage from 0 to 100, not 150"),
        ({"depth": -1, "seconds": 0}, 422, "not -1"),
        ({"depth": "50", "seconds": 0}, 422, "`depth` is a number, not '50'"),
        ({"depth": 50, "seconds": -2}, 422, "`seconds` cannot be negative"),
        ({"depth": 50, "seconds": 3600}, 422, "`seconds` 3600 is more than the"),
        ({"depth": 50, "seconds": 1, "final": "yes"}, 422, "`final` is true or false"),
        ('{"depth": NaN, "seconds": 1}', 422, "`depth` is a finite number"),
    ],
)
def test_a_bad_beat_gets_a_clear_4xx_and_stores_nothing(
    site: Pulse, body: Any, status: int, message: str
) -> None:
    token = site.view()
    answer = site.beat(token, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    [view] = _views(site)
    assert (view.beats, view.max_depth, view.closed_at) == (0, 0, None)


def test_forged_oversized_and_wrongly_typed_beacons_are_refused(site: Pulse) -> None:
    token = site.view()
    forged = site.beat(token[:-2] + "zz", {"depth": 50, "seconds": 0})
    assert forged.status_code == 403 and forged.json()["kind"] == "forged"
    other_secret = PulseTokens("another-" + "y" * 32).view(1, ORIGIN, datetime.now(UTC))
    assert site.beat(other_secret, {"depth": 50, "seconds": 0}).status_code == 403
    big = site.beat(token, json.dumps({"depth": 50, "seconds": 0}) + " " * 4000)
    assert big.status_code == 413
    form = site.beat(token, "depth=50", **{"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    unknown = PulseTokens(site.settings.secret()).view(999, ORIGIN, datetime.now(UTC))
    assert site.beat(unknown, {"depth": 1, "seconds": 0}).status_code == 404
    assert _views(site)[0].beats == 0


def test_a_flood_of_beacons_for_one_view_is_rate_limited(site: Pulse) -> None:
    token = site.view()
    answers = [site.beat(token, {"depth": 10, "seconds": 0}).status_code for _ in range(31)]
    assert answers[:30] == [204] * 30
    assert answers[30] == 429
    limited = site.beat(token, {"depth": 10, "seconds": 0})
    assert int(limited.headers["retry-after"]) >= 1


def test_the_beacon_script_is_served_from_static(site: Pulse) -> None:
    script = site.client.get("/static/pulse/pulse.js")
    assert script.status_code == 200
    assert "sendBeacon" in script.text and "/pulse/v/" in script.text
