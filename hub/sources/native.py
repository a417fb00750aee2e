"""Other clouds' native FOCUS exports (``exports/<provider>/``): AWS, Google Cloud, OCI, Alibaba, Huawei, Tencent.

A user syncs the provider's delivery into ``exports/<provider>/`` as the provider lays it out, then writes an empty
``manifest.json`` (or ``{}``; ``{"currency": "USD"}`` names the billing currency of bill files without a currency
column) in the delivery's folder, last. The delivery is every ``.csv``, ``.csv.gz`` and
``.parquet`` file below that folder (not in a sub-folder holding its own manifest). Its files are typed like CSV
exports (headers matched without regard to case or surrounding whitespace, the provider's other spellings as
aliases from ``schemas/<provider>/focus.json``), normalized by the same FOCUS 1.0 rules as Azure's exports
(:func:`transforms.costs.costs_sql`: pre-1.0 names, enumeration casing, inclusive period ends, Tags forms, ...),
and split by billing period and billing account: each (month, account) becomes one run into
``ingestion/Costs/<yyyy>/<mm>/<provider>/<billing-account>/``, replacing what an earlier delivery put there.

All-or-nothing per delivery: every file is converted, counted and checked before any folder is swapped; the runs
then go to the load engine together (a crash between two swaps is finished by :func:`hub.engine.recover`).
Reconciliation: rows in = rows out, and BilledCost and EffectiveCost per currency as delivered = as ingested.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import resources

import duckdb
from pydantic import BaseModel, ConfigDict

from hub import catalog, convert, engine, lease, lookups, normalize, runs, swap
from hub import deliveries as hub_deliveries
from hub.checks import MONEY, check_costs, month_end
from hub.errors import HubError, InputError
from hub.export_schemas import Column, ExportSchema, totals_spec
from hub.runs import FINAL, RunRecord
from hub.settings import Settings, load_settings
from hub.sources import Hooks, refresh_checkpoint, snapshots, unsettled
from hub.sources import listings as aws_listings
from hub.sources.snapshots import Snapshots
from hub.store import EXPORTS, Store, bounded_name, dataset_folder, glob_escape, listed, shown, signature_of, visible
from hub.validate import CheckTap, tap_report, validate_files
from transforms import backfill, costs, mapped
from transforms.costs import Lineage
from transforms.focus_validate import currencies, version_of
from transforms.typing import (
    DOUBLE_PREFIX,
    SQL_TYPES,
    IncompatibleType,
    decimal_sources,
    header_key,
    ident,
    literal,
    project,
    scan,
    text_nulls,
)

AREA = EXPORTS
NATIVE = "native:"
#: Data files of a delivery (by name).
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz", ".zip")
#: Data files read inside a zip archive.
ZIPPED = (".csv.gz", ".csv", ".parquet")


class Fill(BaseModel):
    """A value a provider's FOCUS files leave empty though FOCUS requires it, and the provider documents the gap; or,
    with ``when``, a documented deviation repaired (the original value kept in x_SourceValues)."""

    model_config = ConfigDict(extra="forbid")
    #: SQL over the file's FOCUS columns (as typed, before the normalization), used where the column is null
    value: str
    #: the x_SourceChanges code of the rows it fills
    code: str
    #: SQL condition over the same columns: the value replaces the column's where it holds (default: the column is null)
    when: str | None = None
    #: columns of the file the value or condition reads beyond FOCUS's: a file without one of them is not filled
    needs: list[str] = []
    #: the column filled, when not the fill's own name (several fills of one column: the first whose condition holds)
    column: str | None = None
    #: the value replaces the column's where ``when`` holds even when it is null (a value taken off a row)
    clear: bool = False


class ProviderMapping(BaseModel):
    """``schemas/<provider>/focus.json``."""

    model_config = ConfigDict(extra="ignore")
    provider: str
    sourceName: str
    sourceType: str = "FOCUS"
    #: the provider's folder under ``schemas/`` (set when loaded): where the CSV tables its ``fills`` read lie
    folder: str = ""
    aliases: dict[str, list[str]] = {}
    #: reports arrive file by file without a manifest (OCI): each file is taken once it has stopped changing
    incrementalFiles: bool = False
    #: the provider writes a bill a day and then the month's whole one (Tencent's bill storage, Alibaba's OSS bill
    #: subscription): see :class:`Snapshots`
    snapshots: Snapshots | None = None
    #: prefixes of user-defined tag keys in the provider's FOCUS files, taken off (AWS: ``user:``, as its CUR's)
    tagKeyPrefixes: list[str] = []
    #: names of data files the provider writes without an extension (Alibaba's OSS bill subscription): read by content
    extensionless: str | None = None
    #: columns its FOCUS files leave empty, filled (never in a report a mapping converts: that mapping fills them)
    fills: dict[str, Fill] = {}
    #: regexes (``year`` and ``month`` groups) of folders in a delivered file's path under ``exports/<provider>/`` that
    #: name its billing month (AWS's ``BILLING_PERIOD=2024-09``, a ``2024-09`` extract folder): such a file holds that
    #: month's bill only; a row of another billing month would replace that month's folder (``PeriodMismatch``)
    monthFolders: list[str] = []
    #: lake columns naming a line item once in a billing account's month (OCI's ``lineItem/referenceNo``): a report
    #: file whose line items another delivery's file already brought to the folder is ``SourceConflict``
    lineIds: list[str] = []
    #: savings rules (:func:`transforms.backfill.price_layer`): ``none``, SQL over the normalized row, rows that save
    #: nothing; ``notCommitment``, columns (comma-separated) holding the parts of a row's discount no commitment made
    #: (where a file has them)
    savings: dict[str, str] = {}
    #: a regex of paths under ``exports/<provider>/`` the provider writes beside its bills that are not bills (AWS's
    #: Athena integration ``cost_and_usage_data_status/`` file): never read as data
    notData: str | None = None


@cache
def providers() -> dict[str, ProviderMapping]:
    """Every provider with a native FOCUS mapping, by its folder name under ``exports/``."""
    base = resources.files("schemas")
    out = {}
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        path = entry / "focus.json"
        if entry.is_dir() and path.is_file():
            out[entry.name] = ProviderMapping.model_validate_json(path.read_text()).model_copy(update={"folder": entry.name})
    return out


@cache
def focus_schema(provider: str) -> ExportSchema:
    """Every column the Costs normalization knows, by name or by one of the provider's spellings."""
    aliases: dict[str, list[str]] = {}
    for old, new in costs.RENAMES.items():  # pre-1.0 names (UsageQuantity -> ConsumedQuantity, ...)
        aliases.setdefault(new, []).append(old)
    for name, spellings in providers()[provider].aliases.items():
        aliases.setdefault(name, []).extend(spellings)
    columns = tuple(Column(n, t, n, tuple(aliases.get(n, ())), optional=True) for n, t in costs.input_columns().items())
    return ExportSchema("FOCUS", provider, None, "Costs", columns, totals=totals_spec("FocusCost"))


@dataclass(frozen=True)
class Delivery:
    manifest: str
    provider: str
    files: tuple[tuple[str, int], ...]  # (path, size)
    raw: bytes | None
    #: the provider's own manifests in the delivery (AWS ``<report>-Manifest.json``): the files they list must be there
    listings: tuple[str, ...] = ()
    #: those and the ones of the folders above the delivery, with their content: they say which files are read
    #: (:mod:`hub.sources.listings`)
    governing: tuple[tuple[str, bytes | None], ...] = ()
    #: one incremental report file of its own (OCI): ``manifest`` is the file; it replaces only its own rows
    incremental: bool = False
    #: the file's listing signature (incremental files: a change of content is a new delivery)
    stamp: str = ""
    modified: datetime | None = None
    #: a day pulled from the provider's bill API (``hub pull``): it replaces only its own rows in its month folder
    pulled: bool = False
    #: the listing signature of the manifest and every file of the delivery (the watcher's checkpoint: unchanged since
    #: it was found final, the delivery is not read again)
    signature: str = ""
    #: the listing signature of its data files (sizes and modification times)
    written: str = ""
    #: the latest modification of a data file written after the manifest (the manifest came first: the copy may go on)
    after: datetime | None = None
    #: names in the delivery's folder that are not valid UTF-8 (shown as ``\\xNN``): never read, the delivery refused
    odd: tuple[str, ...] = ()
    #: the other deliveries of its billing period folder (AWS assemblies or executions, each with its own
    #: ``manifest.json``): without an AWS manifest naming the current one, the month's versions (listings.one_version)
    versions: tuple[str, ...] = ()

    @property
    def sha(self) -> str:
        """The delivery's identity: its manifest, its files' names, sizes and modification times, its AWS manifests'
        content, the other versions of its billing period (a re-delivery, also of a restated file of the same size, a
        restatement AWS lists anew, or a version removed beside it, is new)."""
        governing = [f"{p}\t{hashlib.sha256(raw or b'').hexdigest()}" for p, raw in self.governing]
        listing = "\n".join([*(f"{p}\t{s}" for p, s in self.files), *self.listings, *governing, self.stamp, self.written,
                             *self.odd, *self.versions])
        return hashlib.sha256((self.raw or b"") + b"\0" + listing.encode()).hexdigest()

    @property
    def source_files(self) -> dict[str, int]:
        """The delivery's own files and their sizes (its AWS manifests as 0: not size-checked), for retention."""
        return {**dict(self.files), **dict.fromkeys(self.listings, 0)}

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.manifest.encode()).hexdigest()[:16]


