"""Benchmark: ``hub allocate`` of a lake month against a raw DuckDB copy of the same rows with three tags pulled out.

Usage: ``python bench/allocation.py [--rows 1000000] [--big 4000000] [--repeat 3] [--profile/--no-profile]
[--out bench/RESULTS.md] [--keep DIR]``, or ``python bench/allocation.py --phases ROOT [--month 2024-05]`` to time the
phases of one allocation of a prepared hub (in this process).

A hub is built with a ``--rows`` Costs month: ``hub.sample_data.write_export`` (timed apart), ingested once by
``python -m hub.cli ingest ROOT`` (not timed), then ``config/allocation.json`` written (after the ingest, so the ingest
does not allocate): 3 dimensions (cost_center, product, environment) with 3 to 4 tag-key aliases each, an allowlist of
200 cost centers (100 of them the data's most frequent values, 100 made up), 5 shared-cost pools over cost_center
(proportional, even and fixed; matched on ServiceName / ServiceCategory), and the environment falling back to mappings
on the resource group. Then ``--repeat`` pairs, each step in its own child process (wall time, CPU time and peak RSS
from ``os.wait4``): the raw copy ``COPY (SELECT *, Tags->>'cost-center' AS cc, Tags->>'team' AS product,
Tags->>'env' AS env FROM read_parquet(<the month's lake files>)) TO x.parquet (FORMAT parquet)``, then
``python -m hub.cli allocate ROOT --month 2024-05``; one more pair at ``--big`` rows (0: none) shows whether memory
stays flat. With ``--profile`` (the default) one more allocation of the ``--rows`` hub runs in a child with every
DuckDB statement timed and profiled (:func:`phases`). A dated section is added to (or replaced in) ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import Step, generate, machine, run_child, run_json, table, update_results  # noqa: E402

MONTH = "2024-05"  # hub.sample_data.write_export's default month
#: The tags the raw copy pulls out: the keys the sample data carries (cost-center, team, env).
RAW_COPY = (
    "import sys, json, duckdb\n"
    "con = duckdb.connect()\n"
    "files = ', '.join(\"'\" + f.replace(\"'\", \"''\") + \"'\" for f in json.loads(sys.argv[1]))\n"
    "out = sys.argv[2].replace(\"'\", \"''\")\n"
    "con.execute(f\"COPY (SELECT *, Tags->>'cost-center' AS cc, Tags->>'team' AS product, Tags->>'env' AS env \"\n"
    "            f\"FROM read_parquet([{files}])) TO '{out}' (FORMAT parquet)\")\n"
)
#: The lake's rows, and its most frequent cost-center tag values (half of the allowlist).
SAMPLE = (
    "import sys, json, duckdb\n"
    "con = duckdb.connect()\n"
    "files = ', '.join(\"'\" + f.replace(\"'\", \"''\") + \"'\" for f in json.loads(sys.argv[1]))\n"
    "src = f'read_parquet([{files}])'\n"
    "rows = con.execute(f'SELECT count(*) FROM {src}').fetchone()[0]\n"
    "values = [v for (v, _) in con.execute(f\"SELECT Tags->>'cost-center' AS v, count(*) AS n FROM {src} \"\n"
    "          \"WHERE v IS NOT NULL GROUP BY ALL ORDER BY n DESC, v LIMIT 100\").fetchall()]\n"
    "print(json.dumps({'rows': rows, 'values': values}))\n"
)
TEAMS = ("data", "web", "platform", "ml", "finance", "security")  # hub.sample_data.TEAMS, ENVIRONMENTS
ENVIRONMENTS = ("prod", "dev", "test", "staging")


def rules(values: list[str]) -> dict:
    """The benchmark's allocation rules; ``values``: cost centers that occur in the data (the allowlist's first half)."""
    real = list(dict.fromkeys(values))[:100]
    made_up = [f"CC-{i:04d}" for i in range(200 - len(real))]
    allow = real + made_up
    some = real[:20] or made_up[:20]
    return {
        "version": 1,
        "cost_metric": "EffectiveCost",
        "amount_scale": 10,
        "dimensions": {
            "cost_center": {"tag_keys": ["CostCenter", "cost-center", "costcenter", "kostenstelle"],
                            "allowlist": "cost_centers", "fallback_on": ["missing"]},
            "product": {"tag_keys": ["team", "product", "app"], "value_aliases": {"data": ["data-platform", "dataplatform"]}},
            "environment": {"tag_keys": ["env", "environment", "stage"], "fallback": ["mapping"],
                            "value_aliases": {"prod": ["production", "prd"], "dev": ["development"]}},
        },
        "allowlists": {"cost_centers": [{"value": v} for v in allow]},
        "mappings": [{"id": f"env-{env}", "match": {"x_ResourceGroupName": [f"rg-{team}-{env}" for team in TEAMS]},
                      "set": {"environment": env}} for env in ENVIRONMENTS],
        "pools": [
            {"id": "network", "match": {"ServiceCategory": "Networking"}, "method": "fixed",
             "targets": {"dimension": "cost_center", "split": dict(zip(some[:4], ("40", "30", "20", "10"), strict=True))}},
            {"id": "monitoring", "match": {"ServiceName": "Azure Monitor"}, "method": "proportional",
             "targets": {"dimension": "cost_center", "values": "*"}},
            {"id": "security", "match": {"ServiceCategory": "Security"}, "method": "even",
             "targets": {"dimension": "cost_center", "values": "*"}},
            {"id": "data-factory", "match": {"ServiceName": "Azure Data Factory"}, "method": "even",
             "targets": {"dimension": "cost_center", "values": some[:10]}},
            {"id": "ai", "match": {"ServiceName": ["Azure AI Services", "Azure OpenAI"]}, "method": "proportional",
             "targets": {"dimension": "cost_center", "values": some}, "on_zero_weight": "even"},
        ],
    }


def code_state() -> str:
    """A hash of the code being measured (``hub/`` and ``transforms/``): other work may change it during a long run."""
    digest = hashlib.sha256()
    for path in sorted(p for d in ("hub", "transforms") for p in (HERE.parent / d).rglob("*.py")):
        digest.update(path.relative_to(HERE.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def code_line(start: str, end: str) -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True, cwd=HERE.parent)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " with uncommitted changes in hub/ or transforms/" if git("status", "--porcelain", "--", "hub", "transforms") else ""
    line = f"- code: commit {head}{dirty} (hash of hub/ and transforms/ {start})"
    if end != start:
        line += f"; **warning: the code changed during the run (hash {end} at the end): these numbers mix two versions**"
    return line


def lake_files(root: Path) -> list[str]:
    year, mon = MONTH.split("-")
    return [str(p) for p in sorted((root / "ingestion" / "Costs" / year / mon).glob("**/*.parquet"))]


def build(root: Path, rows: int, work: Path) -> dict:
    """A hub holding a ``rows``-row Costs month (generated, then ingested once); what it took."""
    start = time.perf_counter()
    manifest = Path(generate(root, shape=None, rows=rows, parts=1))
    generate_s = time.perf_counter() - start
    csv_mib = sum(p.stat().st_size for p in manifest.parent.glob("part_*.csv")) / 2**20
    print(f"  {rows:,} rows: {csv_mib:,.0f} MiB CSV generated in {generate_s:.1f} s", flush=True)
    ingest = run_child(f"hub ingest (setup, {rows:,})", [sys.executable, "-m", "hub.cli", "ingest", str(root)], rows, work)
    if not ingest.ok:
        raise RuntimeError(f"hub ingest failed (exit {ingest.exit_code}):\n{ingest.log}")
    files = lake_files(root)
    sample = run_json([sys.executable, "-c", SAMPLE, json.dumps(files)])
    if "error" in sample:
        raise RuntimeError(f"reading the lake failed: {sample['error']}")
    lake_mib = sum(os.path.getsize(f) for f in files) / 2**20
    print(f"  ingested in {ingest.seconds:.1f} s: {sample['rows']:,} rows in {len(files)} Parquet file(s), {lake_mib:,.0f} MiB",
          flush=True)
    return {"generate_s": generate_s, "csv_mib": csv_mib, "ingest_s": ingest.seconds, "files": files,
            "lake_rows": sample["rows"], "lake_mib": lake_mib, "values": sample["values"]}


def run_record(root: Path) -> dict:
    paths = sorted((root / "config" / "runs").glob(f"allocate-{MONTH.replace('-', '')}-*.json"))
    return json.loads(paths[-1].read_text()) if paths else {}


def pair(root: Path, files: list[str], rows: int, work: Path) -> tuple[Step, Step]:
    """The raw copy of the month's files, then ``hub allocate`` of the month (checked: committed, every row in, I1-I3)."""
    raw = run_child("raw DuckDB copy + 3 tags", [sys.executable, "-c", RAW_COPY, json.dumps(files), str(work / "raw.parquet")],
                    rows, work)
    (work / "raw.parquet").unlink(missing_ok=True)
    alloc = run_child("hub allocate", [sys.executable, "-m", "hub.cli", "allocate", str(root), "--month", MONTH], rows, work)
    if alloc.ok:
        rec = run_record(root)
        inv = (rec.get("allocation") or {}).get("invariants") or {}
        if rec.get("state") != "committed" or rec.get("rowsIn") != rows or not inv or not all(inv.values()):
            alloc.exit_code = 99
            alloc.log = f"run record: state {rec.get('state')}, rowsIn {rec.get('rowsIn')}, invariants {inv}, {rec.get('error')}"
    print(f"  {rows:,}: raw {raw.seconds:.2f} s / {raw.cpu:.2f} CPU s / {raw.peak_mib:,.0f} MiB, hub allocate "
          f"{alloc.seconds:.2f} s / {alloc.cpu:.2f} CPU s / {alloc.peak_mib:,.0f} MiB (exit {alloc.exit_code}), "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    return raw, alloc


# --- phases: one allocation in this process, every DuckDB statement timed and profiled --------------------------------

def _label(sql: str) -> str:
    text = " ".join(sql.split())
    if m := re.match(r"CREATE OR REPLACE TEMP (TABLE|VIEW) (\w+)", text, re.I):
        return f"{m.group(1).lower()} {m.group(2)}"
    if text.upper().startswith("COPY"):
        return "COPY ... ORDER BY ... TO parquet"
    return text[:70]


def _operators(node: dict, out: dict[str, float]) -> None:
    name = node.get("name") or node.get("type") or "?"
    out[name] = out.get(name, 0.0) + float(node.get("timing") or 0.0)
    for child in node.get("children") or []:
        _operators(child, out)


def phases(root: str, month: str = MONTH) -> dict:
    """Allocate ``month`` of the hub at ``root`` once (as ``hub allocate`` does: compute, stage, commit), with each phase
    of :func:`hub.allocation._allocate` and each DuckDB statement timed (wall and process CPU seconds) and profiled
    (DuckDB's JSON profile: operators' thread-summed seconds, peak buffer memory)."""
    import duckdb

    import hub.allocation as alloc
    from hub import engine
    from hub.allocation import resolve
    from hub.allocation import rules as rules_mod
    from hub.store import Store

    store = Store(root)
    rules_ = rules_mod.load(store)
    if rules_ is None:
        raise SystemExit(f"{root}: no config/allocation.json")
    statements: list[dict] = []
    spans: list[dict] = []
    current = ["other"]

    def read_profile(con: object, stmt: dict) -> None:
        """Fill ``stmt`` from DuckDB's profile of the connection's last query (when it is that statement)."""
        try:
            prof = json.loads(con.get_profiling_information(format="json"))  # type: ignore[attr-defined]
        except (duckdb.Error, ValueError, AttributeError):
            return
        if (prof.get("query") or {}).get("sql", stmt["sql"]).strip() != stmt["sql"]:
            return
        ops: dict[str, float] = {}
        for node in prof.get("operator") or []:
            _operators(node, ops)
        stmt["operators"] = ops
        peak = int((prof.get("system") or {}).get("peak_buffer_memory") or 0) / 2**20
        stmt["peak_buffer_mib"] = max(peak, stmt["peak_buffer_mib"])

    class Result:
        """A statement's result: fetching it counts towards the statement."""

        def __init__(self, con: object, stmt: dict) -> None:
            self._con, self._stmt = con, stmt

        def _timed(self, name: str) -> object:
            def fetch(*args: object) -> object:
                wall, cpu = time.perf_counter(), time.process_time()
                out = getattr(self._con, name)(*args)
                self._stmt["wall"] += time.perf_counter() - wall
                self._stmt["cpu"] += time.process_time() - cpu
                read_profile(self._con, self._stmt)
                return out
            return fetch

        def __getattr__(self, name: str) -> object:
            return self._timed(name) if name.startswith("fetch") else getattr(self._con, name)

    class Timed:
        """A DuckDB connection whose ``execute`` is timed and profiled."""

        def __init__(self, con: object) -> None:
            self._con = con

        def execute(self, sql: str, *args: object) -> object:
            wall, cpu = time.perf_counter(), time.process_time()
            result = self._con.execute(sql, *args)
            stmt = {"phase": current[-1], "label": _label(sql), "sql": sql.strip(), "wall": time.perf_counter() - wall,
                    "cpu": time.process_time() - cpu, "operators": {}, "peak_buffer_mib": 0.0}
            statements.append(stmt)
            read_profile(self._con, stmt)
            return Result(result, stmt)

        def __getattr__(self, name: str) -> object:
            return getattr(self._con, name)

    connect = alloc.catalog.store_connection

    def timed_connection(*args: object, **kwargs: object) -> Timed:
        con = connect(*args, **kwargs)
        con.execute("PRAGMA enable_profiling = 'no_output'")
        return Timed(con)

    def phase(name: str, fn: object) -> object:
        def wrapped(*args: object, **kwargs: object) -> object:
            current.append(name)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)  # type: ignore[operator]
            finally:
                spans.append({"phase": name, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu})
                current.pop()
        return wrapped

    alloc.catalog.store_connection = timed_connection  # type: ignore[assignment]
    alloc._source = phase("source view", alloc._source)  # type: ignore[assignment]
    resolve.resolve = phase("stage 1: resolve", resolve.resolve)  # type: ignore[assignment]
    alloc._pools = phase("pools: amounts, weights, splits", alloc._pools)  # type: ignore[assignment]
    alloc._table_from = phase("shared rows table", alloc._table_from)  # type: ignore[assignment]
    alloc._check = phase("checks I1-I3 + summary", alloc._check)  # type: ignore[assignment]
    alloc.compute = phase("compute (all of the above)", alloc.compute)  # type: ignore[assignment]
    store.put_file = phase("stage the file", store.put_file)  # type: ignore[method-assign]
    engine.commit = phase("swap + commit", engine.commit)  # type: ignore[assignment]
    wall, cpu = time.perf_counter(), time.process_time()
    records = alloc.allocate(store, [month], rules=rules_)
    total = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    rec = records[0] if records else None
    out = {"state": rec.state if rec else None, "rows": rec.rowsIn if rec else None, "total": total, "spans": spans,
           "statements": statements}
    if rec is None or rec.state != "committed":
        out["error"] = f"allocation {rec.state if rec else 'not run'}: {rec.error if rec else ''}"
    return out


