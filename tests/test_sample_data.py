"""The sample-data generator: schema-exact, parseable, self-consistent FocusCost CSVs, price sheets and exports."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import duckdb
import fsspec
import pytest

from hub.sample_data import (
    FOCUS_SCHEMA,
    PRICE_SHEET_SCHEMA,
    SCHEMAS,
    schema_columns,
    write_export,
    write_focus_cost_csv,
    write_price_sheet_csv,
)

ROWS = 3000


@pytest.fixture(scope="module")
def costs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("costs") / "costs.csv"
    write_focus_cost_csv(str(path), ROWS, seed=7)
    return path


def _con(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection with the CSV loaded, all text, as table ``v``."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE v AS SELECT * FROM read_csv('{path}', all_varchar = true, header = true)")
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_header_is_the_schema_and_row_count_is_exact(costs: Path) -> None:
    with open(costs, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == schema_columns(FOCUS_SCHEMA)
    assert len(header) == 96
    assert _one(_con(costs), "SELECT count(*) FROM v") == ROWS


def test_every_typed_value_parses(costs: Path) -> None:
    con = _con(costs)
    types = {"decimal": "DECIMAL(38,18)", "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN"}
    columns = json.loads((SCHEMAS / FOCUS_SCHEMA).read_text())["columns"]
    typed = [c for c in columns if c["type"] in types]
    bad = con.execute("SELECT " + ", ".join(f'count(*) FILTER (WHERE "{c["name"]}" IS NOT NULL '
                                            f'AND TRY_CAST("{c["name"]}" AS {types[c["type"]]}) IS NULL)' for c in typed)
                      + " FROM v").fetchone()
    assert bad is not None
    assert {c["name"]: n for c, n in zip(typed, bad, strict=True) if n} == {}
    row = con.execute("SELECT min(CAST(ChargePeriodStart AS TIMESTAMPTZ)), max(CAST(ChargePeriodEnd AS TIMESTAMPTZ)), "
                      "count(*) FILTER (WHERE CAST(ChargePeriodEnd AS TIMESTAMPTZ) - CAST(ChargePeriodStart AS TIMESTAMPTZ) "
                      "<> INTERVAL 1 DAY), sum(CAST(BilledCost AS DECIMAL(38,18))) FROM v").fetchone()
    assert row is not None
    assert (row[0].year, row[0].month, row[0].day) == (2024, 5, 1) and (row[1].month, row[1].day) == (6, 1)
    assert row[2] == 0 and row[3] > 0
    counts = con.execute("SELECT " + ", ".join(f'count("{c}")' for c in schema_columns(FOCUS_SCHEMA)) + " FROM v").fetchone()
    assert counts is not None and sum(n > 0 for n in counts) >= 85


def test_tags_are_json_objects(costs: Path) -> None:
    con = _con(costs)
    assert _one(con, "SELECT count(*) FROM v WHERE Tags IS NOT NULL AND NOT (json_valid(Tags) AND json_type(Tags) = 'OBJECT')") == 0
    assert _one(con, "SELECT count(*) FROM v WHERE Tags = '{}'") > 0
    assert _one(con, "SELECT count(*) FROM v WHERE Tags IS NULL") > 0
    assert _one(con, "SELECT count(*) FROM v WHERE json_extract_string(Tags, '$.cost-center') IS NOT NULL") > ROWS // 2


def test_costs_are_consistent(costs: Path) -> None:
    con = _con(costs)
    con.execute("CREATE TABLE t AS SELECT ChargeCategory, ChargeClass, PricingCategory, "
                + ", ".join(f"CAST({c} AS DECIMAL(38,18)) AS {c}" for c in (
                    "ListCost", "ContractedCost", "BilledCost", "EffectiveCost", "ListUnitPrice", "ContractedUnitPrice",
                    "PricingQuantity")) + " FROM v")
    assert _one(con, "SELECT count(*) FROM t WHERE abs(ListCost) < abs(ContractedCost) OR ListUnitPrice < ContractedUnitPrice") == 0
    assert _one(con, "SELECT count(*) FROM t WHERE abs(ListCost::DOUBLE - ListUnitPrice::DOUBLE * PricingQuantity::DOUBLE) > 1e-6 "
                     "OR abs(ContractedCost::DOUBLE - ContractedUnitPrice::DOUBLE * PricingQuantity::DOUBLE) > 1e-6") == 0
    assert _one(con, "SELECT count(*) FROM t WHERE PricingCategory = 'Standard' "
                     "AND (BilledCost <> ContractedCost OR EffectiveCost <> ContractedCost)") == 0
    kinds = {r[0] for r in con.execute("SELECT DISTINCT ChargeCategory FROM t").fetchall()}
    assert kinds == {"Usage", "Purchase"}
    assert _one(con, "SELECT count(*) FILTER (WHERE ChargeCategory = 'Usage') FROM t") > ROWS * 0.9


def test_cost_meters_are_in_the_price_sheet(costs: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    count = write_price_sheet_csv(str(prices), seed=7)
    with open(prices, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == schema_columns(PRICE_SHEET_SCHEMA)
    con = _con(costs)
    con.execute(f"CREATE TABLE p AS SELECT * FROM read_csv('{prices}', all_varchar = true, header = true)")
    assert _one(con, "SELECT count(*) FROM p") == count
    assert _one(con, "SELECT count(*) FROM v WHERE x_SkuMeterId NOT IN (SELECT MeterID FROM p)") == 0
    assert _one(con, "SELECT count(*) FROM v JOIN p ON p.MeterID = v.x_SkuMeterId AND p.PriceType = 'Consumption' "
                     "WHERE v.PricingCategory = 'Standard' AND (CAST(v.ContractedUnitPrice AS DECIMAL(38,18)) <> "
                     "CAST(p.UnitPrice AS DECIMAL(38,18)) OR CAST(v.ListUnitPrice AS DECIMAL(38,18)) <> "
                     "CAST(p.MarketPrice AS DECIMAL(38,18)))") == 0
    assert {r[0] for r in con.execute("SELECT DISTINCT Term FROM p").fetchall()} == {None, "P1Y", "P3Y"}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = (str(tmp_path / f"{n}.csv") for n in "abc")
    write_focus_cost_csv(a, 200, seed=3)
    write_focus_cost_csv(b, 200, seed=3)
    write_focus_cost_csv(c, 200, seed=4)
    assert Path(a).read_bytes() == Path(b).read_bytes() != Path(c).read_bytes()


def test_gzip_output(tmp_path: Path) -> None:
    path = tmp_path / "costs.csv.gz"
    write_focus_cost_csv(str(path), 50, gzip=True)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert len(fh.read().splitlines()) == 51


@pytest.mark.parametrize("gz", [False, True])
def test_write_export_manifest_matches_blobs(tmp_path: Path, gz: bool) -> None:
    root = tmp_path / "hub"
    path = write_export(str(root), rows=1001, parts=3, gzip=gz, run_id="run-1")
    assert path.startswith(str(root)) and path.endswith("/run-1/manifest.json")
    manifest = json.loads(Path(path).read_text())
    blobs = manifest["blobs"]
    assert manifest["blobCount"] == len(blobs) == 3
    assert manifest["dataRowCount"] == 1001 == sum(b["dataRowCount"] for b in blobs)
    assert manifest["byteCount"] == sum(b["byteCount"] for b in blobs)
    assert manifest["exportConfig"]["type"] == "FocusCost" and manifest["exportConfig"]["dataVersion"] == "1.0"
    assert manifest["exportConfig"]["resourceId"].endswith("/providers/Microsoft.CostManagement/exports/demo-costs")
    assert manifest["deliveryConfig"]["compressionMode"] == ("gzip" if gz else "none")
    assert manifest["runInfo"]["startDate"] == "2024-05-01T00:00:00" and manifest["runInfo"]["endDate"] == "2024-05-31T00:00:00"
    con = duckdb.connect()
    for blob in blobs:
        name = blob["blobName"]
        assert name.startswith("demo-costs/20240501-20240531/") and name.endswith(".csv.gz" if gz else ".csv")
        part = root / "msexports" / name
        assert part.stat().st_size == blob["byteCount"]
        assert _one(con, f"SELECT count(*) FROM read_csv('{part}', all_varchar = true)") == blob["dataRowCount"]
    assert max(p.stat().st_mtime_ns for p in Path(path).parent.iterdir()) == Path(path).stat().st_mtime_ns


def test_write_export_parts_concatenate_to_one_file(tmp_path: Path) -> None:
    single = tmp_path / "single.csv"
    write_focus_cost_csv(str(single), 300, seed=1)
    manifest = json.loads(Path(write_export(str(tmp_path / "hub"), rows=300, parts=2)).read_text())
    lines = []
    for blob in manifest["blobs"]:
        lines += (tmp_path / "hub" / "msexports" / blob["blobName"]).read_text().splitlines()[1:]
    assert lines == single.read_text().splitlines()[1:]


def test_price_sheet_export_on_an_fsspec_store() -> None:
    root = "memory://sample-data-test"
    path = write_export(root, export_type="PriceSheet", data_version="2023-05-01", export_name="prices", parts=2)
    fs, _ = fsspec.core.url_to_fs(root)
    with fsspec.open(path, "rb") as fh:
        manifest = json.loads(fh.read())
    assert manifest["exportConfig"]["type"] == "PriceSheet" and manifest["dataRowCount"] > 200
    for blob in manifest["blobs"]:
        assert fs.size(f"/sample-data-test/msexports/{blob['blobName']}") == blob["byteCount"]
    fs.rm("/sample-data-test", recursive=True)


def test_write_export_rejects_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_export(str(tmp_path), export_type="ActualCost")


def test_independent_shape(tmp_path: Path) -> None:
    """The benchmark's second shape: a quarter of the usage rows without list prices, their meters in a price sheet of
    tens of thousands of rows (tiers, reservations, savings plans, two offers), wide tags; it ingests cleanly."""
    from hub.sample_independent import Shape
    from hub.store import Store
    from pipelines.ingest import ingest

    root = tmp_path / "hub"
    shape = Shape(meters=600, resources=2000, subscriptions=20)
    prices = Path(write_export(str(root), export_type="PriceSheet", data_version="2023-05-01", export_name="prices",
                               shape=shape))
    sheet = Path(tmp_path / "sheet.csv")
    sheet.write_bytes(next(prices.parent.glob("*.csv")).read_bytes())  # ingesting deletes the export
    assert ingest(Store(str(root))).ok  # prices first, as bench/run.py does: the costs are backfilled on the way in
    costs = Path(write_export(str(root), rows=4000, shape=shape))
    con = duckdb.connect()
    con.execute(f"CREATE TABLE v AS SELECT * FROM read_csv('{next(costs.parent.glob('*.csv'))}', all_varchar = true)")
    con.execute(f"CREATE TABLE p AS SELECT * FROM read_csv('{sheet}', all_varchar = true)")
    assert [r[0] for r in con.execute("DESCRIBE v").fetchall()] == schema_columns(FOCUS_SCHEMA)
    missing = _one(con, "SELECT count(*) FILTER (WHERE coalesce(TRY_CAST(ListUnitPrice AS DOUBLE), 0) = 0) / count(*) "
                        "FROM v WHERE ChargeCategory = 'Usage'")
    assert 0.2 < missing < 0.3
    assert _one(con, "SELECT count(*) FROM v WHERE coalesce(TRY_CAST(x_EffectiveUnitPrice AS DOUBLE), 0) = 0 "
                     "AND ChargeCategory = 'Usage'") == 0
    assert _one(con, "SELECT count(*) FROM v WHERE (x_SkuMeterId, x_SkuOfferId) NOT IN "
                     "(SELECT (MeterID, OfferID) FROM p WHERE PriceType = 'Consumption')") == 0
    assert {r[0] for r in con.execute("SELECT DISTINCT PriceType FROM p").fetchall()} == {"Consumption", "ReservedInstance",
                                                                                          "SavingsPlan"}
    assert _one(con, "SELECT max(n) FROM (SELECT count(*) AS n FROM p WHERE PriceType = 'Consumption' GROUP BY MeterID, OfferID)") == 3
    assert _one(con, "SELECT count(*) FROM v WHERE Tags IS NOT NULL AND NOT (json_valid(Tags) AND json_type(Tags) = 'OBJECT')") == 0
    assert _one(con, "SELECT avg(length(Tags)) FROM v WHERE Tags <> '{}'") > 200

    result = ingest(Store(str(root)))
    assert result.ok and not result.renormalized, [r.error for r in result.all]
    lake = f"{root}/ingestion/Costs/**/*.parquet"
    assert _one(con, f"SELECT count(*) FROM '{lake}'") == 4000
    assert _one(con, f"SELECT count(*) FROM '{lake}' WHERE contains(x_SourceChanges, 'ListUnitPriceFromPriceSheet')") \
        == _one(con, "SELECT count(*) FROM v WHERE coalesce(TRY_CAST(ListUnitPrice AS DOUBLE), 0) = 0 AND ChargeCategory = 'Usage'")
    costs_run = next(r for r in result.records if r.dataset == "Costs")
    assert costs_run.validation["violations"] == 0
