"""Azure exports found wrong by review: a newer price sheet of the month, sheets with different columns, ListCost
from a corrected ContractedCost, a FocusCost and a legacy cost export of one scope, unknown columns that would share a
lake name, sums past DECIMAL(38,18), a start date with an offset. Each case failed before its fix; values by hand."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from conftest import lake_rows, rows_csv, write_export
from test_backfill import EA_ACCOUNT, EA_PRICE, MISSING, ingest_costs
from test_costs_transform import BASE

from hub.store import Store
from pipelines.ingest import ingest

D = Decimal


def _prices(root: Path, run_id: str, price: dict, *, extra: str | None = None, account: str = EA_ACCOUNT,
            submitted: str = "2024-05-02T00:00:00Z") -> None:
    text = rows_csv("pricesheet_2023-05-01_ea", [price])
    if extra:  # a column the schema does not know (kept in the lake with an x_ prefix)
        header, row, *_ = text.splitlines()
        text = f"{header},{extra}\n{row},kept\n"
    write_export(root, {"part_0_0001.csv": text}, export_type="PriceSheet", data_version="2023-05-01", rows=1,
                 run_id=run_id, folder=f"prices/20240501-20240531/{run_id}", resource_id=account,
                 manifest_extra={"runInfo": {"runId": run_id, "startDate": "2024-05-01T00:00:00", "submittedTime": submitted}})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]


def test_a_newer_price_sheet_of_the_month_reprices_rows_an_earlier_one_filled(hub_root: Path) -> None:
    """P1, costs, then P2 (replacing P1) kept P1's prices; P2 first gave P2's: the lake depended on arrival order."""
    _prices(hub_root, "p1", EA_PRICE)
    ingest_costs(hub_root, MISSING)
    _prices(hub_root, "p2", {**EA_PRICE, "UnitPrice": "2.6", "MarketPrice": "3.2"}, submitted="2024-05-03T00:00:00Z")
    (row,) = lake_rows(hub_root)
    # 4 hours: ContractedCost 2.6 x 4 = 10.4, ListCost 3.2 x 4 = 12.8 (P1's: 10, 12)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"], row["ContractedCost"], row["ListCost"]) == (
        D("2.6"), D("3.2"), D("10.4"), D("12.8"))


def test_price_sheets_of_one_month_with_different_columns_back_fill_costs(hub_root: Path) -> None:
    """Two accounts' sheets, one with a column the other lacks: every cost export of the month was InternalError."""
    _prices(hub_root, "p1", EA_PRICE)
    _prices(hub_root, "p2", {**EA_PRICE, "EnrollmentNumber": "999"}, extra="SomeNewColumn",
            account="/providers/Microsoft.Billing/billingAccounts/999")
    ingest_costs(hub_root, MISSING)
    (row,) = lake_rows(hub_root)
    assert (row["ContractedCost"], row["ListCost"]) == (D(10), D(12))  # 2.5 x 4, 3 x 4


def test_list_cost_taken_from_contracted_cost_takes_the_corrected_one(hub_root: Path) -> None:
    """Unit prices 2 and 2, quantity 5, ContractedCost 7 (the export bug): ContractedCost was corrected to 10 but
    ListCost copied the 7."""
    ingest_costs(hub_root, {**BASE, "ContractedUnitPrice": "2", "ListUnitPrice": "2", "PricingQuantity": "5",
                            "ContractedCost": "7", "ListCost": None, "x_EffectiveUnitPrice": "2", "x_BilledUnitPrice": "2"})
    (row,) = lake_rows(hub_root)
    assert (row["ContractedCost"], row["ListCost"]) == (D(10), D(10))


def test_a_focus_and_a_legacy_cost_export_of_one_scope_and_month_are_never_both_kept(hub_root: Path) -> None:
    """The same costs exported as FocusCost and as ActualCost were both committed: 60 where the bill says 30."""
    ingest_costs(hub_root, BASE)
    legacy = rows_csv("actualcost_2021-10-01", [{"Date": "05/01/2024", "Cost": "10", "BillingCurrency": "USD",
                                                "ChargeType": "Usage", "Frequency": "UsageBased", "Quantity": "1"}])
    write_export(hub_root, {"part_0_0001.csv": legacy}, export_type="ActualCost", data_version="2021-10-01", rows=1,
                 run_id="legacy1", folder="legacy/20240501-20240531/legacy1")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict"), rec.error
    assert "from a FocusCost export" in rec.error.message
    assert [r["BilledCost"] for r in lake_rows(hub_root)] == [D(10)]


