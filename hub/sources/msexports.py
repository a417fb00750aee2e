"""Azure Cost Management exports (``msexports/``): a ``manifest.json`` written last announces a delivery.

Each delivery is one run into ``ingestion/<Dataset>/<yyyy>/<mm>/<scope-path>/`` (:func:`hub.store.dataset_folder`):
its parts are checked (:mod:`hub.deliveries`), converted into staging (:mod:`hub.conversion`), then handed to the
load engine (:mod:`hub.engine`). What only Azure has lives here: ordering by ``runInfo.submittedTime`` (price sheets
first, then the oldest delivery, so the newest of a folder stays visible; an older delivery arriving late is
``superseded``), the pairing of legacy actual and amortized cost before an amortized swap
(:mod:`hub.sources.msexports_pairing`), and ``retention.msexports.days: 0`` deleting a delivery once final.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime

from hub import conversion, convert, deliveries, engine, lease, runs
from hub.conversion import Progress
from hub.errors import HubError
from hub.export_schemas import datasets, destination
from hub.faults import checkpoint
from hub.manifest import Manifest, parse_manifest
from hub.runs import RunRecord
from hub.settings import Settings
from hub.sources import Hooks, refresh_checkpoint
from hub.sources import msexports_pairing as pairing
from hub.store import MSEXPORTS, Store, dataset_folder, plain, raw_staging, scope_path
from transforms import legacy_costs

AREA = MSEXPORTS
#: Seconds during which a manifest that is not JSON yet may still be being written (a local copy in progress): the
#: watcher waits for it instead of quarantining it.
FRESH_MANIFEST = 10.0
#: Called with each committed Prices run (the month's Costs may need re-normalizing); returns the records it made.
PricesCommitted = Callable[[RunRecord], list[RunRecord]]


def pending(store: Store, records: list[RunRecord], settings: Settings, *, retry: bool, force: bool,
            checkpoint: dict[str, str] | None) -> tuple[list[tuple[datetime, str, bytes | None]], dict[str, str], dict]:
    """Manifests to process, in order (price sheets first, then by delivery instant), the listing signatures of
    those already final (for the watcher's checkpoint), and the listing. A delivery held back for its month
    (:func:`hub.deliveries.check_retained`) is never final: it is processed again once the settings keep its month."""
    known = {r.manifest: r for r in records}
    found: list[tuple[int, datetime, str, bytes | None]] = []
    listing = store.listing(MSEXPORTS)
    final = {}
    for rel, listed in listing.items():
        if checkpoint is not None and checkpoint.get(rel) == listed.signature and not (retry or force):
            continue  # unchanged since it was last found final
        raw = _read_manifest(store, rel)
        rec = known.get(rel)
        if rec is not None and raw is not None and rec.manifestSha256 == runs.sha256(raw):
            if deliveries.held(rec) and not (retry or force):
                if not deliveries.released(rec, settings.retention.ingestion):
                    continue  # still outside the months kept; looked at again next time
                found.append((*_order(raw, rel, listed.modified), rel, raw))
                continue
            done = rec.state in ("committed", "superseded") and not force
            if done or rec.state == "quarantined" and not (retry or force):
                final[rel] = listed.signature
                continue
        found.append((*_order(raw, rel, listed.modified), rel, raw))
    return [(instant, rel, raw) for _, instant, rel, raw in sorted(found, key=lambda p: (p[0], p[1], p[2]))], final, listing


def ingest_pending(store: Store, records: list[RunRecord], settings: Settings, *, retry: bool, force: bool,
                   progress: Progress | None, fail_after_parts: int | None, blob_grace: dict[str, float] | None,
                   checkpoint: dict[str, str] | None, waiting: list[str],
                   prices_committed: PricesCommitted) -> tuple[list[RunRecord], list[RunRecord]]:
    """Process every pending manifest (one failing delivery never stops the others); ``records`` is kept current.
    Returns the runs made, and those ``prices_committed`` made."""
    made: list[RunRecord] = []
    extra: list[RunRecord] = []
    known = {r.manifest: r for r in records}
    todo, final, listing = pending(store, records, settings, retry=retry, force=force, checkpoint=checkpoint)
    for instant, rel, raw in todo:
        if blob_grace is not None and blob_grace.get(rel, float("inf")) > time.time() and (
                _being_written(raw, listing[rel].modified) or _blobs_missing(store, rel, raw)):
            waiting.append(rel)
            continue
        rec = engine.isolated(store, runs.run_key(rel, None), rel, raw, lambda rel=rel, raw=raw, instant=instant: process(
            store, rel, raw, settings, existing=known.get(rel), progress=progress, fail_after_parts=fail_after_parts,
            delivered=instant, records=records))
        made.append(rec)
        records[:] = [r for r in records if r.key != rec.key] + [rec]
        if rec.state == "committed" and rec.dataset == "Prices" and rec.month:
            extra += prices_committed(rec)
    final.update({r.manifest: listing[r.manifest].signature for r in made
                  if r.state in runs.FINAL and r.manifest in listing and not deliveries.held(r)})
    refresh_checkpoint(checkpoint, AREA, listing, final)
    return made, extra


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


def _being_written(raw: bytes | None, modified: datetime | None) -> bool:
    """True when the manifest is not (yet) JSON and changed less than :data:`FRESH_MANIFEST` seconds ago."""
    if raw is None or modified is None or time.time() - modified.timestamp() > FRESH_MANIFEST:
        return False
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def _blobs_missing(store: Store, rel: str, raw: bytes | None) -> bool:
    """True when the manifest parses but some blob is not there yet (or not at its full size)."""
    try:
        deliveries.check_blobs(store, parse_manifest(raw or b"", file=rel), rel)
    except HubError as exc:
        return exc.code in ("IngestionFilesNotFound", "ByteCountMismatch")
    return False


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
        deliveries.check_one_month(rec)
        deliveries.check_retained(rec, [rec.month], settings.retention.ingestion)
        deliveries.check_not_custom(store, rec)
        if (newer := deliveries.newer_delivery(records, rec)) is not None:
            deliveries.check_covers(store, newer, rec, incoming=rec)
            return _superseded(store, rec, newer, manifest, settings, started)
        if current := [r for r in deliveries.committed_deliveries(records, rec.destination or "") if r.manifest != rec.manifest]:
            deliveries.check_covers(store, rec, current[-1], incoming=rec)
        blobs = deliveries.check_blobs(store, manifest, rel)
        if not blobs:
            return engine.no_rows(store, rec, started)
        rec.staging = engine.new_staging(rec.key)  # one per attempt: a stale holder never shares it
        rec.state = "converting"
        runs.save(store, rec)
        paired = pairing.amortized_days(store, rec, records) if (rec.exportType or "").lower() == legacy_costs.ACTUAL else None
        conversion.convert_delivery(store, rec, manifest, blobs, progress, fail_after_parts, paired)
        if rec.rowsIn == 0:
            store.delete_tree(rec.staging)
            store.delete_tree(raw_staging(rec.staging))
            return engine.no_rows(store, rec, started)
        try:
            _other_kind(store, rec)  # a delivery with rows only: an empty one changes nothing
            _hidden_twin(store, rec)
            deliveries.check_not_custom(store, rec)  # again, just before the swap: custom data dropped meanwhile
        except HubError:
            store.delete_tree(rec.staging)
            store.delete_tree(raw_staging(rec.staging))
            raise
        rec.state = "swapping"
        runs.save(store, rec)
        checkpoint("before-swap")
        engine.commit(store, rec, settings, records)
    except HubError as exc:
        engine.quarantine(store, rec, exc)
    except lease.LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug quarantines one export, never the whole run
        engine.quarantine(store, rec, engine.unexpected(exc, rel))
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def _hidden_twin(store: Store, rec: RunRecord) -> None:
    """A scope folder with a leading ``_`` or ``.`` is written percent-encoded (:func:`hub.store.visible`); a lake
    that an older hub version wrote under the plain name would count the month twice: ``SourceConflict`` naming it."""
    if not rec.destination or (older := plain(rec.destination)) == rec.destination:
        return
    if store.parquet_files(older):
        raise HubError(f"the lake holds this scope's {rec.month} data under {older}, a folder an older hub version wrote "
                       f"(Spark, Hive, Trino and Athena skip its name): remove it, then `hub ingest --retry`",
                       file=rec.manifest, code="SourceConflict")


def _other_kind(store: Store, rec: RunRecord) -> None:
    """A FocusCost export and a legacy actual / amortized cost export of one scope and month hold the same costs (a
    migration running both): the lake keeps the kind it has, the other is ``SourceConflict`` (never counted twice)."""
    if rec.dataset != "Costs" or not rec.destination or not rec.month:
        return
    year, month = map(int, rec.month.split("-"))
    scope = dataset_folder("Costs", year, month, rec.scope)
    legacy = sorted({meta["subfolder"] for meta in datasets().values() if meta.get("dataset") == "Costs" and
                     meta.get("subfolder")})
    mine = rec.destination[len(scope):].strip("/")
    others = [scope] if mine else [f"{scope}/{sub}" for sub in legacy]
    for folder in others:
        if store.parquet_files(folder):
            kind = "a FocusCost export" if mine else "a legacy cost export (ActualCost / AmortizedCost)"
            if mine and store.exists(f"{folder}/manifest.json"):
                raise HubError(f"the lake holds custom data in this scope's {rec.month} folder ({folder}): custom data "
                               "and a provider's deliveries never share a folder; move the custom files and their manifest "
                               "to another scope (custom/<name>/)", file=rec.manifest, code="SourceConflict")
            raise HubError(f"the lake holds this scope's {rec.month} costs from {kind} ({folder}): both kinds hold the "
                           "same costs; keep one export (remove the other's folder to switch)", file=rec.manifest,
                           code="SourceConflict")


def _describe(rec: RunRecord, m: Manifest, rel: str) -> None:
    cfg = m.exportConfig
    year, month = m.year_month
    # the type as every lookup reads it (``"AmortizedCost "`` is AmortizedCost: its pairing must know it)
    rec.runId, rec.exportName, rec.dataVersion = m.runInfo.runId, cfg.exportName, cfg.dataVersion
    rec.exportType = cfg.type.strip()
    rec.month = f"{year:04d}-{month:02d}"
    rec.scope = scope_path(cfg.resourceId, file=rel)
    rec.manifestRows = m.dataRowCount
    rec.period = deliveries.period(m)
    if (target := destination(cfg.type, cfg.exportName)) is not None:  # known from the manifest: which delivery it competes with
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
        try:
            _delete_source(store, rec)
        except HubError as exc:  # recorded on the superseded run; `hub retention` (the watcher's pass) deletes it later
            rec.error = runs.RunError(code=exc.code, message=exc.message, file=exc.file)
            runs.save(store, rec)
    return rec


def before_swap(store: Store, rec: RunRecord) -> None:
    """An amortized-cost export first takes the usage rows out of its month's actual-cost export (pairing), so
    readers may briefly see fewer rows, never the same cost twice."""
    if (rec.exportType or "").lower() == legacy_costs.AMORTIZED and rec.dataset == "Costs":
        pairing.pair_actual(store, rec)
        checkpoint("after-pairing")


def after_commit(store: Store, rec: RunRecord, settings: Settings, records: list[RunRecord]) -> None:
    """Older deliveries of the folder become ``superseded``; with ``retention.msexports.days: 0`` the source goes."""
    deliveries.supersede_older(store, rec, records)
    if settings.retention.msexports.days == 0:
        _delete_source(store, rec)


HOOKS = Hooks(before_swap, after_commit)


def _delete_source(store: Store, rec: RunRecord) -> None:
    """Delete a final delivery's own files (``retention.msexports.days: 0``, the reference's behaviour), unless they
    changed since it was ingested (Cost Management re-delivered into the same folder meanwhile)."""
    if not deliveries.source_deletable(store, rec):
        return
    for path in deliveries.source_files(rec):
        try:
            store.delete(path)
        except Exception as exc:  # noqa: BLE001 - named: the run stays committed, the deletion owed (engine.after_commit)
            raise HubError(f"the source could not be deleted: {convert.error_text(exc)}", file=path,
                           code="AfterCommitFailed") from exc
    rec.sourceDeleted = True
    runs.save(store, rec)
