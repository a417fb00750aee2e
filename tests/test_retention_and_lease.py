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
from pipelines.ingest import ingest, load_settings
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
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
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


def test_retention_never_deletes_custom_data_lake_files(hub_root: Path) -> None:
    """Defect C1 (critical): with msexports.days 0, retention treated a committed custom-data folder as an export
    and deleted its Parquet files."""
    import duckdb

    folder = hub_root / "ingestion/Costs/2024/05/aws/123456789012"
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 'AWS' AS ProviderName, 1.5::DECIMAL(38,18) AS BilledCost, 1.5::DECIMAL(38,18) AS EffectiveCost, "
               f"'USD' AS BillingCurrency, TIMESTAMPTZ '2024-05-03' AS ChargePeriodStart, 'Usage' AS ChargeCategory) "
               f"TO '{folder / 'c1__part0.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_text("{}")
    store = Store(str(hub_root))
    assert ingest(store).ok
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    assert apply(store, load_settings(store), now=NOW).deletions == []
    assert sorted(p.name for p in folder.iterdir()) == ["c1__part0.parquet", "manifest.json"]
    assert ingest(store).records == []  # still committed, not quarantined


def test_retention_keeps_a_redelivered_export_not_ingested_yet(hub_root: Path) -> None:
    """Defect C5: retention deleted a re-delivered export at a committed export's path (new manifestSha256)."""
    manifest = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    store = Store(str(hub_root))
    assert ingest(store).ok
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)  # same path, new content
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    assert apply(store, load_settings(store), now=NOW).deletions == []
    assert (hub_root / manifest).exists() and (hub_root / manifest.replace("manifest.json", "part_0_0001.csv")).exists()
    (rec,) = ingest(store).records  # then ingested, and its own source goes
    assert rec.state == "committed" and rec.rowsOut == 3 and not (hub_root / manifest).exists()


def test_settings_strict_integers_with_sane_bounds(hub_root: Path) -> None:
    """Defect C13: days 10000000000 passed validation then crashed retention; months: true was read as 1."""
    import pytest

    from hub.errors import UsageError

    store = Store(str(hub_root))
    for bad, field in (('{"retention": {"msexports": {"days": 10000000000}}}', "retention.msexports.days"),
                       ('{"retention": {"ingestion": {"months": true}}}', "retention.ingestion.months"),
                       ('{"retention": {"msexports": {"days": "7"}}}', "retention.msexports.days"),
                       # misspelt keys were ignored and the deleting defaults applied (msexports 0 days, 13 months)
                       ('{"retention": {"msexports": {"day": 30}}}', "retention.msexports.day"),
                       ('{"retention": {"ingestion": {"month": 0}}}', "retention.ingestion.month"),
                       ('{"retention": {"msexport": {"days": 30}}}', "retention.msexport"),
                       ('{"retention": {"msexports": {"days": -1}}}', "retention.msexports.days")):
        (hub_root / "config/settings.json").write_text(bad)
        with pytest.raises(UsageError, match=field.replace(".", r"\.")):
            load_settings(store)
    result = CliRunner().invoke(app, ["retention", str(hub_root)])
    assert result.exit_code == 2 and "retention.msexports.days" in result.output
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 36500}, "ingestion": {"months": 1200}}}')
    assert load_settings(store).retention.ingestion.months == 1200
    (hub_root / "config/settings.json").write_text(  # the reference's own keys, and keys it adds at the top level, stay fine
        '{"learnMore": "x", "retention": {"msexports": {"days": 0}, "ingestion": {"months": 13}, "raw": {"days": 0}, '
        '"final": {"months": 13}}}')
    assert load_settings(store).retention.final.months == 13


def test_lease_files_do_not_pile_up(hub_root: Path) -> None:
    """Defect C14: one lease file per cycle (about 1,440 a day) was never removed."""
    store = Store(str(hub_root))
    for _ in range(5):
        ingest(store)
    assert len(list((hub_root / "config/leases").iterdir())) == 1


