"""Cost allocation: every Costs row of a month to a value of each dimension (cost center, product), shared costs
split, written as the ``Allocation`` dataset (``ingestion/Allocation/<yyyy>/<mm>/<metric>/``), all-or-nothing per
month through the load engine, with a run record (``config/runs/allocate-<yyyymm>-<metric>.json``).

Stage 1 (:mod:`hub.allocation.resolve`) gives each source row its values; stage 2 (here) takes the rows of each pool
out of direct allocation and splits each pool's amount per month and currency over its targets with the
largest-remainder method (:mod:`hub.allocation.split`). Every run checks, before it commits, that (I1) every
non-pooled row appears once with its amount, (I2) each pool's shares add up to its members exactly, (I3) the month's
output equals its input per currency and period; a run where one does not hold is quarantined (``AllocationMismatch``)
and the previous allocation stays.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa

from hub import catalog, convert, engine, runs
from hub.allocation import resolve
from hub.allocation.rules import MATCH_COLUMNS, NOT_ALLOWLISTED, UNALLOCATED, Pool, Rules, load
from hub.allocation.split import split
from hub.errors import HubError, UsageError
from hub.faults import checkpoint
from hub.runs import RunRecord
from hub.sources import Hooks
from hub.store import INGESTION, Store, allocation_owed, dataset_folder
from transforms.typing import ident, literal, scan

DATASET = "Allocation"
MANIFEST = "allocation:"
#: The status of a value that is a sentinel (any other value is ``allocated``).
STATUS = {UNALLOCATED: "unallocated", NOT_ALLOWLISTED: "not_allowlisted"}
#: Source columns carried onto direct rows (context for reports).
CONTEXT = ("ProviderName", "BillingAccountId", "SubAccountId", "SubAccountName", "x_ResourceGroupName", "ServiceName",
           "ServiceCategory", "ResourceId", "ResourceName", "ChargeCategory", "ChargeClass", "BillingPeriodStart")


def months(store: Store) -> list[str]:
    """Every ``yyyy-mm`` with Costs in the lake (a month folder holding no Parquet file, only a refused custom drop's
    set-aside files, has none)."""
    base = store.full(f"{INGESTION}/Costs")
    out = []
    for year in sorted(store.fs.ls(base, detail=False)) if store.fs.exists(base) else []:
        for month in sorted(store.fs.ls(year, detail=False)) if store.fs.isdir(year) else []:
            y, m = year.rstrip("/").rsplit("/", 1)[-1], month.rstrip("/").rsplit("/", 1)[-1]
            if y.isdigit() and m.isdigit() and store.files(f"{INGESTION}/Costs/{y}/{m}"):
                out.append(f"{y}-{m}")
    return out


def record_key(month: str, rules: Rules) -> str:
    return f"allocate-{month.replace('-', '')}-{rules.cost_metric.lower()}"


def allocate(store: Store, only: list[str] | None = None, *, rules: Rules | None = None) -> list[RunRecord]:
    """Allocate ``only`` these months (default: every Costs month): one run each, replacing the month's allocation;
    a locked month that has one keeps it. Nothing when the hub has no rules."""
    rules = rules or load(store)
    if rules is None:
        return []
    convert.check_memory_limit()  # a usage error before any month's run is recorded, not an InternalError each
    available = months(store)
    if absent := [m for m in only or [] if m not in available]:
        raise UsageError(f"no Costs in {absent[0]}: nothing to allocate (months with Costs: "
                         f"{', '.join(available[-3:]) or 'none'}{' …' if len(available) > 3 else ''})")
    _retype_amounts(store)
    out = []
    for month in only if only is not None else available:
        if locked(store, rules, month):
            continue  # the allocation written before the lock stays as it is (whatever a later attempt did, in whatever
            # metric it was made)
        out.append(_run(store, month, rules))
    return out


def locked(store: Store, rules: Rules, month: str) -> bool:
    """``month`` is before the rules' ``lock_before`` and has an allocation on file: never allocated again."""
    year, mon = map(int, month.split("-"))
    return bool(rules.lock_before and f"{month}-01" < rules.lock_before.isoformat()
                and store.files(f"{INGESTION}/{DATASET}/{year:04d}/{mon:02d}"))


