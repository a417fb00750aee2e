"""Prices arrived after their month's costs: re-normalize the affected Costs folders from the lake.

Triggered when a Prices run commits. Every Costs folder of that month holding rows whose price the
sheet may fill (``x_SourceChanges`` says a price was missing and no price-sheet value was used yet) is
rewritten through the same price layer as ingestion (originals restored from ``x_SourceValues``), via
the same staging + all-or-nothing swap and a run record, so the result equals costs ingested after prices.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import time

import duckdb

from hub import convert, engine, lookups, normalize, rewrite, runs
from hub.errors import HubError
from hub.export_schemas import totals_spec
from hub.runs import RunRecord
from hub.store import Store, month_folder
from hub.validate import validate_files
from transforms import backfill, costs
from transforms.sqlchain import Chain

RENORMALIZE = "renormalize:"


def renormalize_sql(source: str, columns: list[str], price_table: str) -> str:
    """Lake Costs rows with the price layer applied again from their original values."""
    types = dict(costs.output_columns())
    chain = Chain(source, cols=set(columns))
    backfill.restore_sql(chain, costs.TRACKED, {**costs.input_columns(), **types}, costs.SPELLING_CODES)
    backfill.price_layer(chain, price_table)
    extras = [c for c in columns if c not in types]
    return costs.finish(chain, extras)


def renormalize_month(store: Store, year: int, month: int, trigger: str, *, late: bool = False) -> list[RunRecord]:
    """Re-normalize every Costs folder of a month that the month's prices (and the month before's, for its late rows)
    can improve; ``late``: only folders whose rows of the month before can (the prices of that month committed).
    Custom-data folders (a ``manifest.json`` of their own) are left to their source: their files may not be normalized
    yet (a drop arriving with the price sheet), and the source owns what it wrote there."""
    files = normalize.month_files(store, "Costs", year, month)
    custom = {posixpath.dirname(rel) for rel in store.files(month_folder("Costs", year, month), "/manifest.json")}
    folders: dict[str, list[str]] = {}
    for rel in files:
        if posixpath.dirname(rel) not in custom:
            folders.setdefault(posixpath.dirname(rel), []).append(rel)
    done = []
    with tempfile.TemporaryDirectory(prefix="hub-renorm-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            lookups.register(con)
            price_table = normalize.load_prices(con, store, year, month, tmp)
            if price_table is None:
                return []
            for folder, rels in sorted(folders.items()):
                local = [rewrite.local_copy(store, rel, tmp) for rel in rels]
                early = f" AND ChargePeriodStart < TIMESTAMPTZ '{year:04d}-{month:02d}-01 00:00:00+00'" if late else ""
                need = con.execute(f"SELECT count(*) FROM {convert.parquet_source(local)} "
                                   f"WHERE {backfill.needs_prices_sql()}{early}").fetchall()[0][0]
                if need:
                    done.append(_rewrite(store, con, folder, rels, local, price_table, trigger, tmp))
        finally:
            con.close()
    return done


def _rewrite(store: Store, con: duckdb.DuckDBPyConnection, folder: str, rels: list[str], local: list[str],
             price_table: str, trigger: str, tmp: str) -> RunRecord:
    started = time.perf_counter()
    digest = hashlib.sha1(f"{folder}|{trigger}".encode()).hexdigest()
    rec = RunRecord(key=f"renorm-{digest[:16]}", manifest=f"{RENORMALIZE}{folder}", manifestSha256=digest, runId=trigger,
                    exportType="Renormalize", dataset="Costs", destination=folder,
                    staging=engine.new_staging(f"renorm-{digest[:16]}"),
                    month=folder.split("/")[2] + "-" + folder.split("/")[3], attempts=1)
    rec.state = "converting"
    runs.save(store, rec)
    try:
        before = convert.parquet_source(local)
        spec = totals_spec("FocusCost")  # BilledCost, EffectiveCost per currency
        _, rec.totalsIn = normalize.output_totals(con, spec, before)
        outputs = rewrite.rewrite_files(store, con, rec, rels, local,
                                        lambda source, columns: renormalize_sql(source, columns, price_table), tmp)
        rec.rowsIn = convert.count_rows(con, local)
        rec.rowsOut = sum(p.rows for p in rec.parts)
        rec.totalsOut, rec.totalsIngested = normalize.output_totals(con, spec, convert.parquet_source(outputs))
        if rec.rowsOut != rec.rowsIn or rec.totalsIngested != rec.totalsIn:
            raise HubError(f"re-normalization changed rows or ingested totals ({rec.rowsIn} -> {rec.rowsOut})",
                           file=folder, code="InternalError")
        report = validate_files(con, outputs, label=folder)
        rec.validation = {"rows": report.rows, "checks": report.checked, "violations": report.violations,
                          "rules": report.summary()}
        rec.state = "swapping"
        runs.save(store, rec)
        engine.commit(store, rec)
    except HubError as exc:
        runs.fail(store, rec, exc.code, exc.message, exc.file)
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec

