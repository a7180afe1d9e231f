"""The tables: leads, their append-only events, lists, published flow versions, enrollments, the
outbox, suppressions and the decision log.

The same models serve SQLite (the default) and PostgreSQL; `migrations/` creates them with Alembic.
JSON columns hold what the interpreter reads as mappings (attributes, event properties, context).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite stores integer primary keys as INTEGER (rowid aliases); PostgreSQL as BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; use UTC")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the stored text; one parse instead of SQLAlchemy's and then ours.
        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        Index(
            "ix_leads_rules_due",
            "rules_due_at",
            sqlite_where=text("rules_due_at IS NOT NULL"),
            postgresql_where=text("rules_due_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized: see leads.normalize
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(255), index=True)
    stage: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    consent: Mapped[str] = mapped_column(String(16), default="unknown")  # granted/unknown/withdrawn
    unsubscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When the lead's rules (stage, score, lists, segments) are to be looked at again: now after
    # an import or an attribute change, later when a window slides or the score decays.
    rules_due_at: Mapped[datetime | None]


class Event(Base):
    """Append-only facts. `pending` marks events the runtime has not yet matched to triggers."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_lead_at", "lead_id", "at"),
        Index(
            "ix_events_pending",
            "id",
            sqlite_where=text("pending"),
            postgresql_where=text("pending"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow: Mapped[str | None] = mapped_column(String(128))
    step: Mapped[str | None] = mapped_column(String(128))
    message_key: Mapped[str | None] = mapped_column(String(255))
    machine: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    received_at: Mapped[datetime]
    pending: Mapped[bool] = mapped_column(Boolean, default=True)


# The condition pending events are looked up by: the very term of `ix_events_pending` (`WHERE
# pending`). SQLite uses a partial index only for a query that says that term, and SQLAlchemy
# writes the boolean column `Event.pending` in a WHERE as `pending = 1` there, which scans the
# whole events table. Select from `Event` with it (the text names no table of its own).
PENDING_EVENTS = text("events.pending")


class ListRow(Base):
    __tablename__ = "lists"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="manual")
    created_at: Mapped[datetime]


class Membership(Base):
    __tablename__ = "memberships"

    list_name: Mapped[str] = mapped_column(ForeignKey("lists.name"), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), primary_key=True, index=True)
    added_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)


class Publication(Base):
    """One `flowbuilder publish`: the whole workspace as compiled then (settings, segments, …)."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_ir: Mapped[dict[str, Any]]
    hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime]


class FlowVersion(Base):
    __tablename__ = "flow_versions"
    __table_args__ = (UniqueConstraint("flow", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    flow: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id"))
    text: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(String(1024))
    ir: Mapped[dict[str, Any]]
    hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime]


class EnrollmentRow(Base):
    """A lead's place in a flow. At most one active enrollment per lead and flow."""

    __tablename__ = "enrollments"
    __table_args__ = (
        Index(
            "ix_enrollments_due",
            "due_at",
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index(
            "ux_enrollments_active",
            "lead_id",
            "flow",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_enrollments_lead", "lead_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    flow: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(ForeignKey("flow_versions.id"))
    step: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="active")
    entered_at: Mapped[datetime]
    step_entered_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    waiting_for_facts: Mapped[bool] = mapped_column(Boolean, default=False)
    waits_for: Mapped[str | None] = mapped_column(Text)  # the Hold reason: what it waits for
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    advanced: Mapped[int] = mapped_column(Integer, default=0)  # decide() passes that changed it
    updated_at: Mapped[datetime]


class Outbox(Base):
    """What to send, written in the same transaction as the decision; the sender drains it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state", "state", "created_at"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    flow: Mapped[str] = mapped_column(String(128))
    step: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16), default="email")  # email / webhook
    template: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Delivery (flowbuilder.mail): every column below is nullable or has a server default, so the
    # engine's bulk inserts of new rows stay as they are.
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    links: Mapped[list[Any] | None] = mapped_column(JSON)  # the URLs a click may redirect to
    next_attempt_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]  # a sender's claim; expired leases are taken over
    data_started_at: Mapped[datetime | None]  # the payload began going out: delivery may be done
    sent_at: Mapped[datetime | None]
    relay: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DomainPace(Base):
    """How fast every sender of the store may send to one recipient domain (`mail.pace`): the
    time of the domain's next free slot, the lowered rate a temporary failure (4xx) left, and
    until when the domain is paused. Times are seconds since the epoch."""

    __tablename__ = "domain_paces"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_slot: Mapped[float] = mapped_column(Float)
    rate: Mapped[float | None] = mapped_column(Float)  # lowered by a 4xx; None: the configured rate
    paused_until: Mapped[float] = mapped_column(Float)


class RateLimitRow(Base):
    """A shared rate limit's time for one key (`store.limits`): the key is a SHA-256 digest of
    the limit's name and what it counts by; the time, seconds since the epoch, is when the key's
    next hit would fit in a limit that has no burst left."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tat: Mapped[float] = mapped_column(Float)


class Suppression(Base):
    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class DecisionRow(Base):
    """The why-trace: every decision with the conditions and values that made it."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_lead", "lead_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    flow: Mapped[str | None] = mapped_column(String(128))  # None: the workspace's lead rules
    step: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime]


class Clock(Base):
    """Named timestamps of the runtime's periodic passes (the last time-trigger scan …)."""

    __tablename__ = "clocks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime]
    value: Mapped[str | None] = mapped_column(Text)  # what the pass worked from (a rules hash)


# ---------------------------------------------------------------------------- lead lifecycle (0004)


class SegmentMember(Base):
    """A lead in a segment, since when and why; kept by the runtime as the segment's rule says."""

    __tablename__ = "segment_members"

    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), primary_key=True, index=True)
    since: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)


