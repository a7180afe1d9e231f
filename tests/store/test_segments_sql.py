"""Segment conditions compiled to SQL select exactly the leads the evaluator selects."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

import dsl
from dsl import ir
from flowbuilder.engine.evaluate import Context, holds
from flowbuilder.store.db import reading
from flowbuilder.store.facts import load_facts
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead, ListRow, Membership
from flowbuilder.store.segments_sql import compile_condition, members

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

WORKSPACE = """
settings {
  icp = ["saas", "fintech"]
  threshold = 3
  share = 0.3
}
attribute age: number
attribute industry: string
attribute interests: list
attribute vip: bool
list newsletter
stages {
  stage sql when false
  stage mql when false
}
form signup_form "Sign up" {
  field email: email required
}
form contact "Contact" {
  field email: email required
}

segment thirties "" where lead.age >= 30 and lead.age <= 39
segment icp "" where lead.industry in settings.icp
segment not_icp "" where lead.industry not in settings.icp
segment unknown_age "" where lead.age == null
segment known_age "" where lead.age != null
segment wellness "" where lead.interests contains "wellness"
segment vips "" where lead.vip == true
segment clickers "" where count(click, within=30d) >= settings.threshold
segment recent_openers "" where opened(within=7d)
segment silent "" where not occurred(open, within=30d) and not clicked(within=30d)
segment open_rate "" where count(delivery, within=90d) > 0 and count(open, within=90d) >= count(delivery, within=90d) * settings.share
segment spenders "" where total("purchase", "amount", within=60d) > 100
segment big_baskets "" where average("purchase", "amount") >= 50
segment product_viewers "" where count(view, where=event.document starts_with "product/") >= 2
segment readers "" where viewed("pricing", depth=50%)
segment subscribers "" where in_list(newsletter) or submitted(signup_form, within=14d)
segment stale "" where days_since(click) > 20
segment mixed "" where lead.age >= 30 and lead.email matches "^a"
segment named "" where lead.email ends_with "@example.com" and not lead.email starts_with "b"
segment staged "" where in_stage(sql) or lead.score > 10
"""

SEGMENTS = [s.name for s in dsl.loads(WORKSPACE).segments.values()]  # type: ignore[union-attr]


def _populate(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    leads = []
    for n in range(60):
        attributes: dict[str, object] = {}
        if rng.random() < 0.8:
            attributes["age"] = rng.choice([25, 30, 35, 39, 40, 52, "thirty", None, 33.5])
        if rng.random() < 0.8:
            attributes["industry"] = rng.choice(["saas", "fintech", "retail", 7, None])
        if rng.random() < 0.5:
            attributes["interests"] = rng.choice(
                [["wellness"], ["travel", "wellness"], [], "wellness"]
            )
        if rng.random() < 0.5:
            attributes["vip"] = rng.choice([True, False, 1, "yes"])
        leads.append(
            {
                "email": f"{rng.choice('abc')}{n}@{rng.choice(['example.com', 'other.org'])}",
                "attributes": attributes,
                "stage": rng.choice([None, "sql", "mql"]),
                "score": rng.choice([0.0, 5.0, 12.5]),
                "tags": [],
                "consent": "granted",
                "unsubscribed": False,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    events = []
    for lead_id in range(1, 61):
        for _ in range(rng.randint(0, 12)):
            kind = rng.choice(["open", "click", "delivery", "purchase", "view", "form", "reply"])
            properties: dict[str, object] = {}
            if kind == "purchase":
                properties["amount"] = rng.choice([10, 60, 120, "lots", True, 45.5])
            if kind == "view":
                properties["document"] = rng.choice(["pricing", "product/a", "product/b", "faq"])
                if rng.random() < 0.8:
                    properties["depth"] = rng.choice([10, 50, 75, 100])
            if kind == "form":
                properties["form"] = rng.choice(["signup_form", "contact"])
            events.append(
                {
                    "lead_id": lead_id,
                    "type": kind,
                    # some exactly on a window's far end, some in the future
                    "at": NOW
                    - timedelta(days=rng.choice([0, 1, 7, 13, 21, 30, 45, 60, 90, 120]))
                    + timedelta(hours=rng.choice([0, 0, 3, -2])),
                    "properties": properties,
                    "machine": rng.random() < 0.15,
                    "received_at": NOW,
                    "pending": False,
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(Lead), leads)
        conn.execute(insert(EventRow), events)
        conn.execute(insert(ListRow).values(name="newsletter", kind="manual", created_at=NOW))
        conn.execute(
            insert(Membership),
            [{"list_name": "newsletter", "lead_id": i, "added_at": NOW} for i in range(1, 61, 7)],
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_every_segment_selects_what_the_evaluator_selects(store: Engine, seed: int) -> None:
    ws = dsl.loads(WORKSPACE)
    assert isinstance(ws, ir.Workspace)
    _populate(store, seed)
    with reading(store) as conn:
        facts = load_facts(conn, range(1, 61), ws, NOW)
        for name, segment in ws.segments.items():
            expected = {
                i
                for i, f in facts.items()
                if holds(segment.condition, Context(f, NOW, settings=ws.settings)).value
            }

            def check(ids: list[int]) -> dict[int, object]:
                return {i: facts[i] for i in ids}

            got = members(conn, ws, segment.condition, NOW, check)  # type: ignore[arg-type]
            assert got == expected, name


def test_what_sql_cannot_say_is_left_to_the_evaluator() -> None:
    ws = dsl.loads(WORKSPACE)
    assert isinstance(ws, ir.Workspace)
    exact = {
        name: compile_condition(s.condition, ws, NOW, "sqlite").exact
        for name, s in ws.segments.items()
    }
    assert not exact["mixed"]  # a regular expression
    assert sum(exact.values()) == len(SEGMENTS) - 1