#: The type of ``x_Amount`` in every month's file, whatever ``amount_scale`` rounded it to: readers of several months
#: (the catalog's union of the files) take the smallest scale of their files, which would round the finer months.
AMOUNT = "DECIMAL(38,18)"


def _retype_amounts(store: Store) -> None:
    """Allocation files an older version wrote with ``x_Amount`` at its ``amount_scale`` (``DECIMAL(38,2)``) rewritten
    as :data:`AMOUNT`, the same values (locked months' too: no amount changes), each replacing its file by name (a
    rename on a local folder, an overwrite on a blob store; a killed rewrite leaves a ``.retype`` file, not Parquet,
    that the next one removes)."""
    for leftover in store.files(f"{INGESTION}/{DATASET}", RETYPE):
        store.delete(leftover)
    parquet = store.files(f"{INGESTION}/{DATASET}")
    if not parquet:
        return
    con = catalog.store_connection(store, threads=2)  # the store's files, local or on a blob store
    try:
        listing = "[" + ", ".join(literal(catalog.duck_path(store, f)) for f in parquet) + "]"
        coarse = {r[0] for r in con.execute(f"SELECT file_name FROM parquet_schema({listing}) WHERE name = 'x_Amount' AND "
                                            "(scale IS DISTINCT FROM 18 OR precision IS DISTINCT FROM 38)").fetchall()}
        with tempfile.TemporaryDirectory(prefix="hub-retype-") as tmp:
            for rel in (f for f in parquet if catalog.duck_path(store, f) in coarse):
                store.check_fence()
                local = os.path.join(tmp, "retyped.parquet")
                con.execute(f"COPY (SELECT * REPLACE (CAST(x_Amount AS {AMOUNT}) AS x_Amount) FROM "
                            f"{scan('read_parquet', literal(catalog.duck_path(store, rel)))}) TO {literal(local)} "
                            "(FORMAT parquet, COMPRESSION snappy)")
                store.put_file(local, rel + RETYPE)
                store.move(rel + RETYPE, rel)
    finally:
        con.close()


#: Suffix of an allocation file being rewritten by :func:`_retype_amounts` (not ``.parquet``: never read).
RETYPE = ".retype"


def retire(store: Store, month: str) -> None:
    """Take a month's allocation out of the lake (its records say ``superseded``): it was made from Costs that changed
    since and could not be made again (a failed run). Readers then refuse the month by cost center rather than serve
    the allocation of a bill that no longer stands."""
    _supersede(store, month, keep=None)


def _retire_other_metrics(store: Store, rec: RunRecord) -> None:
    """A month allocated on one cost metric holds no allocation on another (``cost_metric`` changed): readers would
    add both, or serve the other one stale. Their folders go before the new metric's is swapped in (the engine's
    ``before_swap`` hook: a reader may see the month without allocation for a moment, never two metrics; a run killed
    before or after it is rolled forward by recovery, which does it again from the run's own metric, its ``scope``);
    their records say ``superseded``."""
    if rec.month and rec.scope:
        _supersede(store, rec.month, keep=rec.scope)


def _supersede(store: Store, month: str, *, keep: str | None) -> None:
    """Every metric's allocation of ``month`` but ``keep``'s deleted, their committed records ``superseded``."""
    year, mon = map(int, month.split("-"))
    base = f"{INGESTION}/{DATASET}/{year:04d}/{mon:02d}"
    folders = [f.rstrip("/").rsplit("/", 1)[-1] for f in store.fs.ls(store.full(base), detail=False)] \
        if store.fs.isdir(store.full(base)) else []
    for other in sorted(f for f in folders if f != keep):
        store.delete_tree(f"{base}/{other}")
    for rec in runs.load_all(store):
        if rec.manifest == f"{MANIFEST}{month}" and rec.scope != keep and rec.state == "committed":
            rec.state = "superseded"
            runs.save(store, rec)


#: What the engine does around an allocation run's swap: the month's other metrics retired before it.
HOOKS = Hooks(_retire_other_metrics)


