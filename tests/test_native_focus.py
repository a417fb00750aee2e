"""Other clouds' native FOCUS exports under exports/<provider>/ (hub.sources.native), on real samples and hand rows."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from conftest import DATA, make_hub

from hub import runs
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest
from transforms.costs import TAG_CODES

AWS = DATA / "aws" / "aws-focus10-942rows.csv"
OCI = DATA / "oci" / "oci-focus10-7rows.csv"
REPO = Path(__file__).resolve().parents[1]


def deliver(root: Path, provider: str, folder: str, files: dict[str, bytes | str], manifest: bytes = b"") -> Path:
    """Write a delivery's files, then its (empty) manifest.json last."""
    base = root / "exports" / provider / folder
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    base.mkdir(parents=True, exist_ok=True)
    (base / "manifest.json").write_bytes(manifest)
    return base


def one(sql: str, *params: object) -> object:
    return duckdb.connect().execute(sql, list(params)).fetchall()[0][0]


def lake(root: Path, provider: str | None = None) -> str:
    where = f"/{provider}" if provider else ""
    return f"read_parquet('{root}/ingestion/Costs/*/*{where}/**/*.parquet', union_by_name = true)"


def keyed(root: Path, columns: str) -> dict:
    """The lake's rows as {first column: the other columns}, ``columns`` a SELECT list, in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return {r[0]: r[1:] for r in con.execute(f"SELECT {columns} FROM {lake(root)}").fetchall()}


def csv_sum(path: Path, column: str) -> D:
    """A column's exact sum, from the text of the file (hand-checkable, independent of the pipeline)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return sum((D(r[column]) for r in csv.DictReader(fh) if r[column] not in ("", "NULL")), D(0))


def test_aws_focus_export_lands_in_its_month_and_account(tmp_path: Path) -> None:
    """An AWS Data Exports FOCUS 1.0 delivery as AWS lays it out (data/BILLING_PERIOD=..., metadata/): one run into
    ingestion/Costs/2024/09/aws/<payer>/, every row, BilledCost and EffectiveCost totals as in the file."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "focus/my-export", {
        "data/BILLING_PERIOD=2024-09/my-export-00001.csv.gz": gzip.compress(AWS.read_bytes()),
        "metadata/BILLING_PERIOD=2024-09/my-export-Manifest.json": json.dumps({"dataFiles": [
            "s3://bucket/focus/my-export/data/BILLING_PERIOD=2024-09/my-export-00001.csv.gz"]}),
    })
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.destination == "ingestion/Costs/2024/09/aws/1234567890123" and rec.month == "2024-09"
    assert rec.rowsIn == rec.rowsOut == 942 and rec.reconciled
    billed = csv_sum(AWS, "BilledCost")
    assert D(rec.totalsIn["USD"]["BilledCost"]) == billed == D(rec.totalsIngested["USD"]["BilledCost"])
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed
    assert one(f"SELECT sum(EffectiveCost) FROM {lake(root)}") == csv_sum(AWS, "EffectiveCost")
    assert one(f"SELECT list(DISTINCT x_SourceProvider || '|' || x_SourceName || '|' || x_SourceType) FROM {lake(root)}") \
        == ["AWS|AWS Data Exports|FOCUS"]
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE ProviderName <> 'AWS'") == 0
    assert ingest(Store(str(root))).records == []  # replay: nothing to do
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_a_focus_1_2_export_is_told_by_its_header(tmp_path: Path) -> None:
    """Review of stop 38: an AWS FOCUS 1.2 export whose rows leave the 1.2 columns empty (no invoice yet) was labelled
    x_SourceVersion 1.0 (told per row from their values): a later version's columns in the header say its version."""
    head, *lines = AWS.read_text().splitlines(keepends=True)
    with_1_2 = head.rstrip("\r\n") + ",InvoiceId,SkuMeter\n" + "".join(line.rstrip("\r\n") + ",,\n" for line in lines[:5])
    for name, text, version in (("v12", with_1_2, "1.2"), ("v10", head + "".join(lines[:5]), "1.0")):
        root = make_hub(tmp_path / name)
        deliver(root, "aws", "focus/BILLING_PERIOD=2024-09", {"a.csv": text})
        assert ingest(Store(str(root))).ok
        assert duckdb.sql(f"SELECT list(DISTINCT x_SourceVersion), count(*) FROM {lake(root)}").fetchall() == [([version], 5)]


def test_oci_rows_of_two_months_go_to_two_folders(tmp_path: Path) -> None:
    """One delivery whose rows belong to two billing periods: one run (and folder) per month, committed together."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "oci", "FOCUS Reports/2024/10/01", {"0001.csv.gz": gzip.compress(OCI.read_bytes())})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert sorted((r.month, r.destination, r.rowsOut) for r in result.records) == [
        ("2024-09", "ingestion/Costs/2024/09/oci/20209880", 6), ("2024-10", "ingestion/Costs/2024/10/oci/20209880", 1)]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(OCI, "BilledCost")
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE ChargeFrequency = 'Usage-Based'") == 7  # 'Usage-based' fixed
    report = validate(str(root))
    assert report.violations == 0, report.summary()


OCI_PRE_1_0 = (
    "BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,BilledCost,"
    "EffectiveCost,ListCost,ListUnitPrice,PricingQuantity,PricingUnit,ChargeCategory,ChargeFrequency,Provider,Publisher,"
    "InvoiceIssuer,Region,UsageQuantity,UsageUnit,ServiceName,ServiceCategory,SubAccountId,ResourceId,SkuId,Tags,"
    "oci_CompartmentName,ChargeSubcategory\n"
    "T1,USD,2024-09-01T00:00Z,2024-10-01T00:00Z,2024-09-21T17:00Z,2024-09-21T18:00Z,0.012,0.012,0.024,0.0015,16,GB Hours,"
    "usage,usage-based,Oracle,Oracle,Oracle,us-sanjose-1,8,GB Hours,COMPUTE,Compute,ocid1.tenancy,ocid1.instance.x,B92307,"
    '"{""team"": ""db""}",prod,\n'
    "T1,USD,2024-09-01T00:00Z,2024-10-01T00:00Z,2024-09-22T00:00Z,2024-09-23T00:00Z,-5,-5,,,,,"
    "Usage,One-Time,Oracle,Oracle,Oracle,us-sanjose-1,,,COMPUTE,Compute,ocid1.tenancy,,,,prod,Credit\n"
    # a usage refund: stays Usage (a Correction) with its negative quantity (review: it became a Purchase, its quantity
    # dropped, and hub validate flagged the lake the hub wrote)
    "T1,USD,2024-09-01T00:00Z,2024-10-01T00:00Z,2024-09-23T00:00Z,2024-09-24T00:00Z,-0.012,-0.012,-0.024,0.0015,-16,GB Hours,"
    "usage,usage-based,Oracle,Oracle,Oracle,us-sanjose-1,-8,GB Hours,COMPUTE,Compute,ocid1.tenancy,ocid1.instance.x,B92307,"
    ",prod,Refund\n"
)


def test_oci_pre_1_0_headers_are_renamed_and_fixed(tmp_path: Path) -> None:
    """OCI's FOCUS reports use pre-1.0 headers: Provider/Publisher/InvoiceIssuer -> *Name, Region -> RegionId and
    RegionName, UsageQuantity/UsageUnit -> ConsumedQuantity/ConsumedUnit, ChargeSubcategory Credit -> ChargeCategory
    Credit; lower-case enumerations are spelled as FOCUS does; oci_* columns kept as x_oci_*."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "oci", "FOCUS Reports/2024/09/22", {"focus.csv": OCI_PRE_1_0})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    con = duckdb.connect()
    rows = con.execute(f"SELECT ProviderName, PublisherName, InvoiceIssuerName, RegionId, RegionName, ConsumedQuantity, "
                       f"ConsumedUnit, ChargeCategory, ChargeFrequency, x_oci_CompartmentName, BilledCost, x_SourceVersion "
                       f"FROM {lake(root)} ORDER BY ChargePeriodStart").fetchall()
    assert rows == [("Oracle", "Oracle", "Oracle", "us-sanjose-1", "us-sanjose-1", D(8), "GB Hours", "Usage", "Usage-Based",
                     "prod", D("0.012"), "1.0-preview"),
                    ("Oracle", "Oracle", "Oracle", "us-sanjose-1", "us-sanjose-1", None, None, "Credit", "One-Time",
                     "prod", D(-5), "1.0-preview"),
                    ("Oracle", "Oracle", "Oracle", "us-sanjose-1", "us-sanjose-1", D(-8), "GB Hours", "Usage", "Usage-Based",
                     "prod", D("-0.012"), "1.0-preview")]
    assert one(f"SELECT list(ChargeClass ORDER BY ChargePeriodStart) FROM {lake(root)}") == [None, None, "Correction"]
    assert validate(str(root)).ok


GCP_VIEW = (
    "BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,"
    "BilledCost,EffectiveCost,ListCost,ContractedCost,ChargeCategory,ChargeClass,ChargeFrequency,PricingCategory,ProviderName,"
    "PublisherName,InvoiceIssuerName,ServiceName,ServiceCategory,SubAccountId,RegionId,RegionName,Tags,x_Credits,x_Project\n"
    "01ABCD-234567-89EFGH,Main,EUR,2024-09-01 07:00:00,2024-09-30 00:00:00,2024-09-05 00:00:00,2024-09-05 23:59:59,"
    "10.50,9.50,12,10.50,usage,,usage-based,standard,Google Cloud,Google Cloud,Google Cloud,Compute Engine,Compute,"
    'proj-1,europe-west1,Belgium,"[{""key"": ""env"", ""value"": ""prod""}, {""key"": ""team"", ""value"": ""data""}]",'
    '"[{""amount"": -1.0}]",proj-1\n'
)


def test_google_view_deviations_are_fixed_and_flagged(tmp_path: Path) -> None:
    """Google's FOCUS view: lower-case enumerations, Tags as an array of {key, value} (-> object, TagsFromArray, the
    array kept in x_SourceValues), BillingPeriodEnd on the month's last day (-> first of the next month), an
    inclusive ChargePeriodEnd 23:59:59 (-> next midnight)."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "gcp", "focus-extract/2024-09", {"part-000.csv": GCP_VIEW})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.destination == "ingestion/Costs/2024/09/gcp/01abcd-234567-89efgh"
    row = duckdb.connect().execute(
        f"SELECT ChargeCategory, ChargeFrequency, PricingCategory, Tags, CAST(BillingPeriodEnd AS VARCHAR), "
        f"CAST(ChargePeriodEnd AS VARCHAR), x_SourceChanges, x_SourceValues FROM {lake(root)}").fetchall()[0]
    assert row[:3] == ("Usage", "Usage-Based", "Standard")
    assert json.loads(row[3]) == {"env": "prod", "team": "data"}
    assert row[4] == "2024-10-01 00:00:00+00" and row[5] == "2024-09-06 00:00:00+00"
    assert "TagsFromArray" in row[6].split(",")
    originals = json.loads(row[7])
    assert json.loads(originals["Tags"]) == [{"key": "env", "value": "prod"}, {"key": "team", "value": "data"}]
    assert originals["BillingPeriodEnd"].startswith("2024-09-30")


def view_month(tmp_path: Path, name: str, body: bytes | str) -> Path:
    """A hub with one file of Google's FOCUS view in a month folder of exports/gcp/, ingested (committed)."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "gcp", "focus/2024-09", {name: body})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return root


GCP_VIEW_PRICES = (
    "BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,BilledCost,"
    "EffectiveCost,ListCost,ContractedCost,ContractedUnitPrice,ListUnitPrice,PricingQuantity,PricingUnit,ChargeCategory,"
    "PricingCategory,ChargeDescription,ServiceName,ServiceCategory,SubAccountId,SkuId,SkuPriceId\n"
    + "".join(f"01ABCD-234567-89EFGH,EUR,2024-09-01 07:00:00,2024-09-30 07:00:00,2024-09-05 00:00:00,2024-09-05 01:00:00,"
              f"{r},usage,standard,{d},Compute Engine,Compute,proj-1,S1,S1-0\n" for d, r in [
                  ("ssd", "0.012434,0.012434,0.012434,0.012434,0.174592,0.174592,1,gibibyte month"),
                  ("core", "8,8,12,10,0.5,0.6,1,hour"),
                  ("requests", "1,1,1,1,0.4,0.4,1000000,count"),
                  ("consistent", "3,3,3,3,0.5,0.5,6,hour")]))


def test_google_view_pricing_quantity_is_the_quantity_used(tmp_path: Path) -> None:
    """Review of stop 35: Google's FOCUS view writes ``price.pricing_unit_quantity`` (the quantity a price is quoted
    for) as PricingQuantity and the price per that quantity as ContractedUnitPrice: the rules then "corrected"
    ContractedCost to one block's price (API requests 0.40 per million, 2.5 million used: 400000 instead of 1.00; a
    core 20 h at 0.50: 0.50 instead of 10, its negotiated saving 11.5 instead of 2). The quantity used is ContractedCost
    x PricingQuantity / ContractedUnitPrice, the unit prices per pricing unit (÷ the block size), flagged and the
    delivered values kept in x_SourceValues; a row whose quantity agrees with its cost is left as it is. By hand:
    ssd 0.012434 / 0.174592 = 0.0712174670087977 gibibyte months (15 significant digits); core 10 / 0.5 = 20 h; requests 1 x 1000000 / 0.4 =
    2500000 at 0.0000004; consistent 6 h x 0.5 = 3."""
    root = view_month(tmp_path, "part-000.csv", GCP_VIEW_PRICES)
    got = keyed(root, "ChargeDescription, ContractedCost, PricingQuantity, ContractedUnitPrice, ListUnitPrice, "
                      "x_NegotiatedDiscountSavings, x_SourceChanges, x_SourceValues")
    assert {k: v[:5] for k, v in got.items()} == {
        "ssd": (D("0.012434"), D("0.0712174670087977"), D("0.174592"), D("0.174592"), D(0)),
        "core": (D(10), D(20), D("0.5"), D("0.6"), D(2)),
        "requests": (D(1), D(2500000), D("0.0000004"), D("0.0000004"), D(0)),
        "consistent": (D(3), D(6), D("0.5"), D("0.5"), D(0)),
    }
    codes = {k: set((v[5] or "").split(",")) & {"PricingQuantityFromContractedCost", "UnitPricePerPricingUnit",
                                                 "ContractedCostCorrected"} for k, v in got.items()}
    assert codes == {"ssd": {"PricingQuantityFromContractedCost"}, "core": {"PricingQuantityFromContractedCost"},
                     "requests": {"PricingQuantityFromContractedCost", "UnitPricePerPricingUnit"}, "consistent": set()}
    assert "UnitPricePerPricingUnit,UnitPricePerPricingUnit" not in got["requests"][5]
    originals = json.loads(got["requests"][6])
    assert {k: D(originals[k]) for k in ("PricingQuantity", "ContractedUnitPrice", "ListUnitPrice")} == {
        "PricingQuantity": D(1000000), "ContractedUnitPrice": D("0.4"), "ListUnitPrice": D("0.4")}
    assert one(f"SELECT sum(ContractedCost) FROM {lake(root)}") == D("14.012434")
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def view_row(description: str, **fields: object) -> dict:
    """One row of Google's FOCUS BigQuery view as a newline-JSON extract writes it (the view's own spellings)."""
    return {"BillingAccountId": "01ABCD-234567-89EFGH", "BillingCurrency": "EUR", "BillingPeriodStart": "2024-09-01 07:00:00 UTC",
            "BillingPeriodEnd": "2024-09-30 07:00:00 UTC", "ChargePeriodStart": "2024-09-05 00:00:00 UTC",
            "ChargePeriodEnd": "2024-09-05 01:00:00 UTC", "ChargeCategory": "usage", "ChargeDescription": description,
            "PricingCategory": "standard", "ServiceName": "Compute Engine", "SubAccountId": "01ABCD-234567-89EFGH",
            "ServiceCategory": ["GCP", "Compute", "GCE", "VMs On Demand", "Cores: Per Core"], "SkuId": "S1", "SkuPriceId": "S1-0",
            "PricingUnit": "hour", "PricingQuantity": 1, "Tags": [], "x_Credits": [],
            "x_Project": {"id": "proj-1", "name": "Project One", "number": "123"}, **fields}


def cost(amount: float, price: float, credits: list | None = None) -> dict:
    billed = round(amount + sum(c["Amount"] for c in credits or []), 6)
    return {"BilledCost": billed, "EffectiveCost": billed, "ContractedCost": amount, "ListCost": amount,
            "ContractedUnitPrice": price, "ListUnitPrice": price, "x_Credits": credits or []}


def tag(key: str, value: str, kind: str, inherited: bool = False, namespace: str = "n/a") -> dict:
    return {"key": key, "value": value, "x_type": kind, "x_inherited": inherited, "x_namespace": namespace}


CUD = {"Name": "Committed use discount: CPU", "Amount": -0.8, "FullName": "projects/proj-1/regions/us-central1/commitments/c1",
       "Id": "cud-1", "Type": "COMMITTED_USAGE_DISCOUNT"}
GCP_VIEW_ROWS = [
    view_row("labelled", **cost(10, 0.5), Tags=[
        tag("env", "prod", "label"), tag("env", "staging", "project_label", True), tag("team", "data", "project_label", True),
        tag("cost-center", "42", "tag", True, "123456789"), tag("goog-k8s-cluster-name", "gke-1", "system_label")]),
    view_row("covered", **cost(2, 0.2, [CUD]), PricingCategory="committed", CommitmentDiscountCategory="Usage",
             CommitmentDiscountName=CUD["FullName"]),
    view_row("tax", ChargeCategory="tax", ServiceName="Invoice", ServiceCategory=None, PricingCategory=None, BilledCost=1.3, EffectiveCost=1.3,
             ContractedCost=1.3, ListCost=1.3, PricingUnit=None, PricingQuantity=None, SkuId=None, SkuPriceId=None),
    view_row("other project", **cost(3, 0.5), SubAccountId="proj-2", ServiceName="BigQuery",
             x_Project={"id": "proj-2", "name": "Project Two"}),
]


