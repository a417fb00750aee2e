"""Cost inspection (``hub inspect``): daily usage-based cost series per monitor (sub-account, service, tag, ...) and
currency, anomalies with their expected value and band (:mod:`hub.inspection.detect`), as intervals with a state,
impact and severity, and their root causes ranked by cost delta over the interval (product, region, SKU, instance).

Series are read from the lake's Costs: ``EffectiveCost`` per UTC day of ``ChargePeriodStart``, usage-based charges only
(recurring and one-time charges, e.g. month-start fees, never look like anomalies), corrections left out. A series with
less than ``min_history_days`` of history is reported as "insufficient history", not inspected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import numpy as np

from hub import catalog
from hub.allocation.rules import KeyNormalization, norm_key
from hub.catalog import first_folder_month
from hub.cost_analysis import amount
from hub.inspection import detect as detection
from hub.inspection import forecast as forecasting
from hub.inspection import outcome
from hub.inspection.outcome import decimal_text
from hub.inspection.rules import Budget, Monitor, Rules, load
from hub.store import Store
from transforms.typing import ident, literal

#: Dimensions of the root causes: the Costs column, and what it is called.
CAUSES = (("ServiceName", "product"), ("RegionId", "region"), ("SkuId", "sku"), ("ResourceId", "instance"))
#: Causes listed per dimension at most (fewer once they explain 80 % of the delta).
TOP_CAUSES = 5


@dataclass
class Cause:
    dimension: str
    value: str | None
    actual: Decimal
    expected: Decimal
    delta: Decimal
    share: float
    kind: str  # new | removed | changed


@dataclass
class Anomaly:
    id: str
    monitor: str
    key: str
    currency: str
    start: date
    end: date
    state: str  # open | resolved
    direction: str  # up | down
    actual: Decimal
    expected: Decimal
    impact: Decimal
    max_daily_impact: Decimal
    impact_pct: float | None
    severity: str
    causes: list[Cause] = field(default_factory=list)
    #: the 30 days up to the inspection: day, actual, expected, lower and upper edge of the band (for the report)
    series: list[dict] = field(default_factory=list)


@dataclass
class InspectResult:
    day: date
    series: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    #: (monitor, key, currency, days of history) of the series not inspected
    insufficient: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: each budget's month so far: actual, forecast and its intervals, consumption, thresholds crossed
    budgets: list[dict] = field(default_factory=list)
    #: events made (type, subject): anomalies opened / updated / resolved, budget thresholds crossed
    events: list[tuple[str, str]] = field(default_factory=list)
    #: alert targets that could not be notified (one line each)
    alert_errors: list[str] = field(default_factory=list)
    #: the last day with costs in the lake, when no series had a cost in the window (so the user can pick ``--date``)
    last_cost_day: date | None = None
    #: budgets that no cost row of their month matches (currency and filter: values are compared exactly), one line each
    unmatched: list[str] = field(default_factory=list)
    #: event sinks' problems (one line each)
    event_errors: list[str] = field(default_factory=list)
    #: the state's last inspected day, when ``day`` is earlier: nothing was recorded, sent or published
    not_recorded: str | None = None
    #: each budget's previous month as of its last day (restated after the month ended: its thresholds still fire)
    closed: list[dict] = field(default_factory=list)
    #: the days between the state's last inspected day and this inspection's test days (none tested them: a watcher
    #: down for days, a ``--date`` run skipping ahead)
    untested: tuple[date, date] | None = None


def _key_sql(monitor: Monitor, keys: Iterable[str] = ()) -> str:
    """A monitor's series key. A tag's value: under the key as written, else under one of ``keys`` (the lake's tag keys)
    that allocation's key normalization (:func:`hub.allocation.rules.norm_key`: case, separators, AWS's ``user:``)
    makes the same (``Team``, ``user:team``); Tags that are not a JSON object are untagged."""
    if monitor.dimension.startswith("tag:"):
        key, how = monitor.dimension[4:], KeyNormalization()
        alike = [key, *sorted(k for k in keys if k != key and norm_key(k, how) == norm_key(key, how))]
        values = ", ".join(f"json_extract_string(Tags, {literal(_path(k))})" for k in alike)
        return f"coalesce(CASE WHEN json_valid(Tags) AND json_type(Tags) = 'OBJECT' THEN coalesce({values}) END, '(untagged)')"
    return f"coalesce(CAST({ident(monitor.dimension)} AS VARCHAR), '(none)')"


def _path(key: str) -> str:
    """The JSON Pointer of a tag key: any key, quotes and backslashes included (``/`` and ``~`` escaped as it says)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def tag_keys(con: duckdb.DuckDBPyConnection, monitor: Monitor, where: str) -> list[str]:
    """The tag keys of the rows ``where`` selects (a ``tag:`` monitor's; none for another)."""
    if not monitor.dimension.startswith("tag:"):
        return []
    return [k for (k,) in con.execute(f"SELECT DISTINCT unnest(json_keys(Tags)) FROM Costs WHERE {where} AND "
                                      "CASE WHEN json_valid(Tags) THEN json_type(Tags) = 'OBJECT' ELSE false END").fetchall()]


