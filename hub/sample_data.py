"""Realistic, deterministic Cost Management exports (FocusCost 1.0 and EA price sheets) generated with DuckDB.

Every value is a SQL expression of the row number and the seed (``hash()``-based pseudo-random numbers over
``range()``), streamed to CSV by ``COPY``: millions of rows take seconds and memory stays flat. Column lists
come from ``schemas/msexports/*.json``; columns this module does not fill are written as empty cells.
"""

from __future__ import annotations

import calendar
import json
import os
import posixpath
import tempfile
import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import fsspec

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "msexports"
FOCUS_SCHEMA = "focuscost_1.0.json"
PRICE_SHEET_SCHEMA = "pricesheet_2023-05-01_ea.json"
OFFER_ID = "MS-AZR-0017P"
N_METERS = 200
N_SUBSCRIPTIONS = 20
N_RESOURCES = 4000
#: Reserved usage costs this fraction of the contracted on-demand price, per term in months.
RI_FACTOR = {12: 0.62, 36: 0.41}
#: UnitOfMeasure -> (x_PricingBlockSize, PricingUnit), as in the open-data PricingUnits table.
UNITS: dict[str, tuple[int, str]] = {
    "1 Hour": (1, "Hours"), "10 Hours": (10, "Hours"), "100 Hours": (100, "Hours"), "1 GB": (1, "GB"),
    "1 GB/Month": (1, "GB/Month"), "10 GB/Month": (10, "GB/Month"), "100 GB/Month": (100, "GB/Month"),
    "10K": (10000, "Units"),
}


@dataclass(frozen=True)
class _Service:
    name: str
    category: str
    family: str  # price sheet ServiceFamily
    meter_category: str
    display_type: str  # FOCUS ResourceType
    arm_type: str  # x_ResourceType
    id_tail: str  # ResourceId after "/providers/"; "{n}" is the resource number
    resource_name: str
    subcategories: tuple[str, ...]
    meters: tuple[str, ...]
    units: tuple[str, ...]
    unit_price: float  # typical list price of one unit (not one block)
    max_quantity: int  # largest consumed quantity of one daily row
    reservable: bool = False
    credit_eligible: bool = True
    sku_details: str = ""


