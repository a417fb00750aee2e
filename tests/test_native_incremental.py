"""OCI report files taken one by one (no manifest): a month is the union of its files, a re-delivered file replaces only
its own rows, a file still being written waits, and two kinds of report of the same costs are never both counted."""

from __future__ import annotations

import csv
import gzip
import io
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
from conftest import DATA, make_hub
from test_native_focus import REPO, deliver, lake, one

from hub import runs
from hub.store import Store
from pipelines.ingest import ingest

OCI = DATA / "oci" / "oci-focus10-7rows.csv"
COST_REPORT = DATA / "oci" / "oci-cost-report-506rows.csv"
FOCUS = "exports/oci/FOCUS Reports/2024/09"


def rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def gz(header: list[str], body: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return gzip.compress(out.getvalue().encode())


def billed(body: list[list[str]], header: list[str]) -> D:
    i = header.index("BilledCost")
    return sum((D(r[i]) for r in body), D(0))


def put(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_month_is_the_union_of_its_files_and_a_redelivered_file_replaces_only_itself(tmp_path: Path) -> None:
    """Two report files of September (3 + 4 rows, the second also holds an October row), no manifest: each is its
    own run; September's folder holds both files' rows; a re-delivery of the first file with one row less changes only
    its rows; a replay changes nothing."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    first, second = body[:3], body[3:]
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, first))
    put(root, f"{FOCUS}/02/0002.csv.gz", gz(header, second))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    assert sorted((r.manifest.rsplit("/", 1)[1], r.month) for r in result.records) == [
        ("0001.csv.gz", "2024-09"), ("0002.csv.gz", "2024-09"), ("0002.csv.gz", "2024-10")]
    assert one(f"SELECT count(*) FROM {lake(root)}") == 7
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(body, header)
    september = root / "ingestion/Costs/2024/09/oci/20209880"
    assert len(list(september.glob("*.parquet"))) == 2
    untouched = {p.name: p.stat().st_ino for p in september.glob("*.parquet")}

    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, first[:2]))  # Oracle re-writes the file: one row less
    again = ingest(Store(str(root)))
    assert again.ok and [r.manifest.rsplit("/", 1)[1] for r in again.records] == ["0001.csv.gz"]
    assert again.records[0].kept and again.records[0].rowsOut == 2
    assert one(f"SELECT count(*) FROM {lake(root)}") == 6
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(first[:2] + second, header)
    (kept,) = again.records[0].kept  # the second file's September rows: carried over, the very same file
    assert {p.name: p.stat().st_ino for p in september.glob("*.parquet")}[kept] == untouched[kept]
    assert ingest(Store(str(root))).records == []


def test_a_file_still_changing_waits_for_the_watcher(tmp_path: Path) -> None:
    """With a settle time (``hub watch``), a report file written a moment ago is left waiting; ``hub ingest`` (no
    settle time) takes it."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body))
    waiting = ingest(Store(str(root)), settle=3600)
    assert waiting.records == [] and waiting.waiting == [f"{FOCUS}/01/0001.csv.gz"]
    assert ingest(Store(str(root))).ok and one(f"SELECT count(*) FROM {lake(root)}") == 7


def test_a_cost_report_of_a_tenancy_already_in_the_lake_from_focus_reports_is_refused(tmp_path: Path) -> None:
    """OCI's cost report and FOCUS report of one tenancy and month describe the same costs: the second kind to arrive
    is quarantined (SourceConflict, naming the file), the lake keeps the first kind's rows, other deliveries flow."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body))
    assert ingest(Store(str(root))).ok
    before = one(f"SELECT sum(BilledCost) FROM {lake(root)}")
    tenancy = body[0][header.index("SubAccountId")]
    text = COST_REPORT.read_text(encoding="utf-8-sig").replace("2023-11-", "2024-09-")
    report_header, report_body = next(csv.reader(io.StringIO(text))), list(csv.reader(io.StringIO(text)))[1:]
    t = report_header.index("lineItem/tenantId")
    for r in report_body:
        r[t] = tenancy
    put(root, "exports/oci/reports/cost-csv/0000000030000269.csv.gz", gz(report_header, report_body))
    deliver(root, "aws", "e1", {"a.csv": (DATA / "aws" / "aws-focus10-942rows.csv").read_text()})
    result = ingest(Store(str(root)))
    bad = [r for r in result.records if r.state == "quarantined"]
    assert len(bad) == 1 and bad[0].error and bad[0].error.code == "SourceConflict"
    assert bad[0].error.file == "exports/oci/reports/cost-csv/0000000030000269.csv.gz"
    assert tenancy in bad[0].error.message and "OCI cost report" in bad[0].error.message
    assert one(f"SELECT sum(BilledCost) FROM {lake(root, 'oci')}") == before
    assert one(f"SELECT count(*) FROM {lake(root, 'aws')}") == 942


def test_kill_before_the_commit_of_a_second_file_is_finished_on_restart(tmp_path: Path) -> None:
    """The second file of a month killed after its swap, before its commit: the restart finishes it and the month holds
    both files' rows once."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body[:3]))
    assert ingest(Store(str(root))).ok
    put(root, f"{FOCUS}/02/0002.csv.gz", gz(header, body[3:6]))
    env = {**os.environ, "HUB_CRASH_AT": "before-commit", "HUB_LEASE_TTL": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(root)], capture_output=True, env=env, cwd=REPO)
    assert proc.returncode == 137
    states = sorted(r.state for r in runs.load_all(Store(str(root))))
    assert states[0] == "committed" and set(states[1:]) == {"swapping"}  # the second file's runs (one per month)
    result = ingest(Store(str(root)), lease_ttl=1)
    assert {r.state for r in result.recovered} == {"committed"} and result.records == []
    assert one(f"SELECT count(*) FROM {lake(root)}") == 6
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(body[:6], header)


def test_retention_of_exports_deletes_only_committed_unchanged_deliveries(tmp_path: Path) -> None:
    """``retention.exports.days``: unset keeps every delivered file; 0 deletes the files of committed deliveries (data
    files, manifest, an OCI report file) and nothing else: not a quarantined delivery, not one that changed since it
    was ingested, not a file of the folder that is not the delivery's. The lake is unchanged and nothing re-ingests."""
    from hub.settings import parse_settings
    from pipelines.retention import apply

    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body))
    aws = deliver(root, "aws", "e1", {"a.csv": (DATA / "aws" / "aws-focus10-942rows.csv").read_text(), "notes.txt": "mine"})
    grown = deliver(root, "aws", "e2", {"a.csv": (DATA / "aws" / "aws-focus10-942rows.csv").read_text()})
    bad = deliver(root, "gcp", "x", {"a.csv": "not,a,bill\n1,2,3\n"})
    store = Store(str(root))
    assert sorted(r.state for r in ingest(store).records).count("quarantined") == 1
    (grown / "b.csv").write_text("BilledCost\n1\n")  # a file added after the ingestion: the delivery is pending again
    before = one(f"SELECT sum(BilledCost) FROM {lake(root)}")
    keep = '"ingestion": {"months": 0}'  # the 2024 months stay in the lake
    assert apply(store, parse_settings(f'{{"retention": {{{keep}}}}}')).deletions == []

    delete = parse_settings(f'{{"retention": {{"exports": {{"days": 0}}, {keep}}}}}')
    done = apply(store, delete)
    assert sorted(d.path for d in done.deletions) == sorted([
        f"{FOCUS}/01/0001.csv.gz", "exports/aws/e1/a.csv", "exports/aws/e1/manifest.json"])
    assert not (aws / "a.csv").exists() and (aws / "notes.txt").read_text() == "mine"
    assert (grown / "a.csv").exists() and (bad / "a.csv").exists() and (bad / "manifest.json").exists()
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == before
    assert all(r.sourceDeleted for r in runs.load_all(store) if r.manifest in (f"{FOCUS}/01/0001.csv.gz",
                                                                                 "exports/aws/e1/manifest.json"))
    assert apply(store, delete).deletions == []
    assert {r.manifest for r in ingest(store).records} == {"exports/aws/e2/manifest.json"}  # only the grown one


