"""``hub pull``: the providers' real SDKs against local servers speaking their APIs (tests/apiservers.py), the pulled
days landing in the lake, idempotent re-pulls, coded failures, the schedule, leases, events and secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from apiservers import AlibabaBillServer, HuaweiBillServer, TencentBillServer
from typer.testing import CliRunner

from hub import pull, runs
from hub.cli import app
from hub.errors import UsageError
from hub.settings import PullProvider, load_settings
from hub.store import Store
from pipelines import pull as pulling

AK, SK = "AKIDhubtest0001", "pull-secret-value-9f8e7d"
ENV = {"alibaba": ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
       "huawei": ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"),
       "tencent": ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY")}
MAY1, MAY2 = date(2024, 5, 1), date(2024, 5, 2)


def ali(i: int, day: str, product: str, gross: str, discount: str, voucher: str = "0") -> dict:
    pretax = str(Decimal(gross) - Decimal(discount))
    return {"BillingDate": day, "BillAccountID": "1234567890123456", "BillAccountName": "payer", "OwnerID": "5678",
            "ProductCode": product, "ProductName": product.upper(), "SubscriptionType": "PayAsYouGo", "Item": "PayAsYouGoBill",
            "InstanceID": f"{product}-{i}", "Region": "China (Hangzhou)", "Currency": "CNY", "Usage": "2", "UsageUnit": "Hour",
            "PretaxGrossAmount": gross, "InvoiceDiscount": discount, "DeductedByCoupons": "0", "PretaxAmount": pretax,
            "DeductedByCashCoupons": voucher, "DeductedByPrepaidCard": "0",
            "PaymentAmount": str(Decimal(pretax) - Decimal(voucher)), "OutstandingAmount": "0", "AdjustAmount": "0",
            "CashAmount": str(Decimal(pretax) - Decimal(voucher)), "Tag": "key:team value:web"}


#: May 1: 5 lines (PretaxAmount 1.0 + 2.0 + 0.123456789 + 3.5 + 0.25 = 6.873456789); May 2: 2 lines (4.4 + 0.6 = 5.0)
ALI = {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.10", "0.10"), ali(2, "2024-05-01", "ecs", "2.20", "0.20", "1.00"),
                      ali(3, "2024-05-01", "oss", "0.133456789", "0.01"), ali(4, "2024-05-01", "ecs", "3.50", "0"),
                      ali(5, "2024-05-01", "oss", "0.25", "0")],
       "2024-05-02": [ali(6, "2024-05-02", "ecs", "4.40", "0"), ali(7, "2024-05-02", "rds", "0.60", "0")]}


def hw(i: int, day: str, service: str, official: str, discount: str) -> dict:
    consume = str(Decimal(official) - Decimal(discount))
    return {"cycle": day[:7], "bill_date": day, "bill_type": 5, "customer_id": "c1", "payer_account_id": "0a1b2c3d4e",
            "region": "ap-southeast-1", "cloud_service_type": service, "cloud_service_type_name": service.split(".")[-1],
            "resource_Type_code": "hws.resource.type.vm", "resource_type_name": "ECS", "res_instance_id": f"vm-{i}",
            "sku_code": "s6.large", "charge_mode": 3, "consume_amount": consume, "cash_amount": consume,
            "credit_amount": "0", "coupon_amount": "0", "official_amount": official, "discount_amount": discount,
            "az_code_infos": [{"az_code": "ap-southeast-1a"}]}


#: May 1: consume_amount 0.9 + 1.23456789 + 2 = 4.13456789
HW = {"2024-05-01": [hw(1, "2024-05-01", "hws.service.type.ec2", "1.00", "0.10"),
                     hw(2, "2024-05-01", "hws.service.type.ec2", "1.23456789", "0"),
                     hw(3, "2024-05-01", "hws.service.type.obs", "2.50", "0.50")]}


def tc(i: int, day: str, components: list[tuple[str, str]]) -> dict:
    return {"BillMonth": day[:7], "PayerUin": "100001", "OwnerUin": "100002", "OperateUin": "100002",
            "BusinessCodeName": "Cloud Virtual Machine", "BusinessCode": "p_cvm", "ProductCodeName": "CVM Standard S5",
            "PayModeName": "Pay-as-you-go", "PayMode": "postPay", "ProjectName": "Default", "RegionId": "1",
            "RegionName": "South China (Guangzhou)", "ZoneName": "Guangzhou Zone 3", "ResourceId": f"ins-{i}",
            "ResourceName": f"web-{i}", "ActionTypeName": "Hourly settlement", "ActionType": "postpay_deduct_h",
            "FeeBeginTime": f"{day} 10:00:00", "FeeEndTime": f"{day} 10:59:59",
            "Tags": [{"TagKey": "env", "TagValue": "prod"}],
            "ComponentSet": [{"ComponentCodeName": name, "ItemCodeName": f"{name} usage", "ItemCode": f"sv_{i}_{name}",
                              "SinglePrice": "0.1", "ContractPrice": "0.08", "PriceUnit": "USD/core/hour",
                              "UsedAmount": "1", "UsedAmountUnit": "core", "TimeSpan": "1", "Cost": real, "Discount": "1",
                              "RealCost": real, "VoucherPayAmount": "0", "CashPayAmount": real, "IncentivePayAmount": "0",
                              "TransferPayAmount": "0", "TaxAmount": "0", "Currency": "USD"} for name, real in components]}


#: two details of two components on May 1 (RealCost 0.08 + 0.02 + 0.5 + 0.00000001 = 0.60000001), one on May 2 (1.25)
TC = {"2024-05-01": [tc(1, "2024-05-01", [("CPU", "0.08"), ("Memory", "0.02")]),
                     tc(2, "2024-05-01", [("CPU", "0.5"), ("Disk", "0.00000001")])],
      "2024-05-02": [tc(3, "2024-05-02", [("CPU", "1.25")])]}

SERVERS = {"alibaba": (AlibabaBillServer, ALI), "huawei": (HuaweiBillServer, HW), "tencent": (TencentBillServer, TC)}


def make_hub(root: Path, provider: str, server, monkeypatch, **cfg) -> Store:
    """A hub whose ``pull.<provider>`` points at ``server``, with the provider's credentials in the environment."""
    key_var, secret_var = ENV[provider]
    monkeypatch.setenv(key_var, AK)
    monkeypatch.setenv(secret_var, SK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_DOMAIN_ID", "domain-0001")
    settings = {"pull": {provider: {"endpoint": server.url, "page_size": 2, "retries": 2, "backoff_seconds": 0.01, **cfg}},
                "retention": {"ingestion": {"months": 0}}}  # the pulled days are of 2024
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "settings.json").write_text(json.dumps(settings))
    return Store(str(root))


