"""Legacy Cost Management exports (ActualCost / AmortizedCost, EA and MCA layouts) -> FocusCost 1.0 columns.

Follows Microsoft's documented conversion: the amortized export gives every row (``EffectiveCost`` = cost,
``BilledCost`` = 0 for usage covered by a commitment), the actual export gives the commitment purchases and
refunds (``BilledCost`` = cost, ``EffectiveCost`` = 0), so together they reconcile to the invoice (BilledCost)
and to amortized cost (EffectiveCost) without double counting. An actual export gives every row of the days its
month's amortized export does not hold (``paired``: the days it holds; none without amortized data): usage rows
take EffectiveCost from the actual cost, flagged by the :data:`ACTUAL_ONLY` marker (``EffectiveCostFromActualCost``);
they are taken out when an amortized export holding their days arrives (:mod:`hub.sources.msexports_pairing`). The result then goes through the regular Costs
normalization (:mod:`transforms.costs`). Pure SQL building over the typed export, whose columns carry the
mapping files' names whatever spelling the file used (``CostInBillingCurrency`` arrives as ``Cost``).

Quantities: the legacy ``Quantity`` is in pricing blocks (cost = Quantity x EffectivePrice), so
PricingQuantity = Quantity and ConsumedQuantity = Quantity x block size.
"""

from __future__ import annotations

from transforms.sqlchain import DEC, div, mul, nz
from transforms.typing import ROUNDED, ident, literal

ACTUAL, AMORTIZED = "actualcost", "amortizedcost"
#: Marker column: BilledCost of this row is 0 (usage paid for by a commitment purchase billed elsewhere).
ZERO_BILLED = "_zero_billed"
#: Marker column: an actual-cost row that an amortized export of the month would replace (EffectiveCost = cost).
ACTUAL_ONLY = "_actual_only"


def _col(present: set[str], *names: str, cast: str | None = None) -> str:
    """The typed columns ``names`` of the source ``t`` (mapping-file names, case-insensitive), the first non-null."""
    lower = {n.lower(): n for n in present}
    found = [f"t.{ident(lower[n.lower()])}" for n in names if n.lower() in lower]
    expr = found[0] if len(found) == 1 else f"coalesce({', '.join(found)})" if found else "NULL"
    return f"CAST({expr} AS {cast})" if cast else expr


def paired_rows(present: set[str]) -> str:
    """The actual export's rows that an amortized export of the same month does not carry: commitment purchases
    and refunds."""
    return f"{_col(present, 'ChargeType')} IN ('Purchase', 'Refund') AND ({_commitment(present)})"


#: The days (first, last, ISO dates) a month's amortized-cost export holds: the actual export's usage rows of those
#: days are the amortized export's to carry; None: no amortized data.
Paired = tuple[str, str] | None


def _unpaired_day(present: set[str], paired: Paired) -> str:
    """The row's day is not one the amortized export holds (always, without amortized data)."""
    if not paired:
        return "true"
    return (f"coalesce(NOT (CAST({_col(present, 'Date')} AS DATE) BETWEEN DATE {literal(paired[0])} "
            f"AND DATE {literal(paired[1])}), false)")


def row_filter(export_type: str, present: set[str], *, paired: Paired = None) -> str:
    """Rows of the export that belong in Costs: all, but the actual export of a month with amortized data only
    contributes commitment purchases and refunds, and its rows of the days the amortized export does not hold."""
    if export_type.lower() != ACTUAL or not paired:
        return "true"
    return f"({paired_rows(present)}) OR {_unpaired_day(present, paired)}"


def _commitment(present: set[str]) -> str:
    return (f"{_col(present, 'ReservationId')} IS NOT NULL OR {_col(present, 'benefitId', 'BenefitId')} IS NOT NULL "
            f"OR {_col(present, 'PricingModel')} IN ('Reservation', 'SavingsPlan')")


