"""Costs normalization to FOCUS 1.0: the rules of the reference's ``Costs_transform_v1_2`` as DuckDB SQL,
in its order, with its known bugs fixed. Pure functions: a source relation in, a SQL query out.

Order: harmonize versions -> lineage -> data-quality codes (on original values) -> ProviderName ->
quantities -> 1.0-preview -> 1.0 -> export bug fixes -> lower-casing and resource columns -> agreement ->
enumerations, tags, period ends -> price layer (:mod:`transforms.backfill`: backfill, ContractedCost fix,
savings) -> ``x_SourceValues`` (original value of every changed column) and the output column list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from transforms import backfill
from transforms.focus_validate import focus_columns
from transforms.legacy_costs import ACTUAL_ONLY, ZERO_BILLED
from transforms.sqlchain import DEC, Chain, Query, div, empty, lit, mul, nz, zero
from transforms.typing import DOUBLE_PREFIX, ROUNDED, SQL_TYPES, enum_type, ident, literal

#: FOCUS 1.0-preview / 1.0 names that the lake stores under their FOCUS 1.2 or 1.0 name (pure renames).
RENAMES = {
    "UsageQuantity": "ConsumedQuantity", "UsageUnit": "ConsumedUnit", "x_OnDemandCost": "ContractedCost",
    "x_OnDemandUnitPrice": "ContractedUnitPrice", "x_OnDemandCostInUsd": "x_ContractedCostInUsd",
    "x_InvoiceId": "InvoiceId", "x_PricingCurrency": "PricingCurrency", "x_SkuMeterName": "SkuMeter",
}
#: Columns whose original value is kept in x_SourceValues when a rule changes them (row rules).
TRACKED = (
    "BilledCost", "BillingAccountId", "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeFrequency", "ChargePeriodEnd",
    "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus",
    "CommitmentDiscountType", "ConsumedQuantity", "ConsumedUnit",
    "EffectiveCost", "InvoiceIssuerName", "PricingCategory", "PricingQuantity", "ProviderName", "PublisherName", "ResourceName",
    "ServiceCategory", "BillingCurrency", "SubAccountId", "SubAccountName", "x_BilledCostInUsd",
    "Tags", "x_EffectiveCostInUsd", "x_ResourceGroupName", "x_ResourceType", "ResourceType",
)
LEGACY_VERSIONS = ("1.0-preview", "1.0-preview(v1)")
#: Rows FOCUS requires prices, a pricing category and a SKU price id on: usage and purchases that are not corrections.
PRICED = "ChargeCategory IN ('Usage', 'Purchase') AND ChargeClass IS NULL"
#: x_SourceChanges codes raised by a boolean marker column of the typed input, when the input has it.
MARKER_CODES = (
    ("RoundedTo18Decimals", ROUNDED),  # a number had more than 18 decimals (transforms.typing)
    ("EffectiveCostFromActualCost", ACTUAL_ONLY),  # an actual-cost row without amortized data (legacy_costs)
)
#: Text column of the typed input holding the x_SourceChanges codes of values a source filled in (a provider's
#: documented gaps: ``fills`` in ``schemas/<provider>/focus.json``), when the input has it.
FILLED = "_filled"
#: Prefix of typed-input columns holding a column's delivered value where a source repaired it (``fills`` with a
#: ``when``): the original kept in x_SourceValues.
FILL_ORIGINAL = "_fill_o_"
#: How DuckDB describes the types it spells otherwise in SQL.
DESCRIBED = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


@cache
def output_columns() -> list[tuple[str, str]]:
    """The Costs dataset's columns and types (``schemas/costs/columns.json``)."""
    data = json.loads((resources.files("schemas") / "costs" / "columns.json").read_text())
    return [(c["name"], c["type"]) for c in data["columns"]]


@cache
def input_columns() -> dict[str, str]:
    """Every column any FocusCost version can bring, with its type (from the mapping files)."""
    out: dict[str, str] = {}
    base = resources.files("schemas") / "msexports"
    for path in sorted(p.name for p in base.iterdir() if p.name.startswith("focuscost_")):
        for c in json.loads((base / path).read_text())["columns"]:
            out.setdefault(c.get("as", c["name"]), c["type"])
    out.update({"x_PartnerCreditApplied": "string", "x_PartnerCreditRate": "string"})
    for name, typ in output_columns():
        out.setdefault(name, typ)
    return out


@dataclass(frozen=True)
class Lineage:
    """Where rows come from; ``None`` values are inferred from the data."""

    source_name: str | None = None
    provider: str | None = None
    source_type: str | None = None
    version: str | None = None
    ingestion_time: str | None = None  # ISO timestamp of the run


