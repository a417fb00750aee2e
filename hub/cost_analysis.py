"""The cost-analysis query: costs per day or month grouped by up to two dimensions or tags.

Request and response follow Huawei Cloud's "Querying Cost Data" API (``POST
/v4/costs/cost-analysed-bills/query``) so its clients work against the hub. Keys are resolved against an
allowlist (the API's dimension keys in ``schemas/catalog/cost_dimensions.json`` and the Costs view's columns)
and written as quoted identifiers; every value, tag key and date is a bound parameter. Amounts are decimal
strings; rows of different billing currencies are never summed together.
"""

from __future__ import annotations

import json
import re
from calendar import monthrange
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.catalog import first_folder_month, has_view, other_metric_months, read_again, unallocated_months
from transforms.typing import ident

UNTAGGED = "(untagged)"
NONE = "(none)"
DAY, MONTH = 1, 2
#: Longest period a request may cover (the API's clients page by period).
MAX_MONTHS = 120
#: Most (group, period) points one answer may hold: ``limit`` x days or months of the period.
MAX_POINTS = 100_000
EPOCH = date(1970, 1, 1)
#: Dates of a request: exactly YYYY-MM-DD or YYYY-MM in ASCII digits.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}", re.ASCII)
_TAG_KEY = re.compile(r'[^"\\\x00-\x1f]{1,256}')  # matched whole (fullmatch: "$" would let a final newline in)


class CostQueryError(ValueError):
    """An invalid request: HTTP 400 with ``error_code`` (Huawei's ``CBC.0100``: invalid parameter)."""

    def __init__(self, message: str, code: str = "CBC.0100") -> None:
        super().__init__(message)
        self.code = code


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Request(BaseModel):
    """A request model: an unknown field (a misspelt ``filter``) or a value of another JSON type (``"limit": "10"``,
    ``true`` for 1) is an error, never ignored or coerced: a typo must not change the numbers silently."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _number(value: object, allowed: str) -> object:
    """A Literal of numbers takes JSON true and false as 1 and 0, and 2.0 as 2: refused (integers only)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Input should be {allowed}")
    return value


class TimeCondition(_Request):
    time_measure_id: Literal[1, 2] = Field(description="1: per day (dates YYYY-MM-DD), 2: per month (YYYY-MM)")
    begin_time: str = Field(max_length=10, description="first day or month, inclusive")
    end_time: str = Field(max_length=10, description="last day or month, inclusive")

    _not_a_boolean = field_validator("time_measure_id", mode="before")(lambda value: _number(value, "1 or 2"))


class GroupBy(_Request):
    type: Literal["dimension", "tag", "cost_unit"] = "dimension"
    key: str = Field(min_length=1, max_length=256, description="a dimension key or Costs column; a tag key for tag/cost_unit")


class FilterFactor(_Request):
    key: str = Field(min_length=1, max_length=260, description="a dimension key, a Costs column, RESOURCE_TAG or tag:<key>")
    value: list[str] = Field(min_length=1, max_length=100)


class Filter(_Request):
    operator: Literal[0, 1] = Field(0, description="0: include only these values, 1: exclude them")
    filter_factor: FilterFactor

    _not_a_boolean = field_validator("operator", mode="before")(lambda value: _number(value, "0 or 1"))


class CostQuery(_Request):
    """The request body."""

    time_condition: TimeCondition
    groupby: list[GroupBy] = Field(default_factory=list, max_length=2)
    cost_type: Literal["ORIGINAL_COST", "AMORTIZED_COST", "LIST_COST", "CONTRACTED_COST"] = "ORIGINAL_COST"
    amount_type: Literal["PAYMENT_AMOUNT", "NET_AMOUNT"] = "PAYMENT_AMOUNT"
    filters: list[Filter] | None = Field(None, max_length=100)
    offset: int = Field(0, ge=0, le=200000)
    limit: int = Field(10, ge=1, le=1000)


class Dimension(_Model):
    key: str
    value: str


