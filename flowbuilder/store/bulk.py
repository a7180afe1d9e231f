"""Bulk writes at driver speed: one prepared statement, rows converted once, `executemany`.

SQLAlchemy's per-parameter processing dominates when a tick writes tens of thousands of rows, so
the hot writes (decision log, events, outbox, enrollment positions) convert their values here —
datetimes as SQLAlchemy stores them, JSON as text, booleans as the backend wants — and hand the
rows to the driver directly. Tests read these rows back through the models on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    String,
    Table,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from flowbuilder.store.schema import UtcDateTime

Convert = Callable[[Any], Any]


def _sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite dialect stores: `2026-03-03 09:00:00.000000`, in UTC."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def json_text(value: Any) -> str:
    """Compact JSON text, as the store writes every JSON column (UTF-8 kept as it is)."""
    return orjson.dumps(value).decode()


def among(conn: Connection, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values` as one bound parameter (a JSON array on SQLite, an array on
    PostgreSQL): hundreds of ids compile once instead of expanding into a parameter each."""
    items = sorted(values)
    if conn.dialect.name == "postgresql":
        element = String() if items and isinstance(items[0], str) else BigInteger()
        test: ColumnElement[bool] = column == any_(bindparam(None, items, type_=ARRAY(element)))
        return test
    each = func.json_each(json_text(items)).table_valued("value")
    test = column.in_(select(each.c.value))
    return test


def _converter(column_type: Any, dialect: str) -> Convert | None:
    if isinstance(column_type, UtcDateTime):
        return _sqlite_time if dialect == "sqlite" else None
    if isinstance(column_type, JSON):
        if dialect == "postgresql":
            from psycopg.types.json import Json

            return lambda v: Json(v, dumps=json_text)
        return json_text
    if isinstance(column_type, Boolean) and dialect == "sqlite":
        return lambda v: None if v is None else int(bool(v))
    return None


@lru_cache(maxsize=64)
def _plan(
    table: Table, dialect: str, columns: tuple[str, ...], key: str | None, ignore: bool = False
) -> tuple[str, tuple[Convert | None, ...]]:
    mark = "?" if dialect == "sqlite" else "%s"
    if key is None:
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)})"
            + (" ON CONFLICT DO NOTHING" if ignore else "")
        )
        order = columns
    else:
        sets = ", ".join(f"{c} = {mark}" for c in columns if c != key)
        sql = f"UPDATE {table.name} SET {sets} WHERE {key} = {mark}"
        order = (*(c for c in columns if c != key), key)
    return sql, tuple(_converter(table.c[c].type, dialect) for c in order)


def _tuples(
    rows: Sequence[dict[str, Any]], order: Sequence[str], converters: Sequence[Convert | None]
) -> list[tuple[Any, ...]]:
    get = itemgetter(*order)
    convert = [(i, _memo(f) if f is _sqlite_time else f) for i, f in enumerate(converters) if f]
    out = []
    for row in rows:
        values = list(get(row)) if len(order) > 1 else [get(row)]
        for i, f in convert:
            values[i] = f(values[i])
        out.append(tuple(values))
    return out