def test_google_view_tags_projects_commitments_and_categories(tmp_path: Path) -> None:
    """Review of stop 35, Google's FOCUS view (a newline-JSON extract): (1) Tags keep the resource's label over its
    project's (the array lists labels, system labels, project labels, tags: the last value of a key won) and key a
    Resource Manager tag namespace/key, as the detailed export does; (2) SubAccountId is the billing account on every
    row, the project in x_Project: the project is the sub-account (SubAccountFromProject), as in the detailed export,
    unless the row names another; (3) a committed-use row names its commitment but has no CommitmentDiscountId: the
    CUD credit's id, type Committed Use Discount, status Used (its commitment saving 2 - 1.2 = 0.8); (4) ServiceCategory
    is the pricing export's taxonomy list, null on tax: the ServiceName's FOCUS category (service_categories.csv),
    else Other. The delivered values stay in x_SourceValues; 0 FOCUS violations."""
    text = "\n".join(json.dumps(r) for r in GCP_VIEW_ROWS) + "\n"
    root = view_month(tmp_path, "focus-000000000000.json.gz", gzip.compress(text.encode()))
    got = keyed(root, "ChargeDescription, Tags, SubAccountId, SubAccountName, CommitmentDiscountId, CommitmentDiscountType, "
                      "CommitmentDiscountStatus, x_CommitmentDiscountSavings, ServiceCategory, x_SourceChanges, x_SourceValues")
    assert json.loads(got["labelled"][0]) == {"goog-k8s-cluster-name": "gke-1", "123456789/cost-center": "42", "env": "prod",
                                              "team": "data"}
    assert {k: v[1:3] for k, v in got.items()} == {"labelled": ("proj-1", "Project One"), "covered": ("proj-1", "Project One"),
                                                   "tax": ("proj-1", "Project One"), "other project": ("proj-2", None)}
    assert got["covered"][3:7] == ("cud-1", "Committed Use Discount", "Used", D("0.8"))
    assert {k: v[7] for k, v in got.items()} == {"labelled": "Compute", "covered": "Compute", "tax": "Other",
                                                 "other project": "Analytics"}
    codes = {k: set(v[8].split(",")) for k, v in got.items()}
    assert {"SubAccountFromProject", "ServiceCategoryFromServiceName"} <= codes["labelled"]
    assert "CommitmentDiscountIdFromCredits" in codes["covered"] and "SubAccountFromProject" not in codes["other project"]
    originals = json.loads(got["labelled"][9])
    assert originals["SubAccountId"] == "01ABCD-234567-89EFGH" and json.loads(originals["ServiceCategory"])[1] == "Compute"
    assert "SubAccountName" in originals and originals["SubAccountName"] is None  # the view had none
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_google_view_commitment_fees_are_purchases(tmp_path: Path) -> None:
    """Review of stop 35: a commitment's fee stayed a Usage row priced Committed in Google's view, a Recurring Purchase
    priced Standard from the detailed export (the same month, two ChargeCategory totals); the view's ChargeCategory
    ``error`` (a cost_type it does not know) was kept. Fee: Purchase, Recurring, Standard, its cost its EffectiveCost
    (5: the fee is charged hour by hour, nothing to amortize); ``error``: Adjustment, One-Time."""
    rows = [view_row("Commitment v1: Cpu in Americas for 1 Year", **cost(5, 0.025), PricingCategory="committed"),
            view_row("unknown", ChargeCategory="error", BilledCost=0.5, EffectiveCost=0.5, ContractedCost=0.5, ListCost=0.5,
                     PricingCategory=None, PricingUnit=None, PricingQuantity=None, SkuId=None, SkuPriceId=None)]
    root = view_month(tmp_path, "focus-000000000000.json", "\n".join(json.dumps(r) for r in rows) + "\n")
    got = keyed(root, "ChargeDescription, ChargeCategory, ChargeFrequency, PricingCategory, EffectiveCost, x_SourceChanges")
    assert {k: v[:4] for k, v in got.items()} == {
        "Commitment v1: Cpu in Americas for 1 Year": ("Purchase", "Recurring", "Standard", D(5)),
        "unknown": ("Adjustment", "One-Time", None, D("0.5"))}
    assert all("CommitmentFeeIsPurchase" in v[4].split(",") for v in got.values())
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_google_view_repairs_leave_corrections_and_odd_credits_alone(tmp_path: Path) -> None:
    """Review of this stop's change: a spend-based commitment's row (a COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE credit) got
    an id, type and status but no category (CommitmentDiscountCategoryNullIffIdNull); a correction of 10 h at 0.5
    costing -2 got PricingQuantity -40 and unit prices 0.05; an x_Credits cell that is not JSON (a CSV extract)
    quarantined the delivery. The category is Spend; a correction keeps its quantity and prices; such a cell gives no
    credit."""
    spend = {"Name": "Committed use discount: dollar based", "Amount": -0.3, "FullName": "c-spend", "Id": "cud-9",
             "Type": "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE"}
    rows = [view_row("spend covered", **cost(1, 0.1, [spend]), PricingQuantity=10, PricingCategory="committed",
                     SubAccountName="Main"),
            view_row("correction", **cost(-2, 0.5), PricingQuantity=10, ChargeClass="correction"),
            view_row("odd credits", **cost(3, 0.5), PricingQuantity=6),
            view_row("Commitment - dollar based v1: GCE for 1 year", **cost(2, 0.1), PricingQuantity=20,
                     CommitmentDiscountId="cud-9")]
    columns = [c for c in rows[0] if c not in ("Tags", "ServiceCategory", "x_Project")] + ["ChargeClass", "CommitmentDiscountId"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    body = text.getvalue().replace('"[]"', "not json")  # the odd row's credits (the only empty list)
    root = view_month(tmp_path, "focus-000000000000.csv", body)
    got = keyed(root, "ChargeDescription, CommitmentDiscountId, CommitmentDiscountCategory, CommitmentDiscountStatus, "
                      "PricingQuantity, ContractedUnitPrice, ContractedCost, x_SourceValues")
    assert got["spend covered"][:6] == ("cud-9", "Spend", "Used", D(10), D("0.1"), D(1))
    assert got["correction"][:6] == (None, None, None, D(10), D("0.5"), D(-2))
    assert got["odd credits"][:6] == (None, None, None, D(6), D("0.5"), D(3))
    # the same commitment's fee (its id from the file, no credit): a fee, no commitment's id or category on it (the
    # delivered id kept in x_SourceValues), as from the detailed export: its cost stays its EffectiveCost
    assert got["Commitment - dollar based v1: GCE for 1 year"][:2] == (None, None)
    assert json.loads(got["Commitment - dollar based v1: GCE for 1 year"][6])["CommitmentDiscountId"] == "cud-9"
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_a_google_view_fee_that_names_its_commitment_keeps_its_cost_as_effective_cost(tmp_path: Path) -> None:
    """Review of stop 41: a fee row of Google's view carrying its commitment's id (the view's subscription.instance_id)
    got EffectiveCost 0 (the rule for a purchase covering future charges) with ``InvalidEffectiveCost``: `hub costs`
    showed 1.2 for a month of 6.2. Google charges the fee hour by hour for that hour: by hand, fee 5 (10 h at 0.5,
    EffectiveCost 5, no saving; no commitment's id or name, as from the detailed export, the delivered ones in
    x_SourceValues) + covered usage 2 less its 0.8 credit (1.2, saving 0.8) = 6.2 billed and effective."""
    rows = [view_row("Commitment v1: Cpu in Americas for 1 Year", **cost(5, 0.5), PricingQuantity=10,
                     CommitmentDiscountId="cud-1", CommitmentDiscountName="c1"),
            view_row("covered", **cost(2, 0.2, [CUD]), PricingQuantity=10, PricingCategory="committed",
                     CommitmentDiscountId="cud-1")]
    root = view_month(tmp_path, "focus-000000000000.json", "\n".join(json.dumps(r) for r in rows) + "\n")
    got = keyed(root, "ChargeDescription, ChargeCategory, CommitmentDiscountId, EffectiveCost, x_CommitmentDiscountSavings, "
                      "x_SourceChanges, CommitmentDiscountName, CommitmentDiscountType, x_SourceValues")
    fee = got["Commitment v1: Cpu in Americas for 1 Year"]
    assert fee[:4] == ("Purchase", None, D(5), D(0)) and fee[5:7] == (None, None)
    assert "InvalidEffectiveCost" not in fee[4].split(",")
    assert {k: json.loads(fee[7])[k] for k in ("CommitmentDiscountId", "CommitmentDiscountName")} == {
        "CommitmentDiscountId": "cud-1", "CommitmentDiscountName": "c1"}
    assert got["covered"][:4] == ("Usage", "cud-1", D("1.2"), D("0.8"))
    assert one(f"SELECT sum(EffectiveCost) FROM {lake(root)}") == D("6.2")
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_a_json_column_null_on_every_line_is_no_value(tmp_path: Path) -> None:
    """Review of stop 35: a newline-JSON extract whose numeric column is ``null`` on every line (Google's view where
    the pricing export matched nothing: ListUnitPrice; a shard of tax rows only) was refused whole, ``SchemaMismatch:
    column ListUnitPrice is "NULL"``. Written out as null, it is no value, as a field left out is."""
    rows = [{**r, "ListUnitPrice": None, "ContractedUnitPrice": None, "PricingQuantity": None} for r in GCP_VIEW_ROWS]
    root = view_month(tmp_path, "focus-000000000000.json", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert one(f"SELECT count(*) FILTER (WHERE ListUnitPrice IS NOT NULL AND ListUnitPrice <> 0) FROM {lake(root)}") == 0
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("15.5")  # 10 + 1.2 + 1.3 + 3


def test_a_redelivery_replaces_the_folder(tmp_path: Path) -> None:
    """AWS re-delivers a month in full: the new files replace the old ones in the month's folder (no double count)."""
    root = make_hub(tmp_path / "hub")
    base = deliver(root, "aws", "focus/my-export", {"data/BILLING_PERIOD=2024-09/part-1.csv": AWS.read_text()})
    assert ingest(Store(str(root))).ok
    lines = AWS.read_text().splitlines(keepends=True)
    (base / "data/BILLING_PERIOD=2024-09/part-1.csv").write_text("".join(lines[:101]))  # header + 100 rows
    (base / "manifest.json").write_bytes(b"{}")
    result = ingest(Store(str(root)))
    assert result.ok and [r.rowsOut for r in result.records] == [100]
    assert one(f"SELECT count(*) FROM {lake(root)}") == 100


def test_bad_deliveries_are_quarantined_and_the_others_flow(tmp_path: Path) -> None:
    """A cut gzip, a CUR file (not FOCUS), a manifest with content and a folder of an unknown provider each quarantine
    their own delivery with a stable code naming the file; sources stay; a good delivery beside them commits."""
    root = make_hub(tmp_path / "hub")
    cut = gzip.compress(AWS.read_bytes())[:5000]
    deliver(root, "aws", "cut", {"part.csv.gz": cut})
    deliver(root, "aws", "cur", {"part.csv": "identity/LineItemId,lineItem/UnblendedCost,lineItem/CurrencyCode\nx,1,USD\n"})
    deliver(root, "oci", "content", {"a.csv": OCI.read_text()}, manifest=b'{"runId": "x"}')
    deliver(root, "ibm", "bills", {"a.csv": OCI.read_text()})
    deliver(root, "oci", "good", {"a.csv": OCI.read_text()})
    result = ingest(Store(str(root)))
    by = {r.manifest.split("/")[2]: r for r in result.records}
    assert {k: (r.state, r.error.code if r.error else None) for k, r in by.items() if k != "good"} == {
        "cut": ("quarantined", "CorruptFile"), "cur": ("quarantined", "SchemaMismatch"),
        "content": ("quarantined", "ManifestInvalid"), "bills": ("quarantined", "SchemaNotFound")}
    assert by["cut"].error.file == "exports/aws/cut/part.csv.gz"
    assert "BilledCost" in by["cur"].error.message and by["cur"].error.file == "exports/aws/cur/part.csv"
    assert [r.state for r in result.records if r.manifest.startswith("exports/oci/good")] == ["committed", "committed"]
    assert (root / "exports/aws/cut/part.csv.gz").exists()
    again = ingest(Store(str(root)))
    assert again.records == []  # quarantined deliveries wait for a change (or --retry)
    (root / "exports/aws/cut/part.csv.gz").write_bytes(gzip.compress(AWS.read_bytes()))  # re-uploaded
    fixed = ingest(Store(str(root)))
    assert [(r.state, r.rowsOut) for r in fixed.records] == [("committed", 942)]
    assert not (root / "config" / "runs" / f"{by['cut'].key}.json").exists()  # the failure record is gone


def test_kill_between_the_swaps_of_one_delivery_is_finished_on_restart(tmp_path: Path) -> None:
    """A delivery of two months killed after its first folder's swap: the restart finishes the second one, and the
    lake equals an uninterrupted ingest."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "oci", "FOCUS Reports/2024/10/01", {"0001.csv": OCI.read_text()})
    env = {**os.environ, "HUB_CRASH_AT": "before-commit", "HUB_LEASE_TTL": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(root)], capture_output=True, env=env, cwd=REPO)
    assert proc.returncode == 137
    states = sorted(r.state for r in runs.load_all(Store(str(root))))
    assert states == ["swapping", "swapping"]
    result = ingest(Store(str(root)), lease_ttl=1)
    assert sorted(r.state for r in result.recovered) == ["committed", "committed"] and result.records == []
    assert one(f"SELECT count(*) FROM {lake(root)}") == 7
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(OCI, "BilledCost")


def test_readers_show_every_provider(tmp_path: Path) -> None:
    """A lake of AWS and OCI rows beside Azure's: the catalog's Costs view and ``hub costs`` grouped by provider give
    the totals of the source files."""
    from hub import catalog

    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "e1", {"a.csv": AWS.read_text()})
    deliver(root, "oci", "r1", {"a.csv": OCI.read_text()})
    assert ingest(Store(str(root))).ok
    expected = {"AWS": csv_sum(AWS, "BilledCost"), "Oracle": csv_sum(OCI, "BilledCost")}
    view = dict(catalog.connect(str(root)).execute("SELECT ProviderName, sum(BilledCost) FROM Costs GROUP BY 1").fetchall())
    assert view == expected
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "costs", str(root), "--group-by", "ProviderName", "--granularity",
                           "month", "--begin", "2024-09", "--end", "2024-10", "--cost-type", "BilledCost", "--format", "csv"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    got: dict[str, D] = {}
    for r in csv.DictReader(io.StringIO(proc.stdout)):
        got[r["ProviderName"]] = got.get(r["ProviderName"], D(0)) + D(r["BilledCost"])
    assert got == expected


CUR = DATA / "aws" / "cur-legacy-1281rows.csv"
CUR2 = DATA / "aws" / "cur2-synthetic-4rows.csv"


def test_aws_legacy_cur_is_converted(tmp_path: Path) -> None:
    """A real legacy CUR (CSV, lineItem/... columns) in its assembly folder: mapped to FOCUS by schemas/aws/cur.json,
    every row, BilledCost per currency equal to the report's own lineItem/UnblendedCost total, 0 FOCUS violations."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "cur/my-report/20231101-20231201/abc-123", {"my-report-00001.csv.gz": gzip.compress(CUR.read_bytes())})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    unblended = csv_sum(CUR, "lineItem/UnblendedCost")
    assert rec.rowsOut == 1281 and D(rec.totalsIn["USD"]["BilledCost"]) == unblended
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == unblended
    rows = dict(duckdb.connect().execute(f"SELECT ChargeCategory, count(*) FROM {lake(root)} GROUP BY 1").fetchall())
    assert rows == {"Usage": 1269, "Tax": 12}
    assert one(f"SELECT list(DISTINCT x_SourceType) FROM {lake(root)}") == ["AWS CUR"]
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE ServiceCategory IS NULL OR ProviderName <> 'AWS'") == 0
    report = validate(str(root))
    assert report.violations == 0, report.summary()


CUR_ROWS = (
    "identity/LineItemId,bill/PayerAccountId,bill/BillingPeriodStartDate,bill/BillingPeriodEndDate,bill/InvoicingEntity,"
    "lineItem/UsageAccountId,lineItem/LineItemType,lineItem/UsageStartDate,lineItem/UsageEndDate,lineItem/ProductCode,"
    "lineItem/UsageType,lineItem/UsageAmount,lineItem/CurrencyCode,lineItem/UnblendedCost,lineItem/NetUnblendedCost,"
    "lineItem/ResourceId,lineItem/LineItemDescription,product/ProductName,product/regionCode,product/sku,pricing/unit,"
    "pricing/publicOnDemandRate,pricing/publicOnDemandCost,pricing/RateCode,savingsPlan/SavingsPlanARN,"
    "savingsPlan/SavingsPlanEffectiveCost,resourceTags/user:Env,resourceTags/aws:createdBy\n"
    # on-demand usage with an EDP discount in the net cost
    "a,111122223333,2024-03-01T00:00:00Z,2024-04-01T00:00:00Z,AWS Inc.,444455556666,Usage,2024-03-05T10:00:00Z,"
    "2024-03-05T11:00:00Z,AmazonEC2,BoxUsage:m5.large,2,USD,0.192,0.1728,"
    "arn:aws:ec2:us-east-1:444455556666:instance/i-0abc,m5.large,Amazon Elastic Compute Cloud,us-east-1,SKU1,Hrs,"
    "0.096,0.192,SKU1.RATE,,,prod,\n"
    # usage covered by a savings plan: unblended 0.192, negated below, effective 0.12
    "b,111122223333,2024-03-01T00:00:00Z,2024-04-01T00:00:00Z,AWS Inc.,444455556666,SavingsPlanCoveredUsage,"
    "2024-03-05T10:00:00Z,2024-03-05T11:00:00Z,AmazonEC2,BoxUsage:m5.large,2,USD,0.192,,"
    "arn:aws:ec2:us-east-1:444455556666:instance/i-0def,m5.large,Amazon Elastic Compute Cloud,us-east-1,SKU1,Hrs,"
    "0.096,0.192,SKU1.RATE,arn:aws:savingsplans::111122223333:savingsplan/sp-1,0.12,,user1\n"
    "c,111122223333,2024-03-01T00:00:00Z,2024-04-01T00:00:00Z,AWS Inc.,444455556666,SavingsPlanNegation,"
    "2024-03-05T10:00:00Z,2024-03-05T11:00:00Z,AmazonEC2,BoxUsage:m5.large,2,USD,-0.192,,"
    "arn:aws:ec2:us-east-1:444455556666:instance/i-0def,SP negation,Amazon Elastic Compute Cloud,us-east-1,SKU1,Hrs,"
    ",,,arn:aws:savingsplans::111122223333:savingsplan/sp-1,,,\n"
    "d,111122223333,2024-03-01T00:00:00Z,2024-04-01T00:00:00Z,AWS Inc.,444455556666,Tax,2024-03-01T00:00:00Z,"
    "2024-04-01T00:00:00Z,AmazonEC2,,1,USD,0.05,,,Tax,Amazon Elastic Compute Cloud,,,,,,,,,,\n"
)


def test_cur_line_item_types_map_to_focus_by_hand(tmp_path: Path) -> None:
    """Hand-computed FOCUS values of a legacy CUR: BilledCost is the net unblended cost where there is one (0.1728),
    EffectiveCost of covered usage is the savings plan's effective cost (0.12) and of the negation 0; ChargeCategory,
    frequency, commitment columns, ResourceType from the ARN, tags without user:, ServiceCategory from the lookup."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "cur/r/20240301-20240401/x", {"r-00001.csv": CUR_ROWS})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    con = duckdb.connect()
    rows = {r[0]: r[1:] for r in con.execute(
        f"SELECT x_LineItemType, BilledCost, EffectiveCost, ChargeCategory, ChargeFrequency, CommitmentDiscountStatus, "
        f"CommitmentDiscountType, PricingCategory, ResourceType, Tags, ServiceCategory, ListUnitPrice, SkuPriceId FROM {lake(root)}").fetchall()}
    assert rows["Usage"][:8] == (D("0.1728"), D("0.1728"), "Usage", "Usage-Based", None, None, "Standard", "instance")
    assert json.loads(rows["Usage"][8]) == {"Env": "prod"} and rows["Usage"][9:] == ("Compute", D("0.096"), "SKU1.RATE")
    assert rows["SavingsPlanCoveredUsage"][:7] == (D("0.192"), D("0.12"), "Usage", "Usage-Based", "Used", "Savings Plan", "Committed")
    assert json.loads(rows["SavingsPlanCoveredUsage"][8]) == {"aws:createdBy": "user1"}
    assert rows["SavingsPlanNegation"][:3] == (D("-0.192"), D(0), "Usage")
    assert rows["Tax"][:4] == (D("0.05"), D("0.05"), "Tax", "One-Time")
    (rec,) = result.records
    assert D(rec.totalsIn["USD"]["BilledCost"]) == D("0.1728") + D("0.192") - D("0.192") + D("0.05")


def test_cur_2_0_columns_are_recognised(tmp_path: Path) -> None:
    """CUR 2.0's snake_case columns use the same mapping: the synthetic sample's rows land with their costs."""
    root = make_hub(tmp_path / "hub")
    body = CUR2.read_text().replace("line_item_usage_start_date,", "bill_billing_period_start_date,line_item_currency_code,"
                                    "line_item_line_item_type,line_item_usage_start_date,", 1)
    lines = body.splitlines()
    lines[1:] = [f"2025-01-01T00:00:00Z,USD,Usage,{line}" for line in lines[1:]]
    deliver(root, "aws", "cur2/data/BILLING_PERIOD=2025-01", {"part-0.csv": "\n".join(lines) + "\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.rowsOut == 4 and rec.destination == "ingestion/Costs/2025/01/aws/123456789012"
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(CUR2, "line_item_unblended_cost")


@pytest.mark.parametrize(("arn", "kind"), [
    ("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc", "instance"),
    ("arn:aws:lambda:us-east-1:123456789012:function:my-fn", "function"),
    ("arn:aws:sqs:us-east-1:123456789012:my-queue", "sqs"),
    ("arn:aws:s3:::my-bucket", "s3"),
    ("arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188", "loadbalancer"),
    ("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/my-fn", "log-group"),
    ("arn:aws:rds:us-east-1:123456789012:db:my-db", "db"),
])
def test_resource_type_of_an_arn(arn: str, kind: str) -> None:
    from transforms.costs import _arn_type_sql

    assert duckdb.connect().execute(f"SELECT {_arn_type_sql('r')} FROM (SELECT ? AS r)", [arn]).fetchall() == [(kind,)]


OCI_REPORT = DATA / "oci" / "oci-cost-report-506rows.csv"


def test_oci_cost_report_is_converted(tmp_path: Path) -> None:
    """OCI's own cost report (reports/cost-csv/...): mapped by schemas/oci/cost_report.json, BilledCost per currency
    equal to the report's cost/myCost total, times without seconds completed, tags/<namespace>.<key> columns made one
    Tags object, 0 FOCUS violations."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "oci", "reports/cost-csv/2023-11", {"0000000030000269.csv.gz": gzip.compress(OCI_REPORT.read_bytes())})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.rowsOut == 506 and rec.month == "2023-11"
    assert D(rec.totalsIn["USD"]["BilledCost"]) == csv_sum(OCI_REPORT, "cost/myCost")
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(OCI_REPORT, "cost/myCost")
    assert one(f"SELECT min(ChargePeriodStart) FROM {lake(root)}").isoformat() == "2023-11-13T05:00:00+00:00"
    tagged = one(f"SELECT Tags FROM {lake(root)} WHERE Tags LIKE '%Oracle-Tags.CreatedBy%' LIMIT 1")
    assert "Oracle-Tags.CreatedBy" in json.loads(tagged)
    # review: every row of this (San Jose) report was named by its id: schemas/oci/regions.csv lacked the Americas
    assert duckdb.sql(f"SELECT DISTINCT RegionId, RegionName, contains(x_SourceChanges, 'MissingRegionName') "
                      f"FROM {lake(root)}").fetchall() == [("us-sanjose-1", "US West (San Jose)", False)]
    report = validate(str(root))
    assert report.violations == 0, report.summary()


GCP_ROWS = [
    {"billing_account_id": "01ABCD-234567-89EFGH", "service": {"id": "6F81-5844-456A", "description": "Compute Engine"},
     "sku": {"id": "CP-1", "description": "N2 Instance Core"}, "usage_start_time": "2024-05-12 22:00:00 UTC",
     "usage_end_time": "2024-05-12 23:00:00 UTC", "project": {"id": "proj-1", "name": "Project One", "labels": []},
     "labels": [{"key": "env", "value": "prod"}], "location": {"location": "europe-west4", "region": "europe-west4",
                                                                "zone": "europe-west4-a"},
     "resource": {"name": "vm-1", "global_name": "//compute.googleapis.com/projects/1/zones/europe-west4-a/instances/vm-1"},
     "price": {"effective_price": 0.031611, "tier_start_amount": 0, "unit": "hour", "pricing_unit_quantity": 1},
     "cost": 0.063222, "cost_at_list": 0.07, "currency": "EUR", "currency_conversion_rate": 0.93,
     "usage": {"amount": 7200, "unit": "seconds", "amount_in_pricing_units": 2, "pricing_unit": "hour"},
     "credits": [{"name": "Sustained use discount", "amount": -0.012644, "type": "SUSTAINED_USAGE_DISCOUNT"}],
     "invoice": {"month": "202405"}, "cost_type": "regular", "transaction_type": "GOOGLE"},
    {"billing_account_id": "01ABCD-234567-89EFGH", "service": {"id": "TAX", "description": "Invoice"},
     "sku": {"id": "TX", "description": "Tax"}, "usage_start_time": "2024-05-31 00:00:00 UTC",
     "usage_end_time": "2024-06-01 00:00:00 UTC", "project": {"id": None, "name": None, "labels": []}, "labels": [],
     "location": {"location": None, "region": None, "zone": None}, "resource": {"name": None, "global_name": None},
     "price": {"effective_price": None, "tier_start_amount": None, "unit": None, "pricing_unit_quantity": None},
     "cost": 0.01, "cost_at_list": None, "currency": "EUR", "currency_conversion_rate": 0.93,
     "usage": {"amount": None, "unit": None, "amount_in_pricing_units": None, "pricing_unit": None},
     "credits": [], "invoice": {"month": "202405"}, "cost_type": "tax", "transaction_type": "GOOGLE"},
]


def test_google_detailed_export_by_hand(tmp_path: Path) -> None:
    """Google Cloud's detailed BigQuery export as newline JSON (records and repeated fields): BilledCost = cost +
    credits (0.063222 - 0.012644 = 0.050578), ContractedCost = cost, ListUnitPrice = cost_at_list / quantity (0.035),
    the invoice month in Pacific time (2024-05-01 07:00 UTC to 2024-06-01 07:00 UTC), labels as Tags, tax rows; the
    export's own total (cost + credits) reconciled; 0 FOCUS violations."""
    root = make_hub(tmp_path / "hub")
    text = "\n".join(json.dumps(r) for r in GCP_ROWS) + "\n"
    deliver(root, "gcp", "billing/2024-05", {"export-000000000000.json.gz": gzip.compress(text.encode())})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.destination == "ingestion/Costs/2024/05/gcp/01abcd-234567-89efgh"
    assert D(rec.totalsIn["EUR"]["BilledCost"]) == D("0.060578")
    rows = keyed(root,
                 "ChargeCategory, BilledCost, EffectiveCost, ContractedCost, ListCost, ListUnitPrice, PricingQuantity, "
                 "ConsumedQuantity, Tags, CAST(BillingPeriodStart AS VARCHAR), CAST(BillingPeriodEnd AS VARCHAR), ChargeFrequency, "
                 "ServiceCategory, SubAccountId, x_ServiceId")
    usage = rows["Usage"]
    assert usage[:7] == (D("0.050578"), D("0.050578"), D("0.063222"), D("0.07"), D("0.035"), D(2), D(7200))
    assert json.loads(usage[7]) == {"env": "prod"}
    assert usage[8:] == ("2024-05-01 07:00:00+00", "2024-06-01 07:00:00+00", "Usage-Based", "Compute", "proj-1", "6F81-5844-456A")
    assert rows["Tax"][:1] == (D("0.01"),) and rows["Tax"][10] == "One-Time"
    report = validate(str(root))
    assert report.violations == 0, report.summary()


ALIBABA = (
    "BillingCycle,AccountID,AccountName,OwnerID,OwnerAccountName,SubscriptionType,ProductCode,ProductName,ProductDetail,"
    "UsageStartTime,UsageEndTime,RecordID,Item,InstanceID,NickName,Tag,Region,Zone,Currency,PretaxGrossAmount,"
    "InvoiceDiscount,DeductedByCoupons,PretaxAmount,DeductedByCashCoupons,DeductedByPrepaidCard,PaymentAmount,"
    "OutstandingAmount,Usage,UsageUnit,ListPrice,CommodityCode,BillingItem\n"
    "2024-05,1234567890,payer,5678,dev team,PayAsYouGo,ecs,Elastic Compute Service,ECS,2024-05-10 08:00:00,"
    "2024-05-10 09:00:00,r1,PayAsYouGoBill,i-bp1abc,web-1,key:env value:prod; key:team value:web,China (Hangzhou),"
    "Hangzhou Zone B,CNY,10.00,1.00,0.50,8.50,3.00,0.00,5.50,0.00,1,Hour,10.00,ecs,Instance\n"
    "2024-05,1234567890,payer,5678,dev team,Subscription,rds,ApsaraDB RDS,RDS,2024-05-01 00:00:00,"
    "2024-06-01 00:00:00,r2,SubscriptionOrder,rm-uf6xyz,db-1,,China (Shanghai),,CNY,300.00,30.00,0.00,270.00,"
    "0.00,270.00,0.00,0.00,,,,rds,\n"
)


def test_alibaba_bill_by_hand(tmp_path: Path) -> None:
    """An Alibaba Cloud bill detail file (OSS subscription field names): UTC+8 times stored as UTC (2024-05-10 08:00
    CST = 00:00 UTC; the May billing period starts 2024-04-30 16:00 UTC), BilledCost = PretaxAmount (8.50 + 270.00),
    ListCost = PretaxGrossAmount, ContractedCost = gross - invoice discount (9.00), a subscription order is a Purchase
    with EffectiveCost 0, payment instruments kept as x_ columns, both Tag forms parsed, region ids from display names."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "bills/2024-05", {"1234567890-2024-05-BillingItemDetailForBillingPeriod.csv": ALIBABA})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.month == "2024-05" and rec.destination == "ingestion/Costs/2024/05/alibaba/1234567890"
    assert D(rec.totalsIn["CNY"]["BilledCost"]) == D("278.50")
    rows = keyed(root,
                 "x_Item, BilledCost, EffectiveCost, ListCost, ContractedCost, ChargeCategory, ChargeFrequency, "
                 "CAST(ChargePeriodStart AS VARCHAR), CAST(BillingPeriodStart AS VARCHAR), RegionId, Tags, x_DeductedByCashCoupons, "
                 "x_PaymentAmount, ServiceCategory, SubAccountId")
    usage = rows["PayAsYouGoBill"]
    assert usage[:6] == (D("8.5"), D("8.5"), D(10), D(9), "Usage", "Usage-Based")
    assert usage[6:9] == ("2024-05-10 00:00:00+00", "2024-04-30 16:00:00+00", "cn-hangzhou")
    assert json.loads(usage[9]) == {"env": "prod", "team": "web"}
    assert usage[10:] == (D(3), D("5.5"), "Compute", "5678")
    order = rows["SubscriptionOrder"]
    assert order[:6] == (D(270), D(0), D(300), D(270), "Purchase", "One-Time") and order[8] == "cn-shanghai"
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_alibaba_item_values_are_compared_without_case_or_spaces(tmp_path: Path) -> None:
    """``subscriptionorder`` and ``Refund `` were PayAsYouGoBill: the prepaid order (300) and its refund counted in full as
    usage in EffectiveCost (review of stop 37). x_Item keeps the value as delivered."""
    spelled = ALIBABA.replace(",SubscriptionOrder,", ",subscriptionorder,")
    refund = spelled.splitlines()[-1].replace(",r2,subscriptionorder,", ',r3,"Refund ",').replace(",300.00,30.00,", ",-300.00,-30.00,")
    refund = refund.replace(",270.00,0.00,270.00,", ",-270.00,0.00,-270.00,")
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "bills/2024-05", {"1234567890-2024-05-BillingItemDetailForBillingPeriod.csv": spelled + refund + "\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    rows = duckdb.sql(f"SELECT x_Item, ChargeCategory, ChargeClass, BilledCost, EffectiveCost FROM {lake(root)} "
                      "ORDER BY x_RecordID").fetchall()
    assert rows == [("PayAsYouGoBill", "Usage", None, D("8.5"), D("8.5")), ("subscriptionorder", "Purchase", None, D(270), D(0)),
                    ("Refund ", "Purchase", "Correction", D(-270), D(0))]


def test_a_billing_account_id_padded_with_spaces_is_the_same_account(tmp_path: Path) -> None:
    """`` 1234567890 `` and a tab before it were two more billing accounts: three lake folders and per-account totals
    split (review of stop 37). Ids are trimmed (the delivered value kept in x_SourceValues)."""
    head, first, second = ALIBABA.splitlines()
    padded = [first.replace("2024-05,1234567890,", "2024-05, 1234567890 ,").replace(",r1,", ",r3,"),
              first.replace("2024-05,1234567890,", "2024-05,\t1234567890,").replace(",r1,", ",r4,")]
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "bills/2024-05", {"1234567890-2024-05-BillingItemDetailForBillingPeriod.csv":
                                                "\n".join([head, first, second, *padded]) + "\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert [r.destination for r in result.records] == ["ingestion/Costs/2024/05/alibaba/1234567890"]
    assert duckdb.sql(f"SELECT DISTINCT BillingAccountId FROM {lake(root)}").fetchall() == [("1234567890",)]


ALIBABA_TAGS = {  # the Tag cell -> the Tags object (hand-read), and the x_SourceChanges code
    "t1": ("key:q value:a=b", {"q": "a=b"}, "TagsFromArray"),
    "t2": ("key:url value:https://x.example/p?id=1", {"url": "https://x.example/p?id=1"}, "TagsFromArray"),
    "t3": ("key:env value:prod; key:q value:a=b", {"env": "prod", "q": "a=b"}, "TagsFromArray"),
    "t4": ("key:a value:x,y", {"a": "x,y"}, "TagsFromArray"),
    "t5": ("key:team:sub value:x;key:env value:", {"team:sub": "x", "env": ""}, "TagsFromArray"),
    "t6": ("key:env value:dev; key:env value:prod", {"env": "prod"}, "TagsFromArray"),
    "t7": ("env:dev;team:data", {"env": "dev", "team": "data"}, "TagsFromText"),
    "t8": ("key:env value:prod; ", {"env": "prod"}, "TagsFromArray"),  # a trailing separator
    "t9": ("key: value:x; key:team value:web", {"team": "web"}, "TagsFromArray"),  # an empty key: no tag
}


def test_alibaba_tags_read_pair_by_pair(tmp_path: Path) -> None:
    """Review: Alibaba's `key:K value:V; ...` Tag was rewritten to `K:V;...` text and parsed with one delimiter for the
    whole cell: a value holding `=` moved the key (`{"q:a": "b"}`), a `,` or a second tag with `=` lost every tag of
    the row (InvalidTags), a key holding `:` was cut. Each pair is read as the key and value it is."""
    header, row = ALIBABA.splitlines()[:2]
    lines = [header] + [row.replace(",r1,", f",{k},").replace("key:env value:prod; key:team value:web", '"' + v[0] + '"')
                        for k, v in ALIBABA_TAGS.items()]
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "bills/2024-05", {"1234567890-2024-05-BillingItemDetailForBillingPeriod.csv": "\n".join(lines) + "\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = duckdb.sql(f"SELECT x_RecordID, Tags, x_SourceChanges FROM {lake(root)}").fetchall()
    codes = set(TAG_CODES)
    assert {k: (json.loads(t), set((c or "").split(",")) & codes) for k, t, c in got} == {
        k: (tags, {code}) for k, (_, tags, code) in ALIBABA_TAGS.items()}
    assert validate(str(root)).violations == 0


def test_generated_alibaba_bill_reconciles(tmp_path: Path) -> None:
    """The Alibaba generator's bill (hub.sample_native): every row lands, BilledCost equals the file's PretaxAmount total,
    the payment instruments add up (PretaxAmount = PaymentAmount + DeductedByCashCoupons), 0 FOCUS violations."""
    from hub.sample_native import write_alibaba_bill

    root = make_hub(tmp_path / "hub")
    manifest = write_alibaba_bill(str(root), rows=2000)
    part = next((root / manifest).parent.glob("*.csv"))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert sum(r.rowsOut for r in result.records) == 2000
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(part, "PretaxAmount")
    assert one(f"SELECT sum(BilledCost - x_PaymentAmount - x_DeductedByCashCoupons) FROM {lake(root)}") == 0
    report = validate(str(root))
    assert report.violations == 0, report.summary()


HUAWEI = (
    "cycle,bill_date,bill_type,customer_id,payer_account_id,region,region_name,cloud_service_type,cloud_service_type_name,"
    "resource_type_code,resource_type_name,res_instance_id,resource_name,resource_tag,sku_code,charge_mode,consume_amount,"
    "cash_amount,credit_amount,coupon_amount,flexipurchase_coupon_amount,stored_card_amount,bonus_amount,debt_amount,"
    "adjustment_amount,official_amount,discount_amount,usage,unit,currency\n"
    "2024-05,2024-05-20,5,c1,p1,cn-north-4,CN North-Beijing4,hws.service.type.ec2,Elastic Cloud Server,hws.resource.type.vm,"
    "ECS,vm-1,web-1,env=prod;team=web,s6.large.2,3,1.80,1.00,0,0.80,0,0,0,0,0,2.00,0.20,2,Hour,CNY\n"
    "2024-05,2024-05-01,1,c1,p1,cn-north-4,CN North-Beijing4,hws.service.type.rds,Relational Database Service,"
    "hws.resource.type.rds,RDS,db-1,db-1,,rds.pg.large,1,100.00,100.00,0,0,0,0,0,0,0,120.00,20.00,,,CNY\n"
)


def test_huawei_resource_bill_by_hand(tmp_path: Path) -> None:
    """Huawei Cloud resource bill details (MonthlyBillRes fields): a daily on-demand row (bill_date 2024-05-20 UTC+8 =
    2024-05-19 16:00 UTC to 2024-05-20 16:00 UTC) and a yearly/monthly purchase (EffectiveCost 0); BilledCost =
    consume_amount (1.80 + 100.00), ContractedCost = official - discount, payment instruments as x_ columns."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "huawei", "obs/2024-05", {"res-records.csv": HUAWEI})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.month == "2024-05" and D(rec.totalsIn["CNY"]["BilledCost"]) == D("101.80")
    rows = keyed(root,
                 "x_BillType, BilledCost, EffectiveCost, ListCost, ContractedCost, ChargeCategory, ChargeFrequency, "
                 "CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), ContractedUnitPrice, x_CouponAmount, "
                 "ServiceCategory, Tags")
    use = rows["5"]
    assert use[:7] == (D("1.8"), D("1.8"), D(2), D("1.8"), "Usage", "Usage-Based", "2024-05-19 16:00:00+00")
    assert use[7:11] == ("2024-05-20 16:00:00+00", D("0.9"), D("0.8"), "Compute")
    assert json.loads(use[11]) == {"env": "prod", "team": "web"}
    assert rows["1"][:6] == (D(100), D(0), D(120), D(100), "Purchase", "One-Time")
    report = validate(str(root))
    assert report.violations == 0, report.summary()


TENCENT = (
    "BillMonth,PayerUin,OwnerUin,BusinessCodeName,BusinessCode,ProductCodeName,PayMode,ProjectName,RegionId,RegionName,"
    "ZoneName,ResourceId,ResourceName,ActionTypeName,FeeBeginTime,FeeEndTime,ComponentCodeName,ItemCodeName,ItemCode,"
    "SinglePrice,ContractPrice,PriceUnit,UsedAmount,UsedAmountUnit,TimeSpan,Cost,Discount,RealCost,VoucherPayAmount,"
    "CashPayAmount,IncentivePayAmount,TransferPayAmount,TaxAmount,Currency,Tags\n"
    "2024-05,100001,100002,Cloud Virtual Machine,p_cvm,CVM Standard S5,postPay,Default,1,South China (Guangzhou),"
    "Guangzhou Zone 3,ins-abc,web-1,Hourly settlement,2024-05-10 08:00:00,2024-05-10 08:59:59,CPU,CPU usage,sv_cvm_cpu,"
    "0.05,0.04,USD/core/hour,2,core,1,0.10,0.8,0.08,0.03,0.05,0,0,0,USD,"
    '"[{""TagKey"": ""env"", ""TagValue"": ""prod""}]"\n'
    "2024-05,100001,100002,Cloud Block Storage,p_cbs,CBS,prePay,Default,1,South China (Guangzhou),Guangzhou Zone 3,"
    "disk-1,data-1,New subscription,2024-05-01 00:00:00,2024-05-31 23:59:59,Disk,Premium disk,sv_cbs,10,9,USD/disk/month,"
    "1,disk,1,10,0.9,9,0,9,0,0,0,USD,\n"
)


def test_tencent_bill_by_hand(tmp_path: Path) -> None:
    """Tencent Cloud component-level bill details: Beijing times to UTC with inclusive ends made exclusive (08:00-08:59:59
    CST = 00:00-01:00 UTC), BilledCost = RealCost (0.08 + 9), ListCost = Cost, PricingQuantity = UsedAmount x TimeSpan,
    a new subscription is a prepaid Purchase (EffectiveCost 0), vouchers and cash as x_ columns, TagKey/TagValue tags."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": TENCENT})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.month == "2024-05" and D(rec.totalsIn["USD"]["BilledCost"]) == D("9.08")
    rows = keyed(root,
                 "x_ActionType, BilledCost, EffectiveCost, ListCost, ContractedCost, ChargeCategory, ChargeFrequency, "
                 "CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), PricingQuantity, x_VoucherPayAmount, "
                 "ServiceCategory, Tags")
    use = rows["Hourly settlement"]
    assert use[:7] == (D("0.08"), D("0.08"), D("0.1"), D("0.08"), "Usage", "Usage-Based", "2024-05-10 00:00:00+00")
    assert use[7:11] == ("2024-05-10 01:00:00+00", D(2), D("0.03"), "Compute")
    assert json.loads(use[11]) == {"env": "prod"}
    sub = rows["New subscription"]
    assert sub[:6] == (D(9), D(0), D(10), D(9), "Purchase", "One-Time") and sub[7] == "2024-05-31 16:00:00+00"
    report = validate(str(root))
    assert report.violations == 0, report.summary()


#: The rows of TENCENT as the console (and bill storage with display names) heads them: Tencent's "Fields in Bills"
#: (555/37506) and "Bill Fields Description" (1085/43050) spellings; no billing month, codes, region id or tags.
TENCENT_CONSOLE = (
    "Payer Account ID,Owner Account ID,Operator Account ID,Product Name,Subproduct Name,Billing Mode,Project Name,Region,"
    "Availability Zone,Instance ID,Instance Name,Transaction Type,Transaction ID,Transaction Time,Usage Start Time,"
    "Usage End Time,Component Type,Component Name,Component List Price,Component Contracted Price,"
    "Component Price Measurement Unit,Component Usage,Component Usage Unit,Usage Duration,Duration Unit,OriginalCost,"
    "DiscountRate,Currency,Total Amount After Discount (Excluding Tax),Voucher Deduction,Amount Before Tax,TaxRate,"
    "TaxAmount,Total Cost (Including Tax)\n"
    "100001,100002,100002,Cloud Virtual Machine,CVM Standard S5,Pay-as-you-go,Default,South China (Guangzhou),"
    "Guangzhou Zone 3,ins-abc,web-1,Hourly settlement,T1,2024-05-10 09:00:00,2024-05-10 08:00:00,2024-05-10 08:59:59,CPU,"
    "CPU usage,0.05,0.04,USD/core/hour,2,core,1,hour,0.10,0.8,USD,0.08,0.03,0.05,0,0,0.05\n"
    "100001,100002,100002,Cloud Block Storage,CBS,Monthly subscription,Default,South China (Guangzhou),Guangzhou Zone 3,"
    "disk-1,data-1,New subscription,T2,2024-05-01 00:00:00,2024-05-01 00:00:00,2024-05-31 23:59:59,Disk,Premium disk,10,9,"
    "USD/disk/month,1,disk,1,month,10,0.9,USD,9,0,9,0,0,9\n"
)


def test_tencent_console_bill_by_hand(tmp_path: Path) -> None:
    """The same two Tencent rows with the console's display-name headers (mapping aliases): the same FOCUS values as
    the API field names give (test_tencent_bill_by_hand); the month from the file's name (2024-05), ServiceCategory from
    the product name, RegionName from Region, RegionId null, no tags ({}), the billing mode's text in x_PayMode."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": TENCENT_CONSOLE})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.month == "2024-05" and D(rec.totalsIn["USD"]["BilledCost"]) == D("9.08")
    rows = keyed(root,
                 "x_ActionType, BilledCost, EffectiveCost, ListCost, ContractedCost, ChargeCategory, ChargeFrequency, "
                 "CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), PricingQuantity, x_VoucherPayAmount, "
                 "ServiceCategory, Tags, RegionId, RegionName, x_PayMode, BillingAccountId, SubAccountId, x_SourceType, "
                 "CAST(BillingPeriodStart AS VARCHAR)")
    use = rows["Hourly settlement"]
    assert use[:7] == (D("0.08"), D("0.08"), D("0.1"), D("0.08"), "Usage", "Usage-Based", "2024-05-10 00:00:00+00")
    assert use[7:] == ("2024-05-10 01:00:00+00", D(2), D("0.03"), "Compute", "{}", None, "South China (Guangzhou)",
                       "Pay-as-you-go", "100001", "100002", "Tencent Cloud bill", "2024-04-30 16:00:00+00")
    sub = rows["New subscription"]
    assert sub[:6] == (D(9), D(0), D(10), D(9), "Purchase", "One-Time") and sub[7] == "2024-05-31 16:00:00+00"
    assert sub[10] == "Storage"
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_tencent_month_to_date_snapshots_count_once(tmp_path: Path) -> None:
    """Tencent's bill storage writes a month-to-date file a day, then the month's final one, and a user syncs them all
    into one folder: only the newest snapshot of a month is read (the final ``yyyymm`` one, else the latest day), the
    others are listed in the run record (``skippedFiles``), so May counts once (9.08, not 0.08 + 9.08 + 9.08 + 9.08).
    Snapshots kept for different months that hold rows of the same month (a file of June 1st with May's rows) are
    ``SourceConflict``, never counted twice."""
    header, first, second = TENCENT.splitlines(keepends=True)[0], TENCENT.splitlines(keepends=True)[1], "".join(
        TENCENT.splitlines(keepends=True)[2:])
    root = make_hub(tmp_path / "hub")
    name = "100001-{}-by_used_time-bill_details.csv"
    deliver(root, "tencent", "cos", {name.format("20240510"): header + first, name.format("20240520"): TENCENT,
                                     name.format("20240531"): TENCENT, name.format("202405"): TENCENT})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert (rec.rowsOut, D(rec.totalsIn["USD"]["BilledCost"])) == (2, D("9.08"))
    assert rec.skippedFiles == [f"exports/tencent/cos/{name.format(d)}" for d in ("20240510", "20240520", "20240531")]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("9.08")
    assert [p.blob for p in rec.parts] == [f"exports/tencent/cos/{name.format('202405')}"]

    late = make_hub(tmp_path / "late")
    deliver(late, "tencent", "cos", {name.format("20240531"): header + first, name.format("20240601"): header + second})
    (rec,) = ingest(Store(str(late))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SourceConflict",
                                                           f"exports/tencent/cos/{name.format('20240601')}")
    assert not list((late / "ingestion").rglob("*.parquet"))


def test_an_older_snapshot_in_another_folder_does_not_replace_a_newer_one(tmp_path: Path) -> None:
    """Tencent's May 20th month-to-date file (9.08) is in the lake; an older May 10th one (0.08) synced into another
    folder afterwards is recorded ``superseded`` (never swapped in): May stays 9.08. A later May 31st replaces it, and
    May's whole file beats any day."""
    header, first = TENCENT.splitlines(keepends=True)[:2]
    root = make_hub(tmp_path / "hub")
    name = "100001-{}-by_used_time-bill_details.csv"
    deliver(root, "tencent", "cos/a", {name.format("20240520"): TENCENT})
    ingest(Store(str(root)))
    deliver(root, "tencent", "cos/b", {name.format("20240510"): header + first})
    (old,) = ingest(Store(str(root))).records
    assert (old.state, old.supersededBy is not None) == ("superseded", True)
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("9.08")
    assert ingest(Store(str(root))).records == []  # recorded: not read again
    deliver(root, "tencent", "cos/c", {name.format("202405"): header + first})
    (final,) = ingest(Store(str(root))).records
    assert final.state == "committed" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("0.08")
    deliver(root, "tencent", "cos/d", {name.format("20240531"): TENCENT})
    (day,) = ingest(Store(str(root))).records
    assert day.state == "superseded" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("0.08")


def test_alibaba_daily_bill_files_give_way_to_the_month_s_whole_one(tmp_path: Path) -> None:
    """Alibaba's OSS bill subscription pushes each day's bills (``<uid>_BillingItemDetail_<yyyymmdd>``) and at the start of
    the next month the month's whole file (``..._<yyyymm>``): in a synced folder the days add up (8.50 + 270.00) while
    the whole file is missing, and once it is there only it is read (278.50, not 557.00), the days listed in
    ``skippedFiles``."""
    header, first, second = (ALIBABA.splitlines(keepends=True)[0], ALIBABA.splitlines(keepends=True)[1],
                             ALIBABA.splitlines(keepends=True)[2])
    root = make_hub(tmp_path / "hub")
    days = {"1234567890_BillingItemDetail_20240510.csv": header + first, "1234567890_BillingItemDetail_20240511.csv": header + second}
    base = deliver(root, "alibaba", "oss", days)
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.rowsOut, D(rec.totalsIn["CNY"]["BilledCost"]), rec.skippedFiles) == ("committed", 2, D("278.5"), [])
    (base / "1234567890_BillingItemDetail_202405.csv").write_text(ALIBABA)
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.rowsOut, D(rec.totalsIn["CNY"]["BilledCost"])) == ("committed", 2, D("278.5"))
    assert rec.skippedFiles == [f"exports/alibaba/oss/{n}" for n in days]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("278.5")


