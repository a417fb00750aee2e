"""``hub query``: run SQL on the catalog and write the result as a table, CSV, JSON or Parquet."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
from datetime import date, datetime
from decimal import Decimal

import duckdb

from hub.catalog import read_again
from hub.errors import UsageError
from transforms.typing import literal

FORMATS = ("table", "csv", "json", "parquet")
_TRAILING = re.compile(r"[\s;]+$")


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):  # a BLOB: its bytes in hexadecimal
        return bytes(value).hex()
    return value


def _cell(value: object) -> object:
    """A CSV cell: nested values (lists, structs, maps) as their JSON text, never Python's display of them."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_json_value(value), default=str, allow_nan=False, ensure_ascii=False)
    return "" if value is None else _plain(value)


def _json_value(value: object) -> object:
    """A value as JSON has it: decimals and times as strings, NaN and infinities (no JSON number) as null, nested
    lists and structs likewise."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):  # a MAP's keys may be dates, numbers: JSON's are text
        return {k if isinstance(k, str) else str(_plain(k)): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return _plain(value)


def statement(sql: str) -> str:
    """The SQL without trailing semicolons and blanks (one statement, the same for every format)."""
    return _TRAILING.sub("", sql)


def _unique_columns(columns: list[str]) -> None:
    """JSON objects cannot hold one key twice: refuse a result with a repeated column name."""
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise UsageError(f"--format json: column {name!r} appears twice (alias one of them)")
        seen.add(name)


def run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str = "table", output: str | None = None,
        max_rows: int = 100) -> str:
    """Run ``sql``; return the text to print (``table``, or ``csv``/``json`` without ``output``) or write ``output``.
    Parquet needs ``output`` and is streamed by DuckDB; the other formats stream rows in batches."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    sql = statement(sql)
    if fmt == "parquet" and not output:
        raise UsageError("--format parquet needs --output FILE")
    try:  # run again when an ingestion swapped a lake file away under it
        return read_again(lambda: _run(con, sql, fmt, output, max_rows))
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None


def _run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str, output: str | None, max_rows: int) -> str:
    if fmt == "parquet":
        con.execute(f"COPY ({sql}\n) TO {literal(output)} (FORMAT parquet)")  # a trailing -- comment ends at the line
        return f"written to {output}"
    if fmt == "table" and output is None:
        rel = con.sql(sql)
        return "ok" if rel is None else _table(con, rel, max_rows)
    result = con.execute(sql)  # once: the SQL's statements before the last (a CREATE TEMP TABLE) run once
    if result.description is None:
        return "ok"
    return _write_rows(result, fmt, output)


def _table(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    """The first ``max_rows`` rows as DuckDB's box table, every one of them (DuckDB's own rendering of a relation
    shows its first and last ten), and a line saying when the result has more."""
    if max_rows < 1:
        raise UsageError("--max-rows must be 1 or more")
    head = rel.limit(max_rows + 1).to_arrow_table()  # one row more: tells whether rows were left out
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        con.from_arrow(head.slice(0, max_rows)).show(max_rows=max_rows)
    more = f"more than {max_rows} rows: --max-rows N shows more, --format csv all\n" if head.num_rows > max_rows else ""
    return buffer.getvalue().rstrip("\n") + "\n" + more


def _write_rows(result: duckdb.DuckDBPyConnection, fmt: str, output: str | None) -> str:
    columns = [d[0] for d in result.description]
    if fmt == "json":
        _unique_columns(columns)  # before the output file is opened: a refused query leaves no file
    sink = io.StringIO() if output is None else open(output, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        writer = csv.writer(sink, lineterminator="\n") if fmt in ("csv", "table") else None  # no \r for shell tools
        if writer:
            writer.writerow(columns)
        while batch := result.fetchmany(10_000):
            for row in batch:
                if writer:
                    writer.writerow([_cell(v) for v in row])
                else:
                    record = dict(zip(columns, map(_json_value, row), strict=True))
                    sink.write(json.dumps(record, default=str, allow_nan=False) + "\n")
        return sink.getvalue() if output is None else f"written to {output}"
    finally:
        if output is not None:
            sink.close()
