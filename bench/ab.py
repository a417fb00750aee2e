"""Interleaved A/B timing of ``hub ingest`` variants on a prepared hub, against the raw DuckDB copy.

Usage: ``python bench/ab.py HUB [--repeat 3] [--variant NAME[:VAR=VALUE;...]] ... [--no-raw] [--json OUT]``
(``VAR`` ``TREE``: run another checkout, e.g. ``--variant before:TREE=/tmp/before`` after
``git worktree add /tmp/before HEAD~1``)

HUB is a hub root with a pending Costs export (and, for the independent shape, its prices already in the
lake): ``bench/run.py --keep`` leaves one, or ``hub.sample_data.write_export``. Each round runs the raw copy of
the export's CSV, then every variant (``hub ingest`` on a fresh copy of HUB, with the variant's environment
variables), so slow drifts of the machine hit all of them alike. Reported per variant: median wall and CPU
seconds (user + system, ``os.wait4``) and the median of the per-round ratios to the raw copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from run import RAW_COPY, precompile  # noqa: E402


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, float]:
    """Wall seconds, CPU seconds, exit code and the 1-minute load average at the start of a child. ``TREE`` in
    ``env``: another checkout of the project to run (e.g. a ``git worktree`` of an earlier commit)."""
    env = dict(env)
    tree = Path(env.pop("TREE", REPO))
    precompile(tree)
    load = os.getloadavg()[0]
    full = {**os.environ, "PYTHONPATH": str(tree), **env}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tree, env=full)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else "", file=sys.stderr)
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode, load


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assigns = text.partition(":")
    env = dict(a.split("=", 1) for a in assigns.split(";") if a)
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("hub", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="NAME[:VAR=VALUE;...] (default: one variant base)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw DuckDB copy")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant] or [("base", {})]
    csv = next(p for p in args.hub.glob("msexports/**/part_*.csv") if "price" not in str(p))
    work = Path(tempfile.mkdtemp(prefix="hub-ab-"))
    results: dict[str, list[tuple[float, float, int, float]]] = {"raw": []}
    results.update({n: [] for n, _ in variants})
    try:
        for r in range(args.repeat):
            if not args.no_raw:
                results["raw"].append(child([sys.executable, "-c", RAW_COPY, str(csv), str(work / "raw.parquet")], {}))
                print(f"round {r + 1} raw: {results['raw'][-1][0]:.2f} s wall, {results['raw'][-1][1]:.2f} s CPU, "
                      f"load {results['raw'][-1][3]:.2f}", flush=True)
            for name, env in variants:
                root = work / "hub"
                if root.exists():
                    shutil.rmtree(root)
                shutil.copytree(args.hub, root)
                results[name].append(child([sys.executable, "-m", "hub.cli", "ingest", str(root)], env))
                w, c, code, load = results[name][-1]
                print(f"round {r + 1} {name}: {w:.2f} s wall, {c:.2f} s CPU, exit {code}, load {load:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| variant | median wall s | median CPU s | wall / raw (median of rounds) | CPU / raw | load (min-max) |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name, runs in results.items():
        if not runs:
            continue
        raw = results["raw"]
        wall_ratio = statistics.median(a[0] / b[0] for a, b in zip(runs, raw, strict=True)) if raw else float("nan")
        cpu_ratio = statistics.median(a[1] / b[1] for a, b in zip(runs, raw, strict=True)) if raw else float("nan")
        summary[name] = {"wall": statistics.median(x[0] for x in runs), "cpu": statistics.median(x[1] for x in runs),
                         "wall_ratio": wall_ratio, "cpu_ratio": cpu_ratio, "runs": runs}
        loads = [x[3] for x in runs]
        print(f"| {name} | {summary[name]['wall']:.2f} | {summary[name]['cpu']:.2f} | {wall_ratio:.2f}x | {cpu_ratio:.2f}x | "
              f"{min(loads):.2f}-{max(loads):.2f} |")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
