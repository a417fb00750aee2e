"""Convert one export part (CSV, gzip CSV or Parquet) to typed Parquet with DuckDB, streaming.

DuckDB reads the input in vectors and writes row groups as it goes, so memory stays flat however large
the file is. DuckDB's errors are mapped to the stable error codes of :mod:`hub.errors`.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import threading
import zlib
from collections.abc import Callable, Collection

import duckdb

from hub.errors import HubError, InputError, UsageError
from hub.export_schemas import Column, ExportSchema
from hub.store import glob_escape, redact
from transforms.typing import ERROR_TAG, TWIN, IncompatibleType, Projection, header_key, ident, literal, project, scan, try_text

#: Rows per Parquet row group. Each DuckDB thread encodes its own row groups; at the end of a file the last
#: ones are encoded while the other threads are idle, so smaller groups shorten that tail (1M Costs rows:
#: about 0.5 s less than with 131,072) at the same file size and query speed.
ROW_GROUP_SIZE = 65_536
#: ... or fewer rows when a row group reaches this size in memory (keeps wide Costs rows from piling up).
ROW_GROUP_BYTES = "256MB"
#: Parquet compression of the lake (``HUB_PARQUET_COMPRESSION``): snappy, which every Parquet reader supports
#: (Power BI's included) and is the fastest to write; zstd makes files about a fifth smaller.
COMPRESSION = os.environ.get("HUB_PARQUET_COMPRESSION", "snappy").lower()
CODECS = ("snappy", "zstd", "gzip", "lz4", "brotli", "uncompressed")
MAX_LINE_SIZE = 8 * 1024 * 1024
#: Fewer shared columns than this fraction of the schema means the file is not what the manifest says.
MIN_MATCHED = 0.5


def file_kind(name: str, *, file: str) -> str:
    """``csv``, ``csv.gz`` or ``parquet`` from a blob name; anything else is unsupported."""
    low = name.lower()
    if low.endswith(".csv"):
        return "csv"
    if low.endswith((".csv.gz", ".gz")):
        return "csv.gz"
    if low.endswith(".parquet"):
        return "parquet"
    raise InputError("parts must be .csv, .csv.gz or .parquet", file=file, code="UnsupportedExportFileType")


#: DuckDB's memory limit for conversions (``HUB_MEMORY_LIMIT``); with row groups capped by bytes the Parquet writer of wide
#: Costs rows stays well under it and peak RSS does not grow with the file size.
MEMORY_LIMIT = os.environ.get("HUB_MEMORY_LIMIT", "1.5GB")


def connect(threads: int | None = None, memory_limit: str | None = None,
            temp_dir: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for streaming conversion in UTC."""
    # The transforms' joins (display names, price sheet) are all "export LEFT JOIN small lookup". DuckDB's
    # build_side_probe_side optimizer may flip them and build the hash table on the export: every row of it held
    # in memory, then spilled (1M rows: 7 s -> 70 s with DuckDB 2.0.1). The lookup is always the build side.
    config: dict[str, object] = {"preserve_insertion_order": False, "memory_limit": memory_limit or MEMORY_LIMIT,
                                 "disabled_optimizers": "build_side_probe_side"}
    if threads:
        config["threads"] = threads
    if temp_dir:
        config["temp_directory"] = temp_dir
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def unreadable(exc: FileNotFoundError | PermissionError, file: str) -> InputError:
    """``PartReadFailed`` for a part that cannot be opened, named relative to the hub root (the error's own text, the
    OS's or pyarrow's, holds the local path)."""
    reason = "No such file or directory" if isinstance(exc, FileNotFoundError) else "Permission denied"
    return InputError(f"cannot be opened ({reason})", file=file, code="PartReadFailed")


