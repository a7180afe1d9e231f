"""Settings of a flowbuilder installation, read from `FLOWBUILDER_*` environment variables.

Every setting has a default that works on a fresh machine: the store is `flowbuilder.db` in the
working folder, local state lives in `.flowbuilder/`, links in email point at the local web app,
and the signing secret is created once and kept in `.flowbuilder/secret`.

    >>> Settings.from_env({"FLOWBUILDER_PUBLIC_URL": "https://mail.acme.example/"}).public_url
    'https://mail.acme.example'
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowbuilder.store.db import DEFAULT_URL

PREFIX = "FLOWBUILDER_"


class SettingsError(ValueError):
    """A setting has a value flowbuilder cannot use; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = DEFAULT_URL
    data_dir: Path = Path(".flowbuilder")
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    # Email (docs/email.md). Without a relay, messages are captured by the built-in SMTP sink.
    smtp_relay: str | None = None  # smtp://user:pass@host:587 (STARTTLS), smtps://host:465 (TLS)
    smtp_connections: int = Field(default=4, ge=1, le=64)
    sink_listen: str = "127.0.0.1:2526"
    inbound_listen: str | None = None  # host:port of the bounce / reply receiver
    bounce_domain: str | None = None  # VERP Return-Path domain
    reply_domain: str | None = None  # Reply-To domain, and the mailto: unsubscribe domain
    dkim_key: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    workspace: Path | None = None  # the folder templates are read from (default: where published)
    send_rate_per_domain: float = Field(default=10.0, gt=0)  # messages per second per domain
    send_max_attempts: int = Field(default=8, ge=1)
    send_retry_seconds: float = Field(default=60.0, gt=0)  # first retry; doubles each time
    send_lease_seconds: float = Field(default=60.0, gt=0)
    unknown_policy: Literal["hold", "retry"] = "hold"  # when a relay drops after DATA
    # Workers (docs/operations.md): how long a claimed batch may sit idle in its transaction
    # before PostgreSQL ends the session and the rows go to another worker.
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    metrics_token: str | None = None  # when set, the web app's /metrics asks for it (Bearer)

    @field_validator("smtp_relay")
    @classmethod
    def _relay_url(cls, value: str | None) -> str | None:
        if value:
            from flowbuilder.mail.relay import Relay

            Relay.parse(value)  # a RelayError says what is wrong
        return value or None

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `FLOWBUILDER_<NAME>` variables; unknown names are ignored."""
        env = os.environ if environ is None else environ
        values = {
            name: env[PREFIX + name.upper()]
            for name in cls.model_fields
            if PREFIX + name.upper() in env
        }
        try:
            return cls.model_validate(values)
        except ValueError as e:
            raise SettingsError(_describe(e)) from None

    def secret(self) -> str:
        """The key that signs tokens and sessions: the setting, else one made once and kept."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret"
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # Written with owner-only permissions, atomically, so two processes agree on one key.
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text(encoding="utf-8").strip()


def _describe(error: ValueError) -> str:
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(
        f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )
