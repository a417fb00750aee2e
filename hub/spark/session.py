"""A Spark session for the hub: a classic master or a Spark Connect server, in UTC."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from typing import TYPE_CHECKING

from hub.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Without a master or remote: every core of this machine, each task tried up to 4 times (in local mode Spark
#: retries a task only when the master says so: ``local[N,F]``).
DEFAULT_MASTER = "local[*,4]"


def session(master: str | None = None, remote: str | None = None, *, conf: dict[str, str] | None = None) -> SparkSession:
    """Start (or join) a session: ``remote`` a Spark Connect URL (``sc://host:15002``, or ``local[2]`` for a local
    Connect server), else ``master``. Python workers run this interpreter unless ``PYSPARK_PYTHON`` says otherwise."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("--engine spark needs PySpark: pip install 'finops-hub[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local = (remote or master or DEFAULT_MASTER).startswith("local")
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false"}
    if local:  # a Spark of this machine listens on loopback only (a local Connect server also wants its token)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings["spark.connect.grpc.binding.address"] = "127.0.0.1"
    builder = SparkSession.builder.appName("finops-hub")
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        if remote:
            with warnings.catch_warnings():  # settings a running Connect server already has are not set again
                warnings.filterwarnings("ignore", message="Failed to set", category=UserWarning)
                return builder.remote(remote).getOrCreate()
        return builder.master(master or DEFAULT_MASTER).config("spark.ui.enabled", "false").getOrCreate()
    except Exception as exc:  # noqa: BLE001 - no Java, a bad master, an unreachable Connect server: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        java = os.environ.get("JAVA_HOME") or shutil.which("java")  # Spark's gateway error names JAVA whatever failed
        missing = not java and "JAVA" in str(exc).upper()
        hint = "; Spark needs a Java 17+ runtime (JAVA_HOME or java on the PATH)" if missing else ""
        raise UsageError(f"cannot start Spark ({remote or master or DEFAULT_MASTER}): {first[:300]}{hint}") from None
