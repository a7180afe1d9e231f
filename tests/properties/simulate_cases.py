"""Run the simulator over scenarios read as JSON from stdin and print every trace line: the
cross-process determinism test runs this under different hash seeds.

`python -m tests.properties.simulate_cases < cases.json`
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from tests.properties.scenarios import Scenario, Scripted, compiled


def dump(scenarios: list[Scenario]) -> str:
    return json.dumps(
        [
            {
                "text": s.text,
                "leads": s.leads,
                "events": [[e.lead, e.type, e.at.isoformat(), e.step] for e in s.events],
            }
            for s in scenarios
        ]
    )


def load(data: list[dict[str, Any]]) -> list[Scenario]:
    out = []
    for case in data:
        ws = compiled(case["text"])
        assert ws is not None
        events = tuple(
            Scripted(lead, type_, datetime.fromisoformat(at), step)
            for lead, type_, at, step in case["events"]
        )
        out.append(Scenario(case["text"], ws, case["leads"], events))
    return out


def traces(scenarios: list[Scenario]) -> list[str]:
    from flowbuilder.simulate import Lead, simulate
    from tests.properties.scenarios import DAYS, T0

    lines = []
    for n, s in enumerate(scenarios):
        leads = [Lead(str(i + 1), {"email": e}) for i, e in enumerate(s.emails())]
        events = [e.for_simulator(str(e.lead + 1)) for e in s.events]
        result = simulate(s.ws, leads, events, T0, DAYS)
        lines += [f"{n} {t.render()}" for t in result.trace]
    return lines


if __name__ == "__main__":
    sys.stdout.write("\n".join(traces(load(json.load(sys.stdin)))) + "\n")
