"""The hub store: one root (local folder or fsspec URL) and the only module that knows its layout.

Layout under the root::

    msexports/...                      raw Cost Management exports (parts + manifest.json)
    ingestion/<Dataset>/<yyyy>/<mm>/<scope-path>/<runId>__<part>.parquet     the lake
    config/settings.json               hub settings
    config/runs/<key>.json             one run record per export delivery
    config/staging/<key>/...           Parquet being written; never visible to lake readers

Every other module passes *relative* paths (``ingestion/Costs/...``) and asks this one to act on them,
so the same code serves local folders, Azure Blob/ADLS (``abfs://``, ``az://``) and S3 (``s3://``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import posixpath
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from hub.errors import HubError, UsageError
from transforms.typing import glob_escape

MSEXPORTS = "msexports"
#: Other clouds' deliveries, one folder per provider (``exports/<provider>/``)
EXPORTS = "exports"
INGESTION = "ingestion"
#: Typed but not normalized copies of non-Costs exports (what the toolkit's Power BI reports read).
RAW = "raw"
CONFIG = "config"
SETTINGS = f"{CONFIG}/settings.json"
#: The cost allocation rules (hub.allocation): their presence turns allocation on.
ALLOCATION_RULES = f"{CONFIG}/allocation.json"
RUNS = f"{CONFIG}/runs"
#: One empty file per month whose allocation was made from Costs that changed since (``<yyyy-mm>``): written before
#: a Costs swap that owes ``allocate``, removed when the month is allocated again (readers refuse the month meanwhile).
ALLOCATION_OWED = f"{CONFIG}/allocation-owed"


def allocation_owed(month: str) -> str:
    """The marker of a month whose allocation no longer stands (:data:`ALLOCATION_OWED`)."""
    return f"{ALLOCATION_OWED}/{month}"
STAGING = f"{CONFIG}/staging"
#: Where a lake folder goes, in one rename, before it is deleted (local roots): readers never see it half deleted.
TRASH = f"{CONFIG}/trash"

_EXPORT_SUFFIX = re.compile(r"/providers/microsoft\.costmanagement/exports/[^/]+/?$")


def safe_relpath(path: str, *, what: str, file: str | None = None) -> str:
    """Normalize a store-relative path; refuse anything that could leave the directory it is joined to."""
    bad = (
        not path
        or "\\" in path
        or "\x00" in path
        or "://" in path
        or path.startswith(("/", "~"))
        or re.match(r"^[A-Za-z]:", path) is not None
    )
    norm = posixpath.normpath(path) if not bad else ""
    if bad or norm in (".", "") or norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        raise HubError(f"{what} {path!r} escapes the store", file=file, code="PathEscapesStore")
    return norm


def hidden(name: str) -> bool:
    """Spark, Hive, Trino and Athena skip a path segment starting with ``_`` or ``.`` (Hadoop's hidden files)."""
    return name[:1] in ("_", ".")


def visible(name: str) -> str:
    """A lake folder or file name every reader sees: a :func:`hidden` one (an Azure resource group may be ``_shared``)
    gets its first character percent-encoded (``%5fshared``)."""
    return f"%{ord(name[0]):02x}{name[1:]}" if hidden(name) else name


def plain(path: str) -> str:
    """``path`` with the segments :func:`visible` encoded as an older version wrote them (``_shared``)."""
    return re.sub(r"(?:^|(?<=/))%(5f|2e)", lambda m: chr(int(m.group(1), 16)), path)


def scope_path(resource_id: str, *, file: str | None = None) -> str:
    """``exportConfig.resourceId`` -> folder: lower-cased, export suffix removed, no leading ``/``, each segment
    :func:`visible`."""
    scope = _EXPORT_SUFFIX.sub("", resource_id.strip().lower()).strip("/")
    return "/".join(visible(s) for s in safe_relpath(scope, what="scope", file=file).split("/"))


def dataset_folder(dataset: str, year: int, month: int, scope: str, subfolder: str | None = None) -> str:
    """Destination folder of one export: ``ingestion/<Dataset>/<yyyy>/<mm>/<scope-path>[/<subfolder>]``."""
    return f"{INGESTION}/{dataset}/{year:04d}/{month:02d}/{scope}" + (f"/{subfolder}" if subfolder else "")


def raw_folder(destination: str) -> str:
    """The ``raw/`` twin of an ``ingestion/`` folder."""
    assert destination.startswith(f"{INGESTION}/"), destination
    return RAW + destination[len(INGESTION):]


def raw_staging(staging: str) -> str:
    """Where a run stages its ``raw/`` files, beside its lake files."""
    return f"{staging}-raw"


def month_folder(dataset: str, year: int, month: int) -> str:
    return f"{INGESTION}/{dataset}/{year:04d}/{month:02d}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


def bounded_name(text: str, limit: int) -> str:
    """``text`` as one file-name-safe path segment of at most ``limit`` characters: unsafe characters become
    ``_``; a longer (or altered) text keeps a readable head and gets a hash of the whole, so distinct texts stay
    distinct and no name ever exceeds the file system's limit (255 bytes)."""
    safe = _UNSAFE.sub("_", text)
    if safe == text and len(text) <= limit and text not in (".", ".."):
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[: max(0, limit - 17)]}~{digest}"