def deliveries(store: Store, checkpoint: dict[str, str] | None = None, seen: set[str] | None = None) -> list[Delivery]:
    """Every delivery under ``exports/<provider>/``, oldest first (the newest of a lake folder wins): each folder with a
    ``manifest.json`` owns the data files below it (not those of a sub-folder with its own manifest); for a provider
    whose reports arrive file by file (``incrementalFiles``: OCI), each data file no manifest owns is a delivery.
    ``checkpoint``: deliveries whose listing signature it holds are left out, their manifest not read (the watcher's
    listing checkpoint); ``seen`` collects every delivery's manifest, left out or not."""
    base = store.full(AREA)
    if not store.fs.exists(base):
        return []
    # no named pipe, socket or device (opening a pipe would block the reader holding the lease); links stay (one that
    # dangles or leaves the hub root is refused by name)
    found = {store.rel(path): info for path, info in store.fs.find(base, detail=True).items()
             if info.get("type", "file") != "other" or info.get("islink")}
    manifests = {rel for rel in found if posixpath.basename(rel) == "manifest.json"}
    odd_names = sorted(shown(store.rel(p)) for p in store.undecodable if p.startswith(base + "/"))
    folders = {posixpath.dirname(rel): rel for rel in manifests}
    aws = [rel for rel in found if aws_listings.is_listing(rel)]
    owned: dict[str, list[str]] = {folder: [] for folder in folders}
    loose: list[str] = []
    for rel in sorted(found):
        name = posixpath.basename(rel)
        if rel in manifests or name.startswith("."):
            continue
        owner = posixpath.dirname(rel)
        # the nearest folder with a manifest owns a file, up to the provider's folder (a stray exports/manifest.json
        # owns nothing)
        while owner not in folders and owner.count("/") > 1:
            owner = posixpath.dirname(owner)
        (owned[owner] if owner in folders else loose).append(rel)
    out = []
    for folder, rel in folders.items():
        provider = _provider(rel)
        above = _governing(folder, aws) if provider in providers() else []
        siblings = _sibling_assemblies(folder, aws) if provider in providers() else []
        # other deliveries of its billing period, when no AWS manifest governs it (one that does names the current one)
        mine = [sub for sub in owned[folder] if aws_listings.is_listing(sub)] if provider in providers() else []
        versions = (_sibling_deliveries(folder, folders) if provider in providers() and not (above or siblings or mine)
                    else [])
        # the AWS manifests that govern it count too: a billing-period manifest synced later is a change the watcher sees
        odd = tuple(n for n in odd_names if n.startswith(folder + "/"))
        signature = (signature_of(found, [rel, *owned[folder], *above, *siblings, *versions])
                     + "".join(f"|{n}" for n in odd))
        if seen is not None:
            seen.add(rel)
        if checkpoint is not None and checkpoint.get(rel) == signature:
            continue  # unchanged since it was found final
        raw: bytes | None = None
        with contextlib.suppress(OSError):  # an empty manifest (the usual one) is known from the listing: no read
            empty = found[rel].get("size") == 0 and found[rel].get("type", "file") == "file"
            raw = (b"" if empty else store.read_bytes(rel)) if store.inside(rel) else None
        files, listings = [], []
        for sub in owned[folder] if provider in providers() else []:
            if aws_listings.is_listing(sub):
                listings.append(sub)
            elif is_data_file(provider, sub):
                files.append((sub, int(found[sub].get("size") or 0)))
        governing = tuple((m, _read(store, m)) for m in sorted({*listings, *above, *siblings}))
        modified = listed(found[rel]).modified
        later = [t for p, _ in files if (t := listed(found[p]).modified) and modified and t > modified]
        out.append(Delivery(rel, provider, tuple(files), raw, tuple(listings), governing, modified=modified,
                            pulled=_pull_manifest(raw), signature=signature,
                            written=signature_of(found, [p for p, _ in files]) if files else "", after=max(later, default=None),
                            odd=odd, versions=tuple(posixpath.dirname(v) for v in versions)))
    for rel in loose:
        provider = _provider(rel)
        if provider in providers() and providers()[provider].incrementalFiles and is_data_file(provider, rel):
            entry = listed(found[rel])
            if seen is not None:
                seen.add(rel)
            if checkpoint is not None and checkpoint.get(rel) == entry.signature:
                continue
            out.append(Delivery(rel, provider, ((rel, int(found[rel].get("size") or 0)),), b"", incremental=True,
                                stamp=entry.signature, modified=entry.modified, signature=entry.signature))
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(out, key=lambda d: (d.modified or oldest, d.manifest))


def _retiring(records: list[RunRecord], listed: set[str]) -> dict[str, int]:
    """Files (with their sizes) of committed deliveries whose ``manifest.json`` is no longer ``listed``: retention
    deletes the manifest first, so a retirement cut short leaves them, and a sync (``oci os object sync``) brings a
    retired delivery's files back without it; an OCI file no manifest owns would otherwise be a delivery of its own
    (its rows counted twice)."""
    out: dict[str, int] = {}
    for rec in records:
        if (rec.state == "committed" and rec.sourceFiles
                and posixpath.basename(rec.manifest) == "manifest.json" and rec.manifest not in listed):
            out.update({p: size for p, size in rec.sourceFiles.items() if p != rec.manifest})
    return out


def _governing(folder: str, aws: list[str]) -> list[str]:
    """The AWS manifests outside a delivery's ``folder`` that speak for its files: those whose scope
    (:func:`hub.sources.listings.scope`) holds the folder, is the folder, or lies inside it (a Data Exports
    ``metadata/BILLING_PERIOD=…/`` manifest speaks for ``data/BILLING_PERIOD=…/``, wherever the delivery's
    ``manifest.json`` sits in that tree)."""
    out = []
    for m in aws:
        if m.startswith(folder + "/"):
            continue  # inside the delivery: one of its own listings
        mine = aws_listings.scope(m)
        if mine == folder or folder.startswith(mine + "/") or mine.startswith(folder + "/"):
            out.append(m)
    return out


def _sibling_assemblies(folder: str, aws: list[str]) -> list[str]:
    """The manifests of the other versions of a billing period when ``folder`` is one of them, each its own delivery
    (a legacy CUR's assemblies ``<yyyymmdd-yyyymmdd>/<assembly>/``, Data Exports executions of the "create new report"
    option ``data/BILLING_PERIOD=…/<execution>/``): without a manifest naming the current one,
    :func:`hub.sources.listings.select` refuses them (``SourceConflict``) rather than let the last copied win."""
    if (period := _period(folder)) is None:
        return []
    return [m for m in aws if posixpath.dirname(aws_listings.scope(m)) == period and aws_listings.scope(m) != folder]


def _period(folder: str) -> str | None:
    """The AWS billing-period folder ``folder`` is one version of (its parent), else None."""
    period = posixpath.dirname(folder)
    return period if aws_listings.PERIOD.fullmatch(posixpath.basename(period)) else None


def _sibling_deliveries(folder: str, folders: dict[str, str]) -> list[str]:
    """The manifests of the other deliveries in ``folder``'s billing-period folder when ``folder`` is one version of an
    AWS billing period (``<yyyymmdd-yyyymmdd>/<assembly>/``, ``BILLING_PERIOD=…/<execution>/``)."""
    if (period := _period(folder)) is None:
        return []
    return sorted(m for f, m in folders.items() if f != folder and posixpath.dirname(f) == period)


def _read(store: Store, rel: str) -> bytes | None:
    """A small file's content; None when it cannot be read (or leads out of the hub root)."""
    try:
        return store.read_bytes(rel) if store.inside(rel) else None
    except OSError:
        return None


def _pull_manifest(raw: bytes | None) -> bool:
    """A manifest written by ``hub pull`` (``{"pull": {...}}``)."""
    if not raw or b'"pull"' not in raw[:64]:
        return False
    try:
        return isinstance(json.loads(raw).get("pull"), dict)
    except ValueError:
        return False


def _provider(rel: str) -> str:
    """``exports/<provider>/...`` -> provider."""
    return rel.split("/")[1] if rel.count("/") >= 2 else ""


