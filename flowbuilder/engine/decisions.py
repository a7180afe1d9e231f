"""Enrollment state and the decisions the interpreter returns; plain data, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Status = Literal["active", "completed", "exited", "moved"]


@dataclass(frozen=True)
class Enrollment:
    """A lead's place in one flow: the step it is at, since when, and until when it waits.

    `context` keeps what must stay stable for the whole enrollment: the split path and send variant
    drawn, the goals reached and how often each step was visited (for send idempotency keys).
    """

    lead_id: str
    flow: str
    step: str | None
    entered_at: datetime
    step_entered_at: datetime
    status: Status = "active"
    due_at: datetime | None = None
    waiting_for_facts: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """Something the lead's enrollment does; `reason` says why, with the values that decided it."""

    step: str | None
    reason: str


@dataclass(frozen=True)
class SendEmail(Decision):
    template: str
    key: str
    variant: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None


@dataclass(frozen=True)
class UpdateLead(Decision):
    attribute: str
    op: str
    value: Any


@dataclass(frozen=True)
class ChangeList(Decision):
    list: str
    add: bool


@dataclass(frozen=True)
class CallWebhook(Decision):
    url: str
    key: str


@dataclass(frozen=True)
class ReachGoal(Decision):
    goal: str


@dataclass(frozen=True)
class Suppress(Decision):
    """The lead's address goes on the suppression list; `why` is what the list records."""

    why: str


@dataclass(frozen=True)
class MoveToFlow(Decision):
    flow: str


@dataclass(frozen=True)
class Advance(Decision):
    """The lead moved from `step` to `to` at `at` (the logical time of the move)."""

    to: str
    at: datetime


@dataclass(frozen=True)
class Hold(Decision):
    """The lead stays at `step` until `until` (None: until a fact wakes it)."""

    until: datetime | None


@dataclass(frozen=True)
class Leave(Decision):
    """The enrollment ends: completed, exited by a rule or the holdout, or moved to another flow."""

    status: Status
