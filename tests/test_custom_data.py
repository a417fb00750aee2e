"""Custom data dropped into ingestion/ with an empty manifest is normalized in place, all-or-nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import DATA, SCOPE, lake_rows, make_hub, schema_csv, write_export

from hub import catalog, runs
from hub.store import Store
from hub.validate import validate
from pipelines.ingest import ingest

FOLDER = "ingestion/Costs/2024/09/aws/123456789012"


def _drop_focus_sample(root: Path, name: str = "ing1__part0.parquet") -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True)
    src = DATA / "focus/focus_sample_1000.csv"
    # the producer's Parquet: FOCUS columns typed, dates fixed to ISO UTC, literal NULLs as nulls
    duckdb.sql(f"""COPY (SELECT * REPLACE (CAST(BilledCost AS DECIMAL(38,18)) AS BilledCost,
        CAST(EffectiveCost AS DECIMAL(38,18)) AS EffectiveCost, CAST(ListCost AS DECIMAL(38,18)) AS ListCost,
        CAST(ContractedCost AS DECIMAL(38,18)) AS ContractedCost,
        CAST(ChargePeriodStart AS TIMESTAMP) AS ChargePeriodStart, CAST(ChargePeriodEnd AS TIMESTAMP) AS ChargePeriodEnd,
        CAST(BillingPeriodStart AS TIMESTAMP) AS BillingPeriodStart, CAST(BillingPeriodEnd AS TIMESTAMP) AS BillingPeriodEnd)
        FROM read_csv('{src}', nullstr = 'NULL', all_varchar = true)) TO '{folder / name}' (FORMAT parquet)""")
    return folder


def test_empty_manifest_normalizes_the_folder_in_place(hub_root: Path) -> None:
    folder = _drop_focus_sample(hub_root)
    (folder / "manifest.json").write_bytes(b"")
    result = ingest(Store(str(hub_root)))
    (rec,) = result.records
    assert rec.state == "committed", rec.error
    assert (rec.dataset, rec.month, rec.scope, rec.rowsOut) == ("Costs", "2024-09", "aws/123456789012", 1000)
    rows = lake_rows(hub_root)
    assert len(rows) == 1000 and sorted(p.name for p in folder.iterdir()) == ["ing1__part0.parquet", "manifest.json"]
    assert {r["ChargeFrequency"] for r in rows} <= {"Usage-Based", "One-Time", "Recurring"}  # 'Usage-based' fixed
    assert all(r["x_Id"] is not None for r in rows)  # the non-FOCUS column Id is kept as x_Id
    assert {r["ProviderName"] for r in rows} == {"AWS", "Microsoft", "Oracle"}
    report = validate(str(hub_root))  # the whole FinOps Foundation sample passes every FOCUS rule
    assert report.ok and report.violations == 0, report.summary()
    assert ingest(Store(str(hub_root))).records == []  # processed once


def test_bad_custom_file_is_quarantined_and_set_aside(hub_root: Path) -> None:
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    (folder / "ing1__part0.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "CorruptFile" and "ing1__part0.parquet" in rec.error.file
    assert (folder / "ing1__part0.parquet.quarantined").read_bytes() == b"PAR1 this is not parquet"
    assert not list(folder.glob("*.parquet"))  # readers read *.parquet: none of the rejected rows
    assert [r.state for r in runs.load_all(Store(str(hub_root)))] == ["quarantined"]


def test_native_focus_file_with_every_column_as_text(hub_root: Path) -> None:
    """Defect B3: FOCUS exports converted to Parquet with every column as text (literal NULLs, dates without T/Z,
    Usage-based casing) were quarantined with InvalidValue."""
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    src = DATA / "focus/focus_sample_1000.csv"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}', all_varchar = true, nullstr = '__never__')) "
               f"TO '{folder / 'ing1__part0.parquet'}' (FORMAT parquet)")  # "NULL" and "" kept as text, as such tools write
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed", rec.error
    rows = lake_rows(hub_root)
    expected = duckdb.sql(f"SELECT count(*), sum(CAST(BilledCost AS DECIMAL(38,18))), count(*) FILTER (WHERE ResourceName = 'NULL') "
                          f"FROM read_csv('{src}', all_varchar = true, nullstr = '__never__')").fetchall()[0]
    assert (len(rows), sum(r["BilledCost"] for r in rows)) == expected[:2] and expected[2] > 0
    assert not [r for r in rows if r["ResourceName"] in ("NULL", "")]  # nulls are nulls
    assert {r["ChargeFrequency"] for r in rows} <= {"Usage-Based", "One-Time", "Recurring"}
    assert min(r["ChargePeriodStart"] for r in rows).isoformat() == "2024-09-01T00:00:00+00:00"
    assert "AllowedValues:ChargeFrequency" not in validate(str(hub_root)).summary()


def test_boolean_money_column_is_refused(hub_root: Path) -> None:
    """Defect C16: a BOOLEAN money column was accepted (true -> 1.0); only numbers and text feed numbers."""
    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT true AS BilledCost, 1.5 AS EffectiveCost, 'USD' AS BillingCurrency, "
               f"TIMESTAMP '2024-09-01' AS ChargePeriodStart) TO '{folder / 'ing1__part0.parquet'}' (FORMAT parquet)")
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "SchemaMismatch" and "BilledCost is BOOLEAN" in rec.error.message


def test_boolean_money_column_in_an_export_is_refused(hub_root: Path) -> None:
    from conftest import write_export

    part = hub_root / "bool.parquet"
    duckdb.sql(f"COPY (SELECT true AS BilledCost, 1.5 AS EffectiveCost, 'USD' AS BillingCurrency, "
               f"TIMESTAMP '2024-05-01' AS ChargePeriodStart, DATE '2024-05-01' AS ChargePeriodEnd) TO '{part}' (FORMAT parquet)")
    write_export(hub_root, {"part_0_0001.parquet": part.read_bytes()}, rows=1)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "quarantined" and rec.error.code == "SchemaMismatch" and "BilledCost is BOOLEAN" in rec.error.message


def test_listing_checkpoint_covers_custom_folders(hub_root: Path) -> None:
    """Custom folders join the watcher's checkpoint: read again once after the in-place normalization changed their
    files, then, final and unchanged, not read at all; a new file in the folder is a new delivery (of a new ingestion
    id: it replaces the one committed before)."""
    folder = _drop_focus_sample(hub_root)
    (folder / "manifest.json").write_text("{}")
    store, checkpoint = Store(str(hub_root)), {}
    manifest = f"{FOLDER}/manifest.json"
    assert [r.state for r in ingest(store, checkpoint=checkpoint).records] == ["committed"]
    assert manifest not in checkpoint  # its files were rewritten: the listing of the next pass decides
    assert ingest(store, checkpoint=checkpoint).records == [] and manifest in checkpoint
    reads = []
    original = Store.read_bytes
    Store.read_bytes = lambda self, r: reads.append(r) or original(self, r)  # type: ignore[method-assign]
    try:
        assert ingest(store, checkpoint=checkpoint).records == [] and manifest not in reads
        _drop_focus_sample(hub_root / "x")  # a second producer file, moved in beside the first
        (hub_root / "x" / FOLDER / "ing1__part0.parquet").rename(folder / "ing2__part0.parquet")
        again = ingest(store, checkpoint=checkpoint).records
    finally:
        Store.read_bytes = original  # type: ignore[method-assign]
    assert manifest in reads and [(r.state, r.rowsOut) for r in again] == [("committed", 1000)]
    assert sorted(p.name for p in folder.iterdir()) == ["ing2__part0.parquet", "manifest.json"]


def _drop(folder: Path, name: str, billed: list[str], **extra: str) -> None:
    """A small all-text FOCUS-aligned custom file: one row per BilledCost value."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = {"BillingAccountId": "'ACCT-1'", "BillingCurrency": "'USD'", "BillingPeriodStart": "'2024-09-01 00:00:00'",
            "BillingPeriodEnd": "'2024-10-01 00:00:00'", "ChargePeriodStart": "'2024-09-02 00:00:00'",
            "ChargePeriodEnd": "'2024-09-03 00:00:00'", "ChargeCategory": "'Usage'", "EffectiveCost": "b",
            "ProviderName": "'AWS'", "ServiceName": "'EC2'", **{k: repr(v) for k, v in extra.items()}}
    values = ", ".join(f"({b!r})" for b in billed)
    select = ", ".join(["b AS BilledCost", *(f"{v} AS {k}" for k, v in cols.items())])
    duckdb.sql(f"COPY (SELECT {select} FROM (VALUES {values}) t(b)) TO '{folder / name}' (FORMAT parquet)")
    (folder / "manifest.json").write_bytes(b"")