def test_foreign_file_in_runs_is_skipped_and_reported(hub_root: Path) -> None:
    """Defect C19: one foreign {} file in config/runs/ made status, ingest, retention and watch crash."""
    import threading

    from pipelines.watch import watch

    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 0}}}')
    (hub_root / "config/runs/foreign.json").write_text("{}")
    (hub_root / "config/runs/garbage.json").write_bytes(b"\x00\xff not json")
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    store = Store(str(hub_root))
    result = ingest(store)
    assert result.ok and len(result.records) == 1
    assert sorted(p.split(":")[0] for p in result.unreadable) == ["config/runs/foreign.json", "config/runs/garbage.json"]
    status = CliRunner().invoke(app, ["status", str(hub_root)])
    assert status.exit_code == 0 and "committed" in status.output and "skipped config/runs/foreign.json" in status.output
    assert apply(store, load_settings(store)).deletions == []
    lines: list[dict] = []
    watch(store, stop=threading.Event(), log=lines.append, interval=0.1, cycles=1)
    assert [line["event"] for line in lines] == ["start", "skipped", "skipped", "stop"]


def _stalled(hub_root: Path, point: str) -> subprocess.Popen:
    """A `hub ingest` of ``hub_root`` stopped (SIGSTOP) at fault ``point`` with a 2 s lease, once that lease expired
    (nothing renews it while every thread is stopped)."""
    import os

    env = {**os.environ, "HUB_STOP_AT": point, "HUB_LEASE_TTL": "2"}
    stalled = subprocess.Popen([sys.executable, "-m", "hub.cli", "ingest", str(hub_root)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while Path(f"/proc/{stalled.pid}/stat").read_text().split(")")[1].split()[0] != "T":
        if stalled.poll() is not None or time.monotonic() > deadline:
            stalled.kill()
            raise AssertionError(stalled.stderr.read().decode())
        time.sleep(0.1)
    time.sleep(2.5)
    return stalled


def test_stale_lease_holder_stops_instead_of_overwriting(hub_root: Path) -> None:
    """Defect C8: a process stalled past HUB_LEASE_TTL resumed and overwrote another process's committed records."""
    import os
    import signal

    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 40)}, rows=40)
    stalled = _stalled(hub_root, "before-swap")
    try:
        store = Store(str(hub_root))
        taken = ingest(store, lease_ttl=60)  # takes over: rolls the complete staged run forward
        assert taken.ok and [r.state for r in taken.recovered] == ["committed"]
        before = {p.name: p.read_bytes() for p in (hub_root / "config/runs").iterdir()}
        os.kill(stalled.pid, signal.SIGCONT)
        out, err = stalled.communicate(timeout=120)
    finally:
        if stalled.poll() is None:
            stalled.kill()
    assert stalled.returncode == 1 and b"taken over by another process" in err, err.decode()
    assert {p.name: p.read_bytes() for p in (hub_root / "config/runs").iterdir()} == before  # nothing overwritten
    assert len(parquet_in(hub_root)) == 1 and runs.load_all(store)[0].rowsOut == 40
    assert not list((hub_root / "config/staging").iterdir())


def test_the_same_export_delivered_again_after_its_source_went_goes_too(hub_root: Path) -> None:
    """Defect: an identical re-delivery of a committed export whose source retention had deleted (`hub demo` run
    twice) is not ingested again (it is committed) and stayed in msexports/ for good. Retention deletes it; a changed
    one (new content) stays until it is ingested."""
    text = schema_csv("focuscost_1.0", 2)
    manifest = write_export(hub_root, {"part_0_0001.csv": text}, rows=2)
    store = Store(str(hub_root))
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    assert ingest(store).ok and not (hub_root / manifest).exists()  # deleted after its commit (days 0)
    write_export(hub_root, {"part_0_0001.csv": text}, rows=2)  # the very same delivery once more
    assert ingest(store).records == []  # committed already: not ingested again
    done = apply(store, load_settings(store))
    assert sorted(d.path for d in done.deletions) == sorted([manifest, manifest.replace("manifest.json", "part_0_0001.csv")])
    assert not (hub_root / manifest).exists()
    assert apply(store, load_settings(store)).deletions == []


