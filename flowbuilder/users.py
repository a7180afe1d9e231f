"""People who sign in to the web app, and the API keys of the event API.

Passwords are kept as argon2id hashes (argon2-cffi's defaults, rehashed when those change); API keys
as the sha256 of the key, which is shown once when it is made.

    >>> validate_password("short")
    'a password needs at least 10 characters; this one has 5'
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection

from flowbuilder.intake import normalize_email
from flowbuilder.store.db import reading
from flowbuilder.store.schema import ApiKey, User

MIN_PASSWORD = 10
KEY_PREFIX = "fbk_"
_hasher = PasswordHasher()
# Verifying against this when the email is unknown keeps a wrong email as slow as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    name: str


def validate_password(password: str) -> str | None:
    """What is wrong with a new password, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters; this one has {len(password)}"
    if password.strip() != password:
        return "a password cannot start or end with a space"
    return None


def add_user(engine: Engine, email: str, password: str, now: datetime, name: str = "") -> Account:
    """Create a user; refuses a malformed or taken email and a weak password."""
    try:
        address = normalize_email(email)
    except ValueError as e:
        raise UserError(str(e)) from None
    problem = validate_password(password)
    if problem:
        raise UserError(problem)
    with engine.begin() as conn:
        if conn.execute(select(User.id).where(User.email == address)).first():
            raise UserError(f"there is already a user {address}")
        user_id = conn.execute(
            insert(User)
            .values(
                email=address,
                name=name.strip(),
                password_hash=_hasher.hash(password),
                active=True,
                created_at=now,
            )
            .returning(User.id)
        ).scalar_one()
    return Account(int(user_id), address, name.strip())


def set_password(engine: Engine, email: str, password: str) -> None:
    problem = validate_password(password)
    if problem:
        raise UserError(problem)
    address = normalize_email(email)
    with engine.begin() as conn:
        done = conn.execute(
            update(User).where(User.email == address).values(password_hash=_hasher.hash(password))
        )
        if not done.rowcount:
            raise UserError(f"there is no user {address}")


def authenticate(engine: Engine, email: str, password: str, now: datetime) -> Account | None:
    """The account when the email and password match an active user, else None."""
    try:
        address = normalize_email(email)
    except ValueError:
        address = email.strip().lower()
    with engine.begin() as conn:
        row = conn.execute(select(User).where(User.email == address, User.active)).first()
        if row is None:
            _verify(_DUMMY_HASH, password)
            return None
        if not _verify(row.password_hash, password):
            return None
        values: dict[str, object] = {"last_login_at": now}
        if _hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = _hasher.hash(password)
        conn.execute(update(User).where(User.id == row.id).values(**values))
    return Account(int(row.id), row.email, row.name)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def account(conn: Connection, user_id: int) -> Account | None:
    row = conn.execute(select(User).where(User.id == user_id, User.active)).first()
    return None if row is None else Account(int(row.id), row.email, row.name)


def users(conn: Connection) -> list[Account]:
    return [
        Account(int(r.id), r.email, r.name)
        for r in conn.execute(select(User).where(User.active).order_by(User.email))
    ]


# ---------------------------------------------------------------------------- API keys


@dataclass(frozen=True)
class Key:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_api_key(engine: Engine, name: str, now: datetime, created_by: str | None = None) -> str:
    """Make a key and return it; only its hash is kept, so this is the one time it is seen."""
    label = name.strip()
    if not label or len(label) > 128:
        raise UserError("an API key needs a name of 1 to 128 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(ApiKey).values(
                name=label,
                prefix=key[: len(KEY_PREFIX) + 6],
                key_hash=_digest(key),
                created_by=created_by,
                created_at=now,
            )
        )
    return key


# `last_used_at` is kept to the minute: every call writing it would make the key's row a hot spot
# that all concurrent calls with the key queue on, and cost each call a commit of its own.
LAST_USED_EVERY = timedelta(minutes=1)


def check_api_key(engine: Engine, key: str, now: datetime) -> int | None:
    """The id of the live key, else None; records when it was last used (to the minute)."""
    if not key.startswith(KEY_PREFIX):
        return None
    with reading(engine) as conn:
        row = conn.execute(
            select(ApiKey.id, ApiKey.last_used_at).where(
                ApiKey.key_hash == _digest(key), ApiKey.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        with engine.begin() as conn:
            conn.execute(
                update(ApiKey)
                .where(ApiKey.id == row.id)
                .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now))
                .values(last_used_at=now)
            )
    return int(row.id)


def api_keys(conn: Connection) -> list[Key]:
    return [
        Key(int(r.id), r.name, r.prefix, r.created_at, r.last_used_at, r.revoked_at)
        for r in conn.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
    ]


def revoke_api_key(engine: Engine, key_id: int, now: datetime) -> bool:
    with engine.begin() as conn:
        done = conn.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return bool(done.rowcount)
