"""Alibaba Cloud: ``DescribeInstanceBill`` (BssOpenApi 2017-12-14) through ``alibabacloud-bssopenapi20171214``.

One day, daily granularity, billable-item level (``IsBillingItem``: usage, unit and list price per line), paged by
``NextToken``. The SDK's typed response turns amounts into floats; the raw body is read instead (the same signed call
through the client's ``call_api``, body as text) and parsed with every number kept as its text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hub.pull.retry import Failure
from hub.pull.retry import detail as describe
from hub.settings import PullProvider

if TYPE_CHECKING:
    from hub.pull import Period

Call = Callable[[Callable[[], Any], str], Any]


def client(cfg: PullProvider, creds: dict[str, str], endpoint: str) -> Any:
    from alibabacloud_bssopenapi20171214.client import Client
    from alibabacloud_tea_openapi.models import Config

    host, protocol = _host(cfg.endpoint or endpoint)
    timeout = int(cfg.request_timeout_seconds * 1000)
    return Client(Config(access_key_id=creds["access_key_id"], access_key_secret=creds["access_key_secret"], endpoint=host,
                         protocol=protocol, read_timeout=timeout, connect_timeout=timeout))


def _host(endpoint: str) -> tuple[str, str]:
    """``host[:port]`` and ``http``/``https`` from an endpoint setting."""
    for scheme in ("http", "https"):
        if endpoint.startswith(f"{scheme}://"):
            return endpoint[len(scheme) + 3:].rstrip("/"), scheme
    return endpoint.rstrip("/"), "https"


def pages(api: Any, period: Period, size: int, call: Call) -> Iterator[tuple[list[dict], dict]]:
    """The day's bill lines, a page at a time, with the response's account and cycle as constants."""
    from alibabacloud_bssopenapi20171214 import models
    from alibabacloud_tea_openapi import utils_models
    from alibabacloud_tea_openapi.utils import Utils
    from alibabacloud_tea_util.models import RuntimeOptions

    params = utils_models.Params(action="DescribeInstanceBill", version="2017-12-14", protocol="HTTPS", pathname="/",
                                 method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="string")
    day, token, sent = period.first, None, set()
    while True:
        request = models.DescribeInstanceBillRequest(billing_cycle=day.strftime("%Y-%m"), billing_date=day.isoformat(),
                                                     granularity="DAILY", is_billing_item=True, max_results=size,
                                                     next_token=token)
        request.validate()
        query = utils_models.OpenApiRequest(query=Utils.query(request.to_map()))
        data = call(lambda q=query: _data(api.call_api(params, q, RuntimeOptions(autoretry=False))), "DescribeInstanceBill")
        items = data.get("Items")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise Failure("malformed", "Data.Items is not a list of bill lines")
        constants = {k: data.get(k) for k in ("BillingCycle", "AccountID", "AccountName")}
        constants["_total"] = data.get("TotalCount")
        yield items, constants
        token = data.get("NextToken") or None
        if token is not None and not isinstance(token, str):
            raise Failure("malformed", "DescribeInstanceBill returned a NextToken that is not text")
        if not token or not items:
            return
        if token in sent:  # pages that would repeat for ever (until the time budget)
            raise Failure("malformed", "DescribeInstanceBill returned a NextToken it returned before")
        sent.add(token)


def _data(raw: Any) -> dict:
    """``Data`` of a response (numbers as text); a body that is not the documented one is malformed."""
    body = raw.get("body") if isinstance(raw, dict) else None
    try:
        parsed = json.loads(body, parse_float=str, parse_int=str) if isinstance(body, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and str(parsed.get("Success", "true")).lower() == "false":  # an error answered with 200
        code = str(parsed.get("Code") or "")  # (Throttling.User, InternalError: often without Data)
        raise _kind(code, None, f"{code}: {parsed.get('Message')}")
    if not isinstance(parsed, dict) or not isinstance(parsed.get("Data"), dict):
        raise Failure("malformed", "the response is not JSON with a Data object")
    return parsed["Data"]


def classify(exc: BaseException) -> Failure:
    """An SDK exception as a :class:`Failure`: by HTTP status and Alibaba's error code."""
    if isinstance(exc, Failure):
        return exc
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
    code = str(getattr(exc, "code", "") or "")
    if status is None and not code and isinstance(exc, (ValueError, KeyError, TypeError)):
        return Failure("malformed", describe(exc, code))  # an answer the SDK's model could not read, not the network
    return _kind(code, status, describe(exc, code))


def _kind(code: str, status: object, detail: str) -> Failure:
    if code.startswith(("InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "IncompleteSignature", "NoPermission",
                        "InvalidSecurityToken")) or status in (401, 403):
        return Failure("auth", detail)
    if "Throttling" in code or status == 429:
        return Failure("throttled", detail)
    if isinstance(status, int) and status >= 500 or code.startswith(("ServiceUnavailable", "InternalError")):
        return Failure("server", detail)
    if status is None and not code:
        return Failure("network", detail)
    return Failure("invalid", detail)
