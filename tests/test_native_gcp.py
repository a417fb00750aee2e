"""Google Cloud's detailed usage cost export (schemas/gcp/detailed_export.json) as users extract it from BigQuery: newline
JSON, Parquet with nested types, CSV with repeated fields as JSON text. Every expected value is computed by hand."""

from __future__ import annotations

import csv
import gzip
import io
import json
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from conftest import make_hub

from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

ACCOUNT = "01ABCD-234567-89EFGH"
GUID = "769c55ea-c50f-4258-bcf5-04b6688fa5fa"
VM = "//compute.googleapis.com/projects/proj-1/zones/us-central1-a/instances/vm-1"

#: BigQuery's schema of the detailed export (the fields these rows use), as Parquet extracts type it.
PAIR = "STRUCT(key VARCHAR, \"value\" VARCHAR)[]"
BQ_SCHEMA = {
    "billing_account_id": "VARCHAR",
    "service": "STRUCT(id VARCHAR, description VARCHAR)",
    "sku": "STRUCT(id VARCHAR, description VARCHAR)",
    "usage_start_time": "TIMESTAMPTZ",
    "usage_end_time": "TIMESTAMPTZ",
    "project": f"STRUCT(id VARCHAR, number VARCHAR, name VARCHAR, labels {PAIR})",
    "labels": PAIR,
    "system_labels": PAIR,
    "tags": "STRUCT(key VARCHAR, \"value\" VARCHAR, inherited BOOLEAN, namespace VARCHAR)[]",
    "location": "STRUCT(location VARCHAR, country VARCHAR, region VARCHAR, zone VARCHAR)",
    "resource": "STRUCT(name VARCHAR, global_name VARCHAR)",
    "price": "STRUCT(effective_price DECIMAL(38,9), tier_start_amount DECIMAL(38,9), unit VARCHAR, "
             "pricing_unit_quantity DECIMAL(38,9), list_price DECIMAL(38,9), effective_price_default DECIMAL(38,9))",
    "subscription": "STRUCT(instance_id VARCHAR)",
    "transaction_type": "VARCHAR",
    "seller_name": "VARCHAR",
    "export_time": "TIMESTAMPTZ",
    "cost": "DOUBLE",
    "currency": "VARCHAR",
    "currency_conversion_rate": "DOUBLE",
    "usage": "STRUCT(amount DOUBLE, unit VARCHAR, amount_in_pricing_units DOUBLE, pricing_unit VARCHAR)",
    "credits": "STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, type VARCHAR)[]",
    "invoice": "STRUCT(month VARCHAR, publisher_type VARCHAR)",
    "cost_type": "VARCHAR",
    "adjustment_info": "STRUCT(id VARCHAR, description VARCHAR, mode VARCHAR, type VARCHAR)",
    "cost_at_list": "DOUBLE",
    "consumption_model": "STRUCT(id VARCHAR, description VARCHAR, applied_subscription_instance_id VARCHAR)",
    "cost_at_effective_price_default": "DOUBLE",
}


def credit(kind: str, amount: float, name: str, cid: str | None = None, full_name: str | None = None) -> dict:
    """One element of the repeated ``credits`` record."""
    return {"name": name, "amount": amount, "full_name": full_name, "id": cid, "type": kind}


def row(sku: str, cost: float | None, *, service: str = "Compute Engine", start: str = "2024-05-12 22:00:00 UTC",
        end: str = "2024-05-12 23:00:00 UTC", cost_type: str = "regular", **fields: object) -> dict:
    """One export row: a regular usage hour of project proj-1 in us-central1 unless ``fields`` say otherwise (NUMERIC
    fields as BigQuery writes them to JSON: text)."""
    out = {
        "billing_account_id": ACCOUNT, "service": {"id": "6F81-5844-456A", "description": service},
        "sku": {"id": sku.upper().replace(" ", "-")[:14], "description": sku}, "usage_start_time": start, "usage_end_time": end,
        "project": {"id": "proj-1", "number": "441570621172", "name": "Project One", "labels": []},
        "labels": [], "system_labels": [], "tags": [],
        "location": {"location": "us-central1", "country": "US", "region": "us-central1", "zone": "us-central1-a"},
        "resource": {"name": "vm-1", "global_name": VM},
        "price": {"effective_price": None, "tier_start_amount": "0", "unit": "hour", "pricing_unit_quantity": None,
                  "list_price": None, "effective_price_default": None},
        "subscription": {"instance_id": None}, "transaction_type": "GOOGLE", "seller_name": None,
        "export_time": "2024-05-13 01:49:02.981774 UTC", "cost": cost, "currency": "USD", "currency_conversion_rate": 1.0,
        "usage": {"amount": None, "unit": "seconds", "amount_in_pricing_units": None, "pricing_unit": "hour"},
        "credits": [], "invoice": {"month": "202405", "publisher_type": "GOOGLE"}, "cost_type": cost_type,
        "adjustment_info": {"id": None, "description": None, "mode": None, "type": None}, "cost_at_list": cost,
        "consumption_model": {"id": None, "description": None, "applied_subscription_instance_id": None},
        "cost_at_effective_price_default": None,
    }
    for name, value in fields.items():
        parent, _, child = name.partition("__")
        if child:
            out[parent] = {**out[parent], child: value}
        else:
            out[parent] = value
    return out


def priced(price: str, hours: str, **fields: object) -> dict:
    """Price fields of a regular row: effective price per hour and the hours (NUMERIC: text)."""
    return {"price__effective_price": price, "price__pricing_unit_quantity": "1", "usage__amount_in_pricing_units": float(hours),
            "usage__amount": float(hours) * 3600, **fields}