def _where(monitor: Monitor, first: date, last: date, *, usage_only: bool = True) -> str:
    """The rows of a monitor's series (or a budget's) charged from ``first`` to ``last``. They may lie in the month
    folder before ``first``'s (a bill's rows are charged up to 31 days outside its month: Google's Pacific invoice
    month, late usage) and in any later one (a native bill's credits of earlier usage), as for the cost API."""
    conds = [f"x_Month >= {literal(first_folder_month(first))}",
             f"ChargePeriodStart >= TIMESTAMPTZ {literal(first.isoformat())}",
             f"ChargePeriodStart < TIMESTAMPTZ {literal((last + timedelta(days=1)).isoformat())}"]
    if usage_only:
        conds += ["coalesce(ChargeFrequency, 'Usage-Based') = 'Usage-Based'", "coalesce(ChargeClass, '') <> 'Correction'"]
    for column, wanted in monitor.filter.items():
        values = [wanted] if isinstance(wanted, str) else wanted
        conds.append(f"{ident(column)} IN ({', '.join(literal(v) for v in values)})")
    return " AND ".join(conds)


def inspect(store: Store, day: date | None = None, rules: Rules | None = None, *, save: bool = True) -> InspectResult:
    """Inspect every monitor's series and every budget up to ``day`` (default: :func:`default_day`); with ``save``,
    record the outcome (state, Anomalies and Budgets datasets) and send its events."""
    rules = rules or load(store)
    con = catalog.connect(store)
    try:
        day = day or default_day(con)
        first = day - timedelta(days=rules.window_days - 1)
        result = InspectResult(day)
        state = outcome.load_state(store)
        known = state["anomalies"]
        for monitor in rules.monitors:
            _monitor(con, rules, monitor, first, day, result, known)
        result.budgets = [_budget(con, rules, b, first, day, result.unmatched) for b in rules.budgets]
        result.closed = _closed_month(con, rules, day)
        if not result.series and not result.insufficient:
            result.last_cost_day = _last_cost_day(con)
        # the lake's costs end before the window (a day past the data, a mistyped year): nothing to record; monitors
        # that match nothing while budgets have costs are not that
        empty = not result.series and not result.insufficient and not _has_costs(con, first, day)
    finally:
        con.close()
    result.anomalies.sort(key=lambda a: (-abs(a.impact), a.monitor, a.key, a.start))
    last = state.get("lastDay")
    if save and last and (gap := (date.fromisoformat(str(last)) + timedelta(days=1),
                                  day - timedelta(days=rules.test_days)))[0] <= gap[1]:
        result.untested = gap
    if save and last and day.isoformat() < str(last):
        result.not_recorded = str(last)  # an earlier day than the state's: reported, never rewinding the state
    elif save and not empty:  # a window without costs records nothing: the state's last day never passes the data
        made = outcome.record(store, result.anomalies, [*result.closed, *result.budgets], day, rules, result.alert_errors)
        result.events = [(kind, subject) for kind, subject, _, _ in made]
        sent = outcome.publish(store, made)
        errors = sent.errors if sent is not None else []
        result.event_errors = errors
        if not any("not published" in e for e in errors):  # delivered, or in a sink's dead letters: durable
            outcome.published(store, {identity for _, _, _, identity in made})
    return result


