"""msexports -> ingestion: turn every pending Cost Management export into typed Parquet in the lake.

Triggered by a ``manifest.json`` under ``msexports/`` (``hub ingest``, later the watcher). One export is
processed all-or-nothing: parts are converted to a staging folder, checked (row counts, totals), then
swapped into ``ingestion/<Dataset>/<yyyy>/<mm>/<scope-path>/`` in one step (:mod:`hub.swap`). Any
failure quarantines that export with a stable error code; the source is never deleted on failure and
other exports keep flowing.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb

from hub import convert, lease, lookups, normalize, runs, swap
from hub.errors import HubError, ManifestError
from hub.export_schemas import ExportSchema, find_schema, schema_by_key
from hub.faults import checkpoint
from hub.manifest import Manifest, parse_manifest
from hub.runs import RunError, RunRecord
from hub.settings import Settings, parse_settings
from hub.store import (
    INGESTION,
    MSEXPORTS,
    SETTINGS,
    STAGING,
    Store,
    dataset_folder,
    part_file_name,
    raw_folder,
    raw_staging,
    safe_relpath,
    scope_path,
)
from hub.validate import CheckTap, tap_report
from pipelines.ingestion_etl import ingest_custom
from pipelines.prices_backfill import RENORMALIZE, renormalize_month
from transforms.costs import Lineage
from transforms.typing import literal

#: Called with (record, part index, part count, percent) while a large part converts.
Progress = Callable[[RunRecord, int, int, float], None]
#: Parts at least this large report progress.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@dataclass
class IngestResult:
    """What one ``ingest`` call did."""

    records: list[RunRecord] = field(default_factory=list)
    recovered: list[RunRecord] = field(default_factory=list)
    #: Costs folders re-normalized because their month's prices arrived after them
    renormalized: list[RunRecord] = field(default_factory=list)
    #: another process held the ingestion lease for the whole wait: nothing was done
    busy: bool = False
    #: manifests whose blobs are still arriving (watcher grace period): left pending
    waiting: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[RunRecord]:
        return self.recovered + self.records + self.renormalized

    @property
    def ok(self) -> bool:
        return all(r.state == "committed" for r in self.all)


def load_settings(store: Store) -> Settings:
    return parse_settings(store.read_text(SETTINGS), file=store.full(SETTINGS)) if store.exists(SETTINGS) else Settings()


def ingest(store: Store, *, retry: bool = False, force: bool = False, progress: Progress | None = None,
           fail_after_parts: int | None = None, wait: float = 600.0, lease_ttl: float = lease.DEFAULT_TTL,
           blob_grace: dict[str, float] | None = None, checkpoint: dict[str, str] | None = None) -> IngestResult:
    """Process every pending manifest under ``msexports/`` once, holding the root's ingestion lease.

    ``retry`` re-processes quarantined exports, ``force`` committed ones too. Another process holding the
    lease is waited for up to ``wait`` seconds (then ``busy`` is set and nothing is done).
    ``blob_grace`` (the watcher's): manifest -> deadline (epoch seconds) until which missing blobs mean
    "still uploading" rather than an error. ``checkpoint`` (the watcher's listing checkpoint, updated in
    place): manifest -> listing signature of manifests already final, which are then not read again.
    ``fail_after_parts`` is a fault-injection hook for tests.
    """
    convert.check_codec()  # a bad setting is a usage error, not a quarantine of every export
    deadline = time.monotonic() + wait
    held = lease.try_acquire(store, "ingest", ttl=lease_ttl)
    while held is None and time.monotonic() < deadline:
        time.sleep(0.5)
        held = lease.try_acquire(store, "ingest", ttl=lease_ttl)
    if held is None:
        return IngestResult(busy=True)
    try:
        with lease.Renewer(held):
            return _ingest(store, retry=retry, force=force, progress=progress, fail_after_parts=fail_after_parts,
                           blob_grace=blob_grace, checkpoint=checkpoint)
    finally:
        held.release()


def _ingest(store: Store, *, retry: bool, force: bool, progress: Progress | None, fail_after_parts: int | None,
            blob_grace: dict[str, float] | None, checkpoint: dict[str, str] | None) -> IngestResult:
    settings = load_settings(store)
    result = IngestResult(recovered=recover(store))
    known = runs.by_manifest(store)
    pending: list[tuple[tuple, str, bytes]] = []
    listing = store.manifest_listing(MSEXPORTS)
    final = {}
    for rel, signature in listing.items():
        if checkpoint is not None and checkpoint.get(rel) == signature and not (retry or force):
            continue  # unchanged since it was last found committed or quarantined
        raw = store.read_bytes(rel)
        rec = known.get(rel)
        if rec is not None and rec.manifestSha256 == _sha(raw):
            if rec.state == "committed" and not force:
                final[rel] = signature
                continue
            if rec.state == "quarantined" and not (retry or force):
                final[rel] = signature
                continue
        pending.append((_order(raw, rel), rel, raw))
    for _, rel, raw in sorted(pending, key=lambda p: p[0]):
        if blob_grace is not None and blob_grace.get(rel, float("inf")) > time.time() and _blobs_missing(store, rel, raw):
            result.waiting.append(rel)
            continue
        rec = process(store, rel, raw, settings, existing=known.get(rel), progress=progress, fail_after_parts=fail_after_parts)
        result.records.append(rec)
        if rec.state == "committed" and rec.dataset == "Prices" and rec.month:
            year, month = map(int, rec.month.split("-"))
            result.renormalized += renormalize_month(store, year, month, rec.runId or rec.key)
    result.records += ingest_custom(store)
    if checkpoint is not None:
        final.update({r.manifest: listing[r.manifest] for r in result.records
                      if r.state in ("committed", "quarantined") and r.manifest in listing})
        for rel in [k for k in checkpoint if k not in listing]:
            del checkpoint[rel]  # deleted by retention: forget it
        checkpoint.update(final)
    return result


def _blobs_missing(store: Store, rel: str, raw: bytes) -> bool:
    """True when the manifest parses but some blob is not there yet (or not at its full size)."""
    try:
        _check_blobs(store, parse_manifest(raw, file=rel), rel)
    except HubError as exc:
        return exc.code in ("IngestionFilesNotFound", "ByteCountMismatch")
    return False


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _order(raw: bytes, rel: str) -> tuple:
    """Older deliveries first, so the newest run of a folder is the one left visible."""
    try:
        m = parse_manifest(raw, file=rel)
    except HubError:
        return ("", rel)
    stamp = m.runInfo.submittedTime or m.runInfo.startDate
    return (stamp.isoformat(), rel)


def recover(store: Store) -> list[RunRecord]:
    """Finish swaps that a crash interrupted (roll forward); staged-but-unswapped runs are redone later."""
    done = []
    for rec in runs.load_all(store):
        if rec.state == "converting" and rec.manifest.startswith(RENORMALIZE) and rec.month:
            year, month = map(int, rec.month.split("-"))  # a crash mid re-normalization: redo it
            store.delete_tree(rec.staging or "")
            store.delete(runs.record_path(rec.key))
            done += renormalize_month(store, year, month, rec.runId or rec.key)
        elif rec.state == "swapping" and rec.staging and rec.destination:
            try:
                _swap_and_commit(store, rec, load_settings(store))
            except HubError as exc:  # stays "swapping": tried again next time, never half-applied
                rec.error = RunError(code=exc.code, message=exc.message, file=exc.file)
                runs.save(store, rec)
            done.append(rec)
    return done


def process(store: Store, rel: str, raw: bytes, settings: Settings, *, existing: RunRecord | None = None,
            progress: Progress | None = None, fail_after_parts: int | None = None) -> RunRecord:
    """Ingest one export; never raises for bad input (the record says what happened)."""
    started = time.perf_counter()
    rec = RunRecord(key=existing.key if existing else runs.run_key(rel, None), manifest=rel, manifestSha256=_sha(raw),
                    attempts=(existing.attempts if existing else 0) + 1)
    try:
        manifest = parse_manifest(raw, file=rel)
        _describe(rec, manifest, rel)
        if existing is None or existing.key.startswith("unparsed-"):
            if existing is not None:
                store.delete(runs.record_path(existing.key))
            rec.key = runs.run_key(rel, manifest.runInfo.runId)
        blobs = _check_blobs(store, manifest, rel)
        if manifest.dataRowCount == 0:
            return _no_rows(store, rec, started)
        rec.staging = f"{STAGING}/{rec.key}"
        store.delete_tree(rec.staging)
        store.delete_tree(raw_staging(rec.staging))
        rec.state = "converting"
        runs.save(store, rec)
        _convert_all(store, rec, manifest, blobs, progress, fail_after_parts)
        if rec.rowsIn == 0 and manifest.dataRowCount is None:
            store.delete_tree(rec.staging)
            store.delete_tree(raw_staging(rec.staging))
            return _no_rows(store, rec, started)
        rec.state = "swapping"
        runs.save(store, rec)
        checkpoint("before-swap")
        _swap_and_commit(store, rec, settings)
    except HubError as exc:
        _quarantine(store, rec, exc)
    except Exception as exc:  # noqa: BLE001 - any bug quarantines one export, never the whole run
        _quarantine(store, rec, HubError(f"{type(exc).__name__}: {exc}", file=rel, code="InternalError"))
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def _describe(rec: RunRecord, m: Manifest, rel: str) -> None:
    cfg = m.exportConfig
    year, month = m.year_month
    rec.runId, rec.exportName, rec.exportType, rec.dataVersion = m.runInfo.runId, cfg.exportName, cfg.type, cfg.dataVersion
    rec.month = f"{year:04d}-{month:02d}"
    rec.scope = scope_path(cfg.resourceId, file=rel)
    rec.manifestRows = m.dataRowCount


def _check_blobs(store: Store, m: Manifest, rel: str) -> list[str]:
    """Resolve every blob to a path under ``msexports/``; all must exist with the declared size."""
    if not m.blobs and m.dataRowCount != 0:
        raise ManifestError("no blobs listed", file=rel)
    folder = posixpath.dirname(rel)
    paths = []
    for blob in m.blobs:
        name = blob.blobName.strip()
        if name.lower().startswith(f"{MSEXPORTS}/"):
            name = name[len(MSEXPORTS) + 1:]
        inner = safe_relpath(name, what="blobName", file=rel)
        candidates = [f"{MSEXPORTS}/{inner}"]
        if "/" not in inner:  # hand-made manifests may name parts relative to themselves
            candidates.append(f"{folder}/{inner}")
        path = next((c for c in candidates if store.exists(c)), None)
        if path is None:
            raise ManifestError(f"blob {blob.blobName!r} not found", file=rel, code="IngestionFilesNotFound")
        if blob.byteCount is not None and store.size(path) != blob.byteCount:
            raise ManifestError(f"{path} has {store.size(path)} bytes, manifest says {blob.byteCount}",
                                file=rel, code="ByteCountMismatch")
        convert.file_kind(path, file=path)
        paths.append(path)
    return paths


def _convert_all(store: Store, rec: RunRecord, m: Manifest, blobs: list[str], progress: Progress | None,
                 fail_after_parts: int | None) -> None:
    """Check every part's schema, then type and normalize each part into staging in one pass; rows and
    totals of the input are taken on the way (:class:`hub.normalize.InputTap`) and reconciled with the output.

    A gzip part is typed into a local Parquet file first, so it is decompressed once.
    """
    with tempfile.TemporaryDirectory(prefix="hub-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            schema: ExportSchema | None = None
            typed: list[tuple[str, str]] = []
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
                source = f"(SELECT {', '.join(proj.select)} FROM {sql})"
                if kind == "csv.gz":
                    out = os.path.join(tmp, f"typed-{i}.parquet")
                    convert.write_parquet(con, proj.select, sql, out, file=blob, compression="snappy")
                    source = f"read_parquet({literal(out)})"
                typed.append((blob, source))
                rec.parts.append(runs.PartResult(blob=blob, output="", rows=0, bytes=os.path.getsize(src)))
            assert schema is not None
            _normalize(store, con, rec, m, schema, typed, tmp, progress, fail_after_parts)
        finally:
            con.close()


def _normalize(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, m: Manifest, schema: ExportSchema,
               typed: list[tuple[str, str]], tmp: str, progress: Progress | None, fail_after_parts: int | None) -> None:
    year, month = m.year_month
    price_table = normalize.load_prices(con, store, year, month, tmp) if schema.dataset == "Costs" else None
    lineage = Lineage("Cost Management", "Microsoft", schema.export_type, m.exportConfig.dataVersion or schema.data_version,
                      datetime.now(timezone.utc).isoformat())
    outputs = []
    summary = normalize.InputSummary()
    checks: list[CheckTap] = []
    for i, ((blob, source), part) in enumerate(zip(typed, rec.parts, strict=True)):
        name = part_file_name(m.runInfo.runId, blob)
        staged = f"{rec.staging}/{name}"
        out = store.local_path(staged) or os.path.join(tmp, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cb = None
        if progress is not None and part.bytes >= PROGRESS_MIN_BYTES:
            def cb(pct: float, i: int = i) -> None:
                progress(rec, i, len(typed), pct)
        try:  # fast path: closed-set columns as ENUMs; a value outside a set writes the part again without them
            tap, check, written = _write_part(con, schema, source, lineage, price_table, out, blob, cb, f"{i}", closed=True)
        except convert.EnumMiss:
            tap, check, written = _write_part(con, schema, source, lineage, price_table, out, blob, cb, f"{i}_all")
        if check:
            checks.append(check)
        summary.add(tap.summary)
        if store.local_path(staged) is None:
            store.put_file(out, staged)
        if schema.keep_raw:  # the typed export as delivered, for readers that expect its columns
            raw = f"{raw_staging(rec.staging)}/{name}"
            raw_out = store.local_path(raw) or os.path.join(tmp, f"raw-{name}")
            os.makedirs(os.path.dirname(raw_out), exist_ok=True)
            convert.write_parquet(con, ["*"], source, raw_out, file=blob, compression="snappy")  # published as is
            if store.local_path(raw) is None:
                store.put_file(raw_out, raw)
        part.rows, part.output = written, f"{rec.destination}/{name}"
        outputs.append(out)
        checkpoint(f"after-part-{i + 1}")
        if fail_after_parts is not None and i + 1 >= fail_after_parts:
            raise RuntimeError(f"injected failure after part {i + 1}")
    rec.rowsIn, rec.rowsFiltered, rec.totalsIn = summary.rows, summary.dropped, summary.totals
    if m.dataRowCount is not None and m.dataRowCount != rec.rowsIn:
        raise HubError(f"read {rec.rowsIn} rows, manifest dataRowCount is {m.dataRowCount}",
                       file=rec.manifest, code="RowCountMismatch")
    rec.rowsOut = sum(p.rows for p in rec.parts)
    if rec.rowsOut != rec.rowsIn - rec.rowsFiltered:
        raise HubError(f"rows {rec.rowsIn} in, {rec.rowsFiltered} left out by rule, {rec.rowsOut} written",
                       file=rec.manifest, code="InternalError")
    if not rec.rowsIn:  # header-only parts: nothing will be swapped in (see process)
        for part in rec.parts:
            part.output = ""
        return
    rec.totalsOut, rec.totalsIngested = normalize.output_totals(con, schema, convert.parquet_source(outputs))
    if rec.totalsIngested != rec.totalsIn:
        raise HubError(f"totals do not reconcile: in {rec.totalsIn}, written as ingested {rec.totalsIngested}",
                       file=rec.manifest, code="InternalError")
    if schema.dataset == "Costs":
        report = tap_report(con, checks, outputs, label=rec.destination or "")
        rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                          "rules": report.summary()}


def _write_part(con: duckdb.DuckDBPyConnection, schema: ExportSchema, source: str, lineage: Lineage,
                price_table: str | None, out: str, blob: str, progress: Callable[[float], None] | None, tag: str, *,
                closed: bool = False) -> tuple[normalize.InputTap, CheckTap | None, int]:
    """Normalize one typed part into ``out``: its input tap, its FOCUS check tap (Costs) and the rows written."""
    try:
        present = normalize.columns(con, source)
        tap = normalize.InputTap(con, schema, set(present), f"hub_input_{tag}")
        check = CheckTap(con, f"hub_checks_{tag}") if schema.dataset == "Costs" else None  # FOCUS checks of the rows
        sql = normalize.transform_sql(con, schema, tap.wrap(source), lineage, price_table, filtered=True,
                                      check=check.where if check else None, closed=closed, present=present)
        described = getattr(sql, "columns", None) or normalize.columns(con, f"({sql})")  # Costs: known without planning
        if check:
            check.describe(described)
    except duckdb.Error as exc:
        raise convert.map_error(exc, file=blob) from None
    written = convert.write_parquet(con, [f"* FROM ({sql})"], "", out, file=blob, select_only=True, progress=progress,
                                    columns=described)
    return tap, check, written


def _swap_and_commit(store: Store, rec: RunRecord, settings: Settings) -> None:
    """Swap the staged run in (idempotent), re-read what readers now see, commit, apply source retention."""
    assert rec.staging and rec.destination
    names = [posixpath.basename(p.output) for p in rec.parts]
    if _keeps_raw(rec) and rec.destination.startswith(f"{INGESTION}/"):  # idempotent, like the lake swap
        swap.commit_staged(store, f"{rec.key}-raw", raw_staging(rec.staging), raw_folder(rec.destination), names)
    rec.replaced = sorted(set(rec.replaced) | set(swap.commit_staged(store, rec.key, rec.staging, rec.destination, names)))
    checkpoint("before-commit")
    con = convert.connect(threads=2)
    try:
        visible = convert.count_rows(con, _duck_paths(con, store, [p.output for p in rec.parts]))
    finally:
        con.close()
    rec.reconciled = visible == rec.rowsOut
    if not rec.reconciled:
        raise HubError(f"{visible} rows visible after the swap, {rec.rowsOut} written", file=rec.destination,
                       code="InternalError")
    rec.state = "committed"
    rec.error = None
    runs.save(store, rec)
    if settings.retention.msexports.days == 0 and not rec.manifest.startswith(RENORMALIZE):
        for blob in [p.blob for p in rec.parts] + [rec.manifest]:
            store.delete(blob)
        rec.sourceDeleted = True


def _keeps_raw(rec: RunRecord) -> bool:
    """The run's export type keeps a raw/ copy (from its schema, as when the copy was written)."""
    schema = schema_by_key(rec.schemaKey) if rec.schemaKey else None
    return bool(schema and schema.keep_raw)


def _duck_paths(con: duckdb.DuckDBPyConnection, store: Store, rels: list[str]) -> list[str]:
    """Paths DuckDB can open: local paths, or fsspec URLs through a registered filesystem."""
    if store.is_local:
        return [store.full(r) for r in rels]
    con.register_filesystem(store.fs)
    proto = store.fs.protocol if isinstance(store.fs.protocol, str) else store.fs.protocol[0]
    return [f"{proto}://{store.full(r)}" for r in rels]


def _no_rows(store: Store, rec: RunRecord, started: float) -> RunRecord:
    """An export without rows changes nothing in the lake (the previous run stays)."""
    rec.state = "committed"
    rec.reconciled = True
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def _quarantine(store: Store, rec: RunRecord, exc: HubError) -> None:
    runs.fail(store, rec, exc.code, exc.message, exc.file)
