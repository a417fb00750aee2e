"""``hub powerbi``: publish the lake's Costs in the layout and columns the FinOps toolkit's storage Power BI
reports read, to a local folder or a storage URL (their ``Storage URL`` is that container).

The reports list ``<container>/Costs/<yyyy>/<mm>/...`` recursively, read every ``.parquet`` file and pick
months from the ``yyyy/mm`` folders. Their ``ftk_Metadata`` step then drops a Costs file unless its minimum
``ChargePeriodStart`` statistic, decoded as a 12-byte Impala INT96 value, falls in the selected months: the
INT64 timestamp statistic every current writer produces decodes to nothing and the file is silently left
out (pyarrow writes no statistics for INT96 columns, so INT96 is no way out). Files are therefore written
without a ``ChargePeriodStart`` statistic (``statistics="none"``, the default): the report keeps them and
filters rows itself. ``statistics="int64"`` keeps it, for other readers. Columns follow
``schemas/catalog/powerbi.json``; snappy compression.

The reports' Prices, CommitmentDiscountUsage, Recommendations and Transactions queries expect the Cost
Management export's own columns (``EffectiveStartDate``, ``UnitPrice``, ``Term`` as ``P1Y``, ...) and rename
them themselves: the typed exports kept in ``raw/`` are published for them.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources

import pyarrow as pa
import pyarrow.parquet as pq

from hub import catalog
from hub.errors import UsageError
from hub.export_schemas import raw_datasets
from hub.faults import checkpoint
from hub.store import CONFIG, EXPORTS, INGESTION, MSEXPORTS, RAW, SETTINGS, Store, listed
from transforms.typing import ident, literal, scan

STATISTICS = ("none", "int64")
FILE_NAME = "costs.parquet"
BATCH_ROWS = 65_536


@cache
def contract() -> dict:
    """``schemas/catalog/powerbi.json``: the Costs columns of the storage reports."""
    return json.loads((resources.files("schemas") / "catalog" / "powerbi.json").read_text())["Costs"]


@dataclass
class Published:
    folders: list[str] = field(default_factory=list)
    rows: int = 0
    removed: list[str] = field(default_factory=list)


def _select(present: set[str]) -> str:
    spec = contract()
    cols = []
    for c in spec["columns"]:
        src = c.get("from", c["name"])
        value = ident(src) if src in present else "NULL"
        if "type" in c:
            value = f"TRY_CAST({value} AS {c['type']})"
        elif src not in present:
            value = "CAST(NULL AS VARCHAR)"
        cols.append(f"{value} AS {ident(c['name'])}")
    cols += [ident(k) for k in spec["keep"] if k in present]
    return ", ".join(cols)


def _folders(store: Store, base: str) -> dict[str, list[str]]:
    """Folder under ``base`` (relative to it) -> its Parquet files (store-relative)."""
    out: dict[str, list[str]] = {}
    for rel in store.files(base):
        out.setdefault(posixpath.dirname(rel[len(base) + 1:]), []).append(rel)
    return out


def _nested(a: str, b: str, sep: str) -> bool:
    """``a`` and ``b`` are the same folder, or one holds the other."""
    a, b = a.rstrip(sep) + sep, b.rstrip(sep) + sep
    return a.startswith(b) or b.startswith(a)


def _hub_folders(store: Store) -> list[str]:
    """The real paths of the hub root and of its areas (an area may be a link to another disk)."""
    return [os.path.realpath(store.full(area)) for area in ("", MSEXPORTS, EXPORTS, INGESTION, RAW, CONFIG)]


def _overlaps(store: Store, target: Store, rel: str = "") -> bool:
    """The target (or its path ``rel``) is the hub root or one of its areas, inside one or holds one (on the same
    filesystem). Local paths are compared resolved, so a link into the hub is caught; remote paths as written."""
    if type(store.fs) is not type(target.fs):
        return False
    if not store.is_local:
        return _nested(store.root, target.full(rel), "/")
    out = os.path.realpath(target.full(rel))
    return any(_nested(out, folder, os.sep) for folder in _hub_folders(store))


def _refuse(store: Store, target: Store, rel: str = "") -> None:
    """Raise the usage error when writing or deleting the target's ``rel`` would touch the hub."""
    if _overlaps(store, target, rel):
        raise UsageError(f"--out {target.url} overlaps the hub root {store.url}: publish to another folder or container")


def _stage(store: Store, target: Store, local: str, rel: str) -> str:
    """``local`` uploaded beside ``rel`` under a name of this run's own (readers list ``*.parquet`` only: they never see
    a partial file; two publishes at once never share one); returns that name."""
    _refuse(store, target, rel)  # a link inside the output must not lead into the hub either
    staged = f"{rel}.{uuid.uuid4().hex[:12]}.tmp"
    target.put_file(local, staged)
    return staged


