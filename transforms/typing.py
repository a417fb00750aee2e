"""Typing of raw export columns: a pure function from an input schema to a DuckDB projection.

CSV cells arrive as text (or null for empty cells and literal ``NULL``). Strings stay strings (``8611537``
is an ID, not a number), money and quantities become ``DECIMAL(38,18)``, dates in every format seen in
exports become UTC timestamps, booleans are parsed. A cell that cannot be converted raises an error whose
text starts with ``InvalidValue|<column>|`` so the pipeline can name the column (never the value: messages do
not echo file content). Headers are matched without regard to case or surrounding whitespace, under the
column's name or any of its aliases (``CostInBillingCurrency`` for ``Cost``). Only text and numbers feed a
number column, only text, dates and timestamps a date column, only text and booleans a boolean column.

A number with more than 18 decimals (in text, or a DECIMAL of a larger scale) is rounded to 18 (DECIMAL(38,18), far
below any currency's minor unit); the row is flagged (column :data:`ROUNDED`, ``RoundedTo18Decimals`` in Costs'
``x_SourceChanges``). A DOUBLE source is converted as it is (a binary fraction has no exact decimal to keep).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from hub.export_schemas import Column, ExportSchema

DECIMAL = "DECIMAL(38,18)"
SQL_TYPES = {"string": "VARCHAR", "decimal": DECIMAL, "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN"}
#: Non-ISO date formats seen in exports; ISO 8601 forms (``...Z``, ``...0000000Z``, ``2024-05-01``) cast directly.
US_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M")
ERROR_TAG = "InvalidValue|"
#: Text cells that mean "no value" (what the CSV reader turns into NULL: ``nullstr``).
NULL_TEXTS = ("", "NULL")
#: Boolean column of the typed relation: a number of the row had more than 18 decimals and was rounded.
ROUNDED = "_rounded"
#: DuckDB types (by prefix) that may feed each column type besides VARCHAR.
_FEEDS = {
    "decimal": ("DECIMAL", "DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT",
                "UINTEGER", "USMALLINT", "UTINYINT", "UHUGEINT"),
    "timestamp": ("TIMESTAMP", "DATE"),
    "boolean": ("BOOLEAN",),
}
_KIND = {"decimal": "number", "timestamp": "date", "boolean": "boolean"}


def ident(name: str) -> str:
    """Quote a column name for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_GLOB_SPECIAL = re.compile(r"([\[*?])")
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def glob_escape(path: str) -> str:
    """``path`` as a glob pattern that matches only itself: ``[``, ``*`` and ``?`` become the one-character classes
    ``[[]``, ``[*]`` and ``[?]`` (DuckDB's and fsspec's globs both read them so; ``]``, ``{`` and ``}`` are literal)."""
    return _GLOB_SPECIAL.sub(r"[\1]", path)


def files(source: str) -> str:
    """The quoted paths of ``source`` (a quoted path or a list of them) escaped as globs matching only themselves:
    DuckDB reads ``[``, ``*`` and ``?`` in a file name as a glob on every filesystem (``team[1]/x.parquet`` reads
    ``team1/x.parquet`` when that exists)."""
    return _QUOTED.sub(lambda m: "'" + glob_escape(m.group(1)) + "'", source)


def scan(function: str, source: str, options: str = "", *, glob: bool = False) -> str:
    """A DuckDB file-reading table function (``read_parquet``, ``read_csv``, ``read_json``) over ``source`` (quoted
    paths, each read by its exact name; a glob with ``glob``, its fixed part escaped by the caller) with ``options``,
    never reading a ``key=value`` folder of the path as a Hive partition: DuckDB would add that column to every row,
    or replace a real one (a hub under ``BillingCurrency=EUR/`` filed every USD row as EUR). Every file the hub reads
    goes through here."""
    return f"{function}({source if glob else files(source)}, hive_partitioning = false{', ' + options if options else ''})"


def enum_type(values: tuple[str, ...]) -> str:
    """The DuckDB ENUM type of ``values``, spelled as DuckDB describes it."""
    return "ENUM(" + ", ".join(literal(v) for v in values) + ")"


#: Appended (with a count) to a header that differs from an earlier one of its file only by case, where that is allowed
#: (AWS tag columns: ``resourceTags/user:Name`` and ``resourceTags/user:name`` are two keys): DuckDB's names are not
#: case-sensitive. :func:`original_header` takes it off.
TWIN = "\ue000"


