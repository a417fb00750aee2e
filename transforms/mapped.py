"""A provider's own report mapped to FOCUS columns by a mapping file (``schemas/<provider>/<report>.json``): a pure
function from the mapping and the report's columns to a DuckDB projection. One engine for every mapped report.

A mapping gives each FOCUS column a SQL expression over the report's columns, written ``{name}``. Names are matched
without regard to case, ``/``, ``_``, ``:`` and spaces, so one mapping serves a report's CSV and Parquet spellings
(AWS ``lineItem/UsageStartDate`` and ``line_item_usage_start_date``); a column the report lacks is NULL (reports
whose column set changes from month to month). ``num({name})`` is the column as a decimal (text that is not a number
raises ``InvalidValue`` naming the column). ``tagColumns`` builds Tags from one column per tag key (a ``prefix``,
with ``strip`` prefixes removed from the keys) or takes a map column (``map``) as JSON, its keys without those prefixes
too. ``lookups`` maps a key expression through a CSV of the provider's folder (``key``, ``value`` columns, a
``default``; ``given``: the report's own value, which wins where it is not empty). ``defaults`` gives a column the report lacks an expression instead of NULL. ``let`` names sub-expressions a mapping uses more than once: ``{@name}`` stands for ``let[name]`` (in
parentheses; a ``let`` may use another). ``aliases`` gives a name other spellings (``{"payer_uin": ["Payer Account
ID"]}``): a report without the name reads the first spelling it has (a provider's API field names and its console's
display names in one mapping); ``detect`` accepts them too. A lookup's ``key`` may be a list of expressions: the
first that finds a row wins. ``fileMonth`` (``{"column": name, "pathPatterns": [regex, ...]}``): the report's rows
may lack that billing-month column; the caller adds the month the file's name carries (or the first pattern, with
``year`` and ``month`` groups, finds in its path) as ``{__file_month}`` (NULL when it carries none).
``needs`` (``{"EffectiveCost": [name, ...]}``): the report columns without which a FOCUS column stays empty on some
rows, named in the error when it does. ``required`` (``{name: why}``): report columns without which the mapping would
give wrong money on rows it cannot tell (Google's ``credits``: without them every cost is gross), refused up front. ``{?name}`` is TRUE when the report has the column (under its name or an
alias), else FALSE: a rule that cannot be computed without a column the report lacks gives NULL rather than a guess. ``hints`` (``{"currency": "CNY"}``) names what a delivery may tell about its files (a native delivery's
``manifest.json``: ``{"currency": "USD"}``), each with the provider's default: ``{$name}`` is the delivery's value, else
that default, as a text literal (NULL without either), so a mapping stays data (``coalesce({currency}, {$currency})``:
a row's own currency, else the delivery's, else the provider's usual one).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hub.export_schemas import Column
from transforms.typing import cast_text, ident, literal, original_header

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_/:. -]+)\}")
_NUM = re.compile(r"num\(\{([A-Za-z0-9_/:. -]+)\}\)")
_LET = re.compile(r"\{@([A-Za-z0-9_]+)\}")
_HINT = re.compile(r"\{\$([A-Za-z0-9_]+)\}")
_HAS = re.compile(r"\{\?([A-Za-z0-9_/:. -]+)\}")


def key(name: str) -> str:
    """How report column names are compared: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def by_key(spec: dict, columns: dict[str, str]) -> dict[str, str]:
    """The report's columns by :func:`key`; a name the mapping gives ``aliases`` for stands for the first of its
    spellings the report has when it lacks the name (one mapping for a report's API and console headers)."""
    found: dict[str, str] = {}
    for name in columns:
        found.setdefault(key(name), name)
    for name, spellings in spec.get("aliases", {}).items():
        if key(name) not in found:
            alias = next((found[key(s)] for s in spellings if key(s) in found), None)
            if alias is not None:
                found[key(name)] = alias
    return found


def detects(spec: dict, columns: dict[str, str]) -> bool:
    """True when the report has every column the mapping's ``detect`` lists (under its name or an alias)."""
    have = by_key(spec, columns)
    return bool(spec.get("detect")) and all(key(d) in have for d in spec["detect"])


@dataclass(frozen=True)
class Mapped:
    select: list[str]
    #: SQL of the report's own totals per currency: (currency expression, {amount name: expression})
    totals: tuple[str, dict[str, str]]
    #: the report's text columns used as numbers, each converted once (``expr AS name``): :attr:`select` and
    #: :attr:`totals` read these names, so the relation they select from is ``SELECT *, <numbers> FROM report``
    numbers: list[str] = dataclasses.field(default_factory=list)

    def source(self, report: str) -> str:
        """The relation :attr:`select` reads: ``report`` with :attr:`numbers` added."""
        return f"(SELECT *, {', '.join(self.numbers)} FROM {report})" if self.numbers else report


