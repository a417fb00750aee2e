"""Bill-API pulls over time and on odd answers: counts missing from later pages, a failed final pull, values kept as
the API wrote them, events per line group with withdrawals, stable empty files, settings checked. Each case failed
before its fix; expected values by hand."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from apiservers import AlibabaBillServer, Reply, TencentBillServer
from test_pull import AK, MAY1, SK, ali, lake, make_hub, tc

from hub import pull, runs
from hub.errors import UsageError
from hub.settings import PullProvider, Settings
from hub.store import Store
from pipelines import pull as pulling

TC5 = {"2024-05-01": [tc(i, "2024-05-01", [("CPU", "1")]) for i in range(5)]}


class _TencentTotalOnFirstPage(TencentBillServer):
    """Page 1 says Total 5; later pages carry no Total."""

    def describe_bill_detail(self, params):  # noqa: ANN001, ANN201 - the fake server's hook
        reply = super().describe_bill_detail(params)
        if params.get("Offset"):
            body = json.loads(reply.body)
            body["Response"].pop("Total", None)
            return Reply(200, json.dumps(body))
        return reply


class _AlibabaCountOnFirstPage(AlibabaBillServer):
    """TotalCount 5 on page 1; the page after the 4th line has neither TotalCount nor NextToken (one line unsent)."""

    def describe_instance_bill(self, params):  # noqa: ANN001, ANN201 - the fake server's hook
        reply = super().describe_instance_bill(params)
        if params.get("NextToken"):
            body = json.loads(reply.body)
            body["Data"].pop("TotalCount", None)
            body["Data"].pop("NextToken", None)
            return Reply(200, json.dumps(body))
        return reply


@pytest.mark.parametrize("provider", ["tencent", "alibaba"])
def test_a_page_without_the_count_keeps_the_announced_one(tmp_path, monkeypatch, provider):
    """A later page without a count made the hub forget the count of page 1 (Tencent also stopped paging): 4 of 5
    lines (or 2 of 5) committed. Now the day is PullMalformedResponse and nothing lands."""
    data = TC5 if provider == "tencent" else {"2024-05-01": [ali(i, "2024-05-01", "ecs", "1.00", "0") for i in range(5)]}
    server = (_TencentTotalOnFirstPage if provider == "tencent" else _AlibabaCountOnFirstPage)(AK, SK, data)
    try:
        store = make_hub(tmp_path, provider, server, monkeypatch)
        (rec,) = pulling.run(store, provider, [MAY1]).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse"), rec.error
        assert lake(tmp_path, "SELECT count(*) FROM LAKE") in ([], [(0,)])
    finally:
        server.close()


def test_a_failed_final_pull_is_not_final_and_is_due_again(tmp_path):
    """The pull after the month closed failed (503) but was recorded final: the day was never pulled again."""
    store = Store(str(tmp_path))
    after_close = datetime(2024, 5, 3, 13, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    key = pull.record_key("alibaba", pull.Period(date(2024, 4, 1)))
    failed = runs.RunRecord(key=key, manifest="m", manifestSha256="", state="quarantined", scope="2024-04-01",
                            error=runs.RunError(code="PullServerError", message="HTTP 503"),
                            pull={"pulledAt": after_close.isoformat(), "final": False})
    cfg = PullProvider(catchup_days=3)
    assert date(2024, 4, 1) not in pull.due(store, "alibaba", cfg, now=after_close, records=[failed])  # waits an hour
    later = after_close.replace(hour=after_close.hour + 2)
    assert date(2024, 4, 1) in pull.due(store, "alibaba", cfg, now=later, records=[failed])
    committed = failed.model_copy(update={"state": "committed", "error": None, "pull": {**failed.pull, "final": True}})
    assert date(2024, 4, 1) not in pull.due(store, "alibaba", cfg, now=later, records=[committed])


def test_a_failed_pull_is_never_recorded_final(tmp_path, monkeypatch):
    server = AlibabaBillServer(AK, SK, {"2024-04-01": [ali(1, "2024-04-01", "ecs", "1.00", "0")]})
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch, retries=0)
        server.fail(5, 503)
        after_close = datetime(2024, 5, 3, 13, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
        (rec,) = pulling.run(store, "alibaba", [date(2024, 4, 1)], now=after_close).pulls[0].records
        assert rec.state == "quarantined" and rec.pull["final"] is False
    finally:
        server.close()


def test_pulled_text_is_kept_as_the_api_wrote_it(tmp_path, monkeypatch):
    """An upper-case UUID was lower-cased (the lake's ResourceId changed) and a +08:00 time moved to UTC."""
    line = ali(1, "2024-05-01", "ecs", "1.00", "0")
    line.update(InstanceID="B5C7E0B2-1A2B-4C3D-8E9F-0123456789AB", NickName="2024-05-01T10:00:00+08:00")
    server = AlibabaBillServer(AK, SK, {"2024-05-01": [line]})
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch)
        pulling.run(store, "alibaba", [MAY1])
        (data,) = tmp_path.glob("exports/alibaba/api/**/*.csv.gz")
        import gzip

        text = gzip.decompress(data.read_bytes()).decode()
        assert "B5C7E0B2-1A2B-4C3D-8E9F-0123456789AB" in text and "2024-05-01T10:00:00+08:00" in text
        assert lake(tmp_path, "SELECT ResourceId FROM LAKE") == [("B5C7E0B2-1A2B-4C3D-8E9F-0123456789AB",)]
    finally:
        server.close()


