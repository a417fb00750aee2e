"""Cost inspection (hub/inspection): detection, intervals, severity, root causes, insufficient history; expected values
computed by hand in the comments."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from hub import inspection
from hub.cli import app
from hub.errors import UsageError
from hub.inspection import detect
from hub.inspection import rules as R
from hub.store import Store

D = Decimal
LAST = date(2024, 5, 31)  # a Friday


def test_the_one_day_test_on_a_flat_weekly_series():
    """14 training days of 10 on weekdays and 4 at weekends: in log space the weekday effects take the weekly pattern
    whole, so expected = the weekday's cost, the residuals are 0 and the scale is at its floor: any material deviation
    is abnormal; 10.5 (impact 0.5 < 1) is not. The tails pool at most a 3-sigma day (clip) with normal days: no shift."""
    days = 17
    weekdays = np.arange(days) % 7  # day 0 a Monday
    base = np.where(weekdays >= 5, 4.0, 10.0)
    values = np.vstack([base, base, base])
    values[0, 14:] = [30, 10, 10]  # a spike on a Monday
    values[1, 14:] = [10.5, 10, 10]
    values[2, 14:] = [10, 2, 10]  # a drop
    found = detect.detect(values, weekdays, 3)
    assert found.expected[0, 14] == pytest.approx(10)
    assert found.flag.tolist()[0][14:] == [1, 0, 0]
    assert found.flag.tolist()[1][14:] == [0, 0, 0]
    assert found.flag.tolist()[2][14:] == [0, -1, 0]


def test_the_shift_test_pools_the_days_of_a_lasting_change():
    """34 training days of 10 e^(0.05 (-1)^t) (noise +-5 % alternating, a flat weekly pattern), then 7 test days.

    By hand: each weekday's 4 deviations from the centred week (days 3-30) are +-(8/7) 0.05, two of each sign: weekday
    effects 0. The line through log cost: mean log 10, slope sum(t e_t) / sum((t - 16.5)^2) = -0.85 / 3272.5 = -2.6e-4
    a day. Residuals +-0.05 + 2.6e-4 (t - 16.5): 10th-90th percentiles -+0.0523, scale 0.1046 / 2.563 x (1 + 15/34) =
    0.0588. No step: the best step's cut is under 1 sigma^2 (sigma = 0.2 / 2.563 / sqrt 2 = 0.055 from the +-0.1
    day-to-day differences). c = 1 + 11/34 = 1.32; the level's variance v = 1/34 + (t - 16.5)^2 / 3272.5.
    A: 11.5 (+15 %) on each test day: z = (log 1.15 + 2.6e-4 (t - 16.5)) / 0.0588 = 2.45-2.48; one day: z / sqrt(c + v)
    = 2.01-2.04 < 3.25, nothing; the 7-day tail: mean z 2.466 / sqrt(c / 7 + v(37) = 0.158) = 2.466 / 0.589 = 4.19 >= 3:
    every test day abnormal (the shorter tails score less: 2 days 2.68). B: the same +15 % on the last 2 days only:
    tail of 2 days 2.68 < 3, of 3 days (0.09 + 2.48 + 2.48) / 3 / 0.791 = 2.13: nothing yet."""
    days, train = 41, 34
    weekdays = np.arange(days) % 7
    noise = 10 * np.exp(0.05 * (-1.0) ** np.arange(train))
    values = np.vstack([np.r_[noise, [11.5] * 7], np.r_[noise, [10] * 5, [11.5] * 2]])
    found = detect.detect(values, weekdays, days - train)
    assert found.flag[:, train:].tolist() == [[1] * 7, [0] * 7]
    assert found.expected[0, 37] == pytest.approx(10 * np.exp(-2.6e-4 * 20.5), rel=1e-3)
    assert not detect.detect(values, weekdays, days - train, z_shift=np.inf).flag.any()  # the one-day test alone: nothing


def test_intervals_tolerate_a_one_day_gap_and_close_after_two_normal_days():
    assert detect.intervals(np.array([0, 1, 0, 1, 1, 0, 0])) == [detect.Interval(1, 4, 1, False)]
    assert detect.intervals(np.array([0, 1, 0, 0, 1, 0])) == [detect.Interval(1, 1, 1, False), detect.Interval(4, 4, 1, True)]
    assert detect.intervals(np.array([1, -1, 0])) == [detect.Interval(0, 0, 1, False), detect.Interval(1, 1, -1, True)]
    # a day of the other direction inside a change (a day without cost in a doubling: review of stop 42) is a one-day
    # gap of it, not its end: one up interval, still open, and the down day its own, over
    assert detect.intervals(np.array([0, 1, 1, -1, 1, 1])) == [detect.Interval(1, 5, 1, True), detect.Interval(3, 3, -1, False)]
    # a stopped resource's weekend: its days without cost (not flagged where zero is the weekend's usual cost) neither
    # end nor split its down interval (review of stop 42: a second anomaly each Monday)
    flags, idle = np.array([0, -1, -1, 0, 0, -1, 0, 0]), np.array([False, True, True, True, True, True, True, True])
    assert detect.intervals(flags, idle=idle) == [detect.Interval(1, 5, -1, True)]
    assert detect.intervals(flags) == [detect.Interval(1, 2, -1, False), detect.Interval(5, 5, -1, False)]


def lake(root: Path, rows: list[tuple]) -> Store:
    cols = ("SubAccountId", "ServiceName", "RegionId", "SkuId", "ResourceId", "EffectiveCost", "BillingCurrency",
            "ChargePeriodStart", "ChargeFrequency", "ChargeClass")
    for month in sorted({r[7][:7] for r in rows}):
        folder = root / "ingestion/Costs" / month[:4] / month[5:] / "test"
        folder.mkdir(parents=True, exist_ok=True)
        values = ", ".join("(" + ", ".join("NULL" if v is None else f"'{v}'" for v in r) + ")" for r in rows if r[7][:7] == month)
        duckdb.sql(f"""COPY (SELECT SubAccountId, ServiceName, RegionId, SkuId, ResourceId,
            CAST(EffectiveCost AS DECIMAL(38,18)) AS EffectiveCost, BillingCurrency, CAST(ChargePeriodStart AS TIMESTAMPTZ)
            AS ChargePeriodStart, ChargeFrequency, ChargeClass FROM (VALUES {values}) v({', '.join(cols)}))
            TO '{folder}/part.parquet' (FORMAT parquet)""")
    return Store(str(root))


def daily(sub: str, day: date, cost: float, *, service: str = "S1", resource: str = "r1", freq: str = "Usage-Based",
          cls: str | None = None) -> tuple:
    return (sub, service, "eu-west-1", f"sku-{service}", resource, str(cost), "USD", f"{day} 06:00:00+00", freq, cls)


def history(sub: str, days: int, weekday: float, weekend: float, split: tuple[float, float] | None = None) -> list[tuple]:
    """``days`` days up to LAST: the weekday/weekend cost, on S1 (and S2 when ``split``)."""
    out = []
    for i in range(days):
        d = LAST - timedelta(days=i)
        cost = weekend if d.weekday() >= 5 else weekday
        if split:
            out += [daily(sub, d, cost * split[0], service="S1"), daily(sub, d, cost * split[1], service="S2", resource="r2")]
        else:
            out.append(daily(sub, d, cost))
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    rows = history("A", 40, 10, 4, split=(0.7, 0.3))
    rows.append(daily("A", LAST, 20, service="S2", resource="r-new"))  # May 31: +20 on a new instance of S2
    rows += history("B", 40, 10, 4)
    rows += [daily("B", date(2024, 5, 1), 500, freq="One-Time"), daily("B", date(2024, 5, 29), 300, cls="Correction")]
    rows += [r for r in history("D", 40, 20, 20) if r[7] < "2024-05-29"]
    rows += [daily("D", LAST - timedelta(days=i), 2) for i in range(3)]  # May 29-31: 2 instead of 20
    rows += history("E", 40, 10, 4) + [daily("E", date(2024, 5, 29), 40)]  # Wednesday May 29: 50, then normal
    rows += history("C", 5, 10, 4)
    return lake(tmp_path, rows)


def rules(**kw) -> R.Rules:
    return R.Rules.model_validate({"window_days": 35, "test_days": 3, **kw})


def test_anomalies_with_impact_severity_state_and_root_causes(store):
    result = inspection.inspect(store, LAST, rules())
    got = {a.key: a for a in result.anomalies}
    assert set(got) == {"A", "D", "E"}  # B: its one-time fee and its correction are not usage: no anomaly
    a = got["A"]
    # May 31 (Friday): expected the Fridays' median, 10; actual 10 + 20; impact 20 = 200 % -> critical, still open
    assert (a.start, a.end, a.state, a.direction, a.actual, a.expected, a.impact, a.severity) == (
        LAST, LAST, "open", "up", D("30"), D("10.0"), D("20.0"), "critical")
    assert a.impact_pct == pytest.approx(200)
    causes = {(c.dimension, c.value): (c.delta, c.kind, round(c.share, 3)) for c in a.causes}
    assert causes[("product", "S2")] == (D("20"), "changed", 1.0)  # S2: 3 expected (median of 4 Fridays), 23 actual
    assert causes[("instance", "r-new")] == (D("20"), "new", 1.0)
    d = got["D"]
    # May 29-31: 2 a day against 20: impact 3 x -18 = -54, -90 % -> critical, down, open
    assert (d.start, d.end, d.direction, d.actual, d.impact, d.severity, d.state) == (
        date(2024, 5, 29), LAST, "down", D("6"), D("-54.0"), "critical", "open")
    e = got["E"]
    # May 29: 50 against 10 (+400 %), May 30 and 31 normal: resolved
    assert (e.start, e.end, e.state, e.impact) == (date(2024, 5, 29), date(2024, 5, 29), "resolved", D("40.0"))
    assert result.insufficient == [("sub-accounts", "C", "USD", 5)]  # 5 days < 15
    assert result.series == 4


def test_monitors_by_service_with_a_filter_and_thresholds(store):
    r = rules(monitors=[{"id": "services", "dimension": "ServiceName", "filter": {"SubAccountId": "A"}},
                        {"id": "big", "dimension": "SubAccountId", "min_impact": 25}])
    got = {(a.monitor, a.key) for a in inspection.inspect(store, LAST, r).anomalies}
    # services of A: S2 (3 -> 23); big: a day's impact must reach 25: only E's 40 (A's 20, D's 18 a day do not)
    assert got == {("services", "S2"), ("big", "E")}


def test_cli_and_bad_settings(store, tmp_path):
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3}))
    runner = CliRunner()
    out = runner.invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {a["key"] for a in data["anomalies"]} == {"A", "D", "E"}
    assert data["insufficientHistory"] == [{"monitor": "sub-accounts", "key": "C", "currency": "USD", "days": 5}]
    table = runner.invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31"])
    assert table.exit_code == 0 and "critical" in table.output
    (tmp_path / "config/inspection.json").write_text(json.dumps({"monitors": [{"id": "x", "dimension": "Nope"}]}))
    bad = runner.invoke(app, ["inspect", str(tmp_path)])
    assert bad.exit_code == 2 and "inspection.json" in bad.output and "monitors.0" in bad.output
    with pytest.raises(UsageError, match="window_days"):
        R.parse(json.dumps({"window_days": 21, "test_days": 10}))


def _leaves(value: object, key: str = "") -> list[tuple[str, object]]:
    """Every (key, value) leaf of a JSON document."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, k)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v, key)]
    return [(key, value)]