def _lake(root: Path, sql: str = "SELECT count(*), sum(BilledCost) FROM t") -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{root / FOLDER}/*.parquet', union_by_name = true)")
    return con.execute(sql).fetchall()


def test_a_new_ingestion_id_replaces_the_folders_previous_delivery(hub_root: Path) -> None:
    """Defect: a folder re-delivered under a new ingestion id kept the old files too: 1 + 5 = 6 instead of 5."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok and _lake(hub_root) == [(1, D(1))]
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]
    assert sorted(p.name for p in (hub_root / FOLDER).iterdir()) == ["ing2__part0.parquet", "manifest.json"]


def test_files_without_an_ingestion_id_beside_committed_ones_are_refused(hub_root: Path) -> None:
    """Review of stop 38: files without ``<id>__`` all had the empty id, so a month restated by a writer that names its
    parts anew each run (Spark, pandas) joined the committed files: 20 + 30 = 50. Refused, the files left where they
    are; with the committed files removed (or a new id), the new files are the delivery."""
    _drop(hub_root / FOLDER, "part-0001-aaaa.parquet", ["20"])
    store = Store(str(hub_root))
    assert ingest(store).ok and _lake(hub_root) == [(1, D(20))]
    _drop(hub_root / FOLDER, "part-0001-bbbb.parquet", ["30"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestInvalid") and "no ingestion id" in rec.error.message
    assert _lake(hub_root) == [(1, D(20))]  # the new file set aside: readers never add it
    (hub_root / FOLDER / "part-0001-aaaa.parquet").unlink()
    (hub_root / FOLDER / "part-0001-bbbb.parquet.quarantined").rename(hub_root / FOLDER / "part-0001-bbbb.parquet")
    (hub_root / FOLDER / "manifest.json").write_text("")
    (again,) = ingest(store).records
    assert again.state == "committed" and _lake(hub_root) == [(1, D(30))]


def test_a_file_replaced_under_its_own_name_is_read_again(hub_root: Path) -> None:
    """Defect: the folder's identity was its file names: new content under the same name was never processed, and the
    raw all-text file stayed in the lake (sum(BilledCost) failed on the VARCHAR column)."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    assert ingest(store).records == []  # the folder as the run left it: final
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["7", "8"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 2) and _lake(hub_root) == [(2, D(15))]
    assert ingest(store).records == []


def test_a_part_added_later_leaves_the_normalized_ones_as_they_are(hub_root: Path) -> None:
    """Defect: a folder processed again normalized its normalized files once more, from their normalized values:
    x_SourceChanges and x_SourceValues (the original EffectiveCost of a commitment purchase, 32) were lost."""
    _drop(hub_root / FOLDER, "ing1__a.parquet", ["32"], ChargeCategory="Purchase", ChargeFrequency="One-Time",
          CommitmentDiscountId="cd-1", CommitmentDiscountCategory="Spend", CommitmentDiscountType="Savings Plan")
    store = Store(str(hub_root))
    assert ingest(store).ok
    lineage = "SELECT EffectiveCost, x_SourceChanges, x_SourceValues FROM t WHERE ChargeCategory = 'Purchase'"
    (before,) = _lake(hub_root, lineage)
    assert before[0] == 0 and '"EffectiveCost":"32' in before[2]
    _drop(hub_root / FOLDER, "ing1__b.parquet", ["1"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 2) and _lake(hub_root, lineage) == [before]


@pytest.mark.parametrize("folder", ["ingestion/Costs/2024/13/custom/a", "ingestion/Costs/2024/sep/custom/a",
                                    "ingestion/costs/2024/09/custom/a", "ingestion/Budgets/2024/09/custom/a"])
def test_a_folder_outside_the_layout_is_manifest_invalid(hub_root: Path, folder: str) -> None:
    """Defect: month 13 or "sep" was InternalError (a Python ValueError); a dataset the hub does not know (lower-case
    "costs") was committed without any normalization or check. Dataset and month are checked first, naming the folder."""
    _drop(hub_root / folder, "ing1__part0.parquet", ["1"])
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "ManifestInvalid", f"{folder}/manifest.json")
    assert (hub_root / folder / "ing1__part0.parquet").exists()  # not read: left where it is


@pytest.mark.parametrize("second", ["BilledCost", "billedcost"])
def test_duplicate_column_names_are_a_schema_mismatch(hub_root: Path, second: str) -> None:
    """Defect: a Parquet file with two BilledCost columns (or BilledCost and billedcost) was committed: the first one
    taken, the second kept as x_BilledCost_1. Refused as a CSV header is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = hub_root / FOLDER
    folder.mkdir(parents=True)
    pq.write_table(pa.table([pa.array(["3"]), pa.array(["USD"]), pa.array(["999"])],
                            names=["BilledCost", "BillingCurrency", second]), folder / "ing1__a.parquet")
    (folder / "manifest.json").write_bytes(b"")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "SchemaMismatch", f"{FOLDER}/ing1__a.parquet")
    assert "duplicate column names" in rec.error.message


def _damaged(data: bytes, how: str) -> bytes:
    """A Parquet file damaged as storage or a cut upload damages it."""
    if how == "footer length":
        return b"PAR1garbagePAR1"
    if how == "cut in the middle":  # the footer's length and magic kept, its metadata gone
        return data[: len(data) // 2] + data[-8:]
    if how == "metadata overwritten":
        return data[:-20] + b"\xff" * 12 + data[-8:]
    offset = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(5).data_page_offset
    if how == "page header zeroed":
        return data[:offset] + b"\x00" * 8 + data[offset + 8:]
    return data[: offset + 20] + b"\x00" * 60 + data[offset + 80:]  # a page's compressed bytes zeroed


@pytest.mark.parametrize("how", ["footer length", "cut in the middle", "metadata overwritten", "page zeroed"])
def test_a_damaged_parquet_file_is_corrupt_file_not_internal_error(hub_root: Path, how: str) -> None:
    """Each way a Parquet file breaks is CorruptFile naming it, with a one-line printable message (pyarrow's and
    DuckDB's texts for them were InternalError)."""
    folder = _drop_focus_sample(hub_root)
    part = folder / "ing1__part0.parquet"
    damaged = _damaged(part.read_bytes(), how)
    part.write_bytes(damaged)
    (folder / "manifest.json").write_text("{}")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "CorruptFile"), rec.error
    assert rec.error.file == f"{FOLDER}/ing1__part0.parquet" and rec.error.message.isprintable(), rec.error
    assert not part.exists() and (folder / "ing1__part0.parquet.quarantined").read_bytes() == damaged


@pytest.mark.parametrize("how", ["page zeroed", "page header zeroed"])
def test_a_committed_file_damaged_in_place_at_its_size_is_read_again(hub_root: Path, how: str) -> None:
    """Defect: a committed file was known as the hub's own by its size alone: damaged in place at the same size (or
    replaced by a producer's file of that size), it was carried over unread and the run committed a corrupt lake file;
    read, DuckDB's words for a damaged page ("Out of buffer", a page header's TProtocolException) were InternalError."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    part = hub_root / FOLDER / "ing1__part0.parquet"
    damaged = _damaged(part.read_bytes(), how)
    assert len(damaged) == part.stat().st_size
    stat = part.stat()
    part.write_bytes(damaged)
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "CorruptFile", f"{FOLDER}/ing1__part0.parquet"), rec.error
    assert (hub_root / FOLDER / "ing1__part0.parquet.quarantined").read_bytes() == damaged  # kept, out of the readers' way
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]
    assert ingest(store).records == []  # the hub's own files, as the commit left them: final


def test_a_quarantined_delivery_is_set_aside_and_the_previous_one_stays(hub_root: Path) -> None:
    """Defects: a rejected delivery's raw files stayed in the lake (every reader of Costs failed on them), and the
    quarantine forgot the folder's committed delivery: the next good one was counted with it (1 + 5 = 6, not 5)."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    (hub_root / FOLDER / "ing2__part0.parquet").write_bytes(b"PAR1 junk")
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code, rec.setAside) == ("quarantined", "CorruptFile", [f"{FOLDER}/ing2__part0.parquet.quarantined"])
    assert (hub_root / FOLDER / "ing2__part0.parquet.quarantined").read_bytes() == b"PAR1 junk"  # kept, renamed
    assert catalog.connect(str(hub_root)).execute("SELECT count(*), sum(BilledCost) FROM Costs").fetchall() == [(1, D(1))]
    assert ingest(store).records == []  # the folder as the quarantine left it: final
    _drop(hub_root / FOLDER, "ing3__part0.parquet", ["5"])
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]
    assert sorted(p.name for p in (hub_root / FOLDER).iterdir()) == [
        "ing2__part0.parquet.quarantined", "ing3__part0.parquet", "manifest.json"]
    (hub_root / FOLDER / "ing4__part0.parquet").write_bytes(b"PAR1 junk again")  # a second rejection keeps the first's file
    (rec,) = ingest(store).records
    assert rec.state == "quarantined" and (hub_root / FOLDER / "ing4__part0.parquet.quarantined").exists()
    (hub_root / FOLDER / "ing4__part0.parquet.quarantined").rename(hub_root / FOLDER / "ing2__part0.parquet")
    (rec,) = ingest(store).records
    assert rec.setAside == [f"{FOLDER}/ing2__part0.parquet.quarantined.2"] and _lake(hub_root) == [(1, D(5))]


def test_a_run_killed_while_normalizing_keeps_the_committed_delivery_apart(hub_root: Path) -> None:
    """Defect: a run cut short after the folder's first new file left a `converting` record; the next run took every
    file of the folder, the committed delivery's too, as the new delivery: 1 + 5 = 6 instead of 5."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", str(hub_root)], capture_output=True,
                          env={**os.environ, "HUB_CRASH_AT": "after-part-1", "HUB_LEASE_TTL": "1"})
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    assert [r.state for r in runs.load_all(store)] == ["converting"]
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]


def test_a_store_error_while_normalizing_keeps_the_committed_delivery_apart(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: an unexpected error (a store's PermissionError) while the folder was read made a record without the
    committed files: the next good delivery was counted with the first (1 + 5 = 6)."""
    from hub.sources import custom

    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])
    with monkeypatch.context() as m:
        m.setattr(custom, "validate_files", lambda *a, **k: (_ for _ in ()).throw(PermissionError("denied by the store")))
        (rec,) = ingest(store).records
    assert (rec.state, rec.error.code, [p.output for p in rec.lakeParts]) == (
        "quarantined", "InternalError", [f"{FOLDER}/ing1__part0.parquet"])
    assert "denied by the store" in rec.error.message and _lake(hub_root) == [(1, D(1))]  # ing2 set aside
    (hub_root / FOLDER / "ing2__part0.parquet.quarantined").rename(hub_root / FOLDER / "ing2__part0.parquet")
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]


@pytest.mark.parametrize(("folder", "name", "says"), [
    (FOLDER, "_part0.parquet", "the file '_part0.parquet' starts with _ or ."),
    (FOLDER, ".part0.parquet", "the file '.part0.parquet' starts with _ or ."),
    ("ingestion/Costs/2024/09/_team", "ing1__part0.parquet", "the scope folder '_team' starts with _ or ."),
])
def test_names_spark_would_skip_are_refused(hub_root: Path, folder: str, name: str, says: str) -> None:
    """Review: a file (or scope folder) starting with _ or . was committed and read by DuckDB, but Spark, Hive, Trino
    and Athena skip such names (Hadoop's hidden files): 800 rows there against 900 in hub query."""
    _drop(hub_root / folder, name, ["1"])
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestInvalid") and says in rec.error.message, rec.error
    assert (hub_root / folder / name).exists()  # left where it is: rename it, then resend the manifest


def test_a_bad_manifest_leaves_the_files_where_they_are(hub_root: Path) -> None:
    """Review: a good delivery with a non-empty manifest (ManifestInvalid) had its files set aside, so fixing only the
    manifest, as the error table says, committed the previous delivery again: the new one silently dropped."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])
    (hub_root / FOLDER / "manifest.json").write_text('{"note": "x"}')
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code, rec.setAside) == ("quarantined", "ManifestInvalid", [])
    (hub_root / FOLDER / "manifest.json").write_bytes(b"")
    (rec,) = ingest(store).records
    assert (rec.state, rec.rowsOut) == ("committed", 1) and _lake(hub_root) == [(1, D(5))]


def test_the_watcher_waits_for_a_new_delivery_still_being_written(hub_root: Path) -> None:
    """Review: with a manifest already in the folder, the watcher took a producer's next delivery while its files were
    being written: the first of two new files replaced the whole committed delivery (500 of 1000 rows visible), or a
    half-written file quarantined the new delivery. A file newer than the manifest waits ``settle`` seconds (or for
    the manifest written again); ``hub ingest`` (no settle) takes the folder as it is."""
    _drop(hub_root / FOLDER, "ing1__part0.parquet", ["1"])
    manifest = hub_root / FOLDER / "manifest.json"
    os.utime(hub_root / FOLDER / "ing1__part0.parquet", (time.time() - 301, time.time() - 301))  # a while ago, the
    os.utime(manifest, (time.time() - 300, time.time() - 300))  # manifest last
    store = Store(str(hub_root))
    assert ingest(store, settle=60).ok and _lake(hub_root) == [(1, D(1))]
    before = manifest.stat().st_mtime
    _drop(hub_root / FOLDER, "ing2__part0.parquet", ["5"])  # the next delivery's first file ...
    os.utime(manifest, (before, before))  # ... its manifest not written yet
    result = ingest(store, settle=60)
    assert result.records == [] and result.waiting == [f"{FOLDER}/manifest.json"]
    assert (hub_root / FOLDER / "ing1__part0.parquet").exists()  # the committed delivery stays whole
    _drop(hub_root / FOLDER, "ing2__part1.parquet", ["6"])  # the last file, then the manifest, written last
    (rec,) = ingest(store, settle=60).records
    assert rec.state == "committed" and _lake(hub_root) == [(2, D(11))]
    # files left unchanged past the settle time, or a one-shot hub ingest, are taken without a new manifest
    _drop(hub_root / FOLDER, "ing3__part0.parquet", ["9"])
    os.utime(manifest, (before, before))
    (rec,) = ingest(store).records
    assert rec.state == "committed" and _lake(hub_root) == [(1, D(9))]


def test_a_custom_delivery_records_and_reconciles_its_totals_per_currency(hub_root: Path) -> None:
    """Review of stop 35: a custom delivery's record had no totals (``totalsIn``, ``totalsOut``, ``totalsIngested``
    ``{}``, its event ``"totals": {}``) while ``reconciled`` was true: nothing checked its amounts. By hand: the
    first file 1.25 + 2.50 USD and 4 in ` eur` (EUR); a commitment purchase of 32 USD written with EffectiveCost 0
    (32 as ingested); a file added later (carried over unchanged) with 1 USD: in = ingested = USD 36.75 billed and
    effective, EUR 4; written USD EffectiveCost 4.75."""
    folder = hub_root / FOLDER
    _drop(folder, "ing1__a.parquet", ["1.25", "2.50"])
    _drop(folder, "ing1__b.parquet", ["4"], BillingCurrency=" eur")
    _drop(folder, "ing1__c.parquet", ["32"], ChargeCategory="Purchase", ChargeFrequency="One-Time",
          CommitmentDiscountId="cd-1", CommitmentDiscountCategory="Spend", CommitmentDiscountType="Savings Plan")
    store = Store(str(hub_root))
    (rec,) = ingest(store).records
    assert rec.state == "committed", rec.error

    def numbers(totals: dict) -> dict:
        return {c: {k: D(v).normalize() for k, v in a.items()} for c, a in totals.items()}

    assert numbers(rec.totalsIn) == numbers(rec.totalsIngested) == {
        "USD": {"BilledCost": D("35.75"), "EffectiveCost": D("35.75")}, "EUR": {"BilledCost": D(4), "EffectiveCost": D(4)}}
    assert numbers(rec.totalsOut)["USD"] == {"BilledCost": D("35.75"), "EffectiveCost": D("3.75")}
    _drop(folder, "ing1__d.parquet", ["1"])
    (rec,) = ingest(store).records
    assert rec.state == "committed", rec.error
    assert numbers(rec.totalsIn)["USD"] == numbers(rec.totalsIngested)["USD"] == {"BilledCost": D("36.75"),
                                                                                  "EffectiveCost": D("36.75")}
    assert numbers(rec.totalsOut)["USD"]["EffectiveCost"] == D("4.75")


def test_custom_data_and_a_providers_delivery_never_share_a_lake_folder(hub_root: Path) -> None:
    """Review of stop 38: custom data dropped where a provider's delivery writes (the README's own scope convention,
    aws/<account-id>): after the AWS export the custom run took the export's file for its own (normalized again, its
    lineage lost) and the folder counted both; before it, the AWS swap deleted the custom file. Either way the later one
    is SourceConflict: the custom files are set aside, the provider's are left alone, never deleted."""
    from hub.sample_native import write_aws_focus

    store = Store(str(hub_root))
    write_aws_focus(str(hub_root), rows=200)
    assert ingest(store).ok
    folder = hub_root / "ingestion/Costs/2024/05/aws/111122223333"
    before = duckdb.sql(f"SELECT count(*), sum(BilledCost), list(DISTINCT x_SourceType) FROM '{folder}/*.parquet'").fetchall()
    _drop(folder, "tool1__a.parquet", ["20"], BillingPeriodStart="2024-05-01 00:00:00", BillingPeriodEnd="2024-06-01 00:00:00",
          ChargePeriodStart="2024-05-02 00:00:00", ChargePeriodEnd="2024-05-03 00:00:00")
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code) == ("quarantined", "SourceConflict") and rec.setAside == [
        "ingestion/Costs/2024/05/aws/111122223333/tool1__a.parquet.quarantined",
        "ingestion/Costs/2024/05/aws/111122223333/manifest.json.quarantined"]
    assert duckdb.sql(f"SELECT count(*), sum(BilledCost), list(DISTINCT x_SourceType) FROM '{folder}/*.parquet'").fetchall() == before
    assert ingest(store).records == []  # nothing more to do until either side changes

    other = make_hub(hub_root.parent / "hub2")  # custom first, then the provider: Azure's swap deleted the custom file
    folder2 = other / "ingestion/Costs/2024/05" / SCOPE
    _drop(folder2, "tool1__a.parquet", ["20"], BillingPeriodStart="2024-05-01 00:00:00", BillingPeriodEnd="2024-06-01 00:00:00",
          ChargePeriodStart="2024-05-02 00:00:00", ChargePeriodEnd="2024-05-03 00:00:00", ProviderName="Microsoft")
    assert ingest(Store(str(other))).ok
    write_export(other, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    (azure,) = ingest(Store(str(other))).records
    assert (azure.state, azure.error.code) == ("quarantined", "SourceConflict") and "holds custom data" in azure.error.message
    assert duckdb.sql(f"SELECT count(*), sum(BilledCost) FROM '{folder2}/*.parquet'").fetchall() == [(1, D(20))]


@pytest.mark.parametrize(("tags", "code"), [("{'team': 'web', 'env': 'prod'}", None),
                                            ("[{'key': 'team', 'value': 'web'}, {'key': 'env', 'value': 'prod'}]", "TagsFromArray"),
                                            ("MAP {'team': 'web', 'env': 'prod'}", None)])
def test_nested_tags_are_read_as_json(hub_root: Path, tags: str, code: str | None) -> None:
    """Review of stop 38: Tags as a STRUCT or a list of {key, value} (BigQuery's labels) reached the tag rules as DuckDB's
    display text ({'team': web}) and became keys with quotes ({"'team'": "web"}): Tags->>'team' was null, allocation by
    tag missed the rows. Nested values are read as JSON."""
    _drop(hub_root / FOLDER, "base.parquet", ["1"])
    base = hub_root / FOLDER / "base.parquet"
    duckdb.sql(f"COPY (SELECT *, {tags} AS Tags FROM '{base}') TO '{hub_root / FOLDER / 'ing1__a.parquet'}' (FORMAT parquet)")
    base.unlink()
    assert ingest(Store(str(hub_root))).ok
    ((text, changes),) = _lake(hub_root, "SELECT Tags, x_SourceChanges FROM t")
    assert json.loads(text) == {"team": "web", "env": "prod"}
    assert (code in (changes or "")) if code else "TagsFromText" not in (changes or "")


def test_a_committed_file_set_aside_leaves_its_month_owed_its_allocation(hub_root: Path) -> None:
    """Review of stop 38: a producer overwrote a committed custom file with bad content: the delivery was quarantined and
    the file set aside (its rows left the lake) without anything owing the month's allocation: by cost center 15 where
    the Costs held 5, for good. The month is marked owed; the next ingestion allocates it again."""
    from hub.store import allocation_owed

    (hub_root / "config").mkdir(exist_ok=True)
    (hub_root / "config/allocation.json").write_text('{"dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}}')
    _drop(hub_root / FOLDER, "ing1__a.parquet", ["10"])
    _drop(hub_root / FOLDER, "ing1__b.parquet", ["5"])
    store = Store(str(hub_root))
    assert ingest(store).ok
    (hub_root / FOLDER / "ing1__a.parquet").write_bytes(b"PAR1 not parquet any more")
    (hub_root / FOLDER / "manifest.json").write_text("")
    result = ingest(store)
    (rec,) = result.records
    assert rec.state == "quarantined" and _lake(hub_root) == [(1, D(5))]
    assert [(r.month, r.state) for r in result.allocated] == [("2024-09", "committed")]  # made again at once
    assert not store.exists(allocation_owed("2024-09"))
    allocated = duckdb.sql(f"SELECT sum(x_Amount) FROM '{hub_root}/ingestion/Allocation/**/*.parquet'").fetchall()
    assert allocated == [(D(5),)]


