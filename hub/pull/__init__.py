"""Bill APIs (Alibaba, Huawei, Tencent) pulled day by day into ``exports/<provider>/api/``, as deliveries.

A pulled day is one delivery: ``exports/<provider>/api/<yyyy-mm>/<yyyy-mm-dd>/<provider>-bill-<day>.csv.gz`` (the API's
bill lines, flattened, with the API's own field names, which the provider's report mapping under ``schemas/<provider>/``
reads) and its ``manifest.json`` (``{"pull": {...}}``), written last. The native source (:mod:`hub.sources.native`)
ingests it like any other delivery, except that a pulled day replaces only its own rows in its month folder: re-pulling
a day (or a month: each of its days) replaces it and never double-counts. Days are the provider's (UTC+8); the lake
stores UTC.

Each pull of a day leaves a run record (``config/runs/pull-<provider>-<yyyymmdd>.json``): ``committed`` with the day's
counts, or ``quarantined`` with a code (``PullAuthFailed``, ``PullThrottled``, ``PullServerError``,
``PullMalformedResponse``, ``PullRequestInvalid``, ``PullTimeBudget``, ``PullNoData``). A failed pull writes nothing:
the lake keeps what it had. Records are also the schedule's memory (:func:`due`): what was pulled, when, and whether
the month was closed then (``final``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from hub import convert, faults, lease, runs
from hub.errors import HubError, UsageError
from hub.pull import alibaba, credentials, huawei, retry, tencent
from hub.runs import RunError, RunRecord
from hub.settings import PullProvider, Settings
from hub.store import EXPORTS, Store, describe, redact
from transforms.typing import ident, literal, scan

PROVIDERS: dict[str, ModuleType] = {"alibaba": alibaba, "huawei": huawei, "tencent": tencent}
#: A failed day is tried again by the schedule after this many seconds.
RETRY_FAILED_AFTER = 3600.0
#: Codes after which a day counts as pulled for the schedule (nothing to retry before the next refresh).
SETTLED = ("PullNoData",)


@cache
def spec(provider: str) -> dict:
    """``schemas/pull/providers.json``'s entry for ``provider``."""
    return json.loads((resources.files("schemas") / "pull" / "providers.json").read_text())[provider]


def check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise UsageError(f"--provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")


@dataclass(frozen=True)
class Period:
    """What one pull asks the API for: a day, or (a provider whose API answers whole months) a month to date."""

    first: date
    whole_month: bool = False

    @property
    def last(self) -> date:
        return (self.first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1) if self.whole_month \
            else self.first

    @property
    def label(self) -> str:
        return f"{self.first:%Y-%m}" if self.whole_month else self.first.isoformat()


def periods(provider: str, days: list[date]) -> list[Period]:
    """The pulls that cover ``days``: one per day, or one per month for a month-unit API; in order, once each."""
    whole = spec(provider)["unit"] == "month"
    out = sorted({Period(d.replace(day=1) if whole else d, whole) for d in days}, key=lambda p: p.first)
    return out


def folder(provider: str, period: Period) -> str:
    return f"{EXPORTS}/{provider}/api/{period.first:%Y-%m}/{'month' if period.whole_month else period.label}"


def record_key(provider: str, period: Period) -> str:
    return f"pull-{provider}-{period.label.replace('-', '')}"


def local_now(provider: str, now: datetime | None = None) -> datetime:
    """``now`` (UTC) in the provider's time zone."""
    return (now or datetime.now(timezone.utc)).astimezone(ZoneInfo(spec(provider)["timeZone"]))


def yesterday(provider: str, now: datetime | None = None) -> date:
    return local_now(provider, now).date() - timedelta(days=1)


def closes(provider: str, day: date) -> datetime:
    """When the month of ``day`` is final at the provider (UTC): the close day and hour of the next month, local."""
    close = spec(provider)["close"]
    first = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    local = datetime(first.year, first.month, close["day"], close["hour"], tzinfo=ZoneInfo(spec(provider)["timeZone"]))
    return local.astimezone(timezone.utc)


def month_days(month: str) -> list[date]:
    """Every day of ``YYYY-MM``."""
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise UsageError(f"--month must be YYYY-MM, not {month!r}") from None
    nxt = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return [first + timedelta(days=i) for i in range((nxt - first).days)]


@dataclass
class PullResult:
    """What one pull did: a record per day tried, the CloudEvents to publish, whether another process was pulling,
    and why nothing could be pulled at all (missing credentials or SDK, a lease taken over)."""

    provider: str = ""
    records: list[RunRecord] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    busy: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.busy and self.error is None and all(
            r.state == "committed" or (r.error and r.error.code in SETTLED) for r in self.records)


