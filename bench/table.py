"""Measuring and printing benchmark rows: a measure, its reference from the same run, ratio, goal."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    measure: str
    seconds: float
    reference: str
    reference_seconds: float
    goal: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference_seconds


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """The median of `repeat` timed runs after one warm-up run, in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_rows(rows: list[Row], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("measure", "time", "reference", "ref. time", "ratio", "goal", "met"):
        table.add_column(
            column, justify="right" if column in ("time", "ref. time", "ratio") else "left"
        )
    for r in rows:
        table.add_row(
            r.measure,
            f"{r.seconds * 1000:.1f} ms",
            r.reference,
            f"{r.reference_seconds * 1000:.2f} ms",
            f"{r.ratio:.1f}×",
            r.goal,
            "[green]yes[/]" if r.met else "[red]no[/]",
        )
    Console().print(table)
