"""hub watch: catch-up, new arrivals by events, waiting for blobs, clean stop, and kill -9 at random moments."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
from conftest import custom_file, parquet_in, schema_csv, write_export

from hub import runs
from hub.sources import msexports
from hub.store import Store
from pipelines.ingest import ingest
from pipelines.watch import watch


def _states(root: Path) -> dict[str, str]:
    return {r.runId or r.key: r.state for r in runs.load_all(Store(str(root)))}


def _until(cond, timeout: float = 60.0) -> None:  # noqa: ANN001
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_catch_up_then_follow_new_arrivals(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="early", folder="e/early")
    stop, lines = threading.Event(), []
    t = threading.Thread(target=watch, kwargs={"store": Store(str(hub_root)), "stop": stop, "log": lines.append,
                                               "interval": 300, "blob_timeout": 60})
    t.start()
    try:
        _until(lambda: _states(hub_root).get("early") == "committed")
        write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="late", folder="e/late",
                     resource_id="/subscriptions/00000000-0000-0000-0000-000000000009")
        _until(lambda: _states(hub_root).get("late") == "committed", timeout=30)  # an event, not the 300 s scan
    finally:
        stop.set()
        t.join(timeout=60)
    runs_logged = [line for line in lines if line["event"] == "run"]
    assert [line["outcome"] for line in runs_logged] == ["committed", "committed"]
    assert {"export", "dataset", "month", "scope", "rows", "seconds", "outcome"} <= set(runs_logged[0])


def test_waits_for_blobs_then_gives_up(hub_root: Path) -> None:
    manifest = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    part = (hub_root / manifest).with_name("part_0_0001.csv")
    data = part.read_bytes()
    part.unlink()  # the manifest came first; the part is still uploading
    stop, lines = threading.Event(), []
    t = threading.Thread(target=watch, kwargs={"store": Store(str(hub_root)), "stop": stop, "log": lines.append,
                                               "interval": 300, "blob_timeout": 30})
    t.start()
    try:
        time.sleep(1.5)
        assert _states(hub_root) == {}  # not quarantined while within the grace period
        part.write_bytes(data)
        _until(lambda: _states(hub_root).get("run1") == "committed", timeout=30)
    finally:
        stop.set()
        t.join(timeout=60)
    missing = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="never", folder="e/never")
    (hub_root / missing).with_name("part_0_0001.csv").unlink()
    watch(Store(str(hub_root)), stop=threading.Event(), log=lines.append, interval=0.2, blob_timeout=0.5, cycles=8)
    assert _states(hub_root)["never"] == "quarantined"


def test_a_re_delivery_at_a_seen_path_gets_its_own_grace(hub_root: Path) -> None:
    """Defect: the watcher set a manifest path's blob deadline once, the first time it saw the path; a re-delivery at
    that path (manifest first, parts still copying) after the deadline was quarantined at once. A manifest with a new
    listing signature gets a new deadline; paths that are gone are forgotten."""
    from pipelines.watch import _cycle

    store, grace, signatures, lines = Store(str(hub_root)), {}, {}, []
    rel = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    (rec,) = _cycle(store, grace, {}, 1.0, 0.2, lines.append, signatures=signatures).all
    assert rec.state == "committed"
    time.sleep(0.3)  # the first delivery's deadline has passed
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 5)}, rows=5, manifest_extra={
        "runInfo": {"runId": "run1", "startDate": "2024-05-01T00:00:00", "submittedTime": "2024-05-03T00:00:00Z"}})
    part = (hub_root / rel).with_name("part_0_0001.csv")
    data = part.read_bytes()
    part.unlink()  # still being copied
    waiting = _cycle(store, grace, {}, 1.0, 30.0, lines.append, signatures=signatures)
    assert (waiting.all, waiting.waiting) == ([], [rel])
    part.write_bytes(data)
    (rec,) = _cycle(store, grace, {}, 1.0, 30.0, lines.append, signatures=signatures).all
    assert (rec.state, rec.rowsOut) == ("committed", 5)
    shutil.rmtree(hub_root / "msexports")
    _cycle(store, grace, {}, 1.0, 30.0, lines.append, signatures=signatures)
    assert grace == {} and signatures == {}


def test_a_manifest_still_being_written_is_waited_for(hub_root: Path) -> None:
    """A manifest copied in place (created empty, then filled: what a local copy does) woke the watcher while it was
    not JSON yet, and it was quarantined before the write ended (a flaky catch-up test showed it). The watcher waits
    for a manifest that is not JSON and changed in the last few seconds; one that stays broken is quarantined once it
    has not changed for that long; a one-shot ``hub ingest`` is unchanged (it quarantines at once)."""
    manifest = hub_root / write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    whole = manifest.read_bytes()
    manifest.write_bytes(whole[: len(whole) // 2])  # half written, just now
    grace: dict[str, float] = {}
    result = ingest(Store(str(hub_root)), blob_grace=grace)
    assert (result.all, result.waiting) == ([], ["msexports/e1/20240501-20240531/run1/manifest.json"])
    manifest.write_bytes(whole)
    (rec,) = ingest(Store(str(hub_root)), blob_grace=grace).all
    assert (rec.state, rec.rowsOut) == ("committed", 3)

    broken = hub_root / write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="b",
                                     folder="e/broken")
    broken.write_bytes(b'{"manifestVersion": ')
    assert ingest(Store(str(hub_root)), blob_grace=grace).all == []
    old = time.time() - msexports.FRESH_MANIFEST - 1
    os.utime(broken, (old, old))
    (rec,) = ingest(Store(str(hub_root)), blob_grace=grace).all
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestReadFailed")

    again = hub_root / write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="c",
                                    folder="e/again")
    again.write_bytes(b"")
    (rec,) = ingest(Store(str(hub_root))).all  # no watcher: as before
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestReadFailed")


def test_sigterm_stops_cleanly(hub_root: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "watch", str(hub_root), "--json-logs", "--interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the handlers are installed once it logs "start" (a loaded machine starts slowly)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in [first, *out.splitlines()]]
    assert events[0] == "start" and events[-1] == "stop"


def test_kill_9_watcher_at_random_moments(hub_root: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_export(hub_root, {f"part_{j}_0001.csv": schema_csv("focuscost_1.0", 2000) for j in range(2)}, rows=4000,
                     run_id=f"r{i}", folder=f"e/{i}", resource_id=f"/subscriptions/00000000-0000-0000-0000-00000000000{i}")
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 0}}}')
    template = tmp_path / "template"
    shutil.copytree(hub_root, template)
    cmd = [sys.executable, "-m", "hub.cli", "watch", "--interval", "0.5"]
    env = {**os.environ, "HUB_LEASE_TTL": "3"}  # a killed watcher's lease expires in 3 s

    def run_until_done(root: Path) -> None:
        proc = subprocess.Popen([*cmd, str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            _until(lambda: list(_states(root).values()) == ["committed"] * 3, timeout=240)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    def lake(root: Path) -> tuple:
        return duckdb.sql(f"SELECT count(*), sum(BilledCost), sum(EffectiveCost) FROM '{root}/ingestion/Costs/**/*.parquet'").fetchall()[0]

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    run_until_done(clean)
    expected = lake(clean)
    rng = random.Random(7)
    for k in range(4):
        root = tmp_path / f"kill{k}"
        shutil.copytree(template, root)
        proc = subprocess.Popen([*cmd, str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.5, 4.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(parquet_in(root)) in range(0, 7) and all("/staging/" not in p for p in parquet_in(root))
        run_until_done(root)  # the restarted watcher takes over the dead one's lease (ttl) and finishes
        assert lake(root) == expected and len(parquet_in(root)) == 6


def test_listing_checkpoint_skips_final_manifests(hub_root: Path) -> None:
    from pipelines.ingest import ingest

    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    store = Store(str(hub_root))
    checkpoint: dict[str, str] = {}
    assert ingest(store, checkpoint=checkpoint).ok
    (rel,) = checkpoint
    (hub_root / rel).write_text("{broken")  # an unchanged listing signature would hide this; a change is seen
    assert ingest(store, checkpoint=checkpoint).records[0].error.code == "ManifestReadFailed"
    reads = []
    original = Store.read_bytes
    Store.read_bytes = lambda self, r: reads.append(r) or original(self, r)  # type: ignore[method-assign]
    try:
        assert ingest(store, checkpoint=checkpoint).records == []
    finally:
        Store.read_bytes = original  # type: ignore[method-assign]
    assert rel not in reads  # final and unchanged: not read again


def test_listing_checkpoint_covers_other_clouds_deliveries(hub_root: Path) -> None:
    """exports/ deliveries join the checkpoint: a final one with a non-empty manifest is not read again while its
    listing is unchanged; a file added to its folder changes the listing and the delivery is taken again. The
    msexports/ and exports/ entries live side by side (neither source forgets the other's)."""
    from conftest import DATA
    from test_native_focus import deliver

    from pipelines.ingest import ingest

    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    sample = (DATA / "aws" / "aws-focus10-942rows.csv").read_text()
    base = deliver(hub_root, "aws", "focus/2024-01", {"a.csv": sample}, manifest=b"{}")
    store = Store(str(hub_root))
    checkpoint: dict[str, str] = {}
    assert ingest(store, checkpoint=checkpoint).ok
    native = "exports/aws/focus/2024-01/manifest.json"
    assert native in checkpoint and any(k.startswith("msexports/") for k in checkpoint)
    reads = []
    original = Store.read_bytes
    Store.read_bytes = lambda self, r: reads.append(r) or original(self, r)  # type: ignore[method-assign]
    try:
        assert ingest(store, checkpoint=checkpoint).records == []
        assert native not in reads and not any(r.startswith("msexports/") for r in reads)
        (base / "b.csv").write_text(sample.replace("\n", "\n", 1))  # a second file: the delivery is new
        again = ingest(store, checkpoint=checkpoint)
    finally:
        Store.read_bytes = original  # type: ignore[method-assign]
    assert native in reads and again.records and all(r.manifest == native for r in again.records)
    assert native in checkpoint and any(k.startswith("msexports/") for k in checkpoint)


def test_native_focus_delivery_is_picked_up_by_an_event(hub_root: Path) -> None:
    """A delivery written under exports/<provider>/ while the watcher waits: the manifest's event wakes it (not the
    300 s scan) and its month is committed."""
    from conftest import DATA

    stop, lines = threading.Event(), []
    t = threading.Thread(target=watch, kwargs={"store": Store(str(hub_root)), "stop": stop, "log": lines.append,
                                               "interval": 300, "blob_timeout": 60})
    t.start()
    try:
        time.sleep(1)
        base = hub_root / "exports" / "oci" / "FOCUS Reports" / "2024" / "09"
        base.mkdir(parents=True)
        (base / "0001.csv").write_bytes((DATA / "oci" / "oci-focus10-7rows.csv").read_bytes())
        (base / "manifest.json").write_bytes(b"")
        _until(lambda: sorted(_states(hub_root).values()) == ["committed", "committed"], timeout=30)
    finally:
        stop.set()
        t.join(timeout=60)
    assert sorted(line["month"] for line in lines if line["event"] == "run") == ["2024-09", "2024-10"]


def test_an_oci_report_file_is_taken_once_it_has_stopped_changing(hub_root: Path) -> None:
    """An OCI report file (no manifest) written while the watcher runs: it waits while the file is newer than the
    settle time, then its months are committed without a manifest or a full scan."""
    import gzip

    from conftest import DATA

    stop, lines = threading.Event(), []
    t = threading.Thread(target=watch, kwargs={"store": Store(str(hub_root)), "stop": stop, "log": lines.append,
                                               "interval": 300, "blob_timeout": 60, "settle": 2})
    t.start()
    try:
        time.sleep(1)
        base = hub_root / "exports" / "oci" / "FOCUS Reports" / "2024" / "09" / "30"
        base.mkdir(parents=True)
        written = time.monotonic()
        (base / "0001.csv.gz").write_bytes(gzip.compress((DATA / "oci" / "oci-focus10-7rows.csv").read_bytes()))
        _until(lambda: sorted(_states(hub_root).values()) == ["committed", "committed"], timeout=30)
        waited = time.monotonic() - written
    finally:
        stop.set()
        t.join(timeout=60)
    assert waited >= 2  # not before the file had stayed unchanged for the settle time
    assert sorted(line["month"] for line in lines if line["event"] == "run") == ["2024-09", "2024-10"]


def test_the_pause_between_passes() -> None:
    """1 s while an Azure manifest's blobs arrive; a quarter of the settle time while only OCI files settle (at least
    1 s, at most the interval); the interval when nothing waits."""
    from pipelines.watch import _pause

    assert _pause([], 60, 60) == 60
    assert _pause(["msexports/a/manifest.json", "exports/oci/r/1.csv.gz"], 60, 60) == 1.0
    assert _pause(["exports/oci/r/1.csv.gz"], 60, 60) == 15.0
    assert _pause(["exports/oci/r/1.csv.gz"], 10, 60) == 10
    assert _pause(["exports/oci/r/1.csv.gz"], 60, 2) == 1.0


def test_settings_broken_after_the_start_pause_the_watcher_instead_of_stopping_it(hub_root: Path) -> None:
    """Defect: settings.json caught half-written by an editor (or any bad edit) stopped the always-on watcher (logged
    first as a `pull-error`); under systemd's Restart= a crash loop. Invalid at start: still exit 2 (UsageError)."""
    import pytest

    from hub.errors import UsageError

    settings = hub_root / "config" / "settings.json"
    good = settings.read_text()
    stop, lines = threading.Event(), []
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            watch(Store(str(hub_root)), stop=stop, log=lines.append, interval=0.2, blob_timeout=5, settle=0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["exc"] = exc

    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="first", folder="e/first")
    t = threading.Thread(target=run)
    t.start()
    try:
        _until(lambda: any(line["event"] == "run" for line in lines), timeout=30)  # a cycle went through
        settings.write_text('{"retention": {')  # half-written
        _until(lambda: any(line["event"] == "error" and "settings.json" in line["error"] for line in lines), timeout=30)
        assert t.is_alive() and not any(line["event"] == "pull-error" for line in lines)
        settings.write_text(good)
        write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="after", folder="e/after",
                     resource_id="/subscriptions/00000000-0000-0000-0000-000000000009")
        _until(lambda: _states(hub_root).get("after") == "committed", timeout=60)
    finally:
        stop.set()
        t.join(timeout=60)
    assert "exc" not in box
    settings.write_text("[]")
    with pytest.raises(UsageError, match="settings"):
        watch(Store(str(hub_root)), stop=threading.Event(), log=lambda _: None, cycles=1, interval=0.1)