def pull(store: Store, provider: str, days: list[date], settings: Settings, *, now: datetime | None = None,
         wait: float = 60.0, only_due: bool = False, on_day: Callable[[list[Any]], None] | None = None) -> PullResult:
    """Pull ``days`` of ``provider``'s bill (each a delivery and a run record), holding the provider's pull lease so
    that two processes never pull at once (``busy`` when another kept it for ``wait`` seconds). ``only_due``: pull
    only the days :func:`due` still wants once the lease is held (a scheduled pull, so that two watchers never pull
    the same day twice). Stops at the time budget; a day's failure never stops the next day. Missing credentials or
    SDK raise :class:`UsageError` (so do credentials the SDK refuses); a lease taken over while this process stalled
    stops it (``error``). ``on_day``: called with each period's events as soon as it is recorded (the caller publishes
    them: a pull killed on a later day loses none)."""
    check_provider(provider)
    cfg: PullProvider = getattr(settings.pull, provider)
    result = PullResult(provider)
    if not days:
        return result
    try:
        with lease.holding(store, f"pull-{provider}", wait=wait) as held:
            if held is None:
                result.busy = True
                return result
            if only_due:
                wanted = set(due(store, provider, cfg, now=now))
                days = [d for d in days if d in wanted]
            if not days:
                return result
            creds = credentials.load(store, provider, spec(provider)["credentials"])
            try:
                api = PROVIDERS[provider].client(cfg, creds, _endpoint(provider, cfg))
            except ImportError:
                raise UsageError(f"hub pull needs {provider}'s SDK: pip install 'finops-hub[pull]'") from None
            except Exception as exc:  # noqa: BLE001 - the SDK refused the credentials or settings (a key with a space)
                raise UsageError(f"{provider}'s SDK refused its credentials or settings: {describe(exc)}") from None
            deadline = time.monotonic() + cfg.time_budget_seconds
            for period in periods(provider, days):
                rec, events = _pull_one(store, provider, api, period, cfg, settings, deadline, now, on_day)
                result.records.append(rec)
                result.events += events
                if rec.error and rec.error.code == "PullTimeBudget":
                    break  # the remaining days wait for the next pull
    except lease.LeaseLost as exc:
        result.error = f"{exc}; this process stopped pulling (the other process carries on)"
    return result


def _endpoint(provider: str, cfg: PullProvider) -> str:
    info = spec(provider)
    return info.get("endpointChina", info["endpoint"]) if cfg.site == "china" else info["endpoint"]


