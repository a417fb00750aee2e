"""Names that are not UTF-8 (copied from a share in another encoding): quarantined by name, never stopping the others.
Review of stop 39: `hub ingest` exited with a UnicodeEncodeError and no record, and `hub watch` retried forever, so
no delivery behind such a name ever landed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from hub import runs
from hub.sample_native import write_oci_focus
from hub.store import Store
from pipelines.ingest import ingest


def _lake_rows(root: Path) -> int:
    return duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{root}/ingestion/Costs/**/*.parquet')").fetchone()[0]


def test_a_name_that_is_not_utf8_is_quarantined_by_name_and_the_others_flow(tmp_path: Path) -> None:
    root = tmp_path / "hub"
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
    duckdb.connect().execute(f"""COPY (SELECT 'Custom' AS ProviderName, 'x' AS BillingAccountId, 'USD' AS BillingCurrency,
        TIMESTAMP '2024-05-01' AS BillingPeriodStart, TIMESTAMP '2024-06-01' AS BillingPeriodEnd,
        TIMESTAMP '2024-05-03' AS ChargePeriodStart, TIMESTAMP '2024-05-04' AS ChargePeriodEnd, 'Usage' AS ChargeCategory,
        7.5 AS BilledCost, 7.5 AS EffectiveCost) TO '{custom / "d1.parquet"}' (FORMAT parquet)""")
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
