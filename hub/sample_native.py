"""Realistic deliveries of other clouds for the demo, tests and benchmarks, generated column by column with DuckDB:
an AWS legacy Cost and Usage Report (``lineItem/...`` CSV in its assembly folder) and an OCI FOCUS report (Oracle's
pre-1.0 headers ``Provider``, ``Region``, ``UsageQuantity``, ``Usage-based``). Each is written as the provider lays
it out under ``exports/<provider>/``, with an empty ``manifest.json`` last. Deterministic: row ``i`` is a function
of ``i`` (hashes pick services, accounts, resources and amounts).
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import tempfile
import zipfile
from datetime import date

import duckdb

from hub.sample_data import keep_sample_months
from hub.store import EXPORTS, Store

#: (AWS product code, product name, usage type, unit, on-demand rate, resource ARN kind)
AWS_SERVICES = (
    ("AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:m5.large", "Hrs", "0.096", "ec2:{region}:{acct}:instance/i-0{rid}"),
    ("AmazonS3", "Amazon Simple Storage Service", "TimedStorage-ByteHrs", "GB-Mo", "0.023", "s3:::bucket-{rid}"),
    ("AmazonRDS", "Amazon Relational Database Service", "InstanceUsage:db.t3.medium", "Hrs", "0.068",
     "rds:{region}:{acct}:db:db-{rid}"),
    ("AWSLambda", "AWS Lambda", "Request", "Requests", "0.0000002", "lambda:{region}:{acct}:function:fn-{rid}"),
    ("AmazonCloudWatch", "AmazonCloudWatch", "CW:MetricMonitorUsage", "Metrics", "0.30", ""),
)
OCI_SERVICES = (
    ("COMPUTE", "Compute", "Standard - E4 - OCPU", "OCPU Hours", "0.025", "instance"),
    ("BLOCK_STORAGE", "Storage", "Block Volume - Storage", "GB Months", "0.0255", "bootvolume"),
    ("OBJECT_STORAGE", "Storage", "Object Storage - Storage", "GB Months", "0.0255", "bucket"),
    ("DATABASE", "Databases", "Autonomous Database - OCPU", "OCPU Hours", "1.3441", "autonomousdatabase"),
)


def _values(rows: list[tuple]) -> str:
    body = ", ".join("(" + ", ".join(f"'{v}'" for v in r) + ", " + str(i) + ")" for i, r in enumerate(rows))
    return f"(VALUES {body})"


def _month(month: str) -> tuple[date, date, int]:
    """First day of ``month`` (``YYYY-MM``), first day of the next month, and its number of days."""
    start = date.fromisoformat(f"{month}-01")
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start, end, (end - start).days


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _write(store: Store, rel: str, con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """COPY a query to CSV (gzip for ``.gz``; for ``.zip`` an archive holding ``<name>.csv``), then into the store."""
    with tempfile.TemporaryDirectory(prefix="hub-sample-") as tmp:
        csv_path = os.path.join(tmp, "part.csv")
        con.execute(f"COPY ({sql}) TO '{csv_path}' (HEADER, DELIMITER ',')")
        if rel.endswith(".zip"):
            packed = os.path.join(tmp, "part.zip")
            with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(csv_path, posixpath.basename(rel)[: -len(".zip")] + ".csv")
            csv_path = packed
        with open(csv_path, "rb") as src:
            data = gzip.compress(src.read()) if rel.endswith(".gz") else src.read()
        store.write_bytes(rel, data)


def _deliver(store: Store, folder: str, name: str, con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """One data file of a delivery (:func:`_write`), then its empty ``manifest.json``, last; the manifest's path."""
    _write(store, f"{folder}/{name}", con, sql)
    store.write_bytes(f"{folder}/manifest.json", b"")
    return f"{folder}/manifest.json"