@pytest.fixture
def server_for():
    started = []

    def start(provider: str, data: dict | None = None):
        cls, default = SERVERS[provider]
        server = cls(AK, SK, json.loads(json.dumps(default if data is None else data)))
        started.append(server)
        return server

    yield start
    for s in started:
        s.close()


def lake(root: Path, sql: str) -> list[tuple]:
    files = list(root.glob("ingestion/Costs/**/*.parquet"))
    if not files:
        return []
    rel = f"read_parquet({[str(f) for f in files]!r}, union_by_name = true)"
    return duckdb.sql(sql.replace("LAKE", rel)).fetchall()


@pytest.mark.parametrize("provider, billed", [("alibaba", "6.873456789"), ("huawei", "4.13456789"), ("tencent", "0.60000001")])
def test_a_pulled_day_lands_in_the_lake_with_the_apis_exact_amounts(tmp_path, monkeypatch, server_for, provider, billed):
    server = server_for(provider)
    store = make_hub(tmp_path, provider, server, monkeypatch)
    done = pulling.run(store, provider, [MAY1])
    assert done.ok, [r.error for p in done.pulls for r in p.records] + [r.error for r in done.ingested.all]
    (rec,) = done.pulls[0].records
    assert rec.state == "committed" and rec.pull["pages"] >= 2  # page size 2: paged
    assert len(done.ingested.all) == 1 and done.ingested.all[0].state == "committed"
    day_rows = lake(tmp_path, "SELECT sum(BilledCost), count(*), min(x_SourceType), min(ChargePeriodStart) FROM LAKE "
                              "WHERE ChargePeriodStart < TIMESTAMPTZ '2024-05-01 16:00:00+00'")
    total, count, kind, start = day_rows[0]
    assert total == Decimal(billed)
    assert count == {"alibaba": 5, "huawei": 3, "tencent": 4}[provider]  # Tencent: one row per component
    assert kind.endswith("(API)")
    assert start >= datetime(2024, 4, 30, 16, tzinfo=timezone.utc)  # the provider's May 1 (UTC+8) in UTC


