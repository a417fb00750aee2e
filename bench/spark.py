"""Benchmark: the Spark engine's scaling (issue 16) against the local engine, on one export of many parts.

Usage: ``python bench/spark.py [--parts 16] [--rows-per-part 250000] [--skew 4] [--out bench/RESULTS.md]
[--svg bench/spark_scaling.svg] [--keep DIR]``. Keep a ``--keep`` folder to reuse its generated exports.

One FocusCost 1.0 export of ``--parts`` CSV parts (``hub.sample_data``), and a skewed variant where the first part
holds ``--skew`` times the rows of the others, each ingested on a fresh copy of the hub by: the local engine (this
process's DuckDB, every core), Spark ``local[1]`` and Spark ``local[2]`` (one task a part, DuckDB threads =
``spark.task.cpus`` = 1). Each run is a child process (wall, CPU, peak RSS from ``os.wait4``, the JVM included);
inside it the session start, the Spark job (tasks' start, end, worker and conversion seconds) and the driver's own
time (listing, schema, reconciliation, validation, swap, run record) are timed.

Then a model: ingest time(W) = driver time + job start and end + LPT makespan of (part conversion + per-task
overhead) on W executor slots, from the ``local[1]`` run's measurements with one factor on the part times fitted to
both runs (parts running side by side are slower), checked against the ``local[1]`` and ``local[2]`` runs and used to
predict rows/s for W = 1..64 (an SVG plot). A dated section is added to (or replaced in) ``--out``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, Step, machine, run_child, update_results  # noqa: E402

WORKERS = (1, 2, 4, 8, 16, 32, 64)
TITLE = "Predicted ingest rows/s on W executor slots (model fitted to local[1] and local[2])"


# --------------------------------------------------------------------------------------------------------- the child
def _tree() -> tuple[float, float]:
    """RSS (MiB) and CPU seconds (user + system) of this process and every live descendant (the JVM, Python workers),
    from /proc."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)], stats[int(entry)] = int(fields[1]), fields
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo += [c for c, p in parents.items() if p == pid and c not in mine]
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    rss = sum(int(stats[p][21]) for p in mine if p in stats) * page / 2**20
    cpu = sum(int(stats[p][11]) + int(stats[p][12]) for p in mine if p in stats) / tick
    return rss, cpu


class TreeSampler:
    """The process tree's peak RSS, sampled every half second, and its CPU seconds when stopped."""

    def __init__(self) -> None:
        import threading

        self.peak, self.cpu, self._stop = 0.0, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, _tree()[0])

    def stop(self) -> None:
        rss, self.cpu = _tree()
        self.peak = max(self.peak, rss)
        self._stop.set()


def child(engine: str, root: str, master: str | None) -> dict:
    """One ingestion of ``root``, timed from the inside; printed as JSON."""
    sys.path.insert(0, str(REPO))
    from hub import conversion
    from hub.store import Store
    from pipelines.ingest import ingest

    out: dict = {"engine": engine, "master": master, "jobs": []}
    if engine == "local":
        start = time.perf_counter()
        result = ingest(Store(root))
        out["ingest"] = time.perf_counter() - start
    else:
        from hub.spark.runner import SparkRunner
        from hub.spark.session import session

        sampler = TreeSampler()
        start = time.perf_counter()
        spark = session(master)
        out["session"] = time.perf_counter() - start

        class Timed(SparkRunner):
            def __call__(self, store, jobs):  # noqa: ANN001, ANN204 - the runner's signature
                begun, wall = time.perf_counter(), time.time()
                outcomes = super().__call__(store, jobs)
                out["jobs"].append({"wall": time.perf_counter() - begun, "submitted": wall, "tasks": [
                    {"seconds": o.seconds, "started": o.started, "ended": o.ended, "worker": o.worker, "rows": o.rows}
                    for o in outcomes]})
                return outcomes

        start = time.perf_counter()
        with conversion.parts_runner(Timed(spark)):
            result = ingest(Store(root))
        out["ingest"] = time.perf_counter() - start
        sampler.stop()  # before the JVM and its workers end
        out["tree_peak_mib"], out["tree_cpu"] = sampler.peak, sampler.cpu
        spark.stop()
    out["ok"] = result.ok
    out["rows"] = sum(r.rowsOut or 0 for r in result.records)
    out["errors"] = [r.error.message for r in result.all if r.error]
    return out


