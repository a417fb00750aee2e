"""Legacy ActualCost / AmortizedCost exports as real enrollments deliver them: every spelling of Microsoft's cost
details fields (older EA layouts, MCA camelCase), and actual-only, amortized-only or both in either order without
counting anything twice. Expected values are computed by hand in the comments."""

from __future__ import annotations

import csv
import io
from decimal import Decimal as D
from pathlib import Path

import pytest
from conftest import DATA, lake_rows, make_hub, write_export

from hub import runs
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest


def _names(header: str) -> list[str]:
    return header.split(",")


#: An older EA layout (cost details version 2021-01-01 column order): CostInBillingCurrency, BillingCurrencyCode,
#: ProductName, InvoiceSectionName instead of Cost, BillingCurrency, Product, InvoiceSection.
EA_OLD = _names("InvoiceSectionName,AccountName,AccountOwnerId,SubscriptionId,SubscriptionName,ResourceGroup,ResourceLocation,Date,"
          "ProductName,MeterCategory,MeterSubCategory,MeterId,MeterName,MeterRegion,UnitOfMeasure,Quantity,EffectivePrice,"
          "CostInBillingCurrency,CostCenter,ConsumedService,ResourceId,Tags,OfferId,AdditionalInfo,ServiceInfo1,ServiceInfo2,"
          "ResourceName,ReservationId,ReservationName,UnitPrice,ProductOrderId,ProductOrderName,Term,PublisherType,"
          "PublisherName,ChargeType,Frequency,PricingModel,AvailabilityZone,BillingAccountId,BillingAccountName,"
          "BillingCurrencyCode,BillingPeriodStartDate,BillingPeriodEndDate,BillingProfileId,BillingProfileName,"
          "InvoiceSectionId,IsAzureCreditEligible,PartNumber,PayGPrice,PlanName,ServiceFamily,CostAllocationRuleName")
#: An MCA export in camelCase (cost details 2021-10-01).
MCA = _names("invoiceId,previousInvoiceId,billingAccountId,billingAccountName,billingProfileId,billingProfileName,invoiceSectionId,"
       "invoiceSectionName,resellerName,resellerMpnId,costCenter,billingPeriodEndDate,billingPeriodStartDate,"
       "servicePeriodEndDate,servicePeriodStartDate,date,serviceFamily,productOrderId,productOrderName,consumedService,meterId,"
       "meterName,meterCategory,meterSubCategory,meterRegion,ProductId,ProductName,SubscriptionId,subscriptionName,"
       "publisherType,publisherId,publisherName,resourceGroupName,ResourceId,resourceLocation,location,effectivePrice,quantity,"
       "unitOfMeasure,chargeType,billingCurrency,pricingCurrency,costInBillingCurrency,costInPricingCurrency,costInUsd,"
       "paygCostInBillingCurrency,paygCostInUsd,exchangeRatePricingToBilling,exchangeRateDate,isAzureCreditEligible,"
       "serviceInfo1,serviceInfo2,additionalInfo,tags,PayGPrice,frequency,term,reservationId,reservationName,pricingModel,"
       "unitPrice,costAllocationRuleName,benefitId,benefitName,provider")
SUB = "9ec51cfd-5ca7-4d76-8101-dd0a4abc5674"
RES = "/subscriptions/" + SUB + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
RI = "49ed0e4d-8e0c-4f1f-af2c-67c865056615"
EA_BASE = {"InvoiceSectionName": "ACM", "AccountName": "ACM Team", "SubscriptionId": SUB, "SubscriptionName": "Corp",
           "ResourceGroup": "rg", "ResourceLocation": "EastUS", "Date": "9/3/2023", "ProductName": "Virtual Machines D2 v2",
           "MeterCategory": "Virtual Machines", "MeterId": "m1", "MeterName": "D2 v2", "UnitOfMeasure": "1 Hour",
           "Quantity": "2", "EffectivePrice": "0.5", "ResourceId": RES, "Tags": '"env": "prod"', "OfferId": "MS-AZR-0017P",
           "UnitPrice": "0.5", "PublisherType": "Azure", "ChargeType": "Usage", "Frequency": "UsageBased",
           "PricingModel": "OnDemand", "BillingAccountId": "8611537", "BillingAccountName": "Trey", "BillingCurrencyCode": "USD",
           "BillingPeriodStartDate": "9/1/2023", "BillingPeriodEndDate": "9/30/2023", "BillingProfileId": "8611537",
           "IsAzureCreditEligible": "True", "PayGPrice": "0.6", "ConsumedService": "Microsoft.Compute"}
