from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import dsl
from dsl import ir
from flowbuilder.engine.entry import (
    admit,
    date_trigger_fires,
    inactive_since,
    matching_trigger,
    start,
)
from flowbuilder.engine.facts import Event, LeadFacts

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
HEAD = 'list ebook\nsegment dormant where days_since(open) > 60\nform contact "Contact" {\n  field interest: choice ["a", "b"]\n}\n'


def flow(policy: str) -> ir.Flow:
    return dsl.loads(HEAD + 'flow f "F" {\n' + policy + "  a: end\n}\n").flows["f"]


def lead(**kw: object) -> LeadFacts:
    return LeadFacts(lead_id="l", **{"attributes": {}, **kw})  # type: ignore[arg-type]


def test_an_event_trigger_with_a_filter_fires_only_when_the_filter_holds() -> None:
    f = flow('  trigger event signed_up where event.plan == "trial"\n')
    yes = matching_trigger(f, Event("signed_up", NOW, {"plan": "trial"}), lead(), NOW)
    assert (
        yes is not None
        and yes[1] == 'trigger event signed_up where event.plan == "trial": event.plan = "trial"'
    )
    assert matching_trigger(f, Event("signed_up", NOW, {"plan": "pro"}), lead(), NOW) is None
    assert matching_trigger(f, Event("other", NOW, {"plan": "trial"}), lead(), NOW) is None


def test_entering_a_list_or_segment_is_an_event_that_fires_the_trigger() -> None:
    f = flow("  trigger entered list ebook\n  trigger entered segment dormant\n")
    assert (
        matching_trigger(f, Event("list.entered", NOW, {"list": "ebook"}), lead(), NOW) is not None
    )
    assert (
        matching_trigger(f, Event("segment.entered", NOW, {"segment": "dormant"}), lead(), NOW)
        is not None
    )
    assert matching_trigger(f, Event("list.entered", NOW, {"list": "other"}), lead(), NOW) is None


def test_a_form_trigger_can_route_by_answer() -> None:
    f = flow('  trigger form contact where answer.interest == "a"\n')
    answered_a = Event("form", NOW, {"form": "contact", "answers": {"interest": "a"}})
    answered_b = Event("form", NOW, {"form": "contact", "answers": {"interest": "b"}})
    assert matching_trigger(f, answered_a, lead(), NOW) is not None
    assert matching_trigger(f, answered_b, lead(), NOW) is None


def test_entry_once_admits_a_lead_only_the_first_time() -> None:
    f = flow("  entry once\n")
    assert admit(f, [], NOW).admitted
    done = dataclasses.replace(start(f, "l", NOW - timedelta(days=90)), status="completed")
    refused = admit(f, [done], NOW)
    assert not refused.admitted and refused.reason.startswith("entry once")


def test_entry_every_30_days_waits_for_the_period() -> None:
    f = flow("  entry every 30d\n")
    done = dataclasses.replace(start(f, "l", NOW - timedelta(days=10)), status="completed")
    assert not admit(f, [done], NOW).admitted
    assert admit(f, [done], NOW + timedelta(days=21)).admitted


def test_no_flow_admits_a_lead_already_in_it() -> None:
    f = flow("  entry always\n")
    assert not admit(f, [start(f, "l", NOW)], NOW).admitted


def test_a_birthday_anniversary_fires_at_the_local_time_each_year() -> None:
    f = flow("  trigger anniversary lead.birthday at 10:00\n")
    trigger = f.triggers[0]
    assert isinstance(trigger, ir.AnniversaryTrigger)
    facts = lead(attributes={"birthday": "1990-11-24"}, timezone="Asia/Seoul")
    fires = date_trigger_fires(trigger, facts, NOW, NOW + timedelta(days=2))
    assert fires == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert (
        date_trigger_fires(trigger, facts, NOW + timedelta(days=2), NOW + timedelta(days=3)) is None
    )


def test_a_date_trigger_can_be_offset_from_an_attribute_date() -> None:
    f = flow("  trigger date lead.renewal_date - 30d at 09:00\n")
    trigger = f.triggers[0]
    assert isinstance(trigger, ir.DateTrigger)
    facts = lead(attributes={"renewal_date": "2026-12-24"})
    assert date_trigger_fires(trigger, facts, NOW, NOW + timedelta(days=2)) == datetime(
        2026, 11, 24, 9, 0, tzinfo=UTC
    )


def test_inactivity_counts_from_the_last_human_open_or_click() -> None:
    events = (
        Event("open", NOW - timedelta(days=70)),
        Event("click", NOW - timedelta(days=3), machine=True),
    )
    assert inactive_since(lead(events=events), NOW) == NOW - timedelta(days=70)
