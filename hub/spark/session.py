"""A Spark session for the hub: a classic master or a Spark Connect server, in UTC."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import warnings
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hub.errors import UsageError
from hub.store import redact, store_timeout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Without a master or remote: every core of this machine, each task tried up to 4 times (in local mode Spark
#: retries a task only when the master says so: ``local[N,F]``).
DEFAULT_MASTER = "local[*,4]"
#: Spark Connect's port when the URL names none.
CONNECT_PORT = 15002


def public_remote(remote: str) -> str:
    """A Spark Connect URL as messages show it: without its ``;`` parameters (``token=`` is a bearer token)."""
    return remote.split(";", 1)[0].rstrip("/") if remote.startswith("sc://") else remote


def check_reachable(remote: str, timeout: float | None = None) -> None:
    """A Spark Connect server (``sc://host:port``) that does not accept a connection within ``timeout`` seconds
    (``HUB_STORE_TIMEOUT``) is one usage error now, not minutes of PySpark's silent retries."""
    if not remote.startswith("sc://"):
        return
    shown = public_remote(remote)
    try:
        parts = urlsplit(shown)
        host, port = parts.hostname, parts.port or CONNECT_PORT
    except ValueError as exc:
        raise UsageError(f"cannot start Spark ({shown}): {exc}") from None
    if not host:
        raise UsageError(f"cannot start Spark ({shown}): no host in the Spark Connect URL")
    try:
        socket.create_connection((host, port), timeout=timeout if timeout is not None else store_timeout()).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot start Spark ({shown}): {host}:{port} does not accept connections ({reason})") from None


def session(master: str | None = None, remote: str | None = None, *, conf: dict[str, str] | None = None) -> SparkSession:
    """Start (or join) a session: ``remote`` a Spark Connect URL (``sc://host:15002``, or ``local[2]`` for a local
    Connect server), else ``master``. Python workers run this interpreter unless ``PYSPARK_PYTHON`` says otherwise."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("--engine spark needs PySpark: pip install 'finops-hub[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if remote:
        check_reachable(remote)
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
        shown = public_remote(remote) if remote else master or DEFAULT_MASTER
        raise UsageError(redact(f"cannot start Spark ({shown}): {first[:300]}{hint}")) from None
