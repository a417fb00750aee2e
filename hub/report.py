"""``hub report``: one self-contained HTML page (inline CSS, inline SVG charts, no network) about the lake.

Sections (stable element ids): ``by-month``, ``by-provider``, ``by-service``, ``by-subaccount``, ``top-resources``,
``top-tags``, ``data-quality`` and ``runs``. Every aggregate comes from DuckDB SQL over the catalog views; amounts are
never added across currencies. Each number in a table carries ``data-value`` (DuckDB's exact decimal text) and
``data-col``; table rows carry ``data-currency`` and ``data-key`` (the raw group value, absent for NULL).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import duckdb

from hub import catalog, runs, svg_charts
from hub.errors import UsageError
from hub.runs import RunRecord
from hub.store import Store
from transforms.typing import ident

TOP_GROUPS = 15
TOP_RESOURCES = 20
TOP_TAGS = 20
RUN_HISTORY = 50
NONE_LABEL = "(none)"

#: Costs columns the report reads -> type used when a lake lacks the column.
_COLUMNS = {
    "x_Month": "VARCHAR", "BillingCurrency": "VARCHAR", "EffectiveCost": "DECIMAL(38,18)", "BilledCost": "DECIMAL(38,18)",
    "ProviderName": "VARCHAR", "ServiceName": "VARCHAR", "SubAccountId": "VARCHAR", "SubAccountName": "VARCHAR",
    "ResourceId": "VARCHAR", "ResourceName": "VARCHAR", "Tags": "VARCHAR", "x_SourceChanges": "VARCHAR",
}


@dataclass
class MonthRow:
    month: str | None
    currency: str
    effective: str | None
    billed: str | None
    rows: int


@dataclass
class GroupRow:
    """One ranked group (service or sub-account) of one currency; ``other`` rows sum the groups past the top."""

    currency: str
    key: str | None
    label: str
    other: bool
    effective: str | None
    billed: str | None
    rows: int
    share: float | None
    detail: str | None = None


@dataclass
class ResourceRow:
    currency: str
    resource_id: str
    resource_name: str | None
    service: str | None
    effective: str | None
    rows: int


@dataclass
class TagRow:
    currency: str
    key: str
    value: str | None
    effective: str | None
    rows: int


@dataclass
class AllocRow:
    """One line of the allocation section: a dimension's value (or a status, or a resource) in a month and currency."""

    dimension: str
    month: str | None
    currency: str
    key: str | None
    direct: str | None
    shared: str | None
    total: str | None
    share: float | None = None


@dataclass
class ReportData:
    """Everything the page shows, aggregated by DuckDB."""

    root: str
    generated: datetime
    rows: int = 0
    rows_unchanged: int = 0
    totals: list[MonthRow] = field(default_factory=list)
    by_month: list[MonthRow] = field(default_factory=list)
    by_provider: list[GroupRow] = field(default_factory=list)
    by_service: list[GroupRow] = field(default_factory=list)
    by_subaccount: list[GroupRow] = field(default_factory=list)
    top_resources: list[ResourceRow] = field(default_factory=list)
    top_tags: list[TagRow] = field(default_factory=list)
    quality: list[tuple[str, int]] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    #: the Allocation dataset (hub allocate): per dimension value and month, coverage, untagged, not allowlisted
    allocation: list[AllocRow] = field(default_factory=list)
    #: hub inspect: every anomaly found (its state, causes, 30 days), newest first; the budgets' latest months
    anomalies: list[dict] = field(default_factory=list)
    budgets: list[tuple] = field(default_factory=list)
    coverage: list[AllocRow] = field(default_factory=list)
    untagged: list[AllocRow] = field(default_factory=list)
    not_allowlisted: list[AllocRow] = field(default_factory=list)
    #: months whose allocation was made from Costs that changed since (stale until ``hub allocate``)
    stale: list[str] = field(default_factory=list)

    @property
    def currencies(self) -> list[str]:
        return sorted({r.currency for r in self.totals})


# data -------------------------------------------------------------------------------------------------
def _base_sql(con: duckdb.DuckDBPyConnection) -> str:
    """``WITH c AS (...)``: the Costs columns the report needs (NULL when a lake lacks one), currency never NULL."""
    present = {r[0] for r in con.execute("DESCRIBE SELECT * FROM Costs").fetchall()}
    cols = [ident(n) if n in present else f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in _COLUMNS.items()]
    cols[1] = (f"coalesce(nullif(trim({ident('BillingCurrency')}), ''), '{NONE_LABEL}') AS currency"
               if "BillingCurrency" in present else f"'{NONE_LABEL}' AS currency")
    return f"WITH c AS (SELECT {', '.join(cols)} FROM Costs)"


