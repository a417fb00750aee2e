"""Benchmark: ``hub ingest`` against a raw DuckDB CSV -> Parquet copy of the same FocusCost 1.0 export.

Usage: ``python bench/run.py [--rows 1000000] [--repeat 3] [--shape default|independent] [--shape-options K=V,..]
[--out bench/RESULTS.md] [--keep DIR]``

Each step runs in its own child process; its wall time, CPU time (user + system) and peak RSS (``os.wait4``
resource usage of that child) are reported side by side, pair after pair (the raw copy, then the pipeline on a
fresh copy of the export), with the median ratios; a dated section is added to (or replaced in) ``--out``.

``--shape independent`` generates the other generator's data (:mod:`hub.sample_independent`): an EA price sheet
of about 33,000 rows is ingested first (once, not timed), so every ``hub ingest`` of the costs backfills a
quarter of its rows from it; ``--shape-options`` changes that shape's knobs (``backfill_percent=0``,
``wide_tags=false``, ... see :class:`hub.sample_independent.Shape`).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAW_COPY = (
    "import sys, duckdb\n"
    "con = duckdb.connect()\n"
    "src, out = (p.replace(\"'\", \"''\") for p in sys.argv[1:3])\n"
    "con.execute(f\"COPY (SELECT * FROM read_csv('{src}')) TO '{out}' (FORMAT parquet)\")\n"
)

#: The cost-analysis query of the benchmark: ServiceName per day over one month.
QUERY = {"time_condition": {"time_measure_id": 1, "begin_time": "2024-05-01", "end_time": "2024-05-31"},
         "groupby": [{"type": "dimension", "key": "ServiceName"}], "cost_type": "ORIGINAL_COST", "limit": 1000}
#: The same aggregation over the raw CSV export with DuckDB (auto-detected types, as a user would write it).
RAW_QUERY = (
    "import sys, time, json, duckdb\n"
    "con = duckdb.connect()\n"
    "con.execute('SET enable_progress_bar = false')\n"
    "src = sys.argv[1].replace(\"'\", \"''\")\n"
    "start = time.perf_counter()\n"
    "rows = con.execute(f\"SELECT ServiceName, strftime(ChargePeriodStart, '%Y-%m-%d') AS day, sum(BilledCost), sum(ListCost) "
    "FROM read_csv('{src}') WHERE ChargePeriodStart >= '2024-05-01' AND ChargePeriodStart < '2024-06-01' \"\n"
    "                   \"GROUP BY ALL\").fetchall()\n"
    "print(json.dumps({'seconds': time.perf_counter() - start, 'groups': len(rows)}))\n"
)
LAKE_QUERY = (
    "import sys, time, json, statistics\n"
    "from hub import catalog\n"
    "from hub.cost_analysis import CostQuery, query_costs\n"
    "req = CostQuery.model_validate(json.loads(sys.argv[2]))\n"
    "start = time.perf_counter()\n"
    "con = catalog.connect(sys.argv[1])\n"
    "con.execute('SET enable_progress_bar = false')\n"
    "connect = time.perf_counter() - start\n"
    "times = []\n"
    "for _ in range(5):\n"
    "    t = time.perf_counter(); result = query_costs(con, req); times.append(time.perf_counter() - t)\n"
    "print(json.dumps({'connect': connect, 'first': times[0], 'median': statistics.median(times), "
    "'groups': result.total_count, 'points': sum(len(r.costs) for r in result.cost_data)}))\n"
)


def run_json(cmd: list[str]) -> dict:
    """Run a child Python that prints one JSON line; its parsed output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-1000:]}
    return json.loads(lines[-1])


@dataclass
class Step:
    name: str
    rows: int
    seconds: float
    peak_mib: float
    exit_code: int
    log: str = ""
    cpu: float = 0.0  # user + system seconds of the child (and its children)
    load: float = 0.0  # 1-minute load average when it started

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@functools.cache
def precompile(tree: Path = REPO) -> None:
    """Byte-compile the project's packages once, as ``pip install`` does for an installed hub, so a timed child reads
    cached bytecode as the raw copy's ``duckdb`` does; where ``PYTHONDONTWRITEBYTECODE`` is set (some containers) a
    child would otherwise compile about 50 modules from source on every run (about 0.07 s)."""
    for package in ("hub", "pipelines", "transforms"):
        compileall.compile_dir(str(tree / package), quiet=1)


def run_child(name: str, cmd: list[str], rows: int, log_dir: Path) -> Step:
    """Run ``cmd`` as a child process; wall time and the child's own peak RSS come from ``os.wait4``."""
    precompile()
    log = log_dir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen so it does not wait again
    peak_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return Step(name, rows, seconds, peak_kib / 1024, proc.returncode, log.read_text(errors="replace")[-2000:],
                usage.ru_utime + usage.ru_stime, load)