def test_a_custom_folder_settling_is_paced_like_other_files() -> None:
    """Review: a custom folder waiting for ``--settle`` made the watcher pass every second (a full listing, lease and
    checkpoint writes each time on a bucket): it waits a quarter of the settle time, as OCI files do."""
    from pipelines.watch import _pause

    assert _pause(["ingestion/Costs/2024/09/aws/1/manifest.json"], 60.0, 30.0) == 7.5
    assert _pause(["exports/oci/FOCUS Reports/2024/05/01/a.csv.gz", "ingestion/Costs/2024/09/aws/1/manifest.json"], 60.0, 30.0) == 7.5
    assert _pause(["msexports/e1/manifest.json"], 60.0, 30.0) == 1.0


def test_files_with_a_modification_time_in_the_future_settle_from_when_they_were_first_seen(tmp_path: Path) -> None:
    """Review of stop 39: a delivery whose data file carried a time in the future (a clock ahead, times kept by a copy)
    waited silently until the clock reached it (now - mtime stayed negative); `hub ingest` took it at once. Now it
    settles once its listing has stayed the same for the settle time from when the watcher first saw it; so does a
    custom folder."""
    from hub.sample_gcp import write_gcp_export

    root = tmp_path / "hub"
    manifest = write_gcp_export(str(root), rows=5, month="2024-05")
    ahead = time.time() + 2 * 86400
    for path in (root / manifest).parent.iterdir():
        if path.name != "manifest.json":
            os.utime(path, (ahead, ahead))
    custom = root / "ingestion/Costs/2024/05/custom/team-x"
    custom.mkdir(parents=True)
    (custom / "manifest.json").write_bytes(b"")
    custom_file(custom / "d1.parquet")
    os.utime(custom / "d1.parquet", (ahead, ahead))
    store = Store(str(root))
    first = ingest(store, settle=1)
    assert not first.all and sorted(first.waiting) == sorted([manifest, "ingestion/Costs/2024/05/custom/team-x/manifest.json"])
    time.sleep(1.2)
    second = ingest(store, settle=1)
    assert second.ok and not second.waiting and {r.state for r in second.all} == {"committed"}
    assert {r.manifest.removeprefix("custom:") for r in second.all} >= {manifest, "ingestion/Costs/2024/05/custom/team-x/manifest.json"}


def test_a_backoff_is_waited_out_whatever_files_arrive(tmp_path: Path) -> None:
    """Review of stop 40: after a failed cycle the watcher's backoff (5 s, 10 s, ... up to 5 minutes) was cut short by
    every file event: a sync writing files while the settings were invalid logged an error line a second. A wait after a
    failure ignores file events (the stop event still ends it); a normal wait ends on one."""
    from pipelines.watch import _Wakeup

    wake = _Wakeup(Store(str(tmp_path / "hub")))
    stop = threading.Event()
    try:
        wake.event.set()  # a file event during the backoff
        start = time.monotonic()
        wake.wait(0.5, stop, events=False)
        assert time.monotonic() - start >= 0.5
        wake.event.set()
        wake.wait(60, stop)  # a normal wait: the event ends it (else this test would take a minute)
        assert not wake.event.is_set()
    finally:
        wake.close()
