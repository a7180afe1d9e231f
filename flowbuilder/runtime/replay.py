"""The real runtime on a virtual clock: tick at every moment something is due or an event arrives.

Used to compare the runtime with the simulator on the same inputs (they must take the same paths)
and to measure both. Events are recorded at their own time, in bulk per moment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from flowbuilder.intake import EventIn
from flowbuilder.runtime.lifecycle import rules_for
from flowbuilder.runtime.tick import tick
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import record_events
from flowbuilder.store.published import current
from flowbuilder.store.schema import EnrollmentRow, Lead, Outbox


@dataclass(frozen=True)
class Sent:
    """A message a tick decided to send."""

    key: str
    email: str
    flow: str
    step: str | None
    template: str | None


# Given the messages a tick decided at a moment, the events their recipients produce later.
Reactions = Callable[[Sequence[Sent], datetime], list[EventIn]]


def replay(
    engine: Engine,
    start: datetime,
    end: datetime,
    events: Sequence[EventIn],
    react: Reactions | None = None,
    progress: Callable[[datetime], None] | None = None,
) -> int:
    """Run from `start` to `end`; returns the number of ticks it took."""
    script: dict[datetime, list[EventIn]] = defaultdict(list)
    for e in events:
        script[max(e.at or start, start)].append(e)
    moments = sorted(script)
    ticks = 0
    now = start
    seen = 0
    while True:
        for at in [m for m in moments if m <= now]:
            with engine.begin() as conn:
                record_events(conn, script.pop(at), at)
        tick(engine, now)
        ticks += 1
        if progress is not None:
            progress(now)
        if react is not None:
            with reading(engine) as conn:
                sent = conn.execute(
                    select(
                        Outbox.id, Outbox.key, Lead.email, Outbox.flow, Outbox.step, Outbox.template
                    )
                    .join(Lead, Lead.id == Outbox.lead_id)
                    .where(Outbox.id > seen, Outbox.channel == "email")
                    .order_by(Outbox.id)
                ).all()
            if sent:
                seen = sent[-1].id
                for e in react([Sent(*r[1:]) for r in sent], now):
                    script[max(e.at or now, now)].append(e)
        moments = sorted(script)
        with reading(engine) as conn:
            due = conn.execute(
                select(func.min(EnrollmentRow.due_at)).where(
                    EnrollmentRow.status == "active", EnrollmentRow.due_at > now
                )
            ).scalar()
            rules_due = conn.execute(
                select(func.min(Lead.rules_due_at)).where(Lead.rules_due_at > now)
            ).scalar()
            published = current(conn)
        # The population is ranked once a day, at 00:00 UTC, as the simulator does.
        midnight = None
        if published is not None and rules_for(published).measures:
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        upcoming = [
            m for m in (due, rules_due, midnight, moments[0] if moments else None) if m is not None
        ]
        if not upcoming or min(upcoming) > end:
            return ticks
        now = min(upcoming)
