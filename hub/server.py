"""``hub serve``: the cost-analysis query over HTTP, wire-compatible with Huawei Cloud's "Querying Cost Data" API.

``POST /v4/costs/cost-analysed-bills/query`` takes and returns the bodies of :mod:`hub.cost_analysis`. One
catalog connection is opened at startup; each request runs on its own cursor (its own temp tables, shared
views). Invalid requests answer 400 ``{"error_code": "CBC.0100", "error_msg": ...}``, anything unexpected 500
``CBC.0999`` (logged, never sent). OpenAPI at ``/openapi.json``, docs at ``/docs``, liveness at ``/healthz``.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import duckdb
from fastapi import FastAPI, Header, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import catalog
from hub.cost_analysis import CostQuery, CostQueryError, CostResult, ErrorBody, query_costs
from hub.errors import UsageError
from hub.store import Store

log = logging.getLogger(__name__)

INVALID = "CBC.0100"
INTERNAL = "CBC.0999"
TOO_SLOW = "CBC.0998"
UNAUTHORIZED = "CBC.0401"


def _env_number(name: str, default: str, cast: Callable[[str], float], low: float, high: float | None = None) -> Any:
    """A number from the environment; a bad one is a usage error naming the variable (never a traceback)."""
    raw = os.environ.get(name, default)
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or not value >= low or (high is not None and not value <= high):  # NaN too
        bounds = f"from {low:g} to {high:g}" if high is not None else f"of at least {low:g}"
        raise UsageError(f"{name}={raw!r}: must be a number {bounds}")
    return value


#: Largest request body accepted (a full request of 100 filters x 100 values fits many times over).
MAX_BODY = _env_number("HUB_API_MAX_BODY", str(256 * 1024), int, 1024)
#: Seconds a query may run before it is interrupted (``HUB_API_TIMEOUT``).
QUERY_TIMEOUT = _env_number("HUB_API_TIMEOUT", "30", float, 0.1, 86400)  # inf would never interrupt (a timer overflow)
#: DuckDB memory limit and threads of the server's connection (``HUB_API_MEMORY_LIMIT``, ``HUB_API_THREADS``).
MEMORY_LIMIT = os.environ.get("HUB_API_MEMORY_LIMIT", "1GB")
THREADS = _env_number("HUB_API_THREADS", "2", int, 1, 1024)  # a huge one failed as "Out of Memory"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: The names a request to a tokenless server may give its host (``Host`` header, port aside).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MISDIRECTED = "CBC.0421"
QUERY_PATH = "/v4/costs/cost-analysed-bills/query"
#: Seconds between looks at the datasets that had no file when the views were made (files arrived: views made again).
VIEWS_CHECK_SECONDS = 10.0
_MAX_MSG = 500
_SPACE = re.compile(r"\s+")


class Health(BaseModel):
    status: str


def _error(status: int, code: str, message: str) -> JSONResponse:
    text = _SPACE.sub(" ", "".join(c if c.isprintable() else " " for c in message)).strip()
    text = text if len(text) <= _MAX_MSG else text[:_MAX_MSG - 3] + "..."
    return JSONResponse(status_code=status, content=ErrorBody(error_code=code, error_msg=text or "invalid request").model_dump())


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> str:
    """One line naming the first invalid field (``time_condition.begin_time: Field required``)."""
    errors = list(exc.errors())
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        why = (first.get("ctx") or {}).get("error")
        text = f"request body is not valid JSON{f' ({why})' if why else ''}"
    else:
        text = f"{_field(first.get('loc', ()))}: {first.get('msg', 'invalid value')}"
    return text + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


def _unpaired_surrogate(value: object, path: str = "") -> str | None:
    """The field holding text that is not valid Unicode (a lone ``\\ud800`` escape in the JSON), if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
    elif isinstance(value, dict):
        for k, v in value.items():
            if found := _unpaired_surrogate(v, f"{path}.{k}" if path else str(k)):
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := _unpaired_surrogate(v, f"{path}.{i}"):
                return found
    return None


