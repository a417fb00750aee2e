"""Which transform an export goes through, and the reconciliation of what went in with what came out."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from decimal import Context, Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.sqltypes import BOOLEAN, VARCHAR, DuckDBPyType

from hub import convert
from hub.export_schemas import ExportSchema
from hub.store import Store, month_folder
from transforms import backfill, commitments, costs, legacy_costs, prices
from transforms.costs import Lineage
from transforms.typing import DECIMAL, DOUBLE_PREFIX, ROUNDED, ident, literal, scan

LEGACY = ("actualcost", "amortizedcost")
#: Enough digits to add DECIMAL(38,18) sums exactly.
EXACT = Context(prec=80)
SCALE = Decimal(1).scaleb(-18)
#: The tap sums DECIMAL(38,18) amounts in this type: room for any number of rows, never a silent overflow.
WIDE = pa.decimal256(76, 18)


def row_filter(schema: ExportSchema, present: set[str], paired: legacy_costs.Paired = None) -> str:
    """Rows of the typed input that the dataset keeps (all, except in a legacy actual-cost export whose month has
    amortized-cost data: ``paired``, its days, see :mod:`hub.sources.msexports_pairing`)."""
    if schema.export_type.lower() in LEGACY:
        return legacy_costs.row_filter(schema.export_type, present, paired=paired)
    return "true"


def doubles(schema: ExportSchema) -> tuple[str, ...]:
    """Decimal columns the dataset's transform does double-precision arithmetic on (typed twice, see
    :func:`transforms.typing.project`)."""
    return backfill.DOUBLES if schema.export_type.lower() == "focuscost" else ()


def transform_sql(con: duckdb.DuckDBPyConnection, schema: ExportSchema, source: str, lineage: Lineage,
                  price_table: str | None, *, filtered: bool = False, check: costs.Check | None = None,
                  closed: bool = False, present: dict[str, str] | None = None, paired: legacy_costs.Paired = None) -> str:
    """The normalization query of one typed part for its dataset (for Costs a :class:`transforms.sqlchain.Query`
    that knows its columns). Columns the mapping does not know are kept (in Costs with an ``x_`` prefix).
    ``filtered``: the source already applies :func:`row_filter`; ``check``: a condition on the finished Costs
    rows (:func:`transforms.costs.finish`); ``closed``: see :func:`transforms.costs.finish`; ``present``: the
    source's columns when already known; ``paired``: the days a legacy actual-cost export's month has amortized-cost
    data of."""
    present = present or columns(con, source)
    mapped = {c.target.lower() for c in schema.columns}
    extras = [c for c in present if c.lower() not in mapped and not c.startswith(DOUBLE_PREFIX) and c != ROUNDED]
    kind = schema.export_type.lower()
    version, time = lineage.version, lineage.ingestion_time
    if kind == "focuscost":
        return costs.costs_sql(source, present, lineage, prices=price_table, extras=extras, check=check, closed=closed)
    if kind in LEGACY:
        legacy = legacy_costs.legacy_sql(source, set(present), schema.export_type, filter_rows=not filtered, paired=paired,
                                         extras=extras)
        return costs.costs_sql(f"({legacy})", columns(con, f"({legacy})"), lineage, prices=price_table, check=check,
                               closed=closed, extras=extras)
    if ROUNDED in present:
        source = f"(SELECT * EXCLUDE ({ident(ROUNDED)}) FROM {source})"
    builders = {"pricesheet": prices.prices_sql, "reservationdetails": commitments.commitment_usage_sql,
                "reservationrecommendations": commitments.recommendations_sql,
                "reservationtransactions": commitments.transactions_sql}
    if kind not in builders:
        raise ValueError(f"no transform for {schema.export_type}")
    return builders[kind](source, set(present), ingestion_time=time, version=version, extras=extras)


def columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


@dataclass
class InputSummary:
    """What one typed input part holds: rows, rows the dataset leaves out, totals of the kept rows per currency."""

    rows: int = 0
    dropped: int = 0
    totals: dict[str, dict[str, str]] = field(default_factory=dict)
    #: rows with a number rounded to 18 decimals (:data:`transforms.typing.ROUNDED`)
    rounded: int = 0

    def add(self, other: InputSummary) -> None:
        self.rows += other.rows
        self.dropped += other.dropped
        self.rounded += other.rounded
        add_totals(self.totals, other.totals)


def add_totals(into: dict[str, dict[str, str]], totals: dict[str, dict[str, str]]) -> None:
    """``totals`` added to ``into`` (``{currency: {amount: decimal text}}``), exactly."""
    for cur, sums in totals.items():
        mine = into.setdefault(cur, {})
        for name, value in sums.items():
            mine[name] = format(EXACT.add(Decimal(mine.get(name, "0")), Decimal(value)), "f")


def same_totals(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> bool:
    """Whether two totals are the same numbers per currency and amount (``1.50`` = ``1.5``)."""
    def numbers(totals: dict[str, dict[str, str]]) -> dict:
        return {c: {k: Decimal(v).normalize() for k, v in sums.items()} for c, sums in totals.items()}

    return numbers(a) == numbers(b)


class InputTap:
    """Rows, left-out rows and totals of a typed part, taken while the normalization query reads it.

    :meth:`wrap` puts a side-effect function in the WHERE clause right above the typed input: DuckDB hands it
    each vector of rows (as Arrow arrays, about 2,000 rows) before any rule runs; it counts and sums them and
    returns the dataset's row filter (:func:`row_filter`), so it is the only filter there and sees every row
    (the transform must not filter again: ``transform_sql(..., filtered=True)``). So the input is counted from
    the typed values themselves, independently of the transform, and a CSV part is parsed once, not twice.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, schema: ExportSchema, present: set[str], name: str, *,
                 paired: legacy_costs.Paired = None) -> None:
        spec = schema.totals
        self.name = name
        self.amounts = {out: col for out, col in spec["amounts"].items() if col in present} if spec else {}
        # keyed as the rules write it: ` usd` is USD (transforms.costs)
        self.currency = f"upper(trim(CAST({ident(spec['currency'])} AS VARCHAR)))" if spec else "CAST(NULL AS VARCHAR)"
        self.keep = f"coalesce(({row_filter(schema, present, paired)}), false)"
        self.rounded = ident(ROUNDED) if ROUNDED in present else "false"
        self.summary = InputSummary()
        self._lock = threading.Lock()
        # DuckDB reads the arity from the function's signature: one parameter per amount
        take = {0: lambda c, k, r: self._take(c, k, r), 1: lambda c, k, r, a: self._take(c, k, r, a),
                2: lambda c, k, r, a, b: self._take(c, k, r, a, b)}[len(self.amounts)]
        con.create_function(name, take, [VARCHAR, BOOLEAN, BOOLEAN] + [DuckDBPyType(DECIMAL)] * len(self.amounts), BOOLEAN,
                            type="arrow", null_handling="special", side_effects=True)

    def wrap(self, source: str) -> str:
        """``source`` with this tap in its path: the rows the dataset keeps."""
        args = ", ".join([self.currency, self.keep, self.rounded, *(ident(c) for c in self.amounts.values())])
        return f"(SELECT * FROM {source} AS t WHERE {self.name}({args}))"

    def _take(self, currency: pa.ChunkedArray, keep: pa.ChunkedArray, rounded: pa.ChunkedArray,
              *amounts: pa.ChunkedArray) -> pa.ChunkedArray:
        n = len(keep)
        kept = pc.sum(keep).as_py() or 0
        part = InputSummary(n, n - kept, rounded=pc.sum(rounded).as_py() or 0)
        names = list(self.amounts)
        if kept and names:
            first = currency[0]  # an Arrow scalar: comparing with a Python str costs 30 times more
            if kept == n and currency.null_count == 0 and pc.all(pc.equal(currency, first)).as_py():  # the usual vector
                part.totals[first.as_py()] = {name: _money(_exact_sum(v)) for name, v in zip(names, amounts, strict=True)}
            else:  # per currency (a null one as ""); no Python scalar, no group_by: they import pandas (validate.int64_values)
                sums: dict[str, list[Decimal]] = {}
                for value in pc.unique(currency):
                    mask = pc.and_(keep, pc.equal(currency, value) if value.is_valid else pc.is_null(currency))
                    if not pc.any(mask).as_py():
                        continue
                    total = sums.setdefault(value.as_py() or "", [Decimal(0)] * len(names))
                    for i, v in enumerate(amounts):
                        total[i] = EXACT.add(total[i], _exact_sum(pc.filter(v, mask)))  # not Python's 28 digits
                for key, total in sums.items():
                    part.totals[key] = {name: _money(t) for name, t in zip(names, total, strict=True)}
        with self._lock:
            self.summary.add(part)
        return keep