def _pull_one(store: Store, provider: str, api: Any, period: Period, cfg: PullProvider, settings: Settings,
              deadline: float, now: datetime | None,
              on_day: Callable[[list[Any]], None] | None = None) -> tuple[RunRecord, list[Any]]:
    """One day (or month): fetched, flattened, written as a delivery (data, then manifest), its events handed to
    ``on_day`` (published) and then recorded; or a coded failure. Killed between the two, the day is pulled again (its
    record is the previous version's) and its events made again with the same ids: sent at least once, never lost."""
    started = time.perf_counter()
    base = folder(provider, period)
    rec = RunRecord(key=record_key(provider, period), manifest=f"{base}/manifest.json", manifestSha256="",
                    state="converting", exportType="Pull", exportName=provider, month=f"{period.first:%Y-%m}",
                    scope=period.label, dataVersion=spec(provider)["api"])
    pulled_at = now or datetime.now(timezone.utc)
    info: dict[str, Any] = {"day": period.label, "api": spec(provider)["api"], "pulledAt": pulled_at.isoformat(),
                            "final": pulled_at >= closes(provider, period.first)}
    events: list[Any] = []
    try:
        with tempfile.TemporaryDirectory(prefix="hub-pull-") as tmp:
            pages, constants, records = _fetch(provider, api, period, cfg, deadline, tmp)
            info.update(pages=len(pages), records=records)
            data = os.path.join(tmp, f"{provider}-bill-{period.label}.csv.gz")
            info["file"] = f"{base}/{os.path.basename(data)}"
            daily: list[dict] | None = []
            if records == 0:
                if not store.exists(rec.manifest) and not in_lake(store, rec.manifest):
                    raise HubError(f"{spec(provider)['api']}: no bill lines for {period.label}", file=rec.manifest,
                                   code="PullNoData")
                _empty(provider, data)  # lines delivered before are gone at the provider: their rows leave the lake
                info.update(rows=0, emptied=True)
            else:
                con = convert.connect(threads=2, temp_dir=os.path.join(tmp, "spill"))
                # the lines in the API's order (pages, then lines): the same bill gives the same bytes, so an unchanged
                # day pulled again keeps its sha256 and its pulled event's id
                con.execute("SET preserve_insertion_order = true")
                try:
                    flat = _flatten(con, provider, pages, constants)
                    _of_the_day(con, provider, flat, period, rec.manifest)
                    copy = f"COPY ({flat}) TO {literal(data)} (FORMAT csv, HEADER true, COMPRESSION gzip)"
                    info["rows"] = int(con.execute(copy).fetchone()[0])
                    if settings.events.sinks and settings.events.billing_records:
                        # complete days only, but a final (closed month's) pull announces every line, a renewal
                        # charged from a later day included: it is never pulled again
                        before = date.max if info["final"] else local_now(provider, now).date()
                        daily = _daily(con, provider, flat, before=before, month=rec.month or "")
                except duckdb.Error as exc:
                    raise HubError(f"{spec(provider)['api']}: the bill lines cannot be read ({convert.scrub(str(exc))})",
                                   file=rec.manifest, code="PullMalformedResponse") from None
                finally:
                    con.close()
            _deliver(store, rec.manifest, data, info, cfg.currency)
        rec.state, rec.rowsIn, rec.rowsOut, rec.manifestRows = "committed", records, info["rows"], records
        before = runs.load(store, rec.key)
        known = (before.pull or {}) if before is not None else {}
        events = _events(provider, rec, info, daily, settings, cfg.currency, withdraw=known.get("subjects") or [],
                         withdrawn=known.get("withdrawn") or [], ids=known.get("ids") or {})
        for kept in ("subjects", "withdrawn", "ids"):  # no events made (no sinks, no billing records): what consumers
            if kept not in info and kept in known:  # were last told stays known, for the withdrawals and ids to come
                info[kept] = known[kept]
    except HubError as exc:
        rec.state, rec.error = "quarantined", RunError(code=exc.code, message=redact(exc.message), file=exc.file)
    except lease.LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - a store failure or a bug: recorded, the next day still pulled
        rec.state, rec.error = "quarantined", RunError(code="InternalError", message=convert.scrub(
            f"{type(exc).__name__}: {exc}"), file=rec.manifest)
    if rec.state != "committed":
        info["final"] = False  # only a pull that delivered the closed month is its final one: a failed one is tried again
        before = runs.load(store, rec.key)  # the delivered version's daily subjects stay known (for withdrawals)
        for kept in ("subjects", "withdrawn", "ids"):
            if before is not None and before.pull and kept in before.pull:
                info[kept] = before.pull[kept]
    rec.pull, rec.deliveredAt = info, pulled_at
    rec.seconds = round(time.perf_counter() - started, 3)
    if on_day and events:
        on_day(events)
    faults.checkpoint("pull-before-record")
    runs.save(store, rec)
    return rec, events


def in_lake(store: Store, manifest: str) -> bool:
    """The lake holds rows of the pulled delivery ``manifest`` (its committed run records say so), whether or not its
    files are still there (retention, or a re-pull killed after it took the old manifest away)."""
    return any(r.manifest == manifest and r.state == "committed" and r.rowsOut and r.exportType != "Pull"
               for r in runs.load_all(store))


@cache
def _report_mapping(provider: str) -> dict:
    """The provider's bill-file mapping (``schemas/<provider>/``) its pulled lines are ingested with."""
    return json.loads((resources.files("schemas") / provider / spec(provider)["report"]).read_text())


def _empty(provider: str, path: str) -> None:
    """A data file of no lines that the provider's report mapping still recognises (its ``detect`` columns)."""
    mapping = _report_mapping(provider)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:  # same bytes each time
        fh.write((",".join(mapping["detect"]) + "\n").encode())


#: Times a day is paged again from its first page when the API's record count changed between its pages.
REPAGE = 3


