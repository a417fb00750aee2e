"""Inspection settings: ``config/inspection.json``, validated with pydantic (a bad file is a usage error naming the
file and the field). Without the file, one monitor per sub-account with the defaults below."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

from hub.settings import http_url, iso_currency, validated
from hub.store import CONFIG, Store

RULES = f"{CONFIG}/inspection.json"
#: Costs columns a monitor may split by (``tag:<key>`` splits by a tag's value).
DIMENSIONS = ("BillingAccountId", "SubAccountId", "ServiceName", "ServiceCategory", "RegionId", "ProviderName",
              "x_ResourceGroupName")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Monitor(_Strict):
    """Daily series to watch: one per value of ``dimension`` (and currency)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    dimension: str = "SubAccountId"
    #: only rows whose columns have these values (a value or a list)
    filter: dict[str, str | list[str]] = {}
    #: an anomaly's impact must reach this much (currency units) ...
    min_impact: StrictFloat = Field(1.0, ge=0, allow_inf_nan=False)
    #: ... and this share of the expected cost, in percent
    min_impact_pct: StrictFloat = Field(10.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _dimension(self) -> Monitor:
        if self.dimension not in DIMENSIONS and not (self.dimension.startswith("tag:") and len(self.dimension) > 4):
            raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)} or tag:<key>")
        for column, values in self.filter.items():
            if column not in DIMENSIONS:
                raise ValueError(f"filter on {column!r}: one of {', '.join(DIMENSIONS)}")
            if values == []:
                raise ValueError(f"filter on {column!r}: an empty list would match no row")
        return self


#: A threshold: a percentage above 0 (finite).
Percent = Annotated[StrictFloat, Field(gt=0, le=1_000_000, allow_inf_nan=False)]


class Severity(_Strict):
    """Impact % (of the expected cost over the interval) from which an anomaly is major, critical; below: minor."""

    major: StrictFloat = Field(20.0, ge=0, allow_inf_nan=False)
    critical: StrictFloat = Field(50.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _order(self) -> Severity:
        if self.major > self.critical:
            raise ValueError("major must not be above critical")
        return self


class Budget(_Strict):
    """A monthly budget over the rows of ``filter`` (all rows when empty), in one currency."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    amount: Decimal = Field(gt=0, le=Decimal("1e15"))
    #: ISO 4217, three letters (upper-cased: the lake's BillingCurrency is)
    currency: str = Field("USD", pattern=r"^[A-Za-z]{3}$")
    metric: Literal["EffectiveCost", "BilledCost"] = "EffectiveCost"
    filter: dict[str, str | list[str]] = {}
    #: percentages of the amount whose crossing by the month-to-date cost fires (once per month each)
    actual: list[Percent] = [50.0, 80.0, 100.0]
    #: percentages of the amount whose crossing by the month-end forecast fires (once per month each)
    forecasted: list[Percent] = [100.0]

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return iso_currency(value)

    @property
    def definition(self) -> str:
        """A digest of what the budget measures against what (amount, currency, metric, filter): a threshold fired under
        one definition is another threshold under the next."""
        what = json.dumps([str(self.amount.normalize()), self.currency, self.metric, self.filter], sort_keys=True)
        return hashlib.sha256(what.encode()).hexdigest()[:12]

    @model_validator(mode="after")
    def _filter(self) -> Budget:
        for column, values in self.filter.items():
            if column not in DIMENSIONS:
                raise ValueError(f"filter on {column!r}: one of {', '.join(DIMENSIONS)}")
            if values == []:
                raise ValueError(f"filter on {column!r}: an empty list would match no row")
        if any(p <= 0 for p in [*self.actual, *self.forecasted]):
            raise ValueError("thresholds are percentages above 0")
        for kind, thresholds in (("actual", self.actual), ("forecasted", self.forecasted)):
            # a threshold is remembered by its 6 significant digits: two that share them would fire as one
            if len({f"{p:g}" for p in thresholds}) != len(thresholds):
                raise ValueError(f"{kind}: two thresholds are the same percentage (to 6 significant digits)")
        return self


SEVERITIES = ("minor", "major", "critical")
EVENTS = ("anomaly.opened", "anomaly.updated", "anomaly.resolved", "budget.threshold")


class AlertTarget(_Strict):
    """Where a policy's alerts go: an Alertmanager-compatible webhook (its ``webhook_config`` payload, version 4)."""

    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(pattern=r"^https?://")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url)
    #: name of an environment variable holding a bearer token (never written anywhere)
    token_env: str | None = None
    timeout_seconds: StrictFloat = Field(10.0, gt=0, le=120)
    retries: StrictInt = Field(2, ge=0, le=10)


class AlertPolicy(_Strict):
    """Which events notify which targets: at least ``min_severity``, of the listed kinds, quiet for ``silence_hours``
    after notifying about the same anomaly or budget (a resolution is always sent)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    min_severity: Literal["minor", "major", "critical"] = "major"
    events: list[Literal["anomaly.opened", "anomaly.updated", "anomaly.resolved", "budget.threshold"]] = list(EVENTS)
    targets: list[AlertTarget] = Field(min_length=1)
    silence_hours: StrictFloat = Field(24.0, ge=0, le=24 * 90)


class Rules(_Strict):
    monitors: list[Monitor] = Field(default_factory=lambda: [Monitor(id="sub-accounts")], min_length=1)
    #: days of history a series needs before it is inspected (less: "insufficient history")
    min_history_days: StrictInt = Field(15, ge=8, le=365)
    #: days of history read per series (the training window plus the test days)
    window_days: StrictInt = Field(90, ge=21, le=730)
    #: the latest days tested at each inspection (earlier ones are training)
    test_days: StrictInt = Field(7, ge=1, le=31)
    severity: Severity = Severity()
    budgets: list[Budget] = []
    alerts: list[AlertPolicy] = []

    @model_validator(mode="after")
    def _unique(self) -> Rules:
        for what, ids in (("monitor", [m.id for m in self.monitors]), ("budget", [b.id for b in self.budgets]),
                          ("alert policy", [a.id for a in self.alerts])):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{what} ids must be unique")
        if self.test_days + 14 > self.window_days:
            raise ValueError("window_days must leave at least 14 training days before the test days")
        if self.min_history_days > self.window_days:
            raise ValueError("min_history_days must not exceed window_days (no series could ever be inspected)")
        return self


def parse(text: str, *, file: str = RULES) -> Rules:
    return validated(Rules, text, file=file, what="inspection settings")


def load(store: Store) -> Rules:
    return parse(store.read_text(RULES), file=store.full(RULES)) if store.exists(RULES) else Rules()
