"""A second shape of generated Cost Management data, made the way an independent generator would make it
(``bench/run.py --shape independent``): an EA FocusCost 1.0 export and the EA price sheet it was priced from.

How it differs from :mod:`hub.sample_data`'s (default) shape, all knobs of :class:`Shape`:

- **Missing prices.** ``backfill_percent`` (25) of the usage rows come without a list price, as real exports
  deliver them: both unit prices and both costs empty (4 in 10 of those rows), all four ``0`` (3 in 10), or only
  ListUnitPrice / ListCost ``0`` (3 in 10), always with ``x_EffectiveUnitPrice`` set and a meter that the price
  sheet has, so ``hub ingest`` backfills them from the sheet (``transforms.backfill.price_layer``).
- **A price sheet of realistic size.** ``meters`` (6,000) meters over 15 services and 20 regions, each for two
  EA offers (``MS-AZR-0017P`` production, ``MS-AZR-0148P`` dev/test at other compute prices; dev/test
  subscriptions' rows carry the dev/test offer), with 1 to 3 Consumption tiers (``IncludedQuantity`` 0 / 100 /
  1,000, the first tier dearest), ReservedInstance rows (P1Y, P3Y) for reservable meters and SavingsPlan rows
  (P1Y, P3Y) for compute meters: 33,406 rows.
- **Wider, more varied tags** (``wide_tags``): 2 to 16 keys a resource out of 16 (owners, cost centres,
  projects, creation dates, deployment GUIDs, an App Insights link holding an ARM id, repository URLs), ``": "``
  separators as the portal writes them, about 270 characters and one distinct value per resource.
- **More of everything distinct**: ``resources`` (60,000) resources in ``subscriptions`` (120) subscriptions and
  about 3,000 resource groups, up to 3 meters a resource (about 6,000 SkuIds and meters in the export).
- **Fixed-point numbers** (``fixed_decimals``): amounts and prices with 11 decimals, ConsumedQuantity with 15,
  trailing zeros kept (``0.00001500000``), as in real exports; the default shape writes the shortest form.

Everything is still a SQL expression of the row number and the seed over ``range()`` (no joins, so rows keep
the range's order), streamed to CSV by ``COPY``: memory stays flat and a million rows take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import duckdb

from hub import sample_data as sd

#: EA offers of the price sheet: production, then dev/test.
OFFERS = ("MS-AZR-0017P", "MS-AZR-0148P")
#: Dev/test prices of compute meters (no Windows licence) against production.
DEVTEST_COMPUTE = 0.6
#: Subscription kinds whose rows carry the dev/test offer.
DEVTEST_KINDS = ("Development", "Test", "Sandbox")
REGIONS = sd.REGIONS + (
    ("francecentral", "France Central", "FR Central"), ("germanywestcentral", "Germany West Central", "DE West Central"),
    ("swedencentral", "Sweden Central", "SE Central"), ("canadacentral", "Canada Central", "CA Central"),
    ("brazilsouth", "Brazil South", "BR South"), ("centralindia", "Central India", "IN Central"),
    ("koreacentral", "Korea Central", "KR Central"), ("southcentralus", "South Central US", "US South Central"),
    ("westus3", "West US 3", "US West 3"), ("switzerlandnorth", "Switzerland North", "CH North"),
)
REGION_WEIGHTS = (0, 0, 0, 1, 1, 2, 2, 3, 4, 4, 4, 5, 5, 6, 7, 8, 9, 10, 11, 11, 12, 13, 14, 15, 16, 17, 18, 19)
#: Meter name suffixes of a service's further meters (the first ones have the plain name).
VARIANTS = ("Spot", "Gen2", "Low Priority", "Premium", "v2", "Zone Redundant", "Burstable", "v3", "Dev/Test", "Isolated")
SAVINGS_PLAN_SERVICES = ("Virtual Machines", "Azure App Service", "Azure Kubernetes Service")
#: Savings-plan price against the contracted on-demand price, per term in months.
SP_FACTOR = {12: 0.78, 36: 0.58}
TIER_QUANTITY = (0, 100, 1000)
APPS = ("payments", "checkout", "catalog", "search", "identity", "billing", "ledger", "crm", "erp", "hr-portal", "intranet",
        "analytics", "datalake", "etl", "ml-training", "ml-serving", "recommendation", "notifications", "mobile-api",
        "web-frontend", "edge-cache", "observability", "logging", "backup", "dr-site", "devbox", "ci-agents", "artifact-store",
        "api-gateway", "partner-portal", "iot-ingest", "telemetry", "fraud-detection", "pricing-engine", "inventory",
        "shipping", "support-desk", "chatbot", "media-transcode", "document-store")
ENVIRONMENTS = ("prod", "dev", "test", "staging", "uat", "sandbox")
FIRST = ("anna", "ben", "carla", "deepak", "elena", "felix", "grace", "hiro", "ines", "jonas", "kofi", "lena", "marco",
         "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tariq")
LAST = ("schmidt", "okafor", "nguyen", "garcia", "kowalski", "johansson", "rossi", "tanaka", "silva", "murphy", "dubois",
        "haddad", "novak", "fischer", "kim", "larsen", "moreau", "patel", "weber", "yilmaz")
UNITS_OF_BUSINESS = ("Retail", "Corporate", "Logistics", "Finance", "Research & Development", "Marketing", "Operations")


@dataclass(frozen=True)
class Shape:
    """Knobs of the independent shape (each can be turned back towards the default shape to measure it alone)."""

    meters: int = 6000  # a multiple of 15 services x 20 regions
    resources: int = 60_000
    subscriptions: int = 120
    backfill_percent: int = 25  # usage rows without a list price (and some without a contracted one)
    wide_tags: bool = True  # False: the default shape's tags (3 to 5 short keys)
    fixed_decimals: bool = True  # False: numbers in their shortest form, as the default shape writes them

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``key=value,key=value`` (field names of this class) over the defaults."""
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = item.partition("=")
            if key not in types:
                raise ValueError(f"unknown shape option {key!r} (known: {', '.join(types)})")
            kwargs[key] = value.lower() in ("1", "true", "yes") if types[key] in (bool, "bool") else int(value)
        return cls(**kwargs)