def _fetch(provider: str, api: Any, period: Period, cfg: PullProvider, deadline: float,
           tmp: str) -> tuple[list[str], dict, int]:
    """Every page of the day written as a JSON array file (numbers kept as text): the files, the response's
    constants (first page), the record count. Lines the provider adds or withdraws while the day is paged shift its
    offset pages (a line read twice, another never): the API's count changing between pages means paging the day
    again from the start, at most :data:`REPAGE` times, then ``PullMalformedResponse`` (nothing written)."""
    for attempt in range(REPAGE):
        try:
            return _fetch_once(provider, api, period, cfg, deadline, os.path.join(tmp, f"try-{attempt}"))
        except _Moved as moved:
            last = moved.counts
    raise HubError(f"{spec(provider)['api']} {period.label}: the API's record count changed while its pages were read "
                   f"({' then '.join(last)}), {REPAGE} times: pulled again next time", file=spec(provider)["api"],
                   code="PullMalformedResponse")


class _Moved(Exception):  # noqa: N818 - a signal between _fetch_once and _fetch, never raised to a caller
    def __init__(self, counts: list[str]) -> None:
        super().__init__()
        self.counts = counts


def _fetch_once(provider: str, api: Any, period: Period, cfg: PullProvider, deadline: float,
                tmp: str) -> tuple[list[str], dict, int]:
    os.makedirs(tmp, exist_ok=True)
    module = PROVIDERS[provider]
    size = min(cfg.page_size or spec(provider)["pageMax"], spec(provider)["pageMax"])

    def call(fn: Any, what: str) -> Any:
        return retry.call(fn, module.classify, what=f"{what} {period.label}", retries=cfg.retries,
                          backoff=cfg.backoff_seconds, deadline=deadline, timeout=cfg.request_timeout_seconds)

    files: list[str] = []
    constants: dict = {}
    count, total, seen, pages_seen = 0, None, [], set()
    try:
        for records, page_constants in _guarded(module.pages(api, period, size, call), module):
            page_total = page_constants.pop("_total", None)
            if page_total is not None and not retry.is_count(page_total):
                raise HubError(f"{spec(provider)['api']} {period.label}: the API's record count is not a number",
                               file=spec(provider)["api"], code="PullMalformedResponse")
            if odd := next((k for k, v in page_constants.items() if v is not None and (
                    isinstance(v, bool) or not isinstance(v, str | int | float))), None):
                raise HubError(f"{spec(provider)['api']} {period.label}: the response's {odd} is not a single value",
                               file=spec(provider)["api"], code="PullMalformedResponse")
            page_constants = {k: None if v is None else str(v) for k, v in page_constants.items()}
            total = page_total if page_total is not None else total  # a page without a count keeps the announced one
            if total is not None and str(total) not in seen:
                seen.append(str(total))
                if len(seen) > 1:
                    raise _Moved(seen)
            constants = constants or page_constants
            if records:
                digest = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()
                if digest in pages_seen:  # a server answering one page again and again under new tokens, no count
                    raise HubError(f"{spec(provider)['api']} {period.label}: page {len(files) + 1} repeats an earlier "
                                   "page's lines", file=spec(provider)["api"], code="PullMalformedResponse")
                pages_seen.add(digest)
                path = os.path.join(tmp, f"page-{len(files):05d}.json")
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(records, fh)
                files.append(path)
                count += len(records)
                if total is not None and count > int(total):  # a server answering the same page again and again
                    raise HubError(f"{spec(provider)['api']} {period.label}: more lines ({count:,}) than the API's record "
                                   f"count ({int(total):,}): its pages repeat", file=spec(provider)["api"],
                                   code="PullMalformedResponse")
            if time.monotonic() >= deadline:
                raise HubError(f"{spec(provider)['api']} {period.label}: the pull's time budget ran out after "
                               f"{len(files)} pages", file=spec(provider)["api"], code="PullTimeBudget")
    except retry.Failure as failure:
        raise HubError(f"{spec(provider)['api']} {period.label}: {redact(failure.detail)}", file=spec(provider)["api"],
                       code=retry.CODES[failure.kind]) from None
    if total is not None and retry.is_count(total) and int(total) != count:
        raise HubError(f"{spec(provider)['api']} {period.label}: the API counts {total} records, its pages held {count}",
                       file=spec(provider)["api"], code="PullMalformedResponse")
    return files, constants, count


def _guarded(pages: Iterator, module: ModuleType) -> Iterator:
    """The provider's pages; an SDK error raised while reading a page (not by a call) is classified too."""
    while True:
        try:
            yield next(pages)
        except StopIteration:
            return
        except (HubError, retry.Failure):
            raise
        except Exception as exc:  # noqa: BLE001 - an SDK model refusing a request or a response
            raise module.classify(exc) from None