def _ranked(con: duckdb.DuckDBPyConnection, base: str, key: str, detail: str) -> list[GroupRow]:
    """Top groups by EffectiveCost per currency plus one ``Other`` row for the rest."""
    sql = f"""{base},
    g AS (SELECT currency, {key} AS key, max({detail}) AS detail, sum(EffectiveCost) AS effective,
                 sum(BilledCost) AS billed, count(*) AS n FROM c GROUP BY ALL),
    r AS (SELECT *, row_number() OVER (PARTITION BY currency ORDER BY effective DESC NULLS LAST, key NULLS LAST) AS rk,
                 sum(effective) OVER (PARTITION BY currency) AS total FROM g),
    s AS (SELECT *, rk > {TOP_GROUPS} AS other, CASE WHEN rk <= {TOP_GROUPS} THEN rk END AS slot FROM r)
    SELECT currency, CASE WHEN NOT other THEN max(key) END, other, CASE WHEN NOT other THEN max(detail) END,
           CAST(sum(effective) AS VARCHAR), CAST(sum(billed) AS VARCHAR), sum(n)::BIGINT,
           CAST(sum(effective) / nullif(max(total), 0) AS DOUBLE)
    FROM s GROUP BY currency, other, slot
    ORDER BY currency, other, min(rk)"""
    out = []
    for cur, k, other, det, eff, bil, n, share in con.execute(sql).fetchall():
        label = "Other" if other else next((v for v in (det, k) if v is not None), NONE_LABEL)
        out.append(GroupRow(cur, None if other else k, label, other, eff, bil, n, share, det))
    return out


def _collect(con: duckdb.DuckDBPyConnection, data: ReportData) -> None:
    base = _base_sql(con)
    data.rows, data.rows_unchanged = con.execute(
        f"{base} SELECT count(*), count(*) FILTER (WHERE coalesce(trim(x_SourceChanges), '') = '') FROM c").fetchone()
    month_sql = (f"{base} SELECT {{key}}, currency, CAST(sum(EffectiveCost) AS VARCHAR), CAST(sum(BilledCost) AS VARCHAR), "
                 f"count(*) FROM c GROUP BY ALL ORDER BY ALL")
    data.totals = [MonthRow(None, *r[1:]) for r in con.execute(month_sql.format(key="NULL")).fetchall()]
    data.by_month = [MonthRow(*r) for r in con.execute(month_sql.format(key="x_Month")).fetchall()]
    data.by_provider = _ranked(con, base, "ProviderName", "NULL::VARCHAR")
    data.by_service = _ranked(con, base, "ServiceName", "NULL::VARCHAR")
    data.by_subaccount = _ranked(con, base, "SubAccountId", "SubAccountName")
    data.top_resources = [ResourceRow(*r) for r in con.execute(f"""{base},
        g AS (SELECT currency, ResourceId, max(ResourceName) AS name, max(ServiceName) AS service,
                     sum(EffectiveCost) AS effective, count(*) AS n
              FROM c WHERE coalesce(ResourceId, '') <> '' GROUP BY currency, ResourceId)
        SELECT currency, ResourceId, name, service, CAST(effective AS VARCHAR), n FROM g
        QUALIFY row_number() OVER (PARTITION BY currency ORDER BY effective DESC NULLS LAST, ResourceId) <= {TOP_RESOURCES}
        ORDER BY currency, effective DESC NULLS LAST, ResourceId""").fetchall()]
    data.top_tags = [TagRow(*r) for r in con.execute(f"""{base},
        t AS (SELECT row_number() OVER () AS rid, currency, EffectiveCost, Tags FROM c
              WHERE json_valid(Tags) AND json_type(Tags) = 'OBJECT'),
        -- a key written twice in one row's Tags counts once, with its first value (as json_extract reads it)
        e AS (SELECT currency, EffectiveCost, j.key AS key, j.value ->> '$' AS value,
                     row_number() OVER (PARTITION BY t.rid, j.key ORDER BY j.id) AS k FROM t, json_each(t.Tags) AS j),
        g AS (SELECT currency, key, value, sum(EffectiveCost) AS effective, count(*) AS n FROM e WHERE k = 1 GROUP BY ALL)
        SELECT currency, key, value, CAST(effective AS VARCHAR), n FROM g
        QUALIFY row_number() OVER (PARTITION BY currency ORDER BY effective DESC NULLS LAST, key, value) <= {TOP_TAGS}
        ORDER BY currency, effective DESC NULLS LAST, key, value""").fetchall()]
    data.quality = [tuple(r) for r in con.execute(f"""{base},
        codes AS (SELECT trim(unnest(string_split(x_SourceChanges, ','))) AS code FROM c WHERE x_SourceChanges IS NOT NULL)
        SELECT code, count(*) FROM codes WHERE code <> '' GROUP BY code ORDER BY count(*) DESC, code""").fetchall()]