def test_a_retirement_of_exports_cut_short_never_changes_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: retention deleted a delivery's data files before its manifest.json; cut short after the first file (a
    kill, a failed delete on S3), the folder was a smaller delivery and the next ingest replaced the month with it (1600
    rows -> 600). The manifest goes first now: what is left is no delivery, and the next pass deletes the rest."""
    from hub.settings import parse_settings
    from hub.store import Store as StoreClass
    from pipelines.retention import apply

    root = make_hub(tmp_path / "hub")
    text = (DATA / "aws" / "aws-focus10-942rows.csv").read_text()
    head, *lines = text.splitlines(keepends=True)
    deliver(root, "aws", "e1", {"a.csv": head + "".join(lines[:600]), "b.csv": head + "".join(lines[600:])})
    store = Store(str(root))
    assert ingest(store).ok
    before = (one(f"SELECT count(*) FROM {lake(root)}"), one(f"SELECT sum(BilledCost) FROM {lake(root)}"))
    delete = parse_settings('{"retention": {"exports": {"days": 0}, "ingestion": {"months": 0}}}')
    real, calls = StoreClass.delete, []

    def cut_short(self: StoreClass, rel: str) -> None:
        calls.extend([rel] if rel.startswith("exports/") else [])
        if len(calls) == 3 and calls[-1] == rel:
            raise OSError("the store went away")
        real(self, rel)

    monkeypatch.setattr(StoreClass, "delete", cut_short)
    with pytest.raises(OSError):
        apply(store, delete)
    monkeypatch.setattr(StoreClass, "delete", real)
    assert calls[0] == "exports/aws/e1/manifest.json" and len(calls) == 3
    assert ingest(store).records == []  # no delivery left to ingest again
    assert (one(f"SELECT count(*) FROM {lake(root)}"), one(f"SELECT sum(BilledCost) FROM {lake(root)}")) == before
    rest = apply(store, delete)
    assert [d.path for d in rest.deletions] == [calls[2]]
    assert not list((root / "exports" / "aws" / "e1").glob("*.csv"))
    assert all(r.sourceDeleted for r in runs.load_all(store) if r.manifest == "exports/aws/e1/manifest.json")
    assert apply(store, delete).deletions == [] and before[0] == 942


def _committed_oci_delivery(tmp_path: Path) -> tuple[Path, Store, list[str], list[list[str]]]:
    """A hub with one OCI FOCUS report file delivered with a manifest.json, committed: its root, store, header, rows."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/0001.csv.gz", gz(header, body))
    (root / FOCUS / "manifest.json").write_text("")
    store = Store(str(root))
    assert ingest(store).ok
    return root, store, header, body


