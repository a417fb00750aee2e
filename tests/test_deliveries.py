"""What a manifest delivers and when: newest delivery wins whatever the arrival order, blobs stay inside their own
delivery folder, are listed once and never lead out of the hub root, and a bad delivery never stops the others."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import parquet_in, schema_csv, write_export

from hub import runs
from hub.store import Store
from pipelines.ingest import ingest

DEST = "ingestion/Costs/2024/05/subscriptions/00000000-0000-0000-0000-000000000001"


def _run(run_id: str, submitted: str | None, start: str = "2024-05-01") -> dict:
    info = {"runId": run_id, "startDate": start}
    if submitted is not None:
        info["submittedTime"] = submitted
    return {"runInfo": info}


def _by_run(root: Path) -> dict[str, runs.RunRecord]:
    return {r.runId: r for r in runs.load_all(Store(str(root)))}


def test_late_older_export_is_superseded_not_swapped_in(hub_root: Path) -> None:
    """Defect C2: an export of the month with an earlier submittedTime that arrives after a newer one committed
    used to become the visible run."""
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')  # the newer source goes
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="new", folder="e1/new",
                 manifest_extra=_run("new", "2024-06-02T00:00:00Z"))
    assert ingest(Store(str(hub_root))).ok
    old = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 5)}, rows=5, run_id="old", folder="e1/old",
                       manifest_extra=_run("old", "2024-06-01T00:00:00Z"))
    result = ingest(Store(str(hub_root)))
    assert result.ok  # superseded is a normal outcome, exit code 0
    records = _by_run(hub_root)
    assert records["old"].state == "superseded" and records["old"].supersededBy == records["new"].key
    assert records["new"].state == "committed"
    assert parquet_in(hub_root) == [f"{DEST}/new__part_0_0001.parquet"]  # the newer run stays visible
    assert not (hub_root / old).exists() and records["old"].sourceDeleted  # final: its source goes like a committed one's
    assert ingest(Store(str(hub_root))).records == []  # and it is not processed again


def test_newest_wins_in_one_run_and_older_committed_become_superseded(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="b", folder="e1/b",
                 manifest_extra=_run("b", "2024-06-03T00:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="a", folder="e1/a",
                 manifest_extra=_run("a", "2024-06-02T00:00:00Z"))
    assert ingest(Store(str(hub_root))).ok  # processed oldest first: a commits, then b replaces it
    records = _by_run(hub_root)
    assert (records["a"].state, records["a"].supersededBy, records["b"].state) == ("superseded", records["b"].key, "committed")
    assert parquet_in(hub_root) == [f"{DEST}/b__part_0_0001.parquet"]


def test_submitted_time_compared_as_instants(hub_root: Path) -> None:
    """Defect C6: submittedTime was compared as text, so other UTC offsets picked the wrong winner."""
    # 10:00+02:00 is 08:00Z: earlier than 09:00Z although its text sorts after it
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="z", folder="e1/z",
                 manifest_extra=_run("z", "2024-06-02T09:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="y", folder="e1/y",
                 manifest_extra=_run("y", "2024-06-02T10:00:00+02:00"))
    assert ingest(Store(str(hub_root))).ok
    records = _by_run(hub_root)
    assert records["z"].state == "committed" and records["y"].state == "superseded"
    assert parquet_in(hub_root) == [f"{DEST}/z__part_0_0001.parquet"]
    assert records["y"].deliveredAt.isoformat() == "2024-06-02T08:00:00+00:00"


def test_submitted_time_in_us_form_keeps_its_time(hub_root: Path) -> None:
    """Review: ``MM/DD/YYYY hh:mm:ss`` lost its time, so two deliveries of one day were equally new and the older one,
    arriving late, replaced the newer; a time that is not one is ManifestInvalid, never read as midnight."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="pm", folder="e1/pm",
                 manifest_extra=_run("pm", "06/02/2024 1:30:00 PM"))
    assert ingest(Store(str(hub_root))).ok
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="am", folder="e1/am",
                 manifest_extra=_run("am", "06/02/2024 09:15:00"))
    assert ingest(Store(str(hub_root))).ok
    records = _by_run(hub_root)
    assert (records["pm"].state, records["am"].state) == ("committed", "superseded")
    assert records["pm"].deliveredAt.isoformat() == "2024-06-02T13:30:00+00:00"
    assert parquet_in(hub_root) == [f"{DEST}/pm__part_0_0001.parquet"]
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="bad", folder="e1/bad",
                 manifest_extra=_run("bad", "06/02/2024 soon"))
    [bad] = [r for r in ingest(Store(str(hub_root))).records if "e1/bad/" in r.manifest]
    assert (bad.state, bad.error.code) == ("quarantined", "ManifestInvalid") and "MM/DD/YYYY" in bad.error.message