def _memo(convert: Convert) -> Convert:
    """A batch stamps most rows with the same few moments: convert each moment once."""
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            seen[value] = converted = convert(value)
            return converted

    return cached


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """INSERT every row (all rows have the same keys); with `ignore_conflicts` a row whose unique
    key exists already (an outbox idempotency key) is skipped."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql, converters = _plan(table, conn.dialect.name, columns, None, ignore_conflicts)
    conn.exec_driver_sql(sql, _tuples(rows, columns, converters))


def insert_converted(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """INSERT rows given as tuples in `columns` order, values already as the driver takes them
    (see `driver_value`): the hottest log is built that way from the start. With
    `ignore_conflicts`, as `insert_rows`."""
    if rows:
        sql, _ = _plan(table, conn.dialect.name, columns, None, ignore_conflicts)
        conn.exec_driver_sql(sql, list(rows))


def insert_new(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    key: str,
) -> list[Any]:
    """INSERT rows given as tuples of plain values in `columns` order (aware datetimes, JSON as
    Python values) in one statement, skipping each row whose unique key exists already (stored
    before, or by a transaction that commits first); returns the `key` of each row inserted.

    One statement instead of one a row: an API batch is one round trip. On PostgreSQL the rows go
    as one JSON document (`json_to_recordset`): orjson writes it in one call where the driver
    would convert every value on its own, and the statement's text is the same for any number of
    rows, so it is prepared once. On SQLite it is a multi-row VALUES."""
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect == "postgresql":
        sql = _insert_new_sql(table, dialect, columns, key, 0)
        document = orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows]).decode()
        return [k for (k,) in conn.exec_driver_sql(sql, (document,)).fetchall()]
    convert = [(i, f) for i, c in enumerate(columns) if (f := _converter(table.c[c].type, dialect))]
    out: list[Any] = []
    per_statement = _SQLITE_PARAMETERS // len(columns)
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        values: list[Any] = []
        for row in part:
            converted = list(row)
            for i, f in convert:
                converted[i] = f(converted[i])
            values.extend(converted)
        sql = _insert_new_sql(table, dialect, columns, key, len(part))
        out.extend(k for (k,) in conn.exec_driver_sql(sql, tuple(values)).fetchall())
    return out


def lookup(
    conn: Connection, table: Table, key: str, value: str, keys: Collection[Any]
) -> dict[Any, Any]:
    """The `value` of each row of `table` whose `key` is among `keys` (a unique column), in one
    statement with the keys as one JSON document: a hundred keys cost the driver one value to
    convert, and the rows come back as plain tuples."""
    if not keys:
        return {}
    sql = _lookup_sql(table, conn.dialect.name, key, value)
    found = conn.exec_driver_sql(sql, (orjson.dumps(sorted(keys)).decode(),))
    return dict(found.fetchall())


@lru_cache(maxsize=64)
def _lookup_sql(table: Table, dialect: str, key: str, value: str) -> str:
    if dialect == "postgresql":
        given = f"SELECT CAST(k AS {_base_type(table, key)}) FROM json_array_elements_text(%s::json) AS k"
    else:
        given = "SELECT value FROM json_each(?)"
    return f"SELECT {key}, {value} FROM {table.name} WHERE {key} IN ({given})"


def _base_type(table: Table, column: str) -> str:
    """The PostgreSQL type of a column as a value is cast to it: texts as `text`, since a cast to
    `varchar(n)` would cut a longer one short where an insert refuses it."""
    if isinstance(table.c[column].type, String):
        return "text"
    return str(table.c[column].type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


# The most parameters one SQLite statement takes: `insert_new` splits its rows to stay under it.
_SQLITE_PARAMETERS = 32_766


@lru_cache(maxsize=64)
def _insert_new_sql(
    table: Table, dialect: str, columns: tuple[str, ...], key: str, count: int
) -> str:
    names = ", ".join(columns)
    if dialect == "postgresql":
        types = ", ".join(f"{c} {_base_type(table, c)}" for c in columns)
        values = f"SELECT {names} FROM json_to_recordset(%s::json) AS r({types})"
    else:
        row = f"({', '.join('?' for _ in columns)})"
        values = "VALUES " + ", ".join([row] * count)
    return f"INSERT INTO {table.name} ({names}) {values} ON CONFLICT DO NOTHING RETURNING {key}"


def update_converted(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """UPDATE by `columns[-1]` (the key) each row given as a tuple in `columns` order, values
    already as the driver takes them (see `driver_value`): `columns[:-1]` are set."""
    if rows:
        sql, _ = _plan(table, conn.dialect.name, columns, columns[-1])
        conn.exec_driver_sql(sql, list(rows))


def driver_value(conn: Connection, table: Table, column: str) -> Convert:
    """How a value of `table.column` is handed to this connection's driver."""
    return _converter(table.c[column].type, conn.dialect.name) or (lambda v: v)


def update_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: str = "id"
) -> None:
    """UPDATE each row by `key` with its other values (all rows have the same keys)."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql, converters = _plan(table, conn.dialect.name, columns, key)
    order = (*(c for c in columns if c != key), key)
    conn.exec_driver_sql(sql, _tuples(rows, order, converters))
