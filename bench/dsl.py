"""DSL speed (`python -m bench.dsl`): parse + compile + lint and fmt of a generated 1,000-step flow, against loading its IR JSON.

`python -m bench.dsl --parts` prints where the full path's time goes, stage by stage (process
time, medians, the collector paused as the tools pause it).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from bench.flows import generated_flow
from bench.table import Row, best_of, print_rows
from dsl import ir
from dsl.build import Builder
from dsl.collector import collector_paused
from dsl.compile import compile_files, compile_text
from dsl.fmt import format_text
from dsl.lalr import FusedParser, compiled_run
from dsl.lint import lint
from dsl.parse import _scan, parse_tree, parser

STEPS = 1000


def rows() -> list[Row]:
    text = generated_flow(STEPS)
    compilation = compile_text(text, "big.flow")
    assert compilation.ok and compilation.workspace is not None, compilation.diagnostics
    assert not lint(compilation), lint(compilation)
    ir_json = compilation.workspace.model_dump_json()

    def load_ir() -> object:
        return ir.Workspace.model_validate_json(ir_json)

    def full() -> object:
        return lint(compile_text(text, "big.flow"))

    def fmt() -> object:
        return format_text(text, "big.flow")

    reference = best_of(load_ir, repeat=7)
    compile_time = best_of(full)
    fmt_time = best_of(fmt)
    name = f"IR JSON load ({STEPS} steps)"
    return [
        Row(
            f"parse + compile + lint, {STEPS} steps",
            compile_time,
            name,
            reference,
            "≤ 10×",
            compile_time / reference <= 10,
        ),
        Row(f"fmt, {STEPS} steps", fmt_time, name, reference, "≤ 10×", fmt_time / reference <= 10),
    ]


def _cpu_ms(fn: Callable[[], object], repeat: int = 31) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def parts() -> list[tuple[str, float]]:
    """Each stage of the full path on the benchmark's flow, in ms of process time."""
    text = generated_flow(STEPS)
    compilation = compile_text(text, "big.flow")
    assert compilation.workspace is not None
    ir_json = compilation.workspace.model_dump_json()
    parsed = parse_tree(text, "big.flow")
    assert parsed.tree is not None
    tree = parsed.tree
    lark = parser()
    out = [
        (
            "IR JSON load (the reference)",
            _cpu_ms(lambda: ir.Workspace.model_validate_json(ir_json)),
        ),
        (
            "full path: parse + compile + lint",
            _cpu_ms(lambda: lint(compile_text(text, "big.flow"))),
        ),
    ]
    with collector_paused():
        out += [
            ("  scan (comments, braces)", _cpu_ms(lambda: _scan(text, "big.flow"))),
            ("  parse, trees built", _cpu_ms(lambda: lark.parse(text))),
            ("  build the IR", _cpu_ms(lambda: Builder("big.flow").build(tree))),
            ("  compile (build + checks)", _cpu_ms(lambda: compile_files([parsed]))),
            ("  lint", _cpu_ms(lambda: lint(compilation))),
        ]
        if compiled_run is not None:
            FusedParser.compiled_loop = False
            try:
                out.append(("  parse with the Python loop", _cpu_ms(lambda: lark.parse(text))))
            finally:
                FusedParser.compiled_loop = True
    return out


if __name__ == "__main__":
    if "--parts" in sys.argv[1:]:
        for name, ms in parts():
            print(f"{name:<40} {ms:7.2f} ms")
    else:
        print_rows(rows(), "DSL")
