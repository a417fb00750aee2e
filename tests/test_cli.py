"""The CLI is a thin layer: init, ingest, status with their exit codes (typer's CliRunner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
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
    (root / "config/settings.json").write_text('{"retention": {"msexports": {"days": 3}, "ingestion": {"months": 0}}}')
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
    assert "aws" in result.output and "oci" in result.output and "Oracle" in result.output  # a multi-cloud hub
    report = validate(str(root))
    # 3,000 Azure rows, an AWS CUR of 1,500 usage rows and a tax row for each of its 4 accounts, 600 OCI rows
    assert report.rows == 3000 + 1500 + 4 + 600 and report.ok, report.summary()
    assert runner.invoke(app, ["demo", str(root), "--rows", "3000"]).exit_code == 0  # running it again is harmless
    assert validate(str(root)).rows == 5104
    # defect: the printed "Query it yourself" command was wrapped at the terminal's width (a newline inside its string)
    line = result.output.split("Query it yourself:\n", 1)[1].splitlines()[0].strip()
    ran = subprocess.run(line, shell=True, capture_output=True, text=True)
    assert ran.returncode == 0 and "ServiceName" in ran.stdout, ran.stderr
    # defect: the demo's 2024 month was deleted from the lake by the first retention pass (13 months by default)
    assert runner.invoke(app, ["retention", str(root)]).exit_code == 0 and validate(str(root)).rows == 5104


def test_control_characters_are_escaped_in_tables_and_logs(hub_root: Path) -> None:
    """Defect C18: ANSI/OSC escapes in exportName reached the terminal; a newline forged a hub watch log line."""
    from hub.runs import RunRecord
    from pipelines.watch import run_line, text_log

    name = "evil\x1b[31mRED\x1b]0;owned\x07 [bold]markup[/bold]\n2026-01-01T00:00:00Z run export=forged outcome=committed"
    write_export(hub_root, {"part_0_0001.csv": schema_csv("focuscost_1.0", 2)}, rows=2,
                 manifest_extra={"exportConfig": {"exportName": name, "type": "FocusCost", "dataVersion": "1.0",
                                                  "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000001"}})
    result = runner.invoke(app, ["ingest", str(hub_root)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for text in (result.output, runner.invoke(app, ["status", str(hub_root)], env={"COLUMNS": "400"}).output):
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b[31mRED" in text and "[bold]markup[/bold]" in text  # shown escaped, never interpreted
    line = text_log(run_line(RunRecord(key="k", manifest="m", manifestSha256="s", exportName=name, state="committed")))
    assert "\n" not in line and "\x1b" not in line
    head, quoted, tail = line.split('"', 1)[0], line.split('"', 1)[1].rsplit('"', 1)[0], line.rsplit('"', 1)[1]
    assert head.endswith(" run export=") and tail == " rows=0 outcome=committed"  # one event, the name is one quoted value
    assert quoted.startswith("evil\\\\x1b[31mRED")


def test_unreachable_s3_store_is_one_line_exit_2(tmp_path: Path) -> None:
    """Defect C23: s3:// commands printed a 35 KB traceback with exit code 1."""
    import os
    import subprocess
    import sys

    from stores import free_port

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAFAKEFORTESTS0001", "AWS_SECRET_ACCESS_KEY": "fake-secret-must-not-print",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_DEFAULT_REGION": "us-east-1"}
    for command in (["status"], ["ingest"], ["retention"], ["query", "--", "SELECT 1"]):
        argv = [command[0], "s3://bucket/hub", *command[1:]]
        proc = subprocess.run([sys.executable, "-m", "hub.cli", *argv], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "cannot reach s3://bucket/hub" in proc.stderr and "fake-secret" not in proc.stderr + proc.stdout


def test_unreachable_azure_store_answers_within_the_timeout(tmp_path: Path) -> None:
    """Defect C23: az:// commands hung silently; then an endpoint refusing connections waited the whole probe time
    (azure-core retries a refusal) and said "no answer" instead of the refusal."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from stores import AZURITE_KEY, free_port

    port = free_port()
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": conn, "HUB_STORE_TIMEOUT": "30"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "status", "az://finops/hub"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - started < 60
    assert proc.stderr.strip() == f"error: cannot reach az://finops/hub: 127.0.0.1:{port} refused the connection"
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the connection, never answers
        port = silent.getsockname()[1]
        conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": conn, "HUB_STORE_TIMEOUT": "3"}
        proc = subprocess.run([sys.executable, "-m", "hub.cli", "status", "az://finops/hub"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert (proc.returncode, proc.stderr.strip()) == (2, "error: cannot reach az://finops/hub: no answer in 3 s")


def test_validate_prints_a_clean_lakes_path_as_text(tmp_path: Path) -> None:
    """A clean lake's one-line answer names its path as written: ``[/dir]`` in it is not markup (it crashed
    ``hub validate`` with exit 1, which means "violations") and ``[bold]`` is not swallowed."""
    from conftest import make_hub

    from hub.sample_data import write_export as demo_export

    root = make_hub(tmp_path / "v[/dir]x" / "r[bold]x")
    demo_export(str(root), rows=20, month="2024-05")
    assert CliRunner().invoke(app, ["ingest", str(root)]).exit_code == 0
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "v[/dir]x" in result.output and "r[bold]x" in result.output and "no violations" in result.output


def test_bad_environment_values_are_usage_errors(tmp_path: Path) -> None:
    """Review: ``HUB_MEMORY_LIMIT=lots`` quarantined every delivery (``InternalError``; each needed ``--retry`` after the
    fix) and ``HUB_STORE_TIMEOUT=20s`` crashed every command with a traceback at import. Both are one line, exit 2."""
    import os
    import sys

    from conftest import make_hub

    from hub import runs
    from hub.sample_data import write_export as demo_export
    from hub.store import Store

    root = make_hub(tmp_path / "hub")
    demo_export(str(root), rows=20, month="2024-05")

    def hub(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[1])

    ran = hub("ingest", str(root), HUB_MEMORY_LIMIT="lots")
    assert ran.returncode == 2 and "HUB_MEMORY_LIMIT='lots': not a memory size" in ran.stderr, ran.stderr
    assert runs.load_all(Store(str(root))) == []  # nothing quarantined: the delivery waits for the fixed setting
    assert hub("status", str(root), HUB_STORE_TIMEOUT="20s").returncode == 0  # a local root never waits for a store
    remote = hub("status", "s3://bucket/hub", HUB_STORE_TIMEOUT="20s")
    assert remote.returncode == 2 and "HUB_STORE_TIMEOUT must be a number of seconds" in remote.stderr
    assert "Traceback" not in remote.stderr + ran.stderr
    assert hub("ingest", str(root)).returncode == 0


def test_decimal_settings_refuse_booleans_and_text() -> None:
    """Review: ``"time_budget_seconds": true`` was read as 1 s and an inspection's ``"major": true`` as 1 %; the README
    says numbers are strict. Whole numbers are still numbers; a currency is upper-cased."""
    import pytest

    from hub.errors import UsageError
    from hub.inspection.rules import parse
    from hub.settings import parse_settings

    for bad in ('{"pull": {"tencent": {"time_budget_seconds": true}}}', '{"pull": {"tencent": {"backoff_seconds": "2"}}}'):
        with pytest.raises(UsageError):
            parse_settings(bad)
    ok = parse_settings('{"pull": {"tencent": {"time_budget_seconds": 600, "currency": "cny"}}}')
    assert ok.pull.tencent.time_budget_seconds == 600.0 and ok.pull.tencent.currency == "CNY"
    with pytest.raises(UsageError):
        parse('{"severity": {"major": true}}')
    assert parse('{"severity": {"major": 25, "critical": 60.5}}').severity.major == 25.0


def test_credentials_in_the_root_url_are_never_shown(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Review: a key and secret (``s3://KEY:SECRET@bucket``) or a SAS token (``?sig=``) written into the hub root were
    printed in error lines, the watcher's log and the report header. Messages show the root without them."""
    import os
    import sys
    import threading

    from hub.store import Store, public_root, redact
    from pipelines.watch import watch

    assert public_root("s3://AKIAPLANTED:S3CRETPLANTED@bucket/p") == "s3://bucket/p"
    assert public_root("az://finops/hub?sv=2022-11-02&sig=SASSECRETPLANTED") == "az://finops/hub"
    assert public_root("abfs://container@account.dfs.core.windows.net/hub") == "abfs://container@account.dfs.core.windows.net/hub"
    assert public_root(str(tmp_path)) == str(tmp_path)
    assert redact("cannot reach s3://AKIAPLANTED:S3CRETPLANTED@bucket/p") == "cannot reach s3://***@bucket/p"
    closed = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=S2V5S2V5S2V5S2V5;"
              "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")
    env = {**os.environ, "HUB_STORE_TIMEOUT": "2", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
           "AZURE_STORAGE_CONNECTION_STRING": closed}
    for root in ("s3://AKIAPLANTED:S3CRETPLANTED@bucket/prefix", "az://finops/hub?sv=2022-11-02&sig=SASSECRETPLANTED"):
        ran = subprocess.run([sys.executable, "-m", "hub.cli", "status", root], capture_output=True, text=True, timeout=120,
                             env=env, cwd=Path(__file__).resolve().parents[1])
        assert ran.returncode == 2 and "error:" in ran.stderr
        assert not any(s in ran.stdout + ran.stderr for s in ("S3CRETPLANTED", "AKIAPLANTED", "SASSECRETPLANTED")), ran.stderr
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", closed)
    lines: list[dict] = []
    # an instance of its own: fsspec would hand this closed-port client to later tests of the same container name
    store = Store("az://finops/hub?sv=2022-11-02&sig=SASSECRETPLANTED", skip_instance_cache=True)
    watch(store, stop=threading.Event(), log=lines.append, cycles=1, interval=0.1)
    assert lines[0]["event"] == "start" and lines[0]["root"] == "az://finops/hub"
    assert "SASSECRETPLANTED" not in str(lines) and any(line["event"] == "error" for line in lines)


