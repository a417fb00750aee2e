"""Checks that refuse Costs which cannot be right, whatever their source (exports, custom data).

- A mandatory money column (BilledCost, EffectiveCost) empty on every row while rows were written: the file's
  header spelled it in a way no mapping knows, so committing would report zero cost (``SchemaMismatch``); empty on
  some rows: costs the bill does not state (``InvalidValue``).
- Rows charged outside the period the delivery says it covers (a manifest's startDate/endDate, a custom folder's
  month): none of them inside it, or some more than 31 days away. They would be filed under the wrong month
  (``PeriodMismatch``); late rows of the previous month beside the period's own rows are fine.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from hub import convert
from hub.errors import HubError
from hub.runs import CUSTOM, RunRecord

#: Mandatory FOCUS money columns that may never be empty on every row of a Costs delivery.
MONEY = ("BilledCost", "EffectiveCost")
#: How far from the delivery's period rows may be charged (late usage, inclusive ends).
PERIOD_SLACK = timedelta(days=31)


def month_end(start: datetime) -> datetime:
    """The first instant of the month after ``start``'s month."""
    first = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def check_costs(con: duckdb.DuckDBPyConnection, rec: RunRecord, outputs: list[str], start: datetime, end: datetime, *,
                inside: bool = True) -> None:
    """Raise when the written Costs files ``outputs`` cannot be committed (see the module docstring). ``rec`` holds
    the run's validation (null counts per column) and rows written. ``inside=False``: the period comes from the rows'
    own billing period (native FOCUS files), whose charges may all lie just before it (late usage billed next month):
    only rows far from it are refused, corrections, adjustments and credits (of any earlier month's usage) never."""
    rules = (rec.validation or {}).get("rules", {})
    manifest = rec.manifest.removeprefix(CUSTOM)  # a custom folder's record names its manifest so: the path without it
    for column in MONEY:
        empty = rules.get(f"NotNull:{column}", 0)
        if rec.rowsOut and empty >= rec.rowsOut:
            err = HubError(f"{column} is empty on every row (a column header spelled differently?)",
                           file=rec.parts[0].blob if rec.parts else manifest, code="SchemaMismatch")
        elif empty:  # a cost the bill does not state: FOCUS has no null cost, and totals would not reconcile to it
            err = HubError(f"{column} is empty on {empty} of {rec.rowsOut} rows", file=rec.parts[0].blob if len(rec.parts) == 1
                           else manifest, code="InvalidValue")
        else:
            continue
        err.column = column
        raise err
    # a native bill's corrections, adjustments and credits may concern usage of any earlier month (Google's
    # corrections keep their usage dates): only the other rows must lie near the billing period (a row without a
    # ChargeCategory is checked too: NOT IN on a NULL was no condition at all). A purchase of a later service period
    # (a renewal paid early) is charged over its billing period by its mapping (schemas/alibaba, schemas/tencent)
    usual = "true" if inside else ("coalesce(ChargeClass, '') <> 'Correction' AND coalesce(ChargeCategory, '') "
                                   "NOT IN ('Adjustment', 'Credit')")
    first, last, found = con.execute(
        f"SELECT min(ChargePeriodStart) FILTER (WHERE {usual}), max(ChargePeriodStart) FILTER (WHERE {usual}), "
        f"count(*) FILTER (WHERE ChargePeriodStart >= ? AND ChargePeriodStart < ?) FROM {convert.parquet_source(outputs)}",
        [start, end]).fetchall()[0]
    if first is not None and (not (found or not inside) or first < start - PERIOD_SLACK or last >= end + PERIOD_SLACK):
        raise HubError(f"rows are charged from {first:%Y-%m-%d} to {last:%Y-%m-%d}, {found} of them in the delivery's "
                       f"period {start:%Y-%m-%d} to {end - timedelta(microseconds=1):%Y-%m-%d}", file=manifest,
                       code="PeriodMismatch")
