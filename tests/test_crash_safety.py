"""Crash safety: a real `hub ingest` process killed at every step (and at random moments), then restarted,
leaves the lake exactly as a clean run would; before the restart readers see the old run or the new one."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import SCOPE, parquet_in, schema_csv, write_export

from hub import runs
from hub.store import Store
from pipelines.ingest import ingest

DEST = f"ingestion/Costs/2024/05/{SCOPE}"
OLD = [f"{DEST}/run1__part_{i}_0001.parquet" for i in range(2)]
NEW = [f"{DEST}/run2__part_{i}_0001.parquet" for i in range(4)]


def _big_csv(rows: int) -> str:
    block = schema_csv("focuscost_1.0", 500)
    header, body = block.split("\n", 1)
    return header + "\n" + body * (rows // 500)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub holding a committed run1 (2 parts) and a pending run2 (4 parts) for the same folder."""
    from hub.settings import Settings
    from hub.store import SETTINGS

    root = tmp_path_factory.mktemp("template") / "hub"
    store = Store(str(root))
    store.init_layout()
    settings = Settings()
    settings.retention.msexports.days = 7
    settings.retention.ingestion.months = 0  # its exports are of 2024
    store.write_bytes(SETTINGS, settings.to_json().encode())
    write_export(root, {f"part_{i}_0001.csv": schema_csv("focuscost_1.0", 50) for i in range(2)}, rows=100,
                 manifest_extra={"runInfo": {"runId": "run1", "startDate": "2024-05-01", "submittedTime": "2024-05-02T00:00:00Z"}})
    assert ingest(store).ok
    text = _big_csv(20_000)
    write_export(root, {f"part_{i}_0001.csv": text for i in range(4)}, rows=80_000, run_id="run2",
                 manifest_extra={"runInfo": {"runId": "run2", "startDate": "2024-05-01", "submittedTime": "2024-05-03T00:00:00Z"}})
    return root


def _copy(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    shutil.copytree(template, root)
    return root


#: a killed process's ingestion lease expires after 1 s, so the restart does not wait for it
ENV = {**os.environ, "HUB_LEASE_TTL": "1"}


def _ingest_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "hub.cli", "ingest", str(root)]


def _lake_sum(root: Path) -> tuple:
    con = duckdb.connect()
    return con.sql(f"SELECT count(*), sum(BilledCost) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet')").fetchall()[0]


def _assert_clean_result(root: Path, expected: tuple) -> None:
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.records + result.recovered]
    assert parquet_in(root) == NEW
    assert _lake_sum(root) == expected
    assert not list((root / "config").glob("staging/*"))
    states = {r.runId: r.state for r in runs.load_all(Store(str(root)))}
    assert states == {"run1": "superseded", "run2": "committed"}  # run2 is the newer delivery of the folder
    assert not list((root / DEST).glob(".hub-swap-*"))


@pytest.fixture(scope="module")
def clean_result(template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = _copy(template, tmp_path_factory.mktemp("clean"))
    assert subprocess.run(_ingest_cmd(root), capture_output=True, env=ENV).returncode == 0
    assert parquet_in(root) == NEW
    return _lake_sum(root)


@pytest.mark.parametrize("point", ["after-part-1", "after-part-3", "after-part-4", "before-swap", "mid-swap", "before-commit"])
def test_crash_at_each_step_then_restart(template: Path, tmp_path: Path, clean_result: tuple, point: str) -> None:
    root = _copy(template, tmp_path)
    proc = subprocess.run(_ingest_cmd(root), capture_output=True, env={**ENV, "HUB_CRASH_AT": point})
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    assert parquet_in(root) in (OLD, NEW)  # never both, never a mix
    _assert_clean_result(root, clean_result)


def test_kill_at_random_moments(template: Path, tmp_path: Path, clean_result: tuple) -> None:
    start = time.perf_counter()
    subprocess.run(_ingest_cmd(_copy(template, tmp_path / "timing")), check=True, capture_output=True, env=ENV)
    duration = time.perf_counter() - start
    rng = random.Random(20241123)
    for i in range(6):
        root = _copy(template, tmp_path / f"kill{i}")
        proc = subprocess.Popen(_ingest_cmd(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        time.sleep(rng.uniform(0.2, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert parquet_in(root) in (OLD, NEW), f"iteration {i}"
        _assert_clean_result(root, clean_result)


def test_crash_mid_swap_with_nested_scope_folder_is_repaired(template: Path, tmp_path: Path, clean_result: tuple) -> None:
    """A folder holding a nested scope's folder is swapped file by file: a crash is rolled forward on restart."""
    root = _copy(template, tmp_path)
    nested = root / DEST / "nested"
    nested.mkdir()
    (nested / "other.parquet").write_bytes((root / OLD[0]).read_bytes())
    proc = subprocess.run(_ingest_cmd(root), capture_output=True, env={**ENV, "HUB_CRASH_AT": "mid-swap"})
    assert proc.returncode == 137
    assert not set(parquet_in(root)) & set(OLD)  # old rows gone first: never counted twice
    result = ingest(Store(str(root)))
    assert result.ok and [r.runId for r in result.recovered] == ["run2"]
    assert [p for p in parquet_in(root) if "nested" not in p] == NEW
    assert (nested / "other.parquet").exists()


@pytest.mark.parametrize("point", ["mid-swap", "before-commit"])
def test_crash_during_the_raw_copy_swap(tmp_path: Path, point: str) -> None:
    """Non-Costs exports also swap a raw/ copy: a crash between the two swaps is finished on restart."""
    from conftest import make_hub, rows_csv
    from test_other_datasets import DETAILS

    root = make_hub(tmp_path / "hub")
    for run in ("run1", "run2"):
        write_export(root, {"part_0_0001.csv": rows_csv("reservationdetails_2023-03-01", [DETAILS])}, export_type="ReservationDetails",
                     data_version="2023-03-01", rows=1, run_id=run)
        env = {**ENV, "HUB_CRASH_AT": point} if run == "run2" else ENV
        proc = subprocess.run(_ingest_cmd(root), capture_output=True, env=env)
        assert proc.returncode == (137 if run == "run2" else 0), proc.stderr.decode()[-2000:]
    assert ingest(Store(str(root))).ok
    for area in ("ingestion", "raw"):
        files = sorted(p.name for p in (root / area / "CommitmentDiscountUsage").rglob("*.parquet"))
        assert files == ["run2__part_0_0001.parquet"], area
    assert not list((root / "config" / "staging").iterdir())