#: Columns of a legacy CUR as AWS writes them with resource IDs: the 94 of AWS's anonymized sample (product attributes,
#: reservation and savingsPlan columns present and mostly empty), ``lineItem/ResourceId`` and two user tags.
CUR_FULL_COLUMNS = (
    "identity/LineItemId", "identity/TimeInterval", "bill/InvoiceId", "bill/InvoicingEntity", "bill/BillingEntity",
    "bill/BillType", "bill/PayerAccountId", "bill/BillingPeriodStartDate", "bill/BillingPeriodEndDate",
    "lineItem/UsageAccountId", "lineItem/LineItemType", "lineItem/UsageStartDate", "lineItem/UsageEndDate",
    "lineItem/ProductCode", "lineItem/UsageType", "lineItem/Operation", "lineItem/AvailabilityZone", "lineItem/ResourceId",
    "lineItem/UsageAmount", "lineItem/NormalizationFactor", "lineItem/NormalizedUsageAmount", "lineItem/CurrencyCode",
    "lineItem/UnblendedRate", "lineItem/UnblendedCost", "lineItem/BlendedRate", "lineItem/BlendedCost",
    "lineItem/LineItemDescription", "lineItem/TaxType", "lineItem/LegalEntity", "product/ProductName",
    "product/availability", "product/durability", "product/eventType", "product/feeCode", "product/feeDescription",
    "product/fromLocation", "product/fromLocationType", "product/fromRegionCode", "product/group",
    "product/groupDescription", "product/location", "product/locationType", "product/messageDeliveryFrequency",
    "product/messageDeliveryOrder", "product/operation", "product/overhead", "product/productFamily",
    "product/productType", "product/queueType", "product/region", "product/regionCode", "product/servicecode",
    "product/servicename", "product/sku", "product/storageClass", "product/storageMedia", "product/toLocation",
    "product/toLocationType", "product/toRegionCode", "product/transferType", "product/usagetype", "product/version",
    "product/volumeType", "pricing/RateCode", "pricing/RateId", "pricing/currency", "pricing/publicOnDemandCost",
    "pricing/publicOnDemandRate", "pricing/term", "pricing/unit", "reservation/AmortizedUpfrontCostForUsage",
    "reservation/AmortizedUpfrontFeeForBillingPeriod", "reservation/EffectiveCost", "reservation/EndTime",
    "reservation/ModificationStatus", "reservation/NormalizedUnitsPerReservation", "reservation/NumberOfReservations",
    "reservation/RecurringFeeForUsage", "reservation/StartTime", "reservation/SubscriptionId",
    "reservation/TotalReservedNormalizedUnits", "reservation/TotalReservedUnits", "reservation/UnitsPerReservation",
    "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod", "reservation/UnusedNormalizedUnitQuantity",
    "reservation/UnusedQuantity", "reservation/UnusedRecurringFee", "reservation/UpfrontValue",
    "savingsPlan/TotalCommitmentToDate", "savingsPlan/SavingsPlanARN", "savingsPlan/SavingsPlanRate",
    "savingsPlan/UsedCommitment", "savingsPlan/SavingsPlanEffectiveCost",
    "savingsPlan/AmortizedUpfrontCommitmentForBillingPeriod", "savingsPlan/RecurringCommitmentForBillingPeriod",
    "resourceTags/user:team", "resourceTags/user:env",
)
#: (AWS product code's position in :data:`AWS_SERVICES`) -> product family, as the full CUR writes it.
_FAMILIES = "['Compute Instance', 'Storage', 'Database Instance', 'Serverless', 'Metric']"
_LOCATIONS = "MAP {'us-east-1': 'US East (N. Virginia)', 'eu-west-1': 'EU (Ireland)', 'ap-southeast-2': 'Asia Pacific (Sydney)'}"
#: A DOUBLE as AWS's CUR prints it (Java's shortest form: ``0.0``, ``0.0029729825``, ``3.96E-6``, ``5.0E-7``).
_JAVA = """CREATE MACRO java(x) AS CASE WHEN contains(CAST(x AS VARCHAR), 'e')
    THEN CASE WHEN contains(split_part(CAST(x AS VARCHAR), 'e', 1), '.') THEN split_part(CAST(x AS VARCHAR), 'e', 1)
              ELSE split_part(CAST(x AS VARCHAR), 'e', 1) || '.0' END
         || 'E' || CAST(CAST(split_part(CAST(x AS VARCHAR), 'e', 2) AS INTEGER) AS VARCHAR)
    ELSE CAST(x AS VARCHAR) END"""


