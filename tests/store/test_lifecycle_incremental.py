"""The runtime's incremental re-evaluation (the events pass re-checks only the rules new events can
change, reading only the part of the history they read; the rules pass re-checks a lead when a
window slides or its score decays) against a full recompute of every rule for every lead: on a
seeded random population, at every step, the full recompute finds nothing to change and computes
the same next moments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update

from flowbuilder.engine.facts import Event
from flowbuilder.intake import parse_event
from flowbuilder.runtime import lifecycle
from flowbuilder.runtime.tick import TickStats, events_pass, tick
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import record_events
from flowbuilder.store.published import current
from flowbuilder.store.schema import DecisionRow, Lead, Membership, SegmentMember
from tests.store.driver import add_lead, publish_text

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

RULES = """
template nudge {
  subject "Still there?"
}

settings {
  click_threshold = 3
  icp = ["saas", "fintech"]
}

attribute industry: string
attribute age: number
attribute tier: string

stages {
  stage customer "Customer" when occurred("purchase") and lead.score >= 12
  stage sql "Sales-qualified" when lead.industry in settings.icp or count(click) >= settings.click_threshold or viewed("pricing", depth=50%)
  stage mql "Marketing-qualified" when opened() and not clicked() or count(click, within=14d) >= 1
  stage lead "New"
}

scoring {
  fit +20 when lead.industry in settings.icp
  engagement +1 per open within 30d
  engagement +3 per click within 20d
  engagement +2 per view
  decay 20% every 30d
}

list repeat_clickers "Clicked repeatedly in 30 days" {
  add when count(click, within=30d) >= settings.click_threshold
  remove when count(click, within=30d) == 0
}

list buyers "Bought something" {
  add when occurred("purchase")
}

list vip "Spending and engaged" {
  add when in_segment(spenders) and lead.score >= 8
  remove when not in_segment(spenders)
}

segment clickers_30d "Clicked 3 times in 30 days" where count(click, within=30d) >= 3
segment openers_7d "Opened in the last 7 days" where occurred(open, within=7d)
segment thirties "In their thirties" where lead.age >= 30 and lead.age <= 39
segment spenders "Spent over 100 in 20 days" where total("purchase", "amount", within=20d) > 100
segment hot "Opened lately and scored" where in_segment(openers_7d) and lead.score >= 6
segment qualified "Sales-qualified" where lead.stage == "sql"
segment engaged_buyer "Scored buyers" where lead.score >= 8 and total("purchase", "amount", within=30d) >= 40
segment gold "Gold tier" where lead.tier == "gold"
segment mailed "Sent twice" where count(send) >= 2

list contacted "Sent something in 10 days" {
  add when count(send, within=10d) >= 1
  remove when count(send, within=10d) == 0
}

flow big_order "Thanks for a big order" {
  trigger event purchase where event.amount >= 150
  thanks: update lead.tier = "gold"
  done: end
}

flow demo "Points for a demo request" {
  trigger event demo_requested
  entry always
  points: update lead.score += 4
  done: end
}

flow cooled "Back to nurture" {
  trigger event went_quiet
  entry always
  back: update lead.stage = "lead"
  done: end
}

flow promoted "Put on the clickers' list by hand" {
  trigger event promoted
  entry always
  promote: add to list repeat_clickers
  done: end
}

flow nudged "A nudge by email" {
  trigger event nudge_requested
  entry always
  nudge: send nudge
  done: end
}

