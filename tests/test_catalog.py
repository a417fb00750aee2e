"""The DuckDB catalog (views, versioned views, month pruning), `hub query`, `hub catalog` and `hub costs`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from hub import catalog
from hub.cost_analysis import CostQuery, CostQueryError, amount, query_costs
from hub.demo import run_demo


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two ingested months (2024-05, 2024-06) of demo costs and prices."""
    root = str(tmp_path_factory.mktemp("catalog") / "hub")
    for month in ("2024-05", "2024-06"):
        summary = run_demo(root, rows=1500, month=month)
        assert all(r.state == "committed" for r in summary.records)
    return root


def hub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120)


def test_views_and_rows(lake: str) -> None:
    con = catalog.connect(lake)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert set(catalog.DATASETS) | set(catalog.view_specs()) <= views
    files = os.path.join(lake, "ingestion", "Costs", "**", "*.parquet")
    raw = duckdb.sql(f"SELECT count(*), sum(BilledCost) FROM read_parquet('{files}')").fetchall()[0]
    assert con.execute("SELECT count(*), sum(BilledCost) FROM Costs").fetchall()[0] == raw == (3000, raw[1])
    assert con.execute("SELECT x_Month, count(*) FROM Costs GROUP BY 1 ORDER BY 1").fetchall() == [("2024-05", 1500), ("2024-06", 1500)]
    assert con.execute("SELECT count(*) FROM Prices").fetchall()[0][0] > 0
    # FOCUS 1.1 columns of the 1.0 export are kept (the Power BI reports need them)
    assert con.execute("SELECT DISTINCT BillingAccountType, SubAccountType FROM Costs").fetchall() == [("Billing Account", "Subscription")]
    assert con.execute("SELECT count(*) FROM Recommendations_v1_0").fetchall()[0][0] == 0  # no data yet: typed, empty


def test_versioned_views_have_their_released_columns(lake: str) -> None:
    con = catalog.connect(lake)
    for name, spec in catalog.view_specs().items():
        described = con.execute(f'DESCRIBE "{name}"').fetchall()
        assert [(r[0], r[1]) for r in described] == [(c["name"], c["type"]) for c in spec["columns"]] + [("x_Month", "VARCHAR")], name
    v10 = {r[0] for r in con.execute('DESCRIBE "Costs_v1_0"').fetchall()}
    assert {"x_InvoiceId", "x_PricingCurrency", "x_SkuMeterName"} <= v10 and not {"InvoiceId", "SkuMeter", "SkuPriceDetails"} & v10
    v12 = {r[0] for r in con.execute('DESCRIBE "Costs_v1_2"').fetchall()}
    assert {"InvoiceId", "PricingCurrency", "SkuMeter"} <= v12
    # the 1.0 view reads the 1.2 column under its 1.0 name
    same = con.execute("SELECT count(*) FROM Costs_v1_0 a JOIN Costs_v1_2 b USING (x_Month) WHERE false").fetchall()
    assert same == [(0,)]
    assert con.execute("SELECT count(*) FILTER (WHERE x_SkuMeterName IS DISTINCT FROM SkuMeter) FROM "
                       "(SELECT x_SkuMeterName, row_number() OVER () r FROM Costs_v1_0) JOIN "
                       "(SELECT SkuMeter, row_number() OVER () r FROM Costs_v1_2) USING (r)").fetchall()[0][0] == 0


def _files_read(con: duckdb.DuckDBPyConnection, sql: str, tmp: Path) -> int:
    out = tmp / "profile.json"
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{out}'")
    con.execute(sql).fetchall()
    con.execute("PRAGMA disable_profiling")
    found = []

    def walk(node: dict) -> None:
        if "Total Files Read" in node.get("extra_info", {}):
            found.append(int(node["extra_info"]["Total Files Read"]))
        for child in node.get("children", []):
            walk(child)

    for node in json.loads(out.read_text())["operator"]:
        walk(node)
    return sum(found)


def test_month_filter_reads_only_that_months_files(lake: str, tmp_path: Path) -> None:
    con = catalog.connect(lake)
    may = len(list(Path(lake, "ingestion", "Costs", "2024", "05").rglob("*.parquet")))
    everything = len(list(Path(lake, "ingestion", "Costs").rglob("*.parquet")))
    assert 0 < may < everything
    assert _files_read(con, "SELECT sum(EffectiveCost) FROM Costs WHERE x_Month = '2024-05'", tmp_path) == may
    assert _files_read(con, "SELECT sum(EffectiveCost) FROM Costs_v1_0 WHERE x_Month = '2024-05'", tmp_path) == may
    assert _files_read(con, "SELECT sum(EffectiveCost) FROM Costs", tmp_path) == everything


