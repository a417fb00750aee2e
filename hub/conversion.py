"""Conversion of one export delivery into staging: every part typed and normalized in one streaming DuckDB pass,
its input counted by a tap, its FOCUS checks counted while written, rows and totals reconciled, Costs checked
(:mod:`hub.checks`). What is staged is swapped in by the caller (:mod:`hub.engine`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb

from hub import convert, deliveries, lookups, normalize, runs
from hub.checks import check_costs
from hub.errors import HubError
from hub.export_schemas import ExportSchema, destination, find_schema
from hub.faults import checkpoint
from hub.manifest import Manifest
from hub.runs import RunRecord
from hub.store import Store, dataset_folder, part_file_name, raw_staging
from hub.validate import CheckTap, tap_report
from transforms import legacy_costs
from transforms.costs import Lineage
from transforms.typing import ROUNDED, Projection, decimal_sources, ident, literal, scan

#: Called with (record, part index, part count, percent) while a large part converts.
Progress = Callable[[RunRecord, int, int, float], None]
#: Parts at least this large report progress.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class PartJob:
    """One part of a delivery to convert into staging: everything a process needs to do it on its own (a Spark
    executor gets it pickled)."""

    index: int
    blob: str
    schema: ExportSchema
    staging: str
    #: the part's file name, in staging and in the lake
    name: str
    lineage: Lineage
    paired: legacy_costs.Paired
    year: int
    month: int
    #: test hook of the Spark runner: the part fails on attempts below this number (0: never)
    fail_attempts: int = 0


@dataclass
class PartOutcome:
    """What converting one part gave: rows written, its input tap, its FOCUS check tap (Costs), the columns it lacked
    or brought, a local copy of the written file where the caller can read one; or the input error it raised."""

    index: int
    rows: int = 0
    summary: normalize.InputSummary = field(default_factory=normalize.InputSummary)
    check: CheckTap | None = None
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    local: str | None = None
    #: seconds the conversion took (in a task: connection, prices, plan, write); the task's attempt number, its
    #: start and end (epoch seconds) and its Python worker's process id
    seconds: float = 0.0
    attempt: int = 0
    started: float = 0.0
    ended: float = 0.0
    worker: int = 0
    #: (code, message, file) of a :class:`HubError` (bad input: the delivery is quarantined, never retried)
    error: tuple[str, str, str | None] | None = None


#: Converts a delivery's parts and returns their outcomes in order; ``None`` (the default): in this process, one
#: part after another. :class:`hub.spark.SparkRunner` runs each part as a Spark task.
PartsRunner = Callable[[Store, list[PartJob]], list[PartOutcome]]
_RUNNER: ContextVar[PartsRunner | None] = ContextVar("hub_parts_runner", default=None)


@contextlib.contextmanager
def parts_runner(runner: PartsRunner | None) -> Iterator[None]:
    """Deliveries converted inside this context have their parts converted by ``runner``."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


