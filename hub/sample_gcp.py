"""Google Cloud's detailed usage cost export for one invoice month, as a user extracts the BigQuery table
(``gcp_billing_export_resource_v1_*``) into ``exports/gcp/``: newline JSON (records as objects, repeated fields as arrays,
NUMERIC as text, timestamps ``… UTC``) or Parquet (structs, lists, DECIMAL, TIMESTAMPTZ). Generated column by column with
DuckDB, deterministic (row ``i`` is a function of ``i``): usage of five SKUs over three projects and regions, with
sustained use, committed use, promotion and free tier credits, one commitment fee per day and a tax row.
"""

from __future__ import annotations

import os
import tempfile

from hub.sample_data import keep_sample_months
from hub.sample_native import _connect, _month, _values
from hub.store import EXPORTS, Store

#: (service id, service, SKU id, SKU, usage unit, pricing unit, usage units per pricing unit, list price per pricing
#: unit in USD, API, resource collection)
GCP_SKUS = (
    ("6F81-5844-456A", "Compute Engine", "CP-N2-CORE", "N2 Instance Core running in Americas", "seconds", "hour", "3600",
     "0.031611", "compute", "instances"),
    ("6F81-5844-456A", "Compute Engine", "CP-N2-RAM", "N2 Instance Ram running in Americas", "byte-seconds", "gibibyte hour",
     "3865470566400", "0.004237", "compute", "instances"),
    ("95FF-2EF5-5EA1", "Cloud Storage", "ST-STANDARD", "Standard Storage US Multi-region", "byte-seconds", "gibibyte month",
     "2822351843328000", "0.026", "storage", "buckets"),
    ("24E6-581D-38E5", "BigQuery", "BQ-ANALYSIS", "Analysis", "bytes", "tebibyte", "1099511627776", "6.25", "bigquery",
     "datasets"),
    ("9662-B51E-5089", "Cloud SQL", "SQL-PG-VCPU", "Cloud SQL for PostgreSQL: Zonal - vCPU", "seconds", "hour", "3600",
     "0.0413", "sqladmin", "instances"),
)
#: A resource-based commitment's daily fee (24 h of 2 vCPU at 0.0198 per vCPU hour)
FEE = "0.9504"
TAX = "12.34"