def test_daily_events_have_one_subject_per_group_and_withdraw_what_a_restatement_removed(tmp_path, monkeypatch):
    """Two subscription types of one product shared the subject <day>/<product>; a product moved to another day kept
    its old event: a consumer keeping the latest event per subject got 13 where the lake has 8."""
    sub = ali(2, "2024-05-01", "ecs", "2.00", "0")
    sub["SubscriptionType"] = "Subscription"
    first = {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.00", "0"), sub, ali(3, "2024-05-01", "oss", "5.00", "0")]}
    server = AlibabaBillServer(AK, SK, first)
    events_file = tmp_path / "events.jsonl"
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch)
        settings = json.loads((tmp_path / "config/settings.json").read_text())
        (tmp_path / "config/settings.json").write_text(json.dumps({**settings, "events": {
            "sinks": [{"type": "file", "path": str(events_file)}]}}))
        pulling.run(store, "alibaba", [MAY1])
        server.fail(10, 503)  # a failed pull in between keeps the delivered version's subjects known
        assert pulling.run(store, "alibaba", [MAY1], then_ingest=False).pulls[0].records[0].state == "quarantined"
        server.data["2024-05-01"] = first["2024-05-01"][:2]  # oss restated away from May 1
        server._faults.clear()
        pulling.run(store, "alibaba", [MAY1])
    finally:
        server.close()
    latest: dict[str, dict] = {}
    for event in (json.loads(line) for line in events_file.read_text().splitlines()):
        if event["type"] == "alicloud.account_billing.daily":
            latest[event["subject"]] = event["data"]
    assert sorted(latest) == ["2024-05-01/ecs/PayAsYouGo/CNY/5678/1234567890123456",
                              "2024-05-01/ecs/Subscription/CNY/5678/1234567890123456",
                              "2024-05-01/oss/PayAsYouGo/CNY/5678/1234567890123456"]
    assert latest["2024-05-01/oss/PayAsYouGo/CNY/5678/1234567890123456"] == {
        "BillingDate": "2024-05-01", "Withdrawn": True, "Lines": 0, "Final": True}  # pulled long after the close
    assert sum(float(d.get("PretaxAmount") or 0) for d in latest.values()) == 3.0  # as the lake: 1.00 + 2.00


def test_tencent_daily_events_carry_the_lines_currency_setting(tmp_path, monkeypatch):
    data = {"2024-05-01": [tc(1, "2024-05-01", [("CPU", "0.10")])]}
    for component in data["2024-05-01"][0]["ComponentSet"]:
        component.pop("Currency")
    server = TencentBillServer(AK, SK, data)
    events_file = tmp_path / "events.jsonl"
    try:
        store = make_hub(tmp_path, "tencent", server, monkeypatch, currency="CNY")
        settings = json.loads((tmp_path / "config/settings.json").read_text())
        (tmp_path / "config/settings.json").write_text(json.dumps({**settings, "events": {
            "sinks": [{"type": "file", "path": str(events_file)}]}}))
        pulling.run(store, "tencent", [MAY1], now=datetime(2024, 6, 5, tzinfo=timezone.utc))
    finally:
        server.close()
    daily = [json.loads(line)["data"] for line in events_file.read_text().splitlines() if "account_billing" in line]
    assert [(d["Currency"], d["RealCost"]) for d in daily] == [("CNY", "0.1")]