def _harmonize(chain: Chain, present: dict[str, str], extras: list[str]) -> None:
    """Every input column of every version, typed; 1.0-preview names folded into their 1.0/1.2 names;
    then a copy ``_o_<col>`` of each tracked column (its original value, for x_SourceValues)."""
    exprs = []
    for name, typ in input_columns().items():
        candidates = [n for n in [name, *(s for s, t in RENAMES.items() if t == name)] if n in present]
        cast = [f"CAST({ident(c)} AS {SQL_TYPES[typ]})" for c in candidates] or [f"CAST(NULL AS {SQL_TYPES[typ]})"]
        value = cast[0] if len(cast) == 1 else "coalesce(" + ", ".join(cast) + ")"
        if name == "RegionId" and "Region" in present:  # 1.0-preview Region -> RegionId / RegionName
            value = f"coalesce({value}, replace(lower(Region), ' ', ''))"
        elif name == "RegionName" and "Region" in present:
            value = f"coalesce({value}, Region)"
        exprs.append(f"{value} AS {ident(name)}")
    markers = [m for m in (ZERO_BILLED, FILLED, *(col for _, col in MARKER_CODES)) if m in present]
    exprs += [ident(m) for m in markers]
    exprs += [f"{ident(e)} AS {ident(extra_name(e))}" for e in extras]
    # double copies parsed from the export's text, with the decimal they stand for (backfill.dbl)
    shadows = [c for c in backfill.DOUBLES if DOUBLE_PREFIX + c in present]
    exprs += [f"{ident(DOUBLE_PREFIX + c)}, {ident(c)} AS {ident(backfill.SHADOWED + c)}" for c in shadows]
    added = [*(DOUBLE_PREFIX + c for c in shadows), *(backfill.SHADOWED + c for c in shadows)]
    # a source's repaired columns (fills with a condition): their delivered values are the originals
    repaired = [c for c in (*TRACKED, *backfill.TRACKED) if FILL_ORIGINAL + c in present]
    exprs += [f"CAST({ident(FILL_ORIGINAL + c)} AS {SQL_TYPES[input_columns()[c]]}) AS {ident(FILL_ORIGINAL + c)}" for c in repaired]
    chain.step(", ".join(exprs), columns=[*input_columns(), *map(extra_name, extras), *added, *markers,
                                          *(FILL_ORIGINAL + c for c in repaired)], reset=True)
    chain.replace({}, {f"_o_{c}": ident(FILL_ORIGINAL + c if c in repaired else c) for c in (*TRACKED, *backfill.TRACKED)})
    if ZERO_BILLED in present:  # legacy amortized exports: usage covered by a commitment is not billed again (in USD
        chain.replace({c: f"CASE WHEN {ZERO_BILLED} THEN CAST(0 AS {DEC}) ELSE {c} END"  # neither)
                       for c in ("BilledCost", "x_BilledCostInUsd")})


def _lineage(chain: Chain, lineage: Lineage) -> None:
    version_guess = (
        "CASE WHEN ChargeSubcategory IS NOT NULL OR Region IS NOT NULL THEN '1.0-preview' "
        "WHEN InvoiceId IS NOT NULL OR SkuMeter IS NOT NULL OR SkuPriceDetails IS NOT NULL THEN '1.2' "
        "WHEN ChargeClass IS NOT NULL OR CommitmentDiscountStatus IS NOT NULL OR ConsumedQuantity IS NOT NULL "
        "OR ContractedUnitPrice IS NOT NULL OR RegionId IS NOT NULL THEN '1.0' END"
    )
    provider = (
        "coalesce(ProviderName, CASE WHEN x_BillingProfileId IS NOT NULL OR x_InvoiceSectionId IS NOT NULL "
        "THEN 'Microsoft' END)"
    )
    time = f"CAST({lit(lineage.ingestion_time)} AS TIMESTAMPTZ)" if lineage.ingestion_time else "current_timestamp"
    # a currency code upper-cased and trimmed (` usd` is USD: one currency, not two; flagged EnumerationCasing)
    chain.replace({**_enumerations(), "BillingCurrency": "upper(trim(BillingCurrency))"}, {
        "x_IngestionTime": time,
        "x_SourceName": f"coalesce({lit(lineage.source_name)}, CASE WHEN x_BillingProfileId IS NOT NULL THEN 'Cost Management' "
                        f"END, {provider})",
        "x_SourceProvider": f"coalesce({lit(lineage.provider)}, {provider})",
        "x_SourceType": f"coalesce({lit(lineage.source_type)}, CASE WHEN x_BillingProfileId IS NOT NULL THEN 'FocusCost' END)",
        "x_SourceVersion": f"coalesce({lit(lineage.version)}, {version_guess})",
    })