def test_missing_submitted_time_uses_when_the_manifest_was_written(hub_root: Path) -> None:
    """Defect C6: a delivery without submittedTime is dated by its manifest's modification time, an instant."""
    first = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="first", folder="e1/1")
    second = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="second", folder="e1/2")
    now = time.time()
    os.utime(hub_root / first, (now - 3600, now - 3600))  # written an hour before the second
    assert ingest(Store(str(hub_root))).ok
    assert _by_run(hub_root)["first"].state == "superseded"
    assert parquet_in(hub_root) == [f"{DEST}/second__part_0_0001.parquet"]
    # re-delivering the first one later (new content, written now) makes it the newest
    (hub_root / first).write_text((hub_root / first).read_text().replace('"e1"', '"e1 again"'))
    assert ingest(Store(str(hub_root))).ok
    assert parquet_in(hub_root) == [f"{DEST}/first__part_0_0001.parquet"]
    assert _by_run(hub_root)["second"].state == "superseded" and (hub_root / second).exists()  # days = 7: kept


def test_long_run_id_does_not_stop_the_hub(hub_root: Path) -> None:
    """Defect C4: a runId of ~240+ characters made a record file name over the file system's limit; every later
    ingest crashed there."""
    long_id = "r" * 300
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id=long_id, folder="e1/long")
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="other", folder="e2/o",
                 resource_id="/subscriptions/00000000-0000-0000-0000-000000000002")
    result = ingest(Store(str(hub_root)))
    assert result.ok, [r.error for r in result.all]
    assert {r.runId: r.rowsOut for r in runs.load_all(Store(str(hub_root)))} == {long_id: 2, "other": 3}
    names = [p.name for p in (hub_root / "config/runs").iterdir()] + [Path(p).name for p in parquet_in(hub_root)]
    assert max(len(n.encode()) for n in names) <= 255
    assert ingest(Store(str(hub_root))).records == []  # and the next run is not stopped either


def test_one_failing_export_never_stops_the_others(hub_root: Path, monkeypatch) -> None:  # noqa: ANN001
    """Defect C4: an error escaping one export (here: its record cannot be written) must not stop the others."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="bad", folder="e1/bad")
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="good", folder="e2/good",
                 resource_id="/subscriptions/00000000-0000-0000-0000-000000000002")
    real = runs.save

    def flaky(store: Store, rec: runs.RunRecord) -> None:
        if rec.runId == "bad":
            raise OSError(36, "File name too long")
        real(store, rec)

    monkeypatch.setattr(runs, "save", flaky)
    result = ingest(Store(str(hub_root)))
    states = {r.runId or "bad": r.state for r in result.records}
    assert states == {"bad": "quarantined", "good": "committed"}


def test_blob_listed_twice_is_refused(hub_root: Path) -> None:
    """Defect C9: a blob listed twice made the record claim double rows and totals with reconciled: true."""
    folder = "e1/twice"
    blob = {"blobName": f"{folder}/part_0_0001.csv"}
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=4, run_id="twice", folder=folder,
                 manifest_extra={"blobCount": 2, "blobs": [blob, blob]})
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "ManifestInvalid" and "listed twice" in rec.error.message
    assert parquet_in(hub_root) == []


def test_manifest_listing_another_exports_blob_is_refused(hub_root: Path) -> None:
    """Defect C24: a manifest could list another export's blob and, with days: 0, delete it on commit."""
    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    victim = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="victim",
                          folder="e2/victim")
    victim_part = victim.replace("manifest.json", "part_0_0001.csv")
    (hub_root / victim).unlink()  # the victim's manifest is not there yet (still uploading)
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=2, run_id="thief", folder="e1/thief",
                 manifest_extra={"blobs": [{"blobName": victim_part.removeprefix("msexports/")}]})
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "ManifestInvalid" and "outside the manifest's folder" in rec.error.message
    assert (hub_root / victim_part).exists()


