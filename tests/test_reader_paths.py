"""Every reader sees the lake whatever characters the hub root's path holds: glob characters (``[``, ``*``, ``?``,
``{``, ``]``) and ``\\`` are part of a folder name, never a pattern (defect: a root under ``/data/hub[1]/`` looked
empty to hub query, costs, report, powerbi and status)."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub import catalog, powerbi, runs
from hub.errors import UsageError
from hub.report import write_report
from hub.sample_data import write_export
from hub.store import Store
from pipelines.ingest import ingest

ROWS = 40  # demo cost rows of 2024-05 (two parts), plus one price sheet

NAMES = ["hub[1]", "h*b?{x}]", "back\\slash"]


@pytest.fixture(scope="module", params=NAMES, ids=["bracket", "star-question-brace", "backslash"])
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("paths") / request.param / "hub")
    store = Store(root)
    store.init_layout()
    store.write_bytes("config/settings.json", b'{"retention": {"ingestion": {"months": 0}}}')  # 2024 is kept
    write_export(root, export_type="FocusCost", data_version="1.0", rows=ROWS, month="2024-05", parts=2, export_name="costs")
    write_export(root, export_type="PriceSheet", data_version="2023-05-01", month="2024-05", export_name="prices")
    assert [r.state for r in ingest(store).records] == ["committed", "committed"]
    assert [r.state for r in runs.load_all(store)] == ["committed", "committed"]
    return root


def test_catalog_sees_every_row(lake: str) -> None:
    con = catalog.connect(lake)
    assert con.execute("SELECT count(*), min(x_Month), max(x_Month) FROM Costs").fetchall() == [(ROWS, "2024-05", "2024-05")]
    assert con.execute("SELECT count(*) FROM Costs_v1_0 WHERE x_Month = '2024-05'").fetchall() == [(ROWS,)]
    assert con.execute("SELECT count(*) > 0 FROM Prices").fetchall() == [(True,)]


def test_query_and_status_commands(lake: str) -> None:
    def hub(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120)

    proc = hub("query", lake, "SELECT count(*) AS n FROM Costs", "--format", "csv")
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["n", str(ROWS)], proc.stderr
    status = hub("status", lake)
    assert status.returncode == 0 and "no runs yet" not in status.stdout and "committed" in status.stdout
    validated = hub("validate", lake)
    assert validated.returncode == 0 and f"{ROWS:,} rows" in validated.stdout, validated.stdout + validated.stderr


def test_report_has_data(lake: str, tmp_path: Path) -> None:
    write_report(lake, str(tmp_path / "r.html"))
    assert 'id="no-data"' not in (tmp_path / "r.html").read_text()


def test_powerbi_publishes_every_folder(lake: str, tmp_path: Path) -> None:
    out = tmp_path / "out[2]*"  # the output's own path may hold glob characters too
    result = powerbi.publish(lake, str(out))
    assert sorted(f.split("/")[0] for f in result.folders) == ["Costs", "Prices"] and result.rows == ROWS
    assert pq.read_table(next((out / "Costs").rglob("costs.parquet"))).num_rows == ROWS
    again = powerbi.publish(lake, str(out))  # a re-publish lists its own output: replaces, removes nothing
    assert again.rows == ROWS and again.removed == []


def test_remote_root_with_glob_characters() -> None:
    """A remote (fsspec) root: DuckDB reads it through fsspec's glob, which escapes the same way."""
    store = Store(f"memory://h[1]*{uuid.uuid4().hex[:8]}/hub")
    store.init_layout()
    buf = io.BytesIO()
    pq.write_table(pa.table({"BilledCost": pa.array([1, 2, 3], pa.int64())}), buf)
    store.write_bytes("ingestion/Costs/2024/05/x/r__p.parquet", buf.getvalue())
    con = catalog.connect(store)
    assert con.execute("SELECT sum(BilledCost), min(x_Month) FROM Costs").fetchall() == [(6, "2024-05")]
    runs.save(store, runs.RunRecord(key="k1", manifest="m", manifestSha256="s", state="committed"))
    assert [r.key for r in runs.load_all(store)] == ["k1"]


def test_glob_escape() -> None:
    assert catalog.glob_escape("/d/h[1]*?{x}]/a") == "/d/h[[]1][*][?]{x}]/a"


def test_catalog_file_over_a_backslash_root_is_refused(tmp_path: Path) -> None:
    """DuckDB's own glob cannot read a path with ``\\``: a database file (read without the hub's fsspec registration)
    would hold views that match nothing, so writing one is a usage error; roots without it still get a file."""
    bad = Store(str(tmp_path / "a\\b"))
    bad.init_layout()
    with pytest.raises(UsageError, match="holds '\\\\'"):
        catalog.write(bad, str(tmp_path / "x.duckdb"))
    assert not (tmp_path / "x.duckdb").exists()
    good = Store(str(tmp_path / "a[b]"))
    good.init_layout()
    assert "Costs" in catalog.write(good, str(tmp_path / "y.duckdb"))