COVERED = {"ReservationId": RI, "ReservationName": "ri", "ProductOrderId": RI, "PricingModel": "Reservation"}
#: Actual cost: usage 1, usage 5.64902E-05 (E-notation), a reservation purchase 100, usage covered by it (actual cost 0).
ACTUAL = [
    {**EA_BASE, "CostInBillingCurrency": "1"},
    {**EA_BASE, "CostInBillingCurrency": "5.64902E-05", "Quantity": "1.12980E-04", "Date": "9/13/2023"},
    {**EA_BASE, **COVERED, "ChargeType": "Purchase", "Frequency": "OneTime", "CostInBillingCurrency": "100", "Quantity": "1",
     "EffectivePrice": "100", "UnitPrice": "100", "ResourceId": "", "Date": "9/1/2023"},
    {**EA_BASE, **COVERED, "CostInBillingCurrency": "0", "EffectivePrice": "0"},
]
#: Amortized cost of the same month: the same two usage rows, the covered usage at its amortized cost 3.25, the
#: reservation's unused hours 0.75; no purchase row.
AMORTIZED = [
    {**EA_BASE, "CostInBillingCurrency": "1"},
    {**EA_BASE, "CostInBillingCurrency": "5.64902E-05", "Quantity": "1.12980E-04", "Date": "9/13/2023"},
    {**EA_BASE, **COVERED, "CostInBillingCurrency": "3.25", "EffectivePrice": "1.625"},
    {**EA_BASE, **COVERED, "ChargeType": "UnusedReservation", "CostInBillingCurrency": "0.75", "EffectivePrice": "1.625",
     "Quantity": "0.4615384615", "ResourceId": ""},
]
ACTUAL_TOTAL = D("101.0000564902")  # 1 + 0.0000564902 + 100 + 0
AMORTIZED_TOTAL = D("5.0000564902")  # 1 + 0.0000564902 + 3.25 + 0.75


def _csv(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[row.get(h, "") for h in header] for row in rows])
    return "\ufeff" + buf.getvalue()


def _deliver(root: Path, kind: str, rows: list[dict], header: list[str] = EA_OLD, run: str | None = None) -> str:
    run = run or kind.lower()
    return write_export(root, {"part_0_0001.csv": _csv(header, rows)}, export_type=kind, data_version="2021-10-01",
                        run_id=run, rows=len(rows), folder=f"{kind}/202309/{run}", start_date="2023-09-01")


def _totals(root: Path) -> tuple[int, D, D]:
    rows = lake_rows(root)
    return len(rows), sum(r["BilledCost"] for r in rows), sum(r["EffectiveCost"] for r in rows)


def test_older_ea_layout_with_aliases_e_notation_and_us_dates(hub_root: Path) -> None:
    """Defect B1: CostInBillingCurrency & co. crashed with a Binder Error (InternalError)."""
    _deliver(hub_root, "AmortizedCost", AMORTIZED)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    assert rec.totalsIn == {"USD": {"BilledCost": "5.000056490200000000", "EffectiveCost": "5.000056490200000000"}}
    rows = sorted(lake_rows(hub_root), key=lambda r: r["EffectiveCost"])
    assert [r["EffectiveCost"] for r in rows] == [D("0.0000564902"), D("0.75"), D(1), D("3.25")]
    assert rows[0]["ChargePeriodStart"].isoformat() == "2023-09-13T00:00:00+00:00"  # M/D/YYYY
    assert rows[0]["PricingQuantity"] == D("0.00011298")  # E-notation quantity
    usage = rows[2]
    assert (usage["BillingCurrency"], usage["ChargeDescription"], usage["x_InvoiceSectionName"]) == ("USD", "Virtual Machines D2 v2", "ACM")
    assert usage["SubAccountId"] == f"/subscriptions/{SUB}" and usage["Tags"] == '{"env": "prod"}'
    assert rec.missingColumns and "Cost" not in rec.missingColumns and "BillingCurrency" not in rec.missingColumns


def test_headers_match_without_case_or_surrounding_spaces(hub_root: Path) -> None:
    header = [f" {h.upper()} " if h in ("CostInBillingCurrency", "BillingCurrencyCode") else h.lower() for h in EA_OLD]
    rows = [{h2: row.get(h) for h, h2 in zip(EA_OLD, header, strict=True)} for row in AMORTIZED]
    _deliver(hub_root, "AmortizedCost", rows, header)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    assert _totals(hub_root) == (4, D("1.0000564902"), AMORTIZED_TOTAL)


