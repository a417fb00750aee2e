"""The Spark engine (issue 16): the same deliveries ingested by the local engine and by Spark (`local[2,2]`, then
through a local Spark Connect server) give the same lake, file for file and row for row, and the same run records;
Spark retries a failing task with the same result; a part failing on every attempt quarantines its delivery and
keeps the previous month; a driver killed before the swap is finished by the next ingest; the lake read back by
Spark (DataFrame and generated DDL) matches DuckDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import schema_csv, write_export

from hub import runs, sample_data
from hub.spark import ddl
from hub.spark.read import read_dataset
from hub.spark.runner import SparkRunner
from hub.spark.session import session
from hub.store import Store
from pipelines import spark_etl
from pipelines.ingest import ingest

#: run-record fields that must not depend on the engine
SAME = ("state", "dataset", "schemaKey", "destination", "month", "scope", "rowsIn", "rowsOut", "rowsFiltered", "rowsRounded",
        "totalsIn", "totalsOut", "totalsIngested", "validation", "reconciled", "missingColumns", "extraColumns")


def _deliveries(root: Path) -> None:
    """A 4-part CSV export, a 2-part gzip export of another billing account, and the month's price sheet."""
    sample_data.write_export(str(root), rows=6_000, parts=4)
    sample_data.write_export(str(root), rows=3_000, parts=2, gzip=True, export_name="other-account", seed=2,
                             resource_id="/providers/Microsoft.Billing/billingAccounts/4242")
    sample_data.write_export(str(root), export_type="PriceSheet", data_version="2023-05-01", export_name="prices")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "hub"
    _deliveries(root)
    return root


@pytest.fixture(scope="module")
def local_lake(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deliveries ingested by the local engine: what every Spark run must equal."""
    root = tmp_path_factory.mktemp("local") / "hub"
    shutil.copytree(template, root)
    result = ingest(Store(str(root)))
    assert result.ok and len(result.records) == 3, [r.error for r in result.all]
    return root


@pytest.fixture(scope="module", params=["classic", "connect"])
def spark(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A classic `local[2,2]` session (tasks tried twice), then a local Spark Connect server with the same master
    (one JVM per process: the classic session is stopped first)."""
    conf = {"spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")), "spark.sql.shuffle.partitions": "2"}
    spark = session("local[2,2]", conf=conf) if request.param == "classic" else session(remote="local[2,2]", conf=conf)
    yield spark
    spark.stop()


def _copy(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    shutil.copytree(template, root)
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for area in ("ingestion", "raw") for p in (root / area).rglob("*") if p.is_file())


def _records(root: Path) -> dict[str, dict]:
    out = {}
    for rec in runs.load_all(Store(str(root))):
        data = rec.model_dump() if hasattr(rec, "model_dump") else vars(rec)
        same = {k: data[k] for k in SAME}
        same["parts"] = [(p.blob, p.output, p.rows, p.bytes) for p in rec.parts]
        out[rec.key] = same
    return out


def assert_same_lake(root: Path, expected: Path) -> None:
    """Same files, same Parquet schemas, same rows (x_IngestionTime aside), same run records."""
    files = _files(root)
    assert files == _files(expected)
    assert not [f for f in files if f.endswith(".tmp")]
    con = duckdb.connect()
    for rel in (f for f in files if f.endswith(".parquet")):
        mine, theirs = pq.read_schema(root / rel), pq.read_schema(expected / rel)
        assert mine.equals(theirs, check_metadata=False), rel
        skip = " EXCLUDE (x_IngestionTime)" if "x_IngestionTime" in mine.names else ""
        a, b = (f"SELECT *{skip} FROM read_parquet('{r / rel}')" for r in (root, expected))
        assert con.execute(f"SELECT count(*) FROM ({a})").fetchall() == con.execute(f"SELECT count(*) FROM ({b})").fetchall(), rel
        assert con.execute(f"({a}) EXCEPT ALL ({b})").fetchall() == [], rel
        assert con.execute(f"({b}) EXCEPT ALL ({a})").fetchall() == [], rel
    assert _records(root) == _records(expected)
    assert not list((root / "config" / "staging").glob("*"))


