"""What a command says about a lease: while it waits for one another process holds, and when it lost its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hub import lease
from hub.store import Store


def test_a_wait_for_a_held_lease_is_said_once_with_its_holder(tmp_path):
    store = Store(str(tmp_path))
    held = lease.try_acquire(store, "ingest", ttl=60, owner="vm:123:abc")
    told: list[str] = []
    with lease.holding(store, "ingest", wait=0.6, waiting=told.append) as mine:
        assert mine is None  # still held after 0.6 s
    assert len(told) == 1 and "vm:123:abc holds it (it expires in" in told[0] and "giving up after 0.6 s" in told[0]
    held.release()
    with lease.holding(store, "ingest", wait=0.6, waiting=told.append) as mine:
        assert mine is not None and len(told) == 1  # free: nothing said


def test_retention_says_it_waits_for_a_held_lease(tmp_path):
    """Review of stop 40: `hub retention` waited 60 s for another process's lease without a word (`hub ingest` says so)."""
    from hub.settings import Settings
    from pipelines.retention import apply

    store = Store(str(tmp_path))
    store.init_layout()
    held = lease.try_acquire(store, "ingest", ttl=60, owner="vm:123:abc")
    told: list[str] = []
    try:
        result = apply(store, Settings(), wait=0.6, waiting=told.append)
    finally:
        held.release()
    assert result.busy and len(told) == 1 and "vm:123:abc holds it" in told[0]


def test_a_lost_lease_is_one_line_not_a_traceback(tmp_path: Path):
    """`hub allocate` / `hub inspect` stalled past the TTL and taken over printed LeaseLost's traceback."""
    code = ("import sys; from hub import cli, lease\n"
            "def boom(*a, **k): raise lease.LeaseLost('the ingest lease of X was taken over by another process')\n"
            "cli.app = boom\n"
            "cli.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: the ingest lease of X was taken over by another process; this process stopped "
                                   "without writing more (the other process carries on)")


def _hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=Path(__file__).resolve().parents[1])


def test_a_lease_ttl_that_is_no_number_of_seconds_is_a_usage_error(tmp_path):
    """Review: ``HUB_LEASE_TTL=abc`` crashed every command (even ``hub status``) with a traceback at import; ``0``,
    ``-1`` or ``nan`` made a lease expired as it was written (two ingests took it from each other); ``inf`` crashed
    the renewal thread and never lapsed. ``hub status`` works; commands taking the lease exit 2 naming the variable."""
    import pytest

    from hub.errors import UsageError

    Store(str(tmp_path)).init_layout()
    for bad in ("abc", "0", "-1", "nan", "inf", "1e9"):
        assert _hub("status", str(tmp_path), env={"HUB_LEASE_TTL": bad}).returncode == 0
        ran = _hub("ingest", str(tmp_path), env={"HUB_LEASE_TTL": bad})
        assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran.stderr
        assert f"HUB_LEASE_TTL must be a number of seconds from 1 to 86400, not '{bad}'" in ran.stderr
    watched = _hub("watch", str(tmp_path), env={"HUB_LEASE_TTL": "abc"})  # at start, not a pass retried without end
    assert watched.returncode == 2 and "HUB_LEASE_TTL must be" in watched.stderr
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(UsageError):
            lease.try_acquire(Store(str(tmp_path)), "ingest", ttl=bad)


def test_watch_options_out_of_range_are_usage_errors(tmp_path):
    """Review: ``--interval 0`` (or ``-1``, ``nan``) never paused (a full CPU, ~90 lease generations a second);
    ``--settle nan`` turned the stability rule off and a negative ``--blob-timeout`` the wait for blobs."""
    Store(str(tmp_path)).init_layout()
    for option, value in (("--interval", "0"), ("--interval", "nan"), ("--interval", "-1"), ("--settle", "nan"),
                          ("--settle", "-5"), ("--blob-timeout", "-1"), ("--blob-timeout", "inf")):
        ran = _hub("watch", str(tmp_path), option, value)
        assert ran.returncode == 2 and "error:" in ran.stderr and "Traceback" not in ran.stderr, (option, value, ran.stderr)


def test_watch_checks_the_conversion_settings_at_start(tmp_path):
    """Review: ``hub watch`` with ``HUB_MEMORY_LIMIT=lots`` (or a bad ``HUB_PARQUET_COMPRESSION``) logged a failed pass
    with back-off for ever, ingesting nothing, while ``hub ingest`` exits 2."""
    Store(str(tmp_path)).init_layout()
    for env in ({"HUB_MEMORY_LIMIT": "lots"}, {"HUB_PARQUET_COMPRESSION": "zip"}):
        ran = _hub("watch", str(tmp_path), env=env)
        assert ran.returncode == 2 and "error:" in ran.stderr and "Traceback" not in ran.stderr, (env, ran.stderr)
