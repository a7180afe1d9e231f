"""A demo: a small population living a few weeks with the example flows, on the real runtime.

Leads sign up, download the e-book, abandon carts, request quotes or arrive on the cold list;
recipients open, click, reply and buy with fixed odds per kind of email. Everything is derived from
a seed, so the same seed and start give the same weeks. `flowbuilder demo` runs it and prints what
the flows did; the web app starts from the same data.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from flowbuilder.intake import EventIn, LeadIn
from flowbuilder.runtime.replay import Sent, replay
from flowbuilder.store.db import reading
from flowbuilder.store.ingest import add_to_list, upsert_leads
from flowbuilder.store.schema import DecisionRow, EnrollmentRow, Outbox

FIRST_NAMES = [
    "지민",
    "서연",
    "민준",
    "하은",
    "도윤",
    "Ann",
    "Ben",
    "Chloé",
    "Dara",
    "Emil",
    "Fatima",
    "Goro",
]
# Three of the eight companies match Acme's ideal customer profile (industry or revenue), so the
# stage rules send some leads straight to sales and leave the rest to earn it by their reactions.
COMPANIES = [
    ("Hanbit Soft", "saas", 4_000_000_000, 40),
    ("Seoul Pay", "fintech", 12_000_000_000, 120),
    ("K-Parts", "manufacturing", 30_000_000_000, 300),
    ("Daegu Academy", "education", 1_200_000_000, 30),
    ("Mapo Media", "media", 3_000_000_000, 45),
    ("Green Clinic", "healthcare", 2_000_000_000, 35),
    ("Jeju Travel", "travel", 800_000_000, 12),
    ("Incheon Logistics", "logistics", 4_500_000_000, 90),
]
SOURCES = ["form"] * 10 + ["import"] * 5 + ["api"] * 4 + ["referral"]
TIMEZONES = ["Asia/Seoul"] * 6 + ["Europe/Berlin", "America/New_York", "Asia/Tokyo"]


@dataclass(frozen=True)
class Odds:
    """How a recipient of one kind of email reacts: open, click after opening, reply, and a
    follow-up event (a purchase, a booked meeting …) after clicking."""

    open: float = 0.45
    click: float = 0.35
    reply: float = 0.02
    then: str | None = None
    then_odds: float = 0.0


ODDS: dict[str, Odds] = {
    "welcome": Odds(0.6, 0.4, 0.01, "workspace_created", 0.5),
    "cold_outreach": Odds(0.35, 0.2, 0.08, "meeting_booked", 0.2),
    "ebook_nurture": Odds(0.55, 0.45, 0.02, "webinar_registered", 0.3),
    "cart_abandonment": Odds(0.5, 0.5, 0.0, "purchase", 0.45),
    "sales_conversion": Odds(0.6, 0.5, 0.1, "demo_booked", 0.35),
    "reengagement": Odds(0.25, 0.2, 0.02),
    "mql_onboarding": Odds(0.5, 0.4, 0.01),
    "sales_follow_up": Odds(0.6, 0.35, 0.05, "meeting_booked", 0.35),
}


def _chance(*parts: str) -> float:
    """A stable number in [0, 1) per message and reaction: the demo never reshuffles."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _reaction(type_: str, m: Sent, at: datetime, **properties: str) -> EventIn:
    return EventIn(
        type=type_,
        email=m.email,
        at=at,
        properties=properties,
        message_key=m.key,
        flow=m.flow,
        step=m.step,
    )


def react(messages: Sequence[Sent], at: datetime) -> list[EventIn]:
    """What the recipients of `messages` (sent at `at`) do, and when."""
    out: list[EventIn] = []
    for m in messages:
        odds = ODDS.get(m.flow, Odds())
        if _chance(m.key, "open") >= odds.open:
            continue
        opened = at + timedelta(minutes=20 + int(_chance(m.key, "open-at") * 600))
        out.append(_reaction("open", m, opened))
        if _chance(m.key, "reply") < odds.reply:
            out.append(_reaction("reply", m, opened + timedelta(minutes=30)))
        if _chance(m.key, "click") >= odds.click:
            continue
        clicked = opened + timedelta(minutes=2 + int(_chance(m.key, "click-at") * 30))
        out.append(_reaction("click", m, clicked, url=f"https://acme.example/{m.template}"))
        if odds.then and _chance(m.key, "then") < odds.then_odds:
            out.append(EventIn(type=odds.then, email=m.email, at=clicked + timedelta(hours=3)))
    return out


