"""Chaos over the whole pipeline on PostgreSQL: engine and sender workers, a real SMTP server
(aiosmtpd), 1,000 sends, and SIGKILL at random moments while events keep arriving.

Events come in ten waves; after each, a worker is killed — engine and sender workers by turns,
which one of its role at random, at a random moment while its role has work in progress — and a
new one of the same role takes its place. The SMTP server takes a few milliseconds per message, as
a real relay does, so sends are under way long enough to be cut. At the end: every enrollment advanced exactly once,
every outbox key is unique, every message reached the server (0 lost), and a message arrived twice
only if the sender had marked it `unknown` (its payload had started going out when its sender
died, so it was sent again, flagged as possibly doubled).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, text

from bench.fleet import Fleet, Invariants, backlog, invariants, post_go, wait_for
from flowbuilder.store.db import reading
from tests.mail.conftest import Box, BoxHandler, free_port

SENDS = 1_000
WAVES = 10
ROLES = ("engine", "engine", "sender", "sender")


def _outbox(engine: Engine) -> dict[str, int]:
    with reading(engine) as conn:
        return {
            str(state): int(n)
            for state, n in conn.execute(text("SELECT state, count(*) FROM outbox GROUP BY state"))
        }


class RelayHandler(BoxHandler):
    """The test server, taking as long over each message as a relay on the network does."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def _busy(engine: Engine, role: str) -> bool:
    if role == "engine":
        return backlog(engine) > 0
    return _outbox(engine).get("sending", 0) > 0


def _received(box: Box) -> Counter[str]:
    return Counter(
        line.split(b":", 1)[1].strip().decode()
        for envelope in box.messages
        for line in envelope.original_content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")  # type: ignore[union-attr]
        if line.lower().startswith(b"message-id:")
    )


def test_random_kills_lose_nothing_and_double_only_unknowns(
    postgres_url: str, fleet_store: Engine, tmp_path: Path
) -> None:
    box = Box()
    port = free_port()
    controller = Controller(RelayHandler(box), hostname="127.0.0.1", port=port)
    controller.start()
    engine = fleet_store
    env = {
        "FLOWBUILDER_SMTP_RELAY": f"smtp://127.0.0.1:{port}",
        "FLOWBUILDER_WORKSPACE": str(tmp_path / "workspace"),
        "FLOWBUILDER_DATA_DIR": str(tmp_path / "state"),
        "FLOWBUILDER_SECRET_KEY": "chaos-" + "x" * 32,
        "FLOWBUILDER_SEND_LEASE_SECONDS": "1",
        "FLOWBUILDER_SEND_RETRY_SECONDS": "0.05",
        "FLOWBUILDER_SEND_MAX_ATTEMPTS": "1000",
        "FLOWBUILDER_SEND_RATE_PER_DOMAIN": "100000",
        "FLOWBUILDER_UNKNOWN_POLICY": "retry",
        "FLOWBUILDER_CLAIM_LEASE_SECONDS": "5",
    }
    rng = random.Random(20261123)
    kills: list[tuple[str, bool]] = []  # (role, had work in progress)
    try:
        with Fleet(postgres_url, tmp_path, env=env) as fleet:
            workers = {
                role + str(n): fleet.start(role, batch=25, interval=0.3)
                for n, role in enumerate(ROLES)
            }
            fleet.wait_ready()
            per_wave = SENDS // WAVES
            for wave in range(WAVES):
                post_go(engine, wave * per_wave, per_wave, datetime.now(UTC))
                role = ("engine", "sender")[wave % 2]
                key = rng.choice(sorted(k for k in workers if k.startswith(role)))
                # Land anywhere in the work under way: a random delay, then the first moment the
                # role is busy (within a few seconds; if it never is, the kill lands idle).
                time.sleep(rng.uniform(0.0, 0.2))
                deadline = time.monotonic() + 5
                while not (busy := _busy(engine, role)) and time.monotonic() < deadline:
                    time.sleep(0.002)
                workers[key].kill(signal.SIGKILL)
                workers[key].popen.wait(30)
                kills.append((role, busy))
                workers[key] = fleet.start(role, batch=25, interval=0.3)

            def finished() -> bool:
                states = _outbox(engine)
                return backlog(engine) == 0 and states == {"sent": SENDS}

            wait_for(
                finished,
                300,
                "every message to be sent",
                every=0.2,
                status=lambda: f"outbox {_outbox(engine)}, engine backlog {backlog(engine)}",
            )
            assert all(w.alive() for w in workers.values())
    finally:
        controller.stop()

    assert sum(busy for _, busy in kills) >= 3, f"too few kills landed mid-work: {kills}"
    assert {role for role, busy in kills if busy} == {"engine", "sender"}, kills
    assert invariants(engine) == Invariants.expected(0, SENDS)
    with reading(engine) as conn:
        rows = conn.execute(text("SELECT message_id, uncertain FROM outbox")).all()
    received = _received(box)
    lost = [mid for mid, _ in rows if received[mid] == 0]
    assert lost == []
    twice = {mid for mid, n in received.items() if n > 1}
    uncertain = {mid for mid, flagged in rows if flagged}
    assert twice <= uncertain, f"{len(twice - uncertain)} arrived twice without being unknown"
    assert set(received) == {mid for mid, _ in rows}  # nothing arrived that the outbox never held