def test_symlinked_part_leaving_the_root_is_refused_and_never_echoed(hub_root: Path, tmp_path: Path) -> None:
    """Defect C10: a symlinked part was followed outside the hub root and its first line echoed in errors."""
    secret = tmp_path / "outside.csv"
    secret.write_text("TOP-SECRET-LINE,x\n1,2\n")
    manifest = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, byte_counts=False)
    part = hub_root / manifest.replace("manifest.json", "part_0_0001.csv")
    part.unlink()
    part.symlink_to(secret)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "PathEscapesStore"
    assert "TOP-SECRET" not in json.dumps(rec.model_dump(mode="json"))
    assert secret.exists()


def test_schema_mismatch_message_does_not_echo_the_header(hub_root: Path) -> None:
    """Defect C10: the first line of a file (its header) was echoed in SchemaMismatch messages."""
    write_export(hub_root, {"part_0_0001.csv": "TOP-SECRET-COLUMN,other\n1,2\n"}, rows=1)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.error.code == "SchemaMismatch" and "TOP-SECRET" not in rec.error.message


def test_start_date_far_from_the_rows_is_refused(hub_root: Path) -> None:
    """Defect C11: a startDate of 2099 filed May 2024 rows under 2099/01."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, start_date="2099-01-01")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "PeriodMismatch"
    assert "2024-05-02" in rec.error.message and "2099-01-01" in rec.error.message
    assert parquet_in(hub_root) == []


def test_rows_near_the_period_are_accepted(hub_root: Path) -> None:
    """Late usage of the previous month (within 31 days of the period) beside the period's rows is not a mismatch."""
    rows = schema_csv("focuscost_1.0", 2).replace("2024-05-02", "2024-04-20")  # one row of April 20, one of May 3
    write_export(hub_root, {"part_0_0001.csv": rows}, rows=2)
    assert ingest(Store(str(hub_root))).ok


def test_a_whole_month_under_the_next_month_is_refused(hub_root: Path) -> None:
    """Review of C11: May rows with startDate 2024-06-01 were within 31 days, so they were filed under June."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, start_date="2024-06-01")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "PeriodMismatch" and "0 of them in" in rec.error.message


def test_days_0_never_deletes_a_delivery_rewritten_while_it_converted(hub_root: Path, monkeypatch) -> None:  # noqa: ANN001
    """Review of C5: with days 0, a delivery re-written into the same folder while the previous one converted was
    deleted right after the commit, never ingested."""
    from hub import conversion

    (hub_root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    manifest = write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 5)}, rows=5)
    real = conversion.convert_delivery

    def redelivered_meanwhile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        real(*args, **kwargs)
        write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 7)}, rows=7, run_id="run2",
                     folder="e1/20240501-20240531/run1")  # Cost Management writes the same folder again

    monkeypatch.setattr(conversion, "convert_delivery", redelivered_meanwhile)
    assert ingest(Store(str(hub_root))).ok
    monkeypatch.setattr(conversion, "convert_delivery", real)
    assert (hub_root / manifest).exists()  # kept: not what was ingested
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.runId == "run2" and rec.rowsOut == 7 and rec.sourceDeleted and not (hub_root / manifest).exists()


def test_blobs_of_a_nested_delivery_or_with_the_same_name_are_refused(hub_root: Path) -> None:
    """Review of C24 and of part names: a manifest listing a sub-folder's delivery, or two parts of one name."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="victim", folder="e1/x/victim")
    parent = {"blobs": [{"blobName": "e1/x/victim/part_0_0001.csv"}], "blobCount": 1}
    write_export(hub_root, {"own.csv": schema_csv("focuscost_1.0", 1)}, rows=2, run_id="thief", folder="e1", manifest_extra=parent)
    twins = hub_root / "msexports/e2/t"
    for sub in ("a", "b"):
        (twins / sub).mkdir(parents=True)
        (twins / sub / "part_0_0001.csv").write_text(schema_csv("focuscost_1.0", 1))
    blobs = [{"blobName": f"e2/t/{sub}/part_0_0001.csv"} for sub in ("a", "b")]
    write_export(hub_root, {}, rows=2, run_id="twins", folder="e2/t", manifest_extra={"blobs": blobs, "blobCount": 2},
                 resource_id="/subscriptions/00000000-0000-0000-0000-000000000002")
    records = {r.runId: r for r in ingest(Store(str(hub_root))).records}
    assert records["thief"].error.code == "ManifestInvalid" and "belongs to the delivery of" in records["thief"].error.message
    assert records["twins"].error.code == "ManifestInvalid" and "same file name" in records["twins"].error.message
    assert records["victim"].state == "committed" and records["victim"].rowsOut == 2


