"""What a manifest delivers: its parts, checked before anything is read, and when it was delivered.

- :func:`check_blobs`: every listed blob must lie in the manifest's own delivery folder and not in a sub-folder
  holding another manifest (so one export can never name, read or, through retention, delete another's files), be
  listed once, not share its file name with another part, exist at its declared size, and on local roots not be a
  link leading out of the hub root.
- :func:`delivered_at`: the instant a delivery was made, ``runInfo.submittedTime`` (any UTC offset), else the
  manifest's modification time in the store; instants, never text, decide which delivery of a folder is newer.
- :func:`newer_delivery`: the committed delivery of the same lake folder that is newer than a given one: an older
  delivery arriving late is recorded as ``superseded`` instead of replacing it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from datetime import date, datetime, timedelta, timezone

import duckdb

from hub import convert, runs
from hub.checks import month_end
from hub.errors import HubError, ManifestError
from hub.export_schemas import EXPORT_FOLDER, datasets
from hub.manifest import Manifest, parse_manifest
from hub.runs import AFTER_COMMIT, CUSTOM, RunRecord
from hub.settings import MonthsRetention
from hub.store import EXPORTS, INGESTION, MSEXPORTS, Store, part_file_name, percent_name, safe_relpath, shown
from transforms.typing import literal, scan

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc(moment: datetime) -> datetime:
    """An aware UTC instant (a naive time is taken as UTC, as Cost Management writes them)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def delivered_at(manifest: Manifest | None, modified: datetime | None) -> datetime:
    """When a delivery was made: its ``submittedTime``, else when its manifest was written, else the epoch."""
    if manifest is not None and manifest.runInfo.submittedTime is not None:
        return utc(manifest.runInfo.submittedTime)
    return utc(modified) if modified is not None else EPOCH


def check_blobs(store: Store, m: Manifest, rel: str) -> list[str]:
    """Resolve every blob to a store path inside the manifest's folder; all must exist with the declared size."""
    if not m.blobs and m.dataRowCount != 0:
        raise ManifestError("no blobs listed", file=rel)
    folder = posixpath.dirname(rel)
    paths: list[str] = []
    for blob in m.blobs:
        name = blob.blobName.strip()
        if name.lower().startswith(f"{MSEXPORTS}/"):
            name = name[len(MSEXPORTS) + 1:]
        inner = safe_relpath(name, what="blobName", file=rel)
        candidates = [f"{MSEXPORTS}/{inner}"]
        if "/" not in inner:  # hand-made manifests may name parts relative to themselves
            candidates.append(f"{folder}/{inner}")
        own = [c for c in candidates if c.startswith(f"{folder}/")]
        if not own:
            raise ManifestError(f"blob {blob.blobName!r} lies outside the manifest's folder {folder}/ (an export may only "
                                "list its own parts)", file=rel)
        path = next((c for c in own if store.exists(c)), None)
        if path is None:
            raise ManifestError(f"blob {blob.blobName!r} not found", file=rel, code="IngestionFilesNotFound")
        if path in paths:
            raise ManifestError(f"blob {blob.blobName!r} is listed twice", file=rel)
        if (other := _nested_delivery(store, folder, path)) is not None:
            raise ManifestError(f"blob {blob.blobName!r} belongs to the delivery of {other}", file=rel)
        if part_file_name(m.runInfo.runId, path) in {part_file_name(m.runInfo.runId, p) for p in paths}:
            raise ManifestError(f"blob {blob.blobName!r} has the same file name as another part of the export", file=rel)
        if not store.inside(path):
            raise HubError(f"blob {blob.blobName!r} is a link leading out of the hub root", file=rel, code="PathEscapesStore")
        if blob.byteCount is not None and store.size(path) != blob.byteCount:
            raise ManifestError(f"{path} has {store.size(path)} bytes, manifest says {blob.byteCount}",
                                file=rel, code="ByteCountMismatch")
        convert.file_kind(path, file=path)
        paths.append(path)
    return paths


def _nested_delivery(store: Store, folder: str, path: str) -> str | None:
    """The manifest of a sub-folder of ``folder`` holding ``path``: another delivery's files, never this one's."""
    parent = posixpath.dirname(path)
    while parent != folder and parent.startswith(f"{folder}/"):
        if store.exists(f"{parent}/manifest.json"):
            return f"{parent}/manifest.json"
        parent = posixpath.dirname(parent)
    return None


