"""Every reader shows every provider: one lake of Azure, AWS, Google Cloud and OCI rows, and per provider the totals of
the catalog views, ``hub costs``, ``hub serve``, ``hub report`` and ``hub powerbi`` against DuckDB over the lake's files."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
import stores
from conftest import DATA, make_hub

from hub import catalog
from hub.sample_data import write_export
from hub.store import Store
from pipelines.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
AWS = DATA / "aws" / "aws-focus10-942rows.csv"
OCI = DATA / "oci" / "oci-focus10-7rows.csv"
QUERY = "/v4/costs/cost-analysed-bills/query"
#: Billed and effective totals per provider: never summed across currencies.
Totals = dict[tuple[str, str], tuple[int, Decimal, Decimal]]
#: The lake's providers and their billing currencies.
PROVIDERS = {("Microsoft", "USD"), ("AWS", "USD"), ("Oracle", "USD"), ("Google Cloud", "EUR")}
#: A Google Cloud project name that is markup: the report must show it as text.
HOSTILE_PROJECT = 'R&D <b>"web"</b>'


def _gcp_row(cost: str, credits: list[str], service: str, project: str, name: str, hour: str) -> dict:
    """One row of Google's detailed usage cost export (BigQuery records as newline JSON), invoice month 2024-09."""
    return {"billing_account_id": "01ABCD-234567-89EFGH", "service": {"id": f"S-{service[:4]}", "description": service},
            "sku": {"id": "SKU-1", "description": "Core"}, "usage_start_time": f"{hour}:00:00 UTC",
            "usage_end_time": f"{hour[:-2]}{int(hour[-2:]) + 1:02d}:00:00 UTC",
            "project": {"id": project, "name": name, "labels": []}, "labels": [{"key": "env", "value": "prod"}],
            "location": {"location": "europe-west4", "region": "europe-west4", "zone": None},
            "resource": {"name": f"vm-{project}", "global_name": f"//compute.googleapis.com/{project}/vm"},
            "price": {"effective_price": 0.5, "tier_start_amount": 0, "unit": "hour", "pricing_unit_quantity": 1},
            "cost": float(cost), "cost_at_list": float(cost), "currency": "EUR", "currency_conversion_rate": 0.93,
            "usage": {"amount": 7200, "unit": "seconds", "amount_in_pricing_units": 2, "pricing_unit": "hour"},
            "credits": [{"name": "Sustained use discount", "amount": float(c), "type": "SUSTAINED_USAGE_DISCOUNT"} for c in credits],
            "invoice": {"month": "202409"}, "cost_type": "regular", "transaction_type": "GOOGLE"}


#: cost + credits: 1.00 + 3.50 + 0.625 = 5.125 EUR. The last row is charged 2024-10-01 03:00 UTC (30 September in
#: Pacific time, so on September's invoice): it lives in the 2024-09 folder but belongs to October's costs.
GCP_ROWS = [_gcp_row("1.25", ["-0.25"], "Compute Engine", "proj-1", HOSTILE_PROJECT, "2024-09-10 10"),
            _gcp_row("3.5", [], "Cloud Storage", "proj-2", "Project Two", "2024-09-20 10"),
            _gcp_row("0.75", ["-0.125"], "Compute Engine", "proj-1", HOSTILE_PROJECT, "2024-10-01 03")]
GCP_TOTAL = Decimal("5.125")


def deliver(root: Path, provider: str, folder: str, files: dict[str, str]) -> None:
    """A provider's delivery under exports/<provider>/<folder>/: its files, then an empty manifest.json, last."""
    base = root / "exports" / provider / folder
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text, encoding="utf-8")
    (base / "manifest.json").write_bytes(b"")


