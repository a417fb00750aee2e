"""AWS Cost and Usage Reports through schemas/aws/cur.json: the legacy CUR as AWS writes it in Parquet, CUR 2.0's map
columns (Parquet maps and CSV JSON text), every line item type with reservations and savings plans amortized, and
resource tags; expected values computed by hand."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from conftest import DATA, make_hub

from hub.runs import RunRecord
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest
from transforms.typing import ident, literal

CUR = DATA / "aws" / "cur-legacy-1281rows.csv"
#: Legacy CUR columns AWS types as timestamps in its Parquet reports; money, rates and quantities are doubles.
TIMESTAMPS = ("bill_billing_period_start_date", "bill_billing_period_end_date", "line_item_usage_start_date",
              "line_item_usage_end_date")
DOUBLE = re.compile(r"^(line_item|pricing|reservation|savings_plan)_.*_(cost|rate|amount|factor|fee|units|quantity|value|"
                    r"commitment|to_date|for_usage|billing_period)$")


def parquet_name(header: str) -> str:
    """AWS's Parquet spelling of a legacy CUR CSV header: ``lineItem/UsageStartDate`` -> ``line_item_usage_start_date``,
    ``reservation/ReservationARN`` -> ``reservation_reservation_a_r_n``, ``resourceTags/aws:createdBy`` ->
    ``resource_tags_aws_created_by``."""
    return re.sub(r"[^a-z0-9]+", "_", re.sub(r"([A-Z])", r"_\1", header).lower()).strip("_")


def to_parquet(csv_path: Path, out: Path, *, empty: bool = False) -> None:
    """A legacy CUR CSV rewritten as AWS writes it in Parquet: snake_case names, timestamps and doubles (``empty``: a
    text cell without a value as ``''``, as AWS's Parquet CURs write them, rather than null)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = f"read_csv({literal(str(csv_path))}, all_varchar = true, header = true)"
    headers = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    select = []
    for header in headers:
        name = parquet_name(header)
        typ = "TIMESTAMP" if name in TIMESTAMPS else "DOUBLE" if DOUBLE.match(name) else "VARCHAR"
        value = f"CAST({ident(header)} AS TIMESTAMPTZ)" if typ == "TIMESTAMP" else ident(header)
        value = f"coalesce({value}, '')" if empty and typ == "VARCHAR" else value
        select.append(f"CAST({value} AS {typ}) AS {ident(name)}")
    con.execute(f"COPY (SELECT {', '.join(select)} FROM {source}) TO {literal(str(out))} (FORMAT parquet)")


def deliver(root: Path, folder: str, files: dict[str, bytes | str]) -> None:
    """A delivery under exports/aws/<folder>/: its files, then its empty manifest.json."""
    base = root / "exports" / "aws" / folder
    base.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data.encode() if isinstance(data, str) else data)
    (base / "manifest.json").write_bytes(b"")


def lake(root: Path) -> str:
    return f"read_parquet('{root}/ingestion/Costs/**/*.parquet', union_by_name = true)"


def one(sql: str) -> object:
    return duckdb.connect().execute(sql).fetchall()[0][0]


def csv_text(common: Mapping[str, object], rows: Sequence[Mapping[str, object]]) -> str:
    """CSV text of ``rows`` (each over ``common``), every column any row has; a column a row lacks is empty."""
    names = list(dict.fromkeys(k for r in [common, *rows] for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**common, **r} for r in rows)
    return out.getvalue()


def ingested(root: Path) -> list[RunRecord]:
    """Ingest the hub's deliveries; the run records (all committed)."""
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return result.records


# --- 1. legacy CUR in Parquet ---------------------------------------------------------------------------------------


