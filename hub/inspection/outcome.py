"""What an inspection leaves behind: its memory (``config/inspection/state.json``: every anomaly's last state and
feedback, the budget thresholds already fired), the ``Anomalies`` and ``Budgets`` datasets in the lake (one file per
month, replaced whole), and CloudEvents for anomalies opened, updated, resolved and budget thresholds crossed. Event
ids come from what they say, so re-running a day emits no duplicates; an unchanged anomaly emits nothing."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hub.errors import UsageError
from hub.inspection import alerts
from hub.normalize import EXACT
from hub.settings import load_settings
from hub.store import CONFIG, INGESTION, Store, dataset_folder

STATE = f"{CONFIG}/inspection/state.json"
FEEDBACK = ("yes", "no", "planned")


class StateInvalid(UsageError):
    """``config/inspection/state.json`` cannot be read (edited by hand, copied in part): named, never a traceback."""


#: Fields every anomaly of the state has.
_ANOMALY_FIELDS = ("id", "monitor", "key", "currency", "start", "end", "state", "direction")


def _wrong_field(anomaly: dict) -> str | None:
    """The first field of a saved anomaly the inspection cannot read back (a hand-edited state), else None."""
    from hub.inspection.rules import SEVERITIES

    for name in ("start", "end"):
        try:
            date.fromisoformat(str(anomaly[name]))
        except ValueError:
            return name
        if not isinstance(anomaly[name], str):
            return name
    for name in ("actual", "expected", "impact", "max_daily_impact"):
        try:
            if not Decimal(str(anomaly.get(name))).is_finite():
                return name
        except ArithmeticError:  # decimal.InvalidOperation: not a number (None included)
            return name
    if anomaly.get("severity") not in SEVERITIES:
        return "severity"
    if anomaly["state"] not in ("open", "resolved") or anomaly["direction"] not in ("up", "down"):
        return "state" if anomaly["state"] not in ("open", "resolved") else "direction"
    return None


def load_state(store: Store) -> dict:
    """The inspection's state (every key kept: anomalies, budgets, alerts, pending alerts and events, last day)."""
    if not store.exists(STATE):
        return {"anomalies": {}, "budgets": {}, "alerts": {}}
    try:
        data = json.loads(store.read_bytes(STATE))
    except ValueError as exc:
        raise StateInvalid(f"{STATE}: not JSON ({exc}); restore it from a backup, or remove it to start afresh") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict) for k in ("anomalies", "budgets", "alerts")):
        raise StateInvalid(f"{STATE}: not the inspection's state (an object of anomalies, budgets and alerts)")
    for key, a in (data.get("anomalies") or {}).items():
        if not isinstance(a, dict) or any(a.get(f) is None for f in _ANOMALY_FIELDS):
            raise StateInvalid(f"{STATE}: anomaly {key!r} lacks one of {', '.join(_ANOMALY_FIELDS)}")
        if wrong := _wrong_field(a):
            raise StateInvalid(f"{STATE}: anomaly {key!r} has a bad {wrong}; restore the file from a backup, or remove it "
                               "to start afresh")
    return {**data, "anomalies": data.get("anomalies") or {}, "budgets": data.get("budgets") or {},
            "alerts": data.get("alerts") or {}}


@contextlib.contextmanager
def _locked(store: Store, wait: float = 60.0) -> Iterator[None]:
    """The state's read-modify-write, one process at a time (an inspection's final write, feedback from the CLI or
    the API): a short lease of its own, so feedback never waits for a whole inspection."""
    from hub import lease

    with lease.exclusive(store, "inspection-state", wait=wait) as held:
        if held is None:
            raise UsageError("another process is writing the inspection state; try again")
        yield


def _plain(a: Any) -> dict:
    """An anomaly as JSON data for the state file and its events: amounts as plain decimal text (``0``, never ``0E-18``)."""
    return json.loads(json.dumps(asdict(a), default=_json_value))


