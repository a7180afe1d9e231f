"""Pulse: tracked links to documents and landing pages, and how long and how far they were read.

A tracked link names a lead, a document (the name conditions use: `viewed("pricing")`), the
page's URL and, when it was in an email, that message's outbox key — all signed, so none of it
can be changed. Following it starts a **view** and redirects to the page with a short-lived view
token in the URL (`?fbv=…`). The beacon script on the page (`web/static/pulse/pulse.js`) sends
heartbeats with the read depth (the percentage of the page that has been on screen) and the
seconds the page was visible; the final beacon when the reader leaves, or 30 minutes without
one, closes the view and records exactly one `view` event:

    properties: document, depth (0–100), seconds, url     flow, step: of the message, if any

A view that never heard from the script (a link scanner, a page without the script) closes
without an event. Nothing about the reader's browser or address is stored.

    >>> tokens = PulseTokens("s" * 32)
    >>> link = tokens.read_link(tokens.link(7, "pricing", "https://acme.example/pricing"))
    >>> (link.lead_id, link.document, link.url, link.message_key)
    (7, 'pricing', 'https://acme.example/pricing', None)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from flowbuilder.config import Settings
from flowbuilder.intake import EventIn
from flowbuilder.store.ingest import record_events
from flowbuilder.store.schema import DocumentView, Lead

SILENCE = timedelta(minutes=30)  # a view with no beacon for this long is closed
VIEW_TOKEN_AGE = timedelta(hours=12)  # how long the token in the page's URL is taken
CLOCK_SLACK = 5.0  # seconds a beat may claim beyond the wall time since the view started
VIEW_PARAMETER = "fbv"
_DOCUMENT = re.compile(r"[^\x00-\x1f\x7f]{1,128}\Z")


class Refused(ValueError):
    """A link, token or beat that is not taken, and why. `kind` says which:

    malformed (not a beat at all), forged (not signed by this installation), expired, unknown
    (the view or lead does not exist), closed (the view has ended), stale (an older beat after a
    newer one), invalid (a value out of range), origin (sent from another site)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Link:
    lead_id: int
    document: str
    url: str
    message_key: str | None = None


@dataclass(frozen=True)
class Beat:
    depth: float  # percent of the page read, 0–100
    seconds: float  # seconds the page was visible since it loaded
    final: bool = False


def check_document(name: str) -> str:
    if not isinstance(name, str) or not _DOCUMENT.match(name) or not name.strip():
        raise ValueError(
            f"a document name is 1 to 128 characters without control characters, not {name!r}"
        )
    return name


def check_url(url: str) -> str:
    """The page a tracked link leads to: an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a tracked link leads to an http:// or https:// page, not {url!r}")
    return url


def origin_of(url: str) -> str:
    """`https://acme.example` of `https://acme.example/pricing?x=1`: who may send its beacons."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class PulseTokens:
    """Sign and read the tokens of tracked links and of views."""

    secret: str

    def _s(self, salt: str) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt=f"flowbuilder.pulse.{salt}")

    def link(self, lead_id: int, document: str, url: str, message_key: str | None = None) -> str:
        check_document(document)
        check_url(url)
        return str(self._s("link").dumps([lead_id, document, url, message_key]))

    def read_link(self, token: str) -> Link:
        value = self._load("link", token)
        if not (
            isinstance(value, list)
            and len(value) == 4
            and _is_int(value[0])
            and isinstance(value[1], str)
            and isinstance(value[2], str)
            and (value[3] is None or isinstance(value[3], str))
        ):
            raise Refused("forged", "the link token does not name a lead, a document and a page")
        return Link(value[0], value[1], value[2], value[3])

    def view(self, view_id: int, origin: str, issued: datetime) -> str:
        return str(self._s("view").dumps([view_id, origin, int(issued.timestamp())]))

    def read_view(self, token: str, now: datetime) -> tuple[int, str]:
        """The view id and the origin its page may send beacons from."""
        value = self._load("view", token)
        if not (
            isinstance(value, list)
            and len(value) == 3
            and _is_int(value[0])
            and isinstance(value[1], str)
            and _is_int(value[2])
        ):
            raise Refused("forged", "the view token does not name a view")
        issued = datetime.fromtimestamp(value[2], UTC)
        if now - issued > VIEW_TOKEN_AGE:
            hours = VIEW_TOKEN_AGE.total_seconds() / 3600
            raise Refused("expired", f"the view token is older than {hours:g} hours")
        return value[0], value[1]

    def _load(self, salt: str, token: str) -> Any:
        try:
            return self._s(salt).loads(token)
        except BadSignature:
            raise Refused("forged", f"the {salt} token is not valid") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def tracked_link(
    settings: Settings,
    lead_id: int,
    document: str,
    url: str,
    message_key: str | None = None,
) -> str:
    """The URL to put in an email or a message for one lead: it redirects to `url` and starts a
    view of `document`.

    >>> s = Settings(secret_key="k" * 32, public_url="https://fb.acme.example")
    >>> tracked_link(s, 7, "pricing", "https://acme.example/pricing").startswith(
    ...     "https://fb.acme.example/pulse/l/")
    True
    """
    token = PulseTokens(settings.secret()).link(lead_id, document, url, message_key)
    return f"{settings.public_url}/pulse/l/{token}"


