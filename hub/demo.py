"""``hub demo``: a realistic export and price sheet, ingested, summarised and queried with DuckDB."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import duckdb

from hub.runs import RunRecord
from hub.sample_data import write_export
from hub.settings import Settings
from hub.store import SETTINGS, Store
from pipelines.ingest import ingest


@dataclass
class DemoSummary:
    root: str
    records: list[RunRecord]
    tables: list[tuple[str, list[str], list[tuple]]] = field(default_factory=list)
    example_sql: str = ""


def run_demo(root: str, *, rows: int = 5000, month: str = "2024-05") -> DemoSummary:
    """Create (or refresh) a demo hub at ``root`` and ingest one month of costs and prices."""
    store = Store(root)
    store.init_layout()
    if not store.exists(SETTINGS):
        store.write_bytes(SETTINGS, Settings().to_json().encode())
    write_export(store.url, export_type="FocusCost", data_version="1.0", rows=rows, month=month, parts=2,
                 export_name="demo-costs")
    write_export(store.url, export_type="PriceSheet", data_version="2023-05-01", month=month, export_name="demo-prices")
    result = ingest(store)
    costs = os.path.join(store.root, "ingestion", "Costs", "**", "*.parquet")
    by_month = (f"SELECT strftime(ChargePeriodStart, '%Y-%m') AS month, BillingCurrency AS currency, count(*) AS rows, "
                f"CAST(round(sum(BilledCost), 2) AS VARCHAR) AS billed, "
                f"CAST(round(sum(EffectiveCost), 2) AS VARCHAR) AS effective "
                f"FROM read_parquet('{costs}') GROUP BY ALL ORDER BY ALL")
    top = (f"SELECT ServiceName, CAST(round(sum(EffectiveCost), 2) AS VARCHAR) AS EffectiveCost "
           f"FROM read_parquet('{costs}') GROUP BY ServiceName ORDER BY sum(EffectiveCost) DESC LIMIT 5")
    summary = DemoSummary(store.url, result.recovered + result.records, example_sql=top)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for title, sql in (("cost per month", by_month), ("DuckDB: top 5 services by EffectiveCost", top)):
        rel = con.sql(sql)
        summary.tables.append((title, rel.columns, rel.fetchall()))
    return summary