def part_file_name(run_id: str, blob_name: str) -> str:
    """``<runId>__<part>.parquet``: the blob's file name without ``.gz``, ``.csv`` -> ``.parquet`` (a long runId or
    part name is shortened with a hash, so the name stays within the file system's limit)."""
    name = posixpath.basename(blob_name)
    if name.lower().endswith(".gz"):
        name = name[:-3]
    if name.lower().endswith(".csv"):
        name = name[:-4] + ".parquet"
    stem = name[:-8] if name.lower().endswith(".parquet") else name
    return visible(f"{bounded_name(run_id, 100)}__{bounded_name(stem, 100)}.parquet")


def store_timeout() -> float:
    """Seconds a remote store gets to answer the first request of a command (``HUB_STORE_TIMEOUT``, 20 by default;
    from 1 to 3600, else a usage error naming it)."""
    text = os.environ.get("HUB_STORE_TIMEOUT", "20")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 3600:  # NaN is in no range
        raise UsageError(f"HUB_STORE_TIMEOUT must be a number of seconds from 1 to 3600, not {text!r}")
    return value


class StoreUnreachable(UsageError):
    """The store does not answer, or refuses the credentials: the command cannot start (exit code 2)."""


def _timeouts(root: str) -> dict[str, object]:
    """Bounded connect and read times, and few retries, for the remote filesystems (their defaults can wait minutes)."""
    scheme = root.split("://", 1)[0].lower() if "://" in root else ""
    if scheme in ("s3", "s3a"):  # no listings cache: a folder listed once would hide files replaced or added since
        # (a part landing after its manifest, a lake file a later ingestion replaced, read by a long-lived hub serve)
        return {"config_kwargs": {"connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}},
                "use_listings_cache": False}
    if scheme in ("az", "abfs", "abfss"):
        return {"connection_timeout": 10, "read_timeout": 60, "use_listings_cache": False}
    return {}


#: Environment variables whose values are credentials: never shown in a message.
SECRET_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY",
                    "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_ACCESS_KEY_ID", "HUB_API_TOKEN", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                    "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY")
#: Other credential values this process holds (a secret file's, an event target's token): left out of messages too.
SECRETS: set[str] = set()
_SECRET_PARTS = re.compile(r"((?:AccountKey|SharedAccessSignature|sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
                           r"Signature|Credential|Access|token)=)"
                           r"[^;&\s'\"]+", re.IGNORECASE)


#: ``user:password@`` in a URL (an S3 key and secret written into the root).
_USERINFO = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")