def csv_header(path: str, kind: str, *, file: str, twins: tuple[str, ...] = ()) -> list[str]:
    """The header row of a local CSV (BOM tolerated, quoted names handled) as the file's column names. Names that
    differ only by case are refused, but for headers starting with one of ``twins`` (compared without case): the later
    ones are renamed with :data:`transforms.typing.TWIN` and a count (prefixes compared without case, spaces, ``/``
    and ``_``, as mappings name columns)."""
    try:
        with gzip.open(path, "rb") if kind == "csv.gz" else open(path, "rb") as raw:  # noqa: SIM115
            first = raw.readline(MAX_LINE_SIZE)
    except (FileNotFoundError, PermissionError) as exc:
        raise unreadable(exc, file) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read header ({exc})", file=file, code="CorruptFile") from None
    try:
        row = next(csv.reader(io.StringIO(first.decode("utf-8-sig"))), None)
    except UnicodeDecodeError as exc:
        raise InputError(f"header is not UTF-8 ({exc.reason} at byte {exc.start})", file=file, code="InvalidEncoding") from None
    except csv.Error as exc:  # a line ending Python's reader refuses (a lone carriage return: classic Mac text)
        raise InputError(f"the header row cannot be read as CSV ({exc}; lines must end with LF or CRLF)", file=file,
                         code="MalformedCsv") from None
    if not row or any(not h.strip() for h in row):
        raise InputError("missing or empty header row", file=file, code="SchemaMismatch")
    if len(set(row)) == len(row) and twins:
        seen: dict[str, int] = {}
        for i, h in enumerate(row):
            n = seen[header_key(h)] = seen.get(header_key(h), 0) + 1
            if n > 1 and _bare(h).startswith(tuple(_bare(t) for t in twins)):
                row[i] = f"{h}{TWIN}{n}"
    if len({header_key(h) for h in row}) != len(row):
        raise InputError("duplicate column names in header (compared without case and surrounding spaces)", file=file,
                         code="SchemaMismatch")
    return row


def _bare(name: str) -> str:
    """A header without case, spaces, ``/`` and ``_`` (``resourceTags/user:x`` starts with ``resource_tags_``)."""
    return re.sub(r"[\s/_]", "", name.lower())


def source_sql(path: str, kind: str, header: list[str] | None) -> str:
    """The DuckDB table function reading one local part."""
    if kind == "parquet":
        return scan("read_parquet", literal(path))
    assert header is not None
    cols = "{" + ", ".join(f"{literal(h)}: 'VARCHAR'" for h in header) + "}"
    return scan("read_csv", literal(path), f"columns = {cols}, header = true, auto_detect = false, delim = ',', "
                f"quote = '\"', escape = '\"', nullstr = ['', 'NULL'], strict_mode = true, "
                f"compression = '{'gzip' if kind == 'csv.gz' else 'none'}'")