def tagged_cur(out: Path) -> None:
    """The real legacy CUR with three activated tags added (the sample has none): user:env on usage, user:team and
    aws:createdBy on Amazon S3."""
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT *, CASE WHEN "lineItem/LineItemType" = 'Usage' THEN 'prod' END AS "resourceTags/user:env",
                        CASE WHEN "lineItem/ProductCode" = 'AmazonS3' THEN 'data' END AS "resourceTags/user:team",
                        CASE WHEN "lineItem/ProductCode" = 'AmazonS3' THEN 'alice' END AS "resourceTags/aws:createdBy"
                        FROM read_csv({literal(str(CUR))}, all_varchar = true, header = true))
                    TO {literal(str(out))} (HEADER, DELIMITER ',')""")


def test_legacy_cur_in_parquet_lands_like_its_csv(tmp_path: Path) -> None:
    """The real legacy CUR as AWS writes it in Parquet (line_item_unblended_cost, bill_payer_account_id,
    resource_tags_user_env; timestamps and doubles): every row, BilledCost = the CSV's lineItem/UnblendedCost total,
    0 FOCUS violations, and row for row the FOCUS columns the CSV gives, Tags included (AWS's Parquet names drop the
    case and colons of aws: tag keys: aws:createdBy is aws_created_by)."""
    tagged = tmp_path / "tagged.csv"
    tagged_cur(tagged)
    parquet = tmp_path / "cur.snappy.parquet"
    to_parquet(tagged, parquet)
    roots = {kind: make_hub(tmp_path / kind) for kind in ("csv", "parquet")}
    folder = "cur/my-report/20231101-20231201/abc-123"
    deliver(roots["csv"], folder, {"my-report-00001.csv": tagged.read_bytes()})
    deliver(roots["parquet"], folder, {"my-report-00001.snappy.parquet": parquet.read_bytes()})
    records = {kind: ingested(root) for kind, root in roots.items()}

    with open(CUR, newline="", encoding="utf-8") as fh:
        source = list(csv.DictReader(fh))
    unblended = sum((D(r["lineItem/UnblendedCost"]) for r in source), D(0))
    assert unblended == D("1.68230869740")  # the report's own total, summed from its text
    (rec,) = records["parquet"]
    assert rec.rowsIn == rec.rowsOut == len(source) == 1281
    assert D(rec.totalsIn["USD"]["BilledCost"]) == unblended and list(rec.totalsIn) == ["USD"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(roots['parquet'])} WHERE BillingCurrency = 'USD'") == unblended
    report = validate(str(roots["parquet"]))
    assert report.violations == 0, report.summary()

    # 1269 usage rows (798 of them Amazon S3) and 12 tax rows (1 of them Amazon S3)
    assert sum(r["lineItem/LineItemType"] == "Usage" for r in source) == 1269
    assert sum(r["lineItem/ProductCode"] == "AmazonS3" and r["lineItem/LineItemType"] == "Usage" for r in source) == 798
    tags = dict(duckdb.connect().execute(f"SELECT Tags, count(*) FROM {lake(roots['parquet'])} GROUP BY 1").fetchall())
    assert tags == {'{"env":"prod"}': 1269 - 798, '{"env":"prod","team":"data","aws_created_by":"alice"}': 798,
                    '{"team":"data","aws_created_by":"alice"}': 1, "{}": 12 - 1}

    skip = {"x_IngestionTime"}
    names = [r[0] for r in duckdb.connect().execute(f"DESCRIBE SELECT * FROM {lake(roots['parquet'])}").fetchall()
             if r[0] not in skip]
    cols = ", ".join(ident(n) for n in names)
    from_csv = f"SELECT * REPLACE (replace(Tags, '\"aws:createdBy\"', '\"aws_created_by\"') AS Tags) FROM {lake(roots['csv'])}"
    for a, b in ((f"SELECT {cols} FROM ({from_csv})", f"SELECT {cols} FROM {lake(roots['parquet'])}"),
                 (f"SELECT {cols} FROM {lake(roots['parquet'])}", f"SELECT {cols} FROM ({from_csv})")):
        assert one(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})") == 0


# --- 2. CUR 2.0 map columns -----------------------------------------------------------------------------------------

CUR2_TYPES = {"product": "MAP(VARCHAR, VARCHAR)", "resource_tags": "MAP(VARCHAR, VARCHAR)",
              "cost_category": "MAP(VARCHAR, VARCHAR)", "discount": "MAP(VARCHAR, DOUBLE)"}
CUR2_COMMON: dict[str, object] = {
    "bill_bill_type": "Anniversary", "bill_billing_entity": "AWS", "bill_invoice_id": "EUINGB25-123456",
    "bill_invoicing_entity": "Amazon Web Services EMEA SARL", "bill_payer_account_id": "210987654321",
    "bill_payer_account_name": "Acme Payer", "bill_billing_period_start_date": "2025-02-01T00:00:00Z",
    "bill_billing_period_end_date": "2025-03-01T00:00:00Z", "line_item_usage_account_id": "012345678901",
    "line_item_usage_account_name": "acme-prod", "line_item_currency_code": "USD",
    "line_item_legal_entity": "Amazon Web Services EMEA SARL", "line_item_usage_start_date": "2025-02-03T00:00:00Z",
    "line_item_usage_end_date": "2025-02-04T00:00:00Z", "line_item_net_unblended_cost": None, "product_region_code": None,
    "savings_plan_savings_plan_a_r_n": None, "savings_plan_savings_plan_effective_cost": None,
    "resource_tags": {}, "cost_category": {}, "discount": {},
}
CUR2_ROWS: list[dict[str, object]] = [
    # on-demand EC2, an EDP discount in the net cost and the discount map; tags, a cost category
    {"line_item_line_item_type": "Usage", "line_item_product_code": "AmazonEC2", "line_item_usage_type": "BoxUsage:m5.large",
     "line_item_operation": "RunInstances", "line_item_resource_id": "i-0123456789abcdef0", "line_item_usage_amount": "24",
     "line_item_unblended_rate": "0.096", "line_item_unblended_cost": "2.304", "line_item_net_unblended_cost": "2.0736",
     "line_item_line_item_description": "ec2", "pricing_public_on_demand_rate": "0.096",
     "pricing_public_on_demand_cost": "2.304", "pricing_unit": "Hrs", "pricing_rate_code": "ABCD.JRTCKXETXF.6YS6EN2CT7",
     "pricing_purchase_option": "OnDemand", "product_region_code": "us-east-1", "product_location": "US East (N. Virginia)",
     "product_sku": "ABCD", "product_servicecode": "AmazonEC2",
     "product": {"product_name": "Amazon Elastic Compute Cloud", "region": "us-east-1", "instance_type": "m5.large"},
     "resource_tags": {"user_env": "prod", "user_cost_center": "cc-42", "aws_created_by": "AssumedRole:AROAEXAMPLE:alice"},
     "cost_category": {"team": "platform"}, "discount": {"edp_discount": -0.2304}},
    # S3 storage: the region only in the product map, no tags
    {"line_item_line_item_type": "Usage", "line_item_product_code": "AmazonS3", "line_item_usage_type": "EUW1-TimedStorage-ByteHrs",
     "line_item_operation": "StandardStorage", "line_item_resource_id": "acme-logs", "line_item_usage_amount": "20",
     "line_item_unblended_rate": "0.023", "line_item_unblended_cost": "0.46", "line_item_line_item_description": "s3",
     "pricing_public_on_demand_rate": "0.023", "pricing_public_on_demand_cost": "0.46", "pricing_unit": "GB-Mo",
     "pricing_rate_code": "EFGH.JRTCKXETXF.PGHJ3S3EYE", "pricing_purchase_option": "OnDemand", "product_location": "EU (Ireland)",
     "product_sku": "EFGH", "product_servicecode": "AmazonS3",
     "product": {"product_name": "Amazon Simple Storage Service", "region": "eu-west-1"}},
    # Lambda covered by a savings plan: the service's name only as servicename; an empty tag value is no tag
    {"line_item_line_item_type": "SavingsPlanCoveredUsage", "line_item_product_code": "AWSLambda",
     "line_item_usage_type": "Lambda-GB-Second", "line_item_operation": "Invoke",
     "line_item_resource_id": "arn:aws:lambda:us-east-1:123456789012:function:thumbnailer", "line_item_usage_amount": "1000",
     "line_item_unblended_rate": "0.00001", "line_item_unblended_cost": "0.01", "line_item_net_unblended_cost": "0.01",
     "line_item_line_item_description": "lambda", "pricing_public_on_demand_rate": "0.00001",
     "pricing_public_on_demand_cost": "0.01", "pricing_unit": "Lambda-GB-Second", "pricing_rate_code": "IJKL.SP",
     "pricing_purchase_option": "OnDemand", "product_region_code": "us-east-1", "product_location": "US East (N. Virginia)",
     "product_sku": "IJKL", "product_servicecode": "AWSLambda", "product": {"servicename": "AWS Lambda", "region": "us-east-1"},
     "resource_tags": {"user_env": "dev", "user_team": ""},
     "savings_plan_savings_plan_a_r_n": "arn:aws:savingsplans::210987654321:savingsplan/sp-0002",
     "savings_plan_savings_plan_effective_cost": "0.0083"},
    # tax for the month: an empty product map, so the service is its product code
    {"line_item_line_item_type": "Tax", "line_item_product_code": "AmazonEC2", "line_item_usage_amount": "1",
     "line_item_unblended_cost": "0.15", "line_item_net_unblended_cost": "0.15", "line_item_line_item_description": "tax",
     "line_item_tax_type": "VAT", "line_item_usage_start_date": "2025-02-01T00:00:00Z",
     "line_item_usage_end_date": "2025-03-01T00:00:00Z", "product": {}},
]
#: description -> BilledCost, EffectiveCost, RegionId, ServiceName, ServiceCategory, Tags, x_CostCategories, x_Discounts
CUR2_EXPECTED = {
    "ec2": (D("2.0736"), D("2.0736"), "us-east-1", "Amazon Elastic Compute Cloud", "Compute",
            {"env": "prod", "cost_center": "cc-42", "aws_created_by": "AssumedRole:AROAEXAMPLE:alice"}, {"team": "platform"},
            {"edp_discount": D("-0.2304")}),
    "s3": (D("0.46"), D("0.46"), "eu-west-1", "Amazon Simple Storage Service", "Storage", {}, {}, {}),
    "lambda": (D("0.01"), D("0.0083"), "us-east-1", "AWS Lambda", "Compute", {"env": "dev"}, {}, {}),
    "tax": (D("0.15"), D("0.15"), None, "AmazonEC2", "Compute", {}, {}, {}),
}


def test_a_cur_a_tool_converted_to_parquet_with_its_own_types_lands_like_its_csv(tmp_path: Path) -> None:
    """Review of stop 41: the real legacy CUR converted to Parquet by DuckDB's own type detection (``COPY (FROM
    read_csv(...)) TO 'cur.parquet'``: pricing/RateId and bill/PayerAccountId BIGINT, a numeric tag value BIGINT) was
    InternalError (``Cannot mix values of type VARCHAR and BIGINT in COALESCE``; ``trim(BIGINT)``); a cost column of
    flags (BOOLEAN) was read as 1 and 0. Ids and tags are read as their text: every row, BilledCost the CSV's own
    total (1.6823086974), the numeric tag ``{"CostCenter": "1234"}``; a flag where a cost belongs is InvalidValue."""
    tagged = tmp_path / "tagged.csv"
    with open(CUR, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(tagged, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [*rows[0], "resourceTags/user:CostCenter"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "resourceTags/user:CostCenter": "1234"} for r in rows)
    root = make_hub(tmp_path / "hub")
    base = root / "exports/aws/cur/r/20231101-20231201/x"
    base.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"COPY (FROM read_csv({literal(str(tagged))})) TO {literal(str(base / 'r-00001.parquet'))} (FORMAT parquet)")
    typed = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE FROM {literal(str(base / 'r-00001.parquet'))})")
                 .fetchall())
    assert typed["pricing/RateId"] == typed["resourceTags/user:CostCenter"] == "BIGINT"
    (root / "exports/aws/cur/manifest.json").write_bytes(b"")
    (rec,) = ingested(root)
    assert rec.rowsIn == rec.rowsOut == 1281 and D(rec.totalsIn["USD"]["BilledCost"]) == D("1.6823086974")
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("1.6823086974")
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE json_extract_string(Tags, '$.CostCenter') = '1234'") == 1281
    flags = make_hub(tmp_path / "flags")
    base = flags / "exports/aws/cur/r/20231101-20231201/x"
    base.mkdir(parents=True)
    con.execute(f"COPY (SELECT * REPLACE (\"lineItem/UnblendedCost\" <> 0 AS \"lineItem/UnblendedCost\") FROM "
                f"read_csv({literal(str(CUR))})) TO {literal(str(base / 'r-00001.parquet'))} (FORMAT parquet)")
    (flags / "exports/aws/cur/manifest.json").write_bytes(b"")
    (bad,) = ingest(Store(str(flags))).records
    assert (bad.state, bad.error.code) == ("quarantined", "InvalidValue") and "UnblendedCost" in bad.error.message


def test_a_parquet_cur_with_its_athena_files_lands(tmp_path: Path) -> None:
    """Review of stop 40: a Parquet CUR with the Athena integration, synced as AWS lays it out
    (``<report>/<report>/year=…/month=…/`` with its -Manifest.json, ``cost_and_usage_data_status/`` holding a one-column
    status file, ``crawler-cfn.yml``), was SchemaMismatch on the status file: the whole bill blocked. The status file is
    no bill (``notData`` in schemas/aws/focus.json); the CUR's rows land."""
    parquet = tmp_path / "cur.snappy.parquet"
    to_parquet(CUR, parquet)
    root = make_hub(tmp_path / "hub")
    month = "athena-cur/year=2023/month=11"
    deliver(root, "cur/athena-cur", {
        f"{month}/athena-cur-00001.snappy.parquet": parquet.read_bytes(),
        f"{month}/athena-cur-Manifest.json": json.dumps({"reportKeys": [f"pfx/athena-cur/{month}/athena-cur-00001.snappy.parquet"]}),
        "crawler-cfn.yml": "AWSTemplateFormatVersion: 2010-09-09\n"})
    status = root / "exports/aws/cur/athena-cur/cost_and_usage_data_status"
    status.mkdir()
    duckdb.connect().execute(f"COPY (SELECT 'READY' AS status) TO '{status}/cost_and_usage_data_status.parquet' (FORMAT parquet)")
    (rec,) = ingested(root)
    assert rec.rowsOut == 1281 and not any("status" in p for p in rec.sourceFiles)
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("1.68230869740")


def cur2_parquet(out: Path) -> None:
    """CUR 2.0 rows as Data Exports writes them in Parquet: timestamps, doubles and MAP columns."""
    names = list(dict.fromkeys(k for r in [CUR2_COMMON, *CUR2_ROWS] for k in r))

    def value(name: str, v: object) -> str:
        typ = CUR2_TYPES.get(name) or ("TIMESTAMP" if name in TIMESTAMPS else "DOUBLE" if DOUBLE.match(name) else "VARCHAR")
        if v is None:
            return f"CAST(NULL AS {typ})"
        if isinstance(v, dict):
            entries = ", ".join(f"{literal(k)}: {literal(x) if isinstance(x, str) else repr(x)}" for k, x in v.items())
            return f"CAST(MAP {{{entries}}} AS {typ})"
        text = literal(str(v))
        return f"CAST(CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP)" if typ == "TIMESTAMP" else f"CAST({text} AS {typ})"

    selects = [", ".join(f"{value(n, {**CUR2_COMMON, **r}.get(n))} AS {ident(n)}" for n in names) for r in CUR2_ROWS]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({' UNION ALL '.join(f'SELECT {s}' for s in selects)}) TO {literal(str(out))} (FORMAT parquet)")


