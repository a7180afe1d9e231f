"""The functions conditions can call: their parameters, types and documentation."""

from __future__ import annotations

from dataclasses import dataclass, field

# Parameter kinds: a reference kind (a bare name resolved against the flow or workspace) or a type.
REF_KINDS = frozenset({"step", "event", "list", "segment", "stage", "form"})

# Event types recorded by flowbuilder itself; custom events (API, forms, integrations) may use any
# other name, written bare (`meeting_booked`) or quoted (`"purchase"`).
BUILTIN_EVENTS = (
    "send",
    "delivery",
    "open",
    "click",
    "reply",
    "bounce",
    "complaint",
    "unsubscribe",
    "form",
    "view",
)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    optional: bool = False


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[Param, ...]
    returns: str
    doc: str
    kwargs: dict[str, str] = field(default_factory=dict)
    example: str = ""


def _reaction(name: str, verb: str, extra: dict[str, str] | None = None) -> Function:
    return Function(
        name,
        (Param("step", "step", optional=True),),
        "bool",
        f"The lead {verb} the email of the given step (any email when no step is given).",
        kwargs={"within": "duration", **(extra or {})},
        example=f"{name}(welcome)",
    )


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        _reaction("opened", "opened"),
        _reaction("clicked", "clicked a link in", {"link": "string"}),
        _reaction("replied", "replied to"),
        _reaction("delivered", "was delivered"),
        _reaction("bounced", "bounced on"),
        Function(
            "unsubscribed", (), "bool", "The lead has unsubscribed.", example="unsubscribed()"
        ),
        Function(
            "complained", (), "bool", "The lead marked an email as spam.", example="complained()"
        ),
        Function(
            "count",
            (Param("event", "event"),),
            "number",
            "How many events of a type the lead has, optionally in a window, for a step or matching a filter on `event.` properties.",
            kwargs={"within": "duration", "where": "bool", "step": "step"},
            example="count(click, within=30d) >= 3",
        ),
        Function(
            "occurred",
            (Param("event", "event"),),
            "bool",
            "The lead has at least one event of the type (in the window, matching the filter).",
            kwargs={"within": "duration", "where": "bool"},
            example='occurred("meeting_booked", within=14d)',
        ),
        Function(
            "days_since",
            (Param("event", "event"),),
            "number",
            "Days since the lead's latest event of the type; null when it never happened.",
            example="days_since(click) > 60",
        ),
        Function(
            "days_until",
            (Param("date", "date"),),
            "number",
            "Days from now until a date.",
            example="days_until(lead.renewal_date) <= 30",
        ),
        Function(
            "in_list",
            (Param("list", "list"),),
            "bool",
            "The lead is a member of the list.",
            example="in_list(product_a)",
        ),
        Function(
            "in_segment",
            (Param("segment", "segment"),),
            "bool",
            "The lead is in the segment now.",
            example="in_segment(engaged)",
        ),
        Function(
            "in_stage",
            (Param("stage", "stage"),),
            "bool",
            "The lead's stage is the given one.",
            example="in_stage(sql)",
        ),
        Function(
            "submitted",
            (Param("form", "form"),),
            "bool",
            "The lead submitted the form (in the window).",
            kwargs={"within": "duration"},
            example="submitted(contact_us)",
        ),
        Function(
            "viewed",
            (Param("document", "string"),),
            "bool",
            "The lead viewed a tracked document or page, read past `depth` and for at least `seconds`.",
            kwargs={"depth": "percent", "seconds": "number", "within": "duration"},
            example='viewed("pricing", depth=50%)',
        ),
        Function(
            "total",
            (Param("event", "event"), Param("property", "string")),
            "number",
            "The sum of a numeric event property, e.g. revenue from purchases.",
            kwargs={"within": "duration"},
            example='total("purchase", "amount", within=30d) > 100000',
        ),
        Function(
            "average",
            (Param("event", "event"), Param("property", "string")),
            "number",
            "The average of a numeric event property, e.g. average order value.",
            kwargs={"within": "duration"},
            example='average("purchase", "amount")',
        ),
        Function(
            "top",
            (Param("value", "number"), Param("share", "percent")),
            "bool",
            "The lead's value is in the top share of all leads (population-relative).",
            example='top(average("purchase", "amount"), 20%)',
        ),
        Function(
            "bottom",
            (Param("value", "number"), Param("share", "percent")),
            "bool",
            "The lead's value is in the bottom share of all leads.",
            example="bottom(lead.score, 10%)",
        ),
        Function(
            "recency_score",
            (Param("event", "event"),),
            "number",
            "RFM recency quintile, 5 for the most recent fifth of leads, 1 for the least.",
            example='recency_score("purchase") >= 4',
        ),
        Function(
            "frequency_score",
            (Param("event", "event"),),
            "number",
            "RFM frequency quintile of the event count, 1 to 5.",
            example='frequency_score("purchase") >= 4',
        ),
        Function(
            "monetary_score",
            (Param("event", "event"), Param("property", "string")),
            "number",
            "RFM monetary quintile of the summed property, 1 to 5.",
            example='monetary_score("purchase", "amount") >= 4',
        ),
        Function(
            "now", (), "date", "The current time (UTC).", example="lead.trial_ends < now() + 3d"
        ),
        Function(
            "today",
            (),
            "date",
            "The start of today in the lead's timezone.",
            example="lead.birthday == today()",
        ),
        Function(
            "lower",
            (Param("text", "string"),),
            "string",
            "The text in lower case.",
            example='lower(lead.country) == "kr"',
        ),
        Function(
            "length",
            (Param("value", "any"),),
            "number",
            "The length of a text or list.",
            example="length(lead.tags) > 0",
        ),
    ]
}
