"""`hub costs` on the command line: its dates are checked, and groups left out by `--limit` are said."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hub import catalog
from hub.demo import run_demo


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One ingested month (2024-05) of demo costs."""
    root = str(tmp_path_factory.mktemp("costs-cli") / "hub")
    assert all(r.state == "committed" for r in run_demo(root, rows=500, month="2024-05").records)
    return root


def hub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    # a day at month granularity answered for its whole month (May's total for May 15-20)
    (["--begin", "2024-05-15", "--end", "2024-05-20"], "--begin 2024-05-15 is a day: months are YYYY-MM"),
    (["--begin", "2024-05-99", "--granularity", "day"], "--begin '2024-05-99' is not a day (YYYY-MM-DD) or a month"),
    (["--begin", "2024-05", "--end", "2024-05-foo"], "--end '2024-05-foo' is not a day"),
    (["--begin", "2024-05-\u0661\u0665", "--granularity", "day"], "is not a day"),  # Arabic-Indic digits
])
def test_costs_command_dates_are_checked(lake: str, args: list[str], message: str) -> None:
    """Defect: only the first seven characters of a date were read: `--begin 2024-05-15` at month granularity gave the
    whole of May, and `2024-05-99` or `2024-05-foo` were taken for May."""
    proc = hub("costs", lake, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_costs_command_says_when_groups_are_left_out(lake: str) -> None:
    """Defect: `--limit` (at most 1000) cut the groups silently; the CSV's sum fell short of the total."""
    proc = hub("costs", lake, "--group-by", "ServiceName", "--begin", "2024-05", "--limit", "2", "--format", "csv")
    total = catalog.connect(lake).execute("SELECT count(DISTINCT ServiceName) FROM Costs WHERE x_Month = '2024-05'").fetchone()[0]
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3  # header + 2 groups
    assert f"note: 2 of {total:,} groups shown (largest first, from --offset 0): the rest with --offset 2" in proc.stderr
    whole = hub("costs", lake, "--group-by", "ServiceName", "--begin", "2024-05", "--format", "csv")
    assert whole.returncode == 0 and "note:" not in whole.stderr
    # review of stop 40: lines ended \r\n, the last field read "USD\r" by shell tools (bytes: text mode hides the \r)
    raw = subprocess.run([sys.executable, "-m", "hub.cli", "costs", lake, "--begin", "2024-05", "--format", "csv"],
                         capture_output=True, timeout=120)
    assert raw.returncode == 0 and raw.stdout.count(b"\n") > 1 and b"\r" not in raw.stdout


def test_costs_command_over_a_long_daily_period_fits_its_default_limit(lake: str) -> None:
    """Review: 122 days per day failed with the command's own default `--limit 1000` ("limit x periods is 122,000,
    over 100,000 points: lower the limit"), a limit the user never set. The default fits the period (819 groups)."""
    proc = hub("costs", lake, "--group-by", "ServiceName", "--granularity", "day", "--begin", "2024-03-01",
               "--end", "2024-06-30", "--format", "csv")
    days = catalog.connect(lake).execute("SELECT count(DISTINCT (ServiceName, ChargePeriodStart::DATE)) FROM Costs").fetchone()[0]
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 + days and "note:" not in proc.stderr


def test_costs_command_on_a_missing_root_or_a_broken_lake_is_exit_2(lake: str, tmp_path) -> None:
    """Review: a mistyped root printed an empty answer with exit 0 (no costs, seemingly); an unreadable lake file was
    exit 1 (which means an export was quarantined)."""
    import shutil

    missing = hub("costs", str(tmp_path / "no-such-hub"), "--begin", "2024-05")
    assert (missing.returncode, missing.stdout) == (2, "") and "does not exist" in missing.stderr
    missing = hub("query", str(tmp_path / "no-such-hub"), "SELECT count(*) FROM Costs")  # was a count of 0
    assert (missing.returncode, missing.stdout) == (2, "") and "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = hub("costs", str(tmp_path / "empty"), "--begin", "2024-05")
    assert empty.returncode == 2 and "is not a hub root" in empty.stderr
    shutil.copytree(lake, tmp_path / "broken")
    (tmp_path / "broken/ingestion/Costs/2024/05/zz.parquet").write_bytes(b"garbage")
    broken = hub("costs", str(tmp_path / "broken"), "--begin", "2024-05")
    assert broken.returncode == 2 and broken.stderr.startswith("error: cannot open the lake: ") and "zz.parquet" in broken.stderr


def test_a_billing_account_or_currency_filter_matches_as_the_lake_spells_it(lake: str) -> None:
    """Review of stop 35: the lake keeps billing accounts lower case and currency codes upper case, and a filter
    compared the values as typed: ``BillingCurrency=usd`` or an account as the provider writes it answered nothing
    (exit 0). The same totals as with the lake's spelling."""
    con = catalog.connect(lake)
    account, currency = con.execute("SELECT BillingAccountId, BillingCurrency FROM Costs LIMIT 1").fetchone()
    base = ["costs", lake, "--begin", "2024-05", "--format", "csv"]
    exact = hub(*base, "--filter", f"BillingAccountId={account},BillingCurrency={currency}")
    typed = hub(*base, "--filter", f"BillingAccountId= {account.upper()},BillingCurrency= {currency.lower()}")
    assert exact.returncode == typed.returncode == 0, exact.stderr + typed.stderr
    assert len(exact.stdout.splitlines()) > 1 and typed.stdout == exact.stdout


@pytest.mark.parametrize("column", ["x_ResourceGroupName", "ResourceName", "CommitmentDiscountId"])
def test_a_filter_on_a_column_the_lake_keeps_lower_case_matches_the_providers_spelling(lake: str, column: str) -> None:
    """Review of stop 41: the lake keeps resource groups, resource names and commitment ids lower case; a filter with
    the portal's spelling (``RG-Data-Prod``) answered nothing, and ``--exclude`` removed nothing."""
    con = catalog.connect(lake)
    (value,) = con.execute(f"SELECT {column} FROM Costs WHERE {column} IS NOT NULL LIMIT 1").fetchone()
    base = ["costs", lake, "--begin", "2024-05", "--format", "csv"]
    exact, typed = hub(*base, "--filter", f"{column}={value}"), hub(*base, "--filter", f"{column}={value.upper()}")
    assert exact.returncode == typed.returncode == 0, exact.stderr + typed.stderr
    assert len(exact.stdout.splitlines()) > 1 and typed.stdout == exact.stdout
    assert hub(*base, "--exclude", f"{column}={value.upper()}").stdout == hub(*base, "--exclude", f"{column}={value}").stdout