def quality_codes() -> list[tuple[str, str]]:
    """``x_SourceChanges`` codes and their conditions, evaluated on the original values, in order."""
    cd_purchase = "ChargeCategory = 'Purchase' AND CommitmentDiscountId IS NOT NULL"
    any_cost = f"({nz('EffectiveCost')} OR {nz('BilledCost')})"
    priced = PRICED
    return [
        ("InvalidChargeFrequency", f"{cd_purchase} AND ChargeFrequency = 'Usage-Based'"),
        ("InvalidEffectiveCost", f"{cd_purchase} AND {nz('EffectiveCost')}"),
        ("MissingContractedCost", f"{zero('ContractedCost')} AND {nz('EffectiveCost')}"),
        ("MissingContractedUnitPrice", f"{zero('ContractedUnitPrice')} AND {nz('x_EffectiveUnitPrice')}"),
        # by magnitude (refunds are negative), beyond a billionth (AWS rounds its list and unblended costs apart at the
        # tenth decimal)
        ("ListCostLessThanContractedCost", "abs(ListCost) + 0.000000001 < abs(ContractedCost)"),
        ("ContractedCostLessThanEffectiveCost", "abs(ContractedCost) + 0.000000001 < abs(EffectiveCost)"),
        ("MissingListCost", f"{zero('ListCost')} AND ({nz('ContractedCost')} OR {nz('EffectiveCost')})"),
        ("MissingListUnitPrice", f"{zero('ListUnitPrice')} AND ({nz('ContractedUnitPrice')} OR {nz('x_EffectiveUnitPrice')})"),
        ("MissingConsumedQuantity", f"ChargeCategory = 'Usage' AND {zero('ConsumedQuantity')} AND {any_cost}"),
        ("MissingPricingQuantity", f"{zero('PricingQuantity')} AND {any_cost} AND {priced}"),  # tax: none, per FOCUS
        ("MissingPricingCategory", f"PricingCategory IS NULL AND {priced}"),
        ("MissingSkuPriceId", f"SkuPriceId IS NULL AND SkuId IS NOT NULL AND {priced}"),
        ("MissingResourceType", "ResourceType IS NULL AND ResourceId IS NOT NULL"),
        ("ResourceTypeWithoutResourceId", f"ResourceType IS NOT NULL AND ResourceId IS NULL AND NOT coalesce({cd_purchase}, false)"),
        ("MissingRegionName", "RegionName IS NULL AND RegionId IS NOT NULL"),
        ("MissingProviderName", empty("ProviderName")),
        ("MissingPublisherName", empty("PublisherName")),
        ("MissingInvoiceIssuerName", empty("InvoiceIssuerName")),
        ("PricingCategoryShouldBeCommitted", "PricingCategory = 'Standard' AND CommitmentDiscountId IS NOT NULL "
                                             "AND ChargeCategory = 'Usage'"),
        ("LegacyFocusVersion", f"x_SourceVersion IN ({', '.join(literal(v) for v in LEGACY_VERSIONS)})"),
        ("UnknownFocusVersion", "x_SourceVersion IS NULL"),
    ]


def _codes(chain: Chain) -> None:
    markers = [(code, f"coalesce({ident(col)}, false)") for code, col in MARKER_CODES if col in chain.cols]
    found = codes_sql(quality_codes() + markers)
    chain.replace({}, {"_codes": f"nullif(concat_ws(',', {FILLED}, {found}), '')" if FILLED in chain.cols else found})


def codes_sql(codes: list[tuple[str, str]]) -> str:
    """Comma-separated codes whose condition holds, or NULL (string building, no lists: cheap per row)."""
    items = ", ".join(f"CASE WHEN {cond} THEN {literal(code)} END" for code, cond in codes)
    return f"nullif(concat_ws(',', {items}), '')"


def _provider_and_quantities(chain: Chain, lineage: Lineage) -> None:
    aws = ["x_CostCategories", "x_Discount", "x_Operation", "x_ServiceCode", "x_UsageType"]
    gcp = ["x_Cost", "x_Credits", "x_CostType", "x_CurrencyConversionRate", "x_ExportTime", "x_Project", "x_ServiceId"]
    cols = input_columns()

    def any_of(names: list[str]) -> str:
        present = [f"{ident(n)} IS NOT NULL" for n in names if n in cols]
        return " OR ".join(present) or "false"

    chain.replace({
        # the source's provider where the file names none (AWS's preview FOCUS table leaves it empty)
        "ProviderName": f"coalesce(ProviderName, CASE WHEN {any_of(aws)} THEN 'AWS' WHEN {any_of(gcp)} THEN 'GCP' "
                        "WHEN x_BillingProfileId IS NOT NULL OR x_InvoiceSectionId IS NOT NULL THEN 'Microsoft' END"
                        f"{', ' + lit(lineage.provider) if lineage.provider else ''})",
        "PricingQuantity": f"CASE WHEN {zero('PricingQuantity')} AND ({nz('EffectiveCost')} OR {nz('BilledCost')}) THEN "
                           f"CASE WHEN {nz('BilledCost')} AND {nz('x_BilledUnitPrice')} THEN {div('BilledCost', 'x_BilledUnitPrice')} "
                           f"WHEN {nz('EffectiveCost')} AND {nz('x_EffectiveUnitPrice')} THEN {div('EffectiveCost', 'x_EffectiveUnitPrice')} "
                           "ELSE PricingQuantity END ELSE PricingQuantity END",
    })
    # ConsumedQuantity is in consumed units: pricing blocks x block size (the reference divides, bug B7). A delivered 0 on
    # an unused commitment's row is nothing left unused (AWS's RIFee of a reservation used in full), never filled.
    chain.replace({
        "ConsumedQuantity": f"CASE WHEN ChargeCategory = 'Usage' AND {zero('ConsumedQuantity')} AND PricingQuantity IS NOT NULL "
                            "AND NOT coalesce(ConsumedQuantity = 0 AND CommitmentDiscountStatus = 'Unused', false) "
                            f"THEN {mul('PricingQuantity', 'coalesce(x_PricingBlockSize, 1)')} ELSE ConsumedQuantity END",
    })


def _preview_to_1_0(chain: Chain) -> None:
    chain.replace({
        # a refund keeps the category of what it refunds (OCI's usage refunds); Microsoft's refunds of commitment
        # purchases, written as Adjustment, are purchases
        "ChargeCategory": "CASE ChargeSubcategory WHEN 'Credit' THEN 'Credit' WHEN 'Refund' THEN CASE WHEN ChargeCategory IN "
                          "('Usage', 'Purchase', 'Tax') THEN ChargeCategory ELSE 'Purchase' END ELSE ChargeCategory END",
        "ChargeClass": "CASE WHEN ChargeSubcategory = 'Refund' THEN 'Correction' ELSE ChargeClass END",
        "CommitmentDiscountStatus": "coalesce(CommitmentDiscountStatus, CASE ChargeSubcategory WHEN 'Used Commitment' THEN 'Used' "
                                    "WHEN 'Unused Commitment' THEN 'Unused' END)",
        # the reference's remap is unreachable (bug B3): apply it
        "PricingCategory": "CASE PricingCategory WHEN 'On-Demand' THEN 'Standard' WHEN 'Commitment-Based' THEN 'Committed' "
                           "ELSE PricingCategory END",
    })


