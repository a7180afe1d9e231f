"""Local time for a lead: send windows, quiet hours, times of day, weekdays and business days.

Everything is UTC inside; these functions convert to the lead's timezone only to answer "when, in
their day, may this happen" and return UTC again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from dsl import ir

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@lru_cache(maxsize=64)
def _holidays(calendar: str, year: int) -> frozenset[date]:
    country, _, subdivision = calendar.partition("-")
    try:
        days = holidays.country_holidays(country, subdiv=subdivision or None, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(days)


def is_business_day(day: date, calendar: str | None) -> bool:
    """Monday to Friday and, with a country calendar ("KR", "US-CA"), not a public holiday."""
    if day.weekday() >= 5:
        return False
    return calendar in (None, "default") or day not in _holidays(calendar, day.year)


def add_business_days(start: datetime, days: int, tz: str, calendar: str | None) -> datetime:
    """The same local time `days` business days later (weekends and holidays skipped)."""
    local = start.astimezone(ZoneInfo(tz))
    day = local.date()
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if is_business_day(day, calendar):
            remaining -= 1
    return datetime.combine(
        day, local.timetz().replace(tzinfo=None), tzinfo=ZoneInfo(tz)
    ).astimezone(UTC)


def next_time_of_day(after: datetime, at: str, weekdays: Sequence[str], tz: str) -> datetime:
    """The first moment at or after `after` whose local clock shows `at` on an allowed weekday."""
    zone = ZoneInfo(tz)
    local = after.astimezone(zone)
    allowed = {WEEKDAYS.index(d) for d in weekdays} if weekdays else set(range(7))
    clock = _clock(at)
    for offset in range(0, 8):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, clock, tzinfo=zone)
        if candidate >= local and day.weekday() in allowed:
            return candidate.astimezone(UTC)
    raise AssertionError("a week always holds an allowed weekday")


def _inside(clock: time, window: ir.TimeWindow) -> bool:
    start, end = _clock(window.start), _clock(window.end)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # the window wraps past midnight


def sendable_from(
    now: datetime,
    tz: str,
    send_window: ir.TimeWindow | None,
    quiet_hours: ir.TimeWindow | None,
    business_days: str | None,
) -> datetime:
    """The earliest moment at or after `now` when a send is allowed in the lead's local time.

    Allowed means: inside the send window (on its weekdays), outside quiet hours, and on a business
    day when the policy asks for business days. Searched in 15-minute local steps over two weeks.
    """
    if send_window is None and quiet_hours is None and business_days is None:
        return now
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    candidate = local
    for _ in range(14 * 24 * 4 + 1):
        if _allowed(candidate, send_window, quiet_hours, business_days):
            return candidate.astimezone(UTC)
        candidate = _next_quarter(candidate)
    return now  # no allowed moment within two weeks: the policy is contradictory; lint reports it


def _allowed(
    local: datetime,
    send_window: ir.TimeWindow | None,
    quiet_hours: ir.TimeWindow | None,
    business_days: str | None,
) -> bool:
    clock = local.time().replace(tzinfo=None)
    if business_days is not None and not is_business_day(local.date(), business_days):
        return False
    if send_window is not None:
        if send_window.weekdays and WEEKDAYS[local.weekday()] not in send_window.weekdays:
            return False
        if not _inside(clock, send_window):
            return False
    return quiet_hours is None or not _inside(clock, quiet_hours)


def _next_quarter(local: datetime) -> datetime:
    minute = (local.minute // 15 + 1) * 15
    base = local.replace(second=0, microsecond=0, minute=0)
    return base + timedelta(minutes=minute)