@pytest.mark.parametrize("second", ["x_Foo", "x_foo", "X_FOO"])
def test_unknown_columns_that_would_share_a_lake_name_are_a_schema_mismatch(hub_root: Path, second: str) -> None:
    """Foo and x_Foo were InternalError; Foo and x_foo (names compared without case) kept one value, silently."""
    header, row, *_ = rows_csv("focuscost_1.0", [BASE]).splitlines()
    write_export(hub_root, {"part_0_0001.csv": f"{header},Foo,{second}\n{row},a,b\n"}, rows=1)
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.error.code, rec.error.message) == ("SchemaMismatch", f"columns Foo and {second} would both be kept as "
                                                                     "x_Foo: rename one")
    assert rec.error.file.endswith("part_0_0001.csv")


def test_amounts_adding_up_past_decimal_38_18_are_an_input_error(hub_root: Path) -> None:
    big = "60000000000000000000"  # 6 x 10^19 fits; two of them do not
    write_export(hub_root, {"part_0_0001.csv": rows_csv("focuscost_1.0", [{**BASE, "BilledCost": big, "EffectiveCost": big}] * 2)},
                 rows=2)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.error.code == "InvalidValue" and "add up past 10^20" in rec.error.message and rec.error.file, rec.error


def test_a_start_date_with_an_offset_is_read_as_the_stated_day(hub_root: Path) -> None:
    """2024-05-01T00:00:00+02:00: the folder said May, the period check April (PeriodMismatch)."""
    write_export(hub_root, {"part_0_0001.csv": rows_csv("focuscost_1.0", [BASE])}, rows=1, start_date="2024-05-01T00:00:00+02:00")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.month) == ("committed", "2024-05"), rec.error


def test_a_resource_group_starting_with_an_underscore_gets_a_folder_every_reader_sees(hub_root: Path) -> None:
    """Review: resource groups `_shared-services` and `.net-apps` (legal Azure names) became lake folders Spark, Hive,
    Trino and Athena skip as hidden (500 of DuckDB's 1,000 rows in read_dataset and the generated Databricks tables)."""
    from hub.sample_data import write_export as deliver

    for i, group in enumerate(("_shared-services", ".net-apps")):
        deliver(str(hub_root), rows=50, export_name=f"rg{i}", resource_id=f"/subscriptions/s1/resourceGroups/{group}")
    result = ingest(Store(str(hub_root)))
    assert result.ok and sorted(r.destination for r in result.records) == [
        "ingestion/Costs/2024/05/subscriptions/s1/resourcegroups/%2enet-apps",
        "ingestion/Costs/2024/05/subscriptions/s1/resourcegroups/%5fshared-services"]
    files = [p.relative_to(hub_root) for p in (hub_root / "ingestion").rglob("*.parquet")]
    assert len(files) == 2 and not [f for f in files if any(part[:1] in "_." for part in f.parts)]
    from hub import catalog

    assert catalog.connect(str(hub_root)).execute("SELECT count(*) FROM Costs").fetchall() == [(100,)]


def test_a_folder_an_older_hub_wrote_under_the_plain_name_is_never_counted_twice(hub_root: Path) -> None:
    """The same month under the plain `_shared` folder an older version wrote and the new `%5fshared`: SourceConflict
    naming the old folder (readers would add both), committed once it is removed."""
    from hub.sample_data import write_export as deliver

    old = hub_root / "ingestion/Costs/2024/05/subscriptions/s1/resourcegroups/_shared"
    old.mkdir(parents=True)
    (old / "r0__part0.parquet").write_bytes(b"PAR1")
    deliver(str(hub_root), rows=50, export_name="rg", resource_id="/subscriptions/s1/resourceGroups/_shared")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict") and str(old.relative_to(hub_root)) in rec.error.message
    (old / "r0__part0.parquet").unlink()
    (rec,) = ingest(Store(str(hub_root)), retry=True).records
    assert (rec.state, rec.rowsOut) == ("committed", 50)


