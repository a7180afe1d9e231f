"""Hosted forms declared in the DSL: check a submission, then create or update the lead, record
its consent, route it to lists by its answers and fire the form trigger — in one transaction.

Each declared field is checked by its type with pydantic; every problem names the field. Only the
answers to declared lead attributes are kept on the lead; every answer travels with the `form`
event, where `trigger form … where answer.x` and `submitted(form)` read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, create_model
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from dsl import ir
from dsl.ir_text import expr_text
from flowbuilder.engine.evaluate import Context, evaluate
from flowbuilder.engine.facts import LeadFacts
from flowbuilder.intake import EventIn, LeadIn, normalize_email
from flowbuilder.mail.consent import record_consent
from flowbuilder.store.ingest import add_to_list, record_events, upsert_leads
from flowbuilder.store.schema import Lead

_PHONE = re.compile(r"^\+?[0-9 ()\-.]{7,24}$")
_TRUE = {"on", "true", "yes", "1"}
LIMITS = {"text": 200, "textarea": 5000, "phone": 24}
CONSENT_FIELD = "consent"


@dataclass
class FormErrors(Exception):
    """The submission has problems; `errors` maps each field to what is wrong with it."""

    errors: dict[str, str]

    def __str__(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


@dataclass
class Submitted:
    email: str
    answers: dict[str, Any]
    lists: list[str] = field(default_factory=list)
    consent: bool = False


def _text(limit: int) -> Any:
    def check(v: str) -> str:
        v = v.strip()
        if len(v) > limit:
            raise ValueError(f"at most {limit} characters; this has {len(v)}")
        return v

    return check


def _email(v: str) -> str:
    return normalize_email(v) if v.strip() else ""


def _number(v: str) -> float | int | None:
    text = v.strip().replace(",", "")
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"'{v}' is not a number") from None
    return int(number) if number.is_integer() else number


def _phone(v: str) -> str:
    text = v.strip()
    if text and (not _PHONE.match(text) or sum(ch.isdigit() for ch in text) < 7):
        raise ValueError(f"'{v}' is not a phone number such as +82 2 555 0100")
    return text


def _date(v: str) -> str:
    text = v.strip()
    if text:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{v}' is not a date such as 2026-03-31") from None
    return text


def _choice(choices: list[str]) -> Any:
    def check(v: str) -> str:
        if v.strip() and v.strip() not in choices:
            raise ValueError(f"'{v}' is not one of: {', '.join(choices)}")
        return v.strip()

    return check


def _checkbox(v: str) -> bool:
    return v.strip().lower() in _TRUE


def _validator(f: ir.FormField) -> Any:
    match f.type:
        case "email":
            return _email
        case "number":
            return _number
        case "phone":
            return _phone
        case "date":
            return _date
        case "choice":
            return _choice(f.choices)
        case "checkbox":
            return _checkbox
    return _text(LIMITS.get(f.type, 200))


def answer_model(form: ir.Form) -> type[BaseModel]:
    """The pydantic model of a form's answers (every field arrives as text)."""
    fields: dict[str, Any] = {
        f.name: (Annotated[str, AfterValidator(_validator(f))], "") for f in form.fields
    }
    return create_model(f"Form_{form.name}", __config__=ConfigDict(extra="ignore"), **fields)


def email_field(form: ir.Form) -> ir.FormField | None:
    return next((f for f in form.fields if f.type == "email"), None)


def check(form: ir.Form, data: Mapping[str, str]) -> dict[str, Any]:
    """The answers, typed; raises FormErrors naming every field with a problem."""
    errors: dict[str, str] = {}
    try:
        answers = answer_model(form).model_validate(
            {f.name: data.get(f.name, "") for f in form.fields}
        )
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0])
            errors.setdefault(name, str(err["msg"]).removeprefix("Value error, "))
        answers = None
    values = answers.model_dump() if answers is not None else {}
    for f in form.fields:
        if f.name in errors:
            continue
        value = values.get(f.name)
        if f.required and (value in ("", None) or (f.type == "checkbox" and value is False)):
            errors[f.name] = f"{f.label or f.name} is required"
    address = email_field(form)
    if address is None:
        errors["form"] = f"form `{form.name}` has no email field, so it cannot identify a lead"
    elif not errors.get(address.name) and not values.get(address.name):
        errors[address.name] = f"{address.label or address.name} is required"
    if errors:
        raise FormErrors(errors)
    return values


def submit(
    engine: Engine,
    ws: ir.Workspace,
    form: ir.Form,
    data: Mapping[str, str],
    now: datetime,
    source: str = "hosted form",
) -> Submitted:
    """Store a checked submission; raises FormErrors (and stores nothing) when it has problems."""
    answers = check(form, data)
    address = email_field(form)
    assert address is not None
    email = str(answers[address.name])
    consent = bool(form.consent) and _checkbox(str(data.get(CONSENT_FIELD, "")))
    attributes = {
        k: v
        for k, v in answers.items()
        if k in ws.attributes and k != address.name and v not in ("", None)
    }
    facts = LeadFacts(lead_id="form", attributes={**attributes, "email": email})
    ctx = Context(facts, now, settings=ws.settings, answers=answers)
    routes = [r for r in form.routes if evaluate(r.condition, ctx) is True]
    with engine.begin() as conn:
        upsert_leads(
            conn,
            [LeadIn(email=email, attributes=attributes, consent="granted" if consent else None)],
            now,
        )
        if consent:
            _record_consent(conn, email, form, source, now)
        lists = []
        for route in routes:
            add_to_list(
                conn, route.list, [email], now, f"form {form.name}: {expr_text(route.condition)}"
            )
            lists.append(route.list)
        record_events(
            conn,
            [
                EventIn(
                    type="form",
                    email=email,
                    at=now,
                    properties={"form": form.name, "answers": _jsonable(answers)},
                )
            ],
            now,
        )
    return Submitted(email, answers, lists, consent)


def _record_consent(
    conn: Connection, email: str, form: ir.Form, source: str, now: datetime
) -> None:
    lead_id = conn.execute(select(Lead.id).where(Lead.email == email)).scalar_one()
    record_consent(
        conn,
        int(lead_id),
        scope="marketing",
        granted=True,
        who=email,
        source=f"form {form.name} ({source})",
        wording=form.consent or "",
        at=now,
        now=now,
        evidence={"form": form.name},
    )


def _jsonable(answers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answers.items() if v not in ("", None)}