def test_small_usage_errors_are_named_never_internal(tmp_path: Path) -> None:
    """Review of stop 35: ``hub validate`` of a mistyped path answered ``InternalError`` (a DuckDB IO error);
    ``hub query --format csv`` ended lines with
    ``\\r\\n``, so an id piped into the next command carried a ``\\r``."""
    missing = tmp_path / "nonexist.csv"
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2 and "no such file or folder" in result.output and "InternalError" not in result.output
    root = tmp_path / "hub"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    result = runner.invoke(app, ["query", str(root), "SELECT 'a' AS x UNION ALL SELECT 'b'", "--format", "csv"])
    assert result.exit_code == 0 and result.stdout == "x\na\nb\n"
    # a hub root before its first commit was walked whole: a quarantined delivery's staged Parquet was validated (exit 1,
    # violations of rows that never reached the lake; review of stop 37)
    staged = root / "config/staging/run-1/part.parquet"
    staged.parent.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 'x' AS BilledCost) TO '{staged}' (FORMAT parquet)")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 2 and "no Costs in the lake yet" in result.output


def test_status_names_each_other_cloud_delivery_and_its_file(tmp_path: Path) -> None:
    """Review of stop 35: two bad deliveries of another cloud were two identical rows of ``hub status`` (export: the
    provider's name, no month or scope, the error without its file): each is named by its folder, its error by its
    file."""
    from conftest import make_hub

    root = make_hub(tmp_path / "hub")
    for folder in ("a", "b"):
        base = root / "exports" / "huawei" / folder
        base.mkdir(parents=True)
        (base / f"bill-{folder}.csv").write_text("nothing,we,know\n1,2,3\n")
        (base / "manifest.json").write_bytes(b"")
    assert runner.invoke(app, ["ingest", str(root)]).exit_code == 1
    result = subprocess.run([sys.executable, "-m", "hub.cli", "status", str(root)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "400"}, timeout=120)
    lines = [line for line in result.stdout.splitlines() if "quarantined" in line]
    assert len(lines) == 2, result.stdout
    for folder, line in zip(("a", "b"), lines, strict=True):
        assert f"exports/huawei/{folder}" in line and f"exports/huawei/{folder}/bill-{folder}.csv" in line, line