def committed_deliveries(records: list[RunRecord], destination: str) -> list[RunRecord]:
    """Committed msexports deliveries of a lake folder (not re-normalizations or pairings), oldest first; not those
    without rows, which changed nothing there (:func:`hub.engine.no_rows`): an empty newer delivery never supersedes
    the one whose rows the folder holds, whatever the arrival order."""
    out = [r for r in records
           if r.destination == destination and r.state == "committed" and r.manifest.startswith(f"{MSEXPORTS}/")
           and (r.rowsIn or r.rowsOut)]
    return sorted(out, key=instant)


def instant(rec: RunRecord) -> datetime:
    """A record's delivery instant (records written before instants were kept: when they were created)."""
    return utc(rec.deliveredAt or rec.createdAt)


def newer_delivery(records: list[RunRecord], rec: RunRecord) -> RunRecord | None:
    """The committed delivery of ``rec``'s lake folder that is strictly newer than ``rec`` (another manifest), among
    the store's ``records`` (loaded once per ingestion, not per delivery)."""
    if not rec.destination or rec.deliveredAt is None:
        return None
    newest = [r for r in committed_deliveries(records, rec.destination) if r.manifest != rec.manifest]
    return newest[-1] if newest and instant(newest[-1]) > utc(rec.deliveredAt) else None


#: The longest period one delivery of a month may cover (days): a calendar month, or a billing period across two.
MONTH_DAYS = 31


def period(m: Manifest) -> list[str]:
    """The first and last day a delivery covers, as written (an offset does not move a day): ``startDate``'s and
    ``endDate``'s, an end at midnight of a month's first day being the day before (an exclusive end); without an
    ``endDate``, the start month's last day."""
    start = m.runInfo.startDate.replace(tzinfo=None)
    end = m.runInfo.endDate.replace(tzinfo=None) if m.runInfo.endDate else month_end(start)
    if end > start and end.day == 1 and end == end.replace(hour=0, minute=0, second=0, microsecond=0):
        end -= timedelta(days=1)
    return [start.date().isoformat(), end.date().isoformat()]


def _days(rec: RunRecord, store: Store | None = None, *, stated: bool = False) -> tuple[date, date] | None:
    """A delivery's first and last day: its record's ``period``; for a record written before periods were kept, its
    manifest's (still there, unchanged) or else the days of its rows in the lake folder, within its month; None when
    none is known. Unless ``stated``, the last day is at most the day before the delivery (a scheduled month-to-date
    run may state the month's last day: it cannot hold days after it ran)."""
    if rec.period:
        first, last = (datetime.fromisoformat(d).date() for d in rec.period)
    elif store is None or (days := _manifest_days(store, rec) or _row_days(store, rec)) is None:
        return None
    else:
        first, last = days
    if not stated and rec.deliveredAt is not None:
        last = max(first, min(last, utc(rec.deliveredAt).date() - timedelta(days=1)))
    return first, last


def delivery_days(rec: RunRecord, store: Store | None = None) -> tuple[date, date] | None:
    """The days a delivery holds (:func:`_days`: at most to the day before it was delivered)."""
    return _days(rec, store)


def _manifest_days(store: Store, rec: RunRecord) -> tuple[date, date] | None:
    """The days of a record's manifest, when it is still in the store with the content the record was made from."""
    try:
        raw = store.read_bytes(rec.manifest)
        if runs.sha256(raw) != rec.manifestSha256:
            return None
        first, last = period(parse_manifest(raw, file=rec.manifest))
    except (OSError, HubError, ManifestError, ValueError):
        return None
    return date.fromisoformat(first), date.fromisoformat(last)


def _row_days(store: Store, rec: RunRecord) -> tuple[date, date] | None:
    """The first and last charge day of the rows a committed record left in its lake folder, within its month (late
    rows of the month before do not widen it): its period when its manifest is gone (retention)."""
    return row_days(store, store.parquet_files(rec.destination) if rec.destination and rec.month else [], rec.month or "")