def cur2_csv() -> str:
    """The same rows as a CUR 2.0 CSV export: map columns as JSON text."""
    rows = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in {**CUR2_COMMON, **r}.items()} for r in CUR2_ROWS]
    return csv_text({}, rows)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_cur_2_0_map_columns_by_hand(tmp_path: Path, kind: str) -> None:
    """CUR 2.0's map columns, as Parquet maps or CSV JSON text: resource_tags -> Tags with user_ removed (as the legacy
    Parquet resource_tags_user_* columns; aws_ keys kept, empty values dropped), product['region'] where
    product_region_code is empty, product['product_name'] else product['servicename'] else the product code as
    ServiceName, cost_category -> x_CostCategories and discount -> x_Discounts as JSON; BilledCost the net unblended
    cost where there is one, the savings plan's effective cost as EffectiveCost; names of payer and account, the account id
    with its leading zero."""
    root = make_hub(tmp_path / "hub")
    folder = "cur2/acme-cur2/data/BILLING_PERIOD=2025-02"
    if kind == "parquet":
        cur2_parquet(tmp_path / "part.parquet")
        deliver(root, folder, {"acme-cur2-00001.snappy.parquet": (tmp_path / "part.parquet").read_bytes()})
    else:
        deliver(root, folder, {"acme-cur2-00001.csv": cur2_csv()})
    (rec,) = ingested(root)
    assert rec.destination == "ingestion/Costs/2025/02/aws/210987654321" and rec.rowsOut == 4
    assert D(rec.totalsIn["USD"]["BilledCost"]) == D("2.0736") + D("0.46") + D("0.01") + D("0.15")
    con = duckdb.connect()
    rows = {r[0]: r[1:] for r in con.execute(
        f"SELECT ChargeDescription, BilledCost, EffectiveCost, RegionId, ServiceName, ServiceCategory, Tags, x_CostCategories, "
        f"x_Discounts FROM {lake(root)}").fetchall()}
    got = {k: (*v[:5], *(json.loads(j, parse_float=D) for j in v[5:])) for k, v in rows.items()}
    assert got == CUR2_EXPECTED
    assert con.execute(f"SELECT DISTINCT BillingAccountName, SubAccountId, SubAccountName, InvoiceId, InvoiceIssuerName "
                       f"FROM {lake(root)}").fetchall() == [
        ("Acme Payer", "012345678901", "acme-prod", "EUINGB25-123456", "Amazon Web Services EMEA SARL")]
    assert con.execute(f"SELECT CommitmentDiscountStatus, CommitmentDiscountType, PricingCategory FROM {lake(root)} "
                       f"WHERE ChargeDescription = 'lambda'").fetchall() == [("Used", "Savings Plan", "Committed")]
    report = validate(str(root))
    assert report.violations == 0, report.summary()


# --- 3. every line item type: reservations and savings plans amortized ---------------------------------------------

RI = "arn:aws:ec2:us-east-1:111122223333:reserved-instances/11112222-aaaa-bbbb-cccc-333344445555"
SP = "arn:aws:savingsplans::111122223333:savingsplan/sp-0001"
#: One month (March 2024, 744 hours) of a legacy CUR with a 1-year partial-upfront reservation (0.03 / h upfront,
#: 0.03 / h recurring, used 100 of 744 hours) and a 1-year partial-upfront compute savings plan (0.05 / h upfront,
#: 0.05 / h recurring: 74.40 for the month, 6.00 of it used).
LINES_COMMON = {
    "bill/PayerAccountId": "111122223333", "bill/BillingPeriodStartDate": "2024-03-01T00:00:00Z",
    "bill/BillingPeriodEndDate": "2024-04-01T00:00:00Z", "bill/BillType": "Anniversary",
    "bill/InvoicingEntity": "Amazon Web Services, Inc.", "lineItem/LegalEntity": "Amazon Web Services, Inc.",
    "lineItem/UsageAccountId": "444455556666", "lineItem/CurrencyCode": "USD", "lineItem/UsageStartDate": "2024-03-01T00:00:00Z",
    "lineItem/UsageEndDate": "2024-04-01T00:00:00Z", "lineItem/ProductCode": "AmazonEC2",
    "product/ProductName": "Amazon Elastic Compute Cloud", "product/regionCode": "us-east-1",
}
LINES = [
    {"lineItem/LineItemDescription": "on-demand", "lineItem/LineItemType": "Usage", "lineItem/UsageType": "BoxUsage:m5.large",
     "lineItem/UsageAmount": "10", "lineItem/UnblendedRate": "0.096", "lineItem/UnblendedCost": "0.96",
     "lineItem/ResourceId": "arn:aws:ec2:us-east-1:444455556666:instance/i-01", "product/sku": "SKU1", "pricing/unit": "Hrs",
     "pricing/publicOnDemandRate": "0.096", "pricing/publicOnDemandCost": "0.96", "pricing/RateCode": "SKU1.OD"},
    {"lineItem/LineItemDescription": "ri usage", "lineItem/LineItemType": "DiscountedUsage", "lineItem/UsageType": "BoxUsage:m5.large",
     "lineItem/UsageAmount": "100", "lineItem/UnblendedRate": "0", "lineItem/UnblendedCost": "0",
     "lineItem/ResourceId": "arn:aws:ec2:us-east-1:444455556666:instance/i-02", "product/sku": "SKU1", "pricing/unit": "Hrs",
     "pricing/publicOnDemandRate": "0.096", "pricing/publicOnDemandCost": "9.6", "pricing/RateCode": "SKU1.RI",
     "reservation/ReservationARN": RI, "reservation/EffectiveCost": "6"},  # 100 h x (0.03 + 0.03)
    {"lineItem/LineItemDescription": "ri fee", "lineItem/LineItemType": "RIFee", "lineItem/UsageType": "HeavyUsage:m5.large",
     "lineItem/UsageAmount": "744", "lineItem/UnblendedRate": "0.03", "lineItem/UnblendedCost": "22.32", "product/sku": "SKU1",
     "pricing/unit": "Hrs", "pricing/RateCode": "SKU1.RIFEE", "reservation/ReservationARN": RI,
     "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "19.32", "reservation/UnusedRecurringFee": "19.32",
     "reservation/UnusedQuantity": "644"},  # 644 h
    {"lineItem/LineItemDescription": "ri upfront", "bill/BillType": "Purchase", "lineItem/LineItemType": "Fee",
     "lineItem/UsageType": "HeavyUsage:m5.large", "lineItem/UsageStartDate": "2024-03-10T00:00:00Z",
     "lineItem/UsageEndDate": "2024-03-10T01:00:00Z", "lineItem/UsageAmount": "1", "lineItem/UnblendedRate": "262.8",
     "lineItem/UnblendedCost": "262.8", "product/sku": "SKU1", "pricing/unit": "Quantity", "pricing/RateCode": "SKU1.UPFRONT",
     "reservation/ReservationARN": RI},
    {"lineItem/LineItemDescription": "sp usage", "lineItem/LineItemType": "SavingsPlanCoveredUsage",
     "lineItem/UsageType": "BoxUsage:m5.xlarge", "lineItem/UsageAmount": "50", "lineItem/UnblendedRate": "0.192",
     "lineItem/UnblendedCost": "9.6", "lineItem/ResourceId": "arn:aws:ec2:us-east-1:444455556666:instance/i-03",
     "product/sku": "SKU2", "pricing/unit": "Hrs", "pricing/publicOnDemandRate": "0.192", "pricing/publicOnDemandCost": "9.6",
     "pricing/RateCode": "SKU2.OD", "savingsPlan/SavingsPlanARN": SP, "savingsPlan/SavingsPlanEffectiveCost": "6"},
    {"lineItem/LineItemDescription": "sp negation", "lineItem/LineItemType": "SavingsPlanNegation",
     "lineItem/UsageType": "BoxUsage:m5.xlarge", "lineItem/UsageAmount": "50", "lineItem/UnblendedRate": "-0.192",
     "lineItem/UnblendedCost": "-9.6", "lineItem/ResourceId": "arn:aws:ec2:us-east-1:444455556666:instance/i-03",
     "product/sku": "SKU2", "pricing/unit": "Hrs", "pricing/RateCode": "SKU2.OD", "savingsPlan/SavingsPlanARN": SP},
    {"lineItem/LineItemDescription": "sp fee", "lineItem/LineItemType": "SavingsPlanRecurringFee",
     "lineItem/ProductCode": "ComputeSavingsPlans", "product/ProductName": "Savings Plans for AWS Compute usage",
     "lineItem/UsageType": "ComputeSP:1yrPartialUpfront", "lineItem/UsageAmount": "744", "lineItem/UnblendedRate": "0.05",
     "lineItem/UnblendedCost": "37.2", "product/sku": "SKU3", "pricing/unit": "Hrs", "pricing/RateCode": "SKU3.RECURRING",
     "savingsPlan/SavingsPlanARN": SP, "savingsPlan/TotalCommitmentToDate": "74.4", "savingsPlan/UsedCommitment": "6"},
    {"lineItem/LineItemDescription": "sp upfront", "bill/BillType": "Purchase", "lineItem/LineItemType": "SavingsPlanUpfrontFee",
     "lineItem/ProductCode": "ComputeSavingsPlans", "product/ProductName": "Savings Plans for AWS Compute usage",
     "lineItem/UsageType": "ComputeSP:1yrPartialUpfront", "lineItem/UsageStartDate": "2024-03-10T00:00:00Z",
     "lineItem/UsageEndDate": "2024-03-10T01:00:00Z", "lineItem/UsageAmount": "1", "lineItem/UnblendedRate": "438",
     "lineItem/UnblendedCost": "438", "product/sku": "SKU3", "pricing/unit": "Quantity", "pricing/RateCode": "SKU3.UPFRONT",
     "savingsPlan/SavingsPlanARN": SP},
    {"lineItem/LineItemDescription": "credit", "lineItem/LineItemType": "Credit", "lineItem/UsageAmount": "0",
     "lineItem/UnblendedCost": "-5"},
    {"lineItem/LineItemDescription": "refund", "bill/BillType": "Refund", "lineItem/LineItemType": "Refund",
     "lineItem/UsageAmount": "0", "lineItem/UnblendedCost": "-2"},
    {"lineItem/LineItemDescription": "tax", "lineItem/LineItemType": "Tax", "lineItem/UsageAmount": "1",
     "lineItem/UnblendedCost": "3", "product/regionCode": "", "pricing/publicOnDemandCost": "0.0"},
    {"lineItem/LineItemDescription": "support", "lineItem/LineItemType": "Fee", "lineItem/ProductCode": "AWSSupportBusiness",
     "product/ProductName": "AWS Support (Business)", "product/regionCode": "", "lineItem/UsageType": "Dollar",
     "lineItem/UsageAmount": "1", "lineItem/UnblendedRate": "100", "lineItem/UnblendedCost": "100", "product/sku": "SKU4",
     "pricing/unit": "Dollar", "pricing/RateCode": "SKU4.FEE"},
    {"lineItem/LineItemDescription": "edp", "lineItem/LineItemType": "EdpDiscount", "lineItem/UsageType": "BoxUsage:m5.large",
     "lineItem/UsageAmount": "0", "lineItem/UnblendedCost": "-0.096", "product/sku": "SKU1", "pricing/unit": "Hrs",
     "pricing/RateCode": "SKU1.EDP"},
]
RI_, SP_ = ("Reserved Instance", "Usage"), ("Savings Plan", "Spend")
#: description -> ChargeCategory, ChargeClass, ChargeFrequency, CommitmentDiscountId, CommitmentDiscountType, -Category,
#: -Status, PricingCategory, BilledCost (the unblended cost), EffectiveCost (amortized)
LINES_EXPECTED = {
    "on-demand": ("Usage", None, "Usage-Based", None, None, None, None, "Standard", D("0.96"), D("0.96")),
    "ri usage": ("Usage", None, "Usage-Based", RI, *RI_, "Used", "Committed", D("0"), D("6")),
    # the recurring fee billed; its unused hours amortized: 644 h x (0.03 upfront + 0.03 recurring)
    "ri fee": ("Usage", None, "Recurring", RI, *RI_, "Unused", "Committed", D("22.32"), D("38.64")),
    "ri upfront": ("Purchase", None, "One-Time", RI, *RI_, None, "Committed", D("262.8"), D("0")),
    "sp usage": ("Usage", None, "Usage-Based", SP, *SP_, "Used", "Committed", D("9.6"), D("6")),
    "sp negation": ("Usage", None, "Usage-Based", SP, *SP_, "Used", "Committed", D("-9.6"), D("0")),
    # the recurring fee billed; the month's commitment (74.40, upfront share included) less what was used (6.00)
    "sp fee": ("Usage", None, "Recurring", SP, *SP_, "Unused", "Committed", D("37.2"), D("68.4")),
    "sp upfront": ("Purchase", None, "One-Time", SP, *SP_, None, "Committed", D("438"), D("0")),
    "credit": ("Credit", None, "One-Time", None, None, None, None, "Other", D("-5"), D("-5")),
    "refund": ("Usage", "Correction", "One-Time", None, None, None, None, None, D("-2"), D("-2")),
    "tax": ("Tax", None, "One-Time", None, None, None, None, None, D("3"), D("3")),
    "support": ("Purchase", None, "One-Time", None, None, None, None, "Standard", D("100"), D("100")),
    "edp": ("Usage", None, "Usage-Based", None, None, None, None, "Standard", D("-0.096"), D("-0.096")),
}