def test_alibaba_requests_are_signed_paged_and_ask_for_the_day(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    pulling.run(store, "alibaba", [MAY1], then_ingest=False)
    assert len(server.requests) == 3  # 5 lines, 2 a page
    first, second = server.requests[0], server.requests[1]
    assert first.headers["x-acs-action"] == "DescribeInstanceBill" and first.headers["x-acs-version"] == "2017-12-14"
    assert first.headers["authorization"].startswith(f"ACS3-HMAC-SHA256 Credential={AK},")
    assert {k: first.query[k] for k in ("BillingCycle", "BillingDate", "Granularity", "MaxResults")} == {
        "BillingCycle": "2024-05", "BillingDate": "2024-05-01", "Granularity": "DAILY", "MaxResults": "2"}
    assert first.query["IsBillingItem"].lower() == "true" and "NextToken" not in first.query
    assert second.query["NextToken"]
    text = (tmp_path / "exports/alibaba/api/2024-05/2024-05-01/alibaba-bill-2024-05-01.csv.gz").read_bytes()
    import gzip

    assert b",0.133456789," in gzip.decompress(text)  # the API's number, never through a float


def test_huawei_and_tencent_requests(tmp_path, monkeypatch, server_for):
    hws = server_for("huawei")
    store = make_hub(tmp_path / "hw", "huawei", hws, monkeypatch)
    pulling.run(store, "huawei", [MAY1], then_ingest=False)
    body = hws.requests[0].body
    assert hws.requests[0].path == "/v2/bills/customer-bills/res-records/query"
    assert {k: body[k] for k in ("cycle", "statistic_type", "query_type", "bill_cycle_begin", "bill_cycle_end", "limit")} == {
        "cycle": "2024-05", "statistic_type": 2, "query_type": "DAILY", "bill_cycle_begin": "2024-05-01",
        "bill_cycle_end": "2024-05-01", "limit": 2}
    assert [r.body["offset"] for r in hws.requests] == [0, 2]
    assert hws.requests[0].headers["authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK},")
    assert hws.requests[0].headers["x-domain-id"] == "domain-0001"

    tcs = server_for("tencent")
    store = make_hub(tmp_path / "tc", "tencent", tcs, monkeypatch)
    pulling.run(store, "tencent", [MAY1], then_ingest=False)
    bodies = [r.body for r in tcs.requests]
    assert tcs.requests[0].headers["x-tc-action"] == "DescribeBillDetail"
    assert tcs.requests[0].headers["authorization"].startswith(f"TC3-HMAC-SHA256 Credential={AK}/")
    assert bodies[0]["Month"] == "2024-05" and bodies[0]["Limit"] == 2 and bodies[0]["Offset"] == 0
    assert bodies[1]["Offset"] == 2 and bodies[1]["Context"]  # the cursor of the first answer is passed on
    assert (tmp_path / "tc/exports/tencent/api/2024-05/month/manifest.json").exists()  # the API answers months


def test_re_pulling_replaces_a_day_and_keeps_the_others(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    assert pulling.run(store, "alibaba", [MAY1, MAY2]).ok
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == [(Decimal("11.873456789"), 7)]
    assert pulling.run(store, "alibaba", [MAY1]).ok  # a replay: same rows
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == [(Decimal("11.873456789"), 7)]
    server.data["2024-05-01"] = [ali(1, "2024-05-01", "ecs", "10.00", "0")]  # the provider restated May 1
    assert pulling.run(store, "alibaba", [MAY1]).ok
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == [(Decimal("15.000000000"), 3)]
    assert pulling.run(store, "alibaba", [], then_ingest=True).ok


def test_an_unchanged_day_pulled_again_is_the_same_file(tmp_path, monkeypatch, server_for):
    """Review: the pulled CSV's row order changed from pull to pull (DuckDB's scan order over the page files): an
    unchanged bill got a new sha256, so a new delivery version and a new pulled event id each time."""
    lines = [ali(i, "2024-05-01", ["ecs", "oss", "rds"][i % 3], f"{i}.25", "0") for i in range(400)]
    server = server_for("alibaba", {"2024-05-01": lines})
    store = make_hub(tmp_path, "alibaba", server, monkeypatch, page_size=7)
    data = tmp_path / "exports/alibaba/api/2024-05/2024-05-01/alibaba-bill-2024-05-01.csv.gz"
    seen = set()
    for _ in range(4):
        pulling.run(store, "alibaba", [MAY1], then_ingest=False)
        seen.add(data.read_bytes())
    assert len(seen) == 1
    import csv
    import gzip
    import io

    rows = list(csv.DictReader(io.StringIO(gzip.decompress(seen.pop()).decode())))
    assert [r["InstanceID"] for r in rows] == [line["InstanceID"] for line in lines]  # in the API's order


def test_a_month_pulls_every_day_and_days_without_data_are_recorded(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch, page_size=300)
    done = pulling.run(store, "alibaba", pulling.days_asked("alibaba", None, "2024-05"))
    records = done.pulls[0].records
    assert len(records) == 31 and done.ok
    assert sum(r.state == "committed" for r in records) == 2
    assert {r.error.code for r in records if r.error} == {"PullNoData"}
    assert not (tmp_path / "exports/alibaba/api/2024-05/2024-05-03").exists()  # nothing written for an empty day
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("11.873456789"),)]


@pytest.mark.parametrize("provider", ["alibaba", "huawei", "tencent"])
def test_failures_are_coded_and_write_nothing(tmp_path, monkeypatch, server_for, provider):
    server = server_for(provider)
    store = make_hub(tmp_path, provider, server, monkeypatch)

    def attempt() -> str | None:
        (rec,) = pull.pull(store, provider, [MAY1], load_settings(store)).records
        return rec.error.code if rec.error else None

    server.throttle(2)  # retried (2 retries): succeeds
    assert attempt() is None
    server.throttle(3)
    assert attempt() == "PullThrottled"
    server.fail(3, 503)
    assert attempt() == "PullServerError"
    server.malformed(1, "text")
    assert attempt() == "PullMalformedResponse"
    server.malformed(1, "json")
    assert attempt() == "PullMalformedResponse"
    server.access_key_secret = "another-secret"  # the server no longer accepts our signature
    assert attempt() == "PullAuthFailed"
    record = json.loads((tmp_path / "config/runs" / f"{runs.record_path(pull.record_key(provider, pull.periods(provider, [MAY1])[0])).split('/')[-1]}").read_text())
    assert record["state"] == "quarantined" and SK not in json.dumps(record)
    # the first, successful pull's delivery is still the one on disk: the failures wrote nothing
    manifest = tmp_path / pull.folder(provider, pull.periods(provider, [MAY1])[0]) / "manifest.json"
    assert json.loads(manifest.read_text())["pull"]["records"] > 0


