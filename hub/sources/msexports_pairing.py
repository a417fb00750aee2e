"""An amortized-cost export commits: take the usage rows out of its month's actual-cost export.

Microsoft's legacy cost exports come in two flavours of the same month (:mod:`transforms.legacy_costs`). Alone, an
ActualCost export gives every row (EffectiveCost taken from the actual cost, flagged ``EffectiveCostFromActualCost``),
so users who export only actual cost get all their costs. Once the AmortizedCost export of the same scope and month
is in the lake it carries those usage rows (with amortized EffectiveCost), so the actual export keeps only its
commitment purchases and refunds: BilledCost then totals the actual export's cost and EffectiveCost the amortized
export's, and nothing is counted twice, whichever export arrives first.

Pairing goes by days: the amortized export carries only the days its delivery holds (a month-to-date run of the 10th
holds the 1st to the 9th), so the actual export's usage rows of the other days stay (flagged) until an amortized
delivery holding them arrives.

- Actual after amortized: the actual export's conversion leaves the usage rows of the amortized days out (``paired``).
- Amortized after actual: before the amortized export is swapped in, :func:`pair_actual` rewrites the actual folder
  without its flagged rows of the days the amortized delivery holds (through staging and the swap, with its own run
  record), so readers may briefly see fewer rows, never the same cost twice. A crash in between is finished by the
  next run (the amortized run is still ``swapping`` and pairs again; pairing an already paired folder does nothing).
"""

from __future__ import annotations

import calendar
import hashlib
import os
import posixpath
import tempfile
import time
import uuid
from datetime import date

from hub import catalog, convert, deliveries, normalize, rewrite, runs, swap
from hub.errors import HubError
from hub.export_schemas import totals_spec
from hub.runs import RunRecord
from hub.store import STAGING, Store, dataset_folder
from transforms import legacy_costs
from transforms.typing import literal

PAIR = "pair:"
#: The x_SourceChanges code of actual-cost rows an amortized export replaces.
FLAG = "EffectiveCostFromActualCost"


def _folder(rec: RunRecord, subfolder: str) -> str | None:
    if not (rec.month and rec.scope is not None):
        return None
    year, month = map(int, rec.month.split("-"))
    return dataset_folder("Costs", year, month, rec.scope, subfolder)


def amortized_days(store: Store, rec: RunRecord, records: list[RunRecord]) -> legacy_costs.Paired:
    """The days the amortized-cost export of ``rec``'s scope and month in the lake holds (its committed delivery's,
    :func:`hub.deliveries.delivery_days`; the whole month for files without one); None when there is none."""
    folder = _folder(rec, legacy_costs.AMORTIZED)
    if not (folder and store.parquet_files(folder)):
        return None
    committed = deliveries.committed_deliveries(records, folder)
    return _span(store, committed[-1], store.parquet_files(folder)) if committed else _month_days(rec)


def _span(store: Store, amortized: RunRecord, files: list[str]) -> tuple[str, str]:
    """The days an amortized delivery holds: its period up to the day before it was delivered, widened to the days
    of its rows (``files``), wherever they lie (a run of the 11th holding rows of the 11th, a partial day; a late row
    of the month before; a billing period's days in the next month)."""
    days = [d for d in (deliveries.delivery_days(amortized, store), deliveries.row_days(store, files, None)) if d is not None]
    if not days:
        return _month_days(amortized)
    return min(d[0] for d in days).isoformat(), max(d[1] for d in days).isoformat()


def _month_days(rec: RunRecord) -> tuple[str, str]:
    first = date.fromisoformat(f"{rec.month}-01")
    return first.isoformat(), first.replace(day=calendar.monthrange(first.year, first.month)[1]).isoformat()


def flagged(column_sql: str = "x_SourceChanges") -> str:
    return f"contains(coalesce({column_sql}, ''), {literal(FLAG)})"


def pair_actual(store: Store, amortized: RunRecord) -> RunRecord | None:
    """Rewrite the actual-cost folder of ``amortized``'s scope and month without the rows the amortized export
    replaces (the flagged rows of the days it holds); None when there is nothing to take out. Raises
    :class:`HubError` when the rewrite fails."""
    folder = _folder(amortized, legacy_costs.ACTUAL)
    if folder is None:
        return None
    first, last = _span(store, amortized, store.parquet_files(amortized.staging) if amortized.staging else [])
    replaced = (f"{flagged()} AND CAST(timezone('UTC', ChargePeriodStart) AS DATE) BETWEEN DATE {literal(first)} "
                f"AND DATE {literal(last)}")
    key = "pair-" + hashlib.sha1(folder.encode()).hexdigest()[:16]
    previous = runs.load(store, key)
    if previous is not None and previous.state == "swapping":  # a crash mid-swap: finish it first
        _commit(store, previous)
    files = store.parquet_files(folder)
    if not files:
        return None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hub-pair-") as tmp:
        con = convert.connect(temp_dir=os.path.join(tmp, "spill"))
        try:
            local = [rewrite.local_copy(store, rel, tmp) for rel in files]
            source = convert.parquet_source(local)
            if not con.execute(f"SELECT count(*) FROM {source} WHERE {replaced}").fetchall()[0][0]:
                return None
            rec = RunRecord(key=key, manifest=f"{PAIR}{folder}", manifestSha256=hashlib.sha256(folder.encode()).hexdigest(),
                            runId=amortized.runId, exportType="Pairing", dataset="Costs", destination=folder,
                            staging=f"{STAGING}/{key}.{uuid.uuid4().hex[:8]}", month=amortized.month, scope=amortized.scope,
                            attempts=(previous.attempts if previous else 0) + 1, state="converting")
            runs.save(store, rec)
            spec = totals_spec("ActualCost")
            rec.totalsIn, _ = normalize.output_totals(con, spec, source)
            rec.rowsIn = convert.count_rows(con, local)
            outputs = rewrite.rewrite_files(store, con, rec, files, local,
                                            lambda src, _cols: f"SELECT * FROM {src} WHERE NOT coalesce({replaced}, false)", tmp,
                                            drop_empty=True)
            rec.rowsOut = sum(p.rows for p in rec.parts)
            rec.rowsFiltered = rec.rowsIn - rec.rowsOut
            rec.totalsOut = normalize.output_totals(con, spec, convert.parquet_source(outputs))[0] if outputs else {}
        finally:
            con.close()
    rec.state = "swapping"
    runs.save(store, rec)
    _commit(store, rec)
    rec.seconds = round(time.perf_counter() - started, 3)
    runs.save(store, rec)
    return rec


def _commit(store: Store, rec: RunRecord) -> None:
    """Swap a staged pairing in (idempotent) and check what readers see."""
    assert rec.staging and rec.destination
    names = [posixpath.basename(p.output) for p in rec.parts]
    swap.commit_staged(store, rec.key, rec.staging, rec.destination, names)
    con = catalog.store_connection(store)
    try:
        visible = convert.count_rows(con, [catalog.duck_path(store, r) for r in store.parquet_files(rec.destination)])
    finally:
        con.close()
    if visible != rec.rowsOut:
        raise HubError(f"{visible} rows visible after pairing, {rec.rowsOut} written", file=rec.destination, code="InternalError")
    rec.state, rec.reconciled, rec.error = "committed", True, None
    runs.save(store, rec)
