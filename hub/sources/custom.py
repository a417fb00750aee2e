"""Custom data (``ingestion/``): FOCUS-aligned files announced by an empty (or ``{}``) ``manifest.json``.

A producer writes FOCUS-aligned Parquet into ``ingestion/<Dataset>/<yyyy>/<mm>/<scope>/`` (AWS, GCP, OCI
FOCUS files included), named ``<ingestion id>__<name>.parquet``, then an empty manifest. The folder's Parquet files
are validated and normalized in place (Costs through the same FOCUS 1.0 normalization as exports), all-or-nothing
through staging and the swap; a folder whose files cannot be read is quarantined with its error, the files of that
delivery renamed ``<name>.quarantined`` (readers read ``*.parquet``: the folder keeps its previous delivery).
A folder is processed again when its files change (names, sizes, modification stamps): files of a new ingestion id
replace those of the one committed before (never both counted); files it normalized before and still as it wrote
them are carried over as they are (normalizing them again would lose their lineage).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
import time
from datetime import datetime, timezone
from functools import cache

import duckdb
import pyarrow.parquet as pq

from hub import convert, engine, lookups, normalize, runs
from hub import deliveries as hub_deliveries
from hub.checks import check_costs, month_end
from hub.errors import HubError
from hub.export_schemas import Column, ExportSchema, totals_spec
from hub.faults import checkpoint
from hub.runs import CUSTOM, RunRecord
from hub.settings import MonthsRetention, load_settings
from hub.sources import refresh_checkpoint, unsettled
from hub.store import INGESTION, Store, hidden, listed, percent_name, shown, signature_of
from hub.validate import validate_files
from transforms import costs
from transforms.costs import Lineage
from transforms.typing import IncompatibleType, header_key, ident, literal, project, scan, text_nulls

#: Datasets a producer may add custom data to (the others are the hub's own: allocation, inspection).
DATASETS = ("Costs", "Prices", "CommitmentDiscountUsage", "Recommendations", "Transactions")


def pending(store: Store, records: list[RunRecord] | None = None, checkpoint: dict[str, str] | None = None,
            final: dict[str, str] | None = None, *, settle: float = 0, waiting: list[str] | None = None,
            retention: MonthsRetention | None = None) -> list[tuple[str, bytes | None]]:
    """Folder manifests under ``ingestion/`` not processed yet in their current content (``records``: every run
    record, loaded when not given). ``checkpoint``: manifests whose folder listing (the manifest and the folder's
    Parquet files: names, sizes, modification stamps) it holds unchanged are not read; ``final`` collects the listing
    signatures of the folders found final. ``settle`` (the watcher's): a folder with a Parquet file written after its
    manifest less than ``settle`` seconds ago is a new delivery still being written: it waits (in ``waiting``) until
    its manifest is written again or its files have stayed unchanged that long. ``retention``: a folder held back
    (``OutsideRetention``) is taken again once its month is kept."""
    known = {r.manifest: r for r in records} if records is not None else runs.by_manifest(store)
    base = store.full(INGESTION)
    found = {store.rel(p): info for p, info in store.fs.find(base, detail=True).items()} if store.fs.exists(base) else {}
    files: dict[str, list[str]] = {}
    for rel in found:
        if rel.endswith(".parquet"):
            files.setdefault(posixpath.dirname(rel), []).append(rel)
    out = []
    now = datetime.now(timezone.utc)
    for rel in sorted(r for r in found if posixpath.basename(r) == "manifest.json"):
        folder = sorted(files.get(posixpath.dirname(rel), []))
        odd = [shown(p) for p in _odd_files(store, posixpath.dirname(rel))]  # left out of the listing: set aside
        signature = signature_of(found, [rel, *folder]) + "".join(f"|{n}" for n in odd)
        if checkpoint is not None and checkpoint.get(rel) == signature:
            if final is not None:
                final[rel] = signature
            continue  # unchanged since it was found final
        try:
            raw: bytes | None = store.read_bytes(rel) if store.inside(rel) else None
        except OSError:  # a dangling link, a permission: process_folder records it, the other folders flow
            raw = None
        rec = known.get(f"{CUSTOM}{rel}")
        identity = _sha(raw, _listing(store, posixpath.dirname(rel)))  # listed as process_folder lists it
        released = rec is not None and retention is not None and hub_deliveries.released(rec, retention)
        if (odd or rec is None or rec.manifestSha256 != identity or rec.state not in ("committed", "quarantined")
                or released):
            written = listed(found[rel]).modified
            later = [t for p in folder if (t := listed(found[p]).modified) and written and t > written]
            if unsettled(rel, signature, max(later, default=None), now, settle):
                if waiting is not None:
                    waiting.append(rel)
                continue
            out.append((rel, raw))
        elif final is not None and not hub_deliveries.held(rec):  # held: looked at again when the settings change
            final[rel] = signature
    return out


def _sha(raw: bytes | None, files: dict[str, dict]) -> str:
    """A folder delivery's identity: its manifest's content and its Parquet files' names, sizes and modification
    stamps (``files``: their listing entries). A committed folder's is taken after the swap, from the files as it
    wrote them: a file the producer replaces later, under its name or another, makes the folder pending again."""
    listing = ",".join(f"{posixpath.basename(rel)}|{listed(info).signature}" for rel, info in sorted(files.items()))
    return hashlib.sha256((raw or b"") + listing.encode()).hexdigest()


def _listing(store: Store, folder: str) -> dict[str, dict]:
    """The Parquet files directly in ``folder`` with their listing entries."""
    if not store.fs.isdir(store.full(folder)):
        return {}
    return {f"{folder}/{posixpath.basename(info['name'])}": info for info in store.fs.ls(store.full(folder), detail=True)
            if info["type"] == "file" and info["name"].endswith(".parquet")}


def _ingestion_id(rel: str) -> str:
    name = posixpath.basename(rel)
    return name.split("__", 1)[0] if "__" in name else ""


def _key(rel: str) -> str:
    """The run record key of a custom-data folder's manifest."""
    return f"custom-{hashlib.sha1(rel.encode()).hexdigest()[:16]}"


def _committed(before: RunRecord | None) -> list[runs.PartResult]:
    """The folder's files in the lake as its last commit left them: a run that failed or was cut short since then
    keeps them in ``lakeParts``."""
    if before is None:
        return []
    return before.parts if before.state == "committed" else before.lakeParts


def _delivered(files: list[str], committed: list[runs.PartResult], listing: dict[str, dict]) -> tuple[list[str], list[str]]:
    """The folder's files of its current delivery, and those of older new deliveries: with files of ingestion ids that
    the ``committed`` files do not have, only those of the newest such id (the one whose files were written last; the
    previous delivery's files are replaced by the swap, an older new id's are superseded: a month delivered or restated
    twice before the hub looked, never both counted); else all of them. Two new ids written at the same time are
    ``ManifestInvalid``."""
    old = {_ingestion_id(p.output) for p in committed}
    new = [f for f in files if _ingestion_id(f) not in old]
    if not new or (not old and len({_ingestion_id(f) for f in new}) < 2):
        return files, []
    written: dict[str, datetime] = {}
    floor = datetime.min.replace(tzinfo=timezone.utc)
    for f in new:
        when = listed(listing[f]).modified or floor
        written[_ingestion_id(f)] = max(written.get(_ingestion_id(f), floor), when)
    if len(written) == 1:
        return new, []
    ranked = sorted(written, key=lambda i: written[i], reverse=True)
    if written[ranked[0]] == written[ranked[1]]:
        raise HubError(f"holds files of {len(written)} new deliveries written at the same time (ingestion ids "
                       f"{', '.join(sorted(written)[:3])}): keep one id's files, then write the manifest again",
                       file=posixpath.dirname(new[0]) + "/manifest.json", code="ManifestInvalid")
    return [f for f in new if _ingestion_id(f) == ranked[0]], [f for f in new if _ingestion_id(f) != ranked[0]]


def _unnamed(files: list[str], committed: list[runs.PartResult], manifest: str) -> None:
    """Files without an ingestion id beside committed files without one are refused (``ManifestInvalid``): a new
    delivery or more of the last one? A re-delivery by a writer that names its parts anew each run (Spark, pandas)
    would be added to the files it restates."""
    kept = {p.output for p in committed} & set(files)
    if any(not _ingestion_id(f) for f in kept) and (added := [f for f in files if not _ingestion_id(f) and f not in kept]):
        raise HubError(f"{posixpath.basename(added[0])} has no ingestion id (<id>__<name>.parquet) and the folder's committed "
                       "files have none either: name a new delivery's files <id>__<name>.parquet with a new id (it replaces "
                       "the committed files), or remove the files it replaces; then write the manifest again",
                       file=manifest, code="ManifestInvalid")


def _unchanged(committed: list[runs.PartResult], listing: dict[str, dict]) -> dict[str, runs.PartResult]:
    """The committed files still in ``listing`` as the commit left them: the same listing signature (size and
    modification stamp; records written before signatures were kept: the same size)."""
    def same(p: runs.PartResult, info: dict) -> bool:
        return listed(info).signature == p.signature if p.signature else int(info.get("size") or -1) == p.bytes
    return {p.output: p for p in committed if p.bytes and p.output in listing and same(p, listing[p.output])}


def _set_aside(store: Store, rec: RunRecord, listing: dict[str, dict], committed: list[runs.PartResult]) -> None:
    """Rename the files of a quarantined delivery (every file but the committed ones) to ``<name>.quarantined``:
    readers read ``*.parquet``, so the lake keeps the folder's previous delivery and never the rejected one's raw
    rows. Nothing is deleted: a name already taken gets a number."""
    keep = _unchanged(committed, listing)
    for rel in sorted(set(listing) - set(keep)):
        target = store.free_name(f"{rel}.quarantined")
        store.move(rel, target)
        rec.setAside.append(target)


def _odd_files(store: Store, folder: str) -> list[str]:
    """The files directly in ``folder`` whose names are not UTF-8 (full local paths; the listing left them out)."""
    here = store.full(folder)
    return sorted(p for p in store.undecodable if posixpath.dirname(p) == here and os.path.isfile(p))


def _set_aside_odd(store: Store, rec: RunRecord, path: str, folder: str) -> str:
    """Rename a file of ``folder`` whose name is not UTF-8 (a full local path) to its name with the bytes as ``%XX``
    and ``.quarantined``: readers (DuckDB's glob) fail on such a name anywhere in the lake. Nothing is deleted."""
    target = store.free_name(f"{folder}/{percent_name(posixpath.basename(path))}.quarantined")
    os.rename(path, store.full(target))
    store.undecodable.discard(path)
    rec.setAside.append(target)
    return target


def _folder_error(folder: str) -> str | None:
    """Why ``folder`` is not a custom-data folder (``ingestion/<Dataset>/<yyyy>/<mm>[/<scope>]``), else None."""
    parts = folder.split("/")
    if len(parts) < 4 or parts[1] not in DATASETS:
        return f"a custom-data folder is {INGESTION}/<Dataset>/<yyyy>/<mm>/<scope>/ with Dataset one of {', '.join(DATASETS)}"
    if not (re.fullmatch(r"[0-9]{4}", parts[2]) and re.fullmatch(r"0[1-9]|1[0-2]", parts[3])):
        return f"a custom-data folder's year and month are <yyyy>/<mm> (2024/05), not {parts[2]}/{parts[3]}"
    if skipped := [p for p in parts[4:] if hidden(p)]:
        return f"the scope folder {skipped[0]!r} starts with _ or . (Spark, Hive, Trino and Athena skip it): rename it"
    return None


def process_folder(store: Store, rel: str, raw: bytes | None,
                   owners: dict[str, tuple[str, set[str]]] | None = None, moved: dict[str, str] | None = None,
                   retention: MonthsRetention | None = None) -> RunRecord | None:
    """Normalize one custom-data folder in place (``moved``: :func:`hub.deliveries.moved_out`; ``retention``: the
    lake months kept, a folder of another month is held back); None when a file arrived in the folder during the run
    (nothing swapped, its previous record kept: the folder is taken again at the next pass)."""
    started = time.perf_counter()
    folder = posixpath.dirname(rel)
    parts = folder.split("/")
    key = _key(rel)
    listing = _listing(store, folder)
    previous = runs.load(store, key)
    committed = _committed(previous)
    rec = RunRecord(key=key, manifest=f"{CUSTOM}{rel}", manifestSha256=_sha(raw, listing),
                    exportType="Custom", dataset=parts[1] if len(parts) > 1 else None, destination=folder,
                    month=f"{parts[2]}-{parts[3]}" if len(parts) > 3 else None, scope="/".join(parts[4:]) or None,
                    staging=engine.new_staging(key),  # one per attempt
                    lakeParts=[p.model_copy() for p in committed])
    read = False
    try:
        if odd := _odd_files(store, folder):  # first: set aside, the folder is not taken again for it on the next pass
            read = True  # the folder's new files are set aside with the rest: the lake keeps its previous delivery
            named = [_set_aside_odd(store, rec, p, folder) for p in odd]
            raise HubError(f"a file's name is not valid UTF-8 (DuckDB reads no such name): set aside as {named[0]}; "
                           "rename it in UTF-8, then write the manifest again", file=named[0], code="InvalidFileName")
        if there := (moved or {}).get(folder):  # written before its manifest: moved out of the lake for its name
            read = True
            raise HubError(f"a file of the folder was moved out of the lake to {there}, its name not valid UTF-8: rename "
                           "it in UTF-8, move it back, then write the manifest again", file=there, code="InvalidFileName")
        if raw is None:
            raise HubError("cannot be read (a dangling link, or one leading out of the hub root?)", file=rel,
                           code="ManifestReadFailed")
        if raw.strip() not in (b"", b"{}"):
            raise HubError("a custom-data manifest must be empty or {}", file=rel, code="ManifestInvalid")
        if problem := _folder_error(folder):
            raise HubError(problem, file=rel, code="ManifestInvalid")
        if retention is not None and rec.month:  # loaded, the next retention pass would delete it from the lake
            hub_deliveries.check_retained(rec, [rec.month], retention)
        if skipped := [posixpath.basename(f) for f in sorted(listing) if hidden(posixpath.basename(f))]:
            raise HubError(f"the file {skipped[0]!r} starts with _ or . (Spark, Hive, Trino and Athena skip it): rename it",
                           file=rel, code="ManifestInvalid")
        owner, provided = (owners or {}).get(folder, ("", set()))
        if theirs := provided & set(listing):
            # a provider's folder: its files are not this delivery's (never normalized again, never set aside); the
            # producer's are set aside, else readers would add them to the provider's bill, and so is the manifest,
            # else the provider's next delivery would find the folder taken by custom data
            _set_aside(store, rec, {f: info for f, info in listing.items() if f not in theirs}, committed)
            _set_aside(store, rec, {rel: {}}, [])
            rec.manifestSha256 = _sha(raw, _listing(store, folder))  # the folder as this run left it
            raise HubError(f"the folder holds the committed files of {owner}: custom data and a provider's "
                           "deliveries never share a folder; write the custom files and their manifest under another "
                           "scope (custom/<name>/)", file=rel, code="SourceConflict")
        if nested := sorted(f for f in (owners or {}) if f.startswith(folder + "/")):
            # a provider's folder inside this one (a legacy Azure export's actualcost/ under its scope folder):
            # readers read the scope recursively, so the custom files would be added to that provider's bill
            _set_aside(store, rec, listing, committed)
            _set_aside(store, rec, {rel: {}}, [])
            rec.manifestSha256 = _sha(raw, _listing(store, folder))
            raise HubError(f"the folder holds {nested[0]}, committed by {owners[nested[0]][0]}: custom data and a "
                           "provider's deliveries never share a folder; write the custom files and their manifest under "
                           "another scope (custom/<name>/)", file=rel, code="SourceConflict")
        files, older = _delivered(sorted(listing), committed, listing)
        if not files:
            raise HubError("no Parquet files next to the manifest", file=rel, code="IngestionFilesNotFound")
        for f in older:  # an older new delivery's files: out of the readers' way, kept (never deleted)
            target = store.free_name(f"{f}.superseded")
            store.move(f, target)
            rec.setAside.append(target)
            del listing[f]
        rec.state = "converting"
        runs.save(store, rec)
        store.delete_tree(rec.staging)
        read = True  # from here on a failure is the delivery's files': they are set aside
        _unnamed(files, committed, rel)
        carried = _unchanged(committed, listing)
        _normalize_files(store, rec, files, {f: carried[f] for f in files if f in carried})
        if set(_listing(store, folder)) - set(listing):  # a file written during the run (a producer still copying):
            store.delete_tree(rec.staging)  # never swapped away; the folder, changed, is taken again at the next pass
            if previous is not None:
                runs.save(store, previous)
            elif store.exists(runs.record_path(key)):
                store.delete(runs.record_path(key))
            return None
        rec.state = "swapping"
        runs.save(store, rec)
        engine.commit(store, rec)
        rec.lakeParts = []
        after = _listing(store, folder)
        rec.manifestSha256 = _sha(raw, after)  # the folder as this run left it
        for p in rec.parts:
            p.signature = listed(after[p.output]).signature if p.output in after else None
    except HubError as exc:
        runs.fail(store, rec, exc.code, exc.message, exc.file)
    except duckdb.Error as exc:
        runs.fail(store, rec, "InternalError", convert.scrub(str(exc)), rel)
    except Exception as exc:  # noqa: BLE001 - a store error, a bug: recorded like the others (a swap stays to roll forward)
        runs.fail(store, rec, "InternalError", convert.error_text(exc), rel)
    if rec.state == "quarantined" and read:  # a bad manifest or folder: the files were not read, fix and resend it
        store.check_fence()  # a holder stalled past its lease: the folder is another process's now, never set aside
        lost = {p.output for p in committed} & (set(listing) - set(_unchanged(committed, listing)))
        # committed files the producer overwrote leave the lake with the rest: the month's Costs change, its
        # allocation no longer stands (refused until made again, as after a commit)
        if lost and engine.mark_allocation_owed(store, rec, engine.owed(store, rec)):
            rec.owed = [*rec.owed, "allocate"]
        _set_aside(store, rec, listing, committed)
        rec.manifestSha256 = _sha(raw, _listing(store, folder))  # the folder as this run left it
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


@cache
def focus_schema() -> ExportSchema:
    """Custom Costs files are typed like a FocusCost export: every column the Costs normalization knows, by name."""
    return ExportSchema("Custom", "focus", None, "Costs",
                        tuple(Column(n, t, n, optional=True) for n, t in costs.input_columns().items()))


def _normalize_files(store: Store, rec: RunRecord, files: list[str], carried: dict[str, runs.PartResult]) -> None:
    """Stage the folder's ``files`` normalized; those in ``carried`` (normalized by the committed run, unchanged since)
    as they are."""
    with tempfile.TemporaryDirectory(prefix="hub-custom-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            outputs, totals_in = [], {}
            for i, rel in enumerate(files):
                path = store.local_path(rel)
                if path is None:
                    path = os.path.join(tmp, f"in-{i}.parquet")
                    store.get_file(rel, path)
                name = posixpath.basename(rel)
                staged = f"{rec.staging}/{name}"
                if rel in carried:  # normalized before: its lineage stays as it is
                    store.copy(rel, staged)
                    rec.parts.append(carried[rel].model_copy())
                    outputs.append(path)
                    if rec.dataset == "Costs":  # what it brought in, as ingested (changed amounts at their originals)
                        lake_file = scan("read_parquet", literal(path))
                        normalize.add_totals(totals_in, normalize.output_totals(con, totals_spec("FocusCost"), lake_file)[1])
                    continue
                out = store.local_path(staged) or os.path.join(tmp, "out", name)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                try:
                    query, typed = _query(con, rec, path, rel)
                    rows = convert.write_parquet(con, [f"* FROM ({query})"], "", out, file=rel, select_only=True)
                    if typed:
                        normalize.add_totals(totals_in, _input_totals(con, typed))
                except HubError:
                    raise
                except Exception as exc:  # noqa: BLE001 - unreadable or ill-typed custom data quarantines the folder
                    raise convert.map_error(exc, file=rel) from None
                if store.local_path(staged) is None:
                    store.put_file(out, staged)
                rec.parts.append(runs.PartResult(blob=rel, output=rel, rows=rows, bytes=os.path.getsize(out)))
                outputs.append(out)
                checkpoint(f"after-part-{i + 1}")
            rec.rowsIn = rec.rowsOut = sum(p.rows for p in rec.parts)
            if rec.dataset == "Costs" and outputs:  # the files' own totals per currency, reconciled with what was written
                rec.totalsIn = totals_in
                rec.totalsOut, rec.totalsIngested = normalize.output_totals(con, totals_spec("FocusCost"),
                                                                            convert.parquet_source(outputs))
                if not normalize.same_totals(rec.totalsIngested, totals_in):
                    raise HubError(f"totals {totals_in} delivered, {rec.totalsIngested} written", file=rec.manifest,
                                   code="InternalError")
            if rec.dataset == "Costs" and rec.rowsOut:
                report = validate_files(con, outputs, label=rec.destination or "")
                rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                                  "rules": report.summary()}
                if rec.month:
                    start = datetime.strptime(rec.month, "%Y-%m").replace(tzinfo=timezone.utc)
                    check_costs(con, rec, outputs, start, month_end(start))
        finally:
            con.close()


def _query(con: duckdb.DuckDBPyConnection, rec: RunRecord, path: str, rel: str) -> tuple[str, str | None]:
    """The normalization query of one custom file, and its typed input (Costs; else None). Text columns are typed as
    CSV input is (``''`` and ``NULL`` are nulls, numbers, dates and booleans parsed), so FOCUS files converted to
    all-text Parquet load as they are."""
    source = scan('read_parquet', literal(path))
    try:
        names = pq.read_schema(path).names  # as written: DuckDB renames a second "BilledCost" to "BilledCost_1"
    except (FileNotFoundError, PermissionError) as exc:
        raise convert.unreadable(exc, rel) from None
    if len({header_key(n) for n in names}) != len(names):
        raise HubError("duplicate column names (compared without case and surrounding spaces)", file=rel,
                       code="SchemaMismatch")
    present = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    if rec.dataset != "Costs":
        proj = [f"{text_nulls(ident(c))} AS {ident(c)}" if t == "VARCHAR" else ident(c) for c, t in present.items()]
        return f"SELECT {', '.join(proj)} FROM {source}", None
    try:
        proj = project(focus_schema(), present, null_texts=True)
    except IncompatibleType as exc:
        raise HubError(str(exc), file=rel, code="SchemaMismatch") from None
    typed = f"(SELECT {', '.join(proj.select)} FROM {source})"
    columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {typed}").fetchall()}
    return costs.costs_sql(typed, columns, Lineage(), extras=proj.extra), typed


def _input_totals(con: duckdb.DuckDBPyConnection, typed: str) -> dict[str, dict[str, str]]:
    """A custom Costs file's own BilledCost and EffectiveCost per currency (spelled as the lake does: ``USD``)."""
    columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {typed}").fetchall()}
    amounts = {a: ident(a) if a in columns else "NULL" for a in ("BilledCost", "EffectiveCost")}
    currency = "upper(trim(BillingCurrency))" if "BillingCurrency" in columns else "NULL"
    return convert.totals(con, typed, currency, amounts)


def ingest_custom(store: Store, records: list[RunRecord] | None = None, checkpoint: dict[str, str] | None = None, *,
                  settle: float = 0, waiting: list[str] | None = None) -> list[RunRecord]:
    """Process every pending custom-data folder (one failing folder never stops the others). ``checkpoint`` (the
    watcher's listing checkpoint, updated in place): folders already final and unchanged are not read again (a
    folder just normalized in place has new files: it is read once more, then found final); ``settle``, ``waiting``:
    see :func:`pending`."""
    final: dict[str, str] = {}
    records = runs.load_all(store) if records is None else records  # read once: the pending folders and their owners
    retention = load_settings(store).retention.ingestion
    todo = pending(store, records, checkpoint, final, settle=settle, waiting=waiting, retention=retention)
    owners = _providers_folders(records) if todo else {}
    moved = hub_deliveries.moved_out(records, store) if todo else {}
    made = [r for rel, raw in todo if (r := _isolated(store, rel, raw, owners, moved, retention)) is not None]
    refresh_checkpoint(checkpoint, INGESTION, final, final)  # changed, pending or gone: read again next time
    return made


def _providers_folders(records: list[RunRecord]) -> dict[str, tuple[str, set[str]]]:
    """The lake folders providers' committed runs wrote (Azure's exports, other clouds' deliveries: a folder of OCI
    report files or pulled days holds many), each with one of those runs' manifests and every file they wrote."""
    out: dict[str, tuple[str, set[str]]] = {}
    for r in records:
        if r.state == "committed" and r.destination and r.parts and not r.manifest.startswith(CUSTOM) and r.dataset in DATASETS:
            manifest, files = out.get(r.destination, (r.manifest, set()))
            out[r.destination] = (manifest, files | {p.output for p in r.parts if p.output})
    return out


def _isolated(store: Store, rel: str, raw: bytes | None, owners: dict[str, tuple[str, set[str]]] | None = None,
              moved: dict[str, str] | None = None, retention: MonthsRetention | None = None) -> RunRecord | None:
    try:
        return process_folder(store, rel, raw, owners, moved, retention)
    except Exception as exc:  # noqa: BLE001 - even a failure to write its record must not stop the other folders
        try:
            before = runs.load(store, _key(rel))
        except Exception:  # noqa: BLE001 - the store fails: the record below is all there is
            before = None
        return runs.failed(store, _key(rel), f"{CUSTOM}{rel}", exc, exportType="Custom", lakeParts=_committed(before))
