"""Retention: delete what ``config/settings.json`` says the hub no longer keeps (``hub retention``, daily in
``hub watch``).

- ``retention.msexports.days``: raw export files (parts + manifest) under ``msexports/`` of exports committed (or
  superseded by a newer delivery) more than N days ago. Unprocessed or quarantined exports, re-delivered ones
  not ingested yet, and anything outside ``msexports/`` (custom data in the lake) are never deleted.
- ``retention.exports.days`` (default: none, keep): other clouds' delivered files under ``exports/<provider>/`` (the
  delivery's data files, AWS manifests and ``manifest.json``; an OCI report file itself) of deliveries committed more
  than N days ago and unchanged since. Other files of a delivery's folder stay.
- ``retention.ingestion.months``: ``ingestion/<Dataset>/<yyyy>/<mm>`` folders (and their ``raw/`` twins)
  outside the last N months (the current month counts; 0 keeps everything). The reference never enforced
  this on storage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hub import lease, runs
from hub.deliveries import source_deletable, source_files
from hub.runs import CUSTOM, RunRecord
from hub.settings import Settings
from hub.sources import custom, native
from hub.sources.snapshots import snapshot_of
from hub.store import EXPORTS, INGESTION, MSEXPORTS, RAW, Store

_MONTH = re.compile(rf"^(?:{INGESTION}|{RAW})/([^/_][^/]*)/(\d{{4}})/(\d{{2}})$")


@dataclass
class Deletion:
    path: str
    bytes: int
    reason: str
    #: the delivery manifest whose runs this deletion retires (its records are marked ``sourceDeleted`` after it)
    retires: str | None = None


@dataclass
class RetentionResult:
    deletions: list[Deletion] = field(default_factory=list)
    dry_run: bool = False
    #: another process held the ingestion lease for the whole wait: nothing was deleted
    busy: bool = False
    #: another process took the lease over while this one was stalled: it stopped (why, else None)
    lost: str | None = None
    #: lake month folders kept although outside ``retention.ingestion.months``, with why (custom data not ingested)
    kept: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.deletions)


def _size(store: Store, rel: str) -> int:
    full = store.full(rel)
    if not store.fs.exists(full):
        return 0
    if store.fs.isdir(full):
        return sum(int(info.get("size") or 0) for info in store.fs.find(full, detail=True).values())
    return store.size(rel)


def plan(store: Store, settings: Settings, now: datetime | None = None, kept: list[tuple[str, str]] | None = None
         ) -> list[Deletion]:
    """What retention would delete now (``kept`` collects the month folders it keeps although outside the months kept,
    with why)."""
    now = now or datetime.now(timezone.utc)
    out: list[Deletion] = []
    days = settings.retention.msexports.days
    records = runs.load_all(store)
    manifests = set(store.manifests(MSEXPORTS))
    for rec in records:
        if now - rec.updatedAt >= timedelta(days=days) and source_deletable(store, rec, manifests):
            reason = f"msexports: {rec.state} {rec.updatedAt:%Y-%m-%d}, keep {days} days"
            out += [Deletion(path, _size(store, path), reason) for path in source_files(rec) if store.exists(path)]
    if settings.retention.exports.days is not None:
        out += _exports(store, records, now, settings.retention.exports.days)
    months = settings.retention.ingestion
    pending: set[str] | None = None
    for area in (INGESTION, RAW):  # raw/ keeps the same months as the lake
        base = store.full(area)
        if months.oldest(now) is None or not store.fs.exists(base):
            continue
        for dataset in store.fs.ls(base, detail=False):
            for year in store.fs.ls(dataset, detail=False) if store.fs.isdir(dataset) else []:
                for month in store.fs.ls(year, detail=False) if store.fs.isdir(year) else []:
                    rel = store.rel(month)
                    m = _MONTH.match(rel)
                    if m and not months.keeps(f"{m.group(2)}-{m.group(3)}", now):
                        if pending is None:  # the custom folders holding what no run took yet, listed once
                            pending = {p for p, _ in custom.pending(store, records)}
                        if area == INGESTION and (waiting := _custom_not_ingested(store, rel, records, pending)):
                            if kept is not None:  # the only copy of a drop the hub has not ingested: never deleted
                                kept.append((rel, f"custom data not ingested ({waiting})"))
                            continue
                        out.append(Deletion(rel, _size(store, rel), f"{area}: older than {months.months} months"))
    return out


def _custom_not_ingested(store: Store, month: str, records: list[RunRecord], pending: set[str]) -> str | None:
    """A custom-data folder of a lake month whose ``manifest.json`` its last run did not commit (held back
    ``OutsideRetention``, quarantined) or that holds what no run took yet (``pending``: a new delivery, a restatement
    of a committed one): its manifest, else None."""
    done = {r.manifest for r in records if r.state == "committed" and r.manifest.startswith(CUSTOM)}
    for path in sorted(store.fs.find(store.full(month))):
        rel = store.rel(path)
        if rel.rsplit("/", 1)[-1] == "manifest.json" and (f"{CUSTOM}{rel}" not in done or rel in pending):
            return rel
    return None


def _exports(store: Store, records: list[RunRecord], now: datetime, days: int) -> list[Deletion]:
    """Files of other clouds' deliveries whose every run committed ``days`` or more ago, when the delivery is still the
    one ingested (a changed or grown delivery is pending again and keeps everything)."""
    current = {d.manifest: d.sha for d in native.deliveries(store)}
    by_delivery: dict[tuple[str, str], list[RunRecord]] = {}
    for rec in records:
        if rec.manifest.startswith(f"{EXPORTS}/") and rec.sourceFiles:
            by_delivery.setdefault((rec.manifest, rec.manifestSha256), []).append(rec)
    out = []
    for (manifest, sha), recs in sorted(by_delivery.items()):
        last = max(r.updatedAt for r in recs)
        if any(r.state != "committed" for r in recs) or now - last < timedelta(days=days):
            continue
        reason = f"exports: committed {last:%Y-%m-%d}, keep {days} days"
        if any(r.sourceDeleted for r in recs):  # retired: files a sync brought back as they were (never read again)
            if manifest in current or store.exists(manifest):
                continue
            back = [p for p, size in sorted(recs[0].sourceFiles.items())
                    if p != manifest and store.exists(p) and size in (0, store.size(p))]
            out += [Deletion(path, _size(store, path), reason + " (synced back after its retirement)", manifest) for path in back]
            continue
        kept = _days_to_keep(manifest, recs[0].sourceFiles)
        if current.get(manifest) == sha:  # its manifest first: a retirement cut short leaves no delivery to ingest again
            paths = [manifest, *(p for p in sorted(recs[0].sourceFiles) if p != manifest and p not in kept)]
        elif not store.exists(manifest):  # a retirement cut short: the rest of its files, those still as they were
            paths = [p for p, size in sorted(recs[0].sourceFiles.items())
                     if p not in kept and store.exists(p) and size in (0, store.size(p))]
            reason += " (the rest of a retirement cut short)"
        else:  # changed or grown: pending again, everything kept
            continue
        out += [Deletion(path, _size(store, path), reason, manifest) for path in paths if store.exists(path)]
        if not paths:  # nothing left to delete: the records say so
            out.append(Deletion(manifest, 0, reason, manifest))
    return out


def _days_to_keep(manifest: str, files: dict[str, int]) -> set[str]:
    """Day files of a bill whose days hold only that day (Alibaba's ``increments``) and whose month's whole file is not
    among them: the next delivery of their folder reads the folder again and replaces the month with what it finds, so
    they stay until the whole file comes (then all of them go with it)."""
    mapping = native.providers().get(manifest.split("/")[1]) if manifest.count("/") > 1 else None
    dated = mapping.snapshots if mapping is not None else None
    if dated is None or dated.days != "increments":
        return set()
    bills = {path: found for path in files if (found := snapshot_of(dated.pattern, path)) is not None}
    whole = {bill for bill, day in bills.values() if not day}
    return {path for path, (bill, day) in bills.items() if day and bill not in whole}


def apply(store: Store, settings: Settings, *, dry_run: bool = False, now: datetime | None = None,
          wait: float = 60.0, waiting: Callable[[str], None] | None = None) -> RetentionResult:
    """Delete (or, with ``dry_run``, list) what retention says to. Deleting holds the ingestion lease, so it never
    races an ingestion (records are read and written under it, fenced); ``busy`` when another process kept it for
    ``wait`` seconds (``waiting`` is told once when it has to wait)."""
    if dry_run:
        kept: list[tuple[str, str]] = []
        return RetentionResult(plan(store, settings, now, kept), dry_run, kept=kept)
    try:
        with lease.holding(store, "ingest", wait=wait, waiting=waiting) as held:
            if held is None:
                return RetentionResult(busy=True)
            return _apply(store, settings, now)
    except lease.LeaseLost as exc:
        return RetentionResult(lost=str(exc))


def _apply(store: Store, settings: Settings, now: datetime | None) -> RetentionResult:
    pulls = _pull_leases(store)  # a pull never replaces a day while its older files are being deleted
    try:
        kept: list[tuple[str, str]] = []
        planned = plan(store, settings, now, kept)
        result = RetentionResult([d for d in planned if _pulled_provider(d.path) in (None, *pulls)], kept=kept)
        return _delete(store, result)
    finally:
        for held in pulls.values():
            held.release()


def _pulled_provider(path: str) -> str | None:
    """``exports/<provider>/api/...`` (a day pulled by ``hub pull``) -> provider."""
    parts = path.split("/")
    return parts[1] if len(parts) > 3 and parts[0] == EXPORTS and parts[2] == "api" else None


def _pull_leases(store: Store) -> dict[str, lease.Lease]:
    """The pull leases of every provider with pulled days that no pull holds now (the others' days wait)."""
    base = store.full(EXPORTS)
    out = {}
    for path in store.fs.ls(base, detail=False) if store.fs.exists(base) else []:
        provider = path.rstrip("/").rsplit("/", 1)[-1]
        if store.exists(f"{EXPORTS}/{provider}/api") and (held := lease.try_acquire(store, f"pull-{provider}")):
            out[provider] = held
    return out


def _delete(store: Store, result: RetentionResult) -> RetentionResult:
    done_records = set()
    for d in result.deletions:
        store.check_fence()
        if d.path.startswith((f"{INGESTION}/", f"{RAW}/")):
            store.discard_tree(d.path)  # whole or gone for readers, never a month half deleted
        else:
            if store.exists(d.path):
                store.delete(d.path)
            done_records.add(d.retires or d.path)
    for rec in runs.load_all(store):
        if rec.state in ("committed", "superseded") and not rec.sourceDeleted and rec.manifest in done_records:
            rec.sourceDeleted = True
            runs.save(store, rec)
    return result
