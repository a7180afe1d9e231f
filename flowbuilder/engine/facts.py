"""What the interpreter knows about a lead: attributes, memberships and its append-only events.

The real runtime loads these from the store in bulk; the simulator builds them from scripted
timelines. Either way the interpreter only reads them.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

# Event types the engine records as it moves leads (beside the email, form and document events
# of `dsl.functions.BUILTIN_EVENTS`).
ENGINE_EVENTS = frozenset(
    {
        "send",
        "goal.reached",
        "flow.moved",
        "stage.changed",
        "list.entered",
        "list.left",
        "suppressed",
        "segment.entered",
        "segment.left",
    }
)


class Event(NamedTuple):
    """One fact: an open, a click, a reply, a form answer, a custom event posted by API …

    `flow` and `step` name the message the event refers to (an open of the `welcome` step's email);
    `properties` hold what came with it (the clicked link, a purchase amount, a document's read depth).
    A tuple: a lead's history is thousands of them, built and read on every decision.
    """

    type: str
    at: datetime
    properties: Mapping[str, Any] = MappingProxyType({})
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
    # Events of the other leads of the same account, of the types an account-wide exit reads
    # (`exit when occurred("meeting_booked") for account`).
    account_events: Sequence[Event] = ()
    unsubscribed: bool = False
    suppressed: bool = False  # on the suppression list: hard bounce, complaint, `suppress` step
    population: Population = Population()  # immutable, so one shared default serves

    def with_event(self, event: Event) -> LeadFacts:
        """The lead with one more event (the drivers add each fact as it happens)."""
        new = object.__new__(LeadFacts)
        new.__dict__.update(self.__dict__)
        new.__dict__["events"] = (*self.events, event)
        index = self.__dict__.get("_by_type")
        if index is not None:
            index = dict(index)
            index[event.type] = (*index.get(event.type, ()), event)
            new.__dict__["_by_type"] = index
        return new

    def for_account(self) -> LeadFacts:
        """The lead as its whole account: its own events and its colleagues', in time order."""
        if not self.account_events:
            return self
        merged = sorted([*self.events, *self.account_events], key=lambda e: e.at)
        return dataclasses.replace(self, events=tuple(merged), account_events=())

    def of_type(self, type_: str) -> Sequence[Event]:
        """The lead's events of one type, in order (indexed on first use)."""
        index: dict[str, tuple[Event, ...]] | None = self.__dict__.get("_by_type")
        if index is None:
            grouped: dict[str, list[Event]] = {}
            for e in self.events:
                grouped.setdefault(e.type, []).append(e)
            index = {t: tuple(es) for t, es in grouped.items()}
            self.__dict__["_by_type"] = index  # a cache of `events`, which never changes
        return index.get(type_, ())

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
        """Events of the given types in (since, until], optionally for one flow's step.

        A window is open at its far end: an event exactly 30 days old is no longer "within 30d",
        so the moment it ages out is the moment the answer changes."""
        candidates: Iterable[Event]
        if isinstance(types, list | tuple) and len(types) == 1:
            # The common case (one type, asked at every decision): most leads have none of it.
            candidates = self.of_type(types[0])
            if not candidates:
                return []
        else:
            wanted = set(types)
            if len(wanted) == 1:
                candidates = self.of_type(next(iter(wanted)))
            else:
                candidates = (e for e in self.events if e.type in wanted)
        return [
            e
            for e in candidates
            if (since is None or e.at > since)
            and (until is None or e.at <= until)
            and (step is None or (e.step == step and (flow is None or e.flow == flow)))
            and not (humans_only and e.machine)
        ]


_FACT_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(LeadFacts) if f.default is not dataclasses.MISSING
}


def lead_facts(**values: Any) -> LeadFacts:
    """`LeadFacts(**values)` without the frozen dataclass's per-field `__init__`: the runtime builds
    thousands per batch. Every field without a default must be given."""
    facts = object.__new__(LeadFacts)
    facts.__dict__.update(_FACT_DEFAULTS)
    facts.__dict__.update(values)
    return facts


def window_start(now: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else now - timedelta(seconds=seconds)


def updated(facts: LeadFacts, attribute: str, op: str, value: Any) -> LeadFacts:
    """The lead after an `update` step: `value` is the score delta, the stage, the tag, or an
    attribute's new value (arithmetic on attributes is already resolved by the interpreter)."""
    name = attribute.removeprefix("lead.")
    match name:
        case "score":
            delta = float(value or 0)
            score = delta if op == "=" else facts.score + (delta if op == "+=" else -delta)
            return dataclasses.replace(facts, score=score)
        case "stage":
            return dataclasses.replace(facts, stage=value)
        case "tags":
            tags = facts.tags | {str(value)} if op == "+=" else facts.tags - {str(value)}
            return dataclasses.replace(facts, tags=frozenset(tags))
    return dataclasses.replace(facts, attributes={**facts.attributes, name: value})
