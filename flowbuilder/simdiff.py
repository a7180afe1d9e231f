"""What a change to the flows does to a population: replay it through two workspaces and compare,
the way `terraform plan` shows what a change does to infrastructure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowbuilder.simulate import Result

Send = tuple[str, str, datetime]  # (lead, flow.step, time)


@dataclass
class Diff:
    added: list[Send] = field(default_factory=list)
    removed: list[Send] = field(default_factory=list)
    moved: list[tuple[str, str, datetime, datetime]] = field(
        default_factory=list
    )  # lead, step, old, new
    endings: list[tuple[str, str, str, str]] = field(default_factory=list)  # lead, flow, old, new
    goals: list[tuple[str, str, str]] = field(default_factory=list)  # lead, goal, "+" or "-"

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.moved or self.endings or self.goals)


def _sends(result: Result) -> list[Send]:
    return [(t.lead, f"{t.flow}.{t.step}", t.at) for t in result.trace if t.what == "send"]


def _endings(result: Result) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for t in result.trace:
        if t.what in ("complete", "exit", "move"):
            out[(t.lead, t.flow)] = f"{t.what}: {t.reason}"
    return out


def _goals(result: Result) -> set[tuple[str, str]]:
    return {
        (t.lead, f"{t.flow}.{t.reason.split(':')[0].removeprefix('goal ')}")
        for t in result.trace
        if t.what == "goal"
    }


def compare(old: Result, new: Result) -> Diff:
    diff = Diff()
    before, after = _sends(old), _sends(new)
    # pair sends of the same lead and step in order; leftovers are added or removed
    queue: dict[tuple[str, str], list[datetime]] = {}
    for lead, step, at in before:
        queue.setdefault((lead, step), []).append(at)
    for lead, step, at in after:
        olds = queue.get((lead, step))
        if olds:
            was = olds.pop(0)
            if was != at:
                diff.moved.append((lead, step, was, at))
        else:
            diff.added.append((lead, step, at))
    for (lead, step), rest in sorted(queue.items()):
        diff.removed.extend((lead, step, at) for at in rest)
    old_end, new_end = _endings(old), _endings(new)
    for key in sorted(set(old_end) | set(new_end)):
        a, b = old_end.get(key, "still in the flow"), new_end.get(key, "still in the flow")
        if a != b:
            diff.endings.append((*key, a, b))
    old_goals, new_goals = _goals(old), _goals(new)
    diff.goals = [(lead, g, "+") for lead, g in sorted(new_goals - old_goals)] + [
        (lead, g, "-") for lead, g in sorted(old_goals - new_goals)
    ]
    diff.added.sort()
    diff.removed.sort()
    return diff


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shift(delta: timedelta) -> str:
    """`20h earlier`, `1d 2h later`, `30m later`."""
    minutes = round(abs(delta.total_seconds()) / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{mins}m"] * bool(mins)
    if not parts:
        return "same time"
    return " ".join(parts) + (" earlier" if delta < timedelta(0) else " later")


def headline(diff: Diff) -> str:
    """What the change does in one line: `1 send removed, 12 sends moved in time`."""
    gained = sum(1 for g in diff.goals if g[2] == "+")
    parts = [
        f"{_plural(len(diff.added), 'send')} added" if diff.added else "",
        f"{_plural(len(diff.removed), 'send')} removed" if diff.removed else "",
        f"{_plural(len(diff.moved), 'send')} moved in time" if diff.moved else "",
        f"{_plural(len(diff.endings), 'lead')} ending differently" if diff.endings else "",
        f"{_plural(gained, 'goal')} gained" if gained else "",
        f"{_plural(len(diff.goals) - gained, 'goal')} lost" if len(diff.goals) > gained else "",
    ]
    return ", ".join(p for p in parts if p) or "no change"


def _details(summary: str, items: list[str], limit: int = 50) -> list[str]:
    shown = items[:limit]
    more = [f"- … and {len(items) - limit} more"] if len(items) > limit else []
    return [f"<details><summary>{summary}</summary>", "", *shown, *more, "", "</details>", ""]


def markdown(diff: Diff, old_label: str, new_label: str) -> str:
    """A summary for a pull-request comment: a headline, a table per step, then the details."""
    if diff.empty:
        return (
            f"**No change** for the replayed population between `{old_label}` and `{new_label}`.\n"
        )
    added = Counter(step for _, step, _ in diff.added)
    removed = Counter(step for _, step, _ in diff.removed)
    shifts: dict[str, list[timedelta]] = {}
    for _, step, was, now in diff.moved:
        shifts.setdefault(step, []).append(now - was)
    lines = [
        f"### Replayed population: {headline(diff)}",
        "",
        f"Before: `{old_label}` · after: `{new_label}` · times in UTC",
        "",
    ]
    steps = sorted(set(added) | set(removed) | set(shifts))
    if steps:
        lines += [
            "| step | sends added | sends removed | sends moved | typical shift |",
            "|---|---:|---:|---:|---|",
        ]
        for step in steps:
            moved = sorted(shifts.get(step, []))
            typical = _shift(moved[len(moved) // 2]) if moved else ""
            lines.append(
                f"| `{step}` | {added[step]} | {removed[step]} | {len(moved)} | {typical} |"
            )
        lines.append("")
    when = "%Y-%m-%d %H:%M"
    if diff.added:
        lines += _details(
            _plural(len(diff.added), "send") + " added",
            [f"- {lead} `{step}` at {at:{when}}" for lead, step, at in diff.added],
        )
    if diff.removed:
        lines += _details(
            _plural(len(diff.removed), "send") + " removed",
            [f"- {lead} `{step}` at {at:{when}}" for lead, step, at in diff.removed],
        )
    if diff.moved:
        lines += _details(
            _plural(len(diff.moved), "send") + " moved in time",
            [
                f"- {lead} `{step}`: {a:{when}} → {b:{when}} ({_shift(b - a)})"
                for lead, step, a, b in diff.moved
            ],
        )
    if diff.endings:
        lines += _details(
            _plural(len(diff.endings), "lead") + " ending differently",
            [f"- {lead} in `{flow}`: {a} → **{b}**" for lead, flow, a, b in diff.endings],
        )
    if diff.goals:
        lines += _details(
            "goals gained and lost",
            [
                f"- {lead} `{goal}`: {'gained' if sign == '+' else 'lost'}"
                for lead, goal, sign in diff.goals
            ],
        )
    return "\n".join(lines)


def text(diff: Diff) -> str:
    if diff.empty:
        return "no change for the replayed population\n"
    out = []
    out += [f"+ {lead:<12} {step:<32} {at:%Y-%m-%d %H:%M}" for lead, step, at in diff.added]
    out += [f"- {lead:<12} {step:<32} {at:%Y-%m-%d %H:%M}" for lead, step, at in diff.removed]
    out += [
        f"~ {lead:<12} {step:<32} {a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M}"
        for lead, step, a, b in diff.moved
    ]
    out += [f"! {lead:<12} {flow:<32} {a} → {b}" for lead, flow, a, b in diff.endings]
    out += [f"{sign} {lead:<12} goal {goal}" for lead, goal, sign in diff.goals]
    out.append(
        f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.moved)} moved, "
        f"{len(diff.endings)} different endings, {len(diff.goals)} goal changes"
    )
    return "\n".join(out) + "\n"