def pending(store: Store, records: list[RunRecord], *, retry: bool = False, force: bool = False, settle: float = 0,
            waiting: list[str] | None = None, checkpoint: dict[str, str] | None = None,
            final: dict[str, str] | None = None, seen: set[str] | None = None,
            settings: Settings | None = None) -> list[Delivery]:
    """Deliveries not processed yet in their current content (``retry``: quarantined ones too; ``force``: all).
    An incremental file changed less than ``settle`` seconds ago may still be written: it waits (in ``waiting``); so
    does a delivery with a data file written after its manifest less than ``settle`` seconds ago (the manifest came
    first, the copy may go on). ``checkpoint``: see :func:`deliveries` (not used with ``retry`` or ``force``);
    ``final`` collects the listing signatures of the deliveries found final."""
    out = []
    now = datetime.now(timezone.utc)
    retention = (settings or load_settings(store)).retention.ingestion
    listed: set[str] = set() if seen is None else seen
    retiring: dict[str, int] | None = None
    for d in deliveries(store, None if retry or force else checkpoint, listed):
        if d.incremental:
            retiring = _retiring(records, listed) if retiring is None else retiring
            if retiring.get(d.manifest) == d.files[0][1]:
                continue  # the rest of a manifest delivery whose retirement was cut short: its rows are in the lake
        mine = [r for r in records if r.manifest == d.manifest and r.manifestSha256 == d.sha]
        whole = {k for r in mine for k in r.siblings} <= {r.key for r in mine}  # no run lost to a crash before its save
        done = mine and whole and all(r.state in FINAL for r in mine)
        held = any(hub_deliveries.held(r) for r in mine)  # never final: taken again once the settings keep its months
        if held and all(hub_deliveries.released(r, retention) for r in mine if hub_deliveries.held(r)):
            done = False
        if done and final is not None and d.signature and not held:
            final[d.manifest] = d.signature
        if force or not done or retry and any(r.state == "quarantined" for r in mine):
            moved = d.modified if d.incremental else d.after
            if unsettled(d.manifest, d.signature, moved, now, settle):
                if waiting is not None:
                    waiting.append(d.manifest)
                continue
            out.append(d)
    return out


def ingest_pending(store: Store, records: list[RunRecord], *, retry: bool = False, force: bool = False, settle: float = 0,
                   waiting: list[str] | None = None, checkpoint: dict[str, str] | None = None,
                   settings: Settings | None = None) -> list[RunRecord]:
    """Process every pending delivery (one failing delivery never stops the others); ``records`` is kept current.
    ``checkpoint`` (the watcher's listing checkpoint, updated in place): manifest -> listing signature of the
    deliveries already final, which are then not read again."""
    made: list[RunRecord] = []
    final: dict[str, str] = {}
    seen: set[str] = set()
    settings = settings or load_settings(store)
    for d in pending(store, records, retry=retry, force=force, settle=settle, waiting=waiting, checkpoint=checkpoint,
                     final=final, seen=seen, settings=settings):
        key = f"native-{d.digest}"
        done = engine.isolated(store, key, d.manifest, d.raw, lambda d=d: process(store, d, records, settings))
        out = done if isinstance(done, list) else [done]
        made += out
        records[:] = [r for r in records if r.key not in {o.key for o in out}] + out
        if d.signature and out and all(r.state in FINAL for r in out) and not any(hub_deliveries.held(r) for r in out):
            final[d.manifest] = d.signature
    refresh_checkpoint(checkpoint, AREA, seen, final)
    return made


def process(store: Store, d: Delivery, records: list[RunRecord], settings: Settings | None = None) -> list[RunRecord]:
    """Convert one delivery into one run per (month, billing account) and commit them; on bad input one quarantined
    record names the file and the error (nothing in the lake changes); so does a delivery whose every month is older
    than the lake keeps (``OutsideRetention``, :func:`hub.deliveries.check_retained`)."""
    settings = settings or load_settings(store)
    started = time.perf_counter()
    failure = RunRecord(key=f"native-{d.digest}", manifest=d.manifest, manifestSha256=d.sha, dataset="Costs",
                        exportName=d.provider, schemaKey=f"{NATIVE}{d.provider}")  # its kind: once a file is read
    made: list[RunRecord] = []
    try:
        hints = _check(store, d)
        made = _convert(store, d, failure, records, hints)
        hub_deliveries.check_retained(failure, [r.month for r in made if r.month and r.state != "superseded"],
                                      settings.retention.ingestion)
        older = [rec for rec in made if rec.state == "superseded"]
        made = [rec for rec in made if rec.state != "superseded"]
        for rec in older:  # an older snapshot of a bill whose newer one is in the lake: recorded, never swapped in
            store.delete_tree(rec.staging or "")
            rec.seconds = round(time.perf_counter() - started, 3)
            runs.save(store, rec)
        # a version without any row changes nothing (an empty extract: a query's filter typo, synced with deletions),
        # and neither does one whose every file is left out (AWS's manifest now names another assembly: the month is
        # that delivery's to replace); a pulled day the bill API now answers empty is the provider's word
        if made or (d.pulled and not failure.skippedFiles):
            made += _withdrawals(store, d, made, records)
        if not made:  # no rows: nothing changes in the lake, and the delivery is not read again
            if older:
                if store.exists(runs.record_path(failure.key)):
                    store.delete(runs.record_path(failure.key))  # an earlier failure (held back) is over
                return older
            failure.sourceFiles = d.source_files
            return [engine.no_rows(store, failure, started)]
        for rec in made:
            hub_deliveries.check_not_custom(store, rec)
        for rec in made:
            rec.siblings = [r.key for r in made]
        for rec in made:
            rec.state = "swapping"
            runs.save(store, rec)
        for rec in made:
            engine.commit(store, rec, records=records)
        if store.exists(runs.record_path(failure.key)):
            store.delete(runs.record_path(failure.key))  # an earlier failure of this delivery is over
        for rec in made:
            rec.seconds = round(time.perf_counter() - started, 3)
            runs.save(store, rec)
        return made
    except lease.LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - bad input (or a bug) quarantines this delivery, never the others
        error = exc if isinstance(exc, HubError) else engine.unexpected(exc, d.manifest)
        swapping = [r for r in made if r.state == "swapping"]
        if swapping:  # staged completely: the next run finishes the swaps (engine.recover)
            for rec in swapping:
                engine.quarantine(store, rec, error)
                runs.save(store, rec)
            return swapping
        for rec in made:
            store.delete_tree(rec.staging or "")
        engine.quarantine(store, failure, error)
        failure.seconds = round(time.perf_counter() - started, 3)
        runs.save(store, failure)
        return [failure]


def is_data_file(provider: str, path: str) -> bool:
    """A file of a delivery the hub reads: by its extension, or by a name the provider writes without one; never one
    of the provider's files that are not bills (``notData``)."""
    spec = providers().get(provider)
    if spec and spec.notData and re.search(spec.notData, path.split(f"exports/{provider}/", 1)[-1]):
        return False
    return path.lower().endswith(SUFFIXES) or _extensionless(provider, path)


def _extensionless(provider: str, path: str) -> bool:
    """``path``'s name is one the provider writes without an extension (``extensionless`` in its mapping)."""
    spec = providers().get(provider)
    return bool(spec and spec.extensionless and re.fullmatch(spec.extensionless, posixpath.basename(path)))


