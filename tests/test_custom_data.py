"""Custom data dropped into ingestion/ with an empty manifest is normalized in place, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
from conftest import DATA, lake_rows

from hub import runs
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

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


def test_native_focus_file_with_every_column_as_text(hub_root: Path) -> None:
    """Defect B3: FOCUS exports converted to Parquet with every column as text (literal NULLs, dates without T/Z,
    Usage-based casing) were quarantined with InvalidValue."""
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    src = DATA / "focus/focus_sample_1000.csv"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}', all_varchar = true, nullstr = '__never__')) "
               f"TO '{folder / 'ing1__part0.parquet'}' (FORMAT parquet)")  # "NULL" and "" kept as text, as such tools write
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    rows = lake_rows(hub_root)
    expected = duckdb.sql(f"SELECT count(*), sum(CAST(BilledCost AS DECIMAL(38,18))), count(*) FILTER (WHERE ResourceName = 'NULL') "
                          f"FROM read_csv('{src}', all_varchar = true, nullstr = '__never__')").fetchall()[0]
    assert (len(rows), sum(r["BilledCost"] for r in rows)) == expected[:2] and expected[2] > 0
    assert not [r for r in rows if r["ResourceName"] in ("NULL", "")]  # nulls are nulls
    assert {r["ChargeFrequency"] for r in rows} <= {"Usage-Based", "One-Time", "Recurring"}
    assert min(r["ChargePeriodStart"] for r in rows).isoformat() == "2024-09-01T00:00:00+00:00"
    assert "AllowedValues:ChargeFrequency" not in validate(str(hub_root)).summary()


def test_boolean_money_column_is_refused(hub_root: Path) -> None:
    """Defect C16: a BOOLEAN money column was accepted (true -> 1.0); only numbers and text feed numbers."""
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT true AS BilledCost, 1.5 AS EffectiveCost, 'USD' AS BillingCurrency, "
               f"TIMESTAMP '2024-09-01' AS ChargePeriodStart) TO '{folder / 'ing1__part0.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "SchemaMismatch" and "BilledCost is BOOLEAN" in rec.error.message


def test_boolean_money_column_in_an_export_is_refused(hub_root: Path) -> None:
    from conftest import write_export

    part = hub_root / "bool.parquet"
    duckdb.sql(f"COPY (SELECT true AS BilledCost, 1.5 AS EffectiveCost, 'USD' AS BillingCurrency, "
               f"TIMESTAMP '2024-05-01' AS ChargePeriodStart, DATE '2024-05-01' AS ChargePeriodEnd) TO '{part}' (FORMAT parquet)")
    write_export(hub_root, {"part_0_0001.parquet": part.read_bytes()}, rows=1)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "SchemaMismatch" and "BilledCost is BOOLEAN" in rec.error.message


def test_listing_checkpoint_covers_custom_folders(hub_root: Path) -> None:
    """Custom folders join the watcher's checkpoint: read again once after the in-place normalization changed their
    files, then, final and unchanged, not read at all; a new file in the folder is a new delivery."""
    folder = _drop_focus_sample(hub_root)
    (folder / "manifest.json").write_text("{}")
    store, checkpoint = Store(str(hub_root)), {}
    manifest = f"{FOLDER}/manifest.json"
    assert [r.state for r in ingest(store, checkpoint=checkpoint).records] == ["committed"]
    assert manifest not in checkpoint  # its files were rewritten: the listing of the next pass decides
    assert ingest(store, checkpoint=checkpoint).records == [] and manifest in checkpoint
    reads = []
    original = Store.read_bytes
    Store.read_bytes = lambda self, r: reads.append(r) or original(self, r)  # type: ignore[method-assign]
    try:
        assert ingest(store, checkpoint=checkpoint).records == [] and manifest not in reads
        _drop_focus_sample(hub_root / "x")  # a second producer file, moved in beside the first
        (hub_root / "x" / FOLDER / "ing1__part0.parquet").rename(folder / "ing2__part0.parquet")
        again = ingest(store, checkpoint=checkpoint).records
    finally:
        Store.read_bytes = original  # type: ignore[method-assign]
    assert manifest in reads and [(r.state, r.rowsOut) for r in again] == [("committed", 2000)]
