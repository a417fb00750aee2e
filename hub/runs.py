"""Run records: one JSON file per export delivery under ``config/runs/``, the single truth for
``hub status`` and crash recovery.

States: ``pending`` -> ``converting`` -> ``swapping`` -> ``committed``; or ``quarantined`` (with an error
code and message). A record left in ``converting`` or ``swapping`` by a crash is finished on the next run.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from hub.store import RUNS, Store, raw_staging

State = Literal["pending", "converting", "swapping", "committed", "quarantined"]


def now() -> datetime:
    return datetime.now(timezone.utc)


class RunError(BaseModel):
    code: str
    message: str
    file: str | None = None


class PartResult(BaseModel):
    blob: str
    output: str
    rows: int = 0
    bytes: int = 0


class RunRecord(BaseModel):
    key: str
    manifest: str
    manifestSha256: str
    state: State = "pending"
    runId: str | None = None
    exportName: str | None = None
    exportType: str | None = None
    dataVersion: str | None = None
    schemaKey: str | None = None
    dataset: str | None = None
    month: str | None = None
    scope: str | None = None
    destination: str | None = None
    manifestRows: int | None = None
    rowsIn: int = 0
    rowsOut: int = 0
    #: rows a dataset rule leaves out on purpose (legacy actual-cost rows other than commitment purchases)
    rowsFiltered: int = 0
    totalsIn: dict[str, dict[str, str]] = {}
    totalsOut: dict[str, dict[str, str]] = {}
    #: written totals with every changed amount taken at its original value: equals totalsIn
    totalsIngested: dict[str, dict[str, str]] = {}
    #: FOCUS 1.0 validation of a Costs run: rows, checks, violations, {rule:column: count}
    validation: dict | None = None
    reconciled: bool | None = None
    parts: list[PartResult] = []
    staging: str | None = None
    replaced: list[str] = []
    missingColumns: list[str] = []
    extraColumns: list[str] = []
    sourceDeleted: bool = False
    error: RunError | None = None
    attempts: int = 0
    createdAt: datetime = Field(default_factory=now)
    updatedAt: datetime = Field(default_factory=now)
    seconds: float | None = None


def fail(store: Store, rec: RunRecord, code: str, message: str, file: str | None) -> None:
    """Record an error. Before the swap the run is quarantined and its staging removed; during the swap
    the staged data is complete, so the record stays ``swapping`` and the next run rolls it forward."""
    rec.error = RunError(code=code, message=message, file=file)
    if rec.state == "swapping":
        return
    if rec.staging:
        store.delete_tree(rec.staging)
        store.delete_tree(raw_staging(rec.staging))
    rec.state = "quarantined"


def run_key(manifest_rel: str, run_id: str | None) -> str:
    """Stable record name for one manifest file: ``<runId>-<hash of its path>``."""
    digest = hashlib.sha1(manifest_rel.encode()).hexdigest()[:10]
    return f"{run_id}-{digest}" if run_id else f"unparsed-{digest}"


def record_path(key: str) -> str:
    return f"{RUNS}/{key}.json"


def save(store: Store, record: RunRecord) -> None:
    record.updatedAt = now()
    store.write_bytes(record_path(record.key), record.model_dump_json(indent=2).encode() + b"\n")


def load_all(store: Store) -> list[RunRecord]:
    """Every run record, oldest first."""
    base = store.full(RUNS)
    if not store.fs.exists(base):
        return []
    out = []
    for path in store.fs.glob(f"{base}/*.json"):
        out.append(RunRecord.model_validate_json(store.fs.cat_file(path)))
    return sorted(out, key=lambda r: (r.createdAt, r.key))


def by_manifest(store: Store) -> dict[str, RunRecord]:
    """The newest record of each manifest path."""
    out: dict[str, RunRecord] = {}
    for rec in load_all(store):
        out[rec.manifest] = rec
    return out
