"""Importing a CSV file of leads: streamed, checked row by row, written in one transaction.

The file is read once to find its encoding (`flowbuilder.textfile`) and once to import it, a
chunk of rows at a time, so memory stays the same for a thousand rows or a million. Bad rows are
reported as they are met (`on_problem`) and the good ones are written; the whole import is one
transaction, so a file that cannot be imported (a bad header, a crash, Ctrl-C) leaves the store
as it was, and `dry_run` runs everything and rolls it back.

    >>> from flowbuilder.store.db import open_store
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "leads.csv").write_text("Email,First Name\\nann@example.com,Ann\\nbad,Bob\\n")
    >>> problems = []
    >>> report = import_csv(open_store(f"sqlite:///{folder}/fb.db"), folder / "leads.csv",
    ...                     on_problem=problems.append)
    >>> (report.created, report.rejected, problems[0].line)
    (1, 1, 3)
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError

from flowbuilder.leads_csv import (
    Column,
    Header,
    HeaderProblem,
    LeadRow,
    RowProblem,
    open_rows,
    sniff_delimiter,
)
from flowbuilder.store.imports import ImportSource, Written, first_new_id, write_rows
from flowbuilder.store.ingest import add_to_list
from flowbuilder.store.published import current
from flowbuilder.textfile import EncodingProblem, detect

CHUNK = 1000
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class ImportRefused(ValueError):
    """The file cannot be imported at all (unreadable, undecodable, a bad header): nothing was
    stored. Each problem says what and where."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImportOptions:
    mapping: Mapping[str, str] = field(default_factory=dict)  # header or `#3` → field, `-` skips
    to_list: str | None = None
    encoding: str | None = None  # None: detect
    delimiter: str | None = None  # None: from the header line
    defaults: Mapping[str, str] = field(default_factory=dict)  # attribute → value for empty cells
    consent_wording: str | None = None
    dry_run: bool = False
    chunk: int = CHUNK


@dataclass
class ImportReport:
    file: str
    encoding: str = ""
    delimiter: str = ","
    columns: tuple[Column, ...] = ()
    notices: list[str] = field(default_factory=list)
    rows: int = 0  # data rows read (after the header)
    blank: int = 0
    imported: int = 0  # rows whose values were written
    rejected: int = 0
    created: int = 0
    updated: int = 0
    merged: int = 0
    consents: int = 0
    suppressed: int = 0
    kept_unsubscribed: int = 0
    joined: int = 0
    dry_run: bool = False


Problem = Callable[[RowProblem], None]
Progress = Callable[[int, int, int], None]  # bytes read, file size, rows read


def import_csv(
    engine: Engine,
    path: Path,
    options: ImportOptions | None = None,
    *,
    on_problem: Problem = lambda p: None,
    on_header: Callable[[Header, ImportReport], None] = lambda h, r: None,
    on_progress: Progress = lambda done, size, rows: None,
    now: datetime | None = None,
) -> ImportReport:
    """Import `path` into the store; raises ImportRefused (nothing stored) for a file that cannot
    be imported, reports each bad row through `on_problem` and imports the others."""
    options = options or ImportOptions()
    now = now or datetime.now(UTC)
    report = ImportReport(file=str(path), dry_run=options.dry_run)
    try:
        raw = path.open("rb")
    except OSError as e:
        raise ImportRefused([f"cannot read {path}: {e.strerror or e}"]) from None
    with raw:
        size = path.stat().st_size
        try:
            encoding = detect(raw, options.encoding)
        except (EncodingProblem, ValueError) as e:
            raise ImportRefused([f"{path}: {e}"]) from None
        report.encoding = encoding.name
        text = io.TextIOWrapper(raw, encoding=encoding.codec, newline="", errors="strict")
        first = text.readline()
        report.delimiter = options.delimiter or sniff_delimiter(first)
        lines = itertools.chain([first], text)
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                _import(
                    conn,
                    lines,
                    path,
                    options,
                    report,
                    now,
                    on_problem,
                    on_header,
                    lambda rows: on_progress(raw.tell(), size, rows),
                )
            except UnicodeDecodeError as e:
                transaction.rollback()
                raise ImportRefused(
                    [
                        f"{path}: it stopped being {encoding.name} while it was read ({e.reason}); "
                        "did it change during the import?"
                    ]
                ) from None
            except BaseException:
                transaction.rollback()
                raise
            if options.dry_run:
                transaction.rollback()
            else:
                transaction.commit()
    on_progress(size, size, report.rows)
    return report