def test_an_emptied_day_pulled_again_keeps_its_file_and_event_id(tmp_path):
    """The empty file's gzip header held the time: every re-pull a new sha256 and a new pulled event id."""
    first, second = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    pull._empty("alibaba", str(first))
    pull._empty("alibaba", str(second))
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(("settings", "field"), [
    ({"events": {"source": ""}}, "events.source"),
    ({"events": {"source": "my hub"}}, "events.source"),
    ({"pull": {"alibaba": {"endpoint": "ftp://127.0.0.1:1"}}}, "pull.alibaba.endpoint"),
    ({"pull": {"alibaba": {"endpoint": "http://127.0.0.1:99999"}}}, "pull.alibaba.endpoint"),
    ({"pull": {"alibaba": {"endpoint": "http://host:80/some/path"}}}, "pull.alibaba.endpoint"),
    ({"pull": {"alibaba": {"endpoint": "http://user@host"}}}, "pull.alibaba.endpoint"),
    ({"pull": {"alibaba": {"endpoint": ""}}}, "pull.alibaba.endpoint"),
])
def test_settings_refuse_an_empty_event_source_and_endpoints_with_paths(tmp_path, settings, field):
    from hub.settings import load_settings

    (tmp_path / "config").mkdir()
    (tmp_path / "config/settings.json").write_text(json.dumps(settings))
    with pytest.raises(UsageError, match=field.replace(".", r"\.")):
        load_settings(Store(str(tmp_path)))
    assert Settings.model_validate({"pull": {"alibaba": {"endpoint": "https://127.0.0.1:8443"}}})



class _TencentGateway(TencentBillServer):
    """A gateway in front of the API answering with an HTML page and a status (the API's own errors come with 200)."""

    status = 403

    def describe_bill_detail(self, params):  # noqa: ANN001, ANN201 - the fake server's hook
        return Reply(self.status, "<html><body>gateway</body></html>")


@pytest.mark.parametrize(("status", "code"), [(403, "PullAuthFailed"), (404, "PullRequestInvalid"), (429, "PullThrottled"),
                                              (502, "PullServerError")])
def test_tencent_gateway_answers_are_coded_by_their_status(tmp_path, monkeypatch, status, code):
    """Every non-200 answer was the SDK's ServerNetworkError: a refused key was retried as a server failure."""
    server = _TencentGateway(AK, SK, TC5)
    server.status = status
    try:
        store = make_hub(tmp_path, "tencent", server, monkeypatch, retries=1)
        (rec,) = pulling.run(store, "tencent", [MAY1], then_ingest=False).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", code) and f"HTTP {status}" in rec.error.message
    finally:
        server.close()


@pytest.mark.parametrize("change", ["amount as a list", "no amounts", "amount an object on one line"])
def test_lines_not_in_the_documented_shape_are_refused_by_the_pull(tmp_path, monkeypatch, change):
    """They were committed by the pull, then quarantined at ingestion (InvalidValue / SchemaMismatch). Left open in
    stop 40: an amount that is text on one line and an object on another (DuckDB's JSON type) passed the check."""
    line = ali(1, "2024-05-01", "ecs", "1.00", "0")
    lines = [line]
    if change == "amount as a list":
        line["PretaxAmount"] = ["1.00"]
    elif change == "no amounts":
        for field in ("PretaxGrossAmount", "PretaxAmount"):
            line.pop(field)
    else:
        lines.append({**ali(2, "2024-05-01", "ecs", "1.00", "0"), "PretaxAmount": {"value": "1.00"}})
    server = AlibabaBillServer(AK, SK, {"2024-05-01": lines})
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch)
        (rec,) = pulling.run(store, "alibaba", [MAY1], then_ingest=False).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse") and "documented shape" in rec.error.message
        assert not list(tmp_path.glob("exports/alibaba/api/**/manifest.json"))
    finally:
        server.close()


