"""Validating what comes in: lead rows from CSV (header, cells, encodings) and events, with where and
why for every problem."""

from __future__ import annotations

import codecs
import doctest
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

import flowbuilder.intake
import flowbuilder.lead_import
import flowbuilder.leads_csv
import flowbuilder.pulse
import flowbuilder.textfile
from flowbuilder import textfile
from flowbuilder.intake import IntakeError, normalize_email, parse_event
from flowbuilder.leads_csv import (
    HeaderProblem,
    LeadRow,
    RowProblem,
    open_rows,
    sniff_delimiter,
    typed,
)
from flowbuilder.textfile import EncodingProblem, detect

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def read(text: str, **options: Any) -> tuple[list[LeadRow], list[RowProblem]]:
    rows = open_rows(io.StringIO(text, newline=""), now=NOW, **options)
    items = list(rows)
    return (
        [r for r in items if isinstance(r, LeadRow)],
        [r for r in items if isinstance(r, RowProblem)],
    )


def header_problems(text: str, **options: Any) -> list[str]:
    with pytest.raises(HeaderProblem) as e:
        open_rows(io.StringIO(text, newline=""), now=NOW, **options)
    return e.value.problems


def test_the_modules_examples_run() -> None:
    modules = (
        flowbuilder.intake,
        flowbuilder.leads_csv,
        flowbuilder.textfile,
        flowbuilder.lead_import,
        flowbuilder.pulse,
    )
    for module in modules:
        assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------------------- emails


def test_emails_are_normalized_for_dedupe() -> None:
    assert normalize_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"
    with pytest.raises(ValueError, match="not an email address"):
        normalize_email("ann.example.com")


def _validator(raw: str) -> str | None:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


ADDRESS_PARTS = st.sampled_from(
    ["a", "Z", "0", ".", "..", "-", "_", "+", "@", "'", "é", " ", "xn--", "(", '"', "!", "~"]
)
DOMAINS = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.co.kr",
        "xn--bcher-kva.example",
        "localhost",
        "x.local",
        "b.c1",
        "-x.com",
        "x-.com",
        "a" * 64 + ".com",
        "naver.com",
        "1.2.3.4",
        "[127.0.0.1]",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    local=st.lists(ADDRESS_PARTS, max_size=8).map("".join),
    domain=DOMAINS,
    raw=st.text(max_size=30),
)
def test_normalizing_agrees_with_email_validator_on_every_address(
    local: str, domain: str, raw: str
) -> None:
    for address in (f"{local}@{domain}", raw, f" {local}@{domain} ", "x" * 250 + f"@{domain}"):
        try:
            ours: str | None = normalize_email(address)
        except ValueError:
            ours = None
        assert ours == _validator(address), address


# ---------------------------------------------------------------------------- header


def test_headers_are_matched_without_case_space_or_bom_and_common_spellings_are_known() -> None:
    rows, problems = read(
        "\ufeff E-mail Address ,First Name,Time Zone,Company-Size,마케팅 수신 동의\n"
        "ann@example.com,Ann,Asia/Seoul,40,동의\n"
    )
    assert problems == []
    [ann] = rows
    assert ann.lead.email == "ann@example.com"
    assert ann.lead.attributes == {"first_name": "Ann", "company_size": 40}
    assert (ann.lead.timezone, ann.lead.consent) == ("Asia/Seoul", "granted")


def test_columns_can_be_mapped_by_name_or_position_and_skipped() -> None:
    text = "E-post,Name,Notes,Name\nann@example.com,Ann,private,Lee\n"
    rows, _ = read(text, mapping={"e-post": "email", "#4": "last_name", "Notes": "-"})
    assert rows[0].lead.attributes == {"name": "Ann", "last_name": "Lee"}


def test_a_missing_email_column_is_named_with_the_columns_and_a_hint() -> None:
    assert header_problems("mail,Name\nann@example.com,Ann\n") == [
        "no `email` column; the columns are `mail`, `Name`; if `mail` holds the addresses, "
        "add --map 'mail=email'"
    ]


def test_duplicate_reserved_and_unusable_headers_are_refused_before_any_row() -> None:
    problems = header_problems("email,Email,score,Phone,phone\n")
    assert problems == [
        "columns 1 `email`, 2 `Email` give the same field `email`; skip one with --map '#2=-' "
        "or rename it with --map '#2=email_2'",
        "column 3 `score` cannot be imported: lead.score is kept by the scoring rules; rename "
        "it with --map '#3=imported_score' or skip it with --map '#3=-'",
        "columns 4 `Phone`, 5 `phone` give the same field `phone`; skip one with --map '#5=-' "
        "or rename it with --map '#5=phone_5'",
    ]
    assert header_problems("email\n", mapping={"Mail": "email", "email": "2nd"}) == [
        "--map gives column 1 `email` the name `2nd`; a field name uses A-Z, 0-9 and _ and does "
        "not start with a digit (or `-` skips the column)",
        "--map names `Mail`, which is not a column of the file; its columns are `email`",
        "no `email` column; the columns are `email`; if `email` holds the addresses, add "
        "--map 'email=email'",
    ]
    assert header_problems("") == [
        "the file is empty; expected a header row with an `email` column"
    ]


