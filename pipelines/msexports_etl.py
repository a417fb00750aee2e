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

import duckdb

from hub import convert, runs, swap
from hub.errors import HubError, ManifestError
from hub.export_schemas import ExportSchema, find_schema
from hub.faults import checkpoint
from hub.manifest import Manifest, parse_manifest
from hub.runs import RunError, RunRecord
from hub.settings import Settings, parse_settings
from hub.store import (
    MSEXPORTS,
    SETTINGS,
    STAGING,
    Store,
    dataset_folder,
    part_file_name,
    safe_relpath,
    scope_path,
)

#: Called with (record, part index, part count, percent) while a large part converts.
Progress = Callable[[RunRecord, int, int, float], None]
#: Parts at least this large report progress.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@dataclass
class IngestResult:
    """What one ``ingest`` call did."""

    records: list[RunRecord] = field(default_factory=list)
    recovered: list[RunRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.state == "committed" for r in self.records + self.recovered)


def load_settings(store: Store) -> Settings:
    return parse_settings(store.read_text(SETTINGS), file=store.full(SETTINGS)) if store.exists(SETTINGS) else Settings()


def ingest(store: Store, *, retry: bool = False, force: bool = False, progress: Progress | None = None,
           fail_after_parts: int | None = None) -> IngestResult:
    """Process every pending manifest under ``msexports/`` once.

    ``retry`` re-processes quarantined exports, ``force`` committed ones too. ``fail_after_parts`` is a
    fault-injection hook for tests: raise after converting that many parts of an export.
    """
    settings = load_settings(store)
    result = IngestResult(recovered=recover(store))
    known = runs.by_manifest(store)
    pending: list[tuple[tuple, str, bytes]] = []
    for rel in store.manifests(MSEXPORTS):
        raw = store.read_bytes(rel)
        rec = known.get(rel)
        if rec is not None and rec.manifestSha256 == _sha(raw):
            if rec.state == "committed" and not force:
                continue
            if rec.state == "quarantined" and not (retry or force):
                continue
        pending.append((_order(raw, rel), rel, raw))
    for _, rel, raw in sorted(pending, key=lambda p: p[0]):
        result.records.append(process(store, rel, raw, settings, existing=known.get(rel), progress=progress,
                                      fail_after_parts=fail_after_parts))
    return result


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
        if rec.state == "swapping" and rec.staging and rec.destination:
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
        rec.state = "converting"
        runs.save(store, rec)
        _convert_all(store, rec, manifest, blobs, progress, fail_after_parts)
        if rec.rowsIn == 0 and manifest.dataRowCount is None:
            store.delete_tree(rec.staging)
            return _no_rows(store, rec, started)
        rec.state = "swapping"
        runs.save(store, rec)
        checkpoint("before-swap")
        _swap_and_commit(store, rec, settings, manifest=manifest, blobs=blobs)
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
    with tempfile.TemporaryDirectory(prefix="hub-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            schema: ExportSchema | None = None
            outputs: list[str] = []
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
                    rec.destination = dataset_folder(schema.dataset, year, month, rec.scope or "")
                proj = convert.plan(schema, columns, file=blob)
                rec.missingColumns = sorted(set(rec.missingColumns) | set(proj.missing))
                rec.extraColumns = sorted(set(rec.extraColumns) | set(proj.extra))
                name = part_file_name(m.runInfo.runId, blob)
                staged = f"{rec.staging}/{name}"
                out = store.local_path(staged)
                if out is None:
                    out = os.path.join(tmp, name)
                else:
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                size = os.path.getsize(src)
                cb = None
                if progress is not None and size >= PROGRESS_MIN_BYTES:
                    def cb(pct: float, i: int = i) -> None:
                        progress(rec, i, len(blobs), pct)
                rows = convert.write_parquet(con, proj.select, sql, out, file=blob, progress=cb)
                if store.local_path(staged) is None:
                    store.put_file(out, staged)
                    outputs.append(out)
                else:
                    outputs.append(out)
                rec.parts.append(runs.PartResult(blob=blob, output=f"{rec.destination}/{name}", rows=rows, bytes=size))
                rec.rowsIn += rows
                checkpoint(f"after-part-{i + 1}")
                if fail_after_parts is not None and i + 1 >= fail_after_parts:
                    raise RuntimeError(f"injected failure after part {i + 1}")
            assert schema is not None
            if m.dataRowCount is not None and m.dataRowCount != rec.rowsIn:
                raise HubError(f"read {rec.rowsIn} rows, manifest dataRowCount is {m.dataRowCount}",
                               file=rec.manifest, code="RowCountMismatch")
            rec.totalsIn = convert.totals(con, outputs, schema.totals_currency, schema.totals_amounts)
        finally:
            con.close()


def _swap_and_commit(store: Store, rec: RunRecord, settings: Settings, *, manifest: Manifest | None = None,
                     blobs: list[str] | None = None) -> None:
    """Swap the staged run in (idempotent), re-read what is visible, commit, apply source retention."""
    assert rec.staging and rec.destination
    token = hashlib.sha1(rec.key.encode()).hexdigest()
    names = [posixpath.basename(p.output) for p in rec.parts]
    if store.exists(rec.staging):
        swap.place_marker(store, rec.staging, token)
    rec.replaced = sorted(set(rec.replaced) | set(swap.swap(store, rec.staging, rec.destination, names, token)))
    checkpoint("before-commit")
    visible = [p.output for p in rec.parts]
    con = convert.connect(threads=2)
    try:
        files = _duck_paths(con, store, visible)
        rec.rowsOut = convert.count_rows(con, files)
        schema_totals = _totals_spec(rec)
        rec.totalsOut = convert.totals(con, files, *schema_totals)
    finally:
        con.close()
    rec.reconciled = rec.rowsOut == rec.rowsIn and rec.totalsOut == rec.totalsIn
    if not rec.reconciled:
        raise HubError(f"written data does not reconcile: rows {rec.rowsIn} -> {rec.rowsOut}, "
                       f"totals {rec.totalsIn} -> {rec.totalsOut}", file=rec.destination, code="InternalError")
    rec.state = "committed"
    rec.error = None
    runs.save(store, rec)
    if settings.retention.msexports.days == 0:
        for blob in [p.blob for p in rec.parts] + [rec.manifest]:
            store.delete(blob)
        rec.sourceDeleted = True


def _totals_spec(rec: RunRecord) -> tuple[str | None, tuple[str, ...]]:
    if not rec.schemaKey or not rec.exportType:
        return None, ()
    from hub.export_schemas import datasets

    spec = datasets().get(rec.exportType.lower(), {}).get("totals") or {}
    return spec.get("currency"), tuple(spec.get("amounts", ()))


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
    rec.error = RunError(code=exc.code, message=exc.message, file=exc.file)
    if rec.state == "swapping":  # staged data is complete: keep it, the next run rolls the swap forward
        return
    if rec.staging:
        store.delete_tree(rec.staging)
    rec.state = "quarantined"
