"""pytest collects flow tests: each case of every `*.test.toml` is a test item of its own.

Registered as a pytest plugin (entry point `pytest11`), so any project with flowbuilder installed
gets its flow tests run by plain `pytest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

from dsl import ir
from dsl.compile import compile_paths
from flowbuilder import flowtest
from flowbuilder.scenario import ScenarioError


@lru_cache(maxsize=8)
def _workspace(folder: Path) -> ir.Workspace:
    compilation = compile_paths([folder])
    if not compilation.ok or compilation.workspace is None:
        problems = "; ".join(
            f"{d.path}:{d.span.line}: {d.message}" for d in compilation.diagnostics
        )
        raise ScenarioError(str(folder), f"the workspace does not compile: {problems}")
    return compilation.workspace


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(".test.toml"):
        return FlowTestFile.from_parent(parent, path=file_path)
    return None


class FlowTestFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        for case in flowtest.load(self.path):
            yield FlowTestItem.from_parent(self, name=case.name, case=case)


class FlowTestItem(pytest.Item):
    def __init__(self, *, case: flowtest.Case, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.case = case

    def runtest(self) -> None:
        outcome = flowtest.run_case(self.case, _workspace(flowtest.workspace_for(self.path)))
        if not outcome.passed:
            raise FlowTestFailure(outcome)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: object = None
    ) -> str:
        if isinstance(excinfo.value, FlowTestFailure):
            return excinfo.value.report()
        if isinstance(excinfo.value, ScenarioError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"flow test: {self.case.name}"


class FlowTestFailure(Exception):
    def __init__(self, outcome: flowtest.Outcome) -> None:
        super().__init__(outcome.case.name)
        self.outcome = outcome

    def report(self) -> str:
        case = self.outcome.case
        lines = [
            f"{case.where}: {case.name}",
            *(f"  {p}" for p in self.outcome.problems),
            "  trace:",
        ]
        lines += [f"    {t.render()}" for t in self.outcome.trace]
        return "\n".join(lines)
