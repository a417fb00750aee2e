"""Cost allocation, rules edge cases: overlapping scope tags, pool matches on a dimension with an allowlist, the
preview with API-managed allowlist entries, and rows without a BillingCurrency in totals; every expected value
computed by hand in the comments."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from test_allocation import allocated, lake, row, rules, shared
from typer.testing import CliRunner

from hub import allocation, runs
from hub.allocation import allowlists, reports
from hub.allocation import rules as R
from hub.cli import app
from hub.errors import UsageError
from hub.store import Store

D = Decimal
SUB = "/subscriptions/1111"


# --- 1. overlapping scope_tags ------------------------------------------------------------------------------------------

def scope(kind: str = "subscription", *, sub: str = SUB, rg: str | None = None, value: str = "X", **dates: str) -> dict:
    entry = {"scope": kind, "subscription": sub, "tags": {"CostCenter": value}, **dates}
    return {**entry, "resource_group": rg} if rg else entry


def with_scopes(scopes: list[dict]) -> str:
    return json.dumps({"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "fallback": ["resource_group", "subscription"]}},
                       "scope_tags": scopes})


@pytest.mark.parametrize("scopes, message", [
    # until 2024-06-01 and from 2024-03-01: both count from 2024-03-01 until (excluding) 2024-06-01
    ([scope(valid_to="2024-06-01"), scope(valid_from="2024-03-01")],
     "scope_tags.0 and scope_tags.1 both give the tags of subscription '/subscriptions/1111' from 2024-03-01 until 2024-06-01"),
    # both open: always
    ([scope("resource_group", rg="rg-net"), scope("resource_group", rg="rg-net", value="Y")],
     "scope_tags.0 and scope_tags.1 both give the tags of resource group 'rg-net' of subscription '/subscriptions/1111' "
     "from any date with no end"),
    # a third entry (another scope in between) starting inside the first one's period: 2024-11-01 until 2024-12-01
    ([scope("resource_group", rg="rg-net", valid_from="2024-01-01", valid_to="2024-12-01"), scope(),
      scope("resource_group", rg="rg-net", valid_from="2024-11-01")],
     "scope_tags.0 and scope_tags.2 both give the tags of resource group 'rg-net' of subscription '/subscriptions/1111' "
     "from 2024-11-01 until 2024-12-01"),
    # listed later but starting first; the earlier-listed one lies inside it: 2024-02-01 until 2024-03-01
    ([scope(valid_from="2024-02-01", valid_to="2024-03-01"), scope(valid_to="2024-04-01")],
     "scope_tags.0 and scope_tags.1 both give the tags of subscription '/subscriptions/1111' from 2024-02-01 until 2024-03-01"),
])
def test_overlapping_scope_tags_are_refused_naming_both_entries_and_the_dates(scopes, message):
    with pytest.raises(UsageError, match="config/allocation.json: invalid allocation rules at scope_tags: ") as err:
        R.parse(with_scopes(scopes), file="config/allocation.json")
    assert message in str(err.value)


def test_overlapping_scope_tags_are_a_usage_error_of_the_cli(tmp_path):
    lake(tmp_path, [row({"CostCenter": "A"}, "1.00")])
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(with_scopes([scope(valid_to="2024-06-01"), scope(valid_from="2024-03-01")]))
    out = CliRunner().invoke(app, ["allocate", str(tmp_path)])
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())  # the console may wrap the line
    assert "allocation.json: invalid allocation rules at scope_tags:" in text
    assert "scope_tags.0 and scope_tags.1" in text and "from 2024-03-01 until 2024-06-01" in text


def test_adjacent_scope_tag_periods_and_other_scopes_stay_valid(tmp_path):
    scopes = [scope(value="OLD", valid_to="2024-05-15"), scope(value="NEW", valid_from="2024-05-15"),  # adjacent: valid
              scope("resource_group", rg="rg-1", value="RG"), scope("resource_group", rg="rg-2", value="RG2"),
              scope(sub=SUB + "-other", value="OTHER")]  # another subscription
    r = R.parse(with_scopes(scopes), file="config/allocation.json")
    store = lake(tmp_path, [row({}, "1.00", day="2024-05-14", sub=SUB, rg=None),
                            row({}, "2.00", day="2024-05-15", sub=SUB, rg=None),
                            row({}, "3.00", day="2024-05-20", sub=SUB, rg="rg-1"),
                            row({}, "4.00", day="2024-05-20", sub=SUB.upper(), rg="RG-2")])  # ids in another case
    # 05-14: before valid_to (exclusive) of OLD; 05-15: NEW from its valid_from (inclusive); rg-1's own tags first;
    # Azure's ids are case-insensitive (exports spell a resource group's name differently from row to row)
    assert [(x["x_CostCenter"], x["x_CostCenterSource"]) for x in allocated(store, r)] == [
        ("OLD", "subscription_tag"), ("NEW", "subscription_tag"), ("RG", "resource_group_tag"), ("RG2", "resource_group_tag")]


def test_scope_tags_of_one_scope_spelled_in_another_case_overlap():
    with pytest.raises(UsageError, match="scope_tags.0 and scope_tags.1 both give the tags of resource group .RG-1."):
        R.parse(with_scopes([scope("resource_group", rg="RG-1", value="A"), scope("resource_group", rg="rg-1", value="B")]),
                file="config/allocation.json")


# --- 2. pool matches on a dimension's value, in its allowlist's spelling ------------------------------------------------

def cc_rules(pools: list[dict]) -> dict:
    return {"amount_scale": 2, "dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
            "allowlists": {"cc": [{"value": "FIN-001"}, {"value": "ENG-002"}, {"value": "SHARED-NET", "aliases": ["net-shared"]}]},
            "pools": pools}


def net_lake(tmp_path: Path) -> Store:
    return lake(tmp_path, [row({"CostCenter": "FIN-001"}, "10.00"), row({"CostCenter": "ENG-002"}, "30.00"),
                           row({"CostCenter": "shared-net"}, "8.00"),  # resolved as SHARED-NET (the allowlist's spelling)
                           row({}, "4.00"), row({}, "5.00", service="Support")])


@pytest.mark.parametrize("match", ["shared-net", "Shared-Net", ["NET-SHARED"], ["net-shared", "SHARED-NET"]])
def test_a_pool_match_on_a_dimension_takes_the_allowlist_spelling(tmp_path, match):
    pool = {"id": "net", "match": {"cost_center": match}, "method": "proportional", "targets": {"dimension": "cost_center"}}
    r = R.Rules.model_validate(cc_rules([pool]))
    assert r.pools[0].match["cost_center"] == ("SHARED-NET" if isinstance(match, str) else ["SHARED-NET"])
    out = allocated(net_lake(tmp_path), r)
    # the SHARED-NET row's 8.00 by Usage cost FIN-001 10 : ENG-002 30 = 2.00 / 6.00
    assert [(x[1], x[2]) for x in shared(out)] == [("ENG-002", D("6.00")), ("FIN-001", D("2.00"))]
    assert sum(1 for x in out if x["x_AllocationKind"] == "direct") == 4


def test_a_pool_may_match_the_unallocated_sentinel_and_columns_stay_exact(tmp_path):
    unallocated = {"id": "rest", "match": {"cost_center": "__unallocated__"}, "method": "proportional",
                   "targets": {"dimension": "cost_center", "values": ["fin-001", "eng-002"]}}
    support = {"id": "support", "match": {"ServiceName": "support"}, "method": "even",  # "Support" rows: not matched
               "targets": {"dimension": "cost_center", "values": ["FIN-001"]}}
    out = allocated(net_lake(tmp_path), R.Rules.model_validate(cc_rules([support, unallocated])))
    # support matches nothing (FOCUS columns compare exactly): the two unallocated rows 4.00 + 5.00 = 9.00 by
    # FIN-001 10 : ENG-002 30 = 2.25 / 6.75
    assert [(x[0], x[1], x[2]) for x in shared(out)] == [("rest/2024-05/USD", "ENG-002", D("6.75")),
                                                        ("rest/2024-05/USD", "FIN-001", D("2.25"))]


@pytest.mark.parametrize("pools, message", [
    ([{"id": "net", "match": {"cost_center": ["SHARED-NET", "nope"]}, "method": "even",
       "targets": {"dimension": "cost_center", "values": ["FIN-001"]}}],
     "pools.0.match.cost_center: 'nope' is not on the allowlist 'cc'"),
    # the cycle check sees canonical values: shared-net (match) is Shared-Net (target) is SHARED-NET
    ([{"id": "net", "match": {"cost_center": "shared-net"}, "method": "even",
       "targets": {"dimension": "cost_center", "values": ["FIN-001"]}},
      {"id": "support", "match": {"ServiceName": "Support"}, "method": "even",
       "targets": {"dimension": "cost_center", "values": ["Shared-Net", "ENG-002"]}}],
     "pool support: target 'SHARED-NET' selects pool net"),
])
def test_pool_matches_not_on_the_allowlist_and_cycles_are_refused(pools, message):
    with pytest.raises(UsageError, match=message) as err:
        R.parse(json.dumps(cc_rules(pools)), file="config/allocation.json")
    assert "config/allocation.json" in str(err.value)


# --- 3. the preview uses the API-managed allowlist entries ---------------------------------------------------------------

def test_preview_uses_api_allowlist_entries_like_a_run(tmp_path):
    current = {"amount_scale": 2, "dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "allowlist": "cc"}},
               "allowlists": {"cc": [{"value": "A"}]}}
    store = lake(tmp_path, [row({"CostCenter": "A"}, "6.00"), row({"CostCenter": "NEW-004"}, "4.00"),
                            row({}, "3.00", service="Support")])
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(json.dumps(current))
    # added through the API's own function, back-dated so that May 2024 counts
    allowlists.change(store, R.load(store), "cost_center", "add", ["NEW-004"],
                      allowlists.Change("alice", "new team, since January", date(2024, 1, 1)))
    candidate = {**current, "pools": [{"id": "support", "match": {"ServiceName": "Support"}, "method": "fixed",
                                       "targets": {"dimension": "cost_center", "split": {"a": "50", "new-004": "50"}}}]}
    (tmp_path / "candidate.json").write_text(json.dumps(candidate))
    cli = CliRunner().invoke(app, ["allocate", str(tmp_path), "--preview", str(tmp_path / "candidate.json")])
    assert cli.exit_code == 0, cli.output
    assert "NEW-004" in cli.output
    deltas = reports.preview(store, R.load(store), R.load(store, str(tmp_path / "candidate.json")))
    # current: A 6.00, NEW-004 4.00 (allowlisted through the API), Support 3.00 unallocated; candidate: the 3.00 split
    # 50:50 -> A 7.50, NEW-004 5.50
    assert [(d.value, d.current, d.candidate) for d in deltas] == [
        ("__unallocated__", D("3.00"), D(0)), ("A", D("6.00"), D("7.50")), ("NEW-004", D("4.00"), D("5.50"))]
    # a real run with the candidate as the rules gives the candidate's amounts
    (tmp_path / "config/allocation.json").write_text(json.dumps(candidate))
    (rec,) = allocation.allocate(store)
    assert rec.state == "committed", rec.error
    sums = dict(duckdb.sql(f"SELECT x_CostCenter, sum(x_Amount) FROM read_parquet('{tmp_path / rec.parts[0].output}') "
                           "GROUP BY ALL").fetchall())
    assert sums == {d.value: d.candidate for d in deltas if d.candidate} == {"A": D("7.50"), "NEW-004": D("5.50")}


# --- 4. rows without a BillingCurrency: the currency "" ---------------------------------------------------------------

def no_currency_lake(tmp_path: Path) -> Store:
    return lake(tmp_path, [row({"CostCenter": "A"}, "1.00"), row({"CostCenter": "A"}, "2.00", currency=None),
                           row({"CostCenter": "B"}, "6.00", currency=None), row({}, "3.00", currency=None, service="Support")])


POOL = {"id": "sup", "match": {"ServiceName": "Support"}, "method": "proportional", "targets": {"dimension": "cost_center"}}


def test_run_record_totals_of_rows_without_a_currency_are_keyed_empty(tmp_path):
    store = no_currency_lake(tmp_path)
    allocated(store, rules(pools=[POOL]))
    # no currency: 2.00 + 6.00 + 3.00 = 11.00 in and out (the 3.00 split 0.75 / 2.25); USD 1.00
    rec = runs.load_all(store)[-1]
    assert rec.totalsIn == rec.totalsOut == {"": {"x_Amount": "11.00"}, "USD": {"x_Amount": "1.00"}}
    saved = json.loads(next((tmp_path / "config/runs").glob("allocate-*.json")).read_text())
    assert "null" not in saved["totalsIn"] and saved["totalsOut"][""] == {"x_Amount": "11.00"}


def test_preview_and_chargeback_of_rows_without_a_currency(tmp_path):
    store = no_currency_lake(tmp_path)
    data = {"amount_scale": 2, "lock_before": "2024-06-01", "dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}}
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(json.dumps(data))
    deltas = reports.preview(store, R.load(store), R.Rules.model_validate({**data, "pools": [POOL]}))
    # the Support 3.00 (no currency) leaves __unallocated__ for B (+2.25) and A (+0.75); A's USD 1.00 does not change
    assert [(d.value, d.currency, d.delta) for d in deltas] == [
        ("__unallocated__", "", D("-3.00")), ("B", "", D("2.25")), ("A", "", D("0.75"))]
    (tmp_path / "config/allocation.json").write_text(json.dumps({**data, "pools": [POOL]}))
    allocation.allocate(store)
    lines = [line.split(",")[:4] for line in reports.chargeback(store, R.load(store), "2024-05").splitlines()]
    # A 2.00 + 0.75, B 6.00 + 2.25 without a currency (total 11.00); A 1.00 USD
    assert lines == [["Month", "x_CostCenter", "BillingCurrency", "EffectiveCost"], ["2024-05", "A", "", "2.75"],
                     ["2024-05", "B", "", "8.25"], ["2024-05", "TOTAL", "", "11.00"], ["2024-05", "A", "USD", "1.00"],
                     ["2024-05", "TOTAL", "USD", "1.00"]]


# --- review of stop 32: percentages beyond 100 and keys given twice ---------------------------------------------------

@pytest.mark.parametrize("split, message", [
    ({"FIN-001": "1e999999999", "ENG-002": "1"}, "pool p: a percentage above 100"),  # summing it overflowed: a crash
    ({"FIN-001": "150", "ENG-002": "-50"}, "pool p: negative percentage"),
])
def test_fixed_split_percentages_out_of_range_are_a_usage_error(tmp_path, split, message):
    pools = [{"id": "p", "match": {"ServiceName": "Support"}, "method": "fixed",
              "targets": {"dimension": "cost_center", "split": split}}]
    text = json.dumps({"dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}, "pools": pools})
    with pytest.raises(UsageError, match=message) as err:
        R.parse(text, file="config/allocation.json")
    assert "config/allocation.json" in str(err.value)
    lake(tmp_path, [row({"CostCenter": "A"}, "1.00")])
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(text)
    out = CliRunner().invoke(app, ["allocate", str(tmp_path)])
    assert out.exit_code == 2 and message in " ".join(out.output.split()), out.output


def test_a_key_given_twice_in_the_rules_is_refused(tmp_path):
    """{"A": "50", "B": "50", "A": "50"} is 150 %: JSON parsers keep the last A silently (A 50 / B 50 was accepted)."""
    text = ('{"dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}, "pools": [{"id": "p", "match": {"ServiceName": '
            '"Support"}, "method": "fixed", "targets": {"dimension": "cost_center", "split": {"A": "50", "B": "50", "A": "50"}}}]}')
    message = "config/allocation.json: invalid allocation rules: 'A' is given twice in one object"
    with pytest.raises(UsageError, match=message):
        R.parse(text, file="config/allocation.json")
    lake(tmp_path, [row({"CostCenter": "A"}, "1.00")])
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(text)
    with pytest.raises(UsageError, match="'A' is given twice in one object"):
        R.load(Store(str(tmp_path)))


def test_an_allocation_holding_two_cost_types_is_refused_not_read_as_zero(tmp_path):
    """A month locked (lock_before) in EffectiveCost keeps it after cost_metric becomes BilledCost: a query over both
    months read the other metric's month as 0 (April 100 EC / 110 BC, May 200 / 220). It is refused, naming the months."""
    for month, ec in (("2024-04", "100"), ("2024-05", "200")):
        lake(tmp_path, [row({"CostCenter": "A"}, ec, day=f"{month}-10")], month=month)
        part = tmp_path / f"ingestion/Costs/{month[:4]}/{month[5:]}/test/part.parquet"
        duckdb.sql(f"COPY (SELECT *, EffectiveCost * 1.1 AS BilledCost FROM read_parquet('{part}')) TO '{part}.tmp' "
                   "(FORMAT parquet)")
        Path(f"{part}.tmp").replace(part)
    store = Store(str(tmp_path))
    allocated(store, rules(), "2024-04")
    allocated(store, rules(cost_metric="BilledCost", lock_before="2024-05-01"), "2024-05")
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/allocation.json").write_text(rules(cost_metric="BilledCost", lock_before="2024-05-01").model_dump_json())
    for cost_type, month, kind in (("EffectiveCost", "2024-05", "BilledCost"), ("BilledCost", "2024-04", "EffectiveCost")):
        out = CliRunner().invoke(app, ["costs", str(tmp_path), "--begin", "2024-04", "--end", "2024-05", "--group-by",
                                       "x_CostCenter", "--cost-type", cost_type, "--format", "csv"])
        assert out.exit_code == 2, out.output
        assert f"the allocation of {month} ({kind}) is in another cost type than {cost_type}" in " ".join(out.output.split())
    may = CliRunner().invoke(app, ["costs", str(tmp_path), "--begin", "2024-05", "--end", "2024-05", "--group-by",
                                   "x_CostCenter", "--cost-type", "BilledCost", "--format", "csv"])
    assert may.exit_code == 0 and "220" in may.output, may.output  # 200 x 1.1: one metric in the period, answered
    with pytest.raises(UsageError, match=r"the allocation of 2024-04 \(EffectiveCost\)"):
        reports.records(store, R.load(store), "COSTCENTER", date(2024, 4, 1), date(2024, 5, 31))
    assert [r["costs"] for r in reports.records(store, R.load(store), "COSTCENTER", date(2024, 5, 1), date(2024, 5, 31))] == ["220"]