def test_alibaba_delayed_rows_in_the_next_month_s_first_day(tmp_path: Path) -> None:
    """Alibaba's file of June 1st may hold a row delayed from May 31st (documented): while May's whole file is missing
    the delayed row is one of May's increments (May = 8.50 + 270.00 from the days, June = 8.50), never a conflict;
    once May's whole file is there it holds that row, so June 1st's May row is left out (May = 278.50 from the whole
    file, its run's rowsFiltered 1, June still 8.50)."""
    header, first, second = ALIBABA.splitlines(keepends=True)[:3]
    june = first.replace("2024-05,", "2024-06,", 1).replace("2024-05-10", "2024-06-01").replace(",r1,", ",r3,")
    root = make_hub(tmp_path / "hub")
    base = deliver(root, "alibaba", "oss", {"1234567890_BillingItemDetail_20240510.csv": header + first,
                                            "1234567890_BillingItemDetail_20240601.csv": header + june + second})
    by_month = (f"SELECT regexp_extract(filename, '/Costs/(\\d+)/(\\d+)/', ['y', 'm']) AS f, count(*), sum(BilledCost) "
                f"FROM read_parquet('{root}/ingestion/Costs/**/*.parquet', filename = true) GROUP BY 1 ORDER BY 1")
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = duckdb.connect().execute(by_month).fetchall()
    assert got == [({"y": "2024", "m": "05"}, 2, D("278.5")), ({"y": "2024", "m": "06"}, 1, D("8.5"))]
    (base / "1234567890_BillingItemDetail_202405.csv").write_text(ALIBABA)
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    may = next(r for r in result.records if r.month == "2024-05")
    assert (may.rowsIn, may.rowsOut, may.rowsFiltered) == (3, 2, 1)
    assert may.skippedFiles == ["exports/alibaba/oss/1234567890_BillingItemDetail_20240510.csv"]
    got = duckdb.connect().execute(by_month).fetchall()
    assert got == [({"y": "2024", "m": "05"}, 2, D("278.5")), ({"y": "2024", "m": "06"}, 1, D("8.5"))]