def test_inspect_json_writes_money_as_plain_decimal_strings_never_floats_or_exponents(store, tmp_path):
    """Defect: a root cause's zero amount came out as "0E-18" (str of a Decimal) and the series as JSON floats."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3}))
    out = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    money = {"actual", "expected", "impact", "max_daily_impact", "delta", "lower", "upper"}
    leaves = _leaves(data["anomalies"])
    assert {k for k, v in leaves if isinstance(v, float)} == {"impact_pct", "share"}  # ratios, not money
    plain = re.compile(r"-?[0-9]+(\.[0-9]*[1-9])?")
    assert all(isinstance(v, str) and plain.fullmatch(v) for k, v in leaves if k in money and v is not None)
    a = next(a for a in data["anomalies"] if a["key"] == "A")
    assert (a["actual"], a["expected"], a["impact"], a["max_daily_impact"]) == ("30", "10", "20", "20")
    assert {k: a["causes"][-1][k] for k in ("value", "kind", "actual", "expected", "delta")} == {
        "value": "r-new", "kind": "new", "actual": "20", "expected": "0", "delta": "20"}  # was "0E-18"
    # May 2-31: 10 on weekdays, 4 on weekends, 30 on Friday May 31
    days = [date(2024, 5, 2) + timedelta(days=i) for i in range(30)]
    assert [(p["day"], p["actual"]) for p in a["series"]] == [
        (d.isoformat(), "30" if d == LAST else "4" if d.weekday() >= 5 else "10") for d in days]
    assert all(len(p[k].partition(".")[2]) <= 6 for p in a["series"] for k in ("expected", "lower", "upper"))


def test_the_forecast_of_a_flat_weekly_series():
    """28 days of 10 on weekdays and 4 at weekends, no noise: the rest of the month is the weekdays' 10s and the
    weekends' 4s, with an interval of 0."""
    weekdays = np.arange(28) % 7
    values = np.where(weekdays >= 5, 4.0, 10.0)[None, :]
    future = np.array([0, 1, 2, 3, 4, 5, 6, 0])  # 8 days left: 6 weekdays, 2 weekend days
    fc = __import__("hub.inspection.forecast", fromlist=["forecast"]).forecast(values, weekdays, future)
    assert fc.remaining[0] == pytest.approx(6 * 10 + 2 * 4)
    assert fc.half80[0] == pytest.approx(0) and fc.half95[0] == pytest.approx(0)
    noisy = values + np.tile([1.0, -1.0], 14)[None, :]
    wide = __import__("hub.inspection.forecast", fromlist=["forecast"]).forecast(noisy, weekdays, future)
    assert wide.half95[0] > wide.half80[0] > 0


