"""Lead rules: stages, scoring, rule-fed lists and segments, with their reasons and timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dsl
from dsl import ir
from flowbuilder.engine.facts import Event, LeadFacts
from flowbuilder.engine.rules import (
    SCORE,
    STAGES,
    RuleSet,
    next_check,
    population_measures,
    reads,
    reevaluate,
    score_of,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

WORKSPACE = """
settings {
  click_threshold = 3
  icp = ["saas", "fintech"]
}

stages {
  stage sql "Sales-qualified" when lead.industry in settings.icp or count(click) >= settings.click_threshold
  stage mql "Marketing-qualified" when opened() and not clicked()
  stage lead "New"
}

scoring {
  fit +20 when lead.industry in settings.icp
  engagement +3 per click within 30d
  decay 50% every 10d
}

list repeat_clickers "Clicked repeatedly" {
  add when count(click, within=30d) >= settings.click_threshold
  remove when count(click, within=30d) == 0
}

list handpicked "Added by hand"

segment engaged "Opened in the last 7 days" where occurred(open, within=7d)
segment hot "Engaged and scored" where in_segment(engaged) and lead.score >= 20
segment big_spenders "Top 20% by total purchases" where top(total("purchase", "amount"), 20%)
"""


def rules() -> RuleSet:
    ws = dsl.loads(WORKSPACE)
    assert isinstance(ws, ir.Workspace)
    return RuleSet.of(ws)


def lead(*events: Event, **fields: object) -> LeadFacts:
    return LeadFacts(
        lead_id="1", attributes=dict(fields.pop("attributes", {})), events=events, **fields
    )  # type: ignore[arg-type]


def clicks(*days: float) -> list[Event]:
    return [Event("click", T0 + timedelta(days=d)) for d in days]


def test_a_condition_reads_its_event_types_windows_and_memberships() -> None:
    ws = rules().ws
    r = reads(ws.lists["repeat_clickers"].add_when[0])
    assert r.events == {"click"} and r.windows == {("click", 30 * 86400)}
    assert reads(ws.segments["hot"].condition).memberships == {"segment:engaged", "score"}
    assert reads(ws.stages[0].condition).attributes == {"industry"}


def test_a_new_lead_takes_the_first_stage_without_a_rule() -> None:
    facts, changes = reevaluate(rules(), lead(), T0)
    assert facts.stage == "lead"
    assert [(c.what, c.name, c.before) for c in changes] == [("stage.changed", "lead", None)]
    assert changes[0].reason == "stage lead: the first stage without a rule"


def test_a_lead_reaching_the_click_threshold_becomes_sql_with_the_values_that_decided() -> None:
    facts, changes = reevaluate(rules(), lead(*clicks(0, 1, 2), stage="mql"), T0 + 3 * DAY)
    assert facts.stage == "sql"
    stage = next(c for c in changes if c.what == "stage.changed")
    assert stage.before == "mql"
    assert "count(click) = 3" in stage.reason


def test_rules_never_lower_a_stage_but_keep_one_they_do_not_know() -> None:
    facts, changes = reevaluate(rules(), lead(stage="sql"), T0, only=[STAGES])
    assert facts.stage == "sql" and changes == []
    facts, _ = reevaluate(rules(), lead(stage="customer"), T0, only=[STAGES])
    assert facts.stage == "customer"


def test_a_rule_fed_list_fills_and_empties_as_clicks_age_out() -> None:
    r = rules()
    facts, changes = reevaluate(r, lead(*clicks(0, 1, 2)), T0 + 2 * DAY)
    assert "repeat_clickers" in facts.lists
    assert any(
        c.what == "list.entered" and "count(click, within=30d) = 3" in c.reason for c in changes
    )
    # Decay (every 10 days) and the window (30 days) are when the rules look again.
    assert next_check(r, facts, T0 + 2 * DAY) == T0 + 10 * DAY
    assert next_check(r, facts, T0 + 29 * DAY) == T0 + 30 * DAY  # the first click leaves
    facts, changes = reevaluate(r, facts, T0 + 33 * DAY)
    assert "repeat_clickers" not in facts.lists
    assert [c.what for c in changes if c.name == "repeat_clickers"] == ["list.left"]


def test_a_hand_picked_list_has_no_rules_to_undo_it() -> None:
    facts, _ = reevaluate(rules(), lead(lists=frozenset({"handpicked"})), T0)
    assert "handpicked" in facts.lists


def test_segments_follow_their_condition_and_each_other() -> None:
    r = rules()
    opened = Event("open", T0)
    facts, changes = reevaluate(r, lead(opened, attributes={"industry": "saas"}), T0)
    assert facts.segments >= {"engaged", "hot"}  # hot reads engaged and the score, found in turn
    entered = {c.name: c.reason for c in changes if c.what == "segment.entered"}
    assert "occurred(open, within=7d) = true" in entered["engaged"]
    facts, changes = reevaluate(r, facts, T0 + 8 * DAY)
    assert {c.name for c in changes if c.what == "segment.left"} == {"engaged", "hot"}


def test_the_score_adds_fit_and_decayed_engagement_and_what_flows_added() -> None:
    ws = rules().ws
    facts = lead(
        *clicks(0, 9),
        Event("score.adjusted", T0, {"delta": 10}),
        attributes={"industry": "fintech"},
    )
    # fit 20; clicks 3 × 0.5 (one period old) + 3; the flow's 10 also fades by half
    assert score_of(ws, facts, T0 + 10 * DAY) == 20 + 1.5 + 3 + 5
    assert next_check(rules(), facts, T0 + 10 * DAY) == T0 + 19 * DAY  # the second click decays


def test_an_event_touches_only_the_rules_that_read_it() -> None:
    r = rules()
    assert r.affected_by([Event("click", T0)]) == {STAGES, SCORE, ("list", "repeat_clickers")}
    assert r.affected_by([Event("segment.entered", T0, {"segment": "engaged"})]) == {
        ("segment", "hot")
    }
    assert r.affected_by([Event("purchase", T0)]) == {("segment", "big_spenders")}
    assert r.affected_by([Event("meeting_booked", T0)]) == set()


def test_what_a_flow_writes_re_checks_the_rules_that_read_it() -> None:
    r = rules()
    # A flow's `update lead.score` writes the new score with its `score.adjusted` event, so the
    # score rule finds nothing to change: the rules that read `lead.score` are re-checked anyway.
    adjusted = Event("score.adjusted", T0, {"delta": 20})
    assert r.affected_by([adjusted]) == {SCORE, ("segment", "hot")}
    flowed = lead(adjusted, Event("open", T0), score=20.0, segments=frozenset({"engaged"}))
    facts, changes = reevaluate(r, flowed, T0, r.affected_by([adjusted]))
    assert "hot" in facts.segments
    assert [(c.what, c.name) for c in changes] == [("segment.entered", "hot")]
    # A stage a flow set: the stage rules move the lead up from it, as a full recompute does.
    stage_set = Event("stage.changed", T0, {"stage": "lead", "from": "mql"})
    assert r.affected_by([stage_set]) == {STAGES}
    facts, _ = reevaluate(
        r, lead(*clicks(0, 1, 2), stage="lead"), T0 + 3 * DAY, r.affected_by([stage_set])
    )
    assert facts.stage == "sql"
    # A flow put the lead on a rule-fed list (or took it off): the list's own rules win at once.
    flow_added = Event("list.entered", T0, {"list": "repeat_clickers"})
    assert r.affected_by([flow_added]) == {("list", "repeat_clickers")}
    facts, changes = reevaluate(
        r, lead(lists=frozenset({"repeat_clickers"})), T0, r.affected_by([flow_added])
    )
    assert "repeat_clickers" not in facts.lists
    assert [(c.what, c.name) for c in changes] == [("list.left", "repeat_clickers")]
    assert r.affected_by([Event("list.left", T0, {"list": "repeat_clickers"})]) == {
        ("list", "repeat_clickers")
    }
    # The rules' own change (it has their reason) does not ask them again; a manual list has none.
    ruled = Event("list.entered", T0, {"list": "repeat_clickers", "reason": "list …"})
    assert r.affected_by([ruled]) == set()
    assert r.affected_by([Event("list.entered", T0, {"list": "handpicked"})]) == set()


def test_population_measures_are_named_as_the_evaluator_looks_them_up() -> None:
    assert list(population_measures(rules().ws)) == ['total(purchase, "amount")']


def test_a_re_check_reaches_the_rules_that_read_what_it_may_change() -> None:
    r = rules()
    engaged, hot = ("segment", "engaged"), ("segment", "hot")
    assert r.reached_from([engaged]) == {engaged, hot}  # hot reads the engaged membership
    assert r.reached_from([SCORE]) == {SCORE, hot}  # and the score
    assert r.reached_from([("list", "repeat_clickers")]) == {("list", "repeat_clickers")}


def test_the_history_a_re_check_reads_is_its_rules_windows_and_the_stages_above() -> None:
    r = rules()
    days = 86400
    # Stages only move up: a lead at mql is only tried for sql, one at sql for nothing.
    assert r.history_read([STAGES], None) == {"click": None, "open": None}
    assert r.history_read([STAGES], "mql") == {"click": None}
    assert r.history_read([STAGES], "sql") == {}
    assert r.history_read([STAGES], "customer") == {}  # a stage set by hand: the rules leave it
    # The score reads clicks of 30 days and every point a flow gave (they decay, never leave).
    assert r.history_read([SCORE, ("segment", "engaged")], "sql") == {
        "click": 30 * days,
        "score.adjusted": None,
        "open": 7 * days,
    }
    assert r.history_read([SCORE, STAGES], "mql") == {"click": None, "score.adjusted": None}
    assert r.history_read([("segment", "big_spenders")], None) == {"purchase": None}
    assert r.soonest == timedelta(days=7)  # the engaged window, shorter than a decay period


def test_an_event_dated_ahead_is_looked_at_when_it_starts_to_count() -> None:
    r = rules()
    facts = lead(*clicks(5), stage="sql")
    assert next_check(r, facts, T0) == T0 + 5 * DAY  # its points start to count (and decay)
    assert next_check(r, facts, T0 + 5 * DAY) == T0 + 15 * DAY
