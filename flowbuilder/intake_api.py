"""The event API's payloads, compatible with Segment's `identify`, `track` and `batch` calls.

A lead is named by email: `traits.email`, `context.traits.email`, or a `userId` that is an email
address. A track's event name becomes an event type in snake case (`Order Completed` →
`order_completed`); the types that only flowbuilder records (`open`, `delivery`,
`goal.reached` …, `RECORDED`) are refused. `messageId` makes every call idempotent: a call whose id was already stored is
counted as a duplicate and changes nothing. A batch is checked whole before anything is stored,
then stored in one transaction: all of its new calls, or (on an error) none. Concurrent requests
are stored side by side; a messageId that another request stores first counts as a duplicate.

    >>> event_type("Order Completed")
    'order_completed'
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Table, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from dsl.functions import BUILTIN_EVENTS
from flowbuilder.engine.facts import ENGINE_EVENTS
from flowbuilder.intake import LeadIn, check_timezone, normalize_email
from flowbuilder.store.bulk import among, insert_new, lookup
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import Event as EventRow
from flowbuilder.store.schema import Lead
from flowbuilder.wakeups import EVENTS, notify

_NOT_WORD = re.compile(r"[^a-z0-9_.\-]+")
_EVENT_START = re.compile(r"[a-z_]")
BUILT_IN_TRAITS = ("email", "timezone", "account", "stage")
# Event types a track call may not claim: what happened to a message flowbuilder sent (a posted
# `open` would count as an open of no message, a posted `delivery` in every report) and the
# engine's own records. An `unsubscribe` is honoured from any source, and `form` and `view` may
# come from another tool.
RECORDED = (frozenset(BUILTIN_EVENTS) - {"unsubscribe", "form", "view"}) | ENGINE_EVENTS


@lru_cache(maxsize=4096)
def event_type(name: str) -> str:
    """The event type of a track call's event name (cached: a workspace's events have a few
    names, and every call of a batch needs its type more than once)."""
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
            return _user_id_email(self.userId)
        return None


@lru_cache(maxsize=4096)
def _user_id_email(user_id: str) -> str | None:
    """The address a userId names, or None. Cached: `parse` checks every call's lead and `store`
    looks it up again, and a site's calls come from the same users again and again."""
    try:
        return normalize_email(user_id)
    except ValueError:
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
        kind = event_type(v)
        if not _EVENT_START.match(kind):
            raise ValueError(f"'{v}' is not an event name; start it with a letter")
        if kind in RECORDED:
            raise ValueError(
                f"'{v}' names an event flowbuilder records itself (`{kind}`); "
                f"track yours under another name, such as '{kind}_external'"
            )
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


# The columns of an event the API stores, in the order `store` builds its rows.
EVENT_COLUMNS = (
    "lead_id",
    "type",
    "at",
    "properties",
    "machine",
    "idempotency_key",
    "received_at",
    "pending",
)


