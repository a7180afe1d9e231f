"""Generated flows of any size, for benchmarks."""

from __future__ import annotations


def generated_flow(steps: int) -> str:
    """A lint-clean flow of about `steps` steps: send / wait pairs with a branch every tenth step."""
    lines = [
        "template mail {",
        "  subject \"Hello {{ first_name | default('there') }}\"",
        "}",
        "",
        'flow big "Generated" {',
        "  trigger event signed_up",
        "  frequency cap 1000 per 1d",
        "",
    ]
    i = 0
    while i < steps - 1:
        if i % 10 == 8:
            lines += [
                f"  s{i}: branch {{",
                f"    if opened(s{i - 8}) and count(click, within=30d) >= 3 -> s{i + 1}",
                f"    else -> s{i + 1}",
                "  }",
            ]
        elif i % 2 == 0:
            lines.append(f"  s{i}: send mail  # touch {i}")
        else:
            lines.append(f"  s{i}: wait 1d")
        i += 1
    lines += [f"  s{i}: end", "}", ""]
    return "\n".join(lines)
