"""``bench/focus_converter.py`` without the converter (no network): the FOCUS row counts of an output, the CUR padding,
the scrubbed error lines. The conversion itself is measured by running the script (it installs the package)."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import duckdb
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "focus_converter.py"
spec = importlib.util.spec_from_file_location("bench_focus_converter", SCRIPT)
assert spec and spec.loader
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench
spec.loader.exec_module(bench)

# A FOCUS 1.0 Usage row that passes every check of hub validate: (column, SQL value).
ROW = [
    ("AvailabilityZone", "NULL"), ("BilledCost", "10"), ("BillingAccountId", "'acct'"), ("BillingAccountName", "'Acct'"),
    ("BillingCurrency", "'USD'"), ("BillingPeriodEnd", "'2024-06-01 00:00:00+00'"),
    ("BillingPeriodStart", "'2024-05-01 00:00:00+00'"), ("ChargeCategory", "'Usage'"), ("ChargeClass", "NULL"),
    ("ChargeDescription", "'d'"), ("ChargeFrequency", "'Usage-Based'"), ("ChargePeriodEnd", "'2024-05-02 00:00:00+00'"),
    ("ChargePeriodStart", "'2024-05-01 00:00:00+00'"), ("CommitmentDiscountCategory", "NULL"), ("CommitmentDiscountId", "NULL"),
    ("CommitmentDiscountName", "NULL"), ("CommitmentDiscountStatus", "NULL"), ("CommitmentDiscountType", "NULL"),
    ("ConsumedQuantity", "4"), ("ConsumedUnit", "'Hours'"), ("ContractedCost", "10"), ("ContractedUnitPrice", "2.5"),
    ("EffectiveCost", "10"), ("InvoiceIssuerName", "'AWS'"), ("ListCost", "12"), ("ListUnitPrice", "3"),
    ("PricingCategory", "'Standard'"), ("PricingQuantity", "4"), ("PricingUnit", "'Hours'"), ("ProviderName", "'AWS'"),
    ("PublisherName", "'AWS'"), ("RegionId", "'us-east-1'"), ("RegionName", "'US East (N. Virginia)'"), ("ResourceId", "'i-1'"),
    ("ResourceName", "'r1'"), ("ResourceType", "'Instance'"), ("ServiceCategory", "'Compute'"), ("ServiceName", "'EC2'"),
    ("SkuId", "'sku'"), ("SkuPriceId", "'sku.rate'"), ("SubAccountId", "'sub'"), ("SubAccountName", "'Sub'"),
    ("Tags", "'{\"env\": \"prod\"}'"), ("x_Custom", "'ok'"),
]
DECIMALS = {"BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "ListCost", "ListUnitPrice",
            "PricingQuantity"}


def write_parquet(path: Path, rows: list[dict[str, str]]) -> Path:
    """Typed FOCUS rows (decimals, UTC timestamps, strings) in one Parquet file."""
    selects = []
    for row in rows:
        cols = []
        for name, value in row.items():
            kind = "DECIMAL(18,6)" if name in DECIMALS else "TIMESTAMPTZ" if name.endswith(("Start", "End")) else "VARCHAR"
            cols.append(f'CAST({value} AS {kind}) AS "{name}"')
        selects.append("SELECT " + ", ".join(cols))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{path}' (FORMAT parquet)")
    return path


def test_rows_valid_counts_rows_that_fail_no_check(tmp_path: Path) -> None:
    good = dict(ROW)
    bad = {**good, "ChargeDescription": "''"}
    report = bench.focus_report([write_parquet(tmp_path / "out.parquet", [good, bad, good])])
    assert report["rows_out"] == 3 and report["rows_valid"] == 2 and report["rows_valid_row_checks"] == 2
    assert report["top_violations"] == {"EmptyString:ChargeDescription": 1}
    assert report["missing_columns"] == [] and report["schema_violations"] == []


def test_schema_level_failures_fail_every_row(tmp_path: Path) -> None:
    """The converter's shape: ``Provider`` instead of ``ProviderName``, a cost as text."""
    row = {("Provider" if k == "ProviderName" else k): v for k, v in ROW}
    first = write_parquet(tmp_path / "a.parquet", [row, {**row, "ChargeFrequency": "'Often'"}])
    second = write_parquet(tmp_path / "b.parquet", [row])
    report = bench.focus_report([first, second])
    assert report["rows_out"] == 3 and report["rows_valid"] == 0 and report["rows_valid_row_checks"] == 2
    assert report["missing_columns"] == ["ProviderName"]
    assert report["schema_violations"] == ["CustomColumnPrefix:Provider"]
    assert report["top_violations"] == {"AllowedValues:ChargeFrequency": 1}
    assert bench.focus_report([])["rows_out"] == 0


def test_pad_keeps_values_and_adds_empty_columns(tmp_path: Path) -> None:
    src = tmp_path / "cur.csv.gz"
    text = 'identity/LineItemId,lineItem/LineItemDescription,lineItem/UnblendedCost\nli-1,"a, b",0.10\nli-2,,1\n'
    src.write_bytes(gzip.compress(text.encode()))
    plain = bench.plain_csv(src, tmp_path)
    assert plain == tmp_path / "cur.csv" and plain.read_text() == text
    assert bench.plain_csv(plain, tmp_path) == plain
    padded = tmp_path / "padded.csv"
    bench.pad_csv(plain, padded, ["pricing/RateId", "reservation/EffectiveCost"])
    assert bench.count_csv_rows(padded) == bench.count_csv_rows(plain) == 2
    lines = padded.read_text().splitlines()
    assert lines[0] == "identity/LineItemId,lineItem/LineItemDescription,lineItem/UnblendedCost,pricing/RateId,reservation/EffectiveCost"
    assert lines[1:] == ['li-1,"a, b",0.10,,', "li-2,,1,,"]


def test_missing_columns_message_is_parsed() -> None:
    line = "ValueError: Column(s) 'lineItem/LegalEntity, pricing/RateId' not found in data"
    found = bench.MISSING.search(line)
    assert found and found.group(1) == "lineItem/LegalEntity, pricing/RateId"


@pytest.mark.parametrize(("text", "expected"), [
    ("\x1b[31mValueError\x1b[0m: bad file /data/work/cur.csv\n", "ValueError: bad file <work>/cur.csv"),
    ("x" * 1000, "x" * 400),
])
def test_scrub_gives_one_line_without_local_paths(text: str, expected: str) -> None:
    assert bench.scrub(text, Path("/data/work")) == expected


def test_last_line_prefers_errors() -> None:
    out = "ERROR: No matching distribution\nWARNING: something else\n\n"
    assert bench.last_line(out, "ERROR") == "ERROR: No matching distribution"
    assert bench.last_line(out) == "WARNING: something else"
    assert bench.last_line("") == ""
