"""The merge fields a template sees for one lead.

Every attribute of the lead is a field of its own (`{{ first_name }}`) and under `lead`
(`{{ lead.first_name }}`); empty values count as missing, so `default()` fallbacks apply. Next to
them: `email`, `stage`, `score`, `tags`, `lists`, `segments`, the workspace `settings`, the
sender's identity (`sender_name`, `sender_address`, `postal_address`, `contact`), the links every
message carries (`unsubscribe_url`, `preferences_url`) and the helpers for content blocks that vary
by segment, list, stage or tag: `in_segment('vip')`, `in_list('newsletter')`, `has_tag('beta')`.

    >>> fields = merge_fields(LeadView(1, "ann@example.com", {"first_name": ""}), Links("u", "p"))
    >>> "first_name" in fields, fields["email"], fields["in_list"]("x")
    (False, 'ann@example.com', False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dsl import ir

# Names a template may use without a declaration: the built-in fields and what the mail adds.
BUILT_IN_FIELDS = frozenset(
    {
        "email",
        "lead",
        "stage",
        "score",
        "tags",
        "lists",
        "segments",
        "timezone",
        "account",
        "settings",
        "sender_name",
        "sender_address",
        "postal_address",
        "contact",
        "unsubscribe_url",
        "preferences_url",
        "in_segment",
        "in_list",
        "has_tag",
        "topic",
        "range",
    }
)


@dataclass(frozen=True)
class LeadView:
    """What personalization reads of a lead."""

    id: int
    email: str
    attributes: Mapping[str, Any]
    stage: str | None = None
    score: float = 0.0
    tags: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    timezone: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    preferences_url: str


@dataclass(frozen=True)
class Identity:
    """Who sends: the workspace's sender and the legal footer's facts."""

    sender_name: str = ""
    sender_address: str = ""
    postal_address: str = ""
    contact: str = ""

    @classmethod
    def of(cls, ws: ir.Workspace) -> Identity:
        p = ws.policy
        return cls(
            sender_name=p.sender.name if p.sender else (ws.title or ws.name or ""),
            sender_address=p.sender.address if p.sender else "",
            postal_address=p.postal_address or "",
            contact=p.contact or "",
        )


@dataclass(frozen=True)
class _Membership:
    names: frozenset[str] = field(default_factory=frozenset)

    def __call__(self, name: str) -> bool:
        return name in self.names


def merge_fields(
    lead: LeadView,
    links: Links,
    identity: Identity | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    topic: str | None = None,
) -> dict[str, Any]:
    """The render context of one message."""
    attributes = {k: v for k, v in lead.attributes.items() if k != "email" and _present(v)}
    own = _present_only(
        {
            "email": lead.email,
            "stage": lead.stage,
            "timezone": lead.timezone,
            "account": lead.account,
        }
    )
    tags = sorted(lead.tags)
    fields: dict[str, Any] = {**attributes, **own}
    fields.update(_sender_fields(identity or Identity(), topic))
    fields.update(
        {
            "lead": {**attributes, **own, "score": lead.score, "tags": tags},
            "score": lead.score,
            "tags": tags,
            "lists": sorted(lead.lists),
            "segments": sorted(lead.segments),
            # Templates cannot change what they read (the sandbox is immutable): no copy.
            "settings": settings if isinstance(settings, dict) else dict(settings or {}),
            "unsubscribe_url": links.unsubscribe_url,
            "preferences_url": links.preferences_url,
            "in_segment": _Membership(lead.segments),
            "in_list": _Membership(lead.lists),
            "has_tag": _Membership(lead.tags),
        }
    )
    return fields


def _present(value: Any) -> bool:
    """Empty values are missing, so fallbacks apply."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _present_only(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if _present(v)}


@lru_cache(maxsize=256)
def _sender_fields(who: Identity, topic: str | None) -> dict[str, Any]:
    """The fields every message of a workspace and topic shares (copied in, never changed)."""
    return _present_only(
        {
            "sender_name": who.sender_name,
            "sender_address": who.sender_address,
            "postal_address": who.postal_address,
            "contact": who.contact,
            "topic": topic,
        }
    )
