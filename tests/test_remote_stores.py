"""The same end-to-end flows on a local folder, Azure Blob (real Azurite server) and S3 (real moto server):
ingest, replay, crash + restart, concurrent ingest, retention and custom data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import fsspec
import pytest
import stores
from conftest import DATA

from hub import catalog, runs
from hub.cost_analysis import CostQuery, query_costs
from hub.sample_data import write_export
from hub.sources import custom as custom_source
from hub.store import Store
from pipelines.ingest import ingest
from pipelines.retention import apply
from pipelines.watch import watch


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, dict[str, str]]]:
    with stores.azurite() as az, stores.moto() as s3:
        yield {"azurite": az, "moto": s3}


@pytest.fixture(params=["local", "azurite", "moto"])
def root(request: pytest.FixtureRequest, servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh hub root on each store, credentials in the usual environment variables."""
    kind = request.param
    name = f"hub{uuid.uuid4().hex[:12]}"
    if kind == "local":
        url = str(tmp_path / name)
    else:
        for k, v in servers[kind].items():
            monkeypatch.setenv(k, v)
        fs = fsspec.filesystem("az" if kind == "azurite" else "s3", skip_instance_cache=True)
        fs.mkdir(name)
        url = f"{'az' if kind == 'azurite' else 's3'}://{name}/finops"
    store = Store(url)
    store.init_layout()
    store.write_bytes("config/settings.json", b'{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 0}}}')
    return url


def lake(url: str) -> tuple:
    store = Store(url)
    files = sorted(store.fs.glob(store.full("ingestion/Costs/**/*.parquet")))
    con = duckdb.connect()
    tables = []
    for f in files:
        with store.fs.open(f, "rb") as fh:
            tables.append(con.execute("SELECT count(*), sum(BilledCost) FROM read_parquet(?)", [_tmp_copy(fh.read())]).fetchall()[0])
    return len(files), sum(t[0] for t in tables), sum((t[1] for t in tables), start=0)


def _tmp_copy(data: bytes) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".parquet")
    os.write(fd, data)
    os.close(fd)
    return path


def test_ingest_and_replay(root: str) -> None:
    write_export(root, rows=500, parts=2, gzip=True, export_name="costs")
    write_export(root, export_type="PriceSheet", data_version="2023-05-01", export_name="prices")
    result = ingest(Store(root))
    assert result.ok and len(result.records) == 2, [r.error for r in result.all]
    first = lake(root)
    assert first[:2] == (2, 500)
    assert ingest(Store(root), force=True).ok  # replay: identical lake, no duplicates
    assert lake(root) == first


@pytest.mark.parametrize("point", ["before-swap", "mid-swap"])
def test_crash_then_restart(root: str, point: str) -> None:
    write_export(root, rows=300, parts=2, export_name="costs")
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", root], capture_output=True,
                          env={**os.environ, "HUB_CRASH_AT": point, "HUB_LEASE_TTL": "1"})
    assert proc.returncode == 137
    files, rows, _ = lake(root)
    assert rows in (0, 150, 300) and files <= 2  # never a duplicate; all or (mid-swap, blob store) part of it
    os.environ["HUB_LEASE_TTL"] = "1"
    try:
        result = ingest(Store(root), wait=30)
    finally:
        del os.environ["HUB_LEASE_TTL"]
    assert result.ok, [r.error for r in result.all]
    assert lake(root)[:2] == (2, 300)
    assert [r.state for r in runs.load_all(Store(root))] == ["committed"]