@pytest.mark.parametrize("entries, refused", [
    ([{"value": "FIN-001", "aliases": ["money"]}, {"value": "ENG-002", "aliases": ["Money"]}], "'money' names both"),
    ([{"value": "FIN-001", "aliases": ["eng-002"]}, {"value": "ENG-002"}], "'eng-002' names both"),
    # one after the other (the alias moved on 2024-06-01): never both on one day, accepted
    ([{"value": "FIN-001", "aliases": ["money"], "valid_to": "2024-06-01"},
      {"value": "ENG-002", "aliases": ["money"], "valid_from": "2024-06-01"}], None),
])
def test_a_spelling_names_one_value_on_any_day(entries, refused):
    text = json.dumps({**cc_rules([]), "allowlists": {"cc": entries}})
    if refused is None:
        R.parse(text, file="config/allocation.json")
        return
    with pytest.raises(UsageError, match=f"config/allocation.json: invalid allocation rules at allowlists: .*{refused}"):
        R.parse(text, file="config/allocation.json")


def test_the_api_refuses_a_value_that_is_another_values_alias(tmp_path):
    """Review of stop 32: adding "fin" beside FIN-001 (alias "fin") through the API was accepted; then a row tagged fin
    went to FIN-001 and a split written {"fin": 100} to a new cost center fin (one team, two lines)."""
    store = lake(tmp_path, [row({"CostCenter": "fin"}, "10.00")])
    (tmp_path / "config").mkdir()
    (tmp_path / "config/allocation.json").write_text(json.dumps({**cc_rules([]), "allowlists": {"cc": [
        {"value": "FIN-001", "aliases": ["fin"]}]}}))
    rules_now = R.load(store)
    with pytest.raises(allowlists.ChangeRefused, match="'FIN' is an alias of 'FIN-001': use that value"):
        allowlists.change(store, rules_now, "cost_center", "add", ["FIN"], allowlists.Change("me"), today=date(2024, 1, 1))
    assert allowlists.stored(store, "cc") == []  # nothing written
    allowlists.change(store, rules_now, "cost_center", "add", ["OPS-003"], allowlists.Change("me"), today=date(2024, 1, 1))
    assert [e["value"] for e in allowlists.stored(store, "cc")] == ["OPS-003"]


