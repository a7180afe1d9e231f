"""Pulse on a real store (SQLite and PostgreSQL): tracked links start views, heartbeats move them,
the final beacon or 30 minutes of silence close them with exactly one `view` event, and the
engine's `viewed(...)` sees it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from alembic import command
from sqlalchemy import Engine, insert, select

from flowbuilder.intake import EventIn
from flowbuilder.pulse import (
    SILENCE,
    Beat,
    PulseTokens,
    Refused,
    close_silent_views,
    record_beat,
    start_view,
)
from flowbuilder.runtime.replay import replay
from flowbuilder.runtime.tick import tick
from flowbuilder.store.db import alembic_config, open_store, reading, tables
from flowbuilder.store.ingest import record_events
from flowbuilder.store.schema import DocumentView, Event, Outbox
from tests.store.driver import add_lead, publish_text, rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKENS = PulseTokens("pulse-test-secret-" + "x" * 32)
PRICING = "https://acme.example/pricing?plan=team#compare"


def _follow(store: Engine, lead: int, at: datetime, message_key: str | None = None) -> int:
    """Follow a tracked link to the pricing page; the view id from the redirect."""
    link = TOKENS.link(lead, "pricing", PRICING, message_key)
    with store.begin() as conn:
        url = start_view(conn, TOKENS, link, at)
    parts = urlsplit(url)
    assert (parts.netloc, parts.path, parts.fragment) == ("acme.example", "/pricing", "compare")
    query = parse_qs(parts.query)
    assert query["plan"] == ["team"]
    view_id, origin = TOKENS.read_view(query["fbv"][0], at)
    assert origin == "https://acme.example"
    return view_id


def _beat(
    store: Engine, view: int, at: datetime, depth: float, seconds: float, final: bool = False
) -> str:
    with store.begin() as conn:
        return record_beat(conn, view, Beat(depth, seconds, final), at)


def _views(store: Engine) -> list[Any]:
    with reading(store) as conn:
        return list(conn.execute(select(Event).where(Event.type == "view").order_by(Event.id)))


def _view(store: Engine, view: int) -> Any:
    with reading(store) as conn:
        return conn.execute(select(DocumentView).where(DocumentView.id == view)).one()


def test_heartbeats_and_the_final_beacon_record_one_view_event_of_the_message(
    store: Engine,
) -> None:
    lead = add_lead(store, "ann@example.com", T0)
    with store.begin() as conn:
        conn.execute(
            insert(Outbox).values(
                key="msg-1",
                lead_id=lead,
                flow="nurture",
                step="pricing_mail",
                channel="email",
                payload={},
                state="sent",
                attempts=1,
                created_at=T0,
                updated_at=T0,
            )
        )
    view = _follow(store, lead, T0, "msg-1")
    assert _beat(store, view, T0 + timedelta(seconds=1), 20, 0.5) == "recorded"
    assert _beat(store, view, T0 + timedelta(seconds=20), 55.5, 18) == "recorded"
    assert _beat(store, view, T0 + timedelta(seconds=21), 40, 18) == "unchanged"  # depth is a max
    assert _views(store) == []
    assert _beat(store, view, T0 + timedelta(seconds=45), 72.25, 41, final=True) == "closed"
    [event] = _views(store)
    assert event.lead_id == lead
    assert event.properties == {
        "document": "pricing",
        "depth": 72.2,
        "seconds": 41.0,
        "url": PRICING,
    }
    assert (event.flow, event.step, event.message_key) == ("nurture", "pricing_mail", "msg-1")
    assert event.at == T0 and event.pending
    row = _view(store, view)
    assert (row.beats, row.closed_by, row.closed_at) == (3, "beacon", T0 + timedelta(seconds=45))


def test_a_replayed_final_beacon_changes_nothing_and_a_later_beat_is_refused(store: Engine) -> None:
    lead = add_lead(store, "ann@example.com", T0)
    view = _follow(store, lead, T0)
    assert _beat(store, view, T0 + timedelta(seconds=30), 60, 25, final=True) == "closed"
    assert _beat(store, view, T0 + timedelta(seconds=31), 60, 25, final=True) == "unchanged"
    assert _beat(store, view, T0 + timedelta(seconds=32), 10, 5) == "unchanged"
    with pytest.raises(Refused, match="view closed at") as closed:
        _beat(store, view, T0 + timedelta(seconds=90), 90, 80)
    assert closed.value.kind == "closed"
    assert len(_views(store)) == 1
    assert _view(store, view).max_depth == 60


def test_a_beat_claiming_more_time_than_has_passed_or_going_back_is_refused(store: Engine) -> None:
    lead = add_lead(store, "ann@example.com", T0)
    view = _follow(store, lead, T0)
    with pytest.raises(Refused, match=r"`seconds` 300 is more than the 60 s") as late:
        _beat(store, view, T0 + timedelta(seconds=60), 50, 300)
    assert late.value.kind == "invalid"
    assert _beat(store, view, T0 + timedelta(seconds=60), 50, 50) == "recorded"
    with pytest.raises(Refused, match="went back from 50 to 20") as stale:
        _beat(store, view, T0 + timedelta(seconds=61), 80, 20)
    assert stale.value.kind == "stale"
    row = _view(store, view)
    assert (row.max_depth, row.seconds, row.beats) == (50, 50, 1)
    with pytest.raises(Refused, match="there is no view") as unknown:
        _beat(store, view + 1000, T0 + timedelta(seconds=61), 80, 20)
    assert unknown.value.kind == "unknown"


def test_thirty_silent_minutes_close_a_view_once_and_a_view_without_beats_records_nothing(
    store: Engine,
) -> None:
    ann = add_lead(store, "ann@example.com", T0)
    bob = add_lead(store, "bob@example.com", T0)
    read = _follow(store, ann, T0)
    _beat(store, read, T0 + timedelta(minutes=2), 35, 100)
    scanned = _follow(store, bob, T0)  # a link scanner: the page's script never ran
    fresh = _follow(store, ann, T0 + timedelta(minutes=20))
    _beat(store, fresh, T0 + timedelta(minutes=25), 10, 60)
    with store.begin() as conn:
        assert close_silent_views(conn, T0 + timedelta(minutes=31)) == 1  # `scanned`
    assert _views(store) == []
    with store.begin() as conn:
        assert close_silent_views(conn, T0 + SILENCE + timedelta(minutes=2, seconds=1)) == 1
    with store.begin() as conn:
        assert close_silent_views(conn, T0 + timedelta(minutes=40)) == 0
    [event] = _views(store)
    assert (event.lead_id, event.properties["depth"], event.properties["seconds"]) == (ann, 35, 100)
    assert (_view(store, read).closed_by, _view(store, scanned).closed_by) == ("silence", "silence")
    assert _view(store, fresh).closed_at is None


def test_a_link_or_view_token_that_was_changed_or_is_too_old_is_refused(store: Engine) -> None:
    lead = add_lead(store, "ann@example.com", T0)
    link = TOKENS.link(lead, "pricing", PRICING)
    for token in (
        link[:-2] + "xx",
        PulseTokens("another-secret-" + "y" * 32).link(lead, "p", PRICING),
    ):
        with store.begin() as conn, pytest.raises(Refused, match="link token is not valid") as e:
            start_view(conn, TOKENS, token, T0)
        assert e.value.kind == "forged"
    ghost = TOKENS.link(lead + 99, "pricing", PRICING)
    with store.begin() as conn, pytest.raises(Refused, match="no longer exists"):
        start_view(conn, TOKENS, ghost, T0)
    token = TOKENS.view(1, "https://acme.example", T0)
    with pytest.raises(Refused, match="older than 12 hours") as old:
        TOKENS.read_view(token, T0 + timedelta(hours=12, seconds=1))
    assert old.value.kind == "expired"
    with pytest.raises(Refused, match="view token is not valid"):
        TOKENS.read_view(TOKENS.link(lead, "pricing", PRICING), T0)
    assert rows(store, "SELECT count(*) FROM document_views") == [(0,)]


FLOW = """
template pricing_mail {
  subject "Our pricing"
}
template talk {
  subject "Shall we talk?"
}
template later {
  subject "Maybe later"
}

