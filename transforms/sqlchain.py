"""Small helpers to build a transform as a chain of DuckDB SELECT steps (pure string building)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transforms.typing import ident, literal, text_decimal

DEC = "DECIMAL(38,18)"


def dec(expr: str) -> str:
    """Arithmetic result back to money precision. Products and ratios are computed in double precision
    (DECIMAL(38,18) x DECIMAL(38,18) would overflow DuckDB's 38 digits), rounded to the 15 significant
    digits a double holds exactly (so 25000 x 0.0001 is 2.5, not 2.4999999999999995), stored as
    DECIMAL(38,18). The expression is referenced once (formatting with ``%.15g``, its text bound once by a lambda
    for :func:`text_decimal`, which turns the ``1.944e-06`` form of small results into decimals about six times
    cheaper than a direct cast), so nested products do not repeat work; a non-finite result (division by zero) is
    NULL."""
    return f"list_transform([printf('%.15g', CAST({expr} AS DOUBLE))], lambda _t: {text_decimal('_t')})[1]"


def mul(a: str, b: str) -> str:
    return dec(f"CAST({a} AS DOUBLE) * CAST({b} AS DOUBLE)")


def div(a: str, b: str) -> str:
    return dec(f"CAST({a} AS DOUBLE) / CAST({b} AS DOUBLE)")


def fraction(a: str, b: str) -> str:
    """``a / b`` for a ratio such as a discount percent (0-1): rounded to 15 decimal places, which is cheaper
    than :func:`dec` and as exact for values below 1; NULL when it does not fit or is not finite."""
    return f"TRY_CAST(TRY_CAST(CAST({a} AS DOUBLE) / CAST({b} AS DOUBLE) AS DECIMAL(38,15)) AS {DEC})"


def nz(expr: str) -> str:
    """TRUE when a number is present and not zero."""
    return f"coalesce({expr}, 0) <> 0"


def zero(expr: str) -> str:
    """TRUE when a number is missing or zero."""
    return f"coalesce({expr}, 0) = 0"


def empty(expr: str) -> str:
    """TRUE when a string is missing or empty."""
    return f"coalesce({expr}, '') = ''"


def lit(value: str | None) -> str:
    return "NULL" if value is None else literal(value)


class Query(str):
    """SQL text that may also know its result columns and their DuckDB types (``columns``; None when unknown),
    so that callers need not plan the query once more to DESCRIBE it."""

    columns: dict[str, str] | None = None

    @classmethod
    def of(cls, sql: str, columns: dict[str, str] | None) -> Query:
        query = cls(sql)
        query.columns = columns
        return query


@dataclass
class Chain:
    """``WITH s0 AS (...), s1 AS (SELECT ... FROM s0), ... SELECT ... FROM sN``."""

    source: str
    steps: list[str] = field(default_factory=list)
    #: Column names of the last step, when known; ``replace`` turns additions of known names into replacements.
    cols: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.steps.append(f"SELECT * FROM {self.source}")

    @property
    def last(self) -> str:
        return f"s{len(self.steps) - 1}"

    def step(self, select: str, tail: str = "", columns: list[str] | None = None, *, reset: bool = False) -> Chain:
        """Add ``SELECT <select> FROM <previous step> <tail>``; ``columns``: names it adds (or all, with ``reset``)."""
        self.steps.append(f"SELECT {select} FROM {self.last} AS t {tail}".rstrip())
        self.cols = set(columns or ()) if reset else self.cols | set(columns or ())
        return self

    def replace(self, columns: dict[str, str], add: dict[str, str] | None = None) -> Chain:
        """Replace existing columns by expressions (each sees the previous step), optionally adding new ones."""
        add = dict(add or {})
        columns = {**columns, **{k: v for k, v in add.items() if k in self.cols}}
        add = {k: v for k, v in add.items() if k not in self.cols}
        parts = ["*"]
        if columns:
            parts = ["* REPLACE (" + ", ".join(f"{expr} AS {ident(name)}" for name, expr in columns.items()) + ")"]
        parts += [f"{expr} AS {ident(name)}" for name, expr in add.items()]
        return self.step(", ".join(parts), columns=list(add))

    def sql(self, final: str = "*", where: str | None = None) -> str:
        ctes = ",\n".join(f"s{i} AS ({sql})" for i, sql in enumerate(self.steps))
        return f"WITH {ctes}\nSELECT {final} FROM {self.last}" + (f" WHERE {where}" if where else "")