def _sniffed(path: str) -> str:
    """The kind of a file without an extension, by its first bytes: ``zip``, ``csv.gz``, ``parquet``, else ``csv``."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return {b"PK\x03\x04": "zip", b"PAR1": "parquet"}.get(head, "csv.gz" if head[:2] == b"\x1f\x8b" else "csv")


def _inputs(store: Store, d: Delivery, tmp: str) -> Iterator[tuple[str, str, str]]:
    """Each data file of a delivery as (name in messages, local path, kind); a ``.zip`` (Tencent's bill storage, and
    Alibaba's files without an extension) gives each data file inside it, named ``<zip>!<member>``."""
    for i, (path, _) in enumerate(d.files):
        src = store.local_path(path)
        if src is None:
            src = os.path.join(tmp, f"in-{i}-{posixpath.basename(path)}")
            store.get_file(path, src)
        kind = "zip" if path.lower().endswith(".zip") else _kind(path) if path.lower().endswith(SUFFIXES) else _sniffed(src)
        if kind != "zip":
            yield path, src, kind
            continue
        try:
            with zipfile.ZipFile(src) as archive:
                members = [m for m in archive.infolist() if not m.is_dir() and _zipped_kind(d.provider, m.filename) is not None
                           and not posixpath.basename(m.filename).startswith(".") and "__MACOSX/" not in m.filename]
                if not members:
                    raise HubError("holds no .csv, .csv.gz or .parquet file", file=path, code="IngestionFilesNotFound")
                for j, member in enumerate(members):
                    label = f"{path}!{member.filename}"
                    suffix = next((x for x in ZIPPED if member.filename.lower().endswith(x)), "")
                    out = os.path.join(tmp, f"zip-{i}-{j}{suffix}")
                    with archive.open(member) as data, open(out, "wb") as fh:
                        shutil.copyfileobj(data, fh)
                    yield label, out, _zipped_kind(d.provider, member.filename) or _sniffed(out)
                    os.remove(out)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
            # cut, encrypted (RuntimeError) or compressed with a method Python cannot read (Deflate64: NotImplementedError)
            raise HubError(f"is not a readable zip archive ({type(exc).__name__})", file=path, code="CorruptFile") from None


def _zipped_kind(provider: str, name: str) -> str | None:
    """The kind of a zip archive's member by its extension; "" for a name the provider writes without one (read by
    content); None for another file (not read)."""
    if name.lower().endswith(ZIPPED):
        return _kind(name)
    return "" if _extensionless(provider, name) else None


def _kind(path: str) -> str:
    """``csv``, ``csv.gz``, ``parquet``, or ``json`` (newline-delimited, optionally gzip: BigQuery extracts)."""
    low = path.lower()
    if low.endswith((".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")):
        return "json"
    return convert.file_kind(path, file=path)


def _check(store: Store, d: Delivery) -> dict[str, str]:
    """The delivery's own checks (manifest, provider, files); what its manifest tells (:func:`manifest_hints`)."""
    if d.raw is None:
        raise HubError("cannot be read (a dangling link, or one leading out of the hub root?)", file=d.manifest,
                       code="ManifestReadFailed")
    if d.provider not in providers():
        known = ", ".join(f"{AREA}/{p}/" for p in providers())
        raise HubError(f"not under a provider's folder ({known})", file=d.manifest, code="SchemaNotFound")
    hints = manifest_hints(d.raw, file=d.manifest, pulled=d.pulled)
    if d.odd:  # never a part of the bill left out without a word
        raise HubError("a file's name is not valid UTF-8 (it would not be read): rename it in UTF-8", file=d.odd[0],
                       code="InvalidFileName")
    if not d.files:
        raise HubError("no .csv, .csv.gz, .parquet, newline JSON or .zip files in the delivery's folder", file=d.manifest,
                       code="IngestionFilesNotFound")
    for path, _ in d.files:
        if not store.inside(path):
            raise HubError("is a link leading out of the hub root", file=path, code="PathEscapesStore")
    return hints


#: What a native delivery's ``manifest.json`` may say besides nothing: the billing currency of files without a currency
#: column (the mappings' ``{$currency}``); ``hub pull``'s manifests also carry ``pull``.
HINTS = ("currency",)
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def manifest_hints(raw: bytes, *, file: str, pulled: bool = False) -> dict[str, str]:
    """What a native delivery's manifest tells its report mappings: empty or ``{}`` nothing, ``{"currency": "usd"}``
    the billing currency of its files that have no currency column (ISO 4217, upper-cased; a row's own currency
    still wins). Any other content is ``ManifestInvalid`` (one line naming the manifest)."""
    name = posixpath.basename(file)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:  # also text that is not UTF-8
        body = None
    if not isinstance(body, dict):
        raise HubError(f"{name} of a native delivery must be empty, {{}} or {{\"currency\": \"USD\"}}", file=file,
                       code="ManifestInvalid")
    fields = {k.lower(): v for k, v in body.items()}
    unknown = sorted(k for k in body if k.lower() not in HINTS and not (pulled and k == "pull"))
    if unknown:
        raise HubError(f"{name} of a native delivery may only give its billing currency ({{\"currency\": \"USD\"}}), "
                       f"not {', '.join(json.dumps(k)[:40] for k in unknown[:3])}", file=file, code="ManifestInvalid")
    hints = {}
    if "currency" in fields:
        value = fields["currency"]
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value) or value.upper() not in currencies():
            raise HubError(f"\"currency\" in {name} must be an ISO 4217 code (\"USD\", \"CNY\" for the yuan), not "
                           f"{json.dumps(value)[:40]}", file=file, code="ManifestInvalid")
        hints["currency"] = value.upper()
    return hints


#: Columns a typed file carries for its input tap only (the report's own total and currency), dropped before the rules.
HIDDEN_CURRENCY, HIDDEN_BILLED = "__hub_currency", "__hub_billed"


@dataclass
class Written:
    """One delivered file converted: its Parquet output, its rows per (billing month, account), its check tap."""

    path: str
    file: str
    groups: dict[tuple[str, str], int]
    check: CheckTap
    kind: str = "FOCUS"
    #: groups whose rows are left out (a month whose final file another file of the delivery is)
    dropped: set[tuple[str, str]] = field(default_factory=set)
    #: see :attr:`Typed.lacking`
    lacking: dict[str, list[str]] = field(default_factory=dict)
    #: the AWS report the file belongs to (:func:`hub.sources.listings.report_of`), "" when none
    report: str = ""


