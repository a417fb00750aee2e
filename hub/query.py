"""``hub query``: run SQL on the catalog and write the result as a table, CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal

import duckdb

from hub.errors import UsageError
from transforms.typing import literal

FORMATS = ("table", "csv", "json", "parquet")


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str = "table", output: str | None = None,
        max_rows: int = 100) -> str:
    """Run ``sql``; return the text to print (``table``, or ``csv``/``json`` without ``output``) or write ``output``.
    Parquet needs ``output`` and is streamed by DuckDB; the other formats stream rows in batches."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    try:
        if fmt == "parquet":
            if not output:
                raise UsageError("--format parquet needs --output FILE")
            con.execute(f"COPY ({sql}) TO {literal(output)} (FORMAT parquet)")
            return f"written to {output}"
        rel = con.sql(sql)
        if rel is None:
            return "ok"
        if fmt == "table":
            text = str(rel.limit(max_rows)) if output is None else None
            if text is not None:
                return text
        return _write_rows(con, sql, fmt, output)
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None


def _write_rows(con: duckdb.DuckDBPyConnection, sql: str, fmt: str, output: str | None) -> str:
    sink = io.StringIO() if output is None else open(output, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        result = con.execute(sql)
        columns = [d[0] for d in result.description]
        writer = csv.writer(sink) if fmt in ("csv", "table") else None
        if writer:
            writer.writerow(columns)
        while batch := result.fetchmany(10_000):
            for row in batch:
                if writer:
                    writer.writerow(["" if v is None else _plain(v) for v in row])
                else:
                    sink.write(json.dumps(dict(zip(columns, map(_plain, row), strict=True)), default=str) + "\n")
        return sink.getvalue() if output is None else f"written to {output}"
    finally:
        if output is not None:
            sink.close()