def row_days(store: Store, files: list[str], month: str | None) -> tuple[date, date] | None:
    """The first and last charge day of the rows of lake ``files`` (store paths), within ``month`` (``yyyy-mm``; None:
    wherever they lie)."""
    from hub import catalog  # the catalog's connection reads remote stores too

    if not files or month == "":
        return None
    listing = "[" + ", ".join(literal(catalog.duck_path(store, f)) for f in files) + "]"
    con = catalog.store_connection(store, threads=1)
    try:
        low, high = con.execute(f"SELECT min(ChargePeriodStart)::DATE, max(ChargePeriodStart)::DATE FROM "
                                f"{scan('read_parquet', listing, 'union_by_name = true')}").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    if low is None:
        return None
    if month is None:
        return low, high
    first_day = date.fromisoformat(f"{month}-01")
    last_day = month_end(datetime(first_day.year, first_day.month, 1)).date() - timedelta(days=1)
    return max(low, first_day), max(min(high, last_day), max(low, first_day))


#: Datasets whose rows are charges of the delivery's days, filed under its start month and replaced whole per month
#: (a price sheet is of its month whatever its period; recommendations are a snapshot).
DATED = ("Costs", "CommitmentDiscountUsage", "Transactions")


def check_one_month(rec: RunRecord) -> None:
    """A delivery of charges (:data:`DATED`) covers at most :data:`MONTH_DAYS` days (a calendar month, or a billing
    period across two): the lake files a delivery under its start month, so a longer period would put the next month's
    days there and count them twice once that month's own export lands (``PeriodMismatch``)."""
    days = _days(rec, stated=True) if rec.dataset in DATED else None
    if days and (days[1] - days[0]).days + 1 > MONTH_DAYS:
        raise HubError(f"the export covers {days[0]} to {days[1]}, more than one month: the lake keeps a month per "
                       "folder; export one month per run (Start-FinOpsCostExport -Backfill runs one per month)",
                       file=rec.manifest, code="PeriodMismatch")


#: The sub-folders of a scope legacy Azure cost exports keep their rows in (``subfolder`` in ``datasets.json``).
LEGACY_SUBFOLDERS = frozenset(m["subfolder"] for m in datasets().values() if m.get("subfolder"))


def check_not_custom(store: Store, rec: RunRecord) -> None:
    """A provider's run never swaps into a lake folder holding custom data (its ``manifest.json``): the swap replaces
    the folder's files, so the producer's would be deleted, and the custom source would take the provider's files for
    its own (``SourceConflict``)."""
    if not rec.destination:
        return
    folders = [rec.destination]
    name = posixpath.basename(rec.destination)
    if name.startswith(EXPORT_FOLDER) or name in LEGACY_SUBFOLDERS:  # an export's own folder in the scope's
        folders.append(posixpath.dirname(rec.destination))
    for folder in (f for f in folders if store.exists(f"{f}/manifest.json")):
        raise HubError(f"its lake folder {folder} holds custom data (a manifest.json): custom data and a "
                       "provider's deliveries never share a folder; move the custom files and their manifest to another "
                       "scope (custom/<name>/)", file=rec.manifest, code="SourceConflict")


#: The code of a delivery held back because its month is outside ``retention.ingestion.months``.
HELD = "OutsideRetention"


def check_retained(rec: RunRecord, months: list[str], retention: MonthsRetention, now: datetime | None = None) -> None:
    """A delivery whose every month is older than the lake keeps (``retention.ingestion.months``) is held back
    (``OutsideRetention``) before anything is loaded: loaded, the next retention pass would delete it from the lake,
    and with ``retention.msexports.days`` 0 its export would already be gone. Held, it stays where it was delivered and
    is loaded by the first ingestion after the setting keeps its months (``rec.month``: the oldest of them). A delivery
    that also holds a kept month goes on (a whole export prefix synced: its current months must keep flowing)."""
    if not months or any(retention.keeps(m, now) for m in months):
        return
    outside = sorted(months)
    rec.month = outside[0]
    shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
    raise HubError(f"holds {shown}, older than retention.ingestion.months keeps ({retention.months}: from "
                   f"{retention.oldest(now)}): not loaded (retention would delete it), the delivery is kept; set "
                   "retention.ingestion.months to 0 (keep all) or enough months and the next ingestion loads it",
                   file=rec.manifest.removeprefix(CUSTOM), code=HELD)


def held(rec: RunRecord) -> bool:
    """A delivery :func:`check_retained` held back."""
    return rec.state == "quarantined" and rec.error is not None and rec.error.code == HELD


