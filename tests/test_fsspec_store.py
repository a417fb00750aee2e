"""The pipeline runs unchanged on a non-local fsspec store (in-memory here; Azurite and moto in their own tests):
no os.path or open() on store paths, the file-by-file swap, DuckDB reading through fsspec."""

from __future__ import annotations

import json
import uuid

import fsspec
import pytest
from conftest import schema_csv

from hub.store import Store
from pipelines.ingest import ingest


@pytest.fixture
def mem_store() -> Store:
    store = Store(f"memory://hub-{uuid.uuid4().hex}")
    store.init_layout()
    store.write_bytes("config/settings.json", b'{"retention": {"msexports": {"days": 7}, "ingestion": {"months": 0}}}')
    return store


def _export(store: Store, run_id: str, parts: dict[str, str], rows: int) -> None:
    blobs = []
    for name, text in parts.items():
        store.write_bytes(f"msexports/e/{run_id}/{name}", text.encode())
        blobs.append({"blobName": f"e/{run_id}/{name}", "byteCount": len(text.encode())})
    manifest = {"exportConfig": {"type": "FocusCost", "dataVersion": "1.0", "resourceId": "/subscriptions/S1"},
                "runInfo": {"runId": run_id, "startDate": "2024-05-01", "submittedTime": f"2024-05-02T00:00:0{run_id[-1]}Z"},
                "blobs": blobs, "dataRowCount": rows}
    store.write_bytes(f"msexports/e/{run_id}/manifest.json", json.dumps(manifest).encode())


def _lake(store: Store) -> list[str]:
    return sorted(store.rel(p) for p in store.fs.glob(store.full("ingestion/**/*.parquet")))


def test_ingest_replace_and_quarantine_on_fsspec_store(mem_store: Store) -> None:
    _export(mem_store, "run1", {"part_0_0001.csv": schema_csv("focuscost_1.0", 3), "part_1_0001.csv": schema_csv("focuscost_1.0", 2)}, 5)
    result = ingest(mem_store)
    assert result.ok and result.records[0].rowsOut == 5
    dest = "ingestion/Costs/2024/05/subscriptions/s1"
    assert _lake(mem_store) == [f"{dest}/run1__part_0_0001.parquet", f"{dest}/run1__part_1_0001.parquet"]

    _export(mem_store, "run2", {"part_0_0001.csv": schema_csv("focuscost_1.0", 4)}, 4)
    _export(mem_store, "run3", {"part_0_0001.csv": "not,a\nvalid,export\n"}, 1)
    records = {r.runId: r for r in ingest(mem_store).records}
    assert records["run2"].state == "committed" and records["run2"].replaced == [
        f"{dest}/run1__part_0_0001.parquet", f"{dest}/run1__part_1_0001.parquet"]
    assert records["run3"].state == "quarantined" and records["run3"].error.code == "SchemaMismatch"
    assert _lake(mem_store) == [f"{dest}/run2__part_0_0001.parquet"]
    assert mem_store.exists("msexports/e/run3/part_0_0001.csv")
    assert not mem_store.fs.glob(mem_store.full("config/staging/*"))
    fsspec.filesystem("memory").rm(mem_store.root, recursive=True)
