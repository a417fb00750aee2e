"""Prices, CommitmentDiscountUsage, Recommendations and Transactions transforms, with hand-computed values."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import lake_rows, rows_csv, write_export
from test_backfill import EA_PRICE, MCA_PRICE

from hub import runs
from hub.store import Store
from pipelines.ingest import ingest

D = Decimal
UTC = timezone.utc


def run(root: Path, key: str, export_type: str, version: str, dataset: str, *rows: dict) -> list[dict]:
    write_export(root, {"part_0_0001.csv": rows_csv(key, list(rows))}, export_type=export_type, data_version=version,
                 rows=len(rows), resource_id="/providers/Microsoft.Billing/billingAccounts/8611537")
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return lake_rows(root, dataset)


def test_ea_price_sheet(hub_root: Path) -> None:
    ri = {**EA_PRICE, "PriceType": "ReservedInstance", "Term": "P3Y", "UnitPrice": "1000", "MarketPrice": "1000", "MeterID": "meter-2"}
    rows = {r["x_SkuPriceType"]: r for r in run(hub_root, "pricesheet_2023-05-01_ea", "PriceSheet", "2023-05-01", "Prices",
                                                  EA_PRICE, ri)}
    od = rows["Consumption"]
    assert (od["ContractedUnitPrice"], od["ListUnitPrice"], od["PricingUnit"], od["x_PricingBlockSize"]) == (D("2.5"), D(3), "Hours", D(1))
    assert (od["ChargeCategory"], od["PricingCategory"], od["x_BillingAccountAgreement"]) == ("Usage", "Standard", "EA")
    assert od["BillingAccountId"] == "/providers/microsoft.billing/billingaccounts/8611537"
    assert od["x_ContractedUnitPriceDiscount"] == D("0.5")
    assert abs(od["x_ContractedUnitPriceDiscountPercent"] - D(1) / D(6)) < D("1e-15")  # (3 - 2.5) / 3, a 0-1 fraction
    assert od["SkuPriceIdv2"] == "ODU_DZH318Z0BQ4L_0001_1 Hour_MS-AZR-0017P"
    assert od["x_EffectivePeriodEnd"] == datetime(2024, 6, 1, tzinfo=UTC)  # inclusive ...-31T23:59:59 -> next month start
    res = rows["ReservedInstance"]
    assert (res["x_SkuTerm"], res["ChargeCategory"], res["CommitmentDiscountCategory"], res["CommitmentDiscountType"]) == (
        36, "Purchase", "Usage", "Reservation")
    assert od["x_CommitmentDiscountUsageEligibility"] == "Not Eligible"  # meter-1 has no reservation price


def test_mca_savings_plan_takes_on_demand_prices(hub_root: Path) -> None:
    sp = {**MCA_PRICE, "PriceType": "SavingsPlan", "UnitPrice": "2", "MarketPrice": None, "Term": "P1Y"}
    rows = {r["x_SkuPriceType"]: r for r in run(hub_root, "pricesheet_2023-05-01_mca", "PriceSheet", "2023-05-01", "Prices",
                                                  MCA_PRICE, sp, {**MCA_PRICE, "TierMinimumUnits": "100", "UnitPrice": "2.2"})}
    plan = rows["SavingsPlan"]
    # list/contracted from the on-demand row with the same meter/product/sku/tier (tier 0), effective = plan price
    assert (plan["ListUnitPrice"], plan["ContractedUnitPrice"], plan["x_EffectiveUnitPrice"]) == (D(3), D("2.5"), D(2))
    assert plan["x_EffectiveUnitPriceDiscountPercent"] == D("0.2")  # (2.5 - 2) / 2.5
    assert (plan["x_SkuTerm"], plan["CommitmentDiscountCategory"], plan["x_BillingAccountAgreement"]) == (12, "Spend", "MCA")
    assert rows["Consumption"]["x_CommitmentDiscountSpendEligibility"] == "Eligible"
    assert len(lake_rows(hub_root, "Prices")) == 3  # never duplicated


DETAILS = {"InstanceFlexibilityGroup": "DSv3 Series", "InstanceFlexibilityRatio": "2", "Kind": "Reservation",
           "InstanceId": "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM1",
           "ReservationOrderId": "O1", "ReservationId": "R1", "ReservedHours": "24", "SkuName": "Standard_D2s_v3",
           "TotalReservedQuantity": "1", "UsageDate": "2024-05-03T00:00:00Z", "UsedHours": "20"}


def test_commitment_discount_usage(hub_root: Path) -> None:
    (row,) = run(hub_root, "reservationdetails_2023-03-01", "ReservationDetails", "2023-03-01", "CommitmentDiscountUsage", DETAILS)
    assert row["CommitmentDiscountId"] == "/providers/microsoft.capacity/reservationorders/o1/reservations/r1"
    assert (row["CommitmentDiscountQuantity"], row["CommitmentDiscountUnit"], row["ConsumedQuantity"]) == (D(40), "Normalized Hours", D(20))
    assert (row["ChargePeriodStart"], row["ChargePeriodEnd"]) == (datetime(2024, 5, 3, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC))
    assert (row["ResourceName"], row["x_ResourceType"], row["SubAccountId"]) == ("vm1", "microsoft.compute/virtualmachines", "/subscriptions/s1")
    assert row["ServiceName"] == "Virtual Machines" and row["x_SourceVersion"] == "2023-03-01"


MCA_RECO = {"Cost With No ReservedInstances": '{"value":120.5,"currency":"USD"}', "First UsageDate": "2024-04-01T00:00:00Z",
            "Instance Flexibility Ratio": "1", "Instance Flexibility Group": "DSv3", "Location": "eastus", "LookBackPeriod": "Last7Days",
            "MeterID": "meter-1", "Net Savings": '{"value":-1.5e1,"currency":"USD"}', "Normalized Size": "Standard_D2s_v3",
            "Recommended Quantity": "2", "Recommended Quantity Normalized": "2", "ResourceType": "virtualmachines", "scope": "Shared",
            "SkuName": "Standard_D2s_v3", "Sku Properties": "[]", "Term": "P1Y", "Total Cost With ReservedInstances": '{"value":100,"currency":"USD"}'}


def test_mca_recommendations_json_in_cells(hub_root: Path) -> None:
    (row,) = run(hub_root, "reservationrecommendations_2023-05-01_mca", "ReservationRecommendations", "2023-05-01", "Recommendations",
                 MCA_RECO)
    assert (row["x_EffectiveCostBefore"], row["x_EffectiveCostAfter"], row["x_EffectiveCostSavings"]) == (D("120.5"), D(100), D(-15))
    details = json.loads(row["x_RecommendationDetails"])
    assert (details["LookbackPeriodDuration"], details["SkuTerm"], details["RegionName"]) == ("P7D", 12, "East US")
    assert row["x_RecommendationDate"] == datetime(2024, 4, 8, tzinfo=UTC)  # first usage + 7 days


def test_mca_recommendation_amounts_written_as_text_or_plain_numbers(hub_root: Path) -> None:
    """Review of stop 38: a JSON-in-cell amount whose value is a JSON string ("1200.75") or a plain number was NULL."""
    reco = {**MCA_RECO, "Cost With No ReservedInstances": '{"value":"120.5","currency":"USD"}', "Net Savings": "-15",
            "Total Cost With ReservedInstances": '{"value": 1e2, "currency": "USD"}'}
    (row,) = run(hub_root, "reservationrecommendations_2023-05-01_mca", "ReservationRecommendations", "2023-05-01", "Recommendations",
                 reco)
    assert (row["x_EffectiveCostBefore"], row["x_EffectiveCostAfter"], row["x_EffectiveCostSavings"]) == (D("120.5"), D(100), D(-15))


def test_transactions(hub_root: Path) -> None:
    ea = {"AccountName": "acct", "AccountOwnerEmail": "a@b", "Amount": "1200", "ArmSkuName": "Standard_D2s_v3", "BillingFrequency": "OneTime",
          "BillingMonth": "20240501", "Currency": "USD", "CurrentEnrollmentId": "8611537", "Description": "RI", "EventDate": "2024-05-03T00:00:00Z",
          "EventType": "Refund", "PurchasingSubscriptionGuid": "S1", "PurchasingSubscriptionName": "Sub", "Quantity": "1", "Region": "East US",
          "ReservationOrderId": "O1", "ReservationOrderName": "ri", "Term": "P3Y"}
    (row,) = run(hub_root, "reservationtransactions_2023-05-01_ea", "ReservationTransactions", "2023-05-01", "Transactions", ea)
    assert (row["BilledCost"], row["ChargeCategory"], row["ChargeClass"], row["ChargeFrequency"]) == (D(1200), "Purchase", "Correction", "One-Time")
    assert (row["BillingPeriodStart"], row["BillingPeriodEnd"]) == (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC))
    assert (row["x_SkuTerm"], row["SubAccountId"], row["RegionId"]) == (36, "/subscriptions/S1", "eastus")
    assert row["BillingAccountId"] == "/providers/microsoft.billing/billingaccounts/8611537"


@pytest.mark.parametrize("written", ["2024-05-01", "202405", "5/1/2024 12:00:00 AM", " 20240501"])
def test_an_ea_billing_month_written_otherwise_is_still_its_billing_month(hub_root: Path, written: str) -> None:
    """Review of stop 38: a BillingMonth not in yyyyMMdd (a file saved again by a spreadsheet) was silently replaced by
    the event's UTC month: a refund of 30 April billed in May landed in April."""
    ea = {"AccountName": "acct", "Amount": "-50", "BillingFrequency": "OneTime", "BillingMonth": written, "Currency": "USD",
          "CurrentEnrollmentId": "8611537", "EventDate": "2024-04-30T23:00:00Z", "EventType": "Refund", "Quantity": "1",
          "ReservationOrderId": "O1", "Term": "P1Y"}
    (row,) = run(hub_root, "reservationtransactions_2023-05-01_ea", "ReservationTransactions", "2023-05-01", "Transactions", ea)
    assert row["BillingPeriodStart"] == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("written", ["May 2024", "01/05/2024"])  # a day-first date: 5 January, no billing month
