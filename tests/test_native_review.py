"""Other clouds' bills found wrong by review, each row's FOCUS values worked out by hand: Huawei tax and support-plan
bill types, Tencent transaction types, inclusive ends written in UTC from Beijing time, empty SKU parts. Each case
failed before its fix."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from conftest import make_hub
from test_native_focus import HUAWEI, TENCENT, deliver, keyed

from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest


def _huawei_row(bill_type: int, amount: str) -> str:
    return (f"2024-05,2024-05-20,{bill_type},c1,p1,cn-north-4,CN North-Beijing4,hws.service.type.ec2,Elastic Cloud Server,"
            f"hws.resource.type.vm,ECS,vm-{bill_type},web,,s6,3,{amount},{amount},0,0,0,0,0,0,0,{amount},0,,,CNY\n")


def test_huawei_tax_is_tax_and_the_support_plans_month_end_charge_is_not_prepaid(tmp_path: Path) -> None:
    """Tax bill types (15, 100, 101, 102) were Usage; 14 (the support plan's month-end charge) was a prepaid purchase
    with EffectiveCost 0, so the support plan's cost left every amortized total."""
    root = make_hub(tmp_path / "hub")
    header = HUAWEI.splitlines()[0] + "\n"
    rows = "".join(_huawei_row(t, a) for t, a in ((15, "0.60"), (100, "-0.10"), (101, "-0.05"), (102, "0.02"), (14, "1.00")))
    deliver(root, "huawei", "obs/2024-05", {"res-records.csv": header + rows})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "x_BillType, ChargeCategory, ChargeClass, ChargeFrequency, BilledCost, EffectiveCost, ConsumedQuantity")
    assert got == {
        "15": ("Tax", None, "One-Time", D("0.6"), D("0.6"), None),
        "100": ("Tax", "Correction", "One-Time", D("-0.1"), D("-0.1"), None),  # a refund of tax
        "101": ("Tax", None, "One-Time", D("-0.05"), D("-0.05"), None),
        "102": ("Tax", None, "One-Time", D("0.02"), D("0.02"), None),
        "14": ("Purchase", None, "Recurring", D(1), D(1), None),  # charged for the month used: EffectiveCost = billed
    }
    skus = keyed(root, "x_BillType, SkuId, SkuPriceId")  # FOCUS 1.0: null on Tax rows (the tax rows' sku_code was kept)
    assert {t: skus[t] for t in ("15", "100", "101", "102")} == dict.fromkeys(("15", "100", "101", "102"), (None, None))
    assert skus["14"][0] is not None
    assert validate(str(root)).violations == 0


def test_huawei_hourly_fees_and_unsubscription_fees_are_purchases(tmp_path: Path) -> None:
    """Review of stop 32: bill types 12 (an hourly reserved-instance or savings-plan fee) and 13 (the fee for
    unsubscribing) were not in the mapping's lists: Usage rows without quantity or prices (FOCUS violations). They are
    purchases billed as used (EffectiveCost = the amount): 12 Recurring, 13 One-Time; quantity 1, unit Subscription.
    A row whose currency is written `cny` or ` CNY` was kept as written: the run reconciled two currencies."""
    root = make_hub(tmp_path / "hub")
    header = HUAWEI.splitlines()[0] + "\n"
    rows = _huawei_row(12, "0.50").replace(",CNY\n", ", CNY\n") + _huawei_row(13, "3.00").replace(",CNY\n", ",cny\n")
    deliver(root, "huawei", "obs/2024-05", {"res-records.csv": header + rows})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "x_BillType, ChargeCategory, ChargeClass, ChargeFrequency, EffectiveCost, PricingQuantity, PricingUnit, "
                "ListUnitPrice, BillingCurrency")
    assert got == {
        "12": ("Purchase", None, "Recurring", D("0.5"), D(1), "Subscription", D("0.5"), "CNY"),
        "13": ("Purchase", None, "One-Time", D(3), D(1), "Subscription", D(3), "CNY"),
    }
    (rec,) = result.records
    assert list(rec.totalsIn) == ["CNY"] and rec.reconciled
    assert validate(str(root)).violations == 0


