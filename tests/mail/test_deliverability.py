"""Every example template, rendered for the fixture leads, sent through the sender and captured by
the real built-in SMTP sink: it parses, DKIM-verifies (dkimpy, with a stub DNS), carries both
unsubscribe headers inside the signed set, and scores below 1.0 with `spamassassin -L -t`."""

from __future__ import annotations

import asyncio
import base64
import email
import re
import shutil
import subprocess
from email import policy
from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine, select

from flowbuilder.config import Settings
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender
from flowbuilder.mail.sink import SinkHandler, serve
from flowbuilder.store.schema import CapturedMessage
from tests.mail.conftest import LEADS, NOW, add_lead, queue

SELECTOR, DOMAIN = "fb2026", "acme.example"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """An RSA key made by openssl, and the public key's DNS TXT record."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def captured(
    tmp_path_factory: pytest.TempPathFactory, dkim_key: tuple[Path, bytes], module_store_url: str
) -> list[bytes]:
    """Every example template for every fixture lead, through the sender into the sink, on
    SQLite and on PostgreSQL."""
    from tests.mail.conftest import ACME, published

    tmp = tmp_path_factory.mktemp("deliverability")
    engine = published(module_store_url)
    settings = Settings(
        data_dir=tmp / "state",
        public_url="https://mail.acme.example",
        secret_key="deliverability-secret",
        bounce_domain="bounces.acme.example",
        workspace=ACME,
        send_rate_per_domain=10_000.0,
        dkim_key=dkim_key[0],
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
    )
    from flowbuilder.store.db import reading
    from flowbuilder.store.published import current

    with reading(engine) as conn:
        ws = current(conn).ws  # type: ignore[union-attr]
    flows = {t: f.name for f in ws.flows.values() for s in f.steps.values() for t in _templates(s)}
    n = 0
    for i, attributes in enumerate(LEADS):
        lead = add_lead(engine, f"reader{i}@example{i}.com", attributes)
        for name in sorted(ws.templates):
            queue(engine, lead, name, flow=flows.get(name, "welcome"), step="s", n=n)
            n += 1
    raws = asyncio.run(_send(engine, settings))
    engine.dispose()
    assert len(raws) == n
    return raws


def _templates(step: object) -> list[str]:
    names = [getattr(step, "template", None)] + [v.template for v in getattr(step, "variants", [])]
    return [x for x in names if x]


async def _send(engine: Engine, settings: Settings) -> list[bytes]:
    server = await serve(SinkHandler(engine, clock=lambda: NOW), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = Sender(engine, settings, Relay("127.0.0.1", port), clock=lambda: NOW)
    try:
        stats = await sender.drain()
        assert stats.failed == stats.held == 0, stats
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    with engine.connect() as conn:
        return [bytes(r) for (r,) in conn.execute(select(CapturedMessage.raw))]


def test_every_captured_message_parses_with_both_parts(captured: list[bytes]) -> None:
    for raw in captured:
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert msg["Subject"] and msg["Message-ID"] and msg["Return-Path"].startswith("<bounce+")
        assert msg.get_body(("plain",)) is not None
        html = msg.get_body(("html",))
        assert html is not None and "/t/o/" in html.get_content()  # type: ignore[attr-defined]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert (
            "mailto:unsubscribe+" in msg["List-Unsubscribe"]
            and "https://" in msg["List-Unsubscribe"]
        )


def test_every_captured_message_dkim_verifies_with_both_unsubscribe_headers_signed(
    captured: list[bytes], dkim_key: tuple[Path, bytes]
) -> None:
    record = dkim_key[1]

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    for raw in captured:
        # The sink prepends Return-Path, as a final delivery does; it is outside the signature.
        assert dkim.verify(raw, dnsfunc=dns)
        signature = raw.split(b"DKIM-Signature:", 1)[1].split(b"\r\n\r\n", 1)[0]
        signed = re.search(rb"h=([^;]+);", re.sub(rb"\s+", b"", signature))
        assert signed is not None
        names = signed.group(1).lower().split(b":")
        assert b"list-unsubscribe" in names and b"list-unsubscribe-post" in names


def test_a_changed_signed_header_fails_dkim(
    captured: list[bytes], dkim_key: tuple[Path, bytes]
) -> None:
    raw = captured[0].replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope"
    )
    assert not dkim.verify(raw, dnsfunc=lambda name, timeout=5: dkim_key[1])


@pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="spamassassin is not installed (scripts/system-packages installs it)",
)
def test_every_example_template_scores_below_1_with_spamassassin(
    captured: list[bytes], tmp_path: Path
) -> None:
    mbox = tmp_path / "captured.mbox"
    with mbox.open("wb") as f:
        for raw in captured:
            f.write(b"From hello@acme.example Tue Mar  3 12:00:00 2026\n")
            body = raw.replace(b"\r\n", b"\n")
            f.write(re.sub(rb"(?m)^From ", b">From ", body) + b"\n")
    result = subprocess.run(
        ["spamassassin", "-L", "-t", "--mbox"],
        input=mbox.read_bytes(),
        capture_output=True,
        check=True,
        timeout=300,
    )
    # Each message comes back with SpamAssassin's headers on top; match them up by Message-ID.
    scores: dict[str, tuple[float, str]] = {}
    for chunk in result.stdout.split(b"X-Spam-Checker-Version:")[1:]:
        status = re.search(
            rb"X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+ tests=(.*?)autolearn",
            chunk,
            re.S,
        )
        mid = re.search(rb"(?mi)^Message-ID: (<[^>]+>)", chunk)
        assert status is not None and mid is not None
        scores[mid.group(1).decode()] = (
            float(status.group(1)),
            " ".join(status.group(2).decode().split()),
        )
    parsed = [email.message_from_bytes(r, policy=policy.default) for r in captured]
    assert set(scores) == {m["Message-ID"] for m in parsed}
    over = [
        f"{scores[m['Message-ID']][0]:.1f} {m['Subject']} ({m['From']}): {scores[m['Message-ID']][1]}"
        for m in parsed
        if scores[m["Message-ID"]][0] >= 1.0
    ]
    assert not over, "\n".join(over)