def test_mca_camel_case_export_prices_in_billing_currency(hub_root: Path) -> None:
    """MCA files spell the fields in camelCase and price in the pricing currency (USD here, billed in EUR at 0.9)."""
    row = {"billingAccountId": "acc", "billingProfileId": "XXXX-XXXX-XXX-PGB", "billingProfileName": "Profile",
           "invoiceSectionId": "is1", "invoiceSectionName": "Section", "date": "09/05/2023", "meterId": "m1",
           "meterCategory": "Virtual Machines", "ProductName": "VM D2", "SubscriptionId": SUB, "ResourceId": RES,
           "resourceLocation": "westeurope", "effectivePrice": "2", "quantity": "3", "unitOfMeasure": "1 Hour",
           "chargeType": "Usage", "billingCurrency": "EUR", "pricingCurrency": "USD", "costInBillingCurrency": "5.4",
           "costInUsd": "6", "exchangeRatePricingToBilling": "0.9", "unitPrice": "2", "PayGPrice": "2.5",
           "pricingModel": "On Demand", "frequency": "UsageBased", "tags": '{"team": "web"}', "provider": "Azure",
           "billingPeriodStartDate": "09/01/2023", "billingPeriodEndDate": "09/30/2023", "resellerName": "Contoso"}
    _deliver(hub_root, "ActualCost", [row], MCA)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    (out,) = lake_rows(hub_root)
    assert (out["BilledCost"], out["EffectiveCost"], out["BillingCurrency"]) == (D("5.4"), D("5.4"), "EUR")
    assert (out["x_EffectiveUnitPrice"], out["ContractedUnitPrice"], out["ContractedCost"]) == (D("1.8"), D("1.8"), D("5.4"))
    assert (out["ListUnitPrice"], out["ListCost"]) == (D("2.25"), D("6.75"))  # 2.5 USD x 0.9
    assert out["BillingAccountId"] == "/providers/microsoft.billing/billingaccounts/acc/billingprofiles/xxxx-xxxx-xxx-pgb"
    assert (out["x_BillingAccountAgreement"], out["PricingCategory"], out["x_BilledCostInUsd"]) == ("MCA", "Standard", D(6))
    assert (out["x_ResellerName"], out["x_InvoiceSectionName"]) == ("Contoso", "Section")


def test_missing_cost_column_is_schema_mismatch_naming_it(hub_root: Path) -> None:
    header = [h for h in EA_OLD if h != "CostInBillingCurrency"]
    _deliver(hub_root, "ActualCost", ACTUAL, header)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "SchemaMismatch"
    assert "Cost" in rec.error.message and "CostInBillingCurrency" in rec.error.message


def test_actual_only_gets_every_row_flagged(hub_root: Path) -> None:
    """Defect B2: an ActualCost export alone lost every usage row."""
    _deliver(hub_root, "ActualCost", ACTUAL)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed" and (rec.rowsIn, rec.rowsFiltered, rec.rowsOut) == (4, 0, 4)
    assert _totals(hub_root) == (4, ACTUAL_TOTAL, D("1.0000564902"))  # the purchase's EffectiveCost is 0 (FOCUS)
    flagged = [r for r in lake_rows(hub_root) if "EffectiveCostFromActualCost" in (r["x_SourceChanges"] or "")]
    assert len(flagged) == 3 and all(r["ChargeCategory"] == "Usage" for r in flagged)


def test_a_row_without_a_subscription_has_no_sub_account_name(hub_root: Path) -> None:
    """Review of stop 38: SubAccountName came from SubscriptionName even where SubscriptionId was empty (EA's
    "Unassigned" rows): FOCUS wants it null with its id (hub validate's SubAccountNameNullWhenIdNull)."""
    _deliver(hub_root, "AmortizedCost", [*AMORTIZED[:2], {**AMORTIZED[0], "SubscriptionId": "", "SubscriptionName": "Unassigned"}])
    assert ingest(Store(str(hub_root))).ok
    names = sorted((r["SubAccountId"] or "", r["SubAccountName"] or "") for r in lake_rows(hub_root))
    assert names[0] == ("", "") and names[1] == (f"/subscriptions/{SUB}", "Corp")
    assert "SubAccountNameNullWhenIdNull:SubAccountName" not in validate(str(hub_root)).summary()


def test_amortized_only(hub_root: Path) -> None:
    _deliver(hub_root, "AmortizedCost", AMORTIZED)
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (4, D("1.0000564902"), AMORTIZED_TOTAL)  # covered usage is not billed again


@pytest.mark.parametrize("order", [("ActualCost", "AmortizedCost"), ("AmortizedCost", "ActualCost")])
def test_actual_and_amortized_in_either_order_count_nothing_twice(hub_root: Path, order: tuple[str, str]) -> None:
    data = {"ActualCost": ACTUAL, "AmortizedCost": AMORTIZED}
    for kind in order:
        _deliver(hub_root, kind, data[kind])
        assert ingest(Store(str(hub_root))).ok
    # BilledCost totals the actual export's cost, EffectiveCost the amortized export's: 4 amortized rows + the purchase
    assert _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)
    assert not [r for r in lake_rows(hub_root) if "EffectiveCostFromActualCost" in (r["x_SourceChanges"] or "")]
    records = {r.exportType: r for r in runs.load_all(Store(str(hub_root)))}
    if order[0] == "ActualCost":  # the amortized export took the usage rows out of the actual folder first
        assert (records["Pairing"].rowsIn, records["Pairing"].rowsOut, records["Pairing"].state) == (4, 1, "committed")
    else:
        assert (records["ActualCost"].rowsIn, records["ActualCost"].rowsFiltered, records["ActualCost"].rowsOut) == (4, 3, 1)
    # a re-delivered amortized export changes nothing more
    _deliver(hub_root, "AmortizedCost", AMORTIZED, run="amortized2")
    assert ingest(Store(str(hub_root))).ok and _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)


