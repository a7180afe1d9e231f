"""The documentation a hover shows: sections of the language reference and the lint rule pages.

Both are read from `docs/` beside the package (`docs/language.md`, `docs/lint/FB…md`), so an editor
shows exactly what the reference says. Without the docs folder (an installed wheel) a rule still
has its registered summary and a construct its heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dsl.rules import RULES

DOCS = Path(__file__).resolve().parents[2] / "docs"
_HEADING = re.compile(r"^(#{2,6})\s+(.+?)\s*$")
_FENCE = re.compile(r"^```")

# The parse-tree rule of a construct -> the heading of its section in docs/language.md.
CONSTRUCTS: dict[str, str] = {
    "workspace": "`workspace`",
    "sender": "`workspace`",
    "postal_address": "`workspace`",
    "contact": "`workspace`",
    "region": "`workspace`",
    "settings": "`settings`",
    "setting": "`settings`",
    "attribute": "`attribute`",
    "segment": "`segment`",
    "list_decl": "`list`",
    "list_add_rule": "`list`",
    "list_remove_rule": "`list`",
    "stages": "`stages` and `stage`",
    "stage": "`stages` and `stage`",
    "scoring": "`scoring`",
    "score_when": "`scoring`",
    "score_per": "`scoring`",
    "score_decay": "`scoring`",
    "form": "`form`",
    "form_field": "`form`",
    "form_consent": "`form`",
    "form_route": "`form`",
    "template": "`template`",
    "template_html": "`template`",
    "template_text": "`template`",
    "template_topic": "`template`",
    "template_class": "`template`",
    "flow": "`flow`",
    "trigger_event": "`trigger event`",
    "trigger_entered": "`trigger entered`",
    "trigger_form": "`trigger form`",
    "trigger_date": "`trigger date`",
    "trigger_anniversary": "`trigger anniversary`",
    "trigger_inactive": "`trigger inactive`",
    "trigger_schedule": "`trigger schedule`",
    "entry": "`entry`",
    "exit_rule": "`exit`",
    "goal": "`goal`",
    "kind": "`kind`",
    "send_window": "`send window`",
    "quiet_hours": "`quiet hours`",
    "business_days": "`business days`",
    "frequency_cap": "`frequency cap`",
    "timezone": "`timezone`",
    "layout": "`layout`",
    "migrate": "`migrate`",
    "send": "`send`",
    "variants": "`variant`",
    "variant": "`variant`",
    "variant_template": "`variant`",
    "wait": "`wait`",
    "wait_business": "`wait … business days`",
    "wait_until_time": "`wait until` a time",
    "wait_until_date": "`wait until` a date",
    "wait_for": "`wait for … up to`",
    "wait_arms": "`wait for … up to`",
    "branch": "`branch`",
    "if_arm": "`branch`",
    "else_if_arm": "`branch`",
    "else_arm": "`branch`",
    "split": "`split`",
    "split_path": "`split`",
    "holdout": "`split`",
    "update": "`update`",
    "add_to_list": "`add to list`",
    "remove_from_list": "`remove from list`",
    "move_to_flow": "`move to flow`",
    "webhook": "`webhook`",
    "reach_goal": "`goal` step",
    "suppress": "`suppress`",
    "end": "`end`",
    # conditions
    "or_test": "Operators",
    "and_test": "Operators",
    "not_test": "Operators",
    "compare": "Operators",
    "in_test": "Operators",
    "not_in_test": "Operators",
    "string_test": "Operators",
    "arith": "Operators",
    "negate": "Operators",
    "true_lit": "Literals",
    "false_lit": "Literals",
    "null_lit": "Literals",
    "duration_lit": "Literals",
    "percent_lit": "Literals",
    "date_lit": "Literals",
    "number_lit": "Literals",
    "string_lit": "Literals",
    "list_lit": "Literals",
    "path": "Paths",
    "call": "Functions",
    "kwarg": "Functions",
}


@dataclass(frozen=True)
class Section:
    heading: str
    level: int
    text: str


def _sections(markdown: str) -> dict[str, Section]:
    """Each heading's section: its text up to the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    starts: list[tuple[int, int, str]] = []
    fenced = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            starts.append((i, len(match.group(1)), match.group(2)))
    sections: dict[str, Section] = {}
    for n, (i, level, heading) in enumerate(starts):
        end = next((j for j, lv, _ in starts[n + 1 :] if lv <= level), len(lines))
        body = "\n".join(lines[i:end]).strip()
        sections.setdefault(heading, Section(heading, level, body))
    return sections


@lru_cache(maxsize=1)
def language_sections() -> dict[str, Section]:
    """The sections of docs/language.md by heading; empty without the docs folder."""
    path = DOCS / "language.md"
    if not path.is_file():
        return {}
    return _sections(path.read_text(encoding="utf-8"))


def construct(rule: str) -> str | None:
    """The reference section of a parse-tree rule, as Markdown."""
    heading = CONSTRUCTS.get(rule)
    if heading is None:
        return None
    section = language_sections().get(heading)
    if section is None:
        return f"### {heading}"
    return section.text


@lru_cache(maxsize=64)
def lint_rule(code: str) -> str | None:
    """The page of a lint rule, as Markdown (its summary when the page is not there)."""
    rule = RULES.get(code)
    if rule is None:
        return None
    page = DOCS / "lint" / f"{code}.md"
    if page.is_file():
        return page.read_text(encoding="utf-8").strip()
    return f"# {rule.code} {rule.name}\n\n{rule.summary}"
