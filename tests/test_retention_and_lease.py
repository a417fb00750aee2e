"""Retention of raw exports and lake months; the ingestion lease between processes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import parquet_in, schema_csv, write_export
from typer.testing import CliRunner

from hub import lease, runs
from hub.cli import app
from hub.store import Store
from pipelines.msexports_etl import ingest, load_settings
from pipelines.retention import apply

NOW = datetime(2025, 7, 15, tzinfo=timezone.utc)


def test_msexports_kept_n_days_after_commit_never_when_quarantined(hub_root: Path) -> None:
    good = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    bad = write_export(hub_root, {"part_0_0001.csv": "x,y\n1,2\n"}, rows=1, run_id="bad", folder="e2/x/bad")
    store = Store(str(hub_root))
    ingest(store)
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 0}}}')
    settings = load_settings(store)  # raw exports kept 7 days, lake months kept forever
    committed = next(r for r in runs.load_all(store) if r.state == "committed")
    assert apply(store, settings, now=committed.updatedAt + timedelta(days=6)).deletions == []
    planned = apply(store, settings, dry_run=True, now=committed.updatedAt + timedelta(days=8))
    assert sorted(d.path for d in planned.deletions) == sorted([good, good.replace("manifest.json", "part_0_0001.csv")])
    assert all(d.bytes > 0 for d in planned.deletions) and (hub_root / good).exists()  # dry run deletes nothing
    apply(store, settings, now=committed.updatedAt + timedelta(days=8))
    assert not (hub_root / good).exists() and (hub_root / bad).exists()
    assert next(r for r in runs.load_all(store) if r.state == "committed").sourceDeleted
    assert parquet_in(hub_root)  # the lake is untouched


def test_ingestion_months(hub_root: Path) -> None:
    for month in ("2024-05", "2024-06", "2025-07"):
        y, m = month.split("-")
        rows = schema_csv("focuscost_1.0", 1).replace("2024-05-", f"{month}-")  # charged in the month the manifest says
        write_export(hub_root, {"part_0_0001.csv": rows}, rows=1, run_id=f"r{y}{m}", start_date=f"{month}-01", folder=f"e/{month}")
    store = Store(str(hub_root))
    assert ingest(store).ok
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 13}}}')
    result = apply(store, load_settings(store), now=NOW)  # keeps 2024-07 .. 2025-07
    assert [d.path for d in result.deletions] == ["ingestion/Costs/2024/05", "ingestion/Costs/2024/06"]
    assert [p.split("/")[2:4] for p in parquet_in(hub_root)] == [["2025", "07"]]


def test_retention_cli_dry_run(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1)
    ingest(Store(str(hub_root)))
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}}}')
    result = CliRunner().invoke(app, ["retention", str(hub_root), "--dry-run"])
    assert result.exit_code == 0 and "would free" in result.output and "part_0_0001.csv" in result.output
    assert (hub_root / "msexports/e1/20240501-20240531/run1/part_0_0001.csv").exists()


def test_lease_exclusive_expiry_and_takeover(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "h"))
    store.init_layout()
    first = lease.try_acquire(store, "ingest", ttl=0.5, owner="a")
    assert first is not None and lease.try_acquire(store, "ingest", owner="b") is None
    time.sleep(0.6)  # the holder died: its lease expires and is taken over by the next generation
    second = lease.try_acquire(store, "ingest", ttl=30, owner="b")
    assert second is not None and second.generation == first.generation + 1
    assert lease.try_acquire(store, "ingest", owner="c") is None
    second.release()
    assert lease.try_acquire(store, "ingest", owner="c") is not None


def test_two_processes_ingest_each_export_exactly_once(hub_root: Path) -> None:
    for i in range(6):
        write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 300)}, rows=300, run_id=f"run{i}",
                     folder=f"e/{i}", resource_id=f"/subscriptions/00000000-0000-0000-0000-00000000000{i}")
    cmd = [sys.executable, "-m", "hub.cli", "ingest", str(hub_root)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    records = runs.load_all(Store(str(hub_root)))
    assert len(records) == 6 and all(r.state == "committed" and r.attempts == 1 for r in records)
    assert len(parquet_in(hub_root)) == 6
