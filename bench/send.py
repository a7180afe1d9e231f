"""Email speed (`python -m bench.send [--messages N] [--dkim rsa,ed25519,none]`), as a table.

- **sender throughput**: the sender draining N outbox rows of the store (claim, send-time checks,
  render from the publication's template snapshot, MIME, DKIM signature, group-committed marks and
  results, `delivery` events) over 4 SMTP connections, against raw aiosmtplib sending the same
  messages, built and signed beforehand, over 4 connections to the same local sink (an aiosmtpd
  server in a process of its own that accepts and discards, and announces PIPELINING as the
  relays of production do; aiosmtplib does not pipeline, the sender does). The two alternate
  three times on fresh stores; the row shows the medians. The DKIM key is RSA-2048 unless
  `--dkim` says otherwise; `--relay plain` adds rows against a sink that does not announce
  PIPELINING. Goal ≥ 0.8×.
- **render + MIME**: building one message (`Composer.compose`, as the sender does: render subject,
  preheader and HTML, the text part, footer, unfilled-tag guard, tracking links, MIME bytes; no
  DKIM) against rendering the same template and building the message with the stdlib's
  `EmailMessage`. Goal ≤ 100 µs per message and ≥ 12× faster.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from sqlalchemy import insert

from bench.fleet import free_port
from bench.table import Row, print_rows
from dsl.compile import compile_paths
from dsl.lint import lint
from flowbuilder.config import Settings
from flowbuilder.mail.message import Composer, MailConfig, Outgoing, Spec
from flowbuilder.mail.personalize import Identity, LeadView, Links, merge_fields
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SenderOptions, mail_config
from flowbuilder.mail.templates import TemplateSet
from flowbuilder.publish import publish
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Lead, Outbox

ACME = Path(__file__).resolve().parents[1] / "examples" / "acme"
CONNECTIONS = 4
TEMPLATE = "ebook_delivery"  # transactional: no consent or night rule in the way


def _discard_sink(port: int, ready: object, pipelining: bool = True) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import Session

    from flowbuilder.mail.sink import with_pipelining

    class Discard:
        async def handle_EHLO(
            self,
            server: object,
            session: Session,
            envelope: object,
            hostname: str,
            lines: list[str],
        ) -> list[str]:
            if pipelining:
                return with_pipelining(session, hostname, lines)
            session.host_name = hostname
            return lines

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()  # type: ignore[attr-defined]
    while True:
        time.sleep(3600)


def _store(folder: Path, n: int) -> tuple[object, Settings]:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder}/bench.db"
    engine = open_store(url)
    now = datetime.now(UTC)
    compilation = compile_paths([ACME])
    publish(engine, compilation, lint(compilation), now)
    with engine.begin() as conn:
        ids = (
            conn.execute(
                insert(Lead).returning(Lead.id),
                [
                    {
                        "email": f"reader{i}@example{i % 100}.com",
                        "attributes": {"first_name": "지민"},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(n)
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            insert(Outbox),
            [
                {
                    "key": f"{lead}/ebook_nurture/x/deliver/1",
                    "lead_id": lead,
                    "flow": "ebook_nurture",
                    "step": "deliver",
                    "channel": "email",
                    "template": TEMPLATE,
                    "payload": {"template": TEMPLATE},
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for lead in ids
            ],
        )
    # No workspace setting: the sender renders the publication's snapshot of the templates.
    settings = Settings(database_url=url, data_dir=folder, secret_key="bench")
    return engine, settings


async def _raw(messages: list[Outgoing], port: int) -> float:
    async def connection(share: list[Outgoing]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for m in share:
            await smtp.mail(m.mail_from)
            await smtp.rcpt(m.rcpt)
            await smtp.data(m.data)
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(connection(messages[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    return time.perf_counter() - start


async def _sender(engine: object, settings: Settings, port: int) -> float:
    options = SenderOptions(connections=CONNECTIONS, batch=500, rate_per_domain=1e9)
    sender = Sender(engine, settings, Relay("127.0.0.1", port), options=options)  # type: ignore[arg-type]
    start = time.perf_counter()
    stats = await sender.drain()
    elapsed = time.perf_counter() - start
    await sender.close()
    assert stats.sent == stats.claimed, stats
    return elapsed


def dkim_key(folder: Path, kind: str) -> Path:
    """A fresh DKIM key file: RSA-2048 (what receivers verify) or Ed25519 (RFC 8463)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    file = folder / f"dkim-{kind}.pem"
    file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return file