def test_a_quoted_log_value_keeps_its_letters() -> None:
    """Review of stop 35: a log value with a space was written with every non-ASCII letter as ``\\uXXXX`` (a Chinese
    file name unreadable, the hub's own ``…`` as ``\\u2026``); the same value without a space as it is."""
    from hub.terminal import log_value

    assert log_value("exports/tencent/账单 5月/a.zip") == '"exports/tencent/账单 5月/a.zip"'
    assert log_value("账单") == "账单" and log_value("truncated … x") == '"truncated … x"'
    assert log_value("evil\x1b name") == '"evil\\\\x1b name"' and log_value("a\nb") == "a\\nb"  # escaped, never raw


def test_amounts_print_to_the_cent_as_the_report_does() -> None:
    """Review of stop 35: ``hub inspect`` rounded half to even (300.045 as 300.04) where ``hub report`` rounds half up
    (300.05), and ``hub allocate --preview`` printed a change of ``-0.00``."""
    from decimal import Decimal

    from hub.cli import _amount

    assert _amount(Decimal("300.045")) == "300.05" and _amount(Decimal("-300.045")) == "-300.05"
    assert _amount(Decimal("1234.5")) == "1,234.50" and _amount(Decimal("-0.001"), signed=True) == "0.00"
    assert _amount(Decimal("0.125"), signed=True) == "+0.13" and _amount(Decimal("-2"), signed=True) == "-2.00"