def _pool(**over) -> dict:
    return {"id": "p", "match": {"ServiceName": "Support"}, "method": "even",
            "targets": {"dimension": "cost_center", "values": ["FIN-001"]}, **over}


@pytest.mark.parametrize("change, message", [
    ({"pools": [_pool(match={"ServiceName": []})]}, "match.ServiceName: an empty list matches no row"),
    ({"pools": [_pool(weight={"charge_categories": []})]}, "pools.0.weight.charge_categories"),
    ({"pools": [_pool(targets={"dimension": "cost_center", "values": ["FIN-001"], "split": {"FIN-001": "100"}})]},
     "pool p: targets.split goes with method fixed"),
    ({"pools": [_pool(method="fixed", targets={"dimension": "cost_center", "values": ["FIN-001"], "split": {"FIN-001": "100"}})]},
     "pool p: targets.split goes with method fixed"),
    ({"pools": [_pool(targets={"dimension": "cost_center", "values": ["__unallocated__"]})]},
     "pool p: '__unallocated__' cannot be a target"),
    ({"pools": [_pool(targets={"dimension": "cost_center", "values": [" "]})]}, "pool p: ' ' cannot be a target"),
    ({"dimensions": {"cost_center": {"tag_keys": [""]}}}, "dimensions.cost_center.tag_keys.0"),
    ({"version": 2}, "version"),
    # review of stop 39: a pool without targets sent every month's pool to __unallocated__; a default or mapping value
    # spelled as a status counted as allocated
    ({"pools": [_pool(targets={"dimension": "cost_center", "values": []})]}, "pool p: targets.values is an empty list"),
    ({"dimensions": {"cost_center": {"tag_keys": ["CostCenter"], "default": "__UNALLOCATED__"}}},
     "dimensions.cost_center.default: '__UNALLOCATED__' is a status the allocation writes"),
    ({"mappings": [{"id": "m", "match": {"ServiceName": "A"}, "set": {"cost_center": "__not_allowlisted__"}}]},
     "mapping m: sets '__not_allowlisted__', a status the allocation writes"),
    ({"mappings": [{"id": "m", "match": {"ServiceName": "A"}, "set": {"cost_center": "X"}},
                   {"id": "m", "match": {"ServiceName": "B"}, "set": {"cost_center": "Y"}}]}, "mapping ids must be unique"),
])
def test_rules_that_mean_nothing_are_refused(change, message):
    """Review of stop 32: each of these was accepted and ran without a word (a pool matching no row, all weights 0, a
    split ignored, a target that is a status the allocation writes, a blank tag key, version 2, two mappings m)."""
    base = {"amount_scale": 2, "dimensions": {"cost_center": {"tag_keys": ["CostCenter"]}}}
    with pytest.raises(UsageError, match="config/allocation.json: invalid allocation rules") as err:
        R.parse(json.dumps({**base, **change}), file="config/allocation.json")
    assert message in str(err.value)
