"""A corpus of bad exports: each gets its stable error code with the file named; nothing is lost and
the other exports keep flowing."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from conftest import parquet_in, schema_csv, write_export

from hub.store import Store
from pipelines.ingest import ingest

GOOD = schema_csv("focuscost_1.0", 3)


def _truncated_gzip() -> bytes:
    data = gzip.compress(schema_csv("focuscost_1.0", 2000).encode())
    return data[: len(data) // 2]


def _wrong_field_count() -> str:
    lines = GOOD.splitlines()
    lines[2] = lines[2] + ",extra"
    return "\n".join(lines) + "\n"


def _non_utf8() -> bytes:
    return GOOD.encode().replace(b"s1,", b"s\xff\xfe1,", 1)


CASES = {
    # name: (parts, manifest options, expected code, the file the message must name)
    "truncated gzip": ({"part_0_0001.csv.gz": _truncated_gzip()}, {}, "CorruptFile", "part_0_0001.csv.gz"),
    "wrong column count": ({"part_0_0001.csv": _wrong_field_count()}, {}, "MalformedCsv", "part_0_0001.csv"),
    # review of stop 41 (Spark): a CR-only file was InternalError naming the manifest (Spark: PartFailed after retries)
    "CR-only line endings": ({"part_0_0001.csv": GOOD.replace("\n", "\r")}, {}, "MalformedCsv", "part_0_0001.csv"),
    "non-UTF-8 bytes": ({"part_0_0001.csv": _non_utf8()}, {}, "InvalidEncoding", "part_0_0001.csv"),
    "bad number": ({"part_0_0001.csv": GOOD.replace("1.25", "1.2.5")}, {}, "InvalidValue", "part_0_0001.csv"),
    "bad date": ({"part_0_0001.csv": GOOD.replace("2024-05-02T00:00:00Z", "yesterday")}, {}, "InvalidValue", "part_0_0001.csv"),
    "unknown version": ({"part_0_0001.csv": GOOD}, {"data_version": "9.9"}, "SchemaNotFound", "part_0_0001.csv"),
    "unknown type": ({"part_0_0001.csv": GOOD}, {"export_type": "CarbonEmissions"}, "SchemaNotFound", "part_0_0001.csv"),
    "other dataset's file": ({"part_0_0001.csv": schema_csv("reservationdetails_2023-03-01", 2)}, {}, "SchemaMismatch",
                             "part_0_0001.csv"),
    "unsupported file type": ({"part_0_0001.json": "{}"}, {}, "UnsupportedExportFileType", "part_0_0001.json"),
    "row count differs": ({"part_0_0001.csv": GOOD}, {"rows": 4}, "RowCountMismatch", "manifest.json"),
    "byte count differs": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"blobs": [
        {"blobName": "e1/20240501-20240531/bad/part_0_0001.csv", "byteCount": 1}]}}, "ByteCountMismatch", "manifest.json"),
    "missing blob": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"blobs": [
        {"blobName": "e1/20240501-20240531/bad/part_9_0001.csv"}]}}, "IngestionFilesNotFound", "manifest.json"),
    "blob path traversal": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"blobs": [
        {"blobName": "../config/settings.json"}]}}, "PathEscapesStore", "manifest.json"),
    "absolute blob path": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"blobs": [
        {"blobName": "/etc/passwd"}]}}, "PathEscapesStore", "manifest.json"),
    "scope path traversal": ({"part_0_0001.csv": GOOD}, {"resource_id": "/subscriptions/../../../x"}, "PathEscapesStore",
                             "manifest.json"),
    "missing runInfo": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"runInfo": None}}, "ManifestInvalid", "manifest.json"),
    "runId with a slash": ({"part_0_0001.csv": GOOD}, {"manifest_extra": {"runInfo": {"runId": "a/../b", "startDate": "2024-05-01"}}},
                           "ManifestInvalid", "manifest.json"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_export_is_quarantined_with_code(hub_root: Path, name: str) -> None:
    parts, opts, code, named = CASES[name]
    good = write_export(hub_root, {"part_0_0001.csv": GOOD}, rows=3, run_id="good", folder="e0/20240501-20240531/good",
                        resource_id="/subscriptions/00000000-0000-0000-0000-000000000002")
    opts = {"rows": 3, **opts}
    bad = write_export(hub_root, parts, run_id="bad", folder="e1/20240501-20240531/bad", **opts)
    before = {p.name: p.read_bytes() for p in (hub_root / bad).parent.iterdir()}
    records = {r.manifest: r for r in ingest(Store(str(hub_root))).records}
    rec = records[bad]
    assert rec.state == "quarantined"
    assert rec.error.code == code, rec.error
    assert named in (rec.error.file or ""), rec.error
    assert "\n" not in rec.error.message
    # the source is never deleted or changed, nothing reached the lake, other exports keep flowing
    assert {p.name: p.read_bytes() for p in (hub_root / bad).parent.iterdir()} == before
    assert records[good].state == "committed"
    assert all("/bad__" not in p for p in parquet_in(hub_root))
    assert not list((hub_root / "config").glob("staging/*"))


def test_broken_json_manifest(hub_root: Path) -> None:
    folder = hub_root / "msexports/e1/x"
    folder.mkdir(parents=True)
    (folder / "part_0_0001.csv").write_text(GOOD)
    (folder / "manifest.json").write_text('{"exportConfig": {"type": "FocusCost",')
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "ManifestReadFailed", "msexports/e1/x/manifest.json")
    assert (folder / "part_0_0001.csv").exists()
    # once fixed, the same manifest path ingests
    write_export(hub_root, {"part_0_0001.csv": GOOD}, rows=3, folder="e1/x")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed"


def test_quarantined_export_is_not_retried_without_retry(hub_root: Path) -> None:
    manifest = write_export(hub_root, {"part_0_0001.csv": GOOD}, rows=3, manifest_extra={"blobs": [
        {"blobName": "e1/20240501-20240531/run1/part_1_0001.csv"}]})
    store = Store(str(hub_root))
    assert ingest(store).records[0].error.code == "IngestionFilesNotFound"
    assert ingest(store).records == []
    (hub_root / manifest).with_name("part_1_0001.csv").write_text(GOOD)  # the missing part arrives
    rec = ingest(store, retry=True).records[0]
    assert rec.state == "committed" and rec.attempts == 2


def test_a_part_that_cannot_be_opened_is_named_relative_to_the_root(tmp_path: Path) -> None:
    """Review: a part that vanished after the listing (or without read permission) was ``CorruptFile`` ("re-upload the
    part") with the OS error's absolute local path in the message, the run record and the event; in a custom-data
    folder it was ``InternalError``. Both are ``PartReadFailed``, naming the file relative to the hub root."""
    import duckdb

    from hub import convert
    from hub.errors import InputError
    from hub.runs import RunRecord
    from hub.sources import custom

    gone = tmp_path / "gone" / "part_0_0001.csv"
    with pytest.raises(InputError) as raised:
        convert.csv_header(str(gone), "csv", file="msexports/e1/part_0_0001.csv")
    assert raised.value.code == "PartReadFailed" and str(tmp_path) not in str(raised.value)
    assert "msexports/e1/part_0_0001.csv" in str(raised.value) and "No such file" in str(raised.value)
    with pytest.raises(InputError) as raised:  # a Parquet part (DuckDB's error was an InternalError)
        convert.source_columns(duckdb.connect(), str(gone.with_suffix(".parquet")), "parquet", file="msexports/e1/p.parquet")
    assert raised.value.code == "PartReadFailed" and str(tmp_path) not in str(raised.value)
    with pytest.raises(InputError) as raised:
        custom._query(duckdb.connect(), RunRecord(key="k", manifest="m", manifestSha256=""), str(gone.with_suffix(".parquet")),
                      "ingestion/Costs/2024/09/aws/1/ing1__part0.parquet")
    assert raised.value.code == "PartReadFailed" and str(tmp_path) not in str(raised.value)
