"""Language-server speed (`python -m bench.lsp`) on a generated 1,000-step flow: what a keystroke
costs — the workspace analysis after an edit (parse, compile, lint, name index) against the
command line's parse + compile + lint of the same text, and a completion against a parse."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.flows import generated_flow
from bench.table import Row, best_of, print_rows
from dsl.compile import compile_text
from dsl.complete import complete
from dsl.lint import lint
from dsl.parse import parse_tree
from flowbuilder.lsp.session import Session

STEPS = 1000


def rows() -> list[Row]:
    text = generated_flow(STEPS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.flow"
        path.write_text(text, encoding="utf-8")
        session = Session(base=Path(folder))
        edits = iter(range(10_000))

        def keystroke() -> object:
            # Each edit is a new text (a comment grows), so nothing is served from the cache.
            session.set_text(path, text + "#" * next(edits) + "\n")
            return session.analyse(path)

        def cli() -> object:
            return lint(compile_text(text, "big.flow"))

        analysis = session.analyse(path)
        known = analysis.index.known()
        lines = text.rstrip("\n").split("\n")
        # Completion at the end of the last step: the longest prefix the parser has to read.
        last = len(lines) - 1
        column = len(lines[last - 1]) + 1

        def completion() -> object:
            return complete(text, last, column, known)

        def parse() -> object:
            return parse_tree(text, "big.flow")

        lint_time = best_of(cli)
        keystroke_time = best_of(keystroke)
        parse_time = best_of(parse)
        completion_time = best_of(completion)
    return [
        Row(
            f"lsp analysis after an edit, {STEPS} steps",
            keystroke_time,
            "parse + compile + lint",
            lint_time,
            "≤ 2×",
            keystroke_time / lint_time <= 2,
        ),
        Row(
            f"lsp completion at the end, {STEPS} steps",
            completion_time,
            f"parse, {STEPS} steps",
            parse_time,
            "≤ 2×",
            completion_time / parse_time <= 2,
        ),
    ]


if __name__ == "__main__":
    print_rows(rows(), "language server")
