"""`flowbuilder pulse-link` as a user runs it: a link that starts a view of the lead's page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from flowbuilder.cli import app
from flowbuilder.config import Settings
from flowbuilder.pulse import PulseTokens, start_view
from flowbuilder.store.db import open_store
from tests.store.driver import add_lead

runner = CliRunner()
SECRET = "pulse-cli-" + "x" * 32


def test_a_tracked_link_is_made_for_a_stored_lead_and_leads_to_its_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBUILDER_SECRET_KEY", SECRET)
    monkeypatch.setenv("FLOWBUILDER_PUBLIC_URL", "https://fb.acme.example")
    db = f"sqlite:///{tmp_path}/fb.db"
    store = open_store(db)
    lead = add_lead(store, "ann@example.com", datetime.now(UTC))
    args = ["--document", "pricing", "--url", "https://acme.example/pricing", "--db", db]
    result = runner.invoke(app, ["pulse-link", "--email", "Ann@Example.com", *args])
    assert result.exit_code == 0, result.stderr
    link = urlsplit(result.stdout.strip())
    assert (link.netloc, link.path.rsplit("/", 1)[0]) == ("fb.acme.example", "/pulse/l")
    tokens = PulseTokens(Settings(secret_key=SECRET).secret())
    assert tokens.read_link(link.path.rsplit("/", 1)[1]).lead_id == lead
    with store.begin() as conn:
        assert start_view(conn, tokens, link.path.rsplit("/", 1)[1], datetime.now(UTC)).startswith(
            "https://acme.example/pricing?fbv="
        )
    unknown = runner.invoke(app, ["pulse-link", "--email", "zed@example.com", *args])
    assert unknown.exit_code == 2 and "no lead has the email zed@example.com" in unknown.stderr
    bad = runner.invoke(
        app, ["pulse-link", "--email", "ann@example.com", *args[:2], "--url", "javascript:alert(1)"]
    )
    assert bad.exit_code == 2 and "http:// or https://" in bad.stderr
    store.dispose()