def public_root(root: str) -> str:
    """A hub root as messages, logs and the report show it: a URL without a ``user:password@``, query or fragment
    (where keys and SAS tokens hide); a local path as it is. ``container@account`` (Azure) is kept: no secret."""
    if "://" not in root:
        return root
    scheme, rest = root.split("://", 1)  # by hand: urlsplit refuses a bucket named like "h[1]" (an IPv6 literal)
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host, slash, path = rest.partition("/")
    if "@" in host and ":" in host.rsplit("@", 1)[0]:
        host = host.rsplit("@", 1)[1]
    return f"{scheme}://{host}{slash}{path}"


def redact(text: str) -> str:
    """``text`` without credentials: the values of the credential variables, keys and signatures in URLs and
    connection strings."""
    values = {os.environ.get(name) or "" for name in SECRET_VARIABLES} | SECRETS
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _USERINFO.sub(r"\1***@", _SECRET_PARTS.sub(r"\1***", text))


def describe(exc: BaseException) -> str:
    """One line about a storage error: its type and first line, credentials removed."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return redact(f"{type(exc).__name__}: {first}"[:300])


#: Packages whose exceptions are storage errors: their messages hold no file content, only what the store said.
STORAGE_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp", "azure", "s3fs", "adlfs", "fsspec"})


def storage_error(exc: BaseException) -> bool:
    """An error of the store (a network or permission failure, a storage package's own error), not of the data."""
    names = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) or bool(names & STORAGE_PACKAGES)


def storage_cause(exc: BaseException) -> BaseException | None:
    """The storage error behind ``exc``: itself, one it carries in its arguments (adlfs raises
    ``RuntimeError('Failed to remove %s for %s', [paths], HttpResponseError(...))``) or its cause; None when there
    is none."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        seen.append(e)
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None and c not in seen]
    found = [e for e in seen if storage_error(e) and type(e).__module__.split(".")[0] in STORAGE_PACKAGES]
    return found[-1] if found else (exc if storage_error(exc) else None)


@dataclass(frozen=True)
class Listed:
    """A listed file: a signature that changes with its content (size and time or etag) and when it was written."""

    signature: str
    modified: datetime | None


def listed(info: dict) -> Listed:
    """A listing entry's signature and modification time."""
    keys = ("mtime", "last_modified", "LastModified", "ETag", "etag")
    stamp = next((str(info[k]) for k in keys if info.get(k)), "")
    return Listed(f"{info.get('size')}|{stamp}", _modified(info))


def signature_of(found: dict[str, dict], rels: list[str]) -> str:
    """One listing signature for several entries of a detailed listing (a manifest and the files of its delivery:
    names, sizes, modification stamps), in any order."""
    text = "\n".join(f"{rel}\t{listed(found[rel]).signature}" for rel in sorted(rels))
    return hashlib.sha256(text.encode()).hexdigest()


