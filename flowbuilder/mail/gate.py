"""The checks made when a message is about to leave, not only when the flow decided to send it.

In this order: the address is suppressed (hard bounce, complaint, `suppress` step) → held; the lead
unsubscribed (any class but transactional) → held; the reader left the template's topic in the
preference center → held; advertising in a `marketing` flow without a marketing consent record →
held; the reader asked for fewer emails (weekly / monthly) and had one within that period →
deferred; Korean advertising at night without night consent → deferred to 08:00 local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dsl import ir
from flowbuilder.mail import compliance
from flowbuilder.mail.consent import Consent

FREQUENCIES = {"all": None, "weekly": timedelta(days=7), "monthly": timedelta(days=30)}


@dataclass(frozen=True)
class Recipient:
    """What the gate needs to know about the lead behind one message."""

    email: str
    timezone: str | None
    unsubscribed: bool
    suppressed: str | None  # the suppression reason
    topics_off: frozenset[str] = frozenset()
    frequency: str = "all"
    last_marketing_at: datetime | None = None
    marketing_consent: Consent | None = None
    night_consent: Consent | None = None


@dataclass(frozen=True)
class Verdict:
    """`send` (with the consent relied on, if any), `hold` (never sent) or `defer` (later)."""

    action: str
    reason: str
    until: datetime | None = None
    consent: Consent | None = None


def judge(
    template: ir.Template,
    flow_kind: str,
    ws: ir.Workspace,
    who: Recipient,
    now: datetime,
    *,
    test: bool = False,
) -> Verdict:
    if test:
        return Verdict("send", "test message: sent to the address given, outside every rule")
    marketing = template.message_class == "marketing"
    if who.suppressed is not None:
        return Verdict("hold", f"the address is suppressed ({who.suppressed})")
    if who.unsubscribed and flow_kind != "transactional" and marketing:
        return Verdict("hold", "the lead unsubscribed")
    if marketing and template.topic and template.topic in who.topics_off:
        return Verdict(
            "hold", f"the reader left the topic `{template.topic}` in the preference center"
        )
    consent = who.marketing_consent
    if marketing and flow_kind == "marketing":
        if consent is None:
            return Verdict(
                "hold",
                "no marketing consent record (who, when, source, wording) for this lead; "
                "record one with `flowbuilder consent`",
            )
        if not consent.granted:
            return Verdict("hold", f"marketing consent was withdrawn: {consent.cite()}")
    period = FREQUENCIES.get(who.frequency)
    if marketing and period is not None and who.last_marketing_at is not None:
        allowed = who.last_marketing_at + period
        if allowed > now:
            return Verdict(
                "defer",
                f"the reader asked for {who.frequency} email; next at {allowed:%Y-%m-%d %H:%M} UTC",
                until=allowed,
            )
    if compliance.is_ad(ws.policy.region, template.message_class):
        night = who.night_consent
        if night is None or not night.granted:
            tz = who.timezone or ws.policy.timezone or "Asia/Seoul"
            until = compliance.night_hold_until(now, tz)
            if until is not None:
                return Verdict(
                    "defer",
                    f"advertising is held between 21:00 and 08:00 ({tz}) without night consent; "
                    f"sending at {until:%Y-%m-%d %H:%M} UTC",
                    until=until,
                )
    basis = (
        consent.cite()
        if consent is not None and consent.granted
        else f"no consent needed: {template.message_class} mail in a {flow_kind} flow"
    )
    return Verdict(
        "send", basis, consent=consent if consent is not None and consent.granted else None
    )
