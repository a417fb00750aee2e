"""A DuckDB catalog over the lake: one view per dataset plus versioned views whose columns never change.

``Costs``, ``Prices``, ``CommitmentDiscountUsage``, ``Recommendations`` and ``Transactions`` read every
Parquet file of ``ingestion/<Dataset>/`` (sub-folders included) with the columns as stored. The versioned
views (``Costs_v1_0``, ``Costs_v1_2``, ``Prices_v1_0``, ...) select, rename and type the columns listed in
``schemas/catalog/views.json``. Every view has ``x_Month`` (``yyyy-mm``), the month folder a row lives in:
DuckDB evaluates a filter on it against file names, so a month-filtered query opens only that month's files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import TypeVar

import duckdb

from hub.checks import PERIOD_SLACK
from hub.errors import UsageError
from hub.store import ALLOCATION_OWED, ALLOCATION_RULES, INGESTION, Store, Utf8LocalFileSystem, glob_escape
from transforms.typing import ident, literal, scan

DATASETS = ("Costs", "Prices", "CommitmentDiscountUsage", "Recommendations", "Transactions", "Allocation", "Anomalies",
            "Budgets")
MONTH = "x_Month"
#: View of the months whose allocation was made from Costs that changed since (``config/allocation-owed/<yyyy-mm>``).
OWED = "hub_allocation_owed"
T = TypeVar("T")


#: Times a read is run again when a file it listed was gone when it came to open it (a swap in between).
READ_ATTEMPTS = 3


def swapped_away(exc: BaseException) -> bool:
    """A DuckDB error meaning a lake file listed by the query was removed before it was opened (a swap)."""
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and ("No such file" in text or "Cannot open file" in text
                                                    or "not found" in text.lower() or emptied(exc))


def emptied(exc: BaseException) -> bool:
    """A DuckDB error meaning a view's dataset had no Parquet file left when it was read: a remote swap between its
    delete and its move, or retention removing the dataset's last month (a long-lived connection's views then need
    :func:`create_views` again)."""
    return isinstance(exc, duckdb.IOException) and "No files found that match the pattern" in str(exc)


def read_again(work: Callable[[], T]) -> T:
    """``work`` (a read of the lake), run again when an ingestion swapped files away between the read's listing and
    its opening them (up to :data:`READ_ATTEMPTS` times): the read then lists the month as it is now."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return work()
        except duckdb.IOException as exc:
            if attempt == READ_ATTEMPTS - 1 or not swapped_away(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@cache
def view_specs() -> dict[str, dict]:
    """``schemas/catalog/views.json``: versioned view -> dataset and columns (name, type, optional ``from``)."""
    data = json.loads((resources.files("schemas") / "catalog" / "views.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _store(root: str | Store) -> Store:
    return root if isinstance(root, Store) else Store(root)


def duck_path(store: Store, rel: str) -> str:
    """The path DuckDB reads a store path from: an fsspec URL for remote roots (their filesystem is
    registered on the connection)."""
    path = store.full(rel)
    if store.is_local:
        return path
    protocol = store.fs.protocol if isinstance(store.fs.protocol, str) else store.fs.protocol[0]
    return f"{protocol}://{path}"


LOCAL_GLOB = "hub-local"


class _LocalGlob(Utf8LocalFileSystem):
    """The local filesystem under its own protocol, for local roots DuckDB's own glob cannot read (a ``\\`` in the
    path; a name under ``ingestion/`` that is not UTF-8, which DuckDB's glob fails on): registered on the connection,
    the glob is then fsspec's, leaving such names out."""

    protocol = (LOCAL_GLOB,)


def _globs_natively(store: Store) -> bool:
    return not store.is_local or "\\" not in store.root and not store.odd_lake_names


def dataset_prefix(store: Store, dataset: str) -> str:
    """The dataset folder as DuckDB reads it (and names it in ``filename``)."""
    path = duck_path(store, f"{INGESTION}/{dataset}")
    return path if _globs_natively(store) else f"{LOCAL_GLOB}://{path}"


def dataset_glob(store: Store, dataset: str) -> str:
    """The glob DuckDB reads a dataset from: every Parquet file under its folder, the root's own path escaped."""
    return glob_escape(dataset_prefix(store, dataset)) + "/**/*.parquet"


def has_files(store: Store, dataset: str) -> bool:
    return bool(store.files(f"{INGESTION}/{dataset}"))


def _month_sql(prefix: str) -> str:
    """``yyyy-mm`` from the ``<yyyy>/<mm>/`` right after the dataset folder ``prefix`` (the path DuckDB reads it
    from), so a hub root whose own path looks like ``.../Costs/2024/05/...`` cannot change a row's month."""
    start = len(prefix) + 2  # 1-based, after the prefix and its "/"
    return f"substr(filename, {start}, 4) || '-' || substr(filename, {start + 5}, 2)"


def create_views(con: duckdb.DuckDBPyConnection, store: Store) -> set[str]:
    """Create (or replace) every view on a :func:`store_connection`; returns the datasets that had no file (their views
    are empty: a long-lived connection makes the views again once :func:`has_files` says one has some)."""
    specs = view_specs()
    empty = set()
    for dataset in DATASETS:
        if has_files(store, dataset):
            source = scan("read_parquet", literal(dataset_glob(store, dataset)), "union_by_name = true, filename = true",
                          glob=True)
            # the month of the folder, never a file's own column of that name (another hub's query output dropped
            # as custom data), which would take the name and leave every other file's month NULL
            con.execute(f"CREATE OR REPLACE VIEW {ident(dataset)} AS SELECT COLUMNS(lambda c: lower(c) NOT IN ('filename', "
                        f"{literal(MONTH.lower())})), {_month_sql(dataset_prefix(store, dataset))} AS {MONTH} FROM {source}")
        else:  # no data yet: the latest versioned view's columns, no rows
            spec = max((s for s in specs.values() if s["dataset"] == dataset), key=lambda s: len(s["columns"]))
            cols = ", ".join(f"CAST(NULL AS {c['type']}) AS {ident(c.get('from', c['name']))}" for c in spec["columns"])
            con.execute(f"CREATE OR REPLACE VIEW {ident(dataset)} AS SELECT {cols}, CAST(NULL AS VARCHAR) AS {MONTH} WHERE false")
            empty.add(dataset)
    for name, spec in specs.items():
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {ident(spec['dataset'])}").fetchall()}
        cols = []
        for c in spec["columns"]:
            src = c.get("from", c["name"])
            value = ident(src) if src in present else "NULL"
            cols.append(f"CAST({value} AS {c['type']}) AS {ident(c['name'])}")
        con.execute(f"CREATE OR REPLACE VIEW {ident(name)} AS SELECT {', '.join(cols)}, {MONTH} FROM {ident(spec['dataset'])}")
    # the allocation as costs (hub.cost_analysis: x_CostCenter / x_Product dimensions): its amount in its metric's column
    metrics = ", ".join(f"CASE WHEN x_CostMetric = {literal(m)} THEN x_Amount END AS {ident(m)}"
                        for m in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"))
    if store.exists(ALLOCATION_RULES):  # without rules (allocation turned off) cost queries read the Costs as before
        con.execute(f"CREATE OR REPLACE VIEW AllocatedCosts AS SELECT *, {metrics}, CAST(NULL AS VARCHAR) AS Tags "
                    "FROM Allocation")
    # the months whose allocation no longer stands: their markers, listed when a query runs (a view, not a snapshot);
    # with the rules removed too (allocation turned off: the lake's Allocation still holds the months allocated before)
    marks = glob_escape(duck_path(store, ALLOCATION_OWED) if _globs_natively(store)
                        else f"{LOCAL_GLOB}://{duck_path(store, ALLOCATION_OWED)}") + "/*"
    # a locked month keeps its allocation, whatever its Costs did since (locked as hub.allocation.allocate locks it:
    # its first day before lock_before; read when the views are made)
    lock = _lock_before(store)
    con.execute(f"CREATE OR REPLACE VIEW {OWED} AS SELECT * FROM (SELECT DISTINCT regexp_extract(file, "
                f"'([0-9]{{4}}-[0-9]{{2}})$', 1) AS x_Month FROM glob({literal(marks)}) WHERE regexp_matches(file, "
                f"'/[0-9]{{4}}-[0-9]{{2}}$')) WHERE x_Month || '-01' >= {literal(lock)}")
    return empty


def _lock_before(store: Store) -> str:
    """The allocation rules' ``lock_before`` as ``yyyy-mm-dd``; ``''`` without a lock (or rules that cannot be read:
    their error is the allocation's to report)."""
    from hub.allocation import rules as allocation_rules

    try:
        rules = allocation_rules.load(store)
    except UsageError:
        return ""
    return rules.lock_before.isoformat() if rules and rules.lock_before else ""


def other_metric_months(con: duckdb.DuckDBPyConnection, metric: str, first: date, last: date) -> str | None:
    """The months from ``first`` to ``last`` whose allocation is in another cost metric than ``metric`` (a month locked
    by ``lock_before`` before ``cost_metric`` changed), as ``2024-04 (EffectiveCost), ...``; None when there is none.
    Read as ``metric``, they would show no cost at all."""
    start, end = _instants(first, last)
    # the months of the span and any later folder holding rows charged in it (as unallocated_months reads them)
    other = con.execute("SELECT x_Month, min(x_CostMetric) FROM Allocation WHERE x_CostMetric <> ? AND (x_Month BETWEEN ? "
                        "AND ? OR x_Month >= ? AND ChargePeriodStart >= ? AND ChargePeriodStart < ?) GROUP BY 1 ORDER BY 1",
                        [metric, f"{first:%Y-%m}", f"{last:%Y-%m}", first_folder_month(first), start, end]).fetchall()
    return ", ".join(f"{m} ({kind})" for m, kind in other) or None


def first_folder_month(begin: date) -> str:
    """The first month folder that may hold rows charged from ``begin`` on: ingestion files a row under its billing
    period's month (other clouds: late usage billed the next month, Google's Pacific invoice month) and refuses rows
    charged more than ``PERIOD_SLACK`` before it. There is no last one: a native bill's corrections, adjustments and
    credits may concern usage of any earlier month (:func:`hub.checks.check_costs`), so every later folder may hold
    some of the period's rows."""
    return f"{max(begin, date.min + PERIOD_SLACK) - PERIOD_SLACK:%Y-%m}"


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection has the view ``name`` (:func:`create_views` makes a dataset's only when it has files)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()[0])


def _instants(first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC instants from the start of day ``first`` to the end of day ``last``."""
    start = datetime.combine(first, datetime.min.time(), timezone.utc)
    return start, datetime.combine(min(last, date.max - timedelta(days=1)) + timedelta(days=1), datetime.min.time(), timezone.utc)


def unallocated_months(con: duckdb.DuckDBPyConnection, first: date, last: date) -> str | None:
    """The months a query of the days ``first`` to ``last`` reads (those of the span, and any from
    :func:`first_folder_month` on holding rows charged in it: a UTC+8 bill's first hours, late usage, a later credit)
    with Costs and no allocation (allocated before the rules came, a month whose Costs changed while its allocation
    failed or the rules were gone) or one made from Costs that changed since (:data:`OWED`), as ``2024-04, ...``; None
    when there is none. Read from the allocation, their costs would count as 0, or as the bill that no longer stands."""
    span = [f"{first:%Y-%m}", f"{last:%Y-%m}"]
    start, end = _instants(first, last)
    owed = f"OR x_Month IN (SELECT x_Month FROM {OWED})" if has_view(con, OWED) else ""
    missing = con.execute(
        "SELECT x_Month FROM (SELECT DISTINCT x_Month FROM Costs WHERE x_Month BETWEEN ? AND ? UNION SELECT DISTINCT x_Month "
        "FROM Costs WHERE x_Month >= ? AND ChargePeriodStart >= ? AND ChargePeriodStart < ?) "
        f"WHERE x_Month NOT IN (SELECT DISTINCT x_Month FROM Allocation) {owed} ORDER BY 1",
        [*span, first_folder_month(first), start, end]).fetchall()
    return ", ".join(m for (m,) in missing) or None


def store_connection(store: Store, *, database: str = ":memory:", threads: int | None = None,
                     memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC that reads the store's paths (:func:`duck_path`): remote roots register
    their fsspec filesystem."""
    config: dict[str, object] = {"threads": threads} if threads else {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(database, config=config)
    con.execute("SET TimeZone = 'UTC'")
    if not store.is_local:
        con.register_filesystem(store.fs)
    elif not _globs_natively(store):
        con.register_filesystem(_LocalGlob())
    return con


def connect(root: str | Store, *, database: str = ":memory:", threads: int | None = None,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (UTC) with the lake's views."""
    store = _store(root)
    con = store_connection(store, database=database, threads=threads, memory_limit=memory_limit)
    create_views(con, store)
    return con


def write(root: str | Store, path: str) -> list[str]:
    """Write a DuckDB database file holding the views (local roots: remote roots need an fsspec filesystem
    registered in the reading process, which a database file cannot carry). The views read the lake's files
    when queried, but which datasets have data and which columns they have are fixed when it is written."""
    store = _store(root)
    if not store.is_local:
        raise UsageError("hub catalog --write needs a local root; for remote roots use hub query or hub.catalog.connect")
    if not _globs_natively(store):
        raise UsageError("hub catalog --write cannot write views over a root whose path holds '\\' (DuckDB cannot "
                         "read such a path by pattern); use hub query or hub.catalog.connect, or move the root")
    tmp = f"{path}.tmp"
    for stale in (tmp, f"{tmp}.wal"):
        if os.path.exists(stale):
            os.remove(stale)
    con = connect(store, database=tmp)
    try:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    finally:
        con.close()
    os.replace(tmp, path)  # an existing file is only replaced by a complete one
    return views