def write_aws_cur(root: str, *, month: str = "2024-05", rows: int = 2000, payer: str = "111122223333",
                  report: str = "demo-cur", full: bool = False) -> str:
    """A legacy CUR for one month: usage of five services over 4 linked accounts and 3 regions, tags, one tax row
    per account. ``full``: every column of :data:`CUR_FULL_COLUMNS` (97, a real CUR's width) with AWS's number
    formatting (an exponent below 0.001: ``2.0E-7``), AWS-like 52-character line item IDs and product attributes; else
    35 columns with plain numbers. Returns the manifest's path relative to the root."""
    keep_sample_months(root)
    store = Store(root)
    start, end, days = _month(month)
    folder = f"{EXPORTS}/aws/cur/{report}/{start:%Y%m%d}-{end:%Y%m%d}/assembly-1"
    con = _connect()
    con.execute(_JAVA)
    services = _values(AWS_SERVICES)
    usage = f"""
        SELECT i, s.*, ['us-east-1', 'eu-west-1', 'ap-southeast-2'][CAST(1 + hash(i, 'r') % 3 AS BIGINT)] AS region,
               '4444' || lpad(CAST(hash(i, 'a') % 4 AS VARCHAR), 8, '0') AS acct,
               lpad(printf('%x', hash(i, 'id') % 400), 8, '0') AS rid,
               TIMESTAMP '{start}' + INTERVAL (hash(i, 'h') % ({days} * 24)) HOUR AS t,
               round(1 + (hash(i, 'q') % 1000) / 100.0, 2) AS qty
        FROM range({rows}) r(i)
        JOIN {services} s(code, name, usage_type, unit, rate, arn, k) ON s.k = CAST(hash(i, 's') % 5 AS BIGINT)"""
    exact = "CAST(CAST(qty AS DECIMAL(18,6)) * CAST(rate AS DECIMAL(18,10)) AS VARCHAR)"
    cost, rate, amount = (("java(qty * CAST(rate AS DOUBLE))", "java(CAST(rate AS DOUBLE))", "java(qty)") if full
                          else (exact, "rate", "CAST(qty AS VARCHAR)"))
    both = {  # the same for usage and tax rows
        "bill/PayerAccountId": f"'{payer}'", "bill/BillingPeriodStartDate": f"'{start}T00:00:00.000Z'",
        "bill/BillingPeriodEndDate": f"'{end}T00:00:00.000Z'", "bill/InvoicingEntity": "'Amazon Web Services, Inc.'",
        "bill/BillType": "'Anniversary'", "bill/BillingEntity": "'AWS'", "lineItem/UsageAccountId": "acct",
        "lineItem/LegalEntity": "'Amazon Web Services, Inc.'", "lineItem/CurrencyCode": "'USD'",
    }
    line = ("substr(md5(CAST(i AS VARCHAR)), 1, 26) || substr(md5(CAST(i AS VARCHAR) || 'b'), 1, 26)" if full
            else "'li-' || i")
    used = {
        "identity/LineItemId": line,
        "identity/TimeInterval": ("strftime(t, '%Y-%m-%dT%H:%M:%SZ') || '/' || "
                                  "strftime(t + INTERVAL 1 HOUR, '%Y-%m-%dT%H:%M:%SZ')"),
        **both, "lineItem/LineItemType": "'Usage'",
        "lineItem/UsageStartDate": "strftime(t, '%Y-%m-%dT%H:%M:%S.000Z')",
        "lineItem/UsageEndDate": "strftime(t + INTERVAL 1 HOUR, '%Y-%m-%dT%H:%M:%S.000Z')",
        "lineItem/ProductCode": "code", "lineItem/UsageType": "usage_type", "lineItem/Operation": "'Run'",
        "lineItem/AvailabilityZone": "region || 'a'",
        "lineItem/ResourceId": ("CASE WHEN arn <> '' THEN 'arn:aws:' || replace(replace(replace(arn, '{region}', region), "
                                "'{acct}', acct), '{rid}', rid) END"),
        "lineItem/UsageAmount": amount, "lineItem/UnblendedRate": rate, "lineItem/UnblendedCost": cost,
        "lineItem/LineItemDescription": "usage_type || ' usage'", "product/ProductName": "name",
        "product/regionCode": "region", "product/region": "region", "product/sku": "'SKU' || k", "pricing/unit": "unit",
        "pricing/publicOnDemandRate": rate, "pricing/publicOnDemandCost": cost,
        "pricing/RateCode": "'SKU' || k || '.RATE'", "pricing/RateId": "CAST(1000 + k AS VARCHAR)",
        "resourceTags/user:team": "['web', 'data', 'platform', NULL][CAST(1 + hash(i, 't') % 4 AS BIGINT)]",
        "resourceTags/user:env": "['prod', 'dev'][CAST(1 + hash(i, 'e') % 2 AS BIGINT)]",
    }
    if full:
        used |= {
            "lineItem/BlendedRate": rate, "lineItem/BlendedCost": cost, "product/location": f"{_LOCATIONS}[region]",
            "product/locationType": "'AWS Region'", "product/productFamily": f"{_FAMILIES}[k + 1]",
            "product/servicecode": "code", "product/servicename": "name", "product/usagetype": "usage_type",
            "product/operation": "CASE k WHEN 0 THEN 'RunInstances' WHEN 2 THEN 'CreateDBInstance' END",
            "product/availability": "CASE k WHEN 1 THEN '99.99%' END",
            "product/durability": "CASE k WHEN 1 THEN '99.999999999%' END",
            "product/storageClass": "CASE k WHEN 1 THEN 'General Purpose' END",
            "product/volumeType": "CASE k WHEN 1 THEN 'Standard' END",
            "product/group": "CASE k WHEN 3 THEN 'AWS-Lambda-Requests' WHEN 4 THEN 'Metric' END",
            "pricing/currency": "'USD'", "pricing/term": "'OnDemand'",
            "reservation/SubscriptionId": "CAST(100000000 + hash(acct) % 900000000 AS VARCHAR)",
        }
    tax = {**both, "identity/LineItemId": "'tax-' || acct", "identity/TimeInterval": f"'{start}T00:00:00Z/{end}T00:00:00Z'",
           "lineItem/LineItemType": "'Tax'", "lineItem/UsageStartDate": f"'{start}T00:00:00.000Z'",
           "lineItem/UsageEndDate": f"'{end}T00:00:00.000Z'", "lineItem/ProductCode": "'AmazonEC2'",
           "lineItem/UsageAmount": "'1'" if not full else "'1.0'", "lineItem/UnblendedCost": "'1.25'",
           "lineItem/LineItemDescription": "'Tax for product code AmazonEC2'",
           "product/ProductName": "'Amazon Elastic Compute Cloud'"}
    if full:
        tax |= {"lineItem/BlendedCost": "'1.25'", "pricing/publicOnDemandCost": "'0.0'"}
    order = CUR_FULL_COLUMNS if full else tuple(used)
    sql = f"""
        SELECT {', '.join(f'{used.get(c, "NULL")} AS "{c}"' for c in order)} FROM ({usage})
        UNION ALL
        SELECT {', '.join(f'{tax.get(c, "NULL")} AS "{c}"' for c in order)} FROM (SELECT DISTINCT acct FROM ({usage}))
        ORDER BY 1"""
    return _deliver(store, folder, f"{report}-00001.csv.gz", con, sql)


