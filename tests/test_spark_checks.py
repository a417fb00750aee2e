"""What `hub ingest --engine spark`, `hub ddl` and `spark_etl` check before any Spark work: credentials never shown,
an unreachable Spark Connect server reported at once, storage options the executors would not have refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.errors import UsageError
from hub.spark.session import check_reachable, public_remote
from hub.store import Store, redact
from pipelines import spark_etl


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("remote", ["sc://127.0.0.1:{port}/;token=SPARKTOKENSECRET;use_ssl=false",
                                    "sc://127.0.0.1:{port};token=SPARKTOKENSECRET"])
def test_a_spark_connect_token_is_never_shown_and_a_closed_server_fails_at_once(tmp_path: Path, remote: str) -> None:
    """Defect: the error printed the URL with its bearer token (`;token=...`), and a server that did not answer kept
    `hub ingest --engine spark` silent for about ten minutes (PySpark's retries). Now: exit 2, one line, no token."""
    Store(str(tmp_path)).init_layout()
    url = remote.format(port=closed_port())
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--engine", "spark", "--spark-remote", url])
    assert result.exit_code == 2, result.output
    assert "SPARKTOKENSECRET" not in result.output and "does not accept connections" in result.output
    assert len(result.output.strip().splitlines()) == 1 or "error:" in result.output.splitlines()[0]
    assert public_remote(url).endswith(url.split(";")[0].rstrip("/")[-5:]) and ";" not in public_remote(url)
    assert redact("Port could not be cast to integer value as '1;token=SPARKTOKENSECRET'").count("SPARKTOKENSECRET") == 0


def test_a_spark_connect_server_that_listens_passes_the_check() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"sc://127.0.0.1:{server.getsockname()[1]}/;token=x", timeout=5)
    check_reachable("local[2]")  # a local Connect server is started, not reached


def test_hub_ddl_never_writes_credentials_into_the_sql() -> None:
    """Defect: `hub ddl` wrote the root as typed into LOCATION (an S3 key and secret, a SAS token; and the dataset's
    path after the SAS query). The root is shown as messages show it; a --location with credentials is refused."""
    runner = CliRunner()
    out = runner.invoke(app, ["ddl", "s3://AKIAPLANTED:S3CRETPLANTED@bucket/hub"])
    assert out.exit_code == 0 and "S3CRETPLANTED" not in out.output and "AKIAPLANTED" not in out.output
    assert "LOCATION 's3://bucket/hub/ingestion/Costs'" in out.output
    sas = runner.invoke(app, ["ddl", "abfss://c@acct.dfs.core.windows.net/hub?sv=2022&sig=SASSECRET"])
    assert sas.exit_code == 0 and "SASSECRET" not in sas.output
    assert "LOCATION 'abfss://c@acct.dfs.core.windows.net/hub/ingestion/Costs'" in sas.output
    refused = runner.invoke(app, ["ddl", "/tmp/hub", "--location", "s3://K:SECRETLOC@bucket/hub"])
    assert refused.exit_code == 2 and "SECRETLOC" not in refused.output and "--location" in refused.output


def test_spark_etl_refuses_a_store_whose_credentials_the_executors_would_not_have(tmp_path: Path) -> None:
    """Defect: `spark_etl.ingest(spark, Store(url, key=...))` was accepted, the executors opened the root from its URL
    alone and every part failed (`PartFailed: NoCredentialsError`), like a storage outage. Now a usage error, before
    any Spark work, naming the options (never their values)."""
    store = Store(str(tmp_path), auto_mkdir=True)
    with pytest.raises(UsageError, match="auto_mkdir") as caught:
        spark_etl.ingest(None, store)
    assert "True" not in str(caught.value)


def test_hub_ddl_takes_a_location_that_ends_with_a_slash() -> None:
    """Review finding: `--location s3://bucket/hub/` was refused as holding credentials (the check compared it with
    the trailing slash taken off one side only)."""
    for location in ("s3://bucket/hub/", "abfss://c@acct.dfs.core.windows.net/hub/"):
        out = CliRunner().invoke(app, ["ddl", "/tmp/hub", "--location", location])
        assert out.exit_code == 0, out.output
        assert f"LOCATION '{location}ingestion/Costs'" in out.output


def test_a_crashed_workers_part_and_cause_are_read_off_sparks_job_error() -> None:
    """Review of stop 41: a worker killed on every attempt (out of memory) raises nothing of its own, so the job's
    error had no part marker: the delivery was quarantined naming part 0 with "An error occurred while calling
    o49.collectToPython". Spark's own text (as a local job prints it) names the task, one part a task, and the crash."""
    from hub.spark.runner import _cause, _failed

    text = ("An error occurred while calling o49.collectToPython.\n: org.apache.spark.SparkException: Job aborted due to "
            "stage failure: Task 2 in stage 3.0 failed 2 times, most recent failure: Lost task 2.1 in stage 3.0 (TID 9) "
            "(localhost executor driver): org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)\n"
            "\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator$$anonfun$1.applyOrElse(PythonRunner.scala:612)")
    assert _failed(RuntimeError(text), ["part 0", "part 1", "part 2", "part 3"]) == "part 2"
    assert _cause(RuntimeError(text)) == "Python worker exited unexpectedly (crashed)"