def test_an_ea_billing_month_that_is_no_month_is_refused(hub_root: Path, written: str) -> None:
    ea = {"Amount": "-50", "BillingMonth": written, "Currency": "USD", "CurrentEnrollmentId": "8611537",
          "EventDate": "2024-04-30T23:00:00Z", "EventType": "Refund", "ReservationOrderId": "O1", "Term": "P1Y"}
    write_export(hub_root, {"part_0_0001.csv": rows_csv("reservationtransactions_2023-05-01_ea", [ea])},
                 export_type="ReservationTransactions", data_version="2023-05-01", rows=1,
                 resource_id="/providers/Microsoft.Billing/billingAccounts/8611537")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "InvalidValue") and "BillingMonth" in rec.error.message


def test_mca_transactions_get_the_event_month_as_billing_period_and_an_upper_case_currency(hub_root: Path) -> None:
    """Review of stop 35: MCA reservation transactions have no BillingMonth: BillingPeriodStart/End were null on every
    row (a FOCUS-required column; a filter on the billing period dropped every MCA transaction). The event's calendar
    month (MCA bills calendar months): 2024-05-17 -> 2024-05-01 to 2024-06-01. A currency written ` usd` is USD in
    the lake and in the run's totals (one currency, not two)."""
    mca = {"Amount": "300", "ArmSkuName": "Standard_D2s_v3", "BillingFrequency": "Recurring", "BillingProfileId": "BP1",
           "BillingProfileName": "Profile", "Currency": " usd", "Description": "RI", "EventDate": "2024-05-17T10:00:00Z",
           "EventType": "Purchase", "Invoice": "", "InvoiceId": "G1", "InvoiceSectionId": "IS1", "InvoiceSectionName": "Sec",
           "PurchasingSubscriptionGuid": "S1", "PurchasingSubscriptionName": "Sub", "Quantity": "1", "Region": "East US",
           "ReservationOrderId": "O1", "ReservationOrderName": "ri", "Term": "P1Y"}
    (row,) = run(hub_root, "reservationtransactions_2023-05-01_mca", "ReservationTransactions", "2023-05-01", "Transactions", mca)
    assert (row["BillingPeriodStart"], row["BillingPeriodEnd"]) == (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC))
    assert (row["BillingCurrency"], row["BilledCost"], row["ChargeFrequency"]) == ("USD", D(300), "Recurring")