SERVICES: tuple[_Service, ...] = (
    _Service("Virtual Machines", "Compute", "Compute", "Virtual Machines", "Virtual machine",
             "microsoft.compute/virtualmachines", "Microsoft.Compute/virtualMachines/vm-{n}", "vm-{n}",
             ("Dsv5 Series", "Esv5 Series", "BS Series", "Fsv2 Series"),
             ("D4s v5", "E8s v5", "B2ms", "F4s v2", "D2s v5", "E4s v5"), ("1 Hour", "1 Hour", "100 Hours"), 0.19, 24,
             reservable=True, sku_details='{"ServiceType":"Standard_{meter}"}'),
    _Service("Storage Accounts", "Storage", "Storage", "Storage", "Storage account",
             "microsoft.storage/storageaccounts", "Microsoft.Storage/storageAccounts/stcontoso{n}", "stcontoso{n}",
             ("Tiered Block Blob", "General Block Blob v2", "Files v2"),
             ("Hot LRS Data Stored", "Cool LRS Data Stored", "Hot ZRS Data Stored", "Archive LRS Data Stored", "LRS Data Stored"),
             ("10 GB/Month", "1 GB/Month", "100 GB/Month"), 0.021, 400),
    _Service("Azure SQL Database", "Databases", "Databases", "SQL Database", "SQL database",
             "microsoft.sql/servers/databases", "Microsoft.Sql/servers/sql-{n}/databases/sqldb-{n}", "sqldb-{n}",
             ("General Purpose - Compute Gen5", "Business Critical - Compute Gen5", "Single Standard"),
             ("vCore", "8 vCore", "S2 DTUs"), ("1 Hour", "10 Hours"), 0.25, 24, reservable=True),
    _Service("Virtual Network", "Networking", "Networking", "Virtual Network", "Public IP address",
             "microsoft.network/publicipaddresses", "Microsoft.Network/publicIPAddresses/pip-{n}", "pip-{n}",
             ("IP Addresses", "Peering"), ("Standard IPv4 Static Public IP", "Intra-Region Ingress", "Intra-Region Egress"),
             ("1 Hour", "1 GB"), 0.005, 24),
    _Service("Load Balancer", "Networking", "Networking", "Load Balancer", "Load balancer",
             "microsoft.network/loadbalancers", "Microsoft.Network/loadBalancers/lbe-{n}", "lbe-{n}", ("Standard",),
             ("Standard Included LB Rules and Outbound Rules", "Standard Data Processed",
              "Standard Overage LB Rules and Outbound Rules"), ("1 Hour", "1 GB"), 0.025, 24),
    _Service("Azure App Service", "Web", "Compute", "Azure App Service", "App Service web app",
             "microsoft.web/sites", "Microsoft.Web/sites/app-{n}", "app-{n}", ("Premium v3 Plan", "Standard Plan", "Basic Plan"),
             ("P1 v3 App", "S1 App", "B2 App"), ("1 Hour",), 0.2, 24),
    _Service("Azure Kubernetes Service", "Compute", "Compute", "Azure Kubernetes Service", "Kubernetes service",
             "microsoft.containerservice/managedclusters", "Microsoft.ContainerService/managedClusters/aks-{n}", "aks-{n}",
             ("Standard",), ("Standard Uptime SLA", "Standard Long Term Support"), ("1 Hour", "10 Hours"), 0.1, 24),
    _Service("Cosmos DB", "Databases", "Databases", "Azure Cosmos DB", "Cosmos DB account",
             "microsoft.documentdb/databaseaccounts", "Microsoft.DocumentDB/databaseAccounts/cosmos-{n}", "cosmos-{n}",
             ("Azure Cosmos DB", "Azure Cosmos DB - Autoscale"), ("100 RU/s", "Data Stored"), ("100 Hours", "1 GB/Month"),
             0.008, 24, reservable=True),
    _Service("Key Vault", "Security", "Security", "Key Vault", "Key vault",
             "microsoft.keyvault/vaults", "Microsoft.KeyVault/vaults/kv-{n}", "kv-{n}", ("Standard", "Premium"),
             ("Operations", "Advanced Key Operations"), ("10K",), 0.000003, 200000),
    _Service("Azure Monitor", "Management and Governance", "Management and Governance", "Log Analytics",
             "Log Analytics workspace", "microsoft.operationalinsights/workspaces",
             "Microsoft.OperationalInsights/workspaces/log-{n}", "log-{n}", ("Analytics Logs", "Basic Logs"),
             ("Pay-as-you-go Data Ingestion", "Data Retention"), ("1 GB", "1 GB/Month"), 2.3, 4),
    _Service("Azure Data Factory", "Integration", "Analytics", "Azure Data Factory v2", "Data factory (V2)",
             "microsoft.datafactory/factories", "Microsoft.DataFactory/factories/adf-{n}", "adf-{n}",
             ("Cloud Orchestration", "Data Movement"), ("Cloud Data Movement", "Cloud Orchestration Activity Run"),
             ("1 Hour", "10 Hours"), 0.25, 10),
    _Service("Azure AI Services", "AI and Machine Learning", "AI + Machine Learning", "Cognitive Services", "Azure AI Foundry",
             "microsoft.cognitiveservices/accounts", "Microsoft.CognitiveServices/accounts/ai-{n}", "ai-{n}",
             ("Azure OpenAI", "Language"), ("gpt-4o-mini Input Tokens", "gpt-4o-mini Output Tokens", "Text Analytics Records"),
             ("10K",), 0.00002, 500000),
    _Service("Azure Cache for Redis", "Databases", "Databases", "Redis Cache", "Redis cache",
             "microsoft.cache/redis", "Microsoft.Cache/Redis/redis-{n}", "redis-{n}", ("Standard", "Premium"),
             ("C1 Cache Instance", "P1 Cache Instance"), ("1 Hour",), 0.1, 24, reservable=True),
    _Service("Event Hubs", "Integration", "Internet of Things", "Event Hubs", "Event Hubs namespace",
             "microsoft.eventhub/namespaces", "Microsoft.EventHub/namespaces/evhns-{n}", "evhns-{n}", ("Standard", "Premium"),
             ("Standard Throughput Unit", "Premium Processing Unit"), ("1 Hour",), 0.03, 24),
    _Service("Azure DB for PostgreSQL", "Databases", "Databases", "Azure Database for PostgreSQL",
             "Azure Database for PostgreSQL flexible server", "microsoft.dbforpostgresql/flexibleservers",
             "Microsoft.DBforPostgreSQL/flexibleServers/psql-{n}", "psql-{n}",
             ("Flexible Server General Purpose Dsv5 Series Compute",), ("vCore",), ("1 Hour",), 0.09, 24, reservable=True),
)
#: A resource's service index is drawn uniformly from this list (virtual machines and storage dominate).
SERVICE_WEIGHTS = (0,) * 7 + (1,) * 5 + (2,) * 3 + (3,) * 3 + (4, 5, 5, 6, 6, 7, 8, 9, 9, 10, 11, 12, 13, 14)
#: (RegionId, RegionName, meter region); a resource's region index is drawn from REGION_WEIGHTS.
REGIONS = (
    ("eastus", "East US", "US East"), ("eastus2", "East US 2", "US East 2"), ("westus2", "West US 2", "US West 2"),
    ("centralus", "Central US", "US Central"), ("westeurope", "West Europe", "EU West"),
    ("northeurope", "North Europe", "EU North"), ("uksouth", "UK South", "UK South"),
    ("southeastasia", "Southeast Asia", "AP Southeast"), ("australiaeast", "Australia East", "AU East"),
    ("japaneast", "Japan East", "JA East"),
)
REGION_WEIGHTS = (0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9)
#: EA enrollment accounts: (x_AccountName, x_AccountOwnerId, x_InvoiceSectionId, x_InvoiceSectionName).
ACCOUNTS = (
    ("IT Operations", "it-ops@contoso.com", "51234", "Engineering"),
    ("Data Platform", "data@contoso.com", "51234", "Engineering"),
    ("Digital", "digital@contoso.com", "51235", "Marketing"),
    ("Research", "research@contoso.com", "51236", "Research"),
)
SUBSCRIPTION_KINDS = ("Production", "Development", "Test", "Shared Services", "Sandbox")
ENVIRONMENTS = ("prod", "dev", "test", "staging")
TEAMS = ("data", "web", "platform", "ml", "finance", "security")


