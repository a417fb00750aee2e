"""Typing of raw export columns: a pure function from an input schema to a DuckDB projection.

CSV cells arrive as text (or null for empty cells and literal ``NULL``). Strings stay strings (``8611537``
is an ID, not a number), money and quantities become ``DECIMAL(38,18)``, dates in every format seen in
exports become UTC timestamps, booleans are parsed. A cell that cannot be converted raises an error whose
text starts with ``InvalidValue|<column>|`` so the pipeline can name the column and the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.export_schemas import Column, ExportSchema

DECIMAL = "DECIMAL(38,18)"
SQL_TYPES = {"string": "VARCHAR", "decimal": DECIMAL, "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN"}
#: Non-ISO date formats seen in exports; ISO 8601 forms (``...Z``, ``...0000000Z``, ``2024-05-01``) cast directly.
US_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M")
ERROR_TAG = "InvalidValue|"


def ident(name: str) -> str:
    """Quote a column name for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def enum_type(values: tuple[str, ...]) -> str:
    """The DuckDB ENUM type of ``values``, spelled as DuckDB describes it."""
    return "ENUM(" + ", ".join(literal(v) for v in values) + ")"


def _fail(col: Column, src: str, kind: str) -> str:
    return f"error({literal(ERROR_TAG + col.name + '|')} || left({src}, 80) || {literal('| is not a ' + kind)})"


def cast_text(col: Column, src: str) -> str:
    """SQL converting the text expression ``src`` to the column's type; bad values raise."""
    if col.type == "string":
        return src
    if col.type == "decimal":
        return f"coalesce(TRY_CAST({src} AS {DECIMAL}), CASE WHEN {src} IS NOT NULL THEN {_fail(col, src, 'number')} END)"
    if col.type == "boolean":
        return f"coalesce(TRY_CAST({src} AS BOOLEAN), CASE WHEN {src} IS NOT NULL THEN {_fail(col, src, 'boolean')} END)"
    formats = "[" + ", ".join(literal(f) for f in US_DATE_FORMATS) + "]"
    return (f"coalesce(TRY_CAST({src} AS TIMESTAMPTZ), CAST(try_strptime({src}, {formats}) AS TIMESTAMPTZ), "
            f"CASE WHEN {src} IS NOT NULL THEN {_fail(col, src, 'date')} END)")


def exact_double(src: str) -> str:
    """The text ``src`` as DOUBLE when it is a plain number (no exponent) shorter than 20 characters, so with
    at most 18 decimals; else NULL. Such text is exactly its DECIMAL(38,18) value, so this equals casting that
    decimal to DOUBLE (both round correctly): arithmetic on it gives the same result however the decimal was
    obtained (order independence). A length test is far cheaper than counting the decimals."""
    return f"CASE WHEN length({src}) < 20 AND NOT contains({src}, 'e') AND NOT contains({src}, 'E') THEN TRY_CAST({src} AS DOUBLE) END"


@dataclass(frozen=True)
class Projection:
    """What the typed output is made of, and how the input's columns differed from the schema."""

    select: list[str]
    missing: list[str]
    extra: list[str]
    matched: int


#: Prefix of the double-precision copies :func:`project` adds for arithmetic (never written to the lake).
DOUBLE_PREFIX = "_dbl_"


def project(schema: ExportSchema, source: dict[str, str], doubles: tuple[str, ...] = ()) -> Projection:
    """Build the typed SELECT list for a source with columns ``{name: duckdb type}``.

    Schema columns come first in schema order (absent ones as typed nulls, so every file of a dataset
    has the same columns and types); columns the schema does not know are kept after them, unchanged.
    Names are matched case-insensitively, as Cost Management changes casing between versions.
    ``doubles``: decimal targets that also get a ``_dbl_<target>`` DOUBLE copy parsed from the same text
    (parsing text is cheap; converting a DECIMAL(38,18) to DOUBLE later costs about 100 ns a value).
    """
    by_lower = {name.lower(): name for name in source}
    select, missing, used = [], [], set()
    for col in schema.columns:
        name = by_lower.get(col.name.lower())
        out = ident(col.target)
        if name is None:
            missing.append(col.name)
            select.append(f"CAST(NULL AS {SQL_TYPES[col.type]}) AS {out}")
            continue
        used.add(name)
        src = ident(name)
        if source[name] == "VARCHAR":
            select.append(f"{cast_text(col, src)} AS {out}")
            if col.target in doubles and col.type == "decimal":
                select.append(f"{exact_double(src)} AS {ident(DOUBLE_PREFIX + col.target)}")
        elif col.type == "string":
            select.append(f"CAST({src} AS VARCHAR) AS {out}")
        else:
            select.append(f"CAST({src} AS {SQL_TYPES[col.type]}) AS {out}")
    targets = {c.target.lower() for c in schema.columns}
    extra = [n for n in source if n not in used and n.lower() not in targets]
    select += [ident(n) for n in extra]
    return Projection(select, missing, extra, len(used))