def test_us_dates_keep_fractions_and_zones() -> None:
    """Review of the fix: a US date with seven fraction digits, Z or an offset (accepted before, cut to its day) was
    refused as ManifestInvalid."""
    from datetime import datetime, timedelta, timezone

    from hub.manifest import RunInfo

    def at(text: str) -> datetime | None:
        return RunInfo(runId="r", startDate="2024-05-01", submittedTime=text).submittedTime

    assert at("05/01/2024 13:45:00.1234567") == datetime(2024, 5, 1, 13, 45, 0, 123456)
    assert at("05/01/2024 13:45:00Z") == datetime(2024, 5, 1, 13, 45, tzinfo=timezone.utc)
    assert at("05/01/2024 1:45 PM +02:00") == datetime(2024, 5, 1, 13, 45, tzinfo=timezone(timedelta(hours=2)))
    assert at("5/1/2024 12:00:00 AM") == datetime(2024, 5, 1)


def _period(run_id: str, start: str, end: str, submitted: str) -> dict:
    return {"runInfo": {"runId": run_id, "startDate": start, "endDate": end, "submittedTime": submitted}}


def test_a_period_spanning_two_months_is_refused(hub_root: Path) -> None:
    """Review: a run of 2024-04-01 to 2024-05-31 was filed whole under April; May's own export then went to May's
    folder and May's costs counted twice (620 instead of 310)."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="two", start_date="2024-04-01",
                 manifest_extra=_period("two", "2024-04-01T00:00:00", "2024-05-31T00:00:00", "2024-06-01T00:00:00Z"))
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "PeriodMismatch"
    assert "2024-04-01 to 2024-05-31, more than one month" in rec.error.message and parquet_in(hub_root) == []
    # a period ending at the next month's first instant (an exclusive end) is one month
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="one", folder="e1/one",
                 manifest_extra=_period("one", "2024-05-01T00:00:00", "2024-06-01T00:00:00", "2024-06-02T00:00:00Z"))
    assert [r.state for r in ingest(Store(str(hub_root))).records] == ["committed"]


def test_a_newer_delivery_must_cover_the_days_it_replaces(hub_root: Path) -> None:
    """Review: a month delivered as two date-range runs (1st-15th, then 16th-31st) kept only the newer run's rows:
    the first half left the lake without a word. The newer run is refused (``PartialPeriod``) and the first stays."""
    first = schema_csv("focuscost_1.0", 2)
    write_export(hub_root, {"part_0_0001.csv": first}, rows=2, run_id="a", folder="e1/a",
                 manifest_extra=_period("a", "2024-05-01T00:00:00", "2024-05-15T00:00:00", "2024-05-16T01:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="b", folder="e1/b",
                 manifest_extra=_period("b", "2024-05-16T00:00:00", "2024-05-31T00:00:00", "2024-06-01T01:00:00Z"))
    states = {r.runId: (r.state, r.error.code if r.error else None) for r in ingest(Store(str(hub_root))).records}
    assert states == {"a": ("committed", None), "b": ("quarantined", "PartialPeriod")}
    rec = _by_run(hub_root)["b"]
    assert "covers 2024-05-16 to 2024-05-31" in rec.error.message and "2024-05-01 to 2024-05-15" in rec.error.message
    assert sum(1 for _ in parquet_in(hub_root)) == 1 and _by_run(hub_root)["a"].state == "committed"
    # the whole month, newer still, covers the first run's days: it replaces it
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 4)}, rows=4, run_id="c", folder="e1/c",
                 manifest_extra=_period("c", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-02T01:00:00Z"))
    assert [r.state for r in ingest(Store(str(hub_root))).records] == ["committed"]
    assert _by_run(hub_root)["a"].state == "superseded"


def test_an_older_delivery_holding_days_the_newer_lacks_is_refused(hub_root: Path) -> None:
    """The other arrival order: an older run covering the whole month arriving after a newer one of half the month
    was superseded, its other days lost. It is refused (``PartialPeriod``); an older run within the newer one's days
    stays superseded."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="half", folder="e1/half",
                 manifest_extra=_period("half", "2024-05-01T00:00:00", "2024-05-15T00:00:00", "2024-06-10T00:00:00Z"))
    assert ingest(Store(str(hub_root))).ok
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 4)}, rows=4, run_id="whole", folder="e1/whole",
                 manifest_extra=_period("whole", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-02T00:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 1)}, rows=1, run_id="early", folder="e1/early",
                 manifest_extra=_period("early", "2024-05-01T00:00:00", "2024-05-10T00:00:00", "2024-05-11T00:00:00Z"))
    states = {r.runId: (r.state, r.error.code if r.error else None) for r in ingest(Store(str(hub_root))).records}
    assert states == {"whole": ("quarantined", "PartialPeriod"), "early": ("superseded", None)}
    assert "the newer of the two (that one)" in _by_run(hub_root)["whole"].error.message
    assert _by_run(hub_root)["half"].state == "committed"


