"""Store layout rules and manifest parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.errors import HubError
from hub.manifest import parse_manifest
from hub.store import Store, dataset_folder, part_file_name, safe_relpath, scope_path


@pytest.mark.parametrize(("resource_id", "expected"), [
    ("/subscriptions/ABC/providers/Microsoft.CostManagement/exports/Daily", "subscriptions/abc"),
    ("/providers/Microsoft.Billing/billingAccounts/8611537:abc_2019-05-31/billingProfiles/XYZ",
     "providers/microsoft.billing/billingaccounts/8611537:abc_2019-05-31/billingprofiles/xyz"),
    ("/subscriptions/s1/resourceGroups/RG1/providers/Microsoft.CostManagement/exports/e/", "subscriptions/s1/resourcegroups/rg1"),
    # review: resource groups may start with _ or . (Spark, Hive, Trino and Athena skip such folders)
    ("/subscriptions/s1/resourceGroups/_Shared-Services", "subscriptions/s1/resourcegroups/%5fshared-services"),
    ("/subscriptions/s1/resourceGroups/.net-apps", "subscriptions/s1/resourcegroups/%2enet-apps"),
])
def test_scope_path(resource_id: str, expected: str) -> None:
    assert scope_path(resource_id) == expected


@pytest.mark.parametrize(("blob", "expected"), [
    ("x/part_0_0001.csv", "r1__part_0_0001.parquet"),
    ("x/part_1_0001.csv.gz", "r1__part_1_0001.parquet"),
    ("x/part_2_0001.parquet", "r1__part_2_0001.parquet"),
])
def test_part_file_name(blob: str, expected: str) -> None:
    assert part_file_name("r1", blob) == expected
    assert part_file_name("_r1", blob) == "%5f" + expected  # a runId starting with _: not a hidden file


def test_dataset_folder() -> None:
    assert dataset_folder("Costs", 2024, 5, "subscriptions/abc") == "ingestion/Costs/2024/05/subscriptions/abc"


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\b", "s3://bucket/x", "", "..", "~/x", "a\x00b"])
def test_safe_relpath_refuses_escapes(bad: str) -> None:
    with pytest.raises(HubError) as exc:
        safe_relpath(bad, what="blobName", file="m.json")
    assert exc.value.code == "PathEscapesStore"


def test_safe_relpath_normalizes() -> None:
    assert safe_relpath("a/./b//c.csv", what="blobName") == "a/b/c.csv"
    assert safe_relpath("a/x/../c.csv", what="blobName") == "a/c.csv"


FULL = {
    "manifestVersion": "2024-04-01", "byteCount": 160769, "blobCount": 1, "dataRowCount": 136,
    "exportConfig": {"exportName": "daily", "resourceId": "/subscriptions/s/providers/Microsoft.CostManagement/exports/daily",
                     "dataVersion": "1.0r2", "apiVersion": "2023-07-01-preview", "type": "FocusCost", "timeFrame": "MonthToDate",
                     "granularity": "Daily"},
    "deliveryConfig": {"partitionData": True, "dataOverwriteBehavior": "CreateNewReport", "fileFormat": "Csv",
                       "compressionMode": "gzip", "containerUri": "/subscriptions/x", "rootFolderPath": "exports"},
    "runInfo": {"executionType": "Scheduled", "submittedTime": "2024-05-02T03:04:05.1234567Z", "runId": "8d4e6ac1-0000",
                "startDate": "2024-05-01T00:00:00", "endDate": "2024-05-31T00:00:00"},
    "blobs": [{"blobName": "exports/daily/20240501-20240531/x/part_0_0001.csv.gz", "byteCount": 160769, "dataRowCount": 136}],
}


def test_full_manifest() -> None:
    m = parse_manifest(json.dumps(FULL).encode(), file="m.json")
    assert (m.exportConfig.type, m.exportConfig.dataVersion, m.runInfo.runId, m.year_month) == ("FocusCost", "1.0r2", "8d4e6ac1-0000", (2024, 5))
    assert m.blobs[0].byteCount == 160769 and m.deliveryConfig.compressionMode == "gzip"


def test_minimal_hand_made_manifest_any_case_and_bom() -> None:
    raw = {"BlobCount": 1, "datarowcount": 2, "exportconfig": {"ExportName": "x", "Type": "PriceSheet", "DataVersion": "2023-05-01",
           "ResourceId": "/providers/Microsoft.Billing/billingAccounts/1"}, "RUNINFO": {"RunId": "r", "StartDate": "2024-05-01"},
           "Blobs": [{"BlobName": "p.csv"}], "somethingNew": {"x": 1}}
    m = parse_manifest(b"\xef\xbb\xbf" + json.dumps(raw).encode(), file="m.json")
    assert (m.exportConfig.type, m.runInfo.runId, m.blobs[0].blobName, m.dataRowCount) == ("PriceSheet", "r", "p.csv", 2)


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", "ManifestReadFailed"),
    (b"[]", "ManifestReadFailed"),
    (b"\xff\xfe{}", "ManifestReadFailed"),
    (json.dumps({**FULL, "runInfo": {"runId": "r"}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "exportConfig": {"type": "FocusCost"}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "blobCount": 3}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "startDate": "someday"}}).encode(), "ManifestInvalid"),
    # review of stop 39: times beyond what a UTC instant or a month's end can hold stopped every ingestion
    # (OverflowError while deliveries were ordered); a number was read as seconds since 1970
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "submittedTime": "0001-01-01T00:00:00+05:00"}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "submittedTime": "9999-12-31T23:00:00-05:00"}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "startDate": "9999-12-01", "endDate": None}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "startDate": 20230901}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "submittedTime": 5}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "startDate": "20240501"}}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "blobs": [{"blobName": "e1/r\udce9sum\udce9.csv"}], "blobCount": 1}).encode(), "ManifestInvalid"),
    (json.dumps({**FULL, "runInfo": {**FULL["runInfo"], "submittedTime": "1714521600"}}).encode(), "ManifestInvalid"),
])
def test_broken_manifests(raw: bytes, code: str) -> None:
    with pytest.raises(HubError) as exc:
        parse_manifest(raw, file="msexports/x/manifest.json")
    assert exc.value.code == code and exc.value.file == "msexports/x/manifest.json"


def test_a_storage_error_behind_a_wrapper_is_told_as_the_store_said_it(tmp_path: Path) -> None:
    """Defect: adlfs wraps a refused delete as RuntimeError('Failed to remove %s for %s', [paths], HttpResponseError(...));
    the record said `RuntimeError: ('…', ['…'], HttpResponseError('…'))` (every quoted part blanked, as for DuckDB's
    messages that may cite file content)."""
    from azure.core.exceptions import HttpResponseError

    from hub import runs
    from hub.convert import error_text

    refused = HttpResponseError("This request is not authorized to perform this operation using this permission.")
    wrapped = RuntimeError("Failed to remove %s for %s", ["c/hub/ingestion/x.parquet"], refused)
    assert error_text(wrapped) == ("HttpResponseError: This request is not authorized to perform this operation using "
                                   "this permission.")
    rec = runs.failed(Store(str(tmp_path)), "k", "msexports/m/manifest.json", wrapped)
    assert "not authorized" in rec.error.message
    assert error_text(ValueError("could not convert 'secret row text'")) == "ValueError: could not convert '…'"  # not storage


def test_a_manifest_whose_time_cannot_be_an_instant_is_quarantined_and_the_others_flow(tmp_path: Path) -> None:
    """Review of stop 39: `submittedTime: 0001-01-01T00:00:00+05:00` passed the manifest's checks, then overflowed
    while the pending exports were ordered: `hub ingest` stopped (exit 1, no record) and the export beside it was never
    ingested; `hub watch` failed the same way every cycle."""
    from conftest import schema_csv, write_export

    from pipelines.ingest import ingest

    write_export(tmp_path, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="good", folder="e/good")
    write_export(tmp_path, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="bad", folder="f/bad",
                 manifest_extra={"runInfo": {"runId": "bad", "startDate": "2024-05-01T00:00:00",
                                             "submittedTime": "0001-01-01T00:00:00+05:00"}})
    result = ingest(Store(str(tmp_path)))
    assert sorted((r.manifest.split("/")[1], r.state, r.error and r.error.code) for r in result.all) == [
        ("e", "committed", None), ("f", "quarantined", "ManifestInvalid")]