class CostPoint(_Model):
    time_dimension_value: str
    time_measure_id: int
    amount: str
    official_amount: str


class CostRow(_Model):
    dimensions: list[Dimension]
    costs: list[CostPoint]
    amount_by_costs: str
    official_amount_by_costs: str


class CostResult(_Model):
    """The response body."""

    currency: str | None
    total_count: int
    cost_data: list[CostRow]


class ErrorBody(_Model):
    error_code: str
    error_msg: str


@cache
def _config() -> dict:
    return json.loads((resources.files("schemas") / "catalog" / "cost_dimensions.json").read_text())


def dimension_keys() -> dict[str, str]:
    """API dimension key -> Costs column."""
    return dict(_config()["dimensions"])


def _period(tc: TimeCondition) -> tuple[date, date, str]:
    """First and last day included, strftime format of the time dimension."""
    try:
        if tc.time_measure_id == DAY:
            if not (_DAY.fullmatch(tc.begin_time) and _DAY.fullmatch(tc.end_time)):
                raise ValueError  # ISO week dates (2024-W18-1), ordinal dates, non-ASCII digits are refused
            begin, last = date.fromisoformat(tc.begin_time), date.fromisoformat(tc.end_time)
            fmt = "%Y-%m-%d"
        else:
            if not (_MONTH.fullmatch(tc.begin_time) and _MONTH.fullmatch(tc.end_time)):
                raise ValueError
            begin = date(int(tc.begin_time[:4]), int(tc.begin_time[5:]), 1)
            year, month = int(tc.end_time[:4]), int(tc.end_time[5:])
            last = date(year, month, monthrange(year, month)[1])
            fmt = "%Y-%m"
    except ValueError:
        form = "YYYY-MM-DD" if tc.time_measure_id == DAY else "YYYY-MM"
        raise CostQueryError(f"begin_time and end_time must be {form} for time_measure_id {tc.time_measure_id}") from None
    if last < begin:
        raise CostQueryError("end_time is before begin_time")
    if begin.year < 1970:  # days are counted from the Unix epoch
        raise CostQueryError("begin_time is before 1970")
    if _month_count(begin, last) > MAX_MONTHS:
        raise CostQueryError(f"the period spans more than {MAX_MONTHS} months")
    return begin, last, fmt


def periods(tc: TimeCondition) -> int:
    """Days or months of a query's period, both ends included (an invalid period: 1, for the query to refuse)."""
    try:
        begin, last, _ = _period(tc)
    except CostQueryError:
        return 1
    return (last - begin).days + 1 if tc.time_measure_id == DAY else _month_count(begin, last)


def _month_count(begin: date, last: date) -> int:
    """Calendar months from ``begin``'s to ``last``'s, both included."""
    return (last.year - begin.year) * 12 + last.month - begin.month + 1


def _ceiling(last: date) -> datetime:
    """A UTC timestamp a day past the end of ``last``, capped at the latest one ``datetime`` holds."""
    if last < date.max - timedelta(days=1):
        return _utc(last) + timedelta(days=2)
    return datetime.max.replace(tzinfo=timezone.utc)


def _epoch_us(day: date) -> int:
    return (day.toordinal() - EPOCH.toordinal()) * 86_400_000_000


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