def legacy_sql(source: str, present: set[str], export_type: str, *, filter_rows: bool = True, paired: Paired = None,
               extras: list[str] = ()) -> str:
    """FocusCost 1.0 input columns from a typed legacy export relation (lookup tables registered).
    ``filter_rows=False``: the source already holds only the rows :func:`row_filter` keeps; ``paired``: the days
    the month's amortized data holds (an actual export keeps only its commitment purchases and refunds of them); ``extras``:
    columns the mapping does not know, passed through (the Costs normalization keeps them with an ``x_`` prefix)."""
    c = lambda *n, cast=None: _col(present, *n, cast=cast)  # noqa: E731
    charge_type, model = c("ChargeType"), c("PricingModel")
    commit = f"({_commitment(present)})"
    # a layout without benefitId (EA 2021-01-01) still bills savings plans: a row its PricingModel calls a commitment
    # is known by its order, so the purchase is a commitment purchase here as it is to the pairing (EffectiveCost 0)
    cd_id = (f"lower(coalesce({c('benefitId')}, CASE WHEN {c('ReservationId')} IS NOT NULL THEN "
             f"'/providers/microsoft.capacity/reservationorders/' || coalesce({c('ProductOrderId')}, '') || '/reservations/' "
             f"|| {c('ReservationId')} END, CASE {model} WHEN 'SavingsPlan' THEN "
             f"'/providers/microsoft.billingbenefits/savingsplanorders/' || {c('ProductOrderId')} WHEN 'Reservation' THEN "
             f"'/providers/microsoft.capacity/reservationorders/' || {c('ProductOrderId')} END))")
    is_sp = (f"(contains(coalesce({cd_id}, ''), '/microsoft.billingbenefits/') OR {model} = 'SavingsPlan' "
             f"OR {charge_type} = 'UnusedSavingsPlan')")
    covered = f"({charge_type} IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan') AND {commit})"
    cost = c("Cost")
    ea = f"({c('BillingProfileId')} IS NULL OR {c('BillingProfileId')} = {c('BillingAccountId')})"
    block = "CAST(coalesce(pu.PricingBlockSize, pu2.PricingBlockSize) AS DOUBLE)"
    unit = "coalesce(pu.DistinctUnits, pu2.DistinctUnits)"
    rtype = (f"CASE WHEN {c('ResourceId')} LIKE '%/providers/%' THEN regexp_extract(lower({c('ResourceId')}), "
             "'.*/providers/([^/]+/[^/]+)', 1) END")
    # MCA prices are in the pricing currency (often USD) while costs are in the billing currency: FOCUS unit
    # prices are in the billing currency, so they are converted with the export's exchange rate
    rate = c("ExchangeRatePricingToBilling")
    foreign = f"({c('PricingCurrency')} IS DISTINCT FROM {c('BillingCurrency')} AND {c('PricingCurrency')} IS NOT NULL AND {rate} IS NOT NULL)"

    def billed(col: str) -> str:
        return f"CASE WHEN {foreign} THEN {mul(c(col), rate)} ELSE {c(col, cast=DEC)} END"

    paygo, unit_price, effective = billed("PayGPrice"), billed("UnitPrice"), billed("EffectivePrice")
    payg_cost = c("PaygCostInBillingCurrency", cast=DEC)

    def refunded(product: str) -> str:
        return f"CASE WHEN {charge_type} = 'Refund' AND {cost} < 0 THEN -abs({product}) ELSE {product} END"
    select = {
        "BilledCost": cost,  # zeroed for covered usage by the Costs chain (ZERO_BILLED), so the original is kept
        ZERO_BILLED: f"{export_type.lower() == AMORTIZED} AND {covered}",
        ACTUAL_ONLY: f"{export_type.lower() == ACTUAL} AND NOT coalesce({paired_rows(present)}, false) "
                     f"AND {_unpaired_day(present, paired)}",
        "EffectiveCost": cost,  # 0 on commitment purchases: set by the Costs chain, which keeps the original
        "BillingAccountId": f"'/providers/microsoft.billing/billingaccounts/' || {c('BillingAccountId')} || CASE WHEN {ea} THEN '' "
                            f"ELSE '/billingprofiles/' || {c('BillingProfileId')} END",
        "BillingAccountName": f"coalesce({c('BillingProfileName')}, {c('BillingAccountName')})",
        "BillingAccountType": f"CASE WHEN {ea} THEN 'Billing Account' ELSE 'Billing Profile' END",
        "BillingCurrency": c("BillingCurrency"),
        # the period's first and last days as stated (a pay-as-you-go subscription bills the 15th to the 14th), the end
        # exclusive
        "BillingPeriodStart": f"date_trunc('day', {c('BillingPeriodStartDate')})",
        "BillingPeriodEnd": f"date_trunc('day', {c('BillingPeriodEndDate')}) + INTERVAL 1 DAY",
        "ChargeCategory": f"CASE WHEN {charge_type} IN ('Usage', 'Purchase', 'Credit', 'Tax') THEN {charge_type} "
                          f"WHEN {charge_type} IN ('UnusedReservation', 'UnusedSavingsPlan') THEN 'Usage' "
                          f"WHEN {charge_type} = 'Refund' THEN 'Purchase' WHEN {charge_type} IS NULL THEN 'Usage' ELSE 'Adjustment' END",
        "ChargeClass": f"CASE WHEN {charge_type} = 'Refund' THEN 'Correction' END",
        "ChargeDescription": c("Product"),
        "ChargeFrequency": f"CASE {c('Frequency')} WHEN 'OneTime' THEN 'One-Time' WHEN 'Recurring' THEN 'Recurring' "
                           "ELSE 'Usage-Based' END",
        "ChargePeriodStart": c("Date"),
        "ChargePeriodEnd": f"{c('Date')} + INTERVAL 1 DAY",
        "CommitmentDiscountId": cd_id,
        "CommitmentDiscountName": f"CASE WHEN {cd_id} IS NOT NULL THEN coalesce({c('benefitName')}, {c('ReservationName')}) END",
        "CommitmentDiscountCategory": f"CASE WHEN {cd_id} IS NOT NULL THEN CASE WHEN {is_sp} THEN 'Spend' ELSE 'Usage' END END",
        "CommitmentDiscountType": f"CASE WHEN {cd_id} IS NOT NULL THEN CASE WHEN {is_sp} THEN 'Savings Plan' ELSE 'Reservation' END END",
        "CommitmentDiscountStatus": f"CASE WHEN {cd_id} IS NULL THEN NULL WHEN starts_with({charge_type}, 'Unused') THEN 'Unused' "
                                    f"WHEN {charge_type} = 'Usage' THEN 'Used' END",
        "PricingCategory": f"CASE {model} WHEN 'OnDemand' THEN 'Standard' WHEN 'On Demand' THEN 'Standard' WHEN 'Spot' THEN 'Dynamic' WHEN 'Reservation' THEN 'Committed' "
                           f"WHEN 'SavingsPlan' THEN 'Committed' ELSE CASE WHEN {cd_id} IS NOT NULL AND {charge_type} = 'Usage' "
                           f"THEN 'Committed' WHEN {charge_type} IN ('Usage', 'Purchase') THEN 'Standard' END END",
        "PricingQuantity": c("Quantity", cast=DEC),
        "PricingUnit": unit,
        "x_PricingBlockSize": f"CAST({block} AS {DEC})",
        "x_PricingUnitDescription": c("UnitOfMeasure"),
        "ConsumedQuantity": f"CASE WHEN {charge_type} IN ('Usage', 'UnusedReservation', 'UnusedSavingsPlan') OR {charge_type} IS NULL "
                            f"THEN {mul(c('Quantity'), f'coalesce({block}, 1)')} END",
        "ConsumedUnit": unit,
        "x_EffectiveUnitPrice": effective,
        "x_BilledUnitPrice": f"CASE WHEN {export_type.lower() == AMORTIZED} AND {covered} THEN CAST(0 AS {DEC}) ELSE {effective} END",
        "ContractedUnitPrice": unit_price,
        # a refund that pays money back has costs of its sign, whatever the sign of its quantity
        "ContractedCost": refunded(mul(unit_price, c("Quantity"))),
        # the list price, else the delivered list cost (c360 layouts have no PayGPrice; MCA rows may leave it empty)
        "ListUnitPrice": f"CASE WHEN {paygo} > 0 THEN {paygo} WHEN {nz(payg_cost)} AND {nz(c('Quantity'))} "
                         f"THEN abs({div(payg_cost, c('Quantity'))}) END",
        "ListCost": f"CASE WHEN {paygo} > 0 THEN {refunded(mul(paygo, c('Quantity')))} WHEN {nz(payg_cost)} "
                    f"THEN {refunded(payg_cost)} END",
        "x_BillingExchangeRate": c("ExchangeRatePricingToBilling", cast=DEC),
        "PricingCurrency": c("PricingCurrency", "BillingCurrency"),
        "InvoiceId": c("InvoiceId"),
        "InvoiceIssuerName": f"coalesce({c('PartnerName')}, 'Microsoft')",
        "ProviderName": "'Microsoft'",
        "PublisherName": f"CASE WHEN {c('PublisherType')} = 'Marketplace' THEN {c('PublisherName')} ELSE 'Microsoft' END",
        "x_PublisherCategory": f"CASE WHEN {c('PublisherType')} = 'Marketplace' THEN 'Vendor' ELSE 'Cloud Provider' END",
        "RegionId": "rg.RegionId",
        "RegionName": "rg.RegionName",
        "AvailabilityZone": c("AvailabilityZone"),
        "ResourceId": c("ResourceId"),
        "ResourceName": c("ResourceName"),
        "x_ResourceGroupName": c("ResourceGroup"),
        "ServiceName": f"coalesce(sv.ServiceName, sv2.ServiceName, {c('MeterCategory')}, {c('ConsumedService')})",
        "ServiceCategory": "coalesce(sv.ServiceCategory, sv2.ServiceCategory, 'Other')",
        "ServiceSubcategory": "coalesce(sv.ServiceSubcategory, sv2.ServiceSubcategory)",
        "x_ServiceModel": "coalesce(sv.ServiceModel, sv2.ServiceModel)",
        "SkuId": c("ProductId", "PartNumber"),
        "SkuPriceId": c("MeterId"),
        "SkuMeter": c("MeterName"),
        "SubAccountId": f"CASE WHEN {c('SubscriptionId')} IS NOT NULL THEN '/subscriptions/' || "
                        f"{c('SubscriptionId')} END",
        "SubAccountName": f"CASE WHEN {c('SubscriptionId')} IS NOT NULL THEN {c('SubscriptionName')} END",  # FOCUS: with its id
        "SubAccountType": f"CASE WHEN {c('SubscriptionId')} IS NOT NULL THEN 'Subscription' END",
        "Tags": c("Tags"),
        "x_AccountName": c("AccountName"),
        "x_AccountOwnerId": c("AccountOwnerId"),
        "x_BillingAccountId": c("BillingAccountId"),
        "x_BillingAccountName": c("BillingAccountName"),
        "x_BillingProfileId": f"coalesce({c('BillingProfileId')}, {c('BillingAccountId')})",
        "x_BillingProfileName": c("BillingProfileName"),
        "x_CostAllocationRuleName": c("CostAllocationRuleName"),
        "x_CostCenter": c("CostCenter"),
        "x_InvoiceSectionId": c("InvoiceSectionId"),
        "x_InvoiceSectionName": c("InvoiceSection"),
        "x_SkuDescription": c("Product"),
        "x_SkuDetails": f"CASE WHEN {c('AdditionalInfo')} IS NULL THEN NULL WHEN starts_with({c('AdditionalInfo')}, '{{') "
                        f"THEN {c('AdditionalInfo')} ELSE '{{' || {c('AdditionalInfo')} || '}}' END",
        "x_SkuIsCreditEligible": c("IsAzureCreditEligible", cast="BOOLEAN"),
        "x_SkuMeterCategory": c("MeterCategory"),
        "x_SkuMeterId": c("MeterId"),
        "x_SkuMeterSubcategory": c("MeterSubCategory"),
        "x_SkuOfferId": c("OfferId"),
        "x_SkuOrderId": c("ProductOrderId"),
        "x_SkuOrderName": c("ProductOrderName"),
        "x_SkuPartNumber": c("PartNumber"),
        "x_SkuPlanName": c("PlanName"),
        "x_SkuRegion": c("MeterRegion"),
        "x_SkuServiceFamily": c("ServiceFamily"),
        "x_SkuTerm": c("Term"),
        # fields of MCA / MPA / newer EA files (typed nulls in files without them)
        "x_AccountId": c("AccountId"),
        "x_BilledCostInUsd": c("CostInUsd"),
        "x_EffectiveCostInUsd": c("CostInUsd"),
        "x_ListCostInUsd": c("PaygCostInUsd"),
        "x_BillingExchangeRateDate": c("ExchangeRateDate"),
        "x_CustomerId": c("CustomerTenantId"),
        "x_CustomerName": c("CustomerName"),
        "x_InvoiceIssuerId": c("PartnerTenantId"),
        "x_PartnerCreditApplied": c("PartnerEarnedCreditApplied"),
        "x_PartnerCreditRate": c("PartnerEarnedCreditRate"),
        "x_PublisherId": c("PublisherId"),
        "x_ResellerId": c("ResellerMpnId"),
        "x_ResellerName": c("ResellerName"),
        "x_ServicePeriodStart": c("ServicePeriodStartDate"),
        "x_ServicePeriodEnd": c("ServicePeriodEndDate"),
    }
    if ROUNDED in present:
        select[ROUNDED] = f"t.{ident(ROUNDED)}"
    taken = {k.lower() for k in select}
    select.update({e: f"t.{ident(e)}" for e in extras if e.lower() not in taken})
    cols = ", ".join(f"{expr} AS {ident(name)}" for name, expr in select.items())
    location = c("ResourceLocation")
    services = "(SELECT lower(ResourceType) AS rt, any_value(ServiceName) AS ServiceName, any_value(ServiceCategory) AS ServiceCategory, " \
               "any_value(ServiceSubcategory) AS ServiceSubcategory, any_value(ServiceModel) AS ServiceModel FROM hub_services GROUP BY 1)"
    by_consumed = "(SELECT lower(ConsumedService) AS cs, any_value(ServiceName) AS ServiceName, any_value(ServiceCategory) AS ServiceCategory, " \
                  "any_value(ServiceSubcategory) AS ServiceSubcategory, any_value(ServiceModel) AS ServiceModel FROM hub_services " \
                  "WHERE ConsumedService IS NOT NULL GROUP BY 1)"
    units = "(SELECT UnitOfMeasure, any_value(PricingBlockSize) AS PricingBlockSize, any_value(DistinctUnits) AS DistinctUnits " \
            "FROM hub_pricing_units GROUP BY 1)"
    units_ci = "(SELECT lower(trim(UnitOfMeasure)) AS u, any_value(PricingBlockSize) AS PricingBlockSize, " \
               "any_value(DistinctUnits) AS DistinctUnits FROM hub_pricing_units GROUP BY 1)"
    regions = "(SELECT OriginalValue, any_value(RegionId) AS RegionId, any_value(RegionName) AS RegionName FROM hub_regions GROUP BY 1)"
    return (f"SELECT {cols} FROM {source} AS t "
            f"LEFT JOIN {units} AS pu ON pu.UnitOfMeasure = {c('UnitOfMeasure')} "
            f"LEFT JOIN {units_ci} AS pu2 ON pu2.u = lower(trim({c('UnitOfMeasure')})) "
            f"LEFT JOIN {regions} AS rg ON rg.OriginalValue = lower({location}) "
            f"LEFT JOIN {services} AS sv ON sv.rt = {rtype} "
            f"LEFT JOIN {by_consumed} AS sv2 ON sv2.cs = lower({c('ConsumedService')}) "
            f"WHERE {row_filter(export_type, present, paired=paired) if filter_rows else 'true'}")