def with_view(url: str, token: str) -> str:
    """`url` with the view token as its `fbv` query parameter (the fragment kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "fbv"]
    query.append((VIEW_PARAMETER, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def start_view(conn: Connection, tokens: PulseTokens, link_token: str, now: datetime) -> str:
    """Follow a tracked link: store a new view and return the URL to redirect to."""
    link = tokens.read_link(link_token)
    try:
        check_document(link.document)
        check_url(link.url)
    except ValueError as e:
        raise Refused("forged", str(e)) from None
    if conn.execute(select(Lead.id).where(Lead.id == link.lead_id)).first() is None:
        raise Refused("unknown", "the lead this link was made for no longer exists")
    view_id = conn.execute(
        insert(DocumentView)
        .values(
            lead_id=link.lead_id,
            document=link.document,
            url=link.url,
            message_key=link.message_key,
            started_at=now,
            last_beat_at=now,
            beats=0,
            max_depth=0.0,
            seconds=0.0,
        )
        .returning(DocumentView.id)
    ).scalar_one()
    return with_view(link.url, tokens.view(int(view_id), origin_of(link.url), now))


def parse_beat(data: object) -> Beat:
    """A beat as the script sends it: `{"depth": 0–100, "seconds": ≥ 0, "final": bool}`."""
    if not isinstance(data, Mapping):
        raise Refused("malformed", f"a beat is a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - {"depth", "seconds", "final"})
    if unknown:
        raise Refused("malformed", f"a beat has depth, seconds and final, not {', '.join(unknown)}")
    values = {}
    for name in ("depth", "seconds"):
        value = data.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise Refused("invalid", f"`{name}` is a number, not {value!r}")
        if not math.isfinite(value):
            raise Refused("invalid", f"`{name}` is a finite number, not {value!r}")
        values[name] = float(value)
    if not 0 <= values["depth"] <= 100:
        raise Refused("invalid", f"`depth` is a percentage from 0 to 100, not {values['depth']:g}")
    if values["seconds"] < 0:
        raise Refused("invalid", f"`seconds` cannot be negative ({values['seconds']:g})")
    final = data.get("final", False)
    if not isinstance(final, bool):
        raise Refused("invalid", f"`final` is true or false, not {final!r}")
    return Beat(values["depth"], values["seconds"], final)


def record_beat(conn: Connection, view_id: int, beat: Beat, now: datetime) -> str:
    """Apply a heartbeat to a view: `recorded`, `unchanged` (a replay) or `closed` (the final
    beacon, which records the view's event). Raises Refused and changes nothing otherwise."""
    query = select(DocumentView).where(DocumentView.id == view_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    view = conn.execute(query).first()
    if view is None:
        raise Refused("unknown", f"there is no view {view_id}")
    elapsed = (now - view.started_at).total_seconds()
    if beat.seconds > elapsed + CLOCK_SLACK:
        raise Refused(
            "invalid",
            f"`seconds` {beat.seconds:g} is more than the {max(elapsed, 0):.0f} s since the view "
            "started",
        )
    if beat.depth <= view.max_depth and beat.seconds <= view.seconds and view.closed_at:
        return "unchanged"  # a replay of what the view already has
    if view.closed_at is not None:
        raise Refused(
            "closed",
            f"the view closed at {view.closed_at:%Y-%m-%d %H:%M:%S} UTC; following the link again "
            "starts a new one",
        )
    if beat.seconds < view.seconds:
        raise Refused(
            "stale",
            f"`seconds` went back from {view.seconds:g} to {beat.seconds:g}: an older beat "
            "arrived after a newer one",
        )
    depth = max(view.max_depth, beat.depth)
    unchanged = depth == view.max_depth and beat.seconds == view.seconds
    if unchanged and view.beats and not beat.final:
        return "unchanged"
    conn.execute(
        update(DocumentView)
        .where(DocumentView.id == view_id)
        .values(
            max_depth=depth,
            seconds=beat.seconds,
            last_beat_at=now,
            beats=DocumentView.beats + 1,
        )
    )
    if beat.final:
        _close(conn, view_id, now, "beacon")
        return "closed"
    return "recorded"


def close_silent_views(
    conn: Connection, now: datetime, *, silence: timedelta = SILENCE, limit: int = 1000
) -> int:
    """Close up to `limit` views that have had no beacon for `silence`, recording each one's
    `view` event; returns how many it closed. The runtime's tick calls it; on PostgreSQL, views
    another worker is closing at the same moment are skipped, not waited for."""
    query = (
        select(DocumentView.id)
        .where(DocumentView.closed_at.is_(None), DocumentView.last_beat_at < now - silence)
        .order_by(DocumentView.last_beat_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    closed = 0
    for (view_id,) in conn.execute(query).all():
        closed += _close(conn, view_id, now, "silence")
    return closed


def _close(conn: Connection, view_id: int, now: datetime, by: str) -> int:
    """Close one view once (the `closed_at IS NULL` guard) and record its event."""
    view = conn.execute(
        update(DocumentView)
        .where(DocumentView.id == view_id, DocumentView.closed_at.is_(None))
        .values(closed_at=now, closed_by=by)
        .returning(DocumentView)
    ).first()
    if view is None:
        return 0
    if view.beats:  # the script ran: a person had the page open
        event = EventIn(
            type="view",
            lead_id=view.lead_id,
            at=view.started_at,
            properties={
                "document": view.document,
                "depth": round(view.max_depth, 1),
                "seconds": round(view.seconds, 1),
                "url": view.url,
            },
            message_key=view.message_key,
            idempotency_key=f"pulse-view-{view.id}",
        )
        record_events(conn, [event], now)
    return 1
