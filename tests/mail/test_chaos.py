"""Kill the sender with SIGKILL at random points over 1,000 sends to a real aiosmtpd server:
no message is lost, and a message arrives twice only if it was left `unknown` (its payload had
started going out when the sender died) and sent again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import insert, select

from flowbuilder.store.schema import Lead, Outbox
from tests.mail.conftest import NOW, Box, published

SENDS = 1000
ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_at_random_points_loses_nothing_and_duplicates_only_unknowns(
    tmp_path: Path, smtp_box: tuple[Box, int], store_url: str
) -> None:
    box, port = smtp_box
    url = store_url
    engine = published(url)
    with engine.begin() as conn:
        ids = (
            conn.execute(
                insert(Lead).returning(Lead.id),
                [
                    {
                        "email": f"lead{i}@example{i % 50}.com",
                        "attributes": {},
                        "timezone": "Asia/Seoul",
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for i in range(SENDS)
                ],
            )
            .scalars()
            .all()
        )
        # Transactional mail: no consent or night rule stands between the outbox and the server.
        conn.execute(
            insert(Outbox),
            [
                {
                    "key": f"{lead}/ebook_nurture/x/deliver/1",
                    "lead_id": lead,
                    "flow": "ebook_nurture",
                    "step": "deliver",
                    "channel": "email",
                    "template": "ebook_delivery",
                    "payload": {"template": "ebook_delivery"},
                    "state": "pending",
                    "attempts": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for lead in ids
            ],
        )
    command = [
        sys.executable,
        "-m",
        "tests.mail.chaos_sender",
        url,
        str(port),
        str(tmp_path / "state"),
    ]
    rng = random.Random(4)
    kills = 0
    for _ in range(12):
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
        time.sleep(rng.uniform(0.6, 1.6))  # startup takes most of a second; kill mid-drain
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if len(box.messages) >= SENDS:
            break
    finished = subprocess.run(command, cwd=ROOT, timeout=180)
    assert finished.returncode == 0
    assert kills >= 3, "the sender finished before it could be killed often enough"

    with engine.connect() as conn:
        rows = conn.execute(select(Outbox.message_id, Outbox.state, Outbox.uncertain)).all()
    received = Counter(
        line.split(b":", 1)[1].strip().decode()
        for envelope in box.messages
        for line in envelope.original_content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")  # type: ignore[union-attr]
        if line.lower().startswith(b"message-id:")
    )
    assert {r.state for r in rows} == {"sent"}
    lost = [r.message_id for r in rows if received[r.message_id] == 0]
    assert lost == []
    twice = {mid for mid, n in received.items() if n > 1}
    uncertain = {r.message_id for r in rows if r.uncertain}
    assert twice <= uncertain, (
        f"{len(twice - uncertain)} messages arrived twice without being unknown"
    )
    engine.dispose()
