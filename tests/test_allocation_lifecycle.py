"""Cost allocation over time: a metric changed, rules broken during an ingestion, a locked month after a failed
attempt, an allowlist replaced from a date, and inputs that crashed a run. Each case failed before its fix; expected
values by hand in the comments."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from test_allocation import allocated, lake, row, rules
from typer.testing import CliRunner

from hub import allocation, runs
from hub.allocation import allowlists, reports
from hub.allocation import rules as R
from hub.cli import app
from hub.errors import UsageError
from hub.report import build_report
from hub.sample_data import write_export
from hub.store import Store
from pipelines.ingest import ingest

D = Decimal
DIMS = {"cost_center": {"tag_keys": ["CostCenter"]}}


def _rules_file(root: Path, data: dict | str) -> None:
    (root / "config").mkdir(exist_ok=True)
    if not (root / "config/settings.json").exists():  # the exports are of 2024: keep every month
        (root / "config/settings.json").write_text('{"retention": {"ingestion": {"months": 0}}}')
    (root / "config/allocation.json").write_text(data if isinstance(data, str) else json.dumps(data))


def _allocation(root: Path) -> list[tuple]:
    return duckdb.sql(f"SELECT x_CostMetric, sum(x_Amount) FROM read_parquet('{root}/ingestion/Allocation/**/*.parquet') "
                      "GROUP BY ALL ORDER BY ALL").fetchall()


def test_a_changed_cost_metric_leaves_one_metrics_allocation(tmp_path):
    """EffectiveCost, then BilledCost: the EffectiveCost folder stayed and readers added both."""
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.25"), row({"CostCenter": "B"}, "2.50")])
    duckdb.sql(f"""COPY (SELECT *, EffectiveCost * 2 AS BilledCost FROM '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet')
        TO '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet' (FORMAT parquet)""")
    allocated(store, rules())
    allocated(store, rules(cost_metric="BilledCost"))
    assert _allocation(tmp_path) == [("BilledCost", D("7.50"))]  # 2 x (1.25 + 2.50)
    states = {r.scope: r.state for r in runs.load_all(store) if r.dataset == "Allocation"}
    assert states == {"effectivecost": "superseded", "billedcost": "committed"}


# allocation-swapping: killed after the run said "swapping" and before the other metric was retired, recovery finished
# the swap and left both metrics for good (review of stop 37)
@pytest.mark.parametrize("point", ["allocation-swapping", "before-commit", "after-commit"])
def test_a_cost_metric_change_killed_around_its_swap_never_shows_two_metrics(tmp_path, point):
    """Review: killed after the new metric's swap and before the old metric's folder went, readers added both metrics
    (every row twice) until someone re-ran `hub allocate`; `hub ingest` did not repair it. The old folder now goes
    before the swap, and a run killed in between is rolled forward by the next ingestion."""
    import os
    import subprocess
    import sys

    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.25"), row({"CostCenter": "B"}, "2.50")])
    duckdb.sql(f"""COPY (SELECT *, EffectiveCost * 2 AS BilledCost FROM '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet')
        TO '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet' (FORMAT parquet)""")
    _rules_file(tmp_path, {"dimensions": DIMS})
    allocation.allocate(store)
    _rules_file(tmp_path, {"dimensions": DIMS, "cost_metric": "BilledCost"})
    repo = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-m", "hub.cli", "allocate", str(tmp_path)], capture_output=True, cwd=repo,
                            env={**os.environ, "HUB_CRASH_AT": point, "HUB_LEASE_TTL": "1", "PYTHONPATH": str(repo)})
    assert killed.returncode == 137, killed.stderr.decode()[-2000:]
    # the old metric until the swap, for a moment none, then the new one: never both
    assert _allocation(tmp_path) in ([("EffectiveCost", D("3.75"))], [], [("BilledCost", D("7.50"))])
    ingest(Store(str(tmp_path)), lease_ttl=1)  # the usual restart
    assert _allocation(tmp_path) == [("BilledCost", D("7.50"))]


@pytest.mark.parametrize("point", ["mid-swap", "before-commit"])
def test_hub_allocate_after_a_killed_one_finishes_it_and_settles_what_the_costs_owed(tmp_path, point, monkeypatch):
    """Review of stop 37: `hub allocate` again after a killed one left its staging folder to the next ingestion, and the
    allocation the Costs owed stayed owed (made once more by that ingestion)."""
    import os
    import subprocess
    import sys

    root = str(tmp_path)
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok
    _rules_file(tmp_path, {"dimensions": DIMS})
    runs.save(Store(root), next(r.model_copy(update={"owed": ["allocate"]}) for r in runs.load_all(Store(root))
                                if r.dataset == "Costs"))  # as a kill right after the Costs commit leaves it
    repo = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-m", "hub.cli", "allocate", root], capture_output=True, cwd=repo,
                            env={**os.environ, "HUB_CRASH_AT": point, "HUB_LEASE_TTL": "1", "PYTHONPATH": str(repo)})
    assert killed.returncode == 137, killed.stderr.decode()[-2000:]
    monkeypatch.setenv("HUB_LEASE_TTL", "1")
    import time

    time.sleep(1.1)  # the killed process's lease expires
    again = CliRunner().invoke(app, ["allocate", root])
    assert again.exit_code == 0, again.output
    lake_total = duckdb.sql(f"SELECT sum(EffectiveCost) FROM '{root}/ingestion/Costs/**/*.parquet'").fetchall()[0][0]
    assert _allocation(tmp_path) == [("EffectiveCost", lake_total)]
    assert not list((tmp_path / "config/staging").glob("*"))
    assert all(r.owed == [] for r in runs.load_all(Store(root)))


def test_rules_broken_during_an_ingestion_keep_the_month_owed_until_they_are_fixed(tmp_path):
    """The owed allocation was settled although the rules could not be read: after the fix the month stayed on the
    previous delivery's allocation. Now the failure is AllocationRulesInvalid, and the next ingestion allocates."""
    root = str(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok
    _rules_file(tmp_path, "{not json")
    write_export(root, rows=60, run_id="run2", seed=7)
    failed = ingest(Store(root)).allocated
    assert [(r.key, r.error.code, r.error.file) for r in failed] == [
        ("allocate-rules", "AllocationRulesInvalid", "config/allocation.json")]
    _rules_file(tmp_path, {"dimensions": DIMS})
    again = ingest(Store(root))
    assert [(r.month, r.state, r.rowsOut) for r in again.allocated] == [("2024-05", "committed", 60)]
    lake_total = duckdb.sql(f"SELECT sum(EffectiveCost) FROM '{root}/ingestion/Costs/**/*.parquet'").fetchall()[0][0]
    assert _allocation(tmp_path) == [("EffectiveCost", lake_total)]
    assert not (tmp_path / "config/runs/allocate-rules.json").exists()
    assert all(r.owed == [] for r in runs.load_all(Store(root)))


def test_a_locked_month_keeps_its_allocation_after_a_failed_attempt(tmp_path):
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.00"), row({}, "2.00", service="Support")])
    allocated(store, rules())
    erroring = {"id": "s", "match": {"ServiceName": "Support"}, "method": "proportional", "on_zero_weight": "error",
                "targets": {"dimension": "cost_center", "values": ["Z"]}}
    (failed,) = allocation.allocate(store, ["2024-05"], rules=rules(pools=[erroring]))
    assert failed.state == "quarantined"
    lake(tmp_path, [row({"CostCenter": "A"}, "100.00")])  # the month's Costs change after the lock date
    assert allocation.allocate(store, ["2024-05"], rules=rules(lock_before="2024-06-01")) == []
    assert _allocation(tmp_path) == [("EffectiveCost", D("3.00"))]  # as written before the lock


def test_null_and_absent_cost_metrics_count_as_zero(tmp_path):
    """A null BilledCost (TypeError) and a metric no file has (BinderException) were InternalError."""
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.00"), row({"CostCenter": "B"}, "2.00")])
    duckdb.sql(f"""COPY (SELECT *, CASE WHEN EffectiveCost > 1 THEN NULL ELSE EffectiveCost END AS BilledCost
        FROM '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet') TO '{tmp_path}/ingestion/Costs/2024/05/test/part.parquet'
        (FORMAT parquet)""")
    out = allocated(store, rules(cost_metric="BilledCost"))
    assert [(r["x_CostCenter"], r["x_Amount"]) for r in out] == [("A", D("1.00")), ("B", D("0.00"))]
    out = allocated(store, rules(cost_metric="ContractedCost"))
    assert [r["x_Amount"] for r in out] == [D("0.00"), D("0.00")]


def test_a_month_without_costs_is_a_usage_error_with_no_record(tmp_path):
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.00")])
    with pytest.raises(UsageError, match="no Costs in 2030-01: nothing to allocate"):
        allocation.allocate(store, ["2030-01"], rules=rules())
    assert runs.load_all(store) == []
    _rules_file(tmp_path, {"dimensions": DIMS})
    out = CliRunner().invoke(app, ["allocate", str(tmp_path), "--month", "2030-01"])
    assert out.exit_code == 2 and "no Costs in 2030-01" in out.output
    # a month in other digits than ASCII ones is no month (review: it passed the check, then "no Costs in ２０２４-05")
    out = CliRunner().invoke(app, ["allocate", str(tmp_path), "--month", "\uff12\uff10\uff12\uff14-05"])
    assert out.exit_code == 2 and "a month must be YYYY-MM" in out.output


@pytest.mark.parametrize(("column", "message"), [
    ("ChargePeriodStart", "dimensions.cost_center.column"), ("Tags", "dimensions.cost_center.column"),
    ("x_Period", "column 'x_Period' is one the allocation writes itself"),
    ("x_Product", "two dimensions write the same column"),
    # every allocation InternalError (two x_ProductSource columns); x_Month pushed the catalog's month aside, so the
    # chargeback filtered months on cost centers (review of stop 37)
    ("x_ProductSource", "two dimensions write the same column"), ("x_month", "column 'x_month' is one the allocation"),
])
def test_a_dimension_column_that_would_overwrite_another_is_refused(column, message):
    """ChargePeriodStart was overwritten by the cost center; x_Period and others were InternalError."""
    data = {"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "column": column}, "product": {"tag_keys": ["app"]}}}
    with pytest.raises(UsageError, match=message):
        R.parse(json.dumps(data))


def test_deeply_nested_rules_are_a_usage_error_naming_the_file(tmp_path):
    with pytest.raises(UsageError, match="allocation.json: invalid allocation rules: nested too deeply"):
        R.parse_merged(Store(str(tmp_path)), "[" * 100_000 + "]" * 100_000, file="config/allocation.json")


def test_an_allowlist_replaced_from_a_date_ends_the_dropped_values_on_that_date(tmp_path):
    """The dropped values ended today, not at validFrom: OLD stayed valid between validFrom and today."""
    store = lake(tmp_path, [row({"CostCenter": "OLD"}, "1.00", day="2024-03-10"),
                            row({"CostCenter": "NEW"}, "2.00", day="2024-03-10")], month="2024-03")
    _rules_file(tmp_path, {"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
                           "allowlists": {"cc": []}})
    allowlists.change(store, R.load(store), "cost_center", "add", ["OLD"],
                      allowlists.Change("alice", "from January", date(2024, 1, 1)), today=date(2024, 6, 1))
    allowlists.change(store, R.load(store), "cost_center", "replace", ["NEW"],
                      allowlists.Change("alice", "OLD renamed NEW on Feb 1", date(2024, 2, 1)), today=date(2024, 6, 1))
    assert allowlists.values(store, R.load(store), "cost_center", date(2024, 1, 31)) == ["OLD"]
    assert allowlists.values(store, R.load(store), "cost_center", date(2024, 2, 1)) == ["NEW"]
    out = allocated(store, R.load(store), month="2024-03")
    assert sorted((r["x_CostCenterRawValue"], r["x_CostCenterStatus"]) for r in out) == [
        ("NEW", "allocated"), ("OLD", "not_allowlisted")]


def test_dated_allowlist_changes_are_compared_with_the_list_from_their_date(tmp_path):
    """Review: a dated change was compared with today's list: a later replace gave a value retired before it back its
    days (its end moved later), a replace left values starting after it in place, a future value could be added
    twice, and a back-dated replace left a gap before a value added since."""
    store = lake(tmp_path, [row({"CostCenter": "X"}, "1.00")])
    _rules_file(tmp_path, {"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
                           "allowlists": {"cc": []}})
    today = date(2024, 6, 1)

    def change(action, keys, start=None, reason=None):
        return allowlists.change(store, R.load(store), "cost_center", action, keys,
                                 allowlists.Change("alice", reason, start), today=today)

    def on(day):
        return allowlists.values(store, R.load(store), "cost_center", day)

    change("add", ["X"])
    change("replace", [], date(2024, 6, 11))  # X retired from the 11th
    assert change("replace", ["Y"], date(2024, 6, 21)) == ["Y"]
    assert (on(date(2024, 6, 10)), on(date(2024, 6, 16)), on(date(2024, 6, 21))) == (["X"], [], ["Y"])
    change("add", ["F"], date(2024, 7, 1))
    change("replace", ["G"])  # today: the list from today on is G alone
    assert (on(today), on(date(2024, 7, 11))) == (["G"], ["G"])
    change("add", ["H"], date(2024, 7, 21))
    with pytest.raises(allowlists.ChangeRefused, match="duplicate"):
        change("add", ["H"], date(2024, 7, 31))
    change("add", ["K"])
    assert change("replace", ["G", "K"], date(2024, 5, 1), reason="K since May") == ["G", "K"]  # back-dated
    assert (on(date(2024, 5, 15)), on(today), on(date(2024, 8, 1))) == (["G", "K"], ["G", "K"], ["G", "K"])
    with pytest.raises(allowlists.ChangeRefused, match="no value 'H'") as refused:
        change("remove", ["H"])  # not in force today (only from July 21)
    assert refused.value.status == 404
    change("remove", ["K"], date(2024, 6, 15))
    assert (on(date(2024, 6, 14)), on(date(2024, 6, 15))) == (["G", "K"], ["G"])
    # review of the fix: a replace listing a value whose end was scheduled cancels that end; a value due later can be
    # added from an earlier day
    change("remove", ["G"], date(2024, 7, 1))
    change("replace", ["G", "Y"])
    assert on(date(2024, 7, 15)) == ["G", "Y"]
    change("add", ["Z"], date(2024, 8, 1))
    change("add", ["Z"])
    assert (on(today), on(date(2024, 9, 1))) == (["G", "Y", "Z"], ["G", "Y", "Z"])


def test_the_raw_value_is_the_one_of_the_tag_key_used(tmp_path):
    """A blank CostCenter and cost-center OPS-003: the key was cost-center, the raw value '' (the blank one's)."""
    store = lake(tmp_path, [row({"CostCenter": "", "cost-center": "OPS-003"}, "1.00")])
    (r,) = allocated(store, rules())
    assert (r["x_CostCenter"], r["x_CostCenterTagKey"], r["x_CostCenterRawValue"]) == ("OPS-003", "cost-center", "OPS-003")


def test_a_bad_api_allowlist_entry_is_named_in_its_own_file(tmp_path):
    """It was reported as config/allocation.json at an index that file does not have."""
    lake(tmp_path, [row({"CostCenter": "A"}, "1.00")])
    _rules_file(tmp_path, {"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
                           "allowlists": {"cc": [{"value": "A"}]}})
    (tmp_path / "config/allowlists").mkdir()
    (tmp_path / "config/allowlists/cc.json").write_text('[{"value": ""}]')
    with pytest.raises(UsageError, match=r"config/allowlists/cc\.json: invalid allowlist entry 0 at value"):
        R.load(Store(str(tmp_path)))


def test_a_preview_candidates_own_failure_names_the_candidate(tmp_path):
    lake(tmp_path, [row({"CostCenter": "A"}, "1.00"), row({}, "2.00", service="Support")])
    _rules_file(tmp_path, {"dimensions": DIMS})
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"dimensions": DIMS, "pools": [
        {"id": "s", "match": {"ServiceName": "Support"}, "method": "proportional", "on_zero_weight": "error",
         "targets": {"dimension": "cost_center", "values": ["Z"]}}]}))
    out = CliRunner().invoke(app, ["allocate", str(tmp_path), "--preview", str(candidate)])
    assert out.exit_code == 2 and f"{candidate}: AllocationConflict: pool s:" in " ".join(out.output.split())


