"""One API call with retries: throttling, 5xx and network errors are retried with exponential backoff and jitter,
within the pull's time budget; anything else fails at once. Failures become coded :class:`hub.errors.HubError`."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from hub.errors import HubError
from hub.store import redact

_COUNT = re.compile(r"[0-9]{1,12}")


def is_count(value: object) -> bool:
    """An API's record count: ASCII digits only (``str.isdigit`` takes ``²``, which ``int`` refuses, and ``３``)."""
    return _COUNT.fullmatch(str(value)) is not None

T = TypeVar("T")
#: Longest wait between two attempts.
MAX_BACKOFF = 60.0
#: Kinds a provider's classifier gives an SDK exception.
RETRIED = ("throttled", "server", "network")
CODES = {"auth": "PullAuthFailed", "throttled": "PullThrottled", "server": "PullServerError", "network": "PullServerError",
         "malformed": "PullMalformedResponse", "invalid": "PullRequestInvalid", "slow": "PullServerError"}


class Failure(Exception):
    """What a provider's classifier makes of an SDK exception: a kind (:data:`CODES`) and a one-line detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def detail(exc: BaseException, code: object = None) -> str:
    """One line about an SDK exception: the provider's error code and the first line of its message."""
    text = str(getattr(exc, "message", None) or getattr(exc, "error_msg", None) or exc or "")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return redact(f"{code or type(exc).__name__}: {first}")[:300]


def within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` given ``seconds`` in all: an SDK's timeout is per socket read, so an answer sent a slice at a time
    would hold the pull (and the watcher's ingestion after it) for as long as the server likes. Over the time it is a
    ``slow`` failure, not retried in the same pull (each retry would leave one more call reading from a server that
    sends slowly); the call goes on in a daemon thread until the server has sent its answer or its socket times out,
    its answer unused."""
    done: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            done.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            done.append((False, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    if not done:
        raise Failure("slow", f"TimeoutError: no whole answer within {seconds:g} s")
    ok, value = done[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def call(fn: Callable[[], T], classify: Callable[[BaseException], Failure], *, what: str, retries: int, backoff: float,
         deadline: float, sleep: Callable[[float], None] = time.sleep, timeout: float | None = None) -> T:
    """``fn()``, retried on throttling / 5xx / network failures up to ``retries`` times (waits ``backoff * 2**n``
    with jitter, at most :data:`MAX_BACKOFF`), never past ``deadline`` (``time.monotonic()``); ``timeout``: seconds one
    attempt may take in all (:func:`within`, never past the deadline). ``what`` names the call in errors (an API and
    day, never a credential)."""
    attempt = 0
    while True:
        if time.monotonic() >= deadline:
            raise HubError(f"{what}: the pull's time budget ran out", file=what, code="PullTimeBudget")
        try:
            if timeout is None:
                return fn()
            left = deadline - time.monotonic()
            return within(fn, min(timeout, left))
        except Failure as failure:
            if failure.kind == "slow" and left < timeout:  # cut at the budget's end, not at the request's timeout
                raise HubError(f"{what}: the pull's time budget ran out during a request", file=what,
                               code="PullTimeBudget") from None
            problem = failure
        except Exception as exc:  # noqa: BLE001 - every SDK error is classified; none escapes uncoded
            problem = classify(exc)
        if problem.kind not in RETRIED or attempt >= retries:
            tries = f" after {attempt + 1} attempts" if problem.kind in RETRIED else ""
            raise HubError(f"{what}{tries}: {redact(problem.detail)}", file=what, code=CODES[problem.kind]) from None
        wait = min(MAX_BACKOFF, backoff * 2 ** attempt) * (0.5 + random.random() / 2)
        if time.monotonic() + wait >= deadline:
            raise HubError(f"{what}: the pull's time budget ran out while retrying ({redact(problem.detail)})", file=what,
                           code="PullTimeBudget")
        sleep(wait)
        attempt += 1
