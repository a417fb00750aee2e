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
