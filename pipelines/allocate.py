"""``hub allocate`` (on demand, under the ingestion lease): what an interrupted run left is finished first, the months
are allocated, and the allocation their Costs owed is settled."""

from __future__ import annotations

from hub import allocation, engine, runs
from hub.allocation.rules import Rules
from hub.runs import RunRecord
from hub.store import Store
from pipelines.ingest import recover


def run(store: Store, months: list[str] | None, rules: Rules) -> list[RunRecord]:
    """Recover (a swap a kill cut short is finished, stale staging swept), allocate ``months`` (default: every Costs
    month), then mark each allocated month's owed allocation done (the next ingestion need not make it again)."""
    recover(store)
    made = allocation.allocate(store, months, rules=rules)
    done = {r.month for r in made if r.state == "committed"}
    for rec in runs.load_all(store):
        if rec.dataset == "Costs" and rec.month in done and "allocate" in rec.owed:
            engine.settle(store, rec, "allocate")
    return made