#: The column holding the billing month of a report's file name (``fileMonth``), added by the caller.
FILE_MONTH = "__file_month"


#: Prefix of the converted number columns (:attr:`Mapped.numbers`; never in the output).
NUMBER_PREFIX = "__num_"


def project(spec: dict, columns: dict[str, str], lookup_files: dict[str, str], hints: Mapping[str, str] | None = None) -> Mapped:
    """The SELECT list turning a report with ``columns`` ({name: DuckDB type}) into FOCUS-named columns.
    ``lookup_files``: the text of each CSV the mapping's ``lookups`` name; ``hints``: what the delivery tells (its
    billing currency), for the mapping's ``{$name}`` placeholders."""
    named = by_key(spec, columns)
    given = hint_values(spec, hints)
    defaults = {key(k): v for k, v in spec.get("defaults", {}).items()}
    numbers: dict[str, str] = {}  # text column -> its converted column (a column a mapping uses in five rules is parsed once)

    def resolve(expr: str) -> str:
        expr = _HINT.sub(lambda m: given[m.group(1)], _expand(expr, spec.get("let", {})))

        def number(m: re.Match) -> str:
            found = named.get(key(m.group(1)))
            if found is None:
                default = defaults.get(key(m.group(1)))
                return f"CAST(({resolve(default)}) AS DECIMAL(38,18))" if default else "CAST(NULL AS DECIMAL(38,18))"
            src = ident(found)
            if columns[found] not in ("VARCHAR", "DOUBLE", "FLOAT", "BOOLEAN"):  # a flag is no amount: read as text
                return f"CAST({src} AS DECIMAL(38,18))"
            if found not in numbers:
                numbers[found] = f"{NUMBER_PREFIX}{len(numbers)}"
            return ident(numbers[found])

        def column(m: re.Match) -> str:
            found = named.get(key(m.group(1)))
            if found is not None:
                return _text(found, columns[found])
            default = defaults.get(key(m.group(1)))
            return f"({resolve(default)})" if default else "CAST(NULL AS VARCHAR)"

        expr = _HAS.sub(lambda m: "TRUE" if key(m.group(1)) in named else "FALSE", expr)
        expr = _NUM.sub(number, expr)
        return _PLACEHOLDER.sub(column, expr)

    select = [f"{resolve(expr)} AS {ident(col)}" for col, expr in spec["columns"].items()]
    for target, lk in spec.get("lookups", {}).items():
        rows = list(csv.DictReader(io.StringIO(lookup_files[target])))
        first = next(iter(rows[0])) if rows else "key"
        cases = " ".join(f"WHEN {literal(r[first])} THEN {literal(r[lk['value']])}" for r in rows)
        default = "NULL" if lk.get("default") is None else literal(lk["default"])
        keys = lk["key"] if isinstance(lk["key"], list) else [lk["key"]]
        found = ", ".join(f"CASE {resolve(k)} {cases} END" for k in keys)
        found = f"coalesce({found}, {default})" if cases else default
        if lk.get("given"):  # the report's own value, where it has one, wins over the table's
            found = f"coalesce(nullif({resolve(lk['given'])}, ''), {found})"
        select.append(f"{found} AS {ident(lk['value'])}")
    if tags := _tags(spec.get("tagColumns"), columns):
        select.append(f"{tags} AS \"Tags\"")
    totals = spec.get("totals", {})
    currency = resolve(totals.get("currency", "NULL"))
    amounts = {k: resolve(v) for k, v in totals.items() if k != "currency"}
    converted = []
    for c, n in numbers.items():  # a double as its shortest text, not its binary expansion (a value beyond the
        # decimal's range is then refused naming its column, as text is)
        text = f"nullif(trim({ident(c)}), '')" if columns[c] == "VARCHAR" else f"CAST({ident(c)} AS VARCHAR)"
        converted.append(f"{cast_text(Column(c, 'decimal', c), text)} AS {ident(n)}")
    return Mapped(select, (currency, amounts), converted)


def lacking(spec: dict, columns: dict[str, str], target: str) -> list[str]:
    """The report columns the mapping needs for ``target`` (``needs``: the ones without which it stays empty; else
    every column its expression reads) that a report with ``columns`` lacks and has no default for: what to name
    when ``target`` comes out empty (a trimmed CUR 2.0 without its savings-plan columns)."""
    named, defaults = by_key(spec, columns), {key(k) for k in spec.get("defaults", {})}
    needed = spec.get("needs", {}).get(target)
    if needed is None:
        expr = _expand(spec.get("columns", {}).get(target, ""), spec.get("let", {}))
        needed = list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(expr)))
    return [n for n in needed if key(n) not in named and key(n) not in defaults and n != FILE_MONTH]


