"""Local HTTP servers that speak three cloud billing APIs, for tests that drive the providers' real SDKs.

Each server listens on 127.0.0.1 (port 0, daemon thread), checks every request the way the provider documents it,
serves records from ``data`` (``{"YYYY-MM-DD": [record, ...]}``), logs what it received in ``requests`` and can be
told to throttle, fail or answer garbage for the next requests. Faults are served before any check.

Alibaba Cloud BSS OpenAPI ``DescribeInstanceBill`` (2017-12-14), :class:`AlibabaBillServer`
  Verified: ACS3-HMAC-SHA256 (V3) signature over method, path, canonical query, every signed header (which must
  cover host, content-type and all x-acs-* headers), and the body hash (x-acs-content-sha256 must match the body);
  x-acs-date within 15 minutes; a signature nonce used once; x-acs-action / x-acs-version; BillingCycle (YYYY-MM,
  required), Granularity (MONTHLY|DAILY), BillingDate (YYYY-MM-DD in the cycle, required for DAILY), MaxResults
  (1..300, default 20), NextToken (only tokens this server issued for the same query), boolean flags.
  Paging: MaxResults + opaque NextToken, absent on the last page; TotalCount. Amounts are JSON numbers.
  - https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
  - https://www.alibabacloud.com/help/en/user-center/developer-reference/api-bssopenapi-2017-12-14-describeinstancebill
  - gateway error codes (InvalidAccessKeyId.NotFound 404, SignatureDoesNotMatch 400, Throttling.User 400,
    Missing{Name} 400, SignatureNonceUsed, InvalidTimeStamp.Expired): https://developer.aliyun.com/ask/278265
    Some product pages list 400 / 403 for the first two instead; the gateway table above is the one used here.
  - error body shape (RequestId, HostId, Code, Message, Recommend): seen in real answers quoted in
    https://github.com/NewFuture/DDNS/issues/57; message texts of parameter errors are not documented and made up.

Huawei Cloud BSS ``ListCustomerselfResourceRecordDetails`` (POST /v2/bills/customer-bills/res-records/query),
:class:`HuaweiBillServer`
  Verified: SDK-HMAC-SHA256 (APIG AK/SK) signature: canonical request of method, canonical URI (each segment
  URI-encoded, ending in "/"), canonical query, signed headers (X-Sdk-Date must be signed), hex SHA-256 of the body
  (or UNSIGNED-PAYLOAD via X-Sdk-Content-Sha256); string to sign "SDK-HMAC-SHA256\\n<X-Sdk-Date>\\n<hash>"; HMAC with
  the SK; X-Sdk-Date within 15 minutes. Body: cycle (YYYY-MM, required), statistic_type (1|2|3), query_type
  (BILLCYCLE|DAILY; DAILY only with statistic_type 2 or 3 and then bill_cycle_begin/end, YYYY-MM-DD, in the cycle),
  offset >= 0, limit 1..1000 (default 10), filters. Paging: offset/limit + total_count. Amounts are JSON numbers.
  - https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-001.html (AK/SK signing)
  - https://support.huaweicloud.com/intl/en-us/api-oce/mbc_00003.html (Viewing Resource Usage Details)
  - https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-errorcode.html (APIGW.0101 / 0301 / 0308)
  - CBC.0100 (400, parameter error): the BSS API reference's error code table; CBC.0999 for 5xx is from memory of
    that table, not checked. APIGW message texts follow real answers quoted in public code; the texts for a malformed
    Authorization header and a stale X-Sdk-Date, and what the gateway sends on 502/503, are not documented here.

Tencent Cloud Billing ``DescribeBillDetail`` (2018-07-09), :class:`TencentBillServer`
  Verified: TC3-HMAC-SHA256 (signature v3): canonical request over method, "/", query, the signed headers
  (content-type and host required, lower-cased), hex SHA-256 of the payload; credential scope date == UTC date of
  X-TC-Timestamp, service "billing"; timestamp within 5 minutes; X-TC-Action / X-TC-Version. Body: Offset (>= 0)
  and Limit (1..300, per the SDK's copy of the API doc) required, Month (yyyy-mm) or BeginTime and EndTime
  (yyyy-mm-dd hh:ii:ss, same month), NeedRecordNum, Context (only cursors this server issued for that month).
  The doc says a BeginTime/EndTime query returns the whole month, so the whole month is served. Paging:
  Offset/Limit, Total (only with NeedRecordNum=1) and a Context cursor. Amounts are JSON strings. Errors are HTTP
  200 with {"Response": {"Error": {...}, "RequestId": ...}}.
  - https://www.tencentcloud.com/document/product/555/30750 (Signature v3)
  - https://www.tencentcloud.com/document/api/555/30756 (DescribeBillDetail)
  - https://www.tencentcloud.com/document/api/1036/38589 (common error codes, the same for every product)
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

Records = dict[str, list[dict[str, Any]]]
_S = TypeVar("_S", bound="ApiServer")

_JSON_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Received:
    """One request as it came in: header names lower-cased, body parsed as JSON or a form where it is one."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = field(repr=False)