@pytest.mark.parametrize("kind", ["csv", "parquet", "parquet-empty-texts"])
def test_line_item_types_and_amortization_by_hand(tmp_path: Path, kind: str) -> None:
    """Every line item type of a month with a reservation and a savings plan, as CSV and as AWS's Parquet: FOCUS
    categories, classes, frequencies, commitment columns and pricing categories row by row; BilledCost sums to the
    report's unblended total (857.184) and EffectiveCost to the amortized total (215.904: on-demand 0.96, reservation
    6.00 used + 38.64 unused = 744 h x 0.06, savings plan 6.00 used + 68.40 unused = 744 h x 0.10, credit -5, refund -2,
    tax 3, support 100, EDP discount -0.096; upfront fees and the negation 0); 0 FOCUS violations. Recurring commitment
    fees are Usage rows with CommitmentDiscountStatus Unused: FOCUS 1.0 wants EffectiveCost 0 on commitment purchases,
    and a CUR row is both the fee and the unused commitment. Discounts and negations have no list price (0). AWS's
    Parquet CURs write ``''`` in the text cells a row does not use: no value, as in the CSV (not a savings plan ARN on
    every row, nor an empty reservation ARN hiding the row's own)."""
    root = make_hub(tmp_path / "hub")
    text = tmp_path / "r-00001.csv"
    text.write_text(csv_text(LINES_COMMON, LINES))
    name = "r-00001.csv"
    if kind.startswith("parquet"):
        to_parquet(text, tmp_path / "r-00001.snappy.parquet", empty=kind == "parquet-empty-texts")
        name, text = "r-00001.snappy.parquet", tmp_path / "r-00001.snappy.parquet"
    deliver(root, "cur/r/20240301-20240401/x", {name: text.read_bytes()})
    (rec,) = ingested(root)
    con = duckdb.connect()
    rows = {r[0]: r[1:] for r in con.execute(
        f"SELECT ChargeDescription, ChargeCategory, ChargeClass, ChargeFrequency, CommitmentDiscountId, CommitmentDiscountType, "
        f"CommitmentDiscountCategory, CommitmentDiscountStatus, PricingCategory, BilledCost, EffectiveCost FROM {lake(root)}").fetchall()}
    assert rows == LINES_EXPECTED
    unblended = sum((D(str(r["lineItem/UnblendedCost"])) for r in LINES), D(0))
    assert unblended == D("857.184") and D(rec.totalsIn["USD"]["BilledCost"]) == unblended
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == unblended
    assert one(f"SELECT sum(EffectiveCost) FROM {lake(root)}") == D("215.904")
    prices = {r[0]: r[1:] for r in con.execute(f"SELECT ChargeDescription, ListUnitPrice, ListCost FROM {lake(root)} WHERE "
                                               "ChargeDescription IN ('ri fee', 'sp upfront', 'sp negation', 'edp', 'tax', 'credit', "
                                               "'refund')").fetchall()}
    # a tax's list cost is the tax (AWS writes publicOnDemandCost 0.0 on it: ListCost 0 under a ContractedCost of 3); a
    # credit's and a refund's without an on-demand cost are theirs too, as FOCUS says of a credit (AWS's FOCUS export
    # does so): 0 made the month's list cost depend on whether AWS wrote 0.0 or nothing (review of stop 37)
    assert {k: v[1] for k, v in prices.items()} == {
        "ri fee": D("22.32"), "sp upfront": D("438"), "sp negation": D(0), "edp": D(0), "tax": D(3), "credit": D(-5),
        "refund": D(-2)}
    assert {k: prices[k][0] for k in ("ri fee", "sp upfront", "sp negation", "edp", "tax")} == {
        "ri fee": D("0.03"), "sp upfront": D("438"), "sp negation": D(0), "edp": D(0), "tax": None}
    # the reservation's fee row consumed its unused hours (644 of 744), not every reserved hour (review of stop 37)
    assert con.execute(f"SELECT PricingQuantity, ConsumedQuantity, ConsumedUnit FROM {lake(root)} "
                       "WHERE ChargeDescription = 'ri fee'").fetchall() == [(D(744), D(644), "Hrs")]
    report = validate(str(root))
    assert report.violations == 0, report.summary()


@pytest.mark.parametrize(("dropped", "named"), [
    (("reservation/UnusedAmortizedUpfrontFeeForBillingPeriod", "reservation/UnusedRecurringFee"),
     "reservation_unused_amortized_upfront_fee_for_billing_period, reservation_unused_recurring_fee"),
    (("reservation/ReservationARN",), "reservation_reservation_a_r_n"),
])
def test_reservation_rows_without_what_their_amortized_cost_needs_are_refused(tmp_path: Path, dropped: tuple[str, ...],
                                                                              named: str) -> None:
    """A report trimmed of a reservation's unused-fee columns took them as 0 (the month's EffectiveCost 6.00 instead of
    44.64: the unused 38.64 gone); trimmed of its ARN, the upfront fee kept its 262.80 while also amortized into the
    usage and fee rows (counted twice), all committed (review of stop 37). Now InvalidValue naming the columns."""
    root = make_hub(tmp_path / "hub")
    rows = [{k: v for k, v in r.items() if k not in dropped} for r in LINES
            if r["lineItem/LineItemDescription"] in ("ri usage", "ri fee", "ri upfront")]
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(LINES_COMMON, rows)})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "InvalidValue")
    assert named in rec.error.message and rec.error.message.startswith("EffectiveCost is empty on")
    assert not list((root / "ingestion").rglob("*.parquet"))


def test_a_reservation_used_in_full_consumed_nothing_unused_and_its_upfront_fee_is_a_purchase(tmp_path: Path) -> None:
    """A fee row whose reservation left 0 hours unused kept PricingQuantity as consumed (744 h on top of the 744 h used);
    a reservation's upfront fee (HeavyUsage) whose row has no ARN is still a commitment purchase: EffectiveCost 0, its
    amortized cost is on the fee and usage rows (review of stop 37)."""
    root = make_hub(tmp_path / "hub")
    fee = {**next(r for r in LINES if r["lineItem/LineItemDescription"] == "ri fee"), "reservation/UnusedQuantity": "0",
           "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "0", "reservation/UnusedRecurringFee": "0"}
    upfront = {k: v for k, v in next(r for r in LINES if r["lineItem/LineItemDescription"] == "ri upfront").items()
               if k != "reservation/ReservationARN"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(LINES_COMMON, [fee, upfront])})
    ingested(root)
    rows = duckdb.sql(f"SELECT ChargeDescription, ConsumedQuantity, BilledCost, EffectiveCost FROM {lake(root)} ORDER BY 1").fetchall()
    assert rows == [("ri fee", D(0), D("22.32"), D(0)), ("ri upfront", None, D("262.8"), D(0))]


def test_commitments_used_in_full_leave_nothing_unused(tmp_path: Path) -> None:
    """Review of stop 38: a reservation's fee row whose UnusedQuantity AWS left empty, and a savings plan's recurring fee
    (no quantity column of its own), took their PricingQuantity as consumed: every committed hour reported unused at 100 %
    use. The RIFee's empty unused quantity is 0; a savings plan's unused hours are its fee's hours x the unused share of
    its commitment: 744 x (74.4 - 6) / 74.4 = 684, and 0 when used in full."""
    root = make_hub(tmp_path / "hub")
    line = {r["lineItem/LineItemDescription"]: r for r in LINES}
    fee = {**line["ri fee"], "reservation/UnusedQuantity": "", "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "0",
           "reservation/UnusedRecurringFee": "0"}
    full = {**line["sp fee"], "lineItem/LineItemDescription": "sp fee used in full", "savingsPlan/UsedCommitment": "74.4"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(LINES_COMMON, [fee, line["sp fee"], full])})
    ingested(root)
    rows = duckdb.sql(f"SELECT ChargeDescription, CommitmentDiscountStatus, ConsumedQuantity, ConsumedUnit FROM {lake(root)} "
                      "ORDER BY 1").fetchall()
    assert rows == [("ri fee", "Unused", D(0), "Hrs"), ("sp fee", "Unused", D(684), "Hrs"), ("sp fee used in full", "Unused", D(0), "Hrs")]
    assert validate(str(root)).ok


