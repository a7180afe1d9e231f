"""Importing CSV files of leads into a real store (SQLite and PostgreSQL): merging with what is
stored, consent records, required attributes, dry runs, bad files, and nothing half-written."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from bench.intake import generate
from flowbuilder.intake import LeadIn
from flowbuilder.lead_import import ImportOptions, ImportRefused, ImportReport, import_csv
from flowbuilder.leads_csv import RowProblem
from flowbuilder.store.db import open_store, reading
from flowbuilder.store.ingest import upsert_leads
from flowbuilder.store.schema import ConsentRecord, Lead, Membership, Suppression
from tests.store.driver import publish_text, rows

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BEFORE = NOW - timedelta(days=3)  # when the leads already stored were stored
WORKSPACE = """
attribute source: string required "How the lead arrived"
attribute employees: number
attribute renewal_date: date
"""


def _import(
    store: Engine, path: Path, content: str | bytes, now: datetime = NOW, **options: Any
) -> tuple[ImportReport, list[RowProblem]]:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    problems: list[RowProblem] = []
    report = import_csv(store, path, ImportOptions(**options), on_problem=problems.append, now=now)
    return report, problems


def _leads(store: Engine) -> dict[str, Any]:
    with reading(store) as conn:
        return {r.email: r for r in conn.execute(select(Lead))}


def _count(store: Engine, table: Any) -> int:
    with reading(store) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_rows_merge_with_the_store_and_each_other_across_chunks(
    store: Engine, tmp_path: Path
) -> None:
    with store.begin() as conn:
        upsert_leads(
            conn, [LeadIn("ann@example.com", {"first_name": "Ann", "city": "Seoul"})], BEFORE
        )
    report, problems = _import(
        store,
        tmp_path / "leads.csv",
        "email,first_name,city,stage\n"
        "ANN@example.com,Annie,,\n"
        "bob@example.com,Bob,Busan,mql\n"
        "cy@example.com,Cy,,\n"
        "bob@example.com,,Daegu,\n"
        "ann@example.com,,Incheon,\n"
        "bad-address,,,\n",
        chunk=2,
        to_list="imported",
    )
    assert [p.line for p in problems] == [7]
    assert (report.created, report.updated, report.merged, report.rejected) == (2, 1, 2, 1)
    assert (report.imported, report.rows, report.joined) == (5, 6, 3)
    leads = _leads(store)
    assert leads["ann@example.com"].attributes == {"first_name": "Annie", "city": "Incheon"}
    assert leads["bob@example.com"].attributes == {"first_name": "Bob", "city": "Daegu"}
    assert (leads["bob@example.com"].stage, leads["bob@example.com"].account) == (
        "mql",
        "example.com",
    )
    assert _count(store, Membership) == 3
    assert rows(store, "SELECT count(*) FROM events WHERE type = 'list.entered'") == [(3,)]
    again, _ = _import(
        store,
        tmp_path / "leads.csv",
        "email\nann@example.com\n",
        now=NOW + timedelta(hours=1),
        to_list="imported",
    )
    assert (again.created, again.updated, again.joined) == (0, 1, 0)


def test_each_consenting_row_leaves_a_consent_record_and_a_no_suppresses(
    store: Engine, tmp_path: Path
) -> None:
    with store.begin() as conn:
        upsert_leads(conn, [LeadIn("gone@example.com", consent="withdrawn")], BEFORE)
    report, problems = _import(
        store,
        tmp_path / "webinar.csv",
        "email,consent,consent_date,consent_wording,consent_source\n"
        "ann@example.com,yes,2025-11-03,Send me the newsletter,webinar 11/3\n"
        "ann@example.com,yes,,,\n"
        "bob@example.com,no,2025-12-01,,\n"
        "cy@example.com,,,,\n"
        "gone@example.com,yes,,,\n",
        consent_wording="I agree to receive marketing email",
    )
    assert problems == []
    assert (report.consents, report.suppressed, report.kept_unsubscribed) == (3, 1, 1)
    with reading(store) as conn:
        records = list(conn.execute(select(ConsentRecord).order_by(ConsentRecord.id)))
    assert [(r.who, r.granted, r.source, r.wording, r.at) for r in records] == [
        (
            "ann@example.com",
            True,
            "import:webinar.csv",
            "Send me the newsletter",
            datetime(2025, 11, 3, tzinfo=UTC),
        ),
        ("ann@example.com", True, "import:webinar.csv", "I agree to receive marketing email", NOW),
        (
            "bob@example.com",
            False,
            "import:webinar.csv",
            "I agree to receive marketing email",
            datetime(2025, 12, 1, tzinfo=UTC),
        ),
    ]
    assert records[0].evidence == {
        "file": "webinar.csv",
        "row": 2,
        "line": 2,
        "source": "webinar 11/3",
    }
    leads = _leads(store)
    assert (leads["ann@example.com"].consent, leads["bob@example.com"].consent) == (
        "granted",
        "withdrawn",
    )
    assert leads["bob@example.com"].unsubscribed
    assert (leads["gone@example.com"].consent, leads["gone@example.com"].unsubscribed) == (
        "withdrawn",
        True,
    )
    with reading(store) as conn:
        suppressed = set(conn.execute(select(Suppression.email)).scalars())
    assert suppressed == {"bob@example.com", "gone@example.com"}


def test_the_published_workspace_types_cells_and_requires_its_required_attributes(
    store: Engine, tmp_path: Path
) -> None:
    publish_text(store, WORKSPACE, NOW)
    with pytest.raises(ImportRefused) as refused:
        _import(store, tmp_path / "a.csv", "email,employees\nann@example.com,3\n")
    assert refused.value.problems == [
        f"{tmp_path / 'a.csv'}:1: the workspace requires `source` on every lead (attribute "
        "source: string required) and the file has no `source` column; add one or give every "
        "lead a value with --set source=…"
    ]
    with store.begin() as conn:
        upsert_leads(conn, [LeadIn("old@example.com", {"source": "form"})], BEFORE)
    report, problems = _import(
        store,
        tmp_path / "b.csv",
        "email,source,employees,renewal_date,plan\n"
        'ann@example.com,referral,"1,200",2026.12.31,team\n'
        "bob@example.com,,12,,\n"
        "old@example.com,,12,,\n"
        "cy@example.com,api,many,,\n",
    )
    assert [(p.line, p.message) for p in problems] == [
        (5, "`employees`: `many` is not a number"),
        (3, "`source` is required by the workspace and this new lead has none"),
    ]
    assert (report.created, report.updated, report.imported) == (1, 1, 2)
    leads = _leads(store)
    assert leads["ann@example.com"].attributes == {
        "source": "referral",
        "employees": 1200,
        "renewal_date": "2026-12-31",
        "plan": "team",
    }
    assert leads["old@example.com"].attributes == {"source": "form", "employees": 12}
    report, _ = _import(
        store, tmp_path / "c.csv", "email\nbob@example.com\n", defaults={"source": "import"}
    )
    assert report.created == 1 and _leads(store)["bob@example.com"].attributes == {
        "source": "import"
    }


def test_a_file_with_every_kind_of_bad_row_imports_the_rest(store: Engine, tmp_path: Path) -> None:
    content = (
        "Email,Name,City\n"
        "ann@example.com,Ann,Seoul\n"
        "ann@@example.com,Broken,Seoul\n"  # a malformed address
        "bob@example.com,Bob\n"  # a ragged row: a cell short
        "cy@example.com,Cy,Busan,extra\n"  # a ragged row: a cell too many
        "ann@example.com,Ann,Seoul\n"  # a duplicate row
        ",Nobody,Daegu\n"  # no email
        'dee@example.com,"Dee\n'  # a quote never closed
        "eve@example.com,Eve,Ulsan\n"
    )
    report, problems = _import(store, tmp_path / "messy.csv", content.encode("cp949"))
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (3, "`ann@@example.com` is not an email address"),
        (4, "2 cells but the header has 3 columns; the row may be cut short"),
        (5, "4 cells but the header has 3 columns (extra"),
        (7, "the email is empty"),
        (8, "the row cannot be read as CSV"),
    ]
    assert (report.created, report.merged, report.rejected, report.encoding) == (
        1,
        1,
        5,
        "UTF-8",
    )
    assert set(_leads(store)) == {"ann@example.com"}


def test_a_dry_run_reports_everything_and_stores_nothing(store: Engine, tmp_path: Path) -> None:
    report, problems = _import(
        store,
        tmp_path / "leads.csv",
        "email,consent\nann@example.com,yes\nann@example.com,no\nbad,\n",
        dry_run=True,
        to_list="imported",
    )
    assert (report.created, report.merged, report.rejected, report.consents) == (1, 1, 1, 2)
    assert report.dry_run and len(problems) == 1
    for table in (Lead, ConsentRecord, Membership, Suppression):
        assert _count(store, table) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"email,name\nann@example.com,\xff\xfe\n", "decodes in none of the encodings tried"),
        (b"", "the file is empty"),
        (b"name,city\nAnn,Seoul\n", "no `email` column; the columns are `name`, `city`"),
        (b"email,email\na@b.co,c@d.co\n", "give the same field `email`"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_whole(
    store: Engine, tmp_path: Path, content: bytes, message: str
) -> None:
    with pytest.raises(ImportRefused, match=message):
        _import(store, tmp_path / "bad.csv", content)
    assert _count(store, Lead) == 0


def test_a_failure_after_some_chunks_leaves_nothing_behind(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "email,consent\n" + "".join(f"lead{i}@example.com,yes\n" for i in range(50)),
        encoding="utf-8",
    )
    seen: list[int] = []

    def crash(done: int, size: int, read: int) -> None:
        seen.append(read)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C half way through

    with pytest.raises(KeyboardInterrupt):
        import_csv(store, path, ImportOptions(chunk=10, to_list="l"), on_progress=crash, now=NOW)
    assert seen == [10, 20, 30]
    for table in (Lead, ConsentRecord, Membership):
        assert _count(store, table) == 0
    assert rows(store, "SELECT count(*) FROM events") == [(0,)]


def test_a_lead_another_writer_inserts_during_the_import_is_merged_not_lost(
    postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_url)
    try:
        path = tmp_path / "race.csv"
        path.write_text(
            "email,city\nann@example.com,Seoul\nrace@example.com,Busan\n", encoding="utf-8"
        )
        other = store.connect()
        writer = other.begin()
        upsert_leads(other, [LeadIn("race@example.com", {"plan": "team"})], NOW)
        result: dict[str, Any] = {}
        problems: list[RowProblem] = []

        def run() -> None:
            result["report"] = import_csv(store, path, on_problem=problems.append, now=NOW)

        importer = threading.Thread(target=run)
        importer.start()
        time.sleep(1.0)  # the import now waits on the uncommitted row's unique email
        writer.commit()
        other.close()
        importer.join(timeout=30)
        report = result["report"]
        assert problems == []
        assert (report.created, report.imported) == (1, 2)
        leads = _leads(store)
        assert leads["race@example.com"].attributes == {"plan": "team", "city": "Busan"}
        assert leads["ann@example.com"].attributes == {"city": "Seoul"}
    finally:
        store.dispose()


def test_memory_stays_flat_as_the_file_grows(tmp_path: Path) -> None:
    peaks = []
    for count in (1_000, 5_000):
        path = tmp_path / f"leads-{count}.csv"
        generate(path, count)
        store = open_store(f"sqlite:///{tmp_path}/m{count}.db")
        tracemalloc.start()
        report = import_csv(store, path, now=NOW)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        store.dispose()
        assert report.created + report.merged + report.rejected == count
    assert peaks[1] < peaks[0] * 2, peaks  # five times the rows, not twice the memory


CELLS = st.sampled_from(
    [
        "ann@example.com",
        "ANN@example.com ",
        "bob@example.co.kr",
        "not-an-email",
        "",
        " ",
        '"',
        '""',
        ",",
        "\n",
        "\r\n",
        "\x00",
        "\ufeff",
        "yes",
        "no",
        "maybe",
        "2025-01-01",
        "Asia/Seoul",
        "Mars/Olympus",
        "김철수",
        "-1",
        "1e999",
        "x" * 300,
    ]
)
HEADERS = st.sampled_from(
    [
        "email",
        "Email",
        "consent",
        "consent_date",
        "timezone",
        "account",
        "stage",
        "",
        "score",
        "회사명",
    ]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    header=st.lists(HEADERS, min_size=1, max_size=5),
    cells=st.lists(st.lists(CELLS, max_size=6), max_size=6),
    separator=st.sampled_from([",", ";"]),
    codec=st.sampled_from(["utf-8", "utf-8-sig", "cp949", "utf-16"]),
    junk=st.binary(max_size=40),
)
def test_no_file_crashes_the_importer_only_a_report(
    store: Engine,
    tmp_path: Path,
    header: list[str],
    cells: list[list[str]],
    separator: str,
    codec: str,
    junk: bytes,
) -> None:
    text = separator.join(header) + "\n" + "".join(separator.join(r) + "\n" for r in cells)
    encoded = text.encode(codec, errors="replace")
    for content in (encoded, junk, encoded + junk):
        try:
            report, problems = _import(store, tmp_path / "fuzz.csv", content, dry_run=True)
        except ImportRefused as refused:
            assert refused.problems and all(p for p in refused.problems)
            continue
        assert report.rejected == len(problems)
        assert all(p.message and p.line >= 2 for p in problems)
    assert _count(store, Lead) == 0


def test_files_of_random_bytes_are_refused_or_imported_in_part(
    store: Engine, tmp_path: Path
) -> None:
    """Many random files into one store: each is refused whole or its report adds up."""
    rng = random.Random(11)
    created = refused = 0
    for _ in range(30):
        content = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        try:
            report, problems = _import(store, tmp_path / "noise.csv", b"email\n" + content)
        except ImportRefused:
            refused += 1
            continue
        assert report.rejected == len(problems)
        created += report.created
    assert refused > 0
    assert _count(store, Lead) == created