def write_gcp_export(root: str, *, month: str = "2024-05", rows: int = 1000, fmt: str = "json",
                     account: str = "01ABCD-234567-89EFGH") -> str:
    """One invoice month of the detailed export (``fmt``: ``json`` or ``parquet``): ``rows`` usage rows within the
    month in Pacific time, one commitment fee row per day and one tax row. Returns the manifest's path relative to the
    root."""
    if fmt not in ("json", "parquet"):
        raise ValueError(f"fmt is json or parquet, not {fmt}")
    keep_sample_months(root)
    store = Store(root)
    start, end, days = _month(month)
    folder = f"{EXPORTS}/gcp/bigquery/{month}"
    text = fmt == "json"

    def num(x: str) -> str:  # BigQuery NUMERIC: text in JSON, DECIMAL(38,9) in Parquet
        return f"CAST({x} AS VARCHAR)" if text else f"CAST({x} AS DECIMAL(38,9))"

    def ts(x: str) -> str:  # TIMESTAMP: '2024-05-01 07:00:00 UTC' in JSON
        return f"strftime({x}, '%Y-%m-%d %H:%M:%S UTC')" if text else x

    skus = _values(GCP_SKUS)
    pacific = f"timezone('America/Los_Angeles', TIMESTAMP '{start}')"
    hours = f"CAST((epoch(timezone('America/Los_Angeles', TIMESTAMP '{end}')) - epoch({pacific})) // 3600 AS BIGINT)"
    none = "CAST(NULL AS VARCHAR)"
    pairs = "CAST([] AS STRUCT(key VARCHAR, value VARCHAR)[])"
    no_credits = "CAST([] AS STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, type VARCHAR)[])"

    def credit(kind: str, share: str, name: str, cid: str = none, full_name: str = none) -> str:
        return (f"{{'name': '{name}', 'amount': CAST(-round(cost * {share}, 6) AS DOUBLE), 'full_name': {full_name}, "
                f"'id': {cid}, 'type': '{kind}'}}")

    sud = credit("SUSTAINED_USAGE_DISCOUNT", "0.2", "Sustained use discount")
    cud = credit("COMMITTED_USAGE_DISCOUNT", "0.37", "Committed use discount: CPU", "'CommittedUsageDiscount: CPU'")
    promo = credit("PROMOTION", "0.05", "Free trial", "'a1b2-c3d4'", "'Free trial credit'")
    free = credit("FREE_TIER", "0.5", "Free tier")
    credits = (f"list_filter([CASE WHEN api = 'compute' AND hash(i, 'sud') % 3 = 0 THEN {sud} END, "
               f"CASE WHEN api = 'compute' AND hash(i, 'cud') % 4 = 0 THEN {cud} END, "
               f"CASE WHEN hash(i, 'promo') % 10 = 0 THEN {promo} END, "
               f"CASE WHEN api = 'bigquery' AND hash(i, 'free') % 2 = 0 THEN {free} END], lambda c: c IS NOT NULL)")
    usage = f"""
        SELECT i, s.*, p, region, t, qty, price, CAST(round(qty * price, 6) AS DECIMAL(18,6)) AS cost,
               CAST(round(qty * list, 6) AS DECIMAL(18,6)) AS at_list,
               coll || '-' || lpad(printf('%x', hash(i, 'id') % 40), 4, '0') AS rname
        FROM (SELECT i, ['proj-web', 'proj-data', 'proj-ops'][CAST(1 + hash(i, 'p') % 3 AS BIGINT)] AS p,
                     ['us-central1', 'europe-west4', 'asia-northeast1'][CAST(1 + hash(i, 'r') % 3 AS BIGINT)] AS region,
                     {pacific} + to_hours(CAST(hash(i, 'h') % {hours} AS BIGINT)) AS t,
                     CAST(1 + (hash(i, 'q') % 800) / 100.0 AS DECIMAL(18,2)) AS qty, CAST(hash(i, 's') % 5 AS BIGINT) AS k
              FROM range({rows}) r(i)) u
        JOIN {skus} s(service_id, service, sku_id, sku, unit, pricing_unit, per_unit, list_text, api, coll, sk) ON s.sk = u.k,
        LATERAL (SELECT CAST(list_text AS DECIMAL(18,9)) AS list,
                        CAST(list_text AS DECIMAL(18,9)) * CASE WHEN p = 'proj-web' THEN 0.9 ELSE 1 END AS price)"""
    common = (f"'{account}' AS billing_account_id, {{'id': service_id, 'description': service}} AS service, "
              "{'id': sku_id, 'description': sku} AS sku")
    select = f"""
        SELECT {common}, {ts('t')} AS usage_start_time, {ts('t + INTERVAL 1 HOUR')} AS usage_end_time,
               {{'id': p, 'number': CAST(100000 + hash(p) % 900000 AS VARCHAR), 'name': p,
                 'labels': [{{'key': 'cost-center', 'value': 'cc-' || p}}]}} AS project,
               [{{'key': 'env', 'value': ['prod', 'dev'][CAST(1 + hash(i, 'e') % 2 AS BIGINT)]}},
                {{'key': 'team', 'value': ['web', 'data'][CAST(1 + hash(i, 't') % 2 AS BIGINT)]}}] AS labels,
               CASE WHEN api = 'compute' THEN [{{'key': 'compute.googleapis.com/machine_spec', 'value': 'n2-standard-4'}}]
                    ELSE {pairs} END AS system_labels,
               {{'location': region, 'country': upper(left(region, 2)), 'region': region, 'zone': region || '-a'}} AS location,
               {{'name': rname, 'global_name': '//' || api || '.googleapis.com/projects/' || p || '/zones/' || region || '-a/'
                 || coll || '/' || rname}} AS resource,
               {{'effective_price': {num('price')}, 'tier_start_amount': {num('0')}, 'unit': pricing_unit,
                 'pricing_unit_quantity': {num('1')}}} AS price,
               'GOOGLE' AS transaction_type, {ts(f"TIMESTAMPTZ '{end}'")} AS export_time, CAST(cost AS DOUBLE) AS cost,
               'USD' AS currency, CAST(1 AS DOUBLE) AS currency_conversion_rate,
               {{'amount': CAST(qty * CAST(per_unit AS DECIMAL(38,0)) AS DOUBLE), 'unit': unit,
                 'amount_in_pricing_units': CAST(qty AS DOUBLE), 'pricing_unit': pricing_unit}} AS usage,
               {credits} AS credits, {{'month': strftime(DATE '{start}', '%Y%m')}} AS invoice, 'regular' AS cost_type,
               CAST(at_list AS DOUBLE) AS cost_at_list
        FROM ({usage})"""
    fee_price = f"CAST({FEE} / 48 AS DECIMAL(18,9))"
    fees = f"""
        SELECT '{account}', {{'id': '6F81-5844-456A', 'description': 'Compute Engine'}},
               {{'id': 'CP-COMMIT-CPU', 'description': 'Commitment v1: Cpu in Americas for 1 Year'}},
               {ts(f'{pacific} + to_days(CAST(d AS INTEGER))')}, {ts(f'{pacific} + to_days(CAST(d + 1 AS INTEGER))')},
               {{'id': 'proj-ops', 'number': '100001', 'name': 'proj-ops', 'labels': {pairs}}}, {pairs}, {pairs},
               {{'location': 'us-central1', 'country': 'US', 'region': 'us-central1', 'zone': NULL}},
               {{'name': NULL, 'global_name': NULL}},
               {{'effective_price': {num(fee_price)}, 'tier_start_amount': {num('0')}, 'unit': 'hour',
                 'pricing_unit_quantity': {num('1')}}},
               'GOOGLE', {ts(f"TIMESTAMPTZ '{end}'")}, CAST({FEE} AS DOUBLE), 'USD', 1.0,
               {{'amount': 172800.0, 'unit': 'seconds', 'amount_in_pricing_units': 48.0, 'pricing_unit': 'hour'}},
               {no_credits}, {{'month': strftime(DATE '{start}', '%Y%m')}}, 'regular', CAST({FEE} AS DOUBLE)
        FROM range({days}) r(d)"""
    tax = f"""
        SELECT '{account}', {{'id': {none}, 'description': 'Invoice'}}, {{'id': {none}, 'description': 'Tax'}},
               {ts(pacific)}, {ts(f"timezone('America/Los_Angeles', TIMESTAMP '{end}')")},
               {{'id': NULL, 'number': NULL, 'name': NULL, 'labels': {pairs}}}, {pairs}, {pairs},
               {{'location': NULL, 'country': NULL, 'region': NULL, 'zone': NULL}}, {{'name': NULL, 'global_name': NULL}},
               {{'effective_price': NULL, 'tier_start_amount': NULL, 'unit': NULL, 'pricing_unit_quantity': NULL}},
               'GOOGLE', {ts(f"TIMESTAMPTZ '{end}'")}, CAST({TAX} AS DOUBLE), 'USD', 1.0,
               {{'amount': NULL, 'unit': NULL, 'amount_in_pricing_units': NULL, 'pricing_unit': NULL}},
               {no_credits}, {{'month': strftime(DATE '{start}', '%Y%m')}}, 'tax', NULL"""
    con = _connect()
    name = f"export-000000000000.{fmt}"
    with tempfile.TemporaryDirectory(prefix="hub-sample-") as tmp:
        out = os.path.join(tmp, name)
        con.execute(f"COPY ({select} UNION ALL ({fees}) UNION ALL ({tax})) TO '{out}' "
                    f"(FORMAT {'json' if text else 'parquet'})")
        with open(out, "rb") as fh:
            store.write_bytes(f"{folder}/{name}", fh.read())
    store.write_bytes(f"{folder}/manifest.json", b"")
    return f"{folder}/manifest.json"
