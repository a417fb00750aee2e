"""``hub validate``: check a FOCUS file, folder or hub root against FOCUS 1.0, every row of it.

Runs all checks of :mod:`transforms.focus_validate` in one scan (one ``count(*) FILTER`` per check),
then fetches a few sample rows for each failing check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import duckdb

from hub.convert import connect
from transforms.focus_validate import DEFAULT_TOLERANCE, Check, checks, typed_projection
from transforms.typing import ident, literal

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
    if os.path.isdir(path):
        costs = os.path.join(path, "ingestion", "Costs")
        base = costs if os.path.isdir(costs) else path
        return (f"read_parquet({literal(os.path.join(base, '**', '*.parquet'))}, union_by_name = true, "
                f"filename = true, file_row_number = true)"), False
    if low.endswith(".parquet"):
        return f"read_parquet({literal(path)}, filename = true, file_row_number = true)", False
    if low.endswith((".csv", ".csv.gz")):
        return f"read_csv({literal(path)}, all_varchar = true, header = true, nullstr = '')", True
    raise ValueError(f"{path}: expected a .parquet or .csv file, a folder of Parquet files or a hub root")


def validate(path: str, *, tolerance: float = DEFAULT_TOLERANCE, con: duckdb.DuckDBPyConnection | None = None) -> Report:
    """Validate ``path`` (a CSV or Parquet file, a folder of Parquet files, or a hub root's Costs)."""
    source, text = _source(path)
    own = con is None
    con = con or connect()
    try:
        return validate_relation(con, source, text_source=text, label=path, tolerance=tolerance)
    finally:
        if own:
            con.close()


def validate_files(con: duckdb.DuckDBPyConnection, files: list[str], *, label: str,
                   tolerance: float = DEFAULT_TOLERANCE) -> Report:
    """Validate Parquet files (a run's output)."""
    listing = "[" + ", ".join(literal(f) for f in files) + "]"
    return validate_relation(con, f"read_parquet({listing}, union_by_name = true, filename = true, file_row_number = true)",
                             text_source=False, label=label, tolerance=tolerance)


def validate_relation(con: duckdb.DuckDBPyConnection, source: str, *, text_source: bool, label: str,
                      tolerance: float = DEFAULT_TOLERANCE) -> Report:
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    columns = {r[0]: r[1] for r in described if r[0] not in ("filename", "file_row_number")}
    view = f"(SELECT * FROM {source})"
    if text_source:
        view = f"(SELECT row_number() OVER () AS file_row_number, {', '.join(typed_projection(list(columns)))} FROM {source})"
    todo = checks(columns, text_source=text_source, tolerance=tolerance)
    row_checks = [c for c in todo if not c.schema_level]
    counts = ", ".join(f"count(*) FILTER (WHERE coalesce(({c.violation}), false))" for c in row_checks)
    totals = con.execute(f"SELECT count(*){', ' + counts if counts else ''} FROM {view}").fetchall()[0]
    rows = int(totals[0])
    by_check = dict(zip(row_checks, totals[1:], strict=True))
    results = []
    for check in todo:
        n = rows if check.schema_level else int(by_check[check])
        if n:
            results.append(CheckResult(check.rule, check.column, check.text, n, _samples(con, view, check, columns, text_source)))
    return Report(label, rows, len(todo), results)


def _samples(con: duckdb.DuckDBPyConnection, view: str, check: Check, columns: dict[str, str], text_source: bool) -> list[dict]:
    if check.schema_level:
        return []
    shown = [c for c in (check.column, "ChargeCategory", "ChargeClass") if c in columns]
    names = [f"{ident('raw:' + c) if text_source else ident(c)} AS {ident(c)}" for c in dict.fromkeys(shown)]
    cols = ", ".join(['file_row_number AS "row"', *names])
    rel = con.sql(f"SELECT {cols} FROM {view} WHERE coalesce(({check.violation}), false) LIMIT {SAMPLES}")
    return [{k: (None if v is None else str(v)) for k, v in zip(rel.columns, row, strict=True)} for row in rel.fetchall()]