def test_a_savings_plan_fee_without_a_used_commitment_is_unused_in_full(tmp_path: Path) -> None:
    """Review of stop 40: a SavingsPlanRecurringFee row whose savingsPlan/UsedCommitment cell is empty (an hour nothing
    used the plan) was InvalidValue, telling the user to export reservation columns; the empty cell is 0 used, as the
    unused hours' rule already read it: its EffectiveCost is the whole commitment, 74.4 - 0, its 744 hours unused."""
    root = make_hub(tmp_path / "hub")
    line = {r["lineItem/LineItemDescription"]: r for r in LINES}
    idle = {**line["sp fee"], "savingsPlan/UsedCommitment": ""}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(LINES_COMMON, [idle])})
    ingested(root)
    assert duckdb.sql(f"SELECT EffectiveCost, ConsumedQuantity FROM {lake(root)}").fetchall() == [(D("74.4"), D(744))]


# --- 4. resource tags ------------------------------------------------------------------------------------------------

TAGGED = [
    {"lineItem/LineItemDescription": "all", "resourceTags/user:Env": "prod", "resourceTags/user:cost-center": "cc 42",
     "resourceTags/aws:createdBy": "AssumedRole:AROAEXAMPLE:alice", "resourceTags/aws:cloudformation:stack-name": "web",
     "resourceTags/user:Name": 'say "hi", équipe'},
    {"lineItem/LineItemDescription": "one", "resourceTags/user:Env": "dev"},
    {"lineItem/LineItemDescription": "none"},
]
TAGGED_MAPS = [
    {"line_item_line_item_description": "clash", "resource_tags": {"user_env": "prod", "env": "old"}},
    {"line_item_line_item_type": "Usage", "line_item_line_item_description": "colon", "resource_tags": {"user:team": "web"}},
]


def test_resource_tags_by_hand(tmp_path: Path) -> None:
    """Legacy resourceTags/user:* columns -> Tags keys without user: (the key's own spelling kept), resourceTags/aws:*
    keys as they are, empty cells no tag, values JSON-escaped, a row without tags {}; CUR 2.0's resource_tags map keeps a
    user_ key whose short form is already a key, and drops user: too."""
    root = make_hub(tmp_path / "hub")
    usage = {"lineItem/LineItemType": "Usage", "lineItem/UsageAmount": "1", "lineItem/UnblendedCost": "1",
             "pricing/publicOnDemandRate": "1", "pricing/publicOnDemandCost": "1", "pricing/unit": "Hrs",
             "product/sku": "SKU1", "lineItem/ResourceId": "arn:aws:ec2:us-east-1:444455556666:instance/i-01"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text({**LINES_COMMON, **usage}, TAGGED)})
    cur2 = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in {**CUR2_COMMON, **CUR2_ROWS[1], **r}.items()}
            for r in TAGGED_MAPS]
    deliver(root, "cur2/x/data/BILLING_PERIOD=2025-02", {"x-00001.csv": csv_text({}, cur2)})
    assert len(ingested(root)) == 2
    tags = {r[0]: json.loads(r[1]) for r in duckdb.connect().execute(f"SELECT ChargeDescription, Tags FROM {lake(root)}").fetchall()}
    assert tags == {
        "all": {"Env": "prod", "cost-center": "cc 42", "aws:createdBy": "AssumedRole:AROAEXAMPLE:alice",
                "aws:cloudformation:stack-name": "web", "Name": 'say "hi", équipe'},
        "one": {"Env": "dev"},
        "none": {},
        "clash": {"user_env": "prod", "env": "old"},
        "colon": {"team": "web"},
    }
    report = validate(str(root))
    assert report.violations == 0, report.summary()


NET = [
    {"lineItem/LineItemDescription": "on-demand", "lineItem/LineItemType": "Usage", "lineItem/UnblendedCost": "1",
     "lineItem/NetUnblendedCost": "0.9"},
    {"lineItem/LineItemDescription": "ri usage", "lineItem/LineItemType": "DiscountedUsage", "lineItem/UnblendedCost": "0",
     "lineItem/NetUnblendedCost": "0", "reservation/ReservationARN": RI, "reservation/EffectiveCost": "0.6",
     "reservation/NetEffectiveCost": "0.54"},
    {"lineItem/LineItemDescription": "ri fee", "lineItem/LineItemType": "RIFee", "lineItem/UnblendedCost": "2",
     "lineItem/NetUnblendedCost": "1.8", "reservation/ReservationARN": RI,
     "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "0.5", "reservation/NetUnusedAmortizedUpfrontFeeForBillingPeriod": "0.45",
     "reservation/UnusedRecurringFee": "0.7", "reservation/NetUnusedRecurringFee": "0.63"},
    {"lineItem/LineItemDescription": "sp usage", "lineItem/LineItemType": "SavingsPlanCoveredUsage", "lineItem/UnblendedCost": "1",
     "lineItem/NetUnblendedCost": "1", "savingsPlan/SavingsPlanARN": SP, "savingsPlan/SavingsPlanEffectiveCost": "0.7",
     "savingsPlan/NetSavingsPlanEffectiveCost": "0.63"},
    {"lineItem/LineItemDescription": "sp negation", "lineItem/LineItemType": "SavingsPlanNegation", "lineItem/UnblendedCost": "-1",
     "lineItem/NetUnblendedCost": "-1", "savingsPlan/SavingsPlanARN": SP},
]


def test_net_columns_are_used_where_the_report_has_them(tmp_path: Path) -> None:
    """With a negotiated discount (EDP) the CUR has net columns, and the lake takes them: BilledCost the net unblended
    cost, EffectiveCost the reservation's and savings plan's net effective cost and the reservation's net unused fees:
    billed 0.9 + 0 + 1.8 + 1 - 1 = 2.7, effective 0.9 + 0.54 + (0.45 + 0.63) + 0.63 + 0 = 3.15."""
    root = make_hub(tmp_path / "hub")
    common = {**LINES_COMMON, "lineItem/UsageAmount": "1", "product/sku": "SKU1", "pricing/unit": "Hrs",
              "pricing/publicOnDemandRate": "1", "pricing/publicOnDemandCost": "1"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(common, NET)})
    (rec,) = ingested(root)
    rows = dict(duckdb.connect().execute(f"SELECT ChargeDescription, [BilledCost, EffectiveCost] FROM {lake(root)}").fetchall())
    assert rows == {"on-demand": [D("0.9"), D("0.9")], "ri usage": [D(0), D("0.54")], "ri fee": [D("1.8"), D("1.08")],
                    "sp usage": [D(1), D("0.63")], "sp negation": [D(-1), D(0)]}
    assert D(rec.totalsIn["USD"]["BilledCost"]) == D("2.7") and D(rec.totalsIn["USD"]["EffectiveCost"]) == D("3.15")


CONTRACTED = [
    {"lineItem/LineItemDescription": "edp usage", "lineItem/LineItemType": "Usage", "lineItem/UsageAmount": "10",
     "pricing/publicOnDemandRate": "0.1", "pricing/publicOnDemandCost": "1", "lineItem/UnblendedRate": "0.1",
     "lineItem/UnblendedCost": "1", "lineItem/NetUnblendedRate": "0.09", "lineItem/NetUnblendedCost": "0.9"},
    {"lineItem/LineItemDescription": "edp sp usage", "lineItem/LineItemType": "SavingsPlanCoveredUsage",
     "lineItem/UsageAmount": "10", "pricing/publicOnDemandRate": "0.1", "pricing/publicOnDemandCost": "1",
     "lineItem/UnblendedRate": "0.1", "lineItem/UnblendedCost": "1", "lineItem/NetUnblendedRate": "0.09",
     "lineItem/NetUnblendedCost": "0.9", "savingsPlan/SavingsPlanARN": SP, "savingsPlan/SavingsPlanEffectiveCost": "0.7",
     "savingsPlan/NetSavingsPlanEffectiveCost": "0.63"},
    {"lineItem/LineItemDescription": "tiered", "lineItem/LineItemType": "Usage", "lineItem/UsageAmount": "100",
     "pricing/publicOnDemandRate": "0.023", "pricing/publicOnDemandCost": "2.3", "lineItem/UnblendedRate": "0.022",
     "lineItem/UnblendedCost": "2.2"},
    {"lineItem/LineItemDescription": "free tier", "lineItem/LineItemType": "Usage", "lineItem/UsageAmount": "5",
     "pricing/publicOnDemandRate": "0.01", "pricing/publicOnDemandCost": "0.05", "lineItem/UnblendedRate": "0",
     "lineItem/UnblendedCost": "0"},
    {"lineItem/LineItemDescription": "ri usage", "lineItem/LineItemType": "DiscountedUsage", "lineItem/UsageAmount": "10",
     "pricing/publicOnDemandRate": "0.1", "pricing/publicOnDemandCost": "1", "lineItem/UnblendedRate": "0",
     "lineItem/UnblendedCost": "0", "reservation/ReservationARN": RI, "reservation/EffectiveCost": "0.6",
     "reservation/NetEffectiveCost": "0.54"},
]