def _convert(store: Store, d: Delivery, failure: RunRecord, records: list[RunRecord],
             hints: dict[str, str] | None = None) -> list[RunRecord]:
    """Every file typed, normalized and written in one pass (its rows and totals counted by an input tap, its FOCUS
    checks by a check tap, as for Azure's exports), reconciled, then grouped into the runs of its (month, billing
    account) folders, each staged, validated and period-checked. ``hints``: what the manifest tells the report
    mappings (:func:`manifest_hints`)."""
    mapping = providers()[d.provider]
    now = datetime.now(timezone.utc).isoformat()
    with tempfile.TemporaryDirectory(prefix="hub-native-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            summary, kinds, written = normalize.InputSummary(), set(), []
            if d.provider == "aws":
                aws_listings.one_version(d.files, tuple(aws_listings.scope(m) for m, _ in d.governing), d.versions)
            files, left = aws_listings.select(posixpath.dirname(d.manifest), d.files, d.governing, d.listings)
            chosen = snapshots.latest_snapshots(mapping.snapshots, files)
            files, skipped = chosen.files, sorted([*left, *chosen.skipped])
            if not files:  # every file left out (an older CUR assembly): nothing changes in the lake
                failure.skippedFiles = skipped
                return []
            for i, (path, src, kind) in enumerate(_inputs(store, dataclasses.replace(d, files=files), tmp)):
                try:
                    typed = _typed(con, d.provider, src, kind, path, hints)
                except NoRecords:  # nothing to convert (its rows, none, are counted as delivered: 0)
                    continue
                if d.pulled:  # another kind than the provider's files of the same bill: never both for one account
                    typed = dataclasses.replace(typed, source_type=f"{typed.source_type} (API)")
                kinds.add(typed.source_type)
                failure.exportType = ", ".join(sorted(kinds))
                name = typed.source_name or mapping.sourceName
                lineage = Lineage(name, mapping.provider, typed.source_type, typed.version, now)
                out = os.path.join(tmp, f"out-{i}.parquet")
                try:  # fast path: closed-set columns as ENUMs; a value outside a set writes the file again without them
                    tap, check, rows = _write(con, typed, lineage, out, f"{i}", path, closed=True)
                except convert.EnumMiss:
                    tap, check, rows = _write(con, typed, lineage, out, f"{i}_all", path)
                summary.add(tap.summary)
                groups = {(m, a): n for m, a, n in con.execute(f"SELECT {MONTH} AS m, {ACCOUNT} AS a, count(*) FROM "
                                                               f"{scan('read_parquet', literal(out))} GROUP BY ALL").fetchall()}
                if any(m is None for m, _ in groups):
                    raise HubError("rows without BillingPeriodStart: their month is unknown", file=path, code="PeriodMismatch")
                if typed.one_month and len(months := sorted({m for m, _ in groups})) > 1:
                    raise HubError(f"rows of {len(months)} months ({', '.join(months)}) and no billing month to file them under "
                                   "(no billing-month column, none in the file name): one month per file, or its month "
                                   "in the name (as the provider names it)", file=path, code="PeriodMismatch")
                if sum(groups.values()) != rows:
                    raise HubError(f"{rows} rows written, {sum(groups.values())} read back", file=path, code="InternalError")
                _in_month_folder(mapping, d, path, {m for m, _ in groups})
                months = chosen.drop.get(path.split("!")[0], set())
                written.append(Written(out, path, groups, check, typed.source_type, {g for g in groups if g[0] in months},
                                       typed.lacking, aws_listings.report_of(path.split("!")[0]) or ""))
            failure.rowsIn, failure.totalsIn = summary.rows, summary.totals
            if mapping.snapshots and mapping.snapshots.days == "cumulative":  # a day's increments are never the same rows
                snapshots.one_snapshot(mapping.snapshots.pattern, written)
            if len(kinds) > 1:
                _one_kind(con, written)
            if len({w.report for w in written if w.report}) > 1:
                _one_report(con, written)
            made = _split(store, con, d, written, tmp, ", ".join(sorted(kinds)), records)
            for rec in made:
                rec.skippedFiles = skipped
            rows_out, ingested = sum(r.rowsOut for r in made), {}
            for rec in made:
                normalize.add_totals(ingested, rec.totalsIngested)
            for w in written:  # rows left out as their month's final file holds them: delivered, not converted
                if w.dropped:
                    rows_out += sum(w.groups[g] for g in w.dropped)
                    where = " OR ".join(f"({MONTH} = {literal(m)} AND {ACCOUNT} = {literal(a)})" for m, a in sorted(w.dropped))
                    left = f"(SELECT * FROM {scan('read_parquet', literal(w.path))} WHERE {where})"
                    normalize.add_totals(ingested, normalize.output_totals(con, totals_spec("FocusCost"), left)[1])
            if rows_out != summary.rows or not normalize.same_totals(ingested, summary.totals):
                raise HubError(f"{summary.rows} rows and totals {summary.totals} delivered, {rows_out} rows and {ingested} "
                               "converted", file=d.manifest, code="InternalError")
            return made
        finally:
            con.close()


def _in_month_folder(mapping: ProviderMapping, d: Delivery, path: str, months: set[str]) -> None:
    """A file in a folder naming its billing month (:attr:`ProviderMapping.monthFolders`) holds rows of that month only:
    a row of another month would make a run replacing that month's folder, a whole bill, with this file's few rows
    (``PeriodMismatch``). Files that add to their folder instead of replacing it (OCI's incremental files, pulled days,
    Alibaba's day files) are not concerned."""
    dated = mapping.snapshots
    if d.incremental or d.pulled or (dated is not None and dated.days == "increments"):
        return
    area = f"exports/{d.provider}/"
    rel = path.split(area, 1)[1] if area in path else path
    folder = _path_month(mapping.monthFolders, rel)
    if folder is None or not (others := sorted(months - {folder})):
        return
    raise HubError(f"holds rows of billing period {', '.join(others)} in a folder of {folder}: they would replace that "
                   f"month's bill in the lake; deliver each billing month's rows in its own folder (extract one invoice "
                   "month per folder)", file=path, code="PeriodMismatch")


def _first_clash(con: duckdb.DuckDBPyConnection, written: list[Written], origin: Callable[[Written], str],
                 keys: str) -> tuple[Written, tuple, str] | None:
    """The first file whose rows share a key (``keys``: SQL over the file's rows) with a file of another ``origin``: the
    file, the key and the other origin; None when no two origins share one (files of origin "" are not compared)."""
    seen: dict[tuple, str] = {}
    for w in written:
        if not (mine := origin(w)):
            continue
        for key in con.execute(f"SELECT DISTINCT {keys} FROM {scan('read_parquet', literal(w.path))}").fetchall():
            if seen.setdefault(key, mine) != mine:
                return w, key, seen[key]
    return None


def _one_kind(con: duckdb.DuckDBPyConnection, written: list[Written]) -> None:
    """A delivery holding two kinds of report (an OCI FOCUS report and a cost report) of the same sub-account and
    month would count its costs twice: ``SourceConflict`` naming the later file."""
    if found := _first_clash(con, written, lambda w: w.kind, f"{MONTH}, coalesce(SubAccountId, '')"):
        w, (month, sub), other = found
        raise HubError(f"holds {w.kind} rows of {month} for sub-account {sub or '(none)'}, which another file of "
                       f"the delivery has as {other} rows: both would count the same costs; deliver one kind of "
                       "report per account", file=w.file, code="SourceConflict")


def _one_report(con: duckdb.DuckDBPyConnection, written: list[Written]) -> None:
    """A delivery holding two AWS reports (an hourly and a daily CUR, a legacy CUR and a CUR 2.0 export) with rows of
    the same month, billing account and sub-account would count its costs twice: ``SourceConflict`` naming the file."""
    if found := _first_clash(con, written, lambda w: w.report, f"{MONTH}, {ACCOUNT}, coalesce(SubAccountId, '')"):
        w, (month, account, sub), other = found
        raise HubError(f"holds rows of {month} for account {account or '(none)'} / sub-account {sub or '(none)'} "
                       f"that report {other} of the delivery holds too: both would count the same costs; "
                       "deliver one report per account (sync each report's prefix into a delivery of its own, or "
                       "only one of them)", file=w.file, code="SourceConflict")


def _write(con: duckdb.DuckDBPyConnection, typed: Typed, lineage: Lineage, out: str, tag: str, path: str, *,
           closed: bool = False) -> tuple[normalize.InputTap, CheckTap, int]:
    """Normalize one typed file into ``out``: its input tap, its check tap, the rows written."""
    try:
        tap = normalize.InputTap(con, typed.tap_schema, set(typed.present), f"hub_native_in_{tag}")
        check = CheckTap(con, f"hub_native_checks_{tag}")
        hidden = [ident(c) for c in (HIDDEN_CURRENCY, HIDDEN_BILLED) if c in typed.present]
        source = tap.wrap(typed.sql)
        if hidden:
            source = f"(SELECT * EXCLUDE ({', '.join(hidden)}) FROM {source})"
        query = costs.costs_sql(source, typed.columns, lineage, extras=typed.extras, check=check.where, closed=closed,
                                tag_prefixes=typed.tag_prefixes, savings=typed.savings)
        described = query.columns
        check.describe(described)
        rows = convert.write_parquet(con, [f"* FROM ({query})"], "", out, file=path, select_only=True, columns=described)
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - ill-typed input quarantines the delivery, naming the file
        raise convert.map_error(exc, file=path) from None
    return tap, check, rows


#: A date format no JSON text matches in practice (read_json then types no text as a date)
NO_DATE = "'hub-never-a-date:%Y-%m-%d %H:%M:%S.%f%z'"


@dataclass(frozen=True)
class Typed:
    """One file typed as FOCUS: its relation (with the input tap's hidden columns, if any), the FOCUS columns and
    extra columns, every column of the relation, what it is, and what its input tap sums."""

    sql: str
    columns: dict[str, str]
    extras: list[str]
    present: dict[str, str]
    source_type: str
    source_name: str | None
    tap_schema: ExportSchema
    #: the FOCUS version a report mapping writes (its ``version``); None: told per row from the columns present
    version: str | None = None
    #: the rows' months come from their own dates (no billing-month column, none in the file name): the file must
    #: hold one month, or a later file's rows of that month would replace this one's
    one_month: bool = False
    #: the provider's prefixes of user-defined tag keys, taken off (a FOCUS file's: ``tagKeyPrefixes``)
    tag_prefixes: tuple[str, ...] = ()
    #: the provider's savings rules (``savings`` in its focus.json)
    savings: dict[str, str] = field(default_factory=dict)
    #: a mapped report's columns its mapping reads each money column from and the report lacks (named when empty)
    lacking: dict[str, list[str]] = field(default_factory=dict)


def _typed(con: duckdb.DuckDBPyConnection, provider: str, src: str, kind: str, path: str,
           hints: dict[str, str] | None = None) -> Typed:
    """One file as a typed FOCUS relation: a FOCUS file directly, a report of the provider's own (AWS CUR) through its
    mapping (:mod:`transforms.mapped`; ``hints``: the delivery's, for its ``{$name}`` placeholders). Its input tap
    sums BilledCost and EffectiveCost per currency as delivered; for a mapped report BilledCost is the report's own
    total (e.g. CUR's unblended cost), computed from its columns in hidden columns, not from the mapping's output."""
    if kind == "json":
        # types from every line (sample_size -1): a number that is whole on the first lines sampled would be read as
        # BIGINT and the later lines' decimals rounded, silently; a field first seen late would fail the read. Text stays
        # text (date formats that match nothing): JSON has no dates, and a label value or a resource name that looks like
        # one (`05-01-2024`, a bucket `2024-05-01`) was read as a date: rewritten day-first, or unmixable with text
        sql = scan("read_json", literal(src), "format = 'newline_delimited', records = true, sample_size = -1, "
                   f"dateformat = {NO_DATE}, timestampformat = {NO_DATE}")
        try:
            columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()}
        except duckdb.Error as exc:
            if "expected records" in str(exc):
                raise _not_records(con, src, path) from None
            raise convert.map_error(exc, file=path) from None
    else:
        twins = tuple(r["tagColumns"]["prefix"] for r in reports(provider) if r.get("tagColumns", {}).get("prefix"))
        sql, columns = convert.source_columns(con, src, kind, file=path, twins=twins)
    sql, present = _flat(sql, dict(columns))
    mapping = providers()[provider]
    source_type, source_name, hidden, version, one_month = mapping.sourceType, None, [], None, False
    lacking: dict[str, list[str]] = {}
    needed = ("BilledCost", "BillingCurrency", "BillingPeriodStart", "BillingAccountId")
    if _has(provider, present, needed):  # a FOCUS file: a later version's columns in its header say its version (its
        version = version_of(present)  # rows may leave them empty); else told per row
    else:
        spec = next((r for r in reports(provider) if mapped.detects(r, present)), None)
        if spec is None:
            known = ", ".join(r["format"] for r in reports(provider)) or "none"
            raise HubError(f"not a FOCUS file (no {', '.join(c for c in needed if not _has(provider, present, (c,)))} column) "
                           f"and not a report this provider's mappings know ({known})", file=path, code="SchemaMismatch")
        if missing := mapped.missing_required(spec, present):
            raise HubError(f"a {spec['format']} without column(s) {', '.join(missing)}: "
                           + "; ".join(missing.values()), file=path, code="SchemaMismatch")
        if "fileMonth" in spec:  # the billing month of the file's name or folders, for rows that lack it
            month = (snapshots.file_month(mapping.snapshots.pattern if mapping.snapshots else None, path)
                     or _path_month(spec["fileMonth"].get("pathPatterns", []), path))
            sql = f"(SELECT *, {literal(month) if month else 'CAST(NULL AS VARCHAR)'} AS {ident(mapped.FILE_MONTH)} FROM {sql})"
            present[mapped.FILE_MONTH] = "VARCHAR"
            one_month = month is None and mapped.key(spec["fileMonth"]["column"]) not in mapped.by_key(spec, present)
        if kind in ("parquet", "json"):  # as the CSV reader reads them: AWS's Parquet CUR writes '' in unused text cells
            sql = _text_nulls(sql, present)
        m = mapped.project(spec, present, _lookup_files(provider, spec), hints)
        lacking = {c: found for c in MONEY if (found := mapped.lacking(spec, present, c))}
        currency, amounts = m.totals  # the report's own total, from its columns
        hidden = [f"CAST({currency} AS VARCHAR) AS {ident(HIDDEN_CURRENCY)}",
                  f"CAST({amounts['BilledCost']} AS DECIMAL(38,18)) AS {ident(HIDDEN_BILLED)}"]
        sql = f"(SELECT {', '.join(m.select + hidden)} FROM {m.source(sql)})"
        try:
            present = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()}
        except duckdb.Error as exc:
            raise convert.map_error(exc, file=path) from None
        source_type, source_name, version = spec["format"], spec.get("sourceName"), spec.get("version")
    shown = {k: v for k, v in present.items() if k not in (HIDDEN_CURRENCY, HIDDEN_BILLED)}
    schema = focus_schema(provider)
    # newline JSON is read with its types inferred from every line (sample_size = -1): sampling it costs a full read
    plain = convert.exponent_free(con, sql, decimal_sources(schema, shown)) if kind != "json" else set()
    try:
        proj = project(schema, shown, backfill.DOUBLES, null_texts=kind in ("parquet", "json"), plain=plain)
    except IncompatibleType as exc:
        raise HubError(str(exc), file=path, code="SchemaMismatch") from None
    keep = [ident(HIDDEN_CURRENCY), ident(HIDDEN_BILLED)] if hidden else []
    typed = f"(SELECT {', '.join(proj.select + keep)} FROM {sql})"
    extras = list(proj.extra)
    if renames := _extra_aliases(mapping, extras):  # an extension column under another spelling (x_Discount)
        typed = f"(SELECT * RENAME ({', '.join(f'{ident(a)} AS {ident(b)}' for a, b in renames.items())}) FROM {typed})"
        extras = [renames.get(e, e) for e in extras]
    if mapping.fills and not hidden:
        typed = _filled(con, typed, mapping.fills, path, mapping.folder)
    try:
        described = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {typed}").fetchall()}
    except duckdb.Error as exc:
        raise convert.map_error(exc, file=path) from None
    totals = {"currency": HIDDEN_CURRENCY if hidden else "BillingCurrency", "outCurrency": "BillingCurrency",
              "amounts": {"BilledCost": HIDDEN_BILLED if hidden else "BilledCost", "EffectiveCost": "EffectiveCost"}}
    tap_schema = ExportSchema("FOCUS", provider, None, "Costs", (), totals=totals)
    columns = {k: v for k, v in described.items() if k not in (HIDDEN_CURRENCY, HIDDEN_BILLED)}
    prefixes = tuple(mapping.tagKeyPrefixes) if not hidden else ()  # a mapped report builds its Tags itself
    return Typed(typed, columns, extras, described, source_type, source_name, tap_schema, version, one_month, prefixes,
                 lacking=lacking, savings=dict(mapping.savings))