def _collect_allocation(con: duckdb.DuckDBPyConnection, data: ReportData) -> None:
    """The allocation section's numbers, for every dimension of the Allocation dataset (its ``<column>Status``)."""
    present = {r[0] for r in con.execute("DESCRIBE SELECT * FROM Allocation").fetchall()}
    if not con.execute("SELECT 1 FROM Allocation LIMIT 1").fetchall():
        return
    if catalog.has_view(con, catalog.OWED):
        data.stale = [m for (m,) in con.execute(f"SELECT x_Month FROM {catalog.OWED} WHERE x_Month IN (SELECT DISTINCT "
                                                 "x_Month FROM Costs) ORDER BY 1").fetchall()]  # retention keeps it
    dims = sorted(c[: -len("Status")] for c in present if c.endswith("Status") and c[: -len("Status")] in present)
    for dim in dims:
        d, status, raw = ident(dim), ident(f"{dim}Status"), ident(f"{dim}RawValue")
        sums = ("CAST(sum(x_Amount) FILTER (WHERE x_AllocationKind = 'direct') AS VARCHAR), "
                "CAST(sum(x_Amount) FILTER (WHERE x_AllocationKind = 'shared') AS VARCHAR), CAST(sum(x_Amount) AS VARCHAR)")
        data.allocation += [AllocRow(dim, *r) for r in con.execute(f"""SELECT x_Month, BillingCurrency, {d}, {sums}
            FROM Allocation GROUP BY x_Month, BillingCurrency, {d}
            QUALIFY row_number() OVER (PARTITION BY x_Month, BillingCurrency ORDER BY sum(x_Amount) DESC, {d}) <= {TOP_GROUPS}
            ORDER BY x_Month, BillingCurrency, sum(x_Amount) DESC, {d}""").fetchall()]
        data.coverage += [AllocRow(dim, *r) for r in con.execute(f"""SELECT x_Month, BillingCurrency, {status}, {sums},
            CAST(sum(x_Amount) / nullif(sum(sum(x_Amount)) OVER (PARTITION BY x_Month, BillingCurrency), 0) AS DOUBLE)
            FROM Allocation GROUP BY x_Month, BillingCurrency, {status}
            ORDER BY x_Month, BillingCurrency, {status}""").fetchall()]
        data.untagged += [AllocRow(dim, None, *r) for r in con.execute(f"""SELECT BillingCurrency, ResourceId,
            CAST(sum(x_Amount) AS VARCHAR), NULL, CAST(sum(x_Amount) AS VARCHAR) FROM Allocation
            WHERE {status} = 'unallocated' AND x_AllocationKind = 'direct' AND coalesce(ResourceId, '') <> ''
            GROUP BY BillingCurrency, ResourceId
            QUALIFY row_number() OVER (PARTITION BY BillingCurrency ORDER BY sum(x_Amount) DESC, ResourceId)
            <= {TOP_RESOURCES} ORDER BY BillingCurrency, sum(x_Amount) DESC, ResourceId""").fetchall()]
        data.not_allowlisted += [AllocRow(dim, None, *r) for r in con.execute(f"""SELECT BillingCurrency, {raw},
            CAST(sum(x_Amount) AS VARCHAR), NULL, CAST(sum(x_Amount) AS VARCHAR) FROM Allocation
            WHERE {status} = 'not_allowlisted' GROUP BY BillingCurrency, {raw}
            QUALIFY row_number() OVER (PARTITION BY BillingCurrency ORDER BY sum(x_Amount) DESC, {raw}) <= {TOP_TAGS}
            ORDER BY BillingCurrency, sum(x_Amount) DESC, {raw}""").fetchall()]


def _store(root: str | Store) -> Store:
    store = root if isinstance(root, Store) else Store(root)
    if store.is_local and not os.path.isdir(store.root):
        raise UsageError(f"hub root {store.url!r} does not exist (run `hub init` first)")
    return store


def build_report(root: str | Store) -> ReportData:
    """Aggregate the lake (Costs view) and the newest run records; an empty lake gives an empty report."""
    store = _store(root)
    data = ReportData(root=store.url, generated=datetime.now(timezone.utc))
    con = catalog.connect(store)
    try:
        _collect(con, data)
        _collect_allocation(con, data)
    finally:
        con.close()
    data.runs = runs.load_all(store)[-RUN_HISTORY:][::-1]
    from hub.inspection import outcome

    data.anomalies = sorted(outcome.load_state(store)["anomalies"].values(),
                            key=lambda a: (str(a.get("start")), str(a.get("id"))), reverse=True)
    con = catalog.connect(store)
    try:
        data.budgets = con.execute("SELECT id, month, currency, CAST(amount AS VARCHAR), CAST(actual AS VARCHAR), "
                                   "consumptionPct, CAST(forecast AS VARCHAR), CAST(lower80 AS VARCHAR), "
                                   "CAST(upper80 AS VARCHAR), crossed FROM Budgets ORDER BY month DESC, id").fetchall()
    finally:
        con.close()
    return data


