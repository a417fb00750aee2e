"""The read side found wrong by review: Power BI publishing from a mistyped root, a tag key written twice, bidi and
control characters in the report, the allocation API's answer to a broken rules file, and `hub serve`'s startup
errors. Each case failed before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from hub import powerbi, report
from hub.demo import run_demo
from hub.errors import UsageError
from hub.svg_charts import esc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readers") / "hub"
    run_demo(str(root), rows=400)
    return root


def test_powerbi_never_empties_its_output_from_a_mistyped_root_or_an_empty_lake(demo: Path, tmp_path: Path) -> None:
    """A wrong root published 0 folders and removed every file the reports read (exit 0)."""
    out = tmp_path / "pbi"
    published = powerbi.publish(str(demo), str(out))
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    assert published.folders and files
    with pytest.raises(UsageError, match="is not a hub root"):
        powerbi.publish(str(tmp_path / "dem0"), str(out))
    empty = tmp_path / "empty"
    (empty / "ingestion").mkdir(parents=True)
    with pytest.raises(UsageError, match="has no Costs while"):
        powerbi.publish(str(empty), str(out))
    assert sorted(p.relative_to(out) for p in out.rglob("*.parquet")) == files


def test_a_tag_key_written_twice_counts_once_in_the_reports_top_tags(demo: Path, tmp_path: Path) -> None:
    """{"env":"prod","env":"dev"} counted its row under both values: env's values added up to more than the lake."""
    root = tmp_path / "hub"
    run_demo(str(root), rows=200)
    (first, *_) = sorted((root / "ingestion/Costs").rglob("*.parquet"))
    folder = root / "ingestion/Costs/2024/05/subscriptions/dup"
    folder.mkdir(parents=True)
    duckdb.sql(f"""COPY (SELECT * REPLACE ('{{"env":"prod","env":"dev"}}' AS Tags) FROM read_parquet('{first}') LIMIT 10)
        TO '{folder / "x__part.parquet"}' (FORMAT parquet)""")
    data = report.build_report(str(root))
    dup_cost = duckdb.sql(f"SELECT sum(EffectiveCost) FROM read_parquet('{folder}/*.parquet')").fetchall()[0][0]
    env = {t.value: (Decimal(t.effective), t.rows) for t in data.top_tags if t.key == "env"}
    lake_env = duckdb.sql(f"""SELECT json_extract_string(Tags, '$.env') AS v, sum(EffectiveCost), count(*) FROM
        read_parquet('{root}/ingestion/Costs/**/*.parquet') WHERE json_extract_string(Tags, '$.env') IS NOT NULL
        GROUP BY 1""").fetchall()
    assert env == {v: (Decimal(str(c)).quantize(Decimal(1).scaleb(-18)), n) for v, c, n in lake_env if v in env}
    assert dup_cost > 0 and sum(n for _, n in env.values()) == sum(n for *_, n in lake_env)  # each row once


def test_the_report_escapes_bidi_and_control_characters() -> None:
    """U+202E in a service name reversed the numbers printed after it; NUL, ESC and BEL reached the page."""
    assert esc("Svc\u202e <b>\x1b\x00\x07") == "Svc\\u202e &lt;b&gt;\\x1b\\x00\\x07"
    assert esc("計算 café") == "計算 café"


