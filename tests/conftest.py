"""Shared test helpers: hand-made exports written into a real (local) hub store."""

from __future__ import annotations

import gzip as gz
import json
from pathlib import Path

import pytest

from hub.export_schemas import _load
from hub.sample_data import keep_sample_months
from hub.settings import Settings
from hub.store import SETTINGS, Store

#: Fixture files copied into the repository (licences beside them): tests never read outside it.
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_VALUES = {"string": "s{i}", "decimal": "{i}.25", "timestamp": "2024-05-0{d}T00:00:00Z", "boolean": "true"}
#: Text columns whose values have a form of their own (EA's billing month is yyyyMMdd: other text is InvalidValue).
SAMPLE_BY_NAME = {"BillingMonth": "20240501"}
RESOURCE = "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.CostManagement/exports/e1"
SCOPE = "subscriptions/00000000-0000-0000-0000-000000000001"


@pytest.fixture(autouse=True)
def _no_cool_down_across_tests() -> None:
    """Each test starts as a new process would: no event target remembered as failed (hub.events.sinks cool-downs)."""
    from hub.events import sinks

    sinks.reset_cool_downs()


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    """An initialised local hub whose settings keep source exports (msexports.days = 7) and every lake month."""
    return make_hub(tmp_path / "hub")


def make_hub(root: Path) -> Path:
    """Initialise a local hub at ``root`` that keeps source exports (msexports.days = 7) and every lake month
    (ingestion.months = 0: the tests' exports are of 2024, which 13 months no longer keep, so they would be held
    back as ``OutsideRetention``)."""
    store = Store(str(root))
    store.init_layout()
    settings = Settings()
    settings.retention.msexports.days = 7
    settings.retention.ingestion.months = 0
    store.write_bytes(SETTINGS, settings.to_json().encode())
    return root


def schema_csv(key: str, rows: int, *, start: int = 0) -> str:
    """CSV text with a schema's header and ``rows`` rows of type-appropriate values."""
    schema = _load(key)
    assert schema is not None, key
    lines = [",".join(f'"{c.name}"' if " " in c.name else c.name for c in schema.columns)]
    for i in range(start, start + rows):
        cells = [SAMPLE_BY_NAME.get(c.name, SAMPLE_VALUES[c.type]).format(i=i, d=1 + i % 9) for c in schema.columns]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def write_export(root: Path, parts: dict[str, bytes | str], *, export_type: str = "FocusCost",
                 data_version: str | None = "1.0", run_id: str = "run1", start_date: str = "2024-05-01T00:00:00",
                 resource_id: str = RESOURCE, rows: int | None = None, folder: str | None = None,
                 byte_counts: bool = True, manifest_extra: dict | None = None) -> str:
    """Write parts + manifest.json (last) under msexports/<folder>/; returns the manifest's relative path. A root
    without settings gets ones keeping every lake month (the exports are of 2024: :func:`hub.sample_data.keep_sample_months`)."""
    keep_sample_months(str(root))
    folder = folder or f"e1/20240501-20240531/{run_id}"
    base = root / "msexports" / folder
    base.mkdir(parents=True, exist_ok=True)
    blobs = []
    for name, data in parts.items():
        payload = data.encode() if isinstance(data, str) else data
        if name.endswith(".gz") and isinstance(data, str):
            payload = gz.compress(payload)
        (base / name).write_bytes(payload)
        blob = {"blobName": f"{folder}/{name}"}
        if byte_counts:
            blob["byteCount"] = len(payload)
        blobs.append(blob)
    manifest = {
        "manifestVersion": "2024-04-01", "blobCount": len(blobs),
        "exportConfig": {"exportName": "e1", "type": export_type, "resourceId": resource_id},
        "runInfo": {"runId": run_id, "startDate": start_date},
        "blobs": blobs,
    }
    if data_version is not None:
        manifest["exportConfig"]["dataVersion"] = data_version
    if rows is not None:
        manifest["dataRowCount"] = rows
    manifest.update(manifest_extra or {})
    (base / "manifest.json").write_text(json.dumps(manifest))
    return f"msexports/{folder}/manifest.json"


def parquet_in(root: Path, dataset: str = "Costs") -> list[str]:
    """Every Parquet file a lake reader would see for a dataset, relative to the root."""
    return sorted(str(p.relative_to(root)) for p in (root / "ingestion" / dataset).rglob("*.parquet"))


def rows_csv(key: str, rows: list[dict]) -> str:
    """CSV text with a schema's header and the given cells (missing cells empty), quoted as needed."""
    schema = _load(key)
    assert schema is not None, key
    names = [c.name for c in schema.columns]
    unknown = {k for row in rows for k in row} - set(names)
    assert not unknown, unknown

    def cell(v: object) -> str:
        s = "" if v is None else str(v)
        return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n ') else s

    lines = [",".join(cell(n) for n in names)]
    lines += [",".join(cell(row.get(n)) for n in names) for row in rows]
    return "\n".join(lines) + "\n"


def lake_rows(root: Path, dataset: str = "Costs") -> list[dict]:
    """Every row of a dataset in the lake, as dicts (UTC, decimals as Decimal)."""
    import duckdb

    files = parquet_in(root, dataset)
    if not files:
        return []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    listing = ", ".join(f"'{root / f}'" for f in files)
    rel = con.sql(f"SELECT * FROM read_parquet([{listing}], union_by_name = true)")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def custom_file(path: Path, *, account: str = "x", cost: str = "7.5") -> Path:
    """A one-row custom-data Parquet file (a usage cost charged on 3 May 2024) at ``path``, its folder made."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect().execute(f"""COPY (SELECT 'Custom' AS ProviderName, '{account}' AS BillingAccountId, 'USD' AS BillingCurrency,
        TIMESTAMP '2024-05-01' AS BillingPeriodStart, TIMESTAMP '2024-06-01' AS BillingPeriodEnd,
        TIMESTAMP '2024-05-03' AS ChargePeriodStart, TIMESTAMP '2024-05-04' AS ChargePeriodEnd, 'Usage' AS ChargeCategory,
        {cost} AS BilledCost, {cost} AS EffectiveCost) TO '{path}' (FORMAT parquet)""")
    return path