@pytest.mark.parametrize("order", [("AmortizedCost", "ActualCost"), ("ActualCost", "AmortizedCost")])
def test_an_amortized_run_of_the_first_days_takes_only_those_days_usage_out_of_the_actual_export(
        hub_root: Path, order: tuple[str, str]) -> None:
    """Review of stop 41: pairing went by files, not days. An amortized month-to-date run of September 10 (its days
    the 1st to the 9th) with the actual export of the whole month (run October 2, usage of 40 on the 20th and
    0.0000564902 on the 13th that no amortized row carries) lost those rows in either order: BilledCost 101, not the
    actual export's 141.0000564902. By hand: BilledCost = 141.0000564902 (100 purchase + 1 + 0.0000564902 + 40);
    EffectiveCost = the amortized rows of Sept 1-9 (1 + 3.25 + 0.75 = 5) + the actual rows of the other days, flagged
    (0.0000564902 + 40) = 45.0000564902; 6 rows."""
    late = {**EA_BASE, "CostInBillingCurrency": "40", "Date": "9/20/2023"}
    data = {"AmortizedCost": ([r for r in AMORTIZED if r["Date"] != "9/13/2023"], "2023-09-10T00:00:00Z", "2023-09-30"),
            "ActualCost": (ACTUAL + [late], "2023-10-02T00:00:00Z", "2023-09-30")}
    for kind in order:
        rows, submitted, end = data[kind]
        write_export(hub_root, {"part_0_0001.csv": _csv(EA_OLD, rows)}, export_type=kind, data_version="2021-10-01",
                     run_id=kind.lower(), rows=len(rows), folder=f"{kind}/202309/{kind.lower()}", start_date="2023-09-01",
                     manifest_extra={"runInfo": {"runId": kind.lower(), "startDate": "2023-09-01", "endDate": end,
                                                 "submittedTime": submitted}})
        assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (6, D("141.0000564902"), D("45.0000564902"))
    flagged = sorted(r["ChargePeriodStart"].day for r in lake_rows(hub_root)
                     if "EffectiveCostFromActualCost" in (r["x_SourceChanges"] or ""))
    assert flagged == [13, 20]  # the days the amortized run did not hold
    # the amortized export of the whole month (run October 2) takes the rest out: the regular pair
    write_export(hub_root, {"part_0_0001.csv": _csv(EA_OLD, AMORTIZED + [late])}, export_type="AmortizedCost",
                 data_version="2021-10-01", run_id="amortized2", rows=5, folder="AmortizedCost/202309/amortized2",
                 start_date="2023-09-01", manifest_extra={"runInfo": {"runId": "amortized2", "startDate": "2023-09-01",
                                                                       "endDate": "2023-09-30", "submittedTime": "2023-10-02T01:00:00Z"}})
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (6, D("141.0000564902"), D("45.0000564902"))
    assert not [r for r in lake_rows(hub_root) if "EffectiveCostFromActualCost" in (r["x_SourceChanges"] or "")]


def _deliver_at(root: Path, kind: str, rows: list[dict], run: str, submitted: str, export_type: str | None = None) -> None:
    """A legacy export of September 2023 run (submitted) at ``submitted``, its manifest's type ``export_type``."""
    write_export(root, {"part_0_0001.csv": _csv(EA_OLD, rows)}, export_type=export_type or kind, data_version="2021-10-01",
                 run_id=run, rows=len(rows), folder=f"{kind}/202309/{run}", start_date="2023-09-01",
                 manifest_extra={"runInfo": {"runId": run, "startDate": "2023-09-01", "endDate": "2023-09-30",
                                             "submittedTime": submitted}})


def test_an_amortized_type_with_a_stray_space_still_pairs(hub_root: Path) -> None:
    """Review of stop 41: ``"type": "AmortizedCost "`` was read as AmortizedCost (its schema, its folder) but not by
    the pairing, which compared the raw text: the covered usage counted in both folders (8 rows, 102.0001129804
    billed). By hand: the regular pair, 5 rows, 101.0000564902 billed, 5.0000564902 effective."""
    _deliver_at(hub_root, "ActualCost", ACTUAL, "a1", "2023-10-02T00:00:00Z")
    assert ingest(Store(str(hub_root))).ok
    _deliver_at(hub_root, "AmortizedCost", AMORTIZED, "m1", "2023-10-02T01:00:00Z", export_type="AmortizedCost ")
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)


def test_an_amortized_run_holding_rows_of_its_own_day_pairs_them(hub_root: Path) -> None:
    """A run of September 11 states the month and holds rows up to the 13th (a partial day, or a clock ahead): the
    days it holds reach its rows' last day, not only the day before it ran, so the actual export's flagged row of
    the 13th goes (else 0.0000564902 counted twice). By hand: the regular pair."""
    _deliver_at(hub_root, "ActualCost", ACTUAL, "a1", "2023-09-10T00:00:00Z")
    assert ingest(Store(str(hub_root))).ok
    _deliver_at(hub_root, "AmortizedCost", AMORTIZED, "m1", "2023-09-11T00:00:00Z")
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)