ROWS = [
    # a VM hour (an offset time: 15:00 PDT = 22:00 UTC) partly covered by a resource-based CUD, with a sustained use
    # discount and a promotion: 10.00 - 6.00 - 1.25 - 0.50 = 2.25
    row("N2 Instance Core running in Americas", 10.0, start="2024-05-12T15:00:00-07:00", end="2024-05-12T16:00:00-07:00",
        cost_at_list=12.0, credits=[
            credit("COMMITTED_USAGE_DISCOUNT", -6.0, "Committed use discount: CPU", "CommittedUsageDiscount: CPU"),
            credit("SUSTAINED_USAGE_DISCOUNT", -1.25, "Sustained use discount"),
            credit("PROMOTION", -0.5, "Free trial", "12-b34-c56-d78", "Free trial credit")],
        labels=[{"key": "env", "value": "prod"}, {"key": "team", "value": "web"}],
        project__labels=[{"key": "env", "value": "dev"}, {"key": "cost-center", "value": "cc1"}],
        system_labels=[{"key": "compute.googleapis.com/machine_spec", "value": "n2-standard-4"}, {"key": "legacy", "value": "x"}],
        tags=[{"key": "tier", "value": "gold", "inherited": True, "namespace": "123456789012"}],
        **priced("0.5", "20")),
    # the resource-based commitment's fee for that hour: a recurring purchase
    row("Commitment v1: Cpu in Americas for 1 Year", 4.0, resource={"name": None, "global_name": None}, **priced("0.2", "20")),
    # Cloud SQL covered by a spend-based CUD (legacy credit model): 3.00 - 1.00
    row("Cloud SQL for PostgreSQL: Zonal - vCPU", 3.0, service="Cloud SQL", resource={"name": "db-1", "global_name": None},
        credits=[credit("COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE", -1.0, "Spend-based CUD", "a1-b2-c3", "Cloud SQL spend-based CUD")],
        **priced("1.5", "2")),
    # the discounted-price model: 2 h at 0.27 (0.40 without the commitment, 0.50 list)
    row("N2 Instance Ram running in Americas", 0.54, cost_at_list=1.0, cost_at_effective_price_default=0.8,
        consumption_model={"id": "5515-81A8-03A2", "description": "Compute Flexible CUD - 3 Year",
                           "applied_subscription_instance_id": GUID},
        **priced("0.27", "2", price__effective_price_default="0.4")),
    # its fee, offset where used: 1.00 - 0.54 = 0.46 unused
    row("Compute Flexible CUD fee", 1.0, resource={"name": None, "global_name": None}, subscription={"instance_id": GUID},
        credits=[credit("FEE_UTILIZATION_OFFSET", -0.54, "Fee utilization offset")], **priced("1", "1")),
    # a Spot VM hour with a free tier credit: 0.30 - 0.10
    row("Spot Preemptible N2 Instance Core", 0.3, credits=[credit("FREE_TIER", -0.1, "Free tier")], **priced("0.15", "2")),
    row("Tax", 1.5, service="Invoice", cost_type="tax", project={"id": None, "number": None, "name": None, "labels": []},
        location={"location": None, "country": None, "region": None, "zone": None}, resource={"name": None, "global_name": None},
        cost_at_list=None, start="2024-05-31 07:00:00 UTC", end="2024-06-01 07:00:00 UTC"),
    # a correction of April's usage, invoiced in May
    row("Usage correction", -2.0, cost_type="adjustment", start="2024-04-20 00:00:00 UTC", end="2024-04-21 00:00:00 UTC",
        adjustment_info={"id": "adj-1", "description": "Usage correction", "mode": "PARTIAL_CORRECTION", "type": "USAGE_CORRECTION"},
        cost_at_list=None),
    # May 31 20:00 PDT is June 1 03:00 UTC: still the May invoice
    row("Rounding error", 0.01, cost_type="rounding_error", start="2024-06-01 03:00:00 UTC", end="2024-06-01 04:00:00 UTC",
        resource={"name": None, "global_name": None}, cost_at_list=None),
]
TOTAL = D("8.96")  # 2.25 + 4.00 + 2.00 + 0.54 + 0.46 + 0.20 + 1.50 - 2.00 + 0.01


def as_json(rows: list[dict]) -> bytes:
    """A newline JSON extract (records as objects, repeated fields as arrays)."""
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def as_csv(rows: list[dict]) -> bytes:
    """A flattened CSV extract: records as parent_field columns, repeated fields as JSON text (TO_JSON_STRING)."""
    flat = []
    for r in rows:
        cells: dict[str, object] = {}
        for name, value in r.items():
            if isinstance(value, dict):
                for field, v in value.items():
                    cells[f"{name}_{field}"] = json.dumps(v) if isinstance(v, list) else v
            else:
                cells[name] = json.dumps(value) if isinstance(value, list) else value
        flat.append(cells)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in c.items()} for c in flat)
    return out.getvalue().encode()


def as_parquet(rows: list[dict], tmp: Path) -> bytes:
    """A Parquet extract with BigQuery's nested types (records as structs, repeated fields as lists), built by DuckDB."""
    src, out = tmp / "rows.json", tmp / "rows.parquet"
    src.write_bytes(as_json(rows))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in BQ_SCHEMA.items()) + "}"
    con.execute(f"COPY (SELECT * FROM read_json('{src}', format = 'newline_delimited', columns = {columns})) TO '{out}' (FORMAT parquet)")
    credits_type, price_type = con.execute(f"SELECT typeof(credits), typeof(price) FROM '{out}' LIMIT 1").fetchone()
    assert credits_type.startswith("STRUCT(") and credits_type.endswith("[]") and "DECIMAL(38,9)" in price_type
    return out.read_bytes()


def delivery(fmt: str, rows: list[dict], tmp: Path) -> tuple[str, bytes]:
    """The extract's file name and content in ``fmt``."""
    if fmt == "json":
        return "export-000000000000.json", as_json(rows)
    if fmt == "csv":
        return "export-000000000000.csv", as_csv(rows)
    return "export-000000000000.parquet", as_parquet(rows, tmp)