@pytest.mark.parametrize("provider", ["tencent", "alibaba"])
def test_an_answer_sent_a_slice_at_a_time_is_cut_at_the_request_timeout(tmp_path, monkeypatch, provider):
    """Review of stop 41: the SDKs' timeouts are per socket read, so a server sending its answer in slices held the
    pull (and the watcher's ingestion after it) far past request_timeout_seconds and the time budget."""
    data = TC5 if provider == "tencent" else {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.00", "0")]}
    server = (TencentBillServer if provider == "tencent" else AlibabaBillServer)(AK, SK, data)
    server.drip_seconds = 0.25  # the answer over 5 s
    try:
        store = make_hub(tmp_path, provider, server, monkeypatch, retries=2, request_timeout_seconds=1)
        (rec,) = pulling.run(store, provider, [MAY1], then_ingest=False).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullServerError")
        assert "no whole answer within 1 s" in rec.error.message
        # not retried in the same pull: each attempt cut short would leave one more call reading (the change's review)
        assert len(server.requests) == 1
    finally:
        server.close()


class _AlibabaLooping(AlibabaBillServer):
    """Page 1 again and again, each time with a new NextToken and no TotalCount."""

    def describe_instance_bill(self, params):  # noqa: ANN001, ANN201 - the fake server's hook
        body = json.loads(super().describe_instance_bill({**params, "NextToken": None}).body)
        body["Data"].pop("TotalCount", None)
        body["Data"]["NextToken"] = f"tok-{len(self.requests)}"
        return Reply(200, json.dumps(body))


def test_pages_that_repeat_without_a_count_are_refused_at_once(tmp_path, monkeypatch):
    """Review of stop 41: only the time budget (30 minutes by default) stopped a server answering its first page again
    and again under new tokens without a count; the day then took the whole budget at every pull."""
    server = _AlibabaLooping(AK, SK, {"2024-05-01": [ali(i, "2024-05-01", "ecs", "1.00", "0") for i in range(4)]})
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch, time_budget_seconds=5)  # (before: PullTimeBudget)
        (rec,) = pulling.run(store, "alibaba", [MAY1], then_ingest=False).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse") and "repeats" in rec.error.message
        assert len(server.requests) == 2  # the first repeat
    finally:
        server.close()


class _AlibabaOddFields(AlibabaBillServer):
    """Data.AccountName a list, or NextToken an object: fields of the response (not of a line) of the wrong type."""

    field = "AccountName"

    def describe_instance_bill(self, params):  # noqa: ANN001, ANN201 - the fake server's hook
        body = json.loads(super().describe_instance_bill(params).body)
        if self.field == "AccountName":
            body["Data"]["AccountName"] = ["finops@example.com"]
        elif body["Data"].get("NextToken"):
            body["Data"]["NextToken"] = {"token": body["Data"]["NextToken"]}
        return Reply(200, json.dumps(body))


@pytest.mark.parametrize("field", ["AccountName", "NextToken"])
def test_response_fields_of_the_wrong_type_are_malformed_responses(tmp_path, monkeypatch, field):
    """Review of stop 41: a response field of the wrong JSON type (Data.AccountName a list) was InternalError with an
    AttributeError for message; a NextToken object was PullServerError (TypeError: unhashable type), retried."""
    server = _AlibabaOddFields(AK, SK, {"2024-05-01": [ali(i, "2024-05-01", "ecs", "1.00", "0") for i in range(3)]})
    server.field = field
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch, retries=1)
        (rec,) = pulling.run(store, "alibaba", [MAY1], then_ingest=False).pulls[0].records
        assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse"), rec.error
        assert field in rec.error.message and not list(tmp_path.glob("exports/alibaba/api/**/manifest.json"))
    finally:
        server.close()


