"""The runtime on a real store (SQLite and PostgreSQL): triggers, waits, wake-ups, exits, sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from dsl.compile import compile_text
from flowbuilder.engine.facts import Event
from flowbuilder.runtime.tick import tick
from flowbuilder.simulate import Lead, simulate
from tests.store.driver import add_lead, post, publish_text, rows, run_until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

FLOW = """
template hello {
  subject "Hi"
}
template nudge {
  subject "Still there?"
}
template thanks {
  subject "Thanks"
}

flow onboarding "Onboarding" {
  trigger event signed_up
  entry once
  exit when replied()

  hello: send hello
  pause: wait 2d
  nudge: send nudge
  read: wait for clicked(nudge) up to 3d {
    then -> thanks
    timeout -> bye
  }
  thanks: send thanks
  done: end
  bye: end "no click"
}
"""


def _sends(engine: Engine) -> list[tuple[object, ...]]:
    return rows(engine, "SELECT step, template FROM outbox ORDER BY id")


def test_a_sign_up_walks_the_flow_and_times_out(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    add_lead(store, "ann@example.com", T0)
    run_until(store, T0, T0 + timedelta(days=10), [(T0, "ann@example.com", "signed_up")])
    assert _sends(store) == [("hello", "hello"), ("nudge", "nudge")]
    [(status, step)] = rows(store, "SELECT status, step FROM enrollments")
    assert (status, step) == ("exited", "bye") or (status, step) == ("completed", "bye")
    reasons = [r[0] for r in rows(store, "SELECT reason FROM decisions ORDER BY id")]
    assert "trigger event signed_up" in reasons
    assert any("no `clicked(nudge)` within 3d" in r for r in reasons)
    # the nudge went out exactly 2 days after the hello
    sent = rows(store, "SELECT at FROM events WHERE type = 'send' ORDER BY id")
    assert len(sent) == 2


def test_a_click_wakes_the_wait_at_once_without_waiting_for_the_timeout(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    add_lead(store, "bo@example.com", T0)
    click_at = T0 + timedelta(days=2, hours=5)
    run_until(
        store,
        T0,
        T0 + timedelta(days=10),
        [
            (T0, "bo@example.com", "signed_up"),
            (click_at, "bo@example.com", "click", {"flow": "onboarding", "step": "nudge"}),
        ],
    )
    assert [s for s, _ in _sends(store)] == ["hello", "nudge", "thanks"]
    [(sent_at,)] = rows(store, "SELECT at FROM events WHERE type = 'send' AND step = 'thanks'")
    assert str(sent_at).startswith(click_at.strftime("%Y-%m-%d %H:%M"))


def test_a_reply_exits_the_flow_on_the_next_tick(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    add_lead(store, "cy@example.com", T0)
    run_until(
        store,
        T0,
        T0 + timedelta(days=10),
        [(T0, "cy@example.com", "signed_up"), (T0 + timedelta(hours=3), "cy@example.com", "reply")],
    )
    assert [s for s, _ in _sends(store)] == ["hello"]
    [(status, _step)] = rows(store, "SELECT status, step FROM enrollments")
    assert status == "exited"
    assert any("exit when replied()" in r[0] for r in rows(store, "SELECT reason FROM decisions"))


def test_ticking_twice_at_the_same_moment_decides_nothing_twice(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    add_lead(store, "di@example.com", T0)
    post(store, "di@example.com", "signed_up", T0)
    first = tick(store, T0)
    second = tick(store, T0)
    assert (first.enrolled, first.sends) == (1, 1)
    assert (second.enrolled, second.decided, second.sends) == (0, 0, 0)
    assert len(_sends(store)) == 1


def test_entry_once_keeps_a_second_sign_up_out(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    add_lead(store, "ed@example.com", T0)
    run_until(
        store,
        T0,
        T0 + timedelta(days=12),
        [
            (T0, "ed@example.com", "signed_up"),
            (T0 + timedelta(days=11), "ed@example.com", "signed_up"),
        ],
    )
    assert rows(store, "SELECT count(*) FROM enrollments") == [(1,)]
    assert any(
        "entry once" in r[0]
        for r in rows(store, "SELECT reason FROM decisions WHERE kind = 'skip'")
    )


def test_the_runtime_and_the_simulator_take_the_same_path(store: Engine) -> None:
    """Same flow, same lead, same events: the same sends at the same logical times."""
    publish_text(store, FLOW, T0)
    add_lead(store, "fa@example.com", T0)
    click_at = T0 + timedelta(days=2, hours=1)
    run_until(
        store,
        T0,
        T0 + timedelta(days=10),
        [
            (T0, "fa@example.com", "signed_up"),
            (click_at, "fa@example.com", "click", {"flow": "onboarding", "step": "nudge"}),
        ],
    )
    runtime = [
        (str(step), str(at)[:16])
        for step, at in rows(store, "SELECT step, at FROM events WHERE type = 'send' ORDER BY id")
    ]
    ws = compile_text(FLOW, "test.flow").workspace
    assert ws is not None
    result = simulate(
        ws,
        [Lead("1", {"email": "fa@example.com"})],
        [
            ("1", Event("signed_up", T0)),
            ("1", Event("click", click_at, flow="onboarding", step="nudge")),
        ],
        T0,
        10,
    )
    simulated = [(str(t.step), t.at.strftime("%Y-%m-%d %H:%M")) for t in result.sends()]
    assert runtime == simulated


def test_the_outbox_holds_one_row_per_decided_send_with_a_unique_key(store: Engine) -> None:
    publish_text(store, FLOW, T0)
    for n in range(30):
        add_lead(store, f"lead{n}@example.com", T0)
    run_until(
        store,
        T0,
        T0 + timedelta(days=10),
        [(T0 + timedelta(minutes=n), f"lead{n}@example.com", "signed_up") for n in range(30)],
    )
    keys = [k for (k,) in rows(store, "SELECT key FROM outbox")]
    assert len(keys) == 60 and len(set(keys)) == 60
    assert rows(store, "SELECT count(*) FROM outbox WHERE state = 'pending'") == [(60,)]