def test_budgets_fire_each_threshold_once_and_events_never_repeat(store, tmp_path):
    events_file = tmp_path / "events.jsonl"
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/settings.json").write_text(json.dumps({"events": {"sinks": [{"type": "file", "path": str(events_file)}]}}))
    # sub-account B: 10 a weekday, 4 a weekend day, plus a 500 one-time fee on May 1 (and a correction left out of usage)
    r = rules(budgets=[{"id": "b", "amount": "1000", "filter": {"SubAccountId": "B"}, "actual": [50, 80], "forecasted": [100]}])
    first = inspection.inspect(store, date(2024, 5, 10), r)
    (b,) = first.budgets
    # May 1-10: 500 + 8 weekdays x 10 + 2 weekend days x 4 = 588 (58.8 %: 50 % crossed); the rest of May: 15 weekdays
    # and 6 weekend days = 174 -> forecast 762 (< 1000)
    assert (b["actual"], b["forecast"], b["crossed"]) == ("588", "762", [("actual", 50.0)])
    assert b["lower80"] == b["upper80"] == "762"  # no noise: no spread
    again = inspection.inspect(store, date(2024, 5, 10), r)
    assert again.events == []  # a re-run of the day: nothing new
    later = inspection.inspect(store, date(2024, 5, 31), r)
    # May 31: + the correction of 300 (a charge all the same) -> 588 + 174 + 300 = 1062: 80 % crossed now (50 % was)
    assert later.budgets[0]["actual"] == "1062" and ("finops-hub.budget.threshold", "b") in later.events
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    kinds = [(e["type"], e["data"].get("threshold", {}).get("percent")) for e in lines if e["type"] == "finops-hub.budget.threshold"]
    assert kinds == [("finops-hub.budget.threshold", 50.0), ("finops-hub.budget.threshold", 80.0),
                     ("finops-hub.budget.threshold", 100.0)]  # forecasted 100 % is crossed by the actual 1062 too
    opened = [e for e in lines if e["type"] == "finops-hub.anomaly.opened"]
    assert {e["subject"] for e in opened} == {"sub-accounts/A", "sub-accounts/D"}
    assert {e["subject"] for e in lines if e["type"] == "finops-hub.anomaly.resolved"} == {"sub-accounts/E"}
    assert len({e["id"] for e in lines}) == len(lines)


def test_a_changed_budget_fires_under_its_new_definition_and_never_for_a_month_judged_under_the_old(tmp_path):
    """Review of stop 41: a fired threshold was keyed by budget, month and percent only: a budget raised from 50 to 200
    mid-month never fired its 100 % again (250 spent); and a budget lowered on June 2 fired May's closed-month check
    under the new amount, though May was under budget all month."""
    store = lake(tmp_path, [daily("B", date(2024, 4, 1) + timedelta(days=i), 10) for i in range(63)])  # Apr 1 - Jun 2

    def fired(day: date, amount: str) -> int:
        r = rules(budgets=[{"id": "b", "amount": amount, "actual": [100], "forecasted": []}])
        return sum(kind == "finops-hub.budget.threshold" for kind, _ in inspection.inspect(store, day, r).events)

    assert fired(date(2024, 5, 10), "50") == 2  # 100 of 50, and April's closed month (300)
    assert fired(date(2024, 5, 11), "50") == 0  # fired once
    assert fired(date(2024, 5, 25), "200") == 1  # 250 of the raised 200
    assert fired(date(2024, 5, 31), "1000") == 0  # May ends at 310 of 1000
    assert fired(date(2024, 6, 2), "300") == 0  # May was judged under 1000: lowering the budget now fires nothing for it


def test_thresholds_an_older_version_fired_never_fire_again(tmp_path):
    """Review of stop 41 (the change's own review): a state written before budget definitions were kept (keys without
    one) kept its thresholds quiet on the first inspection only: the next fired them all again."""
    store = lake(tmp_path, [daily("B", date(2024, 4, 1) + timedelta(days=i), 10) for i in range(61)])  # Apr 1 - May 31
    r = rules(budgets=[{"id": "b", "amount": "100", "actual": [50, 100], "forecasted": []}])
    assert len(inspection.inspect(store, date(2024, 5, 20), r).events) >= 4  # April's and May's 50 % and 100 %
    path = tmp_path / "config/inspection/state.json"
    state = json.loads(path.read_text())
    state["budgets"] = {k.rsplit("/", 1)[0]: v for k, v in state["budgets"].items()}  # as the older version wrote them
    state.pop("budgetDefinitions")
    path.write_text(json.dumps(state))
    for day in (21, 22, 23):
        assert [e for e in inspection.inspect(store, date(2024, 5, day), r).events if e[0] == "finops-hub.budget.threshold"] == []
    # a threshold fired before the upgrade and not crossed on its first inspection (a forecast back under it) neither
    state = json.loads(path.read_text())
    state["budgets"] = {"b/2024-05/forecasted/100": "2024-05-05"}
    state.pop("budgetDefinitions")
    path.write_text(json.dumps(state))
    low = rules(budgets=[{"id": "b", "amount": "100000", "actual": [], "forecasted": [100]}])
    inspection.inspect(store, date(2024, 5, 24), low)  # the upgrade's first inspection: nothing crossed (as before)
    assert "b/2024-05/forecasted/100/" + low.budgets[0].definition in json.loads(path.read_text())["budgets"]