def write_report(root: str | Store, out: str) -> ReportData:
    """Build the report and write it to the local file ``out`` (replaced atomically)."""
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a folder; give a file name such as report.html")
    if not os.path.isdir(folder):
        raise UsageError(f"--out {out!r}: folder {folder!r} does not exist")
    data = build_report(root)
    page = render_html(data).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return data


# formatting -------------------------------------------------------------------------------------------
_e = svg_charts.esc


def _money(value: str | None) -> str:
    if value is None:
        return "–"
    d = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{abs(d) if d == 0 else d:,.2f}"


def _pct(share: float | None, digits: int = 1) -> str:
    return "–" if share is None else f"{share * 100:.{digits}f} %"


def _num(col: str, value: str | int | float | None, text: str) -> str:
    attr = "" if value is None else f' data-value="{_e(value)}"'
    return f'<td class="num" data-col="{col}"{attr}>{_e(text)}</td>'


def _txt(col: str, value: object, *, title: str | None = None) -> str:
    tip = f' title="{_e(title)}"' if title else ""
    cls = ' class="muted"' if value is None else ""
    return f'<td data-col="{col}"{cls}{tip}>{_e(NONE_LABEL if value is None else value)}</td>'


def _row(currency: str, key: str | None, cells: list[str], *, other: bool = False) -> str:
    attrs = f' data-currency="{_e(currency)}"' + ("" if key is None else f' data-key="{_e(key)}"')
    attrs += ' data-other="1" class="other"' if other else ""
    return f"<tr{attrs}>{''.join(cells)}</tr>"


def _table(table_id: str, headers: Sequence[tuple[str, bool]], rows: list[str]) -> str:
    head = "".join(f'<th{" class=num" if num else ""}>{_e(h)}</th>' for h, num in headers)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _f(value: str | None) -> float:
    return float(value) if value is not None else 0.0


# sections ---------------------------------------------------------------------------------------------
def _per_currency(rows: list, render: Callable[[str, list], str]) -> str:
    out = []
    for cur in sorted({r.currency for r in rows}):
        out.append(f'<figure data-currency="{_e(cur)}"><figcaption>{_e(cur)}</figcaption>'
                   f'{render(cur, [r for r in rows if r.currency == cur])}</figure>')
    return "".join(out)


def _section(sid: str, title: str, note: str, body: str, empty: bool) -> str:
    content = '<p class="empty">No cost data in the lake yet.</p>' if empty else body
    return f'<section id="{sid}"><h2>{_e(title)}</h2><p class="note">{note}</p>{content}</section>'


def _month_section(d: ReportData) -> str:
    def chart(cur: str, rows: list[MonthRow]) -> str:
        months = [r.month or NONE_LABEL for r in rows]
        series = [("EffectiveCost", "bar", [_f(r.effective) for r in rows]),
                  ("BilledCost", "bar alt", [_f(r.billed) for r in rows])]
        return svg_charts.bars_v(months, series, f"Cost ({cur})", f"Cost per month in {cur}")

    body = [_row(r.currency, r.month, [
        _txt("month", r.month), _txt("currency", r.currency), _num("EffectiveCost", r.effective, _money(r.effective)),
        _num("BilledCost", r.billed, _money(r.billed)), _num("rows", r.rows, f"{r.rows:,}")]) for r in d.by_month]
    table = _table("by-month-table", [("Month", False), ("Currency", False), ("EffectiveCost", True), ("BilledCost", True),
                                      ("Rows", True)], body)
    note = "EffectiveCost (amortized) and BilledCost (invoiced) per month; one chart per billing currency."
    return _section("by-month", "Cost by month", note, _per_currency(d.by_month, chart) + table, not d.rows)


def _group_section(sid: str, title: str, what: str, rows: list[GroupRow], empty: bool, key_col: str | None) -> str:
    """A ranked section; with ``key_col`` the label is the group's name (``detail``) and the key gets its own column."""
    def chart(cur: str, rs: list[GroupRow]) -> str:
        return svg_charts.bars_h([(r.label, _f(r.effective)) for r in rs], f"EffectiveCost ({cur})", f"{title} in {cur}",
                      any(r.other for r in rs))

    headers = [(what, False)] + ([(key_col, False)] if key_col else []) + [
        ("Currency", False), ("EffectiveCost", True), ("BilledCost", True), ("Share", True), ("Rows", True)]
    body = []
    for r in rows:
        if key_col:
            cells = [_txt("name", "Other" if r.other else r.detail), _txt("key", "" if r.other else r.key)]
        else:
            cells = [_txt("name", r.label if r.key is not None or r.other else None)]
        cells += [_txt("currency", r.currency), _num("EffectiveCost", r.effective, _money(r.effective)),
                  _num("BilledCost", r.billed, _money(r.billed)), _num("share", r.share, _pct(r.share)),
                  _num("rows", r.rows, f"{r.rows:,}")]
        body.append(_row(r.currency, r.key, cells, other=r.other))
    note = f"Top {TOP_GROUPS} by EffectiveCost per currency; the rest are summed in <em>Other</em>."
    return _section(sid, title, note, _per_currency(rows, chart) + _table(f"{sid}-table", headers, body), empty)


