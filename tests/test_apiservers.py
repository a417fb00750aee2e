"""The local billing API servers of ``apiservers``, driven by each provider's real SDK."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from alibabacloud_bssopenapi20171214 import models as ali_models
from alibabacloud_bssopenapi20171214.client import Client as AliClient
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from alibabacloud_tea_openapi.models import Config, OpenApiRequest, Params
from apiservers import AlibabaBillServer, HuaweiBillServer, TencentBillServer, dumps
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions
from huaweicloudsdkbss.v2 import BssClient, ListCustomerselfResourceRecordDetailsRequest, QueryResRecordsDetailReq
from huaweicloudsdkcore.auth.credentials import GlobalCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ServerResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from tencentcloud.billing.v20180709 import billing_client
from tencentcloud.billing.v20180709 import models as tc_models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

AK, SK = "AKIDtest0001", "s3cret-key"
DAY, CYCLE = "2024-05-01", "2024-05"
EXACT = "0.1000000001"  # a float would print 0.1000000001 too, but not 12.300000000000000001
LONG = Decimal("12.300000000000000001")


def _loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


# --- Alibaba ---------------------------------------------------------------------------------------------------------

ALI_ROWS = [{"InstanceID": f"i-{i}", "BillingDate": DAY, "PretaxAmount": EXACT, "PretaxGrossAmount": LONG} for i in range(5)]
ALI_PARAMS = Params(action="DescribeInstanceBill", version="2017-12-14", protocol="HTTP", pathname="/", method="POST",
                    auth_type="AK", style="RPC", req_body_type="formData", body_type="string")
NO_RETRY = RuntimeOptions(autoretry=False)


@pytest.fixture
def ali() -> Iterator[AlibabaBillServer]:
    with AlibabaBillServer(AK, SK, {DAY: ALI_ROWS, "2024-05-02": [{"InstanceID": "other-day"}]}) as server:
        yield server


def ali_client(server: AlibabaBillServer, secret: str = SK, key: str = AK) -> AliClient:
    return AliClient(Config(access_key_id=key, access_key_secret=secret, endpoint=f"127.0.0.1:{server.port}", protocol="http"))


def ali_call(client: AliClient, **query: Any) -> dict[str, Any]:
    query = {"BillingCycle": CYCLE, "BillingDate": DAY, "Granularity": "DAILY", "IsBillingItem": "True", **query}
    return client.call_api(ALI_PARAMS, OpenApiRequest(query={k: str(v) for k, v in query.items()}), NO_RETRY)


def test_alibaba_pages_a_day_with_exact_amounts(ali: AlibabaBillServer) -> None:
    client, items, token, pages = ali_client(ali), [], None, 0
    while True:
        raw = ali_call(client, MaxResults=2, **({"NextToken": token} if token else {}))["body"]
        data = _loads(raw)["Data"]
        items += data["Items"]
        pages += 1
        assert (data["BillingCycle"], data["TotalCount"], data["AccountID"]) == (CYCLE, 5, ali.account_id)
        if not (token := data.get("NextToken")):
            break
    assert pages == 3 and [i["InstanceID"] for i in items] == [f"i-{i}" for i in range(5)]
    assert {i["PretaxAmount"] for i in items} == {Decimal(EXACT)} and {i["PretaxGrossAmount"] for i in items} == {LONG}
    assert f'"PretaxGrossAmount":{LONG}' in raw and f'"PretaxAmount":{EXACT}' in raw
    sent = ali.requests
    assert [r.query.get("NextToken") is None for r in sent] == [True, False, False]
    assert sent[0].query["MaxResults"] == "2" and sent[0].headers["x-acs-action"] == "DescribeInstanceBill"
    assert sent[0].method == "POST" and sent[0].headers["authorization"].startswith(f"ACS3-HMAC-SHA256 Credential={AK},")

    typed = ali_client(ali).describe_instance_bill_with_options(
        ali_models.DescribeInstanceBillRequest(billing_cycle=CYCLE, granularity="MONTHLY", max_results=300), NO_RETRY)
    assert typed.body.data.total_count == 6 and typed.body.data.next_token is None
    assert [i["InstanceID"] for i in _loads(ali_call(client, InstanceID="i-3")["body"])["Data"]["Items"]] == ["i-3"]


def test_alibaba_refuses_bad_credentials(ali: AlibabaBillServer) -> None:
    with pytest.raises(ClientException) as bad_secret:
        ali_call(ali_client(ali, secret="wrong"))
    assert (bad_secret.value.code, bad_secret.value.status_code) == ("SignatureDoesNotMatch", 400)
    assert {"RequestId", "HostId", "Code", "Message", "Recommend"} <= set(bad_secret.value.data)
    with pytest.raises(ClientException) as bad_key:
        ali_call(ali_client(ali, key="AKIDnobody"))
    assert (bad_key.value.code, bad_key.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)

    ali_call(ali_client(ali))
    first = ali.requests[-1]
    conn = http.client.HTTPConnection("127.0.0.1", ali.port, timeout=5)
    conn.request(first.method, "/?" + "&".join(f"{k}={v}" for k, v in first.query.items()), headers=first.headers)
    replay = conn.getresponse()
    assert (replay.status, json.loads(replay.read())["Code"]) == (400, "SignatureNonceUsed")


@pytest.mark.parametrize(("query", "code"), [
    ({"MaxResults": 301}, "InvalidParameter"),
    ({"MaxResults": 0}, "InvalidParameter"),
    ({"BillingDate": "2024-06-01"}, "InvalidParameter"),
    ({"BillingCycle": "2024-13"}, "InvalidParameter"),
    ({"Granularity": "HOURLY"}, "InvalidParameter"),
    ({"NextToken": "made-up"}, "InvalidParameter"),
    ({"BillingCycle": ""}, "MissingBillingCycle"),
])
def test_alibaba_checks_parameters(ali: AlibabaBillServer, query: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientException) as err:
        ali_call(ali_client(ali), **query)
    assert (err.value.code, err.value.status_code) == (code, 400)


def test_alibaba_faults(ali: AlibabaBillServer) -> None:
    client = ali_client(ali)
    ali.throttle(1)
    with pytest.raises(ClientException) as throttled:
        ali_call(client)
    assert (throttled.value.code, throttled.value.status_code) == ("Throttling.User", 400)
    ali.fail(2, status=503)
    for _ in range(2):
        with pytest.raises(ServerException) as failed:
            ali_call(client)
        assert (failed.value.code, failed.value.status_code) == ("ServiceUnavailable", 503)
    ali.malformed(1)
    with pytest.raises(json.JSONDecodeError):
        _loads(ali_call(client)["body"])
    ali.malformed(1)
    with pytest.raises(UnretryableException) as unparsable:
        client.describe_instance_bill_with_options(ali_models.DescribeInstanceBillRequest(billing_cycle=CYCLE), NO_RETRY)
    assert "Failed to parse the value as json" in str(unparsable.value.inner_exception)
    ali.malformed(1, kind="json")
    assert "Data" not in _loads(ali_call(client)["body"])
    assert len(_loads(ali_call(client)["body"])["Data"]["Items"]) == 5
    assert len(ali.requests) == 7


# --- Huawei ----------------------------------------------------------------------------------------------------------

HW_ROWS = [{"res_instance_id": f"r-{i}", "bill_date": DAY, "consume_amount": EXACT, "official_amount": LONG} for i in range(5)]


@pytest.fixture
def hw() -> Iterator[HuaweiBillServer]:
    with HuaweiBillServer(AK, SK, {DAY: HW_ROWS, "2024-05-02": [{"res_instance_id": "other-day"}]}, currency="USD") as server:
        yield server


def hw_client(server: HuaweiBillServer, secret: str = SK) -> BssClient:
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (BssClient.new_builder().with_credentials(GlobalCredentials(AK, secret, "domain-1"))
            .with_endpoints([server.url]).with_http_config(config).build())


def hw_request(**body: Any) -> ListCustomerselfResourceRecordDetailsRequest:
    body = {"cycle": CYCLE, "statistic_type": 2, "query_type": "DAILY", "bill_cycle_begin": DAY, "bill_cycle_end": DAY,
            "offset": 0, "limit": 1000, "include_zero_record": True, **body}
    return ListCustomerselfResourceRecordDetailsRequest(body=QueryResRecordsDetailReq(**body))


def test_huawei_pages_a_day_with_exact_amounts(hw: HuaweiBillServer) -> None:
    client, records, offset = hw_client(hw), [], 0
    while True:
        response = client.list_customerself_resource_record_details(hw_request(offset=offset, limit=2))
        assert (response.total_count, response.currency) == (5, "USD")
        records += response.monthly_records
        offset += 2
        if offset >= response.total_count:
            break
    assert len(hw.requests) == 3 and [r.res_instance_id for r in records] == [f"r-{i}" for i in range(5)]
    assert {r.consume_amount for r in records} == {Decimal(EXACT)} and {r.official_amount for r in records} == {LONG}
    raw = response.raw_content.decode()
    assert f'"official_amount":{LONG}' in raw and _loads(raw)["monthly_records"][0]["consume_amount"] == Decimal(EXACT)
    sent = hw.requests[1]
    assert (sent.method, sent.path, sent.body["offset"], sent.body["limit"]) == ("POST", HuaweiBillServer.PATH, 2, 2)
    assert sent.headers["x-domain-id"] == "domain-1" and "x-sdk-date" in sent.headers["authorization"]

    month = client.list_customerself_resource_record_details(hw_request(statistic_type=1, query_type=None))
    assert month.total_count == 6
    assert client.list_customerself_resource_record_details(hw_request(res_instance_id="r-2")).total_count == 1


def test_huawei_refuses_bad_credentials(hw: HuaweiBillServer) -> None:
    with pytest.raises(ClientRequestException) as err:
        hw_client(hw, secret="wrong").list_customerself_resource_record_details(hw_request())
    assert (err.value.error_code, err.value.status_code) == ("APIGW.0301", 401)
    assert err.value.error_msg.startswith("Incorrect IAM authentication information") and err.value.request_id


@pytest.mark.parametrize("body", [
    {"limit": 1001}, {"limit": 0}, {"offset": -1}, {"cycle": "2024-5"}, {"bill_cycle_end": "2024-06-01"},
    {"bill_cycle_begin": None}, {"statistic_type": 1}, {"query_type": "WEEKLY"},
])
def test_huawei_checks_parameters(hw: HuaweiBillServer, body: dict[str, Any]) -> None:
    with pytest.raises(ClientRequestException) as err:
        hw_client(hw).list_customerself_resource_record_details(hw_request(**body))
    assert (err.value.error_code, err.value.status_code) == ("CBC.0100", 400)


def test_huawei_faults(hw: HuaweiBillServer) -> None:
    client = hw_client(hw)
    hw.throttle(1)
    with pytest.raises(ClientRequestException) as throttled:
        client.list_customerself_resource_record_details(hw_request())
    assert (throttled.value.error_code, throttled.value.status_code) == ("APIGW.0308", 429)
    hw.fail(1, status=500)
    with pytest.raises(ServerResponseException) as failed:
        client.list_customerself_resource_record_details(hw_request())
    assert (failed.value.error_code, failed.value.status_code) == ("CBC.0999", 500)
    hw.malformed(1)
    garbled = client.list_customerself_resource_record_details(hw_request())
    assert garbled.monthly_records is None
    with pytest.raises(json.JSONDecodeError):
        _loads(garbled.raw_content)
    hw.malformed(1, kind="json")
    partial = client.list_customerself_resource_record_details(hw_request())
    assert (partial.monthly_records, partial.total_count, partial.currency) == (None, None, "USD")
    assert len(client.list_customerself_resource_record_details(hw_request()).monthly_records) == 5


# --- Tencent ---------------------------------------------------------------------------------------------------------

TC_ROWS = [{"ResourceId": f"ins-{i}", "FeeBeginTime": f"{DAY} 00:00:00", "BusinessCode": "p_cvm",
            "ComponentSet": [{"Cost": EXACT, "RealCost": LONG}]} for i in range(5)]
TC_QUERY = {"Offset": 0, "Limit": 2, "BeginTime": f"{DAY} 00:00:00", "EndTime": f"{DAY} 23:59:59", "NeedRecordNum": 1}


@pytest.fixture
def tc() -> Iterator[TencentBillServer]:
    with TencentBillServer(AK, SK, {DAY: TC_ROWS, "2024-06-01": [{"ResourceId": "next-month"}]}) as server:
        yield server


def tc_client(server: TencentBillServer, secret: str = SK) -> billing_client.BillingClient:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=f"127.0.0.1:{server.port}", protocol="http"))
    return billing_client.BillingClient(credential.Credential(AK, secret), "", profile)


def tc_describe(client: billing_client.BillingClient, **query: Any) -> tc_models.DescribeBillDetailResponse:
    request = tc_models.DescribeBillDetailRequest()
    request.from_json_string(json.dumps({**TC_QUERY, **query}))
    return client.DescribeBillDetail(request)


def test_tencent_pages_a_month_with_exact_amounts(tc: TencentBillServer) -> None:
    client, details, contexts = tc_client(tc), [], [None]
    while True:
        query = {**TC_QUERY, "Offset": len(details), **({"Context": contexts[-1]} if contexts[-1] else {})}
        response = client.call_json("DescribeBillDetail", query)["Response"]
        details += response["DetailSet"]
        contexts.append(response["Context"])
        if len(details) >= response["Total"]:
            break
    assert len(tc.requests) == 3 and [d["ResourceId"] for d in details] == [f"ins-{i}" for i in range(5)]
    assert {(d["ComponentSet"][0]["Cost"], d["ComponentSet"][0]["RealCost"]) for d in details} == {(EXACT, str(LONG))}
    sent = tc.requests[2]
    assert (sent.body["Offset"], sent.body["Limit"], sent.body["Context"]) == (4, 2, contexts[2])
    assert sent.headers["x-tc-action"] == "DescribeBillDetail" and sent.headers["x-tc-version"] == "2018-07-09"
    assert sent.headers["authorization"].startswith(f"TC3-HMAC-SHA256 Credential={AK}/")

    typed = tc_describe(client, Limit=300)
    assert typed.Total == 5 and typed.DetailSet[4].ComponentSet[0].Cost == EXACT
    assert tc_describe(client, NeedRecordNum=0).Total is None
    assert tc_describe(client, BusinessCode="p_cbs").Total == 0


@pytest.mark.parametrize(("secret", "code"), [("wrong", "AuthFailure.SignatureFailure"), (SK, "AuthFailure.SignatureExpire")])
def test_tencent_refuses_bad_credentials(tc: TencentBillServer, monkeypatch: pytest.MonkeyPatch, secret: str, code: str) -> None:
    if code == "AuthFailure.SignatureExpire":
        late = time.time() - 600
        monkeypatch.setattr("tencentcloud.common.abstract_client.time.time", lambda: late)
    with pytest.raises(TencentCloudSDKException) as err:
        tc_describe(tc_client(tc, secret))
    assert err.value.code == code and err.value.requestId


def test_tencent_refuses_unknown_key(tc: TencentBillServer) -> None:
    client = billing_client.BillingClient(credential.Credential("AKIDnobody", SK), "", tc_client(tc).profile)
    with pytest.raises(TencentCloudSDKException) as err:
        tc_describe(client)
    assert err.value.code == "AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize(("query", "code"), [
    ({"Limit": 301}, "InvalidParameterValue"),
    ({"Limit": 0}, "InvalidParameterValue"),
    ({"Offset": -1}, "InvalidParameterValue"),
    ({"Offset": None}, "MissingParameter"),
    ({"EndTime": "2024-06-01 00:00:00"}, "InvalidParameterValue"),
    ({"BeginTime": None, "EndTime": None}, "InvalidParameterValue"),
    ({"Context": "made-up"}, "InvalidParameterValue"),
])
def test_tencent_checks_parameters(tc: TencentBillServer, query: dict[str, Any], code: str) -> None:
    with pytest.raises(TencentCloudSDKException) as err:
        tc_client(tc).call_json("DescribeBillDetail", {k: v for k, v in {**TC_QUERY, **query}.items() if v is not None})
    assert err.value.code == code


def test_tencent_faults(tc: TencentBillServer) -> None:
    client = tc_client(tc)
    tc.throttle(1)
    with pytest.raises(TencentCloudSDKException) as throttled:
        tc_describe(client)
    assert throttled.value.code == "RequestLimitExceeded"
    tc.fail(1, status=502)
    with pytest.raises(TencentCloudSDKException) as failed:
        tc_describe(client)
    assert failed.value.code == "ServerNetworkError" and b"InternalError" in failed.value.message
    tc.fail(1, status=200)
    with pytest.raises(TencentCloudSDKException) as in_band:
        tc_describe(client)
    assert in_band.value.code == "InternalError"
    tc.malformed(1)
    with pytest.raises(TencentCloudSDKException) as garbled:
        tc_describe(client)
    assert garbled.value.code == "JSONDecodeError"
    tc.malformed(1, kind="json")
    partial = tc_describe(client)
    assert partial.DetailSet is None and partial.RequestId
    assert len(tc_describe(client).DetailSet) == 2


# --- Shared ----------------------------------------------------------------------------------------------------------


def test_dumps_writes_numbers_verbatim() -> None:
    text = dumps({"a": "0.10", "b": Decimal("1E-7"), "c": "0.10", "d": [Decimal("-0.000")]}, frozenset({"a"}))
    assert text == '{"a":0.10,"b":1E-7,"c":"0.10","d":[-0.000]}'
    with pytest.raises(ValueError, match="not a JSON number"):
        dumps({"a": "1,5"}, frozenset({"a"}))


def test_server_lifecycle() -> None:
    server = HuaweiBillServer(AK, SK)
    assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
    response = hw_client(server).list_customerself_resource_record_details(hw_request())
    assert (response.total_count, response.monthly_records) == (0, [])
    server.close()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=1).connect()
