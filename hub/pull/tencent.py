"""Tencent Cloud: ``DescribeBillDetail`` (Billing 2018-07-09) through ``tencentcloud-sdk-python-billing``.

The API answers whole months (a ``BeginTime``/``EndTime`` query returns the month's data, per its reference), so a
pull is a month to date (``Month``), paged by ``Offset``/``Limit`` against ``Total`` with the ``Context`` cursor passed
on. The response is read as JSON (``call_json``: every field, including
those the SDK's models do not know yet, such as the components' ``Currency`` and ``TaxAmount``); amounts are strings.
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
    from tencentcloud.billing.v20180709 import billing_client
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    url = cfg.endpoint or endpoint
    protocol = "http" if url.startswith("http://") else "https"
    host = url.split("://", 1)[-1].rstrip("/")
    http = HttpProfile(protocol=protocol, endpoint=host, reqTimeout=int(cfg.request_timeout_seconds))
    return _client_class(billing_client.BillingClient)(credential.Credential(creds["secret_id"], creds["secret_key"]), "",
                                                       ClientProfile(httpProfile=http))


#: An HTTP status other than 200 (a gateway's answer: the API's own errors come with 200) as Tencent's error code.
STATUS_CODES = {401: "AuthFailure", 403: "AuthFailure", 404: "InvalidAction", 429: "RequestLimitExceeded"}


def _client_class(base: type) -> type:
    """The SDK's client, telling a non-200 answer by its status (the SDK calls every one ``ServerNetworkError``:
    a refused key or a missing action would be retried as a server failure)."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    class Client(base):  # type: ignore[misc, valid-type]
        def _check_status(self, resp_inter: Any) -> None:
            status = int(resp_inter.status_code)
            if status != 200:
                code = STATUS_CODES.get(status, "ServerNetworkError" if status >= 500 else "InvalidParameter")
                raise TencentCloudSDKException(code, f"HTTP {status} from the API endpoint")

    return Client


def pages(api: Any, period: Period, size: int, call: Call) -> Iterator[tuple[list[dict], dict]]:
    """The month's bill details (one per resource transaction, each with its components), a page at a time."""
    offset, context = 0, None
    while True:
        params: dict[str, Any] = {"Offset": offset, "Limit": size, "Month": f"{period.first:%Y-%m}", "NeedRecordNum": 1}
        if context:
            params["Context"] = context
        response = call(lambda p=params: _parse(api.call("DescribeBillDetail", p)), "DescribeBillDetail")
        details = response.get("DetailSet") or []
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            raise Failure("malformed", "Response.DetailSet is not a list of bill details")
        yield details, {"_total": response.get("Total")}
        offset += len(details)
        context = response.get("Context") or None
        total = response.get("Total")
        if total is None:  # asked for (NeedRecordNum): without it the end of the data cannot be told
            raise Failure("malformed", "Response.Total is missing although NeedRecordNum was 1")
        if not details or offset >= int(total):
            return


def _parse(raw: Any) -> dict:
    """``Response`` of a body; an error body raises the SDK's own exception type through :func:`classify`."""
    try:
        parsed = json.loads(raw, parse_float=str, parse_int=str) if isinstance(raw, (bytes, str)) else None
    except ValueError:
        parsed = None
    response = parsed.get("Response") if isinstance(parsed, dict) else None
    if not isinstance(response, dict):
        raise Failure("malformed", "the response is not JSON with a Response object")
    if isinstance(response.get("Error"), dict):
        error = response["Error"]
        raise _kind(str(error.get("Code") or ""), f"{error.get('Code')}: {error.get('Message')}")
    if "Total" in response and not is_count(response["Total"]):
        raise Failure("malformed", "Response.Total is not a count")
    if "DetailSet" not in response:
        raise Failure("malformed", "the response has no DetailSet")
    return response


def _kind(code: str, detail: str) -> Failure:
    if code.startswith(("AuthFailure", "UnauthorizedOperation")):
        return Failure("auth", detail)
    if code.startswith(("RequestLimitExceeded", "LimitExceeded")):
        return Failure("throttled", detail)
    if code.startswith(("InternalError", "ServiceUnavailable", "ResourceUnavailable", "ServerNetworkError",
                        "ClientNetworkError")):
        return Failure("server", detail)
    return Failure("invalid", detail)


def classify(exc: BaseException) -> Failure:
    """An SDK exception (``TencentCloudSDKException``, whose ``code`` is Tencent's error code) as a :class:`Failure`."""
    if isinstance(exc, Failure):
        return exc
    code = str(getattr(exc, "code", "") or "")
    detail = describe(exc, code)
    if code:
        return _kind(code, detail)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return Failure("network", detail)
    return Failure("malformed", detail)