def deliver(root: Path, name: str, data: bytes, folder: str = "2024-05") -> None:
    """One file under exports/gcp/billing/<folder>/, then its empty manifest.json."""
    base = root / "exports" / "gcp" / "billing" / folder
    base.mkdir(parents=True, exist_ok=True)
    (base / name).write_bytes(data)
    (base / "manifest.json").write_bytes(b"")


def lake(root: Path) -> str:
    """Every Google Cloud row of the lake."""
    return f"read_parquet('{root}/ingestion/Costs/*/*/gcp/**/*.parquet', union_by_name = true)"


def converted(tmp_path: Path, fmt: str, rows: list[dict], folder: str = "2024-05") -> tuple[Path, list]:
    """A new hub that ingested ``rows`` as one ``fmt`` file: its root and run records."""
    root = make_hub(tmp_path / "hub")
    deliver(root, *delivery(fmt, rows, tmp_path), folder=folder)
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    return root, result.records


def by_description(root: Path, columns: str) -> dict[str, tuple]:
    """``columns`` of the lake's rows, by ChargeDescription (unique in these tests)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return {r[0]: r[1:] for r in con.execute(f"SELECT ChargeDescription, {columns} FROM {lake(root)}").fetchall()}


#: ChargeCategory, ChargeClass, ChargeFrequency, BilledCost, EffectiveCost, ContractedCost, ListCost, x_DiscountCredits,
#: x_PromotionCredits by ChargeDescription
COSTS = {
    "N2 Instance Core running in Americas": ("Usage", None, "Usage-Based", D("2.25"), D("2.25"), D(10), D(12), D("-7.25"), D("-0.5")),
    "Commitment v1: Cpu in Americas for 1 Year": ("Purchase", None, "Recurring", D(4), D(4), D(4), D(4), D(0), D(0)),
    "Cloud SQL for PostgreSQL: Zonal - vCPU": ("Usage", None, "Usage-Based", D(2), D(2), D(3), D(3), D(-1), D(0)),
    "N2 Instance Ram running in Americas": ("Usage", None, "Usage-Based", D("0.54"), D("0.54"), D("0.8"), D(1), D(0), D(0)),
    "Compute Flexible CUD fee": ("Purchase", None, "Recurring", D("0.46"), D("0.46"), D(1), D(1), D("-0.54"), D(0)),
    "Spot Preemptible N2 Instance Core": ("Usage", None, "Usage-Based", D("0.2"), D("0.2"), D("0.3"), D("0.3"), D(0), D("-0.1")),
    "Tax": ("Tax", None, "One-Time", D("1.5"), D("1.5"), D("1.5"), D("1.5"), D(0), D(0)),
    "Usage correction": ("Adjustment", "Correction", "One-Time", D(-2), D(-2), D(-2), D(-2), D(0), D(0)),
    "Rounding error": ("Adjustment", None, "One-Time", D("0.01"), D("0.01"), D("0.01"), D("0.01"), D(0), D(0)),
}
#: CommitmentDiscountId, Category, Name, Status, Type, PricingCategory
COMMITMENTS = {
    "N2 Instance Core running in Americas": ("committedusagediscount: cpu", "Usage", "Committed use discount: CPU", "Used",
                                             "Committed Use Discount", "Committed"),
    "Cloud SQL for PostgreSQL: Zonal - vCPU": ("a1-b2-c3", "Spend", "Cloud SQL spend-based CUD", "Used", "Committed Use Discount",
                                               "Committed"),
    "N2 Instance Ram running in Americas": (GUID, "Spend", "Compute Flexible CUD - 3 Year", "Used", "Committed Use Discount",
                                            "Committed"),
    "Commitment v1: Cpu in Americas for 1 Year": (None, None, None, None, None, "Standard"),
    "Compute Flexible CUD fee": (None, None, None, None, None, "Standard"),
    "Spot Preemptible N2 Instance Core": (None, None, None, None, None, "Dynamic"),
    "Tax": (None,) * 6,
    "Usage correction": (None,) * 6,
    "Rounding error": (None,) * 6,
}
#: ContractedUnitPrice, ListUnitPrice, PricingQuantity, PricingUnit, ConsumedQuantity, ConsumedUnit, SkuPriceId
PRICES = {
    "N2 Instance Core running in Americas": (D("0.5"), D("0.6"), D(20), "hour", D(72000), "seconds", "N2-INSTANCE-CO:0"),
    "Commitment v1: Cpu in Americas for 1 Year": (D("0.2"), D("0.2"), D(20), "hour", None, None, "COMMITMENT-V1::0"),
    "Cloud SQL for PostgreSQL: Zonal - vCPU": (D("1.5"), D("1.5"), D(2), "hour", D(7200), "seconds", "CLOUD-SQL-FOR-:0"),
    "N2 Instance Ram running in Americas": (D("0.4"), D("0.5"), D(2), "hour", D(7200), "seconds", "N2-INSTANCE-RA:0"),
    "Compute Flexible CUD fee": (D(1), D(1), D(1), "hour", None, None, "COMPUTE-FLEXIB:0"),
    "Spot Preemptible N2 Instance Core": (D("0.15"), D("0.15"), D(2), "hour", D(7200), "seconds", "SPOT-PREEMPTIB:0"),
    "Tax": (None,) * 7,
    "Usage correction": (None,) * 7,
    "Rounding error": (None,) * 7,
}


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv"])
def test_detailed_export_by_hand(tmp_path: Path, fmt: str) -> None:
    """The same nine rows as newline JSON, Parquet (nested types) and CSV (repeated fields as JSON text) convert alike:
    BilledCost = EffectiveCost = cost + every credit (10.00 - 6.00 CUD - 1.25 SUD - 0.50 promotion = 2.25), the credits
    split into x_DiscountCredits and x_PromotionCredits (promotions and free tier), ContractedCost = cost (0.80 without
    the commitment's discounted price), ListCost = cost_at_list (12.00; tax and adjustments: their cost), commitment fees
    Recurring Purchases keeping their cost (1.00 fee - 0.54 utilization offset = 0.46), covered usage Committed with the
    commitment's id, category and name, tax / adjustment / rounding error rows; the run's total is the console's
    (cost + credits = 8.96); 0 FOCUS violations."""
    root, records = converted(tmp_path, fmt, ROWS)
    (rec,) = records
    assert rec.destination == "ingestion/Costs/2024/05/gcp/01abcd-234567-89efgh" and rec.rowsOut == len(ROWS)
    assert D(rec.totalsIn["USD"]["BilledCost"]) == TOTAL and D(rec.totalsIngested["USD"]["BilledCost"]) == TOTAL
    costs = by_description(root, "ChargeCategory, ChargeClass, ChargeFrequency, BilledCost, EffectiveCost, ContractedCost, "
                                 "ListCost, x_DiscountCredits, x_PromotionCredits")
    assert costs == COSTS
    assert sum(c[3] for c in costs.values()) == TOTAL
    commitments = by_description(root, "CommitmentDiscountId, CommitmentDiscountCategory, CommitmentDiscountName, "
                                       "CommitmentDiscountStatus, CommitmentDiscountType, PricingCategory")
    assert commitments == COMMITMENTS
    prices = by_description(root, "ContractedUnitPrice, ListUnitPrice, PricingQuantity, PricingUnit, ConsumedQuantity, "
                                  "ConsumedUnit, SkuPriceId")
    assert prices == PRICES
    assert by_description(root, "x_SubscriptionInstanceId")["Compute Flexible CUD fee"] == (GUID,)
    # review of stop 40: the Flexible CUD fee's utilization offset was a 0.54 saving (its usage's cost, whose saving is on
    # the usage), and the N2 core's promotion credit a commitment saving (10 - 2.25 = 7.75; now 10 - (2.25 + 0.50))
    savings = {d: tuple(map(D, v)) for d, v in {
        "N2 Instance Core running in Americas": ("7.25", "9.75"), "Commitment v1: Cpu in Americas for 1 Year": (0, 0),
        "Cloud SQL for PostgreSQL: Zonal - vCPU": (1, 1), "N2 Instance Ram running in Americas": ("0.26", "0.46"),
        "Compute Flexible CUD fee": (0, 0), "Spot Preemptible N2 Instance Core": (0, "0.1"), "Tax": (0, 0),
        "Usage correction": (0, 0), "Rounding error": (0, 0)}.items()}
    assert by_description(root, "x_CommitmentDiscountSavings, x_TotalSavings") == savings
    tags = by_description(root, "Tags")
    assert json.loads(tags["N2 Instance Core running in Americas"][0]) == {
        "env": "prod", "team": "web", "cost-center": "cc1", "compute.googleapis.com/machine_spec": "n2-standard-4",
        "goog-legacy": "x", "123456789012/tier": "gold"}
    assert tags["Tax"] == ("{}",)
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_times_resources_and_accounts_by_hand(tmp_path: Path) -> None:
    """The invoice month in Pacific time (2024-05 is 2024-05-01 07:00 UTC to 2024-06-01 07:00 UTC, so usage at 2024-06-01
    03:00 UTC is May's), usage times with an offset stored as UTC (15:00-07:00 = 22:00), resource.global_name as
    ResourceId with its service and collection as ResourceType, resource.name as ResourceName, region and zone with the
    region's name, project.id as SubAccountId, billing_account_id (lower case) as BillingAccountId."""
    root, _ = converted(tmp_path, "json", ROWS)
    rows = by_description(root, "CAST(ChargePeriodStart AS VARCHAR), CAST(ChargePeriodEnd AS VARCHAR), "
                                "CAST(BillingPeriodStart AS VARCHAR), CAST(BillingPeriodEnd AS VARCHAR), ResourceId, ResourceName, "
                                "ResourceType, RegionId, RegionName, AvailabilityZone, SubAccountId, SubAccountName, "
                                "BillingAccountId, ServiceName, ServiceCategory, PublisherName, x_ServiceId")
    period = ("2024-05-01 07:00:00+00", "2024-06-01 07:00:00+00")
    assert rows["N2 Instance Core running in Americas"] == (
        "2024-05-12 22:00:00+00", "2024-05-12 23:00:00+00", *period, VM, "vm-1", "compute.googleapis.com/instances",
        "us-central1", "Iowa", "us-central1-a", "proj-1", "Project One", "01abcd-234567-89efgh", "Compute Engine", "Compute",
        "Google Cloud", "6F81-5844-456A")
    assert rows["Rounding error"][:4] == ("2024-06-01 03:00:00+00", "2024-06-01 04:00:00+00", *period)
    assert rows["Usage correction"][:2] == ("2024-04-20 00:00:00+00", "2024-04-21 00:00:00+00")
    # a resource without a global name: its name is its id, its type the service's
    assert rows["Cloud SQL for PostgreSQL: Zonal - vCPU"][4:7] == ("db-1", "db-1", "Cloud SQL")
    assert rows["Tax"][4:12] == (None,) * 8


def test_labels_project_labels_system_labels_and_tags_make_one_object(tmp_path: Path) -> None:
    """Tags: one JSON object with unique keys from system_labels (Google's service-prefixed keys kept, a key without '/'
    prefixed 'goog-'), Resource Manager tags (namespace/key), project labels and resource labels, in that order of
    precedence (a resource label wins over the project's label of the same key; a key repeated within one source keeps its
    last value); empty values kept; a row without any is {}."""
    labelled = row("E2 Instance Core", 1.0, **priced("0.5", "2"),
                   labels=[{"key": "env", "value": "prod"}, {"key": "env", "value": "staging"}, {"key": "empty", "value": ""}],
                   project__labels=[{"key": "env", "value": "dev"}, {"key": "owner", "value": "alice"}],
                   system_labels=[{"key": "compute.googleapis.com/cores", "value": "4"}, {"key": "reserved", "value": "yes"}],
                   tags=[{"key": "env", "value": "tagged", "inherited": False, "namespace": "my-project"},
                         {"key": "owner", "value": "bob", "inherited": True, "namespace": None}])
    root, _ = converted(tmp_path, "json", [labelled, row("E2 Instance Ram", 1.0, **priced("0.5", "2"))])
    tags = by_description(root, "Tags")
    pairs = json.loads(tags["E2 Instance Core"][0], object_pairs_hook=list)
    assert len({k for k, _ in pairs}) == len(pairs)
    assert dict(pairs) == {"compute.googleapis.com/cores": "4", "goog-reserved": "yes", "my-project/env": "tagged",
                           "env": "staging", "owner": "alice", "empty": ""}
    assert tags["E2 Instance Ram"] == ("{}",)


#: One row of a CSV extract flattened by its query (records as parent_field columns, of the repeated fields only the
#: credits, as JSON text, none here): an hour of 50 gibibyte months of storage at 0.025 EUR, 1.25 EUR
FLAT_ROW = {
    "billing_account_id": ACCOUNT, "service_description": "Cloud Storage", "sku_id": "ST-1", "sku_description": "Standard Storage",
    "usage_start_time": "2024-05-02 00:00:00 UTC", "usage_end_time": "2024-05-02 01:00:00 UTC", "project_id": "proj-1",
    "cost": "1.25", "currency": "EUR", "invoice_month": "202405", "cost_type": "regular", "price_effective_price": "0.025",
    "price_pricing_unit_quantity": "1", "price_unit": "gibibyte month", "usage_amount": "180000", "usage_unit": "gibibyte second",
    "usage_amount_in_pricing_units": "50", "cost_at_list": "1.25", "credits": "[]",
}


def flat_csv(without: str | None = None) -> bytes:
    """:data:`FLAT_ROW` as a CSV extract, without the column ``without``."""
    row = {k: v for k, v in FLAT_ROW.items() if k != without}
    return (",".join(row) + "\n" + ",".join(row.values()) + "\n").encode()


def test_a_flattened_csv_without_repeated_fields(tmp_path: Path) -> None:
    """A CSV extract that left the labels and tags out (their credits kept, none here): BilledCost = cost (1.25), Tags
    {}, no commitment; 0 FOCUS violations."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export.csv", flat_csv())
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert D(result.records[0].totalsIn["EUR"]["BilledCost"]) == D("1.25")
    assert by_description(root, "BilledCost, EffectiveCost, ListUnitPrice, Tags, CommitmentDiscountId, ServiceCategory") == {
        "Standard Storage": (D("1.25"), D("1.25"), D("0.025"), "{}", None, "Storage")}
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_an_extract_without_its_credits_is_refused(tmp_path: Path) -> None:
    """Review of stop 38: an extract whose query left ``credits`` out (BigQuery writes no repeated field to CSV) was
    committed with every cost gross (cost 10 less a -4 sustained-use credit billed as 10) and reconciled, its total
    taken by the same mapping. Refused naming the column, nothing written."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export.csv", flat_csv(without="credits"))
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SchemaMismatch", "exports/gcp/billing/2024-05/export.csv")
    assert "without column(s) credits" in rec.error.message and "TO_JSON_STRING(credits)" in rec.error.message
    assert not list((root / "ingestion").rglob("*.parquet"))


def test_invoice_months_are_pacific_across_daylight_saving(tmp_path: Path) -> None:
    """Each invoice month is its own run, bounded by midnights in America/Los_Angeles: October 2024 (PDT) is 07:00 UTC to
    07:00 UTC, November (PST from the 3rd) ends 2024-12-01 08:00 UTC; usage at 2024-11-01 05:00 UTC (October 31, 22:00
    PDT) stays on October's invoice."""
    rows = [row("N2 Instance Core", 1.0, start="2024-11-01 05:00:00 UTC", end="2024-11-01 06:00:00 UTC",
                invoice={"month": "202410", "publisher_type": "GOOGLE"}, **priced("0.5", "2")),
            row("N2 Instance Ram", 2.0, start="2024-11-20 10:00:00 UTC", end="2024-11-20 11:00:00 UTC",
                invoice={"month": "202411", "publisher_type": "GOOGLE"}, **priced("1", "2"))]
    root, records = converted(tmp_path, "json", rows, folder="2024-autumn")  # a table of two months: no month folder
    assert sorted(r.destination for r in records) == ["ingestion/Costs/2024/10/gcp/01abcd-234567-89efgh",
                                                      "ingestion/Costs/2024/11/gcp/01abcd-234567-89efgh"]
    periods = by_description(root, "CAST(BillingPeriodStart AS VARCHAR), CAST(BillingPeriodEnd AS VARCHAR), BilledCost")
    assert periods == {"N2 Instance Core": ("2024-10-01 07:00:00+00", "2024-11-01 07:00:00+00", D(1)),
                       "N2 Instance Ram": ("2024-11-01 07:00:00+00", "2024-12-01 08:00:00+00", D(2))}
    report = validate(str(root))
    assert report.violations == 0, report.summary()


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_a_generated_month_reconciles(tmp_path: Path, fmt: str) -> None:
    """hub.sample_gcp's month (1,500 usage rows, 31 daily commitment fees, a tax row): every row lands in May's run, the
    lake's BilledCost and EffectiveCost equal cost + credits summed from the file itself, the credit split adds up, the
    fees are Purchases, covered usage is Committed, 0 FOCUS violations."""
    from hub.sample_gcp import write_gcp_export

    root = make_hub(tmp_path / "hub")
    manifest = write_gcp_export(str(root), month="2024-05", rows=1500, fmt=fmt)
    part = (root / manifest).parent / f"export-000000000000.{fmt}"
    if fmt == "json":  # the file's own text, read exactly
        lines = [json.loads(line, parse_float=D) for line in part.read_text().splitlines()]
        amounts = [(r["cost"], [c["amount"] for c in r["credits"]]) for r in lines]
    else:
        amounts = [(D(repr(cost)), [D(repr(c["amount"])) for c in credits])
                   for cost, credits in duckdb.connect().execute(f"SELECT cost, credits FROM '{part}'").fetchall()]
    expected = sum((cost + sum(credits, D(0)) for cost, credits in amounts), D(0))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (rec,) = result.records
    assert rec.month == "2024-05" and rec.rowsOut == len(amounts) == 1500 + 31 + 1
    assert D(rec.totalsIn["USD"]["BilledCost"]) == expected
    con = duckdb.connect()
    billed, effective, split, fees, committed = con.execute(
        f"SELECT sum(BilledCost), sum(EffectiveCost), sum(x_Cost + x_DiscountCredits + x_PromotionCredits - BilledCost), "
        f"count(*) FILTER (ChargeCategory = 'Purchase'), count(*) FILTER (PricingCategory = 'Committed') FROM {lake(root)}").fetchone()
    assert (billed, effective, split, fees) == (expected, expected, 0, 31) and committed > 0
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_let_names_a_sub_expression() -> None:
    """A mapping's ``let`` expressions stand in for ``{@name}`` (in parentheses, nested), before the columns resolve."""
    from transforms.mapped import project

    spec = {"let": {"total": "num({cost}) + {@credit}", "credit": "num({credit})"}, "columns": {"BilledCost": "{@total} * 2"}}
    (select,) = project(spec, {"cost": "DOUBLE", "credit": "DOUBLE"}, {}).select
    assert select == '("__num_0" + ("__num_1")) * 2 AS "BilledCost"'  # each number column converted once


@pytest.mark.parametrize(("case", "code", "words"), [
    ("a line that is not JSON", "MalformedJson", "a line is not a JSON object at line 2"),
    ("credits that are not JSON", "InvalidValue", "JSON column"),
    ("an invoice month of another form", "InvalidValue", "date or month"),
])
def test_bad_extracts_get_their_code_never_internal_error(tmp_path: Path, case: str, code: str, words: str) -> None:
    """A newline-JSON extract with a broken second line, a CSV extract whose credits text is not JSON, an invoice month
    written 2024-5: each quarantines the delivery with its code and a message naming the file (not InternalError)."""
    good = row("Instance Core", 1.5)
    if case == "a line that is not JSON":
        name, data = "export-000000000000.json", as_json([good]) + b"{not json\n" + as_json([good])
    elif case == "credits that are not JSON":
        name, data = "export-000000000000.csv", as_csv([good]).replace(b",[],", b",[{broken,", 1)
        assert b"[{broken" in data
    else:
        name, data = "export-000000000000.json", as_json([row("Instance Core", 1.5, invoice__month="2024-5")])
    root = make_hub(tmp_path / "hub")
    deliver(root, name, data)
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", code, f"exports/gcp/billing/2024-05/{name}")
    assert words in rec.error.message


@pytest.mark.parametrize(("line", "words"), [(b"5", "record 2 is a number"), (b"[1, 2]", "record 2 is an array")])
def test_a_line_that_is_json_but_not_an_object_is_malformed_json(tmp_path: Path, line: bytes, words: str) -> None:
    """Defect: a value that is valid JSON but not an object made DuckDB refuse the whole read: InternalError."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export-000000000000.json", as_json([row("Instance Core", 1.5)]) + line + b"\n")
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "MalformedJson") and words in rec.error.message


def test_an_empty_shard_of_an_extract_adds_no_rows(tmp_path: Path) -> None:
    """Defect: an extract's empty JSON file (a wildcard export's shard without rows; blank lines; an empty gzip) was
    InternalError; it holds no rows, and the other files are ingested."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export-000000000000.json", as_json([row("Instance Core", 1.5)]))
    deliver(root, "export-000000000001.json", b"")
    deliver(root, "export-000000000002.json", b"\n\n")
    deliver(root, "export-000000000003.json.gz", gzip.compress(b""))
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.rowsIn, rec.rowsOut) == ("committed", 1, 1), rec.error


