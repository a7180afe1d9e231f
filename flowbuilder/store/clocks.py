"""Named clocks of the runtime's periodic passes (the time-trigger scan, the population ranking,
the rules last classified by), claimed so that only one worker runs a pass at a time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection

from flowbuilder.store.schema import Clock
from flowbuilder.store.writes import insert_ignoring


@dataclass(frozen=True)
class Claimed:
    """A clock this transaction holds: when its pass last ran (or the clock was made, while
    `value` is still None) and what from."""

    at: datetime
    value: str | None


def ensure(engine: Engine, names: Iterable[str], now: datetime) -> None:
    """Create the clocks that do not exist yet, in a transaction of their own: a row another
    worker is still inserting could not be skipped, only waited for."""
    wanted = set(names)
    with engine.connect() as conn:
        present = set(
            conn.execute(select(Clock.name).where(Clock.name.in_(sorted(wanted)))).scalars()
        )
    missing = sorted(wanted - present)
    if missing:
        with engine.begin() as conn:
            insert_ignoring(
                conn,
                Clock.__table__,  # type: ignore[arg-type]
                [{"name": n, "at": now, "value": None} for n in missing],
            )


def claim(conn: Connection, name: str) -> Claimed | None:
    """Lock the clock `name` (see `ensure`) for this transaction; None while another worker's
    pass holds it.

    Every worker's tick may try every periodic pass; the row lock (`SKIP LOCKED`) lets exactly
    one of them run it, and the others go on with the rest of their tick."""
    row = conn.execute(
        select(Clock.at, Clock.value).where(Clock.name == name).with_for_update(skip_locked=True)
    ).first()
    return None if row is None else Claimed(row.at, row.value)


def advance(conn: Connection, name: str, now: datetime, value: str | None = None) -> None:
    """Record that the pass `name` ran at `now` (from `value`)."""
    values: dict[str, object] = {"at": now}
    if value is not None:
        values["value"] = value
    conn.execute(update(Clock).where(Clock.name == name).values(**values))
