"""msexports -> ingestion: turn every pending Cost Management export into typed Parquet in the lake.

Triggered by a ``manifest.json`` under ``msexports/`` (``hub ingest``, later the watcher). One export is
processed all-or-nothing: parts are converted to a staging folder, checked (row counts, totals), then
swapped into ``ingestion/<Dataset>/<yyyy>/<mm>/<scope-path>/`` in one step (:mod:`hub.swap`). Any
failure quarantines that export with a stable error code; the source is never deleted on failure and
other exports keep flowing.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hub import catalog, conversion, convert, deliveries, lease, runs, swap
from hub.conversion import Progress
from hub.errors import HubError
from hub.export_schemas import destination, schema_by_key
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
    raw_folder,
    raw_staging,
    scope_path,
)
from pipelines import legacy_pairing as pairing
from pipelines import retention
from pipelines.ingestion_etl import ingest_custom
from pipelines.prices_backfill import RENORMALIZE, renormalize_month
from transforms import legacy_costs


@dataclass
class IngestResult:
    """What one ``ingest`` call did."""

    records: list[RunRecord] = field(default_factory=list)
    recovered: list[RunRecord] = field(default_factory=list)
    #: Costs folders re-normalized because their month's prices arrived after them
    renormalized: list[RunRecord] = field(default_factory=list)
    #: another process held the ingestion lease for the whole wait: nothing was done
    busy: bool = False
    #: another process took the lease over while this one was stalled: it stopped (why, else None)
    lost: str | None = None
    #: manifests whose blobs are still arriving (watcher grace period): left pending
    waiting: list[str] = field(default_factory=list)
    #: files under config/runs/ that are not run records (skipped): ``<file>: <why>``
    unreadable: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[RunRecord]:
        return self.recovered + self.records + self.renormalized

    @property
    def ok(self) -> bool:
        return self.lost is None and all(r.state in ("committed", "superseded") for r in self.all)


def load_settings(store: Store) -> Settings:
    return parse_settings(store.read_text(SETTINGS), file=store.full(SETTINGS)) if store.exists(SETTINGS) else Settings()


def ingest(store: Store, *, retry: bool = False, force: bool = False, progress: Progress | None = None,
           fail_after_parts: int | None = None, wait: float = 600.0, lease_ttl: float = lease.DEFAULT_TTL,
           blob_grace: dict[str, float] | None = None, checkpoint: dict[str, str] | None = None) -> IngestResult:
    """Process every pending manifest under ``msexports/`` once, holding the root's ingestion lease.

    ``retry`` re-processes quarantined exports, ``force`` committed ones too. Another process holding the
    lease is waited for up to ``wait`` seconds (then ``busy`` is set and nothing is done). While the lease is
    held, every record write and swap first checks it is still held (``Store.fence``): a process that stalled
    past the lease's TTL and was taken over stops there (``lost``) and writes nothing more.
    ``blob_grace`` (the watcher's): manifest -> deadline (epoch seconds) until which missing blobs mean
    "still uploading" rather than an error. ``checkpoint`` (the watcher's listing checkpoint, updated in
    place): manifest -> listing signature of manifests already final, which are then not read again.
    ``fail_after_parts`` is a fault-injection hook for tests.
    """
    convert.check_codec()  # a bad setting is a usage error, not a quarantine of every export
    try:
        with lease.holding(store, "ingest", wait=wait, ttl=lease_ttl) as held:
            if held is None:
                return IngestResult(busy=True)
            return _ingest(store, retry=retry, force=force, progress=progress, fail_after_parts=fail_after_parts,
                           blob_grace=blob_grace, checkpoint=checkpoint)
    except lease.LeaseLost as exc:
        return IngestResult(lost=str(exc))


def _ingest(store: Store, *, retry: bool, force: bool, progress: Progress | None, fail_after_parts: int | None,
            blob_grace: dict[str, float] | None, checkpoint: dict[str, str] | None) -> IngestResult:
    settings = load_settings(store)
    result = IngestResult(recovered=recover(store))
    records = runs.load_all(store, result.unreadable)  # once per ingestion; kept current below
    known = {r.manifest: r for r in records}
    pending: list[tuple[int, datetime, str, bytes | None]] = []
    listing = store.listing(MSEXPORTS)
    final = {}
    for rel, listed in listing.items():
        if checkpoint is not None and checkpoint.get(rel) == listed.signature and not (retry or force):
            continue  # unchanged since it was last found final
        raw = _read_manifest(store, rel)
        rec = known.get(rel)
        if rec is not None and raw is not None and rec.manifestSha256 == runs.sha256(raw):
            done = rec.state in ("committed", "superseded") and not force
            if done or rec.state == "quarantined" and not (retry or force):
                final[rel] = listed.signature
                continue
        pending.append((*_order(raw, rel, listed.modified), rel, raw))
    # price sheets first (the month's costs then take their prices on the way in, no re-normalization afterwards),
    # then older deliveries first: the newest of a folder stays visible
    for _, instant, rel, raw in sorted(pending, key=lambda p: (p[0], p[1], p[2])):
        if blob_grace is not None and blob_grace.get(rel, float("inf")) > time.time() and _blobs_missing(store, rel, raw):
            result.waiting.append(rel)
            continue
        rec = _isolated(store, rel, raw, lambda rel=rel, raw=raw, instant=instant: process(
            store, rel, raw, settings, existing=known.get(rel), progress=progress, fail_after_parts=fail_after_parts,
            delivered=instant, records=records))
        result.records.append(rec)
        records[:] = [r for r in records if r.key != rec.key] + [rec]
        if rec.state == "committed" and rec.dataset == "Prices" and rec.month:
            year, month = map(int, rec.month.split("-"))
            result.renormalized += _renormalize(store, year, month, rec)
    result.records += ingest_custom(store)
    if checkpoint is not None:
        final.update({r.manifest: listing[r.manifest].signature for r in result.records
                      if r.state in runs.FINAL and r.manifest in listing})
        for rel in [k for k in checkpoint if k not in listing]:
            del checkpoint[rel]  # deleted by retention: forget it
        checkpoint.update(final)
    return result


def _renormalize(store: Store, year: int, month: int, prices: RunRecord) -> list[RunRecord]:
    """Costs folders of a month re-normalized after its prices committed; a failure there is recorded, never stops
    the other exports (the folders keep their previous, valid files)."""
    try:
        return renormalize_month(store, year, month, prices.runId or prices.key)
    except Exception as exc:  # noqa: BLE001 - recorded like any failure
        return [runs.failed(store, f"renorm-failed-{prices.key}"[:120], f"{RENORMALIZE}{year:04d}-{month:02d}", exc,
                            runId=prices.runId, exportType="Renormalize", dataset="Costs", month=f"{year:04d}-{month:02d}")]


def _read_manifest(store: Store, rel: str) -> bytes | None:
    """A manifest's bytes; None when it cannot be read, or is a link leading out of the hub root (never read)."""
    if not store.inside(rel):
        return None
    try:
        return store.read_bytes(rel)
    except OSError:
        return None


def _order(raw: bytes | None, rel: str, modified: datetime | None) -> tuple[int, datetime]:
    """How a pending manifest sorts: price sheets before the rest, then by delivery instant."""
    try:
        manifest = parse_manifest(raw, file=rel) if raw is not None else None
    except HubError:
        manifest = None
    prices = manifest is not None and destination(manifest.exportConfig.type) == ("Prices", None)
    return (0 if prices else 1), deliveries.delivered_at(manifest, modified)


def _isolated(store: Store, rel: str, raw: bytes | None, work: Callable[[], RunRecord]) -> RunRecord:
    """Run one manifest's work so that nothing it raises stops the others (a lost lease still stops everything)."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 - even a failure to write its record must not stop the other exports
        return runs.failed(store, runs.run_key(rel, None), rel, exc, manifestSha256=runs.sha256(raw or b""))


def _blobs_missing(store: Store, rel: str, raw: bytes | None) -> bool:
    """True when the manifest parses but some blob is not there yet (or not at its full size)."""
    try:
        deliveries.check_blobs(store, parse_manifest(raw or b"", file=rel), rel)
    except HubError as exc:
        return exc.code in ("IngestionFilesNotFound", "ByteCountMismatch")
    return False


def recover(store: Store) -> list[RunRecord]:
    """Finish swaps that a crash interrupted (roll forward); staged-but-unswapped runs are redone later, and
    staging folders no record will swap (a crash, a stale lease holder) are removed."""
    done = []
    records = runs.load_all(store)
    for rec in records:
        if rec.state == "converting" and rec.manifest.startswith(RENORMALIZE) and rec.month:
            year, month = map(int, rec.month.split("-"))  # a crash mid re-normalization: redo it
            store.delete_tree(rec.staging or "")
            store.delete(runs.record_path(rec.key))
            done += _renormalize(store, year, month, rec)
        elif rec.state == "swapping" and rec.staging and rec.destination:
            try:
                _swap_and_commit(store, rec, load_settings(store), records)
            except Exception as exc:  # noqa: BLE001 - stays "swapping": tried again next time, never half-applied,
                # and never stops the other exports
                error = exc if isinstance(exc, HubError) else HubError(convert.scrub(f"{type(exc).__name__}: {exc}"),
                                                                       file=rec.destination)
                rec.error = RunError(code=error.code, message=error.message, file=error.file)
                with contextlib.suppress(Exception):
                    runs.save(store, rec)
            done.append(rec)
    swapping = {s for r in runs.load_all(store) if r.state == "swapping" and r.staging
                for s in (r.staging, raw_staging(r.staging))}
    base = store.full(STAGING)
    if store.fs.isdir(base):
        for path in store.fs.ls(base, detail=False):
            rel = f"{STAGING}/{posixpath.basename(path.rstrip('/'))}"
            if rel not in swapping:
                store.delete_tree(rel)
    return done


def process(store: Store, rel: str, raw: bytes | None, settings: Settings, *, existing: RunRecord | None = None,
            progress: Progress | None = None, fail_after_parts: int | None = None,
            delivered: datetime | None = None, records: list[RunRecord] | None = None) -> RunRecord:
    """Ingest one export; never raises for bad input (the record says what happened). ``records``: the store's run
    records when the caller already holds them (else they are read)."""
    records = runs.load_all(store) if records is None else records
    started = time.perf_counter()
    rec = RunRecord(key=existing.key if existing else runs.run_key(rel, None), manifest=rel,
                    manifestSha256=runs.sha256(raw or b""), attempts=(existing.attempts if existing else 0) + 1)
    try:
        if raw is None:
            code = "ManifestReadFailed" if store.inside(rel) else "PathEscapesStore"
            raise HubError("cannot be read" if code == "ManifestReadFailed" else "is a link leading out of the hub root",
                           file=rel, code=code)
        manifest = parse_manifest(raw, file=rel)
        _describe(rec, manifest, rel)
        rec.deliveredAt = delivered or deliveries.delivered_at(manifest, None)
        if existing is None or existing.key.startswith("unparsed-"):
            if existing is not None:
                store.delete(runs.record_path(existing.key))
            rec.key = runs.run_key(rel, manifest.runInfo.runId)
        if (newer := deliveries.newer_delivery(records, rec)) is not None:
            return _superseded(store, rec, newer, manifest, settings, started)
        blobs = deliveries.check_blobs(store, manifest, rel)
        if not blobs:
            return _no_rows(store, rec, started)
        rec.staging = f"{STAGING}/{rec.key}.{uuid.uuid4().hex[:8]}"  # one per attempt: a stale holder never shares it
        rec.state = "converting"
        runs.save(store, rec)
        paired = pairing.amortized_present(store, rec) if (rec.exportType or "").lower() == legacy_costs.ACTUAL else None
        conversion.convert_delivery(store, rec, manifest, blobs, progress, fail_after_parts, paired)
        if rec.rowsIn == 0:
            store.delete_tree(rec.staging)
            store.delete_tree(raw_staging(rec.staging))
            return _no_rows(store, rec, started)
        rec.state = "swapping"
        runs.save(store, rec)
        checkpoint("before-swap")
        _swap_and_commit(store, rec, settings, records)
    except HubError as exc:
        _quarantine(store, rec, exc)
    except lease.LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug quarantines one export, never the whole run
        _quarantine(store, rec, HubError(convert.scrub(f"{type(exc).__name__}: {exc}"), file=rel, code="InternalError"))
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
    if (target := destination(cfg.type)) is not None:  # known from the manifest: which delivery it competes with
        rec.dataset = target[0]
        rec.destination = dataset_folder(target[0], year, month, rec.scope, target[1])


def _superseded(store: Store, rec: RunRecord, newer: RunRecord, manifest: Manifest, settings: Settings,
                started: float) -> RunRecord:
    """An older delivery of a folder whose newer delivery is committed: recorded, never swapped in."""
    rec.state, rec.supersededBy = "superseded", newer.key
    with contextlib.suppress(HubError):  # its parts, so that retention knows which files are its own
        rec.parts = [runs.PartResult(blob=b, output="", bytes=store.size(b))
                     for b in deliveries.check_blobs(store, manifest, rec.manifest)]
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    if settings.retention.msexports.days == 0:
        _delete_source(store, rec)
    return rec


def _swap_and_commit(store: Store, rec: RunRecord, settings: Settings, records: list[RunRecord]) -> None:
    """Swap the staged run in (idempotent), re-read what readers now see, commit, apply source retention.
    An amortized-cost export first takes the usage rows out of its month's actual-cost export (pairing), so
    readers may briefly see fewer rows, never the same cost twice."""
    assert rec.staging and rec.destination
    store.check_fence()
    if (rec.exportType or "").lower() == legacy_costs.AMORTIZED and rec.dataset == "Costs":
        pairing.pair_actual(store, rec)
        checkpoint("after-pairing")
    names = [posixpath.basename(p.output) for p in rec.parts]
    if _keeps_raw(rec) and rec.destination.startswith(f"{INGESTION}/"):  # idempotent, like the lake swap
        swap.commit_staged(store, f"{rec.key}-raw", raw_staging(rec.staging), raw_folder(rec.destination), names)
    rec.replaced = sorted(set(rec.replaced) | set(swap.commit_staged(store, rec.key, rec.staging, rec.destination, names)))
    checkpoint("before-commit")
    con = catalog.store_connection(store, threads=2)
    try:
        visible = convert.count_rows(con, [catalog.duck_path(store, p.output) for p in rec.parts])
    finally:
        con.close()
    rec.reconciled = visible == rec.rowsOut
    if not rec.reconciled:
        raise HubError(f"{visible} rows visible after the swap, {rec.rowsOut} written", file=rec.destination,
                       code="InternalError")
    rec.state = "committed"
    rec.error = None
    runs.save(store, rec)
    if rec.manifest.startswith(f"{MSEXPORTS}/"):
        deliveries.supersede_older(store, rec, records)
        if settings.retention.msexports.days == 0:
            _delete_source(store, rec)


def _delete_source(store: Store, rec: RunRecord) -> None:
    """Delete a final delivery's own files (``retention.msexports.days: 0``, the reference's behaviour), unless they
    changed since it was ingested (Cost Management re-delivered into the same folder meanwhile)."""
    if not retention.source_deletable(store, rec):
        return
    for path in retention.source_files(rec):
        store.delete(path)
    rec.sourceDeleted = True
    runs.save(store, rec)


def _keeps_raw(rec: RunRecord) -> bool:
    """The run's export type keeps a raw/ copy (from its schema, as when the copy was written)."""
    schema = schema_by_key(rec.schemaKey) if rec.schemaKey else None
    return bool(schema and schema.keep_raw)


def _no_rows(store: Store, rec: RunRecord, started: float) -> RunRecord:
    """An export without rows changes nothing in the lake (the previous run stays)."""
    rec.state = "committed"
    rec.reconciled = True
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def _quarantine(store: Store, rec: RunRecord, exc: HubError) -> None:
    runs.fail(store, rec, exc.code, exc.message, exc.file)
