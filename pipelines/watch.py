"""``hub watch``: an always-on loop that ingests every export as it lands and never loses one.

It starts by catching up on everything pending, then follows new arrivals: on local roots ``watchdog``
events on any ``manifest.json`` wake it at once, and a periodic full scan catches whatever events missed;
remote roots are polled, with a listing checkpoint (``config/checkpoints/msexports.json``, for ``msexports/``,
``exports/`` and custom-data folders) so deliveries already committed or quarantined are not read again while their
listing is unchanged. A manifest whose blobs are not all there yet is waited for (re-checked on every event and
every second) until ``blob_timeout``, then quarantined.
Other clouds' deliveries under ``exports/`` are taken when their ``manifest.json`` lands; OCI's report files, which
come without one, once they have not changed for ``settle`` seconds.
Bill APIs (``pull`` settings) are pulled on their schedule before each pass (:func:`hub.pull.due`), and the event
sinks' dead letters re-sent. Retention runs once a day. One structured log line per run.
``stop`` (SIGINT/SIGTERM) ends the loop between runs, so a run is never cut.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from hub import convert, lease
from hub.errors import UsageError
from hub.runs import RunRecord
from hub.store import CONFIG, EXPORTS, INGESTION, MSEXPORTS, Store, StoreUnreachable, describe, store_timeout
from hub.terminal import log_value
from pipelines import pull as pulling
from pipelines import retention
from pipelines.ingest import IngestResult, ingest, load_settings

Log = Callable[[dict], None]
DAY = 86400.0
#: Seconds before the first retry after a failed cycle (an unreachable store), doubling up to MAX_BACKOFF.
RETRY_BASE = 5.0
MAX_BACKOFF = 300.0
#: Seconds an incremental report file (OCI, no manifest) must stay unchanged before it is taken.
SETTLE = 60.0
#: The shortest pause between the watcher's passes (seconds).
MIN_INTERVAL = 0.1
#: The listing checkpoint: manifests already final, with their listing signature (not read again).
CHECKPOINT = f"{CONFIG}/checkpoints/msexports.json"


def _load_checkpoint(store: Store) -> dict[str, str]:
    try:
        data = json.loads(store.read_bytes(CHECKPOINT)) if store.exists(CHECKPOINT) else {}
    except Exception:  # noqa: BLE001 - unreadable or unreachable: start without it (manifests are then read again)
        data = {}
    return data if isinstance(data, dict) else {}


def run_line(rec: RunRecord) -> dict:
    """The log line of one run: export, dataset, month, scope, rows, seconds, outcome."""
    line = {"event": "run", "export": rec.exportName or rec.manifest, "dataset": rec.dataset, "month": rec.month,
            "scope": rec.scope, "rows": rec.rowsOut, "seconds": rec.seconds, "outcome": rec.state}
    if rec.error:
        line.update(code=rec.error.code, error=rec.error.message, file=rec.error.file)
    return line


def text_log(line: dict) -> str:
    """``<time> <event> key=value ...``: values escaped and quoted where needed, so one line is always one event."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rest = " ".join(f"{k}={log_value(v)}" for k, v in line.items() if k != "event" and v is not None)
    return f"{stamp} {line['event']} {rest}"


def json_log(line: dict) -> str:
    return json.dumps({"time": datetime.now(timezone.utc).isoformat(), **line}, default=str)


def _pause(waiting: list[str], interval: float, settle: float) -> float:
    """Seconds until the next pass: 1 while a manifest's blobs are arriving; while only files settle (OCI report files,
    a delivery's or a custom folder's files written after its manifest), a quarter of the settle time (a pass per
    second would re-list everything for a minute); else ``interval``."""
    if not waiting:
        return interval
    if all(w.startswith((f"{EXPORTS}/", f"{INGESTION}/")) for w in waiting):
        return min(interval, max(1.0, settle / 4))
    return 1.0