def test_contracted_cost_is_the_rate_the_account_pays_before_commitments(tmp_path: Path) -> None:
    """Review of stop 35: a legacy CUR's ContractedCost was never mapped but taken from the list price, so an EDP
    discount (net columns), a lower tier or the free tier was no negotiated saving (x_NegotiatedDiscountSavings 0,
    x_CommitmentDiscountSavings overstated by the EDP discount on savings-plan usage). Usage and savings-plan covered
    usage cost the net unblended cost (else the unblended) at the net (else unblended) rate before commitments;
    reservation-covered usage, whose unblended cost is 0, keeps the on-demand list cost (the CUR has no negotiated
    on-demand cost for it). By hand (list, contracted, effective, negotiated, commitment, total savings):
    EDP usage 1, 0.9, 0.9, 0.1, 0, 0.1; EDP savings-plan usage 1, 0.9, 0.63 (net SP effective), 0.1, 0.27, 0.37;
    a lower tier 2.3, 2.2 (100 x 0.022), 2.2, 0.1, 0, 0.1; the free tier 0.05, 0, 0, 0.05, 0, 0.05; RI usage 1, 1,
    0.54, 0, 0.46, 0.46."""
    root = make_hub(tmp_path / "hub")
    common = {**LINES_COMMON, "product/sku": "SKU1", "pricing/unit": "Hrs", "pricing/RateCode": "SKU1.OD"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(common, CONTRACTED)})
    (rec,) = ingested(root)
    assert rec.state == "committed", rec.error
    got = {r[0]: tuple(r[1:]) for r in duckdb.connect().execute(
        f"SELECT ChargeDescription, ListCost, ContractedCost, ContractedUnitPrice, EffectiveCost, x_NegotiatedDiscountSavings, "
        f"x_CommitmentDiscountSavings, x_TotalSavings FROM {lake(root)}").fetchall()}
    assert got == {
        "edp usage": (D(1), D("0.9"), D("0.09"), D("0.9"), D("0.1"), D(0), D("0.1")),
        "edp sp usage": (D(1), D("0.9"), D("0.09"), D("0.63"), D("0.1"), D("0.27"), D("0.37")),
        "tiered": (D("2.3"), D("2.2"), D("0.022"), D("2.2"), D("0.1"), D(0), D("0.1")),
        "free tier": (D("0.05"), D(0), D(0), D(0), D("0.05"), D(0), D("0.05")),
        "ri usage": (D(1), D(1), D("0.1"), D("0.54"), D(0), D("0.46"), D("0.46")),
    }
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_a_mapped_report_states_the_focus_version_it_is_mapped_to(tmp_path: Path) -> None:
    """Rows of a provider's own report carry the mapping's FOCUS version (1.0) in x_SourceVersion, also a tax row that
    has none of the columns the version is otherwise told by: no UnknownFocusVersion flag; and a tax row, which FOCUS
    gives no quantity, is not flagged MissingPricingQuantity."""
    from hub.sample_native import write_aws_cur

    root = make_hub(tmp_path / "hub")
    write_aws_cur(str(root), rows=40)
    assert ingest(Store(str(root))).ok
    got = duckdb.connect().execute(
        f"SELECT x_SourceVersion, count(*), count(*) FILTER (WHERE x_SourceChanges LIKE '%UnknownFocusVersion%'), "
        f"count(*) FILTER (WHERE ChargeCategory = 'Tax'), count(*) FILTER (WHERE ChargeCategory = 'Tax' AND PricingQuantity "
        f"IS NULL AND coalesce(x_SourceChanges, '') NOT LIKE '%MissingPricingQuantity%') "
        f"FROM read_parquet('{root}/ingestion/Costs/**/*.parquet') GROUP BY 1").fetchall()
    assert [(v, n, unknown) for v, n, unknown, _, _ in got] == [("1.0", 44, 0)] and got[0][3] == got[0][4] == 4
    skus = duckdb.connect().execute(f"SELECT count(*) FILTER (WHERE SkuId IS NOT NULL OR SkuPriceId IS NOT NULL) FROM "
                                    f"read_parquet('{root}/ingestion/Costs/**/*.parquet') WHERE ChargeCategory = 'Tax'")
    assert skus.fetchall() == [(0,)]  # FOCUS 1.0: no SkuId / SkuPriceId on Tax rows (product_sku's fallback filled them)


# --- AWS's own manifests say which files are read -------------------------------------------------------------------

PERIOD = "cur/r/20240301-20240401"


def usage(cost: str) -> str:
    """A one-row legacy CUR costing ``cost``."""
    return csv_text({**LINES_COMMON, "lineItem/UsageAmount": "1"}, [{"lineItem/LineItemType": "Usage",
                                                                      "lineItem/UnblendedCost": cost}])


def listing(*keys: str) -> str:
    return json.dumps({"assemblyId": keys[0].split("/")[-2], "reportKeys": list(keys)})


