"""Where ``hub ingest`` spends its time: DuckDB's JSON profile of each part's normalization query, by operator,
with each projection named after the transform step (``transforms.sqlchain.Chain`` step) it computes.

Usage: ``python bench/profile_ingest.py ROOT [--json OUT] [--top N]``

ROOT is a hub root with pending exports (a copy: ingesting deletes the sources). The ingest runs in this
process, exactly as ``hub ingest ROOT`` (``pipelines.ingest.ingest``), with profiling switched on only
around the Costs ``COPY ... TO parquet`` query. Operator times are DuckDB's (summed over its threads, so they
add up to about the query's CPU time); the process's own CPU seconds (``getrusage``) are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hub import (  # noqa: E402
    conversion,
    convert,
    engine,  # noqa: E402
    normalize,
)
from hub.store import Store  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402

PROFILES: list[str] = []
#: Buckets of the Costs query's operators, bottom-up: an operator whose added column (projections; ``*`` at the end
#: matches a prefix), type or text (other operators) matches the anchor starts the bucket; every operator until the
#: next start belongs to it. DuckDB moves the joins above some of the projections that precede them in the SQL.
BUCKETS = (
    ("READ_CSV", "CSV scan (parsing)"),
    ("READ_PARQUET", "Parquet scan"),
    ("(typing)", "typing projection (casts, _dbl_ copies)"),
    ("hub_input", "input tap (rows, totals)"),
    ("AvailabilityZone", "row rules: harmonize, lineage, codes, quantities, fixes, names"),
    ("_rt_key", "ResourceType display-name join (and the projections DuckDB put after it)"),
    ("lower(ChargeCategory)", "enumerations, Tags, period ends, agreement"),
    ("_sel", "price layer: backfill, ContractedCost fix, savings"),
    ("concat_ws(',', _codes, _price_codes)", "x_SourceChanges, x_SourceValues"),
    ("_chk_*", "check tap (doubles, masks, callback)"),
    ("#0", "final casts (ENUMs), nullable union"),
    ("COPY_TO_FILE", "Parquet writer (encode, compress, write)"),
)


#: Operators counted apart wherever DuckDB placed them: (operator type, text in its conditions, bucket).
FLOATING = (("HASH_JOIN", "x_SkuMeterId", "price-sheet join (probe; build included)"),)


def _matches(anchor: str, op_type: str, added: list[str]) -> bool:
    if anchor == op_type:
        return True
    if op_type != "PROJECTION":
        return any(anchor in a for a in added)
    if anchor.endswith("*"):
        return any(a.startswith(anchor[:-1]) for a in added)
    return anchor in added or any(a.startswith(anchor) for a in added if anchor.endswith("("))


#: phase -> [wall seconds, CPU seconds of the process (all threads)]
PHASES: dict[str, list[float]] = {}


def _timed(module: object, name: str, phase: str) -> None:
    """Wrap ``module.name`` to add its wall and process CPU time to ``PHASES[phase]``."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            acc = PHASES.setdefault(phase, [0.0, 0.0])
            acc[0] += time.perf_counter() - t0
            acc[1] += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

    setattr(module, name, wrapper)


def _time_phases() -> None:
    _timed(convert, "source_columns", "read CSV header")
    _timed(normalize, "load_prices", "load the month's prices (hub_prices)")
    _timed(conversion, "_write_part", "normalize + write (COPY, incl. planning)")
    _timed(normalize, "output_totals", "output totals (scan of the written file)")
    _timed(conversion, "tap_report", "FOCUS checks on the file (statistics, one scan)")
    _timed(engine, "commit", "swap and commit (re-count)")


def _profile_copies(folder: str) -> None:
    original = convert.write_parquet

    def write_parquet(con, select, source, out, **kw):  # noqa: ANN001, ANN003, ANN202
        if not kw.get("select_only"):
            return original(con, select, source, out, **kw)
        path = os.path.join(folder, f"profile-{len(PROFILES)}.json")
        con.execute("SET enable_profiling = 'json'")
        con.execute(f"SET profiling_output = '{path}'")
        try:
            return original(con, select, source, out, **kw)
        finally:
            con.execute("SET enable_profiling = 'no_output'")
            PROFILES.append(path)

    convert.write_parquet = write_parquet


