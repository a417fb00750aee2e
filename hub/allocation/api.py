"""The allocation's HTTP API in ``hub serve``, Dynatrace-shaped: the cost-center and product allowlists
(``/v1/accounts/{account}/settings/costcenters|products``: list with ``page`` / ``page-size``, replace, add, delete),
the change audit log, and the cost-allocation records (``/v1/cost-allocation``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Annotated, Literal

import duckdb
from fastapi import FastAPI, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from hub.allocation import allowlists, reports
from hub.allocation.rules import Rules, load
from hub.cost_analysis import ErrorBody
from hub.errors import UsageError
from hub.store import Store

#: Dynatrace's field names in the path -> dimensions.
FIELDS = {"costcenters": "cost_center", "products": "product"}
Field_ = Literal["costcenters", "products"]
ERRORS = {400: {"model": ErrorBody, "description": "Invalid request (`CBC.0100`)"},
          401: {"model": ErrorBody, "description": "Token missing or wrong (`CBC.0401`), when the server has one"},
          404: {"model": ErrorBody, "description": "No allocation rules, dimension, allowlist or value (`CBC.0404`)"},
          413: {"model": ErrorBody, "description": "Request body too large (`CBC.0100`)"}}
Account = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$",
                              description="The account (any name: one hub is one account)")]


class FieldValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=128, pattern=r"\S", description="The value")


class FieldValues(BaseModel):
    """Dynatrace's ``FieldValuesRequestDto``, with the hub's own optional ``reason`` and ``validFrom``."""

    model_config = ConfigDict(extra="forbid")
    values: list[FieldValue] = Field(max_length=200, description="At most 200 values a request (add more with POST)")
    reason: str | None = Field(None, max_length=500, description="Why (kept in the audit log)")
    validFrom: date | None = Field(None, description="First day the change counts (a past day needs a reason)")


class FieldValuePage(BaseModel):
    records: list[FieldValue]
    hasNextPage: bool


class AllocationRecord(BaseModel):
    date: str
    capability: str
    key: str
    currency: str | None = Field(description="Billing currency of `costs` (an extension: amounts of different currencies "
                                 "are separate records)")
    costs: str
    usage: int


class AllocationPage(BaseModel):
    records: list[AllocationRecord]
    hasNextPage: bool


class AuditRecord(BaseModel):
    at: str
    who: str
    list: str
    dimension: str
    action: str
    old: list[str]
    new: list[str]
    reason: str | None = None
    validFrom: str | None = None


class AuditPage(BaseModel):
    records: list[AuditRecord]
    hasNextPage: bool


Page = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]
PageSize = Annotated[int, Query(alias="page-size", ge=1, le=1000, description="Entries per page")]
User = Annotated[str | None, Header(alias="X-Hub-User", max_length=128, pattern=r"^[\x20-\x7e]*$",
                                    description="Who makes the change (the audit log's who; default: api)")]


def routes(app: FastAPI, store: Store, error: Callable[[int, str, str], JSONResponse]) -> None:
    """Add the allocation endpoints to ``app``."""
    lock = threading.Lock()

    def unavailable(exc: UsageError) -> _Unavailable:
        """The server's own file, not the request: 503, named relative to the hub root."""
        return _Unavailable(str(exc).replace(store.full(""), "").lstrip("/"))

    def loaded() -> Rules:
        try:
            rules = load(store)
        except UsageError as exc:
            raise unavailable(exc) from None
        if rules is None:
            raise _NotFound("the hub has no allocation rules (config/allocation.json)")
        return rules

    def rules_for(field: str) -> tuple[Rules, str]:
        rules = loaded()
        dimension = FIELDS[field]
        if dimension not in rules.dimensions:
            raise _NotFound(f"the rules have no {dimension} dimension")
        return rules, dimension

    def answer(work: Callable[[], Response | BaseModel]) -> Response | BaseModel:
        try:
            return work()
        except _NotFound as exc:
            return error(404, "CBC.0404", str(exc))
        except _Unavailable as exc:
            return error(503, "CBC.0503", str(exc))
        except allowlists.ChangeRefused as exc:
            return error(exc.status, {404: "CBC.0404", 503: "CBC.0503"}.get(exc.status, "CBC.0100"), str(exc))
        except UsageError as exc:
            return error(400, "CBC.0100", str(exc))

    @app.get("/v1/accounts/{account}/settings/{field}", response_model=FieldValuePage, responses=ERRORS, tags=["allocation"],
             summary="List the allowed values of the cost-center or product field (Dynatrace-compatible)")
    def list_values(account: Account, field: Field_, page: Page = 1, page_size: PageSize = 100) -> Response | BaseModel:
        def work() -> BaseModel:
            rules, dimension = rules_for(field)
            values = allowlists.values(store, rules, dimension, datetime.now(timezone.utc).date())
            chunk = values[(page - 1) * page_size: page * page_size]
            return FieldValuePage(records=[FieldValue(key=v) for v in chunk], hasNextPage=len(values) > page * page_size)
        return answer(work)

    def changer(action: str) -> Callable:
        def handler(account: Account, field: Field_, body: FieldValues, x_hub_user: User = None) -> Response | BaseModel:
            def work() -> Response:
                rules, dimension = rules_for(field)
                with lock:
                    allowlists.change(store, rules, dimension, action, [v.key for v in body.values],
                                      allowlists.Change(x_hub_user or "api", body.reason, body.validFrom))
                return Response(status_code=204)
            return answer(work)
        return handler

    for method, action, what in (("put", "replace", "Replace the values (effective from today: a diff, not retroactive)"),
                                 ("post", "add", "Add values (effective from today)")):
        getattr(app, method)("/v1/accounts/{account}/settings/{field}", status_code=204, response_class=Response,
                             response_model=None,
                             responses={204: {"description": "Done"}, **ERRORS}, tags=["allocation"], summary=what,
                             name=f"{action}_values")(changer(action))

    # {key:path}: a key may hold a '/' (FIN/001)
    @app.delete("/v1/accounts/{account}/settings/{field}/{key:path}", status_code=204, response_class=Response,
                response_model=None,
                responses={204: {"description": "Done"}, **ERRORS}, tags=["allocation"],
                summary="Remove a value (valid until today)")
    def delete_value(account: Account, field: Field_, key: Annotated[str, Path(min_length=1, max_length=128)],
                     x_hub_user: User = None) -> Response:
        def work() -> Response:
            rules, dimension = rules_for(field)
            with lock:
                allowlists.change(store, rules, dimension, "remove", [key], allowlists.Change(x_hub_user or "api"))
            return Response(status_code=204)
        return answer(work)

    @app.get("/v1/allocation/audit", response_model=AuditPage, responses=ERRORS, tags=["allocation"],
             summary="Every allowlist change, newest first")
    def audit(page: Page = 1, page_size: PageSize = 100) -> Response | BaseModel:
        def work() -> BaseModel:
            try:
                records = allowlists.audit(store, AuditRecord)
            except UsageError as exc:
                raise unavailable(exc) from None
            chunk = records[(page - 1) * page_size: page * page_size]
            return AuditPage(records=chunk, hasNextPage=len(records) > page * page_size)
        return answer(work)

    @app.get("/v1/cost-allocation", response_model=AllocationPage, responses=ERRORS, tags=["allocation"],
             summary="Allocated cost per day, capability and value (Dynatrace's cost-allocation records)")
    def cost_allocation(field: Annotated[Literal["COSTCENTER", "PRODUCT"], Query()],
                        start: Annotated[date, Query(alias="from", description="First day (UTC), inclusive")],
                        end: Annotated[date, Query(alias="to", description="Last day (UTC), inclusive")],
                        page: Page = 1, page_size: PageSize = 1000) -> Response | BaseModel:
        def work() -> BaseModel:
            if end < start or (end - start).days > 366:
                raise UsageError("to must be on or after from, at most 366 days later")
            from hub.server import MEMORY_LIMIT, QUERY_TIMEOUT, THREADS, TOO_SLOW

            try:  # bounded as the server's own queries
                records = reports.records(store, loaded(), field, start, end, threads=THREADS, memory_limit=MEMORY_LIMIT,
                                          timeout=QUERY_TIMEOUT)
            except duckdb.InterruptException:
                return error(503, TOO_SLOW, f"the query ran longer than {QUERY_TIMEOUT:g} s: narrow the period")
            chunk = records[(page - 1) * page_size: page * page_size]
            return AllocationPage(records=[AllocationRecord(**r) for r in chunk], hasNextPage=len(records) > page * page_size)
        return answer(work)


class _Unavailable(Exception):  # noqa: N818 - an answer, not an error of the code
    """The hub's allocation rules cannot be read: the server's problem (503), not the request's."""


class _NotFound(Exception):
    pass