def _connect(seed: int, shape: Shape) -> duckdb.DuckDBPyConnection:
    con = sd._connect(seed)  # the default shape's macros (rnd, guid, num, ts) and tables; ours replace its tables
    con.execute("CREATE MACRO fx11(x) AS CAST(CAST(x AS DECIMAL(38, 11)) AS VARCHAR)")
    con.execute("CREATE MACRO fx15(x) AS CAST(CAST(x AS DECIMAL(38, 15)) AS VARCHAR)")
    _dimensions(con, int(seed), shape)
    return con


def _variants(shape: Shape) -> int:
    per = len(sd.SERVICES) * len(REGIONS)
    if shape.meters % per or shape.meters < per:
        raise ValueError(f"meters must be a positive multiple of {per}")
    return shape.meters // per


def _dimensions(con: duckdb.DuckDBPyConnection, seed: int, shape: Shape) -> None:
    """``meters`` (the price sheet's meters, with their prices) and ``subs`` of this shape."""
    services = sd._structs([{f.name: getattr(s, f.name) for f in fields(s)} for s in sd.SERVICES])
    block = "CASE uom " + " ".join(f"WHEN {sd._lit(k)} THEN {b}" for k, (b, _) in sd.UNITS.items()) + " END"
    unit = "CASE uom " + " ".join(f"WHEN {sd._lit(k)} THEN {sd._lit(u)}" for k, (_, u) in sd.UNITS.items()) + " END"
    regions = sd._structs([{"id": a, "name": b, "meter": c} for a, b, c in REGIONS])
    n_svc, n_reg = len(sd.SERVICES), len(REGIONS)
    variant = "coalesce(' ' || variant, '')"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE meters AS
        WITH b AS (
            SELECT m, m // ({n_svc} * {n_reg}) AS v, ({services})[m % {n_svc} + 1] AS s,
                   ({regions})[(m // {n_svc}) % {n_reg} + 1] AS r, md5('imeter-{seed}-' || m) AS h,
                   md5('iri-{seed}-' || m) AS rh, rnd(m, 'price', 800) / 1000.0 AS pj, rnd(m, 'disc', 26) / 100.0 AS disc,
                   1 + rnd(m, 'tiers', 3) AS tiers
            FROM range({shape.meters}) t(m)
        ), c AS (
            SELECT *, s.meters[v % len(s.meters) + 1] AS mname, s.subcategories[v % len(s.subcategories) + 1] AS subcat,
                   s.units[(v + m // {n_svc}) % len(s.units) + 1] AS uom,
                   CASE WHEN v // len(s.meters) > 0 THEN {sd._lit(VARIANTS)}[(v // len(s.meters) - 1) % {len(VARIANTS)} + 1] END
                       AS variant
            FROM b
        ), d AS (
            SELECT *, {block} AS block, {unit} AS unit, coalesce(variant IN ('Spot', 'Low Priority'), false) AS spot FROM c
        ), p AS (
            SELECT *, CAST(round(s.unit_price * block * (0.6 + pj) * CASE WHEN spot THEN 0.3 ELSE 1 END, 6)
                           AS DECIMAL(18, 6)) AS list_price,
                   CASE WHEN s.family = 'Compute' THEN {DEVTEST_COMPUTE} ELSE 1 END AS devtest
            FROM d
        )
        SELECT m, s.name AS service, s.category, s.family, s.meter_category, s.display_type, s.arm_type, s.id_tail,
               s.resource_name, s.max_quantity, s.reservable AND NOT spot AS reservable,
               s.name IN {tuple(SAVINGS_PLAN_SERVICES)} AND NOT spot AS sp_eligible, s.credit_eligible, spot, tiers, devtest,
               r.id AS region_id, r.name AS region_name, r.meter AS meter_region, guid(h) AS meter_id,
               mname || {variant} AS meter_name, subcat || {variant} AS subcategory,
               s.meter_category || ' ' || subcat || ' - ' || mname || {variant} || ' - ' || r.meter AS description,
               NULLIF(replace(s.sku_details, '{{meter}}', replace(mname, ' ', '_')), '') AS sku_details,
               'DZH318Z0' || upper(substr(h, 26, 3)) || chr(CAST(65 + rnd(m, 'pl', 26) AS INTEGER)) AS product_id,
               '00' || upper(substr(h, 29, 2)) AS sku_code, 'AAA-' || CAST(10000 + rnd(m, 'pn', 90000) AS VARCHAR) AS part_number,
               uom, block, unit, CAST(1.0 / block AS DECIMAL(18, 4)) AS per_unit, list_price,
               CAST(round(list_price * CASE WHEN spot THEN 1 ELSE 1 - disc END, 6) AS DECIMAL(18, 6)) AS contracted_price,
               CASE WHEN m % 2 = 0 THEN 12 ELSE 36 END AS ri_term, guid(rh) AS ri_order_id,
               '/providers/Microsoft.Capacity/reservationOrders/' || guid(rh) || '/reservations/' || guid(md5(rh)) AS ri_id,
               'RI-' || lower(replace(s.meter_category, ' ', '')) || '-' || r.id || '-' || m AS ri_name
        FROM p
    """)
    terms = "".join(
        f", CAST(round(CAST(list_price AS DOUBLE) / block * {t * 730} * {f}, 6) AS DECIMAL(18, 6)) AS ri{t}_list"
        f", CAST(round(CAST(contracted_price AS DOUBLE) / block * {t * 730} * {f}, 6) AS DECIMAL(18, 6)) AS ri{t}_contracted"
        for t, f in sd.RI_FACTOR.items())
    factor = f"CASE ri_term WHEN 12 THEN {sd.RI_FACTOR[12]} ELSE {sd.RI_FACTOR[36]} END"
    dev = "CAST(round({} * devtest, 6) AS DECIMAL(18, 6))"
    con.execute(f"CREATE OR REPLACE TEMP TABLE meters AS SELECT *{terms}, "
                f"CAST(round(CAST(contracted_price AS DOUBLE) * {factor}, 6) AS DECIMAL(18, 6)) AS ri_unit_price, "
                f"{dev.format('list_price')} AS dev_list_price, {dev.format('contracted_price')} AS dev_contracted_price "
                "FROM meters")
    accounts = sd._structs([{"name": a, "owner": b, "dept": c, "dept_name": d} for a, b, c, d in sd.ACCOUNTS])
    kinds = sd.SUBSCRIPTION_KINDS
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE subs AS
        SELECT k, '/subscriptions/' || guid(md5('isub-{seed}-' || k)) AS sub_id,
               'Contoso ' || {sd._lit(kinds)}[k % {len(kinds)} + 1] || ' ' || lpad(CAST(k // {len(kinds)} + 1 AS VARCHAR), 3, '0')
                   AS sub_name,
               {sd._lit(kinds)}[k % {len(kinds)} + 1] IN {tuple(DEVTEST_KINDS)} AS devtest_offer,
               CAST(100000 + rnd(k % {len(sd.ACCOUNTS)}, 'acct', 900000) AS VARCHAR) AS account_id, a.name AS account_name,
               a.owner AS account_owner, a.dept, a.dept_name
        FROM (SELECT k, ({accounts})[k % {len(sd.ACCOUNTS)} + 1] AS a FROM range({shape.subscriptions}) t(k))
    """)
    con.execute("SET VARIABLE meter_pool = (SELECT list(t ORDER BY t.m) FROM meters t)")
    con.execute("SET VARIABLE sub_pool = (SELECT list(t ORDER BY t.k) FROM subs t)")


def _pick(values: tuple[str, ...], key: str, of: str = "res") -> str:
    return f"{sd._lit(values)}[rnd({of}, {sd._lit(key)}, {len(values)}) + 1]"


def _wide_tags() -> str:
    """A resource's tags: JSON with ``": "`` separators, 2 to 16 keys (each with its own probability)."""
    email = f"{_pick(FIRST, 'first')} || '.' || {_pick(LAST, 'last')} || '@contoso.com'"
    keys = [  # (key, value expression, percent of resources with it)
        ("environment", "env", 100),
        ("application", "app", 100),
        ("owner", email, 80),
        ("costCenter", "'CC-' || cc", 85),
        ("businessUnit", _pick(UNITS_OF_BUSINESS, "bu"), 60),
        ("project", "'PRJ-' || lpad(CAST(rnd(res, 'prj', 5000) AS VARCHAR), 5, '0')", 50),
        ("createdBy", "'svc-deploy-' || app || '@contoso.onmicrosoft.com'", 40),
        ("createdOn", "strftime(TIMESTAMP '2021-01-01' + to_seconds(rnd(res, 'created', 100000000)), '%Y-%m-%dT%H:%M:%SZ')", 45),
        ("dataClassification", _pick(("Public", "Internal", "Confidential", "Highly Confidential"), "dc"), 35),
        ("criticality", _pick(("Low", "Medium", "High", "Mission Critical"), "crit"), 35),
        ("supportTeam", "team || '-oncall@contoso.com'", 30),
        ("deploymentId", "guid(md5('dep-' || res))", 30),
        ("hidden-link: /app-insights-resource-id",
         "sub_id || '/resourceGroups/' || rg || '/providers/microsoft.insights/components/appi-' || app || '-' || env", 15),
        ("repository", "'https://dev.azure.com/contoso/' || app || '/_git/' || app || '-infra'", 25),
        ("Version", "'v' || CAST(1 + rnd(res, 'ver', 4) AS VARCHAR) || '.' || CAST(rnd(res, 'minor', 20) AS VARCHAR)", 20),
        ("ms-resource-usage", "'azure-cloud-shell'", 3),
    ]
    pair = "'\"{}\": \"' || {} || '\"'"
    items = ", ".join(pair.format(k, v) if p >= 100 else f"CASE WHEN rnd(res, 'tag-{k}', 100) < {p} THEN {pair.format(k, v)} END"
                      for k, v, p in keys)
    return f"CASE WHEN tk = 0 THEN NULL WHEN tk = 1 THEN '{{}}' ELSE '{{' || concat_ws(', ', {items}) || '}}' END"


def _narrow_tags() -> str:
    """The default shape's tags."""
    return ("CASE WHEN tk = 0 THEN NULL WHEN tk < 3 THEN '{}' "
            "ELSE '{\"env\":\"' || env || '\",\"team\":\"' || team || '\",\"cost-center\":\"' || cc || '\"' "
            "|| CASE WHEN tk % 4 = 0 THEN ',\"owner\":\"' || team || '-lead@contoso.com\"' ELSE '' END "
            "|| CASE WHEN tk % 5 = 0 THEN ',\"app\":\"' || team || '-' || CAST(res % 7 AS VARCHAR) || '\"' ELSE '' END "
            "|| '}' END")


def cost_query(lo: int, hi: int, *, month: str, billing_account_id: str, shape: Shape) -> str:
    """SELECT of FocusCost 1.0 rows ``lo`` (inclusive) to ``hi`` (exclusive) of this shape, every schema column in order."""
    start, end, days = sd._month(month)
    account = sd._lit(f"/providers/Microsoft.Billing/billingAccounts/{billing_account_id}")
    bid, contoso = sd._lit(billing_account_id), "'Contoso Ltd'"
    money = "fx11" if shape.fixed_decimals else "num"
    qty = "fx15" if shape.fixed_decimals else "num"
    per_ri = "CASE WHEN purchase THEN 'P' || CAST(ri_term // 12 AS VARCHAR) || 'Y' ELSE 'Consumption' END"
    # missing prices (miss): kind 0-3 all four empty, 4-6 all four 0, 7-9 only the list price and cost 0
    no_list = "miss"
    no_contracted = "miss AND bk < 7"
    empty = "miss AND bk < 4"

    zero = "'0.00000000000'" if shape.fixed_decimals else "'0'"

    def priced(value: str, missing: str) -> str:
        return f"CASE WHEN {missing} THEN CASE WHEN {empty} THEN NULL ELSE {zero} END ELSE {money}({value}) END"

    fill = {
        "BilledCost": f"{money}(billed)", "BillingAccountId": account, "BillingAccountName": contoso,
        "BillingAccountType": "'Billing Account'", "BillingCurrency": "'USD'",
        "BillingPeriodEnd": sd._lit(f"{end}T00:00:00Z"), "BillingPeriodStart": sd._lit(f"{start}T00:00:00Z"),
        "ChargeCategory": "CASE WHEN purchase THEN 'Purchase' ELSE 'Usage' END",
        "ChargeClass": "CASE WHEN correction THEN 'Correction' END",
        "ChargeDescription": "CASE WHEN purchase THEN 'Reservation purchase: ' || description || ', ' "
                             "|| CAST(ri_term // 12 AS VARCHAR) || ' year' ELSE description END",
        "ChargeFrequency": "CASE WHEN NOT purchase THEN 'Usage-Based' WHEN recurring THEN 'Recurring' ELSE 'One-Time' END",
        "ChargePeriodEnd": "ts(day + 1)", "ChargePeriodStart": "ts(day)",
        "CommitmentDiscountCategory": "CASE WHEN ri THEN 'Usage' END", "CommitmentDiscountId": "CASE WHEN ri THEN ri_id END",
        "CommitmentDiscountName": "CASE WHEN ri THEN ri_name END",
        "CommitmentDiscountStatus": "CASE WHEN committed THEN 'Used' END",
        "CommitmentDiscountType": "CASE WHEN ri THEN 'Reservation' END",
        "ConsumedQuantity": f"{qty}(consumed)", "ConsumedUnit": "CASE WHEN NOT purchase THEN unit END",
        "ContractedCost": priced("contracted_cost", no_contracted),
        "ContractedUnitPrice": priced("contracted_unit", no_contracted),
        "EffectiveCost": f"{money}(effective)", "InvoiceIssuerName": "'Microsoft'", "ListCost": priced("list_cost", no_list),
        "ListUnitPrice": priced("list_unit", no_list),
        "PricingCategory": "CASE WHEN ri THEN 'Committed' WHEN spot THEN 'Dynamic' ELSE 'Standard' END",
        "PricingQuantity": f"{money}(pricing_qty)", "PricingUnit": "CASE WHEN purchase THEN 'Hours' ELSE unit END",
        "ProviderName": "'Microsoft'", "PublisherName": "'Microsoft'", "RegionId": "region_id", "RegionName": "region_name",
        "ResourceId": "CASE WHEN NOT purchase THEN sub_id || '/resourceGroups/' || rg || '/providers/' "
                      "|| replace(id_tail, '{n}', rname) END",
        "ResourceName": "CASE WHEN NOT purchase THEN replace(resource_name, '{n}', rname) END",
        "ResourceType": "CASE WHEN NOT purchase THEN display_type END", "ServiceCategory": "category",
        "ServiceName": "service", "SkuId": "product_id", "SkuPriceId": f"product_id || '_' || sku_code || '_' || {per_ri}",
        "SubAccountId": "sub_id", "SubAccountName": "sub_name", "SubAccountType": "'Subscription'", "Tags": "tags",
        "x_AccountId": "account_id", "x_AccountName": "account_name", "x_AccountOwnerId": "account_owner",
        "x_BilledCostInUsd": f"{money}(billed)",
        "x_BilledUnitPrice": f"{money}(CASE WHEN committed THEN 0.0 ELSE contracted_unit END)",
        "x_BillingAccountId": bid, "x_BillingAccountName": contoso, "x_BillingExchangeRate": "'1'",
        "x_BillingExchangeRateDate": sd._lit(f"{start}T00:00:00Z"), "x_BillingProfileId": bid,
        "x_BillingProfileName": contoso, "x_ContractedCostInUsd": priced("contracted_cost", no_contracted),
        "x_CostCenter": "cost_center",
        "x_EffectiveCostInUsd": f"{money}(effective)", "x_EffectiveUnitPrice": f"{money}(effective_unit)",
        "x_InvoiceIssuerId": account, "x_InvoiceSectionId": "dept", "x_InvoiceSectionName": "dept_name",
        "x_ListCostInUsd": priced("list_cost", no_list),
        "x_PricingBlockSize": "CASE WHEN purchase THEN '1' ELSE CAST(block AS VARCHAR) END",
        "x_PricingCurrency": "'USD'",
        "x_PricingSubcategory": "CASE WHEN ri THEN 'Committed Usage' WHEN spot THEN 'Spot' ELSE 'Standard' END",
        "x_PricingUnitDescription": "CASE WHEN purchase THEN '1 Hour' ELSE uom END", "x_PublisherCategory": "'Cloud Provider'",
        "x_ResourceGroupName": "CASE WHEN NOT purchase THEN rg END",
        "x_ResourceType": "CASE WHEN NOT purchase THEN arm_type END",
        "x_ServicePeriodEnd": "ts(day + 1)", "x_ServicePeriodStart": "ts(day)", "x_SkuDescription": "description",
        "x_SkuDetails": "sku_details",
        "x_SkuIsCreditEligible": "CASE WHEN credit_eligible AND NOT purchase THEN 'true' ELSE 'false' END",
        "x_SkuMeterCategory": "meter_category", "x_SkuMeterId": "meter_id", "x_SkuMeterName": "meter_name",
        "x_SkuMeterSubcategory": "subcategory", "x_SkuOfferId": f"CASE WHEN devtest_offer THEN {sd._lit(OFFERS[1])} "
                                                               f"ELSE {sd._lit(OFFERS[0])} END",
        "x_SkuOrderId": "CASE WHEN ri THEN ri_order_id END", "x_SkuOrderName": "CASE WHEN ri THEN ri_name END",
        "x_SkuPartNumber": "part_number", "x_SkuRegion": "meter_region", "x_SkuServiceFamily": "family",
        "x_SkuTerm": "CASE WHEN ri THEN CAST(ri_term AS VARCHAR) END",
    }
    n_svc, n_reg, n_var = len(sd.SERVICES), len(REGIONS), _variants(shape)
    meter = f"rsvc + {n_svc} * (rreg + {n_reg} * ((rv + mj) % {n_var}))"
    ri_list = "CASE ri_term WHEN 12 THEN ri12_list ELSE ri36_list END"
    ri_contracted = "CASE ri_term WHEN 12 THEN ri12_contracted ELSE ri36_contracted END"
    per_payment = "CASE WHEN recurring THEN ri_term ELSE 1 END"
    dec = "DECIMAL(38, 11)"
    tags = _wide_tags() if shape.wide_tags else _narrow_tags()
    return f"""
        WITH g AS (
            SELECT i, rnd(i, 'res', {shape.resources}) AS res, DATE '{start}' + CAST(rnd(i, 'day', {days}) AS INTEGER) AS day,
                   rnd(i, 'kind', 1000) AS u, (rnd(i, 'qty', 1000000) + 1) / 1000000.0 AS qf, rnd(i, 'meter', 3) AS mj,
                   rnd(i, 'bf', 100) < {int(shape.backfill_percent)} AS bfr, rnd(i, 'bfk', 10) AS bk
            FROM range({lo}, {hi}) t(i)
        ), r AS (
            SELECT *, rnd(res, 'sub', {shape.subscriptions}) AS k,
                   {sd._lit(sd.SERVICE_WEIGHTS)}[rnd(res, 'svc', {len(sd.SERVICE_WEIGHTS)}) + 1] AS rsvc,
                   {sd._lit(REGION_WEIGHTS)}[rnd(res, 'reg', {len(REGION_WEIGHTS)}) + 1] AS rreg, rnd(res, 'var', {n_var}) AS rv,
                   rnd(res, 'tags', 20) AS tk, {_pick(ENVIRONMENTS, 'env')} AS env, {_pick(APPS, 'app')} AS app,
                   {_pick(sd.TEAMS, 'team')} AS team, CAST(1000 + rnd(res, 'cc', 9000) AS VARCHAR) AS cc,
                   rnd(res, 'ri', 4) = 0 AS covered, lpad(CAST(res AS VARCHAR), 5, '0') AS rn
            FROM g
        ), d AS (
            SELECT * EXCLUDE (k), getvariable('meter_pool')[{meter} + 1] AS mt, getvariable('sub_pool')[k + 1] AS st FROM r
        ), w AS (
            SELECT * EXCLUDE (mt, st), mt.*, st.* FROM d
        ), x AS (
            SELECT *, reservable AND u >= 997 AS purchase, u BETWEEN 990 AND 992 AS correction,
                   rnd(i, 'pay', 5) > 0 AS recurring, 'rg-' || app || '-' || env || '-' || region_id AS rg,
                   app || '-' || env || '-' || rn AS rname, CASE WHEN tk >= 3 THEN cc END AS cost_center
            FROM w
        ), y AS (
            SELECT *, {tags} AS tags FROM x
        ), q AS (
            SELECT *, NOT purchase AND covered AND reservable AS committed, purchase OR (covered AND reservable) AS ri,
                   bfr AND NOT purchase AS miss,
                   CASE WHEN NOT purchase THEN CAST(greatest(round(max_quantity * qf, 6), 0.000001) AS DECIMAL(18, 6))
                                               * CASE WHEN correction THEN -1 ELSE 1 END END AS consumed,
                   CASE WHEN devtest_offer THEN dev_list_price ELSE list_price END AS od_list,
                   CASE WHEN devtest_offer THEN dev_contracted_price ELSE contracted_price END AS od_contracted
            FROM y
        ), p AS (
            SELECT *,
                   CAST(CASE WHEN purchase THEN 1 + u % 3 ELSE CAST(consumed AS DECIMAL(38, 6)) * per_unit END
                        AS DECIMAL(18, 10)) AS pricing_qty,
                   CASE WHEN purchase THEN CAST({ri_list} / {per_payment} AS DECIMAL(18, 6)) ELSE od_list END AS list_unit,
                   CASE WHEN purchase THEN CAST({ri_contracted} / {per_payment} AS DECIMAL(18, 6)) ELSE od_contracted END
                       AS contracted_unit
            FROM q
        ), c AS (
            SELECT *, CAST(round(CAST(list_unit AS DECIMAL(38, 6)) * pricing_qty, 11) AS {dec}) AS list_cost,
                   CAST(round(CAST(contracted_unit AS DECIMAL(38, 6)) * pricing_qty, 11) AS {dec}) AS contracted_cost,
                   CASE WHEN purchase THEN 0 WHEN committed THEN ri_unit_price ELSE contracted_unit END AS effective_unit
            FROM p
        ), f AS (
            SELECT *, CASE WHEN committed THEN CAST(0 AS {dec}) ELSE contracted_cost END AS billed,
                   CASE WHEN purchase THEN CAST(0 AS {dec})
                        WHEN committed THEN CAST(round(CAST(effective_unit AS DECIMAL(38, 6)) * pricing_qty, 11) AS {dec})
                        ELSE contracted_cost END AS effective
            FROM c
        )
        SELECT {sd._select(sd.FOCUS_SCHEMA, fill)} FROM f
    """


def price_query(*, month: str, enrollment: str, lo: int | None = None, hi: int | None = None) -> str:
    """SELECT of this shape's EA price sheet (rows ``lo`` to ``hi``): per meter and offer, the Consumption tiers,
    then ReservedInstance and SavingsPlan rows."""
    start, end, _ = sd._month(month)
    offers = "(SELECT * FROM (VALUES " + ", ".join(f"({i}, {sd._lit(o)})" for i, o in enumerate(OFFERS)) + ") o(oi, offer))"
    dev = "CASE WHEN oi = 1 THEN devtest ELSE 1 END"
    slots = 3 + len(sd.RI_FACTOR) + len(SP_FACTOR)
    parts = [
        f"SELECT (m * {len(OFFERS)} + oi) * {slots} + tier AS n, 'Consumption' AS mtype, uom AS uom_, "
        f"CAST(round(contracted_price * {dev} * (1 + 0.08 * (tiers - 1 - tier)), 6) AS DECIMAL(18, 6)) AS price, "
        f"CAST(round(list_price * {dev} * (1 + 0.08 * (tiers - 1 - tier)), 6) AS DECIMAL(18, 6)) AS market, "
        f"{sd._lit(TIER_QUANTITY)}[tier + 1] AS included, CAST(NULL AS VARCHAR) AS term, 'Consumption' AS ptype, * "
        f"FROM meters, {offers}, range(3) t(tier) WHERE tier < tiers"]
    for j, t in enumerate(sd.RI_FACTOR):
        parts.append(f"SELECT (m * {len(OFFERS)} + oi) * {slots} + {3 + j} AS n, 'Reservation' AS mtype, '1 Hour' AS uom_, "
                     f"ri{t}_contracted AS price, ri{t}_list AS market, 0 AS included, 'P{t // 12}Y' AS term, "
                     f"'ReservedInstance' AS ptype, * FROM meters, {offers} WHERE reservable")
    for j, (t, f) in enumerate(SP_FACTOR.items()):
        parts.append(f"SELECT (m * {len(OFFERS)} + oi) * {slots} + {3 + len(sd.RI_FACTOR) + j} AS n, 'Consumption' AS mtype, "
                     f"uom AS uom_, CAST(round(contracted_price * {dev} * {f}, 6) AS DECIMAL(18, 6)) AS price, "
                     f"CAST(round(list_price * {dev}, 6) AS DECIMAL(18, 6)) AS market, 0 AS included, 'P{t // 12}Y' AS term, "
                     f"'SavingsPlan' AS ptype, * FROM meters, {offers} WHERE sp_eligible")
    fill = {
        "EnrollmentNumber": sd._lit(enrollment), "MeterID": "meter_id", "MeterName": "meter_name", "MeterType": "mtype",
        "MeterCategory": "meter_category", "MeterSubCategory": "subcategory", "ServiceFamily": "family",
        "Product": "description", "SkuID": "product_id || '/' || sku_code", "ProductID": "product_id",
        "MeterRegion": "meter_region", "UnitOfMeasure": "uom_", "PartNumber": "part_number",
        "EffectiveStartDate": sd._lit(f"{start}T00:00:00Z"), "EffectiveEndDate": sd._lit(f"{end}T00:00:00Z"),
        "UnitPrice": "num(price)", "BasePrice": "num(market)", "MarketPrice": "num(market)", "CurrencyCode": "'USD'",
        "IncludedQuantity": "CAST(included AS VARCHAR)", "OfferID": "offer", "Term": "term", "PriceType": "ptype",
    }
    where = f"WHERE rn >= {int(lo)} AND rn < {int(hi)}" if lo is not None and hi is not None else ""
    return f"""
        WITH sheet AS ({' UNION ALL BY NAME '.join(parts)}),
        numbered AS (SELECT row_number() OVER (ORDER BY n) - 1 AS rn, * FROM sheet)
        SELECT {sd._select(sd.PRICE_SHEET_SCHEMA, fill)} FROM numbered {where} ORDER BY rn
    """


def write_costs(path: str, lo: int, hi: int, *, month: str, seed: int, billing_account_id: str, gzip: bool,
                shape: Shape) -> int:
    con = _connect(seed, shape)
    try:
        return sd._copy(con, cost_query(lo, hi, month=month, billing_account_id=billing_account_id, shape=shape), path, gzip)
    finally:
        con.close()


def write_prices(path: str, *, month: str, seed: int, enrollment: str, gzip: bool, shape: Shape, lo: int | None = None,
                 hi: int | None = None) -> int:
    con = _connect(seed, shape)
    try:
        return sd._copy(con, price_query(month=month, enrollment=enrollment, lo=lo, hi=hi), path, gzip)
    finally:
        con.close()


def price_sheet_rows(seed: int, shape: Shape) -> int:
    con = _connect(seed, shape)
    try:
        row = con.execute(f"SELECT count(*) FROM ({price_query(month='2024-05', enrollment='0')})").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()