def test_only_the_assembly_the_billing_period_manifest_names_is_read(tmp_path: Path) -> None:
    """AWS keeps an older assembly beside the restated one ("create new report version") and each holds a copy of its
    manifest; the billing period's <report>-Manifest.json names the current one: 12.00 lands, not 10.00 + 12.00, and
    the older assembly's file is in skippedFiles."""
    root = make_hub(tmp_path / "hub")
    deliver(root, PERIOD, {
        "aaaa/r-00001.csv": usage("10.00"), "aaaa/r-Manifest.json": listing(f"{PERIOD}/aaaa/r-00001.csv"),
        "bbbb/r-00001.csv": usage("12.00"), "bbbb/r-Manifest.json": listing(f"{PERIOD}/bbbb/r-00001.csv"),
        "r-Manifest.json": listing(f"{PERIOD}/bbbb/r-00001.csv"),
    })
    (rec,) = ingested(root)
    assert rec.rowsOut == 1 and D(rec.totalsIn["USD"]["BilledCost"]) == D(12)
    assert rec.skippedFiles == [f"exports/aws/{PERIOD}/aaaa/r-00001.csv"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(12)


def test_an_older_assembly_arriving_late_does_not_replace_the_current_one(tmp_path: Path) -> None:
    """The restated assembly bbbb (12.00) is delivered in its own folder and lands; the older aaaa (10.00) arrives
    later in another: the billing period's manifest above both names bbbb, so aaaa's file is left out (a run of no
    rows listing it) and the month stays 12.00."""
    root = make_hub(tmp_path / "hub")
    (root / "exports" / "aws" / PERIOD).mkdir(parents=True)
    (root / "exports" / "aws" / PERIOD / "r-Manifest.json").write_text(listing(f"{PERIOD}/bbbb/r-00001.csv"))
    deliver(root, f"{PERIOD}/bbbb", {"r-00001.csv": usage("12.00")})
    ingested(root)
    deliver(root, f"{PERIOD}/aaaa", {"r-00001.csv": usage("10.00")})
    (late,) = ingested(root)
    assert (late.state, late.rowsOut, late.skippedFiles) == ("committed", 0, [f"exports/aws/{PERIOD}/aaaa/r-00001.csv"])
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(12)


def test_two_data_exports_executions_of_one_month_are_a_conflict(tmp_path: Path) -> None:
    """Review of stop 38: with the "create new report" option each refresh of a month lands in its own execution folder
    under ``data/BILLING_PERIOD=…/`` with its manifest under ``metadata/BILLING_PERIOD=…/``: both were read, the month
    counted twice (and reconciled: the input held both). Refused (``SourceConflict`` naming the partition) until a
    manifest of the whole partition names the current one."""
    root = make_hub(tmp_path / "hub")
    base = root / "exports" / "aws" / "cur2" / "acme-cur2"
    for ex in ("20250210T000000Z-exec1", "20250211T000000Z-exec2"):
        (base / "data/BILLING_PERIOD=2025-02" / ex).mkdir(parents=True)
        (base / "data/BILLING_PERIOD=2025-02" / ex / "acme-cur2-00001.csv").write_text(cur2_csv())
        (base / "metadata/BILLING_PERIOD=2025-02" / ex).mkdir(parents=True)
        (base / "metadata/BILLING_PERIOD=2025-02" / ex / "acme-cur2-Manifest.json").write_text(json.dumps(
            {"executionId": ex, "dataFiles": [f"s3://b/cur2/acme-cur2/data/BILLING_PERIOD=2025-02/{ex}/acme-cur2-00001.csv"]}))
    (base / "manifest.json").write_text("")
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SourceConflict",
                                                          "exports/aws/cur2/acme-cur2/data/BILLING_PERIOD=2025-02")
    assert not list((root / "ingestion").rglob("*.parquet"))
    (base / "metadata/BILLING_PERIOD=2025-02/acme-cur2-Manifest.json").write_text(json.dumps(
        {"dataFiles": ["s3://b/cur2/acme-cur2/data/BILLING_PERIOD=2025-02/20250211T000000Z-exec2/acme-cur2-00001.csv"]}))
    (done,) = ingest(Store(str(root)), retry=True).records
    assert (done.state, done.rowsOut) == ("committed", 4)
    assert done.skippedFiles == ["exports/aws/cur2/acme-cur2/data/BILLING_PERIOD=2025-02/20250210T000000Z-exec1/acme-cur2-00001.csv"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("2.0736") + D("0.46") + D("0.01") + D("0.15")


def test_a_restatement_synced_before_its_manifest_never_empties_the_month(tmp_path: Path) -> None:
    """Review of stop 38: ``aws s3 sync`` of a restatement brings assembly bbbb and the period manifest naming it before
    the hub's ``manifest.json`` of bbbb is written; aaaa's delivery (10.00), its files now all left out, withdrew its
    committed rows: the month was empty until bbbb landed, and stayed empty when bbbb was quarantined. The lake keeps
    aaaa's rows until bbbb's own delivery commits."""
    root = make_hub(tmp_path / "hub")
    (root / "exports" / "aws" / PERIOD).mkdir(parents=True)
    (root / "exports" / "aws" / PERIOD / "r-Manifest.json").write_text(listing(f"{PERIOD}/aaaa/r-00001.csv"))
    deliver(root, f"{PERIOD}/aaaa", {"r-00001.csv": usage("10.00")})
    ingested(root)
    (root / "exports" / "aws" / PERIOD / "bbbb").mkdir()
    (root / "exports" / "aws" / PERIOD / "bbbb" / "r-00001.csv").write_text("not,a\nCUR")  # a cut copy
    (root / "exports" / "aws" / PERIOD / "r-Manifest.json").write_text(listing(f"{PERIOD}/bbbb/r-00001.csv"))
    (again,) = ingested(root)  # aaaa's delivery again: its file left out, nothing withdrawn
    assert (again.state, again.rowsOut, again.skippedFiles) == ("committed", 0, [f"exports/aws/{PERIOD}/aaaa/r-00001.csv"])
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(10)
    (root / "exports" / "aws" / PERIOD / "bbbb" / "manifest.json").write_text("")
    (bad,) = ingest(Store(str(root))).records
    assert bad.state == "quarantined" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(10)
    (root / "exports" / "aws" / PERIOD / "bbbb" / "r-00001.csv").write_text(usage("12.00"))
    assert [r.state for r in ingest(Store(str(root)), retry=True).records] == ["committed"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(12)


def test_assemblies_in_their_own_deliveries_without_the_period_manifest_are_a_conflict(tmp_path: Path) -> None:
    """Each assembly synced into its own delivery with its manifest copy, and no billing-period manifest naming the
    current one: the one copied last (an older assembly, 10.00) must not replace the month (12.00). Both deliveries are
    refused (``SourceConflict`` naming the period's folder) and the lake keeps 12.00; once the period manifest is synced,
    the next pass (the watcher's too, with its listing checkpoint) lands the current assembly and leaves the older
    one's file out."""
    root = make_hub(tmp_path / "hub")
    deliver(root, f"{PERIOD}/bbbb", {"r-00001.csv": usage("12.00"), "r-Manifest.json": listing(f"{PERIOD}/bbbb/r-00001.csv")})
    (first,) = ingested(root)
    assert first.state == "committed"
    deliver(root, f"{PERIOD}/aaaa", {"r-00001.csv": usage("10.00"), "r-Manifest.json": listing(f"{PERIOD}/aaaa/r-00001.csv")})
    checkpoint: dict[str, str] = {}  # as the watcher passes it: deliveries found final are not read again
    again = ingest(Store(str(root)), checkpoint=checkpoint).records
    assert {(r.state, r.error.code if r.error else None) for r in again} == {("quarantined", "SourceConflict")}
    assert {r.error.file for r in again if r.error} == {f"exports/aws/{PERIOD}"}
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(12)
    (root / "exports" / "aws" / PERIOD / "r-Manifest.json").write_text(listing(f"{PERIOD}/bbbb/r-00001.csv"))
    result = ingest(Store(str(root)), checkpoint=checkpoint)  # the period manifest is a change the watcher sees
    assert result.ok, [r.error for r in result.all]
    fixed = {r.manifest: r for r in result.records}
    assert {r.state for r in fixed.values()} == {"committed"}
    assert fixed[f"exports/aws/{PERIOD}/aaaa/manifest.json"].skippedFiles == [f"exports/aws/{PERIOD}/aaaa/r-00001.csv"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(12)


def test_a_data_export_file_the_manifest_no_longer_lists_is_left_out(tmp_path: Path) -> None:
    """A Data Exports month restated from two files (5.00 + 3.00) into one (8.50) by AWS: `aws s3 sync` without
    --delete leaves the old -00002 beside it; the month's metadata manifest lists only -00001, so the lake holds 8.50."""
    root = make_hub(tmp_path / "hub")
    data, meta = "data/BILLING_PERIOD=2024-03", "metadata/BILLING_PERIOD=2024-03"
    uri = f"s3://bucket/cur2/e/{data}"
    deliver(root, "cur2/e", {f"{data}/e-00001.csv": usage("5.00"), f"{data}/e-00002.csv": usage("3.00"),
                             f"{meta}/e-Manifest.json": json.dumps({"dataFiles": [f"{uri}/e-00001.csv", f"{uri}/e-00002.csv"]})})
    ingested(root)
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(8)
    deliver(root, "cur2/e", {f"{data}/e-00001.csv": usage("8.50"),
                             f"{meta}/e-Manifest.json": json.dumps({"dataFiles": [f"{uri}/e-00001.csv"]})})
    (rec,) = ingested(root)
    assert rec.rowsOut == 1 and rec.skippedFiles == [f"exports/aws/cur2/e/{data}/e-00002.csv"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("8.5")


def test_a_data_exports_manifest_governs_a_delivery_below_the_export_root(tmp_path: Path) -> None:
    """Review of stop 40: a delivery whose ``manifest.json`` sits in ``data/BILLING_PERIOD=…/`` (or in an execution
    folder) never saw the ``metadata/BILLING_PERIOD=…/`` manifest speaking for it: a file a restatement dropped was read
    (11.50 where AWS says 8.50), two executions were summed, and each execution in its own delivery let the one whose
    ``manifest.json`` came last win (the older, 5.00). The metadata manifest governs wherever the delivery sits."""
    data, meta = "cur2/e/data/BILLING_PERIOD=2024-03", "cur2/e/metadata/BILLING_PERIOD=2024-03"
    uri = f"s3://bucket/{data}"
    root = make_hub(tmp_path / "restated")
    deliver(root, data, {"e-00001.csv": usage("5.00"), "e-00002.csv": usage("3.00")})
    (root / "exports" / "aws" / meta).mkdir(parents=True)
    (root / "exports" / "aws" / meta / "e-Manifest.json").write_text(
        json.dumps({"executionId": "1", "dataFiles": [f"{uri}/e-00001.csv", f"{uri}/e-00002.csv"]}))
    ingested(root)
    deliver(root, data, {"e-00001.csv": usage("8.50")})
    (root / "exports" / "aws" / meta / "e-Manifest.json").write_text(json.dumps({"executionId": "2", "dataFiles": [f"{uri}/e-00001.csv"]}))
    (rec,) = ingested(root)
    assert rec.skippedFiles == [f"exports/aws/{data}/e-00002.csv"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("8.5")

    def executions(root: Path, *, own: bool) -> None:
        for ex, cost in (("20240310T000000Z-e1", "5.00"), ("20240311T000000Z-e2", "5.50")):
            (root / "exports" / "aws" / data / ex).mkdir(parents=True)
            (root / "exports" / "aws" / data / ex / "e-00001.csv").write_text(usage(cost))
            (root / "exports" / "aws" / meta / ex).mkdir(parents=True)
            (root / "exports" / "aws" / meta / ex / "e-Manifest.json").write_text(
                json.dumps({"executionId": ex, "dataFiles": [f"{uri}/{ex}/e-00001.csv"]}))
        for ex in ("20240311T000000Z-e2", "20240310T000000Z-e1") if own else ():  # the older one's written last
            (root / "exports" / "aws" / data / ex / "manifest.json").write_text("")

    for own in (False, True):
        root = make_hub(tmp_path / f"executions-{own}")
        executions(root, own=own)
        if not own:
            (root / "exports" / "aws" / data / "manifest.json").write_text("")
        records = ingest(Store(str(root))).records
        assert {(r.state, r.error.code, r.error.file) for r in records if r.error} == {
            ("quarantined", "SourceConflict", f"exports/aws/{data}")}
        assert len(records) == (2 if own else 1) and not list((root / "ingestion").rglob("*.parquet"))


def test_two_reports_of_one_payer_in_one_delivery_are_a_conflict(tmp_path: Path) -> None:
    """Review of stop 40: an hourly and a daily CUR of one payer (or a legacy CUR and a CUR 2.0 export), synced under one
    ``manifest.json``, were both read: the month counted twice (2.00 of a 1.00 bill), each report's AWS manifest naming
    only its own files. Refused (``SourceConflict`` naming a file of the second report); reports of other accounts, or
    one report per delivery, land."""
    def legacy(report: str, cost: str, *, payer: str = "111122223333") -> dict[str, str]:
        period = f"{report}/20240301-20240401"
        keys = [f"{period}/a-{report}/r-00001.csv"]
        return {f"{period}/a-{report}/r-00001.csv": usage(cost).replace("111122223333", payer),
                f"{period}/r-Manifest.json": listing(*keys), f"{period}/a-{report}/r-Manifest.json": listing(*keys)}

    root = make_hub(tmp_path / "two")
    deliver(root, "cur", {**legacy("hourly", "1.00"), **legacy("daily", "1.00")})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict")
    assert rec.error.file.startswith("exports/aws/cur/") and "report exports/aws/cur/" in rec.error.message
    assert not list((root / "ingestion").rglob("*.parquet"))

    root = make_hub(tmp_path / "payers")
    deliver(root, "cur", {**legacy("hourly", "1.00"), **legacy("other", "2.00", payer="999988887777")})
    assert [r.state for r in ingest(Store(str(root))).records] == ["committed", "committed"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(3)


def test_a_restatement_of_the_same_size_is_read_again(tmp_path: Path) -> None:
    """AWS rewrites a month's file with the same size (12.00 -> 13.00) and a new manifest (a new executionId): the
    delivery is new (its AWS manifest's content is part of its identity) and the lake holds 13.00."""
    root = make_hub(tmp_path / "hub")
    data, meta = "data/BILLING_PERIOD=2024-03", "metadata/BILLING_PERIOD=2024-03"
    files = [f"s3://bucket/cur2/e/{data}/e-00001.csv"]
    deliver(root, "cur2/e", {f"{data}/e-00001.csv": usage("12.00"),
                             f"{meta}/e-Manifest.json": json.dumps({"executionId": "1", "dataFiles": files})})
    ingested(root)
    deliver(root, "cur2/e", {f"{data}/e-00001.csv": usage("13.00"),
                             f"{meta}/e-Manifest.json": json.dumps({"executionId": "2", "dataFiles": files})})
    (rec,) = ingested(root)
    assert rec.rowsOut == 1 and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D(13)


def test_spp_and_distributor_discounts_and_an_unknown_line_item_type(tmp_path: Path) -> None:
    """SppDiscount and DistributorDiscount (AWS's Solution Provider and distributor discounts) are discounts like
    EdpDiscount: Usage rows priced Standard with no list price (0); a line item type the mapping does not know is an
    Adjustment, never a row without a ChargeCategory; the lake is valid FOCUS."""
    root = make_hub(tmp_path / "hub")
    common = {**LINES_COMMON, "lineItem/UsageAmount": "1", "pricing/publicOnDemandRate": "1", "pricing/publicOnDemandCost": "1"}
    rows = [{"lineItem/LineItemType": "Usage", "lineItem/UnblendedCost": "10.00"},
            {"lineItem/LineItemType": "SppDiscount", "lineItem/UnblendedCost": "-0.50", "pricing/publicOnDemandCost": "-0.50"},
            {"lineItem/LineItemType": "DistributorDiscount", "lineItem/UnblendedCost": "-0.20"},
            {"lineItem/LineItemType": "SomethingNew", "lineItem/UnblendedCost": "1.00"}]
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(common, rows)})
    ingested(root)
    got = duckdb.connect().execute(f"SELECT x_LineItemType, ChargeCategory, PricingCategory, ListCost, ListUnitPrice, BilledCost, "
                                   f"EffectiveCost FROM {lake(root)} ORDER BY 1").fetchall()
    assert got == [("DistributorDiscount", "Usage", "Standard", D(0), D(0), D("-0.2"), D("-0.2")),
                   ("SomethingNew", "Adjustment", None, D(1), D(1), D(1), D(1)),
                   ("SppDiscount", "Usage", "Standard", D(0), D(0), D("-0.5"), D("-0.5")),
                   ("Usage", "Usage", "Standard", D(1), D(1), D(10), D(10))]
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_tag_keys_that_differ_only_by_case_are_two_keys(tmp_path: Path) -> None:
    """AWS tag keys are case-sensitive and a CSV CUR has a column per key: resourceTags/user:Name and
    resourceTags/user:name are two tags ({"Name": "web", "name": "db"}), not a duplicate header; two cost columns that
    differ only by case still are (SchemaMismatch)."""
    root = make_hub(tmp_path / "hub")
    common = {**LINES_COMMON, "lineItem/UsageAmount": "1", "lineItem/LineItemType": "Usage", "lineItem/UnblendedCost": "1"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(
        common, [{"resourceTags/user:Name": "web", "resourceTags/user:name": "db"}])})
    ingested(root)
    assert one(f"SELECT Tags FROM {lake(root)}") == '{"Name":"web","name":"db"}'
    root = make_hub(tmp_path / "other")
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(common, [{"lineitem/unblendedcost": "2"}])})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "SchemaMismatch") and "duplicate column names" in rec.error.message