def _run(store: Store, month: str, rules: Rules) -> RunRecord:
    started = time.perf_counter()
    year, mon = map(int, month.split("-"))
    key = record_key(month, rules)
    rec = RunRecord(key=key, manifest=f"{MANIFEST}{month}", manifestSha256=rules.version_hash(), state="converting",
                    exportType="Allocation", exportName=rules.cost_metric, dataset=DATASET, month=month,
                    scope=rules.cost_metric.lower(), destination=dataset_folder(DATASET, year, mon, rules.cost_metric.lower()),
                    staging=engine.new_staging(key), runId=f"{key}-{int(time.time())}")
    try:
        with tempfile.TemporaryDirectory(prefix="hub-allocate-") as tmp:
            out = os.path.join(tmp, f"allocation-{month}.parquet")
            summary = compute(store, month, rules, out, run_id=rec.runId or key)
            name = os.path.basename(out)
            staged = f"{rec.staging}/{name}"
            store.put_file(out, staged)
        rec.parts = [runs.PartResult(blob=f"{INGESTION}/Costs/{year:04d}/{mon:02d}", output=f"{rec.destination}/{name}",
                                     rows=summary["rows"])]
        rec.rowsIn, rec.rowsOut = summary["rowsIn"], summary["rows"]
        rec.totalsIn, rec.totalsOut = summary["totalsIn"], summary["totalsOut"]
        rec.allocation = summary["allocation"]
        rec.state = "swapping"
        runs.save(store, rec)
        checkpoint("allocation-swapping")
        engine.commit(store, rec)  # retires the other metrics first (HOOKS)
        if store.exists(allocation_owed(month)):  # made from the Costs as they are now (under the ingestion lease)
            store.delete(allocation_owed(month))
    except HubError as exc:
        store.delete_tree(rec.staging or "")
        engine.quarantine(store, rec, exc)
    except Exception as exc:  # noqa: BLE001 - recorded; the previous allocation of the month stays
        store.delete_tree(rec.staging or "")
        engine.quarantine(store, rec, engine.unexpected(exc, rec.manifest))
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def compute(store: Store, month: str, rules: Rules, out: str, *, run_id: str) -> dict:
    """One month's allocation written to the local Parquet file ``out`` (checked: I1-I3), nothing else; its summary
    (rows, totals, invariants, status totals)."""
    year, mon = map(int, month.split("-"))
    month_folder = store.full(f"{INGESTION}/Costs/{year:04d}/{mon:02d}")
    files = sorted(store.rel(p) for p in store.fs.find(month_folder) if p.endswith(".parquet")) \
        if store.fs.isdir(month_folder) else []
    with tempfile.TemporaryDirectory(prefix="hub-allocate-spill-") as spill:
        # memory stays flat as the month grows: DuckDB spills its tables and the sort to disk past the limit
        con = catalog.store_connection(store, threads=2, memory_limit=convert.check_memory_limit())
        con.execute(f"SET temp_directory = {literal(spill)}")
        con.execute("SET preserve_insertion_order = false")
        try:
            return _allocate(con, store, files, rules, run_id, out, month)
        finally:
            con.close()


def _period(rules: Rules, month: str) -> str:
    """The month a row's cost is allocated in: its ChargePeriodStart's; with ``late_corrections: current_period``, a
    correction of a locked month counts in the month being allocated."""
    own = "strftime(ChargePeriodStart, '%Y-%m')"
    if rules.late_corrections != "current_period" or not rules.lock_before:
        return own
    # locked as the month lock has it: its first day before lock_before (a lock_before of the 15th locks that month whole)
    return (f"CASE WHEN ChargeClass = 'Correction' AND strftime(ChargePeriodStart, '%Y-%m-01') < "
            f"{literal(rules.lock_before.isoformat())} THEN {literal(month)} ELSE {own} END")