def missing_required(spec: dict, columns: dict[str, str]) -> dict[str, str]:
    """The ``required`` report columns (with why) a report with ``columns`` lacks, under every spelling."""
    named = by_key(spec, columns)
    return {n: why for n, why in spec.get("required", {}).items() if key(n) not in named}


def hint_values(spec: dict, hints: Mapping[str, str] | None) -> dict[str, str]:
    """Each hint the mapping declares as a SQL text literal: the delivery's value, else the mapping's default (NULL
    without either). A hint the delivery gives that the mapping does not declare is not used by it."""
    given = dict(hints or {})
    out = {}
    for name, default in spec.get("hints", {}).items():
        value = given.get(name, default)
        out[name] = "CAST(NULL AS VARCHAR)" if value is None else literal(str(value))
    return out


#: Scalar types a report converted to Parquet by a tool gives a column the mappings read as text (an id DuckDB or
#: pandas typed BIGINT or DOUBLE, a numeric tag value, a flag).
_SCALAR = re.compile(r"(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|DECIMAL(\(.*\))?|BOOLEAN|UUID)")


def _text(column: str, typ: str) -> str:
    """A report column as the mappings read it: its text (a timestamp, a date or a JSON map stays as it is); a whole
    double as the integer it stands for (pandas types an id or a tag column with a blank cell float64: ``1234``, not
    ``1234.0``)."""
    src = ident(column)
    if typ in ("DOUBLE", "FLOAT"):
        return (f"CASE WHEN {src} = trunc({src}) AND abs({src}) < 9007199254740992 THEN CAST(CAST({src} AS HUGEINT) AS "
                f"VARCHAR) ELSE CAST({src} AS VARCHAR) END")
    return f"CAST({src} AS VARCHAR)" if _SCALAR.fullmatch(typ) else src


def _expand(expr: str, lets: dict[str, str]) -> str:
    """``{@name}`` replaced by the mapping's ``let`` expression of that name, in parentheses."""
    return _LET.sub(lambda m: f"({_expand(lets[m.group(1)], lets)})", expr)


def _tags(spec: dict | None, columns: dict[str, str]) -> str | None:
    """Tags as a JSON object from one column per tag key, or from a map column; None when the report has neither."""
    if not spec:
        return None
    mapped = next((c for c in columns if key(c) == key(spec.get("map", "")) and spec.get("map")), None)
    if mapped is not None:
        src = ident(mapped)
        text = f"CAST(to_json({src}) AS VARCHAR)" if columns[mapped] != "VARCHAR" else f"nullif(trim({src}), '')"
        return _stripped_keys(text, spec.get("strip", []))
    prefix = key(spec.get("prefix", ""))
    tagged = [c for c in columns if prefix and key(c).startswith(prefix) and key(c) != prefix]
    if not tagged:
        return None
    entries = []
    for c in tagged:
        header = original_header(c)  # a key differing from another only by case is another key
        name = re.split(r"[/]", header, maxsplit=1)[-1] if "/" in header else header[len(spec.get("prefix", "")):]
        for strip in spec.get("strip", []):
            if name.startswith(strip):
                name = name[len(strip):]
                break
        value = _text(c, columns[c])
        entries.append(f"CASE WHEN nullif(trim({value}), '') IS NOT NULL THEN {literal(json.dumps(name))} || ':' || "
                       f"CAST(to_json({value}) AS VARCHAR) END")
    return f"'{{' || concat_ws(',', {', '.join(entries)}) || '}}'"


def _stripped_keys(text: str, strip: list[str]) -> str:
    """The JSON object ``text`` with each key's first ``strip`` prefix removed (``user_env`` -> ``env``; kept when the
    object already has the shorter key) and entries without a value dropped; text that is not a JSON object as it is."""
    if not strip:
        return text
    name = "e.key"
    for prefix in reversed(strip):
        short = f"e.key[{len(prefix) + 1}:]"
        name = (f"CASE WHEN starts_with(e.key, {literal(prefix)}) AND NOT list_contains(json_keys({text}), {short}) "
                f"THEN {short} ELSE {name} END")
    entries = (f"list_filter(map_entries(json_transform({text}, '\"MAP(VARCHAR, JSON)\"')), "
               "lambda e: coalesce(CAST(e.value AS VARCHAR), 'null') NOT IN ('null', '\"\"'))")
    pairs = f"list_transform({entries}, lambda e: CAST(to_json({name}) AS VARCHAR) || ':' || CAST(e.value AS VARCHAR))"
    return f"CASE WHEN json_valid({text}) AND json_type({text}) = 'OBJECT' THEN '{{' || array_to_string({pairs}, ',') || '}}' ELSE {text} END"
