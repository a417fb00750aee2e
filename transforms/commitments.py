"""Reservation exports -> CommitmentDiscountUsage, Recommendations and Transactions (FOCUS-aligned names,
ISO terms in months, lineage columns). The reference's rules, with its bugs fixed (lineage version is the
export's, JSON-in-cell numbers parse negatives and exponents, no row duplication from lookups). Pure SQL.
"""

from __future__ import annotations

from collections.abc import Callable

from transforms.legacy_costs import _col
from transforms.prices import iso_term_months
from transforms.sqlchain import DEC, lit, mul
from transforms.typing import ERROR_TAG, ident, literal


def _columns(present: set[str]) -> Callable[..., str]:
    """``c(*names, cast=None)``: the source's first column of ``names`` (:func:`transforms.legacy_costs._col`); a column
    the export lacks is a text NULL, never a bare NULL (Parquet's Null type, which readers cannot cast)."""
    def c(*names: str, cast: str | None = None) -> str:
        expr = _col(present, *names, cast=cast)
        return "CAST(NULL AS VARCHAR)" if expr == "NULL" else expr
    return c


def _lineage(source_type: str, version: str | None, ingestion_time: str | None) -> dict[str, str]:
    time = f"CAST({lit(ingestion_time)} AS TIMESTAMPTZ)" if ingestion_time else "current_timestamp"
    return {"x_IngestionTime": time, "x_SourceName": "'Cost Management'", "x_SourceProvider": "'Microsoft'",
            "x_SourceType": lit(source_type), "x_SourceVersion": lit(version)}


def _select(cols: dict[str, str], extras: list[str] = ()) -> str:
    """The output columns, then the input columns the mapping does not know (kept unchanged)."""
    return ", ".join([f"{expr} AS {ident(n)}" for n, expr in cols.items()] + [f"t.{ident(e)}" for e in extras if e not in cols])


def _resource_type(expr: str) -> str:
    return f"CASE WHEN {expr} LIKE '%/providers/%' THEN regexp_extract(lower({expr}), '.*/providers/([^/]+/[^/]+)', 1) END"


def commitment_usage_sql(source: str, present: set[str], *, ingestion_time: str | None, version: str | None,
                         extras: list[str] = ()) -> str:
    """ReservationDetails -> CommitmentDiscountUsage."""
    c = _columns(present)
    ratio = c("InstanceFlexibilityRatio", cast=DEC)
    rtype = _resource_type(c("InstanceId"))
    cols = {
        "ChargePeriodStart": c("UsageDate"),
        "ChargePeriodEnd": f"{c('UsageDate')} + INTERVAL 1 DAY",
        "CommitmentDiscountCategory": "'Usage'",
        "CommitmentDiscountId": f"lower('/providers/microsoft.capacity/reservationorders/' || {c('ReservationOrderId')} || "
                                f"'/reservations/' || {c('ReservationId')})",
        "CommitmentDiscountQuantity": mul(c("UsedHours"), ratio),
        "CommitmentDiscountType": "'Reservation'",
        "CommitmentDiscountUnit": f"CASE WHEN {ratio} IS NULL THEN NULL WHEN {ratio} = 1 THEN 'Hours' ELSE 'Normalized Hours' END",
        "ConsumedQuantity": c("UsedHours", cast=DEC),
        "ProviderName": "'Microsoft'",
        "ResourceId": f"lower({c('InstanceId')})",
        "ResourceName": f"nullif(regexp_extract(lower({c('InstanceId')}), '[^/]+$'), '')",
        "ResourceType": f"coalesce(rt.SingularDisplayName, {rtype})",
        "ServiceCategory": "sv.ServiceCategory",
        "ServiceName": "sv.ServiceName",
        "ServiceSubcategory": "sv.ServiceSubcategory",
        "SubAccountId": f"nullif(regexp_extract(lower({c('InstanceId')}), '^(/subscriptions/[^/]+)', 1), '')",
        "x_CommitmentDiscountCommittedCount": c("TotalReservedQuantity", cast=DEC),
        "x_CommitmentDiscountCommittedAmount": c("ReservedHours", cast=DEC),
        "x_CommitmentDiscountNormalizedGroup": f"nullif({c('InstanceFlexibilityGroup')}, 'NA')",
        "x_CommitmentDiscountNormalizedRatio": ratio,
        "x_ResourceGroupName": f"nullif(regexp_extract(lower({c('InstanceId')}), '/resourcegroups/([^/]+)', 1), '')",
        "x_ResourceType": rtype,
        "x_ServiceModel": "sv.ServiceModel",
        "x_SkuOrderId": c("ReservationOrderId"),
        "x_SkuSize": f"nullif({c('SkuName')}, 'NA')",
        **_lineage("ReservationDetails", version, ingestion_time),
    }
    services = ("(SELECT lower(ResourceType) AS rt, any_value(ServiceName) AS ServiceName, any_value(ServiceCategory) AS ServiceCategory, "
                "any_value(ServiceSubcategory) AS ServiceSubcategory, any_value(ServiceModel) AS ServiceModel FROM hub_services GROUP BY 1)")
    types = "(SELECT ResourceType, any_value(SingularDisplayName) AS SingularDisplayName FROM hub_resource_types GROUP BY 1)"
    return (f"SELECT {_select(cols, extras)} FROM {source} AS t LEFT JOIN {services} AS sv ON sv.rt = {rtype} "
            f"LEFT JOIN {types} AS rt ON rt.ResourceType = {rtype}")


