"""Other clouds' bills found wrong by the stop-31 review (Alibaba, Tencent, Google Cloud, OCI), each row's FOCUS values
worked out by hand. Each case failed before its fix."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from conftest import make_hub
from test_native_cur import PERIOD, csv_text, ingested, listing, usage
from test_native_cur import deliver as cur_deliver
from test_native_focus import deliver, keyed
from test_native_gcp import by_description, converted, credit, row

from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

#: DescribeBillDetail's fields as the China site's API and bill files give them: the transaction's Chinese name beside
#: its code.
TENCENT_API = ("BillMonth,PayerUin,OwnerUin,BusinessCodeName,BusinessCode,ProductCodeName,PayMode,ResourceId,ActionTypeName,"
               "ActionType,FeeBeginTime,FeeEndTime,ComponentCodeName,ItemCodeName,ItemCode,SinglePrice,ContractPrice,UsedAmount,"
               "TimeSpan,Cost,RealCost,Currency\n")


def _violated(root: Path, rules: tuple[str, ...]) -> list[str]:
    """The ``hub validate`` rules (``Rule:Column``) of the lake that start with one of ``rules`` (the hand-written rows
    leave other FOCUS columns empty on purpose)."""
    return [k for k in validate(str(root)).summary() if k.startswith(rules)]


def _ingested(root: Path) -> None:
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]


def test_tencent_transactions_are_told_by_their_code_before_their_chinese_name(tmp_path: Path) -> None:
    """包年包月新购 (prepay_purchase), 退费 (prepay_return), 调账扣费 (recon_deduct) were all Usage: the English keywords
    were looked for in the name, which wins over the code; a prepaid purchase's 9 counted as consumed."""
    root = make_hub(tmp_path / "hub")
    rows = [
        "2024-05,100001,100002,云硬盘,p_cbs,CBS,prePay,disk-1,包年包月新购,prepay_purchase,2024-05-01 00:00:00,"
        "2024-05-31 23:59:59,硬盘,高性能云硬盘,sv_cbs,10,9,1,1,10,9,CNY",
        "2024-05,100001,100002,云硬盘,p_cbs,CBS,prePay,disk-2,包年包月退费,prepay_return,2024-05-20 00:00:00,"
        "2024-05-31 23:59:59,硬盘,高性能云硬盘,sv_cbs,10,9,1,1,-3,-3,CNY",
        "2024-05,100001,100002,云服务器,p_cvm,CVM S5,postPay,ins-1,按量计费小时结,postpay_deduct_h,2024-05-01 00:00:00,"
        "2024-05-01 00:59:59,CPU,CPU,sv_cpu,0.05,0.04,2,1,0.10,0.08,CNY",
        "2024-05,100001,100002,云服务器,p_cvm,CVM S5,postPay,ins-2,调账扣费,recon_deduct,,,,,,,,,,1.5,1.5,CNY",
        # a bill file with the Chinese name only: read by its name
        "2024-05,100001,100002,云硬盘,p_cbs,CBS,prePay,disk-3,包年包月续费,,2024-05-01 00:00:00,"
        "2024-05-31 23:59:59,硬盘,高性能云硬盘,sv_cbs,10,9,1,1,10,9,CNY",
        # review of the fix: a one-off RI fee's code (ripay_purchase) is an RI fee, not prepaid; charged once: One-Time
        # (stop 35: it was Recurring); the hourly RI fee (ri_hour_pay) is Recurring
        "2024-05,100001,100002,云服务器,p_cvm,CVM RI,prePay,ri-1,One-off RI Fee,ripay_purchase,2024-05-01 00:00:00,"
        "2024-05-31 23:59:59,RI,RI,sv_ri,100,100,1,1,100,100,CNY",
        "2024-05,100001,100002,云服务器,p_cvm,CVM RI,prePay,ri-2,预留实例每小时扣费,ri_hour_pay,2024-05-10 00:00:00,"
        "2024-05-10 00:59:59,RI,RI,sv_ri,0.1,0.1,1,1,0.1,0.1,CNY",
    ]
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": TENCENT_API + "\n".join(rows) + "\n"},
            manifest=b'{"currency": "CNY"}')
    _ingested(root)
    got = keyed(root, "ResourceId, ChargeCategory, ChargeClass, ChargeFrequency, BilledCost, EffectiveCost, ConsumedQuantity")
    assert got == {
        "disk-1": ("Purchase", None, "One-Time", D(9), D(0), None),  # prepaid: not consumed
        "disk-2": ("Purchase", "Correction", "One-Time", D(-3), D(0), None),  # the refund of a prepaid purchase
        "ins-1": ("Usage", None, "Usage-Based", D("0.08"), D("0.08"), D(2)),
        "ins-2": ("Adjustment", None, "One-Time", D("1.5"), D("1.5"), None),
        "disk-3": ("Purchase", None, "One-Time", D(9), D(0), None),  # a renewal, by its Chinese name
        "ri-1": ("Purchase", None, "One-Time", D(100), D(100), None),  # no amortization in the bill: kept as spent
        "ri-2": ("Purchase", None, "Recurring", D("0.1"), D("0.1"), None),
    }


