"""What the interpreter knows about a lead: attributes, memberships and its append-only events.

The real runtime loads these from the store in bulk; the simulator builds them from scripted
timelines. Either way the interpreter only reads them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Event:
    """One fact: an open, a click, a reply, a form answer, a custom event posted by API …

    `flow` and `step` name the message the event refers to (an open of the `welcome` step's email);
    `properties` hold what came with it (the clicked link, a purchase amount, a document's read depth).
    """

    type: str
    at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    flow: str | None = None
    step: str | None = None
    machine: bool = False  # privacy-proxy or scanner opens/clicks, kept out of reactions


@dataclass(frozen=True)
class Population:
    """Population-relative thresholds, computed by the driver for `top()` / `bottom()` / RFM tests.

    `cutoffs[key]` is the sorted list of every lead's value for that measure (the key is the text of
    the measured expression, such as `average("purchase", "amount")`).
    """

    cutoffs: Mapping[str, Sequence[float]] = field(default_factory=dict)

    def share_at_or_above(self, key: str, value: float) -> float | None:
        """The share of leads (0–1) whose value is at least `value`; None when nothing is known."""
        values = self.cutoffs.get(key)
        if not values:
            return None
        below = bisect.bisect_left(values, value)
        return (len(values) - below) / len(values)

    def share_at_or_below(self, key: str, value: float) -> float | None:
        """The share of leads (0–1) whose value is at most `value`; None when nothing is known."""
        values = self.cutoffs.get(key)
        if not values:
            return None
        return bisect.bisect_right(values, value) / len(values)


@dataclass(frozen=True)
class LeadFacts:
    """A lead as the interpreter sees it at one moment."""

    lead_id: str
    attributes: Mapping[str, Any]
    events: Sequence[Event] = ()
    lists: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    stage: str | None = None
    score: float = 0.0
    tags: frozenset[str] = frozenset()
    timezone: str | None = None
    account: str | None = None
    unsubscribed: bool = False
    population: Population = field(default_factory=Population)

    def lead_value(self, name: str) -> Any:
        """`lead.<name>`: the built-in fields first, then the attributes."""
        match name:
            case "score":
                return self.score
            case "stage":
                return self.stage
            case "tags":
                return sorted(self.tags)
            case "timezone":
                return self.timezone
            case "account":
                return self.account
        return self.attributes.get(name)

    def matching(
        self,
        types: Iterable[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        flow: str | None = None,
        step: str | None = None,
        humans_only: bool = True,
    ) -> list[Event]:
        """Events of the given types in [since, until], optionally for one flow's step."""
        wanted = set(types)
        return [
            e
            for e in self.events
            if e.type in wanted
            and (since is None or e.at >= since)
            and (until is None or e.at <= until)
            and (step is None or (e.step == step and (flow is None or e.flow == flow)))
            and not (humans_only and e.machine)
        ]


def window_start(now: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else now - timedelta(seconds=seconds)
