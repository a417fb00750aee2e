"""Huawei Cloud: ``ListCustomerselfResourceRecordDetails`` (BSS v2) through ``huaweicloudsdkbssintl`` (international
site) or ``huaweicloudsdkbss`` (China site).

One day (``statistic_type`` 2, ``query_type`` DAILY, ``bill_cycle_begin`` = ``bill_cycle_end`` = the day, zero
records included), paged by ``offset``/``limit`` against ``total_count``. The raw body is parsed with every number
kept as its text; the response's ``currency`` is a column of every line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hub.pull.retry import Failure, is_count
from hub.pull.retry import detail as describe
from hub.settings import PullProvider

if TYPE_CHECKING:
    from hub.pull import Period

Call = Callable[[Callable[[], Any], str], Any]


def client(cfg: PullProvider, creds: dict[str, str], endpoint: str) -> Any:
    from huaweicloudsdkcore.auth.credentials import GlobalCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig

    if cfg.site == "china":
        from huaweicloudsdkbss.v2 import BssClient as Client
    else:
        from huaweicloudsdkbssintl.v2 import BssintlClient as Client
    http = HttpConfig.get_default_config()
    http.retry_times = 0  # retries are the hub's (hub.pull.retry), with its backoff and time budget
    http.timeout = (cfg.request_timeout_seconds, cfg.request_timeout_seconds)
    url = cfg.endpoint or endpoint
    url = url if url.startswith(("http://", "https://")) else f"https://{url}"
    credentials = GlobalCredentials(creds["ak"], creds["sk"], creds["domain_id"])
    return Client.new_builder().with_credentials(credentials).with_endpoints([url.rstrip("/")]).with_http_config(http).build()


def pages(api: Any, period: Period, size: int, call: Call) -> Iterator[tuple[list[dict], dict]]:
    """The day's resource records, a page at a time, with the response's currency as a constant."""
    module = type(api).__module__.split(".")[0]
    models = __import__(f"{module}.v2", fromlist=["ListCustomerselfResourceRecordDetailsRequest", "QueryResRecordsDetailReq"])
    day, offset = period.first, 0
    while True:
        body = models.QueryResRecordsDetailReq(cycle=day.strftime("%Y-%m"), statistic_type=2, query_type="DAILY",
                                               bill_cycle_begin=day.isoformat(), bill_cycle_end=day.isoformat(),
                                               include_zero_record=True, offset=offset, limit=size)
        request = models.ListCustomerselfResourceRecordDetailsRequest(body=body)
        parsed = call(lambda r=request: _parse(getattr(api.list_customerself_resource_record_details(r), "raw_content", None)),
                      "ListCustomerselfResourceRecordDetails")
        records = parsed.get("monthly_records") or []
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise Failure("malformed", "monthly_records is not a list of records")
        yield records, {"currency": parsed.get("currency"), "_total": parsed.get("total_count")}
        offset += len(records)
        total = parsed.get("total_count")
        if not records or total is None or offset >= int(total):
            return


def _parse(raw: Any) -> dict:
    try:
        parsed = json.loads(raw, parse_float=str, parse_int=str) if isinstance(raw, (bytes, str)) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "total_count" not in parsed or not is_count(parsed["total_count"]):
        raise Failure("malformed", "the response is not JSON with monthly_records and total_count")
    return parsed


def classify(exc: BaseException) -> Failure:
    """An SDK exception as a :class:`Failure`: by HTTP status and Huawei's error code."""
    from huaweicloudsdkcore.exceptions import exceptions as sdk

    if isinstance(exc, Failure):
        return exc
    status = getattr(exc, "status_code", None)
    code = str(getattr(exc, "error_code", "") or "")
    detail = describe(exc, code)
    if status in (401, 403) or code in ("APIGW.0301", "APIGW.0101", "APIGW.0303", "APIGW.0305", "CBC.0150", "CBC.0151"):
        return Failure("auth", detail)
    if status == 429 or code in ("APIGW.0308", "CBC.0255"):
        return Failure("throttled", detail)
    if isinstance(status, int) and status >= 500:
        return Failure("server", detail)
    if isinstance(exc, (sdk.ConnectionException, sdk.RequestTimeoutException, ConnectionError, TimeoutError)):
        return Failure("network", detail)
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return Failure("malformed", detail)
    return Failure("invalid", detail)
