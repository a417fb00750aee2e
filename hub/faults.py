"""Fault points for crash-safety tests: ``HUB_CRASH_AT=<point>`` kills the process there (like kill -9);
``HUB_STOP_AT=<point>`` stops it there (SIGSTOP, every thread frozen, like a paused VM) until it gets SIGCONT.

Points: ``after-part-<n>`` (an export part, a custom-data file), ``before-swap``, ``after-pairing``, ``mid-swap``,
``before-commit``, ``after-commit`` (before the work a commit owes: re-normalization, allocation), ``pull-before-data``,
``pull-before-manifest``. Unset in normal use.
"""

from __future__ import annotations

import os
import signal


def checkpoint(point: str) -> None:
    if os.environ.get("HUB_CRASH_AT") == point:
        os._exit(137)
    if os.environ.get("HUB_STOP_AT") == point:
        os.kill(os.getpid(), signal.SIGSTOP)
