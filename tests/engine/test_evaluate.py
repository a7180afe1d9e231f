from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dsl
from dsl import ir
from flowbuilder.engine.evaluate import Context, evaluate, holds
from flowbuilder.engine.facts import Event, LeadFacts, Population

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PRELUDE = """\
template t {
  subject "Hi"
}
list vip
stages {
  stage sql
  stage mql
}
settings {
  click_threshold = 3
  icp = ["saas", "fintech"]
}
"""


def condition(text: str) -> ir.Expr:
    """Compile `text` as the condition of a branch in a flow with steps `hello` and `value`."""
    flow = (
        PRELUDE
        + f'flow f "F" {{\n  hello: send t\n  value: send t\n  b: branch {{\n    if {text} -> e\n    else -> e\n  }}\n  e: end\n}}\n'
    )
    step = dsl.loads(flow).flows["f"].steps["b"]
    assert isinstance(step, ir.Branch)
    return step.arms[0].condition


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def facts(*events: Event, **kw: object) -> LeadFacts:
    base: dict[str, object] = {
        "lead_id": "1",
        "attributes": {"industry": "saas", "revenue": 5_000_000, "renewal_date": "2026-12-01"},
    }
    base.update(kw)
    return LeadFacts(events=events, **base)  # type: ignore[arg-type]


def check(text: str, lead: LeadFacts) -> bool:
    return holds(
        condition(text),
        Context(lead, NOW, settings={"click_threshold": 3, "icp": ["saas", "fintech"]}, flow="f"),
    ).value


def clicks(n: int, days_ago: float = 1, **props: object) -> list[Event]:
    return [Event("click", ago(days_ago), props, flow="f", step="value") for _ in range(n)]


def test_clicked_three_times_in_the_last_30_days_counts_only_the_window() -> None:
    lead = facts(*clicks(2, days_ago=5), *clicks(2, days_ago=45))
    assert not check("count(click, within=30d) >= 3", lead)
    assert check("count(click) >= 3", lead)


def test_the_click_threshold_comes_from_the_team_settings() -> None:
    assert check("count(click) >= settings.click_threshold", facts(*clicks(3)))
    assert not check("count(click) >= settings.click_threshold", facts(*clicks(2)))


def test_reactions_refer_to_a_given_steps_message() -> None:
    lead = facts(Event("open", ago(1), flow="f", step="hello"))
    assert check("opened(hello)", lead)
    assert not check("opened(value)", lead)
    assert check("opened()", lead)


def test_clicked_a_given_link_matches_its_label_or_url() -> None:
    lead = facts(*clicks(1, link="pricing", url="https://acme.example/pricing"))
    assert check('clicked(value, link="pricing")', lead)
    assert not check('clicked(value, link="careers")', lead)


def test_machine_opens_are_not_reactions() -> None:
    lead = facts(Event("open", ago(1), flow="f", step="hello", machine=True))
    assert not check("opened(hello)", lead)


def test_attribute_tests_and_membership() -> None:
    lead = facts(lists=frozenset({"vip"}), stage="mql")
    assert check("lead.industry in settings.icp and lead.revenue >= 1000000", lead)
    assert check("in_list(vip) and in_stage(mql) and not in_stage(sql)", lead)


def test_days_since_is_missing_when_the_event_never_happened() -> None:
    assert not check("days_since(click) > 60", facts())
    assert check("days_since(click) > 60", facts(*clicks(1, days_ago=61)))


def test_date_arithmetic_on_attribute_dates() -> None:
    assert check("lead.renewal_date - 30d < now()", facts())
    assert not check("lead.renewal_date - 7d < now()", facts())


def test_events_can_be_filtered_by_their_properties() -> None:
    lead = facts(
        Event("purchase", ago(3), {"amount": 120_000}),
        Event("purchase", ago(4), {"amount": 10_000}),
    )
    assert check('count("purchase", within=30d, where=event.amount > 100000) == 1', lead)
    assert check('total("purchase", "amount") == 130000', lead)
    assert check('average("purchase", "amount") == 65000', lead)


def test_document_views_test_read_depth() -> None:
    lead = facts(Event("view", ago(1), {"document": "pricing", "depth": 62, "seconds": 95}))
    assert check('viewed("pricing", depth=50%)', lead)
    assert not check('viewed("pricing", depth=80%)', lead)
    assert not check('viewed("case-study")', lead)


@pytest.mark.parametrize(("value", "top20"), [(95.0, True), (80.0, False), (10.0, False)])
def test_population_relative_top_share(value: float, top20: bool) -> None:
    population = Population({"lead.aov": sorted(float(v) for v in range(1, 101))})
    lead = facts(attributes={"aov": value}, population=population)
    assert check("top(lead.aov, 20%)", lead) is top20


def test_rfm_scores_rank_leads_in_fifths() -> None:
    population = Population({"count(purchase)": [float(v) for v in range(10)]})
    best = facts(*[Event("purchase", ago(1)) for _ in range(9)], population=population)
    worst = facts(population=population)
    assert check('frequency_score("purchase") == 5', best)
    assert check('frequency_score("purchase") == 1', worst)


def test_missing_attributes_make_comparisons_false_not_errors() -> None:
    assert not check("lead.nope > 3", facts())
    assert check("lead.nope == null", facts())


def test_a_verdict_says_which_values_decided_it() -> None:
    verdict = holds(
        condition("count(click, within=30d) >= 3 and opened(hello)"),
        Context(facts(*clicks(4)), NOW, flow="f"),
    )
    assert verdict.value is False
    assert verdict.reason() == "count(click, within=30d) = 4; opened(hello) = false"


def test_evaluate_returns_plain_values_for_arithmetic() -> None:
    assert evaluate(condition("1 + 2 * 3 == 7"), Context(facts(), NOW)) is True
