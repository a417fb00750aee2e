"""Where CloudEvents go: an HTTP endpoint (binary or structured mode), a JSON-lines file, or stdout.

An event a sink could not take is written to the sink's dead-letter queue in the store,
``config/events/dead-letter/<sink id>/<yyyymmddThhmmss.ffffff>-<event id>.json`` (the event in structured JSON), and
re-sent, oldest first, before the next events: by the next :func:`publish_to` or by a flush. A dead letter is deleted
only once its sink took it.

An HTTP target that failed after its retries (a timeout, a connection error, a 408, 429 or 5xx) is not tried again by
the same process for a cool-down (:func:`cool_down`): meanwhile its events go straight to the queue, so a hung target
costs one retry sequence per cool-down, not one per publish or flush. The state is in memory, per sink id: another
process tries at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.client import HTTPException, InvalidURL
from typing import Protocol
from urllib.parse import urlsplit

from cloudevents.conversion import to_binary, to_json, to_structured
from cloudevents.http import CloudEvent, from_json

from hub.convert import scrub
from hub.settings import EventSink
from hub.store import CONFIG, SECRETS, Store, bounded_name, describe

#: Dead-letter queues, one folder per sink (the sink id: a short hash of what the sink is).
DEAD_LETTER = f"{CONFIG}/events/dead-letter"
#: Seconds before the first retry of an HTTP delivery; doubled each retry, at most BACKOFF_MAX_SECONDS.
BACKOFF_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
#: HTTP statuses worth another attempt (besides connection errors and timeouts).
RETRY_STATUSES = frozenset({408, 429})
#: Reason given to the events after the first one an HTTP target failed in the same call.
SKIPPED = "not tried: the target failed earlier in this call"
#: Least seconds an HTTP target that failed after its retries is left alone by this process (longer when one event's
#: retry sequence takes longer: see :func:`cool_down`).
COOL_DOWN_SECONDS = 60.0
#: Reason given to the events not tried because the target is cooling down (formatted with the cool-down's seconds).
COOLING = "not tried: the target failed earlier in this process (tried again after a {:g} s cool-down)"
#: The cool-downs' clock (seconds, monotonic); tests may replace it.
clock: Callable[[], float] = time.monotonic

#: A send outcome per event: None when delivered, else why not.
Outcome = str | None


@dataclass
class PublishResult:
    """What one publish or flush did: events delivered, new events dead-lettered, earlier dead letters delivered, and
    one line per problem (no credentials)."""

    sent: int = 0
    dead_lettered: int = 0
    resent: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: PublishResult) -> None:
        self.sent += other.sent
        self.dead_lettered += other.dead_lettered
        self.resent += other.resent
        self.errors.extend(other.errors)


class Sink(Protocol):
    """A place events go: ``send`` returns one outcome per event, in order; ``notes`` are lines for the result."""

    label: str
    notes: list[str]

    def send(self, events: list[CloudEvent]) -> list[Outcome]: ...


# sinks ----------------------------------------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: following it would drop the body (POST -> GET) and carry the token to another host."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def opener() -> urllib.request.OpenerDirector:
    """A urllib opener that never follows a redirect (a 3xx is an ``HTTPError``)."""
    return urllib.request.build_opener(_NoRedirect)


def post_once(http: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float,
              clean: Callable[[str], str]) -> tuple[Outcome, bool]:
    """One POST within ``timeout`` seconds in all (urllib's own timeout is per socket read: a server sending its answer
    a byte at a time would hold the ingestion for ever): (None, _) on a 2xx, else (why not, whether to retry); ``clean``
    makes a reason fit for a message. A POST over the time goes on in a daemon thread until its socket times out."""
    done: list[tuple[Outcome, bool]] = []
    worker = threading.Thread(target=lambda: done.append(_post(http, request, timeout, clean)), daemon=True)
    worker.start()
    worker.join(timeout)
    return done[0] if done else (f"TimeoutError: no whole answer within {timeout:g} s", True)


def _post(http: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float,
          clean: Callable[[str], str]) -> tuple[Outcome, bool]:
    try:
        with http.open(request, timeout=timeout):
            return None, False
    except urllib.error.HTTPError as exc:
        exc.close()
        moved = " (a redirect, not followed)" if 300 <= exc.code < 400 else ""
        return f"HTTP {exc.code}{moved}", exc.code in RETRY_STATUSES or exc.code >= 500
    except InvalidURL as exc:  # a URL urllib cannot use (a bad port): fix the settings
        return clean(f"{type(exc).__name__}: {exc}"), False
    except (OSError, HTTPException) as exc:  # URLError, refused, reset, timeouts, bad status lines
        reason = getattr(exc, "reason", None) or exc
        return clean(f"{type(exc).__name__}: {reason}"), True
    except ValueError:  # a URL or header value urllib refuses (its text may quote the header: not shown)
        return "ValueError: the URL or a header value is not valid", False


def backoff(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** (retry - 1))


def public_url(url: str) -> str:
    """What messages may show of ``url``: its scheme and host, never its user info, query or fragment, nor its path
    (where Slack's, Teams' or Zapier's webhooks keep their secret), which a short digest of the whole URL stands for
    (two sinks on one host told apart: ``https://hooks.slack.com/…#3f2a9c1b``)."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    return f"{shown}/…#{hashlib.sha256(url.encode()).hexdigest()[:8]}" if parts.path.strip("/") else shown


def header_value(value: str) -> str:
    """An attribute as a binary-mode header (CloudEvents HTTP binding 3.1.3.2): every character outside printable ASCII,
    and space, ``"`` and ``%``, percent-encoded as its UTF-8 bytes (a subject naming a folder ``成本导出``)."""
    return "".join(c if "!" <= c <= "~" and c not in '"%' else "".join(f"%{b:02X}" for b in c.encode()) for c in str(value))


# cool-downs -----------------------------------------------------------------------------------------------------------
_breaker_lock = threading.Lock()
#: sink id -> the :data:`clock` time from which its target is tried again (only targets that failed are listed)
_open_until: dict[str, float] = {}


def retry_seconds(conf: EventSink) -> float:
    """The longest one event's delivery can take: every attempt timing out, plus the waits between them."""
    return conf.timeout_seconds * (conf.retries + 1) + sum(backoff(r) for r in range(1, conf.retries + 1))


def cool_down(conf: EventSink) -> float:
    """Seconds a failed target is left alone: the larger of :data:`COOL_DOWN_SECONDS` and one retry sequence."""
    return max(COOL_DOWN_SECONDS, retry_seconds(conf))


def cooling(key: str) -> bool:
    """Whether the target of sink ``key`` failed less than its cool-down ago (in this process)."""
    with _breaker_lock:
        return clock() < _open_until.get(key, float("-inf"))


def _record(key: str, failed: bool, seconds: float) -> None:
    """After a try: a target that failed is left alone for ``seconds``; one that answered is tried as usual."""
    with _breaker_lock:
        if failed:
            _open_until[key] = clock() + seconds
        else:
            _open_until.pop(key, None)


def reset_cool_downs() -> None:
    """Forget every failed target (as a new process would)."""
    with _breaker_lock:
        _open_until.clear()


class HttpSink:
    """POSTs each event (CloudEvents HTTP binding); retries 408, 429, 5xx, connection errors and timeouts."""

    def __init__(self, conf: EventSink) -> None:
        self.conf = conf
        self.url = conf.url or ""
        self.label = f"http {public_url(self.url)}"
        self.token = (os.environ.get(conf.token_env) or "").strip() or None if conf.token_env else None
        self.notes: list[str] = []
        if self.token:
            SECRETS.add(self.token)  # never in a message, a log line or a record (hub.store.redact)
        if conf.token_env and not self.token:
            self.notes.append(f"{self.label}: environment variable {conf.token_env} (token_env) is not set: sent without a token")
        self._opener = opener()

    def send(self, events: list[CloudEvent]) -> list[Outcome]:
        """Deliver in order; once one event failed after its retries, the rest are not tried (the target is down), nor
        are further events of this process until the target's cool-down has passed."""
        if not events:
            return []
        key = sink_id(self.conf)
        if cooling(key):
            return [COOLING.format(cool_down(self.conf))] * len(events)
        out: list[Outcome] = []
        down = False
        for event in events:
            if down:
                out.append(SKIPPED)
                continue
            reason, retryable = self._deliver(event)
            down = reason is not None and retryable
            out.append(reason)
        _record(key, down, cool_down(self.conf))
        return out

    def _deliver(self, event: CloudEvent) -> tuple[Outcome, bool]:
        """(None, _) when delivered, else (why not, whether the failure was one worth retrying)."""
        request = self._request(event)
        attempts = self.conf.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(backoff(attempt))
            reason, retryable = self._post(request)
            if reason is None:
                return None, False
            if not retryable:
                return f"{reason} (not retried)", False
        return f"{reason} after {attempts} attempt(s)", True

    def _request(self, event: CloudEvent) -> urllib.request.Request:
        if self.conf.mode == "structured":
            headers, body = to_structured(event)
        else:
            headers, body = to_binary(event)
            headers = {k: header_value(v) if k.lower().startswith("ce-") else v for k, v in headers.items()}
        headers = {**headers, "User-Agent": "finops-hub"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def _post(self, request: urllib.request.Request) -> tuple[Outcome, bool]:
        """One attempt: (None, _) on a 2xx, else (why not, retryable)."""
        return post_once(self._opener, request, self.conf.timeout_seconds, self.clean)

    def clean(self, text: str) -> str:
        """``text`` fit for a message: without the token, the URL's secrets or any other known credential."""
        if self.token:
            text = text.replace(self.token, "***")
        return scrub(text.replace(self.url, public_url(self.url)))


class FileSink:
    """Appends one structured-mode JSON line per event to a local file (relative to the current directory)."""

    def __init__(self, conf: EventSink) -> None:
        self.path = os.path.abspath(os.path.expanduser(conf.path or ""))
        self.label = f"file {self.path}"
        self.notes: list[str] = []

    def send(self, events: list[CloudEvent]) -> list[Outcome]:
        if not events:
            return []
        start = None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "ab+") as fh:
                start = fh.seek(0, os.SEEK_END)
                # a line a killed writer cut short is ended first: the next event never shares its line
                torn = start > 0 and fh.seek(start - 1) >= 0 and fh.read(1) != b"\n"
                fh.write((b"\n" if torn else b"") + b"".join(to_json(e) + b"\n" for e in events))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if start is not None:  # what a failed write (a full disk) left is taken back: the events are re-sent whole
                with contextlib.suppress(OSError):
                    os.truncate(self.path, start)
            return [scrub(f"{type(exc).__name__}: {exc.strerror or exc}")] * len(events)
        return [None] * len(events)


class StdoutSink:
    """One structured-mode JSON line per event on stdout."""

    label = "stdout"

    def __init__(self, conf: EventSink) -> None:
        self.notes: list[str] = []

    def send(self, events: list[CloudEvent]) -> list[Outcome]:
        try:
            for event in events:
                sys.stdout.write(to_json(event).decode() + "\n")
            sys.stdout.flush()
        except (OSError, ValueError) as exc:  # a closed or broken stdout
            return [scrub(f"{type(exc).__name__}: {exc}")] * len(events)
        return [None] * len(events)


def open_sink(conf: EventSink) -> Sink:
    return {"http": HttpSink, "file": FileSink, "stdout": StdoutSink}[conf.type](conf)


# dead letters ---------------------------------------------------------------------------------------------------------
def sink_id(conf: EventSink) -> str:
    """A short, stable name for a sink's dead-letter queue: a hash of its type, target (url or path) and mode."""
    key = json.dumps(list(conf.target))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def dead_letter_folder(conf: EventSink) -> str:
    return f"{DEAD_LETTER}/{sink_id(conf)}"


_stamp_lock = threading.Lock()
_last_stamp = datetime.min


def _stamp() -> str:
    """UTC ``yyyymmddThhmmss.ffffff``, strictly increasing within the process: file names sort in queue order."""
    global _last_stamp
    with _stamp_lock:
        now = max(datetime.now(timezone.utc).replace(tzinfo=None), _last_stamp + timedelta(microseconds=1))
        _last_stamp = now
    return now.strftime("%Y%m%dT%H%M%S.%f")


def write_dead_letter(store: Store, conf: EventSink, event: CloudEvent) -> str:
    """Queue ``event`` for ``conf``'s sink (atomic write); returns the letter's store path."""
    rel = f"{dead_letter_folder(conf)}/{_stamp()}-{bounded_name(str(event['id']), 100)}.json"
    store.write_bytes(rel, to_json(event) + b"\n")
    return rel


def dead_letters(store: Store, conf: EventSink) -> list[str]:
    """Store paths of ``conf``'s dead letters, oldest first."""
    folder = store.full(dead_letter_folder(conf))
    store.fs.invalidate_cache(folder)
    if not store.fs.exists(folder):
        return []
    found = [store.rel(p) for p in store.fs.find(folder) if p.endswith(".json")]
    return sorted(found, key=posixpath.basename)


def _read_letters(store: Store, paths: list[str], label: str, result: PublishResult) -> list[tuple[str, CloudEvent]]:
    """The readable dead letters; an unreadable one is reported and left in place."""
    out = []
    for rel in paths:
        try:
            out.append((rel, from_json(store.read_bytes(rel))))
        except FileNotFoundError:  # taken by a concurrent flush
            continue
        except Exception as exc:  # noqa: BLE001 - one bad letter never stops the queue
            result.errors.append(f"{label}: dead letter {rel} unreadable ({describe(exc)}); left in place")
    return out


# publishing -----------------------------------------------------------------------------------------------------------
def publish_to(store: Store, conf: EventSink, events: list[CloudEvent]) -> PublishResult:
    """Re-send ``conf``'s dead letters (oldest first), then ``events``; queue what the sink did not take."""
    sink = open_sink(conf)
    result = PublishResult()
    try:
        queued = dead_letters(store, conf)
    except Exception as exc:  # noqa: BLE001 - the new events are still sent
        queued = []
        result.errors.append(f"{sink.label}: dead letters not listed ({describe(exc)})")
    letters = _read_letters(store, queued, sink.label, result)
    batch = [event for _, event in letters] + list(events)
    if not batch:
        return result
    # the outbox: each new event is queued before it is sent, so a process killed while sending (or before) leaves it
    # queued for the next publish, never lost; a sent one's letter is deleted
    outbox = [_enqueue(store, conf, event, sink.label, result) for event in events]
    result.errors.extend(sink.notes)
    outcomes = sink.send(batch)
    _settle_letters(store, letters, outcomes[: len(letters)], sink.label, result)
    _queue_failures(store, conf, list(zip(outbox, events, strict=True)), outcomes[len(letters):], sink.label, result)
    result.errors.extend(_summaries(sink.label, batch, outcomes))
    return result


def _enqueue(store: Store, conf: EventSink, event: CloudEvent, label: str, result: PublishResult) -> str | None:
    """``event`` written to its sink's queue (None when it cannot be: it is still sent)."""
    try:
        return write_dead_letter(store, conf, event)
    except Exception as exc:  # noqa: BLE001 - sent anyway; queued again if the sink does not take it
        result.errors.append(f"{label}: event {event['id']} not queued before sending ({describe(exc)})")
        return None


def _settle_letters(store: Store, letters: list[tuple[str, CloudEvent]], outcomes: list[Outcome], label: str,
                    result: PublishResult) -> None:
    """Delete each dead letter its sink took (it stays queued otherwise)."""
    for (rel, _), outcome in zip(letters, outcomes, strict=True):
        if outcome is not None:
            continue
        result.resent += 1
        try:
            store.delete(rel)
        except Exception as exc:  # noqa: BLE001 - it will be sent again: consumers de-duplicate
            result.errors.append(f"{label}: dead letter {rel} sent but not deleted ({describe(exc)})")


def _queue_failures(store: Store, conf: EventSink, events: list[tuple[str | None, CloudEvent]], outcomes: list[Outcome],
                    label: str, result: PublishResult) -> None:
    """Count the new events delivered (their queued letters deleted); the others stay dead letters."""
    for (queued, event), outcome in zip(events, outcomes, strict=True):
        if outcome is None:
            result.sent += 1
            if queued is not None:
                try:
                    store.delete(queued)
                except Exception as exc:  # noqa: BLE001 - it will be sent again: consumers de-duplicate
                    result.errors.append(f"{label}: event {event['id']} sent but its queued letter not deleted ({describe(exc)})")
            continue
        try:
            if queued is None:
                write_dead_letter(store, conf, event)
            result.dead_lettered += 1
        except Exception as exc:  # noqa: BLE001 - the pipeline goes on; the event is reported lost
            result.errors.append(f"{label}: event {event['id']} lost: its dead letter could not be written ({describe(exc)})")


def _summaries(label: str, events: list[CloudEvent], outcomes: list[Outcome]) -> list[str]:
    """One line per distinct failure: the first event it hit and how many more."""
    counts = Counter(o for o in outcomes if o is not None)
    first = {}
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome is not None:
            first.setdefault(outcome, event["id"])
    lines = []
    for reason, n in counts.items():
        more = f" and {n - 1} more" if n > 1 else ""
        lines.append(f"{label}: event {first[reason]}{more} not delivered: {reason}; queued as dead letters")
    return lines