def test_one_alibaba_bill_type_per_month(tmp_path: Path) -> None:
    """The OSS subscription can push the same month by billing item and by instance (and monthly summaries of both):
    the same costs, so only the first type of ``bills`` in schemas/alibaba/focus.json is read (278.50, not 557.00);
    the other is in ``skippedFiles``."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "oss", {"1234567890_InstanceDetail_202405.csv": ALIBABA,
                                     "1234567890_BillingItemDetail_202405.csv": ALIBABA,
                                     "1234567890_BillingItemDetailMonthly_202405.csv": ALIBABA})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.rowsOut, D(rec.totalsIn["CNY"]["BilledCost"])) == ("committed", 2, D("278.5"))
    assert rec.skippedFiles == ["exports/alibaba/oss/1234567890_BillingItemDetailMonthly_202405.csv",
                                "exports/alibaba/oss/1234567890_InstanceDetail_202405.csv"]


def test_mapping_aliases_stand_in_only_for_a_missing_name() -> None:
    """A mapping's ``aliases``: the report's own column under the name wins; else the first spelling the report has
    (compared without case, spaces and punctuation); ``detect`` accepts the spellings; nothing found stays NULL."""
    from transforms import mapped

    spec = {"detect": ["real_cost"], "aliases": {"real_cost": ["Total Amount (Excl. Tax)", "Amount"]},
            "columns": {"BilledCost": "{real_cost}"}}
    assert mapped.by_key(spec, {"Amount": "VARCHAR", "total amount excl tax": "VARCHAR"})["realcost"] == "total amount excl tax"
    assert mapped.by_key(spec, {"RealCost": "VARCHAR", "Amount": "VARCHAR"})["realcost"] == "RealCost"
    assert mapped.detects(spec, {"AMOUNT": "VARCHAR"}) and not mapped.detects(spec, {"Cost": "VARCHAR"})
    assert mapped.project(spec, {"AMOUNT": "VARCHAR"}, {}).select == ['"AMOUNT" AS "BilledCost"']
    assert mapped.project(spec, {"Cost": "VARCHAR"}, {}).select == ['CAST(NULL AS VARCHAR) AS "BilledCost"']


def test_a_tencent_console_bill_without_its_amount_column_is_refused(tmp_path: Path) -> None:
    """A display-name file whose after-discount amount column is missing (another spelling than the documented ones) is
    not guessed at: SchemaMismatch naming the file, nothing lands."""
    root = make_hub(tmp_path / "hub")
    renamed = TENCENT_CONSOLE.replace("Total Amount After Discount (Excluding Tax)", "Amount After Something")
    deliver(root, "tencent", "cos/2024-05", {"bill.csv": renamed})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SchemaMismatch", "exports/tencent/cos/2024-05/bill.csv")
    assert not list((root / "ingestion").rglob("*.parquet"))


def _console_rows(*rows: tuple[str, str, str, str]) -> str:
    """A Tencent console bill: (transaction type, usage start, usage end, after-discount amount) per row."""
    head = "Payer Account ID,Owner Account ID,Product Name,Transaction Type,Transaction Time,Usage Start Time,Usage End Time," \
           "Component Name,Total Amount After Discount (Excluding Tax),Currency\n"
    return head + "".join(f"100001,100002,Cloud Virtual Machine,{t},2024-05-03 10:00:00,{a},{b},CPU usage,{c},USD\n"
                          for t, a, b, c in rows)


def test_a_tencent_console_bill_files_its_rows_under_the_month_of_its_name(tmp_path: Path) -> None:
    """The month of a display-name file whose rows have no billing month: the one in its name as bill storage names it
    (``<payer>-<yyyymm>[dd]-by_used_time-...``), for every row, so a May bill's settlement of April usage lands in May and
    leaves April's own bill as it was; without a month in the name, each row's usage start (``...23:59:59`` meaning the
    next second, an empty start the transaction time), and a file of several such months is refused (PeriodMismatch),
    as its April rows would replace April's bill. A row without usage times is charged over its billing period."""
    root = make_hub(tmp_path / "hub")
    april = _console_rows(("Hourly settlement", "2024-04-10 08:00:00", "2024-04-10 08:59:59", "0.08"),
                          ("Hourly settlement", "2024-04-20 08:00:00", "2024-04-20 08:59:59", "9"))
    deliver(root, "tencent", "cos/2024-04", {"100001-202404-by_used_time-bill_details.csv": april})
    may = _console_rows(("Hourly settlement", "2024-05-02 08:00:00", "2024-05-02 08:59:59", "1.5"),
                        ("Monthly settlement", "2024-04-01 00:00:00", "2024-04-30 23:59:59", "2.25"))
    deliver(root, "tencent", "cos/2024-05", {"100001-20240531-by_used_time-bill_details.csv": may})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert sorted((r.month, r.rowsOut, D(r.totalsIn["USD"]["BilledCost"])) for r in result.records) == [
        ("2024-04", 2, D("9.08")), ("2024-05", 2, D("3.75"))]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)} WHERE BillingPeriodStart < TIMESTAMPTZ '2024-04-30 16:00:00+00'") == D("9.08")

    mixed = make_hub(tmp_path / "mixed")
    deliver(mixed, "tencent", "download", {"bill.csv": may})
    (rec,) = ingest(Store(str(mixed))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "PeriodMismatch", "exports/tencent/download/bill.csv")
    assert "2024-04, 2024-05" in rec.error.message
    assert not list((mixed / "ingestion").rglob("*.parquet"))

    edges = make_hub(tmp_path / "edges")  # 23:59:59 on April 30th starts May; an adjustment without usage times
    deliver(edges, "tencent", "download", {"bill.csv": _console_rows(
        ("Hourly settlement", "2024-04-30 23:59:59", "2024-05-01 00:59:59", "1"), ("Adjustment deduction", "", "", "0.5"))})
    (rec,) = ingest(Store(str(edges))).records
    assert (rec.state, rec.month, rec.rowsOut) == ("committed", "2024-05", 2), rec.error
    periods = keyed(edges, "x_ActionType, CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR)")
    assert periods == {"Hourly settlement": ("2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00"),  # 00:00-01:00 May 1st, CST
                       "Adjustment deduction": ("2024-04-30 16:00:00+00", "2024-05-31 16:00:00+00")}  # its billing period


