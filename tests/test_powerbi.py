"""`hub powerbi`: the Costs files the FinOps toolkit's storage Power BI reports read (columns, layout, statistics)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
import stores

from hub import catalog, powerbi
from hub.demo import run_demo
from hub.store import Store

#: The columns of the FOCUS 1.0 Cost Management export (the storage reports' Costs query needs every one).
EXPORT_1_0 = [c["name"] for c in json.loads((Path(__file__).parents[1] / "schemas/msexports/focuscost_1.0.json").read_text())["columns"]]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("pbi") / "hub")
    for month in ("2024-05", "2024-06"):
        assert all(r.state == "committed" for r in run_demo(root, rows=1200, month=month).records)
    return root


def _files(dest: Path) -> list[Path]:
    return sorted(dest.rglob("*.parquet"))


def test_columns_layout_and_statistics(lake: str, tmp_path: Path) -> None:
    dest = tmp_path / "ingestion"
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", lake, "--out", str(dest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    files = _files(dest)
    assert len(files) == 2
    for f in files:
        rel = f.relative_to(dest).as_posix()
        assert re.fullmatch(r"Costs/\d{4}/\d{2}/.+/costs\.parquet", rel), rel  # exact, case-sensitive dataset folder
        meta = pq.ParquetFile(f)
        names = meta.schema_arrow.names
        assert set(EXPORT_1_0) | {"CapacityReservationId", "CapacityReservationStatus"} <= set(names)
        assert not set(powerbi.contract()["forbidden"]) & set(names)  # the report adds these itself
        assert meta.schema_arrow.field("x_SkuTerm").type == "int64"
        assert str(meta.schema_arrow.field("ChargePeriodStart").type) == "timestamp[us, tz=UTC]"
        i = names.index("ChargePeriodStart")
        for g in range(meta.metadata.num_row_groups):
            group = meta.metadata.row_group(g)
            assert group.column(i).statistics is None  # ftk_Metadata keeps the file (it cannot decode INT64 statistics)
            assert group.column(names.index("BilledCost")).statistics is not None
            assert all(group.column(c).compression == "SNAPPY" for c in range(group.num_columns))


def test_rows_and_amounts_equal_the_lake(lake: str, tmp_path: Path) -> None:
    result = powerbi.publish(lake, str(tmp_path / "out"))
    assert result.rows == 2400
    published = duckdb.sql(f"SELECT count(*), sum(BilledCost), sum(EffectiveCost), count(DISTINCT x_InvoiceId), "
                           f"count(x_SkuMeterName) FROM read_parquet('{tmp_path}/out/Costs/**/*.parquet')").fetchall()[0]
    con = catalog.connect(lake)
    assert published == con.execute("SELECT count(*), sum(BilledCost), sum(EffectiveCost), count(DISTINCT InvoiceId), "
                                    "count(SkuMeter) FROM Costs").fetchall()[0]


def test_republish_replaces_and_removes_stale_files(lake: str, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    powerbi.publish(lake, str(dest))
    stale = dest / "Costs" / "2023" / "01" / "old" / "costs.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes((_files(dest)[0]).read_bytes())
    again = powerbi.publish(lake, str(dest))
    assert [Path(r).as_posix() for r in again.removed] == ["Costs/2023/01/old/costs.parquet"]
    assert len(_files(dest)) == 2 and not list(dest.rglob("*.tmp"))


def test_statistics_option(lake: str, tmp_path: Path) -> None:
    powerbi.publish(lake, str(tmp_path / "o"), statistics="int64")
    meta = pq.ParquetFile(_files(tmp_path / "o")[0]).metadata
    assert meta.row_group(0).column(meta.schema.to_arrow_schema().names.index("ChargePeriodStart")).statistics is not None
    bad = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", lake, "--out", str(tmp_path / "x"), "--statistics", "int96"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "statistics" in bad.stderr


def test_publish_to_blob_storage(lake: str) -> None:
    """The reports read an ADLS container (https://<account>.dfs.core.windows.net/ingestion): a real Azurite here."""
    with stores.azurite() as env:
        container = f"pbi{uuid.uuid4().hex[:10]}"
        fs = fsspec.filesystem("az", skip_instance_cache=True, **{"connection_string": env["AZURE_STORAGE_CONNECTION_STRING"]})
        fs.mkdir(container)
        dest = Store(f"az://{container}", connection_string=env["AZURE_STORAGE_CONNECTION_STRING"])
        result = powerbi.publish(lake, dest)
        assert len(result.folders) == 2
        names = sorted(p.split("/", 1)[1] for p in fs.glob(f"{container}/Costs/**/*.parquet"))
        assert len(names) == 2 and all(n.endswith("/costs.parquet") for n in names)
        assert not fs.glob(f"{container}/**/*.tmp")