def test_feedback_datasets_and_the_anomalies_command(store, tmp_path):
    result = inspection.inspect(store, LAST, rules())
    a = next(x for x in result.anomalies if x.key == "A")
    runner = CliRunner()
    out = runner.invoke(app, ["anomalies", str(tmp_path), "--feedback", a.id, "planned"])
    assert out.exit_code == 0 and a.id in out.output and "planned" in out.output
    assert runner.invoke(app, ["anomalies", str(tmp_path), "--feedback", a.id, "maybe"]).exit_code == 2
    from hub import catalog

    con = catalog.connect(str(tmp_path))
    rows = con.execute("SELECT key, state, feedback, impact, start FROM Anomalies_v1_0 ORDER BY key").fetchall()
    assert rows == [("A", "open", "planned", D("20"), LAST), ("D", "open", None, D("-54"), date(2024, 5, 29)),
                    ("E", "resolved", None, D("40"), date(2024, 5, 29))]
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3, "budgets": [
        {"id": "all", "amount": "2000"}]}))
    budgets = runner.invoke(app, ["budgets", str(tmp_path), "--date", "2024-05-31"])
    assert budgets.exit_code == 0 and "all" in budgets.output
    # defect: a budget that can never match (a filter value in another case) reported 0 % without a word; a currency
    # in lower case is the same code
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3, "budgets": [
        {"id": "lower", "amount": "2000", "currency": "usd"}, {"id": "nothing", "amount": "10", "filter": {"SubAccountId": "b"}}]}))
    checked = inspection.inspect(store, LAST, R.load(store), save=False)
    assert [(b["id"], b["currency"], b["actual"] != "0") for b in checked.budgets] == [("lower", "USD", True), ("nothing", "USD", False)]
    assert checked.unmatched == ['budget nothing: no cost of 2024-05 up to 2024-05-31 in USD with {"SubAccountId": "b"} '
                                 "(currency and filter values must match the lake's exactly, case included)"]
    # nor did a monitor (review of stop 37)
    quiet = inspection.inspect(store, LAST, R.Rules.model_validate(
        {"window_days": 35, "test_days": 3, "monitors": [{"id": "m", "filter": {"SubAccountId": "a"}}]}), save=False)
    assert quiet.unmatched == ['monitor m: no usage cost from 2024-04-27 to 2024-05-31 with {"SubAccountId": "a"} (filter '
                               "values must match the lake's exactly, case included)"]
    warned = runner.invoke(app, ["budgets", str(tmp_path), "--date", "2024-05-31"])
    assert warned.exit_code == 0 and "warning: budget nothing: no cost of 2024-05" in warned.stderr
    for bad in ("US", "US$", "", 840):
        with pytest.raises(UsageError, match="currency"):
            R.parse(json.dumps({"budgets": [{"id": "x", "amount": "1", "currency": bad}]}))


def test_the_watcher_inspects_once_a_day(store, tmp_path):
    import threading

    from pipelines.watch import watch

    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3}))
    lines: list[dict] = []
    watch(store, stop=threading.Event(), log=lines.append, cycles=2, interval=0.1)
    assert [line["event"] for line in lines].count("inspect") == 1