def json_number(text: str) -> str:
    """The first ``"value": <number>`` in a JSON-in-cell string (negatives and exponents included; a number written as
    a JSON string, ``"value": "1200.75"``, too); else the cell itself when it is a plain number."""
    found = f"regexp_extract({text}, '\"value\"\\s*:\\s*\"?(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)', 1)"
    return f"coalesce(TRY_CAST(nullif({found}, '') AS {DEC}), TRY_CAST(trim({text}) AS {DEC}))"


def recommendations_sql(source: str, present: set[str], *, ingestion_time: str | None, version: str | None,
                        extras: list[str] = ()) -> str:
    """ReservationRecommendations (EA, or MCA with space-named, JSON-valued columns) -> Recommendations."""
    c = _columns(present)

    def money(plain: str, json_col: str) -> str:
        return f"coalesce(TRY_CAST({c(plain)} AS {DEC}), {json_number(c(json_col))})"

    lookback = c("LookBackPeriod")
    days = f"TRY_CAST(regexp_extract({lookback}, '([0-9]+)', 1) AS INTEGER)"
    details = {
        "CommitmentDiscountNormalizedGroup": c("InstanceFlexibilityGroup"),
        "CommitmentDiscountNormalizedRatio": c("InstanceFlexibilityRatio"),
        "CommitmentDiscountNormalizedSize": c("NormalizedSize"),
        "CommitmentDiscountResourceType": c("ResourceType"),
        "CommitmentDiscountScope": c("Scope"),
        "LookbackPeriodDuration": f"CASE WHEN {days} IS NOT NULL THEN 'P' || {days} || 'D' END",
        "LookbackPeriodStart": c("FirstUsageDate"),
        "RecommendedQuantity": c("RecommendedQuantity"),
        "RecommendedQuantityNormalized": c("RecommendedQuantityNormalized"),
        "RegionId": c("Location"),
        "RegionName": "rg.RegionName",
        "SkuMeterId": c("MeterId"),
        "SkuPriceDetails": c("SkuProperties"),
        "SkuSize": c("SKU", "SkuName"),
        "SkuTerm": iso_term_months(c("Term")),
    }
    details_json = "CAST(to_json({" + ", ".join(f"'{k}': {v}" for k, v in details.items()) + "}) AS VARCHAR)"
    cols = {
        "ProviderName": "'Microsoft'",
        "RegionId": c("Location"),
        "RegionName": "rg.RegionName",
        "ResourceType": c("ResourceType"),
        "x_EffectiveCostAfter": money("TotalCostWithReservedInstances", "TotalCostWithReservedInstancesJson"),
        "x_EffectiveCostBefore": money("CostWithNoReservedInstances", "CostWithNoReservedInstancesJson"),
        "x_EffectiveCostSavings": money("NetSavings", "NetSavingsJson"),
        "x_RecommendationDate": f"least(CAST({c('FirstUsageDate')} AS TIMESTAMPTZ) + to_days(coalesce({days}, 0)), "
                                "date_trunc('day', current_timestamp))",
        "x_RecommendationDetails": details_json,
        "x_SkuTerm": iso_term_months(c("Term")),
        **_lineage("ReservationRecommendations", version, ingestion_time),
    }
    regions = "(SELECT RegionId, any_value(RegionName) AS RegionName FROM hub_regions GROUP BY 1)"
    return f"SELECT {_select(cols, extras)} FROM {source} AS t LEFT JOIN {regions} AS rg ON rg.RegionId = lower({c('Location')})"


