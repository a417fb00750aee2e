"""Which transform an export goes through, and the reconciliation of what went in with what came out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Context, Decimal

import duckdb

from hub import convert
from hub.export_schemas import ExportSchema
from hub.store import Store, month_folder
from transforms import backfill, commitments, costs, legacy_costs, prices
from transforms.costs import Lineage
from transforms.typing import ident, literal

LEGACY = ("actualcost", "amortizedcost")
#: Enough digits to add DECIMAL(38,18) sums exactly.
EXACT = Context(prec=80)


def row_filter(schema: ExportSchema, present: set[str]) -> str:
    """Rows of the typed input that the dataset keeps (all, except in the legacy actual-cost export)."""
    if schema.export_type.lower() in LEGACY:
        return legacy_costs.row_filter(schema.export_type, present)
    return "true"


def transform_sql(con: duckdb.DuckDBPyConnection, schema: ExportSchema, source: str, lineage: Lineage,
                  price_table: str | None) -> str:
    """The normalization query of one typed part for its dataset. Columns the mapping does not know are
    kept (in Costs with an ``x_`` prefix)."""
    present = _columns(con, source)
    mapped = {c.target.lower() for c in schema.columns}
    extras = [c for c in present if c.lower() not in mapped]
    kind = schema.export_type.lower()
    version, time = lineage.version, lineage.ingestion_time
    if kind == "focuscost":
        return costs.costs_sql(source, present, lineage, prices=price_table, extras=extras)
    if kind in LEGACY:
        legacy = f"({legacy_costs.legacy_sql(source, set(present), schema.export_type)})"
        return costs.costs_sql(legacy, _columns(con, legacy), lineage, prices=price_table)
    builders = {"pricesheet": prices.prices_sql, "reservationdetails": commitments.commitment_usage_sql,
                "reservationrecommendations": commitments.recommendations_sql,
                "reservationtransactions": commitments.transactions_sql}
    if kind not in builders:
        raise ValueError(f"no transform for {schema.export_type}")
    return builders[kind](source, set(present), ingestion_time=time, version=version, extras=extras)


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


@dataclass
class InputSummary:
    """What one typed input part holds: rows, rows the dataset leaves out, totals of the kept rows per currency."""

    rows: int = 0
    dropped: int = 0
    totals: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, other: InputSummary) -> None:
        self.rows += other.rows
        self.dropped += other.dropped
        for cur, sums in other.totals.items():
            mine = self.totals.setdefault(cur, {})
            for name, value in sums.items():
                mine[name] = format(EXACT.add(Decimal(mine.get(name, "0")), Decimal(value)), "f")


def input_summary(con: duckdb.DuckDBPyConnection, schema: ExportSchema, source: str, *, file: str) -> InputSummary:
    """Rows, left-out rows and totals (as output amount names) of a typed part, in one scan."""
    try:
        present = set(_columns(con, source))
        keep = row_filter(schema, present)
        spec = schema.totals
        amounts = {out: ident(col) for out, col in spec["amounts"].items() if col in present} if spec else {}
        currency = f"CAST({ident(spec['currency'])} AS VARCHAR)" if spec else "NULL"
        sums = "".join(f", CAST(coalesce(sum({e}) FILTER (WHERE _keep), 0) AS VARCHAR)" for e in amounts.values())
        rows = con.execute(f"SELECT coalesce({currency}, ''), count(*), count(*) FILTER (WHERE NOT _keep), "
                           f"count(*) FILTER (WHERE _keep){sums} FROM (SELECT *, coalesce(({keep}), false) AS _keep "
                           f"FROM {source} AS t) GROUP BY 1 ORDER BY 1").fetchall()
    except duckdb.Error as exc:
        raise convert.map_error(exc, file=file) from None
    out = InputSummary(sum(r[1] for r in rows), sum(r[2] for r in rows))
    if amounts:
        out.totals = {r[0]: {name: format(Decimal(v), "f") for name, v in zip(amounts, r[4:], strict=True)} for r in rows if r[3]}
    return out


def output_totals(con: duckdb.DuckDBPyConnection, schema: ExportSchema, source: str) -> tuple[dict, dict]:
    """Totals of written rows per currency: as written, and as ingested (changed values taken at their
    original value from ``x_SourceValues``), which must equal the input totals."""
    spec = schema.totals
    if not spec:
        return {}, {}
    present = set(_columns(con, source))
    cur = ident(spec["outCurrency"])
    written = convert.totals(con, source, cur, {a: ident(a) for a in spec["amounts"]})
    if "x_SourceValues" not in present:
        return written, written
    original = {a: (f"CASE WHEN x_SourceValues IS NOT NULL AND json_exists(x_SourceValues, {literal('$.' + a)}) THEN "
                    f"CAST(json_extract_string(x_SourceValues, {literal('$.' + a)}) AS DECIMAL(38,18)) ELSE {ident(a)} END")
                for a in spec["amounts"]}
    return written, convert.totals(con, source, cur, original)


def month_files(store: Store, dataset: str, year: int, month: int) -> list[str]:
    """Every Parquet file of a dataset's month (all scopes), relative to the store."""
    base = store.full(month_folder(dataset, year, month))
    if not store.fs.exists(base):
        return []
    return sorted(store.rel(p) for p in store.fs.glob(f"{base}/**/*.parquet"))


def load_prices(con: duckdb.DuckDBPyConnection, store: Store, year: int, month: int, tmp: str) -> str | None:
    """Create ``hub_prices`` (one row per key) from the month's Prices in the lake; None when there are none."""
    files = month_files(store, "Prices", year, month)
    if not files:
        return None
    local = []
    for i, rel in enumerate(files):
        path = store.local_path(rel)
        if path is None:
            path = os.path.join(tmp, f"prices-{i}-" + rel.replace("/", "_"))
            store.get_file(rel, path)
        local.append(path)
    # the month comes from the folder: keep the lake path in `filename` for local copies too
    listing = " UNION ALL ".join(
        f"SELECT * REPLACE ({literal('/' + rel)} AS filename) FROM read_parquet({literal(p)}, filename = true)"
        for p, rel in zip(local, files, strict=True))
    con.execute(f"CREATE OR REPLACE TEMP TABLE hub_prices AS {backfill.price_keys_sql(f'({listing})')}")
    dupes = con.execute("SELECT count(*) - count(DISTINCT key) FROM hub_prices").fetchall()[0][0]
    assert dupes == 0, "price keys must be unique, or the backfill join could multiply cost rows"
    return "hub_prices"
