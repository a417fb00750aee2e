"""Price sheets (EA and MCA, 2023-05-01 and 2024-08-01) -> the Prices dataset (FOCUS-aligned names).

The reference's ``Prices_transform_v1_2`` rules, with its bugs fixed: discount percents are 0-1 fractions
(as in Costs), savings-plan rows take one on-demand price per key (never duplicated), usage/spend
eligibility are not swapped, and an end date that is not a month start becomes the next month's start.
Pure SQL building.
"""

from __future__ import annotations

from transforms.legacy_costs import _col
from transforms.sqlchain import DEC, div, lit
from transforms.typing import ident


def iso_term_months(expr: str) -> str:
    """ISO 8601 duration -> months: P1Y -> 12, P3Y -> 36, P1M -> 1; NULL when empty or not in years/months."""
    n = f"TRY_CAST(regexp_replace({expr}, '[PYM]', '', 'g') AS INTEGER)"
    return (f"CASE WHEN {expr} IS NULL OR {expr} = '' THEN NULL WHEN regexp_full_match({expr}, 'P[0-9]+Y') THEN {n} * 12 "
            f"WHEN regexp_full_match({expr}, 'P[0-9]+M') THEN {n} END")


def prices_sql(source: str, present: set[str], *, ingestion_time: str | None, version: str | None,
               extras: list[str] = ()) -> str:
    """The Prices normalization of a typed price-sheet relation (lookup tables registered)."""
    c = lambda *n, cast=None: _col(present, *n, cast=cast)  # noqa: E731

    def last_segment(expr: str) -> str:
        return f"CASE WHEN starts_with({expr}, '/') THEN regexp_extract({expr}, '[^/]+$') ELSE {expr} END"

    account = f"coalesce({last_segment(c('BillingAccountId'))}, {c('EnrollmentNumber')})"
    profile = f"coalesce({last_segment(c('BillingProfileId'))}, {c('EnrollmentNumber')})"
    aligned = {
        "x_BillingAccountId": account,
        "x_BillingProfileId": profile,
        "BillingAccountName": f"coalesce({c('BillingProfileName')}, {c('BillingAccountName')}, {profile})",
        "BillingCurrency": c("BillingCurrency", "CurrencyCode", "Currency"),
        "PricingCurrency": c("Currency", "CurrencyCode"),
        "x_SkuId": c("SkuId"),
        "x_SkuMeterId": c("MeterId"),
        "x_SkuProductId": c("ProductId"),
        "SkuId": c("ProductId"),
        "SkuMeter": c("MeterName"),
        "x_SkuTerm": iso_term_months(c("Term")),
        "x_BaseUnitPrice": c("BasePrice", cast=DEC),
        "x_EffectivePeriodStart": c("EffectiveStartDate"),
        "x_EffectivePeriodEnd": f"CASE WHEN {c('EffectiveEndDate')} IS NULL THEN NULL "
                                f"WHEN {c('EffectiveEndDate')} = date_trunc('month', {c('EffectiveEndDate')}) THEN {c('EffectiveEndDate')} "
                                f"ELSE date_trunc('month', {c('EffectiveEndDate')}) + INTERVAL 1 MONTH END",
        "x_PricingUnitDescription": c("UnitOfMeasure"),
        "x_SkuIncludedQuantity": c("IncludedQuantity", cast=DEC),
        "x_SkuMeterCategory": c("MeterCategory"),
        "x_SkuMeterSubcategory": c("MeterSubCategory"),
        "x_SkuMeterType": c("MeterType"),
        "x_SkuOfferId": c("OfferId", cast="VARCHAR"),  # (a layout without it: a typed null, never NULL's own type)
        "x_SkuPartNumber": c("PartNumber", cast="VARCHAR"),
        "x_SkuPriceType": c("PriceType"),
        "x_SkuRegion": c("MeterRegion"),
        "x_SkuServiceFamily": c("ServiceFamily"),
        "x_SkuTier": f"TRY_CAST({c('TierMinimumUnits')} AS {DEC})",
        "x_SkuDescription": c("Product"),
        "x_SkuOrderName": c("ProductOrderName", cast="VARCHAR"),
        "ContractedUnitPrice": f"CASE WHEN {c('PriceType')} = 'SavingsPlan' THEN NULL ELSE {c('UnitPrice', cast=DEC)} END",
        "ListUnitPrice": f"CASE WHEN {c('PriceType')} = 'SavingsPlan' THEN NULL ELSE {c('MarketPrice', cast=DEC)} END",
        "x_EffectiveUnitPrice": f"CASE WHEN {c('PriceType')} = 'SavingsPlan' THEN {c('UnitPrice', cast=DEC)} END",
        "_raw_account": c("BillingAccountId"),
        "_raw_profile": c("BillingProfileId"),
    }
    extras = [e for e in extras if e not in aligned]
    base = ", ".join([f"{expr} AS {ident(n)}" for n, expr in aligned.items()] + [f"t.{ident(e)}" for e in extras])
    key = "coalesce(x_SkuMeterId, '') || '|' || coalesce(x_SkuProductId, '') || '|' || coalesce(x_SkuId, '') || '|' || " \
          "coalesce(CAST(x_SkuTier AS VARCHAR), '') || '|' || coalesce(x_SkuOfferId, '')"
    on_demand = (f"(SELECT {key} AS k, min(ListUnitPrice) AS l, min(ContractedUnitPrice) AS c, min(x_BaseUnitPrice) AS b "
                 "FROM base WHERE x_SkuPriceType = 'Consumption' GROUP BY 1)")
    filled = (f"SELECT base.* REPLACE (coalesce(base.ListUnitPrice, CASE WHEN x_SkuPriceType = 'SavingsPlan' THEN od.l END) AS ListUnitPrice, "
              "coalesce(base.ContractedUnitPrice, CASE WHEN x_SkuPriceType = 'SavingsPlan' THEN od.c END) AS ContractedUnitPrice, "
              "coalesce(base.x_BaseUnitPrice, CASE WHEN x_SkuPriceType = 'SavingsPlan' THEN od.b END) AS x_BaseUnitPrice) "
              f"FROM base LEFT JOIN {on_demand} AS od ON od.k = {key.replace('x_', 'base.x_')}")
    units = ("(SELECT UnitOfMeasure, any_value(PricingBlockSize) AS PricingBlockSize, any_value(DistinctUnits) AS DistinctUnits "
             "FROM hub_pricing_units GROUP BY 1)")
    # a unit spelled otherwise (``100 hours``): compared without case or surrounding spaces, as legacy cost exports' units
    units_ci = ("(SELECT lower(trim(UnitOfMeasure)) AS u, any_value(PricingBlockSize) AS PricingBlockSize, "
                "any_value(DistinctUnits) AS DistinctUnits FROM hub_pricing_units GROUP BY 1)")
    sp_meters = "(SELECT DISTINCT x_SkuMeterId FROM base WHERE x_SkuPriceType = 'SavingsPlan')"
    ri_meters = "(SELECT DISTINCT x_SkuMeterId FROM base WHERE x_SkuPriceType = 'ReservedInstance')"
    category = "CASE x_SkuPriceType WHEN 'Consumption' THEN 'Usage' WHEN 'ReservedInstance' THEN 'Purchase' WHEN 'SavingsPlan' THEN 'Usage' END"
    cd_category = "CASE x_SkuPriceType WHEN 'ReservedInstance' THEN 'Usage' WHEN 'SavingsPlan' THEN 'Spend' END"
    prefix = "CASE x_SkuPriceType WHEN 'Consumption' THEN 'OD' WHEN 'ReservedInstance' THEN 'RI' WHEN 'SavingsPlan' THEN 'SP' ELSE 'XX' END"

    def discount(a: str, b: str) -> str:
        return f"CASE WHEN {a} IS NOT NULL AND {b} IS NOT NULL THEN CAST({a} - {b} AS {DEC}) END"

    def percent(a: str, b: str) -> str:
        return f"CASE WHEN coalesce({a}, 0) <> 0 AND {b} IS NOT NULL THEN {div(f'{a} - {b}', a)} END"

    time = f"CAST({lit(ingestion_time)} AS TIMESTAMPTZ)" if ingestion_time else "current_timestamp"
    final = {
        "BillingAccountId": "lower(CASE WHEN starts_with(_raw_profile, '/') THEN _raw_profile WHEN starts_with(_raw_account, '/') "
                            "THEN _raw_account ELSE '/providers/microsoft.billing/billingaccounts/' || x_BillingAccountId || "
                            "CASE WHEN x_BillingProfileId = x_BillingAccountId THEN '' ELSE '/billingprofiles/' || x_BillingProfileId END END)",
        "BillingAccountName": "BillingAccountName",
        "BillingCurrency": "BillingCurrency",
        "ChargeCategory": category,
        "CommitmentDiscountCategory": cd_category,
        "CommitmentDiscountType": "CASE x_SkuPriceType WHEN 'ReservedInstance' THEN 'Reservation' WHEN 'SavingsPlan' THEN 'Savings Plan' END",
        "CommitmentDiscountUnit": "CASE x_SkuPriceType WHEN 'SavingsPlan' THEN PricingCurrency WHEN 'ReservedInstance' THEN coalesce(pu.DistinctUnits, pu2.DistinctUnits) END",
        "ContractedUnitPrice": "ContractedUnitPrice",
        "ListUnitPrice": "ListUnitPrice",
        "PricingCategory": "CASE x_SkuPriceType WHEN 'Consumption' THEN 'Standard' WHEN 'ReservedInstance' THEN 'Standard' "
                           "WHEN 'SavingsPlan' THEN 'Committed' END",
        "PricingCurrency": "PricingCurrency",
        "PricingUnit": "coalesce(pu.DistinctUnits, pu2.DistinctUnits)",
        "SkuId": "SkuId",
        "SkuMeter": "SkuMeter",
        "SkuPriceId": "concat_ws('_', x_SkuProductId, x_SkuId, x_SkuMeterType)",
        "SkuPriceIdv2": f"{prefix} || coalesce(left({category}, 1), '') || coalesce(CAST(x_SkuTerm AS VARCHAR), '') || '_' || "
                        "coalesce(x_SkuProductId, '') || '_' || coalesce(x_SkuId, '') || '_' || coalesce(x_SkuMeterType, '') || '_' || "
                        "coalesce(CAST(CAST(x_SkuTier AS DOUBLE) AS VARCHAR), '') || coalesce(x_SkuOfferId, '')",
        "x_BaseUnitPrice": "x_BaseUnitPrice",
        "x_BillingAccountAgreement": "CASE WHEN x_BillingAccountId IS NOT DISTINCT FROM x_BillingProfileId THEN 'EA' ELSE 'MCA' END",
        "x_BillingAccountId": "x_BillingAccountId",
        "x_BillingProfileId": "x_BillingProfileId",
        "x_CommitmentDiscountSpendEligibility": f"CASE WHEN x_SkuMeterId IN {sp_meters} AND x_SkuPriceType <> 'SavingsPlan' "
                                                "THEN 'Eligible' ELSE 'Not Eligible' END",
        "x_CommitmentDiscountUsageEligibility": f"CASE WHEN x_SkuMeterId IN {ri_meters} AND x_SkuPriceType <> 'ReservedInstance' "
                                                "THEN 'Eligible' ELSE 'Not Eligible' END",
        "x_ContractedUnitPriceDiscount": discount("ListUnitPrice", "ContractedUnitPrice"),
        "x_ContractedUnitPriceDiscountPercent": percent("ListUnitPrice", "ContractedUnitPrice"),
        "x_EffectivePeriodEnd": "x_EffectivePeriodEnd",
        "x_EffectivePeriodStart": "x_EffectivePeriodStart",
        "x_EffectiveUnitPrice": "x_EffectiveUnitPrice",
        "x_EffectiveUnitPriceDiscount": discount("ContractedUnitPrice", "x_EffectiveUnitPrice"),
        "x_EffectiveUnitPriceDiscountPercent": percent("ContractedUnitPrice", "x_EffectiveUnitPrice"),
        "x_IngestionTime": time,
        "x_PricingBlockSize": f"CAST(coalesce(pu.PricingBlockSize, pu2.PricingBlockSize) AS {DEC})",
        "x_PricingSubcategory": "CASE WHEN x_SkuPriceType = 'Consumption' AND (coalesce(x_SkuIncludedQuantity, 0) > 0 OR "
                                "coalesce(x_SkuTier, 0) > 0) THEN 'Tiered' WHEN x_SkuPriceType IN ('Consumption', 'ReservedInstance') "
                                "THEN 'Standard' WHEN x_SkuPriceType = 'SavingsPlan' THEN 'Committed Spend' END",
        "x_PricingUnitDescription": "x_PricingUnitDescription",
        "x_SkuDescription": "x_SkuDescription",
        "x_SkuId": "x_SkuId",
        "x_SkuIncludedQuantity": "x_SkuIncludedQuantity",
        "x_SkuMeterCategory": "x_SkuMeterCategory",
        "x_SkuMeterId": "x_SkuMeterId",
        "x_SkuMeterSubcategory": "x_SkuMeterSubcategory",
        "x_SkuMeterType": "x_SkuMeterType",
        "x_SkuOfferId": "x_SkuOfferId",
        "x_SkuOrderName": "x_SkuOrderName",
        "x_SkuPartNumber": "x_SkuPartNumber",
        "x_SkuPriceType": "x_SkuPriceType",
        "x_SkuProductId": "x_SkuProductId",
        "x_SkuRegion": "x_SkuRegion",
        "x_SkuServiceFamily": "x_SkuServiceFamily",
        "x_SkuTerm": "x_SkuTerm",
        "x_SkuTier": "x_SkuTier",
        "x_SourceName": "'Cost Management'",
        "x_SourceProvider": "'Microsoft'",
        "x_SourceType": "'PriceSheet'",
        "x_SourceVersion": lit(version),
        "x_TotalUnitPriceDiscount": discount("ListUnitPrice", "x_EffectiveUnitPrice"),
        "x_TotalUnitPriceDiscountPercent": percent("ListUnitPrice", "x_EffectiveUnitPrice"),
    }
    cols = ", ".join([f"{expr} AS {ident(n)}" for n, expr in final.items()] + [f"filled.{ident(e)}" for e in extras if e not in final])
    return (f"WITH base AS (SELECT {base} FROM {source} AS t), filled AS ({filled}) "
            f"SELECT {cols} FROM filled LEFT JOIN {units} AS pu ON pu.UnitOfMeasure = filled.x_PricingUnitDescription "
            f"LEFT JOIN {units_ci} AS pu2 ON pu2.u = lower(trim(filled.x_PricingUnitDescription))")