def test_spark_and_local_engines_write_the_same_lake_even_when_tasks_are_retried(spark: object, template: Path,
                                                                              local_lake: Path, tmp_path: Path) -> None:
    root = _copy(template, tmp_path)
    runner = SparkRunner(spark, fail_attempts={1: 1})  # part 2 of each delivery dies once, after writing, before its rename
    result = spark_etl.ingest(spark, str(root), runner=runner)
    assert result.ok, [r.error for r in result.all]
    assert [o.attempt for o in runner.last][:2] == [0, 1]  # Spark ran it again
    assert_same_lake(root, local_lake)  # no file of the dead attempts reached the lake


def test_a_part_failing_on_every_attempt_quarantines_and_keeps_the_previous_month(spark: object, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    run_info = {"startDate": "2024-05-01", "submittedTime": "2024-05-02T00:00:00Z"}
    write_export(root, {f"part_{i}.csv": schema_csv("focuscost_1.0", 50) for i in range(2)}, rows=100,
                 manifest_extra={"runInfo": {"runId": "run1", **run_info}})
    assert ingest(Store(str(root))).ok
    before = _files(root)
    write_export(root, {f"part_{i}.csv": schema_csv("focuscost_1.0", 60) for i in range(3)}, rows=180, run_id="run2",
                 manifest_extra={"runInfo": {"runId": "run2", "startDate": "2024-05-01",
                                             "submittedTime": "2024-05-03T00:00:00Z"}})
    result = spark_etl.ingest(spark, str(root), runner=SparkRunner(spark, fail_attempts={1: 99}))
    [rec] = result.records
    assert (rec.state, rec.error.code) == ("quarantined", "PartFailed")
    assert "RuntimeError: injected failure of part 2" in rec.error.message
    assert rec.error.file.endswith("part_1.csv")  # the part that failed (was always the first)
    assert _files(root) == before  # run1 stays visible
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet')").fetchall() == [(100,)]
    # the next ingestion sweeps the failed attempt's staging; a retry without the fault commits run2
    again = spark_etl.ingest(spark, str(root), retry=True)
    assert again.ok and [r.state for r in again.records] == ["committed"]
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet')").fetchall() == [(180,)]
    assert not list((root / "config" / "staging").glob("*"))


def test_bad_input_on_spark_is_quarantined_naming_the_file_without_retries(spark: object, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    good = schema_csv("focuscost_1.0", 20)
    write_export(root, {"part_0.csv": good, "part_1.csv": good + "a,b\n"}, rows=41)
    runner = SparkRunner(spark)
    [rec] = spark_etl.ingest(spark, str(root), runner=runner).records
    assert (rec.state, rec.error.code) == ("quarantined", "MalformedCsv")
    assert rec.error.file.endswith("part_1.csv")
    assert [(p.output, p.rows) for p in rec.parts] == [("", 0), ("", 0)]  # no lake file claimed (was part 0's)
    assert [o.attempt for o in runner.last] == [0, 0]  # an input error is an outcome: Spark does not retry it
    assert not (root / "ingestion").exists() or not list((root / "ingestion").rglob("*.parquet"))


def test_a_relative_root_is_read_by_executors_in_another_folder(spark: object, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: a Spark Connect server's executors run in their own folder: a relative root (`hub ingest ./hub`) was
    read there, and every part was quarantined as CorruptFile."""
    write_export(tmp_path / "hub", {"part_0.csv": schema_csv("focuscost_1.0", 20)}, rows=20)
    monkeypatch.chdir(tmp_path)
    [rec] = spark_etl.ingest(spark, "hub").records
    assert (rec.state, rec.rowsOut) == ("committed", 20), rec.error


def test_read_dataset_gives_scope_folders_as_named(spark: object, local_lake: Path, tmp_path: Path) -> None:
    """Defect: x_Scope came from Spark's file URI undecoded (``acct%201`` for ``acct 1``)."""
    src = next((local_lake / "ingestion/Costs").rglob("*.parquet"))
    scope = "providers/x/acct 1+x%41#y"
    dest = tmp_path / "hub/ingestion/Costs/2024/05" / scope
    dest.mkdir(parents=True)
    shutil.copy(src, dest / src.name)
    hidden = tmp_path / "hub/ingestion/Costs/2024/06/subscriptions/s1/resourcegroups/%5fshared/%2eops"
    hidden.mkdir(parents=True)  # Defect: a resource group `_shared` (stored as `%5fshared`) was shown as `%5fshared`
    shutil.copy(src, hidden / src.name)
    frame = read_dataset(spark, str(tmp_path / "hub"))
    assert {(r["x_Month"], r["x_Scope"]) for r in frame.select("x_Month", "x_Scope").distinct().collect()} == {
        ("2024-05", scope), ("2024-06", "subscriptions/s1/resourcegroups/_shared/.ops")}


def test_the_lake_read_by_spark_and_through_generated_ddl_matches_duckdb(spark: object, local_lake: Path) -> None:
    expected = duckdb.execute(
        f"SELECT count(*), sum(BilledCost), sum(EffectiveCost) FROM read_parquet('{local_lake}/ingestion/Costs/**/*.parquet', "
        "union_by_name = true)").fetchall()[0]
    frame = read_dataset(spark, str(local_lake))
    by_scope = {(r["x_Month"], r["x_Scope"]): r["count"] for r in frame.groupBy("x_Month", "x_Scope").count().collect()}
    assert by_scope == {("2024-05", "providers/microsoft.billing/billingaccounts/8611537"): 6_000,
                        ("2024-05", "providers/microsoft.billing/billingaccounts/4242"): 3_000}
    schema = f"finops_{abs(hash(str(local_lake))) % 10**6}"
    for statement in ddl.statements(ddl.ddl("databricks", str(local_lake), schema=schema)):
        spark.sql(statement)
    [row] = spark.sql(f"SELECT count(*) AS n, sum(BilledCost) AS b, sum(EffectiveCost) AS e, min(x_Month) AS m1, "
                      f"max(x_Month) AS m2 FROM {schema}.costs_v1_2").collect()
    assert (row["n"], row["b"], row["e"]) == expected
    assert row["m1"] == row["m2"] == "2024-05"
    [old] = spark.sql(f"SELECT count(*) AS n, sum(BilledCost) AS b FROM {schema}.costs_v1_0").collect()
    assert (old["n"], old["b"]) == expected[:2]
    prices = duckdb.execute(f"SELECT count(*) FROM read_parquet('{local_lake}/ingestion/Prices/**/*.parquet')").fetchall()[0][0]
    assert spark.sql(f"SELECT count(*) AS n FROM {schema}.prices_v1_0").collect()[0]["n"] == prices


def test_ddl_for_trino_and_athena() -> None:
    trino = ddl.ddl("trino", "s3://bucket/hub")
    assert "hive.recursive-directories=true" in trino
    assert ("CREATE TABLE IF NOT EXISTS hive.finops.costs (\n  \"AvailabilityZone\" VARCHAR,\n  \"BilledCost\" DECIMAL(38,18),"
            in trino)
    assert "WITH (external_location = 's3://bucket/hub/ingestion/Costs', format = 'PARQUET')" in trino
    assert "\"ChargePeriodStart\" TIMESTAMP(6)" in trino
    assert ("regexp_extract(\"$path\", '^.*/ingestion/Costs/(\\d{4})/(\\d{2})/(.*?)(?:/(?:actualcost|amortizedcost))?"
            "(?:/export~[^/]+)?/[^/]+\\.parquet$', 1) || '-'") in trino
    athena = ddl.ddl("athena", "s3://bucket/hub")
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS finops.costs (\n  `AvailabilityZone` string,\n  `BilledCost` decimal(38,18)," in athena
    assert "STORED AS PARQUET\nLOCATION 's3://bucket/hub/ingestion/Costs/'" in athena
    assert "CAST(\"BilledCost\" AS decimal(38,18)) AS \"BilledCost\"" in athena
    databricks = ddl.ddl("databricks", "/Volumes/finops/hub")
    assert "'^.*/ingestion/Costs/(\\\\d{4})/" in databricks  # Spark reads backslash escapes in literals
    assert len(ddl.statements(databricks)) == 1 + 8 + 9  # schema, a table per dataset, a view per versioned view


def test_a_driver_killed_between_staging_and_swap_is_recovered(tmp_path: Path) -> None:
    expected, root = tmp_path / "local", tmp_path / "spark"
    for r in (expected, root):
        sample_data.write_export(str(r), rows=2_000, parts=2, gzip=True)
    assert ingest(Store(str(expected))).ok
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}  # a Connect session's leave
    env.update(HUB_LEASE_TTL="1", HUB_CRASH_AT="before-swap")
    cmd = [sys.executable, "-m", "hub.cli", "ingest", str(root), "--engine", "spark", "--spark-master", "local[1]"]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    assert [r.state for r in runs.load_all(Store(str(root)))] == ["swapping"]
    assert not (root / "ingestion").exists()  # nothing visible yet
    result = ingest(Store(str(root)))  # recover() finishes the swap
    assert result.ok and [r.state for r in result.recovered] == ["committed"], [r.error for r in result.all]
    assert_same_lake(root, expected)


def test_cli_usage_errors_of_the_engine_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hub.cli import app

    cli = CliRunner()
    for args, message in ((["--engine", "ray"], "--engine is local or spark"),
                          (["--spark-master", "local[2]"], "need --engine spark")):
        result = cli.invoke(app, ["ingest", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    result = cli.invoke(app, ["ddl", str(tmp_path), "--dialect", "snowflake"])
    assert result.exit_code == 2 and "unknown dialect 'snowflake'; one of databricks, trino, athena" in result.output
    result = cli.invoke(app, ["ddl", str(tmp_path), "--dialect", "athena", "--location", "s3://b/hub"])
    assert result.exit_code == 0 and result.output.startswith("-- FinOps hub lake tables (athena)")
    assert "LOCATION 's3://b/hub/ingestion/Prices/'" in result.output


def test_a_bad_master_is_one_line_without_a_java_hint_when_java_is_there(tmp_path: Path) -> None:
    """Defect: every failure to start the gateway ([JAVA_GATEWAY_EXITED]) ended with "Spark needs a Java 17+ runtime",
    with Java installed."""
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(tmp_path), "--engine", "spark", "--spark-master",
                           "bogus://x"], capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: cannot start Spark (bogus://x): ") and "Java 17" not in last


def test_read_dataset_of_a_lake_without_files_is_empty(spark: object, tmp_path: Path) -> None:
    """Defect: a hub with no lake file yet (after `hub init`, or no such dataset yet) raised PATH_NOT_FOUND / "unable to
    infer schema", where DuckDB's catalog and the generated tables give no rows: now an empty frame with the columns."""
    Store(str(tmp_path / "hub")).init_layout()
    for root in (tmp_path / "hub", tmp_path / "nothing"):
        frame = read_dataset(spark, str(root))
        assert frame.count() == 0 and {"BilledCost", "x_Month", "x_Scope"} <= set(frame.columns)
        assert dict(frame.dtypes)["BilledCost"] == "decimal(38,18)"


def test_read_dataset_of_a_root_whose_path_holds_glob_characters(spark: object, local_lake: Path, tmp_path: Path) -> None:
    """Review of stop 41: Spark reads a path as a glob: a root under ``team[1]/`` read nothing, or the rows of a sibling
    ``team1/`` hub."""
    src = next((local_lake / "ingestion/Costs").rglob("*.parquet"))
    for team, copies in (("team[1]", 2), ("team1", 1)):
        dest = tmp_path / team / "hub/ingestion/Costs/2024/05/subscriptions/s1"
        dest.mkdir(parents=True)
        for i in range(copies):
            shutil.copy(src, dest / f"r{i}__{src.name}")
    rows = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{src}')").fetchone()[0]
    assert read_dataset(spark, str(tmp_path / "team[1]" / "hub")).count() == 2 * rows


def test_read_dataset_gives_legacy_exports_their_scope(spark: object, local_lake: Path, tmp_path: Path) -> None:
    """Defect: rows of legacy ActualCost / AmortizedCost exports, kept in a sub-folder of their scope, had x_Scope
    `subscriptions/<id>/actualcost` while their run record says `subscriptions/<id>`; and an export's own folder
    (reservation recommendations: ``perExport``) is not part of the scope either."""
    src = next((local_lake / "ingestion/Costs").rglob("*.parquet"))
    for sub in ("actualcost", "amortizedcost", "export~reco-vm", "export~reco%20sql"):
        dest = tmp_path / "hub/ingestion/Costs/2024/05/subscriptions/s1" / sub
        dest.mkdir(parents=True)
        shutil.copy(src, dest / src.name)
    frame = read_dataset(spark, str(tmp_path / "hub"))
    assert {r["x_Scope"] for r in frame.select("x_Scope").distinct().collect()} == {"subscriptions/s1"}