def test_numbers_whole_on_the_first_lines_keep_their_decimals_later(tmp_path: Path) -> None:
    """Defect: DuckDB typed a JSON number from the first 20,480 lines: cost 1 on each of them made it BIGINT and a later
    0.5 was read as 1 (rounded, silently, and reconciled, since the input total read the same). A field first seen
    after those lines (a rare adjustment's) failed the read. Expected: 20,481 x 1 + 0.5 = 20,481.5."""
    rows = [row("Instance Core", 1) for _ in range(20_481)] + [row("Instance Core", 0.5, late_field="x")]
    root, (rec,) = converted(tmp_path, "json", rows)
    (total,) = duckdb.sql(f"SELECT sum(BilledCost), count(*) FROM {lake(root)}").fetchall()
    assert total == (D("20481.5"), 20_482) and rec.totalsIn["USD"]["BilledCost"] == "20481.500000000000000000"


def test_a_correction_of_old_usage_lands_in_its_invoice_month(tmp_path: Path) -> None:
    """Google's corrections keep their usage dates: the May invoice's adjustment of January usage (-2.5) lands in May
    with January's charge period (not PeriodMismatch, which refuses only other rows far from the billing period)."""
    rows = [row("Instance Core", 10.0),
            row("Instance Core", -2.5, cost_type="adjustment", start="2024-01-15 00:00:00 UTC", end="2024-01-16 00:00:00 UTC")]
    root, _ = converted(tmp_path, "json", rows)
    got = duckdb.connect().execute(f"SELECT ChargeCategory, CAST(ChargePeriodStart AS VARCHAR), BilledCost, filename LIKE '%/2024/05/%' "
                                   f"FROM read_parquet('{root}/ingestion/Costs/**/*.parquet', filename = true) "
                                   "ORDER BY BilledCost").fetchall()
    assert got == [("Adjustment", "2024-01-15 00:00:00+00", D("-2.5"), True), ("Usage", "2024-05-12 22:00:00+00", D(10), True)]