def write_oci_focus(root: str, *, month: str = "2024-05", rows: int = 1000, account: str = "20209880") -> str:
    """An OCI FOCUS report for one month, with Oracle's pre-1.0 headers and ``Usage-based`` casing. Returns the
    manifest's path relative to the root."""
    keep_sample_months(root)
    store = Store(root)
    start, end, days = _month(month)
    folder = f"{EXPORTS}/oci/FOCUS Reports/{start:%Y/%m}"
    con = _connect()
    services = _values(OCI_SERVICES)
    sql = f"""
        SELECT '' AS AvailabilityZone,
               CAST(CAST(qty AS DECIMAL(18,6)) * CAST(price AS DECIMAL(18,10)) AS VARCHAR) AS BilledCost,
               '{account}' AS BillingAccountId, 'demo' AS BillingAccountName, 'USD' AS BillingCurrency,
               '{end}T00:00:00Z' AS BillingPeriodEnd, '{start}T00:00:00Z' AS BillingPeriodStart, 'Usage' AS ChargeCategory,
               sku_name AS ChargeDescription, 'Usage-based' AS ChargeFrequency,
               strftime(t + INTERVAL 1 HOUR, '%Y-%m-%dT%H:%M:%SZ') AS ChargePeriodEnd,
               strftime(t, '%Y-%m-%dT%H:%M:%SZ') AS ChargePeriodStart,
               CAST(CAST(qty AS DECIMAL(18,6)) * CAST(price AS DECIMAL(18,10)) AS VARCHAR) AS EffectiveCost,
               'Oracle' AS InvoiceIssuer,
               CAST(CAST(qty AS DECIMAL(18,6)) * CAST(price AS DECIMAL(18,10)) AS VARCHAR) AS ListCost,
               price AS ListUnitPrice, '' AS PricingCategory, CAST(qty AS VARCHAR) AS PricingQuantity, unit AS PricingUnit,
               'Oracle' AS Provider, 'Oracle' AS Publisher, region AS Region,
               'ocid1.' || kind || '.oc1.' || region || '.' || lpad(printf('%x', hash(i, 'id') % 300), 12, '0') AS ResourceId,
               kind AS ResourceType, category AS ServiceCategory, service AS ServiceName, 'B9' || k AS SkuId,
               'ocid1.tenancy.oc1..demo' AS SubAccountId, 'demo' AS SubAccountName,
               '{{"team": "' || ['web', 'data', 'platform'][CAST(1 + hash(i, 't') % 3 AS BIGINT)] || '"}}' AS Tags,
               CAST(qty AS VARCHAR) AS UsageQuantity, unit AS UsageUnit, 'compartment-' || hash(i, 'c') % 5 AS oci_CompartmentName
        FROM (SELECT i, s.*, ['us-ashburn-1', 'eu-frankfurt-1'][CAST(1 + hash(i, 'r') % 2 AS BIGINT)] AS region,
                     TIMESTAMP '{start}' + INTERVAL (hash(i, 'h') % ({days} * 24)) HOUR AS t,
                     round(1 + (hash(i, 'q') % 800) / 100.0, 2) AS qty
              FROM range({rows}) r(i)
              JOIN {services} s(service, category, sku_name, unit, price, kind, k) ON s.k = CAST(hash(i, 's') % 4 AS BIGINT))
        ORDER BY ChargePeriodStart"""
    return _deliver(store, folder, "0001.csv.gz", con, sql)


#: (ProductCode, ProductName, billing item, unit, list price per unit)
ALIBABA_SERVICES = (
    ("ecs", "Elastic Compute Service", "Instance", "Hour", "0.85"),
    ("oss", "Object Storage Service", "Storage", "GB", "0.12"),
    ("rds", "ApsaraDB RDS", "Instance", "Hour", "1.20"),
    ("slb", "Server Load Balancer", "Traffic", "GB", "0.80"),
    ("cdn", "Alibaba Cloud CDN", "Traffic", "GB", "0.24"),
)


