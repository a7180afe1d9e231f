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


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "state")
    first = s.secret()
    assert len(first) >= 48
    assert Settings(data_dir=tmp_path / "state").secret() == first
    mode = (tmp_path / "state" / "secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert Settings(data_dir=tmp_path, secret_key="given").secret() == "given"
