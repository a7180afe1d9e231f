from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from flowbuilder.engine.facts import Event, LeadFacts, lead_facts

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_fast_constructor_builds_the_same_facts() -> None:
    fields = {"lead_id": "1", "attributes": {"a": 1}, "stage": "sql", "tags": frozenset({"x"})}
    fast, slow = lead_facts(**fields), LeadFacts(**fields)  # type: ignore[arg-type]
    assert fast == slow
    assert {f.name for f in dataclasses.fields(LeadFacts)} <= set(fast.__dict__)


types = st.sampled_from(["open", "click", "reply", "send"])


@given(st.lists(st.tuples(types, st.integers(0, 100)), max_size=30), types)
def test_events_by_type_stay_right_as_events_are_added(
    added: list[tuple[str, int]], asked: str
) -> None:
    facts = LeadFacts(lead_id="1", attributes={})
    facts.of_type(asked)  # build the index early, so that every later event must update it
    for kind, minutes in added:
        facts = facts.with_event(Event(kind, T0 + timedelta(minutes=minutes)))
        expected = [e for e in facts.events if e.type == asked]
        assert list(facts.of_type(asked)) == expected
        assert facts.matching([asked]) == expected
        assert facts.matching([asked, "send"]) == [
            e for e in facts.events if e.type in (asked, "send")
        ]
