"""The published workspace: what the runtime runs, read back from `publications` and `flow_versions`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from dsl import ir
from flowbuilder.store.schema import FlowVersion, Publication


@dataclass(frozen=True)
class Published:
    publication_id: int
    ws: ir.Workspace
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)  # flow → (row id, number)
    hashes: dict[str, str] = field(default_factory=dict)


_cache: dict[tuple[str, int], Published] = {}


def current(conn: Connection) -> Published | None:
    """The newest publication with the newest version of each flow in it; None before the first.

    A publication never changes once stored, so each is read and validated once per process."""
    newest = conn.execute(select(func.max(Publication.id))).scalar()
    if newest is None:
        return None
    key = (str(conn.engine.url), int(newest))
    if key not in _cache:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = _load(conn, int(newest))
    return _cache[key]


def _load(conn: Connection, publication_id: int) -> Published:
    row = conn.execute(select(Publication).where(Publication.id == publication_id)).one()
    ws = ir.Workspace.model_validate(row.workspace_ir)
    newest = (
        select(FlowVersion.flow, func.max(FlowVersion.version).label("version"))
        .group_by(FlowVersion.flow)
        .subquery()
    )
    versions: dict[str, tuple[int, int]] = {}
    hashes: dict[str, str] = {}
    for v in conn.execute(
        select(FlowVersion.id, FlowVersion.flow, FlowVersion.version, FlowVersion.hash).join(
            newest,
            (FlowVersion.flow == newest.c.flow) & (FlowVersion.version == newest.c.version),
        )
    ):
        if v.flow in ws.flows:
            versions[v.flow] = (v.id, v.version)
            hashes[v.flow] = v.hash
    return Published(row.id, ws, versions, hashes)


def flow_at(conn: Connection, flow: str, version: int) -> ir.Flow | None:
    row = conn.execute(
        select(FlowVersion.ir).where(FlowVersion.flow == flow, FlowVersion.version == version)
    ).first()
    return None if row is None else ir.Flow.model_validate(row.ir)
