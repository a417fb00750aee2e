"""Run records: one JSON file per export delivery under ``config/runs/``, the single truth for
``hub status`` and crash recovery.

States: ``pending`` -> ``converting`` -> ``swapping`` -> ``committed``; or ``quarantined`` (with an error
code and message); or ``superseded`` (a newer delivery of the same folder was committed first, so this older one
is recorded and never swapped in). A record left in ``converting`` or ``swapping`` by a crash is finished on the
next run. Record file names are bounded whatever the ``runId`` (long ids are shortened with a hash).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from hub.convert import error_text
from hub.store import RUNS, Store, bounded_name, raw_staging

#: Prefix of a custom-data folder's record ``manifest`` (``custom:<path of its manifest.json>``).
CUSTOM = "custom:"

State = Literal["pending", "converting", "swapping", "committed", "quarantined", "superseded"]
#: States after which a delivery is never processed again unless its manifest changes (or --retry / --force).
FINAL = ("committed", "quarantined", "superseded")


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
    #: the lake file's listing signature (size and modification stamp) as the commit left it (custom data: a file
    #: still with it is the hub's own, carried over as it is by a later run of the folder)
    signature: str | None = None


#: the work a source does after a run's commit (:class:`hub.sources.Hooks`), owed by the run until it is done
AFTER_COMMIT = "after-commit"


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
    #: rows with a number of more than 18 decimals, rounded to 18 (flagged ``RoundedTo18Decimals`` in Costs)
    rowsRounded: int = 0
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
    #: lake files of the destination carried over unchanged by the swap (an OCI report file replaces only its own)
    kept: list[str] = []
    #: the swap keeps the destination's files of other deliveries (told at swap time: ``kept``)
    carryOver: bool = False
    #: keys of every run of the same delivery version: it is final only when all of them are
    siblings: list[str] = []
    #: the delivery's own files (other clouds' exports) with their sizes: what retention may delete once committed
    sourceFiles: dict[str, int] = {}
    #: files of the delivery not read: month-to-date snapshots of a bill with a newer one in the delivery (Tencent)
    skippedFiles: list[str] = []
    missingColumns: list[str] = []
    extraColumns: list[str] = []
    sourceDeleted: bool = False
    #: the first and last day an msexports delivery covers (runInfo.startDate, endDate; else the start month's last
    #: day); a Costs delivery replaces another of its folder only when the winner covers the other's days
    period: list[str] | None = None
    #: work its commit owes (saved with the commit, cleared once done; a crash in between leaves it to the next
    #: ingestion): ``after-commit`` the source's work after the commit (older deliveries superseded, the source deleted;
    #: a failure there is on ``error``, the run still committed), ``renormalize`` the month's Costs (a price sheet),
    #: ``allocate`` the month (Costs, with allocation rules)
    owed: list[str] = []
    #: when this delivery was made (``runInfo.submittedTime``, else the manifest's modification time), UTC
    deliveredAt: datetime | None = None
    #: the record key of the newer delivery of the same folder that made this one ``superseded``
    supersededBy: str | None = None
    #: an allocation run (``hub allocate``): invariants, config version, metric, status totals, pooled rows
    allocation: dict | None = None
    #: a bill-API pull (``hub pull``): day, final, pulledAt, api, pages, records, rows, file
    pull: dict | None = None
    #: custom data: the folder's files as its last commit left them, kept by every later run until one commits
    lakeParts: list[PartResult] = []
    #: custom data: files of a quarantined delivery, renamed so that readers (``*.parquet``) leave them out
    setAside: list[str] = []
    #: a delivery's final state whose CloudEvent is owed: set by the save that makes it final (so a process killed
    #: before publishing leaves it owed), cleared once the event is queued; ``eventSent`` the identity last queued
    eventPending: bool = False
    eventSent: str | None = None
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


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def run_key(manifest_rel: str, run_id: str | None) -> str:
    """Stable record name for one manifest file: ``<runId>-<hash of its path>``, bounded in length and made of
    file-name-safe characters whatever the runId holds."""
    digest = hashlib.sha1(manifest_rel.encode()).hexdigest()[:10]
    return f"{bounded_name(run_id, 80)}-{digest}" if run_id else f"unparsed-{digest}"


def failed(store: Store, key: str, manifest: str, exc: BaseException, **fields: object) -> RunRecord:
    """The record of work that failed in an unexpected way (a bug, a store error): quarantined with
    ``InternalError`` and a one-line message without file content or credentials, saved when possible (a failure
    to save it is not raised: one failing delivery never stops the others)."""
    message = error_text(exc)
    rec = RunRecord(key=key, manifest=manifest, manifestSha256=str(fields.pop("manifestSha256", "")), state="quarantined",
                    error=RunError(code="InternalError", message=message, file=manifest.split(":", 1)[-1]), **fields)
    with contextlib.suppress(Exception):  # best effort (a LeaseLost, a BaseException, still propagates)
        save(store, rec)
    return rec


def record_path(key: str) -> str:
    return f"{RUNS}/{key}.json"


#: Records whose final state is no delivery of data (their events are not ``delivery.*``).
NO_DELIVERY_EVENT = ("Allocation", "Pull", "Pairing")


def event_identity(record: RunRecord) -> str:
    """What a delivery event is about: its id is made from it (the same identity, the same id)."""
    return f"{record.key}|{record.manifestSha256}|{record.state}"


def save(store: Store, record: RunRecord) -> None:
    """Write a record (after checking that this process still holds the store's lease, when it holds one); a
    delivery's final state not yet told is marked ``eventPending`` in the same write."""
    store.check_fence()
    if (record.state in ("committed", "quarantined") and record.exportType not in NO_DELIVERY_EVENT
            and record.eventSent != event_identity(record)):
        record.eventPending = True
    record.updatedAt = now()
    store.write_bytes(record_path(record.key), record.model_dump_json(indent=2).encode() + b"\n")


def parse(raw: bytes) -> RunRecord:
    """A record from its file. One an older version wrote (no ``eventSent``) counts as told: a later save of it (by
    retention, say) never announces its delivery again."""
    rec = RunRecord.model_validate_json(raw)
    if b'"eventSent"' not in raw:
        rec.eventSent = event_identity(rec)
    return rec


def load(store: Store, key: str) -> RunRecord | None:
    """One record by key (None when there is none, or it is not readable)."""
    try:
        return parse(store.read_bytes(record_path(key))) if store.exists(record_path(key)) else None
    except (ValidationError, OSError):
        return None


def load_all(store: Store, unreadable: list[str] | None = None) -> list[RunRecord]:
    """Every run record, oldest first. A file under ``config/runs/`` that is not a run record (unreadable, not
    JSON, not a record, or named after another key) is skipped and, when ``unreadable`` is given, listed there as
    ``<file>: <why>``: one foreign file never stops status, ingestion, retention or the watcher."""
    out = []
    for rel in store.files_in(RUNS, ".json"):
        name = posixpath.basename(rel)
        try:
            rec = parse(store.read_bytes(rel))
            if f"{rec.key}.json" != name:
                raise ValueError(f"holds the record of {rec.key!r}")
        except (ValidationError, ValueError, OSError) as exc:
            if unreadable is not None:
                why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors() else str(exc)
                unreadable.append(f"{RUNS}/{name}: not a run record ({' '.join(why.split())[:200]})")
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r.createdAt, r.key))


def by_manifest(store: Store, unreadable: list[str] | None = None) -> dict[str, RunRecord]:
    """The newest record of each manifest path."""
    out: dict[str, RunRecord] = {}
    for rec in load_all(store, unreadable):
        out[rec.manifest] = rec
    return out