def test_tencent_transaction_types(tmp_path: Path) -> None:
    """Spot was a Recurring purchase (LIKE 'sp_%': '_' matches any letter); RI fees by name were usage; a prepaid
    upgrade was usage with its cost amortized as if used."""
    root = make_hub(tmp_path / "hub")
    header, usage = TENCENT.splitlines()[:2]
    rows = [usage.replace("Hourly settlement", kind).replace("ins-abc", f"ins-{i}") for i, kind in enumerate(
        ("Spot", "Hourly RI fee", "One-off RI Fee", "Upgrade/Downgrade", "Modify"))]
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": "\n".join([header, *rows]) + "\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "x_ActionType, ChargeCategory, ChargeFrequency, EffectiveCost")
    assert got == {"Spot": ("Usage", "Usage-Based", D("0.08")),
                   "Hourly RI fee": ("Purchase", "Recurring", D("0.08")),
                   "One-off RI Fee": ("Purchase", "One-Time", D("0.08")),  # charged once (stop 35: was Recurring)
                   "Upgrade/Downgrade": ("Purchase", "One-Time", D(0)),
                   "Modify": ("Purchase", "One-Time", D(0))}


def test_inclusive_ends_written_in_utc_from_beijing_time_are_made_exclusive(tmp_path: Path) -> None:
    """A FOCUS file's Beijing 23:59:59 ends in UTC (15:59:59Z) stayed a second short; only 23:59:59 UTC was fixed."""
    root = make_hub(tmp_path / "hub")
    header = ("BilledCost,BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,"
              "ChargePeriodEnd,EffectiveCost,ListCost,ContractedCost,ChargeCategory,ProviderName,ResourceId\n")
    rows = ("1.5,acct,CNY,2024-05-31T16:00:00Z,2024-06-30T15:59:59Z,2024-06-19T16:00:00Z,2024-06-20T15:59:59Z,1.5,1.5,1.5,"
            "Usage,Huawei Cloud,daily\n"
            "0.5,acct,CNY,2024-05-31T16:00:00Z,2024-06-30T15:59:59Z,2024-06-01T03:00:00Z,2024-06-01T03:59:59Z,0.5,0.5,0.5,"
            "Usage,Huawei Cloud,hourly\n")
    deliver(root, "huawei", "focus/2024-06", {"focus.csv": header + rows})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "ResourceId, CAST(ChargePeriodEnd AS VARCHAR), CAST(BillingPeriodEnd AS VARCHAR)")
    assert got == {"daily": ("2024-06-20 16:00:00+00", "2024-06-30 16:00:00+00"),
                   "hourly": ("2024-06-01 04:00:00+00", "2024-06-30 16:00:00+00")}


def _alibaba_months(root: Path) -> list[tuple]:
    import duckdb

    return duckdb.connect().execute(
        f"SELECT regexp_extract(filename, '/Costs/(\\d+/\\d+)/', 1) AS m, count(*), sum(BilledCost) FROM "
        f"read_parquet('{root}/ingestion/Costs/**/*.parquet', filename = true) GROUP BY 1 ORDER BY 1").fetchall()


def test_alibaba_delayed_rows_in_another_month_folder_add_to_the_month_never_replace_it(tmp_path: Path) -> None:
    """Months synced into folders of their own: June 1st's file holding a row of May 31st replaced May's folder with
    that one row (278.50 became 270.00). Now it is an increment of May: none where May's whole file is in the lake
    (it holds the row), else added to May's day files."""
    from test_native_focus import ALIBABA

    header, first, second = ALIBABA.splitlines(keepends=True)[:3]
    june = first.replace("2024-05,", "2024-06,", 1).replace("2024-05-10", "2024-06-01").replace(",r1,", ",r3,")
    for whole in (True, False):
        root = make_hub(tmp_path / f"hub-{whole}")
        may = {"1234567890_BillingItemDetail_202405.csv": ALIBABA} if whole else {
            "1234567890_BillingItemDetail_20240510.csv": header + first}
        deliver(root, "alibaba", "oss/2024-05", may)
        assert ingest(Store(str(root))).ok
        deliver(root, "alibaba", "oss/2024-06", {"1234567890_BillingItemDetail_20240601.csv": header + june + second})
        result = ingest(Store(str(root)))
        assert result.ok, [r.error for r in result.all]
        from hub import runs

        june_runs = {r.month: r.state for r in runs.load_all(Store(str(root))) if "/2024-06/" in r.manifest}
        assert june_runs == {"2024-05": "superseded" if whole else "committed", "2024-06": "committed"}
        assert _alibaba_months(root) == [("2024/05", 2, D("278.5")), ("2024/06", 1, D("8.5"))], whole
        if not whole:  # May's whole file arrives after June's: it replaces May (it holds the delayed row), never
            # superseded by June's delayed rows (they are no snapshot of May)
            deliver(root, "alibaba", "oss/2024-05", {"1234567890_BillingItemDetail_202405.csv": ALIBABA})
            result = ingest(Store(str(root)))
            assert result.ok and [r.state for r in result.records if r.month == "2024-05"] == ["committed"]
            assert _alibaba_months(root) == [("2024/05", 2, D("278.5")), ("2024/06", 1, D("8.5"))]


