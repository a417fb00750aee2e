"""Conversion of one export delivery into staging: every part typed and normalized in one streaming DuckDB pass,
its input counted by a tap, its FOCUS checks counted while written, rows and totals reconciled, Costs checked
(:mod:`hub.checks`). What is staged is swapped in by the caller (:mod:`hub.engine`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from hub import convert, deliveries, lookups, normalize, runs
from hub.checks import check_costs, month_end
from hub.errors import HubError
from hub.export_schemas import ExportSchema, find_schema
from hub.faults import checkpoint
from hub.manifest import Manifest
from hub.runs import RunRecord
from hub.store import Store, dataset_folder, part_file_name, raw_staging
from hub.validate import CheckTap, tap_report
from transforms.costs import Lineage
from transforms.typing import ROUNDED, Projection, ident, literal

#: Called with (record, part index, part count, percent) while a large part converts.
Progress = Callable[[RunRecord, int, int, float], None]
#: Parts at least this large report progress.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


def convert_delivery(store: Store, rec: RunRecord, m: Manifest, blobs: list[str], progress: Progress | None,
                     fail_after_parts: int | None, paired: bool | None) -> None:
    """Check every part's schema, then type and normalize each part into staging in one pass; rows and
    totals of the input are taken on the way (:class:`hub.normalize.InputTap`) and reconciled with the output.

    A gzip part is typed into a local Parquet file first, so it is decompressed once.
    """
    with tempfile.TemporaryDirectory(prefix="hub-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            schema: ExportSchema | None = None
            parts: list[Part] = []
            for i, blob in enumerate(blobs):
                kind = convert.file_kind(blob, file=blob)
                src = store.local_path(blob)
                if src is None:
                    src = os.path.join(tmp, f"in-{i}-{posixpath.basename(blob)}")
                    store.get_file(blob, src)
                sql, columns = convert.source_columns(con, src, kind, file=blob)
                if schema is None:
                    schema = find_schema(m.exportConfig.type, m.exportConfig.dataVersion, list(columns), file=blob)
                    rec.schemaKey, rec.dataset = schema.key, schema.dataset
                    year, month = m.year_month
                    rec.destination = dataset_folder(schema.dataset, year, month, rec.scope or "", schema.subfolder)
                proj = convert.plan(schema, columns, file=blob, doubles=normalize.doubles(schema))
                rec.missingColumns = sorted(set(rec.missingColumns) | set(proj.missing))
                rec.extraColumns = sorted(set(rec.extraColumns) | set(proj.extra))
                part = Part(blob, f"(SELECT {', '.join(proj.select)} FROM {sql})", sql, proj)
                if kind == "csv.gz":
                    out = os.path.join(tmp, f"typed-{i}.parquet")
                    with located(part, schema):
                        convert.write_parquet(con, proj.select, sql, out, file=blob, compression="snappy")
                    part.source = f"read_parquet({literal(out)})"
                parts.append(part)
                rec.parts.append(runs.PartResult(blob=blob, output="", rows=0, bytes=os.path.getsize(src)))
            assert schema is not None
            _normalize(store, con, rec, m, schema, parts, tmp, progress, fail_after_parts, paired)
        finally:
            con.close()


@dataclass
class Part:
    """One part on its way: its blob, the typed relation, the raw source and how its columns were matched."""

    blob: str
    source: str
    raw: str
    projection: Projection


@contextlib.contextmanager
def located(part: Part, schema: ExportSchema) -> Iterator[None]:
    """An ``InvalidValue`` raised inside names the data row of the first bad value (one more scan of the part)."""
    try:
        yield
    except HubError as exc:
        column = getattr(exc, "column", None)
        name = part.projection.sources.get(column or "")
        col = next((c for c in schema.columns if c.name == column), None)
        if exc.code == "InvalidValue" and name and col is not None:
            con = duckdb.connect()  # insertion order kept: row numbers are the file's
            try:
                row = convert.first_bad_row(con, part.raw, name, col)
            finally:
                con.close()
            if row is not None:
                exc.message = f"{exc.message} (data row {row:,})"
        raise


def _normalize(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, m: Manifest, schema: ExportSchema,
               parts: list[Part], tmp: str, progress: Progress | None, fail_after_parts: int | None,
               paired: bool | None) -> None:
    year, month = m.year_month
    price_table = normalize.load_prices(con, store, year, month, tmp) if schema.dataset == "Costs" else None
    lineage = Lineage("Cost Management", "Microsoft", schema.export_type, m.exportConfig.dataVersion or schema.data_version,
                      datetime.now(timezone.utc).isoformat())
    outputs = []
    summary = normalize.InputSummary()
    checks: list[CheckTap] = []
    for i, (part, result) in enumerate(zip(parts, rec.parts, strict=True)):
        name = part_file_name(m.runInfo.runId, part.blob)
        staged = f"{rec.staging}/{name}"
        out = store.local_path(staged) or os.path.join(tmp, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cb = None
        if progress is not None and result.bytes >= PROGRESS_MIN_BYTES:
            def cb(pct: float, i: int = i) -> None:
                progress(rec, i, len(parts), pct)
        with located(part, schema):
            try:  # fast path: closed-set columns as ENUMs; a value outside a set writes the part again without them
                tap, check, written = _write_part(con, schema, part, lineage, price_table, out, cb, f"{i}", paired, closed=True)
            except convert.EnumMiss:
                tap, check, written = _write_part(con, schema, part, lineage, price_table, out, cb, f"{i}_all", paired)
        if check:
            checks.append(check)
        summary.add(tap.summary)
        if store.local_path(staged) is None:
            store.put_file(out, staged)
        if schema.keep_raw:  # the typed export as delivered, for readers that expect its columns
            raw = f"{raw_staging(rec.staging)}/{name}"
            raw_out = store.local_path(raw) or os.path.join(tmp, f"raw-{name}")
            os.makedirs(os.path.dirname(raw_out), exist_ok=True)
            convert.write_parquet(con, [f"* EXCLUDE ({ident(ROUNDED)})" if ROUNDED in part.source else "*"], part.source,
                                  raw_out, file=part.blob, compression="snappy")  # published as is
            if store.local_path(raw) is None:
                store.put_file(raw_out, raw)
        result.rows, result.output = written, f"{rec.destination}/{name}"
        outputs.append(out)
        checkpoint(f"after-part-{i + 1}")
        if fail_after_parts is not None and i + 1 >= fail_after_parts:
            raise RuntimeError(f"injected failure after part {i + 1}")
    rec.rowsIn, rec.rowsFiltered, rec.totalsIn = summary.rows, summary.dropped, summary.totals
    rec.rowsRounded = summary.rounded
    if m.dataRowCount is not None and m.dataRowCount != rec.rowsIn:
        raise HubError(f"read {rec.rowsIn} rows, manifest dataRowCount is {m.dataRowCount}",
                       file=rec.manifest, code="RowCountMismatch")
    rec.rowsOut = sum(p.rows for p in rec.parts)
    if rec.rowsOut != rec.rowsIn - rec.rowsFiltered:
        raise HubError(f"rows {rec.rowsIn} in, {rec.rowsFiltered} left out by rule, {rec.rowsOut} written",
                       file=rec.manifest, code="InternalError")
    if not rec.rowsIn:  # header-only parts: nothing will be swapped in (see process)
        for result in rec.parts:
            result.output = ""
        return
    rec.totalsOut, rec.totalsIngested = normalize.output_totals(con, schema.totals, convert.parquet_source(outputs))
    if rec.totalsIngested != rec.totalsIn:
        raise HubError(f"totals do not reconcile: in {rec.totalsIn}, written as ingested {rec.totalsIngested}",
                       file=rec.manifest, code="InternalError")
    if schema.dataset == "Costs":
        report = tap_report(con, checks, outputs, label=rec.destination or "")
        rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                          "rules": report.summary()}
        start = deliveries.utc(m.runInfo.startDate)
        check_costs(con, rec, outputs, start, deliveries.utc(m.runInfo.endDate) if m.runInfo.endDate else month_end(start))


def _write_part(con: duckdb.DuckDBPyConnection, schema: ExportSchema, part: Part, lineage: Lineage, price_table: str | None,
                out: str, progress: Callable[[float], None] | None, tag: str, paired: bool | None, *,
                closed: bool = False) -> tuple[normalize.InputTap, CheckTap | None, int]:
    """Normalize one typed part into ``out``: its input tap, its FOCUS check tap (Costs) and the rows written."""
    try:
        present = normalize.columns(con, part.source)
        tap = normalize.InputTap(con, schema, set(present), f"hub_input_{tag}", paired=paired)
        check = CheckTap(con, f"hub_checks_{tag}") if schema.dataset == "Costs" else None  # FOCUS checks of the rows
        sql = normalize.transform_sql(con, schema, tap.wrap(part.source), lineage, price_table, filtered=True,
                                      check=check.where if check else None, closed=closed, present=present, paired=paired)
        described = getattr(sql, "columns", None) or normalize.columns(con, f"({sql})")  # Costs: known without planning
        if check:
            check.describe(described)
    except duckdb.Error as exc:
        raise convert.map_error(exc, file=part.blob) from None
    written = convert.write_parquet(con, [f"* FROM ({sql})"], "", out, file=part.blob, select_only=True, progress=progress,
                                    columns=described)
    return tap, check, written