def _lit(value: object) -> str:
    """A SQL literal: strings quoted, tuples as lists, numbers and booleans as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def _structs(rows: list[dict[str, object]]) -> str:
    """A SQL list of structs."""
    return "[" + ", ".join("{" + ", ".join(f"{k}: {_lit(v)}" for k, v in row.items()) + "}" for row in rows) + "]"


def schema_columns(file: str) -> list[str]:
    """Column names, in order, of a schema file in ``schemas/msexports``."""
    data = json.loads((SCHEMAS / file).read_text(encoding="utf-8"))
    return [c["name"] for c in data["columns"]]


def _month(month: str) -> tuple[date, date, int]:
    """``YYYY-MM`` -> (first day, first day of the next month, number of days)."""
    start = datetime.strptime(month, "%Y-%m").date()
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days), days


def _connect(seed: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the generator's macros; ``rnd`` is seeded."""
    con = duckdb.connect(config={"preserve_insertion_order": True})
    con.execute("SET TimeZone = 'UTC'")
    # hash(x, seed, tag) of draws that differ only by tag share low bits; hashing again decorrelates them.
    con.execute(f"CREATE MACRO rnd(x, tag, n) AS CAST(hash(hash(x, {int(seed)}, tag)) % n AS BIGINT)")
    con.execute("CREATE MACRO guid(h) AS substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' "
                "|| substr(h, 17, 4) || '-' || substr(h, 21, 12)")
    con.execute("CREATE MACRO num(x) AS rtrim(rtrim(CAST(x AS VARCHAR), '0'), '.')")  # decimals without trailing zeros
    con.execute("CREATE MACRO ts(d) AS strftime(d, '%Y-%m-%dT%H:%M:%SZ')")
    _dimensions(con, int(seed))
    return con