def test_a_folder_restated_twice_before_the_hub_looked_keeps_the_newest_delivery(hub_root: Path) -> None:
    """Review of stop 40: a committed delivery (ing1, 1.00) restated twice before the next `hub ingest` (ing2 2.00, then
    ing3 4.00, each followed by its manifest) kept both restatements: 6.00 counted. The newest new delivery (the id whose
    files were written last) replaces the committed one; the older one's files are set aside as ``.superseded``."""
    from conftest import custom_file

    folder = hub_root / "ingestion/Costs/2024/05/custom/team-x"
    custom_file(folder / "ing1__a.parquet", cost="1.00")
    (folder / "manifest.json").write_bytes(b"")
    assert ingest(Store(str(hub_root))).ok
    custom_file(folder / "ing2__a.parquet", cost="2.00")
    os.utime(folder / "ing2__a.parquet", (time.time() - 60, time.time() - 60))
    custom_file(folder / "ing3__a.parquet", cost="4.00")
    (folder / "manifest.json").write_bytes(b"")
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed" and rec.setAside == ["ingestion/Costs/2024/05/custom/team-x/ing2__a.parquet.superseded"]
    assert sorted(p.name for p in folder.iterdir()) == ["ing2__a.parquet.superseded", "ing3__a.parquet", "manifest.json"]
    assert duckdb.connect().execute(f"SELECT sum(BilledCost) FROM '{folder}/*.parquet'").fetchone()[0] == D(4)


