"""The CLI is a thin layer: init, ingest, status with their exit codes (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import schema_csv, write_export
from typer.testing import CliRunner

from hub.cli import app
from hub.settings import Settings

runner = CliRunner()


def test_init_creates_layout_and_default_settings(tmp_path: Path) -> None:
    root = tmp_path / "h"
    result = runner.invoke(app, ["init", str(root)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in root.iterdir()} == {"msexports", "ingestion", "config"}
    assert json.loads((root / "config/settings.json").read_text())["retention"]["ingestion"]["months"] == 13
    (root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 3}}}')
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    assert "days\": 3" in (root / "config/settings.json").read_text()  # never rewritten


def test_top_level_settings_json_is_the_default() -> None:
    text = (Path(__file__).resolve().parents[1] / "settings.json").read_text()
    assert text == Settings().to_json()


def test_ingest_exit_codes_and_status(hub_root: Path) -> None:
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 3)}, rows=3)
    result = runner.invoke(app, ["ingest", str(hub_root)])
    assert result.exit_code == 0, result.output
    assert "committed" in result.output and "Costs" in result.output
    assert runner.invoke(app, ["ingest", str(hub_root)]).output.strip() == "nothing to ingest"

    write_export(hub_root, {"part_0_0001.csv": "a,b\n1,2\n"}, rows=1, run_id="run2", data_version="7.0")
    result = runner.invoke(app, ["ingest", str(hub_root)])
    assert result.exit_code == 1
    assert "SchemaNotFound" in result.output and "part_0_0001.csv" in result.output

    status = runner.invoke(app, ["status", str(hub_root), "--json"])
    assert status.exit_code == 0
    records = json.loads(status.output)
    assert [r["state"] for r in records] == ["committed", "quarantined"]
    assert records[1]["error"]["code"] == "SchemaNotFound"
    table = runner.invoke(app, ["status", str(hub_root)])
    assert "quarantined" in table.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["ingest"]).exit_code == 2
    assert runner.invoke(app, ["ingest", str(tmp_path), "--bogus"]).exit_code == 2
    root = tmp_path / "h"
    runner.invoke(app, ["init", str(root)])
    (root / "config/settings.json").write_text('{"retention": {"msexports": {"days": -1}}}')
    result = runner.invoke(app, ["ingest", str(root)])
    assert result.exit_code == 2
    assert "settings.json" in result.output and "retention.msexports.days" in result.output


def test_demo_builds_a_valid_lake(tmp_path: Path) -> None:
    from hub.validate import validate

    root = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(root), "--rows", "3000"])
    assert result.exit_code == 0, result.output
    assert "demo-costs" in result.output and "demo-prices" in result.output and "top 5 services" in result.output
    report = validate(str(root))
    assert report.rows == 3000 and report.ok, report.summary()
    assert runner.invoke(app, ["demo", str(root), "--rows", "3000"]).exit_code == 0  # running it again is harmless
    assert validate(str(root)).rows == 3000