def test_mapping_lookups_try_each_key_and_file_months() -> None:
    """A lookup with several keys takes the first that finds a row (an unknown product code, a known product name);
    a file's month is its name's stamp, an archive member's before its archive's, and nothing else."""
    from hub.sources.native import providers
    from hub.sources.snapshots import file_month
    from transforms import mapped

    spec = {"columns": {}, "lookups": {"cats.csv": {"key": ["{code}", "{name}"], "value": "Cat", "default": "Other"}}}
    pattern = providers()["tencent"].snapshots.pattern
    (sql,) = mapped.project(spec, {"code": "VARCHAR", "name": "VARCHAR"}, {"cats.csv": "k,Cat\np_cvm,Compute\nDisk,Storage\n"}).select
    rows = duckdb.connect().execute(f"SELECT {sql} FROM (VALUES ('p_cvm', 'Disk'), ('p_new', 'Disk'), (NULL, 'x'), "
                                    "('p_new', NULL)) t(code, name)").fetchall()
    assert [r[0] for r in rows] == ["Compute", "Storage", "Other", "Other"]
    assert file_month(pattern, "exports/tencent/a/100010445724-202411-by_used_time-bill_details.zip") == "2024-11"
    assert file_month(pattern, "a/1-202411-by_x.zip!1-20241208-by_used_time-bill_details.csv") == "2024-12"
    assert file_month(pattern, "a/1-202413-by_x.csv") is None and file_month(pattern, "a/bill-2024-11.csv") is None


