"""A ``key=value`` folder is a folder name, never a Hive partition (defect: DuckDB read every such folder of a path as a
column: a hub under ``BillingCurrency=EUR/`` filed Azure, AWS and OCI USD rows as EUR, quarantined the other providers'
deliveries, and every catalog view of a hub under ``tenant=contoso/`` gained a ``tenant`` column)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
from conftest import DATA, make_hub

from hub import catalog
from hub.sample_data import write_export
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
AWS = DATA / "aws" / "aws-focus10-942rows.csv"
CUSTOM = "ingestion/Costs/2024/09/custom/team=data"


def test_key_value_folders_in_the_root_and_in_deliveries_are_not_columns(tmp_path: Path) -> None:
    root = make_hub(tmp_path / "BillingCurrency=EUR" / "tenant=contoso" / "hub")
    write_export(str(root), export_type="FocusCost", data_version="1.0", rows=40, month="2024-05", export_name="costs")
    aws = root / "exports" / "aws" / "focus" / "my-export" / "data" / "BILLING_PERIOD=2024-09" / "my-export-00001.csv"
    aws.parent.mkdir(parents=True)
    aws.write_text(AWS.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "exports" / "aws" / "focus" / "my-export" / "manifest.json").write_bytes(b"")
    custom = root / CUSTOM
    custom.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{DATA / 'focus' / 'focus_sample_1000.csv'}', nullstr = 'NULL', all_varchar = true, "
               f"hive_partitioning = false)) TO '{custom / 'ing1__part0.parquet'}' (FORMAT parquet)")
    (custom / "manifest.json").write_bytes(b"")

    records = ingest(Store(str(root))).records
    assert sorted(r.state for r in records) == ["committed"] * 3, [(r.state, r.error) for r in records]

    columns = {r[0] for r in catalog.connect(str(root)).execute("DESCRIBE Costs").fetchall()}
    assert not {"tenant", "team", "x_team", "BILLING_PERIOD"} & columns
    lake = f"read_parquet('{root}/ingestion/Costs/**/*.parquet', union_by_name = true, hive_partitioning = false)"
    assert not {"tenant", "team", "x_team"} & {r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {lake}").fetchall()}
    # every row keeps its own currency: the demo's and AWS's USD, the FinOps Foundation sample's USD
    shown = catalog.connect(str(root)).execute("SELECT ProviderName, BillingCurrency, count(*) FROM Costs GROUP BY ALL").fetchall()
    assert {c for _, c, _ in shown} == {"USD"} and sum(n for *_, n in shown) == 40 + 942 + 1000
    assert validate(str(root)).ok


def test_every_file_the_hub_reads_goes_through_the_scan_helper() -> None:
    """DuckDB's file functions guess Hive partitions unless told not to: the hub calls them only through
    ``transforms.typing.scan``, which says ``hive_partitioning = false``."""
    direct = re.compile(r"\bread_(parquet|csv|csv_auto|json|json_auto|ndjson)\s*\(|parquet_scan\s*\(")
    found = [f"{path.relative_to(REPO)}:{n}" for folder in ("hub", "pipelines", "transforms")
             for path in sorted((REPO / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if direct.search(line)]
    assert found == []