def _count_and_total(root: Path) -> tuple[object, object]:
    return one(f"SELECT count(*) FROM {lake(root)}"), one(f"SELECT sum(BilledCost) FROM {lake(root)}")


def test_an_oci_delivery_whose_retirement_was_cut_short_is_not_ingested_again_file_by_file(tmp_path: Path) -> None:
    """Review of stop 38: retention deletes an OCI delivery's manifest.json first; cut short there, its data file was no
    manifest's any more, so an OCI report file of its own: its rows were added again (the month counted twice). The
    rest of a retirement cut short is left alone, then deleted by the next retention pass."""
    from hub.settings import parse_settings
    from pipelines.retention import apply

    root, store, header, body = _committed_oci_delivery(tmp_path)
    before = _count_and_total(root)
    (root / FOCUS / "manifest.json").unlink()  # where a retirement cut short after its first delete leaves it
    assert ingest(store).records == []
    assert _count_and_total(root) == before
    rest = apply(store, parse_settings('{"retention": {"exports": {"days": 0}, "ingestion": {"months": 0}}}'))
    assert [d.path for d in rest.deletions] == [f"{FOCUS}/0001.csv.gz"] and not (root / FOCUS / "0001.csv.gz").exists()
    # a new file of the month still flows
    put(root, f"{FOCUS}/0001.csv.gz", gz(header, body[:2]))
    assert [r.state for r in ingest(store).records] == ["committed"]