@pytest.mark.parametrize(("provider", "amount", "parts", "options"), [
    ("huawei", "consume_amount", ("x_CashAmount", "x_CreditAmount", "x_CouponAmount"), {}),
    ("tencent", "RealCost", ("x_VoucherPayAmount", "x_CashPayAmount"), {}),
    ("tencent", "Total Amount After Discount (Excluding Tax)", ("x_VoucherPayAmount", "x_CashPayAmount"), {"console": True}),
])
def test_generated_chinese_cloud_bills_reconcile(tmp_path: Path, provider: str, amount: str, parts: tuple[str, ...],
                                                 options: dict) -> None:
    """The Huawei and Tencent generators' bills (hub.sample_native; Tencent's also with console headers): every row
    lands, BilledCost equals the file's own total, the payment instruments add up to it row by row, 0 FOCUS violations."""
    from hub import sample_native

    root = make_hub(tmp_path / "hub")
    manifest = getattr(sample_native, f"write_{provider}_bill")(str(root), rows=1500, **options)
    part = next((root / manifest).parent.glob("*.csv"), None)
    if part is None:  # Tencent's bill storage writes zip archives
        packed = next((root / manifest).parent.glob("*.zip"))
        part = tmp_path / "part.csv"
        part.write_bytes(zipfile.ZipFile(packed).read(packed.name[: -len(".zip")] + ".csv"))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert sum(r.rowsOut for r in result.records) == 1500
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(part, amount)
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE BilledCost <> {' + '.join(parts)}") == 0
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_an_aws_manifest_listing_a_missing_file_quarantines_the_delivery(tmp_path: Path) -> None:
    """A legacy CUR's own <report>-Manifest.json lists its report files: a delivery without one of them is
    IngestionFilesNotFound, naming the manifest and the file, and nothing lands; once the file arrives it commits."""
    root = make_hub(tmp_path / "hub")
    keys = ["cur/r/20240301-20240401/x/r-00001.csv.gz", "cur/r/20240301-20240401/x/r-00002.csv.gz"]
    half = CUR_ROWS.splitlines(keepends=True)
    base = deliver(root, "aws", "cur/r/20240301-20240401/x", {
        "r-00001.csv.gz": gzip.compress("".join(half[:3]).encode()),
        "r-Manifest.json": json.dumps({"assemblyId": "x", "reportKeys": keys}),
    })
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "IngestionFilesNotFound")
    assert rec.error.file == "exports/aws/cur/r/20240301-20240401/x/r-Manifest.json" and "r-00002.csv.gz" in rec.error.message
    assert not list((root / "ingestion").rglob("*.parquet"))
    (base / "r-00002.csv.gz").write_bytes(gzip.compress((half[0] + "".join(half[3:])).encode()))
    result = ingest(Store(str(root)))
    assert result.ok and sum(r.rowsOut for r in result.records) == 4, [r.error for r in result.all]