def _resources_section(d: ReportData) -> str:
    body = [_row(r.currency, r.resource_id, [
        _txt("ResourceId", r.resource_id), _txt("ResourceName", r.resource_name),
        _txt("ServiceName", r.service), _txt("currency", r.currency),
        _num("EffectiveCost", r.effective, _money(r.effective)), _num("rows", r.rows, f"{r.rows:,}")]) for r in d.top_resources]
    table = _table("top-resources-table", [("ResourceId", False), ("ResourceName", False), ("ServiceName", False),
                                           ("Currency", False), ("EffectiveCost", True), ("Rows", True)], body)
    note = f"The {TOP_RESOURCES} resources with the highest EffectiveCost per currency."
    return _section("top-resources", "Top resources", note, table, not d.rows)


def _tags_section(d: ReportData) -> str:
    def chart(cur: str, rows: list[TagRow]) -> str:
        items = [(f"{r.key} = {r.value}", _f(r.effective)) for r in rows]
        return svg_charts.bars_h(items, f"EffectiveCost ({cur})", f"Top tags in {cur}")

    body = [_row(r.currency, f"{r.key}={r.value}", [
        _txt("key", r.key), _txt("value", r.value), _txt("currency", r.currency),
        _num("EffectiveCost", r.effective, _money(r.effective)), _num("rows", r.rows, f"{r.rows:,}")]) for r in d.top_tags]
    table = _table("top-tags-table", [("Tag", False), ("Value", False), ("Currency", False), ("EffectiveCost", True),
                                      ("Rows", True)], body)
    note = f"Tag key/value pairs (from the Tags JSON) with the highest EffectiveCost, top {TOP_TAGS} per currency."
    content = (_per_currency(d.top_tags, chart) + table) if d.top_tags else '<p class="empty">No tagged rows.</p>'
    return _section("top-tags", "Top tags", note, content, not d.rows)


def _quality_section(d: ReportData) -> str:
    share = d.rows_unchanged / d.rows if d.rows else None
    summary = (f'<dl id="data-quality-summary"><div><dt>Rows</dt><dd data-col="rows" data-value="{d.rows}">{d.rows:,}</dd></div>'
               f'<div><dt>Rows with no change</dt><dd data-col="unchanged" data-value="{d.rows_unchanged}">'
               f'{d.rows_unchanged:,}</dd></div><div><dt>Share unchanged</dt>'
               f'<dd data-col="share" data-value="{"" if share is None else share}">{_pct(share, 2)}</dd></div></dl>')
    body = [_row("", code, [_txt("code", code), _num("rows", n, f"{n:,}"),
                            _num("share", n / d.rows, _pct(n / d.rows, 2))]) for code, n in d.quality]
    table = (_table("data-quality-table", [("x_SourceChanges code", False), ("Rows", True), ("Share of rows", True)], body)
             if d.quality else '<p class="empty">No row was changed during ingestion.</p>')
    note = "Codes recorded in <code>x_SourceChanges</code> when ingestion corrected a row (a row may carry several)."
    return _section("data-quality", "Data quality", note, summary + table, not d.rows)


def _runs_section(d: ReportData) -> str:
    body = []
    for r in d.runs:
        rows = r.rowsOut or r.rowsIn
        cells = [_txt("created", r.createdAt.strftime("%Y-%m-%d %H:%M:%S")), _txt("export", r.exportName or r.manifest),
                 _txt("dataset", r.dataset), _txt("month", r.month), _num("rows", rows, f"{rows:,}"),
                 f'<td data-col="state"><span class="state {_e(r.state)}">{_e(r.state)}</span></td>',
                 _txt("error", r.error.code if r.error else "", title=r.error.message if r.error else None),
                 _num("seconds", r.seconds, "–" if r.seconds is None else f"{r.seconds:,.2f}")]
        body.append(_row("", r.key, cells))
    table = _table("runs-table", [("Created (UTC)", False), ("Export", False), ("Dataset", False), ("Month", False),
                                  ("Rows", True), ("State", False), ("Error", False), ("Seconds", True)], body)
    content = table if d.runs else '<p class="empty">No runs yet.</p>'
    return (f'<section id="runs"><h2>Run history</h2><p class="note">The last {RUN_HISTORY} export deliveries, newest first.</p>'
            f"{content}</section>")