def _source(con: duckdb.DuckDBPyConnection, store: Store, files: list[str], rules: Rules, month: str) -> str:
    """The month's Costs rows with their row id, the metric as ``x_Amount`` (rounded half-even to the scale), and
    every column stage 1 and the pools read (null where no file has it)."""
    if not files:
        con.execute("CREATE OR REPLACE TEMP VIEW src AS SELECT NULL::VARCHAR AS x_SourceRowId WHERE false")
        raise HubError("no Costs rows in this month", file="ingestion/Costs", code="AllocationMismatch")
    paths = [catalog.duck_path(store, f) for f in files]
    base = catalog.duck_path(store, INGESTION)
    raw = scan("read_parquet", f"[{', '.join(literal(p) for p in paths)}]",
               "union_by_name = true, filename = true, file_row_number = true")
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()}
    needed = {*MATCH_COLUMNS, *CONTEXT, *resolve.signature_columns(rules), "Tags", "ChargePeriodStart", "BillingCurrency",
              rules.cost_metric}
    missing = [f"CAST(NULL AS VARCHAR) AS {ident(c)}" for c in sorted(needed - have - {rules.cost_metric})]
    # a cost the lake does not give (no such column, a null) is 0, as in every FOCUS cost sum
    metric = f"coalesce(CAST({ident(rules.cost_metric)} AS DECIMAL(38,18)), 0)" if rules.cost_metric in have else \
        "CAST(0 AS DECIMAL(38,18))"
    # the lake's own columns of the same names (Azure's x_CostCenter) give way to the allocation's
    ours = sorted(have & {f"{rules.column(d)}{s}" for d in rules.dimensions for s in resolve.SUFFIXES})
    scale = rules.amount_scale
    con.execute(f"""CREATE OR REPLACE TEMP VIEW src AS SELECT
        replace(filename, {literal(base + '/')}, '') || ':' || file_row_number AS x_SourceRowId,
        list_position([{', '.join(literal(p) for p in paths)}], filename) AS _file, file_row_number AS _row,
        round_even({metric}, {scale}) AS x_Amount, {metric} AS _exact,
        {_period(rules, month)} AS x_Period,
        *{f" EXCLUDE ({', '.join(ident(c) for c in ours)})" if ours else ''}{''.join(', ' + m for m in missing)}
        {'' if rules.cost_metric in have else f', CAST(NULL AS DECIMAL(38,18)) AS {ident(rules.cost_metric)}'} FROM {raw}""")
    return "src"


def _allocate(con: duckdb.DuckDBPyConnection, store: Store, files: list[str], rules: Rules, run_id: str,
              out: str, month: str) -> dict:
    src = _source(con, store, files, rules, month)
    joined = resolve.resolve(con, rules, src)
    dims = [rules.column(d) for d in rules.dimensions]
    resolved = [f"{c}{s}" for c in dims for s in resolve.SUFFIXES]
    pool_case = " ".join(f"WHEN {resolve.match_sql(_columns(p.match, rules))} THEN {literal(p.id)}" for p in rules.pools)
    pool_sql = f"CASE {pool_case} END" if pool_case else "CAST(NULL AS VARCHAR)"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE rows AS SELECT x_SourceRowId, _file, _row, x_Amount, _exact, x_Period,
        ChargePeriodStart, BillingCurrency, {', '.join(ident(c) for c in CONTEXT)}, {', '.join(ident(c) for c in resolved)},
        {pool_sql} AS _pool FROM {joined}""")
    shared = _pools(con, rules)
    version = rules.version_hash()
    common = (f"{literal(run_id)} AS x_AllocationRunId, {literal(version)} AS x_ConfigVersion, "
              f"{literal(rules.cost_metric)} AS x_CostMetric")
    method = " ".join(f"WHEN {ident(dims[0] + 'Source')} = {literal(s)} THEN {literal(m)}" for s, m in (
        ("tag", "direct:tag"), ("resource_group_tag", "direct:inherited"), ("subscription_tag", "direct:inherited"),
        ("mapping", "direct:mapping"), ("default", "direct:default")))
    # a row counts at its ChargePeriodStart, or on the first of the month it was allocated in when that is another
    # (late_corrections: current_period): a cost query by cost center never moves it back into the locked month
    start = ("CASE WHEN x_Period <> strftime(make_timestamp(epoch_us(ChargePeriodStart)), '%Y-%m') THEN "
             "CAST(x_Period || '-01 00:00:00+00' AS TIMESTAMPTZ) ELSE ChargePeriodStart END")
    direct = f"""SELECT {common}, 'direct' AS x_AllocationKind, x_SourceRowId, CAST(NULL AS VARCHAR) AS x_PoolPeriodId,
        {start} AS ChargePeriodStart, x_Period, BillingCurrency, CAST(x_Amount AS {AMOUNT}) AS x_Amount,
        {', '.join(ident(c) for c in resolved)}, CASE {method} ELSE 'direct:unallocated' END AS AllocatedMethodId,
        CAST(NULL AS VARCHAR) AS AllocatedMethodDetails, {', '.join(ident(c) for c in CONTEXT)}, _file, _row
        FROM rows WHERE _pool IS NULL"""
    _table_from(con, "shared", shared, rules, dims, common)
    # one order whatever the threads did: source rows in lake order (file, row: integers), then the shared rows
    order = ", ".join(["_kind", "_file", "_row", "x_PoolPeriodId", *(ident(c) for c in dims)])
    con.execute(f"COPY (SELECT * EXCLUDE (_kind, _file, _row) FROM (SELECT *, 0 AS _kind FROM ({direct}) UNION ALL BY NAME "
                f"SELECT *, 1 AS _kind, NULL AS _file, NULL AS _row FROM shared) ORDER BY {order}) "
                f"TO {literal(out)} (FORMAT parquet, COMPRESSION snappy)")
    return _check(con, out, rules, dims)


def _columns(match: dict, rules: Rules) -> dict:
    """A pool's match with its dimension names as their output columns."""
    return {rules.column(k) if k in rules.dimensions else k: v for k, v in match.items()}