class _Receiver:
    """A local HTTP endpoint recording the JSON bodies posted to it (an Alertmanager webhook receiver)."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                if location:  # a redirect
                    self.send_header("Location", location)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - what a followed redirect turns the POST into
                outer.bodies.append({"GET": self.path})
                outer.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alert_policies_send_alertmanager_webhooks_by_severity_with_a_silence(store, monkeypatch):
    from hub.inspection import alerts

    monkeypatch.setenv("HOOK_TOKEN", "hook-secret-123")
    receiver = _Receiver()
    try:
        anomalies = ["anomaly.opened", "anomaly.updated", "anomaly.resolved"]
        r = rules(alerts=[{"id": "oncall", "min_severity": "critical", "events": anomalies,
                           "targets": [{"url": receiver.url, "token_env": "HOOK_TOKEN"}]},
                          {"id": "finance", "min_severity": "minor", "events": ["budget.threshold"],
                           "targets": [{"url": receiver.url}]}],
                  budgets=[{"id": "b", "amount": "100", "filter": {"SubAccountId": "B"}, "actual": [50]}])
        result = inspection.inspect(store, LAST, r)
        assert result.alert_errors == []
        by_receiver = {b["receiver"]: b for b in receiver.bodies}
        oncall = by_receiver["oncall"]
        assert oncall["version"] == "4" and oncall["status"] == "firing"
        # critical anomalies only: A (+200 %), D (-90 %) opened, E (+400 %) resolved; budgets go to finance only
        names = sorted((a["labels"]["alertname"], a["labels"].get("key"), a["status"]) for a in oncall["alerts"])
        assert names == [("CostAnomaly", "A", "firing"), ("CostAnomaly", "D", "firing"), ("CostAnomaly", "E", "resolved")]
        assert by_receiver["finance"]["alerts"][0]["labels"]["alertname"] == "BudgetThreshold"
        assert receiver.headers[[b["receiver"] for b in receiver.bodies].index("oncall")]["Authorization"] == "Bearer hook-secret-123"
    finally:
        receiver.close()
    state = {"alerts": {}}
    event = [("finops-hub.anomaly.updated", "m/k", {"severity": "major", "id": "x"}, "i")]
    policy = R.Rules.model_validate({"alerts": [{"id": "p", "targets": [{"url": "http://127.0.0.1:9/none", "retries": 0}],
                                                 "silence_hours": 24}]})
    first = alerts.notify(policy, state, event)
    assert first.notified == 0 and first.errors and "hook-secret" not in first.errors[0]  # nobody listens on port 9
    again = alerts.notify(policy, state, event)
    assert again.silenced == 1  # within 24 hours of the last notification of the same anomaly


def test_alerts_a_target_missed_are_sent_at_the_next_inspection(store, tmp_path):
    """Defect: a target that failed (after its retries) lost its alerts for good: the subject was marked notified and
    the event is made once. They are kept (``alertsPending``, without the URL) and sent first next time; `hub inspect`
    says what failed (it said nothing)."""
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.inspection import alerts

    receiver = _Receiver(status=503)
    try:
        policy = R.Rules.model_validate({"alerts": [{"id": "p", "targets": [{"url": receiver.url, "retries": 0}]}]})
        state: dict = {"alerts": {}}
        first = [("finops-hub.anomaly.opened", "m/a", {"severity": "major", "id": "a"}, "i1")]
        down = alerts.notify(policy, state, first)
        assert down.notified == 0 and "1 alerts kept" in down.errors[0] and receiver.url not in json.dumps(state)
        receiver.status = 200
        second = [("finops-hub.anomaly.opened", "m/b", {"severity": "major", "id": "b"}, "i2")]
        back = alerts.notify(policy, state, second)
        assert (back.notified, back.errors, state["alertsPending"]) == (2, [], {})
        assert [[a["fingerprint"] for a in body["alerts"]] for body in receiver.bodies[1:]] == [["a"], ["b"]]  # in order
        gone = alerts.notify(R.Rules.model_validate({"alerts": []}), {**state, "alertsPending": {"p#0:x": [{}]}}, [])
        assert gone.errors == []
        receiver.status = 503  # down for long: only the newest MAX_PENDING are kept
        many = [("finops-hub.anomaly.opened", f"m/{i}", {"severity": "major", "id": f"n{i}"}, f"j{i}") for i in range(3)]
        alerts.MAX_PENDING, limit = 2, alerts.MAX_PENDING
        try:
            alerts.notify(policy, state, many[:2])
            alerts.notify(policy, state, many[2:])
        finally:
            alerts.MAX_PENDING = limit
        assert [[a["fingerprint"] for a in held] for held in state["alertsPending"].values()] == [["n1", "n2"]]
    finally:
        receiver.close()
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3, "alerts": [
        {"id": "p", "min_severity": "minor", "targets": [{"url": "http://127.0.0.1:9/none", "retries": 0}]}]}))
    out = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31"])
    assert out.exit_code == 0 and "warning: alerts: alert policy p:" in out.stderr


def test_the_api_lists_anomalies_and_takes_feedback(store, tmp_path):
    from fastapi.testclient import TestClient

    from hub.server import create_app

    inspection.inspect(store, LAST, rules(budgets=[{"id": "b", "amount": "1000", "filter": {"SubAccountId": "B"}}]))
    with TestClient(create_app(str(tmp_path), token="t0ken")) as c:
        assert c.get("/v1/anomalies").status_code == 401
        auth = {"Authorization": "Bearer t0ken"}
        page = c.get("/v1/anomalies?state=open&page-size=1", headers=auth).json()
        assert page["hasNextPage"] and len(page["records"]) == 1 and page["records"][0]["state"] == "open"
        everything = c.get("/v1/anomalies", headers=auth).json()["records"]
        assert sorted(a["key"] for a in everything) == ["A", "D", "E"]
        a = next(x for x in everything if x["key"] == "A")
        assert a["causes"][0]["dimension"] == "product"
        assert c.post(f"/v1/anomalies/{a['id']}/feedback", json={"feedback": "no"}, headers=auth).status_code == 204
        assert c.post(f"/v1/anomalies/{a['id']}/feedback", json={"feedback": "perhaps"}, headers=auth).status_code == 400
        assert c.post("/v1/anomalies/0123456789abcdef/feedback", json={"feedback": "no"}, headers=auth).status_code == 404
        again = c.get("/v1/anomalies", headers=auth).json()["records"]
        assert next(x for x in again if x["key"] == "A")["feedback"] == "no"
        (budget,) = c.get("/v1/budgets?month=2024-05", headers=auth).json()["records"]
        assert (budget["id"], budget["consumptionPct"], budget["crossed"]) == ("b", 106.2, [["actual", 50.0], ["actual", 80.0],
                                                                                          ["actual", 100.0], ["forecasted", 100.0]])
        # defect: money was DECIMAL(38,18) text (1000.000000000000000000, 0E-18)
        money = {k: budget[k] for k in ("amount", "actual", "forecast", "lower80", "upper80", "lower95", "upper95")}
        assert (money["amount"], money["actual"]) == ("1000", "1062") and not [
            v for v in money.values() if v is not None and ("E" in v or v.endswith("0") and "." in v)], money
        assert c.get("/v1/budgets?month=2024-13", headers=auth).status_code == 400
        assert c.get("/v1/budgets?month=\u0662\u0660\u0662\u0664-05", headers=auth).status_code == 400  # Arabic-Indic digits


def test_the_report_shows_each_anomaly_and_budget_rendered_in_chromium(store, tmp_path):
    """hub report after hub inspect: the page Chromium renders holds each anomaly's numbers as DuckDB has them, its
    band chart with the abnormal interval, its root causes, and the budgets."""
    from test_report import chromium, parse

    from hub import catalog
    from hub.report import write_report

    inspection.inspect(store, LAST, rules(budgets=[{"id": "b", "amount": "1000", "filter": {"SubAccountId": "B"}}]))
    page = tmp_path / "report.html"
    write_report(str(tmp_path), str(page))
    dom = chromium("--dump-dom", page.as_uri(), tmp=tmp_path).stdout
    tables = parse(dom).tables
    con = catalog.connect(str(tmp_path))
    for anomaly_id, impact, key in con.execute("SELECT id, impact, key FROM Anomalies").fetchall():
        ((_, cells),) = tables[f"anomaly-{anomaly_id}-facts"]
        assert Decimal(cells["impact"][0]) == impact and cells["key"][1] == key
        assert f'id="anomaly-{anomaly_id}"' in dom
    a_causes = [c for _, c in tables[f"anomaly-{next(i for i, k in con.execute('SELECT id, key FROM Anomalies').fetchall() if k == 'A')}-causes"]]
    assert ("product", "S2") in {(c["dimension"][1], c["value"][1]) for c in a_causes}
    assert dom.count('class="abnormal"') == 3 and dom.count('class="band"') == 3
    # related events: the monitor's other anomalies of those 30 days, linked (A's article lists D and E, not itself)
    ids = dict((k, i) for i, k in con.execute("SELECT id, key FROM Anomalies").fetchall())
    article = dom.split(f'id="anomaly-{ids["A"]}"', 1)[1].split("</article>", 1)[0]
    related = article.split('class="related"', 1)[1]
    assert f'href="#anomaly-{ids["D"]}"' in related and f'href="#anomaly-{ids["E"]}"' in related
    assert f'href="#anomaly-{ids["A"]}"' not in related
    # the latest month first; the month before too (evaluated as of its last day: restatements after it ended)
    rows = [b for _, b in tables["budgets-table"]]
    assert [Decimal(b["actual"][0]) for b in rows] == [a for (a,) in con.execute("SELECT actual FROM Budgets ORDER BY month DESC").fetchall()]
    assert len(rows) == 2


def test_a_lasting_change_is_one_anomaly_day_after_day(tmp_path):
    """The cost of S triples for good from May 10: inspected every day to May 21 with 7 test days, it is one anomaly
    (opened once, updated while it grows, resolved once the baseline has learnt the new level), never reopened under
    other ids when its first day leaves the test days. May 17's test days are May 11-17: the training days end with one
    day of the new level (the step needs 2), so every test day is still high; on May 18 two days of it (May 10, 11) are
    in the training days, the fitted step makes the test days normal and the open anomaly is resolved."""
    rows = []
    for i in range(70):
        d = date(2024, 3, 15) + timedelta(days=i)
        cost = (10 if d.weekday() < 5 else 4) * (3 if d >= date(2024, 5, 10) else 1)
        rows.append(daily("S", d, cost))
    store = lake(tmp_path, rows)
    r = rules(window_days=60, test_days=7)
    ids, kinds = set(), []
    for i in range(12):  # to May 21
        result = inspection.inspect(store, date(2024, 5, 10) + timedelta(days=i), r)
        ids |= {a.id for a in result.anomalies if a.start <= date(2024, 5, 17)}
        kinds += [k.rsplit(".", 1)[1] for k, s in result.events]
    assert len(ids) == 1  # every interval within the change is the anomaly of May 10
    assert kinds == ["opened"] + ["updated"] * 7 + ["resolved"]  # May 18: the baseline has learnt the new level


def test_tag_monitors_read_a_key_however_each_cloud_spells_it(tmp_path):
    """A tag:team monitor compares keys as allocation does: Azure's Team, AWS's user:team and team are one key (blue,
    red and green: 300 each over 30 days); a Tags value that is not a JSON object is untagged (150), and the inspection
    runs (it used to stop at the first malformed value)."""
    from hub import catalog

    folder = tmp_path / "ingestion/Costs/2024/05/test"
    folder.mkdir(parents=True)
    tags = [('{"Team": "blue"}', 10), ('{"user:team": "red"}', 10), ('{"team": "green"}', 10), ("team=broken;", 5)]
    values = ", ".join(f"('{t}', {c}, '{LAST - timedelta(days=i)} 06:00:00+00')" for i in range(30) for t, c in tags)
    duckdb.sql(f"""COPY (SELECT 'A' AS SubAccountId, 'S1' AS ServiceName, Tags, CAST(c AS DECIMAL(38,18)) AS EffectiveCost,
        'USD' AS BillingCurrency, CAST(d AS TIMESTAMPTZ) AS ChargePeriodStart, 'Usage-Based' AS ChargeFrequency,
        CAST(NULL AS VARCHAR) AS ChargeClass FROM (VALUES {values}) v(Tags, c, d)) TO '{folder}/part.parquet' (FORMAT parquet)""")
    store = Store(str(tmp_path))
    r = rules(window_days=30, monitors=[{"id": "teams", "dimension": "tag:team"}])
    inspection.inspect(store, LAST, r, save=False)
    con = catalog.connect(store)
    key_sql = inspection._key_sql(r.monitors[0], inspection.tag_keys(con, r.monitors[0], "true"))
    got = con.execute(f"SELECT {key_sql} AS k, sum(EffectiveCost) FROM Costs GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("(untagged)", Decimal(150)), ("blue", Decimal(300)), ("green", Decimal(300)), ("red", Decimal(300))]


def test_an_inspection_after_the_lakes_last_cost_says_which_date_to_inspect(store, tmp_path):
    """A lake whose costs end before the window (a demo of May 2024 inspected today) found 0 series and said nothing
    more: the last day with costs is given, with the command to inspect it."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({"window_days": 35, "test_days": 3}))
    out = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-09-30"])
    assert out.exit_code == 0, out.output
    assert "0 series inspected up to 2024-09-30" in out.output
    assert f"the lake's costs end on 2024-05-31; hub inspect {tmp_path} --date 2024-05-31" in " ".join(out.output.split())
    data = json.loads(CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-09-30", "--json"]).output)
    assert (data["series"], data["lastCostDay"]) == (0, "2024-05-31")
    # review of stop 35: that inspection recorded 2024-09-30 as the last day inspected, so the command it suggests
    # (and every later day up to 2024-09-30, hub watch's daily one included) recorded, published and alerted nothing:
    # a window without costs records nothing, and a day after today is refused
    earlier = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31", "--json"])
    inspected = json.loads(earlier.stdout)
    assert inspected["series"] > 0 and inspected["lastCostDay"] is None
    assert "note:" not in earlier.stderr
    assert json.loads((tmp_path / "config/inspection/state.json").read_text())["lastDay"] == "2024-05-31"
    future = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2999-01-01"])
    assert future.exit_code == 2 and "--date 2999-01-01 is after today (UTC)" in future.output
    assert json.loads((tmp_path / "config/inspection/state.json").read_text())["lastDay"] == "2024-05-31"


def test_the_state_file_writes_amounts_as_plain_decimal_text(store, tmp_path):
    """Defect: the state file (and the events made from it) wrote a zero amount as "0E-18" (str of a Decimal)."""
    inspection.inspect(store, LAST, rules())
    text = (tmp_path / "config/inspection/state.json").read_text()
    assert "E-" not in text and "E+" not in text
    a = next(v for v in json.loads(text)["anomalies"].values() if v["key"] == "A")
    assert (a["actual"], a["expected"], a["impact"]) == ("30", "10", "20")
    assert {k: a["causes"][-1][k] for k in ("value", "actual", "expected", "delta")} == {
        "value": "r-new", "actual": "20", "expected": "0", "delta": "20"}


def test_budgets_and_series_read_rows_filed_in_a_neighbouring_month_folder(tmp_path):
    """Defect: the series and budgets read only the window's month folders, so a row charged on May 1 (UTC) filed under
    the April bill (Google's Pacific-time invoice month, late usage) was left out, and `hub budgets` disagreed with
    `hub costs` for the same days."""
    store = lake(tmp_path, [daily("B", date(2024, 5, 1) + timedelta(days=i), 10) for i in range(10)])
    april = tmp_path / "ingestion/Costs/2024/04/test"
    april.mkdir(parents=True)
    duckdb.sql(f"""COPY (SELECT 'B' AS SubAccountId, 'S1' AS ServiceName, 'eu-west-1' AS RegionId, 'sku-S1' AS SkuId,
        'r1' AS ResourceId, CAST('7' AS DECIMAL(38,18)) AS EffectiveCost, 'USD' AS BillingCurrency,
        TIMESTAMPTZ '2024-05-01 03:00:00+00' AS ChargePeriodStart, 'Usage-Based' AS ChargeFrequency,
        CAST(NULL AS VARCHAR) AS ChargeClass) TO '{april}/part.parquet' (FORMAT parquet)""")
    r = rules(budgets=[{"id": "b", "amount": "1000", "filter": {"SubAccountId": "B"}}])
    (b,) = inspection.inspect(store, date(2024, 5, 10), r).budgets
    assert b["actual"] == "107"  # May 1-10: 10 x 10, plus the 7 of May 1 in the April folder (107 by the cost API too)


def test_a_budget_of_ten_billion_or_more_is_written_not_a_crash(store):
    """An IDR or KRW budget of 20,000,000,000: Python's default 28-digit context could not give it 18 decimals
    (decimal.InvalidOperation on every run, after the state and the alerts). The Budgets dataset holds it exactly."""
    big = "20000000000"
    result = inspection.inspect(store, date(2024, 5, 10), rules(budgets=[{"id": "big", "amount": big, "filter": {"SubAccountId": "B"}}]))
    assert result.budgets[0]["actual"] == "588"  # B's May 1-10, as in the budget test above
    (amount,) = duckdb.sql(f"SELECT amount FROM read_parquet('{store.root}/ingestion/Budgets/**/*.parquet')").fetchall()[0]
    assert amount == D(big)


def test_the_forecast_clips_one_spike_of_a_flat_series_even_with_a_day_a_cent_off():
    """Review of stop 32: 10 a day (a fixed-price VM), a 1,000 spike three days ago and 10.01 the day after it. The
    spike is the only day off by more than 1 % of the typical day (the robust sigma is 0), so it is clipped: the
    weekdays' medians are 10 and the level 0, so 28 days left are 280 (it was 1,000 / 7 x 28 more: a change of level)."""
    from hub.inspection.forecast import forecast

    weekdays = np.arange(28) % 7
    values = np.full((1, 28), 10.0)
    values[0, -3], values[0, -2] = 1000.0, 10.01
    fc = forecast(values, weekdays, np.arange(28) % 7)
    assert fc.remaining[0] == pytest.approx(280.0)


def test_alerts_silence_per_anomaly_and_a_resolution_goes_where_the_anomaly_fired():
    """Review of stop 32: (1) a drop opened the run after a spike of the same series (within silence_hours) is another
    anomaly: it is sent (the silence was keyed on the series); (2) an anomaly alerted as critical and resolved as major
    (it shrinks while the baseline learns its level) sends its resolution to the critical-only policy that got it."""
    from hub.inspection import alerts

    receiver = _Receiver()
    try:
        policy = R.Rules.model_validate({"alerts": [{"id": "oncall", "min_severity": "critical",
                                                     "targets": [{"url": receiver.url, "retries": 0}]}]})
        spike = {"id": "a" * 16, "monitor": "sub-accounts", "key": "A", "currency": "USD", "direction": "up",
                 "severity": "critical", "impact": "500", "start": "2024-05-30", "end": "2024-05-30"}
        drop = {**spike, "id": "b" * 16, "direction": "down", "impact": "-800", "start": "2024-05-31", "end": "2024-05-31"}
        t0 = datetime(2024, 6, 1, 6, 0, tzinfo=timezone.utc)
        state: dict = {"alerts": {}}
        opened = "finops-hub.anomaly.opened"
        assert alerts.notify(policy, state, [(opened, "sub-accounts/A", spike, "a:opened")], now=t0).notified == 1
        second = alerts.notify(policy, state, [(opened, "sub-accounts/A", drop, "b:opened")], now=t0 + timedelta(hours=23))
        assert (second.notified, second.silenced) == (1, 0)
        resolved = {**spike, "severity": "major", "end": "2024-06-02"}
        third = alerts.notify(policy, state, [("finops-hub.anomaly.resolved", "sub-accounts/A", resolved, "a:resolved")],
                              now=t0 + timedelta(days=2))
        assert third.notified == 1
        sent = [(a["status"], a["fingerprint"]) for body in receiver.bodies for a in body["alerts"]]
        assert sent == [("firing", "a" * 16), ("firing", "b" * 16), ("resolved", "a" * 16)]
        # a major anomaly never alerted to this policy does not send its resolution there
        quiet = {**drop, "id": "c" * 16, "severity": "major"}
        assert alerts.notify(policy, state, [("finops-hub.anomaly.resolved", "sub-accounts/A", quiet, "c:resolved")],
                             now=t0 + timedelta(days=3)).notified == 0
    finally:
        receiver.close()


def test_an_anomaly_back_after_its_resolution_was_sent_is_never_silenced():
    """Review of stop 41: opened (firing sent), resolved by a restated bill (resolution sent), opened again by another
    restatement within silence_hours: silenced, so the receiver's last word stayed "resolved" while the anomaly was
    open again."""
    from hub.inspection import alerts

    receiver = _Receiver()
    try:
        policy = R.Rules.model_validate({"alerts": [{"id": "oncall", "min_severity": "minor", "silence_hours": 72,
                                                     "targets": [{"url": receiver.url, "retries": 0}]}]})
        a = {"id": "a" * 16, "monitor": "m", "key": "A", "currency": "USD", "direction": "up", "severity": "critical",
             "impact": "50", "start": "2024-05-10", "end": "2024-05-10"}
        t0 = datetime(2024, 5, 11, 6, 0, tzinfo=timezone.utc)
        state: dict = {"alerts": {}}
        for i, (kind, hours) in enumerate((("opened", 0), ("resolved", 12), ("opened", 24), ("updated", 48))):
            alerts.notify(policy, state, [(f"finops-hub.anomaly.{kind}", "m/A", a, f"a:{kind}:{i}")], now=t0 + timedelta(hours=hours))
        # the update a day after the reopening is silenced (72 h), as any update within the silence
        assert [x["status"] for body in receiver.bodies for x in body["alerts"]] == ["firing", "resolved", "firing"]
    finally:
        receiver.close()


def test_a_day_without_cost_in_a_short_history_is_no_weekday_effect():
    """Review of stop 32: 15 days of 10 a day but one day without cost among the 8 training days (defaults: 15 days of
    history, 7 tested). The series is not steady, so the additive model applies, whose weekday median came from one or
    two days: that weekday expected 0 and its next ordinary 10 was a critical "up" anomaly. A weekday seen fewer than 3
    times takes the series' median (10): the tested Friday expects about 10 (the trend of what is left moves it a
    little), nothing is flagged."""
    weekdays = np.arange(15) % 7
    values = np.full((1, 15), 10.0)
    values[0, 4] = 0.0  # a Friday in training; the Friday tested (day 11) costs 10 as usual
    found = detect.detect(values, weekdays, 7)
    assert found.expected[0, 11] > 7  # it was 0
    assert found.flag[0, 8:].tolist() == [0] * 7
    # with 4 training weeks, a weekday's own median holds: a weekly pattern of 10 and 4 is still learned
    weekly = np.where(np.arange(35) % 7 >= 5, 4.0, 10.0)[None, :]
    assert detect.fit(weekly[:, :28], np.arange(28) % 7)[0][0].tolist() == pytest.approx([10, 10, 10, 10, 10, 4, 4])


def test_a_budget_of_purchases_only_forecasts_its_actual(tmp_path):
    """Review of stop 32: a budget whose rows are only purchases or fees had no usage to project, so no forecast ever
    (its forecasted thresholds could never fire). Its month ends at its actual: 300 of a 250 budget is 120 %."""
    store = lake(tmp_path, [daily("P", date(2024, 5, 2), 300, freq="One-Time"), *history("A", 40, 10, 4)])
    r = rules(budgets=[{"id": "p", "amount": "250", "filter": {"SubAccountId": "P"}, "actual": [50], "forecasted": [100]}])
    (b,) = inspection.inspect(store, date(2024, 5, 10), r).budgets
    assert (b["actual"], b["forecast"], b["lower95"], b["upper95"]) == ("300", "300", "300", "300")
    assert b["crossed"] == [("actual", 50.0), ("forecasted", 100.0)]


def test_root_cause_shares_are_of_the_moves_in_the_anomalys_direction(tmp_path):
    """Review of stop 32: Steady 100 a day and Growing 20 + 2 a day over 60 days, then Steady drops to 70 on May 31.
    Against the causes' baseline (the 4-week same-weekday median) Growing moved +35 (it was expected by the trend),
    so all moves summed +5 and the drop's only cause, Steady -30, showed a share of -600 %. Shares are of the moves
    in the anomaly's direction: Steady -30 is 100 % of the drop."""
    rows = []
    for i in range(60):
        d = LAST - timedelta(days=59 - i)
        rows.append(daily("A", d, 70 if d == LAST else 100, service="Steady", resource="steady-1"))
        rows.append(daily("A", d, 20 + 2 * i, service="Growing", resource="growing-1"))
    found = inspection.inspect(lake(tmp_path, rows), LAST, rules(window_days=60, test_days=3), save=False).anomalies
    (a,) = [a for a in found if a.end == LAST]
    assert a.direction == "down"
    product = [(c.value, c.delta, c.share) for c in a.causes if c.dimension == "product"]
    assert product == [("Steady", D(-30), 1.0)]


def test_budgets_are_recorded_when_no_monitor_matches(store, tmp_path):
    """Review of this stop's change: a window without series recorded nothing, also when its monitors matched no row
    (a monitor of another provider's costs) while a budget had costs in it: no state, no Budgets row, no threshold
    event. Only a window with no costs at all records nothing."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({
        "window_days": 35, "test_days": 3, "monitors": [{"id": "gcp", "filter": {"ServiceName": "nothing"}}],
        "budgets": [{"id": "all", "amount": "100", "currency": "USD"}]}))
    out = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2024-05-31", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["series"] == 0 and data["lastCostDay"] == "2024-05-31"
    state = json.loads((tmp_path / "config/inspection/state.json").read_text())
    assert state["lastDay"] == "2024-05-31", state
    assert state["budgets"], state  # the budget's thresholds crossed are recorded (the month's costs exceed 100)


def test_a_window_before_the_lakes_costs_records_nothing(store, tmp_path):
    """Review of this stop's change: whether a window had costs was told from the lake's last cost day only, so a
    mistyped year before the data (2023-05-31 for 2024-05-31) was recorded as the last day inspected (and a Budgets
    file written for a month without costs)."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config/inspection.json").write_text(json.dumps({
        "window_days": 35, "test_days": 3, "budgets": [{"id": "all", "amount": "100", "currency": "USD"}]}))
    out = CliRunner().invoke(app, ["inspect", str(tmp_path), "--date", "2023-05-31"])
    assert out.exit_code == 0, out.output
    state = tmp_path / "config/inspection/state.json"
    assert not state.exists() or "lastDay" not in json.loads(state.read_text())
    assert not list(tmp_path.glob("ingestion/Budgets/2023/**/*.parquet"))
