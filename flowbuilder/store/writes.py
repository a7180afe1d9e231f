"""Batched writes shared by the runtime passes: everything a batch decided goes in at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowbuilder.store.bulk import driver_value, insert_converted, insert_rows, update_rows
from flowbuilder.store.schema import (
    DecisionRow,
    EnrollmentRow,
    Lead,
    ListRow,
    Membership,
    Outbox,
    SegmentMember,
    Suppression,
)
from flowbuilder.store.schema import Event as EventRow


def insert_ignoring(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING: an existing key (an outbox idempotency key) wins."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database {conn.dialect.name}")


DECISION_COLUMNS = ("enrollment_id", "lead_id", "flow", "step", "kind", "reason", "data", "at")


@dataclass
class Batch:
    """Rows collected while deciding, written in bulk before the transaction commits."""

    now: datetime
    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    joins: list[dict[str, Any]] = field(default_factory=list)
    leaves: list[tuple[str, int]] = field(default_factory=list)
    lists: set[str] = field(default_factory=set)
    entries: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (row, reason)
    suppressions: dict[str, str] = field(default_factory=dict)  # email → reason
    segment_joins: list[dict[str, Any]] = field(default_factory=list)
    segment_leaves: list[tuple[str, int]] = field(default_factory=list)
    _iso: dict[datetime, str] = field(default_factory=dict)

    def iso(self, moment: datetime) -> str:
        """`moment.isoformat()`, once per moment: a batch's decisions share a few moments."""
        text = self._iso.get(moment)
        if text is None:
            text = self._iso[moment] = moment.isoformat()
        return text

    def lead_values(self, lead_id: int, **values: Any) -> None:
        """Columns of a lead to update when the batch is written (later values win)."""
        self.leads.setdefault(lead_id, {}).update(values)

    def decision(
        self,
        lead_id: int,
        enrollment_id: int | None,
        flow: str | None,
        step: str | None,
        kind: str,
        reason: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        # A tuple in DECISION_COLUMNS order: the decision log is the most written table.
        self.decisions.append((enrollment_id, lead_id, flow, step, kind, reason, data or {}))

    def event(
        self,
        lead_id: int,
        type_: str,
        at: datetime,
        properties: dict[str, Any],
        *,
        flow: str | None = None,
        step: str | None = None,
        message_key: str | None = None,
        pending: bool = True,
    ) -> None:
        self.events.append(
            {
                "lead_id": lead_id,
                "type": type_,
                "at": at,
                "properties": properties,
                "flow": flow,
                "step": step,
                "message_key": message_key,
                "machine": False,
                "idempotency_key": None,
                "received_at": self.now,
                "pending": pending,
            }
        )

    def write(self, conn: Connection) -> None:
        if self.entries:
            ids = conn.execute(
                insert(EnrollmentRow).returning(EnrollmentRow.id, sort_by_parameter_order=True),
                [row for row, _ in self.entries],
            ).scalars()
            for enrollment_id, (row, reason) in zip(ids, self.entries, strict=True):
                self.decision(
                    row["lead_id"], enrollment_id, row["flow"], row["step"], "enter", reason
                )
        update_rows(conn, EnrollmentRow.__table__, self.enrollments)  # type: ignore[arg-type]
        # Leads whose updates set the same columns go in one statement.
        same: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for lead_id, values in sorted(self.leads.items()):
            row = {**values, "updated_at": self.now, "id": lead_id}
            same.setdefault(tuple(sorted(row)), []).append(row)
        for rows in same.values():
            update_rows(conn, Lead.__table__, rows)  # type: ignore[arg-type]
        if self.lists:
            insert_ignoring(
                conn,
                ListRow.__table__,  # type: ignore[arg-type]
                [{"name": n, "kind": "rule", "created_at": self.now} for n in sorted(self.lists)],
            )
        insert_ignoring(conn, Membership.__table__, self.joins)  # type: ignore[arg-type]
        for name, lead_id in self.leaves:
            conn.execute(
                delete(Membership).where(
                    Membership.list_name == name, Membership.lead_id == lead_id
                )
            )
        insert_ignoring(conn, SegmentMember.__table__, self.segment_joins)  # type: ignore[arg-type]
        for name, lead_id in self.segment_leaves:
            conn.execute(
                delete(SegmentMember).where(
                    SegmentMember.segment == name, SegmentMember.lead_id == lead_id
                )
            )
        insert_ignoring(
            conn,
            Suppression.__table__,  # type: ignore[arg-type]
            [
                {"email": email, "reason": reason, "at": self.now}
                for email, reason in sorted(self.suppressions.items())
            ],
        )
        insert_rows(conn, Outbox.__table__, self.outbox, ignore_conflicts=True)  # type: ignore[arg-type]
        insert_rows(conn, EventRow.__table__, self.events)  # type: ignore[arg-type]
        table: Table = DecisionRow.__table__  # type: ignore[assignment]
        data, at = driver_value(conn, table, "data"), driver_value(conn, table, "at")(self.now)
        insert_converted(
            conn,
            table,
            DECISION_COLUMNS,
            [(*d[:6], data(d[6]), at) for d in self.decisions],
        )
