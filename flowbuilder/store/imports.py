"""Imported rows into the store, a chunk at a time, inside the import's one transaction.

Rows with the same normalized email are one lead: in file order, later values win and empty
cells change nothing, whether the earlier row is in this chunk, an earlier chunk or the store.
Without holding the file's emails in memory, a lead met again is told apart from one that was
there before the import by its id (ids from `first_new_id` on were created by this import) and its
`updated_at` (the import's own moment once it has been merged). Every row that says yes or no to
consent leaves a consent record naming the file and the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from flowbuilder.intake import LeadIn
from flowbuilder.leads_csv import LeadRow
from flowbuilder.store.bulk import among, insert_rows, update_rows
from flowbuilder.store.schema import ConsentRecord, Lead, Suppression
from flowbuilder.store.writes import insert_ignoring

UNKNOWN_WORDING = "(the import did not say which wording was agreed to)"
LEADS: Table = Lead.__table__  # type: ignore[assignment]
CONSENTS: Table = ConsentRecord.__table__  # type: ignore[assignment]
SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ImportSource:
    """Where the rows come from, for consent records and list reasons."""

    file_name: str
    wording: str | None = None  # consent wording for rows without a wording column
    required: tuple[str, ...] = ()  # attributes every new lead must have

    @property
    def source(self) -> str:
        return f"import:{self.file_name}"[:255]


@dataclass
class Written:
    created: int = 0
    updated: int = 0  # leads that were in the store before the import
    merged: int = 0  # rows folded into an earlier row of the file with the same email
    consents: int = 0
    suppressed: int = 0
    kept_unsubscribed: int = 0  # rows saying yes for a lead who unsubscribed: consent not changed
    joined: int = 0  # leads new to the import's list
    emails: list[str] = field(default_factory=list)  # every lead written, once
    refused: list[tuple[LeadRow, str]] = field(default_factory=list)

    def add(self, other: Written) -> None:
        for name in (
            "created",
            "updated",
            "merged",
            "consents",
            "suppressed",
            "kept_unsubscribed",
            "joined",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.emails.extend(other.emails)
        self.refused.extend(other.refused)


def first_new_id(conn: Connection) -> int:
    """The id the import's first new lead will have at the least (read at the import's start)."""
    return int(conn.execute(select(func.coalesce(func.max(Lead.id), 0))).scalar_one()) + 1


def merge(first: LeadIn, later: LeadIn) -> LeadIn:
    """A later row for the same email fills and overrides what it has."""
    return LeadIn(
        email=first.email,
        attributes={**first.attributes, **later.attributes},
        timezone=later.timezone or first.timezone,
        account=later.account or first.account,
        stage=later.stage or first.stage,
        consent=later.consent or first.consent,
    )


def write_rows(
    conn: Connection,
    rows: Sequence[LeadRow],
    now: datetime,
    *,
    first_id: int,
    source: ImportSource,
) -> Written:
    """Merge checked rows into the store. A new lead without a required attribute is refused
    (reported with its first row); nothing else is refused here."""
    result = Written()
    groups: dict[str, list[LeadRow]] = {}
    for r in rows:
        groups.setdefault(r.lead.email, []).append(r)
    existing = {
        row.email: row
        for row in conn.execute(
            select(
                Lead.id,
                Lead.email,
                Lead.attributes,
                Lead.timezone,
                Lead.account,
                Lead.stage,
                Lead.consent,
                Lead.unsubscribed,
                Lead.updated_at,
            ).where(among(conn, Lead.email, list(groups)))
        )
    }
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    withdrawn: list[str] = []
    for email, group in groups.items():
        lead = group[0].lead
        for later in group[1:]:
            lead = merge(lead, later.lead)
        row = existing.get(email)
        if row is None:
            missing = [n for n in source.required if n not in lead.attributes]
            if missing:
                names = ", ".join(f"`{n}`" for n in missing)
                result.refused.append(
                    (group[0], f"{names} is required by the workspace and this new lead has none")
                )
                result.refused.extend(
                    (r, f"same email as row {group[0].row}, which was not imported")
                    for r in group[1:]
                )
                continue
            result.created += 1
            result.merged += len(group) - 1
            new.append(
                {
                    "email": email,
                    "attributes": dict(lead.attributes),
                    "timezone": lead.timezone,
                    "account": lead.account or email.rpartition("@")[2],
                    "stage": lead.stage,
                    "score": 0.0,
                    "tags": [],
                    "consent": lead.consent or "unknown",
                    "unsubscribed": lead.consent == "withdrawn",
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            seen_before = row.id >= first_id or row.updated_at == now
            result.merged += len(group) if seen_before else len(group) - 1
            result.updated += 0 if seen_before else 1
            consent = lead.consent or row.consent
            if row.unsubscribed and lead.consent == "granted":
                # An old export must not undo an unsubscribe: the reader's choice stands.
                result.kept_unsubscribed += sum(1 for r in group if r.lead.consent == "granted")
                consent = row.consent
            changed.append(
                {
                    "id": row.id,
                    "attributes": {**(row.attributes or {}), **lead.attributes},
                    "timezone": lead.timezone or row.timezone,
                    "account": lead.account or row.account,
                    "stage": lead.stage or row.stage,
                    "consent": consent,
                    "unsubscribed": bool(row.unsubscribed) or consent == "withdrawn",
                    "updated_at": now,
                }
            )
        if lead.consent == "withdrawn":
            withdrawn.append(email)
        result.emails.append(email)
    insert_rows(conn, LEADS, new)
    update_rows(conn, LEADS, changed)
    if withdrawn:
        insert_ignoring(
            conn,
            SUPPRESSIONS,
            [{"email": e, "reason": "consent withdrawn", "at": now} for e in withdrawn],
        )
        result.suppressed = len(withdrawn)
    _consents(conn, groups, existing, result, now, source)
    return result


def _consents(
    conn: Connection,
    groups: dict[str, list[LeadRow]],
    existing: dict[str, Any],
    result: Written,
    now: datetime,
    source: ImportSource,
) -> None:
    written = set(result.emails)
    wanted = [e for e, group in groups.items() if e in written and any(r.consents for r in group)]
    if not wanted:
        return
    ids = {e: existing[e].id for e in wanted if e in existing}
    missing = [e for e in wanted if e not in ids]
    if missing:
        ids.update(
            (row.email, row.id)
            for row in conn.execute(
                select(Lead.id, Lead.email).where(among(conn, Lead.email, missing))
            )
        )
    records = []
    for email in wanted:
        unsubscribed = email in existing and existing[email].unsubscribed
        for r in groups[email]:
            for c in r.consents:
                if unsubscribed and c.granted and c.scope == "marketing":
                    continue
                evidence: dict[str, Any] = {"file": source.file_name, "row": r.row, "line": r.line}
                if c.source:
                    evidence["source"] = c.source
                records.append(
                    {
                        "lead_id": ids[email],
                        "scope": c.scope,
                        "granted": c.granted,
                        "who": email,
                        "source": source.source,
                        "wording": c.wording or source.wording or UNKNOWN_WORDING,
                        "at": c.at or now,
                        "evidence": evidence,
                        "recorded_at": now,
                    }
                )
    insert_rows(conn, CONSENTS, records)
    result.consents += len(records)
