"""Deliveries of months older than the lake keeps (``retention.ingestion.months``) are held back, never loaded and
then deleted: with the default settings (13 months, ``msexports.days`` 0) a backfill of older exports used to be
ingested, its exports deleted on commit, and its lake months deleted by the next retention pass: gone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import parquet_in, schema_csv, write_export
from test_native_cur import LINES_COMMON, csv_text, deliver
from test_native_focus import TENCENT
from test_native_focus import deliver as deliver_native

from hub import runs
from hub.settings import MonthsRetention, Settings
from hub.store import SETTINGS, Store
from pipelines.ingest import ingest, load_settings
from pipelines.retention import apply


def settings(root: Path, months: int, days: int = 0) -> None:
    """The hub's settings: lake months kept, days an export is kept after it committed."""
    s = Settings()
    s.retention.ingestion.months, s.retention.msexports.days = months, days
    Store(str(root)).write_bytes(SETTINGS, s.to_json().encode())


def fresh_hub(root: Path, months: int, days: int = 0) -> Store:
    store = Store(str(root))
    store.init_layout()
    settings(root, months, days)
    return store


def test_the_months_a_setting_keeps_by_hand() -> None:
    """The current month (UTC) and the N - 1 before it; 0 keeps every month."""
    now = datetime(2026, 12, 4, 9, tzinfo=timezone.utc)
    assert MonthsRetention(months=13).oldest(now) == "2025-12"  # 2025-12 .. 2026-12: 13 months
    assert MonthsRetention(months=13).keeps("2025-12", now) and not MonthsRetention(months=13).keeps("2025-11", now)
    assert MonthsRetention(months=1).oldest(now) == "2026-12"
    assert MonthsRetention(months=12).oldest(datetime(2026, 1, 1, tzinfo=timezone.utc)) == "2025-02"  # across a year
    assert MonthsRetention(months=0).oldest(now) is None and MonthsRetention(months=0).keeps("1999-01", now)


def test_an_old_azure_export_is_held_back_kept_and_loaded_once_the_settings_keep_its_month(tmp_path: Path) -> None:
    """Default retention (13 months, exports deleted on commit): a 2024-05 export is ``OutsideRetention``, naming its
    month and the setting; nothing lands in the lake, and neither the ingestion nor a retention pass deletes the export.
    Set to keep every month, the next pass (the watcher's too: a held delivery is never final in its listing
    checkpoint) loads it without --retry, and only then the export goes (``msexports.days`` 0)."""
    root = tmp_path / "hub"
    store = fresh_hub(root, months=13)
    manifest = write_export(root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    checkpoint: dict[str, str] = {}
    result = ingest(store, checkpoint=checkpoint)
    (rec,) = result.records
    assert (rec.state, rec.error.code, rec.error.file, rec.month) == ("quarantined", "OutsideRetention", manifest, "2024-05")
    assert "2024-05" in rec.error.message and "retention.ingestion.months" in rec.error.message
    assert parquet_in(root) == [] and (root / manifest).exists()
    assert apply(store, load_settings(store)).deletions == [] and (root / manifest).exists()
    assert ingest(store, checkpoint=checkpoint).records == []  # still held: not taken again, not lost
    settings(root, months=0)
    (again,) = ingest(store, checkpoint=checkpoint).records
    assert again.state == "committed" and again.rowsOut == 3 and len(parquet_in(root)) == 1
    assert not (root / manifest).exists()  # committed: the export goes as the settings say


def test_an_export_of_a_month_the_settings_keep_is_loaded(tmp_path: Path) -> None:
    """The current month with the default 13 months: loaded as always (and with 1200 months, 2024's too)."""
    root = tmp_path / "hub"
    store = fresh_hub(root, months=13, days=7)
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    rows = schema_csv("focuscost_1.0", 2).replace("2024-05-", f"{month}-")
    write_export(root, {"part_0_0001.csv": rows}, rows=2, start_date=f"{month}-01", folder=f"e/{month}")
    (rec,) = ingest(store).records
    assert (rec.state, rec.month) == ("committed", month)
    other = tmp_path / "other"
    fresh_hub(other, months=1200)
    write_export(other, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2)
    assert [r.state for r in ingest(Store(str(other))).records] == ["committed"]


def test_an_old_aws_cur_is_held_back_then_loaded(tmp_path: Path) -> None:
    """Other clouds' deliveries too: a legacy CUR of March 2024 with 13 months kept is held (its record names the
    month), the lake stays empty; with every month kept the next ingestion loads it."""
    root = tmp_path / "hub"
    store = fresh_hub(root, months=13)
    deliver(root, "cur/r/20240301-20240401/x", {"r-00001.csv": csv_text({**LINES_COMMON, "lineItem/UsageAmount": "1"}, [
        {"lineItem/LineItemType": "Usage", "lineItem/UnblendedCost": "2.50"}])})
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code, rec.month) == ("quarantined", "OutsideRetention", "2024-03")
    assert parquet_in(root) == [] and (root / "exports/aws/cur/r/20240301-20240401/x/r-00001.csv").exists()
    settings(root, months=0)
    made = ingest(store).records
    assert [(r.state, r.month) for r in made] == [("committed", "2024-03")]
    assert [r.state for r in runs.load_all(store)] == ["committed"]  # the held record is over
    assert len(parquet_in(root)) == 1