def machine() -> str:
    """One line describing the machine and library versions."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    versions = []
    for dist in ("duckdb", "pyarrow"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} ?")
    return (f"{os.cpu_count()} CPUs (nproc), {mem:.1f} GiB RAM, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, " + ", ".join(versions))


def table(pairs: list[tuple[Step, Step | None]]) -> list[str]:
    """Markdown table of (raw copy, pipeline) pairs, each pair's ratios, and the median ratio of several pairs.
    CPU seconds (user + system) are less sensitive than wall time to other processes on the machine."""
    lines = ["| step | rows | seconds | CPU s | rows/s | peak RSS MiB | load | exit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for i, (raw, pipe) in enumerate(pairs, 1):
        tag = f" #{i}" if len(pairs) > 1 else ""
        for s in (raw, pipe):
            if s is None:
                continue
            rate = f"{s.rows / s.seconds:,.0f}" if s.ok and s.seconds > 0 else "-"
            lines.append(f"| {s.name}{tag} | {s.rows:,} | {s.seconds:.2f} | {s.cpu:.2f} | {rate} | {s.peak_mib:,.0f} | "
                         f"{s.load:.2f} | {s.exit_code} |")
        if pipe and raw.ok and pipe.ok:
            ratios.append((pipe.seconds / raw.seconds, pipe.cpu / raw.cpu, pipe.peak_mib / raw.peak_mib))
            lines.append(f"| **pipeline / raw{tag}** | | **{ratios[-1][0]:.2f}x** | **{ratios[-1][1]:.2f}x** | | "
                         f"**{ratios[-1][2]:.2f}x** | | |")
    if len(ratios) > 1:
        lines.append(f"| **median of {len(ratios)}** | | **{statistics.median(r[0] for r in ratios):.2f}x** | "
                     f"**{statistics.median(r[1] for r in ratios):.2f}x** | | "
                     f"**{statistics.median(r[2] for r in ratios):.2f}x** | | |")
    return lines


def query_table(lake: dict, raw: dict) -> list[str]:
    """Markdown table: the cost-analysis query on the lake against the same aggregation over the raw CSV."""
    if "error" in lake or "error" in raw:
        return [f"Cost-analysis query failed: {lake.get('error') or raw.get('error')}"]
    speedup = raw["seconds"] / lake["median"] if lake["median"] else float("inf")
    return [
        "Cost-analysis query (ServiceName per day, one month; `hub.cost_analysis.query_costs` on `hub.catalog`), "
        "against the same aggregation with DuckDB over the raw CSV export:",
        "",
        "| query | seconds | (service, day) values |",
        "|---|---:|---:|",
        f"| lake: open the catalog | {lake['connect']:.3f} | |",
        f"| lake: query, first run | {lake['first']:.3f} | {lake['points']} |",
        f"| lake: query, median of 5 | {lake['median']:.3f} | {lake['points']} |",
        f"| raw CSV: DuckDB `read_csv` aggregation | {raw['seconds']:.3f} | {raw['groups']} |",
        f"| **raw / lake** | **{speedup:.0f}x** | |",
    ]


def update_results(out: Path, title: str, body: list[str]) -> None:
    """Replace the ``## title`` section of ``out`` (or append it), keeping every other section."""
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmark results\n\nWritten by `bench/run.py`.\n"
    section = f"## {title}\n\n" + "\n".join(body) + "\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text, encoding="utf-8")


def count_lake_rows(root: Path) -> int:
    """Rows the lake readers see under ``ingestion/Costs``."""
    import duckdb

    files = sorted(root.glob("ingestion/Costs/**/*.parquet"))
    if not files:
        return 0
    row = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({[str(f) for f in files]!r})").fetchone()
    return int(row[0]) if row else 0