def test_a_stray_manifest_above_the_providers_folders_owns_no_oci_file(tmp_path: Path) -> None:
    """Review of stop 38: ``exports/manifest.json`` (quarantined: outside a provider's folder) owned every loose OCI report
    file, so none was ingested and nothing said so."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body))
    (root / "exports" / "manifest.json").write_text("")
    out = {r.manifest: (r.state, r.error.code if r.error else None) for r in ingest(Store(str(root))).records}
    assert out == {"exports/manifest.json": ("quarantined", "SchemaNotFound"), f"{FOCUS}/01/0001.csv.gz": ("committed", None)}
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(body, header)


def test_a_named_pipe_named_like_a_report_file_is_not_read(tmp_path: Path) -> None:
    """Review of stop 38: a FIFO named ``….csv`` under exports/ blocked the ingestion on opening it, holding the lease
    (nothing after it flowed). Only regular files are deliveries' files."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body))
    os.mkfifo(root / FOCUS / "01" / "z.csv")
    done = subprocess.run([sys.executable, "-c", "import sys; from hub.store import Store; from pipelines.ingest import ingest; "
                           "print(sorted({r.state for r in ingest(Store(sys.argv[1])).records}))", str(root)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "['committed']", done.stderr[-2000:]


def test_custom_data_in_a_folder_of_oci_report_files_touches_none_of_them(tmp_path: Path) -> None:
    """Review of stop 38: a custom drop in a lake folder holding several OCI report files' rows (one committed run each)
    took only the last run's files for the provider's and set the others aside (rows gone from the lake); its manifest,
    left in place, then refused every later OCI file. Every provider file stays, the custom files and their manifest go
    aside, the next report file flows."""
    import duckdb

    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body[:3]))
    put(root, f"{FOCUS}/02/0002.csv.gz", gz(header, body[3:]))
    store = Store(str(root))
    assert ingest(store).ok
    folder = next(p.parent for p in (root / "ingestion/Costs/2024/09").rglob("*.parquet"))
    before = (one(f"SELECT count(*) FROM {lake(root)}"), one(f"SELECT sum(BilledCost) FROM {lake(root)}"))
    duckdb.sql(f"COPY (SELECT 1.5::DECIMAL(38,18) AS BilledCost) TO '{folder / 'tool__a.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_text("")
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict")
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".parquet")) == [
        "manifest.json.quarantined", "tool__a.parquet.quarantined"]
    assert (one(f"SELECT count(*) FROM {lake(root)}"), one(f"SELECT sum(BilledCost) FROM {lake(root)}")) == before
    put(root, f"{FOCUS}/03/0003.csv.gz", gz(header, body[:1]))
    assert [r.state for r in ingest(store).records] == ["committed"]


def test_zip_archives_are_read_member_by_member(tmp_path: Path) -> None:
    """Tencent's bill storage delivers zip archives: each data file inside is read (a FOCUS file named ``….CSV`` too),
    totals as unzipped; a cut archive quarantines its delivery with CorruptFile naming it, the others flow."""
    import zipfile

    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("FOCUS-bill_details-200020002001-202409.CSV", OCI.read_text())
        archive.writestr("readme.txt", "not data")
        archive.writestr("__MACOSX/._FOCUS-bill_details-200020002001-202409.CSV", "\x00\x05resource fork")  # macOS zips
    deliver(root, "oci", "zipped", {"bill.zip": packed.getvalue()})
    deliver(root, "tencent", "cut", {"bill.zip": packed.getvalue()[:200]})
    result = ingest(Store(str(root)))
    bad = [r for r in result.records if r.state == "quarantined"]
    assert [(r.error.code, r.error.file) for r in bad if r.error] == [("CorruptFile", "exports/tencent/cut/bill.zip")]
    good = [r for r in result.records if r.state == "committed"]
    assert {p.blob for r in good for p in r.parts} == {"exports/oci/zipped/bill.zip!FOCUS-bill_details-200020002001-202409.CSV"}
    assert one(f"SELECT count(*) FROM {lake(root)}") == 7
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(body, header)


