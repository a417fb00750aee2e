"""Every real sample and every generator's output of the other clouds in one hub: each delivery commits, reconciles
to the provider's own total, and ``hub validate`` finds 0 FOCUS 1.0 violations in the whole lake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
from conftest import DATA, make_hub
from test_native_focus import REPO, deliver

from hub import sample_gcp, sample_native
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest


def test_every_sample_and_generator_lands_valid(tmp_path: Path) -> None:
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "focus-sample", {"a.csv": (DATA / "aws" / "aws-focus10-942rows.csv").read_text()})
    deliver(root, "aws", "cur-legacy/20231101-20231201", {"a.csv": (DATA / "aws" / "cur-legacy-1281rows.csv").read_text()})
    deliver(root, "aws", "cur2", {"a.csv": (DATA / "aws" / "cur2-synthetic-4rows.csv").read_text()})
    deliver(root, "oci", "focus-sample", {"a.csv": (DATA / "oci" / "oci-focus10-7rows.csv").read_text()})
    deliver(root, "oci", "cost-report", {"a.csv": (DATA / "oci" / "oci-cost-report-506rows.csv").read_text()})
    r = str(root)
    sample_native.write_aws_cur(r, month="2024-05", rows=300)
    sample_native.write_aws_focus(r, month="2024-06", rows=300)  # another month than the CUR's: the same accounts
    sample_native.write_oci_focus(r, rows=200)
    sample_native.write_alibaba_bill(r, rows=200)
    sample_native.write_huawei_bill(r, rows=200)
    sample_native.write_tencent_bill(r, rows=200)
    sample_gcp.write_gcp_export(r, rows=200, fmt="json")
    sample_gcp.write_gcp_export(r, month="2024-06", rows=200, fmt="parquet")

    result = ingest(Store(r))
    assert result.ok, [(x.manifest, x.error) for x in result.all if x.error]
    providers = {x.exportName for x in result.records}
    assert providers == {"aws", "oci", "alibaba", "huawei", "tencent", "gcp"}
    for rec in result.records:  # committed: each delivery's own totals per currency reconciled with what it wrote
        assert rec.reconciled and rec.rowsIn == rec.rowsOut, rec.key
        assert rec.validation and rec.validation["violations"] == 0, (rec.key, rec.validation)
    report = validate(r)
    assert report.ok and report.violations == 0 and report.rows == sum(x.rowsOut for x in result.records)
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "validate", r], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lake = duckdb.connect().execute(f"SELECT x_SourceProvider, count(*) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet', "
                                    "union_by_name = true) GROUP BY 1").fetchall()
    assert {p for p, _ in lake} == {"AWS", "Oracle", "Alibaba Cloud", "Huawei Cloud", "Tencent Cloud", "Google Cloud"}
    # review of stop 35: with ContractedCost from the unblended cost, 84 rows of the real CUR were flagged
    # ListCostLessThanContractedCost: AWS rounds publicOnDemandCost and UnblendedCost apart at the tenth decimal
    flagged = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{root}/ingestion/Costs/2023/11/aws/**/*.parquet', union_by_name = true) "
        "WHERE x_SourceChanges LIKE '%ListCostLessThanContractedCost%'").fetchone()[0]
    assert flagged == 0
    # review of stop 40: the real OCI cost report's OBJECTSTORE and ORACLE_STREAMING_SERVICE rows were Other
    other = duckdb.connect().execute(
        f"SELECT ServiceName, ServiceCategory FROM read_parquet('{root}/ingestion/Costs/2023/11/oci/**/*.parquet', "
        "union_by_name = true) WHERE ServiceName IN ('OBJECTSTORE', 'ORACLE_STREAMING_SERVICE') GROUP BY ALL ORDER BY 1").fetchall()
    assert other == [("OBJECTSTORE", "Storage"), ("ORACLE_STREAMING_SERVICE", "Analytics")]


def test_a_full_width_cur_with_aws_number_formatting_lands_exact(tmp_path: Path) -> None:
    """The benchmark's realistic CUR (97 columns, AWS's ``1.944E-6`` number form): it commits valid, and the lake's
    BilledCost total equals the file's ``lineItem/UnblendedCost`` summed by Python's Decimal from the text (each value
    rounded half up to 18 decimals, as DECIMAL(38,18) holds it: ``8.619999999999999E-7`` has 22)."""
    import csv
    import gzip
    from decimal import ROUND_HALF_UP, Decimal

    root = make_hub(tmp_path / "hub")
    sample_native.write_aws_cur(str(root), rows=400, full=True)
    data = next(root.glob("exports/aws/**/*.csv.gz"))
    with gzip.open(data, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows[0]) == len(sample_native.CUR_FULL_COLUMNS) == 97
    costs = [r["lineItem/UnblendedCost"] for r in rows]
    small = [c for c in costs if "E" in c]
    assert small and all(Decimal(c) < Decimal("0.001") for c in small)  # Lambda requests: 2.0E-7 a request
    result = ingest(Store(str(root)))
    assert result.ok and len(result.records) == 1
    rec = result.records[0]
    assert rec.reconciled and rec.rowsOut == len(rows) and rec.validation["violations"] == 0
    con = duckdb.connect()
    lake = f"read_parquet('{root}/ingestion/Costs/**/*.parquet')"
    exact = sum(Decimal(c).quantize(Decimal("1e-18"), rounding=ROUND_HALF_UP) for c in costs)
    assert con.execute(f"SELECT sum(BilledCost) FROM {lake}").fetchone()[0] == exact
    one = next(c for c in small if Decimal(c) == Decimal(c).quantize(Decimal("1e-18")))  # e.g. 1.944E-6
    assert con.execute(f"SELECT count(*) FROM {lake} WHERE BilledCost = CAST(? AS DECIMAL(38,18))",
                       [str(Decimal(one))]).fetchone()[0] >= 1