def _allocation_section(d: ReportData) -> str:
    headers = [("Dimension", False), ("Month", False), ("Currency", False), ("Value", False), ("Direct", True),
               ("Shared", True), ("Total", True)]

    def lines(rows: list[AllocRow], key: str, *, share: bool = False) -> list[str]:
        out = []
        for r in rows:
            cells = [_txt("dimension", r.dimension), _txt("month", r.month), _txt("currency", r.currency), _txt(key, r.key),
                     _num("direct", r.direct, _money(r.direct)), _num("shared", r.shared, _money(r.shared)),
                     _num("total", r.total, _money(r.total))]
            if share:
                cells.append(_num("share", r.share, _pct(r.share)))
            out.append(_row(r.currency, f"{r.dimension}:{r.month}:{r.key}", cells))
        return out

    if not d.allocation:
        return ('<section id="allocation"><h2>Allocation</h2><p class="empty">No allocation yet (write '
                "config/allocation.json, then <code>hub allocate</code>).</p></section>")
    body = (_table("allocation-table", headers, lines(d.allocation, "value"))
            + "<h3>Coverage</h3>" + _table("allocation-coverage", [*headers[:3], ("Status", False), *headers[4:],
                                                                    ("Share", True)], lines(d.coverage, "status", share=True))
            + "<h3>Top untagged resources</h3>" + _table("allocation-untagged", [*headers[:3], ("ResourceId", False),
                                                                                 *headers[4:]], lines(d.untagged, "resource"))
            + "<h3>Top values not on the allowlist</h3>" + _table(
                "allocation-not-allowlisted", [*headers[:3], ("Raw value", False), *headers[4:]],
                lines(d.not_allowlisted, "raw")))
    note = (f"From the Allocation dataset (<code>hub allocate</code>): per dimension and month the top {TOP_GROUPS} "
            "values, direct and shared (pools); coverage: allocated, unallocated and not-allowlisted cost and its share; "
            f"the {TOP_RESOURCES} untagged resources and {TOP_TAGS} not-allowlisted values with the most cost.")
    if d.stale:  # its figures are of a bill that no longer stands
        body = (f'<p class="warning" id="allocation-stale">Allocated before their Costs changed: {_e(", ".join(d.stale))} '
                "(their figures are of the earlier bill until <code>hub allocate</code> runs).</p>" + body)
    return _section("allocation", "Allocation", note, body, False)


def _related(a: dict, anomalies: list[dict], days: list[str]) -> list[dict]:
    """The other anomalies of ``a``'s monitor, or of its key in another monitor, whose interval overlaps the days its
    article shows (its 30 days, else its own interval): at most 10, the largest impacts first."""
    first, last = (days[0], days[-1]) if days else (str(a["start"]), str(a["end"]))
    near = [r for r in anomalies if r["id"] != a["id"] and (r["monitor"] == a["monitor"] or r["key"] == a["key"])
            and str(r["start"]) <= last and str(r["end"]) >= first]
    return sorted(near, key=lambda r: -abs(float(r["impact"] or 0)))[:10]


def _link(r: dict, shown: set[str]) -> str:
    """An anomaly in one line, linked to its article when the page has one."""
    text = (f'{_e(r["severity"])} {_e(r["direction"])}: {_e(r["monitor"])} {_e(r["key"])}, {_e(r["start"])} to '
            f'{_e(r["end"])} ({_e(r["state"])}), impact {_money(r["impact"])} {_e(r["currency"])}')
    return f'<a href="#anomaly-{_e(r["id"])}">{text}</a>' if r["id"] in shown else text


