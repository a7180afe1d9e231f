"""Who enters a flow: triggers matched against an incoming event, and the flow's entry policy.

Membership changes arrive as events of their own (`list.entered`, `segment.entered`,
`stage.changed` with the name in `properties`), so every event-driven trigger is one match.
Time-driven triggers (dates, anniversaries, inactivity, schedules) are found by the scheduled
passes of the runtime with `date_trigger_fires` and `inactive_since`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dsl import ir
from dsl.ir_text import duration_text, trigger_text
from flowbuilder.engine.decisions import Enrollment
from flowbuilder.engine.evaluate import Context, as_datetime, evaluate, holds
from flowbuilder.engine.facts import Event, LeadFacts

MEMBERSHIP_EVENTS = {"list": "list.entered", "segment": "segment.entered", "stage": "stage.changed"}
MEMBERSHIP_KEYS = {"list": "list", "segment": "segment", "stage": "stage"}


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str


def matching_trigger(
    flow: ir.Flow, event: Event, facts: LeadFacts, now: datetime
) -> tuple[ir.Trigger, str] | None:
    """The first trigger of `flow` that `event` fires, with the reason; None when none does."""
    for trigger in flow.triggers:
        reason = _fires(trigger, event, facts, now)
        if reason is not None:
            return trigger, reason
    return None


def _fires(trigger: ir.Trigger, event: Event, facts: LeadFacts, now: datetime) -> str | None:
    match trigger:
        case ir.EventTrigger():
            if event.type != trigger.event:
                return None
            if trigger.where is None:
                return f"trigger {trigger_text(trigger)}"
            verdict = holds(trigger.where, Context(facts, now, event=event))
            return f"trigger {trigger_text(trigger)}: {verdict.reason()}" if verdict.value else None
        case ir.EnteredTrigger():
            wanted = MEMBERSHIP_EVENTS[trigger.membership]
            if (
                event.type == wanted
                and event.properties.get(MEMBERSHIP_KEYS[trigger.membership]) == trigger.name
            ):
                return f"trigger {trigger_text(trigger)}"
            return None
        case ir.FormTrigger():
            if event.type != "form" or event.properties.get("form") != trigger.form:
                return None
            answers = event.properties.get("answers", {})
            if (
                trigger.where is not None
                and not holds(
                    trigger.where, Context(facts, now, event=event, answers=answers)
                ).value
            ):
                return None
            return f"trigger {trigger_text(trigger)}"
    return None


def admit(flow: ir.Flow, history: Sequence[Enrollment], now: datetime) -> Admission:
    """The entry policy: `once` ever, `always` when not already in the flow, `every` N after the last entry."""
    mine = [e for e in history if e.flow == flow.name]
    active = [e for e in mine if e.status == "active"]
    if active:
        return Admission(
            False, f"already in flow {flow.name} since {active[0].entered_at.isoformat()}"
        )
    entry = flow.entry
    if entry.mode == "once" and mine:
        return Admission(
            False, f"entry once: entered flow {flow.name} on {mine[0].entered_at.isoformat()}"
        )
    if entry.mode == "every" and mine and entry.every_seconds is not None:
        last = max(e.entered_at for e in mine)
        if now < last + timedelta(seconds=entry.every_seconds):
            return Admission(
                False,
                f"entry every {duration_text(entry.every_seconds)}: last entered {last.isoformat()}",
            )
    return Admission(True, f"entry {entry.mode}")


def start(flow: ir.Flow, lead_id: str, now: datetime) -> Enrollment:
    """A new enrollment at the flow's first step."""
    return Enrollment(
        lead_id=lead_id, flow=flow.name, step=flow.start, entered_at=now, step_entered_at=now
    )


def date_trigger_fires(
    trigger: ir.DateTrigger | ir.AnniversaryTrigger,
    facts: LeadFacts,
    after: datetime,
    until: datetime,
) -> datetime | None:
    """When a date or anniversary trigger fires for this lead within (after, until], if it does."""
    when = as_datetime(evaluate(trigger.date, Context(facts, until)))
    if when is None:
        return None
    zone = ZoneInfo(facts.timezone or "UTC")
    at = time.fromisoformat(trigger.at) if trigger.at else time(9, 0)
    candidates = []
    if isinstance(trigger, ir.DateTrigger):
        candidates.append(when.date())
    else:
        for year in range(after.astimezone(zone).year, until.astimezone(zone).year + 1):
            try:
                candidates.append(when.date().replace(year=year))
            except ValueError:  # 29 February in a common year: celebrate on 28 February
                candidates.append(when.date().replace(year=year, day=28))
    for day in candidates:
        moment = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if after < moment <= until:
            return moment
    return None


def inactive_since(facts: LeadFacts, now: datetime) -> datetime | None:
    """The lead's last human open or click (or its creation), for `trigger inactive N`."""
    activity = [e.at for e in facts.matching(["open", "click"], until=now)]
    if activity:
        return max(activity)
    return as_datetime(facts.attributes.get("created_at"))
