from __future__ import annotations

import dsl
from dsl.graph import mermaid

FLOW = """\
template t {
  subject "Hi"
}
flow welcome "Welcome series" {
  trigger event signed_up
  exit when replied()
  hello: send t
  wait_click: wait for clicked(hello) up to 7d {
    timeout -> done
  }
  check: branch {
    if clicked(hello, link="pricing") -> done
    else -> done
  }
  ab: split {
    90% -> done
    holdout 10%
  }
  done: end
}
"""


def test_the_mermaid_chart_has_a_node_per_step_and_labelled_ports() -> None:
    chart = mermaid(dsl.loads(FLOW).flows["welcome"])
    assert chart.startswith("flowchart TD\n")
    for step in ("hello", "wait_click", "check", "ab", "done"):
        assert f"  s_{step}" in chart
    assert 's_wait_click -- "timeout 7d" --> s_done' in chart
    assert 's_check -- "clicked(hello, link=#quot;pricing#quot;)" --> s_done' in chart
    assert 's_check -- "else" --> s_done' in chart
    assert 's_ab -. "holdout 10%" .-> exit_ab(((exit)))' in chart
    assert 't0>"trigger event signed_up"] --> start' in chart
    assert 'exits["exit when replied()"]' in chart
