"""Where mail goes: an SMTP relay named by URL, and per-domain pacing.

>>> Relay.parse("smtps://user:secret@smtp.acme.example").port
465
>>> Relay.parse("smtp://smtp.acme.example:587").start_tls
True
>>> Relay.parse("smtp://127.0.0.1:2526").start_tls
False
"""

from __future__ import annotations

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