#: Types DuckDB's JSON sniffing gives text it recognises (in a column's type, nested ones too).
_SNIFFED = re.compile(r"(?:(?<=[ (,])|^)(UUID|TIMESTAMP WITH TIME ZONE|TIMESTAMP|DATE|TIME)(?=[,)\[]|$)")


def _flatten(con: duckdb.DuckDBPyConnection, provider: str, pages: list[str], constants: dict) -> str:
    """The query giving one flat row per bill line from the pages (the provider's ``flatten``: a list of records to
    unnest, fields kept as JSON text, a field taken from a list's first element; each only where the API sent it),
    plus the response's constants the lines do not carry themselves."""
    files = ", ".join(literal(p) for p in pages)
    options = "format = 'array', union_by_name = true, sample_size = -1, maximum_object_size = 268435456"
    detected = con.execute(f"DESCRIBE SELECT * FROM {scan('read_json', f'[{files}]', options)}").fetchall()
    # the lines as the API gives them: text stays text (DuckDB would lower-case a UUID, move a time to UTC)
    columns = "{" + ", ".join(f"{literal(name)}: {literal(_SNIFFED.sub('VARCHAR', kind))}" for name, kind, *_ in detected) + "}"
    pulled = scan("read_json", f"[{files}]", f"{options}, columns = {columns}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW pulled AS SELECT * FROM {pulled}")
    rule = spec(provider).get("flatten", {})
    types = {r[0]: r[1] for r in con.execute("DESCRIBE pulled").fetchall()}
    lists = {name for name, kind in types.items() if kind.endswith("[]")}
    special = {*rule.get("json", []), *rule.get("first", {}), rule.get("unnest")}
    # a field the lines write in more than one JSON type is DuckDB's JSON: an amount that is an object or a list on
    # some line is not the documented shape (below)
    mixed = {name for name, kind in types.items() if kind == "JSON" and name not in special}
    select = [ident(name) for name in types if name not in special]
    for name in rule.get("json", []):
        if name in types:
            select.append(f"CAST(to_json({ident(name)}) AS VARCHAR) AS {ident(name)}")
    for name, part in rule.get("first", {}).items():
        if name in types:  # a list of objects, or null everywhere
            select.append(f"json_extract_string(to_json({ident(name)}), '$[0].{part}') AS {ident(part)}")
    nested = rule.get("unnest")
    if nested in lists and types[nested].startswith("STRUCT"):
        select.append(f"unnest({ident(nested)}, recursive := true)")
    flat = f"SELECT {', '.join(select)} FROM pulled"
    described = con.execute(f"DESCRIBE {flat}").fetchall()
    sums = {c.lower() for c in spec(provider)["daily"]["sums"]}
    composite = [name for name in sorted(mixed) if name.lower() in sums and con.execute(
        f"SELECT count(*) FROM pulled WHERE json_type({ident(name)}) IN ('OBJECT', 'ARRAY')").fetchone()[0]]
    _documented_shape(provider, {r[0]: r[1] for r in described}, composite)
    have = {r[0].lower() for r in described}
    extra = [f"{literal(v)} AS {ident(k)}" for k, v in constants.items() if v is not None and k.lower() not in have]
    return f"SELECT {', '.join([*extra, 'f.*'])} FROM ({flat}) f"


def _of_the_day(con: duckdb.DuckDBPyConnection, provider: str, flat: str, period: Period, manifest: str) -> None:
    """A day's pull (Alibaba, Huawei) holds lines of that day only: a line without its day would be charged over the
    whole month, one of another day filed twice when that day is pulled too (``PullMalformedResponse``)."""
    if spec(provider)["unit"] != "day":
        return
    day = f"left({spec(provider)['daily']['date']}, 10)"
    missing, other = con.execute(f"SELECT count(*) FILTER (WHERE {day} IS NULL), count(*) FILTER (WHERE {day} <> ?) "
                                 f"FROM ({flat})", [period.label]).fetchone()
    if missing or other:
        what = f"{missing:,} without their day" if missing else f"{other:,} of another day"
        raise HubError(f"{spec(provider)['api']} {period.label}: {what} among the day's bill lines", file=manifest,
                       code="PullMalformedResponse")


