"""Opens and clicks as they arrive through the tracking routes, recorded as events.

An open or a click is attributed to its message's flow, step and outbox key, so `opened(welcome)`
and `clicked(guide, link="pricing")` see it. Fetches that look automated (see
`tracking.machine_reason`) are recorded with `machine=True`; a test message records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from flowbuilder.intake import EventIn
from flowbuilder.mail.tracking import BadToken, Tokens, is_safe_redirect, machine_reason
from flowbuilder.store.ingest import record_events
from flowbuilder.store.schema import Outbox


@dataclass(frozen=True)
class Visit:
    """Who fetched: for telling people from machines."""

    user_agent: str | None
    ip: str | None
    method: str = "GET"


def _row(conn: Connection, outbox_id: int) -> Any:
    return conn.execute(select(Outbox).where(Outbox.id == outbox_id)).first()


def record_open(conn: Connection, tokens: Tokens, token: str, visit: Visit, now: datetime) -> bool:
    """Record an open; False when the token names no message. Raises `BadToken` when forged."""
    row = _row(conn, tokens.read_open(token))
    if row is None:
        return False
    if not row.test:
        _record(conn, row, "open", {}, visit, now)
    return True


def click_target(conn: Connection, tokens: Tokens, token: str, visit: Visit, now: datetime) -> str:
    """The URL a click token leads to, after recording the click.

    Raises `BadToken` for a forged or changed token, or one naming a link the message did not have."""
    outbox_id, index = tokens.read_click(token)
    row = _row(conn, outbox_id)
    links = (row.links or []) if row is not None else []
    if row is None or not 0 <= index < len(links):
        raise BadToken("the click token names a link that message does not have")
    link = links[index]
    url = str(link.get("url") if isinstance(link, dict) else link)
    if not is_safe_redirect(url):
        raise BadToken("the link is not an http(s) URL")
    if not row.test:
        properties = {"url": url}
        if isinstance(link, dict) and link.get("name"):
            properties["link"] = str(link["name"])
        _record(conn, row, "click", properties, visit, now)
    return url


def _record(
    conn: Connection,
    row: Outbox,
    type_: str,
    properties: dict[str, str],
    visit: Visit,
    now: datetime,
) -> None:
    why = machine_reason(visit.user_agent, visit.ip, row.sent_at, now, visit.method)
    if why is not None:
        properties = {**properties, "machine_reason": why}
    record_events(
        conn,
        [
            EventIn(
                type=type_,
                lead_id=row.lead_id,
                at=now,
                properties=properties,
                flow=row.flow,
                step=row.step,
                message_key=row.key,
                machine=why is not None,
            )
        ],
        now,
    )


__all__ = ["BadToken", "Visit", "click_target", "record_open"]