def test_a_retention_killed_while_deleting_a_month_leaves_it_whole_or_gone_for_readers(hub_root: Path, monkeypatch) -> None:
    """Review of stop 39: a month folder was deleted file by file, so a retention killed midway left readers a month
    with part of its rows (and `hub ingest` never finished it). It leaves the lake in one rename first; what a killed
    run left in config/trash goes on the next ingestion."""
    import pytest

    for month in ("2024-05", "2025-07"):
        y, m = month.split("-")
        rows = schema_csv("focuscost_1.0", 3).replace("2024-05-", f"{month}-")
        write_export(hub_root, {"part_0_0001.csv": rows}, rows=3, run_id=f"r{y}{m}", start_date=f"{month}-01", folder=f"e/{month}")
    store = Store(str(hub_root))
    assert ingest(store).ok
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 13}}}')

    def killed(self: Store, rel: str) -> None:  # the process dies while deleting what it moved
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(Store, "delete_tree", killed)
        with pytest.raises(SystemExit):
            apply(store, load_settings(store), now=NOW)
    assert [p.split("/")[2:4] for p in parquet_in(hub_root)] == [["2025", "07"]]  # May gone whole from the lake
    assert len(list((hub_root / "config/trash").iterdir())) == 1
    ingest(Store(str(hub_root)))
    assert not list((hub_root / "config/trash").iterdir())


def test_a_stale_holder_never_sets_aside_the_custom_files_another_process_committed(hub_root: Path) -> None:
    """Review of stop 42: `hub ingest` stalled past its lease while normalizing a custom folder; another took over and
    committed it (100 rows, 250); the stalled one resumed, failed on its swept staging and renamed the committed file
    `.quarantined` before its first fenced write: the month's custom costs left the lake. It stops first now."""
    import os
    import signal

    import duckdb

    folder = hub_root / "ingestion/Costs/2024/05/custom/onprem"
    folder.mkdir(parents=True)
    duckdb.connect().execute(f"""COPY (SELECT 'Custom' AS ProviderName, 'x' AS BillingAccountId, 'USD' AS BillingCurrency,
        TIMESTAMP '2024-05-01' AS BillingPeriodStart, TIMESTAMP '2024-06-01' AS BillingPeriodEnd,
        TIMESTAMP '2024-05-03' AS ChargePeriodStart, TIMESTAMP '2024-05-04' AS ChargePeriodEnd, 'Usage' AS ChargeCategory,
        CAST(2.5 AS DECIMAL(18,2)) AS BilledCost, CAST(2.5 AS DECIMAL(18,2)) AS EffectiveCost FROM range(100))
        TO '{folder}/d1__a.parquet' (FORMAT parquet)""")
    (folder / "manifest.json").write_text("{}")
    (hub_root / "config/settings.json").write_text('{"retention": {"ingestion": {"months": 0}}}')
    stalled = _stalled(hub_root, "after-part-1")
    try:
        assert ingest(Store(str(hub_root)), lease_ttl=60).ok  # takes over and commits the folder
        os.kill(stalled.pid, signal.SIGCONT)
        _, err = stalled.communicate(timeout=120)
    finally:
        if stalled.poll() is None:
            stalled.kill()
    assert stalled.returncode == 1 and b"taken over by another process" in err, err.decode()
    assert sorted(p.name for p in folder.iterdir()) == ["d1__a.parquet", "manifest.json"]
    got = duckdb.connect().execute(f"SELECT count(*), sum(BilledCost) FROM '{folder}/*.parquet'").fetchall()
    assert got == [(100, 250)]