def _bug_fixes(chain: Chain) -> None:
    cd_purchase = "ChargeCategory = 'Purchase' AND CommitmentDiscountId IS NOT NULL"
    chain.replace({
        # for every version (the reference skips rows it misclassifies as 1.2-preview, bug B6)
        "ChargeFrequency": f"CASE WHEN {cd_purchase} AND ChargeFrequency = 'Usage-Based' THEN 'Recurring' ELSE ChargeFrequency END",
        "EffectiveCost": f"CASE WHEN {cd_purchase} THEN CAST(0 AS {DEC}) ELSE EffectiveCost END",
        "x_EffectiveCostInUsd": f"CASE WHEN {cd_purchase} AND x_EffectiveCostInUsd IS NOT NULL THEN CAST(0 AS {DEC}) "
                                "ELSE x_EffectiveCostInUsd END",
        "PricingCategory": "CASE WHEN CommitmentDiscountId IS NOT NULL THEN 'Committed' "
                           f"WHEN PricingCategory IS NULL AND {PRICED} THEN 'Standard' ELSE PricingCategory END",
        # a provider without SKU price ids (OCI): the SKU is its own price id
        "SkuPriceId": f"CASE WHEN SkuPriceId IS NULL AND {PRICED} THEN SkuId ELSE SkuPriceId END",
        "ConsumedQuantity": "CASE WHEN ChargeCategory = 'Usage' THEN ConsumedQuantity END",
        "ConsumedUnit": "CASE WHEN ChargeCategory = 'Usage' AND ConsumedQuantity IS NOT NULL THEN coalesce(ConsumedUnit, PricingUnit, "
                        "'Units') END",
    })


# Both return '' when the id has no such part. An expression written twice in one projection (``nullif``
# writes its argument twice) is hoisted by DuckDB and evaluated for every row; callers therefore compute
# these only under a CASE for the rows that need them, and turn '' into NULL in a later step.
def _resource_name_sql(resource_id: str) -> str:
    """Name segments of an ARM id after its last ``/providers/<namespace>``, joined with ``/`` (AWS ARNs and OCI OCIDs:
    none, told by their prefix first: the regular expressions are most of the cost of an ARN row, and a test that scans
    the whole id would cost every ARM id as much)."""
    tail = f"regexp_extract({resource_id}, '(?i).*/providers/[^/]+/(.*)$', 1)"
    return (f"CASE WHEN starts_with({resource_id}, 'arn:') OR starts_with({resource_id}, 'ocid1.') THEN NULL "
            f"ELSE lower(rtrim(regexp_replace({tail}, '(^|/)[^/]*(/([^/]*))?', '\\1\\3', 'g'), '/')) END")


def _resource_type_sql(resource_id: str) -> str:
    """``namespace/type[/subtype...]`` of an ARM id (``microsoft.sql/servers/databases``)."""
    tail = f"regexp_extract({resource_id}, '(?i).*/providers/([^/]+/.*)$', 1)"
    return f"lower(regexp_replace({tail}, '/([^/]*)(/[^/]*)?', '/\\1', 'g'))"


def _arn_type_sql(resource_id: str) -> str:
    """The resource type of an AWS ARN (``arn:partition:service:region:account:resource``): the resource part's
    ``type/...`` or ``type:...`` prefix (``instance`` of ``...:instance/i-1``, ``function`` of ``...:function:f``,
    ``log-group`` of ``...:log-group:/aws/x``), else the service (``sqs`` of ``...:123456789012:queue-name``, ``s3`` of
    ``arn:aws:s3:::bucket``)."""
    part = f"split_part({resource_id}, ':', 6)"
    return (f"CASE WHEN contains({part}, '/') THEN split_part({part}, '/', 1) "
            f"WHEN split_part({resource_id}, ':', 7) <> '' THEN {part} "
            f"ELSE split_part({resource_id}, ':', 3) END")


def _unpadded(col: str) -> str:
    """``col`` without surrounding spaces and tabs, empty as null; trimmed only where it starts or ends with one (a
    trim with its own characters costs about 0.3 CPU s per million values, the tests a fifth of it)."""
    padded = " OR ".join(f"{f}({col}, {c})" for f in ("starts_with", "ends_with") for c in ("' '", "chr(9)"))
    return f"nullif(CASE WHEN {padded} THEN trim({col}, ' ' || chr(9)) ELSE {col} END, '')"