def csv_totals(path: Path) -> tuple[int, Decimal, Decimal]:
    """Rows, BilledCost and EffectiveCost of a FOCUS CSV, summed from its text (independent of the pipeline)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))

    def total(col: str) -> Decimal:
        return sum((Decimal(r[col]) for r in rows if r[col] not in ("", "NULL")), Decimal(0))

    return len(rows), total("BilledCost"), total("EffectiveCost")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Totals]:
    """A hub holding 120 generated Azure rows, the AWS FOCUS sample, the OCI FOCUS sample (September and one row billed
    in October) and three Google Cloud rows in EUR; and each provider's totals as its source files give them."""
    root = make_hub(tmp_path_factory.mktemp("multicloud") / "hub")
    azure = Path(write_export(str(root), rows=120, month="2024-09")).parent
    deliver(root, "aws", "focus/my-export", {"data/BILLING_PERIOD=2024-09/my-export-00001.csv": AWS.read_text()})
    deliver(root, "oci", "2024-09", {"FOCUS Reports/2024/09/30/report.csv": OCI.read_text()})
    deliver(root, "gcp", "billing/2024-09", {"export-000000000000.json": "".join(json.dumps(r) + "\n" for r in GCP_ROWS)})
    result = ingest(Store(str(root)))
    assert result.ok, [r.error for r in result.all]
    (azure_csv,) = azure.glob("*.csv")
    source = {("Microsoft", "USD"): csv_totals(azure_csv), ("AWS", "USD"): csv_totals(AWS), ("Oracle", "USD"): csv_totals(OCI),
              ("Google Cloud", "EUR"): (len(GCP_ROWS), GCP_TOTAL, GCP_TOTAL)}
    return root, source


def files_sql(root: Path) -> str:
    return f"read_parquet('{root}/ingestion/Costs/**/*.parquet', union_by_name = true)"


def grouped(con: duckdb.DuckDBPyConnection, source: str, where: str = "true") -> Totals:
    """(ProviderName, BillingCurrency) -> rows, BilledCost, EffectiveCost of ``source``."""
    rows = con.execute(f"SELECT ProviderName, BillingCurrency, count(*), sum(BilledCost), sum(EffectiveCost) FROM {source} "
                       f"WHERE {where} GROUP BY ALL").fetchall()
    return {(p, c): (n, b, e) for p, c, n, b, e in rows}


def utc() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


@pytest.fixture(scope="module")
def expected(lake: tuple[Path, Totals]) -> Totals:
    """DuckDB directly over the lake's Parquet files, per provider and currency; equal to the source files' totals."""
    root, source = lake
    totals = grouped(utc(), files_sql(root))
    assert set(totals) == PROVIDERS
    assert totals == source
    return totals


def charged(root: Path, month: str, currency: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Provider -> BilledCost, EffectiveCost of the rows charged in ``month`` (UTC) in ``currency``, from the files."""
    return {p: (b, e) for (p, c), (_, b, e) in grouped(
        utc(), files_sql(root), f"strftime(ChargePeriodStart, '%Y-%m') = '{month}' AND BillingCurrency = '{currency}'").items()}


def test_lake_holds_late_rows_in_their_billing_month(lake: tuple[Path, Totals]) -> None:
    """The data the month checks below rely on: OCI's 2024-09-30 22:00 row is billed in October (folder 2024/10), Google's
    2024-10-01 03:00 UTC row in September (folder 2024/09, the Pacific invoice month)."""
    root, _ = lake
    late = utc().execute(
        f"SELECT ProviderName, strftime(ChargePeriodStart, '%Y-%m-%d %H:%M'), regexp_extract(filename, 'Costs/(\\d{{4}}/\\d{{2}})/', 1) "
        f"FROM read_parquet('{root}/ingestion/Costs/**/*.parquet', union_by_name = true, filename = true) "
        "WHERE strftime(ChargePeriodStart, '%Y/%m') <> regexp_extract(filename, 'Costs/(\\d{4}/\\d{2})/', 1) ORDER BY 1").fetchall()
    assert late == [("Google Cloud", "2024-10-01 03:00", "2024/09"), ("Oracle", "2024-09-30 22:00", "2024/10")]


def test_catalog_views(lake: tuple[Path, Totals], expected: Totals) -> None:
    """The Costs view and the versioned views: every provider's rows, BilledCost and EffectiveCost, in its currency."""
    con = catalog.connect(str(lake[0]))
    for view in ("Costs", "Costs_v1_0", "Costs_v1_2"):
        assert grouped(con, view) == expected, view


def hub_costs(root: Path, *args: str) -> list[dict[str, str]]:
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "costs", str(root), "--group-by", "ProviderName", "--format", "csv",
                           *args], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader(io.StringIO(proc.stdout)))