@pytest.mark.parametrize("day", ["2024-05-01", "2024-05-15"])
def test_a_one_day_export_is_its_day(tmp_path: Path, day: str) -> None:
    """Review of stop 40: a custom range of one day (startDate = endDate = that day at midnight, as Cost Management writes
    endDate) was PeriodMismatch: its rows, all of that day, were counted outside [start, endDate), an empty interval.
    The period runs to the end of its last day."""
    nxt = f"{day[:8]}{int(day[8:]) + 1:02d}"
    row = {**BASE, "ChargePeriodStart": f"{day}T00:00:00Z", "ChargePeriodEnd": f"{nxt}T00:00:00Z"}
    stamp = day.replace("-", "")
    write_export(tmp_path, {"part_0_0001.csv": rows_csv("focuscost_1.0", [row])}, rows=1, run_id="oneday",
                 folder=f"e1/{stamp}-{stamp}/oneday",
                 manifest_extra={"runInfo": {"runId": "oneday", "startDate": f"{day}T00:00:00", "endDate": f"{day}T00:00:00",
                                             "submittedTime": "2024-06-02T00:00:00Z"}})
    (rec,) = ingest(Store(str(tmp_path))).records
    assert (rec.state, rec.period, rec.rowsOut) == ("committed", [day, day], 1), rec.error


@pytest.mark.parametrize("order", [("d1", "d2"), ("d2", "d1")])
def test_an_empty_newer_delivery_never_supersedes_the_rows(tmp_path: Path, order: tuple[str, str]) -> None:
    """Review of stop 40: a header-only delivery of the month submitted after one with rows (d2, 20 May; d1, 10 May)
    changed nothing when it came last, but when it came first d1 was recorded superseded by it and never swapped in:
    the month was empty. An empty delivery is no delivery of the folder's rows, whatever the arrival order."""
    two = [BASE, {**BASE, "BilledCost": "5", "EffectiveCost": "5", "ContractedCost": "5", "PricingQuantity": "2", "ListCost": "6"}]
    rows = {"d1": (two, "2024-05-10T00:00:00Z"), "d2": ([], "2024-05-20T00:00:00Z")}
    for run in order:
        body, submitted = rows[run]
        write_export(tmp_path, {"part_0_0001.csv": rows_csv("focuscost_1.0", body)}, rows=len(body), run_id=run,
                     folder=f"e1/20240501-20240531/{run}", manifest_extra={"runInfo": {
                         "runId": run, "startDate": "2024-05-01T00:00:00", "endDate": "2024-05-31T00:00:00",
                         "submittedTime": submitted}})
        assert ingest(Store(str(tmp_path))).ok
    assert sum(r["BilledCost"] for r in lake_rows(tmp_path)) == Decimal(15)


@pytest.mark.parametrize(("start", "end", "kept"), [
    ("2024-05-30", "2024-06-30", "2024-06-30"),  # a pay-as-you-go period, 30 May to 29 June: its end is exclusive already
    ("2024-05-01", "2024-05-31", "2024-06-01"),  # an inclusive last day at UTC midnight: made exclusive
])
def test_a_period_end_is_made_exclusive_only_where_it_is_a_last_day(tmp_path: Path, start: str, end: str, kept: str) -> None:
    """Review of stop 40: a FocusCost row of a pay-as-you-go billing period, 30 May to 29 June (exclusive end 30 June, the
    day before a first), was read as ending on its last day and got 1 July, flagged InclusivePeriodEnd. An end at UTC
    midnight is a last day only where the day after it lies a month after the period's start."""
    row = {**BASE, "BillingPeriodStart": f"{start}T00:00:00Z", "BillingPeriodEnd": f"{end}T00:00:00Z",
           "ChargePeriodStart": "2024-05-31T00:00:00Z", "ChargePeriodEnd": "2024-06-01T00:00:00Z"}
    write_export(tmp_path, {"part_0_0001.csv": rows_csv("focuscost_1.0", [row])}, rows=1, run_id="c1")
    (rec,) = ingest(Store(str(tmp_path))).records
    assert rec.state == "committed", rec.error
    (out,) = lake_rows(tmp_path)
    assert out["BillingPeriodEnd"].isoformat() == f"{kept}T00:00:00+00:00"
    assert ("InclusivePeriodEnd" in (out["x_SourceChanges"] or "")) == (kept != end)