def write_alibaba_bill(root: str, *, month: str = "2024-05", rows: int = 1000, account: str = "1234567890") -> str:
    """An Alibaba Cloud bill detail file as the OSS bill subscription writes it (BillingItemDetailForBillingPeriod field
    names, times in UTC+8 without an offset, CNY), pay-as-you-go rows with an invoice discount, coupons and vouchers
    (PretaxAmount = PretaxGrossAmount - InvoiceDiscount - DeductedByCoupons; PaymentAmount = PretaxAmount -
    DeductedByCashCoupons), both Tag forms. Returns the manifest's path relative to the root."""
    keep_sample_months(root)
    store = Store(root)
    start, _, days = _month(month)
    folder = f"{EXPORTS}/alibaba/bill-subscription/{month}"
    con = _connect()
    services = _values(ALIBABA_SERVICES)
    sql = f"""
        SELECT '{month}' AS BillingCycle, '{account}' AS AccountID, 'payer' AS AccountName,
               CAST(5678 + hash(i, 'o') % 3 AS VARCHAR) AS OwnerID, 'member' AS OwnerAccountName,
               'PayAsYouGo' AS SubscriptionType,
               code AS ProductCode, name AS ProductName, strftime(t, '%Y-%m-%d %H:%M:%S') AS UsageStartTime,
               strftime(t + INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S') AS UsageEndTime, 'r' || i AS RecordID, 'PayAsYouGoBill' AS Item,
               code || '-' || lpad(printf('%x', hash(i, 'id') % 200), 6, '0') AS InstanceID,
               ['key:env value:prod; key:team value:web', 'env:dev;team:data', ''][CAST(1 + hash(i, 't') % 3 AS BIGINT)] AS Tag,
               ['China (Hangzhou)', 'China (Shanghai)', 'Singapore'][CAST(1 + hash(i, 'r') % 3 AS BIGINT)] AS Region,
               'CNY' AS Currency, CAST(gross AS VARCHAR) AS PretaxGrossAmount, CAST(disc AS VARCHAR) AS InvoiceDiscount,
               CAST(coupon AS VARCHAR) AS DeductedByCoupons, CAST(gross - disc - coupon AS VARCHAR) AS PretaxAmount,
               CAST(voucher AS VARCHAR) AS DeductedByCashCoupons, '0.00' AS DeductedByPrepaidCard,
               CAST(gross - disc - coupon - voucher AS VARCHAR) AS PaymentAmount, '0.00' AS OutstandingAmount,
               CAST(qty AS VARCHAR) AS Usage, unit AS UsageUnit, price AS ListPrice, code AS CommodityCode, item AS BillingItem
        FROM (SELECT i, s.*, TIMESTAMP '{start}' + INTERVAL (hash(i, 'h') % ({days} * 24)) HOUR AS t, qty,
                     CAST(round(qty * CAST(price AS DECIMAL(18,4)), 2) AS DECIMAL(18,2)) AS gross,
                     CAST(round(qty * CAST(price AS DECIMAL(18,4)) * 0.1, 2) AS DECIMAL(18,2)) AS disc,
                     CAST(CASE WHEN hash(i, 'c') % 10 = 0 THEN 0.05 ELSE 0 END AS DECIMAL(18,2)) AS coupon,
                     CAST(CASE WHEN hash(i, 'v') % 5 = 0 THEN round(qty * CAST(price AS DECIMAL(18,4)) * 0.2, 2) ELSE 0 END
                          AS DECIMAL(18,2)) AS voucher
              FROM (SELECT i, CAST(1 + hash(i, 'q') % 20 AS DECIMAL(18,2)) AS qty FROM range({rows}) r(i)) u
              JOIN {services} s(code, name, item, unit, price, k) ON s.k = CAST(hash(i, 's') % 5 AS BIGINT))
        ORDER BY i"""
    return _deliver(store, folder, f"{account}_BillingItemDetail_{month.replace('-', '')}.csv", con, sql)  # a whole month


HUAWEI_SERVICES = (
    ("hws.service.type.ec2", "Elastic Cloud Server", "hws.resource.type.vm", "ECS", "Hour", "0.60"),
    ("hws.service.type.obs", "Object Storage Service", "hws.resource.type.obs", "OBS", "GB", "0.10"),
    ("hws.service.type.rds", "Relational Database Service", "hws.resource.type.rds", "RDS", "Hour", "0.90"),
    ("hws.service.type.elb", "Elastic Load Balance", "hws.resource.type.elb", "ELB", "Hour", "0.15"),
)