def transactions_sql(source: str, present: set[str], *, ingestion_time: str | None, version: str | None,
                     extras: list[str] = ()) -> str:
    """ReservationTransactions (EA or MCA) -> Transactions."""
    c = _columns(present)
    event, month = c("EventType"), c("BillingMonth")
    # MCA transactions have no BillingMonth: the calendar month of the event (MCA bills calendar months)
    # EA's BillingMonth as the API writes it (20240501), or as a spreadsheet saved it again (2024-05-01, 202405,
    # 5/1/2024 12:00:00 AM, month first); any other text is refused (InvalidValue), never replaced by the event's month,
    # and so is a date not on a 1st (a day-first 01/05/2024 read as 5 January: a billing month starts on the 1st)
    text = f"nullif(trim(CAST({month} AS VARCHAR)), '')"
    parsed = (f"coalesce(try_strptime(left({text}, 8), '%Y%m%d'), try_strptime(left({text}, 10), '%Y-%m-%d'), "
              f"try_strptime({text} || '01', '%Y%m%d'), try_strptime(split_part({text}, ' ', 1), '%m/%d/%Y'))")
    bad = f"error({literal(ERROR_TAG + 'BillingMonth|is not a month (yyyyMMdd)')})"
    start = (f"CASE WHEN {text} IS NULL THEN CAST(date_trunc('month', CAST({c('EventDate')} AS TIMESTAMP)) AS TIMESTAMPTZ) "
             f"ELSE coalesce(CASE WHEN day({parsed}) = 1 THEN CAST({parsed} AS TIMESTAMPTZ) END, {bad}) END")
    guid = c("PurchasingSubscriptionGuid")
    profile = c("BillingProfileId")
    cols = {
        "BilledCost": c("Amount", cast=DEC),
        "BillingAccountId": f"lower(CASE WHEN starts_with({profile}, '/') THEN {profile} WHEN {c('CurrentEnrollmentId')} IS NOT NULL "
                            f"THEN '/providers/microsoft.billing/billingaccounts/' || {c('CurrentEnrollmentId')} WHEN {profile} IS NOT NULL "
                            f"THEN '/providers/microsoft.billing/billingprofiles/' || {profile} END)",
        "BillingAccountName": f"coalesce({c('BillingProfileName')}, {c('CurrentEnrollmentId')})",
        "BillingCurrency": f"upper(trim({c('Currency')}))",
        "BillingPeriodStart": start,
        "BillingPeriodEnd": f"{start} + INTERVAL 1 MONTH",
        "ChargeCategory": f"CASE WHEN {event} IN ('Cancel', 'Purchase', 'Refund') THEN 'Purchase' ELSE 'Adjustment' END",
        "ChargeClass": f"CASE WHEN {event} IN ('Cancel', 'Refund') THEN 'Correction' END",
        "ChargeDescription": c("Description"),
        "ChargeFrequency": f"CASE {c('BillingFrequency')} WHEN 'OneTime' THEN 'One-Time' WHEN 'Recurring' THEN 'Recurring' "
                           f"ELSE {c('BillingFrequency')} END",
        "ChargePeriodStart": c("EventDate"),
        "InvoiceId": c("InvoiceId"),
        "PricingQuantity": c("Quantity", cast=DEC),
        "PricingUnit": "'Reservations'",
        "ProviderName": "'Microsoft'",
        "RegionId": f"replace(lower({c('Region')}), ' ', '')",
        "RegionName": c("Region"),
        "SubAccountId": f"CASE WHEN {guid} IS NOT NULL THEN '/subscriptions/' || {guid} END",
        "SubAccountName": f"CASE WHEN {guid} IS NOT NULL THEN {c('PurchasingSubscriptionName')} END",
        "x_AccountName": c("AccountName"),
        "x_AccountOwnerId": c("AccountOwnerEmail"),
        "x_CostCenter": c("CostCenter"),
        "x_InvoiceNumber": c("Invoice"),
        "x_InvoiceSectionId": c("InvoiceSectionId"),
        "x_InvoiceSectionName": c("InvoiceSectionName", "DepartmentName"),
        "x_MonetaryCommitment": c("MonetaryCommitment", cast=DEC),
        "x_Overage": c("Overage", cast=DEC),
        "x_PurchasingBillingAccountId": c("PurchasingEnrollment"),
        "x_SkuOrderId": c("ReservationOrderId"),
        "x_SkuOrderName": c("ReservationOrderName"),
        "x_SkuSize": c("ArmSkuName"),
        "x_SkuTerm": iso_term_months(c("Term")),
        "x_SubscriptionId": guid,
        "x_TransactionType": event,
        **_lineage("ReservationTransactions", version, ingestion_time),
    }
    return f"SELECT {_select(cols, extras)} FROM {source} AS t"