def _extra_aliases(mapping: ProviderMapping, extras: list[str]) -> dict[str, str]:
    """Extra (non-FOCUS) columns of a file named by one of the provider's ``aliases`` of another extension column
    (AWS's ``x_Discounts`` written ``x_Discount``): {the file's name: the alias's target}, unless the file has both."""
    known, have = set(costs.input_columns()), {header_key(e) for e in extras}
    out = {}
    for target, spellings in mapping.aliases.items():
        if target in known or header_key(target) in have:
            continue
        keys = {header_key(s) for s in spellings}
        if found := next((e for e in extras if header_key(e) in keys), None):
            out[found] = target
    return out


def _filled(con: duckdb.DuckDBPyConnection, typed: str, fills: dict[str, Fill], path: str, folder: str) -> str:
    """``typed`` with the provider's :class:`Fill` values where its columns are null (a FOCUS column the file lacks is
    added), or where a fill's ``when`` holds (of several fills of one column, the first that holds), and the codes of
    what was filled in :data:`transforms.costs.FILLED` (read into x_SourceChanges by the normalization). Every value
    and condition reads the file's own values; ``{lookup:X}`` in one is the table of ``schemas/<folder>/X`` (a CSV,
    text columns)."""
    try:
        fills = {c: f.model_copy(update={"value": _lookups(con, f.value, folder),
                                         "when": _lookups(con, f.when, folder) if f.when else None}) for c, f in fills.items()}
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {typed}").fetchall()}
        focus = costs.input_columns()
        target = {n: f.column or n for n, f in fills.items()}
        todo = {n: f for n, f in fills.items() if (target[n] in types or target[n] in focus) and all(x in types for x in f.needs)}
        if not todo:
            return typed
        when = {n: f"({f.when})" if f.clear and f.when else
                f"({f.when or (f'{ident(target[n])} IS NULL' if target[n] in types else 'true')}) AND ({f.value}) IS NOT NULL"
                for n, f in todo.items()}
        columns: dict[str, list[str]] = {}  # column -> its fills, in order
        for n in todo:
            columns.setdefault(target[n], []).append(n)

        def cases(c: str, typ: str) -> str:
            return " ".join(f"WHEN {when[n]} THEN CAST(({todo[n].value}) AS {typ})" for n in columns[c])

        replaced = [f"CASE {cases(c, types[c])} ELSE {ident(c)} END AS {ident(c)}" for c in columns if c in types]
        # a repaired number's double copy parsed from the file's text (transforms.typing) no longer stands for it
        repaired = {c: [when[n] for n in ns if todo[n].when] for c, ns in columns.items()}
        replaced += [f"CASE WHEN {' OR '.join(w)} THEN NULL ELSE {ident(DOUBLE_PREFIX + c)} END AS {ident(DOUBLE_PREFIX + c)}"
                     for c, w in repaired.items() if w and DOUBLE_PREFIX + c in types]
        added = [f"CASE {cases(c, SQL_TYPES[focus[c]])} END AS {ident(c)}" for c in columns if c not in types]
        by_code: dict[str, list[str]] = {}  # a code told once per row, whichever of its columns it concerns
        for n, f in todo.items():
            by_code.setdefault(f.code, []).append(f"({when[n]})")
        codes = ", ".join(f"CASE WHEN {' OR '.join(w)} THEN {literal(code)} END" for code, w in by_code.items())
        originals = [f"{ident(c)} AS {ident(costs.FILL_ORIGINAL + c)}" for c, w in repaired.items() if w and c in types]
        select = ", ".join([f"* REPLACE ({', '.join(replaced)})" if replaced else "*", *added,
                            f"nullif(concat_ws(',', {codes}), '') AS {ident(costs.FILLED)}", *originals])
        out = f"(SELECT {select} FROM {typed})"
        con.execute(f"DESCRIBE SELECT * FROM {out}")
    except duckdb.Error as exc:
        raise convert.map_error(exc, file=path) from None
    return out


def _lookups(con: duckdb.DuckDBPyConnection, sql: str, folder: str) -> str:
    """``sql`` with each ``{lookup:X}`` made a table of ``con`` holding the CSV ``schemas/<folder>/X`` (every column
    text), created once while the file is at hand (an installed package may hold it in an archive)."""

    def table(found: re.Match) -> str:
        name = ident(f"hub_fill_{folder}_{found.group(1)}")
        with resources.as_file(resources.files("schemas") / folder / found.group(1)) as csv_path:
            con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} AS SELECT * FROM "
                        f"{scan('read_csv', literal(str(csv_path)), 'header = true, all_varchar = true')}")
        return name

    return re.sub(r"\{lookup:([A-Za-z0-9_.-]+)\}", table, sql)


def _path_month(patterns: list[str], path: str) -> str | None:
    """``YYYY-MM`` from the first of ``patterns`` (regexes with ``year`` and ``month`` groups) found in a file's path
    (AWS's ``BILLING_PERIOD=2024-04`` folder, a legacy CUR's ``20240401-20240501`` one), or None."""
    for pattern in patterns:
        if (found := re.search(pattern, path)) is not None:
            return f"{found.group('year')}-{found.group('month')}"
    return None


class NoRecords(Exception):
    """A newline-JSON file without a record (empty, or blank lines: a shard of an extract that got no rows)."""


def _not_records(con: duckdb.DuckDBPyConnection, src: str, path: str) -> Exception:
    """Why a newline-JSON file is not records: :class:`NoRecords`, or ``MalformedJson`` naming its first value that is
    not an object (counted without blank lines)."""
    found = con.execute(f"""SELECT n, t FROM (SELECT row_number() OVER () AS n, json_type(json) AS t
        FROM read_json_objects({literal(glob_escape(src))}, format = 'newline_delimited'))
        WHERE t <> 'OBJECT' ORDER BY n LIMIT 1""").fetchall()
    if not found:
        return NoRecords(path)
    n, kind = found[0]
    what = {"ARRAY": "an array", "VARCHAR": "a string", "BOOLEAN": "true or false", "NULL": "null"}.get(str(kind), "a number")
    return InputError(f"a line is not a JSON object: record {n} is {what}", file=path, code="MalformedJson")