def _import(
    conn: Connection,
    lines: Iterator[str],
    path: Path,
    options: ImportOptions,
    report: ImportReport,
    now: datetime,
    on_problem: Problem,
    on_header: Callable[[Header, ImportReport], None],
    progress: Callable[[int], None],
) -> None:
    published = current(conn)
    attributes = published.ws.attributes if published is not None else {}
    declared = {name: a.type for name, a in attributes.items()}
    required = tuple(name for name, a in attributes.items() if a.required)
    try:
        rows = open_rows(
            lines,
            delimiter=report.delimiter,
            mapping=options.mapping,
            declared=declared,
            required=required,
            defaults=options.defaults,
            now=now,
        )
    except HeaderProblem as e:
        raise ImportRefused([f"{path}:1: {p}" for p in e.problems]) from None
    report.columns = rows.header.columns
    report.notices.extend(rows.header.notices)
    on_header(rows.header, report)
    source = ImportSource(path.name, options.consent_wording, required)
    first_id = first_new_id(conn)

    def problem(p: RowProblem) -> None:
        report.rejected += 1
        on_problem(p)

    chunk: list[LeadRow] = []
    reported = 0
    for item in rows:
        if isinstance(item, RowProblem):
            problem(item)
        else:
            chunk.append(item)
        if len(chunk) >= options.chunk:
            _flush(conn, chunk, now, first_id, source, options, report, problem)
            chunk = []
        if rows.counts.rows - reported >= options.chunk:  # a file of bad rows shows progress too
            reported = report.rows = rows.counts.rows
            progress(reported)
    _flush(conn, chunk, now, first_id, source, options, report, problem)
    report.rows, report.blank = rows.counts.rows, rows.counts.blank
    if rows.counts.unnamed:
        numbers = ", ".join(f"#{n}" for n in sorted(rows.counts.unnamed))
        report.notices.append(
            f"columns without a header hold values that were not imported ({numbers}); name them "
            "with --map '#N=name'"
        )


def _flush(
    conn: Connection,
    chunk: list[LeadRow],
    now: datetime,
    first_id: int,
    source: ImportSource,
    options: ImportOptions,
    report: ImportReport,
    problem: Problem,
) -> None:
    if not chunk:
        return
    try:
        with conn.begin_nested():
            written = _write(conn, chunk, now, first_id, source, options)
    except (IntegrityError, DataError):
        # The database refused something the checks let through (a concurrent insert of the same
        # email on PostgreSQL, a value it cannot store): find the rows, keep the others.
        written = Written()
        by_email: dict[str, list[LeadRow]] = {}
        for r in chunk:
            by_email.setdefault(r.lead.email, []).append(r)
        for group in by_email.values():
            try:
                with conn.begin_nested():
                    written.add(_write(conn, group, now, first_id, source, options))
            except (IntegrityError, DataError) as e:
                reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
                for r in group:
                    written.refused.append((r, f"the database refused this row: {reason}"))
    for r, why in written.refused:
        problem(RowProblem(r.line, r.row, why, r.cells))
    report.imported += len(chunk) - len(written.refused)
    report.created += written.created
    report.updated += written.updated
    report.merged += written.merged
    report.consents += written.consents
    report.suppressed += written.suppressed
    report.kept_unsubscribed += written.kept_unsubscribed
    report.joined += written.joined


def _write(
    conn: Connection,
    rows: list[LeadRow],
    now: datetime,
    first_id: int,
    source: ImportSource,
    options: ImportOptions,
) -> Written:
    written = write_rows(conn, rows, now, first_id=first_id, source=source)
    if options.to_list and written.emails:
        written.joined = add_to_list(
            conn, options.to_list, written.emails, now, f"import {source.file_name}"
        )
    return written
