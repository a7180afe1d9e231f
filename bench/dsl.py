"""DSL speed (`python -m bench.dsl`): parse + compile + lint and fmt of a generated 1,000-step flow, against loading its IR JSON."""

from __future__ import annotations

from bench.flows import generated_flow
from bench.table import Row, best_of, print_rows
from dsl import ir
from dsl.compile import compile_text
from dsl.fmt import format_text
from dsl.lint import lint

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


if __name__ == "__main__":
    print_rows(rows(), "DSL")