MCA_TX = {"Amount": "20", "ArmSkuName": "Standard_D2s_v3", "BillingFrequency": "OneTime", "BillingProfileId": "BP1",
          "BillingProfileName": "Profile", "Currency": "EUR", "Description": "RI", "EventDate": "2024-05-17T10:00:00Z",
          "EventType": "Purchase", "InvoiceId": "G1", "InvoiceSectionId": "IS1", "InvoiceSectionName": "Sec",
          "PurchasingSubscriptionGuid": "S1", "PurchasingSubscriptionName": "Sub", "Quantity": "1", "Region": "East US",
          "ReservationOrderId": "O1", "ReservationOrderName": "ri", "Term": "P1Y"}


def _transactions(root: Path, run_id: str, start: str, end: str, *rows: dict) -> list:
    write_export(root, {"part_0_0001.csv": rows_csv("reservationtransactions_2023-05-01_mca", list(rows))},
                 export_type="ReservationTransactions", data_version="2023-05-01", rows=len(rows), run_id=run_id,
                 folder=f"tx/{start[:8]}/{run_id}", start_date=start,
                 resource_id="/providers/Microsoft.Billing/billingAccounts/8611537",
                 manifest_extra={"runInfo": {"runId": run_id, "startDate": start, "endDate": end,
                                             "submittedTime": f"2024-06-0{run_id[-1]}T00:00:00Z"}})
    return ingest(Store(str(root))).records


