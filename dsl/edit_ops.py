"""The semantic edit operations the canvas and the language server send, as pydantic models.

Each operation names its flow; `op` tells them apart in JSON:

>>> parse_op({"op": "rename_step", "flow": "welcome", "old": "hello", "new": "greet"})
RenameStep(flow='welcome', op='rename_step', old='hello', new='greet')

Ports name the exits of a step: `None` for the single exit of a one-exit step; `then` and
`timeout` for `wait for`; `arm:N` for the N-th conditional arm of a branch (0-based, `if` and
`else if` arms in order) and `else` for its else arm; `path:N` for the N-th path of a split.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: str


class AddStep(_Op):
    """Add `name: action` after the step `after` (before the first step when `after` is None)."""

    op: Literal["add_step"] = "add_step"
    name: str
    action: str
    after: str | None = None


class Connect(_Op):
    """Point a port of a step at `target`; a None target removes an optional edge (fall through)."""

    op: Literal["connect"] = "connect"
    step: str
    port: str | None = None
    target: str | None = None


class SetProperty(_Op):
    """Set a property of a step; `value` is written in the language (`"Hello"`, `3d`)."""

    op: Literal["set_property"] = "set_property"
    step: str
    key: str
    value: str


class DeleteStep(_Op):
    """Delete a step; edges to it move to the step it leads to."""

    op: Literal["delete_step"] = "delete_step"
    step: str


class RenameStep(_Op):
    """Rename a step and every reference to it."""

    op: Literal["rename_step"] = "rename_step"
    old: str
    new: str


class MoveStep(_Op):
    """Place a step on the canvas (the flow's `layout` block)."""

    op: Literal["move_step"] = "move_step"
    step: str
    x: int
    y: int


class AddArm(_Op):
    """Add an arm to a branch: `if condition -> target`, or `else -> target` when no condition."""

    op: Literal["add_arm"] = "add_arm"
    step: str
    condition: str | None = None
    target: str
    index: int | None = None


class RemoveArm(_Op):
    """Remove an arm of a branch (`arm:N`, `else`), a path of a split (`path:N`, `holdout`) or an
    arm of a `wait for` (`then`, `timeout`)."""

    op: Literal["remove_arm"] = "remove_arm"
    step: str
    port: str


EditOp = Annotated[
    AddStep | Connect | SetProperty | DeleteStep | RenameStep | MoveStep | AddArm | RemoveArm,
    Field(discriminator="op"),
]

_ADAPTER: TypeAdapter[EditOp] = TypeAdapter(EditOp)


def parse_op(data: Any) -> EditOp:
    """An operation from its JSON form (a dict); raises pydantic's ValidationError when malformed."""
    return _ADAPTER.validate_python(data)


class EditResult(BaseModel):
    """The edited text and its revision, to send with the next edit."""

    model_config = ConfigDict(frozen=True)

    text: str
    revision: str