class _Sql:
    """Collects named parameters while SQL text is assembled, and the tag keys the query reads: Tags is parsed once
    per row (one ``json_extract_string`` for every key, as the list ``_tags``), whatever the number of tag filters."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self.tag_keys: list[str] = []

    def bind(self, value: object) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def tag(self, key: str, row: str = "_tags") -> str:
        """The value of tag ``key`` in the parsed list ``row`` (missing: ``(untagged)``)."""
        if not _TAG_KEY.fullmatch(key):
            raise CostQueryError("a tag key is 1-256 characters without quotes, backslashes or control characters")
        if key not in self.tag_keys:
            self.tag_keys.append(key)
        return f"coalesce({row}[{self.tag_keys.index(key) + 1}], {self.bind(UNTAGGED)})"

    def tags_column(self) -> str:
        """The parsed tag values (a Tags cell that is not JSON reads as untagged, never fails the query)."""
        paths = [f'$."{k}"' for k in self.tag_keys]
        return f"TRY(json_extract_string(Tags, CAST({self.bind(paths)} AS VARCHAR[]))) AS _tags"


def _column(key: str, columns: dict[str, str]) -> str:
    name = dimension_keys().get(key.upper(), key)
    if name not in columns or name == "x_Month":
        raise CostQueryError(f"unknown dimension {key!r}: use one of {', '.join(dimension_keys())} or a Costs column")
    return name


def _dim_expr(sql: _Sql, kind: str, key: str, columns: dict[str, str]) -> str:
    if kind in ("tag", "cost_unit"):
        return sql.tag(key)
    return f"coalesce(CAST({ident(_column(key, columns))} AS VARCHAR), {sql.bind(NONE)})"


def _in(sql: _Sql, expr: str, values: list[str]) -> str:
    return f"{expr} IN ({', '.join(sql.bind(v) for v in dict.fromkeys(values))})"


#: Columns the lake stores in one case, and how a filter value is spelled to match them.
SPELLED = {"BillingAccountId": str.lower, "x_ResourceGroupName": str.lower, "ResourceName": str.lower,
           "CommitmentDiscountId": str.lower, "BillingCurrency": str.upper}


def _filter_expr(sql: _Sql, f: Filter, columns: dict[str, str]) -> tuple[str, bool]:
    """One filter's condition, and whether it reads tags (then it refers to the parsed list as ``_t``)."""
    key, values = f.filter_factor.key, f.filter_factor.value
    if key.upper() == "RESOURCE_TAG":  # values "key=value": one IN list per tag key
        by_key: dict[str, list[str]] = {}
        for v in values:
            k, sep, val = v.partition("=")
            if not sep:
                raise CostQueryError("RESOURCE_TAG values are key=value")
            by_key.setdefault(k, []).append(val)
        cond, tags = "(" + " OR ".join(_in(sql, sql.tag(k, "_t"), vals) for k, vals in by_key.items()) + ")", True
    elif key.lower().startswith("tag:"):
        cond, tags = _in(sql, sql.tag(key[4:], "_t"), values), True
    else:
        kind = columns[_column(key, columns)].upper()
        if kind.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL", "TIMESTAMP", "DATE", "TIME")):
            # values are compared as text: 5 would never equal 5.000000000000000000 (an empty answer, not an error)
            raise CostQueryError(f"filter on {key!r}: a {kind.split('(')[0].lower()} column; filter on text columns "
                                 "(group by this one instead)")
        # spelled as the lake stores them (README, normalization step 7): billing accounts, resource groups, resource
        # names and commitment ids lower case, currency codes upper case (never an empty answer for `BA-EUR`, `eur` or
        # the portal's `RG-Data-Prod`)
        spelled = SPELLED.get(_column(key, columns))
        if spelled:
            values = [v.strip() if v.strip() == NONE else spelled(v.strip()) for v in values]
        cond, tags = _in(sql, _dim_expr(sql, "dimension", key, columns), values), False
    return (f"NOT {cond}" if f.operator == 1 else cond), tags


def amount(value: object) -> str:
    """A decimal as a plain string without trailing zeros (``12.5``, ``0``)."""
    d = Decimal(str(value if value is not None else 0))
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


#: Dimensions of the allocation (hub allocate): a request using one reads the AllocatedCosts view.
ALLOCATION_DIMENSIONS = ("x_CostCenter", "x_Product")


def _allocated(req: CostQuery) -> bool:
    keys = [g.key for g in req.groupby if g.type == "dimension"] + [f.filter_factor.key for f in req.filters or []]
    return any(g.type == "cost_unit" for g in req.groupby) or any(k in ALLOCATION_DIMENSIONS for k in keys)