@pytest.mark.parametrize("order", [("ActualCost", "AmortizedCost"), ("AmortizedCost", "ActualCost")])
def test_a_late_row_of_the_month_before_in_both_exports_is_paired_once(hub_root: Path, order: tuple[str, str]) -> None:
    """Review of this stop's change: both September exports hold a usage row of August 31 (7): the amortized days were
    cut to September, so the actual export kept its flagged copy: 7 counted twice (115.0000564902 billed). By hand:
    101.0000564902 + 7 = 108.0000564902 billed, 5.0000564902 + 7 = 12.0000564902 effective, 6 rows."""
    late = {**EA_BASE, "CostInBillingCurrency": "7", "Date": "8/31/2023"}
    data = {"ActualCost": ACTUAL + [late], "AmortizedCost": AMORTIZED + [late]}
    for i, kind in enumerate(order):
        _deliver_at(hub_root, kind, data[kind], kind.lower(), f"2023-10-02T0{i}:00:00Z")
        assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (6, D("108.0000564902"), D("12.0000564902"))


def test_custom_data_in_a_legacy_exports_scope_folder_is_a_source_conflict(hub_root: Path) -> None:
    """Review of stop 41: a custom drop in the scope folder of a legacy export (whose rows are in its actualcost/
    sub-folder, read with it) committed, its rows added to the bill; the amortized export was then refused as
    "costs from a FocusCost export". The custom drop is ``SourceConflict`` (its files and manifest set aside), and the
    amortized export pairs as usual."""
    import duckdb

    _deliver_at(hub_root, "ActualCost", ACTUAL, "a1", "2023-10-02T00:00:00Z")
    assert ingest(Store(str(hub_root))).ok
    scope = next(hub_root.glob("ingestion/Costs/2023/09/**/actualcost")).parent
    duckdb.connect().execute(f"""COPY (SELECT 'Custom' AS ProviderName, 'x' AS BillingAccountId, 'USD' AS BillingCurrency,
        TIMESTAMP '2023-09-01' AS BillingPeriodStart, TIMESTAMP '2023-10-01' AS BillingPeriodEnd,
        TIMESTAMP '2023-09-03' AS ChargePeriodStart, TIMESTAMP '2023-09-04' AS ChargePeriodEnd, 'Usage' AS ChargeCategory,
        7.5 AS BilledCost, 7.5 AS EffectiveCost) TO '{scope}/c1__x.parquet' (FORMAT parquet)""")
    (scope / "manifest.json").write_text("")
    (custom,) = ingest(Store(str(hub_root))).records
    assert (custom.state, custom.error.code) == ("quarantined", "SourceConflict") and "actualcost" in custom.error.message
    assert not list(scope.glob("*.parquet")) and (scope / "c1__x.parquet.quarantined").exists()
    _deliver_at(hub_root, "AmortizedCost", AMORTIZED, "m1", "2023-10-02T01:00:00Z")
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)


def test_real_ea_samples_actual_alone_and_with_amortized(hub_root: Path) -> None:
    for kind, name in (("ActualCost", "EA_ActualCost_Small.csv"), ("AmortizedCost", "EA_AmortizedCost_Small.csv")):
        write_export(hub_root, {"part_0_0001.csv": (DATA / "azure" / name).read_bytes()}, export_type=kind,
                     data_version="2021-10-01", run_id=kind, folder=f"{kind}/x", start_date="2023-09-01")
        result = ingest(Store(str(hub_root)))
        assert result.ok, [r.error for r in result.all]
        if kind == "ActualCost":
            assert _totals(hub_root)[0] == 11  # every row of the actual export alone
    rows, _, _ = _totals(hub_root)
    purchases = [r for r in lake_rows(hub_root) if r["ChargeCategory"] == "Purchase" and r["CommitmentDiscountId"]]
    assert rows == 28 + len(purchases)


@pytest.mark.parametrize("point", ["mid-swap", "after-pairing", "before-commit"])
def test_crash_while_pairing_then_restart(hub_root: Path, point: str) -> None:
    """An amortized export arriving after the actual one: a process killed while it pairs (mid-swap is the pairing's own
    swap) or before its own commit, then restarted, leaves exactly the lake of a clean run."""
    import os
    import subprocess
    import sys
    import time

    _deliver(hub_root, "ActualCost", ACTUAL)
    assert ingest(Store(str(hub_root))).ok
    _deliver(hub_root, "AmortizedCost", AMORTIZED)
    env = {**os.environ, "HUB_CRASH_AT": point, "HUB_LEASE_TTL": "1"}  # the killed process's lease expires at once
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(hub_root)], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    count, billed, _ = _totals(hub_root)
    assert billed <= ACTUAL_TOTAL  # readers may see fewer rows in between, never the same cost twice
    time.sleep(1.1)
    assert ingest(Store(str(hub_root))).ok
    assert _totals(hub_root) == (5, ACTUAL_TOTAL, AMORTIZED_TOTAL)
    assert not list((hub_root / "config/staging").iterdir())


