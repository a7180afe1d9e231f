"""What a flow did, per step and over time, from the store's events, decisions and enrollments.

Counts are distinct leads, so every rate is a share of people: of the leads a step sent to, how
many opened, clicked, replied, reached a goal of the flow afterwards (converted), unsubscribed or
bounced. Opens by privacy proxies and scanners (`machine`) are left out unless asked for. A/B
variants are compared with a two-proportion z-test against the first variant.

    >>> round(confidence(50, 200, 80, 200), 3)
    0.999
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.engine import Connection

from flowbuilder.store.schema import DecisionRow, EnrollmentRow
from flowbuilder.store.schema import Event as EventRow

MEASURES = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "converted",
    "unsubscribed",
    "bounced",
)
# The event types each measure counts (email work records `delivered`; the language calls it
# `delivery`; both count).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "sent": ("send",),
    "delivered": ("delivered", "delivery"),
    "opened": ("open",),
    "clicked": ("click",),
    "replied": ("reply",),
    "unsubscribed": ("unsubscribe",),
    "bounced": ("bounce",),
}
_MEASURE_OF = {t: m for m, types in EVENT_TYPES.items() for t in types}
GOAL = "goal.reached"


@dataclass
class Counts:
    """Distinct leads per measure."""

    entered: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    converted: int = 0
    unsubscribed: int = 0
    bounced: int = 0

    def rate(self, measure: str, of: str = "sent") -> float | None:
        base = getattr(self, of)
        return getattr(self, measure) / base if base else None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: getattr(self, m) for m in MEASURES}
        out["rates"] = {
            "open": self.rate("opened"),
            "click": self.rate("clicked"),
            "reply": self.rate("replied"),
            "conversion": self.rate("converted", "entered"),
            "unsubscribe": self.rate("unsubscribed"),
            "bounce": self.rate("bounced"),
        }
        return out


@dataclass
class Variant:
    step: str
    name: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    open_confidence: float | None = None  # that it differs from the first variant
    click_confidence: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "name": self.name,
            "sent": self.sent,
            "opened": self.opened,
            "clicked": self.clicked,
            "converted": self.converted,
            "open_rate": self.opened / self.sent if self.sent else None,
            "click_rate": self.clicked / self.sent if self.sent else None,
            "open_confidence": self.open_confidence,
            "click_confidence": self.click_confidence,
        }


@dataclass
class FlowMetrics:
    flow: str
    total: Counts
    steps: dict[str, Counts]
    days: list[date]
    series: dict[str, list[int]]  # measure → count per day (events, not distinct leads)
    variants: list[Variant] = field(default_factory=list)

    def funnel(self) -> list[tuple[str, int]]:
        return [
            (m, getattr(self.total, m))
            for m in ("entered", "sent", "opened", "clicked", "converted")
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "total": self.total.as_json(),
            "steps": {name: c.as_json() for name, c in self.steps.items()},
            "days": [d.isoformat() for d in self.days],
            "series": self.series,
            "funnel": self.funnel(),
            "variants": [v.as_json() for v in self.variants],
        }


def confidence(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """How sure one can be that two rates differ (1 − the two-sided p-value of a z-test)."""
    if not n_a or not n_b:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 0.0
    z = abs(hits_a / n_a - hits_b / n_b) / spread
    return math.erf(z / math.sqrt(2))


def flow_metrics(
    conn: Connection,
    flow: str,
    now: datetime,
    *,
    days: int = 28,
    include_machine: bool = False,
    variant_order: Mapping[str, Sequence[str]] | None = None,
) -> FlowMetrics:
    """Per step and in total: entered, sent … bounced; a daily series over `days`; A/B variants
    (each compared with the first of `variant_order[step]`, the variants as declared)."""
    steps: dict[str, Counts] = defaultdict(Counts)
    total = Counts()
    # entered: the leads that were at a step (a decision there, or waiting there now)
    at_step: dict[str, set[int]] = defaultdict(set)
    for step, lead_id in conn.execute(
        select(DecisionRow.step, DecisionRow.lead_id)
        .where(DecisionRow.flow == flow, DecisionRow.step.is_not(None))
        .distinct()
    ):
        at_step[str(step)].add(lead_id)
    for step, lead_id in conn.execute(
        select(EnrollmentRow.step, EnrollmentRow.lead_id).where(
            EnrollmentRow.flow == flow, EnrollmentRow.step.is_not(None)
        )
    ):
        at_step[str(step)].add(lead_id)
    for step, leads in at_step.items():
        steps[step].entered = len(leads)
    total.entered = conn.execute(
        select(func.count(distinct(EnrollmentRow.lead_id))).where(EnrollmentRow.flow == flow)
    ).scalar_one()

    wanted = sorted(_MEASURE_OF)
    query = select(
        EventRow.lead_id,
        EventRow.type,
        EventRow.step,
        EventRow.at,
        EventRow.message_key,
        EventRow.properties,
    ).where(EventRow.flow == flow, EventRow.type.in_(wanted))
    if not include_machine:
        query = query.where(EventRow.machine.is_(False))
    by_step: dict[tuple[str, str], set[int]] = defaultdict(set)
    flow_wide: dict[str, set[int]] = defaultdict(set)
    first_send: dict[tuple[str, int], datetime] = {}
    variant_of_key: dict[str, tuple[str, str]] = {}
    variant_of_lead: dict[tuple[str, int], str] = {}
    start_day = (now - timedelta(days=days - 1)).date()
    day_list = [start_day + timedelta(days=i) for i in range(days)]
    series: dict[str, list[int]] = {
        m: [0] * days for m in ("sent", "opened", "clicked", "replied", "converted")
    }
    reactions: list[tuple[int, str, str | None, str | None]] = []
    for lead_id, type_, step, at, key, props in conn.execute(query):
        measure = _MEASURE_OF[type_]
        flow_wide[measure].add(lead_id)
        if step is not None:
            by_step[(step, measure)].add(lead_id)
        _bucket(series, measure, at, start_day, days)
        if type_ == "send" and step is not None:
            if (step, lead_id) not in first_send or at < first_send[(step, lead_id)]:
                first_send[(step, lead_id)] = at
            variant = (props or {}).get("variant")
            if variant:
                variant_of_lead[(step, lead_id)] = str(variant)
                if key:
                    variant_of_key[key] = (step, str(variant))
        elif measure in ("opened", "clicked"):
            reactions.append((lead_id, measure, step, key))
    for (step, measure), leads in by_step.items():
        setattr(steps[step], measure, len(leads))
    for measure, leads in flow_wide.items():
        setattr(total, measure, len(leads))

    goals: dict[int, list[datetime]] = defaultdict(list)
    for lead_id, at, props in conn.execute(
        select(EventRow.lead_id, EventRow.at, EventRow.properties).where(EventRow.type == GOAL)
    ):
        if (props or {}).get("flow") == flow:
            goals[lead_id].append(at)
            _bucket(series, "converted", at, start_day, days)
    total.converted = len(goals)
    converted_at: dict[str, set[int]] = defaultdict(set)
    for (step, lead_id), sent_at in first_send.items():
        if any(t >= sent_at for t in goals.get(lead_id, ())):
            converted_at[step].add(lead_id)
    for step, leads in converted_at.items():
        steps[step].converted = len(leads)

    variants = _variants(
        first_send, variant_of_lead, variant_of_key, reactions, converted_at, variant_order or {}
    )
    ordered = dict(sorted(steps.items()))
    return FlowMetrics(flow, total, ordered, day_list, series, variants)


def _bucket(
    series: dict[str, list[int]], measure: str, at: datetime, start: date, days: int
) -> None:
    if measure not in series:
        return
    index = (at.date() - start).days
    if 0 <= index < days:
        series[measure][index] += 1


def _variants(
    first_send: dict[tuple[str, int], datetime],
    variant_of_lead: dict[tuple[str, int], str],
    variant_of_key: dict[str, tuple[str, str]],
    reactions: list[tuple[int, str, str | None, str | None]],
    converted_at: dict[str, set[int]],
    declared: Mapping[str, Sequence[str]],
) -> list[Variant]:
    found: dict[tuple[str, str], Variant] = {}
    order: list[tuple[str, str]] = []
    reacted: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for (step, lead_id), name in sorted(variant_of_lead.items()):
        key = (step, name)
        if key not in found:
            found[key] = Variant(step, name)
            order.append(key)
        found[key].sent += 1
        if lead_id in converted_at.get(step, ()):
            found[key].converted += 1
    for lead_id, measure, reacted_step, message_key in reactions:
        if message_key and message_key in variant_of_key:
            step_name, name = variant_of_key[message_key]
        elif reacted_step is not None and (reacted_step, lead_id) in variant_of_lead:
            step_name, name = reacted_step, variant_of_lead[(reacted_step, lead_id)]
        else:
            continue
        reacted[(step_name, name, measure)].add(lead_id)
    for (step, name), v in found.items():
        v.opened = len(reacted[(step, name, "opened")])
        v.clicked = len(reacted[(step, name, "clicked")])
    out: list[Variant] = []
    for step in sorted({s for s, _ in order}):
        names = list(declared.get(step, ()))
        group = sorted(
            (found[k] for k in order if k[0] == step),
            key=lambda v: (names.index(v.name) if v.name in names else len(names), v.name),
        )
        first = group[0]
        for v in group:
            if v is not first:
                v.open_confidence = confidence(first.opened, first.sent, v.opened, v.sent)
                v.click_confidence = confidence(first.clicked, first.sent, v.clicked, v.sent)
        out.extend(group)
    return out


def overview(conn: Connection) -> dict[str, Counts]:
    """Every flow's totals (entered, sent, opened, clicked, converted), for the flows list."""
    out: dict[str, Counts] = defaultdict(Counts)
    for flow, count in conn.execute(
        select(EnrollmentRow.flow, func.count(distinct(EnrollmentRow.lead_id))).group_by(
            EnrollmentRow.flow
        )
    ):
        out[flow].entered = count
    for event_flow, type_, count in conn.execute(
        select(EventRow.flow, EventRow.type, func.count(distinct(EventRow.lead_id)))
        .where(
            EventRow.flow.is_not(None),
            EventRow.type.in_(["send", "open", "click"]),
            EventRow.machine.is_(False),
        )
        .group_by(EventRow.flow, EventRow.type)
    ):
        setattr(out[str(event_flow)], _MEASURE_OF[type_], count)
    goals: dict[str, set[int]] = defaultdict(set)
    for lead_id, props in conn.execute(
        select(EventRow.lead_id, EventRow.properties).where(EventRow.type == GOAL)
    ):
        name = (props or {}).get("flow")
        if name:
            goals[str(name)].add(lead_id)
    for flow, leads in goals.items():
        out[flow].converted = len(leads)
    return dict(out)
