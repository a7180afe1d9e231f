"""Leads from a CSV file: the header resolved to fields, every row checked and typed.

The header names the fields. `email` is required; `timezone`, `account`, `stage` and the consent
columns are built in; every other column is an attribute. Headers are matched without regard to
case, surrounding spaces or `-`/`_`/space differences, a few common spellings are recognised
(`E-mail Address` is `email`, `이메일` too), and `--map` names any column by its header or its
position (`#3`). Attribute names are the header in snake case (`First Name` is `first_name`).

Rows are checked one by one: a row with a problem is reported with its line and the reason, and
the other rows go on. Row numbers count the header as row 1, as spreadsheets do; the line is the
file's line where the row starts, which differs only after a cell that spans lines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TextIO

from flowbuilder.intake import LeadIn, check_timezone, normalize_email

IGNORE = "-"
CONSENT_COLUMNS = ("consent", "consent_date", "consent_source", "consent_wording", "night_consent")
BUILT_IN = ("email", "timezone", "account", "stage", *CONSENT_COLUMNS)
# Fields of every lead that an import cannot set, with what keeps them.
RESERVED = {
    "id": "the lead's id is the store's",
    "score": "lead.score is kept by the scoring rules",
    "tags": "lead.tags are kept by flows",
    "unsubscribed": "unsubscribing is the reader's: import `consent` = no instead",
    "created_at": "lead.created_at is when the store first saw the lead",
    "updated_at": "lead.updated_at is kept by the store",
}
# Spellings spreadsheets and other tools use for the built-in fields (compared by `_key`).
ALIASES = {
    "email": "email",
    "e mail": "email",
    "email address": "email",
    "e mail address": "email",
    "emailaddress": "email",
    "이메일": "email",
    "이메일 주소": "email",
    "time zone": "timezone",
    "tz": "timezone",
    "lifecycle stage": "stage",
    "marketing consent": "consent",
    "email consent": "consent",
    "opt in": "consent",
    "수신 동의": "consent",
    "수신동의": "consent",
    "마케팅 수신 동의": "consent",
    "consent date": "consent_date",
    "consented at": "consent_date",
    "opt in date": "consent_date",
    "동의 일자": "consent_date",
    "동의일": "consent_date",
    "consent source": "consent_source",
    "consent wording": "consent_wording",
    "consent text": "consent_wording",
    "night consent": "night_consent",
    "야간 수신 동의": "night_consent",
}
# The columns `flowbuilder import --rejects` adds before a file's own, skipped when it comes back.
REJECTS_COLUMNS = ("import line", "import problem")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LIMITS = {"account": 255, "stage": 64}
_GRANTED = {"1", "true", "yes", "y", "granted", "opt-in", "opted in", "동의", "예"}
_WITHDRAWN = {
    "0",
    "false",
    "no",
    "n",
    "withdrawn",
    "opt-out",
    "opted out",
    "거부",
    "미동의",
    "철회",
    "아니오",
}
_TRUE = {"true", "yes", "y", "1", "예"}
_FALSE = {"false", "no", "n", "0", "아니오"}
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\Z")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_GROUPED = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\Z")
_DATE = re.compile(r"([0-9]{4})\s*[./-]\s*([0-9]{1,2})\s*[./-]\s*([0-9]{1,2})\.?\Z")


def _key(header: str) -> str:
    """How headers are compared: case, surrounding space and `-`/`_`/space runs do not count."""
    return re.sub(r"[\s_\-]+", " ", header.casefold()).strip()


def snake(header: str) -> str:
    """The attribute name a header gives: `First Name` → `first_name`."""
    return re.sub(r"\W+", "_", header.casefold()).strip("_")


class HeaderProblem(ValueError):
    """The header cannot be read as fields; nothing of the file is imported."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Column:
    number: int  # counting from 1, as `--map '#3=…'` does
    header: str  # as in the file, without surrounding space
    field: str | None  # None: not imported
    how: str  # built in / spelling / mapped / attribute / ignored / no header

    def described(self) -> str:
        if self.field is None:
            return f"#{self.number} `{self.header}` not imported ({self.how})"
        if self.header == self.field:
            return self.field
        return f"{self.header} → {self.field}"


@dataclass(frozen=True)
class Header:
    columns: tuple[Column, ...]
    types: Mapping[str, str]  # declared attribute types, by field
    notices: tuple[str, ...] = ()

    @property
    def fields(self) -> list[str]:
        return [c.field for c in self.columns if c.field is not None]


