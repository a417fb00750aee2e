"""Crash points for crash-safety tests: ``HUB_CRASH_AT=<point>`` kills the process there (like kill -9).

Points: ``after-part-<n>``, ``before-swap``, ``mid-swap``, ``before-commit``. Unset in normal use.
"""

from __future__ import annotations

import os


def checkpoint(point: str) -> None:
    if os.environ.get("HUB_CRASH_AT") == point:
        os._exit(137)
