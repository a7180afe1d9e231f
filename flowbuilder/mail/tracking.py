"""Open pixels, click redirects and reader links, with signed tokens.

Every token is signed with the installation's secret (itsdangerous) and names an outbox row; a
click token also names the link's position in that message, and the redirect goes only to the URL
stored for that position — so a click can lead nowhere but to a link the message really had, and a
changed token is refused.

Machine opens and clicks — privacy proxies that fetch every image on delivery, security scanners
that follow every link — are recorded with `machine=True` and kept out of `opened()` / `clicked()`.
"""

from __future__ import annotations

import base64
import hmac
import html as html_lib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from itsdangerous import BadSignature, Signer

from flowbuilder.mail.markup import body_end

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')([^>]*>)""", re.I | re.S)
_DATA_LINK = re.compile(r"""\s+data-link\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)


class BadToken(ValueError):
    """A token that was not made by this installation, or was changed."""


@dataclass(frozen=True)
class Tokens:
    """Sign and read the tokens of tracking and reader links (`<payload>.<signature>`)."""

    secret: str

    def _s(self, salt: str) -> Signer:
        return _signer(self.secret, salt)

    def _sign(self, salt: str, payload: str) -> str:
        return f"{payload}.{_signature(_keyed(self.secret, salt), payload)}"

    def open(self, outbox_id: int) -> str:
        return self._sign("open", str(outbox_id))

    def click(self, outbox_id: int, index: int) -> str:
        return self._sign("click", f"{outbox_id}-{index}")

    def reader(self, outbox_id: int) -> str:
        """The token of unsubscribe and preference links (and of the mailto unsubscribe)."""
        return self._sign("reader", str(outbox_id))

    def read_open(self, token: str) -> int:
        return _int(self._load("open", token))

    def read_click(self, token: str) -> tuple[int, int]:
        ident, _, index = self._load("click", token).partition("-")
        return _int(ident), _int(index)

    def read_reader(self, token: str) -> int:
        return _int(self._load("reader", token))

    def _load(self, salt: str, token: str) -> str:
        try:
            return self._s(salt).unsign(token.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            raise BadToken(f"the {salt} token is not valid") from None


@lru_cache(maxsize=64)
def _signer(secret: str, salt: str) -> Signer:
    """Signers derive their key once; a message signs several tokens."""
    return Signer(secret, salt=f"flowbuilder.mail.{salt}", sep=".")


@lru_cache(maxsize=64)
def _keyed(secret: str, salt: str) -> hmac.HMAC:
    """An HMAC-SHA1 keyed with the signer's derived key, copied for each token."""
    return hmac.new(_signer(secret, salt).derive_key(), digestmod="sha1")


def _signature(keyed: hmac.HMAC, payload: str) -> str:
    """The signature itsdangerous's `Signer.sign` appends (HMAC-SHA1 of the payload with the
    signer's derived key, URL-safe base64 without padding). A message signs several tokens:
    copying a keyed HMAC skips the key setup, which costs more than the rest of a token."""
    mac = keyed.copy()
    mac.update(payload.encode("ascii"))
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def _int(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise BadToken("the token does not name a message")
    return int(value)


@dataclass(frozen=True)
class Urls:
    """The public URLs of the tracking routes (`web/tracking.py` serves them)."""

    base: str

    def open(self, token: str) -> str:
        return f"{self.base}/t/o/{token}.gif"

    def click(self, token: str) -> str:
        return f"{self.base}/t/c/{token}"

    def unsubscribe(self, token: str) -> str:
        return f"{self.base}/u/{token}"

    def preferences(self, token: str) -> str:
        return f"{self.base}/p/{token}"


@dataclass(frozen=True)
class Link:
    url: str
    name: str | None


def rewrite_links(
    html: str, click_url: Callable[[int], str], keep: Callable[[str], bool]
) -> tuple[str, list[Link]]:
    """Replace every http(s) link of `html` by its click URL; `keep(url)` links stay as they are
    (the unsubscribe and preference links). Returns the new HTML and the links in order; a link's
    name comes from its `data-link` attribute, which is removed."""
    links: list[Link] = []

    def replace(m: re.Match[str]) -> str:
        raw = m.group(2) if m.group(2) is not None else m.group(3)
        url = html_lib.unescape(raw).strip()
        rest = m.group(1) + "%s" + m.group(4)
        name_match = _DATA_LINK.search(rest)
        name = None
        if name_match is not None:
            name = name_match.group(1) if name_match.group(1) is not None else name_match.group(2)
            rest = rest[: name_match.start()] + rest[name_match.end() :]
        if not url.lower().startswith(("http://", "https://")) or keep(url):
            return rest % f'"{html_lib.escape(url)}"'
        links.append(Link(url, name))
        return rest % f'"{html_lib.escape(click_url(len(links) - 1))}"'

    return _HREF.sub(replace, html), links


def add_pixel(html: str, pixel_url: str) -> str:
    pixel = (
        f'<img src="{html_lib.escape(pixel_url)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">'
    )
    at = body_end(html)
    return html + pixel if at is None else html[:at] + pixel + html[at:]


# ---------------------------------------------------------------------------- machine opens

# Apple Mail Privacy Protection fetches images from Apple's network with a bare user agent. Gmail's
# and Yahoo's image proxies fetch when the reader opens the message, so they count as people.
_APPLE = ipaddress.ip_network("17.0.0.0/8")
_SCANNERS = re.compile(
    r"bot|crawler|spider|scanner|preview|python-requests|python-httpx|curl/|wget|go-http-client|"
    r"java/|okhttp|headless|barracuda|mimecast|proofpoint|symantec|forcepoint|trendmicro|"
    r"safelinks|microsoft office existence|ms-office|linkscanner|appengine-google",
    re.I,
)
# Fetches this soon after the message left are a scanner or a proxy, not a person reading it.
MACHINE_SECONDS = 10


def machine_reason(
    user_agent: str | None,
    ip: str | None,
    sent_at: datetime | None,
    at: datetime,
    method: str = "GET",
) -> str | None:
    """Why a fetch of a pixel or a click looks automated; None when it looks like a person.

    >>> from datetime import UTC, datetime, timedelta
    >>> now = datetime(2026, 3, 3, tzinfo=UTC)
    >>> machine_reason("Mozilla/5.0", "17.58.1.2", now - timedelta(hours=1), now)
    'Apple Mail Privacy Protection'
    >>> machine_reason("Mozilla/5.0 (Macintosh) Safari/605", "203.0.113.9", now - timedelta(hours=1), now) is None
    True
    """
    agent = (user_agent or "").strip()
    if method.upper() == "HEAD":
        return "a HEAD request"
    if not agent:
        return "no user agent"
    if ip:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is not None and address in _APPLE and agent == "Mozilla/5.0":
            return "Apple Mail Privacy Protection"
    if _SCANNERS.search(agent):
        return f"automated user agent `{agent[:60]}`"
    if sent_at is not None and 0 <= (at - sent_at).total_seconds() < MACHINE_SECONDS:
        return f"fetched within {MACHINE_SECONDS} s of sending"
    return None


def is_safe_redirect(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and "\n" not in url and "\r" not in url
