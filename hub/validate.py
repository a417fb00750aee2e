"""``hub validate``: check a FOCUS file, folder or hub root against FOCUS 1.0, every row of it.

Runs all checks of :mod:`transforms.focus_validate` in one scan (one ``count(*) FILTER`` per check),
then fetches a few sample rows for each failing check. During ingestion the same checks are counted
while the rows are written (:class:`CheckTap`), so the output is not read back.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
from duckdb.sqltypes import BIGINT, BOOLEAN

from hub.convert import connect, file_types
from hub.store import shown, utf8
from transforms.focus_validate import DEFAULT_TOLERANCE, Check, cast_double, checks, focus_columns, typed_projection
from transforms.typing import enum_type, glob_escape, ident, literal, scan

SAMPLES = 3


@dataclass
class CheckResult:
    rule: str
    column: str
    text: str
    violations: int
    samples: list[dict] = field(default_factory=list)


@dataclass
class Report:
    source: str
    rows: int
    checked: int
    results: list[CheckResult]

    @property
    def violations(self) -> int:
        return sum(r.violations for r in self.results)

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def summary(self) -> dict[str, int]:
        """``{"Rule:Column": violations}`` for failing checks (what a run record keeps)."""
        return {f"{r.rule}:{r.column}": r.violations for r in self.results}

    def to_json(self) -> dict:
        return {"source": self.source, "rows": self.rows, "checks": self.checked, "violations": self.violations,
                "results": [r.__dict__ for r in self.results]}


def _source(path: str) -> tuple[str, bool]:
    """The DuckDB relation of a path and whether it is raw text."""
    low = path.lower()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", path) and not low.startswith("file://"):
        raise ValueError(f"{path}: hub validate reads local paths (a file, a folder or a hub root); copy the files "
                         "down first (a committed run's own validation is in its record: hub status --json)")
    if os.path.isdir(path):
        costs = os.path.join(path, "ingestion", "Costs")
        lake = os.path.abspath(path)
        if not os.path.isdir(costs) and os.path.basename(lake) == "ingestion":  # a hub's lake folder: its Costs (never
            if os.path.isdir(os.path.join(path, "Costs")):  # Prices and the others as Costs)
                costs = os.path.join(path, "Costs")
            elif os.path.isdir(os.path.join(os.path.dirname(lake), "config")):
                raise ValueError(f"{path}: no Costs in the lake yet (hub validate checks the Costs dataset)")
        if not os.path.isdir(costs) and os.path.isdir(os.path.join(path, "config")):  # a hub root: never its staging
            raise ValueError(f"{path}: no Costs in the lake yet (nothing committed; hub status shows the runs)")
        base = costs if os.path.isdir(costs) else path
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(base) for f in names if f.endswith(".parquet"))
        if bad := next((f for f in files if not utf8(f)), None):
            raise ValueError(f"{shown(bad)}: the name is not valid UTF-8 (DuckDB reads no such name): rename it in UTF-8")
        if not files:  # listed, never globbed: the path may hold [ or \
            raise ValueError(f"{path}: no Parquet files to validate (an empty lake?)")
        return scan("read_parquet", f"[{', '.join(literal(f) for f in files)}]",
                    "union_by_name = true, filename = true, file_row_number = true"), False
    if low.endswith(".parquet"):
        return scan("read_parquet", literal(path), "filename = true, file_row_number = true"), False
    if low.endswith((".csv", ".csv.gz")):
        return scan("read_csv", literal(path), "all_varchar = true, header = true, nullstr = ''"), True
    raise ValueError(f"{path}: expected a .parquet or .csv file, a folder of Parquet files or a hub root")


def validate(path: str, *, tolerance: float = DEFAULT_TOLERANCE, con: duckdb.DuckDBPyConnection | None = None) -> Report:
    """Validate ``path`` (a CSV or Parquet file, a folder of Parquet files, or a hub root's Costs)."""
    source, text = _source(path)
    own = con is None
    con = con or connect()
    try:
        report = validate_relation(con, source, text_source=text, label=path, tolerance=tolerance,
                                   named=os.path.isdir(path))
    finally:
        if own:
            con.close()
    if os.path.isdir(path):  # which file of the folder a sample row is in, named from the folder
        for result in report.results:
            for sample in result.samples:
                if sample.get("file"):
                    sample["file"] = os.path.relpath(sample["file"], path)
    return report


def _files_source(files: list[str]) -> str:
    listing = "[" + ", ".join(literal(f) for f in files) + "]"
    return scan("read_parquet", listing, "union_by_name = true, filename = true, file_row_number = true")


def _counts(todo: list[Check]) -> str:
    """One ``count(*) FILTER`` per row check (NULL is no violation)."""
    return ", ".join(f"count(*) FILTER (WHERE coalesce(({c.violation}), false))" for c in todo)


def validate_files(con: duckdb.DuckDBPyConnection, files: list[str], *, label: str,
                   tolerance: float = DEFAULT_TOLERANCE) -> Report:
    """Validate Parquet files (a run's output)."""
    return validate_relation(con, _files_source(files), text_source=False, label=label, tolerance=tolerance)


def validate_relation(con: duckdb.DuckDBPyConnection, source: str, *, text_source: bool, label: str,
                      tolerance: float = DEFAULT_TOLERANCE, named: bool = False) -> Report:
    """Validate a DuckDB relation; ``named``: samples say which file (``filename``) their row is in."""
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    columns = {r[0]: r[1] for r in described if r[0] not in ("filename", "file_row_number")}
    view = f"(SELECT * FROM {source})"
    if text_source:
        view = f"(SELECT row_number() OVER () AS file_row_number, {', '.join(typed_projection(list(columns)))} FROM {source})"
    todo = checks(columns, text_source=text_source, tolerance=tolerance)
    row_checks = [c for c in todo if not c.schema_level]
    counts = _counts(row_checks)
    totals = con.execute(f"SELECT count(*){', ' + counts if counts else ''} FROM {view}").fetchall()[0]
    rows = int(totals[0])
    by_check = dict(zip(row_checks, totals[1:], strict=True))
    results = []
    for check in todo:
        n = max(rows, 1) if check.schema_level else int(by_check[check])  # an empty file lacking a column lacks it
        if n:
            results.append(CheckResult(check.rule, check.column, check.text, n, _samples(con, view, check, columns, text_source,
                                                                                        named)))
    return Report(label, rows, len(todo), results)


def _samples(con: duckdb.DuckDBPyConnection, view: str, check: Check, columns: dict[str, str], text_source: bool,
             named: bool = False) -> list[dict]:
    if check.schema_level:
        return []
    shown = [c for c in (check.column, "ChargeCategory", "ChargeClass") if c in columns]
    names = [f"{ident('raw:' + c) if text_source else ident(c)} AS {ident(c)}" for c in dict.fromkeys(shown)]
    # 1-based data rows of their file on every path (a CSV's header line not counted), and the file when asked
    where = ['file_row_number AS "row"' if text_source else 'file_row_number + 1 AS "row"']
    if named:
        where.append('filename AS "file"')
    cols = ", ".join([*where, *names])
    rel = con.sql(f"SELECT {cols} FROM {view} WHERE coalesce(({check.violation}), false) LIMIT {SAMPLES}")
    return [{k: (None if v is None else str(v)) for k, v in zip(rel.columns, row, strict=True)} for row in rel.fetchall()]


#: Checks per BIGINT bit mask handed to the tap (bit 63 is left alone: it is the sign).
MASK_BITS = 62


class CheckTap:
    """The FOCUS checks of the rows a Costs normalization query writes.

    Most row checks (conditional nullability, signs, period ends, price x quantity) are counted while the rows
    are written: :meth:`where` is a condition for the query's last step (:func:`transforms.costs.finish`) that
    packs their results into bit masks and hands them, a vector of rows at a time (as Arrow arrays), to a
    side-effect function that adds them up and keeps every row; the arithmetic reads the DOUBLE copies parsed
    from the export's text (same values, no slow DECIMAL -> DOUBLE casts). The ``on_file`` checks are read from
    the written file afterwards (:func:`file_counts`): from its statistics, or by one scan of a few string
    columns, cheap on their dictionaries. The predicates are those of ``hub validate`` in every case.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.con, self.name, self.tolerance = con, name, tolerance
        self.columns: dict[str, str] = {}
        self.checks: list[Check] = []
        self.row_checks: list[Check] = []
        self.proven: set[tuple[str, str]] = set()
        self.rows = 0
        self.counts = np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """What the report needs (:func:`tap_report`), without the connection: a tap taken on a Spark executor is
        sent back to the driver."""
        return {k: v for k, v in self.__dict__.items() if k not in ("con", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, con=None, _lock=threading.Lock())

    def where(self, names: list[str], double: Callable[[str], str] = cast_double) -> str:
        """The condition for a query whose finished rows have columns ``names``; registers the tap function."""
        # which row rules apply depends only on the columns present, not on their types
        todo = checks(dict.fromkeys(names, "DOUBLE"), text_source=False, tolerance=self.tolerance, double=double, typed=False)
        self.row_checks = [c for c in todo if not c.on_file and not c.schema_level]
        self.counts = np.zeros(len(self.row_checks), dtype=np.int64)
        masks = []
        for start in range(0, len(self.row_checks), MASK_BITS):
            bits = [f"(CAST(coalesce(({c.violation}), false) AS {BIGINT}) << {i})"
                    for i, c in enumerate(self.row_checks[start:start + MASK_BITS])]
            # most rows break no rule: one chain of ORs (each test runs only on the rows not yet TRUE) picks the rows
            # whose mask is built, cheaper per row than shifting and OR-ing a BIGINT per check
            some = " OR ".join(f"({c.violation})" for c in self.row_checks[start:start + MASK_BITS])
            masks.append(f"CASE WHEN {some} THEN {' | '.join(bits)} ELSE 0 END")
        masks = masks or ["0"]
        # DuckDB reads the arity from the function's signature: one BIGINT parameter per mask
        take = {1: lambda a: self._take(a), 2: lambda a, b: self._take(a, b), 3: lambda a, b, c: self._take(a, b, c)}[len(masks)]
        self.con.create_function(self.name, take, [BIGINT] * len(masks), BOOLEAN, type="arrow", null_handling="special",
                                 side_effects=True)
        return f"{self.name}({', '.join(masks)})"

    def describe(self, columns: dict[str, str]) -> None:
        """The query's columns and DuckDB types: every check of ``hub validate`` that applies to the file they are
        written to. A column of the query that is an ENUM of FOCUS allowed values (the fast path of
        :func:`transforms.costs.finish`) cannot break its AllowedValues check: that one is not counted on the file."""
        self.columns = file_types(columns)
        self.checks = checks(self.columns, text_source=False, tolerance=self.tolerance)
        focus = focus_columns()
        self.proven = {("AllowedValues", name) for name, typ in columns.items()
                       if name in focus and focus[name].allowed_values and typ == enum_type(focus[name].allowed_values)}
        self.proven |= {(c.rule, c.column) for c in self.checks if c.guaranteed}  # the normalization's own guarantees

    def _take(self, *masks: pa.ChunkedArray) -> pa.Array:
        n = len(masks[0])
        values = np.stack([int64_values(m) for m in masks], axis=1)
        values = values[values.any(axis=1)]  # most rows break no rule: only the others are unpacked
        bits = np.unpackbits(values.view(np.uint8), axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
        counts = bits.reshape(-1, 64)[:, :MASK_BITS].ravel()[: len(self.row_checks)]
        with self._lock:
            self.rows += n
            self.counts += counts
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(b"\xff" * ((n + 7) // 8))])


def int64_values(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The values of a BIGINT column without nulls, read from its Arrow buffers. pyarrow's own ``to_numpy`` and
    ``pa.array(ndarray)`` import pandas when it is installed (a quarter of a second, inside the query, holding the
    GIL): the check tap and the totals use neither."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [np.frombuffer(c.buffers()[1], dtype=np.int64, count=c.offset + len(c))[c.offset:] for c in chunks if len(c)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def file_counts(con: duckdb.DuckDBPyConnection, file: str, todo: list[Check]) -> dict[tuple[str, str], int]:
    """Violations of row checks in a Parquet file: NotNull / EmptyString from its column statistics where they
    are exact (null counts; no chunk whose minimum is ''), every other check by one scan."""
    meta = {r[0]: r[1:] for r in con.execute(
        "SELECT path_in_schema, sum(stats_null_count), count(*) FILTER (WHERE stats_null_count IS NULL), "
        "bool_or(coalesce(stats_min_value = '', num_values > stats_null_count, true)) "
        f"FROM parquet_metadata({literal(glob_escape(file))}) GROUP BY 1").fetchall()}
    out, scanned = {}, []
    for check in todo:
        nulls, unknown, maybe_empty = meta.get(check.column, (None, 1, True))
        if check.rule == "NotNull" and not unknown:
            out[(check.rule, check.column)] = int(nulls or 0)
        elif check.rule == "EmptyString" and maybe_empty is False:
            out[(check.rule, check.column)] = 0
        else:
            scanned.append(check)
    if scanned:
        found = con.execute(f"SELECT {_counts(scanned)} FROM {scan('read_parquet', literal(file))}").fetchall()[0]
        out.update({(c.rule, c.column): int(n) for c, n in zip(scanned, found, strict=True)})
    return out


def tap_report(con: duckdb.DuckDBPyConnection, taps: list[CheckTap], files: list[str], *, label: str) -> Report:
    """The report of the rows written to ``files`` (one :class:`CheckTap` per file): the taps' counts, the
    other row checks from the files (:func:`file_counts`), samples of failing checks read from the files."""
    found: dict[tuple[str, str], int] = {}
    for tap, file in zip(taps, files, strict=True):
        tapped = {(c.rule, c.column) for c in tap.row_checks} | tap.proven
        from_file = file_counts(con, file, [c for c in tap.checks if not c.schema_level and (c.rule, c.column) not in tapped])
        for check in tap.checks:
            key = (check.rule, check.column)
            found[key] = found.get(key, 0) + (tap.rows if check.schema_level else from_file.get(key, 0))
        for check, n in zip(tap.row_checks, tap.counts, strict=True):
            found[(check.rule, check.column)] += int(n)
    by_key = {(c.rule, c.column): c for t in taps for c in t.checks}
    view = f"(SELECT * FROM {_files_source(files)})"
    columns = {k: v for t in taps for k, v in t.columns.items()}
    results = [CheckResult(by_key[k].rule, by_key[k].column, by_key[k].text, n, _samples(con, view, by_key[k], columns, False))
               for k, n in found.items() if n]
    return Report(label, sum(t.rows for t in taps), len(found), results)
