"""Fuzzing every parser that takes input from outside: the language, CSV import, the event API
(`/v1/identify`, `/v1/track`, `/v1/batch`, over HTTP) and inbound mail (bounces, replies,
complaints). Whatever comes in, the answer is diagnostics, a report of bad rows or a clean 4xx —
never an exception, never a 500, and nothing half-stored."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from dsl.compile import compile_text
from dsl.diagnostics import FlowSyntaxError
from dsl.fmt import format_text
from dsl.lint import lint
from flowbuilder.config import Settings
from flowbuilder.lead_import import ImportOptions, ImportRefused, import_csv
from flowbuilder.mail.inbound import handle
from flowbuilder.mail.message import MailConfig
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Event, InboundMessage, Lead
from flowbuilder.users import add_api_key
from tests.properties.scenarios import flow_texts
from web.app import create_app

NOW = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------- the language

EDITS = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 8),
        st.text(alphabet='{}()[]:,.->=<!+*/%#"\\\n\t 0123456789abcdxyz_é한', max_size=5),
    ),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(text=flow_texts(), edits=EDITS)
def test_a_damaged_flow_gives_diagnostics_through_every_stage(
    text: str, edits: list[tuple[int, int, str]]
) -> None:
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    compilation = compile_text(text, "fuzz.flow")
    lines = text.count("\n") + 2
    for d in compilation.diagnostics:
        assert d.message and 1 <= d.span.line <= lines and d.span.col >= 1, d
    event("compiles" if compilation.ok else "diagnostics")
    if compilation.ok:
        assert all(d.message for d in lint(compilation))
    try:
        formatted = format_text(text, "fuzz.flow")
    except FlowSyntaxError as e:
        assert e.diagnostics, "a syntax error names where it is"
    else:
        assert format_text(formatted, "fuzz.flow") == formatted


# ---------------------------------------------------------------------------- CSV import

WORKSPACE = """
attribute plan: string
attribute seats: number
attribute renewal_date: date
attribute trial: bool
"""
OTHER_COLUMNS = st.lists(
    st.sampled_from(
        ["plan", "seats", "renewal_date", "trial", "timezone", "consent", "consent_date", "이름"]
    ),
    max_size=5,
    unique=True,
)
HEADER_ANY = st.lists(
    st.sampled_from(
        [
            "email",
            "E-mail",
            "plan",
            "seats",
            "renewal_date",
            "trial",
            "timezone",
            "consent",
            "consent_date",
            "account",
            "stage",
            "이름",
            "",
            "email",
        ]
    ),
    min_size=1,
    max_size=6,
)
# Mostly a header the importer takes (so that rows get checked), sometimes any header at all.
HEADER = st.one_of(OTHER_COLUMNS.map(lambda rest: ["email", *rest]), HEADER_ANY)
CELL = st.one_of(
    st.sampled_from(
        [
            "ann@example.com",
            "BO@Example.COM ",
            "not-an-email",
            "12",
            "1,5",
            "2026-02-30",
            "2026-03-01",
            "yes",
            "no",
            "Asia/Seoul",
            "Mars/Olympus",
            "true",
            "",
            '"',
            "a,b",
            "\n",
        ]
    ),
    st.text(max_size=10),
)


@pytest.fixture(scope="module")
def import_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from tests.store.driver import publish_text

    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('csv')}/import.db")
    publish_text(engine, WORKSPACE, NOW)
    yield engine
    engine.dispose()


_files = itertools.count()


@st.composite
def csv_tables(draw: st.DrawFn) -> list[list[str]]:
    """A header and rows: most rows as wide as the header, some of any width."""
    header = draw(HEADER)
    width = len(header)
    good = st.tuples(
        st.sampled_from(["ann@example.com", "Bo@Example.org", "cy@acme.co.kr"]),
        st.lists(
            st.one_of(st.sampled_from(["", "team", "3", "2026-03-01", "yes"]), CELL),
            min_size=width - 1,
            max_size=width - 1,
        ),
    ).map(lambda t: [t[0], *t[1]])
    rows = draw(st.lists(st.one_of(good, good, st.lists(CELL, max_size=7)), max_size=8))
    return [header, *rows]


@FUZZ
@given(
    table=csv_tables(),
    separator=st.sampled_from([",", ";", "\t"]),
    codec=st.sampled_from(["utf-8", "utf-8-sig", "cp949", "utf-16"]),
    tail=st.one_of(st.just(b""), st.binary(max_size=30)),
)
def test_a_csv_file_is_imported_in_part_or_refused_whole_with_reasons(
    import_store: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    table: list[list[str]],
    separator: str,
    codec: str,
    tail: bytes,
) -> None:
    text = "\n".join(separator.join(r) for r in table) + "\n"
    path = tmp_path_factory.getbasetemp() / f"fuzz-{next(_files)}.csv"
    path.write_bytes(text.encode(codec, errors="replace") + tail)
    before = _leads(import_store)
    problems: list[Any] = []
    try:
        report = import_csv(
            import_store, path, ImportOptions(), on_problem=problems.append, now=NOW
        )
    except ImportRefused as refused:
        event(f"refused: {refused.problems[0].split(': ', 1)[-1][:40]}")
        assert refused.problems and all(p for p in refused.problems)
        assert _leads(import_store) == before, "a refused file stored nothing"
        return
    event("imported" if report.imported else "nothing imported")
    assert report.rejected == len(problems)
    assert all(p.message and p.line >= 2 for p in problems)
    assert _leads(import_store) == before + report.created


def _leads(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Lead)).scalar_one())


# ---------------------------------------------------------------------------- the event API

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [
            "ann@example.com",
            "not an email",
            "Order Completed",
            "1",
            "2026-03-03T10:00:00Z",
            "yesterday",
            "Asia/Seoul",
            "",
            "  ",
            "x" * 300,
        ]
    ),
)
CALL = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["identify", "track", "page", 3]),
        "messageId": FIELD_VALUES,
        "userId": FIELD_VALUES,
        "event": FIELD_VALUES,
        "timestamp": FIELD_VALUES,
        "traits": st.one_of(
            JSON,
            st.fixed_dictionaries({"email": FIELD_VALUES}, optional={"timezone": FIELD_VALUES}),
        ),
        "properties": JSON,
        "context": st.one_of(JSON, st.just({"traits": {"email": "bo@example.com"}})),
    },
)
# Calls the API takes, with now and then one field replaced by anything at all.
VALID_CALL = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["identify", "track"]),
        "messageId": st.uuids().map(str),
        "userId": st.sampled_from(["ann@example.com", "BO@example.com", "cy@example.org"]),
        "event": st.sampled_from(["Order Completed", "signed_up", "Link Clicked"]),
        "timestamp": st.sampled_from(["2026-03-03T10:00:00Z", "2026-03-03T10:00:00+09:00"]),
        "traits": st.fixed_dictionaries({"plan": st.sampled_from(["team", "free"])}),
        "properties": st.dictionaries(st.sampled_from(["amount", "url"]), JSON, max_size=2),
    }
)
NEARLY_VALID = st.tuples(
    VALID_CALL,
    st.sampled_from(["", "messageId", "userId", "event", "timestamp", "traits"]),
    FIELD_VALUES,
).map(lambda t: {**t[0], t[1]: t[2]} if t[1] else t[0])
BODIES = st.one_of(
    NEARLY_VALID.map(json.dumps),
    st.fixed_dictionaries({"batch": st.lists(NEARLY_VALID, min_size=1, max_size=5)}).map(
        json.dumps
    ),
    CALL.map(json.dumps),
    st.fixed_dictionaries({"batch": st.lists(CALL, max_size=5)}).map(json.dumps),
    JSON.map(json.dumps),
    st.binary(max_size=80),
    st.text(max_size=80),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, Engine]]:
    folder = tmp_path_factory.mktemp("api")
    engine = open_store(f"sqlite:///{folder}/api.db")
    settings = Settings(
        database_url=f"sqlite:///{folder}/api.db", data_dir=folder, secret_key="fuzz-" + "x" * 32
    )
    key = add_api_key(engine, "fuzz", NOW)
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
        yield client, key, engine
    engine.dispose()


@FUZZ
@given(
    path=st.sampled_from(["/v1/identify", "/v1/track", "/v1/batch"]),
    body=BODIES,
    auth=st.sampled_from(["bearer", "bearer", "basic", "none", "wrong"]),
)
def test_any_event_api_payload_gets_an_answer_never_a_server_error(
    api: tuple[TestClient, str, Engine], path: str, body: str | bytes, auth: str
) -> None:
    client, key, engine = api
    headers = {
        "bearer": {"authorization": f"Bearer {key}"},
        "basic": {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()},
        "none": {},
        "wrong": {"authorization": "Bearer fbk_wrong"},
    }[auth]
    before = _events(engine)
    response = client.post(
        path, content=body, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code in (200, 400, 401, 413, 422), (response.status_code, response.text)
    event(f"HTTP {response.status_code}")
    answer = response.json()
    if response.status_code != 200:
        assert answer["success"] is False and answer["error"]
        assert _events(engine) == before, "a refused call stored nothing"
        for problem in answer.get("problems", []):
            assert problem["field"] is not None and problem["message"]
    else:
        assert _events(engine) == before + answer["stored"]


def _events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())


# ---------------------------------------------------------------------------- inbound mail

HEADER_LINES = st.lists(
    st.sampled_from(
        [
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
            b"Content-Type: multipart/report; report-type=feedback-report; boundary=b",
            b'Content-Type: text/plain; charset="euc-kr"',
            b"Content-Type: text/plain; charset=unknown-8bit",
            b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Subject: =?utf-8?b?67CY7ZKI?= Undelivered Mail Returned to Sender",
            b"Subject: Re: your offer",
            b"Auto-Submitted: auto-replied",
            b"Message-ID: <fuzz@example.com>",
            b"In-Reply-To: <1.abc@mail.acme.example>",
            b"References: <nothing",
            b"From: MAILER-DAEMON@example.com",
            b"Status: 5.1.1",
            b"Action: failed",
            b"Final-Recipient: rfc822; ann@example.com",
            b"Diagnostic-Code: smtp; 550 5.1.1 user unknown",
        ]
    ),
    max_size=8,
)
BODY_PARTS = st.lists(
    st.one_of(
        st.sampled_from([b"--b", b"--b--", b"", b"Reporting-MTA: dns; mx.example.com", b"=E2=80"]),
        st.binary(max_size=40),
    ),
    max_size=10,
)


@pytest.fixture(scope="module")
def inbound_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('inbound')}/inbound.db")
    yield engine
    engine.dispose()


CONFIG = MailConfig(
    public_url="https://mail.acme.example",
    secret="fuzz-secret",
    bounce_domain="bounces.acme.example",
    reply_domain="reply.acme.example",
)


@FUZZ
@given(
    headers=HEADER_LINES,
    body=BODY_PARTS,
    rcpt=st.sampled_from(
        [
            "bounce+1-abc@bounces.acme.example",
            "reply+x@reply.acme.example",
            "unsubscribe+zz@reply.acme.example",
            "postmaster@acme.example",
            "",
            "@",
        ]
    ),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_any_inbound_message_is_classified_and_stored_never_a_crash(
    inbound_store: Engine, headers: list[bytes], body: list[bytes], rcpt: str, raw: bytes | None
) -> None:
    message = raw if raw is not None else b"\r\n".join([*headers, b"", *body])
    with inbound_store.begin() as conn:
        before = conn.execute(select(func.count()).select_from(InboundMessage)).scalar_one()
        handled = handle(conn, CONFIG, "sender@example.com", rcpt, message, NOW)
        after = conn.execute(select(func.count()).select_from(InboundMessage)).scalar_one()
    event(handled.kind)
    assert handled.kind and handled.note is not None
    assert after in (before, before + 1)


def test_the_fuzzed_workspace_is_valid(tmp_path: Path) -> None:
    """The CSV fuzzing types its columns by a workspace that compiles."""
    assert compile_text(WORKSPACE, "workspace.flow").ok