def test_alibaba_errors_answered_with_200_and_a_repeating_page_token(tmp_path, monkeypatch, server_for):
    """Review of stop 37: ``{"Success": false, "Code": "Throttling.User"}`` without Data was PullMalformedResponse (not
    retried, the provider's code lost); a NextToken returned again paged until the time budget, then every hour."""
    from apiservers import Reply, dumps

    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)

    def attempt() -> runs.RunError | None:
        (rec,) = pull.pull(store, "alibaba", [MAY1], load_settings(store)).records
        return rec.error

    busy = Reply(200, dumps({"RequestId": "R", "Success": False, "Code": "Throttling.User", "Message": "slow down"}))
    server._queue(2, lambda rec: busy)  # retried (2 retries): succeeds
    assert attempt() is None
    server._queue(3, lambda rec: Reply(200, dumps({"RequestId": "R", "Success": False, "Code": "InternalError",
                                                   "Message": "try later"})))
    error = attempt()
    assert (error.code, "InternalError" in error.message) == ("PullServerError", True)
    page = {"Code": "Success", "Success": True, "RequestId": "R", "Data": {
        "BillingCycle": "2024-05", "AccountID": "1", "AccountName": "a", "MaxResults": 2, "NextToken": "SAME",
        "Items": [ali(1, "2024-05-01", "ecs", "1.00", "0")]}}
    server._queue(5, lambda rec: Reply(200, dumps(page, server.NUMBERS)))
    error = attempt()
    # (the page it brings again is refused first: its lines repeat page 1's)
    assert (error.code, "repeats an earlier page" in error.message) == ("PullMalformedResponse", True)


def test_time_budget(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch, retries=20, backoff_seconds=0.2, time_budget_seconds=0.5)
    server.throttle(50)
    result = pull.pull(store, "alibaba", [MAY1, MAY2], load_settings(store))
    assert [r.error.code for r in result.records] == ["PullTimeBudget"]  # May 2 waits for the next pull
    assert not (tmp_path / "exports").exists()


def test_missing_credentials_and_secret_file(tmp_path, monkeypatch, server_for):
    server = server_for("tencent")
    store = make_hub(tmp_path, "tencent", server, monkeypatch)
    monkeypatch.delenv("TENCENTCLOUD_SECRET_KEY")
    with pytest.raises(UsageError, match="secret_key is missing: set TENCENTCLOUD_SECRET_KEY"):
        pull.pull(store, "tencent", [MAY1], load_settings(store))
    secrets = tmp_path / "config" / "secrets.json"
    secrets.write_text(json.dumps({"tencent": {"secret_key": SK}}))
    secrets.chmod(0o644)
    with pytest.raises(UsageError, match="readable by its owner only"):
        pull.pull(store, "tencent", [MAY1], load_settings(store))
    secrets.chmod(0o600)
    assert pull.pull(store, "tencent", [MAY1], load_settings(store)).ok  # the key from the file, the id from the env


def test_secrets_never_leave_the_process(tmp_path, monkeypatch, server_for):
    """Recognisable fake secrets, a failing and a working pull with events and a watcher: no output holds them."""
    server = server_for("alibaba")
    events_file = tmp_path / "events.jsonl"
    store = make_hub(tmp_path / "hub", "alibaba", server, monkeypatch, enabled=True, pull_hour=0, catchup_days=1)
    settings = json.loads((tmp_path / "hub/config/settings.json").read_text())
    settings["events"] = {"sinks": [{"type": "file", "path": str(events_file)}]}
    (tmp_path / "hub/config/settings.json").write_text(json.dumps(settings))
    server.access_key_secret = "not-ours"
    runner = CliRunner()
    failed = runner.invoke(app, ["pull", str(tmp_path / "hub"), "--provider", "alibaba", "--date", "2024-05-01"])
    assert failed.exit_code == 1 and "PullAuthFailed" in failed.output
    server.access_key_secret = SK
    ok = runner.invoke(app, ["pull", str(tmp_path / "hub"), "--provider", "alibaba", "--date", "2024-05-01"])
    assert ok.exit_code == 0, ok.output
    from pipelines.watch import watch

    lines: list[dict] = []
    watch(store, stop=threading.Event(), log=lines.append, cycles=1)
    report = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(tmp_path / "hub"), "--out", str(report)]).exit_code == 0
    outputs = [failed.output, ok.output, json.dumps(lines), events_file.read_text(), report.read_text()]
    outputs += [p.read_text(errors="replace") for p in (tmp_path / "hub").rglob("*") if p.is_file() and p.suffix != ".parquet"]
    for text in outputs:
        assert SK not in text and AK not in text