def test_concurrent_ingest_processes(root: str) -> None:
    for i in range(3):
        write_export(root, rows=200, export_name=f"costs{i}", resource_id=f"/subscriptions/00000000-0000-0000-0000-00000000000{i}")
    procs = [subprocess.Popen([sys.executable, "-m", "hub.cli", "ingest", root], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    records = runs.load_all(Store(root))
    assert len(records) == 3 and all(r.state == "committed" and r.attempts == 1 for r in records)
    assert lake(root)[:2] == (3, 600)


def test_retention_and_custom_data(root: str) -> None:
    manifest = write_export(root, rows=100, export_name="costs")
    store = Store(root)
    assert ingest(store).ok
    (rec,) = runs.load_all(store)
    assert apply(store, store_settings(store), now=rec.updatedAt.replace(year=rec.updatedAt.year + 1)).deletions
    assert not store.fs.exists(manifest)
    # custom FOCUS data from another provider, announced by an empty manifest
    local = _tmp_copy(b"")
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{DATA / 'focus/focus_sample_1000.csv'}', nullstr = 'NULL') LIMIT 50) "
               f"TO '{local}' (FORMAT parquet)")
    folder = "ingestion/Costs/2024/09/aws/123456789012"
    store.put_file(local, f"{folder}/ing1__part0.parquet")
    store.write_bytes(f"{folder}/manifest.json", b"")
    (custom,) = ingest(store).records
    assert custom.state == "committed", custom.error
    assert custom.rowsOut == 50 and store.exists(f"{folder}/manifest.json")
    # a part added later: the committed one is known as the hub's own by the signature its commit left (carried over)
    store.put_file(local, f"{folder}/ing1__part1.parquet")
    (custom,) = ingest(store).records
    assert (custom.state, custom.rowsOut) == ("committed", 100), custom.error
    listing = custom_source._listing(store, folder)
    assert all(p.signature for p in custom.parts) and set(custom_source._unchanged(custom.parts, listing)) == set(listing)
    assert ingest(store).records == []


def store_settings(store: Store):  # noqa: ANN201
    from hub.settings import load_settings

    return load_settings(store)


def test_credentials_never_printed(servers: dict, tmp_path: Path) -> None:
    env = {**os.environ, **servers["azurite"]}
    name = f"hub{uuid.uuid4().hex[:12]}"
    url = f"az://{name}/finops"  # the container does not exist: errors must not show the key
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "status", url, "--json"], capture_output=True, text=True, env=env)
    proc2 = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", url], capture_output=True, text=True, env=env)
    for p in (proc, proc2):
        assert stores.AZURITE_KEY not in p.stdout + p.stderr
    assert json.loads(proc.stdout or "[]") == []


@pytest.mark.parametrize("kind", ["azurite", "moto"])
def test_a_missing_bucket_or_container_is_exit_2_and_never_created(servers: dict, kind: str) -> None:
    """A mistyped bucket or container: one line and exit code 2 for every command (Azure ingest was exit 1 with a
    RuntimeError; s3fs created the bucket and ingest said "nothing to ingest"), and nothing is created."""
    env = {**os.environ, **servers[kind]}
    name = f"hub{uuid.uuid4().hex[:12]}"
    url = f"{'az' if kind == 'azurite' else 's3'}://{name}/finops"
    for args in (["init", url], ["ingest", url], ["status", url], ["query", url, "SELECT 1"], ["demo", url, "--rows", "10"]):
        proc = subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (args, proc.stderr)
        assert f"the {'container' if kind == 'azurite' else 'bucket'} '{name}' does not exist" in proc.stderr, proc.stderr
    with pytest.MonkeyPatch.context() as mp:
        for k, v in servers[kind].items():
            mp.setenv(k, v)
        lines: list[dict] = []  # the watcher retries (never exits for it) and never creates it either
        watch(Store(url), stop=threading.Event(), log=lines.append, cycles=2, interval=0.1)
        assert [line["event"] for line in lines] == ["start", "error", "error", "stop"], lines
        assert "does not exist" in lines[1]["error"]
        fs = fsspec.filesystem("az" if kind == "azurite" else "s3", skip_instance_cache=True)
        assert not fs.exists(name)


def test_demo_on_a_remote_root(root: str) -> None:
    """Defect: `hub demo s3://…` ingested, then failed reading the lake through a local path (exit 1, DuckDB error)."""
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "demo", root, "--rows", "20", "--azure-only"],
                          capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cost per provider and month" in proc.stdout and lake(root)[1] == 20


def test_abfs_scheme_is_the_same_store(servers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in servers["azurite"].items():
        monkeypatch.setenv(k, v)
    name = f"hub{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("abfs", skip_instance_cache=True).mkdir(name)
    write_export(f"abfs://{name}/finops", rows=50, export_name="costs")
    assert ingest(Store(f"abfs://{name}/finops")).ok
    assert lake(f"az://{name}/finops")[:2] == (1, 50)


def test_catalog_reads_the_store(root: str) -> None:
    write_export(root, rows=300, parts=2, export_name="costs")
    assert ingest(Store(root)).ok
    con = catalog.connect(root)
    billed = con.execute("SELECT count(*), sum(BilledCost) FROM Costs WHERE x_Month = '2024-05'").fetchall()[0]
    assert billed[0] == 300 and billed[1] == lake(root)[2]
    assert con.execute("SELECT count(*) FROM Costs_v1_0").fetchall()[0][0] == 300
    req = CostQuery.model_validate({"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"}})
    assert Decimal(query_costs(con, req).cost_data[0].amount_by_costs) == billed[1]


