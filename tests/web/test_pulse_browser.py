"""The Pulse beacon script in a real browser: Debian's Chromium driven by Playwright, a landing page
on one origin (`localhost`) and flowbuilder on another (`127.0.0.1`), both served by uvicorn."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bench.fleet import free_port
from bench.web import ARGS, CHROMIUM, NO_CHROMIUM
from flowbuilder.config import Settings
from flowbuilder.intake import LeadIn
from flowbuilder.pulse import tracked_link
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import DocumentView, Event, Lead
from web import pulse

if not CHROMIUM.exists():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
from playwright.sync_api import Browser, Page, sync_playwright

STATIC = Path(pulse.__file__).parent / "static"
SECTIONS = 40  # 100 px each beside a 600 px viewport: the page is 4,000 px tall


def landing(request: Request) -> HTMLResponse:
    """A landing page of the marketer's own site, with the beacon script from flowbuilder."""
    script = request.app.state.script
    blocks = "".join(
        f'<section style="height:100px;margin:0">Section {i}</section>' for i in range(SECTIONS)
    )
    return HTMLResponse(
        "<!doctype html><html><head><title>Pricing</title>"
        '<meta name="viewport" content="width=device-width">'
        f'<script src="{script}" data-interval="1" defer></script></head>'
        f'<body style="margin:0">{blocks}</body></html>'
    )


@dataclass
class Sites:
    engine: Engine
    settings: Settings
    lead: int
    page_url: str  # the landing page, on localhost


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    import uvicorn

    folder = tmp_path_factory.mktemp("pulse-browser")
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{folder}/fb.db",
        data_dir=folder,
        secret_key="pulse-browser-" + "x" * 32,
        public_url=f"http://127.0.0.1:{port}",
    )
    engine = open_store(settings.database_url)
    with engine.begin() as conn:
        upsert_leads(conn, [LeadIn("ann@example.com")], datetime.now(UTC))
        lead = conn.execute(select(Lead.id)).scalar_one()
    app = Starlette(
        routes=[
            *pulse.routes,
            Route("/landing/pricing", landing),
            Mount("/static", app=StaticFiles(directory=STATIC)),
        ]
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.script = f"{settings.public_url}/static/pulse/pulse.js"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-pulse", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start within 20 s"
        time.sleep(0.05)
    yield Sites(engine, settings, lead, f"http://localhost:{port}/landing/pricing")
    server.should_exit = True
    thread.join(timeout=15)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 800, "height": 600})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == []


def _event(sites: Sites, after: int, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with reading(sites.engine) as conn:
            found = conn.execute(
                select(Event).where(Event.type == "view", Event.id > after).order_by(Event.id)
            ).first()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no view event within {timeout:g} s")


def _last_event_id(sites: Sites) -> int:
    with reading(sites.engine) as conn:
        ids = conn.execute(select(Event.id).order_by(Event.id.desc())).scalars().first()
    return int(ids or 0)


def _open_view(sites: Sites) -> Any:
    with reading(sites.engine) as conn:
        return conn.execute(
            select(DocumentView).where(DocumentView.closed_at.is_(None)).order_by(DocumentView.id)
        ).first()


def _scroll_half_way(page: Page) -> None:
    page.evaluate(
        "window.scrollTo(0, (document.documentElement.scrollHeight - window.innerHeight) / 2)"
    )


def test_a_page_read_half_way_for_a_while_records_a_view_with_its_depth_and_time(
    sites: Sites, page: Page
) -> None:
    before = _last_event_id(sites)
    link = tracked_link(sites.settings, sites.lead, "pricing", sites.page_url)
    started = time.monotonic()
    page.goto(link)
    page.wait_for_load_state("load")
    assert page.url == sites.page_url  # the view token is taken out of the address bar
    _scroll_half_way(page)
    page.wait_for_timeout(2500)
    view = _open_view(sites)
    assert view is not None and view.beats >= 2  # the first beat and at least one heartbeat
    page.goto("about:blank")  # leaving the page sends the final beacon
    event = _event(sites, before)
    elapsed = time.monotonic() - started
    depth, seconds = event.properties["depth"], event.properties["seconds"]
    assert 50 <= depth < 70, depth  # the viewport's bottom at (4000 + 600) / 2 = 57.5 %
    assert 2.0 <= seconds <= elapsed, (seconds, elapsed)
    assert event.properties["document"] == "pricing"
    assert event.properties["url"] == sites.page_url
    assert event.lead_id == sites.lead


def test_time_counts_only_while_the_page_is_visible(sites: Sites, page: Page) -> None:
    before = _last_event_id(sites)
    page.goto(tracked_link(sites.settings, sites.lead, "handbook", sites.page_url))
    page.wait_for_load_state("load")
    page.wait_for_timeout(1000)
    visibility = (
        "state => { Object.defineProperty(document, 'visibilityState', "
        "{value: state, configurable: true}); "
        "document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.evaluate(visibility, "hidden")  # the reader switches to another tab
    page.wait_for_timeout(3000)
    page.evaluate(visibility, "visible")
    page.wait_for_timeout(1000)
    page.goto("about:blank")
    event = _event(sites, before)
    assert event.properties["document"] == "handbook"
    # About 2 s visible out of about 5 s open; the hidden 3 s are not counted.
    assert 1.5 <= event.properties["seconds"] < 3.5, event.properties
    assert event.properties["depth"] == pytest.approx(15, abs=0.1)  # 600 of 4,000 px, unscrolled