def test_events_of_a_pull_are_vances_shape_with_exact_sums_and_stable_ids(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    events_file = tmp_path / "events.jsonl"
    store = make_hub(tmp_path / "hub", "alibaba", server, monkeypatch)
    settings = json.loads((tmp_path / "hub/config/settings.json").read_text())
    settings["events"] = {"sinks": [{"type": "file", "path": str(events_file)}]}
    (tmp_path / "hub/config/settings.json").write_text(json.dumps(settings))
    pulling.run(store, "alibaba", [MAY1])
    first = [json.loads(line) for line in events_file.read_text().splitlines()]
    types = [e["type"] for e in first]
    assert types.count("finops-hub.delivery.pulled") == 1 and types.count("finops-hub.delivery.ingested") == 1
    daily = {e["data"]["ProductCode"]: e for e in first if e["type"] == "alicloud.account_billing.daily"}
    assert set(daily) == {"ecs", "oss"}
    ecs = daily["ecs"]
    assert ecs["source"] == "cloud.alicloud.billing" and ecs["subject"] == "2024-05-01/ecs/PayAsYouGo/CNY/5678/1234567890123456"
    # ecs: PretaxGrossAmount 1.10 + 2.20 + 3.50 = 6.8; PretaxAmount 1.0 + 2.0 + 3.5 = 6.5; vouchers 1.00; paid 5.5
    assert {k: ecs["data"][k] for k in ("BillingDate", "PretaxGrossAmount", "PretaxAmount", "DeductedByCashCoupons",
                                        "PaymentAmount", "Currency", "OwnerId", "BillAccountID", "Lines")} == {
        "BillingDate": "2024-05-01", "PretaxGrossAmount": "6.8", "PretaxAmount": "6.5", "DeductedByCashCoupons": "1",
        "PaymentAmount": "5.5", "Currency": "CNY", "OwnerId": "5678", "BillAccountID": "1234567890123456", "Lines": 3}
    assert daily["oss"]["data"]["PretaxAmount"] == "0.373456789"
    pulling.run(store, "alibaba", [MAY1])  # a replayed day: the same ids again (consumers de-duplicate)
    again = [json.loads(line) for line in events_file.read_text().splitlines()][len(first):]
    assert {e["id"] for e in again if e["type"].endswith("daily")} == {e["id"] for e in first if e["type"].endswith("daily")}


def test_the_schedule(tmp_path, monkeypatch):
    """Hand-computed due days: pull hour 2 (UTC+8), 3 catch-up days, 2 refresh days, the month's close (Alibaba: 3rd,
    12:00), failed days after an hour."""
    store = Store(str(tmp_path))
    cfg = PullProvider(pull_hour=2, catchup_days=3, refresh_days=1)

    def utc8(y: int, m: int, d: int, h: int) -> datetime:
        return datetime(y, m, d, h, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)

    now = utc8(2024, 5, 10, 1)  # 01:00 local: May 9 not due yet
    assert pull.due(store, "alibaba", cfg, now=now, records=[]) == [date(2024, 5, 6), date(2024, 5, 7), date(2024, 5, 8)]

    def pulled(day: date, at: datetime, *, error: str | None = None) -> runs.RunRecord:
        period = pull.periods("alibaba", [day])[0]
        rec = runs.RunRecord(key=pull.record_key("alibaba", period), manifest="m", manifestSha256="",
                             state="quarantined" if error else "committed",
                             pull={"pulledAt": at.isoformat(), "final": at >= pull.closes("alibaba", day)})
        if error:
            rec.error = runs.RunError(code=error, message="x")
        return rec

    done = [pulled(d, now) for d in (date(2024, 5, 6), date(2024, 5, 7), date(2024, 5, 8))]
    assert pull.due(store, "alibaba", cfg, now=now, records=done) == []
    later = utc8(2024, 5, 10, 3)  # after 02:00: May 9 is due, and May 8 is refreshed (refresh_days 1)
    assert pull.due(store, "alibaba", cfg, now=later, records=done) == [date(2024, 5, 8), date(2024, 5, 9)]
    failing = [pulled(date(2024, 5, 9), later, error="PullServerError")]
    assert date(2024, 5, 9) not in pull.due(store, "alibaba", cfg, now=later, records=done + failing)
    assert date(2024, 5, 9) in pull.due(store, "alibaba", cfg, now=utc8(2024, 5, 10, 5), records=done + failing)
    empty = [pulled(date(2024, 5, 9), later, error="PullNoData")]  # no data yet: the next refresh, not every hour
    assert date(2024, 5, 9) not in pull.due(store, "alibaba", cfg, now=utc8(2024, 5, 10, 5), records=done + empty)
    # April 29/30, pulled on May 1 before the close: pulled once more after May 3, 12:00 local, then final
    april = [pulled(date(2024, 4, 29), utc8(2024, 5, 1, 3)), pulled(date(2024, 4, 30), utc8(2024, 5, 1, 3))]
    cfg = PullProvider(pull_hour=2, catchup_days=5, refresh_days=0)
    window = [date(2024, 4, 28), date(2024, 4, 29), date(2024, 4, 30), date(2024, 5, 1), date(2024, 5, 2)]
    assert pull.due(store, "alibaba", cfg, now=utc8(2024, 5, 3, 11), records=april) == [window[0], *window[3:]]
    assert pull.due(store, "alibaba", cfg, now=utc8(2024, 5, 3, 13), records=april) == window
    final = [pulled(date(2024, 4, 29), utc8(2024, 5, 3, 13)), pulled(date(2024, 4, 30), utc8(2024, 5, 3, 13))]
    assert final[0].pull["final"]
    wide = PullProvider(pull_hour=2, catchup_days=10, refresh_days=31)  # final days are never refreshed again
    due = pull.due(store, "alibaba", wide, now=utc8(2024, 5, 5, 3), records=final)
    assert date(2024, 4, 28) in due and date(2024, 4, 29) not in due and date(2024, 4, 30) not in due


def test_two_watchers_never_pull_the_same_day_twice(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba", {pull.yesterday("alibaba").isoformat(): [ali(1, pull.yesterday("alibaba").isoformat(),
                                                                                "ecs", "1", "0")]})
    make_hub(tmp_path, "alibaba", server, monkeypatch, enabled=True, pull_hour=0, catchup_days=3)
    results: list[pulling.PullRun] = []
    threads = [threading.Thread(target=lambda: results.append(pulling.scheduled(Store(str(tmp_path))))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tried = [r.key for run in results for p in run.pulls for r in p.records]
    assert len(tried) == len(set(tried)) == 3  # 3 catch-up days, each pulled by one of the two
    assert sorted(r.query["BillingDate"] for r in server.requests) == sorted({r.query["BillingDate"] for r in server.requests})
    assert pulling.scheduled(Store(str(tmp_path))).pulls == []  # nothing due any more


def test_watch_pulls_what_is_due_then_ingests_it(tmp_path, monkeypatch, server_for):
    day = pull.yesterday("huawei")
    server = server_for("huawei", {day.isoformat(): [hw(1, day.isoformat(), "hws.service.type.ec2", "2.00", "0.25")]})
    store = make_hub(tmp_path, "huawei", server, monkeypatch, enabled=True, pull_hour=0, catchup_days=1)
    from pipelines.watch import watch

    lines: list[dict] = []
    watch(store, stop=threading.Event(), log=lines.append, cycles=1)
    pulls = [line for line in lines if line["event"] == "pull"]
    assert [(p["provider"], p["day"], p["outcome"]) for p in pulls] == [("huawei", day.isoformat(), "committed")]
    assert any(line["event"] == "run" and line["outcome"] == "committed" for line in lines)
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("1.75"),)]