#: Largest request head (target and headers; h11 lets a head that arrives whole through at any size).
MAX_HEAD = 16 * 1024


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes is answered 413, whether it announces its length or
    is sent in chunks (read here up to the limit, then handed to the app); a head (target and headers) over
    :data:`MAX_HEAD` bytes is 431."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or [])
        if head > MAX_HEAD:
            return await _error(431, INVALID, f"request headers over {MAX_HEAD} bytes")(scope, receive, send)
        too_large = _error(413, INVALID, f"request body over {self.limit} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_large(scope, receive, send)
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
            if size > self.limit:
                return await too_large(scope, receive, send)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _host_name(header: str) -> str:
    """A ``Host`` header's name, lower case, without its port (``[::1]:8080`` -> ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if ":" in header else header


def token_required(host: str) -> str | None:
    """The API token (``HUB_API_TOKEN``); a usage error when the server would listen beyond loopback without one, or
    when the token is one no client can send (white space, a line break, non-ASCII)."""
    token = os.environ.get("HUB_API_TOKEN") or None
    if token is not None and not re.fullmatch(r"[\x21-\x7e]{1,4096}", token):
        raise UsageError("HUB_API_TOKEN must be printable ASCII without spaces or line breaks (a header cannot carry "
                         "anything else, so no request could match it)")
    if token is None and host not in LOOPBACK:
        raise UsageError(f"--host {host} listens beyond this machine: set HUB_API_TOKEN (clients then send "
                         "'Authorization: Bearer <token>' or 'X-Auth-Token: <token>')")
    return token


def create_app(root: str | Store, *, token: str | None = None, hosts: tuple[str, ...] | None = None) -> FastAPI:
    """The API over the lake at ``root``; with ``token``, every request but /healthz must carry it; with ``hosts``, a
    request naming another host (its ``Host`` header, without the port) is refused (421)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.con = catalog.store_connection(hub_store, threads=THREADS, memory_limit=MEMORY_LIMIT)
        app.state.empty, app.state.checked = catalog.create_views(app.state.con, hub_store), time.monotonic()
        try:
            yield
        finally:
            app.state.con.close()

    app = FastAPI(
        title="FinOps hub cost analysis",
        version="1.0",
        description="Cost data of the FinOps hub lake, queried through an API wire-compatible with Huawei Cloud's "
                    "BSS \"Querying Cost Data\" (`POST /v4/costs/cost-analysed-bills/query`): same request and "
                    "response bodies, errors as `{error_code, error_msg}` (`CBC.0100`: invalid parameter, "
                    "`CBC.0999`: internal error). Amounts are decimal strings in one billing currency.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    cursor_lock = threading.Lock()
    hub_store = root if isinstance(root, Store) else Store(root)

    if hosts is not None:
        @app.middleware("http")
        async def same_host(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            # a tokenless server on loopback answers loopback names only: a web page whose name the attacker's DNS
            # turns to 127.0.0.1 (DNS rebinding) is same-origin with it, so the browser would let it read and write
            host = request.headers.get("host")  # none: an HTTP/1.0 health check (a browser always names the host)
            if host is not None and _host_name(host) not in hosts:
                return _error(421, MISDIRECTED, "this server answers requests to 127.0.0.1, localhost or [::1] only "
                                                "(set HUB_API_TOKEN to serve others)")
            return await call_next(request)

    if token is not None:
        @app.middleware("http")
        async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if request.url.path == "/healthz":
                return await call_next(request)
            given = request.headers.get("x-auth-token") or ""
            bearer = request.headers.get("authorization") or ""
            if bearer.lower().startswith("bearer "):
                given = bearer[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, UNAUTHORIZED, "a valid token is required (Authorization: Bearer <token> or X-Auth-Token)")
            return await call_next(request)

    def views_again() -> None:
        """The views made again (called holding ``cursor_lock``): a dataset's files are gone, or some came. A lake file
        DuckDB cannot read yet (a custom drop being written) keeps the views as they were until the next look."""
        app.state.checked = time.monotonic()
        try:
            app.state.empty = catalog.create_views(app.state.con, hub_store)
        except duckdb.Error as exc:
            log.warning("views not made again: %s", str(exc).splitlines()[0][:300])

    def cursor() -> duckdb.DuckDBPyConnection:
        with cursor_lock:
            # a dataset that had no file when the views were made is an empty view: looked at again now and then
            if app.state.empty and time.monotonic() - app.state.checked >= VIEWS_CHECK_SECONDS:
                app.state.checked = time.monotonic()
                if any(catalog.has_files(hub_store, d) for d in app.state.empty):
                    views_again()
            cur = app.state.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")  # settings are per connection: a cursor starts with the machine's zone
        return cur

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, INVALID, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # a body FastAPI cannot read (not UTF-8, broken form data)
            return _error(400, INVALID, f"body: {exc.detail}")
        if exc.status_code in (404, 405):  # no such path, or not with this method: the API's error body too
            answer = _error(exc.status_code, f"CBC.0{exc.status_code}", f"{request.method} {request.url.path}: {exc.detail}")
            answer.headers.update(exc.headers or {})  # 405's Allow
            return answer
        return await http_exception_handler(request, exc)  # 413, ... as FastAPI answers them

    @app.exception_handler(CostQueryError)
    async def invalid_query(request: Request, exc: CostQueryError) -> JSONResponse:
        return _error(400, exc.code, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, INTERNAL, "internal error")

    @app.post(
        QUERY_PATH,
        response_model=CostResult,
        summary="Query cost data (Huawei Cloud compatible)",
        description="Costs per day or month over an inclusive period, grouped by up to two dimensions or one tag "
                    "plus one dimension, filtered and paged, as in Huawei Cloud's \"Querying Cost Data\" API.",
        responses={400: {"model": ErrorBody, "description": "Invalid parameter (`CBC.0100`)"},
                   401: {"model": ErrorBody, "description": "Token missing or wrong (`CBC.0401`), when the server has one"},
                   413: {"model": ErrorBody, "description": "Request body too large (`CBC.0100`)"},
                   500: {"model": ErrorBody, "description": "Internal error (`CBC.0999`)"},
                   503: {"model": ErrorBody, "description": "Query over the time limit (`CBC.0998`)"}},
        tags=["costs"],
    )
    def query(body: CostQuery,
              x_language: Annotated[str | None, Header(alias="X-Language",
                                                       description="Huawei's response language; ignored")] = None,
              ) -> CostResult | JSONResponse:
        if bad := _unpaired_surrogate(body.model_dump()):
            raise CostQueryError(f"{bad}: text is not valid Unicode (unpaired surrogate)")
        for attempt in range(2):
            cur = cursor()
            timer = threading.Timer(QUERY_TIMEOUT, cur.interrupt)  # a query over the limit is stopped, not left running
            timer.start()
            try:
                return query_costs(cur, body)
            except CostQueryError:
                raise
            except duckdb.InterruptException:
                return _error(503, TOO_SLOW, f"the query ran longer than {QUERY_TIMEOUT:g} s: narrow the period or the filters")
            except Exception as exc:
                if attempt == 0 and catalog.emptied(exc):  # a dataset without files now (retention removed its last
                    with cursor_lock:  # month): views made again, the query once more
                        views_again()
                    continue
                log.exception("cost query failed (%d groupby, %d filters)", len(body.groupby), len(body.filters or []))
                return _error(500, INTERNAL, "internal error")
            finally:
                timer.cancel()
                cur.close()
        raise AssertionError("unreachable")

    from hub.allocation import api as allocation_api
    from hub.inspection import api as inspection_api

    allocation_api.routes(app, hub_store, _error)
    inspection_api.routes(app, hub_store, _error)

    @app.get("/healthz", response_model=Health, tags=["meta"], summary="Liveness")
    def healthz() -> Health:
        return Health(status="ok")

    def openapi() -> dict[str, Any]:
        """FastAPI's schema without its 422 responses: validation errors answer 400 ``ErrorBody`` here."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def check(root: str | Store) -> None:
    """What would stop the server once started, as one usage error now: the memory limit, the lake's views."""
    try:
        duckdb.connect(config={"memory_limit": MEMORY_LIMIT}).close()
    except duckdb.Error:
        raise UsageError(f"HUB_API_MEMORY_LIMIT={MEMORY_LIMIT!r}: not a memory size DuckDB takes (e.g. 1GB, 512MB)") from None
    try:
        catalog.connect(root, threads=THREADS, memory_limit=MEMORY_LIMIT).close()
    except duckdb.Error as exc:
        raise UsageError(f"cannot open the lake: {str(exc).splitlines()[0][:300]}") from None


def serve(root: str | Store, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the API with uvicorn until interrupted (a token is required beyond loopback: :func:`token_required`)."""
    import uvicorn

    token = token_required(host)
    hosts = None if token is not None else LOOPBACK_NAMES  # without a token: loopback names only (DNS rebinding)
    uvicorn.run(create_app(root, token=token, hosts=hosts), host=host, port=port, log_level="info",
                h11_max_incomplete_event_size=64 * 1024)