def _documented_shape(provider: str, kinds: dict[str, str], composite: list[str] = ()) -> None:
    """The flat lines hold the columns the bill mapping recognises a report by, and amounts that are single values
    (``composite``: amounts of several JSON types that are an object or a list on some line): an answer in another
    shape is ``PullMalformedResponse`` now (nothing written), not a quarantine at ingestion."""
    def norm(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    found = {norm(name): kind for name, kind in kinds.items()}
    missing = [c for c in _report_mapping(provider)["detect"] if norm(c) not in found]
    nested = [c for c in spec(provider)["daily"]["sums"] if found.get(norm(c), "").startswith(("STRUCT", "MAP"))
              or found.get(norm(c), "").endswith("]")] + list(composite)
    if missing or nested:
        what = f"no {missing[0]} field" if missing else f"{nested[0]} is not a single value"
        raise HubError(f"{spec(provider)['api']}: the bill lines are not the API's documented shape ({what})",
                       file=spec(provider)["api"], code="PullMalformedResponse")


def _daily(con: duckdb.DuckDBPyConnection, provider: str, flat: str, *, before: date, month: str) -> list[dict] | None:
    """The lines per day and product (the provider's ``daily`` date, ``{month}`` in it the pulled month, and keys)
    with the sums of their amount fields (exact decimals, as text), for days before ``before`` (complete days: not a
    month-to-date pull's today). Lines that cannot be summed leave the events out (None: no group is announced, none
    withdrawn), never the pull."""
    rule = spec(provider)["daily"]
    have = {r[0].lower(): r[0] for r in con.execute(f"DESCRIBE {flat}").fetchall()}
    keys = {"BillingDate": rule["date"].replace("{month}", literal(month))}
    keys |= {name: ident(have[col.lower()]) if col.lower() in have else "NULL" for name, col in rule["keys"].items()}
    sums = {col: f"sum(CAST(nullif(CAST({ident(have[col.lower()])} AS VARCHAR), '') AS DECIMAL(38,18)))"
            for col in rule["sums"] if col.lower() in have}
    select = [f"nullif(CAST({expr} AS VARCHAR), '') AS {ident(name)}" for name, expr in keys.items()]
    select += [f"CAST({expr} AS VARCHAR) AS {ident(col)}" for col, expr in sums.items()]
    select.append("count(*) AS Lines")
    query = (f"SELECT * FROM (SELECT {', '.join(select)} FROM ({flat}) GROUP BY ALL) "
             f"WHERE BillingDate < {literal(before.isoformat())} ORDER BY ALL")
    try:
        cursor = con.execute(query)
    except duckdb.Error:
        return None
    names = [d[0] for d in cursor.description]
    return [{name: _amount(value) if name in sums else value for name, value in zip(names, row, strict=True)}
            for row in cursor.fetchall()]  # one row per product and day: a handful


def _amount(value: str | None) -> str | None:
    """A decimal sum as plain text without trailing zeros (``1.230000`` -> ``1.23``)."""
    if value is None:
        return None
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _deliver(store: Store, manifest: str, data: str, info: dict, currency: str | None = None) -> None:
    """The day's delivery: the previous version's manifest first goes (no reader sees the new data under the old
    manifest), then the data file, then the new manifest, last (with ``currency``: the billing currency of lines without
    one, as a user's manifest may say it). A crash in between leaves a folder without a manifest (not a delivery): the
    lake keeps the previous version, and the day is pulled again."""
    base = manifest.rsplit("/", 1)[0]
    store.check_fence()  # a process that stalled past its pull lease writes nothing more
    with contextlib.suppress(FileNotFoundError):
        if store.exists(manifest):
            store.delete(manifest)
    faults.checkpoint("pull-before-data")
    with open(data, "rb") as fh:
        info["sha256"] = hashlib.sha256(fh.read()).hexdigest()
    store.put_file(data, info["file"])
    for rel in store.fs.find(store.full(base)):
        name = store.rel(rel)
        if name not in (info["file"], manifest):
            store.delete(name)  # a file of an earlier, differently named version
    faults.checkpoint("pull-before-manifest")
    store.check_fence()
    store.write_bytes(manifest, json.dumps({"pull": info, **({"currency": currency} if currency else {})}, indent=2).encode())


#: The key under which a pulled day's record keeps its delivery event's identity (beside its daily subjects').
DELIVERY_EVENT = "delivery"


def _events(provider: str, rec: RunRecord, info: dict, daily: list[dict] | None, settings: Settings,
            currency: str | None = None, withdraw: list[str] | None = None, withdrawn: list[str] | None = None,
            ids: dict[str, list] | None = None) -> list[Any]:
    """The pulled delivery's event, and one ``<provider>.account_billing.daily`` event per line group of each complete
    day: its subject names every key of the group (day, product and the rest), so no two groups share one (ids from
    the content: a replayed day gives the same ids; a restated one new ids under the same subject). Lines without a
    currency take the pull's ``currency`` setting, as the lake does. A group of the previous version (``withdraw``:
    its subjects) that this one no longer has gets an event saying so (``Withdrawn``, no lines): a consumer keeping
    the latest event per subject then adds up to the lake; a group back after its withdrawal (``withdrawn``: the
    previous version's) gets a new id, else a consumer de-duplicating on ids would drop it as its first event. Groups
    the daily sums tell apart only by a name or a missing currency share one subject: their sums are added up. Daily
    sums that could not be made (None) announce nothing and withdraw nothing. The subjects made are kept in ``info``,
    and each subject's last event (``ids``: its identity and a digest of its data): unchanged data keeps its event's
    id, changed data (a restatement, a withdrawal) gets an id chained to the previous one, so a day restated back to an
    earlier version (1, 2, 1) or withdrawn twice never repeats an id a consumer already de-duplicated."""
    if not settings.events.sinks:
        return []
    from hub import events

    fields = ("day", "api", "final", "pages", "records", "rows", "file", "sha256", "emptied")
    # the delivery's id: the same bill pulled again keeps it; another one chains it to the previous id, so a day
    # restated back to an earlier bill (1, 2, 1) never repeats the id a consumer de-duplicated the first time
    content = f"{info.get('sha256')}:{info.get('final')}"
    previous = (ids or {}).get(DELIVERY_EVENT)
    identity = (f"{rec.key}:{content}" if previous is None else previous[0] if previous[1] == content
                else hashlib.sha256(f"{previous[0]}:{content}".encode()).hexdigest()[:32])
    info["ids"] = {**(ids or {}), DELIVERY_EVENT: [identity, content]}
    out = [events.make_event("finops-hub.delivery.pulled", settings.events.source, rec.manifest,
                             {"provider": provider, **{k: info.get(k) for k in fields if k in info}}, identity=identity)]
    if not settings.events.billing_records:
        return out
    if daily is None:
        info["subjects"], info["withdrawn"] = sorted(withdraw or []), sorted(withdrawn or [])
        return out
    kind = spec(provider)["event"]
    keys = [k for k in spec(provider)["daily"]["keys"] if not k.endswith("Name")]  # a name repeats its code
    sums = spec(provider)["daily"]["sums"]
    fallback = currency or _report_mapping(provider).get("currency")
    groups: dict[str, dict] = {}
    # a month's pull (Tencent) may hold lines of a day another month's pull holds too (an hour of April 30 billed in
    # May): its subjects start with its month, so that each pull owns its own
    head = [rec.month or ""] if spec(provider)["unit"] == "month" else []
    for item in daily:
        if "Currency" in item and item["Currency"] is None:
            item = {**item, "Currency": fallback}
        subject = "/".join([*head, str(item.get("BillingDate")), *(str(item.get(k) or "-") for k in keys)])
        if (same := groups.get(subject)) is None:
            groups[subject] = dict(item)
            continue
        for col in sums:  # one subject, one event: its groups' sums added up exactly
            if same.get(col) is not None or item.get(col) is not None:
                same[col] = _amount(str(Decimal(same.get(col) or 0) + Decimal(item.get(col) or 0)))
        same["Lines"] = same["Lines"] + item["Lines"]
        same.update({k: v for k, v in item.items() if same.get(k) is None and v is not None})
    back = set(withdrawn or [])
    known = dict(info["ids"])

    def chained(subject: str, data: dict, first: str | None) -> str | None:
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]
        prev = known.get(subject)
        if prev is None:
            identity = first
        elif prev[1] == digest:
            identity = prev[0]  # the same data pulled again: the same event
        else:
            identity = hashlib.sha256(f"{prev[0]}:{digest}".encode()).hexdigest()[:32]
        known[subject] = [identity, digest]
        return identity

    for subject, item in groups.items():
        data = {**item, "Final": info.get("final")}
        first = f"{subject}:{json.dumps(data, sort_keys=True)}:{info.get('sha256')}" if subject in back else None
        out.append(events.make_event(kind["type"], kind["source"], subject, data, identity=chained(subject, data, first)))
    gone = sorted(set(withdraw or []) - set(groups))
    for subject in gone:
        parts = subject.split("/")
        day = parts[1] if len(parts) > 1 and len(parts[0]) == len("yyyy-mm") else parts[0]  # (a month's subject)
        data = {"BillingDate": day, "Withdrawn": True, "Lines": 0, "Final": info.get("final")}
        out.append(events.make_event(kind["type"], kind["source"], subject, data, identity=chained(subject, data, None)))
    info["subjects"] = sorted(groups)
    info["withdrawn"] = sorted((back - set(groups)) | set(gone))
    info["ids"] = known
    return out