def released(rec: RunRecord, retention: MonthsRetention, now: datetime | None = None) -> bool:
    """A held delivery whose months the settings keep now: it is ingested again."""
    return held(rec) and rec.month is not None and retention.keeps(rec.month, now)


def check_covers(store: Store, winner: RunRecord, loser: RunRecord, *, incoming: RunRecord) -> None:
    """A month's folder of charges (:data:`DATED`) is replaced whole: the delivery that wins (the newer) must cover
    every day of the one it replaces or supersedes, else those days would silently leave the lake (``PartialPeriod`` on
    ``incoming``). Days are compared, however the ends are written."""
    if incoming.dataset not in DATED:
        return
    other, newer = (loser, "this one") if incoming is winner else (winner, "that one")
    mine, theirs = _days(incoming, store), _days(other, store)
    if mine is None or theirs is None:
        return
    (ws, we), (ls, le) = (mine, theirs) if incoming is winner else (theirs, mine)
    if ws <= ls and we >= le:
        return
    raise HubError(f"covers {mine[0]} to {mine[1]}; the committed delivery {other.key} covers "
                   f"{theirs[0]} to {theirs[1]}; the newer of the two ({newer}) "
                   "must cover every day of the other (a month's folder is replaced whole): export the whole month in one "
                   "run", file=incoming.manifest, code="PartialPeriod")


def supersede_older(store: Store, rec: RunRecord, records: list[RunRecord]) -> list[str]:
    """After ``rec`` committed: the older committed deliveries of its folder among ``records`` become ``superseded``
    (their files were replaced by the swap; the records are updated in place and saved). Returns their keys."""
    done = []
    for old in committed_deliveries(records, rec.destination or ""):
        newer = old.deliveredAt is not None and rec.deliveredAt is not None and old.deliveredAt > rec.deliveredAt
        if old.key != rec.key and old.manifest != rec.manifest and not newer:  # (a retried after-commit of an older run)
            old.state, old.supersededBy = "superseded", rec.key
            if AFTER_COMMIT in old.owed:  # its source is retention's now (hub retention, the watcher's pass)
                old.owed = [w for w in old.owed if w != AFTER_COMMIT]
                if old.error and old.error.code == "AfterCommitFailed":
                    old.error = None
            runs.save(store, old)
            done.append(old.key)
    return done


def source_files(rec: RunRecord) -> list[str]:
    """The raw export files of an msexports run (its parts and manifest); nothing for other kinds of runs
    (custom data, re-normalizations), whose "parts" are lake files."""
    if not rec.manifest.startswith(f"{MSEXPORTS}/"):
        return []
    return [p for p in dict.fromkeys([*(part.blob for part in rec.parts), rec.manifest]) if p.startswith(f"{MSEXPORTS}/")]


def source_deletable(store: Store, rec: RunRecord, manifests: set[str] | None = None) -> bool:
    """True when an msexports run's source may go: it is final (committed, or superseded by a newer delivery of
    its folder) and its files are still the ones it ingested. A manifest whose content changed since (a
    re-delivery at the same path, not ingested yet) or a part whose size changed keeps every file. ``manifests``
    (the area's, listed once): a source deleted before that is there again, the same delivery once more (never
    ingested again: it is committed), may go again."""
    if rec.state not in ("committed", "superseded") or not source_files(rec):
        return False
    if rec.sourceDeleted and (manifests is None or rec.manifest not in manifests):
        return False
    try:
        if store.exists(rec.manifest) and runs.sha256(store.read_bytes(rec.manifest)) != rec.manifestSha256:
            return False
        return all(not store.exists(p.blob) or not p.bytes or store.size(p.blob) == p.bytes for p in rec.parts)
    except OSError:
        return False


#: Key prefix of the records of names that are not UTF-8 (:func:`undecodable_names`).
BAD_NAME = "badname-"


#: Where names of the lake that are not UTF-8 are moved (outside the lake: its readers fail on such a name).
ODD_NAMES = "config/odd-names"