def source_columns(con: duckdb.DuckDBPyConnection, path: str, kind: str, *, file: str,
                   twins: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """The source SQL of a part and its columns with DuckDB types (``twins``: see :func:`csv_header`)."""
    header = csv_header(path, kind, file=file, twins=twins) if kind != "parquet" else None
    if header is None:
        try:
            open(path, "rb").close()  # noqa: SIM115 - DuckDB's own error would be an InternalError with the local path
        except (FileNotFoundError, PermissionError) as exc:
            raise unreadable(exc, file) from None
    sql = source_sql(path, kind, header)
    if header is not None:
        return sql, dict.fromkeys(header, "VARCHAR")
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()
    except duckdb.Error as exc:
        raise map_error(exc, file=file) from None
    return sql, {r[0]: r[1] for r in rows}


#: Rows of a part read to find its number columns written without an exponent (:func:`exponent_free`).
EXPONENT_SAMPLE = 10_000


def exponent_free(con: duckdb.DuckDBPyConnection, source: str, columns: dict[str, str]) -> set[str]:
    """The text columns of ``columns`` (those of ``source`` that may hold numbers) with no ``e`` / ``E`` in a sample of
    :data:`EXPONENT_SAMPLE` values (a ``LIMIT``: the file's first rows in practice; which rows does not change a
    result). Their decimals are cast directly (:func:`transforms.typing.text_decimal`): the same values as the exponent
    path, which costs a test per value and pays off only where exponents are common (AWS). Nothing on a read error
    (the conversion then reports it)."""
    if not columns:
        return set()
    tests = ", ".join(f"bool_or(contains({ident(c)}, 'e') OR contains({ident(c)}, 'E'))" for c in columns)
    cols = ", ".join(ident(c) for c in columns)
    try:
        found = con.execute(f"SELECT {tests} FROM (SELECT {cols} FROM {source} LIMIT {EXPONENT_SAMPLE})").fetchall()[0]
    except duckdb.Error:
        return set()
    return {c for c, seen in zip(columns, found, strict=True) if not seen}


def plan(schema: ExportSchema, columns: dict[str, str], *, file: str, doubles: tuple[str, ...] = (),
         plain: Collection[str] = ()) -> Projection:
    """The typed projection of a part (``doubles``, ``plain``: see :func:`transforms.typing.project`), refusing files
    that are clearly another dataset or version, lack a column the conversion needs, or bring a column of a type
    that cannot feed its schema column (a BOOLEAN money column)."""
    try:
        proj = project(schema, columns, doubles, plain=plain)
    except IncompatibleType as exc:
        raise InputError(str(exc), file=file, code="SchemaMismatch") from None
    expected = len([c for c in schema.columns if not c.optional])
    if proj.matched < max(1, int(expected * MIN_MATCHED)):
        raise InputError(f"only {proj.matched} of the {expected} columns of {schema.key} found: not a "
                         f"{schema.export_type} {schema.data_version} file?", file=file, code="SchemaMismatch")
    if proj.missing_required:
        by_name = {c.name: c for c in schema.columns}
        names = [" or ".join([n, *by_name[n].aliases[:2]]) for n in proj.missing_required]
        raise InputError(f"missing column(s) the conversion needs: {'; '.join(names)}", file=file, code="SchemaMismatch")
    lake_names = [(c if c.lower().startswith("x_") else f"x_{c}").lower() for c in proj.extra]  # as kept, without case
    if clash := sorted({n for n in lake_names if lake_names.count(n) > 1}):
        both = [c for c, n in zip(proj.extra, lake_names, strict=True) if n == clash[0]]
        kept = both[0] if both[0].lower().startswith("x_") else f"x_{both[0]}"
        raise InputError(f"columns {' and '.join(both)} would both be kept as {kept}: rename one", file=file,
                         code="SchemaMismatch")
    return proj


def write_parquet(con: duckdb.DuckDBPyConnection, select: list[str], source: str, out: str, *, file: str,
                  progress: Callable[[float], None] | None = None, select_only: bool = False,
                  compression: str | None = None, columns: dict[str, str] | None = None) -> int:
    """Stream ``SELECT select FROM source`` into a Parquet file (:data:`COMPRESSION`); returns the row count.
    With ``select_only`` the select list already holds a whole query tail (``* FROM (...)``); ``columns``: the
    query's columns and types when already known (saves planning it once more)."""
    codec = compression or check_codec()
    query = nullable(con, f"SELECT {', '.join(select)}" + ("" if select_only else f" FROM {source}"), file=file, columns=columns)
    sql = (f"COPY ({query}) TO {literal(out)} "
           f"(FORMAT parquet, COMPRESSION {codec}, ROW_GROUP_SIZE {ROW_GROUP_SIZE}, "
           f"ROW_GROUP_SIZE_BYTES '{ROW_GROUP_BYTES}')")
    result: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(con.execute(sql).fetchall()[0][0])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    if progress is None:
        run()
    else:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            try:
                pct = con.query_progress()
            except duckdb.Error:
                pct = -1
            if pct >= 0:
                progress(pct)
        progress(100.0)
    if failure:
        exc = failure[0]
        if isinstance(exc, duckdb.Error):
            raise map_error(exc, file=file) from None
        raise exc
    return int(result[0])


def check_memory_limit() -> str:
    """``HUB_MEMORY_LIMIT`` as DuckDB takes it; a usage error naming it otherwise (never a quarantine of every export)."""
    try:
        duckdb.connect(config={"memory_limit": MEMORY_LIMIT}).close()
    except duckdb.Error:
        raise UsageError(f"HUB_MEMORY_LIMIT={MEMORY_LIMIT!r}: not a memory size DuckDB takes (e.g. 1.5GB, 512MB)") from None
    return MEMORY_LIMIT


def check_codec() -> str:
    """The lake's Parquet codec (``HUB_PARQUET_COMPRESSION``); a usage error when unknown."""
    if COMPRESSION not in CODECS:
        raise UsageError(f"HUB_PARQUET_COMPRESSION must be one of {', '.join(CODECS)}, not {COMPRESSION!r}")
    return COMPRESSION


def nullable(con: duckdb.DuckDBPyConnection, query: str, *, file: str, columns: dict[str, str] | None = None) -> str:
    """``query`` with every column nullable. DuckDB marks a Parquet column REQUIRED when its statistics
    prove it has no nulls (for example when read from Parquet with no nulls), so two files of one dataset
    could differ in schema; a union with a row that never exists (its filter is volatile, so it is not
    optimized away) makes every column optional."""
    if columns is None:
        try:
            columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE {query}").fetchall()}
        except duckdb.Error as exc:
            raise map_error(exc, file=file) from None
    nulls = ", ".join(f"CAST(NULL AS {typ}) AS {ident(name)}" for name, typ in columns.items())
    return f"{query} UNION ALL SELECT {nulls} WHERE random() < 0"


_LINE = re.compile(r"Line: (\d+)")


class EnumMiss(HubError):
    """A value outside a closed-set column's ENUM (:func:`transforms.costs.finish`): write the part without ENUMs."""


def file_types(columns: dict[str, str]) -> dict[str, str]:
    """Column types as a Parquet file written from ``columns`` has them: an ENUM is written as strings."""
    return {name: "VARCHAR" if typ.startswith("ENUM(") else typ for name, typ in columns.items()}


#: Quoted text in DuckDB's messages: values and lines of the input, never repeated in ours.
#: What DuckDB, zlib and pyarrow say of a cut or damaged gzip / Parquet file.
_CORRUPT = re.compile(r"gzip|zlib|magic bytes|too small to be a Parquet|Corrupt|truncated|footer|thrift|decompression|"
                      r"don't know what type|out of buffer|TProtocolException", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTED = re.compile(r"(?<!\w)'[^']*'|\"[^\"]*\"")  # an apostrophe inside a word (don't) opens nothing


def error_text(exc: BaseException) -> str:
    """One line about an unexpected error: what the store said for a storage error (behind a wrapper too), credentials
    removed; else :func:`scrub` of it (no quoted part: DuckDB may cite file content)."""
    from hub.store import describe, storage_cause

    cause = storage_cause(exc)
    return describe(cause) if cause is not None and not isinstance(exc, duckdb.Error) else scrub(f"{type(exc).__name__}: {exc}")


#: An absolute path in an error text (DuckDB names the local file it read: a temporary copy of a remote root's).
_ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:[^\s/:'\"()]+/)+[^\s:'\"()]*")


def scrub(text: str) -> str:
    """The first line of an error text with every quoted part (file content DuckDB may cite), every absolute path (the
    error names its file already) and every credential left out."""
    first = text.splitlines()[0] if text else ""
    return _CONTROL.sub("?", _ABSOLUTE.sub("…", redact(_QUOTED.sub("'…'", first))))[:300]  # secrets first: a key holds '/'


def map_error(exc: BaseException, *, file: str) -> HubError:
    """Turn a DuckDB error into a coded, one-line error naming the file; it never repeats the file's content."""
    text = str(exc)
    if isinstance(exc, duckdb.ConversionException) and " to ENUM(" in text:
        return EnumMiss("a value outside a closed set", file=file)
    if ERROR_TAG in text:
        col, what = (text.split(ERROR_TAG, 1)[1].split("|") + ["", ""])[:2]
        err = InputError(f"column {col}: a value {what.strip()}", file=file, code="InvalidValue")
        err.column = col
        return err
    line = _LINE.search(text)
    where = f" at line {line.group(1)}" if line else ""
    if "Invalid unicode" in text or "not utf-8" in text:
        return InputError(f"not UTF-8{where}", file=file, code="InvalidEncoding")
    if _CORRUPT.search(text):
        return InputError(f"truncated or not the file its name says ({scrub(text)})", file=file, code="CorruptFile")
    if "Expected Number of Columns" in text:
        m = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
        detail = f"expected {m.group(1)} fields, found {m.group(2)}" if m else "wrong number of fields"
        return InputError(f"{detail}{where}", file=file, code="MalformedCsv")
    if "CSV Error" in text or "quote" in text.lower():
        return InputError(f"broken quoting or field count{where}", file=file, code="MalformedCsv")
    if isinstance(exc, duckdb.ConversionException):
        return InputError(f"a value cannot be converted ({scrub(text)})", file=file, code="InvalidValue")
    if "Malformed JSON in file" in text:  # a line of a newline-JSON file (DuckDB counts lines from 1 after the first)
        json_line = re.search(r"in line (\d+)", text)
        at = f" at line {int(json_line.group(1)) - 1}" if json_line else ""
        return InputError(f"a line is not a JSON object{at}", file=file, code="MalformedJson")
    if "Malformed JSON" in text:  # a JSON text column (Google's credits, labels) that does not parse
        return InputError("a JSON column's value is not valid JSON", file=file, code="InvalidValue")
    if "according to format specifier" in text:
        return InputError("a date or month does not have the form the column needs", file=file, code="InvalidValue")
    return HubError(scrub(text), file=file, code="InternalError")


def first_bad_row(con: duckdb.DuckDBPyConnection, source: str, name: str, column: Column) -> int | None:
    """The 1-based data row of the first value of source column ``name`` that cannot become ``column``'s type
    (the failure path of :class:`InvalidValue`: one more scan, to tell the user where to look)."""
    value = ident(name)
    try:
        rows = con.execute(f"SELECT n FROM (SELECT row_number() OVER () AS n, {value} FROM {source}) "
                           f"WHERE {value} IS NOT NULL AND {try_text(column, value)} IS NULL ORDER BY n LIMIT 1").fetchall()
    except duckdb.Error:
        return None
    return int(rows[0][0]) if rows else None


def count_rows(con: duckdb.DuckDBPyConnection, files: list[str]) -> int:
    """Rows in Parquet files (each file counted once), read from their footers."""
    files = list(dict.fromkeys(files))
    if not files:
        return 0
    listing = "[" + ", ".join(literal(glob_escape(f)) for f in files) + "]"  # by exact name: never a glob
    return int(con.execute(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({listing})").fetchall()[0][0])


def totals(con: duckdb.DuckDBPyConnection, source: str, currency: str, amounts: dict[str, str],
           where: str = "true") -> dict[str, dict[str, str]]:
    """``{currency: {name: sum}}`` over a relation; sums as decimal strings."""
    if not amounts:
        return {}
    sums = ", ".join(f"CAST(coalesce(sum({expr}), 0) AS VARCHAR)" for expr in amounts.values())
    try:
        rows = con.execute(f"SELECT coalesce(CAST({currency} AS VARCHAR), ''), {sums} FROM {source} WHERE {where} "
                           "GROUP BY 1 ORDER BY 1").fetchall()
    except duckdb.OutOfRangeException:  # each value fits DECIMAL(38,18), their sum does not: no bill is that large
        names = ", ".join(sorted({a.split(":")[-1] for a in amounts}))
        raise InputError(f"the amounts of {names} add up past 10^20 (DECIMAL(38,18)): not a bill's amounts",
                         code="InvalidValue") from None
    return {r[0]: dict(zip(amounts, r[1:], strict=True)) for r in rows}


def parquet_source(files: list[str], *, filename: bool = False) -> str:
    listing = "[" + ", ".join(literal(f) for f in files) + "]"
    return scan("read_parquet", listing, f"union_by_name = true{', filename = true' if filename else ''}")