def test_reservation_exports_of_more_than_a_month_or_half_a_month_are_refused(hub_root: Path) -> None:
    """Review of stop 38: the one-month and covers-the-replaced-days checks ran for Costs only. Transactions exported for
    April-May were filed under April, so May's own export counted May's purchase twice (40 for 20); a month delivered as
    two halves kept only the second (30 of 130). Reservation details and transactions now get both checks."""
    (wide,) = _transactions(hub_root, "tx1", "2024-04-01T00:00:00", "2024-05-31T00:00:00",
                            {**MCA_TX, "EventDate": "2024-04-10T00:00:00Z"}, MCA_TX)
    assert (wide.state, wide.error.code) == ("quarantined", "PeriodMismatch")
    (first,) = _transactions(hub_root, "tx2", "2024-05-01T00:00:00", "2024-05-15T00:00:00",
                             {**MCA_TX, "Amount": "100", "EventDate": "2024-05-03T00:00:00Z"})
    assert first.state == "committed"
    (second,) = _transactions(hub_root, "tx3", "2024-05-16T00:00:00", "2024-05-31T00:00:00", {**MCA_TX, "Amount": "30"})
    assert (second.state, second.error.code) == ("quarantined", "PartialPeriod")
    assert [r["BilledCost"] for r in lake_rows(hub_root, "Transactions")] == [D(100)]