def test_a_pull_killed_before_its_manifest_leaves_the_previous_day_in_place(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    assert pulling.run(store, "alibaba", [MAY1]).ok
    server.data["2024-05-01"] = [ali(1, "2024-05-01", "ecs", "10.00", "0")]
    code = ("import sys; from datetime import date; from hub.store import Store; from pipelines import pull; "
            f"pull.run(Store({str(tmp_path)!r}), 'alibaba', [date(2024, 5, 1)], then_ingest=False)")
    env = {**os.environ, "HUB_CRASH_AT": "pull-before-manifest", "HUB_LEASE_TTL": "1"}  # its lease soon free
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1]).returncode == 137
    assert not (tmp_path / "exports/alibaba/api/2024-05/2024-05-01/manifest.json").exists()
    time.sleep(1.5)
    assert pulling.run(store, "alibaba", [], then_ingest=True).ok  # no delivery: the lake keeps the previous version
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("6.873456789"),)]
    assert pulling.run(store, "alibaba", [MAY1]).ok  # pulled again
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("10.00"),)]


def test_cli(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    make_hub(tmp_path, "alibaba", server, monkeypatch)
    runner = CliRunner()
    out = runner.invoke(app, ["pull", str(tmp_path), "--provider", "alibaba", "--date", "2024-05-02"])
    assert out.exit_code == 0, out.output
    assert "committed" in out.output
    bad = runner.invoke(app, ["pull", str(tmp_path), "--provider", "azure"])
    assert bad.exit_code == 2 and "--provider must be one of alibaba, huawei, tencent" in bad.output
    both = runner.invoke(app, ["pull", str(tmp_path), "--provider", "alibaba", "--date", "2024-05-02", "--month", "2024-05"])
    assert both.exit_code == 2


def test_bill_files_and_api_pulls_of_one_account_are_never_both_counted(tmp_path, monkeypatch, server_for):
    from hub.sample_native import write_alibaba_bill

    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    write_alibaba_bill(str(tmp_path), month="2024-05", rows=50, account="1234567890123456")  # the OSS subscription's file
    assert pulling.run(store, "alibaba", []).ok
    before = lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE")
    done = pulling.run(store, "alibaba", [MAY1])
    (run,) = done.ingested.all
    assert run.state == "quarantined" and run.error.code == "SourceConflict"
    assert "Alibaba Cloud bill (API)" in run.error.message or "Alibaba Cloud bill" in run.error.message
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == before


def test_one_providers_missing_key_never_stops_the_others(tmp_path, monkeypatch, server_for):
    day = pull.yesterday("huawei")
    server = server_for("huawei", {day.isoformat(): [hw(1, day.isoformat(), "hws.service.type.ec2", "1.00", "0")]})
    store = make_hub(tmp_path, "huawei", server, monkeypatch, enabled=True, pull_hour=0, catchup_days=1)
    settings = json.loads((tmp_path / "config/settings.json").read_text())
    settings["pull"]["alibaba"] = {"enabled": True, "pull_hour": 0, "catchup_days": 1}  # no Alibaba key anywhere
    (tmp_path / "config/settings.json").write_text(json.dumps(settings))
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    done = pulling.scheduled(store)
    by = {p.provider: p for p in done.pulls}
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in (by["alibaba"].error or "")
    assert [r.state for r in by["huawei"].records] == ["committed"]


def test_an_empty_re_pull_takes_the_days_rows_out(tmp_path, monkeypatch, server_for):
    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    assert pulling.run(store, "alibaba", [MAY1, MAY2]).ok
    server.data["2024-05-01"] = []  # the provider moved the day's lines elsewhere
    done = pulling.run(store, "alibaba", [MAY1])
    (rec,) = done.pulls[0].records
    assert rec.state == "committed" and rec.pull["emptied"] and done.ok
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == [(Decimal("5.000000000"), 2)]  # May 2 only


def test_optional_fields_missing_from_every_line(tmp_path, monkeypatch, server_for):
    lines = [{k: v for k, v in hw(1, "2024-05-01", "hws.service.type.obs", "1.00", "0").items() if k != "az_code_infos"}]
    server = server_for("huawei", {"2024-05-01": lines})
    assert pulling.run(make_hub(tmp_path / "hw", "huawei", server, monkeypatch), "huawei", [MAY1]).ok
    details = [{k: v for k, v in tc(1, "2024-05-01", [("CPU", "0.5")]).items() if k != "Tags"}]
    server = server_for("tencent", {"2024-05-01": details})
    assert pulling.run(make_hub(tmp_path / "tc", "tencent", server, monkeypatch), "tencent", [MAY1]).ok
    assert lake(tmp_path / "tc", "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("0.5"),)]


def test_the_final_pull_reaches_beyond_the_catch_up_window(tmp_path):
    store = Store(str(tmp_path))
    when = datetime(2024, 4, 2, 3, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    april_1 = runs.RunRecord(key=pull.record_key("alibaba", pull.Period(date(2024, 4, 1))), manifest="m", manifestSha256="",
                             state="committed", scope="2024-04-01", pull={"pulledAt": when.isoformat(), "final": False})
    after_close = datetime(2024, 5, 3, 13, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    cfg = PullProvider(catchup_days=7)
    assert date(2024, 4, 1) in pull.due(store, "alibaba", cfg, now=after_close, records=[april_1])
    assert date(2024, 4, 1) not in pull.due(store, "alibaba", cfg, now=after_close - (after_close - when) / 2,
                                            records=[april_1])


def test_a_month_to_date_pull_sends_events_for_complete_days_only(tmp_path, monkeypatch, server_for):
    server = server_for("tencent")
    events_file = tmp_path / "events.jsonl"
    store = make_hub(tmp_path / "hub", "tencent", server, monkeypatch)
    settings = json.loads((tmp_path / "hub/config/settings.json").read_text())
    settings["events"] = {"sinks": [{"type": "file", "path": str(events_file)}]}
    (tmp_path / "hub/config/settings.json").write_text(json.dumps(settings))
    now = datetime(2024, 5, 2, 9, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)  # May 2 is not over
    assert pulling.run(store, "tencent", [MAY1], now=now).ok
    daily = [json.loads(line) for line in events_file.read_text().splitlines() if "account_billing" in line]
    assert [(e["subject"], e["data"]["RealCost"], e["data"]["Lines"]) for e in daily] == [("2024-05/2024-05-01/p_cvm/postPay/USD/100002/100001", "0.60000001", 4)]


def test_a_stalled_pull_taken_over_writes_nothing_more(tmp_path, monkeypatch, server_for):
    """A pull stopped (SIGSTOP) before its manifest past its lease's TTL; another pull takes the lease and the day;
    the first, resumed, stops without writing: the day is the second pull's."""
    import signal

    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    code = ("from datetime import date; from hub.store import Store; from pipelines import pull; "
            f"r = pull.run(Store({str(tmp_path)!r}), 'alibaba', [date(2024, 5, 1)], then_ingest=False); "
            "print('ERROR', r.pulls[0].error)")
    env = {**os.environ, "HUB_STOP_AT": "pull-before-manifest", "HUB_LEASE_TTL": "1"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1],
                             stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "T":
                break
            time.sleep(0.05)
        assert state == "T"
        time.sleep(1.5)  # its lease expires
        server.data["2024-05-01"] = [ali(1, "2024-05-01", "ecs", "10.00", "0")]
        assert pulling.run(store, "alibaba", [MAY1], then_ingest=False).ok
    finally:
        os.kill(child.pid, signal.SIGCONT)
    out, _ = child.communicate(timeout=60)
    assert "lease" in out.split("ERROR", 1)[1]
    assert pulling.run(store, "alibaba", [], then_ingest=True).ok
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal("10.00"),)]


def test_retention_leaves_a_day_alone_while_it_is_being_pulled(tmp_path, monkeypatch, server_for):
    from hub import lease
    from pipelines import retention

    server = server_for("alibaba")
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    settings = json.loads((tmp_path / "config/settings.json").read_text())
    settings["retention"] = {"exports": {"days": 0}, "ingestion": {"months": 0}}  # 2024 is long ago
    (tmp_path / "config/settings.json").write_text(json.dumps(settings))
    assert pulling.run(store, "alibaba", [MAY1]).ok
    day = tmp_path / "exports/alibaba/api/2024-05/2024-05-01"
    held = lease.try_acquire(store, "pull-alibaba")
    retention.apply(store, load_settings(store))
    assert (day / "manifest.json").exists()  # a pull holds the provider: its days wait
    held.release()
    retention.apply(store, load_settings(store))
    assert not (day / "manifest.json").exists() and lake(tmp_path, "SELECT count(*) FROM LAKE") == [(5,)]


def test_a_day_emptied_after_retention_took_its_files_still_leaves_the_lake(tmp_path, monkeypatch, server_for):
    """Retention (exports days 0) deleted the pulled days' files; then the provider moves May 1st's lines to May 2nd:
    the empty re-pull of May 1st is an emptied delivery (the run records say the lake holds its rows), not PullNoData,
    so its rows leave the lake and the moved lines are counted once (11, not 21)."""
    from hub.settings import load_settings
    from pipelines import retention

    d1, d2 = "2024-05-01", "2024-05-02"
    server = server_for("alibaba", {d1: [ali(1, d1, "ecs", "10.00", "0")], d2: [ali(2, d2, "ecs", "1.00", "0")]})
    store = make_hub(tmp_path, "alibaba", server, monkeypatch)
    settings = json.loads((tmp_path / "config/settings.json").read_text())
    settings["retention"] = {"exports": {"days": 0}, "ingestion": {"months": 0}}
    (tmp_path / "config/settings.json").write_text(json.dumps(settings))
    assert pulling.run(store, "alibaba", [MAY1, MAY2]).ok
    assert retention.apply(store, load_settings(store)).deletions
    assert not (tmp_path / f"exports/alibaba/api/2024-05/{d1}/manifest.json").exists()
    server.data[d1] = []
    server.data[d2] = [ali(2, d2, "ecs", "1.00", "0"), ali(1, d2, "ecs", "10.00", "0")]
    done = pulling.run(store, "alibaba", [MAY1, MAY2])
    assert done.ok and [r.pull.get("emptied", False) for r in done.pulls[0].records] == [True, False]
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*) FROM LAKE") == [(Decimal(11), 2)]


def test_a_line_added_while_a_day_is_paged_means_paging_it_again(tmp_path, monkeypatch):
    """Huawei's offset pages (2 lines each) of a day of 4 lines (1 + 2 + 3 + 4 = 10); between the first and the second
    page the provider adds a late line of 100 at the front, so the second page repeats a line and the new one is never
    read, while total_count says 5 instead of 4: the day is paged again from the start and lands whole (110, 5 lines);
    a count that keeps changing is PullMalformedResponse, nothing written."""
    day = "2024-05-01"

    class Shifting(HuaweiBillServer):
        calls, every = 0, False

        def list_records(self, body):
            Shifting.calls += 1
            if Shifting.calls == 2 or Shifting.every:
                self.data[day].insert(0, hw(9 + Shifting.calls, day, "hws.service.type.ec2", "100.00", "0"))
            return super().list_records(body)

    server = Shifting(AK, SK, {day: [hw(i, day, "hws.service.type.ec2", f"{i}.00", "0") for i in range(1, 5)]})
    try:
        store = make_hub(tmp_path, "huawei", server, monkeypatch)
        done = pulling.run(store, "huawei", [MAY1])
        assert done.ok and done.pulls[0].records[0].pull["records"] == 5
        assert lake(tmp_path, "SELECT sum(BilledCost), count(DISTINCT ResourceId) FROM LAKE") == [(Decimal(110), 5)]
        Shifting.every = True
        (rec,) = pulling.run(store, "huawei", [MAY1]).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse") and "changed" in rec.error.message
        assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(Decimal(110),)]
    finally:
        server.close()