def undecodable_names(store: Store, records: list[RunRecord], *, lake: bool = False) -> list[RunRecord]:
    """The names under the delivery areas that are not valid UTF-8, which this process's listings left out (local
    roots: :class:`hub.store.Utf8LocalFileSystem`), each told by a quarantined record (``InvalidFileName``, the name
    with its bytes as ``\\xNN``) unless a delivery was refused for it. Under ``msexports/`` and ``exports/`` they stay
    where they are, told once (the record goes once the name does); under ``ingestion/`` (but a custom folder's own
    files) they are moved to :data:`ODD_NAMES`, named with their bytes as ``%XX``, nothing deleted, every time one is
    found (its record keeps every place it went): DuckDB's glob, every lake reader's, fails on such a name, and a swap
    of its folder would take it away. ``lake``: before the sources run, the lake listed afresh and only its names seen
    to (records of names gone are removed only by the call after the sources, which saw every area)."""
    if not store.is_local:  # blob stores hold UTF-8 names only
        return []
    found = store.undecodable
    if lake:
        found.clear()
        store.files(INGESTION, "")  # the lake listed: its odd names found
    paths = {shown(store.rel(p)): p for p in found}
    found.clear()
    areas = (f"{INGESTION}/",) if lake else (f"{MSEXPORTS}/", f"{EXPORTS}/", f"{INGESTION}/")
    names = [n for n in sorted(paths) if n.startswith(areas)]
    owned = {n for n in names if not n.startswith(MSEXPORTS) and _owned(store, n, paths[n])}
    keys = {f"{BAD_NAME}{hashlib.sha1(n.encode()).hexdigest()[:16]}": n for n in names if n not in owned}
    known = {r.key: r for r in records if r.key.startswith(BAD_NAME)}
    for key, rec in known.items() if not lake else ():  # a name gone (renamed, removed); one moved out stays told
        if key not in keys and not rec.setAside and store.exists(runs.record_path(key)):
            store.delete(runs.record_path(key))
    made = []
    for key, name in keys.items():
        moved = name.startswith(f"{INGESTION}/")
        if key in known and not moved:
            continue  # told already
        rec = runs.load(store, key) or RunRecord(key=key, manifest=name, manifestSha256=runs.sha256(name.encode()),
                                                 state="quarantined")  # as stored now: a record of this pass's too
        message = "the name is not valid UTF-8: never read; rename it in UTF-8"
        if moved:
            target = store.free_name(f"{ODD_NAMES}/{percent_name(store.rel(paths[name]))}")
            try:
                store.fs.makedirs(posixpath.dirname(store.full(target)), exist_ok=True)
                os.rename(paths[name], store.full(target))
            except OSError as exc:
                if not os.path.lexists(paths[name]) or rec.error and rec.error.message.startswith("could not move"):
                    continue  # gone meanwhile (told when found again), or told it could not be moved
                message = f"could not move it out of the lake ({type(exc).__name__}): the name is not valid UTF-8; rename it"
            else:
                rec.setAside = [*rec.setAside, target]
                rec.manifestSha256 = runs.sha256(f"{name}\n{target}".encode())  # each move told (its own event id)
                message = (f"the name is not valid UTF-8 (the lake's readers fail on it): moved out of the lake to "
                           f"{target}; rename it in UTF-8 and move it back (custom data: then write the manifest again)")
        runs.fail(store, rec, "InvalidFileName", message, name)
        runs.save(store, rec)
        made.append(rec)
    records += [r for r in made if r.key not in known]
    return made


def moved_out(records: list[RunRecord], store: Store) -> dict[str, str]:
    """Lake folders one of whose own files was moved out for its name (:func:`undecodable_names`) and is still where
    it went, with that place: a custom delivery of such a folder is refused until the file is back under a UTF-8 name
    (else it would commit without it)."""
    out: dict[str, str] = {}
    for rec in records:
        if (rec.key.startswith(BAD_NAME) and rec.manifest.startswith(f"{INGESTION}/")
                and (there := next((t for t in rec.setAside if os.path.isfile(store.full(t))), None))):
            out.setdefault(posixpath.dirname(rec.manifest), there)
    return out


def _owned(store: Store, name: str, path: str) -> bool:
    """Whether a delivery is refused for ``name`` (a full local ``path``), so it needs no record of its own: under
    ``exports/`` a folder above it holds a ``manifest.json`` (that delivery owns every file below it); under
    ``ingestion/`` it is a file of a custom folder (its manifest beside it: the custom source set it aside)."""
    folder = posixpath.dirname(name)
    if name.startswith(f"{INGESTION}/"):
        return os.path.isfile(path) and store.exists(f"{folder}/manifest.json")
    while folder.count("/") >= 1:
        if store.exists(f"{folder}/manifest.json"):
            return True
        folder = posixpath.dirname(folder)
    return False
