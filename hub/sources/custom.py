"""Custom data (``ingestion/``): FOCUS-aligned files announced by an empty (or ``{}``) ``manifest.json``.

A producer writes FOCUS-aligned Parquet into ``ingestion/<Dataset>/<yyyy>/<mm>/<scope>/`` (AWS, GCP, OCI
FOCUS files included), then an empty manifest. The folder's Parquet files are validated and normalized in
place (Costs through the same FOCUS 1.0 normalization as exports), all-or-nothing through staging and the
swap; a folder whose files cannot be read is quarantined with its error and left as it was.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import time
from datetime import datetime, timezone
from functools import cache

import duckdb

from hub import convert, engine, lookups, runs
from hub.checks import check_costs, month_end
from hub.errors import HubError
from hub.export_schemas import Column, ExportSchema
from hub.runs import RunRecord
from hub.sources import refresh_checkpoint
from hub.store import INGESTION, Store, signature_of
from hub.validate import validate_files
from transforms import costs
from transforms.costs import Lineage
from transforms.typing import IncompatibleType, ident, literal, project, text_nulls

CUSTOM = "custom:"


def pending(store: Store, records: list[RunRecord] | None = None, checkpoint: dict[str, str] | None = None,
            final: dict[str, str] | None = None) -> list[tuple[str, bytes | None]]:
    """Folder manifests under ``ingestion/`` not processed yet in their current content (``records``: every run
    record, loaded when not given). ``checkpoint``: manifests whose folder listing (the manifest and the folder's
    Parquet files: names, sizes, modification stamps) it holds unchanged are not read; ``final`` collects the listing
    signatures of the folders found final."""
    known = {r.manifest: r for r in records} if records is not None else runs.by_manifest(store)
    base = store.full(INGESTION)
    found = {store.rel(p): info for p, info in store.fs.find(base, detail=True).items()} if store.fs.exists(base) else {}
    files: dict[str, list[str]] = {}
    for rel in found:
        if rel.endswith(".parquet"):
            files.setdefault(posixpath.dirname(rel), []).append(rel)
    out = []
    for rel in sorted(r for r in found if posixpath.basename(r) == "manifest.json"):
        folder = sorted(files.get(posixpath.dirname(rel), []))
        signature = signature_of(found, [rel, *folder])
        if checkpoint is not None and checkpoint.get(rel) == signature:
            if final is not None:
                final[rel] = signature
            continue  # unchanged since it was found final
        try:
            raw: bytes | None = store.read_bytes(rel) if store.inside(rel) else None
        except OSError:  # a dangling link, a permission: process_folder records it, the other folders flow
            raw = None
        rec = known.get(f"{CUSTOM}{rel}")
        if rec is None or rec.manifestSha256 != _sha(raw, folder) or rec.state not in ("committed", "quarantined"):
            out.append((rel, raw))
        elif final is not None:
            final[rel] = signature
    return out


def _sha(raw: bytes | None, files: list[str]) -> str:
    """A manifest's identity: its content and the folder's file names (a new delivery has a new ingestion id;
    normalizing in place keeps the names, so a processed folder is not processed again)."""
    return hashlib.sha256((raw or b"") + ",".join(files).encode()).hexdigest()


def process_folder(store: Store, rel: str, raw: bytes | None) -> RunRecord:
    """Normalize one custom-data folder in place."""
    started = time.perf_counter()
    folder = posixpath.dirname(rel)
    parts = folder.split("/")
    digest = hashlib.sha1(rel.encode()).hexdigest()[:16]
    rec = RunRecord(key=f"custom-{digest}", manifest=f"{CUSTOM}{rel}", manifestSha256=_sha(raw, store.parquet_files(folder)),
                    exportType="Custom", dataset=parts[1] if len(parts) > 1 else None, destination=folder,
                    month=f"{parts[2]}-{parts[3]}" if len(parts) > 3 else None, scope="/".join(parts[4:]) or None,
                    staging=engine.new_staging(f"custom-{digest}"))  # one per attempt
    try:
        if raw is None:
            raise HubError("cannot be read (a dangling link, or one leading out of the hub root?)", file=rel,
                           code="ManifestReadFailed")
        if raw.strip() not in (b"", b"{}"):
            raise HubError("a custom-data manifest must be empty or {}", file=rel, code="ManifestInvalid")
        files = store.parquet_files(folder)
        if not files:
            raise HubError("no Parquet files next to the manifest", file=rel, code="IngestionFilesNotFound")
        rec.state = "converting"
        runs.save(store, rec)
        store.delete_tree(rec.staging)
        _normalize_files(store, rec, files)
        rec.state = "swapping"
        runs.save(store, rec)
        engine.commit(store, rec)
    except HubError as exc:
        runs.fail(store, rec, exc.code, exc.message, exc.file)
    except duckdb.Error as exc:
        runs.fail(store, rec, "InternalError", convert.scrub(str(exc)), rel)
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


@cache
def focus_schema() -> ExportSchema:
    """Custom Costs files are typed like a FocusCost export: every column the Costs normalization knows, by name."""
    return ExportSchema("Custom", "focus", None, "Costs",
                        tuple(Column(n, t, n, optional=True) for n, t in costs.input_columns().items()))


def _normalize_files(store: Store, rec: RunRecord, files: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="hub-custom-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            outputs = []
            for i, rel in enumerate(files):
                path = store.local_path(rel)
                if path is None:
                    path = os.path.join(tmp, f"in-{i}.parquet")
                    store.get_file(rel, path)
                name = posixpath.basename(rel)
                staged = f"{rec.staging}/{name}"
                out = store.local_path(staged) or os.path.join(tmp, "out", name)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                try:
                    rows = convert.write_parquet(con, [f"* FROM ({_query(con, rec, path, rel)})"], "", out, file=rel,
                                                 select_only=True)
                except HubError:
                    raise
                except Exception as exc:  # noqa: BLE001 - unreadable or ill-typed custom data quarantines the folder
                    raise convert.map_error(exc, file=rel) from None
                if store.local_path(staged) is None:
                    store.put_file(out, staged)
                rec.parts.append(runs.PartResult(blob=rel, output=rel, rows=rows))
                outputs.append(out)
            rec.rowsIn = rec.rowsOut = sum(p.rows for p in rec.parts)
            if rec.dataset == "Costs" and rec.rowsOut:
                report = validate_files(con, outputs, label=rec.destination or "")
                rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                                  "rules": report.summary()}
                if rec.month:
                    start = datetime.strptime(rec.month, "%Y-%m").replace(tzinfo=timezone.utc)
                    check_costs(con, rec, outputs, start, month_end(start))
        finally:
            con.close()


def _query(con: duckdb.DuckDBPyConnection, rec: RunRecord, path: str, rel: str) -> str:
    """The normalization query of one custom file. Text columns are typed as CSV input is (``''`` and ``NULL`` are
    nulls, numbers, dates and booleans parsed), so FOCUS files converted to all-text Parquet load as they are."""
    source = f"read_parquet({literal(path)})"
    present = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    if rec.dataset != "Costs":
        proj = [f"{text_nulls(ident(c))} AS {ident(c)}" if t == "VARCHAR" else ident(c) for c, t in present.items()]
        return f"SELECT {', '.join(proj)} FROM {source}"
    try:
        proj = project(focus_schema(), present, null_texts=True)
    except IncompatibleType as exc:
        raise HubError(str(exc), file=rel, code="SchemaMismatch") from None
    typed = f"(SELECT {', '.join(proj.select)} FROM {source})"
    columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {typed}").fetchall()}
    return costs.costs_sql(typed, columns, Lineage(), extras=proj.extra)


def ingest_custom(store: Store, records: list[RunRecord] | None = None,
                  checkpoint: dict[str, str] | None = None) -> list[RunRecord]:
    """Process every pending custom-data folder (one failing folder never stops the others). ``checkpoint`` (the
    watcher's listing checkpoint, updated in place): folders already final and unchanged are not read again (a
    folder just normalized in place has new files: it is read once more, then found final)."""
    final: dict[str, str] = {}
    made = [_isolated(store, rel, raw) for rel, raw in pending(store, records, checkpoint, final)]
    refresh_checkpoint(checkpoint, INGESTION, final, final)  # changed, pending or gone: read again next time
    return made


def _isolated(store: Store, rel: str, raw: bytes | None) -> RunRecord:
    try:
        return process_folder(store, rel, raw)
    except Exception as exc:  # noqa: BLE001 - even a failure to write its record must not stop the other folders
        digest = hashlib.sha1(rel.encode()).hexdigest()[:16]
        return runs.failed(store, f"custom-{digest}", f"{CUSTOM}{rel}", exc, exportType="Custom")
