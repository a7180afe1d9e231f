"""What the law asks of every message: advertising marks, night-time holds, the sender footer.

- **Korean mode** (`region kr` in the workspace): an advertising (`class marketing`) subject starts
  with "(광고)" — added when the template does not start with it — and an advertising message is held
  between 21:00 and 08:00 in the lead's time zone unless the lead gave separate night consent.
- **The footer**: every message names its sender, postal address and contact, and carries the
  opt-out link. A template that prints them itself (its rendered HTML contains the postal address
  and the unsubscribe link) keeps its own footer; otherwise the standard one is added.

    >>> ad_subject("환영합니다", region="kr", message_class="marketing")
    '(광고) 환영합니다'
    >>> ad_subject("(광고) 환영합니다", region="kr", message_class="marketing")
    '(광고) 환영합니다'
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from markupsafe import Markup

from flowbuilder.mail.markup import body_end
from flowbuilder.mail.personalize import Identity

AD_MARK = "(광고)"
NIGHT_START = time(21, 0)
NIGHT_END = time(8, 0)


def is_ad(region: str | None, message_class: str) -> bool:
    return region == "kr" and message_class == "marketing"


def ad_subject(subject: str, *, region: str | None, message_class: str) -> str:
    if not is_ad(region, message_class) or subject.lstrip().startswith(AD_MARK):
        return subject
    return f"{AD_MARK} {subject}"


def night_hold_until(now: datetime, tz: str) -> datetime | None:
    """When a Korean advertising message held at night may go: 08:00 local; None in the day."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    if NIGHT_END <= local.time() < NIGHT_START:
        return None
    day = local.date() if local.time() < NIGHT_END else local.date() + timedelta(days=1)
    return datetime.combine(day, NIGHT_END, tzinfo=zone).astimezone(now.tzinfo)


def footer_html(who: Identity, unsubscribe_url: str, preferences_url: str, *, ad: bool) -> str:
    e = Markup.escape
    lines = []
    if ad:
        lines.append(f"{AD_MARK} 본 메일은 광고성 정보입니다.")
    identity = " · ".join(x for x in (who.sender_name, who.postal_address, who.contact) if x)
    lines.append(str(e(identity)))
    lines.append(
        f'<a href="{e(unsubscribe_url)}">Unsubscribe (수신거부)</a> · '
        f'<a href="{e(preferences_url)}">Email preferences</a>'
    )
    return '<hr><p style="font-size:12px;color:#666666">' + "<br>".join(lines) + "</p>"


def footer_text(who: Identity, unsubscribe_url: str, preferences_url: str, *, ad: bool) -> str:
    identity = " · ".join(x for x in (who.sender_name, who.postal_address, who.contact) if x)
    lines = ["", "--"]
    if ad:
        lines.append(f"{AD_MARK} 본 메일은 광고성 정보입니다.")
    lines += [
        identity,
        f"Unsubscribe (수신거부): {unsubscribe_url}",
        f"Preferences: {preferences_url}",
    ]
    return "\n".join(lines) + "\n"


def with_footer(
    html: str | None,
    text: str,
    who: Identity,
    unsubscribe_url: str,
    preferences_url: str,
    *,
    ad: bool,
) -> tuple[str | None, str]:
    """The parts with the standard footer added where the template did not print its own."""
    if html is not None and not _has_footer(html, who, unsubscribe_url, escaped=True):
        footer = footer_html(who, unsubscribe_url, preferences_url, ad=ad)
        at = body_end(html)
        html = html + footer if at is None else html[:at] + footer + html[at:]
    if not _has_footer(text, who, unsubscribe_url, escaped=False):
        text = text.rstrip("\n") + "\n" + footer_text(who, unsubscribe_url, preferences_url, ad=ad)
    return html, text


def _has_footer(part: str, who: Identity, unsubscribe_url: str, *, escaped: bool) -> bool:
    address = _escaped(who.postal_address) if escaped else who.postal_address
    url = str(Markup.escape(unsubscribe_url)) if escaped else unsubscribe_url
    return url in part and (not who.postal_address or address in part)


@lru_cache(maxsize=64)
def _escaped(text: str) -> str:
    return str(Markup.escape(text))