def _anomalies_section(d: ReportData) -> str:
    """One article per anomaly: its 30 days with the expected band and the abnormal interval shaded, its numbers, its
    product and instance rankings, its history; then the budgets."""
    if not d.anomalies and not d.budgets:
        return ('<section id="anomalies"><h2>Anomalies and budgets</h2><p class="empty">No inspection yet (write '
                "config/inspection.json or run <code>hub inspect</code>).</p></section>")
    articles = []
    shown = {a["id"] for a in d.anomalies[:TOP_RESOURCES * 2]}
    for a in d.anomalies[:TOP_RESOURCES * 2]:
        days = [p["day"] for p in a.get("series") or []]
        chart = svg_charts.band(days, [p["actual"] for p in a["series"]], [p["expected"] for p in a["series"]],
                                [p["lower"] for p in a["series"]], [p["upper"] for p in a["series"]],
                                (str(a["start"]), str(a["end"])), f"EffectiveCost ({a['currency']})",
                                f"{a['monitor']} {a['key']}: last 30 days") if days else ""
        facts = _table(f"anomaly-{a['id']}-facts", [(h, n) for h, n in (
            ("Monitor", False), ("Key", False), ("Currency", False), ("Start", False), ("End", False), ("State", False),
            ("Direction", False), ("Actual", True), ("Expected", True), ("Impact", True), ("Impact %", True),
            ("Severity", False), ("Feedback", False))], [_row(a["currency"], a["id"], [
                _txt("monitor", a["monitor"]), _txt("key", a["key"]), _txt("currency", a["currency"]),
                _txt("start", a["start"]), _txt("end", a["end"]), _txt("state", a["state"]), _txt("direction", a["direction"]),
                _num("actual", a["actual"], _money(a["actual"])), _num("expected", a["expected"], _money(a["expected"])),
                _num("impact", a["impact"], _money(a["impact"])),
                _num("impact_pct", a["impact_pct"], "–" if a["impact_pct"] is None else f"{a['impact_pct']:+.1f} %"),
                _txt("severity", a["severity"]), _txt("feedback", a.get("feedback"))])])
        causes = _table(f"anomaly-{a['id']}-causes", [("Dimension", False), ("Value", False), ("Kind", False),
                                                      ("Actual", True), ("Expected", True), ("Delta", True), ("Share", True)],
                        [_row(a["currency"], f"{c['dimension']}:{c['value']}", [
                            _txt("dimension", c["dimension"]), _txt("value", c["value"]), _txt("kind", c["kind"]),
                            _num("actual", c["actual"], _money(c["actual"])),
                            _num("expected", c["expected"], _money(c["expected"])),
                            _num("delta", c["delta"], _money(c["delta"])), _num("share", c["share"], _pct(c["share"]))])
                         for c in a.get("causes") or []])
        history = "".join(f"<li>{_e(h['day'])}: {_e(h['event'])}</li>" for h in a.get("history") or [])
        related = "".join(f"<li>{_link(r, shown)}</li>" for r in _related(a, d.anomalies, days))
        articles.append(f'<article class="anomaly" id="anomaly-{_e(a["id"])}"><h3>{_e(a["severity"])} {_e(a["direction"])} '
                        f'anomaly: {_e(a["monitor"])} {_e(a["key"])} ({_e(a["start"])} to {_e(a["end"])}, {_e(a["state"])})</h3>'
                        f"{chart}{facts}<h4>Root causes</h4>{causes}<h4>History</h4><ul>{history}</ul>"
                        f'<h4>Related events</h4><ul class="related">{related or "<li>none in these days</li>"}</ul></article>')
    budgets = _table("budgets-table", [("Budget", False), ("Month", False), ("Currency", False), ("Amount", True),
                                       ("Actual", True), ("Used", True), ("Forecast", True), ("80 % interval", False),
                                       ("Crossed", False)],
                     [_row(b[2], f"{b[0]}:{b[1]}", [
                         _txt("budget", b[0]), _txt("month", b[1]), _txt("currency", b[2]), _num("amount", b[3], _money(b[3])),
                         _num("actual", b[4], _money(b[4])), _num("used", b[5], f"{b[5]:.1f} %"),
                         _num("forecast", b[6], _money(b[6])),
                         _txt("interval", f"{_money(b[7])} – {_money(b[8])}" if b[6] is not None else "insufficient history"),
                         _txt("crossed", ", ".join(f"{k} {p:g} %" for k, p in json.loads(b[9] or "[]")))]) for b in d.budgets])
    note = ("From <code>hub inspect</code>: each anomaly's last 30 days (actual, expected and its band; the abnormal "
            "interval shaded), its numbers, the products and instances whose cost moved most, its history, the related "
            "events (other anomalies of its monitor or key in those days); each budget's latest month.")
    return _section("anomalies", "Anomalies and budgets", note, "".join(articles) + "<h3>Budgets</h3>" + budgets, False)


def _cards(d: ReportData) -> str:
    if not d.rows:
        return '<p class="empty" id="no-data">No data: the lake has no cost rows yet.</p>'
    months = sorted({r.month for r in d.by_month if r.month})
    span = (months[0] if len(months) == 1 else f"{months[0]} – {months[-1]}") if months else NONE_LABEL
    cards = [f'<div class="card" data-currency="{_e(t.currency)}"><span>EffectiveCost {_e(t.currency)}</span>'
             f'<b data-value="{_e(t.effective)}">{_money(t.effective)}</b>'
             f'<small>BilledCost <span data-value="{_e(t.billed)}">{_money(t.billed)}</span></small></div>' for t in d.totals]
    cards.append(f'<div class="card"><span>Rows</span><b data-value="{d.rows}">{d.rows:,}</b><small>{_e(span)}</small></div>')
    return f'<div class="cards" id="summary">{"".join(cards)}</div>'