def test_a_redelivered_file_without_a_month_takes_its_rows_out_of_that_month(tmp_path: Path) -> None:
    """A report file first holding September and October rows, re-delivered with September's only: October's folder
    loses that file's rows (the other files' stay), the lake equals a first ingest of the new version."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    month = header.index("BillingPeriodStart")
    september = [r for r in body if r[month].startswith("2024-09")]
    october = [r for r in body if r[month].startswith("2024-10")]
    assert len(september) == 6 and len(october) == 1
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, september[:3] + october))
    put(root, f"{FOCUS}/02/0002.csv.gz", gz(header, september[3:] + october))
    assert ingest(Store(str(root))).ok
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE BillingPeriodStart >= '2024-10-01'") == 2
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, september[:3]))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    withdrawn = [r for r in result.records if r.month == "2024-10"]
    assert len(withdrawn) == 1 and withdrawn[0].rowsOut == 0 and len(withdrawn[0].kept) == 1
    assert one(f"SELECT count(*) FROM {lake(root)} WHERE BillingPeriodStart >= '2024-10-01'") == 1
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(september + october, header)
    assert ingest(Store(str(root))).records == []


def test_a_redelivery_without_a_month_empties_that_month(tmp_path: Path) -> None:
    """A delivery (with its manifest) of September and October re-delivered with September only: October's folder no
    longer shows its rows."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    month = header.index("BillingPeriodStart")
    deliver(root, "oci", "d1", {"a.csv.gz": gz(header, body)})
    assert ingest(Store(str(root))).ok and one(f"SELECT count(*) FROM {lake(root)}") == 7
    deliver(root, "oci", "d1", {"a.csv.gz": gz(header, [r for r in body if r[month].startswith("2024-09")])})
    assert ingest(Store(str(root))).ok
    assert one(f"SELECT count(*) FROM {lake(root)}") == 6
    assert not list((root / "ingestion/Costs/2024/10").rglob("*.parquet"))


def test_temporary_files_on_another_filesystem_than_the_hub(tmp_path: Path) -> None:
    """The conversion's temporary folder (TMPDIR) on another filesystem than the hub, as /dev/shm (tmpfs) is here: the
    converted files still reach the lake (moved across filesystems, not renamed)."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "aws", "d1", {"a.csv": (DATA / "aws" / "aws-focus10-942rows.csv").read_text()})  # one month: moved as written
    shm = Path("/dev/shm")
    other = shm / f"hub-test-{os.getpid()}" if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path / "tmp"
    other.mkdir()
    try:
        env = {**os.environ, "TMPDIR": str(other), "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(root)], capture_output=True, text=True,
                              env=env, cwd=REPO)
    finally:
        for leftover in sorted(other.rglob("*"), reverse=True):
            leftover.rmdir() if leftover.is_dir() else leftover.unlink()
        other.rmdir()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert one(f"SELECT count(*) FROM {lake(root)}") == 942


def _staged(root: Path, rel: str) -> list:
    """A delivery converted and staged, its runs saved as ``swapping`` but not swapped (a commit that failed)."""
    from hub.sources import native

    store = Store(str(root))
    (d,) = [x for x in native.deliveries(store) if x.manifest == rel]
    failure = runs.RunRecord(key=f"native-{d.digest}", manifest=d.manifest, manifestSha256=d.sha)
    made = native._convert(store, d, failure, runs.load_all(store))
    for rec in made:
        rec.siblings = [r.key for r in made]
        rec.state = "swapping"
    return made


def test_a_staged_file_swapped_after_another_file_committed_keeps_that_file(tmp_path: Path) -> None:
    """File F staged but not swapped (its commit failed), file G of the same month committed meanwhile: when F's swap is
    finished on the next pass, the month holds both files' rows (what to keep is told at swap time)."""
    from hub.sources import native

    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, body[:3]))
    for rec in _staged(root, f"{FOCUS}/01/0001.csv.gz"):
        runs.save(Store(str(root)), rec)
    put(root, f"{FOCUS}/02/0002.csv.gz", gz(header, body[3:6]))
    store = Store(str(root))
    (g,) = [x for x in native.deliveries(store) if x.manifest.endswith("0002.csv.gz")]
    assert all(r.state == "committed" for r in native.process(store, g, runs.load_all(store)))
    result = ingest(Store(str(root)))
    assert {r.state for r in result.recovered} == {"committed"}, [r.error for r in result.all]
    assert one(f"SELECT count(*) FROM {lake(root)}") == 6
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == billed(body[:6], header)


