"""`hub powerbi`: the Costs files the FinOps toolkit's storage Power BI reports read (columns, layout, statistics)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
import stores
from conftest import make_hub, rows_csv, write_export
from test_other_datasets import DETAILS, MCA_RECO

from hub import catalog, powerbi
from hub.demo import run_demo
from hub.errors import UsageError
from hub.store import Store
from pipelines.ingest import ingest

TRANSACTION = {"AccountName": "acct", "AccountOwnerEmail": "a@b", "Amount": "1200", "ArmSkuName": "Standard_D2s_v3",
               "BillingFrequency": "OneTime", "BillingMonth": "20240501", "Currency": "USD", "CurrentEnrollmentId": "8611537",
               "Description": "RI", "EventDate": "2024-05-03T00:00:00Z", "EventType": "Purchase", "MonetaryCommitment": "0",
               "Overage": "1200", "PurchasingEnrollment": "8611537", "PurchasingSubscriptionGuid": "S1", "Quantity": "1",
               "Region": "East US", "ReservationOrderId": "O1", "ReservationOrderName": "ri", "Term": "P3Y"}

#: The columns of the FOCUS 1.0 Cost Management export (the storage reports' Costs query needs every one).
EXPORT_1_0 = [c["name"] for c in json.loads((Path(__file__).parents[1] / "schemas/msexports/focuscost_1.0.json").read_text())["columns"]]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("pbi") / "hub")
    for month in ("2024-05", "2024-06"):
        assert all(r.state == "committed" for r in run_demo(root, rows=1200, month=month).records)
    return root


def _files(dest: Path, dataset: str = "Costs") -> list[Path]:
    return sorted((dest / dataset).rglob("*.parquet"))


def test_columns_layout_and_statistics(lake: str, tmp_path: Path) -> None:
    dest = tmp_path / "ingestion"
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", lake, "--out", str(dest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    files = _files(dest)
    assert len(files) == 2 and _files(dest, "Prices")
    for f in files:
        rel = f.relative_to(dest).as_posix()
        assert re.fullmatch(r"Costs/\d{4}/\d{2}/.+/costs\.parquet", rel), rel  # exact, case-sensitive dataset folder
        meta = pq.ParquetFile(f)
        names = meta.schema_arrow.names
        assert set(EXPORT_1_0) | {"CapacityReservationId", "CapacityReservationStatus"} <= set(names)
        assert not set(powerbi.contract()["forbidden"]) & set(names)  # the report adds these itself
        assert meta.schema_arrow.field("x_SkuTerm").type == "int64"
        assert str(meta.schema_arrow.field("ChargePeriodStart").type) == "timestamp[us, tz=UTC]"
        i = names.index("ChargePeriodStart")
        for g in range(meta.metadata.num_row_groups):
            group = meta.metadata.row_group(g)
            assert group.column(i).statistics is None  # ftk_Metadata keeps the file (it cannot decode INT64 statistics)
            assert group.column(names.index("BilledCost")).statistics is not None
            assert all(group.column(c).compression == "SNAPPY" for c in range(group.num_columns))


def test_rows_and_amounts_equal_the_lake(lake: str, tmp_path: Path) -> None:
    result = powerbi.publish(lake, str(tmp_path / "out"))
    assert result.rows == 2400
    published = duckdb.sql(f"SELECT count(*), sum(BilledCost), sum(EffectiveCost), count(DISTINCT x_InvoiceId), "
                           f"count(x_SkuMeterName) FROM read_parquet('{tmp_path}/out/Costs/**/*.parquet')").fetchall()[0]
    con = catalog.connect(lake)
    assert published == con.execute("SELECT count(*), sum(BilledCost), sum(EffectiveCost), count(DISTINCT InvoiceId), "
                                    "count(SkuMeter) FROM Costs").fetchall()[0]


def test_republish_replaces_and_removes_stale_files(lake: str, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    powerbi.publish(lake, str(dest))
    stale = dest / "Costs" / "2023" / "01" / "old" / "costs.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes((_files(dest)[0]).read_bytes())
    again = powerbi.publish(lake, str(dest))
    assert [Path(r).as_posix() for r in again.removed] == ["Costs/2023/01/old/costs.parquet"]
    assert len(_files(dest)) == 2 and not list(dest.rglob("*.tmp"))
    assert len(_files(dest, "Prices")) == 2  # one price sheet per month, replaced in place


def test_statistics_option(lake: str, tmp_path: Path) -> None:
    powerbi.publish(lake, str(tmp_path / "o"), statistics="int64")
    meta = pq.ParquetFile(_files(tmp_path / "o")[0]).metadata
    assert meta.row_group(0).column(meta.schema.to_arrow_schema().names.index("ChargePeriodStart")).statistics is not None
    bad = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", lake, "--out", str(tmp_path / "x"), "--statistics", "int96"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "statistics" in bad.stderr


def test_publish_to_blob_storage(lake: str) -> None:
    """The reports read an ADLS container (https://<account>.dfs.core.windows.net/ingestion): a real Azurite here."""
    with stores.azurite() as env:
        container = f"pbi{uuid.uuid4().hex[:10]}"
        fs = fsspec.filesystem("az", skip_instance_cache=True, **{"connection_string": env["AZURE_STORAGE_CONNECTION_STRING"]})
        fs.mkdir(container)
        dest = Store(f"az://{container}", connection_string=env["AZURE_STORAGE_CONNECTION_STRING"])
        result = powerbi.publish(lake, dest)
        assert len(result.folders) == 4  # Costs and Prices, two months each
        names = sorted(p.split("/", 1)[1] for p in fs.glob(f"{container}/Costs/**/*.parquet"))
        assert fs.glob(f"{container}/Prices/**/*.parquet")
        assert len(names) == 2 and all(n.endswith("/costs.parquet") for n in names)
        assert not fs.glob(f"{container}/**/*.tmp")


#: Columns the reports' queries read (and rename themselves) in each non-Costs dataset.
RAW_NEEDS = {
    "Prices": {"EffectiveStartDate", "EffectiveEndDate", "BasePrice", "MarketPrice", "UnitPrice", "Term", "UnitOfMeasure", "MeterId"},
    "CommitmentDiscountUsage": {"UsageDate", "InstanceFlexibilityRatio", "ReservedHours", "TotalReservedQuantity", "UsedHours",
                                "ReservationId", "ReservationOrderId", "InstanceFlexibilityGroup", "SkuName"},
    "Transactions": {"BillingMonth", "EventDate", "Amount", "MonetaryCommitment", "Overage", "Quantity", "Term", "CurrentEnrollmentId",
                     "PurchasingEnrollment", "BillingFrequency"},
    "Recommendations": {"LookBackPeriod", "Term", "FirstUsageDate", "RecommendedQuantity", "CostWithNoReservedInstancesJson",
                        "NetSavingsJson", "TotalCostWithReservedInstancesJson"},
}


def test_other_datasets_keep_their_export_columns(lake: str, tmp_path: Path) -> None:
    """The reports' Prices, CommitmentDiscountUsage, Transactions and Recommendations queries rename the export's own
    columns: the typed export is kept in raw/ (swapped with the lake folder) and published as it is."""
    root = tmp_path / "hub"
    make_hub(root)
    rid = "/providers/Microsoft.Billing/billingAccounts/8611537"
    exports = [("reservationdetails_2023-03-01", "ReservationDetails", "2023-03-01", DETAILS),
               ("reservationtransactions_2023-05-01_ea", "ReservationTransactions", "2023-05-01", TRANSACTION),
               ("reservationrecommendations_2023-05-01_mca", "ReservationRecommendations", "2023-05-01", MCA_RECO)]
    for i, (key, kind, version, row) in enumerate(exports):
        write_export(root, {"part_0_0001.csv": rows_csv(key, [row])}, export_type=kind, data_version=version, rows=1,
                     resource_id=rid, run_id=f"run{i}", folder=f"e{i}/20240501-20240531/run{i}")
    assert ingest(Store(str(root))).ok
    assert ingest(Store(str(root)), force=True).ok  # a replay replaces the raw copy too
    for dataset in ("CommitmentDiscountUsage", "Transactions", "Recommendations"):
        (raw,) = (root / "raw" / dataset).rglob("*.parquet")
        own = "export~e1" if dataset == "Recommendations" else ""  # each recommendations export has its own folder
        assert raw.parent.relative_to(root / "raw") == Path(dataset, "2024", "05", "providers/microsoft.billing/billingaccounts/8611537", own)
        assert {n.lower() for n in RAW_NEEDS[dataset]} <= {n.lower() for n in pq.read_schema(raw).names}, dataset
    dest = tmp_path / "pbi"
    powerbi.publish(str(root), str(dest))
    powerbi.publish(lake, str(tmp_path / "pbi2"))
    for dataset, base in (("CommitmentDiscountUsage", dest), ("Transactions", dest), ("Recommendations", dest), ("Prices", tmp_path / "pbi2")):
        files = _files(base, dataset)
        assert files, dataset
        names = {n.lower() for n in pq.read_schema(files[0]).names}  # the reports accept MeterId and MeterID
        assert {n.lower() for n in RAW_NEEDS[dataset]} <= names and not {"contractedunitprice", "x_sourcetype"} & names, dataset
    typed = duckdb.sql(f"SELECT typeof(EventDate), typeof(Amount), BillingMonth FROM '{_files(dest, 'Transactions')[0]}'").fetchall()
    assert typed == [("TIMESTAMP WITH TIME ZONE", "DECIMAL(38,18)", "20240501")]
    prices = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/pbi2/Prices/**/*.parquet')").fetchall()[0][0]
    assert prices == catalog.connect(lake).execute("SELECT count(*) FROM Prices").fetchall()[0][0]


def test_raw_copies_follow_retention(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from hub.settings import Settings
    from pipelines.retention import apply

    root = tmp_path / "hub"
    make_hub(root)
    write_export(root, {"part_0_0001.csv": rows_csv("reservationdetails_2023-03-01", [DETAILS])}, export_type="ReservationDetails",
                 data_version="2023-03-01", rows=1)
    assert ingest(Store(str(root))).ok
    settings = Settings()
    settings.retention.ingestion.months = 2
    deleted = {d.path for d in apply(Store(str(root)), settings, now=datetime(2025, 1, 1, tzinfo=timezone.utc)).deletions}
    assert {"ingestion/CommitmentDiscountUsage/2024/05", "raw/CommitmentDiscountUsage/2024/05"} <= deleted
    assert not list((root / "raw").rglob("*.parquet"))


def test_refuses_to_publish_into_the_hub(lake: str) -> None:
    before = sorted(Path(lake).rglob("*"))
    for out in (lake, f"{lake}/ingestion", str(Path(lake).parent)):
        with pytest.raises(UsageError, match="overlaps the hub root"):
            powerbi.publish(lake, out)
    assert sorted(Path(lake).rglob("*")) == before  # untouched


def _snapshot(root: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_refuses_links_into_the_hub(lake: str, tmp_path: Path) -> None:
    """Defect: --out through a link to <root>/ingestion passed the string comparison, removed the lake's Parquet files and
    wrote Power BI files in their place. Paths are compared resolved: a link to the root or an area, or a link inside the
    output leading into the hub, is the same usage error (exit code 2) and nothing in the hub changes."""
    before = _snapshot(lake)
    (tmp_path / "to-ingestion").symlink_to(Path(lake) / "ingestion", target_is_directory=True)
    (tmp_path / "to-root").symlink_to(lake, target_is_directory=True)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "Costs").symlink_to(Path(lake) / "ingestion" / "Costs", target_is_directory=True)
    for out in ("to-ingestion", "to-root", "to-root/raw/x", "nested"):
        with pytest.raises(UsageError, match="overlaps the hub root"):
            powerbi.publish(lake, str(tmp_path / out))
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", lake, "--out", str(tmp_path / "to-ingestion")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "overlaps the hub root" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(lake) == before  # every lake file, byte for byte
    assert not list((tmp_path / "nested").rglob("costs.parquet"))


def test_refuses_an_area_linked_elsewhere(lake: str, tmp_path: Path) -> None:
    """A hub whose ingestion/ is a link to another disk: publishing to that disk's folder is publishing into the lake."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "ingestion").symlink_to(Path(lake) / "ingestion", target_is_directory=True)
    before = _snapshot(lake)
    with pytest.raises(UsageError, match="overlaps the hub root"):
        powerbi.publish(str(hub), str(Path(lake) / "ingestion"))
    assert _snapshot(lake) == before


def test_a_publish_killed_while_replacing_prices_never_shows_both_runs(lake: str, tmp_path: Path) -> None:
    """Review: a folder's new files were put in before the previous run's files went: a publish killed (or a report
    refreshed) in between read every price twice (652 rows for 326)."""
    import os
    import shutil

    from hub.sample_data import write_export as deliver

    root, dest = tmp_path / "hub", tmp_path / "pbi"
    shutil.copytree(lake, root)
    powerbi.publish(str(root), str(dest))

    def may() -> list[str]:
        return sorted(p.name for p in (dest / "Prices/2024/05").rglob("*.parquet"))

    (old,) = may()
    deliver(str(root), export_type="PriceSheet", data_version="2023-05-01", month="2024-05", run_id="new-prices",
            export_name="demo-prices")
    assert ingest(Store(str(root))).ok
    expected = catalog.connect(str(root)).execute("SELECT count(*) FROM Prices").fetchall()[0][0]
    repo = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", str(root), "--out", str(dest)], capture_output=True,
                            cwd=repo, env={**os.environ, "HUB_CRASH_AT": "powerbi-previous-removed", "PYTHONPATH": str(repo)})
    assert killed.returncode == 137, killed.stderr.decode()[-2000:]
    assert may() == []  # the previous run's prices gone, the new ones not yet in: fewer for a moment, never both
    left = next((dest / "Prices/2024/05").rglob("*.tmp"))  # the killed publish's staged file
    os.utime(left, (left.stat().st_atime - 7200, left.stat().st_mtime - 7200))
    powerbi.publish(str(root), str(dest))
    assert not left.exists()  # swept: older than an hour
    (new,) = may()
    assert new != old and new.startswith("new-prices")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{dest}/Prices/**/*.parquet')").fetchall()[0][0] == expected


def test_two_publishes_at_once_both_finish(lake: str, tmp_path: Path) -> None:
    """Review: two publishes to one output shared a temporary name; one failed with FileNotFoundError (2 of 10)."""
    from concurrent.futures import ThreadPoolExecutor

    for i in range(3):
        with ThreadPoolExecutor(2) as pool:
            done = [f.result() for f in [pool.submit(powerbi.publish, lake, str(tmp_path / f"pbi{i}")) for _ in range(2)]]
        assert [d.rows for d in done] == [done[0].rows] * 2
    assert not list(tmp_path.rglob("*.tmp"))
