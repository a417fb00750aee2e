"""The billing currency of Chinese clouds' bill files and AWS reports without a currency column: the delivery's
``manifest.json`` may name it (``{"currency": "USD"}``); a row's own currency wins, else the manifest's, else the
provider's default (Alibaba and Huawei CNY, Tencent and AWS USD). Reconciliation totals are keyed by the same currency as the rows."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from conftest import make_hub

from hub.errors import HubError
from hub.sources import native
from hub.store import Store
from pipelines.ingest import ingest
from transforms import mapped

#: Alibaba bill detail rows (OSS subscription field names), no Currency column: BilledCost 8.50 + 1.25 = 9.75.
ALIBABA = (
    "BillingCycle,AccountID,OwnerID,ProductCode,ProductName,UsageStartTime,UsageEndTime,Item,InstanceID,Region,"
    "PretaxGrossAmount,PretaxAmount,Usage,UsageUnit\n"
    "2024-05,1234567890,5678,ecs,Elastic Compute Service,2024-05-10 08:00:00,2024-05-10 09:00:00,PayAsYouGoBill,i-1,"
    "China (Hangzhou),10.00,8.50,1,Hour\n"
    "2024-05,1234567890,5678,oss,Object Storage Service,2024-05-11 08:00:00,2024-05-11 09:00:00,PayAsYouGoBill,b-1,"
    "China (Hangzhou),1.50,1.25,10,GB\n"
)
#: Huawei resource bill rows (API field names), no currency column: BilledCost 1.80 + 2.20 = 4.00.
HUAWEI = (
    "cycle,bill_date,bill_type,customer_id,payer_account_id,cloud_service_type,consume_amount,official_amount,"
    "discount_amount,usage,unit\n"
    "2024-05,2024-05-20,5,c1,p1,hws.service.type.ec2,1.80,2.00,0.20,2,Hour\n"
    "2024-05,2024-05-21,5,c1,p1,hws.service.type.obs,2.20,2.50,0.30,5,GB\n"
)
#: Tencent component bill rows with the console's display-name headers, no Currency column: 0.08 + 9 = 9.08.
TENCENT = (
    "Payer Account ID,Owner Account ID,Product Name,Transaction Type,Usage Start Time,Usage End Time,Component Type,"
    "Component Usage,Usage Duration,Original Cost,Total Amount After Discount (Excluding Tax)\n"
    "100001,100002,Cloud Virtual Machine,Hourly settlement,2024-05-10 08:00:00,2024-05-10 08:59:59,CPU,2,1,0.10,0.08\n"
    "100001,100002,Cloud Block Storage,Hourly settlement,2024-05-11 08:00:00,2024-05-11 08:59:59,Disk,1,1,10,9\n"
)
#: AWS CUR 2.0 rows trimmed of line_item_currency_code (an INR- or CNY-billed payer's export): 0.0104 + 0.0104 = 0.0208.
AWS = (
    "line_item_usage_start_date,line_item_usage_end_date,bill_payer_account_id,line_item_usage_account_id,"
    "line_item_product_code,line_item_usage_type,line_item_operation,line_item_resource_id,line_item_usage_amount,"
    "line_item_unblended_cost,product_product_name\n"
    "2025-01-01T00:00:00Z,2025-01-01T01:00:00Z,123456789012,123456789012,AmazonEC2,BoxUsage:t3.micro,RunInstances,i-1,1.0,"
    "0.0104,Amazon Elastic Compute Cloud\n"
    "2025-01-01T01:00:00Z,2025-01-01T02:00:00Z,123456789012,123456789012,AmazonEC2,BoxUsage:t3.micro,RunInstances,i-1,1.0,"
    "0.0104,Amazon Elastic Compute Cloud\n"
)
#: provider -> (file name, rows, BilledCost total, default currency, another currency); AWS since the review of stop 41
#: (its manifest's currency was accepted, then unused: INR rows summed as dollars)
CASES = {
    "aws": ("cur2-00001.csv", AWS, D("0.0208"), "USD", "INR"),
    "alibaba": ("1234567890_BillingItemDetail_202405.csv", ALIBABA, D("9.75"), "CNY", "USD"),
    "huawei": ("resource-records-2024-05.csv", HUAWEI, D("4.00"), "CNY", "USD"),
    "tencent": ("100001-202405-by_used_time-bill_details.csv", TENCENT, D("9.08"), "USD", "CNY"),
}


def deliver(root: Path, provider: str, files: dict[str, str], manifest: bytes) -> Path:
    """The delivery's files, then its manifest.json last; the manifest's path."""
    base = root / "exports" / provider / "bills" / "2024-05"
    base.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (base / name).write_text(text)
    (base / "manifest.json").write_bytes(manifest)
    return base / "manifest.json"


def lake_currencies(root: Path) -> dict[str, D]:
    """BilledCost per BillingCurrency over every row of the lake (empty when it holds no row)."""
    files = list((root / "ingestion" / "Costs").rglob("*.parquet"))
    if not files:
        return {}
    paths = ", ".join(f"'{f}'" for f in files)
    rows = duckdb.connect().execute(f"SELECT BillingCurrency, sum(BilledCost) FROM read_parquet([{paths}]) GROUP BY ALL")
    return {c: D(v) for c, v in rows.fetchall()}


def totals(rec: object, field: str) -> dict[str, D]:
    return {c: D(a["BilledCost"]) for c, a in getattr(rec, field).items()}


@pytest.mark.parametrize("provider", sorted(CASES))
def test_the_manifest_names_the_currency_of_a_file_without_one(tmp_path: Path, provider: str) -> None:
    """``{"currency": "<other>"}``: every row is in that currency and the run's totals (delivered, ingested, in the
    lake) are keyed by it, with the file's own BilledCost total (hand-summed above)."""
    name, text, total, _, other = CASES[provider]
    root = make_hub(tmp_path / "hub")
    deliver(root, provider, {name: text}, json.dumps({"currency": other}).encode())
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.state == "committed" and rec.rowsOut == 2
    assert totals(rec, "totalsIn") == totals(rec, "totalsIngested") == totals(rec, "totalsOut") == {other: total}
    assert lake_currencies(root) == {other: total}