def test_a_custom_folder_refused_by_the_costs_checks_names_its_manifest(hub_root: Path) -> None:
    """Review of stop 40: a custom folder whose rows are charged in another month (PeriodMismatch) was refused naming
    ``custom:ingestion/.../manifest.json``, a path that does not exist (the record key's prefix), in the record, the
    messages and events. It names the manifest's path."""
    from conftest import custom_file

    folder = hub_root / "ingestion/Costs/2024/09/custom/wrong-month"  # rows of May filed under September
    custom_file(folder / "i1__a.parquet")
    (folder / "manifest.json").write_bytes(b"")
    (rec,) = ingest(Store(str(hub_root))).records
    assert (rec.state, rec.error.code) == ("quarantined", "PeriodMismatch")
    assert rec.error.file == "ingestion/Costs/2024/09/custom/wrong-month/manifest.json"


def test_two_new_ids_a_first_drop_or_a_refused_newest_never_count_both(hub_root: Path) -> None:
    """Review of stop 40 (the fix's own review): a folder's first drop holding two ids (ing1 1.00, ing2 2.00, written
    later) counted both (3.00); and when the newest of two restatements was refused (its rows charged in September), its
    quarantine failed on the older one's file already set aside (InternalError), leaving the refused rows readable.
    The newest id is the delivery; a refused one is set aside and the lake keeps the committed delivery."""
    from conftest import custom_file

    folder = hub_root / "ingestion/Costs/2024/05/custom/team-x"
    custom_file(folder / "ing1__a.parquet", cost="1.00")
    os.utime(folder / "ing1__a.parquet", (time.time() - 60, time.time() - 60))
    custom_file(folder / "ing2__a.parquet", cost="2.00")
    (folder / "manifest.json").write_bytes(b"")
    (first,) = ingest(Store(str(hub_root))).records
    assert first.state == "committed" and first.rowsOut == 1
    assert duckdb.connect().execute(f"SELECT sum(BilledCost) FROM '{folder}/*.parquet'").fetchone()[0] == D(2)

    custom_file(folder / "ing3__a.parquet", cost="4.00")
    os.utime(folder / "ing3__a.parquet", (time.time() - 60, time.time() - 60))
    duckdb.connect().execute(f"""COPY (SELECT * REPLACE (TIMESTAMP '2024-09-03' AS ChargePeriodStart,
        TIMESTAMP '2024-09-04' AS ChargePeriodEnd) FROM '{folder}/ing3__a.parquet') TO '{folder}/ing4__a.parquet'
        (FORMAT parquet)""")  # the newest restatement: rows of September
    (folder / "manifest.json").write_bytes(b"")
    (bad,) = ingest(Store(str(hub_root))).records
    assert (bad.state, bad.error.code) == ("quarantined", "PeriodMismatch")
    assert sorted(p.name for p in folder.iterdir()) == [
        "ing1__a.parquet.superseded", "ing2__a.parquet", "ing3__a.parquet.superseded", "ing4__a.parquet.quarantined",
        "manifest.json"]
    assert duckdb.connect().execute(f"SELECT sum(BilledCost) FROM '{folder}/*.parquet'").fetchone()[0] == D(2)



