"""Benchmark: the FinOps Foundation's ``focus-converter`` package on an AWS legacy CUR CSV, measured as ``bench/run.py``
measures ``hub ingest`` (one child process; wall time, CPU user + system and peak RSS from ``os.wait4``).

Usage: ``python bench/focus_converter.py CUR.csv[.gz] --work DIR [--venv DIR] [--version V] [--no-pad] [--timeout S]``
prints one JSON line; ``measure(cur_csv, work)`` returns the same dict.

The converter gets a virtualenv of its own (it pins old polars / pyarrow / pandera), ``DIR/focus-converter-venv`` unless
``--venv`` names a cache, reused when it still works. Its 1.0.0 release no longer imports with today's resolutions of
its unpinned dependencies (pandera 0.17 needs ``multimethod.overload``, gone in multimethod 2; typer 0.9 breaks on click
8.2), so when the plain install does not start, :data:`COMPAT_PINS` are added and reported.

It runs as ``focus-converter convert --provider aws-cur --data-format csv --export-format parquet
--no-export-include-source-columns`` (the package's own CLI entry point, started from a small wrapper that exits at
once on an error: on its own the CLI hangs after a failure, waiting for its Parquet writer processes). Its ``aws-cur``
plans require some CUR columns that a CUR only has with certain features or settings (``reservation/*``,
``savingsPlan/*``, ``pricing/RateId`` ...); when it stops on ``Column(s) '...' not found in data``, the file is
copied with those columns added empty and converted again (``--no-pad``: not), and the first error and the padded
columns are reported. The output is checked by the rules of ``hub validate`` (:func:`transforms.focus_validate.checks`).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from transforms.focus_validate import Check

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PACKAGE = "focus-converter"
#: Extra requirements that make focus-converter 1.0.0 start with today's releases of its unpinned dependencies.
COMPAT_PINS = ("multimethod<2", "click<8.2")
#: Runs the package's CLI (``focus_converter.main:app``) with the given arguments, then leaves at once with its exit
#: code; an exception's last line is ``Type: message`` on one line.
WRAPPER = (
    "import os, sys, traceback\n"
    "code = 1\n"
    "try:\n"
    "    from focus_converter.main import app\n"
    "    app(prog_name='focus-converter')\n"
    "    code = 0\n"
    "except SystemExit as exc:\n"
    "    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)\n"
    "except BaseException as exc:\n"
    "    traceback.print_exc()\n"
    "    print(type(exc).__name__ + ': ' + ' '.join(str(exc).split()), file=sys.stderr)\n"
    "sys.stdout.flush()\n"
    "sys.stderr.flush()\n"
    "os._exit(code)\n"
)
MISSING = re.compile(r"Column\(s\) '([^']*)' not found in data")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TOP = 10


@dataclass
class Child:
    """A finished child process: wall and CPU seconds, peak RSS, exit code and the tail of its output."""

    seconds: float
    cpu: float
    peak_mb: float
    exit_code: int
    log: str
    timed_out: bool = False


def child_env() -> dict[str, str]:
    """The environment of the converter's processes: none of the project's Python paths, plain wide output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_child(cmd: list[str], cwd: Path, log: Path, timeout: float) -> Child:
    """Run ``cmd`` in a session of its own; its rusage from ``os.wait4``. Whatever it leaves behind in its process
    group (writer processes after a failure) is killed when it exits, and the whole group when ``timeout`` passes."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env(),
                                start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        timed_out = not timer.is_alive()
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen so it does not wait again
    _kill_group(proc.pid)
    peak_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return Child(seconds, usage.ru_utime + usage.ru_stime, peak_kib / 1024, proc.returncode,
                 log.read_text(errors="replace")[-20000:], timed_out)


def scrub(text: str, *paths: Path) -> str:
    """One line of ``text`` without colours, local paths (given ones and the home folder) or run-on length."""
    line = " ".join(ANSI.sub("", text).split())
    for path in sorted({str(p) for p in paths if str(p) not in ("", ".", "/")}, key=len, reverse=True):
        line = line.replace(path, "<" + Path(path).name + ">")
    home = str(Path.home())
    if home not in ("", "/"):
        line = line.replace(home, "~")
    return line[:400]


def last_line(text: str, prefer: str = "") -> str:
    """The last non-empty line of ``text`` (the last one starting with ``prefer`` if there is one)."""
    lines = [ln for ln in ANSI.sub("", text).splitlines() if ln.strip()]
    chosen = [ln for ln in lines if prefer and ln.lstrip().startswith(prefer)] or lines
    return chosen[-1].strip() if chosen else ""


def base_python() -> str | None:
    """A Python the converter's pinned wheels exist for (3.9 to 3.12): this one, else one on PATH."""
    if (3, 9) <= sys.version_info[:2] <= (3, 12):
        return sys.executable
    for name in ("python3.12", "python3.11", "python3.10", "python3.9"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=child_env(), timeout=timeout)


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(python), "-m", "pip", *args, "--disable-pip-version-check"], python.parent)


