from typing import Any

def run(
    text: str,
    end: int,
    progress: list[Any],
    table: dict[int, Any],
    actions: dict[int, Any],
    token_callbacks: dict[str, Any],
    skip_newlines: bool,
    token_type: type,
    state_stack: list[int],
    value_stack: list[Any],
    made: list[Any] | None,
) -> int: ...