def write_huawei_bill(root: str, *, month: str = "2024-05", rows: int = 1000, payer: str = "0a1b2c3d4e") -> str:
    """Huawei Cloud resource bill details by day (ListCustomerselfResourceRecordDetails fields, statistic_type 2: ``cycle``
    and ``bill_date`` in UTC+8), on-demand use with discounts, paid by cash, vouchers and credit so that consume_amount =
    cash + credit + coupon. Returns the manifest's path relative to the root."""
    keep_sample_months(root)
    store = Store(root)
    start, _, days = _month(month)
    folder = f"{EXPORTS}/huawei/cost-center/{month}"
    con = _connect()
    services = _values(HUAWEI_SERVICES)
    sql = f"""
        SELECT '{month}' AS cycle, strftime(DATE '{start}' + CAST(hash(i, 'd') % {days} AS INTEGER), '%Y-%m-%d') AS bill_date,
               5 AS bill_type, 'c' || hash(i, 'c') % 3 AS customer_id, '{payer}' AS payer_account_id,
               ['cn-north-4', 'ap-southeast-1'][CAST(1 + hash(i, 'r') % 2 AS BIGINT)] AS region, st AS cloud_service_type,
               sn AS cloud_service_type_name, rt AS resource_type_code, rn AS resource_type_name,
               lower(rn) || '-' || lpad(printf('%x', hash(i, 'id') % 150), 6, '0') AS res_instance_id,
               rn || '.standard' AS sku_code,
               ['env=prod;team=web', 'env=dev', NULL][CAST(1 + hash(i, 't') % 3 AS BIGINT)] AS resource_tag, 3 AS charge_mode,
               CAST(official - disc AS VARCHAR) AS consume_amount,
               CAST(official - disc - coupon - credit AS VARCHAR) AS cash_amount,
               CAST(credit AS VARCHAR) AS credit_amount, CAST(coupon AS VARCHAR) AS coupon_amount,
               '0' AS flexipurchase_coupon_amount,
               '0' AS stored_card_amount, '0' AS bonus_amount, '0' AS debt_amount, '0' AS adjustment_amount,
               CAST(official AS VARCHAR) AS official_amount, CAST(disc AS VARCHAR) AS discount_amount,
               CAST(qty AS VARCHAR) AS usage,
               unit, 'CNY' AS currency
        FROM (SELECT i, s.*, qty, CAST(round(qty * CAST(price AS DECIMAL(18,4)), 2) AS DECIMAL(18,2)) AS official,
                     CAST(round(qty * CAST(price AS DECIMAL(18,4)) * 0.15, 2) AS DECIMAL(18,2)) AS disc,
                     CAST(CASE WHEN hash(i, 'v') % 4 = 0 THEN round(qty * CAST(price AS DECIMAL(18,4)) * 0.3, 2) ELSE 0 END
                          AS DECIMAL(18,2)) AS coupon,
                     CAST(CASE WHEN hash(i, 'k') % 7 = 0 THEN round(qty * CAST(price AS DECIMAL(18,4)) * 0.1, 2) ELSE 0 END
                          AS DECIMAL(18,2)) AS credit
              FROM (SELECT i, CAST(1 + hash(i, 'q') % 24 AS DECIMAL(18,2)) AS qty FROM range({rows}) r(i)) u
              JOIN {services} s(st, sn, rt, rn, unit, price, k) ON s.k = CAST(hash(i, 's') % 4 AS BIGINT))
        ORDER BY i"""
    return _deliver(store, folder, f"resource-records-{month}.csv", con, sql)


TENCENT_SERVICES = (
    ("p_cvm", "Cloud Virtual Machine", "CVM Standard S5", "CPU", "sv_cvm_cpu", "0.05", "USD/core/hour", "core"),
    ("p_cbs", "Cloud Block Storage", "CBS Premium", "Disk", "sv_cbs_premium", "0.0001", "USD/GB/hour", "GB"),
    ("p_cos", "Cloud Object Storage", "COS Standard", "Storage", "sv_cos_std", "0.00003", "USD/GB/hour", "GB"),
    ("p_clb", "Cloud Load Balancer", "CLB", "Instance", "sv_clb", "0.02", "USD/instance/hour", "instance"),
)


#: A Tencent bill's display-name (console) headers for DescribeBillDetail's field names, as Tencent's "Fields in Bills"
#: (555/37506) and "Bill Fields Description" (1085/43050) name them; the console file has no BillMonth, codes or tags.
TENCENT_CONSOLE = {
    "PayerUin": "Payer Account ID", "OwnerUin": "Owner Account ID", "BusinessCodeName": "Product Name",
    "ProductCodeName": "Subproduct Name", "ProjectName": "Project Name", "RegionName": "Region",
    "ZoneName": "Availability Zone", "ResourceId": "Instance ID", "ActionTypeName": "Transaction Type",
    "FeeBeginTime": "Usage Start Time", "FeeEndTime": "Usage End Time", "ComponentCodeName": "Component Type",
    "ItemCodeName": "Component Name", "SinglePrice": "Component List Price", "ContractPrice": "Component Contracted Price",
    "PriceUnit": "Component Price Measurement Unit", "UsedAmount": "Component Usage", "UsedAmountUnit": "Component Usage Unit",
    "TimeSpan": "Usage Duration", "Cost": "Original Cost", "Discount": "Discount",
    "RealCost": "Total Amount After Discount (Excluding Tax)", "VoucherPayAmount": "Voucher Deduction",
    "CashPayAmount": "Cash Credit", "IncentivePayAmount": "Free Credit", "TransferPayAmount": "Commission Credit",
    "TaxAmount": "Tax Amount", "Currency": "Currency",
}