def _dimensions(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """The meter pool (``meters``, also the price sheet) and subscriptions (``subs``)."""
    services = _structs([{f.name: getattr(s, f.name) for f in fields(s)} for s in SERVICES])
    block = "CASE uom " + " ".join(f"WHEN {_lit(k)} THEN {b}" for k, (b, _) in UNITS.items()) + " END"
    unit = "CASE uom " + " ".join(f"WHEN {_lit(k)} THEN {_lit(u)}" for k, (_, u) in UNITS.items()) + " END"
    regions = _structs([{"id": a, "name": b, "meter": c} for a, b, c in REGIONS])
    n_svc = len(SERVICES)
    spot = "CASE WHEN spot THEN ' Spot' ELSE '' END"
    con.execute(f"""
        CREATE TEMP TABLE meters AS
        WITH b AS (
            SELECT m, m // {n_svc} AS v, m % {n_svc} = 0 AND m // {n_svc} >= 10 AS spot,
                   ({services})[m % {n_svc} + 1] AS s, ({regions})[(m // {n_svc}) % {len(REGIONS)} + 1] AS r,
                   md5('meter-{seed}-' || m) AS h, md5('ri-{seed}-' || m) AS rh,
                   rnd(m, 'price', 800) / 1000.0 AS pj, rnd(m, 'disc', 21) / 100.0 AS disc
            FROM range({N_METERS}) t(m)
        ), c AS (
            SELECT *, s.meters[v % len(s.meters) + 1] AS mname, s.subcategories[v % len(s.subcategories) + 1] AS subcat,
                   s.units[v % len(s.units) + 1] AS uom
            FROM b
        ), d AS (
            SELECT *, {block} AS block, {unit} AS unit FROM c
        ), p AS (
            SELECT *, CAST(round(s.unit_price * block * (0.6 + pj) * CASE WHEN spot THEN 0.3 ELSE 1 END, 6)
                           AS DECIMAL(18, 6)) AS list_price
            FROM d
        )
        SELECT m, s.name AS service, s.category, s.family, s.meter_category, s.display_type, s.arm_type, s.id_tail,
               s.resource_name, s.max_quantity, s.reservable AND NOT spot AS reservable, s.credit_eligible, spot,
               r.id AS region_id, r.name AS region_name, r.meter AS meter_region, guid(h) AS meter_id,
               mname || {spot} AS meter_name, subcat || {spot} AS subcategory,
               s.meter_category || ' ' || subcat || ' - ' || mname || {spot} || ' - ' || r.meter AS description,
               NULLIF(replace(s.sku_details, '{{meter}}', replace(mname, ' ', '_')), '') AS sku_details,
               'DZH318Z0' || upper(substr(h, 30, 3)) || chr(CAST(65 + rnd(m, 'pl', 26) AS INTEGER)) AS product_id,
               '00' || upper(substr(h, 27, 2)) AS sku_code, 'AAA-' || CAST(10000 + rnd(m, 'pn', 90000) AS VARCHAR) AS part_number,
               uom, block, unit, CAST(1.0 / block AS DECIMAL(18, 4)) AS per_unit, list_price,
               CAST(round(list_price * CASE WHEN spot THEN 1 ELSE 1 - disc END, 6) AS DECIMAL(18, 6)) AS contracted_price,
               CASE WHEN m % 2 = 0 THEN 12 ELSE 36 END AS ri_term, guid(rh) AS ri_order_id,
               '/providers/Microsoft.Capacity/reservationOrders/' || guid(rh) || '/reservations/' || guid(md5(rh)) AS ri_id,
               'RI-' || lower(replace(s.meter_category, ' ', '')) || '-' || r.id || '-' || m AS ri_name
        FROM p
    """)
    # Reservation prices: the whole term of one instance (UnitOfMeasure "1 Hour"), and the amortized price per block.
    terms = "".join(
        f", CAST(round(CAST(list_price AS DOUBLE) / block * {t * 730} * {f}, 6) AS DECIMAL(18, 6)) AS ri{t}_list"
        f", CAST(round(CAST(contracted_price AS DOUBLE) / block * {t * 730} * {f}, 6) AS DECIMAL(18, 6)) AS ri{t}_contracted"
        for t, f in RI_FACTOR.items())
    factor = f"CASE ri_term WHEN 12 THEN {RI_FACTOR[12]} ELSE {RI_FACTOR[36]} END"
    con.execute(f"CREATE OR REPLACE TEMP TABLE meters AS SELECT *{terms}, "
                f"CAST(round(CAST(contracted_price AS DOUBLE) * {factor}, 6) AS DECIMAL(18, 6)) AS ri_unit_price FROM meters")
    accounts = _structs([{"name": a, "owner": b, "dept": c, "dept_name": d} for a, b, c, d in ACCOUNTS])
    con.execute(f"""
        CREATE TEMP TABLE subs AS
        SELECT k, '/subscriptions/' || guid(md5('sub-{seed}-' || k)) AS sub_id,
               'Contoso ' || {_lit(SUBSCRIPTION_KINDS)}[k % {len(SUBSCRIPTION_KINDS)} + 1] || ' '
                   || lpad(CAST(k // {len(SUBSCRIPTION_KINDS)} + 1 AS VARCHAR), 2, '0') AS sub_name,
               CAST(100000 + rnd(k % {len(ACCOUNTS)}, 'acct', 900000) AS VARCHAR) AS account_id, a.name AS account_name,
               a.owner AS account_owner, a.dept, a.dept_name
        FROM (SELECT k, ({accounts})[k % {len(ACCOUNTS)} + 1] AS a FROM range({N_SUBSCRIPTIONS}) t(k))
    """)
    # Rows look their meter and subscription up in constant lists (no join, so row order is the range's order).
    con.execute("SET VARIABLE meter_pool = (SELECT list(t ORDER BY t.m) FROM meters t)")
    con.execute("SET VARIABLE sub_pool = (SELECT list(t ORDER BY t.k) FROM subs t)")


def _select(schema: str, fill: dict[str, str]) -> str:
    """The SELECT list of a schema: filled columns from ``fill``, the others NULL (empty cells)."""
    return ", ".join(f"{fill.get(c, 'NULL')} AS \"{c}\"" for c in schema_columns(schema))


def _cost_query(lo: int, hi: int, *, month: str, billing_account_id: str) -> str:
    """SELECT of FocusCost 1.0 rows ``lo`` (inclusive) to ``hi`` (exclusive), every schema column in order."""
    start, end, days = _month(month)
    account = _lit(f"/providers/Microsoft.Billing/billingAccounts/{billing_account_id}")
    bid, contoso = _lit(billing_account_id), "'Contoso Ltd'"
    per_ri = "CASE WHEN purchase THEN 'P' || CAST(ri_term // 12 AS VARCHAR) || 'Y' ELSE 'Consumption' END"
    fill = {
        "BilledCost": "num(billed)", "BillingAccountId": account, "BillingAccountName": contoso,
        "BillingAccountType": "'Billing Account'", "BillingCurrency": "'USD'",
        "BillingPeriodEnd": _lit(f"{end}T00:00:00Z"), "BillingPeriodStart": _lit(f"{start}T00:00:00Z"),
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
        "ConsumedQuantity": "num(consumed)", "ConsumedUnit": "CASE WHEN NOT purchase THEN unit END",
        "ContractedCost": "num(contracted_cost)", "ContractedUnitPrice": "num(contracted_unit)",
        "EffectiveCost": "num(effective)", "InvoiceIssuerName": "'Microsoft'", "ListCost": "num(list_cost)",
        "ListUnitPrice": "num(list_unit)",
        "PricingCategory": "CASE WHEN ri THEN 'Committed' WHEN spot THEN 'Dynamic' ELSE 'Standard' END",
        "PricingQuantity": "num(pricing_qty)", "PricingUnit": "CASE WHEN purchase THEN 'Hours' ELSE unit END",
        "ProviderName": "'Microsoft'", "PublisherName": "'Microsoft'", "RegionId": "region_id", "RegionName": "region_name",
        "ResourceId": "CASE WHEN NOT purchase THEN sub_id || '/resourceGroups/' || rg || '/providers/' "
                      "|| replace(id_tail, '{n}', rn) END",
        "ResourceName": "CASE WHEN NOT purchase THEN replace(resource_name, '{n}', rn) END",
        "ResourceType": "CASE WHEN NOT purchase THEN display_type END", "ServiceCategory": "category",
        "ServiceName": "service", "SkuId": "product_id", "SkuPriceId": f"product_id || '_' || sku_code || '_' || {per_ri}",
        "SubAccountId": "sub_id", "SubAccountName": "sub_name", "SubAccountType": "'Subscription'", "Tags": "tags",
        "x_AccountId": "account_id", "x_AccountName": "account_name", "x_AccountOwnerId": "account_owner",
        "x_BilledCostInUsd": "num(billed)", "x_BilledUnitPrice": "num(CASE WHEN committed THEN 0.0 ELSE contracted_unit END)",
        "x_BillingAccountId": bid, "x_BillingAccountName": contoso, "x_BillingExchangeRate": "'1'",
        "x_BillingExchangeRateDate": _lit(f"{start}T00:00:00Z"), "x_BillingProfileId": bid,
        "x_BillingProfileName": contoso, "x_ContractedCostInUsd": "num(contracted_cost)", "x_CostCenter": "cost_center",
        "x_EffectiveCostInUsd": "num(effective)", "x_EffectiveUnitPrice": "num(effective_unit)",
        "x_InvoiceIssuerId": account, "x_InvoiceSectionId": "dept", "x_InvoiceSectionName": "dept_name",
        "x_ListCostInUsd": "num(list_cost)", "x_PricingBlockSize": "CASE WHEN purchase THEN '1' ELSE CAST(block AS VARCHAR) END",
        "x_PricingCurrency": "'USD'",
        "x_PricingSubcategory": "CASE WHEN ri THEN 'Committed Usage' WHEN spot THEN 'Spot' ELSE 'Standard' END",
        "x_PricingUnitDescription": "CASE WHEN purchase THEN '1 Hour' ELSE uom END", "x_PublisherCategory": "'Cloud Provider'",
        "x_ResourceGroupName": "CASE WHEN NOT purchase THEN rg END",
        "x_ResourceType": "CASE WHEN NOT purchase THEN arm_type END",
        "x_ServicePeriodEnd": "ts(day + 1)", "x_ServicePeriodStart": "ts(day)", "x_SkuDescription": "description",
        "x_SkuDetails": "sku_details",
        "x_SkuIsCreditEligible": "CASE WHEN credit_eligible AND NOT purchase THEN 'true' ELSE 'false' END",
        "x_SkuMeterCategory": "meter_category", "x_SkuMeterId": "meter_id", "x_SkuMeterName": "meter_name",
        "x_SkuMeterSubcategory": "subcategory", "x_SkuOfferId": _lit(OFFER_ID),
        "x_SkuOrderId": "CASE WHEN ri THEN ri_order_id END", "x_SkuOrderName": "CASE WHEN ri THEN ri_name END",
        "x_SkuPartNumber": "part_number", "x_SkuRegion": "meter_region", "x_SkuServiceFamily": "family",
        "x_SkuTerm": "CASE WHEN ri THEN CAST(ri_term AS VARCHAR) END",
    }
    n_svc, n_reg = len(SERVICES), len(REGIONS)
    meter = f"rsvc + {n_svc} * (rreg + {n_reg} * mj)"
    ri_list = "CASE ri_term WHEN 12 THEN ri12_list ELSE ri36_list END"
    ri_contracted = "CASE ri_term WHEN 12 THEN ri12_contracted ELSE ri36_contracted END"
    per_payment = "CASE WHEN recurring THEN ri_term ELSE 1 END"
    dec = "DECIMAL(24, 10)"
    return f"""
        WITH g AS (
            SELECT i, rnd(i, 'res', {N_RESOURCES}) AS res, DATE '{start}' + CAST(rnd(i, 'day', {days}) AS INTEGER) AS day,
                   rnd(i, 'kind', 1000) AS u, (rnd(i, 'qty', 1000000) + 1) / 1000000.0 AS qf, rnd(i, 'meter', 2) AS mj
            FROM range({lo}, {hi}) t(i)
        ), r AS (
            SELECT *, rnd(res, 'sub', {N_SUBSCRIPTIONS}) AS k,
                   {_lit(SERVICE_WEIGHTS)}[rnd(res, 'svc', {len(SERVICE_WEIGHTS)}) + 1] AS rsvc,
                   {_lit(REGION_WEIGHTS)}[rnd(res, 'reg', {len(REGION_WEIGHTS)}) + 1] AS rreg,
                   rnd(res, 'tags', 20) AS tk, {_lit(ENVIRONMENTS)}[rnd(res, 'env', {len(ENVIRONMENTS)}) + 1] AS env,
                   {_lit(TEAMS)}[rnd(res, 'team', {len(TEAMS)}) + 1] AS team,
                   CAST(1000 + rnd(res, 'cc', 9000) AS VARCHAR) AS cc, rnd(res, 'ri', 3) = 0 AS covered,
                   lpad(CAST(res AS VARCHAR), 4, '0') AS rn
            FROM g
        ), j AS (
            SELECT *, CASE WHEN {meter} < {N_METERS} THEN {meter} ELSE rsvc + {n_svc} * rreg END AS m FROM r
        ), d AS (
            SELECT * EXCLUDE (m, k), getvariable('meter_pool')[m + 1] AS mt, getvariable('sub_pool')[k + 1] AS st FROM j
        ), w AS (
            SELECT * EXCLUDE (mt, st), mt.*, st.* FROM d
        ), x AS (
            SELECT *, reservable AND u >= 997 AS purchase, u BETWEEN 990 AND 992 AS correction,
                   rnd(i, 'pay', 5) > 0 AS recurring, 'rg-' || team || '-' || env AS rg,
                   CASE WHEN tk >= 3 THEN cc END AS cost_center,
                   CASE WHEN tk = 0 THEN NULL WHEN tk < 3 THEN '{{}}'
                        ELSE '{{"env":"' || env || '","team":"' || team || '","cost-center":"' || cc || '"'
                             || CASE WHEN tk % 4 = 0 THEN ',"owner":"' || team || '-lead@contoso.com"' ELSE '' END
                             || CASE WHEN tk % 5 = 0 THEN ',"app":"' || team || '-' || CAST(res % 7 AS VARCHAR) || '"' ELSE '' END
                             || '}}' END AS tags
            FROM w
        ), q AS (
            SELECT *, NOT purchase AND covered AND reservable AS committed, purchase OR (covered AND reservable) AS ri,
                   CASE WHEN NOT purchase THEN CAST(greatest(round(max_quantity * qf, 4), 0.0001) AS DECIMAL(18, 4))
                                               * CASE WHEN correction THEN -1 ELSE 1 END END AS consumed
            FROM x
        ), p AS (
            SELECT *,
                   CAST(CASE WHEN purchase THEN 1 + u % 3 ELSE CAST(consumed AS DECIMAL(38, 4)) * per_unit END
                        AS DECIMAL(18, 8)) AS pricing_qty,
                   CASE WHEN purchase THEN CAST({ri_list} / {per_payment} AS DECIMAL(18, 6)) ELSE list_price END AS list_unit,
                   CASE WHEN purchase THEN CAST({ri_contracted} / {per_payment} AS DECIMAL(18, 6))
                        ELSE contracted_price END AS contracted_unit
            FROM q
        ), c AS (
            SELECT *, CAST(round(CAST(list_unit AS DECIMAL(38, 6)) * pricing_qty, 10) AS {dec}) AS list_cost,
                   CAST(round(CAST(contracted_unit AS DECIMAL(38, 6)) * pricing_qty, 10) AS {dec}) AS contracted_cost,
                   CASE WHEN purchase THEN 0 WHEN committed THEN ri_unit_price ELSE contracted_unit END AS effective_unit
            FROM p
        ), f AS (
            SELECT *, CASE WHEN committed THEN CAST(0 AS {dec}) ELSE contracted_cost END AS billed,
                   CASE WHEN purchase THEN CAST(0 AS {dec})
                        WHEN committed THEN CAST(round(CAST(effective_unit AS DECIMAL(38, 6)) * pricing_qty, 10) AS {dec})
                        ELSE contracted_cost END AS effective
            FROM c
        )
        SELECT {_select(FOCUS_SCHEMA, fill)} FROM f
    """


def _price_query(*, month: str, enrollment: str, lo: int | None = None, hi: int | None = None) -> str:
    """SELECT of the EA price sheet (rows ``lo`` to ``hi``): a Consumption row per meter, then reservation rows."""
    start, end, _ = _month(month)
    reservations = " ".join(
        f"UNION ALL SELECT {N_METERS * (n + 1)} + m AS n, 'Reservation' AS mtype, '1 Hour' AS uom_, ri{t}_contracted AS price, "
        f"ri{t}_list AS market, 'P{t // 12}Y' AS term, 'ReservedInstance' AS ptype, * FROM meters WHERE reservable"
        for n, t in enumerate(RI_FACTOR))
    fill = {
        "EnrollmentNumber": _lit(enrollment), "MeterID": "meter_id", "MeterName": "meter_name", "MeterType": "mtype",
        "MeterCategory": "meter_category", "MeterSubCategory": "subcategory", "ServiceFamily": "family",
        "Product": "description", "SkuID": "product_id || '/' || sku_code", "ProductID": "product_id",
        "MeterRegion": "meter_region", "UnitOfMeasure": "uom_", "PartNumber": "part_number",
        "EffectiveStartDate": _lit(f"{start}T00:00:00Z"), "EffectiveEndDate": _lit(f"{end}T00:00:00Z"),
        "UnitPrice": "num(price)", "BasePrice": "num(price)", "MarketPrice": "num(market)", "CurrencyCode": "'USD'",
        "IncludedQuantity": "'0'", "OfferID": _lit(OFFER_ID), "Term": "term", "PriceType": "ptype",
    }
    where = f"WHERE rn >= {int(lo)} AND rn < {int(hi)}" if lo is not None and hi is not None else ""
    return f"""
        WITH sheet AS (
            SELECT m AS n, 'Consumption' AS mtype, uom AS uom_, contracted_price AS price, list_price AS market,
                   CAST(NULL AS VARCHAR) AS term, 'Consumption' AS ptype, * FROM meters
            {reservations}
        ), numbered AS (SELECT row_number() OVER (ORDER BY n) - 1 AS rn, * FROM sheet)
        SELECT {_select(PRICE_SHEET_SCHEMA, fill)} FROM numbered {where} ORDER BY rn
    """


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: str, gzip: bool) -> int:
    """Stream a query to a local CSV (header, quoted as needed, UTF-8); returns the row count."""
    options = "FORMAT csv, HEADER true" + (", COMPRESSION gzip" if gzip else ", COMPRESSION none")
    row = con.execute(f"COPY ({query}) TO {_lit(path)} ({options})").fetchone()
    return int(row[0]) if row else 0


