"""The web app on a real SQLite store: the example workspace loaded and published, a small demo
population that lived ten days, and a user. The store is built once per session and copied for
each test, so every test starts from the same state and may change it freely."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from flowbuilder import demo, drafts
from flowbuilder.config import Settings
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.schema import TextHistory
from flowbuilder.users import add_user
from web.app import create_app

EXAMPLES = Path(os.path.relpath(Path(__file__).resolve().parents[2] / "examples" / "acme"))
EMAIL = "ann@example.com"
PASSWORD = "correct horse battery"
DAYS = 10


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("web-template")
    file = folder / "web.db"
    engine = open_store(f"sqlite:///{file}")
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
    drafts.seed(engine, EXAMPLES, start)
    drafts.publish_drafts(engine, start)
    demo.run(engine, start, DAYS, size=40, seed=3)
    add_user(engine, EMAIL, PASSWORD, now, name="Ann")
    engine.dispose()  # the last connection to close folds the write-ahead log into the file
    return file


@dataclass
class Site:
    settings: Settings
    engine: Engine
    path: Path


@pytest.fixture
def site(template_db: Path, tmp_path: Path) -> Iterator[Site]:
    file = tmp_path / "web.db"
    shutil.copy(template_db, file)
    for suffix in ("-wal", "-shm"):
        if Path(f"{template_db}{suffix}").exists():
            shutil.copy(f"{template_db}{suffix}", f"{file}{suffix}")
    settings = Settings(
        database_url=f"sqlite:///{file}",
        data_dir=tmp_path,
        secret_key="test-secret-" + "x" * 32,
        workspace=EXAMPLES,
    )
    engine = open_store(settings.database_url)
    yield Site(settings, engine, file)
    engine.dispose()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.settings, site.engine), follow_redirects=False) as c:
        yield c


def csrf(client: TestClient) -> str:
    """The CSRF token of the client's cookie (a page visit sets it)."""
    token = client.cookies.get("csrftoken")
    if token is None:
        client.get("/login")
        token = client.cookies.get("csrftoken")
    assert token
    return str(token)


def sign_in(client: TestClient, email: str = EMAIL, password: str = PASSWORD) -> None:
    response = client.post(
        "/login", data={"email": email, "password": password, "csrftoken": csrf(client)}
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def user(client: TestClient) -> TestClient:
    """The client, signed in."""
    sign_in(client)
    return client


def post_json(client: TestClient, url: str, body: Any) -> Any:
    return client.post(url, json=body, headers={"x-csrftoken": csrf(client)})


def history_size(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(TextHistory)).scalar_one())


def text_of(engine: Engine, flow: str) -> str:
    with reading(engine) as conn:
        compilation = drafts.compile_drafts(conn)
        path = drafts.file_of_flow(compilation, flow)
        assert path is not None
        return drafts.texts(conn)[path]
