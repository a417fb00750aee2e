"""CloudEvents 1.0 about what the hub did, sent to the sinks of the ``events`` settings.

Event ids are stable: a hash of the type, source, subject and identity of what happened, so a replayed day or a re-run
delivery sends the same ids again and consumers de-duplicate on ``source`` + ``id``. Publishing never raises for a sink
failure: what a sink did not take waits in its dead-letter queue (see :mod:`hub.events.sinks`) and is re-sent first;
an HTTP target that failed after its retries is not tried again by the same process until its cool-down has passed.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime, timezone
from decimal import Decimal

from cloudevents.http import CloudEvent

from hub.convert import scrub
from hub.events.sinks import PublishResult, publish_to
from hub.runs import RunRecord
from hub.settings import Events
from hub.sources.custom import CUSTOM
from hub.store import EXPORTS as NATIVE_AREA
from hub.store import INGESTION, Store, describe

__all__ = ["DELIVERY_INGESTED", "DELIVERY_QUARANTINED", "PublishResult", "delivery_events", "event_id", "flush",
           "json_safe", "make_event", "publish"]

DELIVERY_INGESTED = "finops-hub.delivery.ingested"
DELIVERY_QUARANTINED = "finops-hub.delivery.quarantined"
_DELIVERY_TYPES = {"committed": DELIVERY_INGESTED, "quarantined": DELIVERY_QUARANTINED}


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (a naive time is taken as UTC)."""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return utc.isoformat().replace("+00:00", "Z")


def json_safe(value: object) -> object:
    """``value`` with Decimals as exact strings and times as ISO 8601 UTC strings; refuses what JSON cannot hold."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"event data holds {value!r}, which JSON cannot represent")
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"event data holds a {type(value).__name__}, which is not JSON data")


def canonical_json(data: object) -> str:
    """Sorted keys, no spaces, Decimals as strings: the same data always gives the same text."""
    return json.dumps(json_safe(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_id(type: str, source: str, subject: str | None, identity: str) -> str:
    """The first 32 hex characters of the SHA-256 of type, source, subject and identity."""
    key = json.dumps([type, source, subject, identity], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def make_event(type: str, source: str, subject: str | None, data: dict, *, identity: str | None = None,
               time: datetime | None = None) -> CloudEvent:
    """A CloudEvents 1.0 event with JSON data and a stable id (from ``identity``, else from the data itself)."""
    safe = json_safe(data)
    attributes = {
        "specversion": "1.0",
        "id": event_id(type, source, subject, identity if identity is not None else canonical_json(safe)),
        "type": type,
        "source": source,
        "time": iso_utc(time or datetime.now(timezone.utc)),
        "datacontenttype": "application/json",
    }
    if subject is not None:
        attributes["subject"] = subject
    return CloudEvent(attributes, safe)


def _provider(record: RunRecord) -> str:
    """Which cloud a run's delivery came from: Azure's exports, another cloud's (``native:<provider>``), custom data."""
    key = record.schemaKey or ""
    if key.startswith("native:"):
        return key.split(":", 1)[1]
    if record.manifest.startswith(f"{NATIVE_AREA}/") and record.manifest.count("/") > 1:  # a record written before its
        return record.manifest.split("/")[1]  # source knew more (a failure while setting the delivery up)
    return "custom" if record.manifest.startswith((CUSTOM, f"{INGESTION}/")) else "azure"


def _delivery_data(record: RunRecord) -> dict:
    data: dict = {
        "runKey": record.key, "manifest": record.manifest, "provider": _provider(record),
        "export": record.exportName or (record.scope if record.manifest.startswith(CUSTOM) else None),
        "exportType": record.exportType, "dataset": record.dataset, "month": record.month, "scope": record.scope,
        "destination": record.destination, "rowsIn": record.rowsIn, "rowsOut": record.rowsOut,
        "totals": record.totalsOut, "reconciled": record.reconciled,
    }
    if record.state == "quarantined":
        error = record.error
        data["error"] = {"code": error.code if error else None, "message": scrub(error.message) if error else None,
                         "file": error.file if error else None}
    return data


def delivery_events(records: list[RunRecord], source: str) -> list[CloudEvent]:
    """One event per record that ended ``committed`` (ingested) or ``quarantined``; others are left out."""
    return [
        make_event(_DELIVERY_TYPES[r.state], source, r.manifest.removeprefix(CUSTOM), _delivery_data(r),
                   identity=f"{r.key}|{r.manifestSha256}|{r.state}", time=r.updatedAt)
        for r in records if r.state in _DELIVERY_TYPES
    ]


def publish(store: Store, settings: Events, events: list[CloudEvent]) -> PublishResult:
    """Send ``events`` to every sink, each sink's earlier dead letters first. Never raises for a sink failure."""
    result = PublishResult()
    for conf in settings.sinks:
        try:
            result.add(publish_to(store, conf, events))
        except Exception as exc:  # noqa: BLE001 - e.g. the store cannot be listed: the pipeline goes on
            result.errors.append(f"{conf.type} sink: not published ({describe(exc)})")
    return result


def flush(store: Store, settings: Events) -> PublishResult:
    """Re-send every sink's dead letters (the watcher calls this each cycle)."""
    return publish(store, settings, [])