def available_versions(python: Path) -> list[str]:
    """The package's released versions, newest first (empty when the index cannot be asked)."""
    try:
        proc = _pip(python, "index", "versions", PACKAGE)
    except (OSError, subprocess.SubprocessError):
        return []
    found = re.search(r"Available versions:\s*(.+)", proc.stdout)
    return [v.strip() for v in found.group(1).split(",") if v.strip()] if found else []


def starts(python: Path) -> str | None:
    """None when the converter's CLI answers ``--help``, else the one-line reason it does not."""
    try:
        proc = _run([str(python), "-I", "-c", WRAPPER, "--help"], python.parent, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode == 0 and "convert" in proc.stdout:
        return None
    return last_line(proc.stderr or proc.stdout) or f"--help exited {proc.returncode}"


def installed_version(python: Path) -> str | None:
    proc = _run([str(python), "-I", "-c", f"from importlib.metadata import version; print(version({PACKAGE!r}))"],
                python.parent, timeout=120)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def install(venv: Path, version: str | None = None) -> dict:
    """Make ``venv`` run the converter (newest version first, then older ones; :data:`COMPAT_PINS` when the plain
    install does not start). ``{"installed": bool, "version", "pins", "install_seconds"}`` or ``"error"``."""
    start = time.perf_counter()
    python = _venv_python(venv)
    scrubbed = (venv, venv.parent)
    try:
        have = installed_version(python) if python.exists() else None
        if have and version in (None, have) and starts(python) is None:
            pins = (venv / "compat-pins.txt").read_text().split() if (venv / "compat-pins.txt").exists() else []
            return {"installed": True, "version": have, "pins": pins, "install_seconds": 0.0, "reused": True}
        if not python.exists():
            base = base_python()
            if base is None:
                return {"installed": False, "error": "no Python 3.9 to 3.12 found for the converter's virtualenv"}
            made = _run([base, "-m", "venv", "--clear", str(venv)], REPO, timeout=600)
            if made.returncode != 0:
                return {"installed": False, "error": scrub("venv: " + last_line(made.stderr or made.stdout), *scrubbed)}
        candidates: list[str | None] = [version] if version else [*available_versions(python)] or [None]
        errors = []
        for candidate in candidates:
            spec = PACKAGE if candidate is None else f"{PACKAGE}=={candidate}"
            done = _pip(python, "install", "--quiet", spec)
            if done.returncode != 0:
                errors.append(f"{spec} does not install: {last_line(done.stderr or done.stdout, 'ERROR')}")
                continue
            pins: list[str] = []
            why = starts(python)
            if why is not None:
                pins = list(COMPAT_PINS)
                fixed = _pip(python, "install", "--quiet", spec, *pins)
                if fixed.returncode != 0 or starts(python) is not None:
                    errors.append(f"{spec} does not start: {why}")
                    continue
            (venv / "compat-pins.txt").write_text("\n".join(pins) + "\n")
            return {"installed": True, "version": installed_version(python) or candidate, "pins": pins,
                    "install_seconds": round(time.perf_counter() - start, 1), "reused": False}
        return {"installed": False, "error": scrub("; ".join(errors) or "no version to try", *scrubbed)}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"installed": False, "error": scrub(f"{type(exc).__name__}: {exc}", *scrubbed)}