_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f5f6f8;color:#1f2933;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
header{background:#1f2933;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;color:#c3cad3;font-size:13px}
nav{background:#fff;border-bottom:1px solid #dde1e6;padding:8px 32px;position:sticky;top:0}
nav a{color:#2f5d8a;text-decoration:none;margin-right:18px;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:16px 32px 48px}
section{scroll-margin-top:48px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:16px 20px;margin:16px 0}
h2{margin:0 0 4px;font-size:17px;font-weight:600}
.note{margin:0 0 12px;color:#616e7c;font-size:12.5px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;min-width:200px}
.card>span{display:block;color:#616e7c;font-size:12px}
.card b{display:block;font-size:22px;font-weight:600;margin:2px 0}
.card small{color:#616e7c}
figure{margin:0 0 12px}
figcaption{font-weight:600;font-size:12.5px;color:#3e4c59;margin-bottom:4px}
.chart{width:100%;height:auto;display:block}
.chart text{font-size:11.5px;fill:#3e4c59}
.chart .axis-title{font-size:12px;fill:#616e7c}
.chart .mid{text-anchor:middle}
.chart .end{text-anchor:end}
.chart .grid{stroke:#e4e7eb;stroke-width:1}
.chart .axis{stroke:#7b8794;stroke-width:1}
.chart .bar{fill:#3b6ea5}
.chart .band{fill:#3b6ea5;opacity:.15}.chart .abnormal{fill:#d9534f;opacity:.12}
.chart polyline{fill:none;stroke-width:2}.chart polyline.expected{stroke:#3b6ea5;stroke-dasharray:4 3}
.chart polyline.actual{stroke:#222}.chart circle.actual{fill:#222}
article.anomaly{border-top:1px solid #dde1e6;padding-top:8px;margin-top:12px}
.chart .bar.alt{fill:#a9c1dc}
.chart .bar.neg{fill:#c0504d}
.chart .bar.rest{fill:#9aa5b1}
table{width:100%;border-collapse:collapse;font-size:12.5px}
th,td{padding:5px 8px;border-bottom:1px solid #eceff2;text-align:left;vertical-align:top}
th{background:#f5f6f8;color:#3e4c59;font-weight:600}
td{word-break:break-word}
td[data-col=ResourceId]{font:11.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;word-break:break-all}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.other td{color:#616e7c;font-style:italic}
.muted{color:#9aa5b1}
.empty{color:#616e7c;font-style:italic}
dl{display:flex;gap:32px;margin:0 0 12px}
dl div{display:flex;flex-direction:column}
dt{color:#616e7c;font-size:12px}
dd{margin:0;font-size:18px;font-weight:600}
.state{padding:1px 7px;border-radius:9px;font-size:11.5px;background:#e4e7eb}
.state.committed{background:#dff3e4;color:#1d6b35}
.state.quarantined{background:#fbe2e1;color:#9b2c2c}
footer{color:#9aa5b1;font-size:12px;text-align:center;padding:0 0 24px}
"""

_NAV = [("by-month", "By month"), ("by-provider", "By provider"), ("by-service", "By service"),
        ("by-subaccount", "By sub-account"), ("top-resources", "Top resources"), ("top-tags", "Top tags"),
        ("allocation", "Allocation"), ("anomalies", "Anomalies"), ("data-quality", "Data quality"), ("runs", "Run history")]


def render_html(data: ReportData) -> str:
    """The page: inline CSS and SVG only, every data value HTML-escaped, nothing loaded from anywhere."""
    empty = not data.rows
    nav = "".join(f'<a href="#{sid}">{_e(label)}</a>' for sid, label in _NAV)
    sections = [
        _month_section(data),
        _group_section("by-provider", "Cost by provider", "ProviderName", data.by_provider, empty, None),
        _group_section("by-service", "Cost by service", "ServiceName", data.by_service, empty, None),
        _group_section("by-subaccount", "Cost by sub-account", "SubAccountName", data.by_subaccount, empty, "SubAccountId"),
        _resources_section(data), _tags_section(data), _allocation_section(data), _anomalies_section(data),
        _quality_section(data),
        _runs_section(data),
    ]
    generated = data.generated.strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>FinOps hub cost report</title><style>{_CSS}</style></head><body>"
        f'<header><h1>FinOps hub cost report</h1><p>Hub <span id="root">{_e(data.root)}</span> · generated '
        f'<time datetime="{data.generated.isoformat()}">{generated}</time></p></header>'
        f"<nav>{nav}</nav><main>{_cards(data)}{''.join(sections)}</main>"
        "<footer>Generated by <code>hub report</code> from the lake's Costs view and config/runs/.</footer></body></html>\n"
    )
