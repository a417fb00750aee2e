"""The price layer of the Costs normalization: list/contracted price backfill from the price sheet,
the ContractedCost consistency fix, and savings. Pure SQL building.

The same layer runs when costs are ingested (prices already in the lake) and when a month's prices
arrive after its costs (:func:`renormalize_sql` re-applies it to the lake's rows), so the result never
depends on arrival order. Prices are reduced to one row per key before the join, so the join cannot
change the number of cost rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from transforms.sqlchain import DEC, Chain, dec, div, empty, fraction, mul, nz, zero
from transforms.typing import DOUBLE_PREFIX, SQL_TYPES, ident, literal

#: Columns this layer may change (their originals go to x_SourceValues).
TRACKED = ("ContractedUnitPrice", "ListUnitPrice", "ContractedCost", "ListCost", "x_ContractedCostInUsd", "x_ListCostInUsd")
#: x_SourceChanges codes this layer adds (removed and recomputed on re-normalization).
CODES = (
    "ContractedUnitPriceFromPriceSheet", "ListUnitPriceFromPriceSheet", "ContractedUnitPriceFromEffectiveUnitPrice",
    "ListUnitPriceFromContractedUnitPrice", "ContractedCostBackfilled", "ListCostBackfilled", "ContractedCostCorrected",
    "NegativeUnitPriceNulled", "ContractedUnitPriceFromListUnitPrice", "ContractedUnitPriceFromContractedCost",
    "ListUnitPriceFromListCost",
)
#: Codes that mark a row whose prices the price sheet may still fill.
MISSING = ("MissingContractedUnitPrice", "MissingListUnitPrice")
#: A saving or discount smaller than this share of what it is saved on is rounding (a cost computed from its unit
#: price to 15 significant digits beside a delivered one), not a saving: relative, so that a meter priced 0.000016 keeps
#: its 25 % and its many small savings add up.
EPSILON = "1e-9"
#: The relative test is made only on differences under this (a larger one is a saving whatever its share: a decimal
#: comparison per row, the double-precision test on the few rows with tiny differences).
TINY = "0.0001"
#: ContractedCost is recomputed when it differs from ContractedUnitPrice x PricingQuantity by more than this (relative).
CORRECTION_TOLERANCE = "0.00001"
MONTH_OF_PATH = r"/(\d{4})/(\d{2})/"
#: Decimal columns this layer does double-precision arithmetic on: the typing step also parses them as DOUBLE
#: (``_dbl_<col>``), and ``_dv_<col>`` keeps the decimal that copy stands for (see :func:`dbl`).
DOUBLES = ("ContractedCost", "ContractedUnitPrice", "ListCost", "ListUnitPrice", "PricingQuantity", "x_EffectiveUnitPrice")
SHADOWED = "_dv_"


def cost_key() -> str:
    """Join key of a cost row: billing profile | charge month | meter | offer (EA only; MCA prices have none)."""
    # the UTC month from the epoch (strftime on a TIMESTAMPTZ goes through the ICU calendar: several times dearer)
    return ("lower(coalesce(x_BillingProfileId, '')) || '|' || strftime(make_timestamp(epoch_us(ChargePeriodStart)), '%Y-%m') "
            "|| '|' || lower(coalesce(x_SkuMeterId, '')) || '|' || CASE WHEN x_BillingAccountAgreement = 'EA' "
            "THEN lower(coalesce(x_SkuOfferId, '')) ELSE '' END")


def price_keys_sql(source: str) -> str:
    """One row per key from normalized Prices read with ``filename = true`` (the month comes from the
    ``Prices/<yyyy>/<mm>/`` folder): on-demand prices, lowest tier first (of the tiers with a price: a free first tier
    is what the first units cost, not the meter's price), then lowest price."""
    month = f"regexp_extract(filename, '{MONTH_OF_PATH}', 1) || '-' || regexp_extract(filename, '{MONTH_OF_PATH}', 2)"
    key = (f"lower(coalesce(x_BillingProfileId, '')) || '|' || {month} || '|' || lower(coalesce(x_SkuMeterId, '')) || '|' || "
           "CASE WHEN x_BillingAccountAgreement = 'EA' THEN lower(coalesce(x_SkuOfferId, '')) ELSE '' END")
    return (f"SELECT key, c, l, block, unit FROM (SELECT {key} AS key, ContractedUnitPrice AS c, ListUnitPrice AS l, "
            "x_PricingBlockSize AS block, PricingUnit AS unit, row_number() OVER (PARTITION BY key ORDER BY "
            "coalesce(ContractedUnitPrice, 0) = 0 AND coalesce(ListUnitPrice, 0) = 0, "
            "coalesce(x_SkuTier, 0), ContractedUnitPrice, ListUnitPrice) AS rn "
            f"FROM {source} WHERE x_SkuPriceType = 'Consumption') WHERE rn = 1")


def dbl(chain: Chain, col: str) -> str:
    """``col`` as DOUBLE: its copy parsed from the export's text (:func:`transforms.typing.exact_double`) while
    the column still holds the decimal that text stands for (a cheap comparison), else a cast (DECIMAL(38,18) ->
    DOUBLE costs ~100 ns a value). Both give the same double, so re-normalizing from the lake gives the same result."""
    if DOUBLE_PREFIX + col not in chain.cols:
        return f"CAST({ident(col)} AS DOUBLE)"
    copy = ident(DOUBLE_PREFIX + col)
    return (f"CASE WHEN {copy} IS NOT NULL AND {ident(col)} = {ident(SHADOWED + col)} THEN {copy} "
            f"ELSE CAST({ident(col)} AS DOUBLE) END")


def price_layer(chain: Chain, prices: str | None, savings: Mapping[str, str] | None = None) -> None:
    """Backfill, ContractedCost fix and savings on a chain holding normalized cost columns. ``savings``: a provider's
    rules (``savings`` in ``schemas/<provider>/focus.json``, SQL over the normalized row): ``none``, rows that save
    nothing whatever their list price (Google's commitment fees, which their covered usage offsets); ``notCommitment``,
    columns (comma-separated) holding the parts of a row's discount no commitment made (Google's promotion, free-tier
    and negotiated credits, in its EffectiveCost), left out of its commitment saving where the row has them."""
    savings = savings or {}
    # a Microsoft row whose 0 prices stand for missing ones (a FocusCost export writes 0 where it has no price: a
    # marketplace row without a meter too); of those, the rows with a meter look their price up in the sheet
    fillable = (f"coalesce(ProviderName = 'Microsoft' AND ({zero('ListUnitPrice')} OR {zero('ContractedUnitPrice')}) "
                f"AND {nz('x_EffectiveUnitPrice')} AND NOT coalesce(CommitmentDiscountCategory = 'Spend' AND "
                "CommitmentDiscountStatus = 'Unused', false), false)")
    selected = f"_zp AND NOT {empty('x_SkuMeterId')}"
    chain.replace({}, {"_zp": fillable})
    if prices:  # only rows the sheet may fill look a price up: the others probe with a NULL key (no key built)
        chain.replace({}, {"_sel": selected})
        chain.step("t.*, p.c AS _pc, p.l AS _pl, p.block AS _pb, p.unit AS _pu, "
                   "(p.key IS NOT NULL AND p.block IS NOT NULL AND (p.unit IS NULL OR t.PricingUnit IS NULL OR p.unit = t.PricingUnit)) "
                   "AS _found",
                   f"LEFT JOIN {prices} AS p ON p.key = CASE WHEN t._sel THEN {cost_key()} END",
                   ["_pc", "_pl", "_pb", "_pu", "_found"])
    else:
        chain.replace({}, {"_sel": selected, "_pc": f"CAST(NULL AS {DEC})", "_pl": f"CAST(NULL AS {DEC})",
                           "_pb": f"CAST(NULL AS {DEC})", "_pu": "CAST(NULL AS VARCHAR)", "_found": "false"})
    both_zero = f"({zero('EffectiveCost')} AND {zero('BilledCost')})"
    priced = "ChargeCategory IN ('Usage', 'Purchase')"  # unit prices stay null on Tax (and others) rows

    def keep(col: str, unit_price: bool) -> str:
        # a present value is kept unless it is a 0 the price sheet should fill; a missing one is always filled
        kept = f"({col} IS NOT NULL AND ({col} <> 0 OR NOT _zp OR {both_zero}))"
        return f"({kept} OR NOT {priced})" if unit_price else kept

    def from_sheet(p: str) -> str:  # price per cost block, in billing currency
        converted = dec(f"CAST({p} AS DOUBLE) * CAST(coalesce(x_BillingExchangeRate, 1) AS DOUBLE) * CAST(coalesce(x_PricingBlockSize, 1) "
                        "AS DOUBLE) / CAST(coalesce(nullif(_pb, 0), coalesce(x_PricingBlockSize, 1)) AS DOUBLE)")
        # same block, rate 1 and at most 15 significant digits: the double arithmetic and its 15-digit rounding give the
        # sheet price back exactly, so it is taken as it is (no printf per row)
        same = (f"coalesce(x_BillingExchangeRate, 1) = 1 AND coalesce(nullif(_pb, 0), coalesce(x_PricingBlockSize, 1)) "
                f"= coalesce(x_PricingBlockSize, 1) AND abs({p}) < 1000 AND {p} = round({p}, 12)")
        return f"CASE WHEN {same} THEN {p} ELSE {converted} END"

    def refund_sign(cost: str) -> str:
        # a correction that pays money back (BilledCost < 0) has costs of that sign, whatever the sign its quantity
        # was written with (Tencent writes a refund's quantity positive and leaves its Cost empty)
        return f"CASE WHEN ChargeClass = 'Correction' AND BilledCost < 0 THEN -abs({cost}) ELSE {cost} END"

    # a unit price is never negative: on a credit, tax or adjustment row (where FOCUS lets it be null) a negative one is
    # nulled (the amount stays in the cost columns)
    def negative(col: str) -> str:
        return f"NOT {priced} AND {col} < 0"

    # a delivered ContractedCost tells the negotiated price before the list price does (Google's standard export has
    # cost, not unit prices): taking the list price would make the fix below overwrite the negotiated cost
    def per_unit(cost: str) -> str:  # a delivered cost over the quantity, as a (never negative) unit price
        return f"CASE WHEN {nz(cost)} AND {nz('PricingQuantity')} THEN abs({div(cost, 'PricingQuantity')}) END"

    from_cost = per_unit("ContractedCost")
    # and a delivered ListCost the list price, before the contracted one stands in for it (AWS's FOCUS export may leave
    # both unit prices empty)
    from_list = per_unit("ListCost")
    chain.replace({
        "ContractedUnitPrice": f"CASE WHEN {negative('ContractedUnitPrice')} THEN NULL "
                               f"WHEN {keep('ContractedUnitPrice', True)} THEN ContractedUnitPrice "
                               f"WHEN _sel AND _found AND _pc IS NOT NULL THEN {from_sheet('_pc')} "
                               f"ELSE coalesce(x_EffectiveUnitPrice, {from_cost}, ListUnitPrice) END",
    }, {
        "_cup_src": f"CASE WHEN {negative('ContractedUnitPrice')} THEN 'NegativeUnitPriceNulled' "
                    f"WHEN {keep('ContractedUnitPrice', True)} THEN NULL WHEN _sel AND _found AND _pc IS NOT NULL "
                    "THEN 'ContractedUnitPriceFromPriceSheet' WHEN x_EffectiveUnitPrice IS NOT NULL "
                    f"THEN 'ContractedUnitPriceFromEffectiveUnitPrice' WHEN {from_cost} IS NOT NULL "
                    "THEN 'ContractedUnitPriceFromContractedCost' WHEN ListUnitPrice IS NOT NULL "
                    "THEN 'ContractedUnitPriceFromListUnitPrice' END",
    })
    chain.replace({
        "ListUnitPrice": f"CASE WHEN {negative('ListUnitPrice')} THEN NULL WHEN {keep('ListUnitPrice', True)} THEN ListUnitPrice "
                         f"WHEN _sel AND _found AND _pl IS NOT NULL THEN {from_sheet('_pl')} "
                         f"ELSE coalesce({from_list}, ContractedUnitPrice) END",
    }, {
        "_lup_src": f"CASE WHEN {negative('ListUnitPrice')} THEN CASE WHEN _o_ContractedUnitPrice < 0 THEN NULL "
                    "ELSE 'NegativeUnitPriceNulled' END "
                    f"WHEN {keep('ListUnitPrice', True)} THEN NULL WHEN _sel AND _found AND _pl IS NOT NULL "
                    f"THEN 'ListUnitPriceFromPriceSheet' WHEN {from_list} IS NOT NULL THEN 'ListUnitPriceFromListCost' "
                    "WHEN ContractedUnitPrice IS NOT NULL THEN 'ListUnitPriceFromContractedUnitPrice' END",
    })
    chain.replace({
        "ContractedCost": f"CASE WHEN {keep('ContractedCost', False)} THEN ContractedCost "
                          f"WHEN {nz('BilledCost')} AND ContractedUnitPrice = x_BilledUnitPrice THEN BilledCost "
                          f"WHEN {nz('EffectiveCost')} AND ContractedUnitPrice = x_EffectiveUnitPrice THEN EffectiveCost "
                          f"WHEN {nz('ContractedUnitPrice')} AND PricingQuantity IS NOT NULL THEN {refund_sign(mul('ContractedUnitPrice', 'PricingQuantity'))} "
                          # a prepaid purchase's EffectiveCost is 0 (amortized elsewhere): what it was contracted at is
                          # what was billed (Alibaba's FOCUS bill leaves its contracted cost and prices empty)
                          f"WHEN ChargeCategory = 'Purchase' AND {nz('BilledCost')} THEN BilledCost "
                          "ELSE coalesce(EffectiveCost, BilledCost) END",
    })
    # the product with the sign of the delivered cost (ContractedCost, else BilledCost): a negative row that is no
    # correction (Tencent's downgrade of a subscription refunds the difference, its quantity and prices positive) keeps
    # its sign, and only a magnitude that differs is corrected
    def signed(cost: str) -> str:  # with the sign of ContractedCost, else of BilledCost
        return f"CASE WHEN coalesce(nullif(sign(ContractedCost), 0), sign(BilledCost)) < 0 THEN -abs({cost}) ELSE {cost} END"

    product = signed(mul("ContractedUnitPrice", "PricingQuantity"))
    cc, cup, qty = dbl(chain, "ContractedCost"), dbl(chain, "ContractedUnitPrice"), dbl(chain, "PricingQuantity")
    fix = (f"ChargeClass IS NULL AND ContractedUnitPrice IS NOT NULL AND PricingQuantity IS NOT NULL "
           f"AND (ContractedCost IS NULL OR abs(abs({cc}) - abs({cup} * {qty})) > {CORRECTION_TOLERANCE} * greatest(1, abs({cc})))")
    chain.replace({}, {"_fixed": fix})
    chain.replace({"ContractedCost": f"CASE WHEN _fixed THEN {product} ELSE ContractedCost END"})
    # ListCost after the fix: one taken from ContractedCost takes the corrected one
    chain.replace({
        "ListCost": f"CASE WHEN {keep('ListCost', False)} THEN ListCost "
                    f"WHEN {nz('ContractedCost')} AND ListUnitPrice = ContractedUnitPrice THEN ContractedCost "
                    f"WHEN {nz('ListUnitPrice')} AND PricingQuantity IS NOT NULL THEN {signed(refund_sign(mul('ListUnitPrice', 'PricingQuantity')))} "
                    "ELSE coalesce(ContractedCost, BilledCost) END",
    })

    # a cost this layer changed changes in USD too (Microsoft's x_*InUsd columns, delivered 0 beside a missing price):
    # at the row's own billing-to-USD rate, read off its delivered effective or billed cost; NULL where the row tells no
    # rate (no cost in USD delivered); a USD column the source never filled stays NULL
    rate = ("CASE WHEN " + nz("EffectiveCost") + " AND " + nz("x_EffectiveCostInUsd") + " THEN "
            "CAST(x_EffectiveCostInUsd AS DOUBLE) / CAST(EffectiveCost AS DOUBLE) "
            "WHEN " + nz("BilledCost") + " AND " + nz("x_BilledCostInUsd") + " THEN "
            "CAST(x_BilledCostInUsd AS DOUBLE) / CAST(BilledCost AS DOUBLE) END")

    def in_usd(cost: str) -> str:
        usd = f"x_{cost}InUsd"
        return (f"CASE WHEN {usd} IS NULL OR {cost} IS NOT DISTINCT FROM _o_{cost} THEN {usd} WHEN BillingCurrency = 'USD' "
                f"THEN {cost} ELSE {dec(f'CAST({cost} AS DOUBLE) * ({rate})')} END")

    chain.replace({f"x_{c}InUsd": in_usd(c) for c in ("ContractedCost", "ListCost")})

    def rounding(diff: str, a_double: str) -> str:
        # a positive difference of at most a billionth of a: the relative test (in double precision: a DECIMAL product
        # would overflow) only where the exact difference is tiny, so most rows compare two decimals and no more
        return f"({diff} <= 0 OR ({diff} < {TINY} AND CAST({diff} AS DOUBLE) <= {EPSILON} * abs({a_double})))"

    def saving(a: str, b: str) -> str:
        # exact; a correction that pays money back takes its row's saving back (negative): a charge and its full
        # refund net to no saving
        back = f"ChargeClass = 'Correction' AND {a} < 0"
        a_double = f"CAST({a} AS DOUBLE)"
        return (f"CASE WHEN {zero(a)} THEN CAST(0 AS {DEC}) WHEN {back} THEN CASE WHEN {rounding(f'{b} - {a}', a_double)} "
                f"THEN CAST(0 AS {DEC}) ELSE CAST({a} - {b} AS {DEC}) END WHEN {rounding(f'{a} - {b}', a_double)} "
                f"THEN CAST(0 AS {DEC}) ELSE CAST({a} - {b} AS {DEC}) END")

    def percent(a: str, b: str) -> str:
        # the exact decimal difference over the DOUBLE of a (a difference of doubles would round first)
        return (f"CASE WHEN {zero(a)} OR {rounding(f'{a} - {b}', dbl(chain, a))} THEN CAST(0 AS {DEC}) "
                f"ELSE {fraction(f'{a} - {b}', dbl(chain, a))} END")

    codes = ", ".join([
        "_cup_src", "_lup_src",
        "CASE WHEN _o_ContractedCost IS DISTINCT FROM ContractedCost AND NOT coalesce(_fixed, false) THEN 'ContractedCostBackfilled' END",
        "CASE WHEN _o_ListCost IS DISTINCT FROM ListCost THEN 'ListCostBackfilled' END",
        "CASE WHEN coalesce(_fixed, false) THEN 'ContractedCostCorrected' END",
    ])
    # no saving on: a commitment's purchase (its "principal": EffectiveCost 0, its cost amortized onto the usage it
    # covers, which carries the saving; the FinOps toolkit's reports leave these rows out of their savings sums, a
    # lake's columns are summed as they are), a commitment's unused part (AWS's recurring fee rows: the used part's
    # saving is on the covered usage), credits, taxes and adjustments (no price was discounted); a commitment saving
    # only where a row names its commitment (a price backfilled from the list price is no commitment)
    # (a prepaid purchase whose EffectiveCost is 0, Alibaba's and Tencent's subscriptions, is a principal too: its list
    # price was not saved)
    none = ("((ChargeCategory = 'Purchase' AND (CommitmentDiscountCategory IS NOT NULL OR "
            f"({zero('EffectiveCost')} AND {nz('BilledCost')}))) OR CommitmentDiscountStatus = 'Unused' "
            "OR ChargeCategory IN ('Credit', 'Tax', 'Adjustment'))")
    if savings.get("none"):
        none = f"({none} OR coalesce({savings['none']}, false))"

    def unless(condition: str, expr: str) -> str:
        return f"CASE WHEN {condition} THEN CAST(0 AS {DEC}) ELSE {expr} END"

    # an actual-cost row without amortized data (legacy exports): covered usage costs 0 and its commitment's price is
    # on no row, so it shows no commitment saving (its whole on-demand cost is no saving)
    unamortized = "coalesce(_actual_only, false) AND CommitmentDiscountId IS NOT NULL" if "_actual_only" in chain.cols else "false"
    # what the row cost with its commitment's discount alone (a credit no commitment made taken back out)
    others = [c.strip() for c in (savings.get("notCommitment") or "").split(",") if c.strip() in chain.cols]
    committed = "(EffectiveCost" + "".join(f" - coalesce({ident(c)}, 0)" for c in others) + ")"
    chain.replace({}, {
        "x_CommitmentDiscountSavings": unless(f"{none} OR CommitmentDiscountId IS NULL OR {unamortized}",
                                              saving("ContractedCost", committed)),
        "x_NegotiatedDiscountSavings": unless(none, saving("ListCost", "ContractedCost")),
        "x_TotalSavings": unless(none, f"CASE WHEN {unamortized} THEN {saving('ListCost', 'ContractedCost')} "
                                       f"ELSE {saving('ListCost', 'EffectiveCost')} END"),
        "x_CommitmentDiscountPercent": unless(f"CommitmentDiscountId IS NULL OR {unamortized}",
                                              percent("ContractedUnitPrice", "x_EffectiveUnitPrice")),
        "x_NegotiatedDiscountPercent": percent("ListUnitPrice", "ContractedUnitPrice"),
        "x_TotalDiscountPercent": f"CASE WHEN {unamortized} THEN {percent('ListUnitPrice', 'ContractedUnitPrice')} "
                                  f"ELSE {percent('ListUnitPrice', 'x_EffectiveUnitPrice')} END",
        "_price_codes": f"nullif(concat_ws(',', {codes}), '')",
    })


def _original(col: str, typ: str) -> str:
    path = literal(f"$.{col}")
    return (f"CASE WHEN x_SourceValues IS NOT NULL AND json_exists(x_SourceValues, {path}) "
            f"THEN CAST(json_extract_string(x_SourceValues, {path}) AS {typ}) ELSE {ident(col)} END")


def restore_sql(chain: Chain, row_tracked: tuple[str, ...], types: dict[str, str], recomputed: tuple[str, ...] = ()) -> None:
    """For lake rows: put back the original prices, and the originals of row-rule columns as ``_o_*``,
    and the row-rule codes as ``_codes``, so the price layer and :func:`transforms.costs.finish` can run again.
    ``recomputed``: codes ``finish`` tells again from the originals (left out here, else a row would hold them twice)."""
    codes = ", ".join(literal(c) for c in (*CODES, *recomputed))
    chain.replace({c: _original(c, SQL_TYPES[types[c]]) for c in TRACKED}, {
        **{f"_o_{c}": _original(c, SQL_TYPES[types[c]]) for c in (*row_tracked, *TRACKED)},
        "_codes": f"nullif(array_to_string(list_filter(string_split(x_SourceChanges, ','), lambda c: c NOT IN ({codes})), ','), '')",
        # an actual-cost row without amortized data stays one (its savings): its marker is its code
        "_actual_only": "contains(coalesce(x_SourceChanges, ''), 'EffectiveCostFromActualCost')",
    })


def needs_prices_sql() -> str:
    """Predicate of lake rows a price sheet may improve: those whose prices were missing, filled or not (a newer sheet
    of the month replaces the one that filled them: the rows take its prices, whatever the arrival order)."""
    have = " OR ".join(f"contains(coalesce(x_SourceChanges, ''), {literal(c)})" for c in MISSING)
    return f"ProviderName = 'Microsoft' AND ({have})"  # the only rows the price layer fills