def original_header(name: str) -> str:
    return name.split(TWIN, 1)[0]


def header_key(name: str) -> str:
    """How headers are compared: without regard to case or surrounding whitespace."""
    return name.strip().lower()


class IncompatibleType(ValueError):
    """A source column whose type cannot feed its schema column (a BOOLEAN money column, say)."""

    def __init__(self, column: str, source_type: str, target: str) -> None:
        super().__init__(f"column {column} is {source_type}, which cannot become a {_KIND.get(target, target)}")
        self.column = column


def try_text(col: Column, src: str, *, exponents: bool = True) -> str:
    """SQL converting the text expression ``src`` to the column's type; NULL where it cannot (``exponents``: see
    :func:`text_decimal`)."""
    if col.type == "string":
        return src
    if col.type == "decimal":
        return text_decimal(src, exponents=exponents)
    if col.type == "boolean":
        return f"TRY_CAST({src} AS {SQL_TYPES[col.type]})"
    formats = "[" + ", ".join(literal(f) for f in US_DATE_FORMATS) + "]"
    return f"coalesce(TRY_CAST({src} AS TIMESTAMPTZ), CAST(try_strptime({src}, {formats}) AS TIMESTAMPTZ))"


def text_decimal(src: str, *, exponents: bool = True) -> str:
    """SQL converting the text expression ``src`` to ``DECIMAL(38,18)`` exactly as ``TRY_CAST(src AS DECIMAL(38,18))``
    does, about six times faster for the small numbers bills write with an exponent (AWS's ``1.46E-8``).

    DuckDB's text-to-decimal cast costs about ten times more for text with an exponent than for plain text. Such
    text takes the cheaper way through DOUBLE when that is provably exact: when the value is below 0.001 and at
    least ``10^(len - 20)`` (``len``: characters of the text). Then (1) the text has at most 18 decimals: its
    digits number at most ``len - 2`` (the exponent takes a letter and a digit), and the last of them stands at
    ``10^(e - f)`` with ``e - f >= floor(log10 |v|) + 3 - len >= -18`` (``e`` the exponent, ``f`` the fraction's
    digits), so ``v * 10^18`` is an integer; (2) that integer is below ``10^15``, so the DOUBLE nearest the text
    times ``10^18`` (each step within a relative 2^-53) is within 0.23 of it and DuckDB's rounding gives it
    exactly. Any other text (plain, larger, smaller, longer) is cast directly. ``exponents=False``: a column whose
    sampled text had no exponent (:func:`hub.convert.exponent_free`) is cast directly too, without the tests (the same
    values: only the speed of a rare value with an exponent differs)."""
    if not exponents:
        return f"TRY_CAST({src} AS {DECIMAL})"
    number = f"TRY_CAST({src} AS DOUBLE)"
    cheap = f"(contains({src}, 'E') OR contains({src}, 'e')) AND abs({number}) < 0.001 AND {few_decimals(src)}"
    return f"CASE WHEN {cheap} THEN TRY_CAST({number} AS {DECIMAL}) ELSE TRY_CAST({src} AS {DECIMAL}) END"


def few_decimals(src: str) -> str:
    """TRUE for number text with an exponent that has at most 18 decimals because of its value and length (see
    :func:`text_decimal`); NULL for text that is not a number."""
    return f"abs(TRY_CAST({src} AS DOUBLE)) >= pow(10, strlen({src}) - 20)"


def cast_text(col: Column, src: str, *, exponents: bool = True) -> str:
    """SQL converting the text expression ``src`` to the column's type; bad values raise (naming the column).
    ``exponents``: see :func:`text_decimal`."""
    if col.type == "string":
        return src
    fail = f"error({literal(ERROR_TAG + col.name + '|is not a ' + _KIND[col.type])})"
    if col.type == "decimal":  # a number all the same (1E+30), beyond DECIMAL(38,18)'s 20 digits before the point
        big = f"error({literal(ERROR_TAG + col.name + '|is beyond 20 digits before the decimal point (the lake keeps 18 after)')})"
        fail = f"CASE WHEN isfinite(TRY_CAST({src} AS DOUBLE)) THEN {big} ELSE {fail} END"
    return f"coalesce({try_text(col, src, exponents=exponents)}, CASE WHEN {src} IS NOT NULL THEN {fail} END)"