def _text_nulls(sql: str, columns: dict[str, str]) -> str:
    """A Parquet or JSON report with its text cells ``''`` and ``NULL`` as nulls (:func:`transforms.typing.text_nulls`),
    as the CSV reader reads them, so a mapping's ``coalesce`` and ``IS NULL`` see no value there."""
    texts = [c for c, t in columns.items() if t == "VARCHAR"]
    if not texts:
        return sql
    return f"(SELECT * REPLACE ({', '.join(f'{text_nulls(ident(c))} AS {ident(c)}' for c in texts)}) FROM {sql})"


#: FOCUS's key-value columns: kept whole as JSON text whatever their Parquet type (a struct of tags, as Spark or
#: pyarrow write a dict, is the object, never ``Tags.<key>`` columns).
OBJECTS = frozenset({"tags", "skupricedetails"})


def _flat(sql: str, columns: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Nested columns made flat: a struct's fields become ``parent.field`` columns (BigQuery records: ``service.id``),
    lists, maps and FOCUS's key-value columns (:data:`OBJECTS`) become JSON text (Parquet Tags maps and structs,
    ``credits``, ``labels``)."""
    select, out = [], {}
    for name, typ in columns.items():
        if typ.startswith("STRUCT(") and typ.endswith(")") and name.strip().lower() not in OBJECTS:
            for field, ftyp in _fields(typ[len("STRUCT("):-1]):
                flat = f"{name}.{field}"
                nested = ftyp.startswith(("MAP(", "STRUCT(")) or ftyp.endswith("]")
                value = f"struct_extract({ident(name)}, {literal(field)})"
                select.append(f"{f'CAST(to_json({value}) AS VARCHAR)' if nested else value} AS {ident(flat)}")
                out[flat] = "VARCHAR" if nested else ftyp
        elif typ.startswith(("MAP(", "STRUCT(")) or typ.endswith("]"):
            select.append(f"CAST(to_json({ident(name)}) AS VARCHAR) AS {ident(name)}")
            out[name] = "VARCHAR"
        else:
            select.append(ident(name))
            out[name] = typ
    if out == columns:
        return sql, columns
    return f"(SELECT {', '.join(select)} FROM {sql})", out


def _fields(inner: str) -> list[tuple[str, str]]:
    """``id VARCHAR, labels STRUCT(key VARCHAR, "value" VARCHAR)[]`` -> [(name, type)], split at top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    out = []
    for part in (p.strip() for p in parts if p.strip()):
        if part.startswith('"'):
            end = part.index('"', 1)
            out.append((part[1:end], part[end + 1:].strip()))
        else:
            name, _, typ = part.partition(" ")
            out.append((name, typ.strip()))
    return out


def _has(provider: str, present: dict[str, str], names: tuple[str, ...]) -> bool:
    """The file has each of ``names`` under one of its spellings."""
    have = {header_key(c) for c in present}
    columns = {c.name: c for c in focus_schema(provider).columns}
    return all(any(header_key(s) in have for s in columns[n].spellings) for n in names)


@cache
def reports(provider: str) -> tuple[dict, ...]:
    """The provider's own report formats with a mapping (``schemas/<provider>/*.json`` other than ``focus.json``)."""
    base = resources.files("schemas") / provider
    out = []
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json") and entry.name != "focus.json":
            out.append(json.loads(entry.read_text()))
    return tuple(out)


def _lookup_files(provider: str, spec: dict) -> dict[str, str]:
    base = resources.files("schemas") / provider
    return {name: (base / name).read_text() for name in spec.get("lookups", {})}


#: The billing period's own month: its start is a local midnight on the 1st (UTC+8 for the Chinese clouds, Pacific for
#: Google), between 12 h before and 14 h after 00:00 UTC; 14 h later it is always in the right UTC month.
MONTH = "strftime(make_timestamp(epoch_us(BillingPeriodStart) + 14 * 3600000000), '%Y-%m')"
ACCOUNT = "coalesce(BillingAccountId, '')"


def _split(store: Store, con: duckdb.DuckDBPyConnection, d: Delivery, written: list[Written], tmp: str, kind: str,
           records: list[RunRecord]) -> list[RunRecord]:
    """One staged, validated run per (billing month, billing account) of the converted files (``kind``: what the
    delivery's files are, e.g. ``FOCUS``). A file of one group goes to its run as written (its check tap counted its
    rows); a file of several is cut into one file per group. An incremental file's run carries the folder's other
    files over unchanged. A run of an older snapshot of a bill than the one in its folder is ``superseded``."""
    made, dated = [], providers()[d.provider].snapshots
    for m, acct in sorted({g for w in written for g in w.groups if g not in w.dropped}):
        year, mon = map(int, m.split("-"))
        folder = visible(bounded_name(acct.lower(), 100)) if acct else "unknown-account"
        key = f"native-{d.digest}-{year:04d}{mon:02d}-{hashlib.sha1(acct.encode()).hexdigest()[:8]}"
        rec = RunRecord(key=key, manifest=d.manifest, manifestSha256=d.sha, state="converting", exportType=kind,
                        exportName=d.provider, dataset="Costs", schemaKey=f"{NATIVE}{d.provider}", month=m,
                        scope=f"{d.provider}/{folder}",
                        destination=dataset_folder("Costs", year, mon, f"{d.provider}/{folder}"), staging=engine.new_staging(key))
        files, taps, whole, left_out = [], [], True, 0
        for i, w in enumerate(written):
            if (m, acct) in w.dropped:
                left_out += w.groups[(m, acct)]
            if (m, acct) not in w.groups or (m, acct) in w.dropped:
                continue
            name = f"{d.digest}__{year:04d}{mon:02d}_{i:04d}.parquet"
            staged = f"{rec.staging}/{name}"
            out = store.local_path(staged) or os.path.join(tmp, "parts", name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            if len(w.groups) == 1 and not w.dropped:
                shutil.move(w.path, out)  # the temporary folder may be on another filesystem than the hub
                taps.append(w.check)
            else:
                where = f"{MONTH} = {literal(m)} AND {ACCOUNT} = {literal(acct)}"
                part = f"* FROM {scan('read_parquet', literal(w.path))} WHERE {where}"
                convert.write_parquet(con, [part], "", out, file=w.file, select_only=True)
                whole = False
            rows = w.groups[(m, acct)]
            rec.parts.append(runs.PartResult(blob=w.file, output=f"{rec.destination}/{name}", rows=rows))
            files.append((out, staged))
        outs = [out for out, _ in files]
        rec.rowsOut = sum(p.rows for p in rec.parts)
        rec.rowsFiltered, rec.rowsIn = left_out, rec.rowsOut + left_out
        rec.totalsOut, rec.totalsIngested = normalize.output_totals(con, totals_spec("FocusCost"), convert.parquet_source(outs))
        rec.totalsIn = rec.totalsIngested
        rec.sourceFiles = d.source_files
        _conflict(store, con, rec, convert.parquet_source(outs), records)
        # the folder's other files stay (told at swap time: keep_others): a file taken on its own, a pulled day, and any
        # delivery of a provider whose reports arrive file by file (OCI: a folder with a manifest adds its files too)
        rec.carryOver = d.incremental or d.pulled or providers()[d.provider].incrementalFiles
        if dated is not None and dated.days == "increments" and snapshots.days_only(dated.pattern, rec):
            # day files hold that day's bills only (Alibaba), whatever folder they were synced into, and a later month's
            # day file may hold rows of this month (June 1st's, of May 31st): increments of the month, never its
            # replacement; none at all where the month's whole file is in the lake (it holds them)
            rec.carryOver = True
            if (holder := snapshots.whole_month(dated.pattern, rec, records)) is not None:
                rec.state, rec.supersededBy = "superseded", holder.key
            elif (twin := snapshots.same_day(dated, rec, records, store.exists)) is not None:
                raise HubError(f"the same day's bill is in the lake from another delivery ({twin[1]}): deliver each day's "
                               "file once (one folder per month)", file=twin[0], code="SourceConflict")
        elif dated is not None and (newer := snapshots.newer_snapshot(dated.pattern, rec, records)) is not None:
            rec.state, rec.supersededBy = "superseded", newer.key
        if rec.state != "superseded" and not rec.carryOver:
            _displaced(store, con, rec, convert.parquet_source(outs), records)
        elif rec.state != "superseded" and rec.carryOver and (ids := providers()[d.provider].lineIds):
            _same_lines(store, rec, outs, ids, d.digest, records)
        label = rec.destination or ""
        report = tap_report(con, taps, outs, label=label) if whole else validate_files(con, outs, label=label)
        rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                          "rules": report.summary()}
        start = datetime(year, mon, 1, tzinfo=timezone.utc)
        try:
            check_costs(con, rec, outs, start, month_end(start), inside=False)
        except HubError as exc:  # an empty money column of a mapped report: name the report columns it is read from
            lacks = sorted({c for w in written for c in w.lacking.get(exc.column or "", [])})
            if not lacks:
                raise
            raise HubError(f"{exc.message}: its mapping reads it from {', '.join(lacks)}, which the report lacks "
                           "(export them)", file=exc.file, code=exc.code) from None
        for out, staged in files:
            if store.local_path(staged) is None:
                store.put_file(out, staged)
        made.append(rec)
    return made