def _write_costs(path: str, lo: int, hi: int, *, month: str, seed: int, billing_account_id: str, gzip: bool) -> int:
    con = _connect(seed)
    try:
        return _copy(con, _cost_query(lo, hi, month=month, billing_account_id=billing_account_id), path, gzip)
    finally:
        con.close()


def _write_prices(path: str, *, month: str, seed: int, enrollment: str, gzip: bool, lo: int | None = None,
                  hi: int | None = None) -> int:
    con = _connect(seed)
    try:
        return _copy(con, _price_query(month=month, enrollment=enrollment, lo=lo, hi=hi), path, gzip)
    finally:
        con.close()


def write_focus_cost_csv(path: str, rows: int, *, month: str = "2024-05", seed: int = 1, billing_account_id: str = "8611537",
                         gzip: bool = False) -> None:
    """Write ``rows`` rows of a FocusCost 1.0 export of ``month`` to a local CSV (gzip-compressed with ``gzip``)."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    _write_costs(path, 0, rows, month=month, seed=seed, billing_account_id=billing_account_id, gzip=gzip)


def write_price_sheet_csv(path: str, *, month: str = "2024-05", seed: int = 1, enrollment: str = "8611537") -> int:
    """Write the EA price sheet (2023-05-01) of the cost generator's meter pool for ``seed``; returns the row count."""
    return _write_prices(path, month=month, seed=seed, enrollment=enrollment, gzip=False)


