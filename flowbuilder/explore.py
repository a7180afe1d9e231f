"""Reading leads, lists and segments for people: search and filters, a lead's whole story (events,
enrollments, emails, the why-trace of every decision), list growth and segment members.

Segment membership is evaluated with the interpreter's own condition evaluator on the leads'
facts, in chunks, so what the pages show is what flows see.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.store.facts import load_facts
from flowbuilder.store.schema import (
    DecisionRow,
    EnrollmentRow,
    Lead,
    ListRow,
    Membership,
    Outbox,
    SegmentMember,
)
from flowbuilder.store.schema import Event as EventRow

PAGE = 50
CHUNK = 500


@dataclass(frozen=True)
class LeadRow:
    id: int
    email: str
    name: str
    company: str
    stage: str | None
    score: float
    created_at: datetime
    unsubscribed: bool


@dataclass
class LeadPage:
    leads: list[LeadRow]
    total: int
    page: int
    pages: int


def _row(lead: Any) -> LeadRow:
    attributes = lead.attributes or {}
    return LeadRow(
        id=int(lead.id),
        email=lead.email,
        name=str(attributes.get("first_name") or attributes.get("name") or ""),
        company=str(attributes.get("company") or lead.account or ""),
        stage=lead.stage,
        score=float(lead.score or 0),
        created_at=lead.created_at,
        unsubscribed=bool(lead.unsubscribed),
    )


def segment_members(
    conn: Connection, ws: ir.Workspace, segment: str, now: datetime
) -> Iterator[int]:
    """The ids of the leads in a segment now, as the runtime keeps it."""
    yield from conn.execute(
        select(SegmentMember.lead_id)
        .where(SegmentMember.segment == segment)
        .order_by(SegmentMember.lead_id)
    ).scalars()


def search(
    conn: Connection,
    *,
    text: str = "",
    list_name: str | None = None,
    stage: str | None = None,
    segment: str | None = None,
    ws: ir.Workspace | None = None,
    now: datetime | None = None,
    page: int = 1,
) -> LeadPage:
    """Leads whose email, name or company holds `text`, on a list, at a stage, in a segment."""
    query = select(Lead)
    if text.strip():
        like = f"%{text.strip().lower()}%"
        query = query.where(
            or_(
                Lead.email.like(like),
                func.lower(cast(Lead.attributes, String)).like(like),
                func.lower(Lead.account).like(like),
            )
        )
    if list_name:
        query = query.where(
            Lead.id.in_(select(Membership.lead_id).where(Membership.list_name == list_name))
        )
    if stage:
        query = query.where(Lead.stage == stage)
    if segment:
        query = query.where(
            Lead.id.in_(select(SegmentMember.lead_id).where(SegmentMember.segment == segment))
        )
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    pages = max(1, -(-total // PAGE))
    page = min(max(page, 1), pages)
    rows = conn.execute(
        query.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(PAGE).offset((page - 1) * PAGE)
    ).all()
    return LeadPage([_row(r) for r in rows], int(total), page, pages)


def stages(conn: Connection) -> list[str]:
    return sorted(s for s in conn.execute(select(Lead.stage).distinct()).scalars() if s is not None)


@dataclass
class Story:
    """Everything about one lead."""

    lead: LeadRow
    attributes: dict[str, Any]
    timezone: str | None
    consent: str
    tags: list[str]
    lists: list[str]
    segments: list[str]
    events: list[dict[str, Any]]
    enrollments: list[dict[str, Any]]
    emails: list[dict[str, Any]]
    decisions: dict[int | None, list[dict[str, Any]]] = field(default_factory=dict)


def story(conn: Connection, lead_id: int, ws: ir.Workspace | None, now: datetime) -> Story | None:
    lead = conn.execute(select(Lead).where(Lead.id == lead_id)).first()
    if lead is None:
        return None
    facts = load_facts(conn, [lead_id], ws, now) if ws is not None else {}
    events = [
        {
            "at": e.at,
            "type": e.type,
            "flow": e.flow,
            "step": e.step,
            "properties": e.properties or {},
            "machine": e.machine,
        }
        for e in conn.execute(
            select(EventRow)
            .where(EventRow.lead_id == lead_id)
            .order_by(EventRow.at.desc(), EventRow.id.desc())
            .limit(300)
        ).all()
    ]
    enrollments = [
        {
            "id": e.id,
            "flow": e.flow,
            "step": e.step,
            "status": e.status,
            "entered_at": e.entered_at,
            "due_at": e.due_at,
            "waits_for": e.waits_for,
        }
        for e in conn.execute(
            select(EnrollmentRow)
            .where(EnrollmentRow.lead_id == lead_id)
            .order_by(EnrollmentRow.entered_at.desc())
        ).all()
    ]
    emails = [
        {
            "id": o.id,
            "key": o.key,
            "flow": o.flow,
            "step": o.step,
            "template": o.template,
            "variant": (o.payload or {}).get("variant"),
            "subject": getattr(o, "subject", None) or (o.payload or {}).get("subject"),
            "state": o.state,
            "created_at": o.created_at,
        }
        for o in conn.execute(
            select(Outbox)
            .where(Outbox.lead_id == lead_id, Outbox.channel == "email")
            .order_by(Outbox.created_at.desc(), Outbox.id.desc())
        ).all()
    ]
    decisions: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for d in conn.execute(
        select(DecisionRow)
        .where(DecisionRow.lead_id == lead_id)
        .order_by(DecisionRow.at, DecisionRow.id)
        .limit(2000)
    ).all():
        decisions[d.enrollment_id].append(
            {"at": d.at, "flow": d.flow, "step": d.step, "kind": d.kind, "reason": d.reason}
        )
    lists = sorted(
        conn.execute(select(Membership.list_name).where(Membership.lead_id == lead_id)).scalars()
    )
    mine = facts.get(lead_id)
    return Story(
        lead=_row(lead),
        attributes=dict(lead.attributes or {}),
        timezone=lead.timezone,
        consent=lead.consent,
        tags=list(lead.tags or []),
        lists=lists,
        segments=sorted(mine.segments) if mine else [],
        events=events,
        enrollments=enrollments,
        emails=emails,
        decisions=dict(decisions),
    )


# ---------------------------------------------------------------------------- lists and segments


@dataclass
class Group:
    """A list or a segment: how many leads, and how it grew per day."""

    kind: str
    name: str
    title: str
    members: int
    days: list[date] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)  # leads joined per day


def _growth(
    conn: Connection, name: Any, joined: Any, now: datetime, days: int
) -> tuple[list[date], dict[str, list[int]]]:
    """The last `days` days, and per group how many of its members joined on each."""
    start = (now - timedelta(days=days - 1)).date()
    day_list = [start + timedelta(days=i) for i in range(days)]
    growth: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    since = datetime.combine(start, datetime.min.time(), now.tzinfo)
    for group, at in conn.execute(select(name, joined).where(joined >= since)):
        index = (at.date() - start).days
        if 0 <= index < days:
            growth[group][index] += 1
    return day_list, growth


def lists_overview(
    conn: Connection, ws: ir.Workspace | None, now: datetime, days: int = 28
) -> list[Group]:
    names = set(conn.execute(select(ListRow.name)).scalars()) | set(ws.lists if ws else {})
    counts = dict(
        conn.execute(
            select(Membership.list_name, func.count()).group_by(Membership.list_name)
        ).all()
    )
    day_list, growth = _growth(conn, Membership.list_name, Membership.added_at, now, days)
    out = []
    for name in sorted(names):
        decl = ws.lists.get(name) if ws else None
        out.append(
            Group(
                "list",
                name,
                (decl.title if decl and decl.title else name),
                int(counts.get(name, 0)),
                day_list,
                growth[name],
            )
        )
    return out


def segments_overview(
    conn: Connection, ws: ir.Workspace | None, now: datetime, days: int = 28
) -> list[Group]:
    """Each segment's members now and how many joined per day (who is still in it)."""
    if ws is None or not ws.segments:
        return []
    counts = dict(
        conn.execute(
            select(SegmentMember.segment, func.count()).group_by(SegmentMember.segment)
        ).all()
    )
    day_list, growth = _growth(conn, SegmentMember.segment, SegmentMember.since, now, days)
    return [
        Group("segment", name, seg.title or name, int(counts.get(name, 0)), day_list, growth[name])
        for name, seg in sorted(ws.segments.items())
    ]