@pytest.mark.parametrize("currency, expected", [(None, "USD"), ("CNY", "CNY")])
def test_pulled_lines_without_a_currency_take_the_settings_currency(tmp_path, monkeypatch, server_for, currency, expected):
    """Tencent's bill API gives no currency for a whole response: components without one were always USD, wrong for a
    China-site account. ``pull.tencent.currency`` goes into each pulled day's manifest, as a user's manifest may say it."""
    details = json.loads(json.dumps(TC))
    for detail in details["2024-05-01"] + details["2024-05-02"]:  # the API answers the month so far
        for component in detail["ComponentSet"]:
            del component["Currency"]
    server = server_for("tencent", details)
    store = make_hub(tmp_path, "tencent", server, monkeypatch, **({"currency": currency} if currency else {}))
    done = pulling.run(store, "tencent", [MAY1])
    assert done.ok, [r.error for p in done.pulls for r in p.records] + [r.error for r in done.ingested.all]
    manifest = json.loads((tmp_path / "exports/tencent/api/2024-05/month/manifest.json").read_text())
    assert manifest.get("currency") == currency
    # RealCost 0.08 + 0.02 + 0.5 + 0.00000001 (May 1) + 1.25 (May 2), five components
    assert lake(tmp_path, "SELECT BillingCurrency, sum(BilledCost), count(*) FROM LAKE GROUP BY ALL") == [
        (expected, Decimal("1.85000001"), 5)]
    (rec,) = done.ingested.all
    assert list(rec.totalsIn) == [expected]


