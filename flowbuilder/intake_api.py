"""The event API's payloads, compatible with Segment's `identify`, `track` and `batch` calls.

A lead is named by email: `traits.email`, `context.traits.email`, or a `userId` that is an email
address. A track's event name becomes an event type in snake case (`Order Completed` →
`order_completed`). `messageId` makes every call idempotent: a call whose id was already stored is
counted as a duplicate and changes nothing. A batch is checked whole before anything is stored.

    >>> event_type("Order Completed")
    'order_completed'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.engine import Connection

from flowbuilder.intake import EventIn, LeadIn, check_timezone, normalize_email
from flowbuilder.store.ingest import record_events, upsert_leads
from flowbuilder.store.schema import Event as EventRow

_NOT_WORD = re.compile(r"[^a-z0-9_.\-]+")
BUILT_IN_TRAITS = ("email", "timezone", "account", "stage")


def event_type(name: str) -> str:
    return _NOT_WORD.sub("_", name.strip().lower()).strip("_")


class Traits(BaseModel):
    model_config = ConfigDict(extra="allow")

    email: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if v is None else normalize_email(v)


class Context(BaseModel):
    model_config = ConfigDict(extra="allow")

    traits: Traits | None = None


class _Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    messageId: str = Field(min_length=1, max_length=200)
    userId: str | None = Field(default=None, max_length=320)
    anonymousId: str | None = Field(default=None, max_length=320)
    timestamp: datetime | None = None
    context: Context | None = None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    def email(self, traits: Traits | None = None) -> str | None:
        for candidate in (
            traits.email if traits else None,
            self.context.traits.email if self.context and self.context.traits else None,
        ):
            if candidate:
                return candidate
        if self.userId and "@" in self.userId:
            try:
                return normalize_email(self.userId)
            except ValueError:
                return None
        return None


class Identify(_Call):
    """Who a lead is: its traits become lead attributes."""

    type: Literal["identify"] = "identify"
    traits: Traits = Field(default_factory=Traits)


class Track(_Call):
    """Something a lead did: an event that triggers and conditions can use."""

    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=64)
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event")
    @classmethod
    def _event(cls, v: str) -> str:
        if not event_type(v) or not re.match(r"^[a-z_]", event_type(v)):
            raise ValueError(f"'{v}' is not an event name; start it with a letter")
        return v


Call = Annotated[Identify | Track, Field(discriminator="type")]


class Batch(BaseModel):
    """Many identify and track calls at once; each needs its `type`."""

    model_config = ConfigDict(extra="allow")

    batch: list[Call] = Field(min_length=1, max_length=2000)
    context: Context | None = None


class PayloadError(ValueError):
    """A call that cannot be taken; `problems` are `(field, message)` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"`{f}`: {m}" for f, m in problems))
        self.problems = problems


def _problems(e: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"] if p not in ("identify", "track")]
        where = ".".join([prefix, *loc] if prefix else loc) or "body"
        out.append((where, str(err["msg"]).removeprefix("Value error, ")))
    return out


def parse(kind: str, data: Any) -> list[Identify | Track]:
    """The calls of one request (`identify`, `track` or `batch`); PayloadError names every
    problem by its field, such as `batch.3.event`."""
    if not isinstance(data, dict):
        raise PayloadError([("body", f"expected a JSON object, found {type(data).__name__}")])
    try:
        if kind == "batch":
            calls: list[Identify | Track] = list(Batch.model_validate(data).batch)
            where = [f"batch.{i}" for i in range(len(calls))]
        elif kind == "identify":
            calls, where = [Identify.model_validate({**data, "type": "identify"})], [""]
        else:
            calls, where = [Track.model_validate({**data, "type": "track"})], [""]
    except ValidationError as e:
        raise PayloadError(_problems(e)) from None
    problems: list[tuple[str, str]] = []
    for call, prefix in zip(calls, where, strict=True):
        traits = call.traits if isinstance(call, Identify) else None
        if call.email(traits) is None:
            name = f"{prefix}.userId" if prefix else "userId"
            problems.append(
                (
                    name,
                    "name the lead by email: give traits.email (or context.traits.email), "
                    "or a userId that is an email address",
                )
            )
        tz = traits.model_extra.get("timezone") if traits and traits.model_extra else None
        if tz is not None:
            try:
                check_timezone(str(tz))
            except ValueError as e:
                problems.append((f"{prefix}.traits.timezone".lstrip("."), str(e)))
    if problems:
        raise PayloadError(problems)
    return calls


@dataclass
class Stored:
    stored: int = 0
    duplicates: int = 0
    leads: list[str] = field(default_factory=list)


def store(conn: Connection, calls: Sequence[Identify | Track], now: datetime) -> Stored:
    """Store checked calls: identify updates the lead, track records the event; a messageId seen
    before is skipped."""
    keys = [f"segment:{c.messageId}" for c in calls]
    seen = set(
        conn.execute(
            select(EventRow.idempotency_key).where(EventRow.idempotency_key.in_(keys))
        ).scalars()
    )
    result = Stored()
    events: list[EventIn] = []
    for call, key in zip(calls, keys, strict=True):
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        if isinstance(call, Identify):
            email = call.email(call.traits)
            assert email is not None
            extra = dict(call.traits.model_extra or {})
            upsert_leads(
                conn,
                [
                    LeadIn(
                        email=email,
                        attributes={k: v for k, v in extra.items() if k not in BUILT_IN_TRAITS},
                        timezone=extra.get("timezone"),
                        account=extra.get("account"),
                        stage=extra.get("stage"),
                    )
                ],
                now,
            )
            events.append(
                EventIn(
                    type="identify",
                    email=email,
                    at=call.timestamp or now,
                    properties={"traits": extra},
                    idempotency_key=key,
                )
            )
        else:
            email = call.email()
            assert email is not None
            events.append(
                EventIn(
                    type=event_type(call.event),
                    email=email,
                    at=call.timestamp or now,
                    properties=call.properties,
                    idempotency_key=key,
                )
            )
        result.leads.append(email)
    written = record_events(conn, events, now)
    result.stored = written.stored
    result.duplicates += written.duplicates
    return result


def schemas() -> dict[str, Any]:
    """The JSON Schemas of the payloads, for the OpenAPI document."""
    return {
        "Identify": Identify.model_json_schema(ref_template="#/components/schemas/{model}"),
        "Track": Track.model_json_schema(ref_template="#/components/schemas/{model}"),
        "Batch": Batch.model_json_schema(ref_template="#/components/schemas/{model}"),
    }
