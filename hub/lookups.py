"""Open-data lookup tables (``schemas/open_data/``, MIT, (c) Microsoft) registered in a DuckDB connection."""

from __future__ import annotations

from importlib import resources

import duckdb

from transforms.typing import literal, scan

TABLES = {
    "hub_pricing_units": "PricingUnits.csv",
    "hub_regions": "Regions.csv",
    "hub_resource_types": "ResourceTypes.csv",
    "hub_services": "Services.csv",
}


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Create the lookup tables (all columns as text, exactly as in the files) if they are not there yet."""
    base = resources.files("schemas") / "open_data"
    for table, name in TABLES.items():
        with resources.as_file(base / name) as path:
            options = "header = true, all_varchar = true, quote = '\"', escape = '\"', nullstr = ''"
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {scan('read_csv', literal(str(path)), options)}")