def decimal_text(value: Decimal) -> str:
    """A decimal as plain text without trailing zeros (``0``, never ``0E-18``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _json_value(value: object) -> str:
    return decimal_text(value) if isinstance(value, Decimal) else str(value)  # dates: ISO text


def record(store: Store, anomalies: list, budgets: list[dict], day: date, rules: Any = None,
           alert_errors: list[str] | None = None) -> list[tuple[str, str, dict, str]]:
    """Merge an inspection into the state; the events to publish, as (type, subject, data, identity): this inspection's
    and those an earlier one saved but could not publish (``eventsPending``, saved with the state before anything is
    published and cleared by :func:`published`, so a crash in between loses none). With ``rules``, the alert policies'
    notifications are sent (their failures appended to ``alert_errors``)."""
    alert_errors = alert_errors if alert_errors is not None else []
    state = load_state(store)
    events: list[tuple[str, str, dict, str]] = []
    for a in anomalies:
        now = _plain(a)
        before = state["anomalies"].get(a.id)
        kind = None
        if before is None:
            kind = "opened" if a.state == "open" else "resolved"  # found after it ended: reported once, resolved
        elif before["state"] == "open" and a.state == "resolved":
            kind = "resolved"
        elif before["state"] == "resolved" and a.state == "open":
            kind = "opened"  # the change came back after it was reported over: said again, never silently
        elif before["state"] == "open" and (before["end"], before["actual"]) != (now["end"], now["actual"]):
            kind = "updated"  # it lasted longer or its days' costs changed; not a baseline fitted again on a moved window
        now["feedback"] = (before or {}).get("feedback")
        now["history"] = [*((before or {}).get("history") or []), *([{"day": day.isoformat(), "event": kind}] if kind else [])]
        state["anomalies"][a.id] = now
        if kind:
            events.append((f"finops-hub.anomaly.{kind}", f"{a.monitor}/{a.key}", now,
                           f"{a.id}:{kind}:{now['end']}:{now['impact']}"))
    judged = state.setdefault("budgetDefinitions", {})  # budget/month -> the definition its month was inspected under
    for b in budgets:
        month, definition = f"{b['id']}/{b['month']}", b.get("definition")
        before = judged.get(month)
        closed = b["month"] < f"{day:%Y-%m}"
        if closed and before not in (None, definition):
            continue  # a closed month judged under another amount, currency, metric or filter than today's budget's
        if not closed or before is None:  # a month is judged under its budget as it last was during the month
            judged[month] = definition
        if before is None and definition:  # thresholds fired before definitions were kept: this definition's
            for legacy in [k for k in state["budgets"] if k.startswith(f"{month}/") and k.count("/") == 3]:
                state["budgets"].setdefault(f"{legacy}/{definition}", state["budgets"][legacy])
        for kind, pct in b["crossed"]:
            legacy = f"{b['id']}/{b['month']}/{kind}/{pct:g}"
            key = f"{legacy}/{definition}" if definition else legacy
            if key in state["budgets"]:
                continue  # each threshold fires once per month and definition (a raised budget's 100 % fires anew)
            state["budgets"][key] = day.isoformat()
            events.append(("finops-hub.budget.threshold", b["id"], {**b, "threshold": {"type": kind, "percent": pct}}, key))
    if rules is not None and rules.alerts and (events or state.get("alertsPending")):
        sent = alerts.notify(rules, state, events)
        alert_errors.extend(sent.errors)
    pending = {e[3]: list(e) for e in state.get("eventsPending") or []}
    for e in events:
        pending.setdefault(e[3], json.loads(json.dumps(list(e), default=_json_value)))
    state["eventsPending"] = list(pending.values())
    state["lastDay"] = max(day.isoformat(), str(state.get("lastDay") or ""))
    with _locked(store):
        fresh = load_state(store)  # feedback given while this inspection ran is kept
        for key, a in state["anomalies"].items():
            if key in fresh["anomalies"]:
                a["feedback"] = fresh["anomalies"][key].get("feedback")
        store.write_json(STATE, state)
        _datasets(store, state, budgets)
    return [(e[0], e[1], e[2], e[3]) for e in state["eventsPending"]]


def published(store: Store, identities: set[str]) -> None:
    """Forget the pending events that reached every sink (or a sink's dead letters)."""
    with _locked(store):
        state = load_state(store)
        left = [e for e in state.get("eventsPending") or [] if e[3] not in identities]
        if left != (state.get("eventsPending") or []):
            state["eventsPending"] = left
            store.write_json(STATE, state)


def feedback(store: Store, anomaly_id: str, value: str) -> dict:
    """Store a user's verdict on an anomaly (``yes``: a real one, ``no``: not one, ``planned``: expected)."""
    if value not in FEEDBACK:
        raise UsageError(f"feedback must be one of {', '.join(FEEDBACK)}, not {value!r}")
    with _locked(store):
        state = load_state(store)
        if anomaly_id not in state["anomalies"]:
            raise UsageError(f"no anomaly {anomaly_id!r} (hub anomalies lists them)")
        state["anomalies"][anomaly_id]["feedback"] = value
        store.write_json(STATE, state)
        _datasets(store, state, [])
    return state["anomalies"][anomaly_id]


MONEY = pa.decimal128(38, 18)
#: The datasets' columns (typed: dates, exact amounts), in order.
SCHEMAS = {
    "Anomalies": pa.schema([("id", pa.string()), ("monitor", pa.string()), ("key", pa.string()), ("currency", pa.string()),
                            ("start", pa.date32()), ("end", pa.date32()), ("state", pa.string()), ("direction", pa.string()),
                            ("actual", MONEY), ("expected", MONEY), ("impact", MONEY), ("max_daily_impact", MONEY),
                            ("impact_pct", pa.float64()), ("severity", pa.string()), ("feedback", pa.string()),
                            ("causes", pa.string()), ("history", pa.string())]),
    "Budgets": pa.schema([("id", pa.string()), ("month", pa.string()), ("day", pa.date32()), ("currency", pa.string()),
                          ("metric", pa.string()), ("amount", MONEY), ("actual", MONEY), ("consumptionPct", pa.float64()),
                          ("forecast", MONEY), ("lower80", MONEY), ("upper80", MONEY), ("lower95", MONEY), ("upper95", MONEY),
                          ("crossed", pa.string())]),
}


def _typed(value: object, kind: pa.DataType) -> object:
    if value is None:
        return None
    if kind == MONEY:
        return Decimal(str(value)).quantize(Decimal("1e-18"), context=EXACT)  # 28 digits fail from 10^10
    if kind == pa.date32():
        return date.fromisoformat(str(value))
    return value


def _write(store: Store, dataset: str, month: str, name: str, rows: list[dict]) -> None:
    year, mon = map(int, month.split("-"))
    schema = SCHEMAS[dataset]
    table = pa.table({f.name: pa.array([_typed(r.get(f.name), f.type) for r in rows], type=f.type) for f in schema},
                     schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    store.write_bytes(f"{dataset_folder(dataset, year, mon, 'inspection')}/{name}", buf.getvalue())


def _datasets(store: Store, state: dict, budgets: list[dict]) -> None:
    """The Anomalies dataset (every known anomaly, by the month it started) and this inspection's Budgets rows."""
    by_month: dict[str, list[dict]] = {}
    for a in state["anomalies"].values():
        row = {k: v for k, v in a.items() if k not in ("causes", "history", "series")}
        row["causes"] = json.dumps(a.get("causes") or [])
        row["history"] = json.dumps(a.get("history") or [])
        by_month.setdefault(str(a["start"])[:7], []).append(row)
    for month, rows in by_month.items():
        _write(store, "Anomalies", month, "anomalies.parquet", sorted(rows, key=lambda r: (r["start"], r["id"])))
    for rel in store.files(f"{INGESTION}/Anomalies", "/inspection/anomalies.parquet"):  # a month no anomaly starts in now
        parts = rel.split("/")  # ingestion/Anomalies/<yyyy>/<mm>/inspection/anomalies.parquet
        if f"{parts[2]}-{parts[3]}" not in by_month:
            store.delete(rel)
    for month in sorted({b["month"] for b in budgets}):
        rows = [{k: (json.dumps(v) if k == "crossed" else v) for k, v in b.items()} for b in budgets if b["month"] == month]
        _write(store, "Budgets", month, "budgets.parquet", rows)


def publish(store: Store, events: list[tuple[str, str, dict, str]]) -> Any:
    """The inspection's events to the ``events`` sinks (none configured: nothing)."""
    settings = load_settings(store).events
    if not settings.sinks or not events:
        return None
    from hub import events as ce

    made = [ce.make_event(kind, settings.source, subject, data, identity=identity) for kind, subject, data, identity in events]
    return ce.publish(store, settings, made)