def test_a_crash_between_the_saves_of_a_deliverys_runs_redoes_the_delivery(tmp_path: Path) -> None:
    """A delivery of two months killed after its first run was saved and before the second was: the first is finished,
    and the delivery, missing a run, is done again: both months land."""
    root = make_hub(tmp_path / "hub")
    deliver(root, "oci", "d1", {"a.csv": OCI.read_text()})
    first, _second = _staged(root, "exports/oci/d1/manifest.json")
    runs.save(Store(str(root)), first)
    result = ingest(Store(str(root)))
    assert [r.state for r in result.recovered] == ["committed"] and {r.month for r in result.records} == {"2024-09", "2024-10"}
    assert one(f"SELECT count(*) FROM {lake(root)}") == 7
    assert ingest(Store(str(root))).records == []


def test_a_file_without_rows_is_recorded_once(tmp_path: Path) -> None:
    """A report file with a header and no rows (OCI writes them) changes nothing and is not read again."""
    root = make_hub(tmp_path / "hub")
    header, _ = rows(OCI)
    put(root, f"{FOCUS}/01/0001.csv.gz", gz(header, []))
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "committed" and rec.rowsOut == 0
    assert ingest(Store(str(root))).records == []


def test_two_kinds_of_report_of_one_tenancy_in_one_delivery_are_refused(tmp_path: Path) -> None:
    """One delivery holding an OCI FOCUS report and a cost report of the same tenancy and month: SourceConflict naming a
    file, nothing lands."""
    root = make_hub(tmp_path / "hub")
    header, body = rows(OCI)
    tenancy = body[0][header.index("SubAccountId")]
    text = COST_REPORT.read_text(encoding="utf-8-sig").replace("2023-11-", "2024-09-")
    report = list(csv.reader(io.StringIO(text)))
    t = report[0].index("lineItem/tenantId")
    for r in report[1:]:
        r[t] = tenancy
    deliver(root, "oci", "both", {"focus.csv.gz": gz(header, body), "cost.csv.gz": gz(report[0], report[1:])})
    (rec,) = ingest(Store(str(root))).records
    assert rec.state == "quarantined" and rec.error and rec.error.code == "SourceConflict"
    assert rec.error.file in ("exports/oci/both/focus.csv.gz", "exports/oci/both/cost.csv.gz")
    assert not list((root / "ingestion").rglob("*.parquet"))