def test_a_refund_without_its_original_cost_gets_a_list_cost_of_its_sign(tmp_path: Path) -> None:
    """Tencent hides a refund's Cost: ListCost was backfilled as SinglePrice x UsedAmount = +10 on a -3 refund (list cost
    and savings grew with a refund). A correction paying money back has costs of its sign: -10."""
    root = make_hub(tmp_path / "hub")
    header = ("BillMonth,PayerUin,OwnerUin,BusinessCodeName,ProductCodeName,ResourceId,ActionTypeName,FeeBeginTime,FeeEndTime,"
              "ComponentCodeName,ItemCodeName,ItemCode,SinglePrice,ContractPrice,PriceUnit,UsedAmount,UsedAmountUnit,TimeSpan,"
              "Cost,RealCost,Currency\n")
    rows = ["2024-05,100001,100002,Cloud Block Storage,CBS,disk-1,New subscription,2024-05-01 00:00:00,2024-05-31 23:59:59,"
            "Disk,Premium disk,sv_cbs,10,9,USD/disk/month,1,disk,1,10,9,USD",
            "2024-05,100001,100002,Cloud Block Storage,CBS,disk-1,Refund,2024-05-20 00:00:00,2024-05-31 23:59:59,"
            "Disk,Premium disk,sv_cbs,10,9,USD/disk/month,1,disk,1,,-3,USD"]
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": header + "\n".join(rows) + "\n"})
    _ingested(root)
    got = keyed(root, "x_ActionType, BilledCost, ListCost, ContractedCost, x_TotalSavings")
    # a prepaid purchase (EffectiveCost 0) saves nothing of its list price, nor does its refund (review of stop 37: the
    # subscription claimed its whole list cost, 10, as saved)
    assert got == {"New subscription": (D(9), D(10), D(9), D(0)), "Refund": (D(-3), D(-10), D(-3), D(0))}
    assert validate(str(root)).violations == 0


def test_alibaba_api_records_as_newline_json(tmp_path: Path) -> None:
    """DescribeInstanceBill items (BillingDate, no UsageStartTime) as newline JSON: the reader types BillingDate as DATE
    and the mapping mixed it with text (InternalError)."""
    root = make_hub(tmp_path / "hub")
    item = {"BillingDate": "2024-05-31", "BillAccountID": "111", "OwnerID": "222", "ProductCode": "ecs", "ProductName": "ECS",
            "Item": "PayAsYouGoBill", "InstanceID": "i-1", "Currency": "CNY", "PretaxGrossAmount": "10.10",
            "InvoiceDiscount": "1.01", "PretaxAmount": "9.09", "Usage": "2", "UsageUnit": "Hour"}
    deliver(root, "alibaba", "api-dump", {"bills.json": json.dumps(item) + "\n"})
    _ingested(root)
    got = keyed(root, "ResourceId, BilledCost, CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR)")
    assert got == {"i-1": (D("9.09"), "2024-05-30 16:00:00+00", "2024-05-31 16:00:00+00")}  # the Beijing day in UTC


def _alibaba_day(day: int, cost: str) -> str:
    return ("BillingCycle,AccountID,ProductCode,UsageStartTime,UsageEndTime,Item,InstanceID,Currency,PretaxGrossAmount,"
            f"PretaxAmount\n2024-05,111,ecs,2024-05-{day:02d} 08:00:00,2024-05-{day:02d} 09:00:00,PayAsYouGoBill,i-{day},CNY,"
            f"{cost},{cost}\n")


@pytest.mark.parametrize("first", ["d30", "d31"])
def test_alibaba_day_files_synced_into_folders_of_their_own_add_up(tmp_path: Path, first: str) -> None:
    """Each day's file synced into its own folder: the later day replaced the earlier one's month (May 2.02 for 3.03),
    or the earlier one was superseded; a day's file holds that day's bills only. The same day in two folders would be
    counted twice: SourceConflict naming the file."""
    root = make_hub(tmp_path / "hub")
    days = {"d30": (30, "1.01"), "d31": (31, "2.02")}
    for folder in (first, *(d for d in days if d != first)):
        day, cost = days[folder]
        deliver(root, "alibaba", folder, {f"111_BillingItemDetail_202405{day:02d}": _alibaba_day(day, cost)})
        _ingested(root)
    assert keyed(root, "ResourceId, BilledCost") == {"i-30": (D("1.01"),), "i-31": (D("2.02"),)}
    deliver(root, "alibaba", "again", {"111_BillingItemDetail_20240531": _alibaba_day(31, "2.02")})
    result = ingest(Store(str(root)))
    [bad] = [r for r in result.records if r.manifest == "exports/alibaba/again/manifest.json"]
    assert (bad.state, bad.error.code) == ("quarantined", "SourceConflict")
    assert "the same day's bill is in the lake from another delivery" in bad.error.message
    assert keyed(root, "ResourceId, BilledCost") == {"i-30": (D("1.01"),), "i-31": (D("2.02"),)}
    # the same day under another bill type (each OSS prefix synced into its own folder: review of stop 41, May was
    # counted twice, 5.05 for 3.03): the same costs, refused the same way
    deliver(root, "alibaba", "by-instance", {"111_InstanceDetail_20240531": _alibaba_day(31, "2.02")})
    result = ingest(Store(str(root)))
    [bad] = [r for r in result.records if r.manifest == "exports/alibaba/by-instance/manifest.json"]
    assert (bad.state, bad.error.code) == ("quarantined", "SourceConflict")
    assert keyed(root, "ResourceId, BilledCost") == {"i-30": (D("1.01"),), "i-31": (D("2.02"),)}