def store(conn: Connection, calls: Sequence[Identify | Track], now: datetime) -> Stored:
    """Store checked calls: identify updates the lead, track records the event; a messageId seen
    before (stored earlier, or earlier in the same batch) is skipped and changes nothing.

    The events of a batch go in as one statement that skips the keys stored already, so a batch
    of calls for known leads costs one query for the leads and one insert. A repeat is looked up
    beforehand only where storing it would change something first: an identify (it updates its
    lead) and a call that names a lead not yet known (it would create the lead)."""
    result = Stored()
    fresh: dict[str, tuple[Identify | Track, str]] = {}  # idempotency key → (call, lead email)
    for call in calls:
        key = f"segment:{call.messageId}"
        if key in fresh:
            result.duplicates += 1
            continue
        email = call.email(call.traits if isinstance(call, Identify) else None)
        assert email is not None  # `parse` refused calls without one
        fresh[key] = (call, email)
    identifies = [k for k, (c, _) in fresh.items() if isinstance(c, Identify)]
    locked = bool(identifies)
    if identifies:
        _lock_leads(conn)
        result.duplicates += _drop_stored(conn, fresh, identifies)
        for call, email in fresh.values():
            if isinstance(call, Identify):
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
    ids = _lead_ids(conn, {email for _, email in fresh.values()})
    unknown = [k for k, (_, email) in fresh.items() if email not in ids]
    if unknown and not locked:
        # A request that held the lock may have created some of them meanwhile.
        _lock_leads(conn)
        ids.update(_lead_ids(conn, {fresh[k][1] for k in unknown}))
        unknown = [k for k in unknown if fresh[k][1] not in ids]
    if unknown:
        result.duplicates += _drop_stored(conn, fresh, unknown)
        new = sorted({fresh[k][1] for k in unknown if k in fresh})
        if new:
            # An event names its lead by email, and one not known yet is created (as
            # `record_events` does for every event source).
            upsert_leads(conn, [LeadIn(email=e) for e in new], now)
            ids.update(_lead_ids(conn, new))
    rows = []
    unsubscribing: dict[str, int] = {}  # key → lead of an `unsubscribe` event
    for key, (call, email) in fresh.items():
        if isinstance(call, Identify):
            type_, properties = "identify", {"traits": dict(call.traits.model_extra or {})}
        else:
            type_, properties = event_type(call.event), call.properties
            if type_ == "unsubscribe":
                unsubscribing[key] = ids[email]
        rows.append((ids[email], type_, call.timestamp or now, properties, False, key, now, True))
    table: Table = EventRow.__table__  # type: ignore[assignment]
    stored = set(insert_new(conn, table, EVENT_COLUMNS, rows, "idempotency_key"))
    result.stored = len(stored)
    # A key another request stored meanwhile is a repeat too: the insert skipped it.
    result.duplicates += len(fresh) - len(stored)
    result.leads = [email for key, (_, email) in fresh.items() if key in stored]
    unsubscribed = {lead for key, lead in unsubscribing.items() if key in stored}
    if unsubscribed:
        # An `unsubscribe` event unsubscribes its lead, from any source (`record_events`).
        conn.execute(
            update(Lead)
            .where(Lead.id.in_(sorted(unsubscribed)))
            .values(unsubscribed=True, updated_at=now)
        )
    if stored:
        notify(conn, EVENTS)  # idle workers match the new events at once (flowbuilder.wakeups)
    return result


# PostgreSQL's answer when two transactions wait on each other (two requests storing the same
# messageIds in different orders) or cannot be ordered: the transaction is rolled back whole and
# may simply be run again.
RETRIED_STATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3


def store_batch(engine: Engine, calls: Sequence[Identify | Track], now: datetime) -> Stored:
    """`store` in a transaction of its own, run again (up to `ATTEMPTS` times) when PostgreSQL
    rolled it back for a deadlock or a serialization failure: the batch is stored whole once,
    and its repeats are counted as such, instead of the request failing."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return store(conn, calls, now)
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) not in RETRIED_STATES or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


_LOCK_LEADS = text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :what))")


def _lock_leads(conn: Connection) -> None:
    """Take turns, until the transaction ends, with the other API requests that create or update
    leads: requests are stored side by side, and two that both create the same new lead, or both
    merge attributes into the same lead, must not interleave. (SQLite has one writer at a time.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_LEADS, {"what": ".api-leads"})


def _drop_stored(
    conn: Connection, fresh: dict[str, tuple[Identify | Track, str]], keys: list[str]
) -> int:
    """Drop from `fresh` the calls among `keys` whose idempotency key is stored already; returns
    how many."""
    stored = conn.execute(
        select(EventRow.idempotency_key).where(among(conn, EventRow.idempotency_key, keys))
    ).scalars()
    dropped = 0
    for key in stored:
        if key is not None and fresh.pop(key, None) is not None:
            dropped += 1
    return dropped


def _lead_ids(conn: Connection, emails: Collection[str]) -> dict[str, int]:
    return lookup(conn, Lead.__table__, "email", "id", emails)  # type: ignore[arg-type]


def schemas() -> dict[str, Any]:
    """The JSON Schemas of the payloads, for the OpenAPI document."""
    return {
        "Identify": Identify.model_json_schema(ref_template="#/components/schemas/{model}"),
        "Track": Track.model_json_schema(ref_template="#/components/schemas/{model}"),
        "Batch": Batch.model_json_schema(ref_template="#/components/schemas/{model}"),
    }