def test_every_versioned_view_reads_over_ea_and_mca_transactions(hub_root: Path) -> None:
    """Review of stop 38: a column the export lacks was written as a bare NULL (Parquet's Null type) and
    Transactions_v1_0 typed three columns "NULL": SELECT * failed on every MCA lake."""
    import duckdb

    from hub import catalog

    ea = {"AccountName": "a", "AccountOwnerEmail": "o", "Amount": "100", "ArmSkuName": "Standard_D2s_v3", "BillingFrequency": "OneTime",
          "BillingMonth": "20240501", "Currency": "USD", "CurrentEnrollmentId": "8611537", "Description": "RI",
          "EventDate": "2024-05-03T00:00:00Z", "EventType": "Purchase", "Quantity": "1", "Region": "East US", "ReservationOrderId": "O1",
          "ReservationOrderName": "ri", "Term": "P1Y"}
    run(hub_root, "reservationtransactions_2023-05-01_ea", "ReservationTransactions", "2023-05-01", "Transactions", ea)
    _transactions(hub_root, "tx4", "2024-06-01T00:00:00", "2024-06-30T00:00:00", {**MCA_TX, "EventDate": "2024-06-03T00:00:00Z"})
    files = list((hub_root / "ingestion" / "Transactions").rglob("*.parquet"))
    assert len(files) == 2
    for f in files:
        assert "NULL" not in {t for (_, t, *_) in duckdb.sql(f"DESCRIBE SELECT * FROM '{f}'").fetchall()}
    con = catalog.connect(str(hub_root))
    views = [v for (v,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
    for view in views:
        con.execute(f'SELECT * FROM "{view}"').fetchall()
    assert con.execute("SELECT count(*) FROM Transactions_v1_0").fetchall() == [(2,)]


def _reco(root: Path, name: str, run_id: str, submitted: str, *rows: dict) -> str:
    """A reservation recommendations export named ``name`` of the billing account (May 2024)."""
    return write_export(root, {"part_0_0001.csv": rows_csv("reservationrecommendations_2023-05-01_mca", list(rows))},
                        run_id=run_id, rows=len(rows), folder=f"{name}/20240501-20240531/{run_id}", manifest_extra={
                            "exportConfig": {"exportName": name, "type": "ReservationRecommendations", "dataVersion": "2023-05-01",
                                             "resourceId": "/providers/Microsoft.Billing/billingAccounts/8611537"},
                            "runInfo": {"runId": run_id, "startDate": "2024-05-01T00:00:00", "submittedTime": submitted}})


def _savings(root: Path) -> dict[str, Decimal]:
    return {json.loads(r["x_RecommendationDetails"])["CommitmentDiscountResourceType"]: r["x_EffectiveCostSavings"] for r in lake_rows(root, "Recommendations")}


SQL_RECO = {**MCA_RECO, "ResourceType": "sqldatabases", "Net Savings": '{"value":40,"currency":"USD"}'}


def test_recommendation_exports_of_one_scope_keep_each_their_rows(hub_root: Path) -> None:
    """Left open in stop 40: Azure exports reservation recommendations per resource type (and scope, look-back period),
    so a billing account has several such exports; each delivery replaced the scope's folder, keeping only the last
    export's recommendations (the virtual machines' gone once the SQL databases' arrived)."""
    _reco(hub_root, "Reco-VM", "vm1", "2024-05-02T00:00:00Z", MCA_RECO)
    _reco(hub_root, "reco-sql", "sql1", "2024-05-02T01:00:00Z", SQL_RECO)
    assert ingest(Store(str(hub_root))).ok
    assert _savings(hub_root) == {"virtualmachines": D(-15), "sqldatabases": D(40)}
    scope = hub_root / "ingestion/Recommendations/2024/05/providers/microsoft.billing/billingaccounts/8611537"
    assert sorted(p.parent.name for p in scope.rglob("*.parquet")) == ["export~reco-sql", "export~reco-vm"]
    assert len(list((hub_root / "raw/Recommendations").rglob("*.parquet"))) == 2  # the Power BI copies alike
    # the VM export's next delivery replaces its own rows only, in whichever order the exports arrive
    _reco(hub_root, "reco-vm", "vm2", "2024-05-03T00:00:00Z", {**MCA_RECO, "Net Savings": '{"value":25,"currency":"USD"}'})
    assert ingest(Store(str(hub_root))).ok
    assert _savings(hub_root) == {"virtualmachines": D(25), "sqldatabases": D(40)}
    assert len(list((hub_root / "raw/Recommendations").rglob("*.parquet"))) == 2


def test_recommendations_an_older_version_wrote_move_to_their_export_folder(hub_root: Path) -> None:
    """A lake an older hub version wrote (recommendations in the scope folder itself): before any delivery, the
    committed delivery's files move to its export's folder, so the export's next delivery replaces them (never counted
    twice) and another export's delivery keeps them."""
    _reco(hub_root, "reco-vm", "vm1", "2024-05-02T00:00:00Z", MCA_RECO)
    assert ingest(Store(str(hub_root))).ok
    scope = "ingestion/Recommendations/2024/05/providers/microsoft.billing/billingaccounts/8611537"
    # the older layout, as that version left it: files and record naming the scope folder
    store = Store(str(hub_root))
    (rec,) = [r for r in runs.load_all(store) if r.dataset == "Recommendations"]
    for top in ("ingestion", "raw"):
        (f,) = (hub_root / top / scope[len("ingestion/"):]).rglob("*.parquet")
        f.rename(hub_root / top / scope[len("ingestion/"):] / f.name)
        f.parent.rmdir()
    rec.destination = scope
    rec.parts = [p.model_copy(update={"output": f"{scope}/{Path(p.output).name}"}) for p in rec.parts]
    runs.save(store, rec)
    _reco(hub_root, "reco-sql", "sql1", "2024-05-03T00:00:00Z", SQL_RECO)
    assert ingest(Store(str(hub_root))).ok
    assert _savings(hub_root) == {"virtualmachines": D(-15), "sqldatabases": D(40)}
    assert runs.load(store, rec.key).destination == f"{scope}/export~reco-vm"
    _reco(hub_root, "reco-vm", "vm2", "2024-05-04T00:00:00Z", {**MCA_RECO, "Net Savings": '{"value":25,"currency":"USD"}'})
    assert ingest(Store(str(hub_root))).ok
    assert _savings(hub_root) == {"virtualmachines": D(25), "sqldatabases": D(40)}
    for top in ("ingestion", "raw"):
        assert sorted(p.parent.name for p in (hub_root / top / scope[len("ingestion/"):]).rglob("*.parquet")) == [
            "export~reco-sql", "export~reco-vm"], top


def test_price_columns_a_layout_lacks_are_typed_as_the_catalog_says(hub_root: Path) -> None:
    """Review of stop 41 (Spark): an EA sheet has no ProductOrderName, an MCA one no OfferId or PartNumber; the columns
    were written as an untyped NULL column (INT32 in Parquet), so Spark's merged schema failed (CANNOT_MERGE_SCHEMAS)
    and a Databricks table declared VARCHAR could not read them. Every Prices column has its catalog type."""
    import duckdb

    from hub import catalog

    run(hub_root, "pricesheet_2023-05-01_ea", "PriceSheet", "2023-05-01", "Prices", EA_PRICE)
    write_export(hub_root, {"part_0_0001.csv": rows_csv("pricesheet_2023-05-01_mca", [MCA_PRICE])}, export_type="PriceSheet",
                 data_version="2023-05-01", rows=1, run_id="run2", folder="p2/20240501-20240531/run2",
                 resource_id="/providers/Microsoft.Billing/billingAccounts/1234:5678_2019-05-31/billingProfiles/ABCD")
    assert ingest(Store(str(hub_root))).ok
    (spec,) = [s for n, s in catalog.view_specs().items() if s["dataset"] == "Prices"]
    want = {c.get("from", c["name"]): c["type"] for c in spec["columns"]}
    con = duckdb.connect()
    files = sorted((hub_root / "ingestion/Prices").rglob("*.parquet"))
    assert len(files) == 2
    for f in files:
        wrong = [(n, t) for n, t, *_ in con.execute(f"DESCRIBE SELECT * FROM '{f}'").fetchall() if n in want and t != want[n]]
        assert wrong == [], f
