"""The ``hub`` command: a thin typer layer over :mod:`pipelines` and :mod:`hub` functions.

Exit codes: 0 success, 1 at least one export quarantined (or failed), 2 usage error.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hub import runs
from hub.errors import HubError, UsageError
from hub.runs import RunRecord
from hub.settings import Settings
from hub.store import SETTINGS, Store, StoreUnreachable, describe, public_root, redact, storage_error
from hub.terminal import printable

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FinOps hub: cost exports in, a FOCUS Parquet lake out.")
_WIDTH = int(os.environ.get("COLUMNS", "0")) or (None if sys.stdout.isatty() else 200)
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

Root = Annotated[str, typer.Argument(help="Hub root: a local folder or an fsspec URL (abfs://, az://, s3://).")]


def _error(message: object) -> None:
    """One ``error:`` line on stderr; the message is shown as text (no markup, control characters escaped)."""
    err.print(Text.assemble(("error: ", "red"), printable(redact(str(message)))), soft_wrap=True)  # one line, whatever the width


def _waiting(message: str) -> None:
    """A line on stderr while a command waits for a lease another process holds."""
    err.print(_plain(f"note: {message}"), soft_wrap=True)


def _plain(value: object) -> Text:
    """A table cell or line from data: never read as markup, control characters escaped."""
    return Text(printable(value))


def _store(root: str, *, probe: bool = True) -> Store:
    """The hub root, checked to answer (remote roots): a bad or unreachable root is one line and exit code 2."""
    try:
        store = Store(root)
        if probe:
            store.probe()
        return store
    except StoreUnreachable as exc:
        _error(exc)
        raise typer.Exit(2) from None
    except (UsageError, ValueError, ImportError, OSError) as exc:
        _error(f"cannot open hub root {public_root(root)!r}: {describe(exc)}")
        raise typer.Exit(2) from None


@app.command()
def init(root: Root) -> None:
    """Create msexports/, ingestion/, config/ and config/settings.json (kept if it exists)."""
    store = _store(root)
    store.init_layout()
    if not store.exists(SETTINGS):
        store.write_bytes(SETTINGS, Settings().to_json().encode())
    out.print(_plain(f"hub initialised at {store.url}"))


def _amount(value: object, *, signed: bool = False) -> str:
    """An amount to the cent as ``hub report`` shows it: half up (300.045 is 300.05), never ``-0.00``."""
    d = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if d == 0:
        return "0.00"
    return f"{d:+,.2f}" if signed else f"{d:,.2f}"


def _print_errors(records: list[RunRecord]) -> None:
    """One line per failed run: its code, file and message."""
    for r in records:
        if r.error:
            err.print(_plain(f"{r.error.code}: {r.error.file or r.manifest}: {r.error.message}"))


def _run_table(records: list[RunRecord], title: str) -> Table:
    table = Table(title=_plain(title))
    for col in ("export", "dataset", "month", "scope", "rows", "seconds", "state", "error"):
        table.add_column(col, overflow="fold", justify="right" if col in ("rows", "seconds") else "left")
    for r in records:
        error = f"{r.error.code}: {r.error.file or r.manifest}: {r.error.message}" if r.error else ""
        # another cloud's delivery is named by its folder (its exportName is the provider's, the same for all)
        label = r.manifest.rsplit("/", 1)[0] if r.manifest.startswith("exports/") else (r.exportName or r.manifest)
        state = Text(r.state, style={"committed": "green", "quarantined": "red", "superseded": "yellow"}.get(r.state, ""))
        table.add_row(_plain(label), _plain(r.dataset or ""), _plain(r.month or ""), _plain(r.scope or ""),
                      f"{r.rowsOut or r.rowsIn:,}", f"{r.seconds:.2f}" if r.seconds is not None else "", state, _plain(error))
    return table


@app.command()
def ingest(
    root: Root,
    retry: Annotated[bool, typer.Option("--retry", help="Also re-process quarantined exports.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-process every export, committed ones too.")] = False,
    engine: Annotated[str, typer.Option(help="Where export parts are converted: local (this process) or spark.")] = "local",
    spark_master: Annotated[str | None, typer.Option(help="--engine spark: the Spark master (default local[*,4]).")] = None,
    spark_remote: Annotated[str | None, typer.Option(help="--engine spark: a Spark Connect URL (sc://host:15002).")] = None,
) -> None:
    """Process every pending delivery once (msexports/, exports/<provider>/, custom data)."""
    from hub import conversion
    from pipelines.ingest import ingest as run_ingest

    store = _store(root)
    if engine not in ("local", "spark"):
        _error(f"--engine is local or spark, not {engine!r}")
        raise typer.Exit(2)
    if engine == "local" and (spark_master or spark_remote):
        _error("--spark-master and --spark-remote need --engine spark")
        raise typer.Exit(2)
    runner = None
    if engine == "spark":
        from hub.spark.runner import SparkRunner
        from hub.spark.session import session

        try:
            runner = SparkRunner(session(spark_master, spark_remote))
        except UsageError as exc:
            _error(exc)
            raise typer.Exit(2) from None
    tasks: dict[tuple[str, int], TaskID] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal, transient=True) as bar:

        def progress(rec: RunRecord, part: int, parts: int, pct: float) -> None:
            key = (rec.key, part)
            if key not in tasks:
                tasks[key] = bar.add_task(escape(printable(f"{rec.exportName or rec.runId} part {part + 1}/{parts}")), total=100)
            bar.update(tasks[key], completed=pct)

        try:
            with conversion.parts_runner(runner):
                result = run_ingest(store, retry=retry, force=force, progress=progress, waiting=_waiting)
        except UsageError as exc:
            _error(exc)
            raise typer.Exit(2) from None
    if result.busy:
        err.print("another process holds this hub's ingestion lease; nothing done (try again later)")
        raise typer.Exit(1)
    for problem in result.unreadable:
        err.print(_plain(f"warning: skipped {problem}"))
    if result.lost:
        _error(f"{result.lost}; this process stopped without writing more (the other process carries on)")
        raise typer.Exit(1)
    records = result.all
    for problem in result.published.errors if result.published else []:  # kept and re-sent later: said, not fatal
        err.print(_plain(f"warning: events: {problem}"))
    if not records:
        out.print("nothing to ingest")
        return
    out.print(_run_table(records, f"hub ingest {store.url}"))
    _print_errors(records)
    raise typer.Exit(0 if result.ok else 1)


@app.command("pull")
def pull_cmd(
    root: Root,
    provider: Annotated[str, typer.Option(help="alibaba, huawei or tencent.")],
    day: Annotated[str | None, typer.Option("--date", help="The provider's day to pull (YYYY-MM-DD, UTC+8).")] = None,
    month: Annotated[str | None, typer.Option(help="Every day of this month (YYYY-MM).")] = None,
    then_ingest: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Ingest what was pulled at once.")] = True,
) -> None:
    """Pull a day (default: yesterday, provider's time) or a month of a provider's bill from its API into exports/."""
    from pipelines import pull as pulling

    store = _store(root)
    try:
        done = pulling.run(store, provider, pulling.days_asked(provider, day, month), then_ingest=then_ingest)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    records = [r for p in done.pulls for r in p.records]
    if any(p.busy for p in done.pulls):
        err.print(f"another process is pulling {provider} for this hub; nothing done (try again later)")
    for p in done.pulls:
        if p.error:
            _error(p.error)
    if records:
        out.print(_run_table(records, f"hub pull {provider}"))
    _print_errors(records + (done.ingested.all if done.ingested else []))
    if done.ingested and done.ingested.all:
        out.print(_run_table(done.ingested.all, f"hub ingest {store.url}"))
    for sent in done.published:
        for problem in sent.errors:
            err.print(_plain(f"warning: events: {problem}"))
    raise typer.Exit(0 if done.ok else 1)


@app.command("allocate")
def allocate_cmd(
    root: Root,
    month: Annotated[list[str] | None, typer.Option(help="A month (YYYY-MM), repeatable; default: every month.")] = None,
    preview: Annotated[str | None, typer.Option(help="Candidate rules file: print the change per value, write nothing.")] = None,
    chargeback: Annotated[str | None, typer.Option(help="A locked month (YYYY-MM): its chargeback CSV.")] = None,
    dimension: Annotated[str, typer.Option(help="The chargeback's dimension.")] = "cost_center",
    out_file: Annotated[str | None, typer.Option("--out", help="Write the chargeback CSV here instead of printing it.")] = None,
) -> None:
    """Allocate the lake's costs to cost centers and products by config/allocation.json (the Allocation dataset)."""
    from hub import lease
    from hub.allocation import reports
    from hub.allocation import rules as allocation_rules

    store = _store(root)
    try:
        for m in [*(month or []), *([chargeback] if chargeback else [])]:
            if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", m):
                raise UsageError(f"a month must be YYYY-MM, not {m!r}")
        rules = allocation_rules.load(store)
        if rules is None:
            raise UsageError(f"{store.full(allocation_rules.RULES)} does not exist: write the allocation rules first (README)")
        if preview:
            try:
                deltas = reports.preview(store, rules, allocation_rules.load(store, preview), month or None)
            except HubError as exc:  # the candidate's own problem (a pool set to error, a conflict): named as its
                raise UsageError(f"{preview}: {exc.code}: {exc.message}") from None
            table = Table(title=_plain(f"hub allocate --preview {preview}"))
            for col in ("dimension", "value", "currency", "current", "candidate", "change"):
                table.add_column(col, justify="right" if col in ("current", "candidate", "change") else "left")
            for d in deltas:
                table.add_row(_plain(d.dimension), _plain(d.value), _plain(d.currency), _amount(d.current),
                              _amount(d.candidate), _amount(d.delta, signed=True))
            out.print(table if deltas else "no change")
            return
        if chargeback:
            text = reports.chargeback(store, rules, chargeback, dimension)
            if out_file:
                with open(out_file, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
            else:
                typer.echo(text, nl=False)
            return
        with lease.holding(store, "ingest", wait=600, waiting=_waiting) as held:  # never beside an ingestion
            if held is None:
                raise UsageError("another process holds this hub's ingestion lease; nothing allocated (try again later)")
            from pipelines import allocate as allocating

            records = allocating.run(store, month or None, rules)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    done = {r.month for r in records}
    lock = rules.lock_before.isoformat() if rules.lock_before else None
    for m in sorted(set(month or []) - done):  # a month asked for and not allocated: locked
        if lock and f"{m}-01" < lock:
            out.print(_plain(f"{m}: locked (lock_before {lock}): its allocation stays as written"))
    if not records:
        out.print("nothing to allocate")
        return
    out.print(_run_table(records, f"hub allocate {store.url}"))
    _print_errors(records)
    raise typer.Exit(0 if all(r.state == "committed" for r in records) else 1)


def _day(text: str | None) -> date | None:
    """``--date``: a UTC day written YYYY-MM-DD, between 1970 and 9000."""
    if text is None:
        return None
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        value = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date must be YYYY-MM-DD, not {text!r}") from None
    if not 1970 <= value.year <= 9000:
        raise UsageError(f"--date {text} is out of range (1970 to 9000)")
    return value


@app.command("inspect")
def inspect_cmd(
    root: Root,
    day: Annotated[str | None, typer.Option("--date", help="Last day inspected (YYYY-MM-DD, UTC); default: the day before the "
                                            "lake's last day with costs, at the latest yesterday.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the anomalies as JSON.")] = False,
) -> None:
    """Find cost anomalies (expected value, band, interval, impact, severity) and their root causes."""

    from hub import inspection, lease
    from hub.inspection import rules as inspection_rules

    store = _store(root)
    try:
        when = _day(day)
        if when is not None and when > datetime.now(timezone.utc).date():  # recorded, it would silence every day before it
            raise UsageError(f"--date {when} is after today (UTC): no costs to inspect yet")
        with lease.holding(store, "inspect", wait=600, waiting=_waiting) as held:
            if held is None:
                raise UsageError("another process holds this hub's inspection lease; nothing done (try again later)")
            result = inspection.inspect(store, when, inspection_rules.load(store))
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    if result.not_recorded:
        err.print(_plain(f"note: {result.day} is before the last inspected day ({result.not_recorded}): reported only, "
                         "nothing recorded, published or alerted"))
    if result.untested:
        first, last = result.untested
        err.print(_plain(f"warning: {first} to {last} were never tested (each inspection tests its last test_days days; "
                         "inspect daily): `hub inspect --date D` for a day D of them shows their anomalies (reported only)"))
    for line in result.unmatched:
        err.print(_plain(f"warning: {line}"))
    for line in result.alert_errors:
        err.print(_plain(f"warning: alerts: {line}"))
    for line in result.event_errors:
        err.print(_plain(f"warning: events: {line}"))
    if as_json:
        typer.echo(json.dumps(inspection.to_json(result), indent=2))
        return
    out.print(f"{result.series:,} series inspected up to {result.day}; {len(result.anomalies)} anomalies; "
              f"{len(result.insufficient)} series with insufficient history")
    if result.last_cost_day and result.last_cost_day < result.day:
        out.print(_plain(f"no costs in the inspected window: the lake's costs end on {result.last_cost_day}; "
                         f"hub inspect {public_root(root)} --date {result.last_cost_day}"))
    if result.anomalies:
        table = Table(title=_plain(f"hub inspect {store.url}"))
        for col in ("monitor", "key", "currency", "start", "end", "state", "direction", "actual", "expected", "impact",
                    "impact %", "severity", "top cause"):
            table.add_column(col, overflow="fold")
        for a in result.anomalies:
            cause = a.causes[0] if a.causes else None
            top = f"{cause.dimension} {cause.value} ({cause.kind}, {cause.share:.0%})" if cause else ""
            table.add_row(*(_plain(str(v)) for v in (a.monitor, a.key, a.currency, a.start, a.end, a.state, a.direction,
                                                     _amount(a.actual), _amount(a.expected), _amount(a.impact, signed=True),
                                                     "" if a.impact_pct is None else f"{a.impact_pct:+.0f} %", a.severity, top)))
        out.print(table)


@app.command("anomalies")
def anomalies_cmd(
    root: Root,
    feedback: Annotated[tuple[str, str] | None, typer.Option(help="ID VERDICT: yes, no or planned.")] = None,
) -> None:
    """List the anomalies found so far (newest first), or record feedback on one."""
    from hub.inspection import outcome

    store = _store(root)
    try:
        if feedback:
            outcome.feedback(store, *feedback)
        state = outcome.load_state(store)["anomalies"]
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    if not state:
        out.print("no anomalies yet (hub inspect finds them)")
        return
    table = Table(title=_plain(f"anomalies {store.url}"))
    for col in ("id", "monitor", "key", "currency", "start", "end", "state", "impact", "severity", "feedback"):
        table.add_column(col, overflow="fold")
    for a in sorted(state.values(), key=lambda a: (a["start"], a["id"]), reverse=True):
        table.add_row(*(_plain(str(a.get(k) if a.get(k) is not None else "")) for k in (
            "id", "monitor", "key", "currency", "start", "end", "state", "impact", "severity", "feedback")))
    out.print(table)


@app.command("budgets")
def budgets_cmd(root: Root,
                day: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; default: as hub inspect's.")] = None) -> None:
    """Each budget's month so far: actual, month-end forecast with its 80 % interval, consumption (nothing recorded)."""

    from hub import inspection
    from hub.inspection import rules as inspection_rules

    store = _store(root)
    try:
        when = _day(day)
        rules = inspection_rules.load(store)
        result = inspection.inspect(store, when, rules.model_copy(update={"monitors": rules.monitors[:1]}), save=False)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    if not result.budgets:
        out.print("no budgets (config/inspection.json)")
        return
    for line in result.unmatched:
        err.print(_plain(f"warning: {line}"))
    table = Table(title=_plain(f"budgets up to {result.day}"))
    for col in ("budget", "month", "currency", "amount", "actual", "used", "forecast", "80 % interval", "crossed"):
        table.add_column(col, overflow="fold")
    for b in result.budgets:
        interval = f"{b['lower80']} - {b['upper80']}" if b["forecast"] is not None else "insufficient history"
        crossed = ", ".join(f"{k} {p:g} %" for k, p in b["crossed"])
        table.add_row(*(_plain(str(v)) for v in (b["id"], b["month"], b["currency"], b["amount"], b["actual"],
                                                 f"{b['consumptionPct']:.1f} %", b["forecast"] or "", interval, crossed)))
    out.print(table)


@app.command()
def status(root: Root, as_json: Annotated[bool, typer.Option("--json", help="Print run records as JSON.")] = False) -> None:
    """Show every run record (newest last); files under config/runs/ that are not records are skipped and named."""
    unreadable: list[str] = []
    records = runs.load_all(_store(root), unreadable)
    for problem in unreadable:
        err.print(_plain(f"warning: skipped {problem}"))
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        out.print("no runs yet")
        return
    out.print(_run_table(records, "runs"))


@app.command()
def validate(
    path: Annotated[str, typer.Argument(help="A FOCUS .csv/.parquet file, a folder of Parquet files, or a hub root.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    tolerance: Annotated[float, typer.Option(help="Relative tolerance of cost = unit price x quantity checks.")] = 0.0001,
) -> None:
    """Check every row against FOCUS 1.0; exit 1 on violations."""
    import duckdb

    from hub import convert
    from hub.validate import validate as run_validate

    if "://" not in path and not os.path.exists(path):  # a typo is no InternalError
        _error(f"{path}: no such file or folder")
        raise typer.Exit(2)
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        _error(f"--tolerance must be a number from 0 to 1 (a share), not {tolerance!r}")
        raise typer.Exit(2)
    try:
        report = run_validate(path, tolerance=tolerance)
    except (ValueError, OSError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    except duckdb.Error as exc:  # a file that cannot be read as it says (not UTF-8, cut): one line naming it, exit 2
        problem = convert.map_error(exc, file=path)
        _error(f"{problem.code}: {path}: {problem.message}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        table = Table(title=_plain(f"FOCUS 1.0 validation of {report.source}: {report.rows:,} rows, {report.checked} checks"))
        for col in ("rule", "column", "violations", "sample rows"):
            table.add_column(col, overflow="fold", justify="right" if col == "violations" else "left")
        for r in report.results:
            samples = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in r.samples)
            table.add_row(r.rule, _plain(r.column), f"{r.violations:,}", _plain(samples or r.text))
        clean = _plain(f"{report.source}: {report.rows:,} rows, {report.checked} checks, no violations")
        out.print(table if report.results else clean)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def watch(
    root: Root,
    interval: Annotated[float, typer.Option(help="Seconds between full scans (remote roots: between polls).")] = 60.0,
    blob_timeout: Annotated[float, typer.Option(help="Seconds to wait for a manifest's blobs before quarantining it.")] = 600.0,
    settle: Annotated[float, typer.Option(help="Seconds an OCI report file (no manifest), or a delivery's data file "
                                                "written after its manifest, must stay unchanged before it is taken.")] = 60.0,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object per log line.")] = False,
) -> None:
    """Ingest exports as they land, until SIGINT/SIGTERM; applies retention daily."""
    import signal
    import threading

    from pipelines.watch import json_log, text_log
    from pipelines.watch import watch as run_watch

    store = _store(root, probe=False)  # an unreachable store is retried by the watcher, with backoff
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fmt = json_log if json_logs else text_log

    def log(line: dict) -> None:
        print(fmt(line), flush=True)

    try:
        run_watch(store, stop=stop, log=log, interval=interval, blob_timeout=blob_timeout, settle=settle)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None


@app.command()
def retention(
    root: Root,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted, with sizes; delete nothing.")] = False,
) -> None:
    """Apply retention.msexports.days, retention.exports.days and retention.ingestion.months (config/settings.json)."""
    from hub.settings import load_settings
    from pipelines.retention import apply

    store = _store(root)
    try:
        result = apply(store, load_settings(store), dry_run=dry_run, waiting=_waiting)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    if result.busy or result.lost:
        _error(result.lost or "another process holds this hub's ingestion lease; nothing deleted (try again later)")
        raise typer.Exit(1)
    table = Table(title=_plain(f"retention {'(dry run) ' if dry_run else ''}{store.url}"))
    for col in ("path", "bytes", "reason"):
        table.add_column(col, overflow="fold", justify="right" if col == "bytes" else "left")
    for d in result.deletions:
        table.add_row(_plain(d.path), f"{d.bytes:,}", _plain(d.reason))
    out.print(table if result.deletions else "nothing to delete")
    for path, why in result.kept:
        out.print(f"kept {_plain(path)}: {_plain(why)}")
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(result.deletions)} item(s), {verb} {result.bytes:,} bytes")


@app.command()
def demo(root: Annotated[str, typer.Argument(help="Where to create the demo hub.")] = "demo-hub",
         rows: Annotated[int, typer.Option(help="Azure cost rows to generate.")] = 5000,
         other_clouds: Annotated[bool, typer.Option("--other-clouds/--azure-only",
                                                    help="Also an AWS CUR and an OCI FOCUS report.")] = True) -> None:
    """Generate a realistic FocusCost 1.0 export and price sheet (and AWS and OCI bills), ingest them, and query the lake."""
    from hub.demo import run_demo

    try:
        summary = run_demo(root, rows=rows, other_clouds=other_clouds)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    out.print(_run_table(summary.records, f"demo hub at {summary.root}"))
    for title, header, body in summary.tables:
        table = Table(title=_plain(title))
        for h in header:
            table.add_column(h)
        for row in body:
            table.add_row(*[_plain(v) for v in row])
        out.print(table)
    out.print("Query it yourself:")  # one line whatever the terminal's width (a wrapped line does not paste)
    example = (f"  {sys.executable} -c \"import duckdb; print(duckdb.sql(\\\"{summary.example_sql}\\\"))\"" if summary.local
               else f"  hub query {summary.root} \"{summary.example_sql}\"")
    out.print(_plain(example), soft_wrap=True)
    raise typer.Exit(0 if all(r.state == "committed" for r in summary.records) else 1)


@app.command()
def query(root: Root, sql: Annotated[str, typer.Argument(help="SQL over the views Costs, Prices, Costs_v1_0, ...")],
          fmt: Annotated[str, typer.Option("--format", help="table, csv, json (JSON Lines) or parquet.")] = "table",
          output: Annotated[str | None, typer.Option(help="Write to this file instead of printing.")] = None,
          max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 100) -> None:
    """Run SQL on the lake's DuckDB views."""
    from hub import catalog
    from hub import query as query_mod

    try:
        con = _lake(lambda: catalog.connect(_hub_store(root)))
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    try:
        text = query_mod.run(con, sql, fmt, output, max_rows)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    finally:
        con.close()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _lake(open_it: Callable[[], T]) -> T:
    """``open_it()`` (a read of the lake): a lake file DuckDB cannot read (cut, not Parquet) is a usage error naming it."""
    import duckdb

    try:
        return open_it()
    except duckdb.Error as exc:
        raise UsageError(f"cannot open the lake: {str(exc).splitlines()[0][:300]}") from None


def _require_root(store: Store) -> Store:
    """``store``, whose local root must exist (a usage error otherwise)."""
    if store.is_local and not os.path.isdir(store.root):
        raise UsageError(f"hub root {store.url!r} does not exist (run `hub init` first)")
    return store


def _hub_store(root: str) -> Store:
    """The store of a hub the command reads: a root that does not exist or is not a hub is a usage error (a mistyped
    root would otherwise read as a hub without costs)."""
    from hub.store import INGESTION

    store = _require_root(_store(root))
    if not store.exists(INGESTION) and not store.exists(SETTINGS):
        raise UsageError(f"{store.url} is not a hub root (no ingestion/ or config/settings.json)")
    return store


@app.command("ddl")
def ddl_cmd(
    root: Root,
    dialect: Annotated[str, typer.Option(help="databricks (also Spark SQL), trino or athena.")] = "databricks",
    location: Annotated[str | None, typer.Option(help="The hub root as the engine reads it (default: ROOT).")] = None,
    schema: Annotated[str, typer.Option(help="Schema (database) to create the tables and views in.")] = "finops",
) -> None:
    """Print SQL creating tables over the lake and the catalog's versioned views, for Databricks, Trino or Athena."""
    from hub.spark.ddl import ddl

    try:
        if location is not None and "://" in location and public_root(location).rstrip("/") != location.rstrip("/"):
            raise UsageError("--location holds a user:password@ or a query string: the tables' LOCATION is written into "
                             "SQL you keep and share; give the engine its credentials its own way")
        text = ddl(dialect, location or public_root(root), schema=schema)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    print(text, end="")


@app.command("catalog")
def catalog_cmd(root: Root,
                write: Annotated[str, typer.Option("--write", help="DuckDB database file to create.")] = "hub.duckdb") -> None:
    """Write a DuckDB database file with the lake's views, for tools that open a database file."""
    from hub import catalog

    try:
        views = _lake(lambda: catalog.write(_hub_store(root), write))
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    out.print(_plain(f"{write}: {len(views)} views ({', '.join(views)})"))


def _period(value: str, granularity: str, *, end: bool) -> str:
    """CLI dates: YYYY-MM (a whole month) for either granularity, YYYY-MM-DD (a real day, ASCII digits) for days.
    A day at month granularity would stand for its whole month: refused, naming ``--granularity day``."""
    import calendar
    import re

    option = "--end" if end else "--begin"
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}", value):
        try:
            last = calendar.monthrange(int(value[:4]), int(value[5:]))[1]
        except ValueError:  # calendar's IllegalMonthError is a ValueError
            raise UsageError(f"{option} {value!r} is not a month (YYYY-MM)") from None
        if granularity == "month":
            return value
        return f"{value}-{last:02d}" if end else f"{value}-01"
    try:
        day = date.fromisoformat(value) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) else None
    except ValueError:
        day = None
    if day is None:
        raise UsageError(f"{option} {value!r} is not a day (YYYY-MM-DD) or a month (YYYY-MM)")
    if granularity == "month":
        raise UsageError(f"{option} {value} is a day: months are YYYY-MM (or ask for days with --granularity day)")
    return value


def _filters(items: list[str], operator: int) -> list[dict]:
    out_ = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise UsageError(f"filters are KEY=V1,V2 (got {item!r})")
        out_.append({"operator": operator, "filter_factor": {"key": key, "value": _values(values)}})
    return out_


def _values(text: str) -> list[str]:
    r"""``V1,V2`` split at its commas; a comma inside a value is written ``\,`` (``Licenses\, Windows``), a backslash
    ``\\``."""
    out, current, chars = [], [], iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == ",":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    return [*out, "".join(current)]


@app.command()
def costs(root: Root,
          group_by: Annotated[list[str] | None,
                              typer.Option("--group-by", help="A column, an API dimension key or tag:<key> (up to 2).")] = None,
          granularity: Annotated[str, typer.Option(help="day or month.")] = "month",
          begin: Annotated[str, typer.Option(help="First day or month (YYYY-MM-DD or YYYY-MM), inclusive.")] = "",
          end: Annotated[str, typer.Option(help="Last day or month, inclusive (default: begin).")] = "",
          cost_type: Annotated[str, typer.Option(help="BilledCost, EffectiveCost, ListCost, ContractedCost.")] = "EffectiveCost",
          filter_: Annotated[list[str] | None, typer.Option("--filter", help="KEY=V1,V2: keep only these values.")] = None,
          exclude: Annotated[list[str] | None, typer.Option(help="KEY=V1,V2: leave these values out.")] = None,
          limit: Annotated[int | None, typer.Option(help="Groups returned (1-1000), largest first; default 1000, fewer "
                                                    "where days x groups would pass 100,000.")] = None,
          offset: Annotated[int, typer.Option(help="Groups skipped.")] = 0,
          fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table") -> None:
    """Costs per day or month, grouped by up to two dimensions or tags (the cost-analysis API)."""
    import csv as csv_mod
    import io

    from pydantic import ValidationError

    from hub import catalog
    from hub.cost_analysis import MAX_POINTS, CostQuery, CostQueryError, TimeCondition, periods, query_costs

    types = {"billedcost": "ORIGINAL_COST", "effectivecost": "AMORTIZED_COST", "listcost": "LIST_COST",
             "contractedcost": "CONTRACTED_COST"}
    try:
        if granularity not in ("day", "month"):
            raise UsageError("--granularity is day or month")
        if cost_type.lower() not in types:
            raise UsageError("--cost-type is BilledCost, EffectiveCost, ListCost or ContractedCost")
        if fmt not in ("table", "csv", "json"):
            raise UsageError("--format is table, csv or json")
        if not begin:
            raise UsageError("--begin is required (YYYY-MM-DD or YYYY-MM)")
        groups = [{"type": "tag", "key": g[4:]} if g.lower().startswith("tag:") else {"type": "dimension", "key": g}
                  for g in group_by or []]
        when = TimeCondition.model_validate({"time_measure_id": 1 if granularity == "day" else 2,
                                             "begin_time": _period(begin, granularity, end=False),
                                             "end_time": _period(end or begin, granularity, end=True)})
        if limit is None:  # as many groups as the answer's points allow (a year of days: 273)
            limit = max(1, min(1000, MAX_POINTS // periods(when)))
        req = CostQuery.model_validate({
            "time_condition": when.model_dump(), "groupby": groups, "cost_type": types[cost_type.lower()],
            "filters": _filters(filter_ or [], 0) + _filters(exclude or [], 1), "limit": limit, "offset": offset})
        store = _hub_store(root)

        def answer() -> object:
            con = catalog.connect(store)
            try:
                return query_costs(con, req)
            finally:
                con.close()

        result = _lake(answer)  # a lake file DuckDB cannot read (cut, not Parquet): named, as hub serve says it
    except (UsageError, CostQueryError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        _error(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
        raise typer.Exit(2) from None
    if fmt == "json":
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    keys = [g["key"] for g in groups]
    header = [*keys, "period", cost_type, "ListCost", "currency"]
    rows = [[*(d.value for d in row.dimensions), p.time_dimension_value, p.amount, p.official_amount, result.currency or ""]
            for row in result.cost_data for p in row.costs]
    shown = len(result.cost_data)
    if result.total_count > offset + shown:  # more groups than returned: said on stderr (the output stays clean data)
        sys.stderr.write(f"note: {shown:,} of {result.total_count:,} groups shown (largest first, from --offset {offset}): "
                         f"the rest with --offset {offset + shown}\n")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv_mod.writer(buf, lineterminator="\n")  # no \r for shell tools (as hub query)
        writer.writerow(header)
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
        return
    table = Table(title=_plain(f"{cost_type} per {granularity} ({result.total_count} groups, currency {result.currency or '-'})"))
    for h in header:
        table.add_column(h, justify="right" if h in (cost_type, "ListCost") else "left")
    for r in rows:
        table.add_row(*[_plain(v) for v in r])
    out.print(table)


@app.command()
def serve(root: Root, host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080) -> None:
    """Serve the cost-analysis API over HTTP (OpenAPI docs at /docs); beyond 127.0.0.1 it needs HUB_API_TOKEN."""
    store = _store(root)
    try:
        from hub import server  # its settings (HUB_API_*) are read here: a bad one is this command's usage error

        _require_root(store)
        server.token_required(host)
        server.check(store)
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    server.serve(store, host=host, port=port)


@app.command()
def report(root: Root, out_file: Annotated[str, typer.Option("--out", help="HTML file to write.")] = "report.html") -> None:
    """Write a self-contained HTML cost report (no network needed to view it)."""
    from hub import report as report_mod

    try:
        _lake(lambda: report_mod.write_report(_hub_store(root), out_file))
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    out.print(_plain(f"report written to {out_file}"))


@app.command()
def powerbi(root: Root,
            out_url: Annotated[str, typer.Option("--out", help="Folder or storage URL the reports read.")],
            statistics: Annotated[str, typer.Option(help="none (Power BI safe) or int64 (ChargePeriodStart).")] = "none",
            ) -> None:
    """Publish the lake for the FinOps toolkit's storage Power BI reports (their columns and file layout)."""
    from hub import powerbi as powerbi_mod

    try:
        result = _lake(lambda: powerbi_mod.publish(_store(root), _store(out_url), statistics=statistics))
    except UsageError as exc:
        _error(exc)
        raise typer.Exit(2) from None
    out.print(_plain(f"{len(result.folders)} folders ({result.rows:,} Costs rows) published to {out_url}"
              + (f"; {len(result.removed)} stale files removed" if result.removed else "")))


def main() -> None:
    """The ``hub`` command: an error a command did not handle is one line (credentials removed), never a traceback
    (``HUB_DEBUG=1`` shows it); exit code 2 for storage and usage errors, 1 otherwise."""
    from hub.lease import LeaseLost

    try:
        app()
    except LeaseLost as exc:  # stalled past the lease's TTL and taken over: stopped, as hub ingest says it
        _error(f"{exc}; this process stopped without writing more (the other process carries on)")
        sys.exit(1)
    except UsageError as exc:  # a setting or an environment variable (HUB_LEASE_TTL) a command did not check itself
        _error(exc)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the command line
        if os.environ.get("HUB_DEBUG"):
            raise
        _error(describe(exc))
        sys.exit(2 if storage_error(exc) else 1)


if __name__ == "__main__":
    main()
