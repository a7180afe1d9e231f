"""Where mail goes: an SMTP relay named by URL.

`smtp://user:pass@host:587` (STARTTLS, except to this host), `smtps://host:465` (TLS from the
first byte), and options after `?`, each `yes` or `no`: `starttls`, `verify` (the relay's
certificate), `pipelining` (RFC 2920, used when the relay announces it). A URL flowbuilder cannot
use raises `RelayError`, which shows the URL without its password.

>>> Relay.parse("smtps://user:secret@smtp.acme.example").port
465
>>> Relay.parse("smtp://smtp.acme.example:587").start_tls
True
>>> Relay.parse("smtp://127.0.0.1:2526").start_tls
False
>>> Relay.parse("smtp://relay.acme.example?pipelining=no").pipelining
False
>>> Relay.parse("smtp://user:secret@relay.acme.example?verify=false")
Traceback (most recent call last):
    ...
flowbuilder.mail.relay.RelayError: relay `smtp://user:***@relay.acme.example?verify=false`: verify=false: use yes or no
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

OPTIONS = ("starttls", "verify", "pipelining")


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
    pipelining: bool = True  # when the relay announces PIPELINING

    @classmethod
    def parse(cls, url: str) -> Relay:
        parts = urlsplit(url)
        shown = url
        if parts.password:
            shown = url.replace(f":{parts.password}@", ":***@", 1)

        def fail(why: str) -> RelayError:
            return RelayError(f"relay `{shown}`: {why}")

        if parts.scheme not in ("smtp", "smtps"):
            raise fail("use smtp://host:port or smtps://host:port")
        if not parts.hostname:
            raise fail("names no host")
        try:
            port = parts.port
        except ValueError:
            raise fail("the port is not a number from 0 to 65535") from None
        tls = parts.scheme == "smtps"
        options: dict[str, bool] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in OPTIONS:
                raise fail(f"unknown option `{name}`; the options are {', '.join(OPTIONS)}")
            if value not in ("yes", "no"):
                raise fail(f"{name}={value}: use yes or no")
            options[name] = value == "yes"
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        return cls(
            host=parts.hostname,
            port=port or (465 if tls else 587),
            use_tls=tls,
            start_tls=not tls and options.get("starttls", not local),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            validate_certs=options.get("verify", True),
            pipelining=options.get("pipelining", True),
        )

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"