#: A billing account whose costs end more than this many days before the lake's latest stopped, rather than lags: it no
#: longer holds the default day back.
LAG_DAYS = 7


def default_day(con: duckdb.DuckDBPyConnection, today: date | None = None) -> date:
    """The last complete day the lake can tell about: the day before the last day with costs of its most lagging
    billing account (per provider; exports arrive a day or more late, each cloud's on its own schedule, and their last
    day is partial: inspecting it would open a "down" anomaly on every series of a cloud a day behind), from its usage
    (a fee on the 1st is no lag), ignoring an account whose usage ended more than :data:`LAG_DAYS` before the lake's
    latest cost; at the latest yesterday (UTC); yesterday when the lake has no costs."""
    yesterday = (today or datetime.now(timezone.utc).date()) - timedelta(days=1)
    last = _last_cost_day(con)
    if last is None:
        return yesterday
    have = {r[0] for r in con.execute("DESCRIBE Costs").fetchall()}
    accounts = [c for c in ("ProviderName", "BillingAccountId") if c in have]
    if accounts:
        since = last - timedelta(days=LAG_DAYS)
        # usage only: a fee charged on the 1st (a support plan) is no export a day behind
        usage = " AND coalesce(ChargeFrequency, 'Usage-Based') = 'Usage-Based'" if "ChargeFrequency" in have else ""
        ends = con.execute(f"SELECT min(d) FROM (SELECT CAST(max(ChargePeriodStart) AS DATE) AS d FROM Costs WHERE x_Month >= "
                           f"{literal(first_folder_month(since))} AND ChargePeriodStart >= TIMESTAMPTZ "
                           f"{literal(since.isoformat())}{usage} GROUP BY {', '.join(accounts)})").fetchone()
        last = ends[0] if ends and ends[0] else last
    return min(yesterday, last - timedelta(days=1))


def _has_costs(con: duckdb.DuckDBPyConnection, first: date, last: date) -> bool:
    """Whether the lake holds a cost charged from ``first`` to ``last`` (UTC days)."""
    try:
        row = con.execute("SELECT count(*) FROM (SELECT 1 FROM Costs WHERE ChargePeriodStart >= CAST(? AS DATE) "
                          "AND ChargePeriodStart < CAST(? AS DATE) + INTERVAL 1 DAY LIMIT 1)", [first, last]).fetchone()
    except duckdb.CatalogException:  # no Costs view: an empty lake
        return False
    return bool(row and row[0])


def _last_cost_day(con: duckdb.DuckDBPyConnection) -> date | None:
    """The UTC day of the lake's latest ChargePeriodStart (None: no Costs)."""
    try:
        row = con.execute("SELECT CAST(max(ChargePeriodStart) AS DATE) FROM Costs").fetchone()
    except duckdb.CatalogException:  # no Costs view: an empty lake
        return None
    return row[0] if row else None


def to_json(result: InspectResult) -> dict:
    """What ``hub inspect --json`` prints: amounts (the series' model values too, to 6 places) as plain decimal
    strings (``0``, ``12.5``, never ``0E-18``), dates as ISO text."""
    anomalies = []
    for a in result.anomalies:
        data = _jsonable(asdict(a))
        data["series"] = [{k: v if k == "day" or v is None else amount(v) for k, v in p.items()} for p in a.series]
        anomalies.append(data)
    insufficient = [dict(zip(("monitor", "key", "currency", "days"), i, strict=True)) for i in result.insufficient]
    return {"day": result.day.isoformat(), "series": result.series, "anomalies": anomalies, "insufficientHistory": insufficient,
            "lastCostDay": result.last_cost_day.isoformat() if result.last_cost_day else None,
            "untestedDays": [d.isoformat() for d in result.untested] if result.untested else None}