@dataclass
class Demo:
    leads: list[LeadIn]
    events: list[EventIn]
    cold: list[str] = field(default_factory=list)


def build(size: int, start: datetime, days: int, seed: int) -> Demo:
    """The population and the events it brings by itself (sign-ups, forms, carts, quotes)."""
    rng = random.Random(seed)
    leads: list[LeadIn] = []
    events: list[EventIn] = []
    cold: list[str] = []
    span = max(days - 7, 1) * 24 * 60
    for i in range(size):
        name = rng.choice(FIRST_NAMES)
        company, industry, revenue, employees = rng.choice(COMPANIES)
        email = f"lead{i:04d}@{company.lower().replace(' ', '-')}.example"
        leads.append(
            LeadIn(
                email=email,
                attributes={
                    "first_name": name,
                    "company": company,
                    "industry": industry,
                    "revenue": revenue,
                    "employees": employees,
                    "source": rng.choice(SOURCES),
                },
                timezone=rng.choice(TIMEZONES),
                consent="granted",
            )
        )
        at = start + timedelta(minutes=rng.randrange(span))
        roll = rng.random()
        if roll < 0.35:
            events.append(EventIn(type="signed_up", email=email, at=at))
        elif roll < 0.55:
            answers = {
                "email": email,
                "first_name": name,
                "company": company,
                "role": rng.choice(["marketing", "sales", "founder"]),
                "newsletter": rng.random() < 0.5,
            }
            events.append(
                EventIn(
                    type="form",
                    email=email,
                    at=at,
                    properties={"form": "ebook_download", "answers": answers},
                )
            )
        elif roll < 0.7:
            value = rng.choice([30_000, 59_000, 89_000, 129_000])
            events.append(
                EventIn(type="cart_abandoned", email=email, at=at, properties={"value": value})
            )
        elif roll < 0.8:
            events.append(EventIn(type="quote_requested", email=email, at=at))
        else:
            cold.append(email)
    return Demo(leads, events, cold)


def run(
    engine: Engine,
    start: datetime,
    days: int,
    size: int = 200,
    seed: int = 7,
    progress: Callable[[datetime], None] | None = None,
) -> Demo:
    """Load the population into a store with the examples published, and live `days` days."""
    demo = build(size, start, days, seed)
    with engine.begin() as conn:
        upsert_leads(conn, demo.leads, start)
        add_to_list(conn, "cold_prospects_kr", demo.cold, start, "demo import")
    replay(engine, start, start + timedelta(days=days), demo.events, react, progress)
    return demo


@dataclass
class FlowOutcome:
    flow: str
    entered: int = 0
    active: int = 0
    sends: Counter[str] = field(default_factory=Counter)
    endings: Counter[str] = field(default_factory=Counter)
    goals: Counter[str] = field(default_factory=Counter)


def outcomes(engine: Engine) -> list[FlowOutcome]:
    """Per flow: who entered, who is still in, what was sent, how enrollments ended, goals reached."""
    result: dict[str, FlowOutcome] = {}
    with reading(engine) as conn:
        for flow, status, count in conn.execute(
            select(EnrollmentRow.flow, EnrollmentRow.status, func.count()).group_by(
                EnrollmentRow.flow, EnrollmentRow.status
            )
        ):
            o = result.setdefault(flow, FlowOutcome(flow))
            o.entered += count
            if status == "active":
                o.active += count
        for flow, step, count in conn.execute(
            select(Outbox.flow, Outbox.step, func.count())
            .where(Outbox.channel == "email")
            .group_by(Outbox.flow, Outbox.step)
        ):
            result.setdefault(flow, FlowOutcome(flow)).sends[str(step)] += count
        for decided_in, kind, reason, count in conn.execute(
            select(DecisionRow.flow, DecisionRow.kind, DecisionRow.reason, func.count())
            .where(DecisionRow.kind.in_(["leave", "goal"]))
            .group_by(DecisionRow.flow, DecisionRow.kind, DecisionRow.reason)
        ):
            if decided_in is None:  # the lead rules' decisions belong to no flow
                continue
            o = result.setdefault(decided_in, FlowOutcome(decided_in))
            label = reason.split(":")[0]
            (o.goals if kind == "goal" else o.endings)[label] += count
    return [result[name] for name in sorted(result)]
