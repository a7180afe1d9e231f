"""Where mail goes: an SMTP relay named by URL, and per-domain pacing.

>>> Relay.parse("smtps://user:secret@smtp.acme.example").port
465
>>> Relay.parse("smtp://smtp.acme.example:587").start_tls
True
>>> Relay.parse("smtp://127.0.0.1:2526").start_tls
False
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


class RelayError(ValueError):
    """A relay URL flowbuilder cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    use_tls: bool = False  # TLS from the first byte (smtps, port 465)
    start_tls: bool = False  # STARTTLS after EHLO
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True

    @classmethod
    def parse(cls, url: str) -> Relay:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise RelayError(f"relay `{url}`: use smtp://host:port or smtps://host:port")
        if not parts.hostname:
            raise RelayError(f"relay `{url}` names no host")
        tls = parts.scheme == "smtps"
        port = parts.port or (465 if tls else 587)
        query = parse_qs(parts.query)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        start = not tls and (query.get("starttls", ["no" if local else "yes"])[0] != "no")
        return cls(
            host=parts.hostname,
            port=port,
            use_tls=tls,
            start_tls=start,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            validate_certs=query.get("verify", ["yes"])[0] != "no",
        )

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class DomainBuckets:
    """A token bucket per recipient domain, slowed down by temporary failures (4xx).

    `reserve(domain)` takes a token and says how many seconds to wait for it; a 4xx halves the
    domain's rate and pauses it, each success gives a little rate back."""

    def __init__(self, rate: float, burst: float | None = None, clock: object = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = time.monotonic
        self._state: dict[str, list[float]] = {}  # domain → [tokens, updated, rate, paused_until]

    def _get(self, domain: str) -> list[float]:
        now = self._clock()
        s = self._state.get(domain)
        if s is None:
            s = self._state[domain] = [self.burst, now, self.rate, 0.0]
        tokens, updated, rate, _ = s
        s[0] = min(self.burst, tokens + (now - updated) * rate)
        s[1] = now
        return s

    def reserve(self, domain: str) -> float:
        s = self._get(domain)
        now = s[1]
        wait = max(0.0, s[3] - now)
        s[0] -= 1.0
        if s[0] < 0:
            wait = max(wait, -s[0] / s[2])
        return wait

    def slow_down(self, domain: str, seconds: float) -> None:
        s = self._get(domain)
        s[2] = max(self.rate / 64, s[2] / 2)
        s[3] = max(s[3], s[1] + seconds)

    def succeeded(self, domain: str) -> None:
        s = self._state.get(domain)
        if s is not None and s[2] < self.rate:
            s[2] = min(self.rate, s[2] + self.rate / 20)