def _pools(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[dict]:
    """Each pool's amount per period and currency split over its targets: one shared row per target with a share."""
    out: list[dict] = []
    quantum = Decimal(1).scaleb(-rules.amount_scale)
    for pool in rules.pools:
        target = rules.column(pool.targets.dimension)
        others = [rules.column(d) for d in rules.dimensions if rules.column(d) != target]
        other_sql = "".join(f", CASE WHEN count(DISTINCT {ident(o)}) = 1 THEN min({ident(o)}) END" for o in others)
        amounts = con.execute(f"""SELECT x_Period, BillingCurrency, CAST(sum(x_Amount) AS VARCHAR), count(*){other_sql}
            FROM rows WHERE _pool = {literal(pool.id)} GROUP BY ALL ORDER BY ALL""").fetchall()
        for period, currency, total, members, *other_values in amounts:
            amount = Decimal(total)
            retired = [t for t in _listed_targets(pool) if not _allowlisted(rules, pool.targets.dimension, t, period)]
            if retired and pool.method == "fixed":  # its percentages cannot be shared out again without a word
                raise HubError(f"pool {pool.id}: target {retired[0]!r} of its fixed split is not on the allowlist in "
                               f"{period}: give the split without it from then on", file="config/allocation.json",
                               code="AllocationConflict")
            weights = {k: v for k, v in _weights(con, pool, target, period, currency).items() if k not in retired}
            reason = None
            if not weights or sum(weights.values()) <= 0:
                if pool.on_zero_weight == "error":
                    raise HubError(f"pool {pool.id}: no target has a weight in {period} ({currency})",
                                   file="config/allocation.json", code="AllocationConflict")
                explicit = [t for t in _listed_targets(pool) if t not in retired]
                weights = {t: Decimal(1) for t in explicit} if pool.on_zero_weight == "even" and explicit else {}
                if not weights:
                    weights, reason = {UNALLOCATED: Decimal(1)}, "zero_weight"
            total_w = sum(weights.values())
            shares = split(amount, weights, quantum)
            for value, share in sorted(shares.items()):
                if share == 0:
                    continue  # a target without weight, or a pool too small to reach it, gets no row
                ratio = weights[value] / total_w
                out.append({"pool": pool, "period": period, "currency": currency, "target": value, "amount": share,
                            "others": dict(zip(others, other_values, strict=True)), "reason": reason, "members": members,
                            "details": json.dumps({"Elements": [{"AllocatedRatio": format(ratio.normalize(), "f"),
                                                                 "UsageUnit": f"{currency} {rules.cost_metric}",
                                                                 "UsageQuantity": format(weights[value].normalize(), "f")}],
                                                   "x_PoolId": pool.id, "x_Weight": format(weights[value].normalize(), "f"),
                                                   "x_PoolAmount": format(amount.normalize(), "f")}, sort_keys=True)})
    return out


def _listed_targets(pool: Pool) -> list[str]:
    """The target values a pool names itself (a fixed split's, an explicit ``values`` list)."""
    if pool.method == "fixed":
        return list(pool.targets.split)
    return list(pool.targets.values) if isinstance(pool.targets.values, list) else []


def _allowlisted(rules: Rules, dimension: str, value: str, period: str | None) -> bool:
    """Whether ``value`` is on its dimension's allowlist on some day of the month ``period`` (no allowlist: always).
    Allowlist changes are never retroactive: a value ended in April gets no share of May's pools."""
    name = rules.dimensions[dimension].allowlist
    if not name or not period:
        return True
    year, mon = map(int, period.split("-"))
    first, after = date(year, mon, 1), date(year + mon // 12, mon % 12 + 1, 1)
    return any(e.value == value and (e.valid_from is None or e.valid_from < after) and (e.valid_to is None or e.valid_to > first)
               for e in rules.allowlists[name])


def _is(column: str, value: str | None) -> str:
    """SQL: ``column`` is ``value``, NULL-safe (rows without a BillingCurrency are a currency of their own)."""
    return f"{ident(column)} IS NOT DISTINCT FROM {'NULL' if value is None else literal(value)}"


def _weights(con: duckdb.DuckDBPyConnection, pool: Pool, target: str, period: str | None,
             currency: str | None) -> dict[str, Decimal]:
    """Target value -> weight in one period and currency (negative weights count as 0)."""
    if pool.method == "fixed":
        return {k: Decimal(v) for k, v in pool.targets.split.items()}
    explicit = pool.targets.values if isinstance(pool.targets.values, list) else None
    cats = ", ".join(literal(c) for c in pool.weight.charge_categories)
    costs = dict(con.execute(f"""SELECT {ident(target)}, CAST(sum(x_Amount) AS VARCHAR) FROM rows
        WHERE _pool IS NULL AND {ident(target + 'Status')} = 'allocated' AND {_is('x_Period', period)}
          AND {_is('BillingCurrency', currency)} AND ChargeCategory IN ({cats}) GROUP BY ALL""").fetchall())
    costs = {k: max(Decimal(v), Decimal(0)) for k, v in costs.items()}
    if pool.method == "even":
        chosen = explicit if explicit is not None else [k for k, v in costs.items() if v > 0]
        return {k: Decimal(1) for k in chosen}
    if explicit is not None:
        return {k: costs.get(k, Decimal(0)) for k in explicit}
    return {k: v for k, v in costs.items() if v > 0}


#: :func:`pool_period_id` of the pooled ``rows`` in SQL.
POOL_PERIOD_ID_SQL = "_pool || '/' || coalesce(x_Period, '') || '/' || coalesce(BillingCurrency, '')"


def pool_period_id(pool: str, period: str | None, currency: str | None) -> str:
    """A shared row's ``x_PoolPeriodId``: ``<pool>/<yyyy-mm>/<currency>`` (empty where the rows have none)."""
    return f"{pool}/{period or ''}/{currency or ''}"


def _table_from(con: duckdb.DuckDBPyConnection, name: str, shared: list[dict], rules: Rules, dims: list[str],
                common: str) -> None:
    """The shared rows as a table with the direct rows' columns."""
    cols: dict[str, list] = {k: [] for k in ("x_PoolPeriodId", "x_Period", "BillingCurrency", "x_Amount", "AllocatedMethodId",
                                             "AllocatedMethodDetails")}
    for c in dims:
        for s in resolve.SUFFIXES:
            cols[f"{c}{s}"] = []
    for row in shared:
        pool: Pool = row["pool"]
        target = rules.column(pool.targets.dimension)
        cols["x_PoolPeriodId"].append(pool_period_id(pool.id, row["period"], row["currency"]))
        cols["x_Period"].append(row["period"])
        cols["BillingCurrency"].append(row["currency"])
        cols["x_Amount"].append(row["amount"])
        cols["AllocatedMethodId"].append(f"pool:{pool.id}:{pool.method}")
        cols["AllocatedMethodDetails"].append(row["details"])
        for c in dims:
            value = row["target"] if c == target else (row["others"].get(c) or UNALLOCATED)
            cols[c].append(value)
            cols[f"{c}Status"].append(STATUS.get(value, "allocated"))
            cols[f"{c}Reason"].append((row["reason"] or "pool") if value == UNALLOCATED else None)
            cols[f"{c}Source"].append("pool" if c == target else "pool_members")
            cols[f"{c}TagKey"].append(None)
            cols[f"{c}RawValue"].append(None)
    types = {k: pa.string() for k in cols} | {"x_Amount": pa.decimal128(38, 18)}  # already rounded to amount_scale
    table = pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()})
    con.register("shared_arrow", table)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {name} AS SELECT {common}, 'shared' AS x_AllocationKind,
        CAST(NULL AS VARCHAR) AS x_SourceRowId, CAST(strptime(x_Period || '-01', '%Y-%m-%d') AS TIMESTAMPTZ) AS ChargePeriodStart,
        * FROM shared_arrow""")
    con.unregister("shared_arrow")


def _check(con: duckdb.DuckDBPyConnection, out: str, rules: Rules, dims: list[str]) -> dict:
    """I1-I3 on the written file against the source; raises ``AllocationMismatch`` when one does not hold."""
    written = scan('read_parquet', literal(out))
    i1 = con.execute(f"""SELECT count(*) FILTER (WHERE o.x_SourceRowId IS NULL OR o.x_Amount <> r.x_Amount),
        (SELECT count(*) FROM rows WHERE _pool IS NULL), (SELECT count(*) FROM {written} WHERE x_AllocationKind = 'direct')
        FROM rows r LEFT JOIN {written} o USING (x_SourceRowId) WHERE r._pool IS NULL""").fetchone()
    i2 = con.execute(f"""SELECT count(*) FROM (SELECT {POOL_PERIOD_ID_SQL} AS id, sum(x_Amount) AS a
        FROM rows WHERE _pool IS NOT NULL GROUP BY ALL) m FULL JOIN (SELECT x_PoolPeriodId AS id, sum(x_Amount) AS a
        FROM {written} WHERE x_AllocationKind = 'shared' GROUP BY ALL) s USING (id)
        WHERE coalesce(m.a, 0) <> coalesce(s.a, 0)""").fetchone()[0]
    i3 = con.execute(f"""SELECT count(*) FROM (SELECT BillingCurrency, x_Period, sum(x_Amount) AS a FROM rows GROUP BY ALL) i
        FULL JOIN (SELECT BillingCurrency, x_Period, sum(x_Amount) AS a FROM {written} GROUP BY ALL) o
        ON i.BillingCurrency IS NOT DISTINCT FROM o.BillingCurrency AND i.x_Period IS NOT DISTINCT FROM o.x_Period
        WHERE i.a IS DISTINCT FROM o.a""").fetchone()[0]
    ok = {"I1": i1[0] == 0 and i1[1] == i1[2], "I2": i2 == 0, "I3": i3 == 0}
    if not all(ok.values()):
        bad = ", ".join(k for k, v in ok.items() if not v)
        raise HubError(f"allocation does not add up ({bad}); nothing was written", file="config/allocation.json",
                       code="AllocationMismatch")
    totals_in = _totals(con, "rows", rules.amount_scale)
    totals_out = _totals(con, written, rules.amount_scale)
    rows_in = con.execute("SELECT count(*) FROM rows").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM {written}").fetchone()[0]
    delta = con.execute("SELECT CAST(coalesce(sum(abs(x_Amount - _exact)), 0) AS VARCHAR) FROM rows").fetchone()[0]
    status = {}
    for c in dims:
        status[c] = {s: v for s, v in con.execute(f"SELECT {ident(c + 'Status')}, "
                                                  f"CAST(CAST(sum(x_Amount) AS DECIMAL(38,{rules.amount_scale})) AS VARCHAR) "
                                                  f"FROM {written} GROUP BY ALL ORDER BY ALL").fetchall()}
    pools = dict(con.execute("SELECT _pool, count(*) FROM rows WHERE _pool IS NOT NULL GROUP BY ALL").fetchall())
    return {"rows": rows, "rowsIn": rows_in, "totalsIn": totals_in, "totalsOut": totals_out,
            "allocation": {"invariants": ok, "configVersion": rules.version_hash(), "costMetric": rules.cost_metric,
                           "quantizationDelta": delta, "statusTotals": status, "pooledRows": pools}}


#: A row's currency as a key of per-currency totals: rows without a BillingCurrency are ``""`` (as in x_PoolPeriodId).
CURRENCY_KEY_SQL = "coalesce(BillingCurrency, '')"


def _totals(con: duckdb.DuckDBPyConnection, relation: str, scale: int) -> dict[str, dict[str, str]]:
    """Currency (``""``: none) -> the sum of ``x_Amount``, written with the ``amount_scale`` decimals its rows have."""
    return {c: {"x_Amount": a} for c, a in con.execute(
        f"SELECT {CURRENCY_KEY_SQL}, CAST(CAST(sum(x_Amount) AS DECIMAL(38,{scale})) AS VARCHAR) FROM {relation} "
        "GROUP BY ALL ORDER BY ALL").fetchall()}