#: A savings plan bought in a layout without benefitId (EA 2021-01-01 exports kept running after savings plans came):
#: only PricingModel and ProductOrderId tell the purchase and the usage it covers.
SP = {"PricingModel": "SavingsPlan", "ProductOrderId": "sp-order-1"}
SP_ACTUAL = [{**EA_BASE, "CostInBillingCurrency": "1"},
             {**EA_BASE, **SP, "ChargeType": "Purchase", "Frequency": "OneTime", "CostInBillingCurrency": "50", "Quantity": "1",
              "EffectivePrice": "50", "UnitPrice": "50", "PayGPrice": "0", "ResourceId": ""},
             {**EA_BASE, **SP, "CostInBillingCurrency": "0", "EffectivePrice": "0"}]
SP_AMORTIZED = [{**EA_BASE, "CostInBillingCurrency": "1"}, {**EA_BASE, **SP, "CostInBillingCurrency": "0.8", "EffectivePrice": "0.4"}]


@pytest.mark.parametrize("order", [("ActualCost",), ("ActualCost", "AmortizedCost"), ("AmortizedCost", "ActualCost")])
def test_a_savings_plan_purchase_without_a_benefit_id_is_not_counted_as_consumed(hub_root: Path, order: tuple[str, ...]) -> None:
    """Review: the pairing took the purchase for a commitment purchase (PricingModel), the Costs rule did not (no
    CommitmentDiscountId): its 50 stayed in EffectiveCost, 51.8 for 1.8 (51 for 1 with the actual export alone)."""
    data = {"ActualCost": SP_ACTUAL, "AmortizedCost": SP_AMORTIZED}
    for kind in order:
        _deliver(hub_root, kind, data[kind])
        assert ingest(Store(str(hub_root))).ok
    effective = D("1.8") if len(order) == 2 else D(1)  # amortized: 1 + 0.8; actual alone: 1 + 0 (the purchase is 0)
    assert _totals(hub_root)[1:] == (D(51), effective)
    [purchase] = [r for r in lake_rows(hub_root) if r["ChargeCategory"] == "Purchase"]
    assert (purchase["EffectiveCost"], purchase["CommitmentDiscountId"]) == (
        D(0), "/providers/microsoft.billingbenefits/savingsplanorders/sp-order-1")


def test_billed_cost_in_usd_is_zero_where_billed_cost_is(tmp_path: Path) -> None:
    """Review of stop 35: a legacy MCA amortized export's usage covered by a reservation gets BilledCost 0 (its
    purchase is billed, in the actual-cost export), but its x_BilledCostInUsd kept the amortized costInUsd: billed
    twice in USD. By hand: BilledCost 9 + 90 + 0 = 99 EUR, x_BilledCostInUsd 10 + 100 + 0 = 110 USD (was 113)."""
    root = make_hub(tmp_path / "hub")
    base = {**{k.lower(): v for k, v in EA_BASE.items()}, "billingcurrency": "EUR", "pricingcurrency": "USD",
            "exchangeratepricingtobilling": "0.9"}
    base = {h: base.get(h.lower()) or "" for h in MCA}
    covered = {"reservationId": RI, "reservationName": "ri", "productOrderId": RI, "pricingModel": "Reservation"}
    amortized = [{**base, "costInBillingCurrency": "9", "costInUsd": "10", "chargeType": "Usage"},
                 {**base, "costInBillingCurrency": "2.7", "costInUsd": "3", "chargeType": "Usage", **covered}]
    actual = [{**base, "costInBillingCurrency": "9", "costInUsd": "10", "chargeType": "Usage"},
              {**base, "costInBillingCurrency": "90", "costInUsd": "100", "chargeType": "Purchase", "frequency": "OneTime",
               "quantity": "1", "ResourceId": "", **covered},
              {**base, "costInBillingCurrency": "0", "costInUsd": "0", "chargeType": "Usage", **covered}]
    _deliver(root, "AmortizedCost", amortized, MCA)
    _deliver(root, "ActualCost", actual, MCA)
    assert ingest(Store(str(root))).ok
    rows = lake_rows(root)
    assert sum(r["BilledCost"] for r in rows) == D(99) and sum(r["x_BilledCostInUsd"] for r in rows) == D(110)
    assert sum(r["EffectiveCost"] for r in rows) == D("11.7") and sum(r["x_EffectiveCostInUsd"] for r in rows) == D(13)
    zeroed = [r for r in rows if r["BilledCost"] == 0 and r["EffectiveCost"] == D("2.7")]
    assert len(zeroed) == 1 and '"x_BilledCostInUsd":"3' in zeroed[0]["x_SourceValues"]  # the delivered value kept


