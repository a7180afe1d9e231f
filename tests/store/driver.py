"""Helpers for store tests: publish a text, add leads, post events, replay days."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, text

from dsl.compile import compile_text
from dsl.lint import lint
from flowbuilder.intake import LeadIn, parse_event
from flowbuilder.publish import Plan, publish
from flowbuilder.runtime.replay import replay
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import record_events, upsert_leads


def publish_text(engine: Engine, source: str, now: datetime, *, dry_run: bool = False) -> Plan:
    compilation = compile_text(source, "test.flow")
    assert compilation.ok, compilation.diagnostics
    return publish(engine, compilation, lint(compilation), now, dry_run=dry_run)


def add_lead(engine: Engine, email: str, now: datetime, **attributes: object) -> int:
    timezone = attributes.pop("timezone", None)
    with engine.begin() as conn:
        upsert_leads(
            conn, [LeadIn(email, attributes, timezone=str(timezone) if timezone else None)], now
        )
        lead_id: int = conn.execute(
            text("SELECT id FROM leads WHERE email = :e"), {"e": email}
        ).scalar_one()
    return lead_id


def post(engine: Engine, email: str, type_: str, at: datetime, **fields: object) -> None:
    """Record one event; `fields` may name the flow and step (or message_key) it reacts to."""
    with engine.begin() as conn:
        event = parse_event({"type": type_, "email": email, "at": at, **fields})
        record_events(conn, [event], at)


Scripted = tuple[datetime, str, str] | tuple[datetime, str, str, dict[str, object]]


def run_until(
    engine: Engine, start: datetime, end: datetime, events: Sequence[Scripted] = ()
) -> None:
    """Replay from `start` to `end` with scripted events (time, email, type[, fields such as the
    step the event reacts to])."""
    parsed = [
        parse_event({"type": e[2], "email": e[1], "at": e[0], **(e[3] if len(e) > 3 else {})})
        for e in events
    ]
    replay(engine, start, end, parsed)


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with reading(engine) as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]