def resolve_header(
    cells: Sequence[str],
    mapping: Mapping[str, str] | None = None,
    declared: Mapping[str, str] | None = None,
    required: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> Header:
    """The field of every column. `mapping` renames columns by header or `#position` (`-` skips
    one); `declared` gives attribute types of the published workspace; `required` attributes
    must come from a column or `defaults`. Raises HeaderProblem listing every problem."""
    mapping = dict(mapping or {})
    declared = declared or {}
    problems: list[str] = []
    notices: list[str] = []
    headers = [c.replace("\ufeff", "").strip() for c in cells]
    used: set[str] = set()
    columns: list[Column] = []
    for number, header in enumerate(headers, 1):
        target, how = _target(number, header, mapping, used)
        if target == IGNORE:
            columns.append(Column(number, header, None, how))
            continue
        if target is None:
            columns.append(Column(number, header, None, "no header"))
            continue
        if how == "mapped" and target not in BUILT_IN and not NAME.match(target):
            problems.append(
                f"--map gives column {number} `{header}` the name `{target}`; a field name uses "
                "A-Z, 0-9 and _ and does not start with a digit (or `-` skips the column)"
            )
        if how == "attribute" and not NAME.match(target):
            notices.append(
                f"column {number} `{header}` is stored as attribute `{target}`, which conditions "
                f"cannot name (names use A-Z, 0-9 and _); rename it with --map '{header}=name'"
            )
        columns.append(Column(number, header, target, how))
    for source in mapping:
        if source not in used:
            shown = ", ".join(f"`{h}`" for h in headers if h) or "none"
            problems.append(
                f"--map names `{source}`, which is not a column of the file; its columns are {shown}"
            )
    by_field: dict[str, list[Column]] = {}
    for c in columns:
        if c.field is not None:
            by_field.setdefault(c.field, []).append(c)
    for name, same in by_field.items():
        if len(same) > 1:
            listed = ", ".join(f"{c.number} `{c.header}`" for c in same)
            last = same[-1]
            problems.append(
                f"columns {listed} give the same field `{name}`; skip one with --map '#{last.number}=-' or "
                f"rename it with --map '#{last.number}={name}_{last.number}'"
            )
        if name in RESERVED:
            c = same[0]
            problems.append(
                f"column {c.number} `{c.header}` cannot be imported: {RESERVED[name]}; rename it "
                f"with --map '#{c.number}=imported_{name}' or skip it with --map '#{c.number}=-'"
            )
    if "email" not in by_field:
        shown = ", ".join(f"`{h}`" for h in headers if h) or "none"
        guess = next((h for h in headers if "mail" in h.casefold() or "메일" in h), None)
        hint = f"; if `{guess}` holds the addresses, add --map '{guess}=email'" if guess else ""
        problems.append(f"no `email` column; the columns are {shown}{hint}")
    for name in required:
        if name not in by_field and name not in (defaults or {}):
            problems.append(
                f"the workspace requires `{name}` on every lead (attribute {name}: "
                f"{declared.get(name, 'string')} required) and the file has no `{name}` column; "
                f"add one or give every lead a value with --set {name}=…"
            )
    undeclared = [
        n for n in by_field if n not in BUILT_IN and n not in RESERVED and n not in declared
    ]
    if declared and undeclared:
        notices.append(
            "not declared in the published workspace, so stored as read (numbers, true/false, "
            "text): " + ", ".join(f"`{n}`" for n in undeclared)
        )
    if problems:
        raise HeaderProblem(problems)
    types = {n: declared[n] for n in by_field if n in declared and n not in BUILT_IN}
    return Header(tuple(columns), types, tuple(notices))


def _target(
    number: int, header: str, mapping: Mapping[str, str], used: set[str]
) -> tuple[str | None, str]:
    by_position = f"#{number}"
    if by_position in mapping:
        used.add(by_position)
        return mapping[by_position], "mapped" if mapping[by_position] != IGNORE else "--map"
    for source, target in mapping.items():
        if source == header or (source.strip() and _key(source) == _key(header)):
            used.add(source)
            return target, "mapped" if target != IGNORE else "--map"
    if not header:
        return None, "no header"
    key = _key(header)
    if key in REJECTS_COLUMNS:
        return IGNORE, "written by --rejects"
    if key.replace(" ", "_") in BUILT_IN:
        return key.replace(" ", "_"), "built in"
    if key in ALIASES:
        return ALIASES[key], "spelling"
    name = snake(header)
    if not name:
        return None, "no usable name"
    return name, "attribute"


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class ConsentIn:
    """What one row says about consent, kept as a consent record of that row."""

    scope: str  # marketing / night
    granted: bool
    at: datetime | None
    source: str | None
    wording: str | None


@dataclass(frozen=True)
class LeadRow:
    line: int
    row: int
    lead: LeadIn
    consents: tuple[ConsentIn, ...] = ()
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowProblem:
    line: int
    row: int
    message: str
    cells: tuple[str, ...] = ()

    def where(self) -> str:
        """`3` for a row on its own line, `7 (row 6)` after a cell that spans lines."""
        return str(self.line) if self.line == self.row else f"{self.line} (row {self.row})"


@dataclass
class RowCounts:
    rows: int = 0  # data rows read, blank ones included
    blank: int = 0  # rows with no value in any cell, skipped
    unnamed: set[int] = field(default_factory=set)  # columns without a header that hold values


@dataclass
class Rows:
    """The rows of a file after its header, as LeadRow or RowProblem, in file order."""

    reader: Any  # a csv reader positioned after the header
    header: Header
    now: datetime
    defaults: Mapping[str, Any] = field(default_factory=dict)
    counts: RowCounts = field(default_factory=RowCounts)

    def __iter__(self) -> Iterator[LeadRow | RowProblem]:
        columns = self.header.columns
        width = len(columns)
        # Trailing columns without a field (unnamed, skipped) may be missing from short rows.
        needed = max((c.number for c in columns if c.field is not None), default=0)
        unnamed = [c.number - 1 for c in columns if c.how == "no header"]
        built_in = [
            (c.number - 1, c.field) for c in columns if c.field is not None and c.field in BUILT_IN
        ]
        attributes = [
            (c.number - 1, c.field, _converter(self.header.types.get(c.field), c.field))
            for c in columns
            if c.field is not None and c.field not in BUILT_IN
        ]
        counts = self.counts
        reader = self.reader
        line = reader.line_num
        row = 1
        while True:
            first = line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                row += 1
                line = reader.line_num
                counts.rows += 1
                span = (
                    f" (it runs from line {first} to {line}: a quote opened on line {first} "
                    "may not be closed)"
                    if line > first
                    else ""
                )
                yield RowProblem(first, row, f"the row cannot be read as CSV: {e}{span}")
                continue
            line = reader.line_num
            row += 1
            counts.rows += 1
            joined = "".join(cells)
            if not joined.strip():  # an empty line, or only separators
                counts.blank += 1
                continue
            for i in unnamed:
                if i < len(cells) and cells[i].strip():
                    counts.unnamed.add(i + 1)
            problem = self._shape(cells, joined, width, needed, first, line)
            if problem is not None:
                yield RowProblem(first, row, problem, tuple(cells))
                continue
            try:
                yield self._row(first, row, cells, built_in, attributes)
            except ValueError as e:
                yield RowProblem(first, row, str(e), tuple(cells))

    def _shape(
        self, cells: list[str], joined: str, width: int, needed: int, first: int, line: int
    ) -> str | None:
        """What is wrong with the row as a whole: its number of cells, a NUL character."""
        span = (
            f"; the row runs from line {first} to {line}: a quote opened on line {first} "
            "may not be closed"
            if line > first
            else ""
        )
        if len(cells) > width and "".join(cells[width:]).strip():
            extra = ", ".join(repr(c) for c in cells[width:][:3])
            return f"{len(cells)} cells but the header has {width} columns (extra: {extra}){span}"
        if len(cells) < needed:
            return (
                f"{len(cells)} cells but the header has {width} columns; the row may be cut "
                f"short{span}"
            )
        if "\x00" in joined:
            column = next(c for c in self.header.columns if "\x00" in cells[c.number - 1])
            return f"`{column.header}` holds a NUL character (0x00), which is not text"
        return None

    def _row(
        self,
        line: int,
        row: int,
        cells: list[str],
        built_in: list[tuple[int, str]],
        plan: list[tuple[int, str, Convert]],
    ) -> LeadRow:
        values: dict[str, str] = {}
        for i, name in built_in:
            cell = cells[i].strip()
            if cell:
                values[name] = cell
        raw_email = values.get("email")
        if not raw_email:
            raise ValueError("the email is empty")
        email = normalize_email(raw_email)
        attributes: dict[str, Any] = {}
        for i, name, convert in plan:
            cell = cells[i].strip()
            if cell:
                attributes[name] = convert(cell)
        for name, value in self.defaults.items():
            attributes.setdefault(name, value)
        if len(values) == 1:  # only the email: the common case of a plain list
            return LeadRow(line, row, LeadIn(email, attributes), (), tuple(cells))
        for name, limit in LIMITS.items():
            if len(values.get(name, "")) > limit:
                raise ValueError(f"`{name}` is longer than {limit} characters")
        timezone = values.get("timezone")
        consent = consent_value(values["consent"]) if "consent" in values else None
        consents = []
        at = (
            parse_date(values["consent_date"], "consent_date") if "consent_date" in values else None
        )
        if at is not None and at > self.now:
            raise ValueError(f"consent_date `{values['consent_date']}` is in the future")
        if at is not None and consent in (None, "unknown"):
            raise ValueError(
                f"consent_date `{values['consent_date']}` is given but `consent` says neither "
                "yes nor no"
            )
        source, wording = values.get("consent_source"), values.get("consent_wording")
        if consent in ("granted", "withdrawn"):
            consents.append(ConsentIn("marketing", consent == "granted", at, source, wording))
        if "night_consent" in values:
            night = consent_value(values["night_consent"], "night_consent")
            if night in ("granted", "withdrawn"):
                consents.append(ConsentIn("night", night == "granted", at, source, wording))
        lead = LeadIn(
            email=email,
            attributes=attributes,
            timezone=check_timezone(timezone) if timezone else None,
            account=values.get("account"),
            stage=values.get("stage"),
            consent=consent,
        )
        return LeadRow(line, row, lead, tuple(consents), tuple(cells))


def open_rows(
    text: TextIO | Iterator[str],
    *,
    delimiter: str = ",",
    mapping: Mapping[str, str] | None = None,
    declared: Mapping[str, str] | None = None,
    required: Sequence[str] = (),
    defaults: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Rows:
    """Read the header of `text` (a file opened with `newline=""`) and return its rows.

    `defaults` are attribute values (as text, typed like cells) for rows whose cell is empty.
    Raises HeaderProblem when the header cannot be used."""
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        cells = next(reader)
        while not cells:
            cells = next(reader)
    except StopIteration:
        raise HeaderProblem(
            ["the file is empty; expected a header row with an `email` column"]
        ) from None
    except csv.Error as e:
        raise HeaderProblem([f"the header row cannot be read as CSV: {e}"]) from None
    typed_defaults: dict[str, Any] = {}
    for name, value in (defaults or {}).items():
        try:
            typed_defaults[name] = typed(value, (declared or {}).get(name), name)
        except ValueError as e:
            raise HeaderProblem([f"--set {name}: {e}"]) from None
    header = resolve_header(cells, mapping, declared, required, typed_defaults)
    return Rows(reader, header, now or datetime.now(UTC), typed_defaults)


def sniff_delimiter(first_line: str) -> str:
    """The separator of a header line: the most frequent of `,`, `;`, tab and `|` outside quotes
    (a comma on a tie). European spreadsheets separate with `;`, "Unicode text" with tabs."""
    counts = dict.fromkeys([",", ";", "\t", "|"], 0)
    quoted = False
    for ch in first_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda c: (counts[c], c == ","))
    return best if counts[best] else ","


# ---------------------------------------------------------------------------- values


def consent_value(raw: str, column: str = "consent") -> str | None:
    """`yes`/`no`/… as granted/withdrawn; an empty cell says nothing, `unknown` says so."""
    value = raw.strip().casefold()
    if value == "":
        return None
    if value == "unknown":
        return "unknown"
    if value in _GRANTED:
        return "granted"
    if value in _WITHDRAWN:
        return "withdrawn"
    raise ValueError(f"{column} `{raw}` is not one of yes/no/granted/withdrawn/unknown")


def parse_date(raw: str, column: str) -> datetime:
    """A date or time as spreadsheets write them: ISO 8601, `2026/03/31`, `2026.03.31`,
    `2026. 3. 31.`; without a zone it is UTC."""
    text = raw.strip()
    m = _DATE.match(text)
    try:
        if m is not None:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{column} `{raw}` is not a date such as 2026-03-31 or 2026-03-31T09:30:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Convert = Callable[[str], Any]


def typed(text: str, declared: str | None, name: str) -> Any:
    """A cell as the attribute's declared type; undeclared cells become numbers and booleans
    only when they are written exactly as one (`00123` and `NaN` stay text).

    >>> typed("1,234", "number", "revenue"), typed("00123", None, "zip"), typed("NaN", None, "n")
    (1234, '00123', 'NaN')
    """
    return _converter(declared, name)(text.strip())


def _converter(declared: str | None, name: str) -> Convert:
    """How the cells (stripped, never empty) of one column become values."""
    match declared:
        case "string":
            return str
        case "number":
            return lambda v: _number(v, name)
        case "bool":
            return lambda v: _bool(v, name)
        case "date":
            return lambda v: _date(v, name)
        case "list":
            return lambda v: [item.strip() for item in v.split(";") if item.strip()]
    return _guess


def _number(value: str, name: str) -> int | float:
    plain = value.replace(",", "") if _GROUPED.match(value) else value
    if _INT.match(plain):
        return int(plain)
    try:
        number = float(plain)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"`{name}`: `{value}` is not a number")
    return number


def _bool(value: str, name: str) -> bool:
    folded = value.casefold()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(f"`{name}`: `{value}` is not yes/no or true/false")


def _date(value: str, name: str) -> str:
    moment = parse_date(value, f"`{name}`:")
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat()


def _guess(value: str) -> Any:
    first = value[0]
    if first.isdigit() or first == "-":
        if _INT.match(value):
            return int(value)
        if _DECIMAL.match(value):
            return float(value)
        return value
    if len(value) in (4, 5):
        folded = value.casefold()
        if folded in ("true", "false"):
            return folded == "true"
    return value
