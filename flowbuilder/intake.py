"""What comes in from outside — leads and events — validated before anything is stored.

Every problem names where it is (CSV row number, JSON field) and what is wrong; good records go on.
CSV files of leads are read by `flowbuilder.leads_csv` and imported by `flowbuilder.lead_import`.
Unknown leads: an event that names a lead by `email` creates the lead when it does not exist yet
(events often arrive before an import); an event that names a lead by `lead_id` that does not
exist is rejected.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONSENT_VALUES = {"granted", "unknown", "withdrawn"}
# Addresses most lists are made of: an ASCII dot-atom before the @ and an ASCII host name after it.
# email-validator accepts every such local part as it is (RFC 5322 dot-atom), so only the domain
# needs its checks, and those are the same for every address at that domain (see `_domain`).
_ATEXT = r"A-Za-z0-9_!#$%&'*+\-/=?^`{|}~"
_SIMPLE = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)\Z"
)
_MAX_ADDRESS = 254


class IntakeError(ValueError):
    """A record that cannot be taken, with where it is (`row 7`, `event.at`) and why."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def normalize_email(raw: str) -> str:
    """The address leads are keyed by: validated by email-validator, trimmed and lower-cased
    (mailbox providers treat the local part case-insensitively in practice, and so do marketers'
    lists).

    >>> normalize_email("  Ann.Lee@Example.COM ")
    'ann.lee@example.com'
    """
    text = raw.strip()
    simple = _SIMPLE.match(text)
    if simple is not None and len(text) <= _MAX_ADDRESS:
        domain = _domain(simple.group(1).lower())
        if domain is not None:
            return text[: simple.start(1)].lower() + domain
    return _validated(raw, text)


def _validated(raw: str, text: str) -> str:
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as e:
        raise ValueError(f"`{raw}` is not an email address: {e}") from None
    return info.normalized.lower()


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str | None:
    """The domain as email-validator normalizes it, or None when it refuses it (the full check
    then says why). Cached: a list of a million leads has a few thousand domains."""
    try:
        info = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return str(info.domain).lower()


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"unknown time zone `{name}` (use an IANA name such as Asia/Seoul)")
    return name


def parse_time(raw: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{raw}` is not an ISO 8601 time such as 2026-03-01T09:30:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class LeadIn:
    email: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    account: str | None = None
    stage: str | None = None
    consent: str | None = None


class EventIn(BaseModel):
    """One event as posted by the API or `flowbuilder event`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][\w.\-]*$")
    email: str | None = None
    lead_id: int | None = None
    at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    flow: str | None = None
    step: str | None = None
    message_key: str | None = None
    machine: bool = False
    idempotency_key: str | None = Field(default=None, max_length=255)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return None if v is None else normalize_email(v)

    @field_validator("at")
    @classmethod
    def _at(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    def who(self) -> str:
        return self.email or f"lead {self.lead_id}"


def parse_event(data: Any, where: str = "event") -> EventIn:
    """Validate one event payload; IntakeError names the field and the problem."""
    if not isinstance(data, Mapping):
        raise IntakeError(where, f"an event is a JSON object, not {type(data).__name__}")
    try:
        event = EventIn.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "event"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"`{loc}`: {msg}")
        raise IntakeError(where, "; ".join(problems)) from None
    if (event.email is None) == (event.lead_id is None):
        raise IntakeError(where, "name the lead with exactly one of `email` or `lead_id`")
    return event
