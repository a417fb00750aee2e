"""The ``hub`` command: a thin typer layer over :mod:`pipelines` and :mod:`hub` functions.

Exit codes: 0 success, 1 at least one export quarantined (or failed), 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import runs
from hub.errors import UsageError
from hub.runs import RunRecord
from hub.settings import Settings
from hub.store import SETTINGS, Store

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FinOps hub: cost exports in, a FOCUS Parquet lake out.")
_WIDTH = int(os.environ.get("COLUMNS", "0")) or (None if sys.stdout.isatty() else 200)
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

Root = Annotated[str, typer.Argument(help="Hub root: a local folder or an fsspec URL (abfs://, az://, s3://).")]


def _store(root: str) -> Store:
    try:
        return Store(root)
    except (UsageError, ValueError, ImportError) as exc:
        err.print(f"[red]error:[/red] cannot open hub root {root!r}: {exc}")
        raise typer.Exit(2) from None


@app.command()
def init(root: Root) -> None:
    """Create msexports/, ingestion/, config/ and config/settings.json (kept if it exists)."""
    store = _store(root)
    store.init_layout()
    if not store.exists(SETTINGS):
        store.write_bytes(SETTINGS, Settings().to_json().encode())
    out.print(f"hub initialised at {store.url}")


def _run_table(records: list[RunRecord], title: str) -> Table:
    table = Table(title=title)
    for col in ("export", "dataset", "month", "scope", "rows", "seconds", "state", "error"):
        table.add_column(col, overflow="fold", justify="right" if col in ("rows", "seconds") else "left")
    for r in records:
        error = f"{r.error.code}: {r.error.message}" if r.error else ""
        state = {"committed": "[green]committed[/green]", "quarantined": "[red]quarantined[/red]"}.get(r.state, r.state)
        table.add_row(r.exportName or r.manifest, r.dataset or "", r.month or "", r.scope or "", f"{r.rowsOut or r.rowsIn:,}",
                      f"{r.seconds:.2f}" if r.seconds is not None else "", state, error)
    return table


@app.command()
def ingest(
    root: Root,
    retry: Annotated[bool, typer.Option("--retry", help="Also re-process quarantined exports.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-process every export, committed ones too.")] = False,
) -> None:
    """Process every pending manifest under msexports/ once."""
    from pipelines.msexports_etl import ingest as run_ingest

    store = _store(root)
    tasks: dict[tuple[str, int], TaskID] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal, transient=True) as bar:

        def progress(rec: RunRecord, part: int, parts: int, pct: float) -> None:
            key = (rec.key, part)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{rec.exportName or rec.runId} part {part + 1}/{parts}", total=100)
            bar.update(tasks[key], completed=pct)

        try:
            result = run_ingest(store, retry=retry, force=force, progress=progress)
        except UsageError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    if result.busy:
        err.print("another process holds this hub's ingestion lease; nothing done (try again later)")
        raise typer.Exit(1)
    records = result.all
    if not records:
        out.print("nothing to ingest")
        return
    out.print(_run_table(records, f"hub ingest {store.url}"))
    for r in records:
        if r.error:
            err.print(f"{r.error.code}: {r.error.file or r.manifest}: {r.error.message}")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def status(root: Root, as_json: Annotated[bool, typer.Option("--json", help="Print run records as JSON.")] = False) -> None:
    """Show every run record (newest last)."""
    records = runs.load_all(_store(root))
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
    from hub.validate import validate as run_validate

    try:
        report = run_validate(path, tolerance=tolerance)
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        table = Table(title=f"FOCUS 1.0 validation of {report.source}: {report.rows:,} rows, {report.checked} checks")
        for col in ("rule", "column", "violations", "sample rows"):
            table.add_column(col, overflow="fold", justify="right" if col == "violations" else "left")
        for r in report.results:
            samples = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in r.samples)
            table.add_row(r.rule, r.column, f"{r.violations:,}", samples or r.text)
        out.print(table if report.results else f"{report.source}: {report.rows:,} rows, {report.checked} checks, no violations")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def watch(
    root: Root,
    interval: Annotated[float, typer.Option(help="Seconds between full scans (remote roots: between polls).")] = 60.0,
    blob_timeout: Annotated[float, typer.Option(help="Seconds to wait for a manifest's blobs before quarantining it.")] = 600.0,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object per log line.")] = False,
) -> None:
    """Ingest exports as they land, until SIGINT/SIGTERM; applies retention daily."""
    import signal
    import threading

    from pipelines.watch import json_log, text_log
    from pipelines.watch import watch as run_watch

    store = _store(root)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fmt = json_log if json_logs else text_log

    def log(line: dict) -> None:
        print(fmt(line), flush=True)

    try:
        run_watch(store, stop=stop, log=log, interval=interval, blob_timeout=blob_timeout)
    except UsageError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def retention(
    root: Root,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted, with sizes; delete nothing.")] = False,
) -> None:
    """Apply retention.msexports.days and retention.ingestion.months from config/settings.json."""
    from pipelines.msexports_etl import load_settings
    from pipelines.retention import apply

    store = _store(root)
    try:
        result = apply(store, load_settings(store), dry_run=dry_run)
    except UsageError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"retention {'(dry run) ' if dry_run else ''}{store.url}")
    for col in ("path", "bytes", "reason"):
        table.add_column(col, overflow="fold", justify="right" if col == "bytes" else "left")
    for d in result.deletions:
        table.add_row(d.path, f"{d.bytes:,}", d.reason)
    out.print(table if result.deletions else "nothing to delete")
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(result.deletions)} item(s), {verb} {result.bytes:,} bytes")


@app.command()
def demo(root: Annotated[str, typer.Argument(help="Where to create the demo hub.")] = "demo-hub",
         rows: Annotated[int, typer.Option(help="Cost rows to generate.")] = 5000) -> None:
    """Generate a realistic FocusCost 1.0 export and price sheet, ingest them, and query the lake."""
    from hub.demo import run_demo

    try:
        summary = run_demo(root, rows=rows)
    except UsageError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(_run_table(summary.records, f"demo hub at {summary.root}"))
    for title, header, body in summary.tables:
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for row in body:
            table.add_row(*[str(v) for v in row])
        out.print(table)
    out.print(f"Query it yourself:\n  {sys.executable} -c \"import duckdb; print(duckdb.sql(\\\"{summary.example_sql}\\\"))\"")
    raise typer.Exit(0 if all(r.state == "committed" for r in summary.records) else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