def test_a_pulled_days_events_are_sent_before_the_next_day_is_fetched(tmp_path, monkeypatch):
    """Review of stop 32: a month's events waited in memory until every day was pulled; `hub pull --month` killed while
    fetching May 3 had committed May 1 and 2 and sent (or queued) none of their events, and nothing sent them later."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    started = threading.Event()

    class Stalling(AlibabaBillServer):
        def describe_instance_bill(self, params):  # the API hangs on the third day
            if params.get("BillingDate") == "2024-05-03":
                started.set()
                time.sleep(20)
            return super().describe_instance_bill(params)

    data = {f"2024-05-0{d}": [ali(d, f"2024-05-0{d}", "ecs", "1.00", "0")] for d in (1, 2, 3)}
    server = Stalling(AK, SK, data)
    events_file = tmp_path / "events.jsonl"
    try:
        make_hub(tmp_path, "alibaba", server, monkeypatch)
        settings = json.loads((tmp_path / "config/settings.json").read_text())
        (tmp_path / "config/settings.json").write_text(json.dumps({**settings, "events": {
            "sinks": [{"type": "file", "path": str(events_file)}]}}))
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "pull", str(tmp_path), "--provider", "alibaba",
                                 "--month", "2024-05", "--no-ingest"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert started.wait(60), "the pull never reached May 3"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        server.close()
    sent = [json.loads(line) for line in events_file.read_text().splitlines()]
    pulled = sorted(e["data"]["day"] for e in sent if e["type"] == "finops-hub.delivery.pulled")
    assert pulled == ["2024-05-01", "2024-05-02"]
    assert sorted(e["subject"][:10] for e in sent if e["type"] == "alicloud.account_billing.daily") == ["2024-05-01", "2024-05-02"]


def test_one_providers_sdk_refusing_its_credentials_never_drops_anothers_pull(tmp_path, monkeypatch):
    """Review of stop 32: a Tencent SecretId with a trailing space made the SDK raise in the client's constructor; only
    ImportError and UsageError were caught, so the watcher's whole pass was lost, Alibaba's pulled day with it."""
    alibaba = AlibabaBillServer(AK, SK, {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.00", "0")]})
    tencent = TencentBillServer(AK, SK, {})
    try:
        make_hub(tmp_path, "alibaba", alibaba, monkeypatch)
        monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", AK + " ")
        monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SK)
        settings = json.loads((tmp_path / "config/settings.json").read_text())
        settings["pull"]["alibaba"]["enabled"] = True
        settings["pull"]["tencent"] = {"enabled": True, "endpoint": tencent.url, "retries": 0}
        (tmp_path / "config/settings.json").write_text(json.dumps(settings))
        done = pulling.scheduled(Store(str(tmp_path)), now=datetime(2024, 5, 2, 12, tzinfo=timezone.utc))
    finally:
        alibaba.close()
        tencent.close()
    by = {p.provider: p for p in done.pulls}
    assert {r.scope: r.state for r in by["alibaba"].records}["2024-05-01"] == "committed"  # its pull went on
    assert by["tencent"].error and "SDK refused its credentials" in by["tencent"].error
    assert SK not in by["tencent"].error


def _with_events(tmp_path, server, monkeypatch, **cfg) -> tuple[Store, object]:
    store = make_hub(tmp_path, "alibaba", server, monkeypatch, **cfg)
    settings = json.loads((tmp_path / "config/settings.json").read_text())
    events_file = tmp_path / "events.jsonl"
    (tmp_path / "config/settings.json").write_text(json.dumps({**settings, "events": {
        "sinks": [{"type": "file", "path": str(events_file)}]}}))
    return store, events_file


def _consumer(events_file) -> dict[str, dict]:
    """As the README tells a consumer: de-duplicate on (source, id), keep the latest event per subject."""
    seen, latest = set(), {}
    for e in map(json.loads, events_file.read_text().splitlines()):
        if e["type"] == "alicloud.account_billing.daily" and (e["source"], e["id"]) not in seen:
            seen.add((e["source"], e["id"]))
            latest[e["subject"]] = e["data"]
    return latest


@pytest.mark.parametrize("off", [{}, "billing_records"])
def test_a_group_removed_while_events_were_off_is_withdrawn_once_they_are_back(tmp_path, monkeypatch, off):
    """Review of stop 41: a pull made without sinks (or with billing_records off) recorded no daily subjects, so once
    events were back the group removed meanwhile (oss) was never withdrawn: a consumer kept ecs 1 + oss 5 while the
    lake held 1."""
    server = AlibabaBillServer(AK, SK, {})
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    ecs, oss = ali(1, "2024-05-01", "ecs", "1.10", "0.10"), ali(2, "2024-05-01", "oss", "5.00", "0")
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch)
        on = json.loads((tmp_path / "config/settings.json").read_text())
        for lines, events in (([ecs, oss], on["events"]), ([ecs], {**on["events"], "billing_records": False} if off else {}),
                              ([ecs], on["events"])):
            (tmp_path / "config/settings.json").write_text(json.dumps({**on, "events": events}))
            server.data["2024-05-01"] = json.loads(json.dumps(lines))
            pulling.run(store, "alibaba", [MAY1], now=now)
    finally:
        server.close()
    latest = _consumer(events_file)
    assert [d.get("PretaxAmount") for d in latest.values() if not d.get("Withdrawn")] == ["1"]
    assert [s.split("/")[1] for s, d in latest.items() if d.get("Withdrawn")] == ["oss"]


def test_a_months_pull_owns_its_subjects_and_its_final_pull_announces_every_line(tmp_path, monkeypatch):
    """Review of stop 41: Tencent's month pulls named a line's subject by its day only, so May's bill holding an hour
    of April 30 (2) took the subject of April's (5): a consumer keeping the latest event per subject had 2 for the lake's
    7; and a line charged from a day after the pull (a renewal from July 1 in May's bill, pulled final in June) was
    never announced. Expected by hand: the events add up to the lake, 5 + 2 + 1 = 8."""
    april = tc(1, "2024-04-30", [("CPU", "5")])
    late = {**tc(2, "2024-05-01", [("CPU", "2")]), "FeeBeginTime": "2024-04-30 23:00:00", "FeeEndTime": "2024-04-30 23:59:59"}
    renewal = {**tc(3, "2024-05-01", [("CPU", "1")]), "FeeBeginTime": "2024-07-01 00:00:00", "FeeEndTime": "2024-07-31 23:59:59",
               "ActionType": "prepay_renew", "ActionTypeName": "Renewal", "PayMode": "prePay"}
    server = TencentBillServer(AK, SK, {"2024-04-30": [april], "2024-05-01": [late, renewal]})
    events_file = tmp_path / "events.jsonl"
    try:
        store = make_hub(tmp_path, "tencent", server, monkeypatch)
        settings = json.loads((tmp_path / "config/settings.json").read_text())
        (tmp_path / "config/settings.json").write_text(json.dumps({**settings, "events": {
            "sinks": [{"type": "file", "path": str(events_file)}]}}))
        for month in (date(2024, 4, 1), MAY1):
            assert pulling.run(store, "tencent", [month], now=datetime(2024, 6, 10, tzinfo=timezone.utc)).ok
    finally:
        server.close()
    latest = {}
    for e in map(json.loads, events_file.read_text().splitlines()):
        if e["type"] == "tencentcloud.account_billing.daily":
            latest[e["subject"]] = e["data"]
    # (the renewal from July 1 is charged over May by the mapping, and dated May 1 in the events: the change's review)
    assert sorted((s.split("/")[0], d["BillingDate"], d["RealCost"]) for s, d in latest.items()) == [
        ("2024-04", "2024-04-30", "5"), ("2024-05", "2024-04-30", "2"), ("2024-05", "2024-05-01", "1")]
    assert lake(tmp_path, "SELECT sum(BilledCost) FROM LAKE") == [(8,)]
    assert lake(tmp_path, "SELECT CAST(ChargePeriodStart AS VARCHAR) FROM LAKE WHERE ResourceId = 'ins-3'") == [
        ("2024-04-30 16:00:00+00",)]  # May 1, Beijing time, as its event


@pytest.mark.parametrize("drop, cfg", [("ProductName", {}), ("Currency", {"currency": "CNY"})])
def test_groups_that_share_a_subject_are_one_event_with_their_sums(tmp_path, monkeypatch, drop, cfg):
    """Review of stop 32: two line groups told apart only by a name (a line without ProductName) or by a missing
    currency (the pull's currency setting is CNY) made two events of one subject: the latest kept 2.00 of the lake's
    3.00. One event now carries both groups' sums."""
    lines = [ali(1, "2024-05-01", "ecs", "1.10", "0.10"), ali(2, "2024-05-01", "ecs", "2.00", "0")]
    del lines[1][drop]
    server = AlibabaBillServer(AK, SK, {"2024-05-01": lines})
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch, **cfg)
        pulling.run(store, "alibaba", [MAY1], now=datetime(2024, 5, 10, tzinfo=timezone.utc))
    finally:
        server.close()
    latest = _consumer(events_file)
    assert [(d["PretaxAmount"], d["Lines"]) for d in latest.values()] == [("3", 2)]  # 1.00 + 2.00, as the lake


def test_a_group_back_after_its_withdrawal_gets_a_new_event_id(tmp_path, monkeypatch):
    """Review of stop 32: lines, then an emptied day (Withdrawn), then the lines back: the last event reused the first's
    id, so a consumer de-duplicating on ids kept Withdrawn while the lake held the row again."""
    lines = [ali(1, "2024-05-01", "ecs", "1.10", "0.10")]
    server = AlibabaBillServer(AK, SK, {"2024-05-01": lines})
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch)
        pulling.run(store, "alibaba", [MAY1], now=now)
        server.data["2024-05-01"] = []
        pulling.run(store, "alibaba", [MAY1], now=now)
        server.data["2024-05-01"] = lines
        pulling.run(store, "alibaba", [MAY1], now=now)
        pulling.run(store, "alibaba", [MAY1], now=now)  # a replay of the same version
    finally:
        server.close()
    assert [d.get("PretaxAmount") for d in _consumer(events_file).values()] == ["1"]
    ids = [e["id"] for e in map(json.loads, events_file.read_text().splitlines()) if e["type"] == "alicloud.account_billing.daily"]
    # first, withdrawn, back (a new id), replayed (the same version: the same event, its id again)
    assert len(ids) == 4 and ids[2] not in (ids[0], ids[1]) and ids[3] == ids[2]


