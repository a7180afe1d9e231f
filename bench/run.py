"""Run every benchmark and print one table (`make bench`, or `python -m bench.run`).

The PostgreSQL rows (workers, event ingest) need the server of `FLOWBUILDER_TEST_POSTGRES_URL`
(127.0.0.1:5432 by default); without it they are left out and the table says why.
`python -m bench.run --quick` runs smaller sizes, for a look rather than a measure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.console import Console

from bench.table import Row, print_rows


def postgres_missing() -> str | None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from bench.fleet import POSTGRES

    try:
        engine = create_engine(POSTGRES, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except OperationalError as e:
        return f"PostgreSQL is not reachable at {POSTGRES}: {str(e.orig).strip()}"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="every flowbuilder benchmark, one table")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    args = parser.parse_args(argv)
    from bench import dsl, engine, fleet, ingest, intake, lsp, segments, send, web

    quick = args.quick
    console = Console(stderr=True)
    missing = postgres_missing()
    suites: list[tuple[str, Callable[[], list[Row]], bool]] = [
        ("DSL", dsl.rows, False),
        (
            "engine",
            lambda: engine.rows(20_000, 2_000, 2_000, 1) if quick else engine.rows(),
            False,
        ),
        (
            "lead rules",
            lambda: segments.rows(10_000, 200_000, 2_000) if quick else segments.rows(),
            False,
        ),
        ("sender", lambda: send.rows(500) if quick else send.rows(), False),
        ("lead import", lambda: intake.rows(50_000) if quick else intake.rows(), False),
        ("language server", lsp.rows, False),
        ("web", web.rows, False),
        ("workers", lambda: fleet.rows(10_000, 4, 1) if quick else fleet.rows(), True),
        ("event ingest", lambda: ingest.rows(5_000, rounds=1) if quick else ingest.rows(), True),
    ]
    rows: list[Row] = []
    for name, run, needs_postgres in suites:
        if needs_postgres and missing:
            console.print(f"[yellow]left out: {name} — {missing}[/]")
            continue
        console.print(f"[dim]measuring {name} …[/]")
        rows.extend(run())
    print_rows(rows, "flowbuilder benchmarks" + (" (quick)" if quick else ""))
    if missing:
        print(f"left out (no PostgreSQL): workers, event ingest — {missing}", file=sys.stderr)


if __name__ == "__main__":
    main()
