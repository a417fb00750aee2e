"""Stage 1: each Costs row's value of every dimension (cost center, product), from its tags, its resource group's or
subscription's tags, or the ordered mappings, checked against the allowlists at the row's date.

Columnar: the rows' distinct (Tags, scope, matched columns, day) combinations are resolved once in SQL, then joined
back; only the distinct tag keys and values (a few thousand) are normalised in Python (case folding, aliases)."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from hub.allocation.rules import NOT_ALLOWLISTED, SUFFIXES, UNALLOCATED, Dimension, Rules, casefold, norm_key, sentinel
from hub.errors import HubError
from transforms.typing import ident, literal

__all__ = ["SUFFIXES"]
#: Sources of a value, by chain step.
SOURCES = {"tag": "tag", "resource_group": "resource_group_tag", "subscription": "subscription_tag", "mapping": "mapping",
           "default": "default"}


def signature_columns(rules: Rules) -> list[str]:
    """The columns stage 1 depends on (besides the row's day)."""
    cols = ["Tags", "SubAccountId", "x_ResourceGroupName"]
    for m in rules.mappings:
        cols += [c for c in m.match if c not in cols]
    return cols


def boundaries(rules: Rules) -> list[date]:
    """Every date a rule starts or stops counting (allowlist entries, scope tags, mappings), latest first."""
    dates = {d for entries in rules.allowlists.values() for e in entries for d in (e.valid_from, e.valid_to)}
    dates |= {d for s in rules.scope_tags for d in (s.valid_from, s.valid_to)}
    dates |= {d for m in rules.mappings for d in (m.valid_from, m.valid_to)}
    return sorted((d for d in dates if d is not None), reverse=True)


def day_sql(rules: Rules, column: str = "ChargePeriodStart") -> str:
    """A row's day as the rules see it: the latest rule date on or before it (every day between two rule dates is
    resolved alike, so they share one signature); ``0001-01-01`` before the first."""
    day = f"CAST({column} AS DATE)"
    cases = " ".join(f"WHEN {day} >= DATE {literal(d.isoformat())} THEN DATE {literal(d.isoformat())}"
                     for d in boundaries(rules))
    return f"CASE {cases} ELSE DATE '0001-01-01' END" if cases else "DATE '0001-01-01'"


def resolve(con: duckdb.DuckDBPyConnection, rules: Rules, src: str) -> str:
    """Create ``sig`` (distinct signatures of ``src``, numbered ``_sig``) and one ``res_<dimension>`` table per dimension
    (``_sig`` and the :data:`SUFFIXES` columns); returns the SQL joining them back to ``src`` rows."""
    cols = signature_columns(rules)
    listed = ", ".join(ident(c) for c in cols)
    con.execute(f"CREATE OR REPLACE TEMP TABLE sig AS SELECT row_number() OVER () AS _sig, * FROM "
                f"(SELECT DISTINCT {listed}, {day_sql(rules)} AS _day FROM {src})")
    con.execute("CREATE OR REPLACE TEMP TABLE pairs AS SELECT s._sig, t.key AS _key, t.type AS _type, "
                "json_extract_string(t.value, '$') AS _raw FROM sig s, "
                "json_each(CASE WHEN json_valid(s.Tags) AND json_type(s.Tags) = 'OBJECT' THEN s.Tags ELSE '{}' END) t")
    keys = [k for (k,) in con.execute("SELECT DISTINCT _key FROM pairs").fetchall()]
    for name, dim in rules.dimensions.items():
        _resolve_dimension(con, rules, name, dim, keys)
    joins = " ".join(f"JOIN res_{name} USING (_sig)" for name in rules.dimensions)
    on = " AND ".join(f"s.{ident(c)} IS NOT DISTINCT FROM sig.{ident(c)}" for c in cols)
    day = day_sql(rules, "s.ChargePeriodStart")
    return f"(SELECT s.*, sig._sig FROM {src} s JOIN sig ON {on} AND {day} = sig._day) r {joins}"


def _value_row(raw: str | None, kind: str, dim: Dimension) -> tuple[str | None, str | None, str | None]:
    """(value, its case-folded form, reason when unusable) of a raw tag value."""
    if kind == "BOOLEAN" or raw is None or not raw.strip() or sentinel(raw):  # a status's spelling is no value
        return None, None, "empty_value"
    value = raw.strip()
    folded = casefold(value)
    for canonical, spellings in dim.value_aliases.items():
        if folded in {casefold(canonical), *(casefold(s) for s in spellings)}:
            return canonical, casefold(canonical), None
    return value, folded, None


def _scope_value(tags: dict[str, str], dim: Dimension) -> tuple[str | None, str | None]:
    """A scope's value for a dimension: its highest-priority key with a usable value (first spelling on a tie)."""
    wanted = [norm_key(k, dim.key_normalization) for k in dim.tag_keys]
    best = None
    for key in sorted(tags):
        normed = norm_key(key, dim.key_normalization)
        if normed in wanted:
            value, folded, why = _value_row(tags[key], "VARCHAR", dim)
            rank = wanted.index(normed)
            if why is None and (best is None or rank < best[0]):
                best = (rank, value, folded)
    return (best[1], best[2]) if best else (None, None)


def _table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, pa.DataType], rows: list[tuple]) -> None:
    arrays = [pa.array([r[i] for r in rows], type=t) for i, t in enumerate(columns.values())]
    con.register(f"{name}_arrow", pa.table(arrays, names=list(columns)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _resolve_dimension(con: duckdb.DuckDBPyConnection, rules: Rules, name: str, dim: Dimension, keys: list[str]) -> None:
    wanted = [norm_key(k, dim.key_normalization) for k in dim.tag_keys]
    keymap = [(k, wanted.index(norm_key(k, dim.key_normalization)), ("0" if k in dim.tag_keys else "1") + k) for k in keys
              if norm_key(k, dim.key_normalization) in wanted]  # _rank: a configured spelling first, then key order
    _table(con, f"keys_{name}", {"_key": pa.string(), "_prio": pa.int32(), "_rank": pa.string()}, keymap)
    raws = con.execute(f"SELECT DISTINCT p._raw, p._type FROM pairs p JOIN keys_{name} k USING (_key)").fetchall()
    _table(con, f"vals_{name}", {"_raw": pa.string(), "_type": pa.string(), "_value": pa.string(), "_cf": pa.string(),
                                 "_why": pa.string()}, [(r, t, *_value_row(r, t, dim)) for r, t in raws])
    # the row's own tags: the best-priority keys; two of them with different values are a conflict
    con.execute(f"""CREATE OR REPLACE TEMP TABLE tag_{name} AS
        WITH t AS (SELECT p._sig, k._prio, k._rank, p._key, p._raw, v._value, v._cf, v._why FROM pairs p
                   JOIN keys_{name} k USING (_key)
                   JOIN vals_{name} v ON v._raw IS NOT DISTINCT FROM p._raw AND v._type = p._type),
             -- the best priority with a usable value (blank and valueless count as missing), else the best one
             b AS (SELECT _sig, coalesce(min(_prio) FILTER (WHERE _value IS NOT NULL), min(_prio)) AS _prio FROM t GROUP BY _sig)
        SELECT _sig, count(DISTINCT _cf) AS _n,
               CASE WHEN count(DISTINCT _cf) = 1 THEN min(_value) ELSE arg_min(_value, _rank) FILTER (WHERE _value IS NOT NULL)
               END AS _first,  -- agreeing keys: one spelling whatever the keys are called; else the first key's
               arg_min(_cf, _rank) FILTER (WHERE _value IS NOT NULL) AS _first_cf,
               arg_min(_key, _rank) FILTER (WHERE _value IS NOT NULL) AS _first_key,
               arg_min(_raw, _rank) FILTER (WHERE _value IS NOT NULL) AS _first_raw,
               arg_min(_key, _rank) AS _any_key, arg_min(_raw, _rank) AS _any_raw
        FROM t JOIN b USING (_sig, _prio) GROUP BY _sig""")
    if dim.conflict == "error":
        bad = con.execute(f"SELECT count(*) FROM tag_{name} WHERE _n > 1").fetchone()[0]
        if bad:
            raise HubError(f"{bad} tag combinations give two different {name} values under keys of the same priority "
                           f"(conflict: error)", file="config/allocation.json", code="AllocationConflict")
    # candidates in chain order: (_sig, _ord, _src, value, folded value, key, raw)
    chain = (["resource_group", "subscription"] if dim.inheritance_mode == "scope_wins" else []) + ["tag"]
    chain += [f for f in dim.fallback if f not in chain]
    parts = []
    for order, step in enumerate(chain):
        src = literal(SOURCES[step])
        if step == "tag":
            pick = "_first" if dim.conflict == "first_alias" else "CASE WHEN _n = 1 THEN _first END"
            pick_cf = "_first_cf" if dim.conflict == "first_alias" else "CASE WHEN _n = 1 THEN _first_cf END"
            parts.append(f"SELECT _sig, {order} AS _ord, {src} AS _src, {pick} AS _v, {pick_cf} AS _cf, _first_key AS _k, "
                         f"coalesce(_first_raw, _any_raw) AS _raw FROM tag_{name}")
        elif step in ("resource_group", "subscription") and step in dim.fallback:
            rows = []
            for s in rules.scope_tags:
                value, folded = _scope_value(s.tags, dim)
                if s.scope == step and value is not None:
                    rows.append((s.subscription, s.resource_group, value, folded, s.valid_from, s.valid_to))
            _table(con, f"scope_{name}_{step}", {"_sub": pa.string(), "_rg": pa.string(), "_v": pa.string(), "_cf": pa.string(),
                                                 "_from": pa.date32(), "_to": pa.date32()}, rows)
            # ids compared without case: Azure's subscription and resource group names are case-insensitive, and exports
            # spell a resource group's name differently from row to row
            rg = " AND lower(s._rg) = lower(sig.x_ResourceGroupName)" if step == "resource_group" else ""
            parts.append(f"SELECT sig._sig, {order} AS _ord, {src} AS _src, s._v, s._cf, NULL AS _k, NULL AS _raw "
                         f"FROM sig JOIN scope_{name}_{step} s ON lower(s._sub) = lower(sig.SubAccountId){rg} "
                         "AND (s._from IS NULL OR sig._day >= s._from) AND (s._to IS NULL OR sig._day < s._to)")
        elif step == "mapping":
            cases, given = [], set()
            for m in rules.mappings:
                if name in m.set:
                    cases.append(f"WHEN {_match_sql(m.match, 'sig.', m.valid_from, m.valid_to)} THEN {literal(m.set[name])}")
                    given.add(m.set[name])
            if cases:
                value = f"CASE {' '.join(cases)} END"
                # a mapping's value is compared with the allowlist as a tag's is (case folding, value_aliases); kept raw
                resolved = {v: _value_row(v, "VARCHAR", dim) for v in sorted(given)}
                as_v = " ".join(f"WHEN {literal(v)} THEN {literal(r[0] or v)}" for v, r in resolved.items())
                as_cf = " ".join(f"WHEN {literal(v)} THEN {literal(r[1] or casefold(v))}" for v, r in resolved.items())
                parts.append(f"SELECT _sig, {order} AS _ord, {src} AS _src, CASE _m {as_v} END AS _v, CASE _m {as_cf} END "
                             f"AS _cf, NULL AS _k, _m AS _raw FROM (SELECT sig._sig, {value} AS _m FROM sig) "
                             "WHERE _m IS NOT NULL")
    if dim.default is not None:
        v, cf, _ = _value_row(dim.default, "VARCHAR", dim)
        parts.append(f"SELECT _sig, 99 AS _ord, 'default' AS _src, {literal(v or dim.default)} AS _v, "
                     f"{literal(cf or casefold(dim.default))} AS _cf, NULL AS _k, {literal(dim.default)} AS _raw FROM sig")
    allow = rules.allowlists.get(dim.allowlist or "", [])
    _table(con, f"allow_{name}", {"_cf": pa.string(), "_canonical": pa.string(), "_from": pa.date32(), "_to": pa.date32()},
           [(casefold(spelling), e.value, e.valid_from, e.valid_to) for e in allow for spelling in (e.value, *e.aliases)])
    na_falls = "not_allowlisted" in dim.fallback_on
    ok = "a._canonical IS NOT NULL" if dim.allowlist else "true"
    column = rules.column(name)
    cands = " UNION ALL ".join(parts)
    # a conflict is unallocated (reason conflict): the steps after the row's tag (fallbacks, default) are not tried
    stop = (f" AND NOT (c._ord > {chain.index('tag')} AND c._sig IN (SELECT _sig FROM tag_{name} WHERE _n > 1))"
            if dim.conflict == "unallocated" else "")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE res_{name} AS
        WITH c AS (SELECT c.*, coalesce(c._cf, lower(trim(c._v))) AS _fold FROM ({cands}) c WHERE c._v IS NOT NULL{stop}),
             j AS (SELECT c._sig, c._ord, c._src, c._v, c._k, c._raw, {ok} AS _ok, a._canonical FROM c
                   JOIN sig USING (_sig)
                   LEFT JOIN allow_{name} a ON a._cf = c._fold AND (a._from IS NULL OR sig._day >= a._from)
                                               AND (a._to IS NULL OR sig._day < a._to)),
             best AS (SELECT _sig, arg_min(struct_pack(_src, _v, _k, _raw, _ok, _canonical),
                                           CASE WHEN _ok OR NOT {str(na_falls).lower()} THEN _ord ELSE 1000 + _ord END) AS b
                      FROM j GROUP BY _sig)
        SELECT sig._sig,
               CASE WHEN best.b IS NULL THEN {literal(UNALLOCATED)} WHEN best.b._ok THEN coalesce(best.b._canonical, best.b._v)
                    ELSE {literal(NOT_ALLOWLISTED)} END AS {ident(f"{column}")},
               CASE WHEN best.b IS NULL THEN 'unallocated' WHEN best.b._ok THEN 'allocated' ELSE 'not_allowlisted' END
                   AS {ident(f"{column}Status")},
               CASE WHEN best.b IS NOT NULL THEN NULL WHEN t._n > 1 THEN 'conflict'
                    WHEN t._sig IS NOT NULL THEN 'empty_value' ELSE 'missing' END AS {ident(f"{column}Reason")},
               best.b._src AS {ident(f"{column}Source")},
               coalesce(best.b._k, t._any_key) AS {ident(f"{column}TagKey")},
               coalesce(best.b._raw, CASE WHEN best.b IS NULL THEN t._any_raw END) AS {ident(f"{column}RawValue")}
        FROM sig LEFT JOIN best USING (_sig) LEFT JOIN tag_{name} t USING (_sig)""")


def _match_sql(match: dict, prefix: str, valid_from: date | None = None, valid_to: date | None = None) -> str:
    """SQL true when every column of ``match`` has its value (or one of its values); within the dates, if given."""
    conds = []
    for column, wanted in match.items():
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        conds.append(f"{prefix}{ident(column)} IN ({', '.join(literal(v) for v in values)})")
    if valid_from:
        conds.append(f"{prefix}_day >= DATE {literal(valid_from.isoformat())}")
    if valid_to:
        conds.append(f"{prefix}_day < DATE {literal(valid_to.isoformat())}")
    return "(" + " AND ".join(conds) + ")"


def match_sql(match: dict, prefix: str = "") -> str:
    """A pool's or mapping's condition over a row (columns and resolved dimension values)."""
    return _match_sql(match, prefix)