@pytest.mark.parametrize("versions", [["1.10", "2.10", "1.10"], ["1.10", None, "1.10", None]])
def test_a_day_restated_back_or_withdrawn_twice_never_repeats_an_event_id(tmp_path, monkeypatch, versions):
    """Review of stop 37: ids came from the content, so a day restated 1, 2, then 1 again (or a group withdrawn, back,
    withdrawn again) repeated an earlier event's id: a consumer de-duplicating on ids dropped the newest and kept 2 (or
    the lines) while the lake held 1 (or nothing). Each change now gets an id chained to the subject's previous one."""
    server = AlibabaBillServer(AK, SK, {})
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch)
        for amount in versions:
            server.data["2024-05-01"] = [ali(1, "2024-05-01", "ecs", amount, "0.10")] if amount else []
            pulling.run(store, "alibaba", [MAY1], now=now)
    finally:
        server.close()
    ids = [e["id"] for e in map(json.loads, events_file.read_text().splitlines()) if e["type"] == "alicloud.account_billing.daily"]
    assert len(ids) == len(versions) == len(set(ids))
    # the day's delivery event too (left open in stop 40: its id came from the file's digest, so the third pull, the
    # first's bill again, repeated the first pull's id and a consumer de-duplicating on ids dropped it)
    pulled = [e["id"] for e in map(json.loads, events_file.read_text().splitlines()) if e["type"] == "finops-hub.delivery.pulled"]
    assert len(pulled) == len(versions) == len(set(pulled))
    latest = list(_consumer(events_file).values())
    assert [d.get("PretaxAmount") or ("withdrawn" if d.get("Withdrawn") else None) for d in latest] == (
        ["1"] if versions[-1] else ["withdrawn"])


