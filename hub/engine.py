"""The load engine every source shares: a run's staging folder, the swap into the lake, the re-count of what
readers see, the commit, quarantine, and recovery after a crash.

A source (:mod:`hub.sources`) knows its deliveries and converts them into a run's staging folder (typed, normalized,
reconciled, validated); the engine takes it from there. Record states: ``converting`` (staging being written: a
crash means redo) -> ``swapping`` (staging complete: a crash means finish the swap) -> ``committed``; or
``quarantined`` with an error code. What is source-specific around the swap (Azure's pairing of actual and
amortized cost before it, superseding older deliveries and source retention after it) comes from the source's
hooks (:func:`hub.sources.hooks`), so a restarted process finishes a swap exactly as the interrupted one would.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
import uuid
from collections.abc import Callable

from hub import catalog, convert, runs, swap
from hub.errors import HubError
from hub.export_schemas import schema_by_key
from hub.faults import checkpoint
from hub.runs import AFTER_COMMIT, RunError, RunRecord
from hub.settings import Settings, load_settings
from hub.store import INGESTION, STAGING, Store, allocation_owed, raw_folder, raw_staging


def new_staging(key: str) -> str:
    """A staging folder for one attempt of a run: a stale lease holder never shares it with its successor."""
    return f"{STAGING}/{key}.{uuid.uuid4().hex[:8]}"


def commit(store: Store, rec: RunRecord, settings: Settings | None = None, records: list[RunRecord] | None = None) -> None:
    """Swap a staged run in (idempotent), re-read what readers now see, commit, then the source's after-commit work
    (``settings`` and ``records``: what that work needs; read when not given).
    Raises :class:`HubError` when the lake does not show the rows written (the record stays ``swapping``)."""
    from hub import sources

    assert rec.staging and rec.destination
    hooks = sources.hooks(rec)
    store.check_fence()
    debts = owed(store, rec)  # what the commit will owe (the swap changes no allocation nor rules)
    mark_allocation_owed(store, rec, debts)  # before the month changes (the swap, and a pairing's rewrite)
    hooks.before_swap(store, rec)
    names = [posixpath.basename(p.output) for p in rec.parts] + rec.kept
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
    rec.owed = debts + ([AFTER_COMMIT] if hooks.after_commit is not None else [])
    runs.save(store, rec)
    after_commit(store, rec, settings, records)
    checkpoint("after-commit")


def after_commit(store: Store, rec: RunRecord, settings: Settings | None = None, records: list[RunRecord] | None = None) -> None:
    """The source's work after ``rec`` committed (older deliveries superseded, the source deleted), when it is owed.
    A failure there (a source blob another client holds a lease on) changes nothing in the lake: the run stays
    ``committed`` with the failure on its record (``AfterCommitFailed``, naming the file) and the work stays owed,
    tried again by the next ingestion."""
    from hub import sources

    work = sources.hooks(rec).after_commit
    if AFTER_COMMIT not in rec.owed or work is None:
        return
    try:
        work(store, rec, settings or load_settings(store), runs.load_all(store) if records is None else records)
    except Exception as exc:  # noqa: BLE001 - recorded on the committed run; never stops the other deliveries
        error = exc if isinstance(exc, HubError) else unexpected(exc, rec.manifest)
        rec.error = RunError(code="AfterCommitFailed", message=error.message, file=error.file)
    else:
        rec.owed = [w for w in rec.owed if w != AFTER_COMMIT]
        rec.error = None
    runs.save(store, rec)


def owed(store: Store, rec: RunRecord) -> list[str]:
    """What a run's commit owes (:attr:`hub.runs.RunRecord.owed`): a month's prices re-normalize its Costs; a month's
    Costs are allocated again where the hub has allocation rules."""
    from hub.allocation.rules import RULES as ALLOCATION_RULES

    if not rec.month:
        return []
    if rec.dataset == "Prices":
        return ["renormalize"]
    allocated = store.files(f"{INGESTION}/Allocation/{rec.month[:4]}/{rec.month[5:7]}")
    if rec.dataset == "Costs" and (store.exists(ALLOCATION_RULES) or allocated):
        return ["allocate"]  # allocated again (without rules: owed until they are back, its allocation unread meanwhile)
    return []


def mark_allocation_owed(store: Store, rec: RunRecord, debts: list[str]) -> bool:
    """When ``rec`` changes a month's Costs and that owes the month's allocation (``debts``: :func:`owed`), the month's
    marker (:func:`hub.store.allocation_owed`: readers refuse its allocation until one is made again); True then."""
    if rec.dataset != "Costs" or not rec.month or "allocate" not in debts:
        return False
    store.write_bytes(allocation_owed(rec.month), b"")
    return True


def settle(store: Store, rec: RunRecord, work: str) -> None:
    """``work`` done (or recorded as failed) for ``rec``: no longer owed (a month's marker of an allocation that no
    longer stands goes only when its allocation is made again: :func:`hub.allocation.allocate`)."""
    if work in rec.owed:
        rec.owed = [w for w in rec.owed if w != work]
        runs.save(store, rec)


def _keeps_raw(rec: RunRecord) -> bool:
    """The run's export type keeps a raw/ copy (from its schema, as when the copy was written)."""
    schema = schema_by_key(rec.schemaKey) if rec.schemaKey else None
    return bool(schema and schema.keep_raw)


def no_rows(store: Store, rec: RunRecord, started: float) -> RunRecord:
    """A delivery without rows changes nothing in the lake (the previous run stays)."""
    rec.state = "committed"
    rec.reconciled = True
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def quarantine(store: Store, rec: RunRecord, exc: HubError) -> None:
    runs.fail(store, rec, exc.code, exc.message, exc.file or rec.manifest)  # always naming a file: the delivery's


def unexpected(exc: Exception, file: str) -> HubError:
    """A bug or store failure as an ``InternalError`` with a one-line message (no file content, no credentials)."""
    return HubError(convert.error_text(exc), file=file, code="InternalError")


def isolated(store: Store, key: str, manifest: str, raw: bytes | None, work: Callable[[], RunRecord]) -> RunRecord:
    """Run one delivery's work so that nothing it raises stops the others (a lost lease still stops everything)."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 - even a failure to write its record must not stop the other deliveries
        return runs.failed(store, key, manifest, exc, manifestSha256=runs.sha256(raw or b""))


def recover(store: Store, redo: Callable[[RunRecord], list[RunRecord]]) -> list[RunRecord]:
    """Finish swaps that a crash interrupted (roll forward); staged-but-unswapped runs are redone later, and
    staging folders no record will swap (a crash, a stale lease holder) are removed. ``redo``: what to do with a
    run interrupted while converting that must be redone now rather than on its next delivery (re-normalizations),
    returning the records it made."""
    done = []
    records = runs.load_all(store)
    settings = load_settings(store)
    for rec in records:
        if rec.state == "converting" and (again := redo(rec)):
            done += again
        elif rec.state == "swapping" and rec.staging and rec.destination:
            try:
                commit(store, rec, settings, records)
            except Exception as exc:  # noqa: BLE001 - stays "swapping": tried again next time, never half-applied,
                # and never stops the other deliveries
                error = exc if isinstance(exc, HubError) else unexpected(exc, rec.destination)
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
                store.check_fence()  # a holder stalled past its lease never sweeps the staging of the one that took over
                store.delete_tree(rel)
    store.empty_trash()  # lake folders a killed retention had moved out of the lake, not yet deleted
    return done
