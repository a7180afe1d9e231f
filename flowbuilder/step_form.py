"""The property panel of a step: its fields as a marketer fills them, validated with pydantic, and
the edit operations that write a changed form into the text.

Each field names the SetProperty key it writes; an error — from the form's validation or from the
edit itself — is reported on the field it concerns, and nothing is written unless every change
applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from dsl.edit import EditError, EditOp, RenameStep, SetProperty, apply, revision
from dsl.edit_doc import Doc, action_of, conditional_arms, trees
from dsl.fmt import format_node
from flowbuilder.canvas import quote, unquote

_DURATION = re.compile(r"^\d+(\.\d+)?[smhdw]$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PERCENT = re.compile(r"^\d+(\.\d+)?%?$")


@dataclass
class Field:
    """One input of the panel."""

    name: str  # the form field
    label: str
    value: str
    kind: str = "text"  # text, select, number, condition, time, duration, readonly
    key: str | None = None  # the SetProperty key it writes (None: the step name)
    choices: list[str] = field(default_factory=list)
    help: str = ""
    required: bool = False
    error: str | None = None


@dataclass
class Panel:
    flow: str
    step: str
    kind: str
    fields: list[Field]

    def error_count(self) -> int:
        return sum(1 for f in self.fields if f.error)


@dataclass(frozen=True)
class Choices:
    templates: list[str]
    lists: list[str]
    flows: list[str]
    goals: list[str]


def _tok(node: object) -> str:
    return str(node) if isinstance(node, Token) else ""


def _expr(node: object) -> str:
    return format_node(node) if isinstance(node, Tree) else ""


def panel(text: str, path: str, flow: str, step: str, choices: Choices) -> Panel:
    """The fields of a step, filled with what the text says now."""
    doc = Doc(text, path)
    tree = doc.step(doc.flow(flow), step)
    action = action_of(tree)
    kind = str(action.data)
    c = action.children
    fields = [
        Field(
            "name",
            "Step name",
            step,
            required=True,
            help="Lower-case words joined by _; conditions and edges use it.",
        )
    ]
    if kind == "send":
        options = {o.data: unquote(_tok(o.children[0])) for o in trees(c[1:-2])}
        fields += [
            Field(
                "template",
                "Email template",
                _tok(c[0]),
                "select",
                "template",
                choices.templates,
                required=True,
            ),
            Field(
                "subject",
                "Subject",
                options.get("subject", ""),
                key="subject",
                help="Leave empty to use the template's subject.",
            ),
            Field("preheader", "Preheader", options.get("preheader", ""), key="preheader"),
            Field(
                "sender",
                "From",
                options.get("sender", ""),
                key="from",
                help="Such as Jihoon Kim <jihoon@acme.example>; empty: the workspace sender.",
            ),
        ]
        if isinstance(c[-2], Tree):
            variants = ", ".join(f"{v.children[0]} {v.children[1]}" for v in trees(c[-2].children))
            fields.append(
                Field("variants", "A/B variants", variants, "readonly", help="Edit in the text.")
            )
    elif kind == "wait":
        fields.append(
            Field(
                "duration",
                "Wait for",
                _tok(c[0]),
                "duration",
                "duration",
                required=True,
                help="Such as 24h, 3d or 2w.",
            )
        )
    elif kind == "wait_business":
        fields.append(Field("days", "Business days", _tok(c[0]), "number", "days", required=True))
    elif kind == "wait_until_time":
        fields.append(
            Field(
                "time",
                "Until the time",
                _tok(c[0]),
                "time",
                "time",
                required=True,
                help="The lead's local time, such as 10:00.",
            )
        )
    elif kind == "wait_until_date":
        fields.append(
            Field(
                "date",
                "Until the date",
                _expr(c[0]),
                "condition",
                "date",
                required=True,
                help="Such as lead.renewal_date - 7d.",
            )
        )
    elif kind == "wait_for":
        fields += [
            Field(
                "condition",
                "Wait for",
                _expr(c[0]),
                "condition",
                "condition",
                required=True,
                help="Such as clicked(guide) or opened(within=3d).",
            ),
            Field(
                "timeout",
                "Up to",
                _tok(c[1]),
                "duration",
                "timeout",
                help="Always give one, such as 7d, or a lead may wait forever.",
            ),
        ]
    elif kind == "branch":
        for i, arm in enumerate(conditional_arms(action)):
            fields.append(
                Field(
                    f"arm_{i}",
                    "If" if i == 0 else "Else if",
                    _expr(arm.children[0]),
                    "condition",
                    f"arm:{i}.condition",
                    required=True,
                    help='Such as clicked(welcome, link="pricing").' if i == 0 else "",
                )
            )
    elif kind == "split":
        paths = [a for a in trees(c) if a.data == "split_path"]
        for i, p in enumerate(paths):
            fields.append(
                Field(
                    f"path_{i}",
                    f"Path {i + 1} → {p.children[1]}",
                    _tok(p.children[0]),
                    "text",
                    f"path:{i}.percent",
                    required=True,
                )
            )
        holdouts = [a for a in trees(c) if a.data == "holdout"]
        fields.append(
            Field(
                "holdout",
                "Holdout",
                _tok(holdouts[0].children[0]) if holdouts else "",
                "text",
                "holdout",
                help="A control group that leaves the flow here; shares add up to 100%.",
            )
        )
    elif kind == "update":
        target = format_node(c[0]) if isinstance(c[0], Tree) else _tok(c[0])
        fields += [
            Field(
                "target", "Field", f"{target} {_tok(c[1])}", "readonly", help="Edit in the text."
            ),
            Field("value", "Value", _expr(c[2]), "condition", "value", required=True),
        ]
    elif kind in ("add_to_list", "remove_from_list"):
        fields.append(
            Field("list", "List", _tok(c[0]), "select", "list", choices.lists, required=True)
        )
    elif kind == "move_to_flow":
        fields.append(
            Field("flow", "Flow", _tok(c[0]), "select", "flow", choices.flows, required=True)
        )
    elif kind == "webhook":
        fields.append(
            Field("url", "URL", unquote(_tok(c[0])), "text", "url", required=True, help="https://…")
        )
    elif kind == "reach_goal":
        fields.append(
            Field("goal", "Goal", _tok(c[0]), "select", "goal", choices.goals, required=True)
        )
    elif kind in ("suppress", "end"):
        fields.append(
            Field(
                "reason",
                "Reason",
                unquote(_tok(c[0])) if isinstance(c[0], Token) else "",
                key="reason",
                help="Shown in reports and the simulator.",
            )
        )
    return Panel(flow, step, kind, fields)


class _Values(BaseModel):
    """The submitted values of a panel, checked field by field."""

    model_config = ConfigDict(extra="ignore")

    name: str
    template: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None
    duration: str | None = None
    days: str | None = None
    time: str | None = None
    timeout: str | None = None
    holdout: str | None = None
    url: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not _NAME.match(v):
            raise ValueError("use letters, digits and _, starting with a letter (such as welcome)")
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None and not _DURATION.match(v.strip()):
            raise ValueError("expected a duration such as 24h, 3d or 2w")
        return v.strip() if v is not None else None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: str | None) -> str | None:
        if v is not None and v.strip() and not _DURATION.match(v.strip()):
            raise ValueError("expected a duration such as 7d, or nothing")
        return v.strip() if v is not None else None

    @field_validator("days")
    @classmethod
    def _days(cls, v: str | None) -> str | None:
        if v is not None and not (v.strip().isdigit() and 0 < int(v.strip()) <= 365):
            raise ValueError("expected a whole number of days from 1 to 365")
        return v.strip() if v is not None else None

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and not _TIME.match(v.strip()):
            raise ValueError("expected a time of day such as 09:30")
        return v.strip() if v is not None else None

    @field_validator("holdout")
    @classmethod
    def _holdout(cls, v: str | None) -> str | None:
        if v is not None and v.strip() and not _PERCENT.match(v.strip()):
            raise ValueError("expected a percentage such as 10%, or nothing")
        return v.strip() if v is not None else None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s\"]+$", v.strip()):
            raise ValueError("expected a web address starting with https://")
        return v.strip() if v is not None else None

    @field_validator("subject", "preheader", "sender")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        if v is not None and ("\n" in v or "\r" in v):
            raise ValueError("write it on one line")
        if v is not None and len(v) > 300:
            raise ValueError(f"at most 300 characters; this has {len(v)}")
        return v


def _written(f: Field, raw: str) -> str:
    """A submitted value as the language writes it."""
    value = raw.strip()
    if f.key in ("subject", "preheader", "from", "reason", "url"):
        return quote(value) if value else ""
    if (f.key is not None and f.key.endswith(".percent")) or f.key == "holdout":
        return value if not value or value.endswith("%") else value + "%"
    return value


@dataclass
class Submission:
    panel: Panel
    ops: list[EditOp]
    text: str | None  # the new text when every change applied


def submit(
    text: str, path: str, flow: str, step: str, form: dict[str, str], choices: Choices
) -> Submission:
    """Check a submitted panel and apply its changes to `text`, all or nothing."""
    current = panel(text, path, flow, step, choices)
    by_name = {f.name: f for f in current.fields}
    for f in current.fields:
        if f.kind != "readonly" and f.name in form:
            f.value = form[f.name]
    try:
        _Values.model_validate({k: v for k, v in form.items() if k in by_name})
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else "name"
            if name in by_name:
                by_name[name].error = str(err["msg"]).removeprefix("Value error, ")
    for f in current.fields:
        if f.error or f.kind == "readonly" or f.name not in form:
            continue
        if f.required and not form[f.name].strip():
            f.error = f"{f.label} is required"
        elif f.kind == "select" and form[f.name] not in f.choices:
            f.error = f"'{form[f.name]}' is not one of: {', '.join(f.choices) or 'none declared'}"
    if current.error_count():
        return Submission(current, [], None)
    original = panel(text, path, flow, step, choices)
    ops: list[tuple[Field, EditOp]] = []
    for before, after in zip(original.fields, current.fields, strict=True):
        if after.kind == "readonly" or after.key is None or after.name not in form:
            continue
        if _written(after, after.value) == _written(before, before.value):
            continue
        ops.append(
            (
                after,
                SetProperty(
                    flow=flow, step=step, key=after.key, value=_written(after, after.value)
                ),
            )
        )
    new_name = form.get("name", step).strip()
    if new_name != step:
        ops.append((by_name["name"], RenameStep(flow=flow, old=step, new=new_name)))
    result = text
    for f, op in ops:
        try:
            result = apply(result, op, revision(result), path).text
        except EditError as e:
            f.error = e.diagnostic.message
    if current.error_count():
        return Submission(current, [], None)
    return Submission(current, [op for _, op in ops], result)


def as_form(values: dict[str, Any]) -> dict[str, str]:
    """Form values as text (a multi-dict's last value wins)."""
    return {k: str(v) for k, v in values.items()}