flow pricing_readers "Pricing readers" {
  trigger event signed_up
  mail: send pricing_mail
  read: wait for viewed("pricing", depth=50%) up to 7d {
    then -> talk
    timeout -> later
  }
  talk: send talk
  done: end
  later: send later
  over: end
}
"""


def test_a_lead_who_reads_the_pricing_page_past_half_satisfies_viewed_and_moves_on(
    store: Engine,
) -> None:
    publish_text(store, FLOW, T0)
    ann = add_lead(store, "ann@example.com", T0)
    bob = add_lead(store, "bob@example.com", T0)
    with store.begin() as conn:
        record_events(
            conn,
            [
                EventIn(type="signed_up", lead_id=ann, at=T0),
                EventIn(type="signed_up", lead_id=bob, at=T0),
            ],
            T0,
        )
    tick(store, T0)
    keys = dict(rows(store, "SELECT lead_id, key FROM outbox WHERE step = 'mail'"))
    assert set(keys) == {ann, bob}
    later = T0 + timedelta(hours=3)
    for lead, depth in ((ann, 64), (bob, 30)):  # Bob stops at 30 %
        view = _follow(store, lead, later, str(keys[lead]))
        _beat(store, view, later + timedelta(minutes=1), depth, 50, final=True)
    tick(store, later + timedelta(minutes=2))
    replay(store, later + timedelta(minutes=2), T0 + timedelta(days=8), [])
    sends = rows(store, "SELECT lead_id, step FROM outbox WHERE step <> 'mail' ORDER BY lead_id")
    assert sends == [(ann, "talk"), (bob, "later")]
    [(step,)] = rows(store, "SELECT step FROM events WHERE type = 'view' AND lead_id = :l", l=ann)
    assert step == "mail"


def test_two_workers_closing_silent_views_at_once_close_each_once(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        lead = add_lead(store, "ann@example.com", T0)
        view = _follow(store, lead, T0)
        _beat(store, view, T0 + timedelta(seconds=30), 80, 25)
        later = T0 + timedelta(hours=1)
        with store.connect() as first, store.connect() as second:
            one = first.begin()
            assert close_silent_views(first, later) == 1
            two = second.begin()
            assert close_silent_views(second, later) == 0  # locked by the first: skipped
            one.commit()
            assert close_silent_views(second, later) == 0  # closed by the first
            two.commit()
        assert len(_views(store)) == 1
    finally:
        store.dispose()


def test_the_pulse_migration_goes_down_and_up_again(store: Engine) -> None:
    command.downgrade(alembic_config(store), "0004")
    assert "document_views" not in tables(store)
    command.upgrade(alembic_config(store), "head")
    assert "document_views" in tables(store)
