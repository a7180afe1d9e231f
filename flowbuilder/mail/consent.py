"""Consent records: who agreed (or withdrew), when, through which source, to which wording.

Advertising email (`class marketing` in a `marketing` flow) needs a current `marketing` consent
record; Korean advertising at night needs a `night` record as well. The sender checks at send
time, and the decision log of every message it sends names the record it relied on (`consent`
with its id, source and time), so "why did this person get this email" has an answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from flowbuilder.store.bulk import among
from flowbuilder.store.schema import ConsentRecord, Lead

SCOPES = ("marketing", "night")


@dataclass(frozen=True)
class Consent:
    id: int
    lead_id: int
    scope: str
    granted: bool
    who: str
    source: str
    wording: str
    at: datetime

    def cite(self) -> str:
        """How the decision log names this record."""
        verb = "granted" if self.granted else "withdrawn"
        return f"consent #{self.id} ({self.scope} {verb} by {self.who} via {self.source} at {self.at:%Y-%m-%d %H:%M} UTC)"


# The lengths of `consents.who` and `consents.source`.
WHO_MAX = 320
SOURCE_MAX = 255


def record_consent(
    conn: Connection,
    lead_id: int,
    *,
    scope: str,
    granted: bool,
    who: str,
    source: str,
    wording: str,
    at: datetime,
    now: datetime,
    evidence: dict[str, Any] | None = None,
) -> int:
    """Store one consent record and keep `leads.consent` (marketing scope) in step with it."""
    if scope not in SCOPES:
        raise ValueError(f"consent scope `{scope}` is not one of {', '.join(SCOPES)}")
    for name, value in (("who", who), ("source", source), ("wording", wording)):
        if not value.strip():
            raise ValueError(f"a consent record needs `{name}`")
    for name, value, limit in (("who", who, WHO_MAX), ("source", source, SOURCE_MAX)):
        if len(value) > limit:
            raise ValueError(
                f"a consent record's `{name}` holds at most {limit} characters, not {len(value)}"
            )
    consent_id = conn.execute(
        insert(ConsentRecord)
        .values(
            lead_id=lead_id,
            scope=scope,
            granted=granted,
            who=who,
            source=source,
            wording=wording,
            at=at,
            evidence=evidence or {},
            recorded_at=now,
        )
        .returning(ConsentRecord.id)
    ).scalar_one()
    if scope == "marketing":
        conn.execute(
            update(Lead)
            .where(Lead.id == lead_id)
            .values(consent="granted" if granted else "withdrawn", updated_at=now)
        )
    return int(consent_id)


def latest(conn: Connection, lead_ids: Iterable[int], scope: str) -> dict[int, Consent]:
    """The newest record of `scope` for each lead that has one."""
    ids = sorted(set(lead_ids))
    out: dict[int, Consent] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(
                ConsentRecord.id,
                ConsentRecord.lead_id,
                ConsentRecord.scope,
                ConsentRecord.granted,
                ConsentRecord.who,
                ConsentRecord.source,
                ConsentRecord.wording,
                ConsentRecord.at,
            )
            .where(
                among(conn, ConsentRecord.lead_id, ids[start : start + 500]),
                ConsentRecord.scope == scope,
            )
            .order_by(ConsentRecord.at, ConsentRecord.id)
        )
        for r in rows:  # the columns in `Consent`'s order
            out[r[1]] = Consent(*r)
    return out
