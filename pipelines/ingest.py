"""``hub ingest`` (and each pass of ``hub watch``): every source's pending deliveries, once, under the root's lease.

Order: recover what a crash interrupted (:func:`hub.engine.recover`), then Azure exports (price sheets first), then
other clouds' native FOCUS exports, then custom data. One failing delivery never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub import allocation, convert, engine, events, lease, runs
from hub import deliveries as hub_deliveries
from hub.allocation import rules as allocation_rules
from hub.conversion import Progress
from hub.errors import UsageError
from hub.runs import RunError, RunRecord
from hub.settings import load_settings
from hub.sources import custom, msexports, msexports_layout, native
from hub.store import Store, allocation_owed
from pipelines.prices_backfill import RENORMALIZE, renormalize_month

__all__ = ["IngestResult", "ingest", "load_settings"]


@dataclass
class IngestResult:
    """What one ``ingest`` call did."""

    records: list[RunRecord] = field(default_factory=list)
    recovered: list[RunRecord] = field(default_factory=list)
    #: Costs folders re-normalized because their month's prices arrived after them
    renormalized: list[RunRecord] = field(default_factory=list)
    #: another process held the ingestion lease for the whole wait: nothing was done
    busy: bool = False
    #: another process took the lease over while this one was stalled: it stopped (why, else None)
    lost: str | None = None
    #: manifests whose blobs are still arriving (watcher grace period): left pending
    waiting: list[str] = field(default_factory=list)
    #: files under config/runs/ that are not run records (skipped): ``<file>: <why>``
    unreadable: list[str] = field(default_factory=list)
    #: every run record as the ingestion left them (the owed events are taken from them)
    known: list[RunRecord] = field(default_factory=list, repr=False)
    #: allocation runs of the months whose Costs this ingestion changed (``config/allocation.json``)
    allocated: list[RunRecord] = field(default_factory=list)
    #: what the ``events`` sinks were sent (None: no sink configured)
    published: events.PublishResult | None = None

    @property
    def all(self) -> list[RunRecord]:
        return self.recovered + self.records + self.renormalized + self.allocated

    @property
    def ok(self) -> bool:
        return self.lost is None and all(r.state in ("committed", "superseded") for r in self.all)


def ingest(store: Store, *, retry: bool = False, force: bool = False, progress: Progress | None = None,
           fail_after_parts: int | None = None, wait: float = 600.0, lease_ttl: float | None = None,
           blob_grace: dict[str, float] | None = None, checkpoint: dict[str, str] | None = None,
           settle: float = 0, waiting: Callable[[str], None] | None = None) -> IngestResult:
    """Process every pending delivery of every source once, holding the root's ingestion lease (``waiting``: told,
    once, when another process holds it).

    ``retry`` re-processes quarantined deliveries, ``force`` committed ones too. Another process holding the
    lease is waited for up to ``wait`` seconds (then ``busy`` is set and nothing is done). While the lease is
    held, every record write and swap first checks it is still held (``Store.fence``): a process that stalled
    past the lease's TTL and was taken over stops there (``lost``) and writes nothing more.
    ``blob_grace`` (the watcher's): manifest -> deadline (epoch seconds) until which missing blobs mean
    "still uploading" rather than an error; ``settle`` (the watcher's): seconds an incremental report file (OCI) must
    have stayed unchanged before it is taken. ``checkpoint`` (the watcher's listing checkpoint of ``msexports/``,
    ``exports/`` and custom-data folders, updated in place): manifest -> listing signature of deliveries already
    final, not read again.
    ``fail_after_parts`` is a fault-injection hook for tests.
    """
    convert.check_codec()  # a bad setting is a usage error, not a quarantine of every export
    convert.check_memory_limit()
    try:
        with lease.holding(store, "ingest", wait=wait, ttl=lease_ttl, waiting=waiting) as held:
            if held is None:
                return IngestResult(busy=True)
            result = _ingest(store, retry=retry, force=force, progress=progress, fail_after_parts=fail_after_parts,
                             blob_grace=blob_grace, checkpoint=checkpoint, settle=settle)
            # deliveries only: an allocation run is the hub's own work on the lake, not data delivered. Under the lease:
            # the owed events' records are written once their events are queued
            allocated = {id(r) for r in result.allocated}
            result.published = publish_runs(store, [r for r in result.all if id(r) not in allocated], result.known)
    except lease.LeaseLost as exc:
        return IngestResult(lost=str(exc))
    return result


def publish_runs(store: Store, records: list[RunRecord], known: list[RunRecord] | None = None) -> events.PublishResult | None:
    """Each committed or quarantined delivery as a CloudEvent to the ``events`` sinks (none configured: nothing),
    with every delivery of ``known`` whose event is still owed (``eventPending``: a process killed after a commit and
    before publishing); those are marked told once queued (sinks' outboxes: sent, or kept as dead letters)."""
    owed = {}
    for key in dict.fromkeys(r.key for r in [*(known or []), *records] if r.eventPending):
        if (fresh := runs.load(store, key)) is not None and fresh.eventPending:  # as the store has it now: one this
            owed[key] = fresh  # ingestion deleted (a manifest fixed) or replaced is never written back
    settings = load_settings(store).events
    result = None
    if settings.sinks:
        told = {r.key for r in records}
        result = events.publish(store, settings, events.delivery_events(
            [*records, *(r for r in owed.values() if r.key not in told)], settings.source))
    for rec in owed.values():  # no sinks: nothing is owed (a sink added later does not get the past)
        rec.eventPending, rec.eventSent = False, runs.event_identity(rec)
        runs.save(store, rec)
    return result


def _ingest(store: Store, *, retry: bool, force: bool, progress: Progress | None, fail_after_parts: int | None,
            blob_grace: dict[str, float] | None, checkpoint: dict[str, str] | None, settle: float) -> IngestResult:
    settings = load_settings(store)
    result = IngestResult(recovered=recover(store))
    records = runs.load_all(store, result.unreadable)  # once per ingestion; kept current by each source
    # names of the lake that are not UTF-8 out of it first: readers fail on them and a swap would take them away
    result.records += hub_deliveries.undecodable_names(store, records, lake=True)
    msexports_layout.to_export_folders(store, records)  # an older version's layout, before a delivery replaces it
    made, result.renormalized = msexports.ingest_pending(
        store, records, settings, retry=retry, force=force, progress=progress, fail_after_parts=fail_after_parts,
        blob_grace=blob_grace, checkpoint=checkpoint, waiting=result.waiting,
        prices_committed=lambda prices: _renormalize(store, prices))
    result.records += made
    result.records += native.ingest_pending(store, records, retry=retry, force=force, settle=settle, waiting=result.waiting,
                                            checkpoint=checkpoint, settings=settings)
    result.records += custom.ingest_custom(store, records, checkpoint, settle=settle, waiting=result.waiting)
    result.records += hub_deliveries.undecodable_names(store, records)  # names the listings above left out
    result.allocated = _allocate(store, result, records)
    result.known = records
    return result


#: The record of an allocation the rules file stopped (removed once the rules read again).
RULES_FAILURE = "allocate-rules"


def _allocate(store: Store, result: IngestResult, records: list[RunRecord]) -> list[RunRecord]:
    """The months whose Costs changed (in this ingestion, or in one a crash cut short before it allocated: ``owed``),
    allocated again (``config/allocation.json``; none: nothing). A failure is the allocation run's record; it never
    undoes the ingestion."""
    if not store.exists(allocation_rules.RULES):  # allocation off: cost queries read the Costs; a month whose Costs
        return []  # changed stays owed its allocation until the rules are back (never served a stale one meanwhile)
    owing = {r.key: r for r in [*records, *result.all] if "allocate" in r.owed}
    available = set(allocation.months(store))
    # (an owing record of another state too: a custom delivery whose overwritten committed files were set aside)
    changed = sorted({r.month for r in result.all if r.state == "committed" and r.dataset == "Costs" and r.month in available}
                     | {r.month for r in owing.values() if r.dataset == "Costs" and r.month in available})
    if not changed:
        for rec in owing.values():  # its month holds no Costs any more (retention): nothing to allocate
            engine.settle(store, rec, "allocate")
        return []
    try:
        made = allocation.allocate(store, changed)
    except UsageError as exc:  # unreadable rules: the ingestion stands, the allocation is reported and still owed (the
        # next ingestion or watcher pass tries again, so fixing the rules is enough)
        rec = RunRecord(key=RULES_FAILURE, manifest="allocation:rules", manifestSha256="", state="quarantined",
                        exportType="Allocation", dataset="Allocation",
                        error=RunError(code="AllocationRulesInvalid", message=str(exc), file=allocation_rules.RULES))
        runs.save(store, rec)
        return [rec]
    for rec in made:  # failed (a conflict, a zero-weight pool set to error): the month's allocation of earlier Costs
        if rec.state != "committed" and rec.month:  # is not served as the allocation of these
            allocation.retire(store, rec.month)
    for rec in owing.values():
        engine.settle(store, rec, "allocate")
    if store.exists(runs.record_path(RULES_FAILURE)):
        store.delete(runs.record_path(RULES_FAILURE))  # the rules read again: their failure is over
    return made


def recover(store: Store) -> list[RunRecord]:
    """Finish swaps a crash interrupted, redo an interrupted re-normalization, sweep stale staging."""

    def redo(rec: RunRecord) -> list[RunRecord]:
        if not (rec.manifest.startswith(RENORMALIZE) and rec.month):
            return []  # an interrupted conversion is redone with its delivery
        store.delete_tree(rec.staging or "")
        store.delete(runs.record_path(rec.key))
        return _renormalize(store, rec)

    done = engine.recover(store, redo)
    settings = load_settings(store)
    for rec in runs.load_all(store):
        if rec.state == "committed" and engine.AFTER_COMMIT in rec.owed:  # failed, or a crash cut it short: done
            engine.after_commit(store, rec, settings)  # quietly (the run was reported, its event sent, its month
            # allocated when it committed); a lasting failure stays on its record (hub status)
        if rec.state == "committed" and "renormalize" in rec.owed:  # prices committed, their month's
            done += _renormalize(store, rec)  # re-normalization cut short before it started
        if rec.dataset == "Costs" and rec.month and "allocate" in rec.owed and not store.exists(allocation_owed(rec.month)):
            engine.mark_allocation_owed(store, rec, rec.owed)  # owed by a record a hub before the markers wrote
    return done


def _renormalize(store: Store, prices: RunRecord) -> list[RunRecord]:
    """Costs folders of a month (and the next month's holding late rows of it) re-normalized after its prices committed
    (or redone after a crash); a failure there is recorded, never stops the other deliveries (the folders keep their
    previous, valid files)."""
    assert prices.month
    year, month = map(int, prices.month.split("-"))
    failure = f"renorm-failed-{prices.key}"[:120]
    try:
        made = renormalize_month(store, year, month, prices.runId or prices.key)
        after = (year, month + 1) if month < 12 else (year + 1, 1)  # the next month's late rows of this one
        made += renormalize_month(store, *after, prices.runId or prices.key, late=True)
    except Exception as exc:  # noqa: BLE001 - recorded like any failure; still owed once: tried again next time
        again = store.exists(runs.record_path(failure))
        rec = runs.failed(store, failure, f"{RENORMALIZE}{year:04d}-{month:02d}", exc, runId=prices.runId,
                          exportType="Renormalize", dataset="Costs", month=f"{year:04d}-{month:02d}")
        if again and prices.dataset == "Prices":  # a second failure in a row: recorded, no longer retried each pass
            engine.settle(store, prices, "renormalize")
        return [rec]
    if prices.dataset == "Prices":  # a price sheet's (not a re-normalization redone after a crash): done (a folder
        engine.settle(store, prices, "renormalize")  # whose rewrite was refused has its own record)
    store.delete(runs.record_path(failure))  # an earlier attempt's failure: made good
    return made