def throughput(n: int, dkim: str = "rsa", rounds: int = 3, relay: str = "pipelining") -> Row:
    """The sender against raw aiosmtplib, alternating, `rounds` times each; medians.

    The sender reads its templates from the publication's snapshot and signs every message
    with a DKIM key of kind `dkim` (rsa, ed25519 or none), as production does; the raw client
    sends the same messages, built and signed beforehand. The sink announces PIPELINING unless
    `relay` is "plain"."""
    port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(
        target=_discard_sink, args=(port, ready, relay == "pipelining"), daemon=True
    )
    sink.start()
    ready.wait(10)
    raws: list[float] = []
    sents: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            key = dkim_key(folder, dkim) if dkim != "none" else None
            ws = compile_paths([ACME]).workspace
            assert ws is not None
            for r in range(rounds):
                engine, settings = _store(folder / f"round{r}", n)
                if key is not None:
                    settings = settings.model_copy(
                        update={
                            "dkim_key": key,
                            "dkim_selector": "fb",
                            "dkim_domain": "acme.example",
                        }
                    )
                composer = Composer(TemplateSet(ws, ACME), mail_config(settings))
                now = datetime.now(UTC)
                messages = [
                    composer.compose(
                        Spec(i, f"k{i}", TEMPLATE, "ebook_nurture", "deliver"),
                        LeadView(i, f"reader{i}@example{i % 100}.com", {"first_name": "지민"}),
                        now,
                    )
                    for i in range(n)
                ]
                raws.append(asyncio.run(_raw(messages, port)))
                sents.append(asyncio.run(_sender(engine, settings, port)))
                engine.dispose()  # type: ignore[attr-defined]
    finally:
        sink.kill()
        sink.join()
    raw, sent = statistics.median(raws), statistics.median(sents)
    signed = {"rsa": "DKIM rsa-2048", "ed25519": "DKIM ed25519", "none": "no DKIM"}[dkim]
    plain = ", relay without PIPELINING" if relay == "plain" else ""
    return Row(
        f"sender, outbox → SMTP, {signed}{plain} ({n} msgs, {CONNECTIONS} conns)",
        sent / n,
        "raw aiosmtplib, pre-rendered bytes",
        raw / n,
        "≥ 0.8×",
        raw / sent >= 0.8,
        per="msg",
    )


def assembly(n: int) -> Row:
    ws = compile_paths([ACME]).workspace
    assert ws is not None
    ts = TemplateSet(ws, ACME)
    config = MailConfig("https://mail.acme.example", "bench", bounce_domain="bounces.acme.example")
    lead = LeadView(1, "ann@example.com", {"first_name": "지민", "company": "한빛소프트"})
    now = datetime.now(UTC)
    template = "welcome_email"
    spec = Spec(7, "1/welcome/2026-03-03/hello/1", template, "welcome", "hello")
    identity = Identity.of(ws)
    links = Links("https://mail.acme.example/u/x", "https://mail.acme.example/p/x")

    composer = Composer(ts, config)  # as the sender keeps one per publication

    def ours() -> None:
        composer.compose(spec, lead, now)

    def stdlib() -> None:
        rendered = ts.render(template, merge_fields(lead, links, identity, settings=ws.settings))
        m = EmailMessage()
        m["From"] = "Acme Cloud <hello@acme.example>"
        m["To"] = lead.email
        m["Subject"] = rendered.subject
        m["Message-ID"] = "<x@acme.example>"
        m["List-Unsubscribe"] = f"<{links.unsubscribe_url}>"
        m.set_content(rendered.text)
        m.add_alternative(rendered.html or "", subtype="html")
        m.as_bytes()

    def per_message(fn: object) -> float:
        fn()  # type: ignore[operator]
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn()  # type: ignore[operator]
            best = min(best, (time.perf_counter() - start) / n)
        return best

    mine, theirs = per_message(ours), per_message(stdlib)
    return Row(
        "render + MIME, one message (no DKIM)",
        mine,
        "render + stdlib EmailMessage",
        theirs,
        "≤ 100 µs, ≥ 12×",
        mine <= 100e-6 and theirs / mine >= 12,
        per="msg",
    )


def rows(
    messages: int = 2000,
    dkim: tuple[str, ...] = ("rsa", "none"),
    relays: tuple[str, ...] = ("pipelining",),
) -> list[Row]:
    return [
        assembly(500),
        *(throughput(messages, kind, relay=relay) for relay in relays for kind in dkim),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--dkim",
        default="rsa,none",
        help="DKIM keys the sender signs with, one row each: rsa, ed25519, none (comma-separated)",
    )
    parser.add_argument(
        "--relay",
        default="pipelining",
        help="the sink announces PIPELINING (pipelining) or not (plain); one row each, "
        "comma-separated",
    )
    args = parser.parse_args()
    dkim, relays = tuple(args.dkim.split(",")), tuple(args.relay.split(","))
    if not set(dkim) <= {"rsa", "ed25519", "none"}:
        parser.error(f"--dkim {args.dkim}: each one of rsa, ed25519, none")
    if not set(relays) <= {"pipelining", "plain"}:
        parser.error(f"--relay {args.relay}: each one of pipelining, plain")
    print_rows(rows(args.messages, dkim, relays), "email")