def _chain(node: dict) -> list[dict]:
    """Operators from the top down, following the probe side of joins (build sides are attached to their join)."""
    out = []
    while node:
        out.append(node)
        children = node.get("children", [])
        if node.get("type") == "UNION":  # nullable(): the query UNION ALL one never-true row
            children = children[:1]
        node["_build"] = sum(_total(b) for b in children[1:])
        node = children[0] if children else None
    return out


def _total(node: dict) -> float:
    return node.get("timing", 0.0) + sum(_total(c) for c in node.get("children", []))


def report(path: str) -> dict:
    """Operators of one profile, bottom-up, each with what it computes (columns a projection adds) and its bucket."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    ops = list(reversed(_chain(data["operator"][0])))
    rows, previous, at = [], None, -1  # buckets only move forward (the final projection re-adds the first names)
    for op in ops:
        info = op.get("extra_info") or {}
        names = info.get("Projections") if op.get("type") == "PROJECTION" else None
        if isinstance(names, list):
            added = ["(typing)"] if previous is None else [n for n in names if n not in set(previous)]
            label = "adds " + ", ".join(a[:40] for a in added[:4]) + (f", ... ({len(added)})" if len(added) > 4 else "") \
                if added else f"replaces ({len(names)} columns)"
            previous = names
        else:
            added = [str(info.get("Function") or info.get("Expression") or info.get("Conditions") or "")]
            label = added[0][:90]
        for i, (anchor, _) in enumerate(BUCKETS):
            if i > at and _matches(anchor, op.get("type", ""), added):
                at = i
                break
        bucket = BUCKETS[at][1] if at >= 0 else "?"
        for op_type, text, name in FLOATING:
            if op.get("type") == op_type and any(text in a for a in added):
                bucket = name
        seconds = op.get("timing", 0.0) + op.get("_build", 0.0)
        rows.append({"operator": op.get("type"), "seconds": seconds, "label": label, "bucket": bucket})
    buckets: dict[str, float] = {}
    for r in rows:
        buckets[r["bucket"]] = buckets.get(r["bucket"], 0.0) + r["seconds"]
    query = data.get("query", {})
    return {"file": path, "query_cpu": query.get("cpu_time"), "query_wall": query.get("total_time"),
            "operators_total": sum(r["seconds"] for r in rows), "buckets": buckets, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="write the per-operator report here")
    parser.add_argument("--top", type=int, default=None, help="only the N most expensive operators")
    parser.add_argument("--buckets-only", action="store_true", help="print only the per-bucket sums")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="hub-profile-")
    _profile_copies(folder)
    _time_phases()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = ingest(Store(str(args.root)))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"ingest: {wall:.2f} s wall, {cpu:.2f} s CPU (this process), load {os.getloadavg()[0]:.2f}; "
          + ", ".join(f"{r.dataset} {r.state} {r.rowsOut} rows {r.seconds} s" for r in result.all))
    for phase, (w, c) in PHASES.items():
        print(f"  {w:7.2f} s wall {c:7.2f} s CPU  {phase}")
    reports = [report(p) for p in PROFILES]
    for rep in reports:
        print(f"\n{rep['file']}: query {rep['query_wall']:.2f} s wall, {rep['query_cpu']:.2f} s CPU; operators "
              f"{rep['operators_total']:.2f} s")
        if not args.buckets_only:
            for r in rep["rows"] if args.top is None else sorted(rep["rows"], key=lambda r: -r["seconds"])[:args.top]:
                print(f"  {r['seconds']:7.3f}  {r['operator']:<14} {r['label']}")
        print("  by bucket:")
        for name, seconds in rep["buckets"].items():
            print(f"  {seconds:7.3f}  {name}")
    if args.json:
        args.json.write_text(json.dumps({"wall": wall, "cpu": cpu, "phases": PHASES, "reports": reports}, indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