def test_retention_keeps_alibaba_day_files_until_the_months_whole_file(tmp_path: Path) -> None:
    """Defect: with ``retention.exports.days: 0`` day 10's file (8.50) was deleted once ingested; day 11's delivery of
    the same folder then replaced May with only its own file: 270.00 instead of 8.50 + 270.00 = 278.50. Day files
    (each only its day) stay until the month's whole file is in the folder; then they go with it."""
    from test_native_focus import ALIBABA

    from hub.settings import parse_settings
    from pipelines.retention import apply

    header, first, second = ALIBABA.splitlines(keepends=True)[:3]
    second = second.replace("2024-05-01 00:00:00,2024-06-01 00:00:00", "2024-05-11 00:00:00,2024-05-11 01:00:00")
    root = make_hub(tmp_path / "hub")
    store = Store(str(root))
    delete = parse_settings('{"retention": {"exports": {"days": 0}, "ingestion": {"months": 0}}}')
    base = "exports/alibaba/oss"
    day10, day11, whole = (f"{base}/1234567890_BillingItemDetail_{d}.csv" for d in ("20240510", "20240511", "202405"))
    put(root, day10, (header + first).encode())
    put(root, f"{base}/manifest.json", b"")
    assert ingest(store).ok
    assert [d.path for d in apply(store, delete).deletions] == [f"{base}/manifest.json"]  # the day file stays
    put(root, day11, (header + second).encode())
    put(root, f"{base}/manifest.json", b"")
    assert ingest(store).ok and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("278.50")
    assert [d.path for d in apply(store, delete).deletions] == [f"{base}/manifest.json"]
    put(root, whole, (header + first + second).encode())
    put(root, f"{base}/manifest.json", b"")
    assert ingest(store).ok and one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("278.50")
    assert sorted(d.path for d in apply(store, delete).deletions) == sorted([f"{base}/manifest.json", day10, day11, whole])
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("278.50") and ingest(store).records == []
    # the subscription goes on pushing into the folder: June's first day no longer holds May, which retention (not
    # Alibaba) took away: May stays as committed (it was withdrawn: a 0-row May run)
    june = first.replace("2024-05,", "2024-06,", 1).replace("2024-05-10 08:00:00,2024-05-10 09:00:00",
                                                            "2024-06-01 08:00:00,2024-06-01 09:00:00").replace(",8.50,", ",1.25,")
    put(root, f"{base}/1234567890_BillingItemDetail_20240601.csv", (header + june).encode())
    put(root, f"{base}/manifest.json", b"")
    assert [r.month for r in ingest(store).records] == ["2024-06"]
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == D("279.75")


def test_the_same_line_items_in_a_second_file_are_refused(tmp_path: Path) -> None:
    """Review of stop 35: the same cost report file synced a second time into another download folder, and a later
    file repeating some of its line items (lineItem/referenceNo), were each committed: the month counted them twice
    (+81 %), every run reconciled. A report file whose line items another delivery's file already brought to the
    month's folder is SourceConflict naming that delivery; the lake keeps the first copy; a file of new line items
    flows."""
    root = make_hub(tmp_path / "hub")
    text = COST_REPORT.read_text(encoding="utf-8-sig").replace("2023-11-", "2024-09-")
    header, body = next(csv.reader(io.StringIO(text))), list(csv.reader(io.StringIO(text)))[1:]
    ref, cost = header.index("lineItem/referenceNo"), header.index("cost/myCost")
    first, rest = body[:100], body[100:200]
    put(root, "exports/oci/reports/cost-csv/0001.csv.gz", gz(header, first))
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    put(root, "exports/oci/bling/reports/cost-csv/0001.csv.gz", gz(header, first))  # synced twice
    put(root, "exports/oci/reports/cost-csv/0002.csv.gz", gz(header, rest + first[:10]))  # repeats 10 line items
    put(root, "exports/oci/reports/cost-csv/0003.csv.gz", gz(header, rest))  # new line items
    result = ingest(Store(str(root)))
    bad = sorted((r.manifest, r.error.code) for r in result.all if r.error)
    assert bad == [("exports/oci/bling/reports/cost-csv/0001.csv.gz", "SourceConflict"),
                   ("exports/oci/reports/cost-csv/0002.csv.gz", "SourceConflict")]
    conflict = next(r for r in result.all if r.error and r.manifest.endswith("0002.csv.gz"))
    assert "(exports/oci/reports/cost-csv/0001.csv.gz; x_ReferenceNumber " in conflict.error.message
    expected = sum((D(r[cost]) for r in first + rest), D(0))
    assert one(f"SELECT count(*), count(DISTINCT x_ReferenceNumber) FROM {lake(root)}") == 200
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == expected
    assert len({r[ref] for r in first + rest}) == 200