def _put(store: Store, target: Store, local: str, rel: str) -> None:
    target.move(_stage(store, target, local, rel), rel)


def _delete(store: Store, target: Store, rel: str, removed: list[str]) -> None:
    _refuse(store, target, rel)
    target.delete(rel)
    removed.append(rel)


def publish(root: str | Store, dest: str | Store, *, statistics: str = "none") -> Published:
    """Write one Power BI Costs file per lake folder to ``dest/Costs/<same folder>/costs.parquet``, copy the
    typed exports of the other datasets (``raw/<Dataset>/...``, the columns their queries expect) to
    ``dest/<Dataset>/...``, and remove Parquet files of those datasets in ``dest`` that the lake no longer
    has (the reports read every file)."""
    if statistics not in STATISTICS:
        raise UsageError(f"--statistics must be one of {', '.join(STATISTICS)}")
    store = root if isinstance(root, Store) else Store(root)
    target = dest if isinstance(dest, Store) else Store(dest)
    _refuse(store, target)
    if not store.exists(INGESTION) and not store.exists(SETTINGS):  # a mistyped root would empty the published output
        raise UsageError(f"{store.url} is not a hub root (no ingestion/ or config/settings.json): nothing published, "
                         "nothing removed")
    if not _folders(store, f"{INGESTION}/Costs") and target.files("Costs"):
        raise UsageError(f"the lake at {store.url} has no Costs while {target.url} holds published Costs files: nothing "
                         "published, nothing removed (remove them yourself if the lake is meant to be empty)")
    con = catalog.store_connection(store)
    result = Published()
    keep: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="hub-powerbi-") as tmp:
        local = os.path.join(tmp, "file.parquet")
        for folder, files in _folders(store, f"{INGESTION}/Costs").items():
            listing = "[" + ", ".join(literal(catalog.duck_path(store, f)) for f in files) + "]"
            source = scan('read_parquet', listing, 'union_by_name = true')
            present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            reader = con.sql(f"SELECT {_select(present)} FROM {source}").to_arrow_reader(BATCH_ROWS)
            result.rows += _write(reader, local, statistics)
            rel = f"Costs/{folder}/{FILE_NAME}"  # one stable name per folder: a re-publish replaces it
            _put(store, target, local, rel)
            keep.add(rel)
            result.folders.append(f"Costs/{folder}")
        for dataset in raw_datasets():
            for folder, files in _folders(store, f"{RAW}/{dataset}").items():
                names = {f"{dataset}/{folder}/{posixpath.basename(f)}" for f in files}
                staged = []
                for f in files:
                    store.get_file(f, local)
                    name = f"{dataset}/{folder}/{posixpath.basename(f)}"
                    staged.append((_stage(store, target, local, name), name))
                # the previous run's files go before the new ones come in: a report refreshed (or a publish killed)
                # in between sees fewer rows for a moment, never both runs' rows
                for old in target.parquet_files(f"{dataset}/{folder}"):
                    if old not in names:
                        _delete(store, target, old, result.removed)
                checkpoint("powerbi-previous-removed")
                for tmp_name, name in staged:
                    target.move(tmp_name, name)
                keep |= names
                result.folders.append(f"{dataset}/{folder}")
        for dataset in ("Costs", *raw_datasets()):
            for rel in target.files(dataset):
                if rel not in keep:
                    _delete(store, target, rel, result.removed)
            _sweep(store, target, dataset)
    return result


#: A temporary file older than this is a killed publish's (a running one renames its files within seconds).
STALE_TMP = timedelta(hours=1)


def _sweep(store: Store, target: Store, dataset: str) -> None:
    """Remove what killed publishes left: their ``*.tmp`` files (readers skip them, but they would pile up)."""
    base = target.full(dataset)
    if not target.fs.isdir(base):
        return
    cutoff = datetime.now(timezone.utc) - STALE_TMP
    for path, info in target.fs.find(base, detail=True).items():
        modified = listed(info).modified
        if path.endswith(".tmp") and modified is not None and modified < cutoff:
            _refuse(store, target, target.rel(path))
            target.delete(target.rel(path))


def _write(reader: pa.RecordBatchReader, path: str, statistics: str) -> int:
    names = reader.schema.names
    stats: bool | list[str] = True if statistics == "int64" else [n for n in names if n != "ChargePeriodStart"]
    rows = 0
    with pq.ParquetWriter(path, reader.schema, compression="snappy", write_statistics=stats) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