class _Wakeup:
    """Wakes the loop on manifest events (local roots)."""

    def __init__(self, store: Store) -> None:
        self.event = threading.Event()
        self.observer = None
        if not store.is_local:
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self.event

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # noqa: ANN001 - watchdog event
                if event.event_type not in ("created", "modified", "moved", "closed"):
                    return  # reads ("opened", "closed_no_write") are our own scans
                paths = [getattr(event, "src_path", ""), getattr(event, "dest_path", "")]
                if any(str(p).endswith("manifest.json") or f"/{MSEXPORTS}/" in str(p) or f"/{EXPORTS}/" in str(p)
                       for p in paths):
                    wake.set()

        self.observer = Observer()
        for area in (MSEXPORTS, EXPORTS, INGESTION):
            path = store.full(area)
            store.fs.makedirs(path, exist_ok=True)
            self.observer.schedule(Handler(), path, recursive=True)
        self.observer.daemon = True
        self.observer.start()

    def wait(self, timeout: float, stop: threading.Event, *, events: bool = True) -> None:
        """Until an event (unless ``events`` is False: a backoff after a failed cycle), ``stop``, or ``timeout``
        seconds."""
        end = time.monotonic() + timeout
        while not stop.is_set() and not (events and self.event.is_set()) and time.monotonic() < end:
            self.event.wait(min(0.25, max(0.0, end - time.monotonic())))
        self.event.clear()

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)


def _pulls(store: Store, log: Log) -> None:
    """The scheduled bill-API pulls (``pull`` settings) and the event sinks' dead letters; a failure is logged, never
    stops the ingestion."""
    try:
        done = pulling.scheduled(store)
    except UsageError as exc:
        if isinstance(exc, StoreUnreachable):
            raise
        log({"event": "pull-error", "error": str(exc)})
        return
    except Exception as exc:  # noqa: BLE001 - the ingestion goes on; the next cycle tries again
        log({"event": "pull-error", "error": describe(exc)})
        return
    for p in done.pulls:
        if p.busy:
            log({"event": "busy", "detail": f"another process is pulling {p.provider}"})
        if p.error:
            log({"event": "pull-error", "provider": p.provider, "error": p.error})
        for rec in p.records:
            line = {"event": "pull", "provider": rec.exportName, "day": rec.scope, "rows": rec.rowsOut,
                    "seconds": rec.seconds, "outcome": rec.state, "final": (rec.pull or {}).get("final")}
            if rec.error:
                line.update(code=rec.error.code, error=rec.error.message)
            log(line)
    for sent in done.published:
        if sent.sent or sent.resent or sent.dead_lettered:
            log({"event": "events", "sent": sent.sent, "resent": sent.resent, "dead_lettered": sent.dead_lettered})
        for problem in sent.errors:
            log({"event": "events-error", "error": problem})


def _inspect(store: Store, log: Log, done: set[str]) -> None:
    """Once a UTC day (with ``config/inspection.json``): inspect (up to the lake's last complete day, at the latest
    yesterday), after that pass's ingestion; one
    watcher at a time (a lease); a failure is logged and tried again next cycle."""
    from hub import inspection, lease
    from hub.inspection import rules as inspection_rules

    today = datetime.now(timezone.utc).date().isoformat()
    if today in done or not store.exists(inspection_rules.RULES):
        return
    try:
        with lease.holding(store, "inspect", wait=0) as held:
            if held is None:
                return
            result = inspection.inspect(store)
        done.add(today)
        log({"event": "inspect", "day": result.day.isoformat(), "series": result.series, "anomalies": len(result.anomalies),
             "budgets": len(result.budgets), "events": len(result.events)})
        for problem in result.alert_errors:
            log({"event": "alerts-error", "error": problem})
    except lease.LeaseLost as exc:
        log({"event": "lease-lost", "detail": str(exc)})
    except Exception as exc:  # noqa: BLE001 - the next cycle tries again
        log({"event": "inspect-error", "error": describe(exc) if not isinstance(exc, UsageError) else str(exc)})


