"""Run every benchmark and print one table (`make bench`, or `python -m bench.run`)."""

from __future__ import annotations

from bench import dsl, engine, intake, lsp, send, web
from bench.table import print_rows

if __name__ == "__main__":
    print_rows(
        [*dsl.rows(), *engine.rows(), *lsp.rows(), *send.rows(), *web.rows(), *intake.rows()],
        "flowbuilder benchmarks",
    )
