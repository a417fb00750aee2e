"""FOCUS 1.0 conformance checks as SQL predicates: a pure function from the columns a dataset has to the
list of checks ``hub validate`` runs on every row.

Generic checks come from ``schemas/focus_1_0/columns.csv`` (presence of mandatory columns, types,
nullability, allowed values, ``x_`` prefix of custom columns); conditional rules from
``schemas/focus_1_0/rules.json``. Each check is a predicate that is TRUE for a violating row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from transforms.typing import ident, literal

#: ISO 8601 UTC as FOCUS requires in text formats: ``YYYY-MM-DDTHH:mm:ssZ`` (fractions allowed).
ISO_UTC = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"
DEFAULT_TOLERANCE = 0.0001


@dataclass(frozen=True)
class FocusColumn:
    name: str
    type: str
    feature_level: str
    allows_nulls: bool
    allowed_values: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    rule: str
    column: str
    text: str
    violation: str
    #: True when the check concerns the schema, not rows (every row counts as violating).
    schema_level: bool = False
    #: True when ingestion counts the check on the written file rather than while writing: Parquet statistics
    #: answer it (NotNull, EmptyString), or it applies string functions that cost less per distinct value of a
    #: dictionary-encoded column than per row (allowed values, ``onFile`` rules).
    on_file: bool = False
    #: True when the Costs normalization guarantees the rule for every row it writes (``"guaranteed"`` in rules.json),
    #: or the rule is left to ``hub validate`` (``"validateOnly"``: too costly per row to count on every ingestion):
    #: ingestion does not count it on its own output; ``hub validate`` always does.
    guaranteed: bool = False


@cache
def focus_columns() -> dict[str, FocusColumn]:
    text = (resources.files("schemas") / "focus_1_0" / "columns.csv").read_text()
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        allowed = tuple(v for v in row["AllowedValues"].split(";") if v)
        out[row["Name"]] = FocusColumn(row["Name"], row["Type"], row["FeatureLevel"], row["AllowsNulls"] == "True", allowed)
    return out


@cache
def _rules_file() -> dict:
    return json.loads((resources.files("schemas") / "focus_1_0" / "rules.json").read_text())


def _rules() -> list[dict]:
    return _rules_file()["rules"]


@cache
def currencies() -> frozenset[str]:
    """ISO 4217 currency codes (``schemas/focus_1_0/currencies.csv``: the current ones and a few recently withdrawn that
    older bills carry, ``HRK``)."""
    text = (resources.files("schemas") / "focus_1_0" / "currencies.csv").read_text()
    return frozenset(line.strip() for line in text.splitlines()[1:] if line.strip())


def version_of(columns: dict[str, str] | list[str]) -> str | None:
    """The FOCUS version a file's columns say (``versionColumns`` in rules.json: the newest version one of whose own
    columns it has), None when they say none (1.0 or earlier: told per row)."""
    names = set(columns)
    for version, own in sorted(_rules_file()["versionColumns"].items(), reverse=True):
        if names & set(own):
            return version
    return None


def later_columns() -> set[str]:
    """Columns of later FOCUS versions: allowed without the x_ prefix."""
    return set(_rules_file()["laterVersionColumns"])


def _type_ok(focus_type: str, duck_type: str) -> bool:
    t = duck_type.upper()
    if focus_type == "Decimal":
        return t.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL")) or re.fullmatch(r"U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?", t) is not None
    if focus_type == "DateTime":
        return t.startswith("TIMESTAMP")
    if focus_type.startswith("JSON"):  # Parquet's JSON logical type (DuckDB's JSON columns) is JSON text too
        return t in ("VARCHAR", "JSON")
    return t == "VARCHAR"


def cast_double(column: str) -> str:
    return f"CAST({ident(column)} AS DOUBLE)"


def checks(columns: dict[str, str], *, text_source: bool, tolerance: float = DEFAULT_TOLERANCE,
           double: Callable[[str], str] = cast_double, typed: bool = True) -> list[Check]:
    """Every check that applies to a dataset with ``columns`` (name -> DuckDB type).

    ``text_source``: the data is raw text (a CSV read as strings), so types and date formats are checked
    per value, and the literal string ``NULL`` is a defect; otherwise types are checked on the schema.
    Predicates refer to typed columns by name and, for text sources, to raw text as ``"raw:<name>"``;
    ``double`` gives the DOUBLE value of a decimal column for the arithmetic rules (``{double:Col}``); ``typed``:
    ``columns`` holds the real types (False: the names only matter, every check that applies is made).
    """
    out: list[Check] = []
    focus = focus_columns()
    #: columns of another type (a typed source): their Type violation is reported; checks reading their values are not
    #: made (a text date compared with a timestamp, a MAP compared with '', would fail the whole query)
    mistyped = {n for n, col in focus.items()
                if typed and not text_source and n in columns and not _type_ok(col.type, columns[n])}
    for col in focus.values():
        if col.name not in columns:
            if col.feature_level == "Mandatory":
                out.append(Check("ColumnPresent", col.name, f"mandatory column {col.name} is present", "true", True))
            continue
        c = ident(col.name)
        raw = ident(f"raw:{col.name}")
        if text_source:
            out.append(Check("NullAsString", col.name, "nulls are nulls, not the string 'NULL'", f"{raw} = 'NULL'"))
            # a value that is there and not of its type: NaN and inf are no decimal numbers (a number beyond the lake's
            # DECIMAL(38,18) is one), 2024-02-30 no date (its typed copy, the one the rules read, is null)
            if col.type == "Decimal":
                number = f"TRY_CAST({raw} AS DOUBLE)"
                out.append(Check("Type", col.name, "a decimal number",
                                 f"{raw} IS NOT NULL AND {raw} <> 'NULL' AND ({number} IS NULL OR NOT isfinite({number}))"))
            elif col.type == "DateTime":
                out.append(Check("Type", col.name, "an ISO 8601 UTC date-time (YYYY-MM-DDTHH:mm:ssZ)",
                                 f"{raw} IS NOT NULL AND {raw} <> 'NULL' AND ({c} IS NULL OR NOT regexp_full_match({raw}, "
                                 f"{literal(ISO_UTC)}))"))
        elif not _type_ok(col.type, columns[col.name]):
            out.append(Check("Type", col.name, f"type {col.type} (found {columns[col.name]})", "true", True))
        elif typed and col.type == "Decimal" and columns[col.name].upper().startswith(("DOUBLE", "FLOAT", "REAL")):
            out.append(Check("Type", col.name, "a finite decimal number (not NaN or infinite)", f"NOT isfinite({c})"))
        if not text_source and col.type not in ("Decimal", "DateTime") and col.name not in mistyped:
            text = f"CAST({c} AS VARCHAR)" if columns[col.name].upper() == "JSON" else c  # '' is no JSON value
            out.append(Check("EmptyString", col.name, "nulls are nulls, never empty strings", f"{text} = ''", on_file=True))
        if not col.allows_nulls:  # text: a value that is there but not of its type is a Type violation, not a null
            null = f"{c} IS NULL AND ({raw} IS NULL OR {raw} = 'NULL')" if text_source else f"{c} IS NULL"
            out.append(Check("NotNull", col.name, f"{col.name} is never null", null, on_file=True))
        if col.allowed_values and col.name not in mistyped:
            values = ", ".join(literal(v) for v in col.allowed_values)
            out.append(Check("AllowedValues", col.name, f"one of: {', '.join(col.allowed_values)}",
                             f"{c} IS NOT NULL AND {c} NOT IN ({values})", on_file=True))
    for name in columns:
        if name not in focus and not name.startswith("x_") and name not in later_columns():
            out.append(Check("CustomColumnPrefix", name, "custom columns start with x_", "true", True))
    for rule in _rules():
        if all(col in columns for col in rule["columns"]) and not mistyped & set(rule["columns"]):
            violation = re.sub(r"\{double:(\w+)\}", lambda m: double(m.group(1)), rule["violation"])
            violation = violation.replace("{currencies}", "[" + ", ".join(f"'{c}'" for c in sorted(currencies())) + "]")
            out.append(Check(rule["id"], rule["columns"][0], rule["text"], violation.replace("{tolerance}", repr(tolerance)),
                             on_file=rule.get("onFile", False),
                             guaranteed=rule.get("guaranteed", False) or rule.get("validateOnly", False)))
    return out


def typed_projection(columns: list[str]) -> list[str]:
    """For a text source: every column typed as FOCUS says, plus its raw text as ``"raw:<name>"``.

    The literal string ``NULL`` stays a (bad) value in the raw column and becomes null in the typed one,
    so the conditional rules still see through it while ``NullAsString`` reports it.
    """
    focus = focus_columns()
    out = []
    for name in columns:
        src = ident(name)
        value = f"nullif({src}, 'NULL')"
        kind = focus[name].type if name in focus else "String"
        if kind == "Decimal":
            value = f"TRY_CAST({value} AS DECIMAL(38,18))"
        elif kind == "DateTime":
            value = f"TRY_CAST({value} AS TIMESTAMPTZ)"
        out += [f"{value} AS {src}", f"{src} AS {ident('raw:' + name)}"]
    return out