def test_a_legacy_refund_lists_negative_and_actual_only_covered_usage_saves_no_commitment(hub_root: Path) -> None:
    """Review of stop 37: a reservation refund (-45) of an actual-cost export was written with ContractedCost and ListCost
    +45 (unit price x quantity, never given the refund's sign): the month's list cost 135 for a billed 45. And with the
    actual-cost export alone, usage covered by the reservation (actual cost 0) claimed its whole contracted cost as a
    commitment saving, the reservation's own price on no row: by hand ContractedCost 1.00 (2 h x 0.50), ListCost 1.20
    (2 h x 0.60): no commitment saving, a total saving of 0.20 (the negotiated one)."""
    purchase = {**EA_BASE, **COVERED, "ChargeType": "Purchase", "Frequency": "OneTime", "CostInBillingCurrency": "90",
                "Quantity": "1", "EffectivePrice": "90", "UnitPrice": "90", "PayGPrice": "0", "ResourceId": "", "Date": "9/1/2023"}
    refund = {**purchase, "ChargeType": "Refund", "CostInBillingCurrency": "-45", "EffectivePrice": "45", "UnitPrice": "45",
              "Date": "9/20/2023"}
    covered = {**EA_BASE, **COVERED, "CostInBillingCurrency": "0", "EffectivePrice": "0"}
    _deliver(hub_root, "ActualCost", [purchase, refund, covered])
    assert ingest(Store(str(hub_root))).ok
    rows = {r["ChargeClass"] or r["ChargeCategory"]: r for r in lake_rows(hub_root)}
    assert sum(r["BilledCost"] for r in rows.values()) == 45
    assert sum(r["ContractedCost"] for r in rows.values()) == D(46) and sum(r["ListCost"] for r in rows.values()) == D("46.2")
    used = rows["Usage"]
    assert (used["ContractedCost"], used["ListCost"], used["x_CommitmentDiscountSavings"], used["x_TotalSavings"]) == (
        D(1), D("1.2"), D(0), D("0.2"))


def test_actual_only_covered_usage_keeps_no_commitment_saving_when_the_months_prices_arrive(hub_root: Path) -> None:
    """Review of stop 37: the marker of an actual-cost row without amortized data lived only while the file was read;
    the month's price sheet arriving later re-normalized the folder and the covered row claimed its whole contracted
    cost (1.00) as commitment saving again, and its total discount was 100 %: the result depended on arrival order."""
    from conftest import rows_csv

    covered = {**EA_BASE, **COVERED, "CostInBillingCurrency": "0", "EffectivePrice": "0"}
    nolist = {**EA_BASE, "CostInBillingCurrency": "1", "PayGPrice": "0", "MeterId": "m2"}  # a list price the sheet gives
    _deliver(hub_root, "ActualCost", [covered, nolist])
    assert ingest(Store(str(hub_root))).ok

    def used() -> tuple:
        (r,) = [r for r in lake_rows(hub_root) if r["CommitmentDiscountId"]]
        return r["x_CommitmentDiscountSavings"], r["x_TotalSavings"], r["x_TotalDiscountPercent"]

    before = used()
    price = {"EnrollmentNumber": "8611537", "MeterID": "m2", "MeterName": "D2", "MeterType": "1 Hour", "Product": "VM",
             "SkuID": "0001", "ProductID": "P", "UnitOfMeasure": "1 Hour", "EffectiveStartDate": "2023-09-01T00:00:00Z",
             "EffectiveEndDate": "2023-09-30T23:59:59Z", "UnitPrice": "0.5", "MarketPrice": "0.6", "BasePrice": "0.6",
             "CurrencyCode": "USD", "OfferID": "MS-AZR-0017P", "PriceType": "Consumption"}
    write_export(hub_root, {"part_0_0001.csv": rows_csv("pricesheet_2023-05-01_ea", [price])}, export_type="PriceSheet",
                 data_version="2023-05-01", rows=1, run_id="prices1", folder="prices/20230901-20230930/prices1",
                 resource_id="/providers/Microsoft.Billing/billingAccounts/8611537", start_date="2023-09-01T00:00:00")
    result = ingest(Store(str(hub_root)))
    assert result.ok and [r.state for r in result.renormalized] == ["committed"]
    # 2 h at a contracted 0.50 and a list 0.60: no commitment saving, the negotiated 0.20 (1/6 of the list price)
    assert used() == before == (D(0), D("0.2"), D("0.166666666666667"))


C360 = _names("BillingAccountId,BillingAccountName,BillingPeriodStartDate,BillingPeriodEndDate,BillingProfileId,SubscriptionId,"
              "SubscriptionName,Date,ProductName,MeterId,MeterCategory,MeterName,Quantity,EffectivePrice,CostInBillingCurrency,"
              "UnitPrice,BillingCurrencyCode,ResourceLocation,ConsumedService,ResourceId,UnitOfMeasure,ChargeType,Frequency,"
              "PublisherType,PricingCurrencyCode,CostInUsd,PaygCostInBillingCurrency,PaygCostInUsd,ExchangeRatePricingToBilling,"
              "PricingModel")


