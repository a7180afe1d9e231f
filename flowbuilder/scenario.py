"""Inputs of a simulation: a population, a timeline of events and scripted reactions to sends.

Files: leads as CSV (`id` or `email`, `timezone`, `stage`, `lists` separated by `;`, any other
column an attribute) or JSON (a list of objects with the same keys, attributes nested or flat);
events and reactions as JSON lines or a JSON list. Times are ISO 8601 or offsets from the start
(`0h`, `2d3h`, `90m`). Every problem names the file and the line or row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowbuilder.engine.facts import Event
from flowbuilder.intake import check_timezone, parse_time
from flowbuilder.simulate import Lead, Reaction

_OFFSET = re.compile(r"^\s*(?:(\d+)w)?\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
_LEAD_KEYS = {"id", "email", "timezone", "stage", "lists", "attributes", "account"}


class ScenarioError(ValueError):
    """A problem in a scenario file: `where` is `file:line` (or `file: row N`)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def offset(text: str) -> timedelta:
    """`2d3h` → 2 days 3 hours; `0h` → zero."""
    m = _OFFSET.match(text)
    if not m or not text.strip() or not any(m.groups()):
        raise ValueError(f"`{text}` is not an offset such as 0h, 90m, 2d or 1w2d")
    w, d, h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)


def _is_offset(text: str) -> bool:
    m = _OFFSET.match(text)
    return bool(m and any(m.groups()))


def moment(value: Any, start: datetime) -> datetime:
    """An ISO time, or an offset from `start`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=start.tzinfo)
    text = str(value)
    return start + offset(text) if _is_offset(text) else parse_time(text)


def lead_from(data: Mapping[str, Any], where: str) -> Lead:
    """A lead from a JSON object or a CSV row."""
    ident = data.get("id") or data.get("email")
    if not ident:
        raise ScenarioError(where, "a lead needs an `id` or an `email`")
    tz = data.get("timezone") or None
    if tz:
        try:
            check_timezone(str(tz))
        except ValueError as e:
            raise ScenarioError(where, str(e)) from None
    lists = data.get("lists") or []
    if isinstance(lists, str):
        lists = [x.strip() for x in lists.split(";") if x.strip()]
    attributes = dict(data.get("attributes") or {})
    attributes.update(
        {k: v for k, v in data.items() if k not in _LEAD_KEYS and v not in ("", None)}
    )
    if data.get("email"):
        attributes.setdefault("email", data["email"])
    return Lead(
        id=str(ident),
        attributes=attributes,
        timezone=str(tz) if tz else None,
        lists=frozenset(lists),
        stage=data.get("stage") or None,
        account=str(data.get("account") or "") or _domain(data.get("email")),
    )


def _domain(email: Any) -> str | None:
    """A lead without an account belongs to its email domain, as in the store."""
    return str(email).rpartition("@")[2].lower() or None if email and "@" in str(email) else None


def event_from(data: Mapping[str, Any], start: datetime, where: str) -> tuple[str, Event]:
    unknown = set(data) - {"lead", "type", "at", "properties", "flow", "step", "machine"}
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("lead", "type", "at"):
        if not data.get(key) and data.get(key) != 0:
            raise ScenarioError(where, f"an event needs `{key}`")
    try:
        at = moment(data["at"], start)
    except ValueError as e:
        raise ScenarioError(where, f"`at`: {e}") from None
    properties = data.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise ScenarioError(where, "`properties` is an object")
    return str(data["lead"]), Event(
        str(data["type"]),
        at,
        dict(properties),
        flow=data.get("flow"),
        step=data.get("step"),
        machine=bool(data.get("machine", False)),
    )


def reaction_from(data: Mapping[str, Any], where: str) -> Reaction:
    unknown = set(data) - {"lead", "step", "type", "after", "flow", "properties"}
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("lead", "step", "type"):
        if not data.get(key):
            raise ScenarioError(where, f"a reaction needs `{key}`")
    try:
        after = offset(str(data.get("after", "0h")))
    except ValueError as e:
        raise ScenarioError(where, f"`after`: {e}") from None
    return Reaction(
        str(data["lead"]),
        str(data["step"]),
        str(data["type"]),
        after,
        flow=data.get("flow"),
        properties=dict(data.get("properties") or {}),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), f"cannot read: {e}") from None


def _objects(path: Path) -> Iterable[tuple[str, Any]]:
    """(where, object) for each entry of a JSON list or JSON-lines file."""
    text = _read(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{path}:{e.lineno}", f"not JSON: {e.msg}") from None
        for n, item in enumerate(items, 1):
            yield f"{path}: entry {n}", item
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            yield f"{path}:{n}", json.loads(line)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{path}:{n}", f"not JSON: {e.msg}") from None


def _mapping(where: str, item: Any) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ScenarioError(where, f"expected an object, found {type(item).__name__}")
    return item


def read_leads(path: Path) -> list[Lead]:
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(_read(path)))
        return [
            lead_from(
                {k: v for k, v in row.items() if k is not None}, f"{path}: row {reader.line_num}"
            )
            for row in reader
        ]
    return [lead_from(_mapping(where, item), where) for where, item in _objects(path)]


def read_events(path: Path, start: datetime) -> list[tuple[str, Event]]:
    return [event_from(_mapping(where, item), start, where) for where, item in _objects(path)]


def read_reactions(path: Path) -> list[Reaction]:
    return [reaction_from(_mapping(where, item), where) for where, item in _objects(path)]


@dataclass(frozen=True)
class Scenario:
    leads: list[Lead]
    events: list[tuple[str, Event]]
    reactions: list[Reaction]
    start: datetime
    days: int