def test_a_delivery_holding_kept_months_too_keeps_flowing(tmp_path: Path) -> None:
    """Review finding: the README's way (sync an export's whole prefix, one manifest.json) makes one delivery of every
    month AWS keeps; holding it for its oldest month froze the current month for good once that month aged out. A
    delivery is held only when every month it holds is older than the lake keeps: here March 2024 and this month land
    (retention then takes the old one, as before)."""
    root = tmp_path / "hub"
    store = fresh_hub(root, months=13)
    now = datetime.now(timezone.utc)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    current = {**LINES_COMMON, "bill/BillingPeriodStartDate": f"{first:%Y-%m-%dT%H:%M:%SZ}",
               "bill/BillingPeriodEndDate": f"{following:%Y-%m-%dT%H:%M:%SZ}",
               "lineItem/UsageStartDate": f"{first:%Y-%m-%dT%H:%M:%SZ}",
               "lineItem/UsageEndDate": f"{first + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}", "lineItem/UsageAmount": "1"}
    old = {**LINES_COMMON, "lineItem/UsageAmount": "1"}
    usage = [{"lineItem/LineItemType": "Usage", "lineItem/UnblendedCost": "2.50"}]
    deliver(root, "cur/r", {"20240301-20240401/x/r-00001.csv": csv_text(old, usage),
                            f"{first:%Y%m%d}-{following:%Y%m%d}/y/r-00001.csv": csv_text(current, usage)})
    made = ingest(store).records
    assert sorted((r.state, r.month) for r in made) == [("committed", "2024-03"), ("committed", f"{first:%Y-%m}")]


def test_a_held_older_snapshot_is_not_taken_again_once_superseded(tmp_path: Path) -> None:
    """Review finding: two Tencent snapshots of an old month, both held; once the setting keeps the month, the newer
    commits and the older is superseded, but its held record stayed, so every later pass took it again."""
    root = tmp_path / "hub"
    store = fresh_hub(root, months=13)
    header, first = TENCENT.splitlines(keepends=True)[:2]
    name = "100001-{}-by_used_time-bill_details.csv"
    deliver_native(root, "tencent", "cos/a", {name.format("20240520"): TENCENT})
    deliver_native(root, "tencent", "cos/b", {name.format("20240510"): header + first})
    assert {r.error.code for r in ingest(store).records if r.error} == {"OutsideRetention"}
    settings(root, months=0)
    assert sorted(r.state for r in ingest(store, checkpoint={}).records) == ["committed", "superseded"]
    assert ingest(store, checkpoint={}).records == []
    assert sorted(r.state for r in runs.load_all(store)) == ["committed", "superseded"]


def test_custom_data_of_an_old_month_is_held_back_and_never_deleted_unread(tmp_path: Path) -> None:
    """Review of stop 40: with the default 13 months, a custom-data folder of May 2024 was committed (an `ingested`
    event) and then deleted by the next retention pass with its month; one of April whose manifest was never ingested
    was deleted unread, the only copy the hub had. Such a folder is held back (``OutsideRetention``, its files where
    they are); retention keeps a month holding custom data not ingested (saying so); once the settings keep the month
    the folder is loaded, and retention then deletes months as it is told."""
    from conftest import custom_file

    store = fresh_hub(tmp_path / "hub", months=13)
    may = tmp_path / "hub/ingestion/Costs/2024/05/custom/team-x"
    custom_file(may / "i1__a.parquet", cost="3.00")
    (may / "manifest.json").write_bytes(b"")
    (rec,) = ingest(store).records
    assert (rec.state, rec.error.code) == ("quarantined", "OutsideRetention")
    assert rec.error.file == "ingestion/Costs/2024/05/custom/team-x/manifest.json"  # a path, not the record's key
    done = apply(store, load_settings(store))
    assert done.deletions == [] and done.kept == [
        ("ingestion/Costs/2024/05", "custom data not ingested (ingestion/Costs/2024/05/custom/team-x/manifest.json)")]
    assert (may / "i1__a.parquet").exists()
    settings(tmp_path / "hub", months=0)
    (again,) = ingest(store).records
    assert again.state == "committed" and again.rowsOut == 1
    settings(tmp_path / "hub", months=13)
    custom_file(may / "i2__a.parquet", cost="5.00")  # a restatement the hub has not taken yet: kept too
    (may / "manifest.json").write_bytes(b"")
    kept = apply(store, load_settings(store))
    assert kept.deletions == [] and (may / "i2__a.parquet").exists()
    (may / "i2__a.parquet").unlink()  # back to the committed delivery: the month goes
    assert [d.path for d in apply(store, load_settings(store)).deletions] == ["ingestion/Costs/2024/05"]