def test_a_broken_allocation_rules_file_is_the_servers_503_without_its_path(demo: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from hub.server import create_app

    (demo / "config/allocation.json").write_text("{not json")
    try:
        with TestClient(create_app(str(demo))) as client:
            answer = client.get("/v1/accounts/a/settings/costcenters")
    finally:
        (demo / "config/allocation.json").unlink()
    body = answer.json()
    assert (answer.status_code, body["error_code"]) == (503, "CBC.0503")
    assert body["error_msg"].startswith("config/allocation.json: ") and str(demo) not in body["error_msg"]


@pytest.mark.parametrize(("env", "args", "says"), [
    ({}, ["--port", "99999"], "less than or equal to 65535"),
    ({"HUB_API_THREADS": "-1"}, [], "HUB_API_THREADS='-1': must be a number from 1 to 1024"),
    ({"HUB_API_THREADS": "100000000000"}, [], "HUB_API_THREADS='100000000000': must be a number from 1 to 1024"),
    ({"HUB_API_TIMEOUT": "abc"}, [], "HUB_API_TIMEOUT='abc'"),
    ({"HUB_API_TIMEOUT": "inf"}, [], "HUB_API_TIMEOUT='inf': must be a number from 0.1 to 86400"),  # review: no limit
    ({"HUB_API_MEMORY_LIMIT": "lots"}, [], "HUB_API_MEMORY_LIMIT='lots': not a memory size"),
    ({"HUB_API_TOKEN": "tok\n"}, [], "HUB_API_TOKEN must be printable ASCII"),
    ({"HUB_API_TOKEN": "tökén"}, [], "HUB_API_TOKEN must be printable ASCII"),
    ({}, ["ROOT-MISSING"], "does not exist"),
    ({}, ["ROOT-CORRUPT"], "cannot open the lake: "),
])
def test_serve_startup_problems_are_one_line_and_exit_2(demo: Path, tmp_path: Path, env: dict, args: list, says: str) -> None:
    """They were uvicorn / Python tracebacks (exit 1 or 3), or a server that never answered a request."""
    root = str(demo)
    if "ROOT-MISSING" in args:
        root, args = str(tmp_path / "no-such-root"), []
    if "ROOT-CORRUPT" in args:
        import shutil

        shutil.copytree(demo, tmp_path / "corrupt")
        (tmp_path / "corrupt/ingestion/Costs/2024/05/zz.parquet").write_bytes(b"garbage")
        root, args = str(tmp_path / "corrupt"), []
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "serve", root, "--port", "1", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={**os.environ, **env, "COLUMNS": "200"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and says in proc.stderr, proc.stderr
    assert json.dumps(proc.stderr)  # printable


@pytest.mark.parametrize("args, says", [
    # values are compared as text: 5 never equalled 5.000000000000000000 (an empty answer, exit 0)
    (["--filter", "BilledCost=5"], "filter on 'BilledCost': a decimal column"),
    (["--filter", "ChargePeriodStart=2024-05-01"], "filter on 'ChargePeriodStart': a timestamp"),
    # the tag key's check let a final newline in ("$" matches before it)
    (["--group-by", "tag:env\n"], "tag"),
])
def test_cost_queries_refuse_filters_they_could_never_match(demo: Path, args: list, says: str) -> None:
    from typer.testing import CliRunner

    from hub.cli import app

    out = CliRunner().invoke(app, ["costs", str(demo), "--begin", "2024-05", *args])
    assert out.exit_code == 2 and says in " ".join(out.output.split()), out.output


def test_a_filter_value_with_a_comma_is_written_with_a_backslash() -> None:
    r"""Review of stop 32: `--exclude 'ServiceName=Licenses, Windows'` was split into "Licenses" and " Windows" and left
    that cost in. A comma inside a value is `\,`, a backslash `\\`."""
    from hub.cli import _filters

    (got,) = _filters([r"ServiceName=Licenses\, Windows,Other,a\\b"], 1)
    assert got == {"operator": 1, "filter_factor": {"key": "ServiceName", "value": ["Licenses, Windows", "Other", "a\\b"]}}


def test_a_rules_file_that_is_not_utf8_is_named_and_never_stops_other_readers(demo: Path, tmp_path: Path) -> None:
    """Review of stop 40: an allocation rules file saved as UTF-16 (Notepad's "Unicode") stopped every reader with a
    UnicodeDecodeError (exit 1, no file named): `hub query` of Costs, `hub costs`, `hub report`. Readers that do not
    read the allocation answer; the allocation itself is a usage error naming the file."""
    import shutil

    from hub import catalog
    from hub.allocation import rules as allocation_rules
    from hub.store import Store

    root = tmp_path / "hub"
    shutil.copytree(demo, root)
    (root / "config" / "allocation.json").write_bytes("{}".encode("utf-16"))
    con = catalog.connect(str(root))
    try:
        assert con.execute("SELECT count(*) FROM Costs").fetchone()[0] > 0
    finally:
        con.close()
    with pytest.raises(UsageError, match=r"allocation\.json: not UTF-8 text"):
        allocation_rules.load(Store(str(root)))
    data = report.build_report(str(root))
    assert data.rows > 0 and data.by_provider and "<html" in report.render_html(data).lower()


def test_mistyped_roots_and_unreadable_lakes_are_usage_errors_of_every_reader(demo: Path, tmp_path: Path) -> None:
    """Review of stop 40: `hub catalog` of a root that does not exist wrote a database of empty views and `hub report` of
    a folder that is no hub an empty report (exit 0) where `hub query` / `hub costs` refuse them (exit 2); `hub query`
    over a lake file DuckDB cannot read exited 1 with a traceback. One line, exit 2, for each."""
    import shutil

    (tmp_path / "notahub").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(demo, broken)
    (next(broken.glob("ingestion/Costs/**/*.parquet"))).write_bytes(b"not parquet")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cases = [(["catalog", str(tmp_path / "no-such-hub"), "--write", str(tmp_path / "x.duckdb")], "does not exist"),
             (["report", str(tmp_path / "notahub"), "--out", str(tmp_path / "r.html")], "is not a hub root"),
             (["query", str(broken), "SELECT count(*) FROM Costs"], "cannot open the lake"),
             (["powerbi", str(broken), "--out", str(tmp_path / "pbi")], "cannot open the lake")]
    for args, says in cases:
        proc = subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=env, cwd=REPO)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "r.html").exists()
