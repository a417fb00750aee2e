"""A lease in the store, so several watchers (or a watcher and ``hub ingest``) on one root never process
the same export twice.

Safe on blob stores with nothing but an exclusive create: the lease is a series of files
``config/leases/<name>.<generation>.json``. The holder of the newest generation owns the lease until it
expires; it renews by rewriting its own file. Taking over an expired lease means creating the next
generation, which only one contender can do (local ``O_EXCL``; ``If-None-Match: *`` on Azure Blob and S3).

Fencing: a holder that stalls past the TTL (a paused VM, SIGSTOP) may resume after another process took over.
:meth:`Lease.check` (called before every run-record write and every swap, see ``Store.fence``) sees the newer
generation and raises :class:`LeaseLost`, so a stale holder stops instead of overwriting the new holder's work.
Older generations' files are removed when a generation is taken, so the folder holds one or two files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hub.errors import UsageError
from hub.store import CONFIG, Store

LEASES = f"{CONFIG}/leases"
#: Bounds of ``HUB_LEASE_TTL`` (seconds): a lease expired as it is written lets two processes take it from each
#: other; an endless one never lapses after a crash.
TTL_RANGE = (1.0, 86400.0)


def default_ttl() -> float:
    """Seconds a lease lives without renewal (``HUB_LEASE_TTL``, 120 by default): how long a crashed holder blocks
    the others. A usage error when it is not a number of seconds within :data:`TTL_RANGE`."""
    text = os.environ.get("HUB_LEASE_TTL", "120")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not TTL_RANGE[0] <= value <= TTL_RANGE[1]:  # NaN is in no range
        raise UsageError(f"HUB_LEASE_TTL must be a number of seconds from {TTL_RANGE[0]:g} to {TTL_RANGE[1]:g}, not {text!r}")
    return value


def _checked(ttl: float | None) -> float:
    """``ttl`` (None: :func:`default_ttl`), a finite positive number of seconds."""
    if ttl is None:
        return default_ttl()
    if not 0 < ttl < math.inf:
        raise UsageError(f"a lease's time to live must be a positive number of seconds, not {ttl!r}")
    return ttl


class LeaseLost(BaseException):  # noqa: N818 - like KeyboardInterrupt: stops the work, never handled as an input error
    """Another process took the lease over while this one was stalled: stop, write nothing more."""


@dataclass
class Lease:
    store: Store
    name: str
    owner: str
    generation: int
    ttl: float

    @property
    def path(self) -> str:
        return f"{LEASES}/{self.name}.{self.generation:012d}.json"

    def renew(self) -> None:
        self.store.write_bytes(self.path, _body(self.owner, self.ttl))

    def release(self) -> None:
        """Expire the lease now (the newest file stays: generations only grow). Nothing is written when another
        process already holds a newer generation."""
        if self.held():
            self.store.write_bytes(self.path, _body(self.owner, -1))

    def held(self) -> bool:
        """True while no newer generation exists and this generation's file still names this owner."""
        gens = _generations(self.store, self.name)
        if not gens or gens[-1] != self.generation:
            return False
        try:
            return json.loads(self.store.read_bytes(self.path)).get("owner") == self.owner
        except (OSError, ValueError):
            return False

    def check(self) -> None:
        """Raise :class:`LeaseLost` when this process no longer holds the lease."""
        if not self.held():
            raise LeaseLost(f"the {self.name} lease of {self.store.url} was taken over by another process")


def _body(owner: str, ttl: float) -> bytes:
    return json.dumps({"owner": owner, "expires": time.time() + ttl}).encode()


def _create_exclusive(store: Store, rel: str, data: bytes) -> bool:
    """Create a file only if it does not exist; False if another process created it first."""
    full = store.full(rel)
    store.fs.makedirs(os.path.dirname(full) if store.is_local else full.rsplit("/", 1)[0], exist_ok=True)
    try:
        if store.is_local:  # written aside, then linked: a reader never sees the file without its content
            tmp = f"{full}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, full)
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links (SMB, blobfuse, exFAT): exclusive create, then write
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            finally:
                os.remove(tmp)
            return True
        with store.fs.open(full, "xb") as fh:
            fh.write(data)
        return True
    except (FileExistsError, OSError) as exc:
        if isinstance(exc, FileExistsError) or "exist" in str(exc).lower() or "precondition" in str(exc).lower() \
                or "412" in str(exc) or "409" in str(exc):
            return False
        raise