def _withdrawals(store: Store, d: Delivery, made: list[RunRecord], records: list[RunRecord]) -> list[RunRecord]:
    """Runs taking an earlier version of this delivery out of the folders the new version no longer covers (a file
    re-delivered without the rows of a month it used to hold): each keeps the folder's other files and drops the earlier
    version's, under the earlier run's key (its record then says 0 rows from the new version). A run whose files
    retention deleted is not withdrawn (its rows stay as they were committed), unless the delivery is a pull: a day the
    bill API now answers empty is the provider's word that its lines are gone (moved to another day)."""
    covered = {r.destination for r in made}
    out = []
    for old in records:
        if (old.manifest != d.manifest or old.manifestSha256 == d.sha or old.state != "committed" or not old.destination
                or old.destination in covered
                or old.sourceDeleted and not d.pulled):  # retired by retention: not withdrawn by the provider
            continue
        gone = {posixpath.basename(p.output) for p in old.parts if store.exists(p.output)}
        if not gone:
            continue
        rec = RunRecord(key=old.key, manifest=d.manifest, manifestSha256=d.sha, state="converting", exportType=old.exportType,
                        exportName=old.exportName, dataset=old.dataset, schemaKey=old.schemaKey, month=old.month,
                        scope=old.scope, destination=old.destination, staging=engine.new_staging(old.key))
        rec.sourceFiles = d.source_files
        rec.carryOver = True
        rec.reconciled = True
        out.append(rec)
    return out


def keep_others(store: Store, rec: RunRecord) -> None:
    """Before a carry-over run's swap (an OCI report file, a withdrawal): the destination's files of other deliveries,
    as they are now, are the run's ``kept`` names (the swap leaves them), linked into its staging folder on local roots
    (the folder exchange must hold them). Files of this delivery other than the run's own go. Told at swap time, under
    the lease: a file another delivery committed after this run was staged is kept too. Idempotent."""
    if not (rec.carryOver and rec.destination and rec.staging):
        return
    token = hashlib.sha1(rec.key.encode()).hexdigest()
    if store.exists(f"{rec.destination}/{swap.MARKER_PREFIX}{token}"):
        return  # exchanged before a crash: the swap only has to finish
    mine = f"{hashlib.sha1(rec.manifest.encode()).hexdigest()[:16]}__"
    own = {posixpath.basename(p.output) for p in rec.parts}
    rec.kept = sorted(n for n in (posixpath.basename(p) for p in store.parquet_files(rec.destination))
                      if not n.startswith(mine) and n not in own)
    if not store.is_local:
        return  # the file-by-file swap leaves kept names in place
    staged = {posixpath.basename(p): p for p in store.parquet_files(rec.staging)}
    if not own <= set(staged):
        return  # the swap already took the run's files: only its end is left
    for name, path in staged.items():
        if name not in own:
            store.delete(path)  # a link made by an interrupted attempt: made again from the current files
    for name in rec.kept:
        store.copy(f"{rec.destination}/{name}", f"{rec.staging}/{name}")


#: What the load engine does around a native run's swap (:func:`hub.sources.hooks`).
HOOKS = Hooks(keep_others, lambda store, rec, settings, records: None)


def _sub_accounts(store: Store, files: list[str]) -> set[str | None]:
    """The SubAccountIds of lake files."""
    lake = catalog.store_connection(store, threads=2)
    try:
        sources = ", ".join(literal(catalog.duck_path(store, f)) for f in files)
        return {a for (a,) in lake.execute(f"SELECT DISTINCT SubAccountId FROM "
                                           f"{scan('read_parquet', f'[{sources}]', 'union_by_name = true')}").fetchall()}
    finally:
        lake.close()


def _displaced(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, rows: str, records: list[RunRecord]) -> None:
    """A delivery from another folder replaces a month's folder (a report re-synced elsewhere, a newer snapshot) only
    when it covers every sub-account the folder holds: two exports of one billing account (say, two member accounts'
    own reports) would otherwise silently replace each other's rows; they are ``SourceConflict`` instead."""
    others = [r for r in records if r.state == "committed" and r.destination == rec.destination
              and r.manifest != rec.manifest and r.dataset == "Costs"]
    files = [p.output for r in others for p in r.parts if store.exists(p.output)]
    if not files:
        return
    mine = {a for (a,) in con.execute(f"SELECT DISTINCT SubAccountId FROM {rows}").fetchall()}
    if gone := sorted(a or "(none)" for a in _sub_accounts(store, files) - mine):
        other = next(r for r in others if any(p.output in files for p in r.parts))
        raise HubError(f"would replace the lake's {rec.month} of this billing account, which holds sub-account {gone[0]} "
                       f"from another delivery ({other.manifest}) that this one lacks: deliver one report per billing "
                       "account (or re-sync the other folder's files here)", file=rec.manifest, code="SourceConflict")


def _same_lines(store: Store, rec: RunRecord, outs: list[str], ids: list[str], digest: str, records: list[RunRecord]) -> None:
    """A report file taken on its own (OCI) whose line items (``ids``: the first column of them the lake has) another
    delivery's file already brought to the month's folder: the same file synced twice, or into two download folders,
    would count them twice: ``SourceConflict`` naming the other delivery."""
    if len(outs) > 1:
        _unique_lines(rec, outs, ids)
    others = [p for p in store.parquet_files(rec.destination) if not posixpath.basename(p).startswith(f"{digest}__")]
    if not others:
        return
    lake = catalog.store_connection(store, threads=2)
    try:
        mine = scan("read_parquet", "[" + ", ".join(literal(o) for o in outs) + "]", "union_by_name = true")
        theirs = scan("read_parquet", "[" + ", ".join(literal(catalog.duck_path(store, o)) for o in others) + "]",
                      "union_by_name = true, filename = true")
        have = {r[0] for r in lake.execute(f"DESCRIBE SELECT * FROM {mine}").fetchall()}
        there = {r[0] for r in lake.execute(f"DESCRIBE SELECT * FROM {theirs}").fetchall()}
        column = next((c for c in ids if c in have and c in there), None)
        if column is None:
            return
        col = ident(column)
        found = lake.execute(f"SELECT {col}, filename FROM {theirs} WHERE {col} IN (SELECT {col} FROM {mine}) "
                             "ORDER BY filename LIMIT 1").fetchall()
    finally:
        lake.close()
    if not found:
        return
    line, path = found[0]
    name = posixpath.basename(path)
    other = next((r.manifest for r in records if r.state == "committed" and r.destination == rec.destination
                  and any(posixpath.basename(p.output) == name for p in r.parts)), name)
    raise HubError(f"holds line items already in the lake's {rec.month} from another delivery ({other}; {column} {line}): "
                   "the same report file synced twice, or into two folders, would count them twice; keep one copy",
                   file=rec.manifest, code="SourceConflict")


def _unique_lines(rec: RunRecord, outs: list[str], ids: list[str]) -> None:
    """Two files of one delivery holding the same line items (``ids``): a report file and a renamed copy of it
    (``0001 (1).csv.gz``) would count them twice: ``SourceConflict`` naming both."""
    con = convert.connect()
    try:
        rows = scan("read_parquet", "[" + ", ".join(literal(o) for o in outs) + "]", "union_by_name = true, filename = true")
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rows}").fetchall()}
        column = next((c for c in ids if c in have), None)
        if column is None:
            return
        col = ident(column)
        found = con.execute(f"SELECT {col}, list(DISTINCT filename ORDER BY filename) FROM {rows} WHERE {col} IS NOT NULL "
                            f"GROUP BY {col} HAVING count(DISTINCT filename) > 1 LIMIT 1").fetchall()
    finally:
        con.close()
    if found:
        line, files = found[0]
        by_output = {posixpath.basename(p.output): p.blob for p in rec.parts}
        names = [by_output.get(posixpath.basename(f), posixpath.basename(f)) for f in files[:2]]
        raise HubError(f"holds the same line items in two files ({' and '.join(names)}; {column} {line}): a report file "
                       "and a copy of it would count them twice; keep one copy", file=rec.manifest, code="SourceConflict")


def _conflict(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, rows: str, records: list[RunRecord]) -> None:
    """Two kinds of report of the same provider (a CUR and a FOCUS export, an OCI cost report and a FOCUS report)
    describe the same costs: a month's rows of a sub-account already in the lake from the other kind are refused
    (``SourceConflict``) rather than counted twice. A delivery of the same kind replaces its folder as usual."""
    others = [r for r in records if r.state == "committed" and r.exportName == rec.exportName and r.month == rec.month
              and r.exportType != rec.exportType and r.dataset == "Costs" and r.manifest != rec.manifest]
    files = [p.output for r in others for p in r.parts if store.exists(p.output)]
    if not files:
        return
    mine = {a for (a,) in con.execute(f"SELECT DISTINCT SubAccountId FROM {rows}").fetchall()}
    if both := sorted(a or "(none)" for a in mine & _sub_accounts(store, files)):
        other = next(r for r in others if any(p.output in files for p in r.parts))
        raise HubError(f"the lake holds {other.exportType} rows of {rec.month} for sub-account {both[0]} (from "
                       f"{other.manifest}); {rec.exportType} rows of the same costs would count them twice: deliver one "
                       "kind of report per account", file=rec.manifest, code="SourceConflict")
