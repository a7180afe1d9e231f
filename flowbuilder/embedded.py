"""The embedded default the web app starts on: one SQLite file under `.flowbuilder/`, the workspace
texts loaded from a folder, and — for a newcomer — the examples published with a demo population
that has lived a few weeks, and a demo login.

Everything here happens once per store: a second start finds the texts, the publication, the
population and the user already there and goes straight to serving.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

from flowbuilder import demo, drafts
from flowbuilder.store.db import reading
from flowbuilder.store.schema import Lead, Publication, User
from flowbuilder.users import add_user

DEMO_EMAIL = "demo@flowbuilder.example"
DEMO_DAYS = 28
DEMO_LEADS = 200


@dataclass(frozen=True)
class Login:
    email: str
    password: str


def embedded_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'web.db'}"


def prepare(
    engine: Engine,
    workspace: Path | None,
    now: datetime,
    *,
    with_demo: bool,
    progress: Callable[[str, float], None] | None = None,
) -> list[str]:
    """Load the workspace texts; with `with_demo`, publish them and let the demo population live
    DEMO_DAYS days up to today. Returns what was done, for the console."""
    done: list[str] = []
    if workspace is not None:
        added = drafts.seed(engine, workspace, now)
        if added:
            done.append(f"loaded {added} .flow files from {workspace}")
    if not with_demo:
        return done
    with reading(engine) as conn:
        published = conn.execute(select(func.count()).select_from(Publication)).scalar_one()
        leads = conn.execute(select(func.count()).select_from(Lead)).scalar_one()
    if published or leads:
        return done
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DEMO_DAYS)
    drafts.publish_drafts(engine, start)
    done.append("published the workspace")

    def lived(moment: datetime) -> None:
        if progress is not None:
            progress("demo population", min(1.0, (moment - start) / timedelta(days=DEMO_DAYS)))

    demo.run(engine, start, DEMO_DAYS, DEMO_LEADS, 7, lived)
    done.append(f"{DEMO_LEADS} demo leads lived {DEMO_DAYS} days")
    return done


def demo_login(engine: Engine, data_dir: Path, now: datetime) -> Login:
    """The demo user, made on first use with a random password kept (owner-only) in `data_dir`."""
    file = data_dir / "demo-login"
    with reading(engine) as conn:
        exists = conn.execute(select(User.id).where(User.email == DEMO_EMAIL)).first()
    if exists and file.exists():
        return Login(DEMO_EMAIL, file.read_text(encoding="utf-8").strip())
    password = secrets.token_urlsafe(12)
    if exists:
        from flowbuilder.users import set_password

        set_password(engine, DEMO_EMAIL, password)
    else:
        add_user(engine, DEMO_EMAIL, password, now, name="Demo marketer")
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return Login(DEMO_EMAIL, password)