def test_an_oci_folder_with_a_manifest_adds_to_its_months(tmp_path: Path) -> None:
    """Review of stop 40: an OCI backfill folder with a ``manifest.json`` (10 line items) and a report file synced without
    one (10 others) share September; the backfill re-delivered with one more file (10 more) replaced the whole month
    folder: the other file's rows were gone while its record said committed. A delivery with a manifest adds its files
    to their months too (its own earlier files replaced, the others kept), and two files of it holding the same line
    items (a renamed copy) are SourceConflict naming both."""
    root = make_hub(tmp_path / "hub")
    text = COST_REPORT.read_text(encoding="utf-8-sig").replace("2023-11-", "2024-09-")
    header, body = next(csv.reader(io.StringIO(text))), list(csv.reader(io.StringIO(text)))[1:]
    cost = header.index("cost/myCost")
    a, b, c = body[:10], body[10:20], body[20:30]
    total = lambda rows: sum((D(r[cost]) for r in rows), D(0))  # noqa: E731
    put(root, "exports/oci/backfill/0001.csv.gz", gz(header, a))
    put(root, "exports/oci/backfill/manifest.json", b"")
    assert ingest(Store(str(root))).ok
    put(root, "exports/oci/reports/cost-csv/0002.csv.gz", gz(header, b))
    assert ingest(Store(str(root))).ok
    put(root, "exports/oci/backfill/0003.csv.gz", gz(header, c))
    put(root, "exports/oci/backfill/manifest.json", b"")
    result = ingest(Store(str(root)))
    assert result.ok and [r.manifest for r in result.records] == ["exports/oci/backfill/manifest.json"]
    assert one(f"SELECT count(*) FROM {lake(root)}") == 30
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == total(a + b + c)
    assert ingest(Store(str(root))).records == []

    put(root, "exports/oci/backfill/0001 (1).csv.gz", gz(header, a))  # a renamed copy in the same delivery
    put(root, "exports/oci/backfill/manifest.json", b"")
    (bad,) = ingest(Store(str(root))).all
    assert (bad.state, bad.error.code) == ("quarantined", "SourceConflict")
    assert "exports/oci/backfill/0001 (1).csv.gz and exports/oci/backfill/0001.csv.gz" in bad.error.message
    assert one(f"SELECT sum(BilledCost) FROM {lake(root)}") == total(a + b + c)


def test_a_retired_oci_delivery_synced_back_without_its_manifest_is_not_counted_again(tmp_path: Path) -> None:
    """Review of stop 40: an OCI delivery with a manifest, committed then retired by retention (days 0), came back with
    `oci os object sync` (its file, not the hub's manifest): taken as a report file of its own, its rows were added
    again (the month counted twice). A file of a retired delivery as it was is left out, and deleted by the next
    retention pass."""
    from hub.settings import parse_settings
    from pipelines.retention import apply

    root, store, header, body = _committed_oci_delivery(tmp_path)
    before = _count_and_total(root)
    settings = parse_settings('{"retention": {"exports": {"days": 0}, "ingestion": {"months": 0}}}')
    assert apply(store, settings).deletions and not (root / FOCUS / "0001.csv.gz").exists()
    put(root, f"{FOCUS}/0001.csv.gz", gz(header, body))  # synced back
    assert ingest(store).records == []
    assert _count_and_total(root) == before
    again = apply(store, settings)
    assert [d.path for d in again.deletions] == [f"{FOCUS}/0001.csv.gz"] and not (root / FOCUS / "0001.csv.gz").exists()