def too_precise(sources: list[str]) -> str:
    """TRUE when a number in one of the text expressions ``sources`` has more than 18 significant decimals
    (``0.1234567890123456789``, ``1.2345678901234E-06``): its DECIMAL(38,18) is rounded. Plain text of at most 19
    characters cannot have more, so only a row with a longer number or an exponent somewhere (one length test and
    one text search per row, not per column) is tested column by column: a plain number by the length of its
    fraction without trailing zeros, a number with an exponent by that length minus the exponent."""
    if not sources:
        return "false"
    joined = f"concat({', '.join(sources)})"
    exponents = f"contains({joined}, 'E') OR contains({joined}, 'e')"
    longest = f"greatest({', '.join(f'strlen({s})' for s in sources)}) > 19"

    def exact(src: str) -> str:
        low = f"lower({src})"
        exponent = (f"coalesce(length(rtrim(split_part(split_part({low}, 'e', 1), '.', 2), '0')) "
                    f"- coalesce(TRY_CAST(nullif(split_part({low}, 'e', 2), '') AS INTEGER), 0) > 18, false)")
        return (f"CASE WHEN contains({src}, 'E') OR contains({src}, 'e') THEN NOT coalesce({few_decimals(src)}, false) "
                f"AND {exponent} ELSE {plain(src)} END")

    def plain(src: str) -> str:
        return f"strlen({src}) > 19 AND strpos({src}, '.') > 0 AND strlen(rtrim({src}, '0')) - strpos({src}, '.') > 18"

    # a row without an exponent anywhere (the usual long row) needs only the plain test, its length first
    return (f"CASE WHEN {exponents} THEN coalesce({' OR '.join(exact(s) for s in sources)}, false) "
            f"WHEN {longest} THEN coalesce({' OR '.join(f'({plain(s)})' for s in sources)}, false) ELSE false END")


def exact_double(src: str) -> str:
    """The text ``src`` as DOUBLE when it is a plain number (no exponent) shorter than 20 characters, so with
    at most 18 decimals; else NULL. Such text is exactly its DECIMAL(38,18) value, so this equals casting that
    decimal to DOUBLE (both round correctly): arithmetic on it gives the same result however the decimal was
    obtained (order independence). A length test is far cheaper than counting the decimals."""
    return f"CASE WHEN length({src}) < 20 AND NOT contains({src}, 'e') AND NOT contains({src}, 'E') THEN TRY_CAST({src} AS DOUBLE) END"


def _scale(duck_type: str) -> int:
    """The scale of a DuckDB ``DECIMAL(p,s)`` type (0 for other types)."""
    if not duck_type.upper().startswith("DECIMAL("):
        return 0
    return int(duck_type.rstrip(")").split(",")[-1])


def typed_value(col: Column, src: str, source_type: str, *, exponents: bool = True) -> str:
    """SQL of one source column (expression ``src`` of DuckDB type ``source_type``) as the column's type."""
    if source_type == "VARCHAR":
        return cast_text(col, src, exponents=exponents)
    if source_type.strip('"').upper() == "NULL":  # null on every line of a JSON file: no value, whatever the column
        return f"CAST(NULL AS {SQL_TYPES[col.type]})"
    if col.type == "string":
        # a nested value (Tags as a STRUCT, a list of {key, value}, a MAP) as JSON text, never DuckDB's display form
        # ({'team': web}), which no JSON reader takes
        nested = source_type.upper().startswith(("STRUCT", "MAP", "UNION")) or source_type.endswith("]")
        return f"CAST(to_json({src}) AS VARCHAR)" if nested else f"CAST({src} AS VARCHAR)"
    if not source_type.upper().startswith(_FEEDS[col.type]):
        raise IncompatibleType(col.name, source_type, col.type)
    if col.type == "decimal" and source_type.upper().startswith(("DOUBLE", "FLOAT", "REAL")):
        # the shortest text of the binary number (4.15), not its exact expansion (4.150000000000000512): money written
        # as a double (AWS's FOCUS Parquet) means the decimal it prints as
        return f"CAST(CAST({src} AS VARCHAR) AS {SQL_TYPES[col.type]})"
    return f"CAST({src} AS {SQL_TYPES[col.type]})"


