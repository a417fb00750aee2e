"""Alibaba's OSS bill subscription names its files without an extension (``<uid>_BillingItemDetail_<yyyymmdd>``, as its
API documentation's examples show; the files are zip archives of CSV): such a file is read by its content (zip,
gzip, Parquet or CSV text) instead of being ignored (the delivery was IngestionFilesNotFound)."""

from __future__ import annotations

import gzip
import io
import zipfile
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from conftest import make_hub

from hub.sources import native
from hub.store import Store
from pipelines.ingest import ingest

#: Alibaba bill detail rows (OSS subscription field names): BilledCost (PretaxAmount) 8.50 + 1.25 = 9.75, CNY.
BILL = (
    "BillingCycle,AccountID,OwnerID,ProductCode,ProductName,UsageStartTime,UsageEndTime,Item,InstanceID,Region,"
    "Currency,PretaxGrossAmount,PretaxAmount,Usage,UsageUnit\n"
    "2024-05,1234567890,5678,ecs,Elastic Compute Service,2024-05-10 08:00:00,2024-05-10 09:00:00,PayAsYouGoBill,i-1,"
    "China (Hangzhou),CNY,10.00,8.50,1,Hour\n"
    "2024-05,1234567890,5678,oss,Object Storage Service,2024-05-11 08:00:00,2024-05-11 09:00:00,PayAsYouGoBill,b-1,"
    "China (Hangzhou),CNY,1.50,1.25,10,GB\n"
)
NAME = "1234567890_BillingItemDetail_202405"


def zipped(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, BILL)
    return buf.getvalue()


def deliver(root: Path, files: dict[str, bytes]) -> None:
    folder = root / "exports/alibaba/bills/2024-05"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text("")


def lake(root: Path) -> list[tuple]:
    files = [str(f) for f in root.glob("ingestion/Costs/**/*.parquet")]
    if not files:
        return []
    return duckdb.sql(f"SELECT BillingCurrency, sum(BilledCost), count(*) FROM read_parquet({files!r}) GROUP BY ALL").fetchall()


@pytest.mark.parametrize("data", [
    BILL.encode(),                                  # CSV text
    gzip.compress(BILL.encode()),                   # gzip
    zipped(f"{NAME}.csv"),                          # a zip of a CSV (the subscription's format)
    zipped(NAME),                                   # a zip whose member has no extension either
], ids=["csv", "gzip", "zip", "zip-of-extensionless"])
def test_a_bill_file_without_an_extension_is_read_by_its_content(tmp_path: Path, data: bytes) -> None:
    root = make_hub(tmp_path / "hub")
    deliver(root, {NAME: data, "README": b"not a bill"})  # a file of another name stays unread
    result = ingest(Store(str(root)))
    assert [r.state for r in result.all] == ["committed"], [r.error for r in result.all]
    assert lake(root) == [("CNY", D("9.75"), 2)]
    (rec,) = result.all
    assert rec.totalsIn == {"CNY": {"BilledCost": "9.750000000000000000", "EffectiveCost": "9.750000000000000000"}}
    assert [p.blob.split("/")[-1].split("!")[0] for p in rec.parts] == [NAME]


def test_only_the_providers_documented_names_are_read_without_an_extension(tmp_path: Path) -> None:
    assert native.is_data_file("alibaba", "exports/alibaba/x/1234567890_BillingItemDetail_20240510")
    assert native.is_data_file("alibaba", "exports/alibaba/x/169**_InstanceDetail_202405")
    assert not native.is_data_file("alibaba", "exports/alibaba/x/README")
    assert not native.is_data_file("alibaba", "exports/alibaba/x/1234567890_BillingItemDetail_2024")
    assert not native.is_data_file("tencent", "exports/tencent/x/1234567890_BillingItemDetail_20240510")
    root = make_hub(tmp_path / "hub")
    deliver(root, {"README": b"not a bill"})
    (rec,) = ingest(Store(str(root))).all
    assert (rec.state, rec.error.code) == ("quarantined", "IngestionFilesNotFound")
