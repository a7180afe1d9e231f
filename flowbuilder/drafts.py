"""The workspace texts the web app edits, kept in the store with every text each file has had.

A file's history is a numbered list of texts; the file shows the entry at its `position`. An edit
drops the entries after the position (what could have been redone) and appends the new text; undo
and redo move the position. Every change names the revision it was made against: a stale one is
refused with `StaleRevisionError`, never merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from lark import Tree
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from dsl.compile import Compilation, compile_files, flow_files
from dsl.diagnostics import Diagnostic, StaleRevisionError
from dsl.edit import revision
from dsl.lint import lint
from dsl.parse import ParsedFile, parse_tree
from flowbuilder.publish import Plan, publish
from flowbuilder.store.db import reading
from flowbuilder.store.schema import TextHistory, WorkspaceFile

HISTORY_KEPT = 200
_FILE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def publish_drafts(engine: Engine, now: datetime, *, dry_run: bool = False) -> Published:
    """Publish the workspace texts (or, with `dry_run`, say what publishing would do); raises
    PublishRefused, storing nothing, when they have errors."""
    with reading(engine) as conn:
        compilation, findings = checked(texts(conn))
    return Published(
        publish(engine, compilation, findings, now, dry_run=dry_run), compilation, findings
    )


@dataclass(frozen=True)
class Published:
    plan: Plan
    compilation: Compilation
    findings: list[Diagnostic]


class DraftError(ValueError):
    """A change to the workspace texts that cannot be made; the message says why."""


@dataclass(frozen=True)
class Draft:
    path: str
    text: str
    revision: str
    undo: str | None  # the label of the change undo would take back
    redo: str | None  # the label of the change redo would make again


def seed(engine: Engine, folder: Path, now: datetime, author: str | None = None) -> int:
    """Load every .flow file under `folder` that the store does not have yet; returns how many."""
    added = 0
    with engine.begin() as conn:
        known = set(conn.execute(select(WorkspaceFile.path)).scalars())
        for file in flow_files([folder]):
            path = file.as_posix()
            if path in known:
                continue
            _create(
                conn, path, file.read_text(encoding="utf-8"), f"loaded from {file}", author, now
            )
            added += 1
    return added


def _create(
    conn: Connection, path: str, text: str, label: str, author: str | None, now: datetime
) -> None:
    rev = revision(text)
    conn.execute(
        insert(WorkspaceFile).values(
            path=path, text=text, revision=rev, position=0, updated_by=author, updated_at=now
        )
    )
    conn.execute(
        insert(TextHistory).values(
            path=path, seq=0, text=text, revision=rev, label=label, author=author, at=now
        )
    )


def texts(conn: Connection) -> dict[str, str]:
    """Every file's current text, by path."""
    return {
        r.path: r.text
        for r in conn.execute(
            select(WorkspaceFile.path, WorkspaceFile.text).order_by(WorkspaceFile.path)
        )
    }


def draft(conn: Connection, path: str) -> Draft:
    row = conn.execute(select(WorkspaceFile).where(WorkspaceFile.path == path)).first()
    if row is None:
        raise DraftError(f"there is no file {path} in the workspace")
    before = conn.execute(
        select(TextHistory.label)
        .where(TextHistory.path == path, TextHistory.seq == row.position)
        .limit(1)
    ).scalar()
    has_before = conn.execute(
        select(func.count())
        .select_from(TextHistory)
        .where(TextHistory.path == path, TextHistory.seq < row.position)
    ).scalar_one()
    after = conn.execute(
        select(TextHistory.label)
        .where(TextHistory.path == path, TextHistory.seq > row.position)
        .order_by(TextHistory.seq)
        .limit(1)
    ).scalar()
    return Draft(path, row.text, row.revision, before if has_before else None, after)


@lru_cache(maxsize=512)
def _parsed(path: str, rev: str, text: str) -> ParsedFile:
    return parse_tree(text, path)


def compile_texts(files: dict[str, str]) -> Compilation:
    """The workspace of these texts, compiled (each text is parsed once per revision)."""
    return compile_files([_parsed(p, revision(t), t) for p, t in sorted(files.items())])


def compile_drafts(conn: Connection) -> Compilation:
    return compile_texts(texts(conn))


def checked(files: dict[str, str]) -> tuple[Compilation, list[Diagnostic]]:
    """The workspace of these texts compiled and linted. The last few workspaces are kept, by
    their texts: the editor's page and its model, or an edit's answer and the next edit, read
    the same texts and compile them once. What is returned is shared: read it, change nothing."""
    compilation, findings = _checked(tuple(sorted(files.items())))
    return compilation, list(findings)


