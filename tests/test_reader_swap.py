"""A read that crosses a swap: a lake file the query listed is gone when the query comes to open it (an ingestion
removed it). `hub query` and the cost-analysis query run again and answer from the month as it is now; they failed
with DuckDB's "Cannot open file"."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from hub import catalog, query


def _lake(root: Path, files: int = 30) -> Path:
    folder = root / "ingestion/Costs/2024/05/test"
    folder.mkdir(parents=True)
    for i in range(files):
        duckdb.sql(f"""COPY (SELECT CAST(1 AS DECIMAL(38,18)) AS BilledCost, 'USD' AS BillingCurrency FROM range(3000))
            TO '{folder}/run__{i:02d}.parquet' (FORMAT parquet)""")
    return folder


def _swap_on_first_vector(con: duckdb.DuckDBPyConnection, victim: Path) -> None:
    """``swap(x)``: true for every row; while DuckDB reads the first vector, ``victim`` is removed (a swap)."""
    calls = {"n": 0}

    def swap(values: pa.Array) -> pa.Array:
        calls["n"] += 1
        if calls["n"] == 1 and victim.exists():
            os.remove(victim)
        return pa.array([True] * len(values))

    con.create_function("swap", swap, ["BIGINT"], "BOOLEAN", type="arrow", side_effects=True)


def test_a_query_crossing_a_swap_is_run_again_on_the_files_there_now(tmp_path):
    folder = _lake(tmp_path)
    con = catalog.connect(str(tmp_path), threads=1)
    _swap_on_first_vector(con, folder / "run__29.parquet")
    out = query.run(con, "SELECT count(*) AS n, sum(BilledCost) AS total FROM Costs WHERE swap(1)", "csv")
    assert out.splitlines()[1] == "87000,87000.000000000000000000"  # 29 files of 3,000 rows of 1: the month now
    con.close()


def test_other_read_errors_are_not_run_again(tmp_path):
    calls = []

    def broken() -> None:
        calls.append(1)
        raise duckdb.IOException("IO Error: Permission denied")

    with pytest.raises(duckdb.IOException):
        catalog.read_again(broken)
    assert calls == [1]
    assert catalog.swapped_away(duckdb.IOException('IO Error: Cannot open file "/x/a.parquet": No such file or directory'))