def test_refunds_of_prepaid_purchases_by_hand(tmp_path: Path) -> None:
    """A subscription bought and refunded in one month, in each Chinese cloud's bill: the refund mirrors the purchase
    (EffectiveCost 0, never a negative month), its unit prices are not negative (Alibaba 100 / 90 per 1 period, Huawei
    60 / 50), Tencent's refund has ContractedCost -9 (RealCost), so subscription + refund sum to 0, and an Alibaba
    refund or adjustment without usage times is charged over its billing cycle (2024-06 in UTC+8:
    2024-05-31 16:00 to 2024-06-30 16:00 UTC); no row breaks a FOCUS rule but for the SKUs and unit the hand-written rows lack."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", "oss", {"111_BillingItemDetail_202406.csv": (
        "BillingCycle,AccountID,OwnerID,ProductCode,ProductName,UsageStartTime,UsageEndTime,Item,Currency,PretaxGrossAmount,"
        "InvoiceDiscount,PretaxAmount\n"
        "2024-06,111,111,rds,RDS,2024-06-15 10:00:00,2025-06-15 10:00:00,SubscriptionOrder,CNY,100.00,0,100.00\n"
        "2024-06,111,111,rds,RDS,,,Refund,CNY,-100.00,-10.00,-90.00\n"
        "2024-06,111,111,ecs,ECS,,,Adjustment,CNY,0,0,-5.00\n")})
    deliver(root, "huawei", "obs", {"res.csv": (
        "cycle,bill_date,bill_type,customer_id,payer_account_id,cloud_service_type,consume_amount,official_amount,"
        "discount_amount,currency\n"
        "2024-06,2024-06-01,1,c1,p1,hws.service.type.rds,100.00,100.00,0,CNY\n"
        "2024-06,2024-06-05,4,c1,p1,hws.service.type.rds,-50.00,-60.00,-10.00,CNY\n")})
    deliver(root, "tencent", "cos", {"100001-202406-by_used_time-bill_details.csv": (
        "BillMonth,PayerUin,OwnerUin,BusinessCodeName,ActionTypeName,FeeBeginTime,FeeEndTime,SinglePrice,ContractPrice,"
        "UsedAmount,TimeSpan,Cost,RealCost,Currency\n"
        "2024-06,100001,100002,CBS,Monthly subscription,2024-06-01 00:00:00,2024-06-30 23:59:59,10,9,1,1,10,9,CNY\n"
        "2024-06,100001,100002,CBS,Refund,2024-06-10 00:00:00,2024-06-30 23:59:59,10,9,1,1,-10,-9,CNY\n")})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    con = duckdb.connect()
    totals = con.execute(f"SELECT x_SourceProvider, sum(BilledCost), sum(EffectiveCost), sum(ContractedCost) FROM {lake(root)} "
                         "GROUP BY 1 ORDER BY 1").fetchall()
    assert totals == [("Alibaba Cloud", D(5), D(-5), D(10)), ("Huawei Cloud", D(50), D(0), D(50)), ("Tencent Cloud", D(0), D(0), D(0))]
    refunds = con.execute(f"SELECT x_SourceProvider, ChargeClass, EffectiveCost, ListUnitPrice, ContractedUnitPrice, ContractedCost "
                          f"FROM {lake(root)} WHERE BilledCost < 0 AND ChargeCategory = 'Purchase' ORDER BY 1").fetchall()
    assert refunds == [("Alibaba Cloud", "Correction", D(0), D(100), D(90), D(-90)),
                       ("Huawei Cloud", "Correction", D(0), D(60), D(50), D(-50)),
                       ("Tencent Cloud", "Correction", D(0), D(10), D(9), D(-9))]
    periods = con.execute(f"SELECT DISTINCT CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR) FROM {lake(root)} "
                          "WHERE x_SourceProvider = 'Alibaba Cloud' AND ChargeCategory <> 'Purchase' OR ChargeClass = 'Correction' "
                          "AND x_SourceProvider = 'Alibaba Cloud'").fetchall()
    assert periods == [("2024-05-31 16:00:00+00", "2024-06-30 16:00:00+00")]
    # the hand-written purchases name no SKU and one no unit: the only rules they break
    assert set(validate(str(root)).summary()) == {"SkuIdForUsagePurchase:SkuId", "SkuPriceIdForUsagePurchase:SkuPriceId",
                                                  "PricingUnitForUsagePurchase:PricingUnit"}


def test_aws_focus_user_tag_keys_lose_their_prefix(tmp_path: Path) -> None:
    """AWS's FOCUS export writes user-defined tag keys as user:<key> (its CUR as <key>): the lake has one key per tag
    whichever report brought it: {"user:team": "platform", "user:env": "dev"} -> {"team": "platform", "env": "dev"},
    flagged TagKeysUnprefixed with the original in x_SourceValues; aws: keys and a key whose short form is there too
    stay as they are."""
    from hub.sample_native import write_aws_focus

    root = make_hub(tmp_path / "hub")
    write_aws_focus(str(root), rows=200)
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    con = duckdb.connect()
    prefixed = con.execute(f"SELECT count(*) FROM {lake(root)} WHERE contains(Tags, '\"user:')").fetchall()[0][0]
    assert prefixed == 0
    got = con.execute(f"SELECT Tags, x_SourceChanges, json_extract_string(x_SourceValues, '$.Tags') FROM {lake(root)} "
                      "WHERE contains(x_SourceChanges, 'TagKeysUnprefixed') ORDER BY Tags LIMIT 1").fetchall()
    tags, changes, original = got[0]
    assert json.loads(original) == {f"user:{k}": v for k, v in json.loads(tags).items()} and "TagKeysUnprefixed" in changes
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_a_restated_bill_of_the_same_size_is_read_again(tmp_path: Path) -> None:
    """A month's bill re-synced with one amount restated (8.50 -> 9.50: same name, same size) and its manifest rewritten:
    the delivery is new (its files' modification times are part of its identity), the lake holds the restated amount;
    an ingest with nothing changed reads nothing."""
    import os

    root = make_hub(tmp_path / "hub")
    base = deliver(root, "alibaba", "oss", {"1234567890_BillingItemDetail_202405.csv": ALIBABA})
    ingest(Store(str(root)))
    bill = base / "1234567890_BillingItemDetail_202405.csv"
    restated = ALIBABA.replace(",8.50,", ",9.50,")
    assert len(restated) == len(ALIBABA) and restated != ALIBABA
    bill.write_text(restated)
    later = bill.stat().st_mtime + 10
    os.utime(bill, (later, later))
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "committed" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("279.5")
    assert ingest(Store(str(root))).records == []


def test_a_delivery_copied_after_its_manifest_waits_for_the_copy_to_settle(tmp_path: Path) -> None:
    """The manifest written first and a bill still being copied after it: with the watcher's settle time (60 s) the
    delivery waits while its file changed after the manifest less than 60 s ago, and is taken once it has not; `hub
    ingest` (no settle) and a delivery whose manifest came last never wait."""
    import os
    import time as clock

    from hub.sources import native

    root = make_hub(tmp_path / "hub")
    base = deliver(root, "alibaba", "oss", {"1234567890_BillingItemDetail_202405.csv": ALIBABA})
    bill, manifest = base / "1234567890_BillingItemDetail_202405.csv", base / "manifest.json"
    now = clock.time()
    os.utime(manifest, (now - 30, now - 30))
    os.utime(bill, (now - 5, now - 5))  # written 25 s after the manifest, 5 s ago
    waiting: list[str] = []
    assert native.pending(Store(str(root)), [], settle=60, waiting=waiting) == []
    assert waiting == ["exports/alibaba/oss/manifest.json"]
    assert len(native.pending(Store(str(root)), [])) == 1
    os.utime(manifest, (now - 300, now - 300))
    os.utime(bill, (now - 120, now - 120))  # after the manifest, but 120 s ago: settled
    assert len(native.pending(Store(str(root)), [], settle=60)) == 1
    os.utime(bill, (now - 50, now - 50))
    os.utime(manifest, (now - 5, now - 5))  # the manifest last: never waits
    assert len(native.pending(Store(str(root)), [], settle=60)) == 1


def test_a_row_of_another_billing_period_never_replaces_that_month(tmp_path: Path) -> None:
    """Review of stop 35: September from one export folder, then a file under another export's BILLING_PERIOD=2024-10
    holding an October row and one row of September's billing period: the September run of that file replaced
    September's folder (942 rows) with its one row. A file in a folder naming its billing month holds that month's
    rows only (``PeriodMismatch`` naming the file); September keeps its 942 rows and total."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "focus/sep-export", {"data/BILLING_PERIOD=2024-09/part-1.csv": AWS.read_text()})
    assert ingest(Store(str(root))).ok
    header, first = AWS.read_text().splitlines()[:2]
    october = first.replace("2024-10-01 00:00:00,2024-09-01 00:00:00", "2024-11-01 00:00:00,2024-10-01 00:00:00")
    assert october != first
    name = "data/BILLING_PERIOD=2024-10/part-1.csv"
    deliver(root, "aws", "focus/oct-export", {name: f"{header}\n{october}\n{first}\n"})
    result = ingest(Store(str(root)))
    (bad,) = [r for r in result.all if r.error]
    assert (bad.error.code, bad.error.file) == ("PeriodMismatch", f"exports/aws/focus/oct-export/{name}")
    assert one(f"SELECT count(*) FROM {lake(root)}") == 942
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == csv_sum(AWS, "BilledCost")


def test_currency_codes_and_alibaba_and_tencent_tag_forms_in_focus_files(tmp_path: Path) -> None:
    """Review of stop 35: a FOCUS file's ``usd`` / `` Usd `` / ``USD`` were three currencies in the lake and the run's
    totals (and BillingCurrencyIso4217 violations); Alibaba's ``key:K value:V; …`` and Tencent's
    ``[{"TagKey": …, "TagValue": …}]`` Tags were nulled (InvalidTags), as their own bill mappings read them. By hand:
    one currency USD, its total the three rows' sum; the tags as objects, flagged, the originals kept."""
    with open(AWS, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, [next(reader) for _ in range(3)]
    forms = [("usd", "key:env value:prod; key:team value:a=b,c"), (" Usd ", '[{"TagKey":"env","TagValue":"dev"}]'),
             ("USD", '{"env":"test"}')]
    for i, (r, (currency, tags)) in enumerate(zip(rows, forms, strict=True)):
        r.update(BillingCurrency=currency, Tags=tags, ResourceId=f"r{i}")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "focus/my-export", {"data/BILLING_PERIOD=2024-09/part-1.csv": out.getvalue()})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    total = sum(D(r["BilledCost"]) for r in rows)
    assert list(rec.totalsIn) == list(rec.totalsOut) == ["USD"] and D(rec.totalsOut["USD"]["BilledCost"]) == total
    got = keyed(root, "ResourceId, BillingCurrency, Tags, x_SourceChanges, json_extract_string(x_SourceValues, '$.BillingCurrency')")
    assert {k: v[:2] for k, v in got.items()} == {"r0": ("USD", '{"env":"prod","team":"a=b,c"}'), "r1": ("USD", '{"env":"dev"}'),
                                                   "r2": ("USD", '{"env":"test"}')}
    assert "EnumerationCasing" in got["r0"][2] and "TagsFromArray" in got["r0"][2] and got["r0"][3] == "usd"
    assert "EnumerationCasing" in got["r1"][2] and "TagsFromArray" in got["r1"][2] and got["r1"][3] == " Usd "
    assert "EnumerationCasing" not in (got["r2"][2] or "") and got["r2"][3] is None
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_tags_as_a_parquet_struct_are_the_tags_object(tmp_path: Path) -> None:
    """Review of stop 41: an AWS FOCUS export in Parquet whose Tags is a STRUCT (as Spark or pyarrow from dicts write
    it) was split like a BigQuery record: Tags {} on every row, the values in ``x_Tags.user:env`` columns (allocation
    and ``hub costs --group-by tag:env`` saw nothing tagged). By hand: {"env": "prod", "team": "web"} on each of the 5
    rows (AWS's ``user:`` prefix taken off, as from its CSV)."""
    root = make_hub(tmp_path / "hub")
    out = root / "exports/aws/focus/data/BILLING_PERIOD=2024-09"
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY (SELECT * REPLACE ({{'user:env': 'prod', 'user:team': 'web'}} AS Tags) FROM read_csv('{AWS}', "
                f"all_varchar = true) LIMIT 5) TO '{out}/f.parquet' (FORMAT parquet)")
    (root / "exports/aws/focus/manifest.json").write_bytes(b"")
    assert ingest(Store(str(root))).ok
    got = duckdb.connect().execute(f"SELECT Tags, count(*) FROM {lake(root)} GROUP BY ALL").fetchall()
    assert [(json.loads(t), n) for t, n in got] == [({"env": "prod", "team": "web"}, 5)]
    columns = [r[0] for r in duckdb.connect().execute(f"DESCRIBE SELECT * FROM {lake(root)}").fetchall()]
    assert not [c for c in columns if c.startswith("x_Tags")]