@pytest.mark.parametrize("currency", ["yuan", "RMB"])  # RMB: three letters, the yuan's name, not its code (CNY)
def test_a_pull_currency_must_be_an_iso_code(tmp_path, monkeypatch, server_for, currency):
    store = make_hub(tmp_path, "tencent", server_for("tencent"), monkeypatch, currency=currency)
    with pytest.raises(UsageError, match="pull.tencent.currency"):
        load_settings(store)


def test_tencent_numbers_written_as_json_integers_are_read_as_the_api_wrote_them(tmp_path, monkeypatch, server_for):
    """Review of stop 39: a Tencent amount sent as the JSON integer 0 beside text amounts (and a RegionId sent as 4
    beside "1") made the column JSON: the pulled file held `"0.5"` with its quotes and the month was quarantined
    (InvalidValue), or the lake held the RegionId `"1"` with its quotes. Alibaba's and Huawei's readers already took
    integers as text."""
    data = {"2024-05-01": [tc(1, "2024-05-01", [("CPU", "0.5")]), tc(2, "2024-05-01", [("CPU", "0")])]}
    data["2024-05-01"][1]["ComponentSet"][0]["RealCost"] = 0
    data["2024-05-01"][1]["ComponentSet"][0]["CashPayAmount"] = 0
    data["2024-05-01"][1]["RegionId"] = 4
    server = server_for("tencent", data)
    store = make_hub(tmp_path, "tencent", server, monkeypatch)
    done = pulling.run(store, "tencent", [MAY1])
    assert done.ok, [r.error for p in done.pulls for r in p.records] + [r.error for r in done.ingested.all]
    assert lake(tmp_path, "SELECT sum(BilledCost), count(*), string_agg(DISTINCT RegionId, ',' ORDER BY RegionId) "
                          "FROM LAKE") == [(Decimal("0.5"), 2, "1,4")]