def write_tencent_bill(root: str, *, month: str = "2024-05", rows: int = 1000, payer: str = "100001",
                       console: bool = False) -> str:
    """Tencent Cloud component-level bill details as bill storage writes them (DescribeBillDetail field names, Beijing
    times with inclusive ``...:59:59`` ends), hourly settlements at a contract discount paid by vouchers and cash
    (RealCost = VoucherPayAmount + CashPayAmount). ``console``: with the console's display-name headers
    (:data:`TENCENT_CONSOLE`, plus ``Billing Mode``). Returns the manifest's path relative to the root."""
    keep_sample_months(root)
    store = Store(root)
    start, _, days = _month(month)
    folder = f"{EXPORTS}/tencent/bill-storage/{month}"
    con = _connect()
    services = _values(TENCENT_SERVICES)
    sql = f"""
        SELECT '{month}' AS BillMonth, '{payer}' AS PayerUin, CAST(100002 + hash(i, 'o') % 2 AS VARCHAR) AS OwnerUin,
               name AS BusinessCodeName, code AS BusinessCode, sub AS ProductCodeName, 'postPay' AS PayMode,
               'Default' AS ProjectName,
               '1' AS RegionId, 'South China (Guangzhou)' AS RegionName, 'Guangzhou Zone 3' AS ZoneName,
               'ins-' || lpad(printf('%x', hash(i, 'id') % 150), 8, '0') AS ResourceId, 'Hourly settlement' AS ActionTypeName,
               strftime(t, '%Y-%m-%d %H:%M:%S') AS FeeBeginTime, strftime(t + INTERVAL 3599 SECOND,
               '%Y-%m-%d %H:%M:%S') AS FeeEndTime,
               comp AS ComponentCodeName, comp || ' usage' AS ItemCodeName, item AS ItemCode, price AS SinglePrice,
               CAST(CAST(price AS DECIMAL(18,8)) * 0.8 AS VARCHAR) AS ContractPrice, unit_price AS PriceUnit,
               CAST(qty AS VARCHAR) AS UsedAmount,
               unit AS UsedAmountUnit, '1' AS TimeSpan, CAST(list AS VARCHAR) AS Cost, '0.8' AS Discount,
               CAST(real AS VARCHAR) AS RealCost,
               CAST(voucher AS VARCHAR) AS VoucherPayAmount, CAST(real - voucher AS VARCHAR) AS CashPayAmount,
               '0' AS IncentivePayAmount,
               '0' AS TransferPayAmount, '0' AS TaxAmount, 'USD' AS Currency,
               ['[{{"TagKey": "env", "TagValue": "prod"}}]', '[]'][CAST(1 + hash(i, 't') % 2 AS BIGINT)] AS Tags
        FROM (SELECT i, s.*, qty, TIMESTAMP '{start}' + INTERVAL (hash(i, 'h') % ({days} * 24)) HOUR AS t,
                     qty * CAST(price AS DECIMAL(18,8)) AS list, qty * CAST(price AS DECIMAL(18,8)) * 0.8 AS real,
                     CASE WHEN hash(i, 'v') % 3 = 0 THEN qty * CAST(price AS DECIMAL(18,8)) * 0.8 ELSE 0 END AS voucher
              FROM (SELECT i, CAST(1 + hash(i, 'q') % 100 AS DECIMAL(18,2)) AS qty FROM range({rows}) r(i)) u
              JOIN {services} s(code, name, sub, comp, item, price, unit_price, unit, k) ON s.k = CAST(hash(i,
              's') % 4 AS BIGINT))
        ORDER BY i"""
    if console:
        shown = ", ".join(f'"{api}" AS "{name}"' for api, name in TENCENT_CONSOLE.items())
        sql = f"SELECT {shown}, 'Pay-as-you-go' AS \"Billing Mode\" FROM ({sql})"
    return _deliver(store, folder, f"{payer}-{month.replace('-', '')}-by_used_time-bill_details.zip", con, sql)  # as bill storage


#: (AWS region code, display name)
AWS_REGIONS = (("us-east-1", "US East (N. Virginia)"), ("eu-west-1", "EU (Ireland)"), ("ap-southeast-2", "Asia Pacific (Sydney)"))
#: ServiceCategory of AWS_SERVICES, in order
AWS_CATEGORIES = ("Compute", "Storage", "Databases", "Compute", "Management and Governance")