def test_sub_folders_are_read(lake: str, tmp_path: Path) -> None:
    """Legacy actual/amortized exports live in <scope>/actualcost and <scope>/amortizedcost."""
    root = tmp_path / "hub"
    src = next(Path(lake, "ingestion", "Costs", "2024", "05").rglob("*.parquet"))
    dest = root / "ingestion" / "Costs" / "2024" / "05" / "billingAccounts" / "1" / "amortizedcost"
    dest.mkdir(parents=True)
    duckdb.execute(f"COPY (SELECT * FROM read_parquet('{src}')) TO '{dest / 'r__p.parquet'}' (FORMAT parquet)")
    con = catalog.connect(str(root))
    assert con.execute("SELECT count(*) FROM Costs").fetchall()[0][0] == duckdb.sql(f"SELECT count(*) FROM '{src}'").fetchall()[0][0]


def test_query_command_formats(lake: str, tmp_path: Path) -> None:
    sql = "SELECT ServiceName, sum(BilledCost) AS cost FROM Costs GROUP BY 1 ORDER BY 2 DESC"
    expected = catalog.connect(lake).execute(sql).fetchall()
    as_csv = hub("query", lake, sql, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert [(r["ServiceName"], Decimal(r["cost"])) for r in csv.DictReader(io.StringIO(as_csv.stdout))] == expected
    as_json = hub("query", lake, sql, "--format", "json")
    assert [(r["ServiceName"], Decimal(r["cost"])) for r in map(json.loads, as_json.stdout.splitlines())] == expected
    out = tmp_path / "q.parquet"
    assert hub("query", lake, sql, "--format", "parquet", "--output", str(out)).returncode == 0
    assert duckdb.sql(f"SELECT * FROM '{out}'").fetchall() == expected
    table = hub("query", lake, sql)
    assert table.returncode == 0 and expected[0][0] in table.stdout
    # defect: --max-rows 50 showed rows 0-9, a dot, rows 40-49 (DuckDB's rendering of a relation); every row now
    fifty = hub("query", lake, "SELECT range AS n FROM range(200)", "--max-rows", "50")
    shown = [int(cell) for line in fifty.stdout.splitlines() if (cell := line.strip("│ ")).isdigit()]
    assert shown == list(range(50)) and "more than 50 rows" in fifty.stdout
    few = hub("query", lake, "SELECT range AS n FROM range(3)")
    assert "more than" not in few.stdout and [line.strip("│ ") for line in few.stdout.splitlines()][-4:-1] == ["0", "1", "2"]
    bad = hub("query", lake, "SELEC 1")
    assert bad.returncode == 2 and "syntax error" in bad.stderr and "Traceback" not in bad.stderr


def test_catalog_file(lake: str, tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    proc = hub("catalog", lake, "--write", str(db))
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM Costs_v1_0").fetchall()[0][0] == 3000


def test_costs_command_matches_duckdb(lake: str) -> None:
    proc = hub("costs", lake, "--group-by", "ServiceName", "--granularity", "month", "--begin", "2024-05", "--end", "2024-06",
               "--cost-type", "EffectiveCost", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    got: dict[tuple, Decimal] = {(r["ServiceName"], r["period"]): Decimal(r["EffectiveCost"]) for r in csv.DictReader(io.StringIO(proc.stdout))}
    rows = catalog.connect(lake).execute("SELECT ServiceName, x_Month, sum(EffectiveCost) FROM Costs GROUP BY 1, 2").fetchall()
    assert got == {(s, m): Decimal(amount(v)) for s, m, v in rows}


def test_costs_tags_filters_days(lake: str) -> None:
    con = catalog.connect(lake)
    req = CostQuery.model_validate({
        "time_condition": {"time_measure_id": 1, "begin_time": "2024-05-01", "end_time": "2024-05-10"},
        "groupby": [{"type": "tag", "key": "env"}], "cost_type": "ORIGINAL_COST", "limit": 1000,
        "filters": [{"operator": 1, "filter_factor": {"key": "CLOUD_SERVICE_TYPE", "value": ["Virtual Machines"]}}]})
    result = query_costs(con, req)
    expected = dict(con.execute(
        "SELECT coalesce(json_extract_string(Tags, '$.env'), '(untagged)'), sum(BilledCost) FROM Costs "
        "WHERE ChargePeriodStart >= '2024-05-01' AND ChargePeriodStart < '2024-05-11' AND ServiceName <> 'Virtual Machines' "
        "GROUP BY 1").fetchall())
    assert {r.dimensions[0].value: Decimal(r.amount_by_costs) for r in result.cost_data} == {k: Decimal(amount(v)) for k, v in expected.items()}
    assert "(untagged)" in expected
    for row in result.cost_data:
        assert {p.time_dimension_value for p in row.costs} <= {f"2024-05-{d:02d}" for d in range(1, 11)}
        assert sum(Decimal(p.amount) for p in row.costs) == Decimal(row.amount_by_costs)
    assert result.total_count == len(expected)
    page = query_costs(con, req.model_copy(update={"limit": 1, "offset": 1}))
    assert page.total_count == len(expected) and page.cost_data[0] == result.cost_data[1]


@pytest.mark.parametrize("bad", [
    {"groupby": [{"type": "dimension", "key": "ServiceName; DROP VIEW Costs; --"}]},
    {"groupby": [{"type": "dimension", "key": "x_Month"}]},
    {"groupby": [{"type": "tag", "key": 'env"]; DROP VIEW Costs; --'}]},
    {"groupby": [{"type": "tag", "key": "a"}, {"type": "tag", "key": "b"}]},
    {"filters": [{"operator": 0, "filter_factor": {"key": "1=1 OR ServiceName", "value": ["x"]}}]},
    {"time_condition": {"time_measure_id": 1, "begin_time": "2024-05", "end_time": "2024-05"}},
    {"time_condition": {"time_measure_id": 2, "begin_time": "2024-06", "end_time": "2024-05"}},
])
def test_costs_rejects_bad_keys(lake: str, bad: dict) -> None:
    body = {"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"}, **bad}
    con = catalog.connect(lake)
    with pytest.raises(CostQueryError):
        query_costs(con, CostQuery.model_validate(body))
    assert con.execute("SELECT count(*) FROM Costs").fetchall()[0][0] == 3000


def test_costs_hostile_values_are_data(lake: str) -> None:
    con = catalog.connect(lake)
    body = {"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"},
            "filters": [{"operator": 0, "filter_factor": {"key": "ServiceName", "value": ["x' OR '1'='1", "'); DROP VIEW Costs; --"]}}]}
    assert query_costs(con, CostQuery.model_validate(body)).total_count == 0
    assert con.execute("SELECT count(*) FROM Costs").fetchall()[0][0] == 3000


def test_costs_command_usage_errors(lake: str) -> None:
    proc = hub("costs", lake, "--group-by", "NoSuchColumn", "--begin", "2024-05")
    assert proc.returncode == 2 and "unknown dimension" in proc.stderr
    assert hub("costs", lake, "--begin", "2024-05", "--granularity", "week").returncode == 2
    bad_month = hub("costs", lake, "--begin", "2024-13", "--granularity", "day")
    assert bad_month.returncode == 2 and "Traceback" not in bad_month.stderr


def test_tags_that_are_not_json_read_as_untagged(lake: str, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    src = next(Path(lake, "ingestion", "Costs", "2024", "05").rglob("*.parquet"))
    dest = root / "ingestion" / "Costs" / "2024" / "05" / "custom"
    dest.mkdir(parents=True)
    duckdb.execute(f"COPY (SELECT * REPLACE ('not json' AS Tags) FROM read_parquet('{src}')) TO '{dest / 'r__p.parquet'}' (FORMAT parquet)")
    body = {"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"}, "groupby": [{"type": "tag", "key": "env"}]}
    result = query_costs(catalog.connect(str(root)), CostQuery.model_validate(body))
    assert [r.dimensions[0].value for r in result.cost_data] == ["(untagged)"]


def test_root_path_that_looks_like_a_month_folder(tmp_path: Path) -> None:
    """Defect C20: a hub root whose path contains /Costs/<yyyy>/<mm>/ corrupted x_Month (matched on the absolute path)."""
    root = str(tmp_path / "ingestion" / "Costs" / "2023" / "01" / "hub")
    run_demo(root, rows=200)
    con = catalog.connect(root)
    assert con.execute("SELECT DISTINCT x_Month FROM Costs").fetchall() == [("2024-05",)]
    assert con.execute("SELECT DISTINCT x_Month FROM Prices_v1_0").fetchall() == [("2024-05",)]


def test_query_json_refuses_duplicate_names_and_writes_no_nan(lake: str, tmp_path: Path) -> None:
    """Defects: --format json kept only the last of two same-named columns, and printed bare NaN/Infinity (not JSON)."""
    dup = hub("query", lake, "SELECT 1 AS cost, 2 AS cost", "--format", "json", "--output", str(tmp_path / "d.json"))
    assert dup.returncode == 2 and dup.stderr.strip() == "error: --format json: column 'cost' appears twice (alias one of them)", dup.stderr
    assert len(dup.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.json").exists()
    sql = "SELECT 'NaN'::DOUBLE AS a, 'Infinity'::DOUBLE AS b, '-inf'::DOUBLE AS c, [1.5, 'nan'::DOUBLE] AS d, 2.5::DOUBLE AS e"
    proc = hub("query", lake, sql, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) == {
        "a": None, "b": None, "c": None, "d": [1.5, None], "e": 2.5}


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_query_trailing_semicolons_every_format(lake: str, tmp_path: Path, fmt: str) -> None:
    """Defect: --format parquet refused a trailing ';' that csv accepted."""
    out = tmp_path / f"q.{fmt}"
    proc = hub("query", lake, "SELECT count(*) AS n FROM Costs -- the count\n ; ;\n", "--format", fmt,
               *(["--output", str(out)] if fmt == "parquet" else []))
    assert proc.returncode == 0, proc.stderr
    if fmt == "parquet":
        assert duckdb.sql(f"SELECT n FROM '{out}'").fetchall() == [(3000,)]
    else:
        assert "3000" in proc.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_query_statements_before_the_last_run_once(lake: str, fmt: str) -> None:
    """Review of stop 41: --format csv / json ran the SQL a second time to fetch its rows, so `CREATE TEMP TABLE t AS
    ...; SELECT * FROM t` failed (exit 2: the table already exists) where the table format worked."""
    proc = hub("query", lake, "CREATE TEMP TABLE t AS SELECT count(*) AS n FROM Costs; SELECT n FROM t", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert "3000" in proc.stdout
    # (the change's review: statements without a relation of their own, EXPLAIN, PRAGMA, CALL, still answer)
    for sql in ("EXPLAIN SELECT 1", "PRAGMA table_info('Costs')", "CALL duckdb_settings()"):
        assert hub("query", lake, sql, "--format", fmt).returncode == 0, sql


def test_query_writes_nested_values_as_json(lake: str) -> None:
    """Review of stop 40: a MAP keyed by dates (``histogram``) failed --format json (TypeError, exit 1), and --format csv
    printed nested values as Python's display (``[Decimal('0E-18')]``, ``datetime.datetime(...)``) and a BLOB as
    ``b'\\x01'``. Keys are text, nested values JSON, a BLOB its bytes in hexadecimal."""
    sql = ("SELECT MAP {DATE '2024-05-01': 2} AS by_day, [1.50::DECIMAL(4,2)] AS costs, "
           "[TIMESTAMPTZ '2024-05-01 00:00:00+00'] AS times, '\\x01'::BLOB AS raw")
    as_json = hub("query", lake, sql, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"by_day": {"2024-05-01": 2}, "costs": ["1.50"],
                                          "times": ["2024-05-01T00:00:00+00:00"], "raw": "01"}
    as_csv = hub("query", lake, sql, "--format", "csv")
    assert as_csv.returncode == 0 and list(csv.reader(io.StringIO(as_csv.stdout)))[1] == [
        '{"2024-05-01": 2}', '["1.50"]', '["2024-05-01T00:00:00+00:00"]', "01"]


def test_a_file_with_its_own_x_month_column_never_hides_the_folder_month(tmp_path: Path) -> None:
    """Review of stop 41: a Costs file holding an x_Month column (another hub's `hub query ... --format parquet` output
    dropped as custom data) took the view's x_Month; every other file's x_Month was NULL and `hub costs`, which filters
    on it, dropped their rows (May: only the custom file's 1.50 of 11.50)."""
    con = duckdb.connect()
    for scope, cost, extra in (("azure", "10", ""), ("custom/other-hub", "1.5", ", 'May 2024' AS x_Month, 'x' AS X_MONTH_NOTE")):
        folder = tmp_path / "ingestion/Costs/2024/05" / scope
        folder.mkdir(parents=True)
        con.execute(f"COPY (SELECT CAST({cost} AS DECIMAL(38,18)) AS BilledCost, TIMESTAMPTZ '2024-05-02 00:00:00+00' AS "
                    f"ChargePeriodStart, 'USD' AS BillingCurrency{extra}) TO '{folder}/run1__part.parquet' (FORMAT parquet)")
    lake = catalog.connect(str(tmp_path))
    assert lake.execute("SELECT x_Month, sum(BilledCost) FROM Costs GROUP BY 1").fetchall() == [("2024-05", Decimal("11.5"))]
    assert [r[0] for r in lake.execute("DESCRIBE Costs").fetchall()].count("x_Month") == 1