def _cycle(store: Store, grace: dict[str, float], checkpoint: dict[str, str], interval: float, blob_timeout: float,
           log: Log, settle: float = SETTLE, inspected: set[str] | None = None,
           signatures: dict[str, str] | None = None) -> IngestResult:
    """One pass: the due bill-API pulls, note new manifests' blob deadlines (a manifest re-delivered at the same path,
    a new listing signature, gets a new one; ``signatures``: those seen), ingest, log every run."""
    _pulls(store, log)
    now = time.time()
    signatures = {} if signatures is None else signatures
    listing = store.listing(MSEXPORTS)
    for rel in [r for r in grace if r not in listing]:  # gone (retention, a user): forgotten
        grace.pop(rel, None)
        signatures.pop(rel, None)
    for rel, listed in listing.items():
        if signatures.get(rel) != listed.signature:
            signatures[rel] = listed.signature
            grace[rel] = now + blob_timeout
    result = ingest(store, blob_grace=grace, wait=min(interval, 30.0), checkpoint=checkpoint, settle=settle)
    store.write_json(CHECKPOINT, checkpoint)
    if result.busy:
        log({"event": "busy", "detail": "another process holds the ingestion lease"})
    if result.lost:
        log({"event": "lease-lost", "detail": result.lost})
    for problem in result.unreadable:
        log({"event": "skipped", "detail": problem})
    for rec in result.all:
        log(run_line(rec))
    if result.published:
        for problem in result.published.errors:
            log({"event": "events-error", "error": problem})
    if inspected is not None:
        _inspect(store, log, inspected)
    return result


def watch(store: Store, *, stop: threading.Event, log: Log, interval: float = 60.0, blob_timeout: float = 600.0,
          retention_every: float = DAY, cycles: int | None = None, settle: float = SETTLE) -> None:
    """Ingest pending exports until ``stop`` is set (or ``cycles`` loops have run). A usage error when ``interval`` is
    not at least :data:`MIN_INTERVAL` seconds or ``blob_timeout`` / ``settle`` not a finite number of seconds >= 0."""
    if not MIN_INTERVAL <= interval < math.inf:
        raise UsageError(f"the interval must be a number of seconds from {MIN_INTERVAL:g} (a pass without a pause "
                         f"would list the store without end), not {interval!r}")
    for name, value in (("blob timeout", blob_timeout), ("settle time", settle)):
        if not 0 <= value < math.inf:
            raise UsageError(f"the {name} must be a finite number of seconds from 0, not {value!r}")
    lease.default_ttl()  # HUB_LEASE_TTL and the rest: a usage error now, not a failed pass retried without end
    convert.check_codec()
    convert.check_memory_limit()
    if not store.is_local:
        store_timeout()
    wake = _Wakeup(store)
    grace: dict[str, float] = {}
    signatures: dict[str, str] = {}
    checkpoint: dict[str, str] = {}  # read once the store answers (a store refusing connections would hang the start)
    loaded = False
    inspected: set[str] = set()  # UTC days the daily inspection ran
    last_retention = 0.0
    log({"event": "start", "root": store.url, "interval": interval, "local_events": wake.observer is not None})
    try:
        n = 0
        failures = 0
        started = False  # the settings read once: from then on, nothing a user can change stops the watcher
        while not stop.is_set() and (cycles is None or n < cycles):
            n += 1
            try:
                store.probe()  # a bucket or container gone (or never there) is retried, never created by a write
                if not loaded:
                    checkpoint.update(_load_checkpoint(store))
                    loaded = True
                load_settings(store)  # settings first: a broken file is that, not a failing pull
                started = True  # they read once: a later breakage pauses the watcher, never stops it
                result = _cycle(store, grace, checkpoint, interval, blob_timeout, log, settle, inspected, signatures)
                if time.time() - last_retention >= retention_every:
                    last_retention = time.time()
                    done = retention.apply(store, load_settings(store), wait=min(interval, 30.0))
                    if done.busy or done.lost:
                        last_retention = 0.0  # another process holds the lease: next cycle
                    if done.deletions:
                        log({"event": "retention", "deleted": len(done.deletions), "bytes": done.bytes})
                failures = 0
                pause = _pause(result.waiting, interval, settle)
            except UsageError as exc:
                if not isinstance(exc, StoreUnreachable) and not started:
                    raise  # invalid settings at start: the operator, there, must fix them (exit 2)
                failures += 1
                pause = min(MAX_BACKOFF, RETRY_BASE * 2 ** (failures - 1))
                log({"event": "error", "error": str(exc), "retry_in": pause})
            except Exception as exc:  # noqa: BLE001 - an unreachable store (or any failure) is retried, never the end
                failures += 1
                pause = min(MAX_BACKOFF, RETRY_BASE * 2 ** (failures - 1))
                log({"event": "error", "error": describe(exc), "retry_in": pause})
            if stop.is_set() or (cycles is not None and n >= cycles):
                break
            wake.wait(pause, stop, events=failures == 0)  # a backoff is waited out: file events do not cut it short
    finally:
        wake.close()
        log({"event": "stop", "root": store.url})