def _names_and_resources(chain: Chain, has_lookups: bool, *, padded_ids: bool = True) -> None:
    cd_purchase = "ChargeCategory = 'Purchase' AND CommitmentDiscountId IS NOT NULL"
    # an id padded with spaces or a tab (a hand-edited bill file) is the same account, never a folder of its own; Cost
    # Management writes none (``padded_ids`` False: not looked for)
    ids = {"BillingAccountId": f"lower({_unpadded('BillingAccountId')})", "SubAccountId": _unpadded("SubAccountId")} \
        if padded_ids else {"BillingAccountId": "lower(BillingAccountId)"}
    chain.replace({
        **ids,
        "CommitmentDiscountId": "lower(CommitmentDiscountId)",
        "x_ResourceGroupName": "lower(x_ResourceGroupName)",
        "PublisherName": "coalesce(CASE WHEN PublisherName = 'Microsoft Corporation' THEN 'Microsoft' ELSE PublisherName END, "
                         "ProviderName)",
        # who bills a direct customer is the provider (OCI's FOCUS reports leave InvoiceIssuer empty, Google's view
        # has no such column): MissingInvoiceIssuerName
        "InvoiceIssuerName": "coalesce(nullif(InvoiceIssuerName, ''), ProviderName)",
        "ResourceId": f"coalesce(ResourceId, CASE WHEN {cd_purchase} THEN lower(CommitmentDiscountId) END)",
    })
    chain.replace({
        "ResourceName": f"lower(coalesce(ResourceName, CASE WHEN {cd_purchase} THEN CommitmentDiscountName END, "
                        f"{_resource_name_sql('ResourceId')}))",
        "x_ResourceType": f"coalesce(x_ResourceType, CASE WHEN starts_with(ResourceId, 'arn:') THEN {_arn_type_sql('ResourceId')} "
                          f"WHEN starts_with(ResourceId, 'ocid1.') THEN split_part(ResourceId, '.', 2) "
                          f"ELSE {_resource_type_sql('ResourceId')} END)",
    })
    chain.replace({"ResourceName": "nullif(ResourceName, '')", "x_ResourceType": "nullif(x_ResourceType, '')"})
    if has_lookups:  # display names: one hash join on a de-duplicated lookup (never multiplies rows)
        types = "(SELECT ResourceType AS _rt_key, any_value(SingularDisplayName) AS _rt_name FROM hub_resource_types GROUP BY 1)"
        chain.step("t.*, rt._rt_name", f"LEFT JOIN {types} AS rt ON rt._rt_key = lower(t.x_ResourceType)", ["_rt_name"])
    display = "_rt_name" if has_lookups else "NULL"
    chain.replace({
        "ResourceType": f"CASE WHEN ResourceId IS NULL THEN NULL WHEN ResourceType IS NOT NULL AND strpos(ResourceType, '/') = 0 "
                        f"THEN ResourceType ELSE coalesce({display}, ResourceType, x_ResourceType, ServiceName) END",
        # FOCUS: a row with a region has its name; a bill that gives none (AWS writes NULL for us-east-1 and global
        # on some rows) gets the id, the only name the row carries (MissingRegionName)
        "RegionName": "coalesce(RegionName, RegionId)",
    })


def _enumerations() -> dict[str, str]:
    """FOCUS enumerations spelled as FOCUS does (``usage-based`` -> ``Usage-Based``): applied with the lineage, before
    any rule reads them."""
    exprs = {}
    for col in focus_columns().values():
        if col.allowed_values:
            cases = " ".join(f"WHEN {literal(v.lower())} THEN {literal(v)}" for v in col.allowed_values)
            exprs[col.name] = f"CASE lower({ident(col.name)}) {cases} ELSE {ident(col.name)} END"
    return exprs


def _tags_periods(chain: Chain) -> None:
    exprs = {}
    # legacy tags lack braces; checked as JSON in _tags. Most tags start with '{': tested first, so long strings are
    # not trimmed for nothing
    # Alibaba's `key:K value:V; key:K2 value:V2`: read pair by pair into the array form _tags reads (a value may hold
    # `=`, `,`, `;` or `:`; a pair without a key is no tag), as its bill mapping does
    kv = "trim(Tags)"
    pairs = (f"CAST(to_json(list_filter(list_transform(regexp_split_to_array(regexp_replace(rtrim({kv}, '; '), '^key:', ''), "
             "';\\s*key:'), lambda x: struct_pack(key := trim(split_part(x, ' value:', 1)), value := CASE WHEN "
             "contains(x, ' value:') THEN trim(substr(x, strpos(x, ' value:') + 7)) END)), lambda p: p.key <> '')) AS VARCHAR)")
    exprs["Tags"] = ("CASE WHEN starts_with(Tags, '{') THEN Tags WHEN Tags IS NULL OR trim(Tags) = '' THEN '{}' "
                     "WHEN starts_with(ltrim(Tags), '{') OR starts_with(ltrim(Tags), '[') THEN Tags "
                     f"WHEN starts_with({kv}, 'key:') AND contains(Tags, ' value:') THEN {pairs} ELSE '{{' || Tags || '}}' END")
    # inclusive ends (...:59:59 of an hour: 23:59:59 UTC, or Beijing's 23:59:59 written in UTC as 15:59:59) become
    # exclusive; the second of the hour by integer arithmetic: strftime on a TIMESTAMPTZ costs more than the rest
    hour = "3600000000"
    for end in ("ChargePeriodEnd", "BillingPeriodEnd"):
        # (a fraction of the last second, ...:59:59.999, is an inclusive end too: the next whole second)
        exprs[end] = (f"CASE WHEN epoch_us({end}) % {hour} // 1000000 = 3599 THEN date_trunc('second', {end}) + INTERVAL 1 SECOND "
                      f"ELSE {end} END")
    # a billing period ending on its last day at midnight (Google's FOCUS view: midnight Pacific time, 07:00Z or
    # 08:00Z): the next day is the exclusive end, which lies a month after the start. Off UTC midnight: within a
    # daylight-saving hour of it. At UTC midnight (a day written without its time beside a start in another zone): the
    # day after is a 1st and less than a day from it; a pay-as-you-go period of 30 May to 29 June ends 30 June,
    # exclusive, whose next day is a 1st too, but a whole day after a month from the start. The month's arithmetic
    # (about 0.4 CPU s per million rows) runs only on the few rows the first tests leave
    day = "86400000000"
    off = f"abs(epoch_us(BillingPeriodEnd) + {day} - epoch_us(BillingPeriodStart + INTERVAL 1 MONTH))"
    last_day = (f"(epoch_us(BillingPeriodEnd) % {day} = 0 AND day(make_timestamp(epoch_us(BillingPeriodEnd) + {day})) = 1 "
                f"AND {off} < {day}) "
                f"OR (epoch_us(BillingPeriodEnd) % {day} <> 0 AND epoch_us(BillingPeriodEnd) % {hour} = 0 AND {off} <= {hour})")
    exprs["BillingPeriodEnd"] = (f"CASE WHEN epoch_us(BillingPeriodEnd) % {hour} // 1000000 = 3599 "
                                 f"THEN date_trunc('second', BillingPeriodEnd) + INTERVAL 1 SECOND "
                                 f"WHEN BillingPeriodEnd > BillingPeriodStart AND ({last_day}) "
                                 "THEN BillingPeriodEnd + INTERVAL 1 DAY ELSE BillingPeriodEnd END")
    exprs["x_BillingAccountAgreement"] = ("CASE WHEN ProviderName = 'Microsoft' THEN CASE WHEN x_BillingAccountId IS NOT DISTINCT "
                                          "FROM x_BillingProfileId THEN 'EA' ELSE 'MCA' END ELSE ProviderName END")
    chain.replace({k: v for k, v in exprs.items() if k != "x_BillingAccountAgreement"},
                  {"x_BillingAccountAgreement": exprs["x_BillingAccountAgreement"]})


