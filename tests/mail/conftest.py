"""Fixtures of the email tests: a store with the acme workspace published and consenting leads,
on SQLite and on PostgreSQL (the `store_url` fixture of tests/store/conftest.py), and real SMTP
servers (aiosmtpd) that capture or misbehave on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, insert, select

from bench.fleet import free_port
from dsl.compile import compile_paths
from dsl.lint import lint
from flowbuilder.config import Settings
from flowbuilder.mail.consent import record_consent
from flowbuilder.mail.sink import with_pipelining
from flowbuilder.publish import publish
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Lead, Outbox
from tests.store.conftest import postgres_missing, postgres_schema, postgres_url, store_url

__all__ = ["postgres_missing", "postgres_url", "store_url"]  # fixtures used here

ACME = Path(__file__).resolve().parents[2] / "examples" / "acme"
NOW = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)  # 12:00 in Seoul: daytime for Korean advertising

# Fixture leads: every attribute the templates use, and one lead with none of them.
LEADS: list[dict[str, Any]] = [
    {"first_name": "지민", "company": "한빛소프트", "industry": "saas"},
    {"first_name": "Minho", "company": "Blue Ocean Commerce", "industry": "commerce"},
    {},
]


@dataclass
class Box:
    """What an SMTP test server received, and how it should misbehave."""

    messages: list[Envelope] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.time() of each message taken
    refuse: dict[str, str] = field(default_factory=dict)  # address → SMTP reply at RCPT
    drop_after_data: bool = False
    pipelining: bool = True  # announce PIPELINING (RFC 2920), as production relays do
    refuse_mail: str | None = None  # the SMTP reply to every MAIL FROM
    refuse_data: dict[str, str] = field(default_factory=dict)  # address → reply to its payload


class BoxHandler:
    def __init__(self, box: Box) -> None:
        self.box = box

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self.box.pipelining:
            return with_pipelining(session, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.box.refuse_mail is not None:
            return self.box.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.box.refuse:
            return self.box.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.box.drop_after_data:
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(0)
            return "421 closing"
        if envelope.rcpt_tos and envelope.rcpt_tos[0] in self.box.refuse_data:
            return self.box.refuse_data[envelope.rcpt_tos[0]]
        self.box.messages.append(envelope)
        self.box.arrived.append(time.time())
        return "250 OK queued"


@contextmanager
def serving(handler: object) -> Iterator[int]:
    """An aiosmtpd server for `handler` on a free port, while the block runs; its port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def smtp_box() -> Iterator[tuple[Box, int]]:
    box = Box()
    with serving(BoxHandler(box)) as port:
        yield box, port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "state",
        public_url="https://mail.acme.example",
        secret_key="test-secret-key-for-signing-tokens",
        bounce_domain="bounces.acme.example",
        reply_domain="reply.acme.example",
        workspace=ACME,
        send_rate_per_domain=1000.0,
        send_retry_seconds=60.0,
    )


def published(url: str) -> Engine:
    engine = open_store(url)
    compilation = compile_paths([ACME])
    publish(engine, compilation, lint(compilation), NOW)
    return engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`store_url` for a module's worth of tests that share one store (a schema of its own on
    PostgreSQL, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('mail')}/mail.db"
        return
    with postgres_schema(request.getfixturevalue("postgres_missing")) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """The acme workspace published, on SQLite and on PostgreSQL."""
    engine = published(store_url)
    yield engine
    engine.dispose()


def add_lead(
    engine: Engine, email: str, attributes: dict[str, Any], *, consent: bool = True
) -> int:
    with engine.begin() as conn:
        lead_id = int(
            conn.execute(
                insert(Lead)
                .values(
                    email=email,
                    attributes=attributes,
                    timezone="Asia/Seoul",
                    account=email.partition("@")[2],
                    created_at=NOW,
                    updated_at=NOW,
                )
                .returning(Lead.id)
            ).scalar_one()
        )
        if consent:
            record_consent(
                conn,
                lead_id,
                scope="marketing",
                granted=True,
                who=email,
                source="form contact_us",
                wording="Acme Cloud의 제품 소식과 이벤트 안내를 이메일로 받는 데 동의합니다.",
                at=NOW,
                now=NOW,
            )
    return lead_id


def queue(
    engine: Engine,
    lead_id: int,
    template: str,
    *,
    flow: str = "welcome",
    step: str = "hello",
    n: int = 0,
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Outbox)
                .values(
                    key=f"{lead_id}/{flow}/2026-03-03/{step}/{n}",
                    lead_id=lead_id,
                    flow=flow,
                    step=step,
                    channel="email",
                    template=template,
                    payload={"template": template},
                    state="pending",
                    attempts=0,
                    created_at=NOW,
                    updated_at=NOW,
                )
                .returning(Outbox.id)
            ).scalar_one()
        )


def row(engine: Engine, outbox_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Outbox).where(Outbox.id == outbox_id)).one()