def _cur2(member: str, cost: str) -> str:
    header = ("bill_billing_period_start_date,line_item_currency_code,line_item_line_item_type,line_item_usage_start_date,"
              "line_item_usage_end_date,bill_payer_account_id,line_item_usage_account_id,line_item_product_code,"
              "line_item_unblended_cost\n")
    return header + (f"2025-01-01T00:00:00Z,USD,Usage,2025-01-01T00:00:00Z,2025-01-01T01:00:00Z,111122223333,{member},"
                     f"AmazonEC2,{cost}\n")


def test_two_reports_of_one_billing_account_never_silently_replace_each_other(tmp_path: Path) -> None:
    """Two CUR 2.0 exports of one payer in two folders (two member accounts' own reports): the second replaced the
    first's month (30 USD became 20). Now it is SourceConflict and the first stays; a re-sync of the same report in
    another folder, covering the same sub-accounts, still replaces it."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "member-x/data/BILLING_PERIOD=2025-01", {"part-0.csv": _cur2("000000000001", "10")})
    assert ingest(Store(str(root))).ok
    deliver(root, "aws", "member-y/data/BILLING_PERIOD=2025-01", {"part-0.csv": _cur2("000000000002", "20")})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict") and "sub-account 000000000001" in rec.error.message
    assert keyed(root, "SubAccountId, BilledCost") == {"000000000001": (D(10),)}
    deliver(root, "aws", "resynced/data/BILLING_PERIOD=2025-01", {"part-0.csv": _cur2("000000000001", "12")})
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "committed" and keyed(root, "SubAccountId, BilledCost") == {"000000000001": (D(12),)}


def test_alibaba_files_without_commodity_code_get_a_sku_of_product_and_billing_item(tmp_path: Path) -> None:
    """Review of stop 32: a bill file without CommodityCode (the instance detail file, older exports) left SkuId and
    SkuPriceId null on every usage row (FOCUS violations). They are the product code and billing item code."""
    from test_native_focus import ALIBABA

    root = make_hub(tmp_path / "hub")
    lines = [line.split(",") for line in ALIBABA.splitlines()]
    drop = lines[0].index("CommodityCode")
    text = "\n".join(",".join(cells[:drop] + cells[drop + 1:]) for cells in lines) + "\n"
    text = text.replace(",BillingItem\n", ",BillingItemCode\n").replace(",Hour,10.00,Instance\n", ",Hour,10.00,instance_type\n")
    deliver(root, "alibaba", "oss/2024-05", {"bill.csv": text})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert keyed(root, "ResourceId, SkuId, SkuPriceId") == {
        "i-bp1abc": ("ecs/instance_type", "ecs/instance_type"), "rm-uf6xyz": ("rds", "rds")}


def test_huawei_bill_types_written_as_numbers_with_a_fraction_keep_their_meaning(tmp_path: Path) -> None:
    """Review of stop 39: a bill saved as Parquet by pandas (an integer column with a gap becomes DOUBLE: 1.0, 4.0)
    matched no bill type: the purchase and its refund became Usage with EffectiveCost = the amount (605 instead of 5)."""
    import duckdb

    root = make_hub(tmp_path / "hub")
    folder = root / "exports" / "huawei" / "cc" / "2024-06"
    folder.mkdir(parents=True)
    duckdb.connect().execute(f"""COPY (SELECT * FROM (VALUES
        ('2024-06', '2024-06-05', CAST(1 AS DOUBLE), CAST(1 AS DOUBLE), 'c1', 'hws.service.type.ec2', 'ECS', 'vm-2', 's1', '900.00', '1000.00', '100.00'),
        ('2024-06', '2024-06-10', CAST(4 AS DOUBLE), CAST(1 AS DOUBLE), 'c1', 'hws.service.type.ec2', 'ECS', 'vm-3', 's1', '-300.00', '-333.33', '-33.33'),
        ('2024-06', '2024-06-11', CAST(NULL AS DOUBLE), CAST(3 AS DOUBLE), 'c1', 'hws.service.type.ec2', 'ECS', 'vm-4', 's1', '5.00', '5.00', '0'))
        t(cycle, bill_date, bill_type, charge_mode, customer_id, cloud_service_type, cloud_service_type_name, res_instance_id,
          sku_code, consume_amount, official_amount, discount_amount)) TO '{folder / "records.parquet"}' (FORMAT parquet)""")
    (folder / "manifest.json").write_bytes(b"")
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "ResourceId, x_BillType, x_ChargeMode, ChargeCategory, ChargeClass, BilledCost, EffectiveCost")
    assert got == {"vm-2": ("1", "1", "Purchase", None, D(900), D(0)),
                   "vm-3": ("4", "1", "Purchase", "Correction", D(-300), D(0)),
                   "vm-4": (None, "3", "Usage", None, D(5), D(5))}


def test_huawei_tax_rows_without_a_service_are_named_tax(tmp_path: Path) -> None:
    """Review of stop 39: tax rows without cloud_service_type had a null ServiceName (a FOCUS 1.0 NotNull violation in
    the hub's own output); an adjustment without one is named after the provider."""
    root = make_hub(tmp_path / "hub")
    header = HUAWEI.splitlines()[0] + "\n"
    rows = "".join(_huawei_row(t, a).replace(",hws.service.type.ec2,Elastic Cloud Server,", ",,,")
                   for t, a in ((15, "0.60"), (9, "-1.00")))
    deliver(root, "huawei", "obs/2024-05", {"res-records.csv": header + rows})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert keyed(root, "x_BillType, ChargeCategory, ServiceName") == {"15": ("Tax", "Tax"),
                                                                      "9": ("Adjustment", "Huawei Cloud")}
    assert validate(str(root)).violations == 0


def test_alibaba_tax_and_after_tax_amount_are_kept(tmp_path: Path) -> None:
    """Review of stop 39: a bill file with the international site's Tax and AfterTaxAmount dropped both without a
    trace (BilledCost stays the pre-tax amount, as documented): they are x_TaxAmount and x_AfterTaxAmount."""
    from test_native_focus import ALIBABA

    root = make_hub(tmp_path / "hub")
    lines = ALIBABA.splitlines()
    text = "\n".join([lines[0] + ",Tax,AfterTaxAmount", *(f"{line},0.51,{i}9.01" for i, line in enumerate(lines[1:]))]) + "\n"
    deliver(root, "alibaba", "oss/2024-05", {"bill.csv": text})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "ResourceId, x_TaxAmount, x_AfterTaxAmount")
    assert got == {"i-bp1abc": (D("0.51"), D("9.01")), "rm-uf6xyz": (D("0.51"), D("19.01"))}


def test_tencent_rows_without_component_or_item_have_no_sku(tmp_path: Path) -> None:
    """Review of stop 39: an adjustment row with only its product got the SkuId `CVM S5 /  / ` (empty parts)."""
    root = make_hub(tmp_path / "hub")
    header, usage = TENCENT.splitlines()[:2]
    adjust = usage.replace("Hourly settlement", "Adjustment").replace("ins-abc", "ins-adj").replace(
        ",CPU,CPU usage,sv_cvm_cpu,", ",,,,")
    deliver(root, "tencent", "cos/2024-05", {"100001-202405-by_used_time-bill_details.csv": f"{header}\n{usage}\n{adjust}\n"})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    got = keyed(root, "ResourceId, ChargeCategory, SkuId")
    assert got["ins-adj"] == ("Adjustment", None) and got["ins-abc"][1] == "sv_cvm_cpu"