#: x_SourceChanges codes of the Tags rule (:func:`_tags`).
TAG_CODES = ("TagsFromText", "TagsFromArray", "InvalidTags", "TagKeysUnprefixed")


def _tags(chain: Chain, prefixes: tuple[str, ...] = ()) -> None:
    """Tags always a JSON object, or NULL: a JSON array of ``{"key": ..., "value": ...}`` objects (Google Cloud's
    labels) becomes the object of those pairs (``TagsFromArray``); text that is not JSON in the ``key=value;...`` or
    ``key:value,...`` forms (no double quotes: broken JSON is not guessed at) becomes a JSON object
    (``TagsFromText``); anything else is nulled (``InvalidTags``); the original stays in x_SourceValues. Text starting
    with ``{`` that is valid JSON is an object, so one ``json_valid`` decides."""
    text = "trim(Tags, ' {}')"
    sep = f"CASE WHEN contains({text}, ';') THEN ';' ELSE ',' END"
    delim = f"CASE WHEN contains({text}, '=') THEN '=' ELSE ':' END"
    items = f"list_filter(string_split({text}, {sep}), lambda x: trim(x) <> '')"
    pairs = f"NOT contains({text}, '\"') AND list_bool_and(list_transform({items}, lambda x: strpos(x, {delim}) > 1))"
    entry = f"to_json(trim(split_part(x, {delim}, 1))) || ':' || to_json(trim(substr(x, strpos(x, {delim}) + 1)))"
    parsed = _object(f"list_transform({items}, lambda x: trim(split_part(x, {delim}, 1)))",
                     f"list_transform({items}, lambda x: {entry})")
    elements = "CAST(json_extract(Tags, '$[*]') AS VARCHAR[])"
    key, value = ("coalesce(json_extract_string(x, '$.key'), json_extract_string(x, '$.TagKey'))",
                  "coalesce(json_extract_string(x, '$.value'), json_extract_string(x, '$.TagValue'))")
    keyed = (f"json_type(Tags) = 'ARRAY' AND coalesce(list_bool_and(list_transform({elements}, lambda x: json_type(x) = 'OBJECT' "
             f"AND {key} IS NOT NULL)), true)")
    # Google's FOCUS view tells each element's source (x_type): ordered as its detailed export merges them, a later one
    # winning (system labels, Resource Manager tags keyed namespace/key, project labels, then the resource's labels)
    kind = "json_extract_string(x, '$.x_type')"
    sources = ("system_label", "tag", "project_label")
    ranked = f"list_filter({elements}, lambda x: coalesce({kind}, '') NOT IN {tuple(sources)})"  # labels, untyped: last
    for source in reversed(sources):
        ranked = f"list_concat(list_filter({elements}, lambda x: {kind} = {literal(source)}), {ranked})"
    ordered = f"CASE WHEN contains(Tags, '\"x_type\"') THEN {ranked} ELSE {elements} END"
    space = "json_extract_string(x, '$.x_namespace')"
    full_key = f"CASE WHEN {kind} = 'tag' AND coalesce({space}, 'n/a') NOT IN ('n/a', '') THEN {space} || '/' || {key} ELSE {key} END"
    from_array = _object(f"list_transform({ordered}, lambda x: {full_key})",
                         f"list_transform({ordered}, lambda x: to_json({full_key}) || ':' || coalesce(to_json({value}), 'null'))")
    # an array is tested only on text starting with '[' (after spaces), under a CASE: JSON functions raise on text that
    # is not JSON, and AND terms may be evaluated in any order
    array = "CASE WHEN starts_with(Tags, '{') THEN false ELSE starts_with(ltrim(Tags), '[') END"
    chain.replace({}, {
        "_tags_ok": f"coalesce(json_valid(Tags), false) AND NOT coalesce({array}, false)",
        "_tags_array": f"CASE WHEN coalesce({array}, false) AND coalesce(json_valid(Tags), false) THEN coalesce({keyed}, false) "
                       "ELSE false END",
    })
    chain.replace({"Tags": f"CASE WHEN _tags_array THEN CASE WHEN json_array_length(Tags) = 0 THEN '{{}}' ELSE {from_array} END "
                           f"WHEN _tags_ok THEN Tags WHEN coalesce({pairs}, false) THEN {parsed} END"},
                  {"_tag_code": "CASE WHEN _tags_array THEN 'TagsFromArray' WHEN _tags_ok THEN NULL "
                                f"WHEN coalesce({pairs}, false) THEN 'TagsFromText' ELSE 'InvalidTags' END"})
    if prefixes:
        _unprefixed(chain, prefixes)