TENCENT_FOCUS = ("BilledCost,BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,"
                 "ChargePeriodEnd,EffectiveCost,ListCost,ContractedCost,ChargeCategory,ChargeFrequency,ProviderName,ResourceId,"
                 "ServiceName,CommitmentDiscountId,CommitmentDiscountCategory\n")


def test_tencent_focus_bills_without_effective_cost_are_filled_and_flagged(tmp_path: Path) -> None:
    """Tencent documents EffectiveCost as empty in its FOCUS bill: such a file was refused (SchemaMismatch, or
    InvalidValue when some rows had one). BilledCost fills it, 0 on a commitment purchase (FOCUS: amortized)."""
    root = make_hub(tmp_path / "hub")
    rows = ["1.50,2001,USD,2025-11-30T16:00:00Z,2025-12-31T15:59:59Z,2025-12-01T16:00:00Z,2025-12-02T15:59:59Z,,1.60,1.50,"
            "Usage,Usage-based,Tencent Cloud,ins-1,CVM,,",
            "30.00,2001,USD,2025-11-30T16:00:00Z,2025-12-31T15:59:59Z,2025-12-01T16:00:00Z,2025-12-02T15:59:59Z,,30,30,"
            "Purchase,One-Time,Tencent Cloud,ri-1,CVM,ri-1,Usage",
            "2.50,2001,USD,2025-11-30T16:00:00Z,2025-12-31T15:59:59Z,2025-12-01T16:00:00Z,2025-12-02T15:59:59Z,2.40,2.60,2.50,"
            "Usage,Usage-based,Tencent Cloud,ins-2,CVM,,"]
    deliver(root, "tencent", "focus", {"FOCUS-bill_details-2001-202512.CSV": TENCENT_FOCUS + "\n".join(rows) + "\n"})
    _ingested(root)
    got = keyed(root, "ResourceId, EffectiveCost, contains(coalesce(x_SourceChanges, ''), 'EffectiveCostFromBilledCost')")
    assert got == {"ins-1": (D("1.5"), True), "ri-1": (D(0), True), "ins-2": (D("2.4"), False)}
    assert not _violated(root, ('NotNull:EffectiveCost',))


def test_google_focus_view_month_end_issuer_and_frequency(tmp_path: Path) -> None:
    """Google's FOCUS view ends the month on its last day at midnight Pacific (07:00Z / 08:00Z): only UTC midnight was
    moved to the exclusive end; it has no InvoiceIssuerName nor ChargeFrequency (a NotNull violation on every row)."""
    root = make_hub(tmp_path / "hub")
    header = ("BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,"
              "BilledCost,EffectiveCost,ListCost,ContractedCost,ChargeCategory,ProviderName,PublisherName,ServiceName,ResourceId\n")
    rows = ["acct,USD,2024-05-01T07:00:00Z,2024-05-31T07:00:00Z,2024-05-10T00:00:00Z,2024-05-10T01:00:00Z,1,1,1,1,usage,"
            "Google Cloud,Google Cloud,Compute Engine,may",
            "acct,USD,2024-11-01T07:00:00Z,2024-11-30T08:00:00Z,2024-11-10T00:00:00Z,2024-11-10T01:00:00Z,2,2,2,2,purchase,"
            "Google Cloud,Google Cloud,Compute Engine,nov"]
    deliver(root, "gcp", "focus", {"focus.csv": header + "\n".join(rows) + "\n"})
    _ingested(root)
    got = keyed(root, "ResourceId, CAST(BillingPeriodEnd AS VARCHAR), InvoiceIssuerName, ChargeFrequency, x_SourceChanges")
    may, nov = got["may"], got["nov"]
    assert may[:3] == ("2024-06-01 07:00:00+00", "Google Cloud", "Usage-Based")  # PDT midnight of June 1st
    assert nov[:3] == ("2024-12-01 08:00:00+00", "Google Cloud", "Recurring")  # PST midnight of December 1st
    for codes in (may[3], nov[3]):
        assert {"MissingInvoiceIssuerName", "MissingChargeFrequency", "InclusivePeriodEnd", "EnumerationCasing"} <= set(codes.split(","))
    assert not _violated(root, ('NotNull:InvoiceIssuerName', 'NotNull:ChargeFrequency', 'BillingPeriodEndExclusive'))


