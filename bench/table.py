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
    """One measure against its reference. Time rows compare durations (ratio = time / reference,
    lower is better); speed rows compare rates of the same work per item (`per` names the item;
    ratio = reference time per item / time per item, higher is better); speed-up rows
    (`speedup=True`) compare two durations where the reference is the slow way (ratio =
    reference / time, higher is better)."""

    measure: str
    seconds: float
    reference: str
    reference_seconds: float
    goal: str
    met: bool
    per: str | None = None
    speedup: bool = False

    @property
    def ratio(self) -> float:
        if self.per is not None or self.speedup:
            return self.reference_seconds / self.seconds
        return self.seconds / self.reference_seconds

    def shown(self, seconds: float) -> str:
        if self.per is not None:
            return f"{1 / seconds:,.0f} {self.per}/s"
        return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


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
    for column in (
        "measure",
        "time or rate",
        "reference",
        "ref. time or rate",
        "ratio",
        "goal",
        "met",
    ):
        table.add_column(
            column, justify="right" if "time" in column or column == "ratio" else "left"
        )
    for r in rows:
        table.add_row(
            r.measure,
            r.shown(r.seconds),
            r.reference,
            r.shown(r.reference_seconds),
            f"{r.ratio:.2f}×" if r.ratio < 1 else f"{r.ratio:.1f}×",  # 0.75× is not 0.8×
            r.goal,
            "[green]yes[/]" if r.met else "[red]no[/]",
        )
    console = Console()
    if not console.is_terminal:  # piped into a log or a file: room for the whole table
        console = Console(width=160)
    console.print(table)