@lru_cache(maxsize=8)
def _checked(files: tuple[tuple[str, str], ...]) -> tuple[Compilation, tuple[Diagnostic, ...]]:
    compilation = compile_texts(dict(files))
    return compilation, tuple(lint(compilation))


def file_of_flow(compilation: Compilation, flow: str) -> str | None:
    """The path of the file that declares `flow` (also when the workspace has errors)."""
    for path, parsed in compilation.files.items():
        if parsed.tree is None:
            continue
        for decl in parsed.tree.children:
            if isinstance(decl, Tree) and decl.data == "flow" and str(decl.children[0]) == flow:
                return path
    return None


def _locked(conn: Connection, path: str, base: str) -> Row[Any]:
    row = conn.execute(
        select(WorkspaceFile).where(WorkspaceFile.path == path).with_for_update()
    ).first()
    if row is None:
        raise DraftError(f"there is no file {path} in the workspace")
    if row.revision != base:
        raise StaleRevisionError(expected=base, actual=row.revision)
    return row


def save(
    engine: Engine,
    path: str,
    base: str,
    text: str,
    label: str,
    author: str | None,
    now: datetime,
) -> Draft:
    """Make `text` the file's text, if the file is still at revision `base`."""
    with engine.begin() as conn:
        row = _locked(conn, path, base)
        new_rev = revision(text)
        if new_rev != row.revision:
            seq = row.position + 1
            conn.execute(
                delete(TextHistory).where(TextHistory.path == path, TextHistory.seq >= seq)
            )
            conn.execute(
                insert(TextHistory).values(
                    path=path,
                    seq=seq,
                    text=text,
                    revision=new_rev,
                    label=label,
                    author=author,
                    at=now,
                )
            )
            conn.execute(
                delete(TextHistory).where(
                    TextHistory.path == path, TextHistory.seq <= seq - HISTORY_KEPT
                )
            )
            conn.execute(
                update(WorkspaceFile)
                .where(WorkspaceFile.path == path)
                .values(
                    text=text, revision=new_rev, position=seq, updated_by=author, updated_at=now
                )
            )
        return draft(conn, path)


def _move(
    engine: Engine, path: str, base: str, author: str | None, now: datetime, back: bool
) -> Draft:
    with engine.begin() as conn:
        row = _locked(conn, path, base)
        seq_col = TextHistory.seq
        query = select(TextHistory).where(TextHistory.path == path)
        if back:
            query = query.where(seq_col < row.position).order_by(seq_col.desc())
        else:
            query = query.where(seq_col > row.position).order_by(seq_col)
        entry = conn.execute(query.limit(1)).first()
        if entry is None:
            raise DraftError("there is nothing to undo" if back else "there is nothing to redo")
        conn.execute(
            update(WorkspaceFile)
            .where(WorkspaceFile.path == path)
            .values(
                text=entry.text,
                revision=entry.revision,
                position=entry.seq,
                updated_by=author,
                updated_at=now,
            )
        )
        return draft(conn, path)


def undo(engine: Engine, path: str, base: str, author: str | None, now: datetime) -> Draft:
    """Go back to the text before the last change."""
    return _move(engine, path, base, author, now, back=True)


def redo(engine: Engine, path: str, base: str, author: str | None, now: datetime) -> Draft:
    """Make the change that was undone again."""
    return _move(engine, path, base, author, now, back=False)


def new_flow(engine: Engine, name: str, title: str, author: str | None, now: datetime) -> str:
    """A new file `<name>.flow` holding an empty flow; returns its path."""
    if not _FILE_NAME.match(name):
        raise DraftError(
            f"'{name}' is not a valid flow name; use lower-case letters, digits and _ "
            "(such as spring_promo), starting with a letter"
        )
    from dsl.parse import keywords

    if name in keywords():
        raise DraftError(f"'{name}' is a reserved word; choose another name, such as {name}_flow")
    title_text = title.strip() or name.replace("_", " ").capitalize()
    quoted = title_text.replace("\\", "\\\\").replace('"', '\\"')
    text = f'flow {name} "{quoted}" {{\n  done: end\n}}\n'
    with engine.begin() as conn:
        existing = texts(conn)
        folders = sorted({str(PurePosixPath(p).parent) for p in existing})
        path = str(PurePosixPath(folders[0] if len(folders) == 1 else ".") / f"{name}.flow")
        compilation = compile_texts(existing)
        if compilation.workspace is not None and name in compilation.workspace.flows:
            raise DraftError(f"there is already a flow '{name}'")
        if conn.execute(select(WorkspaceFile.path).where(WorkspaceFile.path == path)).first():
            raise DraftError(f"there is already a file {path}")
        _create(conn, path, text, f"created flow {name}", author, now)
    return path