@dataclass
class Reply:
    """What the server answers."""

    status: int
    body: str | bytes
    headers: dict[str, str] = field(default_factory=dict)


def dumps(value: Any, numbers: frozenset[str] = frozenset()) -> str:
    """JSON text in which a ``Decimal``, or a string under a key in ``numbers``, is written verbatim as a number."""

    def enc(v: Any, key: str | None) -> str:
        if isinstance(v, dict):
            return "{" + ",".join(f"{json.dumps(str(k))}:{enc(x, str(k))}" for k, x in v.items()) + "}"
        if isinstance(v, list | tuple):
            return "[" + ",".join(enc(x, key) for x in v) + "]"
        if isinstance(v, Decimal) or (isinstance(v, str) and key in numbers):
            if not _JSON_NUMBER.fullmatch(text := str(v)):
                raise ValueError(f"{key}: {text!r} is not a JSON number")
            return text
        return json.dumps(v)

    return enc(value, None)


def _parse_day(text: Any) -> dt.date | None:
    """A YYYY-MM-DD date, or None when ``text`` is not one."""
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _month_days(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of a YYYY-MM month."""
    year, mon = int(month[:4]), int(month[5:7])
    return dt.date(year, mon, 1), dt.date(year, mon, calendar.monthrange(year, mon)[1])


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _rfc3986(text: str) -> str:
    return quote(text, safe="~")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        ctype = headers.get("content-type", "")
        body: Any = raw.decode("utf-8", "replace") or None
        if "json" in ctype:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        elif "x-www-form-urlencoded" in ctype:
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        reply = self.server.api.dispatch(Received(self.command, url.path or "/", query, headers, body, raw))
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        self.send_response(reply.status)
        for name, value in {"Content-Type": self.server.api.content_type, **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        drip = getattr(self.server.api, "drip_seconds", 0.0)  # a slow server: the body in 20 slices, this far apart
        step = max(1, len(data) // 20) if drip else len(data) or 1
        for i in range(0, len(data), step):
            try:
                self.wfile.write(data[i:i + step])
                self.wfile.flush()
            except OSError:  # the client gave up
                return
            if drip:
                time.sleep(drip)

    do_GET = do_POST = _serve

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: ApiServer


class ApiServer:
    """A provider API on 127.0.0.1: lifecycle, request log and fault queue. Subclasses answer the API itself."""

    content_type = "application/json"
    max_skew = 15 * 60

    def __init__(self, access_key_id: str, access_key_secret: str, data: Records | None = None) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.data: Records = data if data is not None else {}
        self.requests: list[Received] = []
        self._faults: deque[Callable[[Received], Reply]] = deque()
        self._tokens: dict[str, Any] = {}
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.api = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name=type(self).__name__, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def throttle(self, n: int = 1) -> None:
        """Answer the next ``n`` requests with the provider's throttling error."""
        self._queue(n, self.throttled)

    def fail(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with a server error of HTTP ``status`` and the provider's body."""
        self._queue(n, lambda rec: self.server_error(rec, status))

    def malformed(self, n: int = 1, kind: Literal["text", "json"] = "text") -> None:
        """Answer the next ``n`` requests with 200 and a body that is not JSON ("text") or lacks the fields ("json")."""
        self._queue(n, self.incomplete if kind == "json" else lambda rec: Reply(200, '{"RequestId": "cut-off'))

    def _queue(self, n: int, fault: Callable[[Received], Reply]) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def dispatch(self, rec: Received) -> Reply:
        with self._lock:
            self.requests.append(rec)
            fault = self._faults.popleft() if self._faults else None
        return fault(rec) if fault else self.handle(rec)

    def records(self, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
        """The data set's records of the days ``first`` to ``last``, in day order."""
        days = sorted(d for d in self.data if (day := _parse_day(d)) and first <= day <= last)
        return [r for d in days for r in self.data[d]]

    def issue(self, state: Any) -> str:
        """An opaque paging token standing for ``state``."""
        token = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
        with self._lock:
            self._tokens[token] = state
        return token

    def redeem(self, token: str) -> Any:
        """The state a token stands for, or None for a token this server never issued."""
        with self._lock:
            return self._tokens.get(token)

    def fresh_nonce(self, nonce: str) -> bool:
        """True the first time a nonce is seen."""
        with self._lock:
            seen = nonce in self._nonces
            self._nonces.add(nonce)
        return not seen

    def skewed(self, when: dt.datetime) -> bool:
        """True when a request time is further from now than the provider allows."""
        return abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) > self.max_skew

    def handle(self, rec: Received) -> Reply:
        raise NotImplementedError

    def throttled(self, rec: Received) -> Reply:
        raise NotImplementedError

    def server_error(self, rec: Received, status: int) -> Reply:
        raise NotImplementedError

    def incomplete(self, rec: Received) -> Reply:
        raise NotImplementedError


@dataclass
class _Invalid(Exception):
    """A request the API refuses: rendered by the provider's error writer."""

    status: int
    code: str
    message: str


class AlibabaBillServer(ApiServer):
    """Alibaba Cloud BSS OpenAPI ``DescribeInstanceBill``; point ``Config(endpoint=f"127.0.0.1:{port}", protocol="http")``."""

    ACTION, VERSION = "DescribeInstanceBill", "2017-12-14"
    NUMBERS = frozenset({
        "AdjustAmount", "AfterDiscountAmount", "CashAmount", "DeductedByCashCoupons", "DeductedByCoupons",
        "DeductedByPrepaidCard", "InvoiceDiscount", "OutstandingAmount", "PaymentAmount", "PretaxAmount",
        "PretaxGrossAmount",
    })
    FILTERS = ("ProductCode", "ProductType", "SubscriptionType", "InstanceID")
    _AUTH = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})")

    def __init__(self, access_key_id: str, access_key_secret: str, data: Records | None = None, *,
                 account_id: str = "1234567890123456", account_name: str = "finops@example.com") -> None:
        super().__init__(access_key_id, access_key_secret, data)
        self.account_id, self.account_name = account_id, account_name

    def error(self, rec: Received, status: int, code: str, message: str) -> Reply:
        rid = str(uuid.uuid4()).upper()
        recommend = f"https://api.aliyun.com/troubleshoot?q={code}&product=BssOpenApi&requestId={rid}"
        host = rec.headers.get("host", "business.aliyuncs.com")
        return Reply(status, dumps({"RequestId": rid, "HostId": host, "Code": code, "Message": message,
                                    "Recommend": recommend}))

    def throttled(self, rec: Received) -> Reply:
        return self.error(rec, 400, "Throttling.User", "Request was denied due to user flow control.")

    def server_error(self, rec: Received, status: int) -> Reply:
        if status == 503:
            return self.error(rec, 503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
        return self.error(rec, status, "InternalError",
                          "The request processing has failed due to some unknown error, exception or failure.")

    def incomplete(self, rec: Received) -> Reply:
        return Reply(200, dumps({"RequestId": str(uuid.uuid4()).upper(), "Success": True}))

    def handle(self, rec: Received) -> Reply:
        try:
            self.authenticate(rec)
            if rec.headers.get("x-acs-action") != self.ACTION or rec.headers.get("x-acs-version") != self.VERSION:
                raise _Invalid(404, "InvalidApi.NotFound", "Specified api is not found, please check your url and method.")
            return self.describe_instance_bill({**(rec.body if isinstance(rec.body, dict) else {}), **rec.query})
        except _Invalid as e:
            return self.error(rec, e.status, e.code, e.message)

    def authenticate(self, rec: Received) -> None:
        """Check the V3 signature; raise the gateway's error when it does not hold."""
        match = self._AUTH.fullmatch(rec.headers.get("authorization", ""))
        if not match:
            raise _Invalid(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        key_id, signed, signature = match.groups()
        if key_id != self.access_key_id:
            raise _Invalid(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        names = signed.split(";")
        must = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        must |= {h for h in rec.headers if h.startswith("x-acs-") or h == "content-type"}
        payload = _sha256(rec.raw)
        if names != sorted(names) or not must <= set(names) or not set(names) <= set(rec.headers):
            raise _Invalid(400, "SignatureDoesNotMatch", f"Specified signature is not matched with our calculation. "
                           f"SignedHeaders must be sorted and include {sorted(must)}.")
        if rec.headers["x-acs-content-sha256"] != payload:
            raise _Invalid(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. "
                           "x-acs-content-sha256 is not the hash of the body.")
        query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(rec.query.items()))
        headers = "".join(f"{n}:{rec.headers[n].strip()}\n" for n in names)
        canonical = f"{rec.method}\n{rec.path}\n{query}\n{headers}\n{signed}\n{payload}"
        to_sign = f"ACS3-HMAC-SHA256\n{_sha256(canonical)}"
        if not hmac.compare_digest(_hmac(self.access_key_secret.encode(), to_sign).hex(), signature):
            raise _Invalid(400, "SignatureDoesNotMatch",
                           f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}")
        try:
            when = dt.datetime.strptime(rec.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise _Invalid(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.") from None
        if self.skewed(when):
            raise _Invalid(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if not self.fresh_nonce(rec.headers["x-acs-signature-nonce"]):
            raise _Invalid(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

    def describe_instance_bill(self, params: dict[str, str]) -> Reply:
        def invalid(name: str, why: str) -> _Invalid:
            return _Invalid(400, "InvalidParameter", f"The specified parameter {name} is not valid: {why}.")

        cycle = params.get("BillingCycle")
        if not cycle:
            raise _Invalid(400, "MissingBillingCycle", "BillingCycle is mandatory for this action.")
        if not _MONTH.fullmatch(cycle):
            raise invalid("BillingCycle", "expected YYYY-MM")
        for flag in ("IsBillingItem", "IsHideZeroCharge"):
            if params.get(flag, "false").lower() not in ("true", "false"):
                raise invalid(flag, "expected true or false")
        first, last = _month_days(cycle)
        granularity = params.get("Granularity") or "MONTHLY"
        if granularity == "DAILY":
            day = _parse_day(params.get("BillingDate"))
            if day is None or not first <= day <= last:
                raise invalid("BillingDate", f"Granularity DAILY needs a YYYY-MM-DD date in {cycle}")
            first = last = day
        elif granularity != "MONTHLY":
            raise invalid("Granularity", "expected MONTHLY or DAILY")
        size = params.get("MaxResults") or "20"
        if not size.isdigit() or not 1 <= int(size) <= 300:
            raise invalid("MaxResults", "expected 1..300")
        hide_zero = params.get("IsHideZeroCharge", "").lower() == "true"
        query = (cycle, first, last, hide_zero, *(params.get(f) for f in self.FILTERS))
        offset = 0
        if token := params.get("NextToken"):
            state = self.redeem(token)
            if state is None or state[0] != query:
                raise invalid("NextToken", "not a token returned for this query")
            offset = state[1]

        def shown(r: dict[str, Any]) -> bool:
            zero = all(Decimal(str(r.get(a, 0))) == 0 for a in ("PretaxGrossAmount", "PretaxAmount"))
            return all(params.get(f) in (None, "", r.get(f)) for f in self.FILTERS) and not (hide_zero and zero)

        rows = [r for r in self.records(first, last) if shown(r)]
        end = offset + int(size)
        data: dict[str, Any] = {"BillingCycle": cycle, "AccountID": self.account_id, "AccountName": self.account_name,
                                "TotalCount": len(rows), "MaxResults": int(size), "Items": rows[offset:end]}
        if end < len(rows):
            data["NextToken"] = self.issue((query, end))
        body = {"Code": "Success", "Message": "Successful!", "RequestId": str(uuid.uuid4()).upper(), "Success": True,
                "Data": data}
        return Reply(200, dumps(body, self.NUMBERS))


class HuaweiBillServer(ApiServer):
    """Huawei Cloud BSS ``ListCustomerselfResourceRecordDetails``; point ``with_endpoints([server.url])``."""

    PATH = "/v2/bills/customer-bills/res-records/query"
    NUMBERS = frozenset({
        "consume_amount", "cash_amount", "credit_amount", "coupon_amount", "flexipurchase_coupon_amount",
        "stored_card_amount", "bonus_amount", "debt_amount", "adjustment_amount", "official_amount", "discount_amount",
        "period_num",
    })
    FILTERS = {"cloud_service_type": "cloud_service_type", "resource_type": "resource_type_code", "region": "region",
               "res_instance_id": "res_instance_id", "charge_mode": "charge_mode", "bill_type": "bill_type",
               "enterprise_project_id": "enterprise_project_id"}
    _AUTH = re.compile(r"SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})")

    def __init__(self, access_key_id: str, access_key_secret: str, data: Records | None = None, *,
                 currency: str = "CNY") -> None:
        super().__init__(access_key_id, access_key_secret, data)
        self.currency = currency

    def error(self, status: int, code: str, message: str) -> Reply:
        rid = uuid.uuid4().hex
        return Reply(status, dumps({"error_code": code, "error_msg": message, "request_id": rid}), {"X-Request-Id": rid})

    def throttled(self, rec: Received) -> Reply:
        return self.error(429, "APIGW.0308", "The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 second")

    def server_error(self, rec: Received, status: int) -> Reply:
        return self.error(status, "CBC.0999", "Other errors.")

    def incomplete(self, rec: Received) -> Reply:
        return Reply(200, dumps({"currency": self.currency}), {"X-Request-Id": uuid.uuid4().hex})

    def handle(self, rec: Received) -> Reply:
        try:
            if rec.method != "POST" or rec.path != self.PATH:
                raise _Invalid(404, "APIGW.0101", "The API does not exist or has not been published in the environment")
            self.authenticate(rec)
            reply = self.list_records(rec.body)
            reply.headers["X-Request-Id"] = uuid.uuid4().hex
            return reply
        except _Invalid as e:
            return self.error(e.status, e.code, e.message)

    def authenticate(self, rec: Received) -> None:
        """Check the SDK-HMAC-SHA256 signature; raise APIGW.0301 when it does not hold."""

        def refuse(why: str) -> _Invalid:
            return _Invalid(401, "APIGW.0301", f"Incorrect IAM authentication information: {why}")

        match = self._AUTH.fullmatch(rec.headers.get("authorization", ""))
        if not match:
            raise refuse("Authorization header format incorrect")
        key_id, signed, signature = match.groups()
        if key_id != self.access_key_id:
            raise refuse(f"Get secretKey failed,ak:{key_id},err:ak not exist")
        names = signed.split(";")
        if "x-sdk-date" not in names or not set(names) <= set(rec.headers):
            raise refuse("verify aksk signature fail")
        segments = [_rfc3986(s) for s in unquote(rec.path).split("/")]
        uri = "/".join(segments) if rec.path.endswith("/") else "/".join(segments) + "/"
        query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(rec.query.items()))
        headers = "".join(f"{n}:{rec.headers[n].strip()}\n" for n in names)
        unsigned = rec.raw and rec.headers.get("x-sdk-content-sha256") == "UNSIGNED-PAYLOAD"
        payload = "UNSIGNED-PAYLOAD" if unsigned else _sha256(rec.raw)
        canonical = f"{rec.method}\n{uri}\n{query}\n{headers}\n{signed}\n{payload}"
        to_sign = f"SDK-HMAC-SHA256\n{rec.headers['x-sdk-date']}\n{_sha256(canonical)}"
        if not hmac.compare_digest(_hmac(self.access_key_secret.encode(), to_sign).hex(), signature):
            raise refuse("verify aksk signature fail")
        try:
            when = dt.datetime.strptime(rec.headers["x-sdk-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise refuse("X-Sdk-Date is not in YYYYMMDDTHHMMSSZ format") from None
        if self.skewed(when):
            raise refuse("X-Sdk-Date is more than 15 minutes from the server time")

    def list_records(self, body: Any) -> Reply:
        def invalid(why: str) -> _Invalid:
            return _Invalid(400, "CBC.0100", f"Invalid parameter: {why}.")

        if not isinstance(body, dict):
            raise invalid("the request body is not a JSON object")
        cycle = body.get("cycle")
        if not isinstance(cycle, str) or not _MONTH.fullmatch(cycle):
            raise invalid("cycle must be YYYY-MM")
        statistic_type = body.get("statistic_type") if body.get("statistic_type") is not None else 1
        query_type = body.get("query_type") or "BILLCYCLE"
        offset = body.get("offset") if body.get("offset") is not None else 0
        limit = body.get("limit") if body.get("limit") is not None else 10
        if statistic_type not in (1, 2, 3) or isinstance(statistic_type, bool):
            raise invalid("statistic_type must be 1, 2 or 3")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise invalid("offset must be an integer >= 0")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise invalid("limit must be 1..1000")
        if body.get("include_zero_record") not in (None, True, False):
            raise invalid("include_zero_record must be a boolean")
        first, last = _month_days(cycle)
        if query_type == "DAILY":
            if statistic_type not in (2, 3):
                raise invalid("query_type DAILY needs statistic_type 2 or 3")
            begin, end = _parse_day(body.get("bill_cycle_begin")), _parse_day(body.get("bill_cycle_end"))
            if begin is None or end is None or not first <= begin <= end <= last:
                raise invalid(f"bill_cycle_begin and bill_cycle_end must be YYYY-MM-DD dates in {cycle}, begin <= end")
            first, last = begin, end
        elif query_type != "BILLCYCLE":
            raise invalid("query_type must be BILLCYCLE or DAILY")
        rows = [r for r in self.records(first, last)
                if all(body.get(k) in (None, "", r.get(f)) for k, f in self.FILTERS.items())
                and not (body.get("include_zero_record") is False and Decimal(str(r.get("consume_amount", 1))) == 0)]
        page = {"monthly_records": rows[offset:offset + limit], "currency": self.currency, "total_count": len(rows)}
        return Reply(200, dumps(page, self.NUMBERS))


class TencentBillServer(ApiServer):
    """Tencent Cloud Billing ``DescribeBillDetail``; point ``HttpProfile(endpoint=f"127.0.0.1:{port}", protocol="http")``.

    ``fail(n, status)`` answers InternalError with that HTTP status: 5xx is what a load balancer in front would send,
    200 is how the API itself reports an internal error.
    """

    ACTION, VERSION, SERVICE = "DescribeBillDetail", "2018-07-09", "billing"
    FILTERS = {"ResourceId": "ResourceId", "BusinessCode": "BusinessCode", "ProjectId": "ProjectId",
               "ActionType": "ActionTypeName"}
    max_skew = 5 * 60
    _AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=([^/\s]+)/(\d{4}-\d{2}-\d{2})/([\w-]+)/tc3_request, "
                       r"SignedHeaders=([^,\s]+), Signature=([0-9a-f]{64})")
    _TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

    def error(self, code: str, message: str, status: int = 200) -> Reply:
        return Reply(status, json.dumps({"Response": {"Error": {"Code": code, "Message": message},
                                                      "RequestId": str(uuid.uuid4())}}))

    def throttled(self, rec: Received) -> Reply:
        return self.error("RequestLimitExceeded", "The number of requests exceeds the frequency limit.")

    def server_error(self, rec: Received, status: int) -> Reply:
        return self.error("InternalError", "Internal error.", status)

    def incomplete(self, rec: Received) -> Reply:
        return Reply(200, json.dumps({"Response": {"RequestId": str(uuid.uuid4())}}))

    def handle(self, rec: Received) -> Reply:
        try:
            self.authenticate(rec)
            if rec.headers.get("x-tc-action") != self.ACTION:
                raise _Invalid(200, "InvalidAction", f"The action `{rec.headers.get('x-tc-action')}` is not found.")
            if rec.headers.get("x-tc-version") != self.VERSION:
                raise _Invalid(200, "NoSuchVersion", "The API version does not exist.")
            params = rec.body if rec.method == "POST" else rec.query
            return self.describe_bill_detail(params)
        except _Invalid as e:
            return self.error(e.code, e.message)

    def authenticate(self, rec: Received) -> None:
        """Check the TC3-HMAC-SHA256 signature; raise the AuthFailure.* error when it does not hold."""
        match = self._AUTH.fullmatch(rec.headers.get("authorization", ""))
        if not match:
            raise _Invalid(200, "AuthFailure.InvalidAuthorization", "Authorization in the request header is invalid.")
        key_id, date, service, signed, signature = match.groups()
        if key_id != self.access_key_id:
            raise _Invalid(200, "AuthFailure.SecretIdNotFound",
                           "The SecretId is not found, please ensure that your SecretId is correct.")
        failure = _Invalid(200, "AuthFailure.SignatureFailure",
                           "The provided credentials could not be validated. Please check your signature is correct.")
        names = signed.split(";")
        stamp = rec.headers.get("x-tc-timestamp", "")
        if not {"content-type", "host"} <= set(names) or not set(names) <= set(rec.headers) or not stamp.isdigit():
            raise failure
        when = dt.datetime.fromtimestamp(int(stamp), dt.timezone.utc)
        if service != self.SERVICE or date != when.strftime("%Y-%m-%d"):
            raise failure
        query = "" if rec.method == "POST" else "&".join(f"{k}={_rfc3986(v)}" for k, v in sorted(rec.query.items()))
        headers = "".join(f"{n}:{rec.headers[n].strip().lower()}\n" for n in names)
        unsigned = rec.headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD"
        payload = _sha256("UNSIGNED-PAYLOAD" if unsigned else rec.raw)
        canonical = f"{rec.method}\n{rec.path}\n{query}\n{headers}\n{signed}\n{payload}"
        to_sign = f"TC3-HMAC-SHA256\n{stamp}\n{date}/{service}/tc3_request\n{_sha256(canonical)}"
        key = _hmac(_hmac(_hmac(f"TC3{self.access_key_secret}".encode(), date), service), "tc3_request")
        if not hmac.compare_digest(_hmac(key, to_sign).hex(), signature):
            raise failure
        if self.skewed(when):
            now = int(dt.datetime.now(dt.timezone.utc).timestamp())
            raise _Invalid(200, "AuthFailure.SignatureExpire", f"Signature expired. Timestamp: {stamp}, server time: {now}")

    def describe_bill_detail(self, params: Any) -> Reply:
        if not isinstance(params, dict):
            raise _Invalid(200, "InvalidParameter", "The request body is not a JSON object.")
        for name in ("Offset", "Limit"):
            if params.get(name) is None:
                raise _Invalid(200, "MissingParameter", f"The request is missing a required parameter `{name}`.")
            if not isinstance(params[name], int) or isinstance(params[name], bool):
                raise _Invalid(200, "InvalidParameter", f"The parameter `{name}` must be an integer.")
        offset, limit = params["Offset"], params["Limit"]
        if offset < 0:
            raise _Invalid(200, "InvalidParameterValue", "The value of `Offset` must be >= 0.")
        if not 1 <= limit <= 300:
            raise _Invalid(200, "InvalidParameterValue", "The value of `Limit` must be in 1..300.")
        begin, end, month = params.get("BeginTime"), params.get("EndTime"), params.get("Month")
        if begin or end:
            if not all(isinstance(t, str) and self._TIME.fullmatch(t) for t in (begin, end)):
                raise _Invalid(200, "InvalidParameterValue", "BeginTime and EndTime must both be yyyy-mm-dd hh:ii:ss.")
            if begin[:7] != end[:7] or begin > end:
                raise _Invalid(200, "InvalidParameterValue", "BeginTime and EndTime must be in the same month, in order.")
            month = begin[:7]
        if not isinstance(month, str) or not _MONTH.fullmatch(month):
            raise _Invalid(200, "InvalidParameterValue", "Month (yyyy-mm) or BeginTime and EndTime is required.")
        if params.get("NeedRecordNum") not in (None, 0, 1):
            raise _Invalid(200, "InvalidParameterValue", "NeedRecordNum must be 0 or 1.")
        if (context := params.get("Context")) and self.redeem(context) != month:
            raise _Invalid(200, "InvalidParameterValue", "Context is not one returned for this month.")
        rows = [r for r in self.records(*_month_days(month))
                if all(params.get(k) in (None, "", r.get(f)) for k, f in self.FILTERS.items())]
        response: dict[str, Any] = {"DetailSet": rows[offset:offset + limit], "Context": self.issue(month),
                                    "RequestId": str(uuid.uuid4())}
        if params.get("NeedRecordNum") == 1:
            response["Total"] = len(rows)
        return Reply(200, json.dumps({"Response": response}, default=str))