def test_a_month_folder_holding_rows_of_another_invoice_month_is_refused(tmp_path: Path) -> None:
    """Review of stop 35: May's extract in exports/gcp/billing/2024-05/ (30.00 EUR), then June's extract (filtered on
    usage dates) holding one late row of May's invoice month: its May run replaced May's folder with that row (May
    0.50 instead of 30.00). A file in a folder naming a month holds that invoice month only: ``PeriodMismatch`` naming
    the file; May stays as it was."""
    may = [row("N2 Instance Core", 10.0, **priced("5", "2")), row("N2 Instance Ram", 20.0, **priced("10", "2"))]
    root, _ = converted(tmp_path, "json", may)
    june = [row("E2 Instance Core", 7.0, start="2024-06-10 00:00:00 UTC", end="2024-06-10 01:00:00 UTC",
                invoice={"month": "202406", "publisher_type": "GOOGLE"}, **priced("3.5", "2")),
            row("E2 Instance Ram", 0.5, start="2024-05-31 23:00:00 UTC", end="2024-06-01 00:00:00 UTC", **priced("0.25", "2"))]
    deliver(root, *delivery("json", june, tmp_path), folder="2024-06")
    result = ingest(Store(str(root)))
    (bad,) = [r for r in result.all if r.error]
    assert (bad.error.code, bad.error.file) == ("PeriodMismatch", "exports/gcp/billing/2024-06/export-000000000000.json")
    assert "billing period 2024-05 in a folder of 2024-06" in bad.error.message
    con = duckdb.connect()
    assert con.execute(f"SELECT sum(BilledCost), count(*) FROM {lake(root)}").fetchone() == (D(30), 2)