@pytest.mark.parametrize("layout", ["c360-2025-04", "mca-empty-paygprice"])
def test_a_delivered_list_cost_is_kept_where_there_is_no_list_price(hub_root: Path, layout: str) -> None:
    """Review of stop 39: c360-2025-04 exports have no PayGPrice and MCA rows may leave it empty: ListCost was then filled
    from ContractedCost (the delivered PaygCostInBillingCurrency ignored, PaygCostInUsd overwritten), so every negotiated
    discount vanished. By hand: 2 h at 0.5 (cost 1), list cost 1.2: ListUnitPrice 0.6, negotiated savings 0.2."""
    if layout == "c360-2025-04":
        row = {"BillingAccountId": "8611537", "BillingProfileId": "8611537", "BillingPeriodStartDate": "9/1/2023",
               "BillingPeriodEndDate": "9/30/2023", "SubscriptionId": SUB, "Date": "9/3/2023", "ProductName": "VM",
               "MeterId": "m1", "MeterCategory": "Virtual Machines", "MeterName": "D2 v2", "Quantity": "2",
               "EffectivePrice": "0.5", "CostInBillingCurrency": "1", "UnitPrice": "0.5", "BillingCurrencyCode": "USD",
               "ResourceLocation": "EastUS", "ConsumedService": "Microsoft.Compute", "ResourceId": RES,
               "UnitOfMeasure": "1 Hour", "ChargeType": "Usage", "Frequency": "UsageBased", "PublisherType": "Azure",
               "PricingCurrencyCode": "USD", "CostInUsd": "1", "PaygCostInBillingCurrency": "1.2", "PaygCostInUsd": "1.2",
               "ExchangeRatePricingToBilling": "1", "PricingModel": "OnDemand"}
        write_export(hub_root, {"part_0_0001.csv": _csv(C360, [row])}, export_type="ActualCost", data_version=layout,
                     run_id="c360", rows=1, folder="ActualCost/202309/c360", start_date="2023-09-01")
    else:
        row = {"billingAccountId": "acc", "billingProfileId": "acc", "date": "09/03/2023", "meterId": "m1",
               "meterCategory": "Virtual Machines", "ProductName": "VM", "SubscriptionId": SUB, "ResourceId": RES,
               "resourceLocation": "eastus", "effectivePrice": "0.5", "quantity": "2", "unitOfMeasure": "1 Hour",
               "chargeType": "Usage", "billingCurrency": "USD", "pricingCurrency": "USD", "costInBillingCurrency": "1",
               "costInUsd": "1", "paygCostInBillingCurrency": "1.2", "paygCostInUsd": "1.2", "unitPrice": "0.5",
               "PayGPrice": "", "pricingModel": "On Demand", "frequency": "UsageBased", "billingPeriodStartDate": "09/01/2023",
               "billingPeriodEndDate": "09/30/2023"}
        _deliver(hub_root, "ActualCost", [row], MCA)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    (out,) = lake_rows(hub_root)
    assert (out["ListCost"], out["ListUnitPrice"], out["x_ListCostInUsd"], out["ContractedCost"]) == (D("1.2"), D("0.6"),
                                                                                                      D("1.2"), D(1))
    assert out["x_NegotiatedDiscountSavings"] == D("0.2") and "ListCostBackfilled" not in (out["x_SourceChanges"] or "")


@pytest.mark.parametrize(("first", "last", "end"), [
    ("4/15/2024", "5/14/2024", "2024-05-15"),  # a pay-as-you-go subscription's period, 15th to 14th
    ("5/30/2024", "6/29/2024", "2024-06-30"),  # ending the day before a month's last day: no inclusive end to fix
    ("4/30/2024", "5/30/2024", "2024-05-31"),
    ("1/29/2024", "2/28/2024", "2024-02-29"),
    ("5/1/2024", "5/31/2024", "2024-06-01"),  # a calendar month
])
def test_a_billing_period_that_is_not_a_calendar_month_stays_as_stated(tmp_path: Path, first: str, last: str, end: str) -> None:
    """Review of stop 40: a pay-as-you-go subscription's billing period, 15 April to 14 May, became 1 April to 1 June
    (each end widened to its month): FOCUS's BillingPeriodStart is the stated first day and its exclusive end the day
    after the stated last day, never a day more (an end the day after a month's last day is no inclusive end)."""
    root = make_hub(tmp_path / "hub")
    month, day, year = (int(x) for x in last.split("/"))
    row = {**EA_BASE, "CostInBillingCurrency": "1", "Date": last, "BillingPeriodStartDate": first, "BillingPeriodEndDate": last}
    start = "{2}-{0:02d}-{1:02d}".format(*(int(x) for x in first.split("/")))
    write_export(root, {"part_0_0001.csv": _csv(EA_OLD, [row])}, export_type="ActualCost", data_version="2019-10-01",
                 run_id="payg", rows=1, folder=f"ActualCost/{year}{month:02d}/payg", start_date=f"{year}-{month:02d}-01T00:00:00",
                 manifest_extra={"runInfo": {"runId": "payg", "startDate": f"{year}-{month:02d}-01T00:00:00"}})
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "committed", rec.error
    (out,) = lake_rows(root)
    assert (out["BillingPeriodStart"].isoformat(), out["BillingPeriodEnd"].isoformat()) == (
        f"{start}T00:00:00+00:00", f"{end}T00:00:00+00:00")
    assert out["x_SourceChanges"] is None or "InclusivePeriodEnd" not in out["x_SourceChanges"]