def test_a_pull_killed_after_it_delivered_sends_its_events_when_the_day_is_pulled_again(tmp_path, monkeypatch):
    """Review of stop 37: the record said committed before the events went out; killed in between, they were never sent
    (a closed month's final pull is not made again). The events now go out before the record: killed between the two,
    the day is still due (its record the earlier, not final, version) and its events are made again with the same ids."""
    from hub import faults

    server = AlibabaBillServer(AK, SK, {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.10", "0.10")]})
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch)
        pulling.run(store, "alibaba", [MAY1], now=datetime(2024, 5, 10, tzinfo=timezone.utc))
        server.data["2024-05-01"] = [ali(1, "2024-05-01", "ecs", "1.30", "0.10")]  # restated before the close
        closed = datetime(2024, 6, 10, tzinfo=timezone.utc)
        before = len(events_file.read_text().splitlines())
        original = faults.checkpoint

        def killed(point: str) -> None:
            if point == "pull-before-record":
                raise SystemExit(137)
            original(point)

        monkeypatch.setattr(faults, "checkpoint", killed)
        with pytest.raises(SystemExit):
            pulling.run(store, "alibaba", [MAY1], now=closed)
        monkeypatch.setattr(faults, "checkpoint", original)
        sent = events_file.read_text().splitlines()[before:]
        assert MAY1 in pull.due(store, "alibaba", PullProvider(), now=closed)
        pulling.run(store, "alibaba", [MAY1], now=closed)
    finally:
        server.close()
    again = events_file.read_text().splitlines()[before + len(sent):]
    pulled = [json.loads(e)["id"] for e in again if json.loads(e)["type"] != "finops-hub.delivery.ingested"]
    assert sent and pulled == [json.loads(e)["id"] for e in sent]  # (then the ingestion the kill cut short: its own event)
    assert [d.get("PretaxAmount") for d in _consumer(events_file).values()] == ["1.2"]


def test_sums_that_cannot_be_made_withdraw_nothing(tmp_path, monkeypatch):
    """Review of stop 32: a re-pull whose daily sums could not be computed (a 24-digit amount on one line) announced every
    group of the day as withdrawn while the lake kept its rows: a consumer then summed 0. Nothing is announced now."""
    good = {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.10", "0.10"), ali(2, "2024-05-01", "oss", "2.00", "0")]}
    server = AlibabaBillServer(AK, SK, json.loads(json.dumps(good)))
    now = datetime(2024, 5, 10, tzinfo=timezone.utc)
    try:
        store, events_file = _with_events(tmp_path, server, monkeypatch)
        pulling.run(store, "alibaba", [MAY1], now=now)
        bad = json.loads(json.dumps(good))
        bad["2024-05-01"][1]["AdjustAmount"] = "123456789012345678901234.5"
        server.data = bad
        pulling.run(store, "alibaba", [MAY1], now=now)
    finally:
        server.close()
    latest = _consumer(events_file)
    assert sorted((d["ProductCode"], d["PretaxAmount"]) for d in latest.values()) == [("ecs", "1"), ("oss", "2")]
    (rec,) = [r for r in runs.load_all(store) if r.exportType == "Pull"]
    assert len(rec.pull["subjects"]) == 2  # still known, for a later version's withdrawals


def _pull_may1(tmp_path, monkeypatch, server) -> runs.RunRecord:
    """May 1 pulled from ``server`` (closed after), its run record."""
    try:
        store = make_hub(tmp_path, "alibaba", server, monkeypatch)
        (rec,) = pull.pull(store, "alibaba", [MAY1], Settings.model_validate_json(
            (tmp_path / "config/settings.json").read_text())).records
    finally:
        server.close()
    return rec


def test_pages_that_repeat_stop_at_the_announced_count(tmp_path, monkeypatch):
    """Review of stop 32: a server answering page 1 with a NextToken again and again was paged for the whole time
    budget (30 minutes by default)."""
    class Looping(AlibabaBillServer):
        def describe_instance_bill(self, params):
            return super().describe_instance_bill({**params, "NextToken": None})  # always page 1, with a token

    rec = _pull_may1(tmp_path, monkeypatch, Looping(AK, SK, {"2024-05-01": [ali(i, "2024-05-01", "ecs", "1.00", "0")
                                                                            for i in range(1, 5)]}))
    assert rec.state == "quarantined" and rec.error.code == "PullMalformedResponse"
    assert "page 2 repeats an earlier page's lines" in rec.error.message  # (before the count is passed, since stop 41)


@pytest.mark.parametrize("count", ["²", "３"])
def test_a_record_count_in_other_digits_is_malformed(tmp_path, monkeypatch, count):
    class OddCount(AlibabaBillServer):
        def describe_instance_bill(self, params):
            reply = super().describe_instance_bill(params)
            body = json.loads(reply.body)
            body["Data"]["TotalCount"] = count
            return Reply(reply.status, json.dumps(body, ensure_ascii=False), reply.headers)

    rec = _pull_may1(tmp_path, monkeypatch, OddCount(AK, SK, {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.00", "0")]}))
    assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse")  # "²" was an InternalError, "３" read as 3


@pytest.mark.parametrize("day, message", [(None, "1 without their day"), ("2024-04-15", "1 of another day")])
def test_a_days_pull_holds_lines_of_that_day_only(tmp_path, monkeypatch, day, message):
    """Review of stop 32: May 1's lines without BillingDate were charged over all of May (the mapping's fallback); a
    line dated April 15 was filed under May, and counted twice once April 15 was pulled too."""
    odd = ali(2, "2024-05-01", "ecs", "2.00", "0")
    if day is None:
        del odd["BillingDate"]
    else:
        odd["BillingDate"] = day
    rec = _pull_may1(tmp_path, monkeypatch, AlibabaBillServer(AK, SK, {"2024-05-01": [ali(1, "2024-05-01", "ecs", "1.00", "0"),
                                                                                       odd]}))
    assert (rec.state, rec.error.code) == ("quarantined", "PullMalformedResponse")
    assert f"{message} among the day's bill lines" in rec.error.message