def test_oci_focus_reports_with_an_empty_issuer_and_fractional_inclusive_ends(tmp_path: Path) -> None:
    """OCI writes InvoiceIssuer empty (NotNull on every row); an inclusive end at ...:59:59.999 became 00:00:00.999."""
    root = make_hub(tmp_path / "hub")
    header = ("BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,"
              "BilledCost,EffectiveCost,ListCost,ContractedCost,ChargeCategory,ChargeFrequency,Provider,Publisher,"
              "InvoiceIssuer,ServiceName,ResourceId\n")
    rows = ["ocid1.tenancy.oc1..t,USD,2024-09-01T00:00:00Z,2024-09-30T23:59:59.999Z,2024-09-21T18:00:00Z,"
            "2024-09-21T18:59:59.999Z,1,1,1,1,Usage,Usage-Based,Oracle,Oracle,,COMPUTE,ocid1.instance.oc1..i"]
    deliver(root, "oci", "focus", {"focus.csv": header + "\n".join(rows) + "\n"})
    _ingested(root)
    got = keyed(root, "InvoiceIssuerName, CAST(BillingPeriodEnd AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), x_SourceChanges")
    [(issuer, billing_end, charge_end, codes)] = [(k, *v) for k, v in got.items()]
    assert (issuer, billing_end, charge_end) == ("Oracle", "2024-10-01 00:00:00+00", "2024-09-21 19:00:00+00")
    assert {"MissingInvoiceIssuerName", "InclusivePeriodEnd"} <= set(codes.split(","))
    assert not _violated(root, ('NotNull:InvoiceIssuerName', 'BillingPeriodEndExclusive', 'ChargePeriodEndExclusive'))


def test_google_standard_export_keeps_its_negotiated_cost(tmp_path: Path) -> None:
    """A row without a price record (the standard export): ContractedUnitPrice was taken from the list price, then the
    "cost disagrees with price x quantity" fix overwrote the delivered 9.00 with the list cost 10.00. The delivered
    cost gives the unit price (0.90)."""
    std = row("N2 Core", 9.0, cost_at_list=10.0, usage__amount=36000.0, usage__amount_in_pricing_units=10.0,
              price=None)
    root, _ = converted(tmp_path, "json", [std])
    got = by_description(root, "ContractedCost, ListCost, ContractedUnitPrice, ListUnitPrice, x_SourceChanges")
    assert got["N2 Core"][:4] == (D(9), D(10), D("0.9"), D(1))
    assert "ContractedUnitPriceFromContractedCost" in got["N2 Core"][4]
    assert validate(str(root)).violations == 0


def test_google_empty_texts_are_nulls_and_an_empty_commitment_id_is_none(tmp_path: Path) -> None:
    """Newline JSON kept "" (zone, project name; a CUD credit's id and full name): EmptyString violations, and a
    commitment of id "" with status Used."""
    cud = row("N2 Core", 1.0, credits=[credit("COMMITTED_USAGE_DISCOUNT", -0.37, "Committed use discount: CPU", "", "")],
              location__zone="", project__name="")
    root, _ = converted(tmp_path, "json", [cud])
    got = by_description(root, "AvailabilityZone, SubAccountName, CommitmentDiscountId, CommitmentDiscountStatus")
    assert got["N2 Core"] == (None, None, None, None)
    assert not _violated(root, ('EmptyString', 'CommitmentDiscount'))


# --- AWS CUR ---------------------------------------------------------------------------------------------------------


def _cur2(items: list[tuple[str, str, str, str]]) -> str:
    """A CUR 2.0 export trimmed to a few columns (no bill_billing_period_*): (type, usage start, cost, description)."""
    common = {"bill_payer_account_id": "011111111111", "line_item_usage_account_id": "022222222222",
              "line_item_product_code": "AmazonEC2", "line_item_usage_amount": "1", "line_item_currency_code": "USD"}
    return csv_text(common, [{"line_item_line_item_type": t, "line_item_usage_start_date": s, "line_item_usage_end_date": s,
                              "line_item_unblended_cost": c, "line_item_line_item_description": d} for t, s, c, d in items])


def test_a_refund_of_an_earlier_month_is_billed_in_the_month_it_is_delivered_in(tmp_path: Path) -> None:
    """A trimmed CUR 2.0 takes its billing period from the BILLING_PERIOD=yyyy-mm folder: it took the usage start's
    month, so April's refund of January usage made a one-row January run that replaced January's 100.00 (lost)."""
    root = make_hub(tmp_path / "hub")
    cur_deliver(root, "cur2/e/data/BILLING_PERIOD=2024-01", {"e-00001.csv": _cur2([("Usage", "2024-01-10T00:00:00Z", "100.00", "jan")])})
    ingested(root)
    cur_deliver(root, "cur2/e/data/BILLING_PERIOD=2024-04", {"e-00001.csv": _cur2([
        ("Usage", "2024-04-10T00:00:00Z", "50.00", "apr"), ("Refund", "2024-01-10T00:00:00Z", "-7.00", "refund of jan")])})
    ingested(root)
    got = keyed(root, "ChargeDescription, strftime(BillingPeriodStart, '%Y-%m'), BilledCost, ListUnitPrice")
    assert got == {"jan": ("2024-01", D(100), D(100)), "apr": ("2024-04", D(50), D(50)),
                   "refund of jan": ("2024-04", D(-7), D(7))}  # a unit price is never negative (|cost / amount|)
    assert not _violated(root, ("ListUnitPriceNotNegative", "ContractedUnitPriceNotNegative"))