def test_a_locked_month_keeps_its_allocation_when_the_metric_changes(tmp_path):
    """Changing cost_metric re-allocated a locked month in the new metric and deleted the one written before the lock."""
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.25")])
    allocated(store, rules())
    assert allocation.allocate(store, ["2024-05"], rules=rules(cost_metric="BilledCost", lock_before="2024-06-01")) == []
    assert _allocation(tmp_path) == [("EffectiveCost", D("1.25"))]


def test_allowlist_changes_of_two_processes_are_all_kept(tmp_path):
    """Defect: two `hub serve` processes on one hub each read the list, added their value and wrote the list back: 7 to
    15 of 30 adds were lost, each answered 204 with an audit entry. A lease of its own serializes the change."""
    import subprocess
    import sys

    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.00", day="2024-03-10")], month="2024-03")
    _rules_file(tmp_path, {"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
                           "allowlists": {"cc": []}})
    script = ("import sys\nfrom hub.allocation import allowlists, rules\nfrom hub.store import Store\n"
              "store = Store(sys.argv[1])\n"
              "for i in range(40):\n"
              "    allowlists.change(store, rules.load(store), 'cost_center', 'add', [f'{sys.argv[2]}{i}'],"
              " allowlists.Change(sys.argv[2]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), who]) for who in ("p", "q")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    got = allowlists.values(store, R.load(store), "cost_center", date.today())
    assert sorted(got) == sorted([f"{w}{i}" for w in "pq" for i in range(40)])
    assert len(allowlists.audit(store)) == 80


def test_a_bad_memory_limit_is_a_usage_error_before_any_months_run(tmp_path, monkeypatch):
    """Review: ``HUB_MEMORY_LIMIT=lots hub allocate`` recorded every month as ``InternalError`` and exited 1."""
    from hub import convert

    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.25")])
    monkeypatch.setattr(convert, "MEMORY_LIMIT", "lots")
    with pytest.raises(UsageError, match="HUB_MEMORY_LIMIT='lots'"):
        allocation.allocate(store, ["2024-05"], rules=rules())
    assert runs.load_all(store) == []


def test_a_cost_center_query_over_a_month_without_allocation_is_refused_naming_it(tmp_path):
    """April's Costs were never allocated (the rules came later, and ingestion allocates the months it changes): by cost
    center, April read as 0 without a word (review of stop 37). Now refused naming April; May alone answers."""
    lake(tmp_path, [row({"CostCenter": "A"}, "10.00", day="2024-04-10")], month="2024-04")
    store = lake(tmp_path, [row({"CostCenter": "A"}, "20.00"), row({"CostCenter": "B"}, "1.00")])
    allocated(store, rules())
    _rules_file(tmp_path, {"dimensions": DIMS})
    runner = CliRunner()
    refused = runner.invoke(app, ["costs", str(tmp_path), "--begin", "2024-04", "--end", "2024-05", "--group-by", "x_CostCenter"])
    assert refused.exit_code == 2 and "2024-04 not allocated" in refused.output
    may = runner.invoke(app, ["costs", str(tmp_path), "--begin", "2024-05", "--group-by", "x_CostCenter", "--format", "csv"])
    assert may.exit_code == 0 and may.output.splitlines()[1:] == ["A,2024-05,20,0,USD", "B,2024-05,1,0,USD"]


def test_a_running_server_follows_the_months_owed_their_allocation(tmp_path):
    """Review of stop 38: the months owed their allocation were read from the run records once, when a connection was
    made: a server started while May was owed kept refusing it after `hub allocate` (and one started before served a
    month owed later, stale); every connection read every run record. A month owed is a marker file (written before
    the Costs swap, removed when the month is allocated again), listed by each query."""
    from fastapi.testclient import TestClient

    from hub.server import create_app
    from hub.store import allocation_owed

    root = str(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok
    ask = {"time_condition": {"time_measure_id": 2, "begin_time": "2024-05", "end_time": "2024-05"},
           "cost_type": "AMORTIZED_COST", "groupby": [{"type": "dimension", "key": "x_CostCenter"}]}
    with TestClient(create_app(root)) as client:
        assert client.post("/v4/costs/cost-analysed-bills/query", json=ask).status_code == 200
        Store(root).write_bytes(allocation_owed("2024-05"), b"")  # as a Costs swap owing the month leaves it
        refused = client.post("/v4/costs/cost-analysed-bills/query", json=ask)
        assert refused.status_code == 400 and "2024-05 not allocated, or allocated before" in refused.json()["error_msg"]
        (costs,) = [r for r in runs.load_all(Store(root)) if r.dataset == "Costs"]
        costs.owed = ["allocate"]
        runs.save(Store(root), costs)
        out = CliRunner().invoke(app, ["allocate", root, "--month", "2024-05"])
        assert out.exit_code == 0, out.output
        assert not Store(root).exists(allocation_owed("2024-05"))
        assert client.post("/v4/costs/cost-analysed-bills/query", json=ask).status_code == 200  # the same server
        # a marker no record owes (a restored backup): hub allocate --month of the month removes it too
        Store(root).write_bytes(allocation_owed("2024-05"), b"")
        assert CliRunner().invoke(app, ["allocate", root, "--month", "2024-05"]).exit_code == 0
        assert client.post("/v4/costs/cost-analysed-bills/query", json=ask).status_code == 200


def test_a_month_owed_by_an_older_hubs_record_gets_its_marker_and_a_locked_month_none(tmp_path):
    """Review of stop 38: a record owing `allocate` written before the markers (an upgrade) left the month served stale
    once the rules were back; a locked month (lock_before) keeps its allocation whatever its Costs did, but its marker
    refused it, and `hub allocate --month`, which skips locked months, never cleared it."""
    from hub.store import allocation_owed

    root, store = str(tmp_path), Store(str(tmp_path))
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(store).ok
    (tmp_path / "config/allocation.json").unlink()
    write_export(root, rows=60, run_id="run2", seed=7)
    assert ingest(store).ok and store.exists(allocation_owed("2024-05"))
    store.delete(allocation_owed("2024-05"))  # as an older hub left it: the record owes, no marker
    assert ingest(store).records == [] and store.exists(allocation_owed("2024-05"))  # recovery writes it
    _rules_file(tmp_path, {"dimensions": DIMS})
    stale = CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter"])
    assert stale.exit_code == 2 and "allocated before their Costs changed" in stale.output
    _rules_file(tmp_path, {"dimensions": DIMS, "lock_before": "2024-05-15"})  # May locked: it keeps its allocation
    locked = CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter"])
    assert locked.exit_code == 0, locked.output
    out = CliRunner().invoke(app, ["allocate", root, "--month", "2024-05"])  # skipped: locked
    assert out.exit_code == 0, out.output
    assert store.exists(allocation_owed("2024-05"))  # review: deleted, the stale allocation was served once unlocked
    _rules_file(tmp_path, {"dimensions": DIMS, "lock_before": "2024-05-01"})  # unlocked again (a lock on the 1st)
    again = CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter"])
    assert again.exit_code == 2 and "allocated before their Costs changed" in again.output
    assert CliRunner().invoke(app, ["allocate", root, "--month", "2024-05"]).exit_code == 0
    assert not store.exists(allocation_owed("2024-05"))
    _rules_file(tmp_path, {"dimensions": DIMS, "lock_before": "9999-12-31"})  # review: an OverflowError in every reader
    assert CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter"]).exit_code == 0


def test_a_neighbouring_month_holding_rows_of_the_period_must_be_allocated_too(tmp_path):
    """Review of stop 38: May's folder holds a row charged on 30 April (a UTC+8 bill's first hours); April allocated,
    May not: April by cost center read 20.00 where its costs are 29.49, without a word. Refused naming May."""
    lake(tmp_path, [row({"CostCenter": "A"}, "20.00", day="2024-04-10")], month="2024-04")
    store = lake(tmp_path, [row({"CostCenter": "A"}, "9.49", day="2024-04-30"), row({"CostCenter": "A"}, "5.00")])
    allocated(store, rules(), month="2024-04")
    _rules_file(tmp_path, {"dimensions": DIMS})
    refused = CliRunner().invoke(app, ["costs", str(tmp_path), "--begin", "2024-04", "--group-by", "x_CostCenter"])
    assert refused.exit_code == 2 and "2024-05 not allocated" in refused.output
    allocated(store, rules())
    april = CliRunner().invoke(app, ["costs", str(tmp_path), "--begin", "2024-04", "--group-by", "x_CostCenter", "--format", "csv"])
    assert april.exit_code == 0 and april.output.splitlines()[1:] == ["A,2024-04,29.49,0,USD"]


def test_a_month_restated_while_its_allocation_fails_keeps_none_of_the_old_one(tmp_path):
    """May allocated, then delivered again while its allocation failed: the allocation of the earlier Costs kept answering
    cost-center queries, the restated costs missing (review of stop 37). It is retired (its record superseded): with no
    other month allocated, cost-center queries read the Costs column again (as before any allocation), the restated
    costs whole."""
    root = str(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok and _allocation(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS, "pools": [{
        "id": "s", "match": {"ServiceName": "Virtual Machines"}, "method": "proportional", "on_zero_weight": "error",
        "targets": {"dimension": "cost_center", "values": ["nobody"]}}]})
    write_export(root, rows=60, run_id="run2", seed=7)
    again = ingest(Store(root))
    assert [r.state for r in again.records] == ["committed"] and [r.state for r in again.allocated] == ["quarantined"]
    assert not list((tmp_path / "ingestion/Allocation").rglob("*.parquet"))
    assert _cost_center_total(root) == _costs_total(root)
    assert all(r.owed == [] for r in runs.load_all(Store(root)))


def test_rules_removed_turn_allocation_off_and_a_month_restated_meanwhile_is_allocated_when_they_are_back(tmp_path):
    """Review of stop 37: with the rules file removed, May's allocation kept answering cost-center queries after May was
    delivered again (the restated costs missing). Without rules, cost queries read the Costs as before any allocation;
    the allocation stays on file (a locked month's chargeback with it), May stays owed its allocation, made when the
    rules are back."""
    root = str(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok
    first = _allocation(tmp_path)
    (tmp_path / "config/allocation.json").unlink()
    write_export(root, rows=60, run_id="run2", seed=7)
    again = ingest(Store(root))
    assert [r.state for r in again.records] == ["committed"] and again.allocated == []
    assert _allocation(tmp_path) == first  # kept, unread
    assert _cost_center_total(root) == _costs_total(root)
    assert [r.owed for r in runs.load_all(Store(root)) if r.dataset == "Costs" and r.state == "committed"] == [["allocate"]]
    # review of stop 40: the report's allocation section showed May's stale allocation without saying so while the rules
    # were gone (the owed months' view was made only with rules)
    assert build_report(root).stale == ["2024-05"]
    _rules_file(tmp_path, {"dimensions": DIMS})
    # the rules back, no ingestion yet: May's allocation is of the bill before its restatement (review of stop 38: it was
    # served, 1499.25 by cost center for 567.87 of Costs); refused naming May, and the report says so
    stale = CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter"])
    assert stale.exit_code == 2 and "2024-05 not allocated, or allocated before their Costs changed" in stale.output
    assert build_report(root).stale == ["2024-05"]
    back = ingest(Store(root))
    assert [(r.month, r.state) for r in back.allocated] == [("2024-05", "committed")]
    assert _allocation(tmp_path) == [("EffectiveCost", _costs_total(root))]
    assert _cost_center_total(root) == _costs_total(root)
    assert build_report(root).stale == []


def _costs_total(root: str) -> Decimal:
    return duckdb.sql(f"SELECT sum(EffectiveCost) FROM '{root}/ingestion/Costs/**/*.parquet'").fetchall()[0][0]


def _cost_center_total(root: str) -> Decimal:
    answer = CliRunner().invoke(app, ["costs", root, "--begin", "2024-05", "--group-by", "x_CostCenter", "--format", "csv"])
    assert answer.exit_code == 0, answer.output
    return sum((D(line.split(",")[2]) for line in answer.output.splitlines()[1:]), D(0))


def test_a_pool_target_ended_on_the_allowlist_gets_no_share_of_later_months(tmp_path):
    """A ended on May 1; a pool still gave A half of May's support, marked allocated (review of stop 37): allowlist
    changes are never retroactive, nor ignored. An explicit list drops A from May; a fixed split naming A is an
    AllocationConflict naming the pool, the target and the month (its percentages cannot be shared out again)."""
    store = lake(tmp_path, [row({"CostCenter": "B"}, "10.00"), row({}, "1.00", service="Support")])
    dims = {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}}
    lists = {"cc": [{"value": "A", "valid_to": "2024-05-01"}, {"value": "B"}]}
    even = {"id": "sup", "match": {"ServiceName": "Support"}, "method": "even",
            "targets": {"dimension": "cost_center", "values": ["A", "B"]}}
    out = allocated(store, rules(dimensions=dims, allowlists=lists, pools=[even]))
    assert [(r["x_CostCenter"], r["x_Amount"]) for r in out if r["x_AllocationKind"] == "shared"] == [("B", D("1.00"))]
    fixed = {**even, "method": "fixed", "targets": {"dimension": "cost_center", "split": {"A": "50", "B": "50"}}}
    (rec,) = allocation.allocate(store, ["2024-05"], rules=rules(dimensions=dims, allowlists=lists, pools=[fixed]))
    assert (rec.state, rec.error.code) == ("quarantined", "AllocationConflict")
    assert "pool sup: target 'A' of its fixed split is not on the allowlist in 2024-05" in rec.error.message


def test_a_mapping_value_is_compared_with_the_allowlist_as_a_tag_is(tmp_path):
    """A mapping setting ``Straße`` against the allowlist's ``STRASSE`` was not allowlisted (compared by lower(trim()),
    not case folding: ß is ss), its value not kept (review of stop 37); a tag ``Straße`` matched."""
    store = lake(tmp_path, [row({"CostCenter": "Straße"}, "3.00"), row({}, "7.00", service="Kantine"),
                            row({}, "1.00", service="Gone")])
    r = rules(dimensions={"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc", "fallback": ["mapping"]}},
              allowlists={"cc": [{"value": "STRASSE"}]},
              mappings=[{"id": "m1", "match": {"ServiceName": "Kantine"}, "set": {"cost_center": "Straße"}},
                        {"id": "m2", "match": {"ServiceName": "Gone"}, "set": {"cost_center": "Old-Team"}}])
    out = allocated(store, r)
    got = sorted((x["x_Amount"], x["x_CostCenter"], x["x_CostCenterStatus"], x["x_CostCenterRawValue"]) for x in out)
    assert got == [(D(1), "__not_allowlisted__", "not_allowlisted", "Old-Team"), (D(3), "STRASSE", "allocated", "Straße"),
                   (D(7), "STRASSE", "allocated", "Straße")]


def test_a_locked_months_chargeback_is_in_the_metric_it_was_allocated_in(tmp_path):
    """After cost_metric changed, a locked month's chargeback said "run hub allocate --month", which answered that the
    month is locked: a dead end (review of stop 37). It is written in the month's own metric, named in its header."""
    store = lake(tmp_path, [row({"CostCenter": "A"}, "1.25"), row({"CostCenter": "B"}, "2.50")])
    allocated(store, rules())
    text = reports.chargeback(store, rules(cost_metric="BilledCost", lock_before="2024-06-01"), "2024-05")
    lines = text.splitlines()
    assert lines[0].split(",")[:4] == ["Month", "x_CostCenter", "BillingCurrency", "EffectiveCost"]
    assert [line.split(",")[1:4] for line in lines[1:]] == [["A", "USD", "1.25"], ["B", "USD", "2.50"], ["TOTAL", "USD", "3.75"]]


def test_a_later_folder_allocated_in_another_metric_is_refused_for_the_rows_it_holds_of_the_period(tmp_path):
    """Review of stop 39: April locked in EffectiveCost; May's folder holds a 3.00 row charged on 30 April (a UTC+8
    bill's first hours) and was allocated in BilledCost after the metric changed: April by cost center read 10.00 of
    its 13.00 without a word (only the span's folders were checked). Refused, naming May."""
    for month, rows in (("2024-04", [row({"CostCenter": "A"}, "10.00", day="2024-04-10")]),
                        ("2024-05", [row({"CostCenter": "A"}, "3.00", day="2024-04-30"), row({"CostCenter": "B"}, "5.00")])):
        lake(tmp_path, rows, month=month)
        part = tmp_path / f"ingestion/Costs/{month[:4]}/{month[5:]}/test/part.parquet"
        duckdb.sql(f"COPY (SELECT *, EffectiveCost AS BilledCost FROM read_parquet('{part}')) TO '{part}.tmp' (FORMAT parquet)")
        Path(f"{part}.tmp").replace(part)
    store = Store(str(tmp_path))
    allocated(store, rules(), "2024-04")
    allocated(store, rules(cost_metric="BilledCost", lock_before="2024-05-01"), "2024-05")
    _rules_file(tmp_path, rules(cost_metric="BilledCost", lock_before="2024-05-01").model_dump(mode="json"))
    out = CliRunner().invoke(app, ["costs", str(tmp_path), "--begin", "2024-04", "--end", "2024-04", "--group-by",
                                   "x_CostCenter", "--cost-type", "EffectiveCost", "--format", "csv"])
    assert out.exit_code == 2, out.output
    assert "the allocation of 2024-05 (BilledCost) is in another cost type than EffectiveCost" in " ".join(out.output.split())


def test_a_month_folder_without_parquet_files_has_no_costs_to_allocate(tmp_path):
    """Review of stop 40: a refused custom drop of June leaves ingestion/Costs/2024/06/ holding only its set-aside
    ``.quarantined`` file and manifest: `hub allocate` (every month) quarantined an ``AllocationMismatch`` run for June
    (exit 1) and `--preview` refused, blaming the candidate file. June has no Costs: it is not allocated."""
    root = str(tmp_path)
    _rules_file(tmp_path, {"dimensions": DIMS})
    write_export(root, rows=40, run_id="run1")
    assert ingest(Store(root)).ok
    june = tmp_path / "ingestion/Costs/2024/06/custom/team-x"
    june.mkdir(parents=True)
    (june / "i1__a.parquet.quarantined").write_bytes(b"refused rows")
    (june / "manifest.json").write_bytes(b"")
    assert allocation.months(Store(root)) == ["2024-05"]
    every = CliRunner().invoke(app, ["allocate", root])
    assert every.exit_code == 0, every.output
    cand = tmp_path / "cand.json"
    cand.write_text((tmp_path / "config/allocation.json").read_text())
    preview = CliRunner().invoke(app, ["allocate", root, "--preview", str(cand)])
    assert preview.exit_code == 0, preview.output
    june_only = CliRunner().invoke(app, ["allocate", root, "--month", "2024-06"])
    assert june_only.exit_code == 2 and "no Costs in 2024-06" in june_only.output


def test_months_allocated_at_different_amount_scales_read_exactly(tmp_path):
    """Review of stop 41: x_Amount was written as DECIMAL(38, amount_scale), and a union of files of several scales
    (the catalog's view) takes the smallest: April allocated at scale 2, then May at 10 (three rows of 0.004), read May
    as 0.00 for 0.012. Every file is DECIMAL(38,18) now, and a file an older version wrote at its scale is rewritten at
    the next allocation with the same values (a locked month's too)."""
    from hub import catalog

    lake(tmp_path, [row({"CostCenter": "A"}, "0.004", day="2024-04-10")] * 3, month="2024-04")
    store = lake(tmp_path, [row({"CostCenter": "A"}, "0.004")] * 3)
    allocated(store, rules(amount_scale=10), month="2024-04")
    (april,) = (tmp_path / "ingestion/Allocation/2024/04").rglob("*.parquet")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * REPLACE (CAST(x_Amount AS DECIMAL(38,2)) AS x_Amount) FROM '{april}') TO '{april}.old' "
                "(FORMAT parquet)")  # as an older version wrote it with amount_scale 2 (0.004 -> 0.00)
    Path(f"{april}.old").replace(april)
    locked = rules(amount_scale=10, lock_before="2024-05-01")
    allocated(store, locked)
    view = catalog.connect(str(tmp_path))
    assert view.execute("SELECT x_Month, sum(x_Amount) FROM Allocation GROUP BY 1 ORDER BY 1").fetchall() == [
        ("2024-04", D("0")), ("2024-05", D("0.012"))]  # April as written (0.00 x 3), May exact
    assert con.execute(f"SELECT DISTINCT typeof(x_Amount) FROM '{april}'").fetchall() == [("DECIMAL(38,18)",)]
    Path(f"{april}.retype").write_bytes(april.read_bytes())  # what a rewrite killed on a blob store leaves
    allocated(store, locked)
    assert not list((tmp_path / "ingestion/Allocation").rglob("*.retype"))
