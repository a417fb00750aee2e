"""Custom data dropped into ingestion/ with an empty manifest is normalized in place, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
from conftest import DATA, lake_rows

from hub import runs
from hub.store import Store
from hub.validate import validate
from pipelines.msexports_etl import ingest

FOLDER = "ingestion/Costs/2024/09/aws/123456789012"


def _drop_focus_sample(root: Path, name: str = "ing1__part0.parquet") -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True)
    src = DATA / "focus/focus_sample_1000.csv"
    # the producer's Parquet: FOCUS columns typed, dates fixed to ISO UTC, literal NULLs as nulls
    duckdb.sql(f"""COPY (SELECT * REPLACE (CAST(BilledCost AS DECIMAL(38,18)) AS BilledCost,
        CAST(EffectiveCost AS DECIMAL(38,18)) AS EffectiveCost, CAST(ListCost AS DECIMAL(38,18)) AS ListCost,
        CAST(ContractedCost AS DECIMAL(38,18)) AS ContractedCost,
        CAST(ChargePeriodStart AS TIMESTAMP) AS ChargePeriodStart, CAST(ChargePeriodEnd AS TIMESTAMP) AS ChargePeriodEnd,
        CAST(BillingPeriodStart AS TIMESTAMP) AS BillingPeriodStart, CAST(BillingPeriodEnd AS TIMESTAMP) AS BillingPeriodEnd)
        FROM read_csv('{src}', nullstr = 'NULL', all_varchar = true)) TO '{folder / name}' (FORMAT parquet)""")
    return folder


def test_empty_manifest_normalizes_the_folder_in_place(hub_root: Path) -> None:
    folder = _drop_focus_sample(hub_root)
    (folder / "manifest.json").write_bytes(b"")
    result = ingest(Store(str(hub_root)))
    (rec,) = result.records
    assert rec.state == "committed", rec.error
    assert (rec.dataset, rec.month, rec.scope, rec.rowsOut) == ("Costs", "2024-09", "aws/123456789012", 1000)
    rows = lake_rows(hub_root)
    assert len(rows) == 1000 and sorted(p.name for p in folder.iterdir()) == ["ing1__part0.parquet", "manifest.json"]
    assert {r["ChargeFrequency"] for r in rows} <= {"Usage-Based", "One-Time", "Recurring"}  # 'Usage-based' fixed
    assert all(r["x_Id"] is not None for r in rows)  # the non-FOCUS column Id is kept as x_Id
    assert {r["ProviderName"] for r in rows} == {"AWS", "Microsoft", "Oracle"}
    assert "AllowedValues:ChargeFrequency" not in validate(str(hub_root)).summary()
    assert ingest(Store(str(hub_root))).records == []  # processed once


def test_bad_custom_file_is_quarantined_and_left_alone(hub_root: Path) -> None:
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    (folder / "ing1__part0.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "CorruptFile" and "ing1__part0.parquet" in rec.error.file
    assert (folder / "ing1__part0.parquet").read_bytes() == b"PAR1 this is not parquet"
    assert [r.state for r in runs.load_all(Store(str(hub_root)))] == ["quarantined"]
