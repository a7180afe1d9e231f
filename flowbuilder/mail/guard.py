"""The last check before a message leaves: no unfilled merge tag reaches a reader.

A rendered part that still holds template syntax (`{{`, `{%`), a merge tag of another tool
(`*|FNAME|*`, `%%first_name%%`, `[[name]]`) or a bracketed field name (`[first_name]`, `[Name]`)
fails the message with the reason; it is never sent.

    >>> unfilled("Hello [first_name],", {"first_name"})
    '`[first_name]`'
    >>> unfilled("[웨비나 초대] 리드 너처링", {"first_name"}) is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from flowbuilder.mail.sandbox import RenderError

_SYNTAX = re.compile(
    r"\{\{.*?\}\}|\{%.*?%\}|\{\{|\}\}|\{%|%\}|\*\|[A-Za-z_]+\|\*|%%[A-Za-z_]+%%|\[\[[^\]]+\]\]"
)
_BRACKETED = re.compile(r"\[\s*([A-Za-z][A-Za-z0-9_ .-]{0,40}?)\s*\]")
_STYLE = re.compile(r"<style\b.*?</style>", re.S | re.I)
_STYLE_START = re.compile(r"<style\b", re.I)
# Placeholders people type by hand, in lower case with `_` for spaces.
COMMON_FIELDS = frozenset(
    {
        "name",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "full_name",
        "company",
        "company_name",
        "email",
        "title",
        "job_title",
        "city",
        "country",
        "phone",
        "unsubscribe",
        "unsubscribe_url",
        "unsubscribe_link",
    }
)


def known_fields(*names: Iterable[str]) -> frozenset[str]:
    """The field names a bracketed tag is checked against: those given, lower-cased, and the
    placeholders people commonly type."""
    return COMMON_FIELDS.union(n.lower() for group in names for n in group)


def unfilled(text: str, fields: Collection[str]) -> str | None:
    """The first unfilled tag in `text`, quoted; None when there is none."""
    return _first(text, known_fields(fields))


def _first(text: str, known: frozenset[str]) -> str | None:
    # One-character tests first (a memchr each): most parts hold none of these characters, and
    # the expression costs a hundred times more.
    if "{" in text or "}" in text or "%" in text or "*" in text or "[" in text:
        if _STYLE_START.search(text) is not None:
            text = _STYLE.sub("", text)  # CSS has `}` and `%}` of its own
        found = _SYNTAX.search(text)
        if found is not None:
            return f"`{found.group(0)[:40]}`"
    if "[" not in text:
        return None
    for match in _BRACKETED.finditer(text):
        word = re.sub(r"[\s.-]+", "_", match.group(1).strip()).lower()
        if word in known or word.removeprefix("lead_") in known:
            return f"`{match.group(0)}`"
    return None


def check_parts(parts: dict[str, str | None], known: frozenset[str]) -> None:
    """Raise `RenderError` naming the part and the tag when any part holds an unfilled tag;
    `known` comes from `known_fields`."""
    for name, text in parts.items():
        if text is None:
            continue
        tag = _first(text, known)
        if tag is not None:
            raise RenderError(
                f"the {name} still holds the unfilled tag {tag}; the message was not sent"
            )