class PopulationRow(Base):
    """Every lead's value of one population measure, sorted: what `top()` and RFM scores rank by."""

    __tablename__ = "populations"

    measure: Mapped[str] = mapped_column(String(512), primary_key=True)
    values: Mapped[list[Any]] = mapped_column(default=list)
    computed_at: Mapped[datetime]


# ---------------------------------------------------------------------------- email (0002_mail)


class CapturedMessage(Base):
    """A message the built-in SMTP sink received instead of a relay: the bytes as sent."""

    __tablename__ = "captured_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_tos: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    captured_at: Mapped[datetime]


class ConsentRecord(Base):
    """Proof of consent: who gave or withdrew it, when, from which source and with which wording.

    `scope` is `marketing` (advertising email at all) or `night` (advertising between 21:00 and
    08:00 local time, which Korean law asks for separately)."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_lead", "lead_id", "scope", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    scope: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    who: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(255))
    wording: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recorded_at: Mapped[datetime]


class Preference(Base):
    """What a reader chose in the preference center: topics left, how often, and why."""

    __tablename__ = "preferences"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), primary_key=True)
    topics_off: Mapped[list[Any]] = mapped_column(default=list)
    frequency: Mapped[str] = mapped_column(String(16), default="all")  # all / weekly / monthly
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class InboundMessage(Base):
    """Mail received on the VERP / reply domain, with what it was found to be."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # bounce / complaint / reply / auto_reply / …
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]


# ============================================================================ the web app


class User(Base):
    """A person who signs in to the web app; the password is kept as an argon2 hash only."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized like lead emails
    name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key for the event API (`/v1/…`); only its sha256 is stored, the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a key
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WorkspaceFile(Base):
    """A .flow text of the workspace as the web app edits it (a draft until published).

    `position` is the `seq` of the history entry it shows: undo moves it back, redo forward."""

    __tablename__ = "workspace_files"

    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    revision: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_by: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime]


class TextHistory(Base):
    """Every text a workspace file has had, in order, with what changed it (for undo / redo)."""

    __tablename__ = "text_history"
    __table_args__ = (UniqueConstraint("path", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    path: Mapped[str] = mapped_column(ForeignKey("workspace_files.path"))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    revision: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(320))
    at: Mapped[datetime]


# ============================================================================ pulse (0005_pulse)


class DocumentView(Base):
    """A view of a tracked document or page, from the tracked link's redirect until it closes.

    Heartbeats from the page raise `max_depth` (percent of the page read, 0–100) and `seconds`
    (time the page was visible); the final beacon or 30 minutes of silence close it, and closing
    records one `view` event."""

    __tablename__ = "document_views"
    __table_args__ = (
        Index("ix_document_views_lead", "lead_id"),
        Index(
            "ix_document_views_open",
            "last_beat_at",
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))
    document: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    message_key: Mapped[str | None] = mapped_column(String(255))  # the email the link was in
    started_at: Mapped[datetime]
    last_beat_at: Mapped[datetime]
    beats: Mapped[int] = mapped_column(Integer, default=0)
    max_depth: Mapped[float] = mapped_column(Float, default=0.0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(16))  # beacon / silence


# ============================================================================ templates (0006_templates)


class TemplateText(Base):
    """The text of a template file, stored once however many publications use it."""

    __tablename__ = "template_texts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class PublishedTemplate(Base):
    """A template file (a part, a layout, a partial) as a publication has it: the sender renders
    these, never the files on disk, so a message is what was published."""

    __tablename__ = "publication_templates"

    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)  # as templates name it
    sha256: Mapped[str] = mapped_column(ForeignKey("template_texts.sha256"))
