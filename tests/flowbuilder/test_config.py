from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flowbuilder.config import Settings, SettingsError


def test_settings_come_from_flowbuilder_variables() -> None:
    s = Settings.from_env({"FLOWBUILDER_PUBLIC_URL": "https://mail.acme.example/", "HOME": "/root"})
    assert s.public_url == "https://mail.acme.example"
    assert s.database_url.startswith("sqlite")


def test_a_bad_setting_names_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"FLOWBUILDER_PUBLIC_URL: .*http"):
        Settings.from_env({"FLOWBUILDER_PUBLIC_URL": "mail.acme.example"})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("smtp://mailer:hunter2@relay.acme.example?verify=false", "verify=false: use yes or no"),
        ("smtp://relay.acme.example?startls=no", "unknown option `startls`; the options are"),
        ("smtp://relay.acme.example:99999", "the port is not a number"),
        ("https://relay.acme.example", "use smtp://host:port or smtps://host:port"),
        ("smtp://:587", "names no host"),
    ],
)
def test_a_relay_url_flowbuilder_cannot_use_is_refused_without_its_password(
    url: str, why: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"FLOWBUILDER_SMTP_RELAY": url})
    message = str(caught.value)
    assert message.startswith("FLOWBUILDER_SMTP_RELAY: relay `") and why in message, message
    assert "hunter2" not in message


def test_relay_options() -> None:
    from flowbuilder.mail.relay import Relay

    relay = Relay.parse("smtp://relay.acme.example?pipelining=no&verify=no&starttls=yes")
    assert (relay.pipelining, relay.validate_certs, relay.start_tls) == (False, False, True)
    default = Relay.parse("smtp://relay.acme.example")
    assert (default.pipelining, default.validate_certs, default.start_tls) == (True, True, True)
    assert not Relay.parse("smtp://127.0.0.1:2526").start_tls


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "state")
    first = s.secret()
    assert len(first) >= 48
    assert Settings(data_dir=tmp_path / "state").secret() == first
    mode = (tmp_path / "state" / "secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert Settings(data_dir=tmp_path, secret_key="given").secret() == "given"