def test_a_long_lived_catalog_and_store_see_files_replaced_or_added_since(root: str) -> None:
    """Defect (S3): the hub's s3fs instance cached folder listings: a catalog connection (hub serve) failed every query
    once another process's ingestion replaced lake files it had listed, and a watcher never saw parts another client
    uploaded after their manifest (quarantined with IngestionFilesNotFound). Every store answers from its listing now."""
    write_export(root, rows=200, parts=1, export_name="costs", run_id="run1")
    assert ingest(Store(root)).ok
    con = catalog.connect(root)
    assert con.execute("SELECT count(*) FROM Costs").fetchall()[0][0] == 200
    manifest = write_export(root, rows=300, parts=1, export_name="costs", run_id="run2", seed=3)  # replaces run1's file
    store = Store(root)
    part = store.full(f"msexports/{manifest.split('msexports/', 1)[1].rsplit('/', 1)[0]}/part_0_0001.csv")
    other = store.fs if store.is_local else fsspec.filesystem(type(store.fs).protocol[0], skip_instance_cache=True)
    held = other.cat_file(part)
    other.rm_file(part)
    assert not store.fs.exists(part)  # listed without it
    other.pipe_file(part, held)  # lands after its manifest, uploaded by another client
    assert store.fs.exists(part)
    done = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", root], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert con.execute("SELECT count(*) FROM Costs").fetchall()[0][0] == 300  # the same connection, the new file