def test_two_assemblies_of_a_month_without_the_period_manifest_are_refused(tmp_path: Path) -> None:
    """Each assembly's copy of its manifest speaks for its own folder: without the billing period's manifest naming the
    current one, both were read (10.00 + 12.00)."""
    root = make_hub(tmp_path / "hub")
    cur_deliver(root, PERIOD, {
        "aaaa/r-00001.csv": usage("10.00"), "aaaa/r-Manifest.json": listing(f"{PERIOD}/aaaa/r-00001.csv"),
        "bbbb/r-00001.csv": usage("12.00"), "bbbb/r-Manifest.json": listing(f"{PERIOD}/bbbb/r-00001.csv")})
    [rec] = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SourceConflict", f"exports/aws/{PERIOD}")
    assert not (root / "ingestion").exists() or not list((root / "ingestion").rglob("*.parquet"))


def test_a_cut_gzip_is_corrupt_file_without_the_machines_path(tmp_path: Path) -> None:
    """DuckDB's error named the absolute local path of the file it read (a temporary copy on remote roots)."""
    import gzip
    import hashlib

    root = make_hub(tmp_path / "hub")
    rows = [("Usage", "2024-04-10T00:00:00Z", "1.00", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(20_000)]
    data = gzip.compress(_cur2(rows).encode())  # many deflate blocks: the header reads, the rows are cut
    cur_deliver(root, "cur2/e/data/BILLING_PERIOD=2024-04", {"e-00001.csv.gz": data[: len(data) * 3 // 4]})
    [rec] = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == (
        "quarantined", "CorruptFile", "exports/aws/cur2/e/data/BILLING_PERIOD=2024-04/e-00001.csv.gz")
    assert str(tmp_path) not in rec.error.message and "/exports/" not in rec.error.message


def test_an_empty_effective_cost_names_the_report_columns_a_trimmed_export_left_out(tmp_path: Path) -> None:
    """A trimmed CUR 2.0 without the savings-plan columns: "EffectiveCost is empty on 1 of 2 rows" named a column the
    user never exported; the message names the report columns the mapping needs (``needs`` in cur.json)."""
    root = make_hub(tmp_path / "hub")
    cur_deliver(root, "cur2/e/data/BILLING_PERIOD=2024-04", {"e-00001.csv": _cur2([
        ("Usage", "2024-04-10T00:00:00Z", "1.00", "plain"), ("SavingsPlanCoveredUsage", "2024-04-10T00:00:00Z", "2.00", "sp")])})
    [rec] = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "InvalidValue")
    assert rec.error.message.startswith("EffectiveCost is empty on 1 of 2 rows: its mapping reads it from ")
    assert "savings_plan_savings_plan_effective_cost" in rec.error.message and "line_item_unblended_cost" not in rec.error.message


@pytest.mark.parametrize("layout", ["dated", "daily-monthly"])
def test_snapshots_in_sub_folders_of_one_delivery_count_once(tmp_path: Path, layout: str) -> None:
    """A bill's files were one bill per folder: days in date folders (a sync keeping a date prefix), or the day's file in
    daily/ beside the month's in monthly/, were all read (the month counted twice)."""
    root = make_hub(tmp_path / "hub")
    header = TENCENT_FOCUS
    row = ("{cost},2001,USD,2025-11-30T16:00:00Z,2025-12-31T16:00:00Z,2025-12-01T16:00:00Z,2025-12-02T16:00:00Z,{cost},{cost},"
           "{cost},Usage,Usage-Based,Tencent Cloud,ins-{n},CVM,,\n")
    day2 = header + row.format(cost="1.00", n=1)
    day3 = day2 + row.format(cost="2.00", n=2)  # month to date: day 2's rows and day 3's
    name = "FOCUS-bill_details-2001-{}.CSV"
    files = ({f"2025/12/02/{name.format('20251202')}": day2, f"2025/12/03/{name.format('20251203')}": day3} if layout == "dated"
             else {f"daily/{name.format('20251202')}": day2, f"monthly/{name.format('202512')}": day3})
    deliver(root, "tencent", "cos", files)
    _ingested(root)
    assert keyed(root, "count(*), sum(BilledCost)") == {2: (D(3),)}  # day 2 and day 3, once


def test_aws_focus_gaps_provider_list_price_and_discount_spelling(tmp_path: Path) -> None:
    """AWS's preview FOCUS table leaves ProviderName empty (it stayed null, and PublisherName / InvoiceIssuerName with
    it); both unit prices empty: ListUnitPrice was the contracted one (0.08 for a ListCost of 1.00 over 10); the
    finops-toolkit spelling x_Discount of AWS's x_Discounts was kept as its own column."""
    root = make_hub(tmp_path / "hub")
    header = ("BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,BilledCost,"
              "EffectiveCost,ListCost,ContractedCost,PricingQuantity,ChargeCategory,ChargeFrequency,ServiceName,ResourceId,"
              "ProviderName,x_Discount\n")
    row = ("111122223333,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-02T00:00:00Z,2024-09-02T01:00:00Z,0.80,0.80,"
           "1.00,0.80,10,Usage,Usage-Based,Amazon EC2,i-1,,\"{\"\"bundled_discount\"\": -0.2}\"\n")
    deliver(root, "aws", "focus/exp", {"data/BILLING_PERIOD=2024-09/exp-00001.csv": header + row})
    _ingested(root)
    got = keyed(root, "ResourceId, ProviderName, PublisherName, InvoiceIssuerName, ListUnitPrice, ContractedUnitPrice, "
                      "x_Discounts, x_SourceChanges")
    [(provider, publisher, issuer, list_price, contracted, discounts, codes)] = got.values()
    assert (provider, publisher, issuer) == ("AWS", "AWS", "AWS")
    assert (list_price, contracted) == (D("0.1"), D("0.08"))
    assert json.loads(discounts) == {"bundled_discount": -0.2}
    assert {"MissingProviderName", "ListUnitPriceFromListCost", "ContractedUnitPriceFromContractedCost"} <= set(codes.split(","))
    assert not _violated(root, ("NotNull:ProviderName", "ListCostIsUnitPriceTimesQuantity", "ContractedCostIsUnitPriceTimes"))


def test_error_texts_lose_paths_after_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the fix: paths were taken out before credentials, so a key holding '+/' and '/' lost its end to the
    path rule and its start showed."""
    from hub.convert import scrub

    key = "Ab3dEf+/Gh1jKl/Mn0pQrStUvWxYz0123456789A"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    text = scrub(f"ValueError: the store refused key {key} for bucket x at /tmp/hub/exports/a.csv")
    assert text == "ValueError: the store refused key *** for bucket x at …"


def test_money_written_as_doubles_is_the_decimal_it_prints_as(tmp_path: Path) -> None:
    """AWS's FOCUS Parquet types costs as DOUBLE: 4.15 was stored as 4.150000000000000512 (its binary expansion)."""
    import duckdb

    root = make_hub(tmp_path / "hub")
    out = root / "exports/aws/focus/exp/data/BILLING_PERIOD=2024-09"
    out.mkdir(parents=True)
    duckdb.sql("SELECT '111122223333' AS BillingAccountId, 'USD' AS BillingCurrency, "
               "TIMESTAMPTZ '2024-09-01 00:00:00+00' AS BillingPeriodStart, TIMESTAMPTZ '2024-10-01 00:00:00+00' AS BillingPeriodEnd, "
               "TIMESTAMPTZ '2024-09-02 00:00:00+00' AS ChargePeriodStart, TIMESTAMPTZ '2024-09-02 01:00:00+00' AS ChargePeriodEnd, "
               "4.15::DOUBLE AS BilledCost, 4.15::DOUBLE AS EffectiveCost, 5.1::DOUBLE AS ListCost, 4.15::DOUBLE AS ContractedCost, "
               "'Usage' AS ChargeCategory, 'Usage-Based' AS ChargeFrequency, 'AWS' AS ProviderName, 'i-1' AS ResourceId"
               ).write_parquet(str(out / "exp-00001.parquet"))
    (root / "exports/aws/focus/exp/manifest.json").write_bytes(b"")
    _ingested(root)
    assert keyed(root, "ResourceId, BilledCost, ListCost") == {"i-1": (D("4.15"), D("5.1"))}


def test_a_row_without_a_charge_category_is_held_to_the_delivery_s_period(tmp_path: Path) -> None:
    """Review of stop 32: the period check exempted adjustments, credits and corrections with `ChargeCategory NOT IN
    (...)`, which is NULL (no check at all) for a row without a category: OCI's September bill with such a row charged
    on December 12 was accepted and filed under September, where a December query (which reads a month's folder and
    the one before) never saw it. It is PeriodMismatch now, as a usage row would be."""
    import csv
    import io

    from conftest import DATA

    root = make_hub(tmp_path / "hub")
    rows = list(csv.DictReader(io.StringIO((DATA / "oci" / "oci-focus10-7rows.csv").read_text(encoding="utf-8-sig"))))
    rows[6].update(ChargePeriodStart="2024-12-12 09:00:00", ChargePeriodEnd="2024-12-12 10:00:00", ChargeCategory="")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    deliver(root, "oci", "2024-09", {"FOCUS Reports/2024/09/30/report.csv": out.getvalue()})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "PeriodMismatch")
    assert "rows are charged from 2024-09-03 to 2024-12-12" in rec.error.message


@pytest.mark.parametrize("cost", ["-60", ""])
def test_a_tencent_downgrade_refund_keeps_its_negative_contracted_cost(tmp_path: Path, cost: str) -> None:
    """Review of stop 41: a downgrade of a monthly subscription refunds the price difference as a negative row
    (RealCost -48, quantity 2 and ContractPrice 24 positive); the ContractedCost fix (unit price x quantity) made it +48,
    so the month's ContractedCost read 144 for 96 - 48 = 48, unflagged (BilledCost reconciled). Without its Cost, the
    list cost backfilled from the list price (30 x 2) is -60 too (it was +60)."""
    root = make_hub(tmp_path / "hub")
    cols = ("BillMonth,PayerUin,OwnerUin,BusinessCodeName,BusinessCode,ProductCodeName,PayMode,ResourceId,ActionTypeName,"
            "ActionType,FeeBeginTime,FeeEndTime,ComponentCodeName,ItemCodeName,ItemCode,SinglePrice,ContractPrice,PriceUnit,"
            "UsedAmount,UsedAmountUnit,TimeSpan,Cost,Discount,RealCost,CashPayAmount,Currency\n")
    common = "2024-05,100,101,Cloud Virtual Machine,p_cvm,CVM S5,prePay,ins-2"
    text = (cols + f"{common},Monthly subscription,prepay_purchase,2024-05-10 12:00:00,2024-06-10 11:59:59,CPU,CPU,sv_cpu_m,"
            "30,24,USD/core/month,4,core,1,120,0.8,96,96,USD\n"
            f"{common},Upgrade/Downgrade,prepay_modify,2024-05-20 00:00:00,2024-06-10 11:59:59,CPU,CPU,sv_cpu_m,"
            f"30,24,USD/core/month,2,core,1,{cost},0.8,-48,-48,USD\n")
    deliver(root, "tencent", "bs", {"100-202405-by_used_time-bill_details.csv": text})
    _ingested(root)
    got = keyed(root, "BilledCost, ContractedCost, ListCost, coalesce(x_SourceChanges, '')")
    assert {k: v[:2] for k, v in got.items()} == {D(96): (D(96), D(120)), D(-48): (D(-48), D(-60))}
    assert not any("ContractedCostCorrected" in v[2] for v in got.values())


def test_a_prepaid_purchase_without_a_contracted_cost_is_contracted_at_what_was_billed(tmp_path: Path) -> None:
    """Review of stop 41: Alibaba's FOCUS bill leaves ContractedCost and the unit prices empty; a prepaid subscription
    (BilledCost 90, EffectiveCost 0 as FOCUS asks, ListCost 100) got ContractedCost 0, its amortized EffectiveCost."""
    root = make_hub(tmp_path / "hub")
    text = ("BillingAccountId,SubAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,"
            "ChargeCategory,ChargeClass,ChargeFrequency,BilledCost,EffectiveCost,ListCost,ContractedCost,ListUnitPrice,"
            "ContractedUnitPrice,PricingQuantity,PricingUnit,PricingCategory,ServiceName,ResourceId,ProviderName,PublisherName,"
            "InvoiceIssuerName\n"
            "A1,S1,CNY,2024-04-30T16:00:00Z,2024-05-31T16:00:00Z,2024-05-14T16:00:00Z,2024-05-15T16:00:00Z,Purchase,,One-Time,"
            "90,0,100,,,,1,Month,Standard,ECS,i-2,Alibaba Cloud,Alibaba Cloud,Alibaba Cloud\n")
    deliver(root, "alibaba", "focus/2024-05", {"A1_FOCUS_202405.csv": text})
    _ingested(root)
    assert keyed(root, "ResourceId, BilledCost, EffectiveCost, ContractedCost") == {"i-2": (D(90), D(0), D(90))}


def test_a_renewal_paid_months_before_its_service_period_is_a_purchase_of_the_month(tmp_path: Path) -> None:
    """Review of stop 41: May's Alibaba bill with a subscription renewed in May for a year from December 15 was
    PeriodMismatch as a whole (rows charged to 2024-12-15): none of May was ingested. The renewal is charged over its
    billing cycle, when it was billed (within May's folder: a query's window never misses it), its service period in
    x_ServicePeriodStart/End (2024-12-15 10:00 China time: 02:00 UTC)."""
    root = make_hub(tmp_path / "hub")
    text = ("BillingCycle,AccountID,OwnerID,ProductCode,ProductName,UsageStartTime,UsageEndTime,Item,InstanceID,Region,Currency,"
            "PretaxGrossAmount,InvoiceDiscount,PretaxAmount,ServicePeriod,ServicePeriodUnit,RecordID\n"
            "2024-05,111,222,ecs,ECS,2024-05-01 00:00:00,2024-05-01 01:00:00,PayAsYouGoBill,i-1,China (Hangzhou),CNY,10.00,1.00,"
            "9.00,,,r1\n"
            "2024-05,111,222,ecs,ECS,2024-12-15 10:00:00,2025-12-15 10:00:00,SubscriptionOrder,i-2,China (Hangzhou),CNY,1200.00,"
            "120.00,1080.00,1,Year,r2\n")
    deliver(root, "alibaba", "a", {"111_BillingItemDetail_202405.csv": text})
    _ingested(root)
    got = keyed(root, "ResourceId, ChargeCategory, BilledCost, EffectiveCost, CAST(ChargePeriodStart AS VARCHAR), "
                      "CAST(ChargePeriodEnd AS VARCHAR), CAST(x_ServicePeriodStart AS VARCHAR)")
    assert got == {"i-1": ("Usage", D(9), D(9), "2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00", None),
                   "i-2": ("Purchase", D(1080), D(0), "2024-04-30 16:00:00+00", "2024-05-31 16:00:00+00",
                           "2024-12-15 02:00:00+00")}


def test_alibaba_times_that_carry_an_offset_keep_it(tmp_path: Path) -> None:
    """Review of stop 41: times without an offset are China Standard Time, but one with its own (`Z`, `+09:00`) was
    read as China time too: 2024-04-30T16:00:00Z stored as 08:00 UTC, 8 hours early."""
    root = make_hub(tmp_path / "hub")
    head = ("BillingCycle,AccountID,OwnerID,ProductCode,ProductName,UsageStartTime,UsageEndTime,Item,InstanceID,Region,Currency,"
            "PretaxGrossAmount,InvoiceDiscount,PretaxAmount,Usage,UsageUnit,RecordID\n")
    line = "2024-05,111,222,ecs,ECS,{},{},PayAsYouGoBill,i-1,China (Hangzhou),CNY,10.00,1.00,9.00,10,Hour,{}\n"
    text = head + "".join(line.format(a, b, k) for a, b, k in (
        ("2024-04-30T16:00:00Z", "2024-04-30T17:00:00Z", "utc"), ("2024-05-01T00:00:00+09:00", "2024-05-01T01:00:00+09:00", "plus9"),
        ("2024-05-01 00:00:00", "2024-05-01 01:00:00", "cst"),
        # the API's " UTC" suffix (review of stop 42: read as China time, 8 hours early)
        ("2024-04-30 16:00:00 UTC", "2024-04-30 17:00:00 UTC", "suffix"),
        # forms the cast does not take (a space before the offset): China time, as any other text (the change's review:
        # the whole bill was InvalidValue)
        ("2024-05-01 00:00:00 +0900", "2024-05-01 01:00:00 +0900", "spaced")))
    deliver(root, "alibaba", "a", {"111_BillingItemDetail_202405.csv": text})
    _ingested(root)
    got = keyed(root, "x_RecordID, CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR)")
    assert got == {"utc": ("2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00"),
                   "plus9": ("2024-04-30 15:00:00+00", "2024-04-30 16:00:00+00"),
                   "cst": ("2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00"),
                   "suffix": ("2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00"),
                   "spaced": ("2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00")}


def test_a_tencent_renewal_paid_months_ahead_is_charged_in_its_bill(tmp_path: Path) -> None:
    """Review of stop 41: May's Tencent bill with a renewal from November 10 was PeriodMismatch as a whole; now the
    renewal is charged over May (Beijing time: 2024-04-30 16:00 to 2024-05-31 16:00 UTC), its service period kept in
    x_ServicePeriodStart/End, and May's other rows as they were."""
    root = make_hub(tmp_path / "hub")
    text = ("BillMonth,PayerUin,OwnerUin,BusinessCodeName,ProductCodeName,PayMode,ResourceId,ActionTypeName,ActionType,"
            "FeeBeginTime,FeeEndTime,ComponentCodeName,ItemCodeName,SinglePrice,ContractPrice,UsedAmount,TimeSpan,Cost,RealCost,"
            "Currency\n"
            "2024-05,100,101,CVM,S5,postPay,ins-1,Hourly settlement,postpay_deduct_h,2024-05-01 00:00:00,2024-05-01 00:59:59,"
            "CPU,CPU,0.05,0.04,2,1,0.1,0.08,USD\n"
            "2024-05,100,101,CVM,S5,prePay,ins-2,Renewal,prepay_renew,2024-11-10 12:00:00,2025-11-10 11:59:59,CPU,CPU,300,240,"
            "2,1,600,480,USD\n")
    deliver(root, "tencent", "bs", {"100-202405-by_used_time-bill_details.csv": text})
    _ingested(root)
    got = keyed(root, "ResourceId, BilledCost, CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), "
                      "CAST(x_ServicePeriodStart AS VARCHAR), CAST(x_ServicePeriodEnd AS VARCHAR)")
    assert got == {"ins-1": (D("0.08"), "2024-04-30 16:00:00+00", "2024-04-30 17:00:00+00", None, None),
                   "ins-2": (D(480), "2024-04-30 16:00:00+00", "2024-05-31 16:00:00+00", "2024-11-10 04:00:00+00",
                             "2025-11-10 04:00:00+00")}