def due(store: Store, provider: str, cfg: PullProvider, *, now: datetime | None = None,
        records: list[RunRecord] | None = None) -> list[date]:
    """Days the schedule pulls now, oldest first. A day is due from ``pull_hour`` (provider's time) of the next day;
    back to ``catchup_days`` days ago, each day is pulled once; the ``refresh_days`` days before the latest due day
    (and a day that had no data yet) again at each day's pull hour; every day pulled before its month closed once
    more after the close (then ``final``), wherever it lies; a failed day again after :data:`RETRY_FAILED_AFTER`
    seconds (a refused key or request: after a day)."""
    now = now or datetime.now(timezone.utc)
    local = local_now(provider, now)
    cutoff = local.replace(hour=cfg.pull_hour, minute=0, second=0, microsecond=0)
    latest = local.date() - timedelta(days=1 if local >= cutoff else 2)
    todays_pull = (cutoff if local >= cutoff else cutoff - timedelta(days=1)).astimezone(timezone.utc)
    mine = {r.key: r for r in (records if records is not None else runs.load_all(store)) if r.key.startswith(f"pull-{provider}-")}
    window = [latest - timedelta(days=back) for back in range(max(cfg.catchup_days, 1) - 1, -1, -1)]
    unfinished = {_day(r) for r in mine.values() if r.pull and not r.pull.get("final") and r.scope} - {None}
    out = []
    for day in sorted(set(window) | {d for d in unfinished if d <= latest}):
        rec = mine.get(record_key(provider, periods(provider, [day])[0]))
        info = rec.pull or {} if rec else {}
        pulled = datetime.fromisoformat(info["pulledAt"]) if info.get("pulledAt") else None
        code = rec.error.code if rec and rec.error else None
        if rec is None or pulled is None or pulled < _day_due(provider, cfg, day):
            if day in window or rec is not None:
                out.append(day)  # never pulled, or (a month-unit API) pulled before this day was over
        elif info.get("final") and code is None:
            continue
        elif now >= closes(provider, day) > pulled:
            out.append(day)  # the month closed since: its final pull
        elif code is not None and code not in SETTLED and (day in window or now >= closes(provider, day)):
            # a failed day of the window, or a failed final pull wherever its day lies (never final until it succeeds)
            wait = RETRY_FAILED_AFTER * (24 if code in ("PullAuthFailed", "PullRequestInvalid") else 1)
            if (now - pulled).total_seconds() >= wait:
                out.append(day)
        elif (day >= latest - timedelta(days=cfg.refresh_days) or code in SETTLED) and pulled < todays_pull \
                and day in window:
            out.append(day)
    return out


