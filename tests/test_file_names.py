"""Names that are not UTF-8 (copied from a share in another encoding): quarantined by name, never stopping the others.
Review of stop 39: `hub ingest` exited with a UnicodeEncodeError and no record, and `hub watch` retried forever, so
no delivery behind such a name ever landed."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from conftest import custom_file, make_hub

from hub import runs
from hub.sample_native import write_oci_focus
from hub.store import Store
from pipelines.ingest import ingest


def _lake_rows(root: Path) -> int:
    return duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet')").fetchone()[0]


def test_a_name_that_is_not_utf8_is_quarantined_by_name_and_the_others_flow(tmp_path: Path) -> None:
    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    manifest = write_oci_focus(str(root), rows=20)
    (root / manifest).unlink()  # OCI's files are taken one by one
    folder = (root / manifest).parent
    (good,) = [p for p in folder.iterdir() if p.is_file()]
    bad = os.fsencode(str(folder)) + b"/r\xe9sum\xe9.csv.gz"  # Latin-1 bytes
    shutil.copy(good, bad)
    os.makedirs(os.fsencode(str(root / "msexports")) + b"/co\xfbts")
    with open(os.fsencode(str(root / "msexports")) + b"/co\xfbts/manifest.json", "w") as fh:
        fh.write("{}")
    custom = root / "ingestion/Costs/2024/05/custom/team-x"
    custom.mkdir(parents=True)
    custom_file(custom / "d1.parquet")
    (custom / "manifest.json").write_bytes(b"")

    result = ingest(Store(str(root)))
    names = {r.manifest.removeprefix("custom:"): r for r in result.all}
    oci_dir = str(folder.relative_to(root))
    bad_oci, bad_ms = f"{oci_dir}/r\\xe9sum\\xe9.csv.gz", "msexports/co\\xfbts"
    assert {n: (r.state, r.error and r.error.code) for n, r in names.items()} == {
        f"{oci_dir}/{good.name}": ("committed", None),
        "ingestion/Costs/2024/05/custom/team-x/manifest.json": ("committed", None),
        bad_oci: ("quarantined", "InvalidFileName"),
        bad_ms: ("quarantined", "InvalidFileName"),
    }
    assert names[bad_oci].error.file == bad_oci and _lake_rows(root) == 20 + 1
    assert ingest(Store(str(root))).all == []  # once: nothing new on the next pass
    os.rename(bad, str(folder / "resume.csv.gz"))  # renamed in UTF-8: read (a copy, so its rows count again), record gone
    again = ingest(Store(str(root)))
    assert [(r.manifest, r.state) for r in again.all if r.state == "committed"] == [(f"{oci_dir}/resume.csv.gz", "committed")]
    keys = {r.key for r in runs.load_all(Store(str(root)))}
    assert names[bad_oci].key not in keys and names[bad_ms].key in keys


def _custom(root: Path, name: str, cost: str) -> Path:
    return custom_file(root / "ingestion/Costs/2024/05/custom/team-y" / name, account="y", cost=cost).parent


def test_a_custom_file_whose_name_is_not_utf8_is_set_aside_never_deleted_and_readers_keep_working(tmp_path: Path) -> None:
    """Review of stop 39 (the fix's own review): a Latin-1 Parquet name in a committed custom folder was deleted by the
    folder's next swap (only UTF-8 names were listed), and DuckDB's glob made every lake query fail on it."""
    from hub import catalog
    from hub.validate import validate

    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    folder = _custom(root, "d1.parquet", "7.5")
    (folder / "manifest.json").write_bytes(b"")
    assert {r.state for r in ingest(Store(str(root))).all} == {"committed"}
    bad = os.fsencode(str(folder)) + b"/\xe9quipe.parquet"
    shutil.copy(folder / "d1.parquet", bad)
    with pytest.raises(ValueError, match=r"equipe|\\xe9quipe.parquet: the name is not valid UTF-8"):
        validate(str(root))  # named, never an InternalError
    con = catalog.connect(Store(str(root)))  # the lake stays readable: the name is left out
    assert con.execute("SELECT sum(BilledCost) FROM Costs").fetchone()[0] == Decimal("7.5")
    (folder / "manifest.json").write_bytes(b"")
    (rec,) = ingest(Store(str(root))).all
    aside = "ingestion/Costs/2024/05/custom/team-y/%E9quipe.parquet.quarantined"
    assert (rec.state, rec.error.code, rec.error.file, rec.setAside) == ("quarantined", "InvalidFileName", aside, [aside])
    assert (root / aside).read_bytes() == (folder / "d1.parquet").read_bytes()  # its bytes kept
    assert catalog.connect(Store(str(root))).execute("SELECT sum(BilledCost) FROM Costs").fetchone()[0] == Decimal("7.5")
    assert validate(str(root)).rows == 1  # readable again (the minimal rows are no complete FOCUS rows)


def test_another_clouds_delivery_holding_a_name_that_is_not_utf8_is_refused_never_committed_in_part(tmp_path: Path) -> None:
    """Review of stop 39 (the fix's own review): the file was left out of the delivery's list and the rest of the bill
    committed, replacing the month with part of it."""
    from hub.sample_gcp import write_gcp_export

    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    manifest = write_gcp_export(str(root), rows=5, month="2024-05")
    folder = (root / manifest).parent
    (shard,) = [p for p in folder.iterdir() if p.name != "manifest.json"]
    shutil.copy(shard, os.fsencode(str(folder)) + b"/part-\xe9.json")
    (rec,) = ingest(Store(str(root))).all
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "InvalidFileName", f"{folder.relative_to(root)}/part-\\xe9.json")
    assert not (root / "ingestion/Costs").exists()
    os.remove(os.fsencode(str(folder)) + b"/part-\xe9.json")  # gone: the delivery is taken again, whole
    (again,) = ingest(Store(str(root))).all
    assert again.state == "committed"


def test_a_folder_of_the_lake_whose_name_is_not_utf8_is_moved_out_of_it_with_its_record(tmp_path: Path) -> None:
    """Review of stop 39 (the fix's second review): a custom folder's sub-folder with such a name was renamed in place
    (its Parquet files then read as Costs although refused), or under a month-level manifest never told at all; a
    running reader failed on it. It is moved out of the lake (config/odd-names, bytes as %XX), once, its record kept."""
    from hub import catalog

    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    folder = _custom(root, "d1.parquet", "7.5")
    (folder / "manifest.json").write_bytes(b"")
    odd = os.fsencode(str(folder)) + b"/sub\xe9"
    os.makedirs(odd)
    shutil.copy(folder / "d1.parquet", odd + b"/d2.parquet")
    result = ingest(Store(str(root)))
    by_state = {r.state: r for r in result.all}
    moved = "config/odd-names/ingestion/Costs/2024/05/custom/team-y/sub%E9"
    assert by_state["committed"].rowsOut == 1  # the folder's own file
    assert (by_state["quarantined"].error.code, by_state["quarantined"].setAside) == ("InvalidFileName", [moved])
    assert (root / moved / "d2.parquet").exists() and not os.path.exists(odd)  # moved, nothing deleted
    assert catalog.connect(Store(str(root))).execute("SELECT sum(BilledCost) FROM Costs").fetchone()[0] == Decimal("7.5")
    assert ingest(Store(str(root))).all == []  # told once; its record stays
    assert by_state["quarantined"].key in {r.key for r in runs.load_all(Store(str(root)))}


def test_a_custom_folder_refused_for_another_reason_sets_a_long_odd_name_aside_once(tmp_path: Path) -> None:
    """Review of stop 39: a folder whose manifest was refused first (not empty) was taken again on every pass (one event
    each), and a long cp1251 name grew past the file system's limit once written as %XX (InternalError every pass)."""
    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    folder = _custom(root, "d1.parquet", "7.5")
    (folder / "manifest.json").write_text('{"not": "empty"}')
    shutil.copy(folder / "d1.parquet", os.fsencode(str(folder)) + b"/" + "длинное имя файла ".encode("cp1251") * 5 + b".parquet")
    (rec,) = ingest(Store(str(root))).all
    assert (rec.state, rec.error.code) == ("quarantined", "InvalidFileName") and len(rec.setAside) == 2
    assert ingest(Store(str(root))).all == []  # not taken again


def test_a_name_in_an_azure_lake_folder_is_moved_out_before_a_redelivery_swaps_the_folder(tmp_path: Path) -> None:
    """Review of stop 39 (the fix's third review): a name that is not UTF-8 in a committed Azure month folder was
    deleted with the old folder by the same pass's swap, then the pass crashed (FileNotFoundError) moving it; the same
    name copied in again later was never told nor moved."""
    from conftest import schema_csv, write_export

    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    write_export(root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3, run_id="r1", folder="e/r1")
    assert ingest(Store(str(root))).ok
    (lake_file,) = (root / "ingestion/Costs").rglob("*.parquet")
    odd = os.fsencode(str(lake_file.parent)) + b"/r\xe9sum\xe9.parquet"
    shutil.copy(lake_file, odd)
    write_export(root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2, run_id="r2", folder="e/r2")
    result = ingest(Store(str(root)))
    (told,) = [r for r in result.all if r.error and r.error.code == "InvalidFileName"]
    assert [r.state for r in result.all if r.exportType == "FocusCost"] == ["committed"]
    (moved,) = told.setAside
    assert (root / moved).stat().st_size > 0  # its bytes kept
    assert not os.path.exists(odd) and _lake_rows(root) == 2
    shutil.copy(root / moved, odd)  # synced in again
    (again,) = ingest(Store(str(root))).all
    assert again.key == told.key and len(again.setAside) == 2 and not os.path.exists(odd)


def test_an_aws_manifest_naming_a_key_with_a_lone_surrogate_escape_is_invalid(tmp_path: Path) -> None:
    """Review of stop 39: `reportKeys: ["…r\\udce9sum\\udce9.csv.gz"]` (how Python writes such a name) reached the
    record, whose save failed: InternalError on every pass."""
    import json

    from hub.sample_native import write_aws_cur

    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    manifest = write_aws_cur(str(root), rows=5)
    folder = (root / manifest).parent
    odd = "\udce9.csv"
    keys = ["cur/demo-cur/20240501-20240601/assembly-1/" + p.name.replace(".csv", odd) for p in folder.glob("*.csv.gz")]
    (folder / "demo-cur-Manifest.json").write_text(json.dumps({"reportKeys": keys}))
    (root / manifest).write_bytes(b"")  # written last
    (rec,) = ingest(Store(str(root))).all
    assert (rec.state, rec.error.code) == ("quarantined", "ManifestInvalid")


def test_a_custom_file_moved_out_before_its_manifest_came_holds_the_folder_back(tmp_path: Path) -> None:
    """Review of stop 39 (the fix's fourth review): files first, manifest last: a pass in between moved the odd file out
    of the lake as a stray one, and the folder then committed without it (7.5 of 107.5)."""
    root = make_hub(tmp_path / "hub")  # every lake month kept (custom data of 2024 is not held back)
    folder = _custom(root, "d1.parquet", "7.5")
    shutil.copy(_custom(root, "d2.parquet", "100") / "d2.parquet", os.fsencode(str(folder)) + b"/\xe9quipe.parquet")
    (folder / "d2.parquet").unlink()
    (told,) = ingest(Store(str(root))).all  # no manifest yet: a stray name, moved out
    (moved,) = told.setAside
    (folder / "manifest.json").write_bytes(b"")
    (rec,) = ingest(Store(str(root))).all
    assert (rec.state, rec.error.code, rec.error.file) == ("quarantined", "InvalidFileName", moved)
    shutil.move(root / moved, folder / "equipe.parquet")  # back under a UTF-8 name (the folder's files were set aside)
    for aside in folder.glob("*.quarantined"):
        aside.rename(folder / aside.name.removesuffix(".quarantined"))
    (folder / "manifest.json").write_bytes(b"")
    (done,) = ingest(Store(str(root))).all
    assert done.state == "committed" and _lake_rows(root) == 2


def test_each_move_out_of_the_lake_is_its_own_event_and_a_name_that_cannot_move_is_told_once(tmp_path: Path) -> None:
    """Review of stop 39: a name synced back in was moved again under the same event id (consumers drop it as a
    duplicate); a name that could not be moved was skipped without a word on every pass."""
    import json

    root = tmp_path / "hub"
    (root / "config").mkdir(parents=True)
    out = tmp_path / "events.jsonl"
    (root / "config/settings.json").write_text(json.dumps({"events": {"sinks": [{"type": "file", "path": str(out)}]}}))
    odd = os.fsencode(str(root / "ingestion/Costs/2024/05")) + b"/x\xe9"
    os.makedirs(odd)
    ingest(Store(str(root)))
    os.makedirs(odd)  # synced in again
    ingest(Store(str(root)))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(ids) == 2 and len(set(ids)) == 2
    shutil.rmtree(root / "config/odd-names")
    (root / "config/odd-names").write_text("in the way")  # the move cannot be made
    os.makedirs(odd)
    (rec,) = ingest(Store(str(root))).all
    assert rec.error.message.startswith("could not move it out of the lake") and os.path.exists(odd)
    assert ingest(Store(str(root))).all == []  # told once
