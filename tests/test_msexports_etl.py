"""End-to-end ingestion into a real local store: layout, typing, all-or-nothing, replay, retention."""

from __future__ import annotations

import io
import shutil
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATA, SCOPE, parquet_in, schema_csv, write_export

from hub import runs
from hub.export_schemas import _load, supported
from hub.store import Store
from pipelines.ingest import ingest
from transforms.costs import output_columns

DEST = f"ingestion/Costs/2024/05/{SCOPE}"


def q(sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(sql).fetchall()


def test_layout_names_and_types(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3), "part_1_0001.csv.gz": schema_csv("focuscost_1.0", 2, start=3)},
                 rows=5)
    result = ingest(Store(str(hub_root)))
    assert result.ok, result.records[0].error
    assert parquet_in(hub_root) == [f"{DEST}/run1__part_0_0001.parquet", f"{DEST}/run1__part_1_0001.parquet"]
    meta = pq.ParquetFile(hub_root / DEST / "run1__part_0_0001.parquet")
    assert meta.metadata.row_group(0).column(0).compression == "SNAPPY"
    schema = meta.schema_arrow
    assert schema.field("BilledCost").type == pa.decimal128(38, 18)
    assert schema.field("BillingAccountId").type == pa.string()
    assert schema.field("ChargePeriodStart").type == pa.timestamp("us", tz="UTC")
    assert schema.field("x_SkuIsCreditEligible").type == pa.bool_()
    # every file of the run has the same schema
    assert pq.read_schema(hub_root / DEST / "run1__part_1_0001.parquet") == schema
    rec = result.records[0]
    assert (rec.state, rec.dataset, rec.month, rec.scope, rec.rowsIn, rec.rowsOut) == ("committed", "Costs", "2024-05", SCOPE, 5, 5)
    # hand-computed: BilledCost = i + 0.25 for i in 0..4 -> 11.25, one currency value "s0".."s4" per row
    assert sum(Decimal(v["BilledCost"]) for v in rec.totalsOut.values()) == Decimal("11.25")
    assert rec.totalsIn == rec.totalsOut and rec.reconciled


def test_values_ids_dates_nulls(hub_root: Path) -> None:
    schema = _load("focuscost_1.0")
    cols = [c.name for c in schema.columns]
    row = dict.fromkeys(cols, "")
    row.update(BillingAccountId="8611537", BilledCost="1E-05", EffectiveCost="12345678901234567890.123456789",
               ChargePeriodStart="2024-05-01T00:00:00.0000000Z", ChargePeriodEnd="05/02/2024", BillingPeriodStart="2024-05-01",
               BillingPeriodEnd="2024-06-01T02:00:00+02:00", ResourceName="NULL", Tags='{"a": "x,y", "b": "say \\"hi\\""}',
               ChargeDescription="line1\nline2, with comma")

    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\n') else v

    text = "\ufeff" + ",".join(cols) + "\r\n" + ",".join(cell(row[c]) for c in cols) + "\r\n"
    write_export(hub_root, {"part_0_0001.csv": text}, rows=1)
    assert ingest(Store(str(hub_root))).ok
    t = pq.read_table(hub_root / DEST / "run1__part_0_0001.parquet").to_pylist()[0]
    assert t["BillingAccountId"] == "8611537"
    assert t["BilledCost"] == Decimal("0.00001")
    assert t["EffectiveCost"] == Decimal("12345678901234567890.123456789")
    utc = timezone.utc
    assert t["ChargePeriodStart"] == datetime(2024, 5, 1, tzinfo=utc)
    assert t["ChargePeriodEnd"] == datetime(2024, 5, 2, tzinfo=utc)
    assert t["BillingPeriodStart"] == datetime(2024, 5, 1, tzinfo=utc)
    assert t["BillingPeriodEnd"] == datetime(2024, 6, 1, tzinfo=utc)
    assert t["ResourceName"] is None and t["SkuId"] is None  # literal NULL and empty cells are nulls, never ""
    assert t["Tags"] == row["Tags"]  # quoted commas and doubled quotes survive exactly
    assert t["ChargeDescription"] == "line1\nline2, with comma"


@pytest.mark.parametrize("key", supported())
def test_every_supported_version(hub_root: Path, key: str) -> None:
    schema = _load(key)
    write_export(hub_root, {"part_0_0001.csv": schema_csv(key, 4)}, export_type=schema.export_type,
                 data_version=schema.data_version, rows=4)
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed", rec.error
    assert rec.schemaKey == key and rec.missingColumns == [] and rec.extraColumns == []
    files = parquet_in(hub_root, schema.dataset)
    assert len(files) == 1
    names = pq.read_schema(hub_root / files[0]).names
    if schema.dataset == "Costs":  # every Costs file has the same columns, whatever the export version
        assert names == [n for n, _ in output_columns()]
    assert {"x_SourceName", "x_SourceType", "x_SourceVersion", "x_IngestionTime"} <= set(names)
    lineage = q(f"SELECT DISTINCT x_SourceType, x_SourceVersion FROM '{hub_root / files[0]}'")
    assert rec.rowsOut == 4 and lineage == [(schema.export_type, schema.data_version)]  # an actual export alone: every row