def test_a_header_that_conditions_cannot_name_is_kept_with_a_note() -> None:
    rows = open_rows(io.StringIO("email,회사명,2nd phone\n"), now=NOW)
    assert [c.field for c in rows.header.columns] == ["email", "회사명", "2nd_phone"]
    assert len(rows.header.notices) == 2
    assert "--map '회사명=name'" in rows.header.notices[0]


def test_required_attributes_need_a_column_or_a_value_for_everyone() -> None:
    declared = {"source": "string"}
    assert header_problems("email\n", declared=declared, required=["source"]) == [
        "the workspace requires `source` on every lead (attribute source: string required) and "
        "the file has no `source` column; add one or give every lead a value with --set source=…"
    ]
    rows, _ = read(
        "email\nann@example.com\n",
        declared=declared,
        required=["source"],
        defaults={"source": "import"},
    )
    assert rows[0].lead.attributes == {"source": "import"}


def test_the_separator_is_read_from_the_header_line() -> None:
    assert sniff_delimiter("email;name;city\n") == ";"
    assert sniff_delimiter("email\tname\n") == "\t"
    assert sniff_delimiter('"a;b;c",email,name\n') == ","
    assert sniff_delimiter("email\n") == ","
    rows, _ = read("email;first name\nann@example.com;Ann\n", delimiter=";")
    assert rows[0].lead.attributes == {"first_name": "Ann"}


# ---------------------------------------------------------------------------- rows


def test_a_csv_reports_every_bad_row_by_number_and_keeps_the_good_ones() -> None:
    text = (
        "email,first_name,timezone,consent,employees\n"
        "ann@example.com,Ann,Europe/Berlin,yes,40\n"
        "not-an-email,Bob,,,\n"
        "cy@example.com,Cy,Mars/Olympus,,\n"
        "ANN@example.com,Annie,,,\n"
        "dee@example.com,Dee,,maybe,\n"
        "eve@example.com,Eve,,no,3,surplus\n"
        ",,,,\n"
        "\n"
        ",Nobody,,,\n"
        "fay@example.com,Fay,,,7,,,\n"
    )
    rows, problems = read(text)
    assert [(p.line, p.message.split(" ")[0]) for p in problems] == [
        (3, "`not-an-email`"),
        (4, "unknown"),
        (6, "consent"),
        (7, "6"),
        (10, "the"),
    ]
    assert problems[3].message == "6 cells but the header has 5 columns (extra: 'surplus')"
    assert problems[3].cells == ("eve@example.com", "Eve", "", "no", "3", "surplus")
    assert [(r.row, r.lead.email) for r in rows] == [
        (2, "ann@example.com"),
        (5, "ann@example.com"),
        (11, "fay@example.com"),  # trailing empty cells are no problem
    ]
    assert rows[0].lead.attributes == {"first_name": "Ann", "employees": 40}
    assert (rows[0].lead.timezone, rows[0].lead.consent) == ("Europe/Berlin", "granted")


def test_a_short_row_an_unclosed_quote_and_a_nul_are_reported_where_they_start() -> None:
    text = (
        "email,name,city\n"
        "ann@example.com,Ann\n"
        'bob@example.com,"Bob,Seoul\n'
        "cy@example.com,Cy,Busan\n"
        "dee@example.com,De\x00e,Seoul\n"
    )
    rows, problems = read(text)
    assert rows == []
    assert [(p.line, p.row, p.message) for p in problems] == [
        (2, 2, "2 cells but the header has 3 columns; the row may be cut short"),
        (
            3,
            3,
            "the row cannot be read as CSV: unexpected end of data (it runs from line 3 to 5: "
            "a quote opened on line 3 may not be closed)",
        ),
    ]
    rows, problems = read("email,name\n" + "dee@example.com,De\x00e\n")
    assert [p.message for p in problems] == [
        "`name` holds a NUL character (0x00), which is not text"
    ]


def test_a_cell_that_spans_lines_keeps_spreadsheet_row_numbers() -> None:
    rows, problems = read('email,note\nann@example.com,"two\nlines"\nbad,x\n')
    assert rows[0].lead.attributes == {"note": "two\nlines"}
    [problem] = problems
    assert (problem.line, problem.row, problem.where()) == (4, 3, "4 (row 3)")


def test_consent_columns_give_one_consent_per_row_and_its_date() -> None:
    rows, problems = read(
        "email,consent,consent_date,consent_source,night_consent\n"
        "ann@example.com,Yes,2025. 3. 14.,webinar,예\n"
        "bob@example.com,철회,2025/01/02,,\n"
        "cy@example.com,unknown,,,\n"
        "dee@example.com,yes,2030-01-01,,\n"
        "eve@example.com,,2025-01-01,,\n"
        "fay@example.com,yes,someday,,\n"
    )
    ann, bob, cy = rows
    assert [(c.scope, c.granted, c.at, c.source) for c in ann.consents] == [
        ("marketing", True, datetime(2025, 3, 14, tzinfo=UTC), "webinar"),
        ("night", True, datetime(2025, 3, 14, tzinfo=UTC), "webinar"),
    ]
    assert [(c.granted, c.at) for c in bob.consents] == [(False, datetime(2025, 1, 2, tzinfo=UTC))]
    assert bob.lead.consent == "withdrawn"
    assert (cy.lead.consent, cy.consents) == ("unknown", ())
    assert [p.message for p in problems] == [
        "consent_date `2030-01-01` is in the future",
        "consent_date `2025-01-01` is given but `consent` says neither yes nor no",
        "consent_date `someday` is not a date such as 2026-03-31 or 2026-03-31T09:30:00Z",
    ]


