"""Reading an allocation: the preview of candidate rules, the chargeback export of a locked month, and Dynatrace's
cost-allocation records."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb

from hub import catalog
from hub.allocation import CURRENCY_KEY_SQL, compute, locked, months
from hub.allocation.rules import Rules
from hub.allocation.split import round_lines
from hub.errors import UsageError
from hub.store import Store
from transforms.typing import ident, literal, scan

#: Dynatrace's field names -> dimensions.
FIELDS = {"COSTCENTER": "cost_center", "PRODUCT": "product"}


@dataclass(frozen=True)
class Delta:
    dimension: str
    value: str
    currency: str
    current: Decimal
    candidate: Decimal

    @property
    def delta(self) -> Decimal:
        return self.candidate - self.current


def _sums(path: str, rules: Rules) -> dict[tuple[str, str, str], Decimal]:
    out: dict[tuple[str, str, str], Decimal] = {}
    con = duckdb.connect()  # never the process's default connection (shared, the machine's time zone, no limits)
    try:
        for dim in rules.dimensions:
            column = ident(rules.column(dim))
            for value, currency, amount in con.execute(f"SELECT {column}, {CURRENCY_KEY_SQL}, sum(x_Amount) FROM "
                                                       f"{scan('read_parquet', literal(path))} GROUP BY ALL").fetchall():
                out[(dim, value, currency)] = out.get((dim, value, currency), Decimal(0)) + amount
    finally:
        con.close()
    return out


def preview(store: Store, current: Rules, candidate: Rules, only: list[str] | None = None) -> list[Delta]:
    """Per dimension, value and currency: the amount under the current rules and under the candidate, for ``only``
    these months (default: every month but those the candidate's ``lock_before`` keeps as they are: they would not
    change), without writing anything. Values whose amount changes, largest change first."""
    before: dict[tuple[str, str, str], Decimal] = {}
    after: dict[tuple[str, str, str], Decimal] = {}
    with tempfile.TemporaryDirectory(prefix="hub-preview-") as tmp:
        for month in [m for m in (only if only is not None else months(store)) if not locked(store, candidate, m)]:
            for rules, into, name in ((current, before, "current"), (candidate, after, "candidate")):
                path = os.path.join(tmp, f"{name}-{month}.parquet")
                compute(store, month, rules, path, run_id=f"preview-{name}")
                for key, amount in _sums(path, rules).items():
                    into[key] = into.get(key, Decimal(0)) + amount
    out = [Delta(d, v, c, before.get((d, v, c), Decimal(0)), after.get((d, v, c), Decimal(0)))
           for d, v, c in sorted(set(before) | set(after))]
    return sorted((x for x in out if x.delta != 0), key=lambda x: (-abs(x.delta), x.dimension, x.value, x.currency))


def chargeback(store: Store, rules: Rules, month: str, dimension: str = "cost_center") -> str:
    """The chargeback CSV of a locked month: one line per value and currency, amounts rounded to the cent so that
    the lines add up to the printed total of each currency (largest remainder), then a TOTAL line per currency."""
    if dimension not in rules.dimensions:
        raise UsageError(f"--dimension must be one of {', '.join(rules.dimensions)}, not {dimension!r}")
    if not rules.lock_before or f"{month}-01" >= rules.lock_before.isoformat():
        raise UsageError(f"{month} is not locked (lock_before in config/allocation.json): a chargeback is of a closed month")
    con = catalog.connect(store)
    try:
        column = ident(rules.column(dimension))
        # in the metric the locked month was allocated in (cost_metric may have changed since: the month keeps its own)
        metric = con.execute("SELECT min(x_CostMetric) FROM Allocation WHERE x_Month = ?", [month]).fetchone()[0]
        rows = con.execute(f"SELECT {column}, {CURRENCY_KEY_SQL}, sum(x_Amount), min(x_AllocationRunId), min(x_ConfigVersion) "
                           f"FROM Allocation WHERE x_Month = ? AND x_CostMetric = ? GROUP BY ALL",
                           [month, metric]).fetchall() if metric else []
    finally:
        con.close()
    if not rows:
        raise UsageError(f"no allocation of {month}: run `hub allocate --month {month}` first")
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(["Month", rules.column(dimension), "BillingCurrency", metric, "AllocationRunId", "ConfigVersion"])
    for currency in sorted({r[1] for r in rows}):
        lines = {r[0]: r[2] for r in rows if r[1] == currency}
        rounded = round_lines(lines, Decimal("0.01"))
        run, version = next((r[3], r[4]) for r in rows if r[1] == currency)
        for value in sorted(lines):
            out.writerow([month, value, currency, f"{rounded[value]:.2f}", run, version])
        out.writerow([month, "TOTAL", currency, f"{sum(rounded.values(), Decimal(0)):.2f}", run, version])
    return text.getvalue()


def records(store: Store, rules: Rules, field: str, start: date, end: date, *, threads: int | None = None,
            memory_limit: str | None = None, timeout: float | None = None) -> list[dict]:
    """Dynatrace's cost-allocation records, ``{date, capability, key, costs, usage}``, plus ``currency``: per day (UTC),
    service category (shared rows: ``Shared: <pool>``), value of the field's dimension and billing currency (amounts of
    different currencies are never added; null where a row has none), the allocated cost and the number of cost lines.
    ``field``: COSTCENTER or PRODUCT; days ``start`` to ``end`` inclusive. ``threads``, ``memory_limit``: the DuckDB
    connection's bounds; ``timeout``: seconds after which the query is interrupted (``duckdb.InterruptException``)."""
    dimension = FIELDS.get(field.upper())
    if dimension is None or dimension not in rules.dimensions:
        known = ", ".join(f for f, d in FIELDS.items() if d in rules.dimensions)
        raise UsageError(f"field must be one of {known}, not {field!r}")
    con = catalog.connect(store, threads=threads, memory_limit=memory_limit)
    timer = threading.Timer(timeout, con.interrupt) if timeout else None
    if timer:
        timer.start()
    try:
        column = ident(rules.column(dimension))
        if months := catalog.other_metric_months(con, rules.cost_metric, start, end):
            raise UsageError(f"the allocation of {months} is in another cost type than {rules.cost_metric}: ask for a "
                             "period allocated in it")
        if months := catalog.unallocated_months(con, start, end):
            raise UsageError(f"{months} not allocated, or allocated before their Costs changed (their costs would read as 0 "
                             "or stale): run `hub allocate --month` for them")
        rows = con.execute(f"""SELECT CAST(ChargePeriodStart AS DATE) AS day,
                   coalesce(ServiceCategory, 'Shared: ' || split_part(x_PoolPeriodId, '/', 1), 'Other') AS capability,
                   {column} AS key, BillingCurrency AS currency, sum(x_Amount) AS costs, count(*) AS usage
            FROM Allocation WHERE x_CostMetric = ? AND CAST(ChargePeriodStart AS DATE) BETWEEN ? AND ?
            GROUP BY ALL ORDER BY ALL""", [rules.cost_metric, start, end]).fetchall()
    finally:
        if timer:
            timer.cancel()
        con.close()
    return [{"date": d.isoformat(), "capability": c, "key": k, "currency": cur, "costs": format(a.normalize(), "f"), "usage": n}
            for d, c, k, cur, a, n in rows]