def test_ea_sample_bom_us_dates(hub_root: Path) -> None:
    sample = (DATA / "azure/EA_AmortizedCost_Small.csv").read_bytes()
    assert sample.startswith(b"\xef\xbb\xbf")
    write_export(hub_root, {"part_0_0001.csv": sample}, export_type="AmortizedCost", data_version="2021-10-01",
                 resource_id="/providers/Microsoft.Billing/billingAccounts/8611537", rows=28, start_date="2023-09-01")
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed", rec.error
    out = hub_root / "ingestion/Costs/2023/09/providers/microsoft.billing/billingaccounts/8611537/amortizedcost/run1__part_0_0001.parquet"
    rows = q(f"SELECT count(*), min(ChargePeriodStart), max(ChargePeriodStart), sum(EffectiveCost), min(x_BillingAccountId) FROM '{out}'")[0]
    # hand check against the CSV itself, parsed independently with Python's csv module
    import csv

    src = list(csv.DictReader(io.StringIO(sample.decode("utf-8-sig"))))
    assert rows[0] == len(src) == 28
    assert rows[4] == "8611537"
    # money is DECIMAL(38,18): each cell rounded half away from zero at the 18th decimal
    assert rows[3] == sum(Decimal(r["Cost"]).quantize(Decimal("1e-18"), rounding=ROUND_HALF_UP) for r in src)
    dates = sorted(datetime.strptime(r["Date"], "%m/%d/%Y").replace(tzinfo=timezone.utc) for r in src)
    assert (rows[1], rows[2]) == (dates[0], dates[-1])


def test_header_only_export_changes_nothing(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    assert ingest(Store(str(hub_root))).ok
    before = parquet_in(hub_root)
    empty = (DATA / "azure/EA_NoRows.csv").read_bytes()
    write_export(hub_root, {"part_0_0001.csv": empty}, export_type="ActualCost", data_version="2021-10-01", run_id="run2")
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed" and rec.rowsIn == 0
    assert parquet_in(hub_root) == before


def test_data_row_count_zero_changes_nothing(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    assert ingest(Store(str(hub_root))).ok
    before = {p: (hub_root / p).read_bytes() for p in parquet_in(hub_root)}
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 0)}, rows=0, run_id="run2")
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed" and rec.rowsIn == 0 and [(p.rows, p.output) for p in rec.parts] == [(0, "")]  # read, not assumed
    assert {p: (hub_root / p).read_bytes() for p in parquet_in(hub_root)} == before