def _object(keys: str, entries: str) -> str:
    """A JSON object's text from its ``"key":value`` ``entries``; a key given twice keeps its last value (FOCUS keys
    are unique; Google's label arrays and ``a=1;a=2`` text may repeat one). ``keys``: the entries' keys, in order."""
    unique = f"CASE WHEN len(list_distinct({keys})) = len({keys}) THEN {entries} " \
             f"ELSE list_filter({entries}, lambda e, i: NOT list_contains(({keys})[i + 1:], ({keys})[i])) END"
    return f"'{{' || array_to_string({unique}, ',') || '}}'"


def _unprefixed(chain: Chain, prefixes: tuple[str, ...]) -> None:
    """A provider's prefix of user-defined tag keys taken off (AWS's FOCUS export writes ``user:env``, its CUR ``env``:
    one key in the lake, whichever report brought it), flagged ``TagKeysUnprefixed``; an object that would then hold a
    key twice (``env`` and ``user:env``) stays as it is. Done on the text: in a valid JSON object a ``"`` right after
    ``{`` or ``,`` (and a space) opens a key (a quote inside a string is escaped), so no JSON is parsed but to check
    the keys of the rows that change."""
    found = " OR ".join(f"contains(Tags, {literal(chr(34) + p)})" for p in prefixes)
    short = "Tags"
    for p in prefixes:  # string replaces, far cheaper than a regular expression: the openings JSON writers use
        for opening in ('{"', '{ "', ',"', ', "'):
            short = f"replace({short}, {literal(opening + p)}, {literal(opening)})"
    chain.replace({}, {"_tag_short": f"CASE WHEN Tags IS NOT NULL AND ({found}) THEN {short} END"})
    chain.replace({}, {"_tag_keys": "CASE WHEN _tag_short <> Tags THEN json_keys(_tag_short) END"})
    chain.replace({}, {"_tag_prefixed": "coalesce(len(_tag_keys) = len(list_distinct(_tag_keys)), false)"})
    chain.replace({"Tags": "CASE WHEN _tag_prefixed THEN _tag_short ELSE Tags END",
                   "_tag_code": "CASE WHEN _tag_prefixed THEN concat_ws(',', _tag_code, 'TagKeysUnprefixed') ELSE _tag_code END"})


#: Codes :func:`spelling_codes` tells from the originals kept for x_SourceValues (again on re-normalization).
SPELLING_CODES = ("EnumerationCasing", "InclusivePeriodEnd")


def spelling_codes() -> str:
    """The codes of values only spelled otherwise than FOCUS does, told by comparing the originals kept for
    x_SourceValues with the results: ``EnumerationCasing`` (``usage-based``), ``InclusivePeriodEnd`` (``...:59:59``,
    Google's last day of the month)."""
    enums = [c.name for c in focus_columns().values() if c.allowed_values and c.name in TRACKED]
    casing = " OR ".join([*(f"({ident('_o_' + c)} <> {ident(c)} AND lower({ident('_o_' + c)}) = lower({ident(c)}))" for c in enums),
                          "(_o_BillingCurrency <> BillingCurrency AND upper(trim(_o_BillingCurrency)) = BillingCurrency)"])
    ends = " OR ".join(f"{ident('_o_' + c)} <> {ident(c)}" for c in ("ChargePeriodEnd", "BillingPeriodEnd"))
    return (f"CASE WHEN {casing} THEN {literal(SPELLING_CODES[0])} END, "
            f"CASE WHEN {ends} THEN {literal(SPELLING_CODES[1])} END")


def source_values_sql(columns: list[str]) -> str:
    """JSON object of the original value (as a string) of every column whose value changed (null-safe), or NULL.
    Built by string concatenation: far cheaper per row than lists of structs turned into a map."""
    entries = ", ".join(
        f"CASE WHEN {ident('_o_' + c)} IS DISTINCT FROM {ident(c)} THEN {literal(json.dumps(c) + ':')} || "
        f"coalesce(CAST(to_json(CAST({ident('_o_' + c)} AS VARCHAR)) AS VARCHAR), 'null') END" for c in columns
    )
    return f"'{{' || nullif(concat_ws(',', {entries}), '') || '}}'"


def extra_name(column: str) -> str:
    """Lake name of a column the mapping does not know: kept, with the x_ prefix FOCUS requires."""
    return column if column.startswith("x_") else f"x_{column}"