def phase_table(result: dict, top: int = 8) -> list[str]:
    """Markdown: time per phase (statements inside it, the rest is Python), the costliest statements and operators."""
    if "error" in result:
        return [f"Phase profile failed: {result['error'][-500:]}"]
    stmts = result["statements"]
    compute = next((s for s in result["spans"] if s["phase"].startswith("compute")), {"wall": 0.0})
    lines = [f"Where one allocation of {result['rows'] or 0:,} rows spends its time (in one process, every DuckDB statement "
             f"profiled; {result['total']['wall']:.2f} s wall, {result['total']['cpu']:.2f} CPU s in `allocation.allocate`, "
             "interpreter start-up and imports not included):", "",
             "| phase | seconds | CPU s | DuckDB statements | share of compute |", "|---|---:|---:|---:|---:|"]
    inner = 0.0
    for span in result["spans"]:
        name = span["phase"]
        if name.startswith("compute"):
            continue
        n = sum(1 for s in stmts if s["phase"] == name)
        share = span["wall"] / compute["wall"] if compute["wall"] and name not in ("stage the file", "swap + commit") else None
        lines.append(f"| {name} | {span['wall']:.2f} | {span['cpu']:.2f} | {n} | {f'{share:.0%}' if share is not None else ''} |")
        if share is not None:
            inner += span["wall"]
    own = [s for s in stmts if s["phase"] == "compute (all of the above)" and not re.match(r"(SET|PRAGMA) ", s["label"], re.I)]
    for s in own:  # the statements of _allocate itself: the rows table and the COPY
        share = f"{s['wall'] / compute['wall']:.0%}" if compute["wall"] else ""
        lines.append(f"| `{s['label']}` | {s['wall']:.2f} | {s['cpu']:.2f} | 1 | {share} |")
        inner += s["wall"]
    lines.append(f"| (rest of compute) | {compute['wall'] - inner:.2f} | | | |")
    lines += ["", f"The {top} costliest DuckDB statements (operator seconds are summed over threads; peak buffer memory is "
              "DuckDB's own):", "",
              "| phase | statement | seconds | CPU s | peak buffer MiB | top operators (thread-summed s) |",
              "|---|---|---:|---:|---:|---|"]
    for s in sorted(stmts, key=lambda s: -s["wall"])[:top]:
        ops = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s["operators"].items(), key=lambda kv: -kv[1])[:4] if v >= 0.01)
        label = s["label"].replace("|", "\\|")
        lines.append(f"| {s['phase']} | `{label}` | {s['wall']:.2f} | {s['cpu']:.2f} | {s['peak_buffer_mib']:,.0f} | {ops} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Costs rows of the month (default 1,000,000)")
    parser.add_argument("--big", type=int, default=4_000_000, help="rows of the memory-flatness pair (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="raw copy / allocate pairs (default 3)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the phases of one allocation at --rows (default: yes)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="results file to update")
    parser.add_argument("--keep", type=Path, default=None, help="build the --rows hub in DIR and keep it (default: temporary)")
    parser.add_argument("--phases", metavar="ROOT", default=None,
                        help="only time the phases of one allocation of the prepared hub ROOT, in this process")
    parser.add_argument("--month", default=MONTH, help=f"the month of --phases (default {MONTH})")
    parser.add_argument("--json", type=Path, default=None, help="with --phases: write the measurements there as JSON")
    args = parser.parse_args(argv)
    if args.phases:
        result = phases(args.phases, args.month)
        if args.json:
            args.json.write_text(json.dumps(result), encoding="utf-8")
        print("\n".join(phase_table(result)))
        return 0 if result["state"] == "committed" else 1
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="hub-bench-allocation-"))
    root = args.keep.resolve() if args.keep else work / "hub"
    if root.exists() and any(root.iterdir()):
        parser.error(f"--keep {root} must be empty or absent")
    load_before = os.getloadavg()[0]
    code = code_state()
    ok = True
    try:
        print(f"building a hub with {args.rows:,} Costs rows in {root} ...", flush=True)
        info = build(root, args.rows, work)
        config = rules(info["values"])
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "config" / "allocation.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        rows = info["lake_rows"]
        pairs = [pair(root, info["files"], rows, work) for _ in range(args.repeat)]
        ok = all(r.ok and a.ok for r, a in pairs)
        rec = run_record(root)
        for step in (s for p in pairs for s in p if not s.ok):
            print(f"{step.name} failed (exit {step.exit_code}):\n{step.log}", file=sys.stderr)
        profile: list[str] = []
        if args.profile and ok:
            out = work / "phases.json"
            step = run_child("phases", [sys.executable, str(Path(__file__).resolve()), "--phases", str(root),
                                        "--json", str(out)], rows, work)
            result = json.loads(out.read_text()) if step.ok and out.exists() else {"error": step.log}
            profile = [*phase_table(result), "",
                       f"(That child: {step.seconds:.2f} s wall, {step.cpu:.2f} CPU s, peak RSS {step.peak_mib:,.0f} MiB, "
                       "profiling on.)"]
            print("\n".join(profile), flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

        big: list[str] = []
        if args.big and ok:
            print(f"building a hub with {args.big:,} Costs rows ...", flush=True)
            big_root = work / "hub-big"
            big_info = build(big_root, args.big, work)
            (big_root / "config" / "allocation.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
            big_pair = pair(big_root, big_info["files"], big_info["lake_rows"], work)
            shutil.rmtree(big_root, ignore_errors=True)
            ok = ok and big_pair[0].ok and big_pair[1].ok
            peak = statistics.median(a.peak_mib for _, a in pairs)
            raw_peak = statistics.median(r.peak_mib for r, _ in pairs)
            grow = big_pair[1].peak_mib / peak
            big = [f"**{args.big:,} rows** (the same rules; generated in {big_info['generate_s']:.0f} s, ingested in "
                   f"{big_info['ingest_s']:.0f} s, {big_info['lake_mib']:,.0f} MiB of Parquet):", "", *table([big_pair]), "",
                   f"Memory from {rows:,} to {big_info['lake_rows']:,} rows: hub allocate peak RSS {peak:,.0f} -> "
                   f"{big_pair[1].peak_mib:,.0f} MiB (**{grow:.2f}x** for {big_info['lake_rows'] / rows:.0f}x the rows; "
                   f"{'flat' if grow < 1.25 else 'not flat'} by the ingest's bar of less than 25% more); the raw copy "
                   f"{raw_peak:,.0f} -> {big_pair[0].peak_mib:,.0f} MiB.", ""]
            print("\n".join(big), flush=True)

        load_after = os.getloadavg()[0]
        code_end = code_state()
        if code_end != code:
            print(f"warning: hub/ or transforms/ changed during the run ({code} -> {code_end})", file=sys.stderr)
        alloc_info = rec.get("allocation") or {}
        pooled = sum((alloc_info.get("pooledRows") or {}).values())
        status = (alloc_info.get("statusTotals") or {}).get("x_CostCenter") or {}
        body = [
            f"- machine: {machine()}; 1-minute load average {load_before:.2f} before, {load_after:.2f} after "
            "(above the CPU count means other processes competed)",
            code_line(code, code_end),
            f"- input: the lake's Costs month {MONTH}, {rows:,} rows in {len(info['files'])} Parquet file(s), "
            f"{info['lake_mib']:,.1f} MiB (`hub.sample_data.write_export` in {info['generate_s']:.1f} s, then `hub ingest` in "
            f"{info['ingest_s']:.1f} s, neither timed)",
            "- rules: 3 dimensions (cost_center: `CostCenter`, `cost-center`, `costcenter`, `kostenstelle`; product: `team`, "
            "`product`, `app`; environment: `env`, `environment`, `stage`, falling back to 4 mappings on the resource group), "
            "an allowlist of 200 cost centers (the data's 100 most frequent, 100 made up), 5 pools over cost_center "
            "(network: fixed; monitoring, ai: proportional; security, data-factory: even)"
            + (f"; {pooled:,} rows pooled, {rec.get('rowsOut', 0):,} rows out; EffectiveCost by cost-center status: "
               + ", ".join(f"{k} {float(v):,.0f}" for k, v in status.items()) if rec else ""),
            "- raw: `COPY (SELECT *, Tags->>'cost-center' AS cc, Tags->>'team' AS product, Tags->>'env' AS env FROM "
            "read_parquet(<the month's files>)) TO raw.parquet (FORMAT parquet)` in a child Python (the sample data's tag "
            f"keys); pipeline: `python -m hub.cli allocate ROOT --month {MONTH}`; peak RSS is each child's own (`os.wait4`)",
            "- target (issue 14): hub allocate at most **1.5x** the raw copy's wall time; memory flat from 1M to 4M rows",
            "",
            *table(pairs),
            "",
            *big,
            *profile,
        ]
        print()
        print("\n".join(table(pairs)))
        title = f"{date.today().isoformat()} · allocation" + (f" · {rows:,} rows" if rows != 1_000_000 else "")
        update_results(args.out, title, [line for line in body if line is not None])
        print(f"\nresults written to {args.out}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