def test_custom_data_dropped_while_an_azure_export_converts_is_never_deleted(hub_root: Path, monkeypatch) -> None:
    """Review of stop 42: custom data (its file and manifest) dropped into an Azure export's scope folder while the
    export converted: the folder was checked before the conversion only, so the export's swap deleted the custom file
    (its manifest left as .quarantined). Checked again just before the swap: the export is SourceConflict, the custom
    file stays (1 row, 20)."""
    from hub import conversion

    folder = hub_root / "ingestion/Costs/2024/05" / SCOPE
    real = conversion.checkpoint

    def drop(point: str) -> None:
        if point == "after-part-1" and not (folder / "manifest.json").exists():
            _drop(folder, "tool1__a.parquet", ["20"], BillingPeriodStart="2024-05-01 00:00:00",
                  BillingPeriodEnd="2024-06-01 00:00:00", ChargePeriodStart="2024-05-02 00:00:00",
                  ChargePeriodEnd="2024-05-03 00:00:00", ProviderName="Microsoft")
        real(point)

    monkeypatch.setattr(conversion, "checkpoint", drop)
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    records = {r.exportType: r for r in ingest(Store(str(hub_root))).records}
    assert (records["FocusCost"].state, records["FocusCost"].error.code) == ("quarantined", "SourceConflict")
    assert duckdb.sql(f"SELECT count(*), sum(BilledCost) FROM '{folder}/*.parquet'").fetchall() == [(1, D(20))]