def generate(root: Path, *, shape: str | None, **kwargs: object) -> str:
    """``hub.sample_data.write_export(root, **kwargs)`` in a child process (a child forked from a parent holding the
    generator's memory would count it in its own peak RSS); ``shape``: the independent shape's options, or None for
    the default shape. Returns the manifest's path."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    shaped = "" if shape is None else f", shape=Shape.parse({shape!r})"
    code = ("from hub.sample_data import write_export; from hub.sample_independent import Shape; "
            f"print(write_export({str(root)!r}, {args}{shaped}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    return proc.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="FocusCost rows to generate (default 1,000,000)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="results file to update")
    parser.add_argument("--keep", type=Path, default=None, help="build the hub in DIR and keep it (default: temporary)")
    parser.add_argument("--repeat", type=int, default=3, help="raw copy / pipeline pairs (default 3; the median ratio counts)")
    parser.add_argument("--shape", choices=("default", "independent"), default="default",
                        help="data shape: hub.sample_data's (default) or hub.sample_independent's, with a price sheet")
    parser.add_argument("--shape-options", default="", metavar="K=V,..",
                        help="knobs of the independent shape (hub.sample_independent.Shape), e.g. backfill_percent=0")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.shape_options and args.shape != "independent":
        parser.error("--shape-options needs --shape independent")

    sys.path.insert(0, str(REPO))
    from hub.sample_independent import Shape

    shape: object = "default"
    if args.shape == "independent":
        try:
            shape = Shape.parse(args.shape_options)
        except (ValueError, TypeError) as exc:
            parser.error(str(exc))

    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    root = args.keep.resolve() if args.keep else work / "hub"
    try:
        if root.exists() and any(root.iterdir()):
            parser.error(f"--keep {root} must be empty or absent")
        pristine = work / "export"
        sheet = ""
        if shape != "default":  # the month's price sheet goes into the lake first (not timed), as a hub would have it
            start = time.perf_counter()
            generate(pristine, export_type="PriceSheet", data_version="2023-05-01", export_name="bench-prices",
                     shape=args.shape_options)
            prices = run_child("hub ingest (price sheet)", [sys.executable, "-m", "hub.cli", "ingest", str(pristine)], 0, work)
            if not prices.ok:
                print(f"price sheet ingest failed:\n{prices.log}", file=sys.stderr)
                return 1
            sheet_rows = int(json.loads(next(pristine.glob("config/runs/*.json")).read_text()).get("rowsOut") or 0)
            sheet = f"; its EA price sheet ({sheet_rows:,} rows) ingested first, in {prices.seconds:.1f} s"
            print(f"  price sheet: {sheet_rows:,} rows ingested in {prices.seconds:.1f} s", flush=True)
        print(f"generating {args.rows:,} FocusCost 1.0 rows ({args.shape} shape) into {pristine} ...", flush=True)
        start = time.perf_counter()
        manifest = Path(generate(pristine, rows=args.rows, parts=1, shape=args.shape_options if shape != "default" else None))
        generate_s = time.perf_counter() - start
        csv = next(manifest.parent.glob("part_*.csv"))
        options = f", {args.shape_options}" if args.shape_options else ""
        generator = ("`hub.sample_data.write_export`" if shape == "default" else
                     f"`hub.sample_data.write_export(shape={args.shape}{options})`")
        csv_mib = csv.stat().st_size / 2**20
        print(f"  {csv_mib:,.0f} MiB CSV in {generate_s:.1f} s", flush=True)

        load_before = os.getloadavg()[0]
        raw_query = run_json([sys.executable, "-c", RAW_QUERY, str(csv)])
        print(f"  raw CSV aggregation: {raw_query}", flush=True)
        pairs: list[tuple[Step, Step | None]] = []
        for _ in range(args.repeat):  # pairs side by side, so both see the same machine
            raw = run_child("raw DuckDB copy", [sys.executable, "-c", RAW_COPY, str(csv), str(work / "raw.parquet")],
                            args.rows, work)
            print(f"  raw DuckDB copy: {raw.seconds:.2f} s, {raw.peak_mib:,.0f} MiB, exit {raw.exit_code}", flush=True)
            if root.exists():
                shutil.rmtree(root)
            shutil.copytree(pristine, root)  # a fresh hub each time: ingesting deletes the source (retention)
            pipe = run_child("hub ingest", [sys.executable, "-m", "hub.cli", "ingest", str(root)], args.rows, work)
            print(f"  hub ingest: {pipe.seconds:.2f} s, {pipe.peak_mib:,.0f} MiB, exit {pipe.exit_code}", flush=True)
            pairs.append((raw, pipe))
            if not pipe.ok:
                break

        load_after = os.getloadavg()[0]
        notes = []
        for step in (raw, pipe):
            if not step.ok:
                print(f"{step.name} failed (exit {step.exit_code}):\n{step.log}", file=sys.stderr)
        if not pipe.ok and "No module named hub.cli" in pipe.log:
            notes.append("Pipeline numbers pending: `python -m hub.cli` is not available yet.")
        elif not pipe.ok:
            notes.append(f"`hub ingest` failed (exit {pipe.exit_code}); its numbers are not comparable.")
        else:
            lake = count_lake_rows(root)
            if lake != args.rows:
                notes.append(f"Warning: the lake holds {lake:,} rows, expected {args.rows:,}.")
            lake_query = run_json([sys.executable, "-c", LAKE_QUERY, str(root), json.dumps(QUERY)])
            print(f"  cost-analysis query on the lake: {lake_query}", flush=True)
            notes += query_table(lake_query, raw_query)
        if not pipe.ok and "No module named hub.cli" in pipe.log:
            pairs = [(raw, None)]
        body = [
            f"- machine: {machine()}; 1-minute load average {load_before:.2f} before, {load_after:.2f} after "
            "(above the CPU count means other processes competed)",
            f"- input: one FocusCost 1.0 CSV part, {args.rows:,} rows x 96 columns, {csv_mib:,.1f} MiB "
            f"(generated by {generator} in {generate_s:.1f} s){sheet}",
            f"- raw: `COPY (SELECT * FROM read_csv(part)) TO raw.parquet (FORMAT parquet)` in a child Python; "
            f"pipeline: `{Path(sys.executable).name} -m hub.cli ingest ROOT`; peak RSS is each child's own (`os.wait4`)",
            "",
            *table(pairs),
        ]
        if notes:
            body += ["", *notes]
        print()
        print("\n".join(table(pairs)))
        for note in notes:
            print(note)
        title = f"{date.today().isoformat()} · {args.rows:,} rows"
        if args.shape != "default":
            title += f" · {args.shape} shape" + (f" ({args.shape_options})" if args.shape_options else "")
        update_results(args.out, title, body)
        print(f"\nresults written to {args.out}")
        return 0 if raw.ok and pipe.ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