def _exact_sum(values: pa.ChunkedArray) -> Decimal:
    """The exact sum of a decimal128 array (nulls count 0), from its two's-complement 128-bit integers, summed in
    32-bit pieces (the top one signed) so no int64 sum can overflow (Arrow's own decimal128 sum wraps around
    silently; a cast to decimal256 first costs several times more)."""
    if not pa.types.is_decimal128(values.type):
        return pc.sum(pc.cast(values, WIDE)).as_py() or Decimal(0)
    total = 0
    for chunk in values.chunks:
        if not len(chunk) or chunk.null_count == len(chunk):
            continue
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=2 * (chunk.offset + len(chunk)))
        words = words[2 * chunk.offset:].reshape(-1, 2)
        if chunk.null_count:
            valid = np.unpackbits(np.frombuffer(chunk.buffers()[0], dtype=np.uint8), bitorder="little")
            words = words[valid[chunk.offset:chunk.offset + len(chunk)].astype(bool)]
        high, low = words[:, 1], words[:, 0].view(np.uint64)
        mask = np.uint64(0xFFFFFFFF)
        total += ((int((high >> 32).sum()) << 96) + (int((high.view(np.uint64) & mask).sum()) << 64)
                  + (int((low >> np.uint64(32)).sum()) << 32) + int((low & mask).sum()))
    return Decimal(total).scaleb(-values.type.scale, context=EXACT)