def test_watch_retries_an_unreachable_store_until_it_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defect C23: hub watch on S3 exited when the store did not answer; it must retry with backoff."""
    import threading
    import time

    from moto.server import ThreadedMotoServer

    from pipelines import watch as watch_mod

    port = stores.free_port()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-not-for-logs",
                 "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(watch_mod, "RETRY_BASE", 0.2)
    store = Store("s3://later/finops", skip_instance_cache=True)  # not an instance cached for another test's endpoint
    lines: list[dict] = []
    stop = threading.Event()
    worker = threading.Thread(target=watch_mod.watch, kwargs={"store": store, "stop": stop, "log": lines.append, "interval": 0.5})
    worker.start()
    server = None
    try:
        deadline = time.monotonic() + 120
        while sum(line["event"] == "error" for line in lines) < 2:  # the store is down: errors, and the watcher goes on
            assert worker.is_alive() and time.monotonic() < deadline, lines
            time.sleep(0.1)
        errors = [line for line in lines if line["event"] == "error"]
        assert errors[1]["retry_in"] > errors[0]["retry_in"] and "testing-secret" not in json.dumps(lines)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("later")
        local = tmp_path / "hub"
        manifest = write_export(str(local), rows=50, export_name="late")
        for path in sorted(local.rglob("*"), key=lambda p: p.name == "manifest.json"):  # the manifest last
            if path.is_file():
                fs.put_file(str(path), f"later/finops/{path.relative_to(local)}")
        assert manifest.endswith("manifest.json")
        while not any(line.get("outcome") == "committed" for line in lines):  # it answers now: the export flows
            assert worker.is_alive() and time.monotonic() < deadline, lines
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=60)
        if server is not None:
            server.stop()
    assert not worker.is_alive() and lines[-1]["event"] == "stop"


def test_native_focus_delivery(root: str) -> None:
    """Another cloud's FOCUS delivery (gzip CSV, two billing months) under exports/oci/ on every store: one committed
    run per month, replay does nothing, the lake holds every row once; then a report file on its own joins them."""
    import gzip

    store = Store(root)
    base = "exports/oci/FOCUS Reports/2024/10/01"
    store.write_bytes(f"{base}/0001.csv.gz", gzip.compress((DATA / "oci/oci-focus10-7rows.csv").read_bytes()))
    store.write_bytes(f"{base}/manifest.json", b"")
    result = ingest(store)
    assert result.ok and sorted(r.month for r in result.records) == ["2024-09", "2024-10"], [r.error for r in result.all]
    assert lake(root)[:2] == (2, 7)
    assert ingest(store).records == []
    # an OCI report file without a manifest (Oracle writes one every few hours): taken alone, its months' folders keep
    # the first delivery's files beside its own
    store.write_bytes("exports/oci/FOCUS Reports/2024/10/02/0002.csv.gz", gzip.compress((DATA / "oci/oci-focus10-7rows.csv")
                                                                                        .read_bytes()))
    result = ingest(store)
    assert result.ok and sorted(len(r.kept) for r in result.records) == [1, 1], [r.error for r in result.all]
    assert lake(root)[:2] == (4, 14)
    assert ingest(store).records == []


def test_a_bracket_in_a_folder_name_is_never_a_glob(root: str) -> None:
    """Review of stop 35: on S3 and Azure, fsspec's rm / mv / copy and DuckDB's reads through fsspec read ``[``, ``*``
    and ``?`` in a path as a glob: deleting ``team[1]/x`` deleted ``team1/x`` (retention erased another delivery), and
    a custom-data folder ``team[1]`` redelivered with a new ingestion id kept both deliveries (15 rows, not 12) with
    its record stuck in ``swapping``. Files are deleted, moved, copied and read by their exact names."""
    store = Store(root)
    for name in ("a1/x.txt", "a[1]/x.txt", "a[1]/y.txt"):
        store.write_bytes(name, name.encode())
    store.delete("a[1]/x.txt")
    store.move("a[1]/y.txt", "a[1]/z.txt")
    store.copy("a[1]/z.txt", "a[1]/w.txt")
    assert store.read_bytes("a1/x.txt") == b"a1/x.txt" and not store.exists("a[1]/x.txt")
    assert store.read_bytes("a[1]/w.txt") == store.read_bytes("a[1]/z.txt") == b"a[1]/y.txt"
    store.delete_tree("a[1]")
    assert store.exists("a1/x.txt") and not store.exists("a[1]/z.txt")

    local = _tmp_copy(b"")
    sample = DATA / "focus/focus_sample_1000.csv"

    def deliver(scope: str, ingestion: str, rows: int) -> None:
        duckdb.sql(f"COPY (SELECT * FROM read_csv('{sample}', nullstr = 'NULL') LIMIT {rows}) TO '{local}' (FORMAT parquet)")
        store.put_file(local, f"ingestion/Costs/2024/09/custom/{scope}/{ingestion}__costs.parquet")
        store.write_bytes(f"ingestion/Costs/2024/09/custom/{scope}/manifest.json", b"")

    deliver("team1", "a1", 7)
    deliver("team[1]", "a1", 3)  # the same file name: read as a glob, team[1]'s run took team1's 7 rows (local too)
    first = ingest(store)
    assert first.ok, [r.error for r in first.all]
    assert lake(root)[:2] == (2, 10)
    deliver("team[1]", "b2", 5)  # a new ingestion id replaces b1
    result = ingest(store)
    assert result.ok and [r.state for r in result.records] == ["committed"], [r.error for r in result.all]
    assert lake(root)[:2] == (2, 12)


def test_a_source_that_cannot_be_deleted_after_the_commit_leaves_the_run_committed(servers: dict,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A committed run's after-commit work (older deliveries superseded, the source deleted with
    ``retention.msexports.days: 0``) failed on a blob another client holds a lease on: the run, whose rows readers
    already saw, was recorded ``quarantined`` with ``InternalError`` and never finished. It stays ``committed``, the
    failure is on its record (``AfterCommitFailed``, naming the blob) and the work stays owed: once the lease is
    released, the next ingestion deletes the source and clears the error."""
    from azure.storage.blob import BlobServiceClient

    for k, v in servers["azurite"].items():
        monkeypatch.setenv(k, v)
    name = f"hub{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("az", skip_instance_cache=True).mkdir(name)
    url = f"az://{name}/finops"
    store = Store(url)
    store.init_layout()
    store.write_bytes("config/settings.json", b'{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    manifest = write_export(url, rows=100, export_name="costs")
    part = next(p for p in store.fs.find(store.full("msexports")) if p.endswith(".csv"))
    blob = BlobServiceClient.from_connection_string(servers["azurite"]["AZURE_STORAGE_CONNECTION_STRING"]).get_blob_client(
        name, part.split("/", 1)[1])
    lease = blob.acquire_lease(lease_duration=-1)
    first = ingest(store)
    (rec,) = first.records
    assert rec.state == "committed" and rec.owed == ["after-commit"], rec.error
    assert rec.error and rec.error.code == "AfterCommitFailed" and rec.error.file == part.split("/", 2)[2]
    assert lake(url)[:2] == (1, 100) and store.fs.exists(part)
    quiet = ingest(store)  # still held: still owed, tried again without reporting the run (or its event) again
    assert quiet.records == quiet.recovered == [] and runs.load_all(store)[0].owed == ["after-commit"]
    lease.release()
    again = ingest(store)
    assert again.ok and again.records == again.recovered == []
    (rec,) = runs.load_all(store)
    assert (rec.state, rec.owed, rec.error, rec.sourceDeleted) == ("committed", [], None, True)
    assert not store.fs.exists(part) and not store.fs.exists(manifest) and lake(url)[:2] == (1, 100)
    # a run whose source deletion failed, then superseded by a newer delivery: its source is retention's (no error,
    # nothing owed); an older delivery arriving after a newer one committed, its source held: superseded, not
    # quarantined, the failure on its record
    write_export(url, rows=100, export_name="costs", seed=2)
    held = next(p for p in store.fs.find(store.full("msexports")) if p.endswith(".csv"))
    lease = BlobServiceClient.from_connection_string(servers["azurite"]["AZURE_STORAGE_CONNECTION_STRING"]).get_blob_client(
        name, held.split("/", 1)[1]).acquire_lease(lease_duration=-1)
    assert [(r.state, r.error.code) for r in ingest(store).records] == [("committed", "AfterCommitFailed")]
    write_export(url, rows=50, export_name="costs", seed=3)
    newer = ingest(store)
    assert newer.ok and [r.state for r in newer.records] == ["committed"]
    first = next(r for r in runs.load_all(store) if r.state == "superseded" and not r.sourceDeleted)
    assert (first.owed, first.error) == ([], None) and store.fs.exists(held) and lake(url)[:2] == (1, 50)
    lease.release()
    older = write_export(url, rows=10, export_name="costs", seed=4)
    relative = older.split("/finops/", 1)[1]
    body = json.loads(store.read_bytes(relative))
    body["runInfo"]["submittedTime"] = "2024-05-01T00:00:00Z"  # before the committed delivery's
    part4 = next(p for p in store.fs.find(store.full(relative.rsplit("/", 1)[0])) if p.endswith(".csv"))
    lease = BlobServiceClient.from_connection_string(servers["azurite"]["AZURE_STORAGE_CONNECTION_STRING"]).get_blob_client(
        name, part4.split("/", 1)[1]).acquire_lease(lease_duration=-1)
    store.write_bytes(relative, json.dumps(body).encode())
    late = ingest(store)
    assert late.ok and [(r.state, r.error.code) for r in late.records] == [("superseded", "AfterCommitFailed")]
    assert store.fs.exists(part4) and lake(url)[:2] == (1, 50)
    lease.release()


def test_allocation_and_the_months_owed_it_on_every_store(root: str) -> None:
    """The months owed their allocation are marker files the catalog lists when a query runs (DuckDB's glob through the
    store's filesystem): on Azure Blob and S3 as on a local folder."""
    from hub.store import allocation_owed

    store = Store(root)
    store.write_bytes("config/allocation.json", b'{"dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}}')
    write_export(root, rows=300, parts=1, export_name="costs")
    result = ingest(store)
    assert result.ok and [r.state for r in result.allocated] == ["committed"]
    assert not store.exists(allocation_owed("2024-05"))
    req = CostQuery.model_validate({"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"},
                                    "cost_type": "AMORTIZED_COST", "groupby": [{"type": "dimension", "key": "x_CostCenter"}],
                                    "limit": 1000})
    con = catalog.connect(root)
    total = sum(Decimal(d.amount_by_costs) for d in query_costs(con, req).cost_data)
    assert total == con.execute("SELECT sum(EffectiveCost) FROM Costs").fetchall()[0][0]
    store.write_bytes(allocation_owed("2024-05"), b"")
    with pytest.raises(Exception, match="2024-05 not allocated, or allocated before their Costs changed"):
        query_costs(con, req)