def price_sheet_rows(seed: int = 1) -> int:
    """The number of rows in the price sheet of ``seed``."""
    con = _connect(seed)
    try:
        row = con.execute(f"SELECT count(*) + {len(RI_FACTOR)} * count(*) FILTER (WHERE reservable) FROM meters").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def default_run_id(export_name: str, month: str, seed: int) -> str:
    """The run id ``write_export`` uses when none is given: a UUID derived from its arguments."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"finops-hub-sample/{export_name}/{month}/{seed}"))


def keep_sample_months(root: str) -> None:
    """Give a hub root without settings ones that keep every lake month (``retention.ingestion.months`` 0): the samples
    are of 2024, which the default 13 months no longer keep, so their deliveries would be held back
    (``OutsideRetention``). A root that has settings keeps them as they are."""
    from hub.settings import Settings
    from hub.store import SETTINGS, Store

    store = Store(root)
    if not store.exists(SETTINGS):
        settings = Settings()
        settings.retention.ingestion.months = 0
        store.write_bytes(SETTINGS, settings.to_json().encode())


def write_export(root: str, *, export_type: str = "FocusCost", data_version: str = "1.0", rows: int = 2000,
                 month: str = "2024-05", parts: int = 1, gzip: bool = False, export_name: str = "demo-costs",
                 resource_id: str = "/providers/Microsoft.Billing/billingAccounts/8611537", run_id: str | None = None,
                 seed: int = 1, shape: object = "default") -> str:
    """Deliver one Cost Management export run under ``<root>/msexports/``: the parts, then ``manifest.json``.

    ``root`` is a local folder or an fsspec URL. ``export_type`` is ``FocusCost`` (``rows`` split across ``parts``)
    or ``PriceSheet`` (the meter pool's prices; ``rows`` is ignored). ``shape``: ``"default"`` (this module's data),
    ``"independent"`` or a :class:`hub.sample_independent.Shape` (the other generator's data, see that module).
    Returns the manifest's path, ``root`` + relative. A root without settings gets ones keeping every lake month
    (:func:`keep_sample_months`).
    """
    keep_sample_months(root)
    other = None
    if shape != "default":
        from hub import sample_independent as ind

        other = ind.Shape() if shape == "independent" else shape
        if not isinstance(other, ind.Shape):
            raise ValueError(f"shape must be 'default', 'independent' or a Shape, not {shape!r}")
    kind = export_type.lower()
    if kind not in ("focuscost", "pricesheet"):
        raise ValueError(f"export_type must be FocusCost or PriceSheet, not {export_type!r}")
    if parts < 1 or rows < 0:
        raise ValueError("parts must be >= 1 and rows >= 0")
    start, end, _ = _month(month)
    last = end - timedelta(days=1)
    run_id = run_id or default_run_id(export_name, month, seed)
    submitted = datetime(start.year, start.month, start.day, 12) + timedelta(days=1)
    folder = f"{export_name}/{start:%Y%m%d}-{last:%Y%m%d}/{submitted:%Y%m%d%H%M}/{run_id}"
    account = resource_id.rstrip("/").rsplit("/", 1)[-1]
    total = rows
    if kind == "pricesheet":
        total = price_sheet_rows(seed) if other is None else ind.price_sheet_rows(seed, other)
    fs, base = fsspec.core.url_to_fs(root)
    target = f"{base.rstrip('/')}/msexports/{folder}"
    fs.makedirs(target, exist_ok=True)
    blobs: list[dict[str, object]] = []
    sizes: list[int] = []
    counts: list[int] = []
    with tempfile.TemporaryDirectory(prefix="hub-sample-") as tmp:
        for i in range(parts):
            name = f"part_{i}_0001.csv" + (".gz" if gzip else "")
            local = os.path.join(tmp, name)
            lo, hi = i * total // parts, (i + 1) * total // parts
            if kind == "pricesheet" and other is not None:
                count = ind.write_prices(local, month=month, seed=seed, enrollment=account, gzip=gzip, shape=other, lo=lo, hi=hi)
            elif kind == "pricesheet":
                count = _write_prices(local, month=month, seed=seed, enrollment=account, gzip=gzip, lo=lo, hi=hi)
            elif other is not None:
                count = ind.write_costs(local, lo, hi, month=month, seed=seed, billing_account_id=account, gzip=gzip, shape=other)
            else:
                count = _write_costs(local, lo, hi, month=month, seed=seed, billing_account_id=account, gzip=gzip)
            fs.put_file(local, f"{target}/{name}")
            sizes.append(os.path.getsize(local))
            counts.append(count)
            blobs.append({"blobName": f"{folder}/{name}", "byteCount": sizes[-1], "dataRowCount": count})
    manifest = {
        "manifestVersion": "2024-04-01",
        "byteCount": sum(sizes),
        "blobCount": len(blobs),
        "dataRowCount": sum(counts),
        "exportConfig": {
            "exportName": export_name,
            "resourceId": f"{resource_id.rstrip('/')}/providers/Microsoft.CostManagement/exports/{export_name}",
            "dataVersion": data_version, "apiVersion": "2023-07-01-preview", "type": export_type,
            "timeFrame": "MonthToDate", "granularity": "Daily",
        },
        "deliveryConfig": {
            "partitionData": True, "dataOverwriteBehavior": "OverwritePreviousReport", "fileFormat": "Csv",
            "compressionMode": "gzip" if gzip else "none",
            "containerUri": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
                            "/providers/Microsoft.Storage/storageAccounts/demo",
            "rootFolderPath": "",
        },
        "runInfo": {
            "executionType": "Scheduled", "submittedTime": f"{submitted:%Y-%m-%dT%H:%M:%S}Z", "runId": run_id,
            "startDate": f"{start}T00:00:00", "endDate": f"{last}T00:00:00",
        },
        "blobs": blobs,
    }
    with fs.open(f"{target}/manifest.json", "wb") as fh:
        fh.write(json.dumps(manifest, indent=2).encode("utf-8"))
    return posixpath.join(root.rstrip("/"), "msexports", folder, "manifest.json")