def test_costs_command(lake: tuple[Path, Totals], expected: Totals) -> None:
    """``hub costs --group-by ProviderName`` once per currency and cost type: each provider's total, in its currency, per
    charge month; a one-month query includes the rows of that month billed in the next or the previous one."""
    root = lake[0]
    for currency in ("USD", "EUR"):
        for i, cost_type in ((1, "BilledCost"), (2, "EffectiveCost")):
            rows = hub_costs(root, "--begin", "2024-08", "--end", "2024-11", "--cost-type", cost_type,
                             "--filter", f"BillingCurrency={currency}")
            assert {r["currency"] for r in rows} == {currency}
            got: dict[str, Decimal] = {}
            for r in rows:
                got[r["ProviderName"]] = got.get(r["ProviderName"], Decimal(0)) + Decimal(r[cost_type])
            assert got == {p: t[i] for (p, c), t in expected.items() if c == currency}, (currency, cost_type)
            by_month = {(r["ProviderName"], r["period"]): Decimal(r[cost_type]) for r in rows}
            want = {(p, m): t[i - 1] for m in ("2024-09", "2024-10") for p, t in charged(root, m, currency).items()}
            assert by_month == want
    # one month alone: OCI's row charged 30 September lives in the October folder, Google's row of 1 October in the
    # September folder (fixed: the query read only the period's own month folders and lost them)
    for month, currency, provider, late in (("2024-09", "USD", "Oracle", "0.24"), ("2024-10", "EUR", "Google Cloud", "0.625")):
        rows = hub_costs(root, "--begin", month, "--cost-type", "BilledCost", "--filter", f"BillingCurrency={currency}")
        got = {r["ProviderName"]: Decimal(r["BilledCost"]) for r in rows}
        assert got == {p: b for p, (b, _) in charged(root, month, currency).items()}
        assert got[provider] >= Decimal(late)