@dataclass(frozen=True)
class Projection:
    """What the typed output is made of, and how the input's columns differed from the schema."""

    select: list[str]
    missing: list[str]
    extra: list[str]
    matched: int
    #: schema column name -> the source header it was read from
    sources: dict[str, str]
    #: required schema columns the source lacks (under every spelling)
    missing_required: list[str]


#: Prefix of the double-precision copies :func:`project` adds for arithmetic (never written to the lake).
DOUBLE_PREFIX = "_dbl_"


def project(schema: ExportSchema, source: dict[str, str], doubles: tuple[str, ...] = (), *, null_texts: bool = False,
            plain: Collection[str] = ()) -> Projection:
    """Build the typed SELECT list for a source with columns ``{name: duckdb type}``.

    Schema columns come first in schema order (absent ones as typed nulls, so every file of a dataset
    has the same columns and types); columns the schema does not know are kept after them, unchanged.
    Names are matched case-insensitively and without surrounding whitespace, under the column's name or an
    alias (``aliases`` in the mapping file), as Cost Management changes spellings between versions and
    agreements. ``doubles``: decimal targets that also get a ``_dbl_<target>`` DOUBLE copy parsed from the same
    text (parsing text is cheap; converting a DECIMAL(38,18) to DOUBLE later costs about 100 ns a value).
    Adds :data:`ROUNDED` when a text number column can hold more than 18 decimals. Raises
    :class:`IncompatibleType` for a column of a type that cannot feed its schema column. ``null_texts``: text cells
    ``''`` and ``NULL`` become nulls (Parquet text columns; the CSV reader already does it). ``plain``: text columns
    of the source whose sampled values had no exponent (:func:`text_decimal`).
    """
    by_key: dict[str, str] = {}
    for name in source:
        by_key.setdefault(header_key(name), name)
    select, missing, required, used, sources, rounded, wider = [], [], [], set(), {}, [], []
    for col in schema.columns:
        name = next((by_key[k] for k in map(header_key, col.spellings) if k in by_key and by_key[k] not in used), None)
        out = ident(col.target)
        if name is None:
            if col.required:
                required.append(col.name)
            if not col.optional:
                missing.append(col.name)
            select.append(f"CAST(NULL AS {SQL_TYPES[col.type]}) AS {out}")
            continue
        used.add(name)
        sources[col.name] = name
        src = text_nulls(ident(name)) if null_texts and source[name] == "VARCHAR" else ident(name)
        select.append(f"{typed_value(col, src, source[name], exponents=name not in plain)} AS {out}")
        if source[name] == "VARCHAR" and col.type == "decimal":
            rounded.append(src)
            if col.target in doubles:
                select.append(f"{exact_double(src)} AS {ident(DOUBLE_PREFIX + col.target)}")
        elif col.type == "decimal" and _scale(source[name]) > 18:  # a Parquet DECIMAL(p, s > 18)
            wider.append(f"CAST(CAST({src} AS {DECIMAL}) AS {source[name]}) <> {src}")
    targets = {header_key(c.target) for c in schema.columns}
    extra = [n for n in source if n not in used and header_key(n) not in targets]
    select += [f"{text_nulls(ident(n))} AS {ident(n)}" if null_texts and source[n] == "VARCHAR" else ident(n) for n in extra]
    checks = ([too_precise(rounded)] if rounded else []) + wider
    if checks:
        select.append(f"coalesce({' OR '.join(checks)}, false) AS {ident(ROUNDED)}")
    return Projection(select, missing, extra, len(used), sources, required)


def decimal_sources(schema: ExportSchema, source: dict[str, str]) -> dict[str, str]:
    """The text columns of ``source`` that may feed a decimal column of ``schema`` (under any of its spellings)."""
    keys = {header_key(s) for c in schema.columns if c.type == "decimal" for s in c.spellings}
    return {n: t for n, t in source.items() if t == "VARCHAR" and header_key(n) in keys}


def text_nulls(src: str) -> str:
    """A text column with the cells that mean "no value" (``''``, ``NULL``) as NULL, as the CSV reader does."""
    return f"CASE WHEN {src} IN ({', '.join(literal(v) for v in NULL_TEXTS)}) THEN NULL ELSE {src} END"