def test_pricing_quantity_is_the_amount_used_not_the_quantity_the_price_is_for(tmp_path: Path) -> None:
    """Review of stop 35: ``price.pricing_unit_quantity`` is the quantity a price is quoted for ($1 per 1000000 bytes:
    1000000), not the quantity used. Taken as PricingQuantity, the real row of PROVIDERS.md §3.2 (SSD capacity: cost
    0.012434 = 0.174592 per gibibyte month x 0.071217891 gibibyte months, pricing_unit_quantity 1) got ContractedCost
    0.174592 ("corrected" to price x 1: 14 times its cost) and a commitment saving of 0.162158 without a commitment.
    By hand: PricingQuantity 0.071217891; ContractedUnitPrice 0.174592; ContractedCost = cost; ListUnitPrice
    0.012434 / 0.071217891 = 0.174591863... (15 significant digits); no saving. A price quoted per 1000000 requests
    (0.40, 2500000 requests, cost 1.00) is 0.0000004 a request."""
    ssd = row("SSD backed PD Capacity", 0.012434, service="Compute Engine", price__effective_price="0.174592",
              price__unit="gibibyte month", price__pricing_unit_quantity="1", usage__amount=204816252928000.0,
              usage__unit="byte-seconds", usage__amount_in_pricing_units=0.071217891, usage__pricing_unit="gibibyte month")
    calls = row("API Requests", 1.0, service="Cloud Storage", price__effective_price="0.4", price__unit="count",
                price__pricing_unit_quantity="1000000", usage__amount=2500000.0, usage__unit="requests",
                usage__amount_in_pricing_units=2500000.0, usage__pricing_unit="count")
    root, _ = converted(tmp_path, "json", [ssd, calls])
    got = by_description(root, "PricingQuantity, ContractedUnitPrice, ContractedCost, ListUnitPrice, ListCost, "
                               "x_CommitmentDiscountSavings, coalesce(x_SourceChanges, '')")
    lup = got["SSD backed PD Capacity"][3]
    assert got["SSD backed PD Capacity"] == (D("0.071217891"), D("0.174592"), D("0.012434"), lup, D("0.012434"), D(0), "")
    assert lup == D(format(0.012434 / 0.071217891, ".15g"))
    assert got["API Requests"] == (D(2500000), D("0.0000004"), D(1), D("0.0000004"), D(1), D(0), "")
    report = validate(str(root))
    assert report.violations == 0, report.summary()