@pytest.mark.parametrize("manifest", [b"", b"{}", b" {}\n"])
@pytest.mark.parametrize("provider", sorted(CASES))
def test_an_empty_manifest_keeps_the_provider_s_default(tmp_path: Path, provider: str, manifest: bytes) -> None:
    """An empty manifest or ``{}``: the currency the mapping always gave (Alibaba, Huawei CNY; Tencent USD)."""
    name, text, total, default, _ = CASES[provider]
    root = make_hub(tmp_path / "hub")
    deliver(root, provider, {name: text}, manifest)
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert totals(rec, "totalsIn") == totals(rec, "totalsOut") == {default: total}
    assert lake_currencies(root) == {default: total}


@pytest.mark.parametrize("manifest", [
    {"currency": "dollars"}, {"currency": "yuan"}, {"currency": "RMB"}, {"currency": "XYZ"}, {"currency": "USDT"}, {"currency": "US"}, {"currency": 840},
    {"currency": None}, {"currency": "U$D"}, {"currency": "ÜSD"}, {"runId": "x"}, ["USD"], "USD",
])
def test_a_bad_currency_quarantines_the_delivery(tmp_path: Path, manifest: object) -> None:
    """Anything but an ISO 4217 code (or a field other than currency; ``RMB`` is the yuan's name, ``CNY`` its code:
    it split one payer's yuan in two currencies, review of stop 37) is ``ManifestInvalid``: one line naming
    manifest.json, the delivery quarantined, nothing in the lake; the files stay."""
    name, text, _, _, _ = CASES["huawei"]
    root = make_hub(tmp_path / "hub")
    path = deliver(root, "huawei", {name: text}, json.dumps(manifest).encode())
    result = ingest(Store(str(root)))
    (rec,) = result.records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "ManifestInvalid",
                                                           "exports/huawei/bills/2024-05/manifest.json")
    assert "manifest.json" in rec.error.message and "\n" not in rec.error.message
    assert lake_currencies(root) == {}
    assert (path.parent / name).exists()


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    """A manifest that is neither empty nor JSON: ``ManifestInvalid`` naming manifest.json (as before)."""
    name, text, _, _, _ = CASES["alibaba"]
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", {name: text}, b"currency: USD")
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestInvalid") and "manifest.json" in rec.error.message


