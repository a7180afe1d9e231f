"""Flow tests: every example flow is tested down every branch, and the coverage check finds the
branch a test file leaves out."""

from __future__ import annotations

from pathlib import Path

import dsl
from dsl.compile import compile_paths
from flowbuilder import flowtest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "acme"


def test_every_example_flow_has_cases_down_every_branch() -> None:
    compilation = compile_paths([EXAMPLES])
    assert compilation.workspace is not None
    ws = compilation.workspace
    outcomes = [
        flowtest.run_case(case, ws)
        for file in flowtest.find_test_files([EXAMPLES / "tests"])
        for case in flowtest.load(file)
    ]
    assert [o.case.name for o in outcomes if not o.passed] == []
    assert set(ws.flows) - {o.case.flow for o in outcomes} == set(), "flows without cases"
    assert flowtest.untested_edges(ws, ws.flows, outcomes) == {}


FLOW = """
template hello {
  subject "Hello"
}

flow f "F" {
  trigger event go
  ask: send hello
  answer: wait for clicked(ask) up to 3d {
    then -> yes
    timeout -> no
  }
  yes: end
  no: end
}
"""


def test_coverage_names_the_branch_no_case_takes(tmp_path: Path) -> None:
    ws = dsl.loads(FLOW)
    test_file = tmp_path / "f.test.toml"
    test_file.write_text(
        'flow = "f"\n\n[[case]]\nname = "silent"\nevents = [{ at = "0h", type = "go" }]\n'
        '[case.expect]\nsends = ["ask"]\n',
        encoding="utf-8",
    )
    outcomes = [flowtest.run_case(case, ws) for case in flowtest.load(test_file)]
    assert all(o.passed for o in outcomes)
    assert flowtest.untested_edges(ws, ["f"], outcomes) == {"f": [("answer", "yes")]}


def test_the_test_file_in_the_docs_loads_and_names_real_steps(tmp_path: Path) -> None:
    text = (EXAMPLES.parents[1] / "docs" / "testing.md").read_text(encoding="utf-8")
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    test_file = tmp_path / "doc.test.toml"
    test_file.write_text(block, encoding="utf-8")
    compilation = compile_paths([EXAMPLES])
    assert compilation.workspace is not None
    for case in flowtest.load(test_file):
        flowtest.check_references(case, compilation.workspace)
