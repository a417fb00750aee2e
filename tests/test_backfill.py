"""Price backfill from the price sheet: block sizes, exchange rates, EA and MCA keys, tiers, and arrival order."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import lake_rows, make_hub, rows_csv, write_export
from test_costs_transform import BASE

from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

D = Decimal
EA_ACCOUNT = "/providers/Microsoft.Billing/billingAccounts/8611537"
# a cost row whose list and contracted prices are missing: 4 hours at an effective 2.00 per hour
MISSING = {**BASE, "ContractedUnitPrice": None, "ListUnitPrice": None, "ContractedCost": None, "ListCost": None,
           "x_EffectiveUnitPrice": "2", "x_BilledUnitPrice": "2", "EffectiveCost": "8", "BilledCost": "8"}
EA_PRICE = {"EnrollmentNumber": "8611537", "MeterID": "meter-1", "MeterName": "D2 v3", "MeterType": "1 Hour", "Product": "VM D2",
            "SkuID": "0001", "ProductID": "DZH318Z0BQ4L", "UnitOfMeasure": "1 Hour", "EffectiveStartDate": "2024-05-01T00:00:00Z",
            "EffectiveEndDate": "2024-05-31T23:59:59Z", "UnitPrice": "2.5", "MarketPrice": "3", "BasePrice": "3", "CurrencyCode": "USD",
            "OfferID": "MS-AZR-0017P", "PriceType": "Consumption"}


def ingest_costs(root: Path, *rows: dict, run_id: str = "costs1") -> None:
    write_export(root, {"part_0_0001.csv": rows_csv("focuscost_1.0", list(rows))}, rows=len(rows), run_id=run_id,
                 folder=f"costs/20240501-20240531/{run_id}")
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]


def ingest_prices(root: Path, *rows: dict, key: str = "pricesheet_2023-05-01_ea", account: str = EA_ACCOUNT) -> list:
    schema_version = "2024-08-01" if "2024-08-01" in key else "2023-05-01"
    write_export(root, {"part_0_0001.csv": rows_csv(key, list(rows))}, export_type="PriceSheet", data_version=schema_version,
                 rows=len(rows), run_id="prices1", folder="prices/20240501-20240531/prices1", resource_id=account)
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return result.renormalized


def costs(root: Path) -> dict:
    (row,) = lake_rows(root)
    return row


@pytest.mark.parametrize(("unit", "unit_price", "market"), [("1 Hour", "2.5", "3"), ("100 Hours", "250", "300"),
                                                            ("10000 Hours", "25000", "30000"),
                                                            # review: a unit spelled otherwise had no block: 100x prices
                                                            (" 100 hours", "250", "300")])
def test_block_sizes(hub_root: Path, unit: str, unit_price: str, market: str) -> None:
    ingest_prices(hub_root, {**EA_PRICE, "UnitOfMeasure": unit, "UnitPrice": unit_price, "MarketPrice": market})
    ingest_costs(hub_root, MISSING)
    row = costs(hub_root)
    # price per cost block (1 hour) = sheet price / sheet block: 2.5 and 3 whatever the sheet's block
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D("2.5"), D(3))
    assert (row["ContractedCost"], row["ListCost"]) == (D(10), D(12))  # 2.5 x 4, 3 x 4
    assert row["x_SourceChanges"].split(",") == [
        "MissingContractedCost", "MissingContractedUnitPrice", "MissingListCost", "MissingListUnitPrice",
        "ContractedUnitPriceFromPriceSheet", "ListUnitPriceFromPriceSheet", "ContractedCostBackfilled", "ListCostBackfilled"]
    assert validate(str(hub_root)).ok


def test_cost_block_differs_from_price_block(hub_root: Path) -> None:
    ingest_prices(hub_root, {**EA_PRICE, "UnitOfMeasure": "1 Hour"})
    ingest_costs(hub_root, {**MISSING, "x_PricingBlockSize": "100", "PricingQuantity": "0.04", "x_EffectiveUnitPrice": "200",
                            "x_BilledUnitPrice": "200"})
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D(250), D(300))  # per 100 hours
    assert (row["ContractedCost"], row["ListCost"]) == (D(10), D(12))  # 250 x 0.04, 300 x 0.04


def test_exchange_rate(hub_root: Path) -> None:
    ingest_prices(hub_root, EA_PRICE)
    ingest_costs(hub_root, {**MISSING, "BillingCurrency": "EUR", "x_BillingExchangeRate": "0.9"})
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D("2.25"), D("2.7"))  # 2.5 x 0.9, 3 x 0.9
    assert (row["ContractedCost"], row["ListCost"]) == (D(9), D("10.8"))


def test_ea_key_needs_the_same_offer(hub_root: Path) -> None:
    ingest_prices(hub_root, {**EA_PRICE, "OfferID": "MS-AZR-0148P"})
    ingest_costs(hub_root, MISSING)
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D(2), D(2))  # fallback: effective, then contracted
    assert "ContractedUnitPriceFromEffectiveUnitPrice" in row["x_SourceChanges"]


MCA_PRICE = {"BillingAccountId": "acct:1_2019", "BillingAccountName": "Fabrikam", "BillingProfileId": "BP1",
             "BillingProfileName": "Profile", "ProductId": "DZH318Z0BQ4L", "SkuId": "0001", "UnitOfMeasure": "1 Hour",
             "MeterId": "meter-1", "MeterName": "D2 v3", "MeterType": "1 Hour", "TierMinimumUnits": "0",
             "EffectiveStartDate": "2024-05-01T00:00:00Z", "EffectiveEndDate": "2024-06-01T00:00:00Z", "UnitPrice": "2.5",
             "MarketPrice": "3", "BasePrice": "3", "Currency": "USD", "BillingCurrency": "USD", "Term": None, "PriceType": "Consumption"}
MCA_COST = {**MISSING, "x_BillingAccountId": "acct:1_2019", "x_BillingProfileId": "BP1", "x_SkuOfferId": "MS-AZR-0017G"}


def test_mca_key_ignores_offer(hub_root: Path) -> None:
    ingest_prices(hub_root, MCA_PRICE, key="pricesheet_2023-05-01_mca", account="/providers/Microsoft.Billing/billingAccounts/acct:1_2019")
    ingest_costs(hub_root, MCA_COST)
    row = costs(hub_root)
    assert row["x_BillingAccountAgreement"] == "MCA"
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"], row["ContractedCost"]) == (D("2.5"), D(3), D(10))


def test_tiered_prices_take_the_first_tier(hub_root: Path) -> None:
    tiers = [{**MCA_PRICE, "TierMinimumUnits": "100", "UnitPrice": "2", "MarketPrice": "2.4"}, MCA_PRICE]
    ingest_prices(hub_root, *tiers, key="pricesheet_2024-08-01_mca", account="/providers/Microsoft.Billing/billingAccounts/acct:1_2019")
    ingest_costs(hub_root, MCA_COST)
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D("2.5"), D(3))  # tier 0, never a duplicated row
    assert len(lake_rows(hub_root)) == 1


def test_a_free_first_tier_is_not_the_meters_price(hub_root: Path) -> None:
    # review: a sheet's free first tier (price 0) filled ListCost = ContractedCost = 0 beside an EffectiveCost of 8
    tiers = [{**MCA_PRICE, "TierMinimumUnits": "0", "UnitPrice": "0", "MarketPrice": "0"},
             {**MCA_PRICE, "TierMinimumUnits": "5", "UnitPrice": "2.5", "MarketPrice": "3"}]
    ingest_prices(hub_root, *tiers, key="pricesheet_2024-08-01_mca", account="/providers/Microsoft.Billing/billingAccounts/acct:1_2019")
    ingest_costs(hub_root, MCA_COST)
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"], row["ContractedCost"], row["ListCost"]) == (D("2.5"), D(3), D(10), D(12))


def test_a_sheet_unit_the_hub_does_not_know_fills_nothing(hub_root: Path) -> None:
    # its block size unknown, a price per 100 of them would be taken per one: the fallback chain instead
    ingest_prices(hub_root, {**EA_PRICE, "UnitOfMeasure": "100 Fortnights", "UnitPrice": "250", "MarketPrice": "300"})
    ingest_costs(hub_root, MISSING)
    row = costs(hub_root)
    assert (row["ContractedUnitPrice"], row["ListUnitPrice"]) == (D(2), D(2))  # x_EffectiveUnitPrice
    assert "ContractedUnitPriceFromEffectiveUnitPrice" in row["x_SourceChanges"]


def test_small_savings_on_cheap_meters_are_kept(hub_root: Path) -> None:
    # review: a saving under 0.0001 (absolute) was 0, and a percent whose unit prices differ by less than 0.0001 too: a
    # meter at 0.000016 list / 0.000012 contracted had 0 % discount and its many small savings did not add up
    small = {**BASE, "ListUnitPrice": "0.000016", "ContractedUnitPrice": "0.000012", "x_EffectiveUnitPrice": "0.000012",
             "x_BilledUnitPrice": "0.000012", "PricingQuantity": "5", "ConsumedQuantity": "5", "ListCost": "0.00008",
             "ContractedCost": "0.00006", "EffectiveCost": "0.00006", "BilledCost": "0.00006"}
    ingest_costs(hub_root, small)
    row = costs(hub_root)
    assert (row["x_NegotiatedDiscountSavings"], row["x_TotalSavings"], row["x_CommitmentDiscountSavings"]) == (
        D("0.00002"), D("0.00002"), D(0))  # 0.00008 - 0.00006
    assert (row["x_NegotiatedDiscountPercent"], row["x_TotalDiscountPercent"]) == (D("0.25"), D("0.25"))  # 0.000004 / 0.000016
    assert validate(str(hub_root)).ok


def test_join_never_changes_row_count(hub_root: Path) -> None:
    duplicates = [EA_PRICE, {**EA_PRICE, "UnitPrice": "2.4"}, {**EA_PRICE, "PriceType": "ReservedInstance", "Term": "P1Y"}]
    ingest_prices(hub_root, *duplicates)
    ingest_costs(hub_root, MISSING, {**MISSING, "ResourceName": "other"})
    rows = lake_rows(hub_root)
    assert len(rows) == 2 and {r["ContractedUnitPrice"] for r in rows} == {D("2.4")}  # lowest of the on-demand prices


def _comparable(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "x_IngestionTime"} for r in rows), key=lambda r: r["ResourceName"])


def test_prices_after_costs_gives_the_same_lake(hub_root: Path, tmp_path: Path) -> None:
    other = {**BASE, "ResourceName": "complete"}  # a row with its prices: untouched
    # review: codes told from the originals (a respelled enumeration, an inclusive end) came twice after re-normalizing
    spelled = {**MISSING, "ResourceName": "spelled", "ChargeFrequency": "usage-based", "ChargePeriodEnd": "2024-05-01T23:59:59Z"}
    ingest_costs(hub_root, MISSING, other, spelled)  # costs first: fallback prices
    before = {r["ResourceName"]: r for r in lake_rows(hub_root)}
    assert before["vm1"]["ContractedUnitPrice"] == D(2)
    renormalized = ingest_prices(hub_root, EA_PRICE)
    assert [r.state for r in renormalized] == ["committed"]
    late = _comparable(lake_rows(hub_root))

    root2 = make_hub(tmp_path / "hub2")  # a second hub where prices come first
    ingest_prices(root2, EA_PRICE)
    ingest_costs(root2, MISSING, other, spelled)
    assert late == _comparable(lake_rows(root2))
    assert late[2]["ContractedUnitPrice"] == D("2.5") and late[2]["ContractedCost"] == D(10)
    codes = late[1]["x_SourceChanges"].split(",")
    assert codes.count("EnumerationCasing") == 1 and codes.count("InclusivePeriodEnd") == 1


def test_prices_pending_with_costs_go_first(hub_root: Path, tmp_path: Path) -> None:
    """Costs and their month's price sheet pending in one ingest: the sheet is processed first (whatever the folder
    names and delivery times), so the costs are backfilled on the way in, not written then re-normalized."""
    other = {**BASE, "ResourceName": "complete"}
    write_export(hub_root, {"part_0_0001.csv": rows_csv("focuscost_1.0", [MISSING, other])}, rows=2, run_id="costs1",
                 folder="a-costs/20240501-20240531/costs1", manifest_extra={"runInfo": {
                     "runId": "costs1", "startDate": "2024-05-01T00:00:00", "submittedTime": "2024-05-02T00:00:00Z"}})
    write_export(hub_root, {"part_0_0001.csv": rows_csv("pricesheet_2023-05-01_ea", [EA_PRICE])}, export_type="PriceSheet",
                 data_version="2023-05-01", rows=1, run_id="prices1", folder="z-prices/20240501-20240531/prices1",
                 resource_id=EA_ACCOUNT, manifest_extra={"runInfo": {
                     "runId": "prices1", "startDate": "2024-05-01T00:00:00", "submittedTime": "2024-05-03T00:00:00Z"}})
    result = ingest(Store(str(hub_root)))
    assert result.ok, [r.error for r in result.all]
    assert [r.dataset for r in result.records] == ["Prices", "Costs"] and result.renormalized == []
    together = _comparable(lake_rows(hub_root))
    assert together[1]["ContractedUnitPrice"] == D("2.5") and "FromPriceSheet" in together[1]["x_SourceChanges"]

    root2 = make_hub(tmp_path / "hub2")  # the same exports, one ingest each, prices first
    ingest_prices(root2, EA_PRICE)
    ingest_costs(root2, MISSING, other)
    assert together == _comparable(lake_rows(root2))


def test_a_crash_between_a_price_commit_and_its_renormalization_is_made_good(hub_root: Path, tmp_path: Path) -> None:
    """Defect: killed right after a price sheet committed, before its month's Costs were re-normalized, the restart had
    nothing to do and the costs kept their fallback prices for good. The Prices run records that it owes the
    re-normalization (``owed``): the next ingestion does it, and the lake is the one of an uninterrupted run."""
    import os
    import subprocess
    import sys

    from hub import runs

    other = {**BASE, "ResourceName": "complete"}
    ingest_costs(hub_root, MISSING, other)
    write_export(hub_root, {"part_0_0001.csv": rows_csv("pricesheet_2023-05-01_ea", [EA_PRICE])}, export_type="PriceSheet",
                 data_version="2023-05-01", rows=1, run_id="prices1", folder="prices/20240501-20240531/prices1",
                 resource_id=EA_ACCOUNT)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HUB_CRASH_AT": "after-commit", "HUB_LEASE_TTL": "1", "PYTHONPATH": str(repo)}
    killed = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(hub_root)], capture_output=True, env=env, cwd=repo)
    assert killed.returncode == 137
    assert [(r.dataset, r.owed) for r in runs.load_all(Store(str(hub_root))) if r.owed] == [("Prices", ["renormalize"])]
    again = ingest(Store(str(hub_root)), lease_ttl=1)
    assert again.ok and [r.state for r in again.recovered] == ["committed"]
    assert not [r for r in runs.load_all(Store(str(hub_root))) if r.owed]
    root2 = make_hub(tmp_path / "hub2")  # no crash
    ingest_costs(root2, MISSING, other)
    ingest_prices(root2, EA_PRICE)
    assert _comparable(lake_rows(hub_root)) == _comparable(lake_rows(root2))
    assert _comparable(lake_rows(hub_root))[1]["ContractedUnitPrice"] == D("2.5")


def test_renormalization_is_idempotent(hub_root: Path) -> None:
    ingest_costs(hub_root, MISSING)
    ingest_prices(hub_root, EA_PRICE)
    first = lake_rows(hub_root)
    from pipelines.prices_backfill import renormalize_month

    again = renormalize_month(Store(str(hub_root)), 2024, 5, "again")  # filled rows are taken again (a newer sheet
    assert again and all(r.state == "committed" for r in again)  # would replace their prices): the same result
    assert lake_rows(hub_root) == first


def test_lookup_joins_build_on_the_lookup(tmp_path: Path) -> None:
    """Regression (DuckDB 2.0.1): its build_side_probe_side optimizer flipped "export LEFT JOIN lookup" and built the
    hash table on the export, holding every row in memory (1M rows: 7 s -> 70 s, spilling). The conversion connection
    disables it: the price-sheet and display-name joins stay LEFT joins probing with the export."""
    from hub import convert, lookups, normalize
    from hub.export_schemas import find_schema
    from transforms import backfill
    from transforms.costs import Lineage

    path = tmp_path / "part.csv"
    path.write_text(rows_csv("focuscost_1.0", [MISSING] * 3))
    con = convert.connect()
    lookups.register(con)
    sql, columns = convert.source_columns(con, str(path), "csv", file=str(path))
    schema = find_schema("FocusCost", "1.0", list(columns), file=str(path))
    source = f"(SELECT {', '.join(convert.plan(schema, columns, file=str(path)).select)} FROM {sql})"
    con.execute("CREATE TEMP TABLE prices_src AS SELECT * FROM (VALUES ('/Prices/2024/05/p.parquet', 'meter-1', 'MS-AZR-0017P', "
                "'8611537', 'EA', 2.5::DECIMAL(38,18), 3::DECIMAL(38,18), 1::DECIMAL(38,18), 'Hours', 0::DECIMAL(38,18), "
                "'Consumption')) t(filename, x_SkuMeterId, x_SkuOfferId, x_BillingProfileId, x_BillingAccountAgreement, "
                "ContractedUnitPrice, ListUnitPrice, x_PricingBlockSize, PricingUnit, x_SkuTier, x_SkuPriceType)")
    con.execute(f"CREATE TEMP TABLE hub_prices AS {backfill.price_keys_sql('prices_src')}")
    plan = con.execute(f"EXPLAIN {normalize.transform_sql(con, schema, source, Lineage(), 'hub_prices')}").fetchall()[0][1]
    assert plan.count("Join Type: LEFT") == 2 and "Join Type: RIGHT" not in plan


def test_a_custom_drop_arriving_with_the_price_sheet_is_left_to_its_source(hub_root: Path) -> None:
    """Defect: a price sheet and an all-text custom drop of the same month in one ingestion: the re-normalization read
    the drop before it was normalized (InternalError, "Referenced column not found"), and the failure's record stayed
    quarantined after the next pass made it good."""
    import duckdb

    from hub import runs

    ingest_costs(hub_root, MISSING)
    folder = hub_root / "ingestion/Costs/2024/05/custom/acct1"
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT '1.25' AS BilledCost, '1.25' AS EffectiveCost, 'USD' AS BillingCurrency, 'Usage' AS ChargeCategory, "
               f"'2024-05-02 00:00:00' AS ChargePeriodStart, '2024-05-03 00:00:00' AS ChargePeriodEnd, "
               f"'2024-05-01 00:00:00' AS BillingPeriodStart, '2024-06-01 00:00:00' AS BillingPeriodEnd) "
               f"TO '{folder / 'ing1__p0.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_bytes(b"")
    store = Store(str(hub_root))
    prices_key = runs.run_key("msexports/prices/20240501-20240531/prices1/manifest.json", "prices1")
    runs.failed(store, f"renorm-failed-{prices_key}", "renormalize:2024-05", RuntimeError("an earlier attempt"))
    renormalized = ingest_prices(hub_root, EA_PRICE)
    assert [r.state for r in renormalized] == ["committed"], [r.error for r in renormalized]
    rows = {r["ResourceName"]: r for r in lake_rows(hub_root)}
    assert rows["vm1"]["ContractedUnitPrice"] == D("2.5") and rows[None]["BilledCost"] == D("1.25")
    assert [r.key for r in runs.load_all(store) if r.state == "quarantined"] == []  # the earlier failure: made good


def test_a_correction_takes_its_charges_saving_back_and_a_marketplace_zero_price_is_filled(hub_root: Path) -> None:
    """Review of stop 37: a usage row (list 12, contracted 10, billed 10) and its full correction netted to no cost but
    kept +2 of savings (the correction's -2 floored to 0); a FocusCost marketplace row without a meter id and with its
    prices written as 0 kept ListCost and ContractedCost 0 under an EffectiveCost of 50 (the same row with empty prices
    got 50): a 0 stands for a missing price whether or not the row has a meter."""
    correction = {**BASE, "ChargeClass": "Correction", "BilledCost": "-10", "EffectiveCost": "-10", "ContractedCost": "-10",
                  "ListCost": "-12", "PricingQuantity": "-4", "ConsumedQuantity": "-4", "ResourceId": BASE["ResourceId"] + "-c"}
    market = {**BASE, "x_SkuMeterId": "", "SkuId": "", "SkuPriceId": "", "PublisherName": "Contoso SaaS", "BilledCost": "50",
              "EffectiveCost": "50", "ContractedCost": "0", "ListCost": "0", "ContractedUnitPrice": "0", "ListUnitPrice": "0",
              "x_EffectiveUnitPrice": "5", "x_BilledUnitPrice": "5", "PricingQuantity": "10", "ConsumedQuantity": "10",
              "ResourceId": BASE["ResourceId"] + "-m"}
    ingest_costs(hub_root, BASE, correction, market)
    rows = {r["ResourceId"][-2:]: r for r in lake_rows(hub_root)}
    assert sum(r["x_TotalSavings"] for r in rows.values()) == sum(r["ListCost"] - r["EffectiveCost"] for r in rows.values()) == 0
    assert (rows["-c"]["x_NegotiatedDiscountSavings"], rows["-c"]["x_TotalSavings"]) == (Decimal(-2), Decimal(-2))
    m = rows["-m"]
    assert (m["ContractedUnitPrice"], m["ListUnitPrice"], m["ContractedCost"], m["ListCost"]) == (
        Decimal(5), Decimal(5), Decimal(50), Decimal(50))


@pytest.mark.parametrize("prices_first", [True, False])
def test_a_backfilled_cost_is_backfilled_in_usd_too(hub_root: Path, prices_first: bool) -> None:
    # review: ListCost / ContractedCost filled from the price sheet kept their delivered 0 in x_ListCostInUsd /
    # x_ContractedCostInUsd, so a USD report of the month showed no list cost for these rows
    usd = {**MISSING, "ResourceName": "usd", "x_ListCostInUsd": "0", "x_ContractedCostInUsd": "0", "x_EffectiveCostInUsd": "8",
           "x_BilledCostInUsd": "8"}
    # billed in EUR at 0.9 EUR a USD: EffectiveCost 7.2 EUR is 8 USD (the row's own rate: 8 / 7.2 USD a EUR)
    eur = {**MISSING, "ResourceName": "eur", "BillingCurrency": "EUR", "x_BillingExchangeRate": "0.9", "EffectiveCost": "7.2",
           "BilledCost": "7.2", "x_EffectiveUnitPrice": "1.8", "x_BilledUnitPrice": "1.8", "x_ListCostInUsd": "0",
           "x_ContractedCostInUsd": "0", "x_EffectiveCostInUsd": "8", "x_BilledCostInUsd": "8"}
    # a row whose USD columns were never delivered keeps them NULL
    bare = {**MISSING, "ResourceName": "bare"}
    if prices_first:
        ingest_prices(hub_root, EA_PRICE)
    ingest_costs(hub_root, usd, eur, bare)
    if not prices_first:
        ingest_prices(hub_root, EA_PRICE)
    rows = {r["ResourceName"]: r for r in lake_rows(hub_root)}
    assert (rows["usd"]["ListCost"], rows["usd"]["ContractedCost"]) == (D(12), D(10))  # 3 x 4, 2.5 x 4
    assert (rows["usd"]["x_ListCostInUsd"], rows["usd"]["x_ContractedCostInUsd"]) == (D(12), D(10))
    assert (rows["eur"]["ListCost"], rows["eur"]["ContractedCost"]) == (D("10.8"), D(9))  # 3 x 0.9 x 4, 2.5 x 0.9 x 4
    assert (rows["eur"]["x_ListCostInUsd"], rows["eur"]["x_ContractedCostInUsd"]) == (D(12), D(10))  # x 8 / 7.2
    assert (rows["bare"]["x_ListCostInUsd"], rows["bare"]["x_ContractedCostInUsd"]) == (None, None)
    assert D(json.loads(rows["eur"]["x_SourceValues"])["x_ListCostInUsd"]) == 0
    assert validate(str(hub_root)).ok


def test_other_prices_of_the_month_are_not_looked_up(hub_root: Path) -> None:
    """Review of stop 38: a custom Prices drop of the month without a price sheet's columns (another cloud's list prices)
    made every Azure cost export of the month InternalError (the lookup bound x_SkuMeterId, ...), and its commit left an
    InternalError re-normalization. Only price sheets are looked up."""
    import duckdb

    folder = hub_root / "ingestion/Prices/2024/05/aws/prices"
    folder.mkdir(parents=True)
    duckdb.sql("COPY (SELECT 'SKU1' AS SkuId, 'SKU1.P' AS SkuPriceId, 0.1::DECIMAL(18,6) AS ListUnitPrice, 'USD' AS BillingCurrency, "
               f"'Hours' AS PricingUnit FROM range(3)) TO '{folder / 'p__a.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_text("")
    result = ingest(Store(str(hub_root)))
    assert result.ok, [r.error for r in result.all]
    ingest_prices(hub_root, EA_PRICE)  # the sheet beside it is used
    ingest_costs(hub_root, MISSING)
    assert (costs(hub_root)["ContractedUnitPrice"], costs(hub_root)["ListUnitPrice"]) == (D("2.5"), D(3))


def _april_sheet(root: Path, price: str, run_id: str = "p04") -> list:
    april = {**EA_PRICE, "EffectiveStartDate": "2024-04-01T00:00:00Z", "EffectiveEndDate": "2024-04-30T23:59:59Z",
             "UnitPrice": price}
    write_export(root, {"part_0_0001.csv": rows_csv("pricesheet_2023-05-01_ea", [april])}, export_type="PriceSheet",
                 data_version="2023-05-01", rows=1, run_id=run_id, folder=f"prices/20240401-20240430/{run_id}",
                 resource_id=EA_ACCOUNT, start_date="2024-04-01T00:00:00")
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return result.renormalized


@pytest.mark.parametrize("april_first", [True, False])
def test_a_late_row_of_the_month_before_takes_that_months_prices_in_either_order(hub_root: Path, april_first: bool) -> None:
    """Review of stop 41: May's export holding a row charged on April 30 without prices looked it up in April's prices
    (its key holds its own month) among May's sheets only: it fell back to its effective price (2 / 2, ListCost 8), and
    an April sheet arriving later re-normalized April's folders alone. By hand: April's contracted 2.25 and list 3 x 4
    hours: ContractedCost 9, ListCost 12; May's row May's 2.5 (10). Then April's sheet restated at 2.4: 9.6."""
    late = {**MISSING, "ChargePeriodStart": "2024-04-30T00:00:00Z", "ChargePeriodEnd": "2024-05-01T00:00:00Z"}
    if april_first:
        _april_sheet(hub_root, "2.25")
    ingest_prices(hub_root, EA_PRICE)
    ingest_costs(hub_root, MISSING, late)
    if not april_first:
        assert _april_sheet(hub_root, "2.25")  # May's folder re-normalized for its April row
    got = {r["ChargePeriodStart"].day: (r["ContractedCost"], r["ListCost"]) for r in lake_rows(hub_root)}
    assert got == {1: (D(10), D(12)), 30: (D(9), D(12))}
    _april_sheet(hub_root, "2.4", run_id="p04b")
    got = {r["ChargePeriodStart"].day: r["ContractedCost"] for r in lake_rows(hub_root)}
    assert got == {1: D(10), 30: D("9.6")}
