from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dsl
from flowbuilder.engine.facts import Event
from flowbuilder.simulate import Lead, Reaction, simulate

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
FLOWS = """\
template hello {
  subject "Hello"
}
template sales_intro {
  subject "Let's talk"
}
stages {
  stage sql when replied()
  stage mql
}

flow nurture "Nurture" {
  trigger event signed_up
  exit when in_stage(sql)
  hello: send hello
  watch: wait for count(click) >= 3 up to 30d {
    timeout -> done
  }
  promote: update lead.stage = "sql"
  done: end
}

flow sales "Sales follow-up" {
  trigger entered stage sql
  exit when occurred("meeting_booked")
  intro: send sales_intro
  done: end
}
"""


def run(reactions: list[Reaction], days: int = 40) -> list[str]:
    ws = dsl.loads(FLOWS)
    leads = [Lead("a", timezone="UTC"), Lead("b", timezone="UTC")]
    events = [(lead.id, Event("signed_up", T0)) for lead in leads]
    result = simulate(ws, leads, events, T0, days, reactions)
    return [t.render() for t in result.trace]


def test_a_lead_promoted_at_the_click_threshold_moves_to_the_sales_flow() -> None:
    clicks = [Reaction("a", "hello", "click", timedelta(hours=h)) for h in (1, 2, 3)]
    trace = run(clicks)
    joined = "\n".join(trace)
    assert "a          nurture.promote                  update    lead.stage = 'sql'" in joined
    assert (
        "a          sales.intro                      enter     trigger entered stage sql" in joined
    )
    assert "a          sales.intro                      send      send sales_intro" in joined
    assert "b          sales" not in joined


def test_the_same_inputs_give_the_same_trace_byte_for_byte() -> None:
    clicks = [Reaction("a", "hello", "click", timedelta(hours=h)) for h in (1, 2, 3)]
    assert run(clicks) == run(clicks)


def test_the_example_cold_sequence_stops_on_reply() -> None:
    ws = dsl.load(Path(__file__).resolve().parents[2] / "examples" / "acme")
    leads = [
        Lead("kim", {"first_name": "Kim"}, "Asia/Seoul"),
        Lead("lee", {"first_name": "Lee"}, "Asia/Seoul"),
    ]
    events = [(lead.id, Event("list.entered", T0, {"list": "cold_prospects_kr"})) for lead in leads]
    result = simulate(
        ws, leads, events, T0, 60, [Reaction("kim", "value", "reply", timedelta(hours=5))]
    )
    sends = {(t.lead, t.step) for t in result.sends()}
    assert ("kim", "value") in sends and ("kim", "proof") not in sends
    assert {("lee", s) for s in ("interest", "value", "proof", "last_call")} <= sends
    exit_line = next(t for t in result.trace if t.lead == "kim" and t.what == "exit")
    assert exit_line.reason == "exit when replied(): replied() = true"


def test_a_run_pauses_the_cyclic_collector_and_gives_it_back_as_it_found_it() -> None:
    import gc

    from flowbuilder.simulate import Simulation

    states: list[bool] = []

    class Watched(Simulation):
        def _run(self, until: datetime) -> object:  # type: ignore[override]
            states.append(gc.isenabled())
            return super()._run(until)

    ws = dsl.loads(FLOWS)
    leads = [Lead("a", timezone="UTC")]
    assert gc.isenabled()
    Watched(ws, leads, T0).run(T0 + timedelta(days=1))
    assert states == [False] and gc.isenabled()
    gc.disable()
    try:
        Watched(ws, leads, T0).run(T0 + timedelta(days=1))
        assert not gc.isenabled()  # turned off by someone else: left off
    finally:
        gc.enable()