def convert_delivery(store: Store, rec: RunRecord, m: Manifest, blobs: list[str], progress: Progress | None,
                     fail_after_parts: int | None, paired: legacy_costs.Paired) -> None:
    """Type and normalize every part of a delivery into staging (the first part's columns pick the schema; every
    part is checked against it), then reconcile rows and totals of input and output and check the Costs rows.

    The parts are converted by the context's :func:`parts_runner`, here by default.
    """
    with tempfile.TemporaryDirectory(prefix="hub-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            fetched: dict[str, str] = {}
            first = _local_copy(store, blobs[0], 0, tmp, fetched)
            _, columns = convert.source_columns(con, first, convert.file_kind(blobs[0], file=blobs[0]), file=blobs[0])
            schema = find_schema(m.exportConfig.type, m.exportConfig.dataVersion, list(columns), file=blobs[0])
            year, month = m.year_month
            rec.schemaKey, rec.dataset = schema.key, schema.dataset
            target = destination(schema.export_type, rec.exportName)  # the type has a schema: it is known
            assert target is not None
            rec.destination = dataset_folder(schema.dataset, year, month, rec.scope or "", target[1])
            rec.parts = [runs.PartResult(blob=b, output="", rows=0, bytes=store.size(b)) for b in blobs]
            version = m.exportConfig.dataVersion or schema.data_version
            lineage = Lineage("Cost Management", "Microsoft", schema.export_type, version, datetime.now(timezone.utc).isoformat())
            assert rec.staging
            jobs = [PartJob(i, b, schema, rec.staging, part_file_name(m.runInfo.runId, b), lineage, paired, year, month)
                    for i, b in enumerate(blobs)]
            runner = _RUNNER.get()
            if runner is None:
                outcomes = _convert_here(con, store, rec, jobs, tmp, fetched, progress, fail_after_parts)
            else:
                for folder in (rec.staging, raw_staging(rec.staging)) if schema.keep_raw else (rec.staging,):
                    if (local := store.local_path(folder)) is not None:
                        os.makedirs(local, exist_ok=True)
                outcomes = runner(store, jobs)
                _sweep_attempts(store, rec.staging)
            _reconcile(store, con, rec, m, schema, jobs, outcomes, tmp)
        finally:
            con.close()


def _local_copy(store: Store, blob: str, i: int, tmp: str, fetched: dict[str, str]) -> str:
    """A local path of ``blob``: its own on a local store, else a copy fetched once into ``tmp``."""
    src = store.local_path(blob) or fetched.get(blob)
    if src is None:
        src = fetched[blob] = os.path.join(tmp, f"in-{i}-{posixpath.basename(blob)}")
        store.get_file(blob, src)
    return src


def _convert_here(con: duckdb.DuckDBPyConnection, store: Store, rec: RunRecord, jobs: list[PartJob], tmp: str,
                  fetched: dict[str, str], progress: Progress | None, fail_after_parts: int | None) -> list[PartOutcome]:
    """The parts converted in this process, one after another, on one connection (the month's prices loaded once)."""
    price_table = _prices(con, store, jobs[0], tmp)
    outcomes = []
    for job in jobs:
        cb = None
        if progress is not None and rec.parts[job.index].bytes >= PROGRESS_MIN_BYTES:
            def cb(pct: float, i: int = job.index) -> None:
                progress(rec, i, len(jobs), pct)
        part = plan_part(con, job, _local_copy(store, job.blob, job.index, tmp, fetched), tmp)
        outcomes.append(write_part(con, store, job, part, price_table, tmp, cb))
        checkpoint(f"after-part-{job.index + 1}")
        if fail_after_parts is not None and job.index + 1 >= fail_after_parts:
            raise RuntimeError(f"injected failure after part {job.index + 1}")
    return outcomes


def _prices(con: duckdb.DuckDBPyConnection, store: Store, job: PartJob, tmp: str) -> str | None:
    """The month's price keys on ``con`` for a Costs part (the backfill's join), else None."""
    return normalize.load_prices(con, store, job.year, job.month, tmp) if job.schema.dataset == "Costs" else None


def convert_part(store: Store, job: PartJob, *, threads: int | None = None, attempt: int = 0) -> PartOutcome:
    """One part converted into staging by a process of its own (a Spark task): its own DuckDB connection with
    ``threads`` threads, its own copy of the month's prices. Written under an attempt-unique name first, then
    renamed (put, on a blob store) to the part's staging name: a retried or speculative attempt writes the same
    file. Bad input is returned as the outcome's error (retrying cannot help); anything else raises."""
    started, wall = time.perf_counter(), time.time()
    with tempfile.TemporaryDirectory(prefix="hub-part-") as tmp:
        con = convert.connect(threads=threads, temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            part = plan_part(con, job, _local_copy(store, job.blob, job.index, tmp, {}), tmp)
            prices = _prices(con, store, job, tmp)
            outcome = write_part(con, store, job, part, prices, tmp, None, attempt=attempt)
            outcome.local = None  # the caller reads the staged file
            outcome.seconds, outcome.attempt = time.perf_counter() - started, attempt
            outcome.started, outcome.ended, outcome.worker = wall, time.time(), os.getpid()
            return outcome
        except HubError as exc:
            return PartOutcome(job.index, error=(exc.code, exc.message, exc.file))
        finally:
            con.close()


@dataclass
class Part:
    """One part on its way: its blob, the typed relation, the raw source and how its columns were matched."""

    blob: str
    source: str
    raw: str
    projection: Projection


def plan_part(con: duckdb.DuckDBPyConnection, job: PartJob, src: str, tmp: str) -> Part:
    """A part's typed relation, checked against the schema; a gzip part is typed into a local Parquet file first,
    so it is decompressed once."""
    kind = convert.file_kind(job.blob, file=job.blob)
    sql, columns = convert.source_columns(con, src, kind, file=job.blob)
    proj = convert.plan(job.schema, columns, file=job.blob, doubles=normalize.doubles(job.schema),
                        plain=convert.exponent_free(con, sql, decimal_sources(job.schema, columns)))
    part = Part(job.blob, f"(SELECT {', '.join(proj.select)} FROM {sql})", sql, proj)
    if kind == "csv.gz":
        out = os.path.join(tmp, f"typed-{job.index}.parquet")
        with located(part, job.schema):
            convert.write_parquet(con, proj.select, sql, out, file=job.blob, compression="snappy")
        part.source = scan('read_parquet', literal(out))
    return part


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


def write_part(con: duckdb.DuckDBPyConnection, store: Store, job: PartJob, part: Part, price_table: str | None, tmp: str,
               progress: Callable[[float], None] | None, *, attempt: int | None = None) -> PartOutcome:
    """Normalize one planned part into its staging file (and the typed export as delivered, for datasets that keep
    it). ``attempt`` (a task's): write under an attempt-unique name, then rename (see :func:`convert_part`)."""
    schema = job.schema
    unique = None if attempt is None else f"{attempt}-{uuid.uuid4().hex[:8]}"
    outcome = PartOutcome(job.index, missing=list(part.projection.missing), extra=list(part.projection.extra))
    staged = f"{job.staging}/{job.name}"
    with located(part, schema):
        out = _target(store, staged, tmp, unique)
        try:  # fast path: closed-set columns as ENUMs; a value outside a set writes the part again without them
            tap, outcome.check, outcome.rows = _write_part(con, schema, part, job.lineage, price_table, out, progress,
                                                           f"{job.index}", job.paired, closed=True)
        except convert.EnumMiss:
            tap, outcome.check, outcome.rows = _write_part(con, schema, part, job.lineage, price_table, out, progress,
                                                           f"{job.index}_all", job.paired)
    outcome.summary = tap.summary
    if attempt is not None and attempt < job.fail_attempts:  # the test hook: an attempt dying before its rename
        raise RuntimeError(f"injected failure of part {job.index + 1}, attempt {attempt}")
    outcome.local = _publish(store, out, staged)
    if schema.keep_raw:  # the typed export as delivered, for readers that expect its columns
        raw = f"{raw_staging(job.staging)}/{job.name}"
        raw_out = _target(store, raw, tmp, unique, "raw-")
        convert.write_parquet(con, [f"* EXCLUDE ({ident(ROUNDED)})" if ROUNDED in part.source else "*"], part.source,
                              raw_out, file=part.blob, compression="snappy")  # published as is
        _publish(store, raw_out, raw)
    return outcome


def _target(store: Store, staged: str, tmp: str, attempt: str | None, prefix: str = "") -> str:
    """Where a staged file is written: in place on a local store (beside it, attempt-unique, for a Spark task),
    else in ``tmp`` before it is put."""
    local = store.local_path(staged)
    if local is None:
        return os.path.join(tmp, prefix + posixpath.basename(staged))
    if attempt:  # a task never creates staging: one still running after its job failed cannot bring back a swept folder
        return f"{local}.{attempt}.tmp"
    os.makedirs(os.path.dirname(local), exist_ok=True)
    return local


def _publish(store: Store, out: str, staged: str) -> str:
    """``out`` made the staged file; returns a local path of it."""
    local = store.local_path(staged)
    if local is None:
        store.put_file(out, staged)
        return out
    if out != local:
        os.replace(out, local)  # atomic: a reader of staging sees a whole file or none
    return local


def _sweep_attempts(store: Store, staging: str) -> None:
    """Files of attempts killed mid-write taken out of staging (which a local swap moves in whole); on a blob
    store an attempt puts whole files only."""
    for folder in (staging, raw_staging(staging)):
        local = store.local_path(folder)
        if local is not None and os.path.isdir(local):
            for entry in os.scandir(local):
                if entry.name.endswith(".tmp"):
                    os.remove(entry.path)


def _reconcile(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, m: Manifest, schema: ExportSchema,
               jobs: list[PartJob], outcomes: list[PartOutcome], tmp: str) -> None:
    """The parts' outcomes into the record; input and output rows and totals reconciled; the Costs rows checked."""
    summary = normalize.InputSummary()
    checks: list[CheckTap] = []
    outputs = []
    ordered = sorted(outcomes, key=lambda o: o.index)
    if failed := next((o for o in ordered if o.error is not None), None):  # before any part is recorded as written
        code, message, file = failed.error
        raise HubError(message, file=file, code=code)
    for job, outcome, result in zip(jobs, ordered, rec.parts, strict=True):
        rec.missingColumns = sorted(set(rec.missingColumns) | set(outcome.missing))
        rec.extraColumns = sorted(set(rec.extraColumns) | set(outcome.extra))
        summary.add(outcome.summary)
        if outcome.check:
            checks.append(outcome.check)
        result.rows, result.output = outcome.rows, f"{rec.destination}/{job.name}"
        outputs.append(outcome.local or _local_copy(store, f"{job.staging}/{job.name}", job.index, tmp, {}))
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
        # the period's days as stated (a billing period is calendar days; the folder's month is read the same way), to
        # the end of its last day: an endDate at midnight is that day (a one-day export states the same day twice)
        first, last = (datetime.fromisoformat(d).replace(tzinfo=timezone.utc) for d in deliveries.period(m))
        check_costs(con, rec, outputs, first, last + timedelta(days=1))


def _write_part(con: duckdb.DuckDBPyConnection, schema: ExportSchema, part: Part, lineage: Lineage, price_table: str | None,
                out: str, progress: Callable[[float], None] | None, tag: str, paired: legacy_costs.Paired, *,
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