# -------------------------------------------------------------------------------------------------------- the inputs
def make_export(root: Path, parts: int, per_part: int, skew: int) -> int:
    """The export under ``root``; with ``skew`` > 1 the first part holds ``skew`` parts' rows (parts concatenated,
    the manifest rewritten). Returns its rows."""
    from hub import sample_data

    units = parts + (skew - 1 if skew > 1 else 0)
    manifest_path = Path(sample_data.write_export(str(root), rows=units * per_part, parts=units))
    if skew > 1:
        manifest = json.loads(manifest_path.read_text())
        blobs = manifest["blobs"]
        files = [root / "msexports" / b["blobName"] for b in blobs[:skew]]
        with open(files[0], "ab") as first:
            for extra in files[1:]:
                with open(extra, "rb") as f:
                    f.readline()  # its header
                    shutil.copyfileobj(f, first)
                extra.unlink()
        blobs[:skew] = [{**blobs[0], "byteCount": files[0].stat().st_size}]
        manifest["blobs"], manifest["blobCount"] = blobs, len(blobs)
        manifest_path.write_text(json.dumps(manifest))  # written last, as Cost Management does
    return units * per_part


def fresh_copy(template: Path, dest: Path) -> Path:
    """A hub to ingest: the template's files hard-linked (ingestion deletes its sources, never the template's)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, copy_function=os.link)
    return dest


def run(name: str, engine: str, root: Path, master: str | None, rows: int, logs: Path) -> tuple[Step, dict]:
    result = logs / f"{name.replace(' ', '-').replace('[', '').replace(']', '')}.json"
    cmd = [sys.executable, __file__, "--child", engine, str(root), "--result", str(result)]
    step = run_child(name, cmd + (["--master", master] if master else []), rows, logs)
    inner = json.loads(result.read_text()) if result.exists() else {"error": step.log[-600:]}
    if not step.ok or not inner.get("ok") or inner.get("rows") != rows:
        raise SystemExit(f"{name} failed: {inner}")
    return step, inner


# ----------------------------------------------------------------------------------------------------------- the model
def breakdown(inner: dict) -> dict:
    """Session start, job start (submit -> first task), per-task overhead (a worker's gap between its tasks, and
    the Python worker's start for its first task, beyond the conversion itself), conversion, driver time."""
    job = inner["jobs"][-1]  # the export (one delivery)
    tasks = sorted(job["tasks"], key=lambda t: t["started"])
    first = min(t["started"] for t in tasks)
    by_worker: dict[int, list[dict]] = {}
    for t in tasks:
        by_worker.setdefault(t["worker"], []).append(t)
    gaps = [b["started"] - a["ended"] for ts in by_worker.values() for a, b in zip(ts, ts[1:], strict=False)]
    end = max(t["ended"] for t in tasks)
    return {
        "session": inner.get("session", 0.0),
        "job_start": first - job["submitted"],
        "task_overhead": sum(gaps) / len(gaps) if gaps else 0.0,
        "job_end": job["wall"] - (end - job["submitted"]),  # last task's end -> results on the driver
        "conversion": sum(t["seconds"] for t in tasks),
        "parts": [t["seconds"] for t in sorted(job["tasks"], key=lambda t: -t["seconds"])],
        "job": job["wall"],
        "driver": inner["ingest"] - job["wall"],
    }


def makespan(durations: list[float], workers: int) -> float:
    """Longest-processing-time-first list scheduling of ``durations`` on ``workers`` slots."""
    slots = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(slots, slots[0] + d)
    return max(slots)


def predict(model: dict, workers: int) -> float:
    """Ingest seconds on ``workers`` slots: driver + job start and end + makespan of parts (times ``scale``) plus
    per-task overhead."""
    tasks = [model.get("scale", 1.0) * p + model["task_overhead"] for p in model["parts"]]
    return model["driver"] + model["job_start"] + model["job_end"] + makespan(tasks, workers)


def fit_scale(model: dict, measured: dict[int, float]) -> float:
    """The one factor on the ``local[1]`` part times that fits every measured run best (least squares of the relative
    errors): parts that run side by side on one machine's cores are slower than alone (shared memory bandwidth)."""
    def error(scale: float) -> float:
        return sum((predict({**model, "scale": scale}, w) / t - 1) ** 2 for w, t in measured.items())

    return min((0.7 + i / 1000 for i in range(601)), key=error)


def svg(model: dict, rows: int, measured: dict[int, float], local_rate: float) -> str:
    """Predicted rows/s for W = 1..64 (log-log), the measured points and the local engine's rate."""
    import math

    from hub.svg_charts import esc

    w, h, left, bottom, top, right = 640, 360, 70, 40, 30, 20
    xs = list(range(1, 65))
    ys = [rows / predict(model, x) for x in xs]
    hi = max(ys + list(measured.values()) + [local_rate]) * 1.2
    lo = min(ys + list(measured.values()) + [local_rate]) / 1.5

    def px(x: float) -> float:
        return left + (w - left - right) * math.log(x) / math.log(64)

    def py(y: float) -> float:
        return h - bottom - (h - bottom - top) * (math.log(y) - math.log(lo)) / (math.log(hi) - math.log(lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13">{esc(TITLE)}</text>']
    for x in WORKERS:
        out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{h - bottom}" stroke="#ddd"/>'
                   f'<text x="{px(x):.1f}" y="{h - bottom + 15}" text-anchor="middle">{x}</text>')
    for k in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = m * 10**k
            if lo <= v <= hi:
                out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{w - right}" y2="{py(v):.1f}" stroke="#eee"/>'
                           f'<text x="{left - 5}" y="{py(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    out.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    out.append(f'<line x1="{left}" y1="{py(local_rate):.1f}" x2="{w - right}" y2="{py(local_rate):.1f}" '
               f'stroke="#2ca02c" stroke-dasharray="4 3"/><text x="{w - right}" y="{py(local_rate) - 4:.1f}" '
               f'text-anchor="end" fill="#2ca02c">{esc("local engine, this machine")}</text>')
    for x, y in measured.items():
        label = esc(f"measured W={x}: {y:,.0f} rows/s")
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="#d62728"><title>{label}</title></circle>')
    out.append(f'<text x="{(w + left) / 2}" y="{h - 5}" text-anchor="middle">{esc("W (executor slots, log scale)")}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------------- main
def scenario(label: str, template: Path, rows: int, work: Path, logs: Path) -> tuple[list[str], dict, dict]:
    steps: dict[str, tuple[Step, dict]] = {}
    for name, engine, master in (("local engine", "local", None), ("Spark local[1]", "spark", "local[1]"),
                                 ("Spark local[2]", "spark", "local[2]")):
        root = fresh_copy(template, work / "hub")
        steps[name] = run(f"{label} {name}", engine, root, master, rows, logs)
    local, (_, i1), (_, i2) = steps["local engine"], steps["Spark local[1]"], steps["Spark local[2]"]
    b1, b2 = breakdown(i1), breakdown(i2)
    t1, t2, tl = i1["ingest"], i2["ingest"], local[1]["ingest"]
    model = {k: b1[k] for k in ("driver", "job_start", "job_end", "task_overhead", "parts")}
    lines = [f"**{label}** ({rows:,} rows in {len(b1['parts'])} parts):", "",
             "| run | W | ingest s | rows/s | efficiency T1/(W·TW) | process wall s | CPU s | peak RSS MiB | session start s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    runs = (("local engine (DuckDB, 2 threads)", "-", local), ("Spark local[1]", 1, steps["Spark local[1]"]),
            ("Spark local[2]", 2, steps["Spark local[2]"]))
    for name, w, (step, inner) in runs:
        eff = f"{t1 / (w * inner['ingest']):.2f}" if isinstance(w, int) else ""
        cpu, peak = inner.get("tree_cpu", step.cpu), inner.get("tree_peak_mib", step.peak_mib)
        lines.append(f"| {name} | {w} | {inner['ingest']:.2f} | {rows / inner['ingest']:,.0f} | {eff} | {step.seconds:.2f} | "
                     f"{cpu:.1f} | {peak:,.0f} | {inner.get('session', 0):.2f} |")
    lines += ["", "CPU s and peak RSS: the child process (local engine); for Spark, the driver with its JVM and Python workers "
              "(the process tree, sampled from /proc every 0.5 s; CPU until the ingestion ends).",
              "", f"Spark local[2] / local engine (ingest wall): **{t2 / tl:.2f}x**; efficiency at W = 2: "
              f"**{t1 / (2 * t2):.2f}**.",
              "", "| overhead breakdown | local[1] | local[2] |", "|---|---:|---:|"]
    for key, text in (("session", "session start (not in the ingest time)"), ("job_start", "job start: submit -> first task"),
                      ("task_overhead", "per-task overhead: a worker's gap between two tasks"),
                      ("conversion", "conversion, sum over tasks (DuckDB, 1 thread each)"),
                      ("job_end", "job end: last task -> results on the driver"), ("job", "Spark job wall"),
                      ("driver", "driver: listing, schema, reconcile, validate, swap, record")):
        lines.append(f"| {text} | {b1[key]:.2f} | {b2[key]:.2f} |")
    alone = dict(model)
    model["scale"] = fit_scale(model, {1: t1, 2: t2})
    p1, p2 = predict(model, 1), predict(model, 2)
    a1, a2 = predict(alone, 1), predict(alone, 2)
    lines += ["", f"Model: driver {model['driver']:.2f} s + job start {model['job_start']:.2f} s + job end "
              f"{model['job_end']:.2f} s + the LPT makespan over W slots of each part's conversion time (the `local[1]` "
              f"run's, times a factor **{model['scale']:.3f}** fitted to both runs) + {model['task_overhead']:.2f} s a task. "
              "The same model with the `local[1]` part times alone (factor 1) shows what running side by side costs.", "",
              "| model check | measured s | predicted s (fitted) | error | predicted s (local[1] alone) | error |",
              "|---|---:|---:|---:|---:|---:|",
              f"| W = 1 | {t1:.2f} | {p1:.2f} | {100 * (p1 - t1) / t1:+.1f} % | {a1:.2f} | {100 * (a1 - t1) / t1:+.1f} % |",
              f"| W = 2 | {t2:.2f} | {p2:.2f} | {100 * (p2 - t2) / t2:+.1f} % | {a2:.2f} | {100 * (a2 - t2) / t2:+.1f} % |",
              "",
              "| W | " + " | ".join(str(w) for w in WORKERS) + " |", "|---|" + "---:|" * len(WORKERS),
              "| predicted rows/s | " + " | ".join(f"{rows / predict(model, w):,.0f}" for w in WORKERS) + " |",
              "| predicted efficiency | " + " | ".join(f"{p1 / (w * predict(model, w)):.2f}" for w in WORKERS) + " |",
              ""]
    return lines, model, {"rows": rows, "t1": t1, "t2": t2, "local": tl}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--rows-per-part", type=int, default=250_000)
    parser.add_argument("--skew", type=int, default=4)
    parser.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--svg", default=str(REPO / "bench" / "spark_scaling.svg"))
    parser.add_argument("--keep", default=None)
    parser.add_argument("--child", default=None)
    parser.add_argument("--master", default=None)
    parser.add_argument("--result", default=None)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        Path(args.result).write_text(json.dumps(child(args.child, rest[0], args.master)))
        return 0
    started = time.perf_counter()
    work = Path(args.keep or tempfile.mkdtemp(prefix="hub-bench-spark-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    body = [f"- machine: {machine()}; 1-minute load average {os.getloadavg()[0]:.2f} before",
            f"- `python bench/spark.py --parts {args.parts} --rows-per-part {args.rows_per_part} --skew {args.skew}`; each run a "
            "child process on a fresh (hard-linked) copy of the hub; the export's generation is not timed", ""]
    models = {}
    for label, skew in (("even", 1), ("skewed", args.skew)):
        template = work / f"template-{label}"
        if not template.exists():
            rows = make_export(template, args.parts, args.rows_per_part, skew)
        else:
            rows = (args.parts + (skew - 1 if skew > 1 else 0)) * args.rows_per_part
        title = "even parts" if skew == 1 else f"skewed: the first part {skew}x the others"
        lines, model, measured = scenario(title, template, rows, work, logs)
        body += lines
        models[label] = (model, measured)
    model, measured = models["even"]
    rows = measured["rows"]
    points = {1: rows / measured["t1"], 2: rows / measured["t2"]}
    Path(args.svg).write_text(svg(model, rows, points, rows / measured["local"]), encoding="utf-8")
    body += [f"Plot: `{os.path.relpath(args.svg, REPO)}` (even parts; measured points in red). Total benchmark time "
             f"{time.perf_counter() - started:.0f} s."]
    update_results(Path(args.out), f"{date.today().isoformat()} · Spark engine", body)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