def test_a_file_written_into_a_custom_folder_during_its_run_is_taken_at_the_next_pass(hub_root: Path, monkeypatch) -> None:
    """Review of stop 42: a producer's new delivery (d2, 500) written into a custom folder while its run normalized d1
    was deleted by the swap (the run's files made the folder's only ones), and nothing recorded it. The run swaps
    nothing when the folder changed during it: d2 stays, and the next pass takes it (d2 replaces d1: 500)."""
    from hub.sources import custom

    folder = hub_root / "ingestion/Costs/2024/09/custom/onprem"
    _drop(folder, "d1__a.parquet", ["10"])
    real = custom.checkpoint

    def arrive(point: str) -> None:
        if point == "after-part-1" and not (folder / "d2__a.parquet").exists():
            _drop(folder, "d2__a.parquet", ["500"])
        real(point)

    monkeypatch.setattr(custom, "checkpoint", arrive)
    assert ingest(Store(str(hub_root))).records == []
    assert (folder / "d2__a.parquet").exists() and (folder / "d1__a.parquet").exists()
    monkeypatch.setattr(custom, "checkpoint", real)
    (rec,) = ingest(Store(str(hub_root))).records
    assert rec.state == "committed"
    assert duckdb.sql(f"SELECT count(*), sum(BilledCost) FROM '{folder}/*.parquet'").fetchall() == [(1, D(500))]