#: Builds a WHERE condition over the finished rows, given their column names and how to read a decimal column as DOUBLE.
Check = Callable[[list[str], Callable[[str], str]], str]


def closed_sets(lineage: Lineage) -> dict[str, tuple[str, ...]]:
    """Output columns whose values are known before the rows are read: FOCUS enumerations (after
    `_enumerations` an export's values are spelled as FOCUS does, unless they are unknown)
    and lineage given by the run."""
    out = {c.name: c.allowed_values for c in focus_columns().values() if c.allowed_values}
    given = {"x_SourceName": lineage.source_name, "x_SourceProvider": lineage.provider,
             "x_SourceType": lineage.source_type, "x_SourceVersion": lineage.version}
    out.update({name: (value,) for name, value in given.items() if value is not None})
    return out


def finish(chain: Chain, extras: list[str] = (), check: Check | None = None,
           closed: dict[str, tuple[str, ...]] | None = None, extra_types: dict[str, str] | None = None) -> Query:
    """Final projection: x_SourceChanges, x_SourceValues and the Costs columns in order, typed; ``check``:
    a condition on the finished rows (the pipeline's FOCUS checks, counted as rows are written).

    ``closed`` (:func:`closed_sets`): string columns emitted as DuckDB ENUMs of these values. The Parquet file is
    the same (UTF-8 strings, dictionary-encoded), but DuckDB writes an ENUM about ten times faster than a
    string it must look up in the column's dictionary. A value outside the set fails the query with a
    conversion error naming the ENUM (:class:`hub.convert.EnumMiss`); the caller then writes the part again
    without ``closed``. ``extra_types``: the DuckDB types of ``extras``; when given, the query's ``columns`` are
    known (:class:`transforms.sqlchain.Query`)."""
    tracked = list(TRACKED) + list(backfill.TRACKED)
    chain.replace({}, {
        "x_SourceChanges": f"nullif(concat_ws(',', _codes, {'_tag_code, ' if '_tag_code' in chain.cols else ''}_price_codes, "
                           f"{spelling_codes()}), '')",
        "x_SourceValues": source_values_sql(tracked),
    })
    known = {n for n, _ in output_columns()}
    names = [n for n, _ in output_columns()] + [extra_name(e) for e in extras if extra_name(e) not in known]
    closed = closed or {}
    types = {n: enum_type(closed[n]) if n in closed and t == "string" else SQL_TYPES[t] for n, t in output_columns()}
    final = ", ".join([f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in types.items()]
                      + [ident(n) for n in names[len(known):]])
    columns = None
    if extra_types is not None:  # as DuckDB describes them
        by_name = {extra_name(e): extra_types[e] for e in extras}
        columns = {n: DESCRIBED.get(t, t) for n, t in types.items()} | {n: by_name[n] for n in names[len(known):]}
    if check is None:
        return Query.of(chain.sql(final), columns)
    # each DOUBLE value once (a rule may use one twice): the check reads these columns
    chain.replace({}, {f"_chk_{c}": backfill.dbl(chain, c) for c in backfill.DOUBLES})
    # in a projection (not the WHERE clause) DuckDB computes the checks' shared parts once per row
    double = lambda col: ident(f"_chk_{col}") if col in backfill.DOUBLES else f"CAST({ident(col)} AS DOUBLE)"  # noqa: E731
    chain.replace({}, {"_checked": check(names, double)})
    return Query.of(chain.sql(final, "_checked"), columns)


def costs_sql(source: str, present: dict[str, str], lineage: Lineage, *, prices: str | None = None,
              lookups: bool = True, extras: list[str] = (), check: Check | None = None, closed: bool = False,
              tag_prefixes: tuple[str, ...] = (), savings: Mapping[str, str] | None = None) -> Query:
    """The FOCUS 1.0 normalization of a typed FocusCost relation ``source`` with columns ``present``.

    ``prices``: a relation of price-sheet keys (:func:`transforms.backfill.price_keys_sql`) to backfill
    missing list/contracted prices from; ``lookups``: the open-data tables are registered (hub.lookups);
    ``check``: see :func:`finish`; ``closed``: emit :func:`closed_sets` columns as ENUMs (see :func:`finish`);
    ``tag_prefixes``: the provider's prefixes of user-defined tag keys, taken off (:func:`_unprefixed`); ``savings``:
    the provider's savings rules (:func:`transforms.backfill.price_layer`).
    """
    chain = Chain(source)
    known = set(input_columns()) | set(RENAMES)
    markers = {ZERO_BILLED, FILLED, *(col for _, col in MARKER_CODES)}
    extras = [e for e in extras if e in present and e not in known and extra_name(e) not in known and e not in markers
              and not e.startswith(FILL_ORIGINAL)]
    _harmonize(chain, present, extras)
    _lineage(chain, lineage)
    _preview_to_1_0(chain)  # before the codes: a 1.0-preview refund of a commitment purchase is a purchase for them
    _codes(chain)
    _provider_and_quantities(chain, lineage)
    _bug_fixes(chain)
    _names_and_resources(chain, lookups, padded_ids=lineage.provider != "Microsoft")
    _tags_periods(chain)
    _tags(chain, tuple(tag_prefixes))
    backfill.price_layer(chain, prices, savings)
    return finish(chain, extras, check, closed_sets(lineage) if closed else None, {e: present[e] for e in extras})