def write_aws_focus(root: str, *, month: str = "2024-05", rows: int = 2000, payer: str = "111122223333",
                    export: str = "focus-export") -> str:
    """An AWS Data Exports FOCUS 1.0 export for one month as AWS lays it out (``<export>/data/BILLING_PERIOD=…/``,
    its ``metadata/…-Manifest.json`` listing the data file) with AWS's columns: the 43 FOCUS columns (``NULL`` text
    for nulls, ResourceType empty, Tags as JSON text) and ``x_CostCategories``, ``x_Discounts``, ``x_Operation``,
    ``x_ServiceCode``, ``x_UsageType``; usage of the services of :func:`write_aws_cur`. Returns the manifest's path."""
    keep_sample_months(root)
    store = Store(root)
    start, end, days = _month(month)
    base = f"{EXPORTS}/aws/focus/{export}"
    data = f"{base}/data/BILLING_PERIOD={month}/{export}-00001.csv.gz"
    con = _connect()
    services = _values([(*s, c) for s, c in zip(AWS_SERVICES, AWS_CATEGORIES, strict=True)])
    regions = _values(list(AWS_REGIONS))
    cost = "CAST(CAST(qty AS DECIMAL(18,6)) * CAST(rate AS DECIMAL(18,10)) AS VARCHAR)"
    sql = f"""
        SELECT region || 'a' AS AvailabilityZone, {cost} AS BilledCost, '{payer}' AS BillingAccountId,
               'demo-payer' AS BillingAccountName, 'USD' AS BillingCurrency, '{end} 00:00:00' AS BillingPeriodEnd,
               '{start} 00:00:00' AS BillingPeriodStart, 'Usage' AS ChargeCategory, 'NULL' AS ChargeClass,
               '$' || rate || ' per ' || unit || ' of ' || usage_type AS ChargeDescription, 'Usage-Based' AS ChargeFrequency,
               strftime(t + INTERVAL 1 HOUR, '%Y-%m-%d %H:%M:%S') AS ChargePeriodEnd,
               strftime(t, '%Y-%m-%d %H:%M:%S') AS ChargePeriodStart, 'NULL' AS CommitmentDiscountCategory,
               'NULL' AS CommitmentDiscountId, 'NULL' AS CommitmentDiscountName, 'NULL' AS CommitmentDiscountStatus,
               'NULL' AS CommitmentDiscountType, CAST(qty AS VARCHAR) AS ConsumedQuantity, unit AS ConsumedUnit,
               {cost} AS ContractedCost, rate AS ContractedUnitPrice, {cost} AS EffectiveCost,
               'Amazon Web Services, Inc.' AS InvoiceIssuerName, {cost} AS ListCost, rate AS ListUnitPrice,
               'Standard' AS PricingCategory, CAST(qty AS VARCHAR) AS PricingQuantity, unit AS PricingUnit, 'AWS' AS ProviderName,
               'Amazon Web Services, Inc.' AS PublisherName, region AS RegionId, region_name AS RegionName,
               CASE WHEN arn <> '' THEN 'arn:aws:' || replace(replace(replace(arn, '{{region}}', region), '{{acct}}', acct),
                    '{{rid}}', rid) ELSE 'NULL' END AS ResourceId,
               'NULL' AS ResourceName, 'NULL' AS ResourceType, category AS ServiceCategory, name AS ServiceName,
               'SKU' || k AS SkuId, 'SKU' || k || '.RATE' AS SkuPriceId, acct AS SubAccountId,
               'account-' || right(acct, 1) AS SubAccountName,
               '{{"user:team": "' || ['web', 'data', 'platform'][CAST(1 + hash(i, 't') % 3 AS BIGINT)] || '", "user:env": "'
                   || ['prod', 'dev'][CAST(1 + hash(i, 'e') % 2 AS BIGINT)] || '"}}' AS Tags,
               '{{}}' AS x_CostCategories, '{{}}' AS x_Discounts, 'Run' AS x_Operation, code AS x_ServiceCode,
               usage_type AS x_UsageType
        FROM (SELECT i, s.*, g.region, g.region_name,
                     '4444' || lpad(CAST(hash(i, 'a') % 4 AS BIGINT)::VARCHAR, 8, '0') AS acct,
                     lpad(printf('%x', hash(i, 'id') % 400), 8, '0') AS rid,
                     TIMESTAMP '{start}' + INTERVAL (hash(i, 'h') % ({days} * 24)) HOUR AS t,
                     round(1 + (hash(i, 'q') % 1000) / 100.0, 2) AS qty
              FROM range({rows}) r(i)
              JOIN {services} s(code, name, usage_type, unit, rate, arn, category, k) ON s.k = CAST(hash(i, 's') % 5 AS BIGINT)
              JOIN {regions} g(region, region_name, gk) ON g.gk = CAST(hash(i, 'r') % 3 AS BIGINT))
        ORDER BY ChargePeriodStart"""
    _write(store, data, con, sql)
    listing = {"executionId": f"{export}-{month}", "billingPeriod": {"start": f"{start}T00:00:00.000Z"},
               "dataFiles": [f"s3://demo-bucket/{base[len(EXPORTS) + 5:]}/{data[len(base) + 1:]}"]}
    store.write_bytes(f"{base}/metadata/BILLING_PERIOD={month}/{export}-Manifest.json", json.dumps(listing).encode())
    store.write_bytes(f"{base}/manifest.json", b"")
    return f"{base}/manifest.json"
