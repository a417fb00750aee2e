"""``hub demo``: a realistic Azure export and price sheet, and (by default) an AWS Cost and Usage Report and an OCI FOCUS
report, ingested, summarised per provider and queried with DuckDB."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hub import catalog
from hub.runs import RunRecord
from hub.sample_data import keep_sample_months, write_export
from hub.sample_native import write_aws_cur, write_oci_focus
from hub.store import Store, glob_escape
from pipelines.ingest import ingest
from transforms.typing import literal, scan


@dataclass
class DemoSummary:
    root: str
    records: list[RunRecord]
    tables: list[tuple[str, list[str], list[tuple]]] = field(default_factory=list)
    example_sql: str = ""
    #: the example reads the lake's files directly (a local root); else through ``hub query``'s views
    local: bool = True


def run_demo(root: str, *, rows: int = 5000, month: str = "2024-05", other_clouds: bool = False) -> DemoSummary:
    """Create (or refresh) a demo hub at ``root`` and ingest one month of Azure costs and prices (``other_clouds``: and
    an AWS CUR of half as many rows and an OCI FOCUS report of a fifth)."""
    store = Store(root)
    store.probe()  # a remote root's bucket or container must be there: never created
    store.init_layout()
    keep_sample_months(store.source)  # the demo month (2024) is older than the default 13 months: the lake keeps it
    write_export(store.source, export_type="FocusCost", data_version="1.0", rows=rows, month=month, parts=2,
                 export_name="demo-costs")
    write_export(store.source, export_type="PriceSheet", data_version="2023-05-01", month=month, export_name="demo-prices")
    if other_clouds:
        write_aws_cur(store.source, month=month, rows=max(1, rows // 2))
        write_oci_focus(store.source, month=month, rows=max(1, rows // 5))
    result = ingest(store)
    files = glob_escape(os.path.join(store.root, "ingestion", "Costs")) + "/**/*.parquet"
    costs = scan("read_parquet", literal(files), "union_by_name = true", glob=True) if store.is_local else "Costs"
    by_month = (f"SELECT ProviderName AS provider, strftime(ChargePeriodStart, '%Y-%m') AS month, BillingCurrency AS currency, "
                f"count(*) AS rows, "
                f"CAST(round(sum(BilledCost), 2) AS VARCHAR) AS billed, "
                f"CAST(round(sum(EffectiveCost), 2) AS VARCHAR) AS effective "
                f"FROM {costs} GROUP BY ALL ORDER BY ALL")
    top = (f"SELECT ServiceName, BillingCurrency, CAST(round(sum(EffectiveCost), 2) AS VARCHAR) AS EffectiveCost "
           f"FROM {costs} GROUP BY ALL ORDER BY sum(EffectiveCost) DESC LIMIT 5")  # never two currencies in one sum
    summary = DemoSummary(store.url, result.recovered + result.records, example_sql=top, local=store.is_local)
    con = catalog.connect(store)  # remote roots read through the store's filesystem, as `hub query` does
    for title, sql in (("cost per provider and month", by_month), ("DuckDB: top 5 services by EffectiveCost", top)):
        rel = con.sql(sql)
        summary.tables.append((title, rel.columns, rel.fetchall()))
    return summary