def test_cells_take_the_declared_type_and_undeclared_ones_keep_their_text() -> None:
    declared = {
        "revenue": "number",
        "vip": "bool",
        "birthday": "date",
        "interests": "list",
        "zip": "string",
    }
    rows, problems = read(
        "email,revenue,vip,birthday,interests,zip,code,ratio,name,flag\n"
        'ann@example.com,"1,200,000",Yes,1990.05.17,ai; saas ;,00123,00123,0.25,NaN,TRUE\n'
        "bob@example.com,lots,maybe,yesterday,,,,,,\n",
        declared=declared,
    )
    assert rows[0].lead.attributes == {
        "revenue": 1200000,
        "vip": True,
        "birthday": "1990-05-17",
        "interests": ["ai", "saas"],
        "zip": "00123",
        "code": "00123",
        "ratio": 0.25,
        "name": "NaN",
        "flag": True,
    }
    assert [p.message for p in problems] == ["`revenue`: `lots` is not a number"]
    assert typed("1e3", "number", "n") == 1000.0
    assert typed("1e3", None, "n") == "1e3"
    with pytest.raises(ValueError, match="not yes/no"):
        typed("maybe", "bool", "vip")
    with pytest.raises(ValueError, match="inf"):
        typed("inf", "number", "n")


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("codec", "name"),
    [
        ("utf-8", "UTF-8"),
        ("utf-8-sig", "UTF-8 with BOM"),
        ("cp949", "CP949 (EUC-KR)"),
        ("euc-kr", "CP949 (EUC-KR)"),
        ("utf-16", "UTF-16 LE with BOM"),
        ("utf-16-le", "UTF-16 LE"),
        ("utf-16-be", "UTF-16 BE"),
        ("utf-32", "UTF-32 LE with BOM"),
    ],
)
def test_the_encodings_spreadsheets_export_are_recognised(codec: str, name: str) -> None:
    text = "email,이름\nkim@example.co.kr,김철수\n"
    data = text.encode(codec)
    encoding = detect(io.BytesIO(data))
    assert encoding.name == name
    assert data.decode(encoding.codec) == text


def test_a_file_in_no_known_encoding_names_the_first_bad_byte_of_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(textfile, "CHUNK", 7)  # the bad byte lies across chunk boundaries
    data = b"email,name\nann@example.com,Ann\n" + b"bob@example.com,B\xff\xfe\n"
    with pytest.raises(EncodingProblem) as e:
        detect(io.BytesIO(data))
    utf8, cp949 = e.value.bad
    assert (utf8.offset, utf8.line, utf8.value) == (48, 3, b"\xff")
    assert data[utf8.offset] == 0xFF
    assert (cp949.encoding, cp949.line) == ("CP949 (EUC-KR)", 3)
    assert str(e.value).startswith(
        "it decodes in none of the encodings tried (not UTF-8: byte 48 (line 3) is 0xff: invalid "
        "start byte; not CP949 (EUC-KR): byte 48 (line 3) is 0xff"
    )


def test_a_named_encoding_is_the_only_one_tried() -> None:
    data = "email\nkim@example.co.kr,김\n".encode("cp949")
    assert detect(io.BytesIO(data), "euc-kr").codec == "euc_kr"
    with pytest.raises(EncodingProblem, match=r"not UTF-8 text: byte 24 \(line 2\) is 0xb1"):
        detect(io.BytesIO(data), "utf-8")
    with pytest.raises(ValueError, match="unknown encoding `klingon`"):
        detect(io.BytesIO(data), "klingon")
    assert detect(io.BytesIO(codecs.BOM_UTF8 + b"email\n"), "utf-8").codec == "utf-8-sig"


# ---------------------------------------------------------------------------- events


def test_an_event_is_validated_field_by_field() -> None:
    event = parse_event({"type": "click", "email": "Ann@Example.com", "at": "2026-03-01T10:00:00"})
    assert event.email == "ann@example.com"
    assert event.at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(IntakeError) as bad:
        parse_event({"type": "click", "email": "ann@example.com", "when": "now"}, "line 4")
    assert str(bad.value) == "line 4: `when`: Extra inputs are not permitted"
    with pytest.raises(IntakeError, match="exactly one of `email` or `lead_id`"):
        parse_event({"type": "click"})
    with pytest.raises(IntakeError, match="`type`"):
        parse_event({"type": "has space", "email": "a@b.io"})
    with pytest.raises(IntakeError, match="JSON object"):
        parse_event(["click"])