def _generations(store: Store, name: str) -> list[int]:
    base = store.full(LEASES)
    if not store.fs.exists(base):
        return []
    pattern = re.compile(rf"^{re.escape(name)}\.(\d{{12}})\.json$")
    out = []
    for path in store.fs.ls(base, detail=False):
        m = pattern.match(path.rstrip("/").rsplit("/", 1)[-1])
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def try_acquire(store: Store, name: str, *, ttl: float | None = None, owner: str | None = None) -> Lease | None:
    """The lease if it is free or expired (taken over), else None (``ttl``: seconds, None for :func:`default_ttl`)."""
    ttl = _checked(ttl)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    gens = _generations(store, name)
    if gens:
        current = gens[-1]
        try:
            info = json.loads(store.read_bytes(f"{LEASES}/{name}.{current:012d}.json") or b"{}")
        except (json.JSONDecodeError, FileNotFoundError):
            info = {}
        if info.get("expires", 0) > time.time():
            return None
        nxt = current + 1
    else:
        nxt = 1
    lease = Lease(store, name, owner, nxt, ttl)
    if not _create_exclusive(store, lease.path, _body(owner, ttl)):
        return None
    for old in gens:  # older generations are history: keep one file per lease, not one per cycle
        with contextlib.suppress(OSError):
            store.delete(f"{LEASES}/{name}.{old:012d}.json")
    return lease


def holder(store: Store, name: str) -> tuple[str, float] | None:
    """Who holds the lease now and the seconds until it expires (None: nobody, or it expired)."""
    gens = _generations(store, name)
    if not gens:
        return None
    try:
        info = json.loads(store.read_bytes(f"{LEASES}/{name}.{gens[-1]:012d}.json") or b"{}")
    except (ValueError, OSError):
        return None
    left = float(info.get("expires", 0)) - time.time()
    return (str(info.get("owner") or "?"), left) if left > 0 else None


@contextlib.contextmanager
def holding(store: Store, name: str = "ingest", *, wait: float = 600.0, ttl: float | None = None,
            waiting: Callable[[str], None] | None = None) -> Iterator[Lease | None]:
    """Hold the lease (waiting up to ``wait`` seconds; None when another process kept it) for a block of work: it is
    renewed in the background, every record write and swap in the block is fenced (``Store.fence``), and it is
    released afterwards."""
    deadline = time.monotonic() + wait
    ttl = _checked(ttl)
    held = try_acquire(store, name, ttl=ttl)
    if held is None and wait > 0 and waiting is not None and (now := holder(store, name)):
        waiting(f"waiting for the {name} lease of {store.url}: {now[0]} holds it (it expires in {now[1]:.0f} s unless "
                f"renewed; a crashed holder's lapses by then); giving up after {wait:g} s")
    while held is None and time.monotonic() < deadline:
        time.sleep(0.5)
        held = try_acquire(store, name, ttl=ttl)
    if held is None:
        yield None
        return
    store.fence = held.check
    try:
        with Renewer(held):
            yield held
    finally:
        store.fence = None
        held.release()


@contextlib.contextmanager
def exclusive(store: Store, name: str, *, wait: float = 60.0, ttl: float = 60.0) -> Iterator[Lease | None]:
    """A short read-modify-write of a small file, one process at a time: a lease of its own, so it never waits for a
    whole ingestion. Yields None when another process kept it for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while (held := try_acquire(store, name, ttl=ttl)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield held
    finally:
        if held is not None:
            held.release()


class Renewer:
    """Renews a lease in the background while long work runs."""

    def __init__(self, lease: Lease, every: float | None = None) -> None:
        self.lease = lease
        self.every = every or lease.ttl / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # a failed renewal only shortens the lease
                if not self.lease.held():
                    return  # taken over while this process stalled: never write into the new holder's lease
                self.lease.renew()

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