def post(base: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body with urllib; the status and the decoded answer (errors too)."""
    req = urllib.request.Request(base + QUERY, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(lake: tuple[Path, Totals], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hub serve`` on 127.0.0.1 and a free port, in a subprocess (in Pacific time: months stay UTC); yields its base URL
    and stops it."""
    with stores.hub_serve(str(lake[0]), tmp_path_factory.mktemp("serve") / "serve.log",
                          {**ENV, "TZ": "America/Los_Angeles"}) as base:
        yield base


def test_serve(lake: tuple[Path, Totals], expected: Totals, server: str) -> None:
    """The cost-analysis endpoint grouped by ProviderName, per currency and cost type: totals over the whole lake and per
    single month equal DuckDB's; a request over both currencies is refused (400), never summed."""
    root = lake[0]
    by_provider = [{"type": "dimension", "key": "ProviderName"}]
    for currency in ("USD", "EUR"):
        only = [{"operator": 0, "filter_factor": {"key": "BillingCurrency", "value": [currency]}}]
        for i, cost_type in ((1, "ORIGINAL_COST"), (2, "AMORTIZED_COST")):
            status, body = post(server, {"time_condition": {"time_measure_id": 2, "begin_time": "2024-08", "end_time": "2024-11"},
                                         "groupby": by_provider, "cost_type": cost_type, "filters": only})
            assert status == 200, body
            assert body["currency"] == currency
            got = {r["dimensions"][0]["value"]: Decimal(r["amount_by_costs"]) for r in body["cost_data"]}
            assert got == {p: t[i] for (p, c), t in expected.items() if c == currency}, (currency, cost_type)
            for month in ("2024-09", "2024-10"):
                status, body = post(server, {"time_condition": {"time_measure_id": 2, "begin_time": month, "end_time": month},
                                             "groupby": by_provider, "cost_type": cost_type, "filters": only})
                assert status == 200, body
                got = {r["dimensions"][0]["value"]: Decimal(r["amount_by_costs"]) for r in body["cost_data"]}
                assert got == {p: t[i - 1] for p, t in charged(root, month, currency).items()}, (currency, cost_type, month)
    status, body = post(server, {"time_condition": {"time_measure_id": 2, "begin_time": "2024-09", "end_time": "2024-09"},
                                 "groupby": by_provider})
    assert status == 400 and body["error_code"] == "CBC.0100" and "EUR, USD" in body["error_msg"]


class Page(HTMLParser):
    """Rows of every ``<table id>`` ((row attributes, {data-col: (data-value, text)})) and the summary cards
    (currency -> data-value of their EffectiveCost and BilledCost)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[tuple[dict, dict]]] = {}
        self.cards: dict[str, list[str]] = {}
        self._table: str | None = None
        self._row: tuple[dict, dict] | None = None
        self._cell: tuple[dict, list[str]] | None = None
        self._card: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = (a, {})
        elif tag == "td" and self._row is not None:
            self._cell = (a, [])
        elif tag == "div" and a.get("class") == "card" and a.get("data-currency"):
            self._card = a["data-currency"]
            self.cards[self._card] = []
        elif self._card and "data-value" in a:
            self.cards[self._card].append(a["data-value"] or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row[1][self._cell[0].get("data-col")] = (self._cell[0].get("data-value"), "".join(self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._row[1]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "div":
            self._card = None


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


def test_report(lake: tuple[Path, Totals], expected: Totals, tmp_path: Path) -> None:
    """``hub report``: a by-provider table naming each provider with its rows, EffectiveCost and BilledCost in its currency
    (exact ``data-value``, shown rounded), currency cards that add the providers up, markup in data shown as text."""
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "report", str(lake[0]), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    got: Totals = {}
    for attrs, cells in page.tables["by-provider-table"]:  # missing before the report had a by-provider section
        assert not attrs.get("data-other") and cells["name"][1] == attrs["data-key"] and cells["currency"][1] == attrs["data-currency"]
        effective, billed = Decimal(cells["EffectiveCost"][0]), Decimal(cells["BilledCost"][0])
        assert cells["EffectiveCost"][1] == money(effective) and cells["BilledCost"][1] == money(billed)
        got[(attrs["data-key"], attrs["data-currency"])] = (int(cells["rows"][0]), billed, effective)
    assert got == expected
    for currency in ("USD", "EUR"):
        mine = [t for (_, c), t in expected.items() if c == currency]
        assert [Decimal(v) for v in page.cards[currency]] == [sum(t[2] for t in mine), sum(t[1] for t in mine)]
    names = {cells["name"][1] for attrs, cells in page.tables["by-subaccount-table"] if attrs["data-currency"] == "EUR"}
    assert HOSTILE_PROJECT in names and "<b>" not in text


def test_powerbi(lake: tuple[Path, Totals], expected: Totals, tmp_path: Path) -> None:
    """``hub powerbi``: every provider's rows in the published Costs files (one per lake folder), with its currency and
    totals."""
    dest = tmp_path / "powerbi"
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "powerbi", str(lake[0]), "--out", str(dest)],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    published = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.parquet"))
    assert published == ["Costs/2024/09/aws/1234567890123/costs.parquet", "Costs/2024/09/gcp/01abcd-234567-89efgh/costs.parquet",
                         "Costs/2024/09/oci/20209880/costs.parquet",
                         "Costs/2024/09/providers/microsoft.billing/billingaccounts/8611537/costs.parquet",
                         "Costs/2024/10/oci/20209880/costs.parquet"]
    assert grouped(utc(), f"read_parquet('{dest}/Costs/**/*.parquet', union_by_name = true)") == expected
    assert f"{sum(t[0] for t in expected.values()):,} Costs rows" in proc.stdout


def test_a_late_credit_counts_in_its_usage_month_whatever_the_query_window(tmp_path: Path) -> None:
    """Defect: a native bill's credit of an earlier month's usage (exempt from the 31-day period check) lives in its
    bill's month folder; the cost API read only the folders within 31 days of the period, so 2024-03 asked alone gave
    nothing, and -30 when asked together with 2024-08."""
    from typer.testing import CliRunner

    from hub import sample_native
    from hub.cli import app

    root = make_hub(tmp_path / "hub")
    sample_native.write_oci_focus(str(root), month="2024-05", rows=20)
    folder = root / "exports/oci/late/2024/08"
    folder.mkdir(parents=True)
    src = next(root.glob("exports/oci/FOCUS Reports/2024/05/*.csv.gz"))
    duckdb.sql(f"""COPY (SELECT * REPLACE ('99990003' AS BillingAccountId, '2024-08-01T00:00:00Z' AS BillingPeriodStart,
        '2024-09-01T00:00:00Z' AS BillingPeriodEnd, '2024-03-10T00:00:00Z' AS ChargePeriodStart,
        '2024-03-10T01:00:00Z' AS ChargePeriodEnd, 'Credit' AS ChargeCategory, '-10' AS BilledCost, '-10' AS EffectiveCost,
        '-10' AS ListCost) FROM read_csv('{src}', all_varchar = true) LIMIT 3) TO '{folder}/0001.csv.gz' (HEADER, COMPRESSION gzip)""")
    (folder / "manifest.json").write_text("")
    assert all(r.state == "committed" for r in ingest(Store(str(root))).all)
    for end in ([], ["--end", "2024-08"]):  # three credits of -10 charged on 2024-03-10, in the 2024-08 bill
        out = CliRunner().invoke(app, ["costs", str(root), "--begin", "2024-03", *end, "--cost-type", "BilledCost",
                                       "--format", "csv"])
        assert out.exit_code == 0, out.output
        assert "2024-03,-30,-30,USD" in out.output.splitlines()
