"""``hub report``: a real demo lake (plus a hostile-tag file and a EUR month), the real CLI, the page's numbers
against DuckDB's own queries, and the page rendered by headless Chromium (screenshot + DOM)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from hub import catalog
from hub.demo import run_demo

CHROMIUM = "/usr/bin/chromium"
HOSTILE_TAG = "<script>alert(1)</script>"
HOSTILE_SERVICE = 'Svc <b>"quoted" & \'single\'</b>'
REPO = Path(__file__).resolve().parents[1]


def hub_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "COLUMNS": "200"})


class Tables(HTMLParser):
    """Every ``<table id=...>`` row: the ``<tr>`` attributes and ``{data-col: (data-value, text)}`` of its cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[tuple[dict, dict]]] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._row: tuple[dict, dict] | None = None
        self._cell: tuple[dict, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = (a, {})
        elif tag == "td" and self._row is not None:
            self._cell = (a, [])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            attrs, text = self._cell
            self._row[1][attrs.get("data-col")] = (attrs.get("data-value"), "".join(text))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse(page: str) -> Tables:
    parser = Tables()
    parser.feed(page)
    parser.close()
    return parser


def money(value: str) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo lake (3,000 USD rows of 2024-05) plus 200 rows with a hostile tag and service name (and a data-quality
    code) in another scope, and 500 EUR rows in 2024-06: two currencies and months that must never be added together."""
    root = tmp_path_factory.mktemp("report") / "hub"
    run_demo(str(root), rows=3000)
    files = sorted((root / "ingestion" / "Costs").rglob("*.parquet"))
    assert len(files) == 2
    hostile = root / "ingestion/Costs/2024/05/subscriptions/hostile"
    eur = root / "ingestion/Costs/2024/06/subscriptions/eur"
    hostile.mkdir(parents=True)
    eur.mkdir(parents=True)
    tags = '{"env":"' + HOSTILE_TAG + '"}'
    service = HOSTILE_SERVICE.replace("'", "''")
    con = duckdb.connect()
    # the hostile rows carry a data-quality code too (the demo's Azure rows need no correction)
    con.execute(f"COPY (SELECT * REPLACE ('{tags}' AS Tags, '{service}' AS ServiceName, 'MissingListCost' AS x_SourceChanges) "
                f"FROM read_parquet('{files[0]}') "
                f"LIMIT 200) TO '{hostile / 'x__part_0.parquet'}' (FORMAT parquet)")
    con.execute(f"COPY (SELECT * REPLACE ('EUR' AS BillingCurrency) FROM read_parquet('{files[1]}') LIMIT 500) "
                f"TO '{eur / 'x__part_0.parquet'}' (FORMAT parquet)")
    con.close()
    return root


@pytest.fixture(scope="module")
def report(lake: Path) -> Path:
    out = lake.parent / "report.html"
    proc = hub_cli("report", str(lake), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file()
    return out


def db(lake: Path, sql: str) -> list[tuple]:
    con = catalog.connect(str(lake))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def expected_by_service(lake: Path) -> dict[str, list[tuple]]:
    """Per currency: the top 15 services by EffectiveCost as (key, effective, billed, rows), then ("Other", ...)."""
    groups = db(lake, "SELECT BillingCurrency, ServiceName, sum(EffectiveCost), sum(BilledCost), count(*) "
                      "FROM Costs GROUP BY ALL")
    out: dict[str, list[tuple]] = {}
    for cur in sorted({g[0] for g in groups}):
        ranked = sorted((g[1:] for g in groups if g[0] == cur), key=lambda g: g[1], reverse=True)
        rows = list(ranked[:15])
        if len(ranked) > 15:
            rest = ranked[15:]
            rows.append(("Other", sum(r[1] for r in rest), sum(r[2] for r in rest), sum(r[3] for r in rest)))
        out[cur] = rows
    return out


def page_by_service(tables: Tables) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for attrs, cells in tables.tables["by-service-table"]:
        key = "Other" if attrs.get("data-other") else attrs.get("data-key")
        eff, billed, rows = cells["EffectiveCost"][0], cells["BilledCost"][0], cells["rows"][0]
        assert cells["EffectiveCost"][1] == money(eff) and cells["BilledCost"][1] == money(billed)
        out.setdefault(attrs["data-currency"], []).append((key, Decimal(eff), Decimal(billed), int(rows)))
    return out


def test_report_is_self_contained_and_escaped(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href|action|srcset|data)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<(?:link|img|iframe|object|embed)\b|@import|url\(", page, re.I)
    assert "<script" not in page.lower()  # the hostile tag is text, not an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tables = parse(page)
    assert {"by-month", "by-service", "by-subaccount", "top-resources", "top-tags", "data-quality", "runs"} <= tables.ids
    tag_values = {cells["value"][1] for _, cells in tables.tables["top-tags-table"]}
    assert HOSTILE_TAG in tag_values
    assert HOSTILE_SERVICE in {attrs.get("data-key") for attrs, _ in tables.tables["by-service-table"]}


def test_numbers_match_duckdb(lake: Path, report: Path) -> None:
    tables = parse(report.read_text(encoding="utf-8"))

    # by month: one row per (month, currency), amounts exact
    want = {(m, c): (e, b, n) for m, c, e, b, n in db(
        lake, "SELECT x_Month, BillingCurrency, sum(EffectiveCost), sum(BilledCost), count(*) FROM Costs GROUP BY ALL")}
    got = {(a["data-key"], a["data-currency"]): (Decimal(c["EffectiveCost"][0]), Decimal(c["BilledCost"][0]), int(c["rows"][0]))
           for a, c in tables.tables["by-month-table"]}
    assert set(want) == {("2024-05", "USD"), ("2024-06", "EUR")}
    assert got == want

    # by service: top 15 + Other per currency (the hostile service makes 16 in USD)
    by_service = expected_by_service(lake)
    assert page_by_service(tables) == by_service
    assert by_service["USD"][-1][0] == "Other" and len(by_service["USD"]) == 16

    # by sub-account: per-currency totals add up to the currency totals
    totals = dict(db(lake, "SELECT BillingCurrency, sum(EffectiveCost) FROM Costs GROUP BY ALL"))
    for cur, total in totals.items():
        rows = [c for a, c in tables.tables["by-subaccount-table"] if a["data-currency"] == cur]
        assert len(rows) == 16 if cur == "USD" else len(rows) <= 16
        assert sum(Decimal(c["EffectiveCost"][0]) for c in rows) == total

    # top tags: the same pairs and amounts as a json_keys/json_extract_string query
    tag_rows = db(lake, """WITH g AS (WITH k AS (SELECT BillingCurrency AS cur, EffectiveCost AS cost, Tags, unnest(json_keys(Tags)) AS key
                                      FROM Costs WHERE json_valid(Tags))
                           SELECT cur, key, json_extract_string(Tags, '$."' || key || '"') AS value, sum(cost) AS s FROM k
                           GROUP BY cur, key, value)
                           SELECT * FROM g QUALIFY row_number() OVER (PARTITION BY cur ORDER BY s DESC) <= 20""")
    got_tags = {(a["data-currency"], c["key"][1], c["value"][1]): Decimal(c["EffectiveCost"][0])
                for a, c in tables.tables["top-tags-table"]}
    assert got_tags == {(cur, k, v): s for cur, k, v, s in tag_rows}
    assert ("USD", "env", HOSTILE_TAG) in got_tags

    # data quality: code counts and rows with no change
    counts: dict[str, int] = {}
    for changes, n in db(lake, "SELECT x_SourceChanges, count(*) FROM Costs WHERE x_SourceChanges <> '' GROUP BY ALL"):
        for code in changes.split(","):
            counts[code.strip()] = counts.get(code.strip(), 0) + n
    assert counts, "the demo data has corrected rows"
    got_codes = {c["code"][1]: int(c["rows"][0]) for _, c in tables.tables["data-quality-table"]}
    assert got_codes == counts
    (total, unchanged), = db(lake, "SELECT count(*), count(*) FILTER (WHERE coalesce(x_SourceChanges, '') = '') FROM Costs")
    page = report.read_text(encoding="utf-8")
    assert f'data-col="rows" data-value="{total}"' in page and f'data-col="unchanged" data-value="{unchanged}"' in page

    # top resources: 20 per currency, the largest first, equal to DuckDB's top resource
    usd = [c for a, c in tables.tables["top-resources-table"] if a["data-currency"] == "USD"]
    (top_id, top_cost), = db(lake, "SELECT ResourceId, sum(EffectiveCost) FROM Costs WHERE BillingCurrency = 'USD' "
                                   "GROUP BY ALL ORDER BY 2 DESC LIMIT 1")
    assert len(usd) == 20 and usd[0]["ResourceId"][1] == top_id and Decimal(usd[0]["EffectiveCost"][0]) == top_cost

    # run history: the demo's two committed runs
    run_rows = tables.tables["runs-table"]
    assert sorted(c["dataset"][1] for _, c in run_rows) == ["Costs", "Prices"]
    assert {c["state"][1] for _, c in run_rows} == {"committed"}


def png_check(path: Path, width: int, height: int) -> None:
    """A valid 8-bit RGB(A) PNG of the given size whose decoded scanlines are not all alike (not a blank page)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None and header[:2] == (width, height) and header[2] == 8 and header[3] in (2, 6), header
    raw = zlib.decompress(idat)
    stride = 1 + width * (3 if header[3] == 2 else 4)
    assert len(raw) == stride * height
    assert all(raw[i] <= 4 for i in range(0, len(raw), stride)), "bad filter byte"
    distinct_rows = len({raw[i:i + stride] for i in range(0, len(raw), stride)})
    assert distinct_rows > 300, f"the screenshot looks blank ({distinct_rows} distinct scanlines)"
    assert len(set(raw)) > 64, "the screenshot has almost no colours"


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(sudo apt-get install chromium) to render the HTML report in this test")
    for attempt in range(2):  # headless Chromium now and then hangs on a loaded machine: a second try, fresh profile
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={tmp / f'chromium-profile-{attempt}'}", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            if attempt:
                raise
            continue
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc
    raise AssertionError("unreachable")


def test_rendered_in_chromium(lake: Path, report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    chromium(f"--screenshot={png}", "--window-size=1280,2400", report.as_uri(), tmp=tmp_path)
    assert png.is_file() and png.stat().st_size > 20_000, "screenshot missing or too small to hold the report"
    png_check(png, 1280, 2400)

    dom = chromium("--dump-dom", report.as_uri(), tmp=tmp_path).stdout
    assert "<script" not in dom.lower()
    tables = parse(dom)
    assert page_by_service(tables) == expected_by_service(lake)
    assert HOSTILE_TAG in {c["value"][1] for _, c in tables.tables["top-tags-table"]}


def test_empty_lake_and_usage_errors(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    assert hub_cli("init", str(root)).returncode == 0
    out = tmp_path / "empty.html"
    proc = hub_cli("report", str(root), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = out.read_text(encoding="utf-8")
    assert 'id="no-data"' in page and "No cost data in the lake yet." in page and "No runs yet." in page

    missing_root = hub_cli("report", str(tmp_path / "nope"), "--out", str(out))
    assert missing_root.returncode == 2 and "does not exist" in missing_root.stderr
    missing_folder = hub_cli("report", str(root), "--out", str(tmp_path / "no" / "such" / "r.html"))
    assert missing_folder.returncode == 2 and "does not exist" in missing_folder.stderr