def _modified(info: dict) -> datetime | None:
    """A listing entry's modification time (local ``mtime``, Azure ``last_modified``, S3 ``LastModified``), UTC."""
    value = info.get("mtime") or info.get("last_modified") or info.get("LastModified")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def utf8(name: str) -> bool:
    """Whether a name is valid UTF-8 (a local name that is not arrives with surrogates for its bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """A local name as text that prints and stores: bytes that are not UTF-8 as ``\\xNN`` (``r\\xe9sum\\xe9.csv``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _gone_is_fine(function: Callable, path: str, info: tuple) -> None:
    """``shutil.rmtree``'s error handler: a file another process deleted first is no error."""
    if not isinstance(info[1], FileNotFoundError):
        raise info[1]


def percent_name(name: str) -> str:
    """A local name as a file name in UTF-8: bytes that are not UTF-8 as ``%XX`` (``%E9quipe.parquet``; a ``\\`` would
    be a path separator to DuckDB)."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    return "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


class Utf8LocalFileSystem(LocalFileSystem):
    """The local file system listing only names that are valid UTF-8: records, events, logs and DuckDB take no other
    (a name copied from a Latin-1 share stopped every ingestion). The others are kept in ``undecodable`` (full paths)
    for the ingestion to quarantine by name (:func:`hub.deliveries.undecodable_names`)."""

    cachable = False  # one per Store: its ``undecodable`` is that root's

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.undecodable: set[str] = set()

    def ls(self, path: str, detail: bool = False, **kwargs: object) -> list:
        kept = []
        for entry in super().ls(path, detail=detail, **kwargs):
            name = entry["name"] if detail else entry
            if utf8(name):
                kept.append(entry)
            else:
                self.undecodable.add(name)
        return kept


class Store:
    """A hub root. ``root`` is a local path or an fsspec URL; credentials come from fsspec's usual sources."""

    def __init__(self, root: str, **storage_options: object) -> None:
        if not root:
            raise UsageError("a hub root is required")
        #: the root as given (credentials included, if any: only for opening it again, e.g. on Spark executors)
        self.source = root
        #: the root as messages show it (:func:`public_root`)
        self.url = public_root(root)
        #: storage options given in code (credentials, endpoints): this process only; never shown
        self.options = dict(storage_options)
        self.fs, path = fsspec.core.url_to_fs(root, **{**_timeouts(root), **storage_options})
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            self.fs = Utf8LocalFileSystem()
        self.root = os.path.abspath(path) if self.is_local else path.rstrip("/")
        #: set while this process holds the store's ingestion lease: raises when another process took it over
        self.fence: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def probe(self, timeout: float | None = None) -> None:
        """Check that the root answers within ``timeout`` seconds (``HUB_STORE_TIMEOUT``, default 20): an unreachable
        or misconfigured store is one :class:`StoreUnreachable` line, not a silent wait or a traceback."""
        if self.is_local:
            return
        limit = timeout if timeout is not None else store_timeout()
        if refused := self._refused(min(limit, 5.0)):
            raise StoreUnreachable(f"cannot reach {self.url}: {refused} refused the connection")
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                self.fs.invalidate_cache()
                self.fs.exists(self.root)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - reported in the caller's thread
                outcome.append(exc)

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(limit)
        if not outcome:
            raise StoreUnreachable(f"cannot reach {self.url}: no answer in {limit:g} s")
        if outcome[0] is not None:
            raise StoreUnreachable(f"cannot reach {self.url}: {describe(outcome[0])}")
        if self._container_missing():
            kind = "bucket" if "s3" in self._protocols() or "gs" in self._protocols() else "container"
            raise StoreUnreachable(f"{self.url}: the {kind} {self.root.split('/', 1)[0]!r} does not exist (create it first; "
                                   "the hub does not create buckets or containers)")

    def _refused(self, timeout: float) -> str | None:
        """The Azure endpoint's ``host:port`` when it refuses connections (nothing listens there): azure-core would
        retry that for the whole probe time and then say nothing of why. Behind a proxy the SDK's own request decides."""
        client = getattr(self.fs, "service_client", None)
        if client is None or any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
            return None
        try:
            url = urlsplit(str(client.url))
            host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            return None
        if not host:
            return None
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except ConnectionRefusedError:
            return f"{host}:{port}"
        except OSError:  # no such host, no answer: the SDK's request says it
            return None
        return None

    def _protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return (protocol,) if isinstance(protocol, str) else tuple(protocol)

    def _container_missing(self) -> bool:
        """The root's bucket or container is known not to exist (a probe the credentials may not allow is no answer:
        the store is then taken to be there, and the first read or write says what it thinks)."""
        if not set(self._protocols()) & {"s3", "s3a", "az", "abfs", "abfss", "adl", "gs", "gcs"}:
            return False
        bucket = self.root.split("/", 1)[0]
        try:
            if self.fs.exists(bucket):
                return False
            self.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            return True
        except Exception:  # noqa: BLE001 - no permission to look: not known to be missing
            return False
        return False

    def check_fence(self) -> None:
        """Before a write that must not come from a stale lease holder (run records, swaps)."""
        if self.fence is not None:
            self.fence()

    # paths ---------------------------------------------------------------------------------------
    def full(self, rel: str) -> str:
        """The filesystem path of a store-relative path."""
        return f"{self.root}/{rel}" if rel else self.root

    def rel(self, full: str) -> str:
        """The store-relative path of a filesystem path returned by a listing."""
        full = self.fs._strip_protocol(full) if not self.is_local else os.path.abspath(full)
        prefix = self.root.rstrip("/") + "/"
        return full[len(prefix):] if full.startswith(prefix) else full

    def local_path(self, rel: str) -> str | None:
        """The OS path when the store is a local folder (lets DuckDB read/write directly), else None."""
        return self.full(rel) if self.is_local else None

    # layout --------------------------------------------------------------------------------------
    def init_layout(self) -> None:
        for area in (MSEXPORTS, INGESTION, CONFIG, RUNS):
            self.fs.makedirs(self.full(area), exist_ok=True)

    def manifests(self, area: str = MSEXPORTS) -> list[str]:
        """Relative paths of every ``manifest.json`` under an area, sorted."""
        return self.files(area, "/manifest.json")

    def listing(self, area: str = MSEXPORTS) -> dict[str, Listed]:
        """Every ``manifest.json`` under an area with its listing signature (size and modification time or etag: what
        changed since a checkpoint can be told without reading any file) and modification time, sorted."""
        base = self.full(area)
        if not self.fs.exists(base):
            return {}
        out = {}
        for path, info in self.fs.find(base, detail=True).items():
            if path.endswith("/manifest.json") or path == "manifest.json":
                out[self.rel(path)] = listed(info)
        return dict(sorted(out.items()))

    def inside(self, rel: str) -> bool:
        """False when a local path is (or runs through) a link leading out of the root; remote stores have no links."""
        if not self.is_local:
            return True
        root = os.path.realpath(self.root)
        return os.path.realpath(self.full(rel)).startswith(root + os.sep)

    def files(self, folder: str, suffix: str = ".parquet") -> list[str]:
        """Relative paths of every file under ``folder`` (recursive) whose name ends with ``suffix``, sorted. Listed,
        never globbed: a root whose path holds ``[``, ``*`` or ``?`` is read as it is, not as a pattern."""
        base = self.full(folder)
        if not self.fs.isdir(base):
            return []
        return sorted(self.rel(p) for p in self.fs.find(base) if p.endswith(suffix))

    def files_in(self, folder: str, suffix: str) -> list[str]:
        """Files directly in ``folder`` (not recursive) whose name ends with ``suffix``, sorted (listed, never globbed)."""
        if not self.fs.isdir(self.full(folder)):
            return []
        out = []
        for info in self.fs.ls(self.full(folder), detail=True):
            if info["type"] == "file" and info["name"].endswith(suffix):
                out.append(f"{folder}/{posixpath.basename(info['name'])}")
        return sorted(out)

    def parquet_files(self, folder: str) -> list[str]:
        """Parquet files directly in ``folder`` (not recursive): what a run of that folder owns."""
        return self.files_in(folder, ".parquet")

    # file operations -----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.full(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.full(rel)))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def read_text(self, rel: str) -> str:
        """A configuration file's text (UTF-8, a byte order mark allowed); other text is a usage error naming it."""
        try:
            return self.read_bytes(rel).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UsageError(f"{shown(self.full(rel))}: not UTF-8 text (save it as UTF-8)") from None

    def open(self, rel: str, mode: str = "rb"):  # noqa: ANN201 - fsspec file object
        return self.fs.open(self.full(rel), mode)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a small file so readers see the old or the new content, never a partial one."""
        full = self.full(rel)
        self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        if self.is_local:
            tmp = f"{full}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, full)
        else:  # one PUT is atomic on blob stores
            self.fs.pipe_file(full, data)

    def write_json(self, rel: str, obj: object) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2, default=str) + "\n").encode())

    def put_file(self, local: str, rel: str) -> None:
        full = self.full(rel)
        self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        self.fs.put_file(local, full)

    def get_file(self, rel: str, local: str) -> None:
        self.fs.get_file(self.full(rel), local)

    def move(self, src: str, dst: str) -> None:
        """Rename a file (atomic on local folders; copy + delete on blob stores)."""
        full = self.full(dst)
        self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        if self.is_local:
            os.replace(self.full(src), full)
        else:  # file by exact name: fsspec's mv/copy/rm read a [, * or ? in a path as a glob (team[1] is team1)
            self.fs.cp_file(self.full(src), full)
            self.fs.rm_file(self.full(src))

    def copy(self, src: str, dst: str) -> None:
        """Copy a file (a hard link on local folders: lake files are never changed in place, only replaced)."""
        full = self.full(dst)
        self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        if self.is_local:
            try:
                os.link(self.full(src), full)
            except OSError:
                shutil.copyfile(self.full(src), full)
        else:
            self.fs.cp_file(self.full(src), full)

    def delete(self, rel: str) -> None:
        """Delete a file, by its exact name (never a glob: ``team[1]/x`` is not ``team1/x``)."""
        if self.fs.exists(self.full(rel)):
            self.fs.rm_file(self.full(rel))

    @property
    def undecodable(self) -> set[str]:
        """Full local paths of the names that are not UTF-8 which this Store's listings left out so far
        (:class:`Utf8LocalFileSystem`; a blob store has none)."""
        return getattr(self.fs, "undecodable", set())

    @cached_property
    def odd_lake_names(self) -> bool:
        """Whether a name under the local lake (``ingestion/``) is not valid UTF-8: told once (the connections of a
        Store must all read the lake the same way)."""
        if not self.is_local:
            return False
        return any(not utf8(n) for _, dirs, files in os.walk(self.full(INGESTION)) for n in (*dirs, *files))

    def free_name(self, rel: str) -> str:
        """``rel``, or ``rel.<n>`` (2, 3, ...) when taken; a file name beyond 200 bytes is shortened, its hash and last
        suffix kept (a name written with ``%XX`` triples its bytes; file systems take 255)."""
        folder, name = posixpath.split(rel)
        if len(name.encode()) > 200:  # its last suffix kept (``.quarantined``)
            stem, dot, suffix = name.rpartition(".") if len(name.rpartition(".")[2]) < 20 else (name, "", "")
            name = f"{stem[:100]}-{hashlib.sha1(name.encode()).hexdigest()[:16]}{dot}{suffix}"
        rel = posixpath.join(folder, name)
        target, n = rel, 1
        while self.exists(target):
            n += 1
            target = f"{rel}.{n}"
        return target

    def discard_tree(self, rel: str) -> None:
        """Delete a lake folder so readers see it whole or gone: on a local root it is first moved out of the lake in
        one rename (to :data:`TRASH`; what a killed run left there goes too); a blob store has no folder rename (its
        files go one by one)."""
        if not self.is_local or not os.path.isdir(self.full(rel)) or os.path.islink(self.full(rel)):
            self.delete_tree(rel)
            return
        self.empty_trash()
        target = f"{TRASH}/{uuid.uuid4().hex}"
        os.makedirs(self.full(TRASH), exist_ok=True)
        self.check_fence()  # stalled past the lease: the lake is another process's now
        os.rename(self.full(rel), self.full(target))
        self.check_fence()  # another process's recovery may be emptying the trash
        self.delete_tree(target)

    def empty_trash(self) -> None:
        """Delete what a killed run left in :data:`TRASH` (local roots)."""
        if self.is_local and os.path.isdir(self.full(TRASH)):
            for name in os.listdir(self.full(TRASH)):
                self.delete_tree(f"{TRASH}/{name}")

    def delete_tree(self, rel: str) -> None:
        """Delete a folder and everything under it, file by exact name (fsspec's rm reads a path as a glob)."""
        full = self.full(rel)
        if self.is_local:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, onerror=_gone_is_fine)
            elif os.path.lexists(full):
                os.remove(full)
            return
        if glob_escape(full) == full:
            if self.fs.exists(full):
                self.fs.rm(full, recursive=True)
            return
        for path in sorted(self.fs.find(full, withdirs=True), key=len, reverse=True):  # files, then folder markers
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)
        with contextlib.suppress(FileNotFoundError, OSError):
            if self.fs.exists(full):
                self.fs.rm_file(full)
        self.fs.invalidate_cache(full)