def test_text_that_looks_like_a_date_stays_text_in_a_json_extract(tmp_path: Path) -> None:
    """Review of stop 35: newline JSON was read with date detection on. Every label value of a file date-like
    (``05-01-2024``, a valid label value) became a DATE: Tags said ``2024-01-05`` (day-first, silently); every resource
    name date-like (a bucket ``2024-05-01``) a DATE that could not be mixed with the text global_name: InternalError.
    Text stays text: the same lake as from CSV."""
    rows = [row("Standard Storage", 1.5, labels=[{"key": "expiry", "value": "05-01-2024"}],
                resource={"name": "2024-05-01", "global_name": None}, **priced("0.75", "2")),
            row("Nearline Storage", 2.5, labels=[{"key": "expiry", "value": "06-01-2024"}],
                resource={"name": "2024-06-01", "global_name": None}, **priced("1.25", "2"))]
    root, _ = converted(tmp_path, "json", rows)
    got = by_description(root, "Tags, ResourceId, BilledCost")
    assert got == {"Standard Storage": ('{"expiry":"05-01-2024"}', "2024-05-01", D("1.5")),
                   "Nearline Storage": ('{"expiry":"06-01-2024"}', "2024-06-01", D("2.5"))}


def test_an_extract_without_a_currency_column_takes_the_manifests(tmp_path: Path) -> None:
    """Review of stop 35: a CSV extract without ``currency`` was committed with BillingCurrency null (totals under an
    empty currency, a NotNull violation), and the manifest's ``{"currency": "EUR"}`` was not used for Google. It is, as
    for the other providers' files without a currency column."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export.csv", flat_csv(without="currency"))
    (root / "exports/gcp/billing/2024-05/manifest.json").write_text('{"currency": "eur"}')
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert list(result.records[0].totalsIn) == ["EUR"]
    assert by_description(root, "BillingCurrency, BilledCost") == {"Standard Storage": ("EUR", D("1.25"))}
    assert validate(str(root)).violations == 0


def test_a_run_date_folder_is_not_a_month_folder(tmp_path: Path) -> None:
    """Review of the check above: a May extract written under a folder named for the day it ran (2024-06-01) is May's,
    not refused: only a folder named yyyy-mm holding the file says its month."""
    may = [row("N2 Instance Core", 10.0, **priced("5", "2"))]
    root, records = converted(tmp_path, "json", may, folder="2024-06-01")
    assert [r.month for r in records] == ["2024-05"]


def test_a_quantity_beyond_the_lakes_decimals_is_refused_naming_its_column(tmp_path: Path) -> None:
    """Review of stop 40: one hour of a 42 PB bucket (usage.amount 1.5e20 byte-seconds, beyond DECIMAL(38,18)) in a JSON
    or Parquet extract was refused with DuckDB's "Could not convert string '1.5e+20'", naming no column (the CSV's
    message did): the double columns are converted as their text is, naming the column."""
    rows = [row("Standard Storage US Multi-region", 55.0, service="Cloud Storage",
                **priced("0.026", "2700", usage__amount=1.5e20, usage__unit="byte-seconds"))]
    for fmt in ("json", "parquet"):
        root = make_hub(tmp_path / fmt)
        name, data = delivery(fmt, rows, tmp_path)
        deliver(root, name, data)
        (rec,) = ingest(Store(str(root))).all
        assert (rec.state, rec.error.code) == ("quarantined", "InvalidValue")
        assert rec.error.message.startswith("column usage.amount: a value is beyond 20 digits"), rec.error.message



@pytest.mark.parametrize(("name", "empty"), [("export-000000000000.json", b""),
                                             ("export-000000000000.csv", b"billing_account_id,usage_start_time,cost,invoice_month,credits\n")])
def test_a_month_extracted_again_without_any_row_is_not_emptied(tmp_path: Path, name: str, empty: bytes) -> None:
    """Review of stop 41: May (10 + 4) extracted again with no row (a query's filter typo: one empty shard, or a
    header-only CSV; the old shard gone with `gsutil rsync -d`) emptied May's folder: the earlier version withdrawn
    from every month it no longer covered. A version without any row changes nothing: May stays 14."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export-000000000000.json", as_json([row("A", 10.0), row("B", 4.0)]))
    assert ingest(Store(str(root))).ok
    folder = root / "exports/gcp/billing/2024-05"
    (folder / "export-000000000000.json").unlink()
    deliver(root, name, empty)
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.rowsIn) == ("committed", 0), rec.error
    assert duckdb.connect().execute(f"SELECT count(*), sum(BilledCost) FROM {lake(root)}").fetchone() == (2, D(14))


