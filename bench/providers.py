"""Benchmark: other clouds' files, ``hub ingest`` against a raw DuckDB CSV -> Parquet copy of the same file.

Usage: ``python bench/providers.py [--rows 1000000] [--big 4000000] [--repeat 3] [--format cur|cur-full|aws-focus ...]
[--converter/--no-converter] [--out bench/RESULTS.md]``

For an AWS legacy CUR (``hub.sample_native.write_aws_cur``: ``cur``, 34 columns and plain numbers; ``cur-full``, the
97 columns of a real CUR with AWS's number formatting, ``2.0E-7``) and an AWS Data Exports FOCUS 1.0 export
(``write_aws_focus``), each one gzip CSV file in its delivery folder: ``--repeat`` pairs at ``--rows`` (the raw
copy, then ``hub ingest`` of a fresh copy of the hub, each in its own child process: wall time, CPU time, peak RSS
from ``os.wait4``), and one pair at ``--big`` rows, to show memory staying flat as the input grows. Then, on the same
CUR (decompressed), the FinOps Foundation's ``focus-converter`` (:mod:`bench.focus_converter`, in its own virtual
environment): its time, peak memory, and how many of its rows pass ``hub validate``. A dated section is added to (or
replaced in) ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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

from run import RAW_COPY, Step, machine, run_child, table, update_results  # noqa: E402

#: format -> (title, generator of hub.sample_native, its keyword arguments)
FORMATS = {
    "cur": ("AWS legacy CUR, 34 columns", "write_aws_cur", ""),
    "cur-full": ("AWS legacy CUR, 97 columns of a real CUR, AWS's number formatting", "write_aws_cur", ", full=True"),
    "aws-focus": ("AWS Data Exports FOCUS 1.0", "write_aws_focus", ""),
}


def generate(fmt: str, rows: int, root: Path) -> Path:
    """A hub with one delivery of ``fmt`` holding ``rows`` rows (written by a child process: a child forked from a
    parent holding the generator's memory would count it in its own peak RSS); its data file."""
    _, generator, kwargs = FORMATS[fmt]
    code = f"from hub import sample_native; sample_native.{generator}({str(root)!r}, rows={rows}{kwargs})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent,
                   env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    return next(root.glob("exports/**/*.csv.gz"))


def pair(fmt: str, rows: int, pristine: Path, data: Path, work: Path) -> tuple[Step, Step]:
    """The raw copy of the file, then ``hub ingest`` of a fresh copy of the hub."""
    raw = run_child(f"raw DuckDB copy ({fmt})", [sys.executable, "-c", RAW_COPY, str(data), str(work / "raw.parquet")], rows,
                    work)
    root = work / "hub"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(pristine, root)
    pipe = run_child(f"hub ingest ({fmt})", [sys.executable, "-m", "hub.cli", "ingest", str(root)], rows, work)
    if pipe.ok:  # every run committed and reconciled (a CUR has a tax row per account beside the generated rows)
        runs = [json.loads(p.read_text()) for p in root.glob("config/runs/*.json")]
        pipe.rows = raw.rows = sum(r.get("rowsOut") or 0 for r in runs)
        if pipe.rows < rows or not all(r.get("state") == "committed" and r.get("reconciled") for r in runs):
            pipe.exit_code = 99
            pipe.log = f"runs: {[(r.get('state'), r.get('rowsOut'), r.get('error')) for r in runs]}"
    print(f"  {fmt} {rows:,}: raw {raw.seconds:.2f} s / {raw.peak_mib:,.0f} MiB, hub ingest {pipe.seconds:.2f} s / "
          f"{pipe.peak_mib:,.0f} MiB (exit {pipe.exit_code})", flush=True)
    return raw, pipe


def converter_rows(fmt_rows: int, pristine: Path, work: Path, venv: Path | None) -> list[str]:
    """focus-converter on the CUR, decompressed (it reads plain CSV)."""
    try:
        import focus_converter as fc  # bench/focus_converter.py
    except ImportError as exc:
        return [f"focus-converter not measured: {exc}"]
    plain = work / "cur.csv"
    with gzip.open(next(pristine.glob("exports/**/*.csv.gz")), "rb") as src, open(plain, "wb") as out:
        shutil.copyfileobj(src, out)
    result = fc.measure(plain, work / "focus-converter", venv=venv)
    print(f"  focus-converter: {json.dumps(result)[:400]}", flush=True)
    if not result.get("installed", True) or result.get("error"):
        return [f"focus-converter ({result.get('version') or 'not installed'}) on the same CUR: "
                f"{result.get('error') or 'did not install'}"]
    valid = result.get("rows_valid")
    return [
        f"FinOps Foundation `focus-converter` {result.get('version')} on the same CUR ({fmt_rows:,} rows, decompressed), in "
        "its own virtual environment:",
        "",
        "| step | rows in | rows out | rows passing `hub validate` | seconds | CPU s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| focus-converter | {result.get('rows_in', fmt_rows):,} | {result.get('rows_out', 0):,} | "
        f"{valid if valid is not None else '-'} | {result.get('seconds', 0):.2f} | {result.get('cpu_seconds', 0):.2f} | "
        f"{result.get('peak_rss_mb', 0):,.0f} |",
        "",
        f"Missing FOCUS 1.0 columns in its output: {', '.join(result.get('missing_columns') or []) or 'none'}; "
        f"top violations: {result.get('top_violations') or 'none'}.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=4_000_000, help="rows of the memory-flatness pair (0: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", action="append", choices=tuple(FORMATS), help="default: every format")
    parser.add_argument("--converter", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure focus-converter on the CUR")
    parser.add_argument("--converter-venv", type=Path, default=None,
                        help="focus-converter's virtual environment (made there once, then reused; default: a temporary one)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    formats = args.format or list(FORMATS)
    work = Path(tempfile.mkdtemp(prefix="hub-bench-providers-"))
    body = [f"- machine: {machine()}; 1-minute load average {os.getloadavg()[0]:.2f} at the start",
            "- raw: `COPY (SELECT * FROM read_csv(file.csv.gz)) TO raw.parquet (FORMAT parquet)` in a child Python; pipeline: "
            "`python -m hub.cli ingest ROOT` of a fresh copy of the hub holding the delivery; peak RSS is each child's own",
            ""]
    ok = True
    try:
        for fmt in formats:
            title, generator, kwargs = FORMATS[fmt]
            sizes = [args.rows] + ([args.big] if args.big else [])
            ratios: list[float] = []
            for n, rows in enumerate(sizes):
                pristine = work / f"{fmt}-{rows}"
                start = time.perf_counter()
                data = generate(fmt, rows, pristine)
                mib = data.stat().st_size / 2**20
                print(f"{title}: {rows:,} rows, {mib:,.0f} MiB gzip CSV in {time.perf_counter() - start:.0f} s", flush=True)
                pairs = [pair(fmt, rows, pristine, data, work) for _ in range(args.repeat if n == 0 else 1)]
                ok = ok and all(p.ok and r.ok for r, p in pairs)
                call = f"hub.sample_native.{generator}(..., rows={rows:_}{kwargs})"
                body += [f"**{title}** (`{call}`), one {mib:,.1f} MiB gzip CSV:", "",
                         *table(pairs), ""]
                if n == 0:
                    ratios = [p.seconds / r.seconds for r, p in pairs if r.ok and p.ok]
                    peak = statistics.median(p.peak_mib for _, p in pairs)
                else:
                    body += [f"Memory from {args.rows:,} to {rows:,} rows: hub ingest peak RSS {peak:,.0f} -> "
                             f"{pairs[0][1].peak_mib:,.0f} MiB ({pairs[0][1].peak_mib / peak:.2f}x for {rows / args.rows:.0f}x "
                             "the rows).", ""]
                if fmt == "cur" and n == 0 and args.converter:
                    body += [*converter_rows(rows, pristine, work, args.converter_venv), ""]
                if n > 0:
                    shutil.rmtree(pristine, ignore_errors=True)
            if ratios:
                print(f"{title}: median hub ingest / raw copy {statistics.median(ratios):.2f}x", flush=True)
        update_results(args.out, f"{date.today().isoformat()} · other clouds' files", body)
        print(f"\nresults written to {args.out}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