def test_periods_are_compared_as_days_however_their_ends_are_written(hub_root: Path) -> None:
    """Review: a manifest without ``endDate`` (the month's end) or ending ``...31T23:59:59`` made every later run
    ending ``...31T00:00:00`` a ``PartialPeriod``: the lake kept the older data for good. Days are compared."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="a", folder="e1/a",
                 manifest_extra=_run("a", "2024-06-01T00:00:00Z"))  # no endDate
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="b", folder="e1/b",
                 manifest_extra=_period("b", "2024-05-01T00:00:00", "2024-05-31T23:59:59", "2024-06-02T00:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 4)}, rows=4, run_id="c", folder="e1/c",
                 manifest_extra=_period("c", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-03T00:00:00Z"))
    assert ingest(Store(str(hub_root))).ok
    assert {k: r.state for k, r in _by_run(hub_root).items()} == {"a": "superseded", "b": "superseded", "c": "committed"}
    assert _by_run(hub_root)["a"].period == ["2024-05-01", "2024-05-31"]


def test_a_billing_period_across_two_months_is_one_period(hub_root: Path) -> None:
    """A pay-as-you-go billing period (15 April to 14 May, 30 days) is one delivery's period, filed under its start
    month as before; only a period of more than 31 days is ``PeriodMismatch``."""
    rows = schema_csv("focuscost_1.0", 2).replace("2024-05-0", "2024-04-2")
    write_export(hub_root, {"part_0_0001.csv": rows}, rows=2, run_id="p", start_date="2024-04-15",
                 manifest_extra=_period("p", "2024-04-15T00:00:00", "2024-05-14T00:00:00", "2024-05-15T00:00:00Z"))
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed" and rec.month == "2024-04", rec.error


def _as_an_older_version_wrote_it(root: Path, run_id: str) -> None:
    """The run's record without ``period``, as hub versions before periods were kept saved it."""
    path = root / runs.record_path(_by_run(root)[run_id].key)
    record = json.loads(path.read_text())
    del record["period"]
    path.write_text(json.dumps(record))