def _money(value: Decimal | None) -> str:
    """A sum as DuckDB prints a DECIMAL(38,18) (an empty sum is 0)."""
    return format((value or Decimal(0)).quantize(SCALE, context=EXACT), "f")


def output_totals(con: duckdb.DuckDBPyConnection, spec: dict, source: str) -> tuple[dict, dict]:
    """Totals of written rows per currency (``spec``: an export type's ``totals`` in ``datasets.json``): as written,
    and as ingested (changed values taken at their original value from ``x_SourceValues``), which must equal the
    input totals."""
    if not spec:
        return {}, {}
    present = set(columns(con, source))
    cur = ident(spec["outCurrency"])
    amounts = {a: ident(a) for a in spec["amounts"]}
    if "x_SourceValues" not in present:
        written = convert.totals(con, source, cur, amounts)
        return written, written
    # a substring test first: most rows' x_SourceValues name other columns, and JSON parsing costs far more
    original = {f"original:{a}": (f"CASE WHEN contains(x_SourceValues, {literal(json.dumps(a) + ':')}) "
                                  f"AND json_exists(x_SourceValues, {literal('$.' + a)}) "
                                  f"THEN CAST(json_extract_string(x_SourceValues, {literal('$.' + a)}) AS DECIMAL(38,18)) "
                                  f"ELSE {ident(a)} END") for a in spec["amounts"]}
    both = convert.totals(con, source, cur, {**amounts, **original})  # one scan for both
    return ({c: {a: v[a] for a in amounts} for c, v in both.items()},
            {c: {a: v[f"original:{a}"] for a in amounts} for c, v in both.items()})


def month_files(store: Store, dataset: str, year: int, month: int) -> list[str]:
    """Every Parquet file of a dataset's month (all scopes), relative to the store."""
    return store.files(month_folder(dataset, year, month))


#: The columns of a normalized price sheet the backfill's lookup reads (:func:`transforms.backfill.price_keys_sql`).
PRICE_SHEET = ("x_BillingProfileId", "x_SkuMeterId", "x_BillingAccountAgreement", "x_SkuOfferId", "x_SkuPriceType",
               "x_SkuTier", "ContractedUnitPrice", "ListUnitPrice", "x_PricingBlockSize", "PricingUnit")


def load_prices(con: duckdb.DuckDBPyConnection, store: Store, year: int, month: int, tmp: str) -> str | None:
    """Create ``hub_prices`` (one row per key: the key holds the sheet's month) from the price sheets of the month and
    the month before in the lake (:data:`PRICE_SHEET`: a folder's late rows of the month before take that month's
    prices); None when there are none."""
    before = (year, month - 1) if month > 1 else (year - 1, 12)
    files = month_files(store, "Prices", *before) + month_files(store, "Prices", year, month)
    if not files:
        return None
    local = []
    for i, rel in enumerate(files):
        path = store.local_path(rel)
        if path is None:
            path = os.path.join(tmp, f"prices-{i}-" + rel.replace("/", "_"))
            store.get_file(rel, path)
        local.append(path)
    # only price sheets (their key and price columns): other prices of the month (another cloud's, custom data) are
    # no Microsoft meter's and cannot be looked up
    sheets = [(p, rel) for p, rel in zip(local, files, strict=True)
              if set(PRICE_SHEET) <= {n for (n,) in con.execute(f"SELECT name FROM parquet_schema({literal(p)})").fetchall()}]
    if not sheets:
        return None
    # the month comes from the folder: keep the lake path in `filename` for local copies too; sheets of one month may
    # carry different columns (an unknown one kept): by name, each file's own set
    listing = " UNION ALL BY NAME ".join(
        f"SELECT * REPLACE ({literal('/' + rel)} AS filename) FROM {scan('read_parquet', literal(p), 'filename = true')}"
        for p, rel in sheets)
    con.execute(f"CREATE OR REPLACE TEMP TABLE hub_prices AS {backfill.price_keys_sql(f'({listing})')}")
    dupes = con.execute("SELECT count(*) - count(DISTINCT key) FROM hub_prices").fetchall()[0][0]
    assert dupes == 0, "price keys must be unique, or the backfill join could multiply cost rows"
    return "hub_prices"