def query_costs(con: duckdb.DuckDBPyConnection, req: CostQuery, *, view: str = "Costs") -> CostResult:
    """Run a cost-analysis request on a catalog connection (:func:`hub.catalog.connect`). A request grouping or
    filtering by ``x_CostCenter`` / ``x_Product`` (or Huawei's ``COST_UNIT`` group-by: the cost center) reads the
    allocation (``AllocatedCosts``), in the metric it was allocated in; without an allocation, they are what they were
    (the Costs column, the tag). Run again when an ingestion swapped a file away under it."""
    return read_again(lambda: _query_costs(con, req, view=view))


def _query_costs(con: duckdb.DuckDBPyConnection, req: CostQuery, *, view: str = "Costs") -> CostResult:
    if (view == "Costs" and _allocated(req) and has_view(con, "AllocatedCosts")  # allocation on (its rules: the view)
            and con.execute("SELECT 1 FROM Allocation LIMIT 1").fetchall()):  # and made
        view = "AllocatedCosts"
        req = req.model_copy(update={"groupby": [g.model_copy(update={"type": "dimension", "key": "x_CostCenter"})
                                                 if g.type == "cost_unit" else g for g in req.groupby]})
        metric = _config()["costTypes"][req.cost_type]
        allocated = {m for (m,) in con.execute("SELECT DISTINCT x_CostMetric FROM Allocation").fetchall()}
        if allocated and metric not in allocated:
            raise CostQueryError(f"the allocation is of {', '.join(sorted(allocated))}, not {metric}: ask for that cost type")
        filters = [f.filter_factor.key.lower() for f in req.filters or []]
        if any(g.type == "tag" for g in req.groupby) or any(k == "resource_tag" or k.startswith("tag:") for k in filters):
            raise CostQueryError("the allocation (x_CostCenter, x_Product, COST_UNIT) has no tags: "
                                 "group or filter by tags in a query without them")
    columns = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {ident(view)}").fetchall()}
    if sum(g.type in ("tag", "cost_unit") for g in req.groupby) > 1:
        raise CostQueryError("group by at most one tag")
    begin, last, fmt = _period(req.time_condition)
    # months locked in another metric (``lock_before``) would read as 0, not as their cost
    if view == "AllocatedCosts" and (months := other_metric_months(con, metric, begin, last)):
        raise CostQueryError(f"the allocation of {months} is in another cost type than {metric}: ask for that cost "
                             "type, or a period allocated in one")
    if view == "AllocatedCosts" and (months := unallocated_months(con, begin, last)):
        raise CostQueryError(f"{months} not allocated, or allocated before their Costs changed (their costs would read "
                             "as 0 or stale by cost center or product): run `hub allocate --month` for them, or ask without "
                             "x_CostCenter, x_Product, COST_UNIT")
    if (n := periods(req.time_condition)) * req.limit > MAX_POINTS:
        raise CostQueryError(f"limit x periods is {n * req.limit:,}, over {MAX_POINTS:,} points: lower the limit or "
                             "shorten the period (page by period)")
    sql = _Sql()
    dims = [_dim_expr(sql, g.type, g.key, columns) for g in req.groupby]
    # the UTC day number: integer arithmetic (date_trunc on a TIMESTAMPTZ goes through time-zone calendars,
    # slower than the whole scan); days become dates and months after aggregation, on a handful of rows
    bucket = "epoch_us(ChargePeriodStart) // 86400000000"
    metric = ident(_config()["costTypes"][req.cost_type])
    official = ident(_config()["officialAmount"])
    # skips the month folders that cannot hold the period's rows (those before it, but for late usage)
    where = [f"x_Month >= {sql.bind(first_folder_month(begin))}",
             # a day wider than the period, as timestamps: pushed down to the Parquet row-group statistics, so the
             # neighbouring months' files are opened, not scanned
             f"ChargePeriodStart >= {sql.bind(_utc(begin) - timedelta(days=1))}",
             f"ChargePeriodStart <= {sql.bind(_ceiling(last))}",
             # UTC bounds as epoch microseconds: independent of the session's time zone
             f"epoch_us(ChargePeriodStart) >= {sql.bind(_epoch_us(begin))}",
             f"epoch_us(ChargePeriodStart) < {sql.bind(_epoch_us(last) + 86_400_000_000)}"]
    filters = [_filter_expr(sql, f, columns) for f in req.filters or []]
    where += [cond for cond, tags in filters if not tags]
    tag_conds = [cond for cond, tags in filters if tags]
    if tag_conds:  # one lambda over the parsed list: the list (so Tags) is evaluated once per row, not once per filter
        where.append(f"list_transform([_tags], lambda _t: {' AND '.join(f'({c})' for c in tag_conds)})[1]")
    keys = [f"d{i}" for i in range(len(dims))]
    select = ", ".join([*(f"{d} AS d{i}" for i, d in enumerate(dims)), f"{bucket} AS t", "BillingCurrency AS cur",
                        f"sum({metric}) AS a", f"sum({official}) AS o"])
    source = ident(view)
    if sql.tag_keys:
        source = f"(SELECT *, {sql.tags_column()} FROM {ident(view)} WHERE {where[0]})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE hub_cost_points AS SELECT {select} FROM {source} "
                f"WHERE {' AND '.join(where)} GROUP BY ALL", sql.params)
    try:
        found = con.execute("SELECT DISTINCT cur FROM hub_cost_points").fetchall()
        currencies = sorted((r[0] for r in found), key=lambda c: (c is None, c or ""))  # none last
        if not currencies:
            return CostResult(currency=None, total_count=0, cost_data=[])
        named = [c for c in currencies if c is not None]
        if len(currencies) > 1:  # a missing currency counts as one of its own
            shown = ", ".join(c if c is not None else "(none)" for c in currencies)
            raise CostQueryError(f"costs are in several currencies ({shown}): filter on BillingCurrency to query one at a time")
        key_list = "".join(f"{k}, " for k in keys)
        order = ", ".join(["ta DESC NULLS LAST", *keys])
        join = " AND ".join(f"p.{k} = s.{k}" for k in keys) or "true"
        rows = con.execute(
            f"WITH g AS (SELECT {key_list}sum(a) AS ta, sum(o) AS tota FROM hub_cost_points GROUP BY ALL), "
            f"page AS (SELECT *, count(*) OVER () AS n, row_number() OVER (ORDER BY {order}) AS r FROM g "
            f"ORDER BY r LIMIT ? OFFSET ?), "
            f"s AS (SELECT {key_list}strftime(DATE '1970-01-01' + CAST(t AS INTEGER), ?) AS t, sum(a) AS a, sum(o) AS o "
            "FROM hub_cost_points GROUP BY ALL) "
            f"SELECT {''.join(f'p.{k}, ' for k in keys)}p.ta, p.tota, p.n, p.r, s.t, s.a, s.o "
            f"FROM page p JOIN s ON {join} ORDER BY p.r, s.t", [req.limit, req.offset, fmt]).fetchall()
        total = rows[0][len(keys) + 2] if rows else con.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT {key_list or '1, '}1 FROM hub_cost_points)").fetchall()[0][0]
    finally:
        con.execute("DROP TABLE IF EXISTS hub_cost_points")
    measure = req.time_condition.time_measure_id
    labels = [g.key for g in req.groupby]
    data: list[CostRow] = []
    rank = None
    n = len(keys)
    for r in rows:  # one row per (group, period), groups in page order
        if r[n + 3] != rank:
            rank = r[n + 3]
            data.append(CostRow(dimensions=[Dimension(key=labels[i], value=str(v)) for i, v in enumerate(r[:n])], costs=[],
                                amount_by_costs=amount(r[n]), official_amount_by_costs=amount(r[n + 1])))
        data[-1].costs.append(CostPoint(time_dimension_value=r[n + 4], time_measure_id=measure,
                                        amount=amount(r[n + 5]), official_amount=amount(r[n + 6])))
    return CostResult(currency=named[0] if named else None, total_count=int(total), cost_data=data)