def plain_csv(cur_csv: Path, work: Path) -> Path:
    """``cur_csv`` itself, or its decompressed copy in ``work`` when it is gzip (the converter reads plain CSV)."""
    if not cur_csv.name.endswith(".gz"):
        return cur_csv
    out = work / cur_csv.name[: -len(".gz")]
    with gzip.open(cur_csv, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


def _connect() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _read_csv(path: Path) -> str:
    from transforms.typing import literal

    return f"read_csv({literal(str(path))}, all_varchar = true, header = true, delim = ',', quote = '\"', escape = '\"')"


def count_csv_rows(path: Path) -> int:
    """Data rows of a CSV with a header (quoted line breaks are not row ends)."""
    row = _connect().execute(f"SELECT count(*) FROM {_read_csv(path)}").fetchone()
    return int(row[0]) if row else 0


def pad_csv(src: Path, dst: Path, columns: list[str]) -> None:
    """Copy the CSV ``src`` to ``dst`` with ``columns`` added, empty, at the end (values kept as text)."""
    from transforms.typing import ident, literal

    added = "".join(f", CAST(NULL AS VARCHAR) AS {ident(c)}" for c in columns)
    _connect().execute(f"COPY (SELECT *{added} FROM {_read_csv(src)}) TO {literal(str(dst))} (HEADER, DELIMITER ',')")


def focus_report(files: list[Path]) -> dict:
    """How many rows of the Parquet ``files`` pass every FOCUS 1.0 check of ``hub validate``.

    Schema-level checks (a missing mandatory column, a wrong column type, a custom column without ``x_``) fail every
    row, so ``rows_valid`` is 0 when there is one; ``rows_valid_row_checks`` counts the rows that fail no row check.
    A row check whose predicate does not apply to the output's types (``EmptyString`` of an integer column) is left out
    and listed under ``unchecked``.
    """
    from transforms.focus_validate import checks
    from transforms.typing import literal

    empty = {"rows_out": 0, "rows_valid": 0, "rows_valid_row_checks": 0, "missing_columns": [], "schema_violations": [],
             "top_violations": {}}
    if not files:
        return empty
    con = _connect()
    source = f"read_parquet([{', '.join(literal(str(f)) for f in files)}], union_by_name = true)"
    columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    todo = checks(columns, text_source=False)
    schema = [c for c in todo if c.schema_level]
    row_checks = [c for c in todo if not c.schema_level]

    def flag(check: Check) -> str:  # TRUE for a violating row; NULL is no violation, as in hub validate
        return f"coalesce(({check.violation}), false)"

    broken: dict[str, str] = {}
    counts: list[int] = []
    try:
        if row_checks:
            found = con.execute("SELECT " + ", ".join(f"count(*) FILTER (WHERE {flag(c)})" for c in row_checks) +
                                f" FROM {source}").fetchone()
            counts = [int(n) for n in found or ()]
    except Exception:  # a predicate that does not apply to this output's types (text compared with a number column)
        kept: list[Check] = []
        counts = []
        for check in row_checks:
            try:
                n = con.execute(f"SELECT count(*) FILTER (WHERE {flag(check)}) FROM {source}").fetchone()
                kept.append(check)
                counts.append(n[0] if n else 0)
            except Exception as exc:
                broken[f"{check.rule}:{check.column}"] = str(exc).strip().splitlines()[0][:200]
        row_checks = kept
    anyone = " OR ".join(flag(c) for c in row_checks) or "false"
    total, clean = con.execute(f"SELECT count(*), count(*) FILTER (WHERE NOT ({anyone})) FROM {source}").fetchone() or (0, 0)
    by_rule = sorted(((f"{c.rule}:{c.column}", int(n)) for c, n in zip(row_checks, counts, strict=True) if n),
                     key=lambda kv: (-kv[1], kv[0]))
    report = {**empty, "rows_out": int(total), "rows_valid": 0 if schema else int(clean),
              "rows_valid_row_checks": int(clean),
              "missing_columns": [c.column for c in schema if c.rule == "ColumnPresent"],
              "schema_violations": [f"{c.rule}:{c.column}" for c in schema if c.rule != "ColumnPresent"],
              "top_violations": dict(by_rule[:TOP]), "failing_row_checks": len(by_rule)}
    if broken:
        report["unchecked"] = broken
    return report


def measure(cur_csv: Path, work: Path, *, venv: Path | None = None, version: str | None = None, pad: bool = True,
            timeout: float = 3600.0) -> dict:
    """Install the converter (into ``venv``, default ``work/focus-converter-venv``), convert ``cur_csv`` (a legacy
    CUR CSV, plain or gzip) into ``work/focus-converter-out``, measure the child and validate its output. Never
    raises: a failure is ``"installed": false`` or an ``"error"`` (one scrubbed line) in the dict."""
    cur_csv, work = Path(cur_csv).resolve(), Path(work).resolve()
    venv = Path(venv).resolve() if venv else work / "focus-converter-venv"
    result: dict = {"installed": False, "version": None, "seconds": None, "cpu_seconds": None, "peak_rss_mb": None,
                    "rows_in": None, "rows_out": 0, "rows_valid": 0, "missing_columns": [], "top_violations": {},
                    "error": None}
    scrubbed = (cur_csv.parent, work, venv)
    try:
        work.mkdir(parents=True, exist_ok=True)
        setup = install(venv, version)
        result.update(setup)
        if not setup["installed"]:
            return result
        csv = plain_csv(cur_csv, work)
        result["rows_in"] = count_csv_rows(csv)
        out = work / "focus-converter-out"
        python = _venv_python(venv)
        result["padded_columns"] = []
        for attempt in range(2):
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(python), "-I", "-c", WRAPPER, "convert", "--provider", "aws-cur", "--data-format", "csv",
                   "--data-path", str(csv), "--export-path", str(out), "--export-format", "parquet",
                   "--no-export-include-source-columns"]
            child = run_child(cmd, work, work / "focus-converter.log", timeout)
            result.update(seconds=round(child.seconds, 3), cpu_seconds=round(child.cpu, 3),
                          peak_rss_mb=round(child.peak_mb, 1), exit_code=child.exit_code)
            if child.exit_code == 0:
                result["error"] = None
                break
            why = f"timed out after {timeout:g} s" if child.timed_out else last_line(child.log) or f"exit {child.exit_code}"
            result["error"] = scrub(why, *scrubbed)
            missing = MISSING.search(" ".join(child.log.split()))
            if attempt or not pad or not missing:
                break
            result["first_error"] = result["error"]
            result["padded_columns"] = [c.strip() for c in missing.group(1).split(",") if c.strip()]
            padded = work / "cur-padded.csv"
            pad_csv(csv, padded, result["padded_columns"])
            csv = padded
        result.update(focus_report(sorted(out.glob("**/*.parquet"))))
    except Exception as exc:  # the benchmark reports, it does not crash
        result["error"] = scrub(f"{type(exc).__name__}: {exc}", *scrubbed)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("cur_csv", type=Path, help="an AWS legacy CUR CSV (plain or .gz)")
    parser.add_argument("--work", type=Path, required=True, help="working folder (output, logs, decompressed CSV)")
    parser.add_argument("--venv", type=Path, default=None, help="the converter's virtualenv (default WORK/focus-converter-venv)")
    parser.add_argument("--version", default=None, help="the converter's version (default: newest that works)")
    parser.add_argument("--no-pad", dest="pad", action="store_false", help="do not add the CUR columns it requires")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before the conversion is killed")
    args = parser.parse_args(argv)
    result = measure(args.cur_csv, args.work, venv=args.venv, version=args.version, pad=args.pad, timeout=args.timeout)
    print(json.dumps(result))
    return 0 if result.get("installed") and not result.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