@pytest.mark.parametrize("shape", [{"name": "CUD", "amount": -1.5, "type": "COMMITTED_USAGE_DISCOUNT"}, '[{"amount": -1.5}]', 7])
def test_credits_that_are_not_a_list_are_an_invalid_value(tmp_path: Path, shape: object) -> None:
    """Review of stop 41: one line's ``credits`` an object (or a JSON text, or a number) while others are lists read
    as no credit at all: committed, BilledCost booked gross (2.00, not 0.50) and reconciled, the file's own total
    read the same way. Refused, naming the file and the column."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "export-000000000000.json", as_json([row("A", 1.0), row("B", 2.0, credits=shape)]))
    (rec,) = ingest(Store(str(root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "InvalidValue", "exports/gcp/billing/2024-05/export-000000000000.json")
    assert "credits" in rec.error.message


def test_a_contracts_discount_credit_is_no_commitment_saving(tmp_path: Path) -> None:
    """Review of stop 41: Google's DISCOUNT credit (a contract's negotiated discount; likewise SUBSCRIPTION_BENEFIT,
    RESELLER_MARGIN) was counted as the commitment's saving. By hand, cost 10, list 12: C with a CUD credit of -2 and
    a DISCOUNT of -0.75: EffectiveCost 7.25, commitment saving 10 - (7.25 + 0.75) = 2, total 12 - 7.25 = 4.75,
    x_NegotiatedCredits -0.75; U with the DISCOUNT alone: no commitment saving, total 2.75."""
    cud = credit("COMMITTED_USAGE_DISCOUNT", -2.0, "Committed use discount: CPU", "cud-1", "commitments/c1")
    deal = credit("DISCOUNT", -0.75, "Contract discount")
    rows = [row("C", 10.0, cost_at_list=12.0, credits=[cud, deal], **priced("0.5", "20")),
            row("U", 10.0, cost_at_list=12.0, credits=[deal], **priced("0.5", "20"))]
    root, _ = converted(tmp_path, "json", rows)
    got = by_description(root, "EffectiveCost, x_CommitmentDiscountSavings, x_TotalSavings, x_NegotiatedCredits")
    assert got == {"C": (D("7.25"), D(2), D("4.75"), D("-0.75")), "U": (D("9.25"), D(0), D("2.75"), D("-0.75"))}
