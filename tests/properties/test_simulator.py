"""Random flows × random event timelines: the interpreter never crashes, and the simulator gives
the same trace every time — in one process and across processes with different hash seeds (where
the iteration order of sets and dicts of strings changes)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbuilder.engine.decide import decide
from flowbuilder.engine.decisions import Enrollment
from flowbuilder.engine.facts import Event, lead_facts
from flowbuilder.simulate import Lead, simulate
from tests.properties.scenarios import DAYS, T0, Scenario, scenarios
from tests.properties.simulate_cases import dump, traces

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTES = st.dictionaries(
    st.sampled_from(["first_name", "industry", "plan", "score", "renewal_date", "x"]),
    st.one_of(st.none(), st.integers(-5, 50), st.text(max_size=8), st.booleans(), st.floats()),
    max_size=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(max_leads=5, max_events=25),
    attributes=st.lists(ATTRIBUTES, min_size=5, max_size=5),
    properties=st.dictionaries(st.sampled_from(["url", "amount", "link"]), st.text(max_size=6)),
)
def test_the_interpreter_never_crashes_on_random_flows_and_timelines(
    scenario: Scenario, attributes: list[dict[str, object]], properties: dict[str, object]
) -> None:
    leads = [
        Lead(str(n + 1), {"email": email, **attributes[n]})
        for n, email in enumerate(scenario.emails())
    ]
    events = [
        (lead, Event(event.type, event.at, properties, flow=event.flow, step=event.step))
        for lead, event in (e.for_simulator(str(e.lead + 1)) for e in scenario.events)
    ]
    result = simulate(scenario.ws, leads, events, T0, DAYS)
    assert all(t.reason for t in result.trace), "every decision says why"
    # And each enrollment the simulator left behind can be decided again at any later moment.
    for (lead, flow), history in result.enrollments.items():
        for enrollment in history:
            facts = lead_facts(lead_id=lead, attributes=dict(attributes[int(lead) - 1]))
            later = T0 + timedelta(days=DAYS, hours=int(lead))
            if isinstance(enrollment, Enrollment) and enrollment.status == "active":
                decide(scenario.ws.flows[flow], enrollment, facts, later, policy=scenario.ws.policy)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_leads=4, max_events=15))
def test_the_simulator_gives_the_same_trace_every_time(scenario: Scenario) -> None:
    assert traces([scenario]) == traces([scenario])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(scenarios(max_leads=4, max_events=15), min_size=8, max_size=8))
def test_the_simulator_gives_the_same_trace_under_any_hash_seed(cases: list[Scenario]) -> None:
    here = traces(cases)
    for seed in ("1", "4242"):
        ran = subprocess.run(
            [sys.executable, "-m", "tests.properties.simulate_cases"],
            input=dump(cases),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=300,
            check=True,
        )
        assert ran.stdout.splitlines() == here, f"PYTHONHASHSEED={seed} changed the trace"