def test_a_row_s_own_currency_wins_over_the_manifest_s(tmp_path: Path) -> None:
    """A file with a Currency column keeps its values (CNY 8.50) although the manifest says USD; only its row with an
    empty Currency cell takes the manifest's (USD 1.25); the totals are keyed the same way."""
    header, first, second = ALIBABA.splitlines(keepends=True)
    text = header.replace("PretaxAmount,", "PretaxAmount,Currency,") + first.replace(",8.50,", ",8.50,CNY,") + \
        second.replace(",1.25,", ",1.25,,")
    root = make_hub(tmp_path / "hub")
    deliver(root, "alibaba", {CASES["alibaba"][0]: text}, b'{"currency": "USD"}')
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert totals(rec, "totalsIn") == totals(rec, "totalsOut") == {"CNY": D("8.50"), "USD": D("1.25")}
    assert lake_currencies(root) == {"CNY": D("8.50"), "USD": D("1.25")}


def test_a_lower_case_code_is_upper_cased_and_the_key_is_matched_in_any_case(tmp_path: Path) -> None:
    name, text, total, _, _ = CASES["tencent"]
    root = make_hub(tmp_path / "hub")
    deliver(root, "tencent", {name: text}, b'{"Currency": "cny"}')
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert lake_currencies(root) == {"CNY": total}


def test_editing_the_manifest_s_currency_reads_the_delivery_again(tmp_path: Path) -> None:
    """The manifest's content is part of the delivery's identity (``Delivery.sha``): writing ``{"currency": "USD"}``
    into a manifest that was ``{}`` re-reads the delivery, whose rows replace the CNY ones (4.00 USD, no CNY left)."""
    name, text, total, _, _ = CASES["huawei"]
    root = make_hub(tmp_path / "hub")
    store = Store(str(root))
    path = deliver(root, "huawei", {name: text}, b"{}")
    assert ingest(store).ok and lake_currencies(root) == {"CNY": total}
    before = {d.manifest: d.sha for d in native.deliveries(store)}
    assert ingest(store).records == []  # unchanged: not read again
    path.write_bytes(b'{"currency": "USD"}')
    assert {d.manifest: d.sha for d in native.deliveries(store)} != before
    again = ingest(store)
    assert again.ok and [r.state for r in again.records] == ["committed"]
    assert lake_currencies(root) == {"USD": total}


def test_manifest_hints() -> None:
    """What a manifest tells the mappings: nothing, an upper-cased currency; ``hub pull``'s ``pull`` field is allowed
    only in a pulled delivery's manifest."""
    assert native.manifest_hints(b"", file="m/manifest.json") == {}
    assert native.manifest_hints(b"{}", file="m/manifest.json") == {}
    assert native.manifest_hints(b'{"currency": "eur"}', file="m/manifest.json") == {"currency": "EUR"}
    pulled = b'{"pull": {"day": "2024-05-01"}, "currency": "USD"}'
    assert native.manifest_hints(pulled, file="m/manifest.json", pulled=True) == {"currency": "USD"}
    with pytest.raises(HubError, match="ManifestInvalid: m/manifest.json: .*manifest.json.*\"pull\""):
        native.manifest_hints(pulled, file="m/manifest.json")


def test_mapping_hints_fall_back_to_the_mapping_s_default() -> None:
    """``{$name}``: the delivery's value, else the mapping's ``hints`` default, as a text literal; a hint the mapping
    does not declare is not used; a declared hint without a default and without a value is NULL."""
    spec = {"hints": {"currency": "CNY", "site": None}, "columns": {"BillingCurrency": "coalesce({currency}, {$currency})",
                                                                     "x_Site": "{$site}"}}
    assert mapped.project(spec, {"cost": "VARCHAR"}, {}).select == [
        "coalesce(CAST(NULL AS VARCHAR), 'CNY') AS \"BillingCurrency\"", 'CAST(NULL AS VARCHAR) AS "x_Site"']
    got = mapped.project(spec, {"Currency": "VARCHAR"}, {}, {"currency": "USD", "other": "x"}).select
    assert got == ['coalesce("Currency", \'USD\') AS "BillingCurrency"', 'CAST(NULL AS VARCHAR) AS "x_Site"']