def _jsonable(value: object) -> object:
    """``value`` with its decimals as plain decimal strings and its dates as ISO text."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return amount(value)
    return value.isoformat() if isinstance(value, date) else value


def _budget(con: duckdb.DuckDBPyConnection, rules: Rules, budget: Budget, first: date, day: date,
            unmatched: list[str]) -> dict:
    """A budget's month to ``day``: actual cost (exact), month-end forecast with 80 % and 95 % intervals (usage-based
    days left, from the budget's own daily series), consumption, and the thresholds crossed. A budget that no cost row
    of its month matches gets a line in ``unmatched`` (``usd``, ``aws``: values are compared exactly; it would
    otherwise report 0 % without a word)."""
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    scope = Monitor(id=budget.id, filter=budget.filter)
    currency = f"coalesce(BillingCurrency, '') = {literal(budget.currency)}"
    month_where = _where(scope, start, day, usage_only=False)  # the month's every charge, fees and purchases too
    total, rows = con.execute(f"SELECT CAST(coalesce(sum({ident(budget.metric)}), 0) AS VARCHAR), count(*) FROM Costs "
                              f"WHERE {month_where} AND {currency}").fetchone()
    actual = Decimal(total)
    if not rows:
        which = f"{budget.currency} with {json.dumps(budget.filter, sort_keys=True)}" if budget.filter else budget.currency
        unmatched.append(f"budget {budget.id}: no cost of {start:%Y-%m} up to {day} in {which} "
                         "(currency and filter values must match the lake's exactly, case included)")
    data = con.execute(f"SELECT CAST(ChargePeriodStart AS DATE) AS d, CAST(sum({ident(budget.metric)}) AS DOUBLE) AS c "
                       f"FROM Costs WHERE {_where(scope, first, day)} AND {currency} GROUP BY ALL").fetchnumpy()
    n_days = (day - first).days + 1
    values = np.zeros((1, n_days))
    days = (data["d"].astype("datetime64[D]") - np.datetime64(first)).astype(int)
    np.add.at(values, (0, days), data["c"])
    history = n_days - (days.min() if len(days) else n_days)
    values[0, : n_days - history] = np.nan  # before the first cost: no data, not 0
    row: dict = {"id": budget.id, "definition": budget.definition, "month": f"{start:%Y-%m}", "day": day.isoformat(),
                 "currency": budget.currency,
                 "metric": budget.metric, "amount": decimal_text(budget.amount), "actual": decimal_text(actual),
                 "consumptionPct": float(actual / budget.amount * 100)}
    crossed = [("actual", p) for p in budget.actual if actual >= budget.amount * Decimal(repr(p)) / 100]
    if history >= rules.min_history_days:
        future = np.array([(day + timedelta(days=i)).weekday() for i in range(1, (end - day).days + 1)], dtype=int)
        weekdays = (np.arange(n_days) + first.weekday()) % 7
        fc = forecasting.forecast(values, weekdays, future)
        total, h80, h95 = actual + _dec(fc.remaining[0]), _dec(fc.half80[0]), _dec(fc.half95[0])
        # the month ends above its actual, unless credits take the rest of it below
        floor = actual if fc.remaining[0] >= 0 else total - max(h80, h95)
        row.update(forecast=decimal_text(total), lower80=decimal_text(max(floor, total - h80)),
                   upper80=decimal_text(total + h80), lower95=decimal_text(max(floor, total - h95)),
                   upper95=decimal_text(total + h95))
        crossed += [("forecasted", p) for p in budget.forecasted if total >= budget.amount * Decimal(repr(p)) / 100]
    elif rows and not len(days):  # only purchases and fees in the window, no usage to project: the month ends at its actual
        row.update(forecast=decimal_text(actual), lower80=decimal_text(actual), upper80=decimal_text(actual),
                   lower95=decimal_text(actual), upper95=decimal_text(actual))
        crossed += [("forecasted", p) for p in budget.forecasted if actual >= budget.amount * Decimal(repr(p)) / 100]
    else:
        row.update(forecast=None, lower80=None, upper80=None, lower95=None, upper95=None)
    row["crossed"] = crossed
    return row


def _closed_month(con: duckdb.DuckDBPyConnection, rules: Rules, day: date) -> list[dict]:
    """Every budget's month before ``day``'s, as of its last day: a bill restated after its month ended (a final invoice,
    month-end credits, arriving in the first days of the next month) changes it, and a threshold it then crosses fires
    (once, as any). A month no budget had a cost in (before the lake's first) has no rows."""
    end = day.replace(day=1) - timedelta(days=1)
    first = end - timedelta(days=rules.window_days - 1)
    unmatched: list[str] = []
    out = [_budget(con, rules, b, first, end, unmatched) for b in rules.budgets]
    # every budget's row (the month's Budgets file is written whole), unless no budget had a cost that month (the
    # lake's first month: no rows for the month before its data)
    return out if len(unmatched) < len(out) else []


def _of(saved: dict, monitor: str, key: str, currency: str, direction: str) -> bool:
    """An anomaly of the state belongs to this series and direction."""
    return (saved.get("monitor"), saved.get("key"), saved.get("currency"), saved.get("direction")) == (
        monitor, key, currency, direction)


def _continued(known: dict, monitor: str, key: str, currency: str, direction: str, start: date, end: date) -> dict | None:
    """The anomaly of the state that an interval from ``start`` to ``end`` belongs to: same series and direction,
    overlapping it or ended at most 2 days before it (an open one first). A lasting change keeps its id and first day
    after it left the test days, and an interval seen before is not reported again."""
    found = [a for a in known.values()
             if _of(a, monitor, key, currency, direction)
             and date.fromisoformat(str(a["start"])) <= end and date.fromisoformat(str(a["end"])) >= start - timedelta(days=2)]
    return min(found, key=lambda a: (a.get("state") != "open", str(a["start"])), default=None)


def _after_others(known: dict, monitor: str, key: str, currency: str, direction: str, earlier: dict | None, start: date,
                  end: date) -> date | None:
    """The first day an interval from ``start`` to ``end`` (continuing ``earlier``) may hold when another anomaly of the
    series in its direction ended within it: the day after; else None."""
    ends = [e for a in known.values()
            if _of(a, monitor, key, currency, direction)
            and a["id"] != (earlier or {}).get("id") and start <= (e := date.fromisoformat(str(a["end"]))) < end]
    return max(ends) + timedelta(days=1) if ends else None


def _matched(known: dict, monitor: str, key: str, currency: str, first: date, found: list[detection.Interval]
             ) -> list[tuple[detection.Interval, dict | None]]:
    """A series' intervals (``first``: the day of index 0), each with the anomaly of the state it continues; the
    intervals one anomaly continues are one change (a lasting one with a few quieter days): merged, never reported
    twice under its id."""
    out: list[tuple[detection.Interval, dict | None]] = []
    at: dict[str, int] = {}  # an anomaly's id -> its entry in out (an opposite day between its intervals stays apart)
    for iv in found:
        earlier = _continued(known, monitor, key, currency, "up" if iv.direction > 0 else "down",
                             first + timedelta(days=iv.start), first + timedelta(days=iv.end))
        if earlier is not None and (i := at.get(earlier["id"])) is not None:
            out[i] = (detection.Interval(out[i][0].start, iv.end, iv.direction, iv.open), earlier)
            continue
        if earlier is not None:
            at[earlier["id"]] = len(out)
        out.append((iv, earlier))
    return out


def _monitor(con: duckdb.DuckDBPyConnection, rules: Rules, monitor: Monitor, first: date, day: date,
             result: InspectResult, known: dict) -> None:
    where = _where(monitor, first, day)
    key_sql = _key_sql(monitor, tag_keys(con, monitor, _where(monitor, first - timedelta(days=28), day)))
    data = con.execute(f"""SELECT {key_sql} AS k, coalesce(BillingCurrency, '') AS cur,
        CAST(ChargePeriodStart AS DATE) AS d, CAST(sum(EffectiveCost) AS DOUBLE) AS c FROM Costs WHERE {where}
        GROUP BY ALL""").fetchnumpy()
    if not len(data["k"]):
        # a filter value in another case (``oracle``) would otherwise inspect nothing without a word (a window without
        # any cost is said once, by the caller)
        if monitor.filter and _has_costs(con, first, day):
            result.unmatched.append(f"monitor {monitor.id}: no usage cost from {first} to {day} with "
                                    f"{json.dumps(monitor.filter, sort_keys=True)} (filter values must match the lake's "
                                    "exactly, case included)")
        return
    pairs = np.char.add(np.char.add(data["k"].astype(str), "\x1f"), data["cur"].astype(str))
    series, index = np.unique(pairs, return_inverse=True)
    n_days = (day - first).days + 1
    days = (data["d"].astype("datetime64[D]") - np.datetime64(first)).astype(int)
    values = np.zeros((len(series), n_days))
    np.add.at(values, (index, days), data["c"])
    seen = np.full(len(series), n_days)
    np.minimum.at(seen, index, days)
    history = n_days - seen
    values[np.arange(n_days)[None, :] < seen[:, None]] = np.nan  # before a series' first cost: no data, not 0
    weekdays = (np.arange(n_days) + first.weekday()) % 7
    # and 7 training days before its test days (fewer: an expected cost of about nothing, the whole cost "abnormal")
    keep = history >= max(rules.min_history_days, rules.test_days + 7)
    for i in np.flatnonzero(~keep):
        key, cur = str(series[i]).split("\x1f")
        result.insufficient.append((monitor.id, key, cur, int(history[i])))
    if not keep.any():
        return
    found = detection.detect(values[keep], weekdays, rules.test_days, min_impact=monitor.min_impact,
                             min_impact_pct=monitor.min_impact_pct / 100)
    result.series += int(keep.sum())
    names, kept = series[keep], values[keep]
    for row in np.flatnonzero(found.flag.any(axis=1)):  # the series with an abnormal day: a handful
        key, cur = str(names[row]).split("\x1f")
        found_ivs = detection.intervals(found.flag[row], idle=kept[row] <= 0)
        for iv, earlier in _matched(known, monitor.id, key, cur, first, found_ivs):
            direction = "up" if iv.direction > 0 else "down"
            if earlier is not None:  # the same change, begun before the test days
                iv = detection.Interval(max(0, min(iv.start, (date.fromisoformat(str(earlier["start"])) - first).days)),
                                        iv.end, iv.direction, iv.open)
            # never over the days another anomaly of the series in its direction holds (one resolved before the change
            # came back): a day's cost is in one anomaly's impact
            if (free := _after_others(known, monitor.id, key, cur, direction, earlier, first + timedelta(days=iv.start),
                                      first + timedelta(days=iv.end))) is not None:
                iv = detection.Interval((free - first).days, iv.end, iv.direction, iv.open)
            span = slice(iv.start, iv.end + 1)
            actual, expected = kept[row, span], found.expected[row, span]
            impact = actual - expected
            start, end = first + timedelta(days=iv.start), first + timedelta(days=iv.end)
            total_expected = float(expected.sum())
            pct = float(impact.sum()) / abs(total_expected) * 100 if total_expected != 0 else None  # credits too
            series_sql = _series_sql(key_sql)
            exact = Decimal(con.execute(f"SELECT CAST(coalesce(sum(EffectiveCost), 0) AS VARCHAR) FROM Costs WHERE "
                                        f"{_where(monitor, start, end)} AND {series_sql}", [key, cur]).fetchone()[0])
            fresh = hashlib.sha256(f"{monitor.id}\x00{key}\x00{cur}\x00{start}".encode()).hexdigest()[:16]
            anomaly = Anomaly(
                id=earlier["id"] if earlier else fresh,
                monitor=monitor.id, key=key, currency=cur, start=start, end=end, state="open" if iv.open else "resolved",
                direction=direction, actual=exact, expected=_dec(expected.sum()),
                impact=exact - _dec(expected.sum()), max_daily_impact=_dec(impact[np.argmax(np.abs(impact))]), impact_pct=pct,
                severity=_severity(rules, pct))
            anomaly.causes = _causes(con, monitor, key_sql, key, cur, start, end, iv.direction)
            last = range(max(0, n_days - 30), n_days)
            anomaly.series = [{"day": (first + timedelta(days=i)).isoformat(),
                               "actual": None if np.isnan(kept[row, i]) else round(float(kept[row, i]), 6),
                               "expected": round(float(found.expected[row, i]), 6),
                               "lower": round(float(found.lower[row, i]), 6), "upper": round(float(found.upper[row, i]), 6)}
                              for i in last]
            result.anomalies.append(anomaly)
    # an open anomaly of an inspected series that no abnormal day continues is over (the baseline has learnt its level)
    seen = {a.id for a in result.anomalies}
    inspected = set(names.tolist())
    result.anomalies += [_restated(con, rules, monitor, key_sql, _resolved(a)) for a in known.values()
                         if a.get("monitor") == monitor.id and a.get("state") == "open"
                         and a["id"] not in seen and f"{a['key']}\x1f{a['currency']}" in inspected
                         and str(a["start"]) <= day.isoformat()]
    # a resolved one whose days a restatement changed since: its amounts follow the bill that stands (no new event)
    for a in known.values():
        if (a.get("monitor") == monitor.id and a.get("state") == "resolved" and a["id"] not in seen
                and f"{a['key']}\x1f{a['currency']}" in inspected and first.isoformat() <= str(a["end"])
                and str(a["start"]) <= day.isoformat()):
            again = _restated(con, rules, monitor, key_sql, _resolved(a))
            if again.actual != Decimal(str(a["actual"])):
                result.anomalies.append(again)


def _series_sql(key_sql: str) -> str:
    """The rows of one series, its key and currency bound as parameters."""
    return f"{key_sql} = ? AND coalesce(BillingCurrency, '') = ?"


def _resolved(saved: dict) -> Anomaly:
    """An open anomaly of the state, as it was last seen, resolved."""
    money = ("actual", "expected", "impact", "max_daily_impact")
    causes = [Cause(**{**c, **{k: Decimal(str(c[k])) for k in ("actual", "expected", "delta")}})
              for c in saved.get("causes") or []]
    kept = {f.name for f in fields(Anomaly)}
    return Anomaly(**{**{k: v for k, v in saved.items() if k in kept}, **{k: Decimal(str(saved[k])) for k in money},
                      "start": date.fromisoformat(str(saved["start"])), "end": date.fromisoformat(str(saved["end"])),
                      "state": "resolved", "causes": causes})


def _restated(con: duckdb.DuckDBPyConnection, rules: Rules, monitor: Monitor, key_sql: str, a: Anomaly) -> Anomaly:
    """A resolved anomaly with its actual cost read again from the lake: a month delivered again (restated) may have
    taken the abnormal costs away, and the anomaly then ends with what was charged (impact near 0), never with the
    amounts of a bill that no longer stands. Its days' actual values in ``series`` follow; the expected ones stay."""
    series_sql = _series_sql(key_sql)
    days = dict(con.execute(f"SELECT CAST(ChargePeriodStart AS DATE), CAST(sum(EffectiveCost) AS VARCHAR) FROM Costs WHERE "
                            f"{_where(monitor, a.start, a.end)} AND {series_sql} GROUP BY 1", [a.key, a.currency]).fetchall())
    actual = sum((Decimal(v) for v in days.values()), Decimal(0))
    if actual == a.actual:
        return a
    a.actual, a.impact = actual, actual - a.expected
    a.impact_pct = float(a.impact / abs(a.expected) * 100) if a.expected != 0 else None
    a.severity = _severity(rules, a.impact_pct)
    impacts = []
    for point in a.series:
        d = date.fromisoformat(str(point["day"]))
        if a.start <= d <= a.end:
            point["actual"] = round(float(days.get(d, 0)), 6)
            impacts.append(Decimal(str(days.get(d, 0))) - _dec(point["expected"]))
    a.max_daily_impact = max(impacts, key=abs) if len(impacts) == (a.end - a.start).days + 1 else a.impact
    return a


def _dec(value: float) -> Decimal:
    """A model value (expected cost, impact) as a decimal rounded to 6 places."""
    return Decimal(repr(round(float(value), 6)))




def _severity(rules: Rules, pct: float | None) -> str:
    size = abs(pct) if pct is not None else float("inf")
    return "critical" if size >= rules.severity.critical else "major" if size >= rules.severity.major else "minor"


def _causes(con: duckdb.DuckDBPyConnection, monitor: Monitor, key_sql: str, key: str, currency: str, start: date, end: date,
            direction: int) -> list[Cause]:
    """Per cause dimension, the values whose cost moved most over ``start``-``end`` against their expected cost (each
    day: the median of the same weekday's cost over the 4 weeks before; weeks before the series' first cost are no
    data, not zeros), with their share of the total delta."""
    where = (f"{_where(monitor, start - timedelta(days=28), end)} AND {key_sql} = {literal(key)} "
             f"AND coalesce(BillingCurrency, '') = {literal(currency)}")
    # one scan of the lake for every dimension: the rows read once, then per dimension, value and day
    per_dim = " UNION ALL ".join(f"SELECT {literal(name)} AS k, CAST({ident(column)} AS VARCHAR) AS v, d, sum(c) AS c "
                                 f"FROM base GROUP BY ALL" for column, name in CAUSES)
    lags = ", ".join(f"CASE WHEN g.d - {n} >= s.first THEN coalesce(l{n}.c, 0) END" for n in (7, 14, 21, 28))
    found = con.execute(f"""
        WITH base AS MATERIALIZED (SELECT {', '.join(ident(c) for c, _ in CAUSES)}, CAST(ChargePeriodStart AS DATE) AS d,
                                          EffectiveCost AS c FROM Costs WHERE {where}),
             r AS ({per_dim}),
             days AS (SELECT CAST(unnest(generate_series(DATE {literal(start.isoformat())},
                             DATE {literal(end.isoformat())}, INTERVAL 1 DAY)) AS DATE) AS d),
             grid AS (SELECT e.k, e.v, days.d FROM (SELECT DISTINCT k, v FROM r) e, days),
             x AS (SELECT g.k, g.v, coalesce(a.c, 0) AS actual,
                          coalesce(list_aggregate([{lags}], 'median'), 0) AS expected
                   FROM grid g CROSS JOIN (SELECT min(d) AS first FROM base) s
                   LEFT JOIN r a ON a.k = g.k AND a.v IS NOT DISTINCT FROM g.v AND a.d = g.d
                   LEFT JOIN r l7 ON l7.k = g.k AND l7.v IS NOT DISTINCT FROM g.v AND l7.d = g.d - 7
                   LEFT JOIN r l14 ON l14.k = g.k AND l14.v IS NOT DISTINCT FROM g.v AND l14.d = g.d - 14
                   LEFT JOIN r l21 ON l21.k = g.k AND l21.v IS NOT DISTINCT FROM g.v AND l21.d = g.d - 21
                   LEFT JOIN r l28 ON l28.k = g.k AND l28.v IS NOT DISTINCT FROM g.v AND l28.d = g.d - 28)
        SELECT k, v, CAST(sum(actual) AS VARCHAR), CAST(sum(expected) AS VARCHAR) FROM x GROUP BY k, v""").fetchall()
    out: list[Cause] = []
    for _, name in CAUSES:
        rows = [(v, a, e) for k, v, a, e in found if k == name]
        moves = [(v, Decimal(a), Decimal(e)) for v, a, e in rows]
        # shares of the moves in the anomaly's direction (the net of all moves can be small or of the other sign against
        # this baseline, a 4-week same-weekday median, on a trending series: a drop's only cause showed -600 %)
        total = sum((a - e for _, a, e in moves if (a - e) * direction > 0), Decimal(0))
        if total == 0:
            continue
        ranked = sorted(moves, key=lambda m: (-(m[1] - m[2]) * direction, str(m[0])))
        explained = Decimal(0)
        for v, a, e in ranked[:TOP_CAUSES]:
            delta = a - e
            if delta * direction <= 0 or explained / total >= Decimal("0.8"):
                break
            explained += delta
            kind = "new" if e == 0 else "removed" if a == 0 else "changed"
            out.append(Cause(name, v, a, e, delta, float(delta / total), kind))
    return out