def test_a_row_without_its_cost_is_refused(tmp_path: Path) -> None:
    """A CUR row whose lineItem/UnblendedCost is empty (or NULL) would land with no BilledCost, which FOCUS does not
    allow and no total can reconcile to: the delivery is InvalidValue naming the file and how many rows, nothing lands."""
    root = make_hub(tmp_path / "hub")
    common = {**LINES_COMMON, "lineItem/UsageAmount": "1", "lineItem/LineItemType": "Usage"}
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text(
        common, [{"lineItem/UnblendedCost": "1.00"}, {"lineItem/UnblendedCost": ""}, {"lineItem/UnblendedCost": "NULL"}])})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "InvalidValue",
                                                           "exports/aws/cur/r/20240301-20240401/x/r-00001.csv")
    assert "BilledCost is empty on 2 of 3 rows" in rec.error.message
    assert not list((root / "ingestion").rglob("*.parquet"))


def test_a_trimmed_cur_2_0_with_numeric_rates(tmp_path: Path) -> None:
    """Defect: a CUR 2.0 Parquet file without pricing_public_on_demand_rate whose line_item_unblended_rate is a number
    (not AWS's text) failed the mapping's default (``coalesce`` of a DOUBLE and a VARCHAR): InternalError. Expected: 3
    hours of 0.50 = 1.50, list unit price the rate."""
    root = make_hub(tmp_path / "hub")
    out = root / "exports/aws/cur2/e/data/BILLING_PERIOD=2024-06/e-00001.parquet"
    out.parent.mkdir(parents=True)
    duckdb.sql(f"""COPY (SELECT '111122223333' AS bill_payer_account_id, TIMESTAMP '2024-06-01' AS bill_billing_period_start_date,
        TIMESTAMP '2024-07-01' AS bill_billing_period_end_date, '444455556666' AS line_item_usage_account_id,
        'Usage' AS line_item_line_item_type, TIMESTAMP '2024-06-01' + to_hours(i) AS line_item_usage_start_date,
        TIMESTAMP '2024-06-01 01:00:00' + to_hours(i) AS line_item_usage_end_date, 'AmazonEC2' AS line_item_product_code,
        1.0::DOUBLE AS line_item_usage_amount, 0.5::DOUBLE AS line_item_unblended_rate, 0.5::DOUBLE AS line_item_unblended_cost,
        'USD' AS line_item_currency_code FROM range(3) t(i)) TO '{out}' (FORMAT parquet)""")
    (root / "exports/aws/cur2/e/manifest.json").write_bytes(b"")
    (rec,) = ingested(root)
    assert rec.rowsOut == 3
    assert duckdb.sql(f"SELECT sum(BilledCost), min(ListUnitPrice), max(ListUnitPrice) FROM {lake(root)}").fetchall() == [
        (D("1.5"), D("0.5"), D("0.5"))]


def test_a_cur_region_without_its_location_is_named_from_the_region_table(tmp_path: Path) -> None:
    """Review: a CUR row with a region code but no product location (446 of the real CUR sample's 1,281 rows) landed
    with RegionName null (FOCUS: named where RegionId is set). schemas/aws/regions.csv names it; the report's own
    location, where it has one, wins. The table spells regions as AWS's bills do ("EU (Ireland)", as the CUR's
    product location and AWS's FOCUS export write it: review, "Europe (Ireland)" split eu-west-1 in two names)."""
    root = make_hub(tmp_path / "hub")
    rows = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in {**CUR2_COMMON, **r}.items()} for r in CUR2_ROWS]
    rows[0]["product_location"] = ""  # ec2, us-east-1
    rows[3]["product_region_code"] = "eu-west-1"  # tax: a region (Ireland) the table names as the s3 row's own location
    rows[2]["product_location"], rows[2]["product_region_code"] = "", "ca-west-1"  # lambda: a region the table lacked
    deliver(root, "cur2/acme-cur2/data/BILLING_PERIOD=2025-02", {"acme-cur2-00001.csv": csv_text({}, rows)})
    ingested(root)
    got = dict(duckdb.connect().execute(f"SELECT ChargeDescription, RegionName FROM {lake(root)}").fetchall())
    assert got == {"ec2": "US East (N. Virginia)", "s3": "EU (Ireland)", "lambda": "Canada West (Calgary)", "tax": "EU (Ireland)"}


@pytest.mark.parametrize("layout", ["legacy", "cur2"])
def test_two_versions_of_a_month_synced_without_any_aws_manifest_are_a_conflict(tmp_path: Path, layout: str) -> None:
    """Review of stop 41: a legacy CUR's two assemblies of March (10.00, then AWS's restated 12.00) or two Data Exports
    executions, synced without AWS's -Manifest.json files (``aws s3 sync --exclude '*.json'``), were both read: March
    22.00, committed and reconciled. Nothing tells the current version: ``SourceConflict`` naming the period folder,
    as with their manifests and no period manifest; one version synced alone lands."""
    root = make_hub(tmp_path / "hub")
    period = PERIOD if layout == "legacy" else "cur2/acme/data/BILLING_PERIOD=2024-03"
    deliver(root, period, {"aaaa-1111/r-00001.csv": usage("10.00"), "bbbb-2222/r-00001.csv": usage("12.00")})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SourceConflict", f"exports/aws/{period}")
    assert not list((root / "ingestion").rglob("*.parquet"))
    shutil.rmtree(root / "exports/aws" / period / "aaaa-1111")
    (root / "exports/aws" / period / "manifest.json").write_text("")
    (done,) = ingest(Store(str(root)), retry=True).records
    assert done.state == "committed" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("12.00")


def test_a_redshift_manifest_beside_an_assembly_synced_without_aws_manifests_is_no_bill(tmp_path: Path) -> None:
    """Review of stop 41: a CUR synced without its -Manifest.json files but with the Redshift integration's
    ``r-RedshiftManifest.json`` read that JSON as a bill: MalformedJson or SchemaMismatch naming it, the month refused.
    It is no bill: the assembly's CSV alone lands (10.00)."""
    root = make_hub(tmp_path / "hub")
    redshift = json.dumps({"entries": [{"url": f"s3://b/pfx/{PERIOD}/aaaa/r-00001.csv", "mandatory": True}]}, indent=2)
    deliver(root, PERIOD, {"aaaa/r-00001.csv": usage("10.00"), "aaaa/r-RedshiftManifest.json": redshift})
    (rec,) = ingested(root)
    assert rec.rowsOut == 1 and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("10.00")


def test_a_period_without_a_manifest_beside_one_with_is_checked_for_versions(tmp_path: Path) -> None:
    """Review of this stop's change: a whole CUR prefix in one delivery, February with its period manifest, March's two
    assemblies (10.00, 12.00) without any: the check for versions was off for the whole delivery (February's manifest
    governs February only): March 22.00. The delivery is SourceConflict naming March's folder."""
    root = make_hub(tmp_path / "hub")
    feb = "cur/r/20240201-20240301"
    deliver(root, "cur", {"r/20240201-20240301/cccc/r-00001.csv": usage("5.00").replace("2024-03", "2024-02"),
                          "r/20240201-20240301/r-Manifest.json": listing(f"{feb}/cccc/r-00001.csv"),
                          "r/20240301-20240401/aaaa/r-00001.csv": usage("10.00"),
                          "r/20240301-20240401/bbbb/r-00001.csv": usage("12.00")})
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SourceConflict", f"exports/aws/{PERIOD}")


def test_versions_of_a_period_each_with_its_own_manifest_json_and_no_aws_manifest_are_all_refused(tmp_path: Path) -> None:
    """Review of this stop's change: two assemblies of March synced without AWS's manifests, each with its own
    ``manifest.json``: both committed, the one synced last (the stale 10.00) kept. Nothing tells the current one:
    each is SourceConflict and the lake keeps what it had; the stale one removed, the other lands by itself (the
    watcher sees its period change) with 12.00."""
    root = make_hub(tmp_path / "hub")
    for assembly, cost in (("1111", "12.00"), ("ffff", "10.00")):
        deliver(root, f"{PERIOD}/{assembly}", {"r-00001.csv": usage(cost)})
    assert {(r.state, r.error.code) for r in ingest(Store(str(root))).records} == {("quarantined", "SourceConflict")}
    assert not list((root / "ingestion").rglob("*.parquet"))
    shutil.rmtree(root / "exports/aws" / PERIOD / "ffff")
    (done,) = ingest(Store(str(root))).records
    assert done.state == "committed" and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("12.00")


def test_a_whole_double_id_or_tag_from_pandas_reads_as_its_integer(tmp_path: Path) -> None:
    """Review of this stop's change: pandas types an id or a tag column with a blank cell float64; read as text it was
    ``1234.0`` (Tags ``{"CostCenter": "1234.0"}``, SubAccountId ``123456789012.0``). A whole double is the integer it
    stands for: ``1234``, ``123456789012``; a blank cell no tag."""
    rows = csv_text(LINES_COMMON, LINES[:2])
    root = make_hub(tmp_path / "hub")
    base = root / "exports/aws/cur/r/20240301-20240401/x"
    base.mkdir(parents=True)
    (tmp_path / "in.csv").write_text(rows)
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT * REPLACE (CAST("lineItem/UsageAccountId" AS DOUBLE) AS "lineItem/UsageAccountId"),
        CASE WHEN row_number() OVER () = 1 THEN 1234.0 END::DOUBLE AS "resourceTags/user:CostCenter"
        FROM read_csv({literal(str(tmp_path / 'in.csv'))})) TO {literal(str(base / 'r-00001.parquet'))} (FORMAT parquet)""")
    (root / "exports/aws/cur/manifest.json").write_bytes(b"")
    ingested(root)
    account = str(LINES_COMMON["lineItem/UsageAccountId"])
    got = duckdb.connect().execute(f"SELECT SubAccountId, json_extract_string(Tags, '$.CostCenter') FROM {lake(root)} "
                                   "ORDER BY 2 NULLS LAST").fetchall()
    assert got == [(account, "1234"), (account, None)]