def test_a_record_written_before_periods_were_kept_takes_its_manifests(hub_root: Path) -> None:
    """Review: a committed run recorded by an earlier version (no ``period``) let a newer run of 5-31 May replace the
    whole month silently. Its period is read from its manifest, still in the store."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="old", folder="e1/old",
                 manifest_extra=_period("old", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-01T00:00:00Z"))
    assert ingest(Store(str(hub_root))).ok
    _as_an_older_version_wrote_it(hub_root, "old")
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="new", folder="e1/new",
                 manifest_extra=_period("new", "2024-05-05T00:00:00", "2024-05-31T00:00:00", "2024-06-02T00:00:00Z"))
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "PartialPeriod" and "2024-05-01 to 2024-05-31" in rec.error.message


def test_a_record_whose_manifest_retention_deleted_takes_its_rows_days(tmp_path: Path) -> None:
    """Review: with ``retention.msexports.days`` 0 (the default) an older version's committed run has no period and no
    manifest: a newer run of 5-31 May replaced the whole month silently. Its rows' days in its month are its period."""
    from conftest import make_hub

    root = make_hub(tmp_path / "hub")
    (root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 0}, "ingestion": {"months": 0}}}')
    rows = schema_csv("focuscost_1.0", 2).replace("2024-05-01", "2024-04-28")  # a late April row beside May 2
    write_export(root, {"part_0_0001.csv": rows}, rows=2, run_id="old", folder="e1/old",
                 manifest_extra=_period("old", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-01T00:00:00Z"))
    assert ingest(Store(str(root))).ok and not (root / "msexports/e1/old/manifest.json").exists()
    _as_an_older_version_wrote_it(root, "old")
    write_export(root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="new", folder="e1/new",
                 manifest_extra=_period("new", "2024-05-05T00:00:00", "2024-05-31T00:00:00", "2024-06-02T00:00:00Z"))
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "quarantined" and rec.error.code == "PartialPeriod" and "2024-05-01 to 2024-05-02" in rec.error.message
    # a run of the whole month covers those days (the late April row does not widen them)
    write_export(root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="whole", folder="e1/whole",
                 manifest_extra=_period("whole", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-06-03T00:00:00Z"))
    assert [r.state for r in ingest(Store(str(root))).records] == ["committed"]


def test_a_month_to_date_run_holds_no_day_after_it_was_delivered(hub_root: Path) -> None:
    """Review: a scheduled month-to-date run may state the month's last day; a later manual run of the month so far
    (Start-FinOpsCostExport ends it yesterday) was refused as ``PartialPeriod``. A run's days end at the day before
    it was delivered."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="daily", folder="e1/daily",
                 manifest_extra=_period("daily", "2024-05-01T00:00:00", "2024-05-31T00:00:00", "2024-05-18T06:00:00Z"))
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="manual", folder="e1/manual",
                 manifest_extra=_period("manual", "2024-05-01T00:00:00", "2024-05-17T00:00:00", "2024-05-18T10:00:00Z"))
    assert ingest(Store(str(hub_root))).ok
    assert {k: r.state for k, r in _by_run(hub_root).items()} == {"daily": "superseded", "manual": "committed"}


def test_an_end_date_before_the_start_date_is_refused(hub_root: Path) -> None:
    """A period that ends before it starts is no period: ``ManifestInvalid`` naming both days (it slipped through the
    one-month check as a negative span)."""
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="x",
                 manifest_extra=_period("x", "2024-05-01T00:00:00", "2024-04-30T00:00:00", "2024-06-01T00:00:00Z"))
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "ManifestInvalid"
    assert "endDate 2024-04-30 is before startDate 2024-05-01" in rec.error.message and parquet_in(hub_root) == []