def test_data_row_count_zero_with_rows_is_row_count_mismatch(hub_root: Path) -> None:
    """Defect C15: ``dataRowCount: 0`` with a non-empty part committed 0 rows without reading it."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=0)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "RowCountMismatch" and "read 3 rows" in rec.error.message
    assert parquet_in(hub_root) == []


def test_new_run_replaces_previous_run_of_the_folder(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3), "part_1_0001.csv": schema_csv("focuscost_1.0", 3)},
                 rows=6, manifest_extra={"runInfo": {"runId": "run1", "startDate": "2024-05-01", "submittedTime": "2024-05-02T00:00:00Z"}})
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="run2",
                 manifest_extra={"runInfo": {"runId": "run2", "startDate": "2024-05-01", "submittedTime": "2024-05-03T00:00:00Z"}})
    result = ingest(Store(str(hub_root)))
    assert result.ok
    assert parquet_in(hub_root) == [f"{DEST}/run2__part_0_0001.parquet"]
    assert result.records[1].replaced == [f"{DEST}/run1__part_0_0001.parquet", f"{DEST}/run1__part_1_0001.parquet"]
    assert q(f"SELECT count(*) FROM '{hub_root}/ingestion/Costs/**/*.parquet'")[0][0] == 2


def test_all_or_nothing_failure_in_part_3_of_4_keeps_previous_run(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 5)}, rows=5)
    assert ingest(Store(str(hub_root))).ok
    before = {p: (hub_root / p).read_bytes() for p in parquet_in(hub_root)}
    parts = {f"part_{i}_0001.csv": schema_csv("focuscost_1.0", 2, start=2 * i) for i in range(4)}
    parts["part_2_0001.csv"] = parts["part_2_0001.csv"].replace("5.25", "five")  # part 3 has a bad number
    manifest = write_export(hub_root, parts, rows=8, run_id="run2")
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "quarantined" and rec.error.code == "InvalidValue"
    assert "part_2_0001.csv" in rec.error.file and rec.error.message == "column BilledCost: a value is not a number (data row 2)"
    assert "five" not in rec.error.message  # messages never repeat file content
    assert {p: (hub_root / p).read_bytes() for p in parquet_in(hub_root)} == before
    assert not (hub_root / "config/staging").exists() or not any((hub_root / "config/staging").iterdir())
    assert (hub_root / manifest).exists() and len(list((hub_root / manifest).parent.iterdir())) == 5  # nothing deleted


def test_injected_failure_after_part_3_keeps_previous_run(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 5)}, rows=5)
    assert ingest(Store(str(hub_root))).ok
    before = parquet_in(hub_root)
    write_export(hub_root, {f"part_{i}_0001.csv": schema_csv("focuscost_1.0", 2) for i in range(4)}, rows=8, run_id="run2")
    rec = ingest(Store(str(hub_root)), fail_after_parts=3).records[0]
    assert rec.state == "quarantined" and rec.error.code == "InternalError"
    assert parquet_in(hub_root) == before
    # the fault is gone: --retry ingests the export and replaces the previous run whole
    rec = ingest(Store(str(hub_root)), retry=True).records[0]
    assert rec.state == "committed" and len(parquet_in(hub_root)) == 4


def test_replay_same_manifest_is_idempotent(hub_root: Path) -> None:
    manifest = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 7)}, rows=7)
    store = Store(str(hub_root))
    assert ingest(store).ok
    first = {p: q(f"SELECT count(*), sum(BilledCost) FROM '{hub_root / p}'") for p in parquet_in(hub_root)}
    assert ingest(store).records == []  # already committed: nothing to do
    assert ingest(store, force=True).ok  # forced re-run of the same manifest
    # the same manifest delivered again to another folder (same runId)
    shutil.copytree((hub_root / manifest).parent, hub_root / "msexports/e1/redelivered")
    (hub_root / "msexports/e1/redelivered/manifest.json").write_text(
        (hub_root / manifest).read_text().replace("e1/20240501-20240531/run1/", "e1/redelivered/"))
    assert ingest(store).ok
    assert {p: q(f"SELECT count(*), sum(BilledCost) FROM '{hub_root / p}'") for p in parquet_in(hub_root)} == first
    assert q(f"SELECT count(*) FROM '{hub_root}/ingestion/**/*.parquet'")[0][0] == 7


def test_parquet_parts(hub_root: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(schema_csv("pricesheet_2023-05-01_ea", 3))
    pq_path = tmp_path / "in.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar = true)) TO '{pq_path}' (FORMAT parquet)")
    write_export(hub_root, {"part_0_0001.parquet": pq_path.read_bytes()}, export_type="PriceSheet", data_version="2023-05-01", rows=3)
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed", rec.error
    (out,) = parquet_in(hub_root, "Prices")
    assert out.endswith("run1__part_0_0001.parquet")
    assert pq.read_schema(hub_root / out).field("ContractedUnitPrice").type == pa.decimal128(38, 18)
    assert q(f"SELECT sum(ContractedUnitPrice) FROM '{hub_root / out}'")[0][0] == Decimal("3.75")  # 0.25 + 1.25 + 2.25


def test_unknown_columns_kept_missing_columns_null(hub_root: Path) -> None:
    text = schema_csv("focuscost_1.0", 2).splitlines()
    header = text[0].split(",")
    drop = header.index("x_SkuTier")
    lines = [",".join([c for j, c in enumerate(line.split(",")) if j != drop] + [v]) for line, v in zip(text, ["x_NewColumn", "a", "b"], strict=True)]
    write_export(hub_root, {"part_0_0001.csv": "\n".join(lines) + "\n"}, rows=2)
    rec = ingest(Store(str(hub_root))).records[0]
    assert rec.state == "committed" and rec.missingColumns == ["x_SkuTier"] and rec.extraColumns == ["x_NewColumn"]
    (out,) = parquet_in(hub_root)
    assert q(f"SELECT count(x_SkuTier), string_agg(x_NewColumn, ',' ORDER BY x_NewColumn) FROM '{hub_root / out}'")[0] == (0, "a,b")


def test_retention_zero_deletes_source_only_after_success(hub_root: Path) -> None:
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    good = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    bad = write_export(hub_root, {"part_0_0001.csv": "garbage"}, rows=2, run_id="run2", folder="e2/x/run2")
    records = {r.manifest: r for r in ingest(Store(str(hub_root))).records}
    assert records[good].state == "committed" and records[good].sourceDeleted
    assert not (hub_root / good).exists() and not (hub_root / good).with_name("part_0_0001.csv").exists()
    assert records[bad].state == "quarantined" and (hub_root / bad).exists()
    assert (hub_root / bad).with_name("part_0_0001.csv").exists()


def test_status_records_are_json_in_the_store(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    ingest(Store(str(hub_root)))
    (rec,) = runs.load_all(Store(str(hub_root)))
    assert (hub_root / "config/runs" / f"{rec.key}.json").exists()
    assert rec.parts[0].rows == 2 and rec.parts[0].output == f"{DEST}/run1__part_0_0001.parquet"


def test_a_number_too_large_for_the_lake_is_told_as_such_not_as_no_number(hub_root: Path) -> None:
    """Review of stop 39: a cost of 1E+30 (a number, beyond DECIMAL(38,18)'s 20 integer digits) was reported as "a
    value is not a number"."""
    part = schema_csv("focuscost_1.0", 2, start=4).replace("5.25", "1E+30")
    write_export(hub_root, {"part_0_0001.csv": part}, rows=2)
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "InvalidValue")
    assert rec.error.message.startswith("column BilledCost: a value is beyond 20 digits before the decimal point"), rec.error.message
