"""The inspection's HTTP API in ``hub serve``: the anomalies found (newest first, paged), feedback on one, and the
budgets of the latest inspection."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import FastAPI, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from hub.cost_analysis import ErrorBody
from hub.errors import UsageError
from hub.inspection import outcome
from hub.store import Store

ERRORS = {400: {"model": ErrorBody, "description": "Invalid request (`CBC.0100`)"},
          401: {"model": ErrorBody, "description": "Token missing or wrong (`CBC.0401`), when the server has one"},
          404: {"model": ErrorBody, "description": "No such anomaly (`CBC.0404`)"},
          413: {"model": ErrorBody, "description": "Request body too large (`CBC.0100`)"}}


class AnomalyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    monitor: str
    key: str
    currency: str
    start: str
    end: str
    state: str
    direction: str
    actual: str
    expected: str
    impact: str
    impact_pct: float | None = None
    severity: str
    feedback: str | None = None


class AnomalyPage(BaseModel):
    records: list[AnomalyOut]
    hasNextPage: bool


class BudgetOut(BaseModel):
    id: str
    month: str
    day: str
    currency: str
    metric: str
    amount: str
    actual: str
    consumptionPct: float
    forecast: str | None = None
    lower80: str | None = None
    upper80: str | None = None
    lower95: str | None = None
    upper95: str | None = None
    crossed: list[list]


class BudgetPage(BaseModel):
    records: list[BudgetOut]


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feedback: Literal["yes", "no", "planned"]


def routes(app: FastAPI, store: Store, error: Callable[[int, str, str], JSONResponse]) -> None:
    """Add the inspection endpoints to ``app``."""

    @app.get("/v1/anomalies", response_model=AnomalyPage, responses=ERRORS, tags=["inspection"],
             summary="Anomalies found by hub inspect, newest first")
    def anomalies(state: Annotated[Literal["open", "resolved"] | None, Query()] = None,
                  page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                  page_size: Annotated[int, Query(alias="page-size", ge=1, le=1000)] = 100) -> Response | BaseModel:
        try:
            found = list(outcome.load_state(store)["anomalies"].values())
        except outcome.StateInvalid as exc:
            return error(503, "CBC.0503", str(exc))
        except (UsageError, ValueError) as exc:
            return error(400, "CBC.0100", str(exc))
        found = sorted((a for a in found if state is None or a.get("state") == state),
                       key=lambda a: (str(a.get("start")), str(a.get("id"))), reverse=True)
        chunk = found[(page - 1) * page_size: page * page_size]
        records = [AnomalyOut.model_validate({k: v for k, v in a.items() if k not in ("causes", "history")} | {
            "causes": a.get("causes") or [], "history": a.get("history") or []}) for a in chunk]
        return AnomalyPage(records=records, hasNextPage=len(found) > page * page_size)

    @app.get("/v1/budgets", response_model=BudgetPage, responses=ERRORS, tags=["inspection"],
             summary="Each budget's month as the latest hub inspect saw it")
    def budgets(month: Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")] = None) -> Response | BaseModel:
        from hub import catalog
        from hub.server import MEMORY_LIMIT, THREADS

        con = catalog.connect(store, threads=THREADS, memory_limit=MEMORY_LIMIT)  # bounded as the server's own
        try:
            rows = con.execute("SELECT * FROM Budgets WHERE ? IS NULL OR month = ? ORDER BY month DESC, id",
                               [month, month]).fetchall()
            names = [d[0] for d in con.description]
        finally:
            con.close()
        out = []
        for r in rows:
            b = dict(zip(names, r, strict=True))
            text = {k: (None if v is None else outcome.decimal_text(v) if isinstance(v, Decimal) else str(v))
                    for k, v in b.items()}  # plain decimals: 1000, never 1000.000000000000000000
            out.append(BudgetOut.model_validate({**text, "consumptionPct": b["consumptionPct"],
                                                 "crossed": json.loads(b["crossed"] or "[]")}))
        return BudgetPage(records=out)

    @app.post("/v1/anomalies/{anomaly_id}/feedback", status_code=204, response_class=Response, response_model=None,
              responses={204: {"description": "Stored"}, **ERRORS}, tags=["inspection"],
              summary="Say whether an anomaly was real (yes), not (no) or expected (planned)")
    def feedback(anomaly_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], body: Feedback) -> Response:
        try:
            outcome.feedback(store, anomaly_id, body.feedback)
        except outcome.StateInvalid as exc:
            return error(503, "CBC.0503", str(exc))
        except UsageError as exc:
            return error(404, "CBC.0404", str(exc))
        return Response(status_code=204)