flow tidied "Taken off the lists by hand" {
  trigger event tidied
  entry always
  unlist: remove from list buyers
  unclick: remove from list repeat_clickers
  done: end
}
"""

# The flows write to the lead what rules read: `big_order` an attribute (the flow reads the whole
# lead, as its trigger filters on the event), `demo` points to the score (its `score.adjusted`
# event comes with the new score already written), `cooled` a lower stage (which the stage rules
# raise again). The rules reading them move the lead in the same tick, as a full recompute would.
# `promoted` and `tidied` put leads on and take them off rule-fed lists: the lists' own rules win
# in the same tick (a lead without clicks leaves `repeat_clickers` again, a buyer is back on
# `buyers`), as a full recompute has it.
# `nudged` sends: `mailed` and `contacted` (whose window slides) read sends, and move the lead
# at the send, as a full recompute right after it would.

# A segment published later: its members enter when their last click leaves the window. Then
# its condition changes (its window stays): leads with one click enter, the younger leave.
QUIET = '\nsegment quiet "No click for 9 days" where count(click, within=9d) == 0\n'
PUBLISHED = {5: QUIET, 9: QUIET.replace("== 0", "<= 1 and lead.age >= 30")}

# `score.adjusted` posted as a flow's `update lead.score` leaves it (points that decay, never
# leave), besides those the `demo` flow gives.
KINDS = ["open"] * 8 + ["click"] * 4 + ["delivery"] * 4 + ["purchase", "view", "form"]
KINDS += ["score.adjusted", "demo_requested", "demo_requested", "went_quiet"]
KINDS += ["promoted", "promoted", "tidied", "tidied"]
KINDS += ["nudge_requested"] * 3


def _event(rng: random.Random, email: str, at: datetime) -> dict[str, object]:
    kind = rng.choice(KINDS)
    properties: dict[str, object] = {}
    if kind == "purchase":
        properties["amount"] = rng.choice([20, 45, 80, 150])
    elif kind == "score.adjusted":
        properties["delta"] = rng.choice([-3, 2, 5])
    elif kind == "view":
        properties = {"document": rng.choice(["pricing", "guide"]), "depth": rng.randint(5, 100)}
    return {"type": kind, "email": email, "at": at, "properties": properties}


def _post(engine: Engine, events: list[dict[str, object]], now: datetime) -> None:
    with engine.begin() as conn:
        record_events(conn, [parse_event(e) for e in events], now)


def _standing(engine: Engine) -> dict[str, object]:
    with reading(engine) as conn:
        return {
            "leads": sorted(
                conn.execute(select(Lead.id, Lead.stage, Lead.score, Lead.rules_due_at)).all()
            ),
            "lists": sorted(conn.execute(select(Membership.list_name, Membership.lead_id)).all()),
            "segments": sorted(
                conn.execute(select(SegmentMember.segment, SegmentMember.lead_id)).all()
            ),
        }


def _due(engine: Engine, now: datetime) -> set[int]:
    with reading(engine) as conn:
        return set(conn.execute(select(Lead.id).where(Lead.rules_due_at <= now)).scalars())


def _moved_by_the_publication(engine: Engine, now: datetime) -> set[int]:
    """The leads that entered or left `quiet` at `now`."""
    with reading(engine) as conn:
        changes = conn.execute(
            select(DecisionRow.lead_id, DecisionRow.data).where(
                DecisionRow.flow.is_(None),
                DecisionRow.kind.in_(["segment.entered", "segment.left"]),
                DecisionRow.at == now,
            )
        ).all()
    return {lead_id for lead_id, data in changes if data["name"] == "quiet"}


def _decisions(engine: Engine) -> int:
    with reading(engine) as conn:
        return conn.execute(
            select(func.count()).select_from(DecisionRow).where(DecisionRow.flow.is_(None))
        ).scalar_one()


def _full_recompute(engine: Engine, now: datetime) -> None:
    """Every rule for every lead, as `bench.segments` measures it."""
    with engine.begin() as conn:
        conn.execute(update(Lead).values(rules_due_at=now))
    with reading(engine) as conn:
        published = current(conn)
    assert published is not None
    while True:
        with engine.begin() as conn:
            checked, _ = lifecycle.due_rules_pass(conn, published, now, 7)
        if checked < 7:
            break
    while True:
        with engine.begin() as conn:
            if events_pass(conn, published, now, 7, TickStats()) == 0:
                break


def _agree(engine: Engine, now: datetime) -> None:
    incremental = _standing(engine)
    decided = _decisions(engine)
    _full_recompute(engine, now)
    assert _decisions(engine) == decided, "the full recompute changed what the runtime had"
    assert _standing(engine) == incremental


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_re_evaluation_agrees_with_a_full_recompute(store: Engine, seed: int) -> None:
    rng = random.Random(seed)
    publish_text(store, RULES, T0 - 60 * DAY)
    emails = [f"l{n}@example.com" for n in range(40)]
    for email in emails:
        add_lead(
            store,
            email,
            T0 - 60 * DAY,
            industry=rng.choice(["saas", "retail", "fintech", "media"]),
            age=rng.randint(20, 60),
        )
    weights = [1 / (n + 1) for n in range(len(emails))]  # a few busy leads, many quiet ones

    def who() -> str:
        return rng.choices(emails, weights)[0]

    history = [
        _event(rng, who(), T0 - timedelta(seconds=rng.randint(0, 60 * 86400))) for _ in range(600)
    ]
    _post(store, history, T0)
    tick(store, T0, batch=50)
    _agree(store, T0)

    now = T0
    moved_while_due: set[int] = set()
    for step in range(12):
        # Windows slide, scores decay, new events arrive (some dated a little in the past), flows
        # update leads and, twice, a segment is published; the runtime handles them with its
        # rules and events passes, in small batches so that a lead's events fall into several.
        now += timedelta(hours=rng.randint(6, 90))
        if step in PUBLISHED:
            # Published while leads are due (windows slid since the last tick): the publication's
            # check of the leads the segment moves keeps the earlier of their due moment and the
            # next one it finds, so that the look they are due for is not lost.
            due = _due(store, now)
            publish_text(store, RULES + PUBLISHED[step], now)
            tick(store, now, batch=9)
            _agree(store, now)
            moved_while_due |= due & _moved_by_the_publication(store, now)
        events = [
            _event(rng, who(), now - timedelta(minutes=rng.randint(0, 600)))
            for _ in range(rng.randint(5, 60))
        ]
        _post(store, events, now)
        tick(store, now, batch=9)
        _agree(store, now)
    assert moved_while_due, "no publication moved a lead that was due"
    with reading(store) as conn:
        sent = conn.execute(
            select(func.count()).select_from(DecisionRow).where(DecisionRow.kind == "send")
        ).scalar_one()
        mailed = conn.execute(
            select(func.count()).select_from(SegmentMember).where(SegmentMember.segment == "mailed")
        ).scalar_one()
    assert sent and mailed, "no flow sent, or no send moved a lead"


def test_the_events_pass_reads_only_the_part_of_the_history_the_rules_read(store: Engine) -> None:
    publish_text(store, RULES, T0 - 60 * DAY)
    for email in ("ann@example.com", "bob@example.com"):
        add_lead(store, email, T0 - 60 * DAY, industry="retail", age=33)
    history = [
        (T0 - 50 * DAY, "purchase", {"amount": 20}),
        (T0 - 40 * DAY, "open", {}),
        *[(T0 - n * DAY, "click", {}) for n in (27, 26, 25)],  # sql, by three clicks
        (T0 - 2 * DAY, "open", {}),
        (T0 - DAY, "delivery", {}),
    ]
    _post(
        store,
        [
            {"type": kind, "email": email, "at": at, "properties": properties}
            for email in ("ann@example.com", "bob@example.com")
            for at, kind, properties in history
        ],
        T0 - 60 * DAY,
    )
    tick(store, T0 - 60 * DAY)
    tick(store, T0)
    _post(
        store,
        [
            {"type": "open", "email": "ann@example.com", "at": T0},
            {"type": "open", "email": "bob@example.com", "at": T0},
        ],
        T0,
    )
    with store.begin() as conn:
        published = current(conn)
        assert published is not None
        ann, bob = sorted(conn.execute(select(Lead.id)).scalars())
        conn.execute(update(Lead).where(Lead.id == bob).values(rules_due_at=T0))  # due: whole
        events = [(lead_id, Event("open", T0)) for lead_id in (ann, bob)]
        facts, parts = lifecycle.load_for_events(conn, published, events, frozenset(), T0)
        conn.rollback()
    assert set(parts) == {ann}
    # An open changes the score (which reads opens of 30 days and clicks of 20), `openers_7d`
    # (opens of 7 days) and the stage: of a lead at sql, only the customer stage's rule (every
    # purchase, and the score). Nothing of those reads deliveries.
    assert [(e.type, e.at) for e in facts[ann].events] == [
        ("purchase", T0 - 50 * DAY),
        ("open", T0 - 2 * DAY),
        ("open", T0),
    ]
    assert {("delivery", T0 - DAY), ("open", T0 - 40 * DAY)} <= {
        (e.type, e.at) for e in facts[bob].events
    }
    tick(store, T0)
    _agree(store, T0)
