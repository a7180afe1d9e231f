"""The sender as a process of its own, for the SIGKILL test: drains until every row is done.

`python -m tests.mail.chaos_sender DATABASE_URL PORT DATA_DIR`
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from flowbuilder.config import Settings
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SenderOptions
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Outbox
from tests.mail.conftest import ACME


async def main(url: str, port: int, data_dir: Path) -> None:
    engine = open_store(url)
    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        secret_key="chaos",
        workspace=ACME,
        unknown_policy="retry",
    )
    options = SenderOptions(
        connections=4,
        batch=50,
        rate_per_domain=100_000.0,
        lease_seconds=1.0,
        retry_seconds=0.05,
        max_attempts=1000,
        retry_unknown=True,
    )
    sender = Sender(engine, settings, Relay("127.0.0.1", port), options=options)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await sender.drain()
        with engine.connect() as conn:
            left = conn.execute(
                select(func.count()).where(Outbox.state.in_(("pending", "sending")))
            ).scalar_one()
        if not left:
            break
        await asyncio.sleep(0.1)  # let the leases of a killed sender run out
    await sender.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