def _day(rec: RunRecord) -> date | None:
    """The first day a pull record covers (its scope: a day, or a month)."""
    with contextlib.suppress(ValueError):
        return date.fromisoformat(rec.scope if len(rec.scope or "") == 10 else f"{rec.scope}-01")
    return None


def _day_due(provider: str, cfg: PullProvider, day: date) -> datetime:
    """When the schedule first pulls ``day``: ``pull_hour`` of the next day, provider's time (UTC)."""
    nxt = day + timedelta(days=1)
    return datetime(nxt.year, nxt.month, nxt.day, cfg.pull_hour, tzinfo=ZoneInfo(spec(provider)["timeZone"])).astimezone(
        timezone.utc)


def scheduled(store: Store, settings: Settings, *, now: datetime | None = None,
              on_day: Callable[[list[Any]], None] | None = None) -> list[PullResult]:
    """``hub watch``'s pulls: each enabled provider's due days (:func:`due`), under its lease, skipped when another
    watcher is pulling it. One provider's missing credentials or SDK, or any error of its pull, are its result's
    ``error``, never the others' (``on_day``: see :func:`pull`)."""
    out = []
    for provider in PROVIDERS:
        cfg: PullProvider = getattr(settings.pull, provider)
        if not cfg.enabled:
            continue
        days = due(store, provider, cfg, now=now)
        if days:
            try:
                out.append(pull(store, provider, days, settings, now=now, wait=0, only_due=True, on_day=on_day))
            except UsageError as exc:
                out.append(PullResult(provider, error=str(exc)))
            except Exception as exc:  # noqa: BLE001 - one provider's failure never drops the others' pulls and events
                out.append(PullResult(provider, error=describe(exc)))
    return out
