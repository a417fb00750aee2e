"""Tables over the lake for SQL engines, generated from the catalog's versioned views (``schemas/catalog/views.json``).

Per dataset, one external table over ``<location>/ingestion/<Dataset>/`` (all files below it, any depth) with the
lake's columns; per versioned view (``Costs_v1_0``...), a view with its columns and types and ``x_Month`` taken from
each row's file path, as the DuckDB catalog (:mod:`hub.catalog`) has them. Dialects: ``databricks`` (Databricks SQL
and Spark SQL), ``trino`` (Hive connector) and ``athena``.
"""

from __future__ import annotations

import re

from hub.catalog import DATASETS, MONTH, view_specs
from hub.errors import UsageError
from hub.spark.read import glob_escape, path_pattern
from hub.store import INGESTION

DIALECTS = ("databricks", "trino", "athena")

_TYPES = {  # the catalog's DuckDB types in each dialect (anything else: text)
    "databricks": {"VARCHAR": "STRING", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "INTEGER": "INT"},
    "trino": {"TIMESTAMP WITH TIME ZONE": "TIMESTAMP(6)"},
    "athena": {"VARCHAR": "string", "TIMESTAMP WITH TIME ZONE": "timestamp", "INTEGER": "int", "DOUBLE": "double",
               "BOOLEAN": "boolean", "DATE": "date"},
}
_KNOWN = re.compile(r"^(VARCHAR|DOUBLE|BOOLEAN|DATE|INTEGER|TIMESTAMP WITH TIME ZONE|DECIMAL\(\d+,\d+\))$")


def _type(dialect: str, duck: str) -> str:
    duck = duck if _KNOWN.match(duck) else "VARCHAR"
    mapped = _TYPES[dialect].get(duck, duck)
    return mapped.lower() if dialect == "athena" else mapped


def spark_schema(dataset: str) -> str:
    """A dataset's catalog columns as a Spark DDL schema (``` `BilledCost` DECIMAL(38,18), ...```)."""
    return ", ".join(f"{_quote('databricks', name)} {_type('databricks', duck)}" for name, duck in lake_columns(dataset).items())


def _quote(dialect: str, name: str, *, ddl: bool = False) -> str:
    """An identifier: backticks in Spark and in Athena's table DDL (Hive), double quotes in Trino and Athena views."""
    if dialect == "databricks" or (dialect == "athena" and ddl):
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _string(dialect: str, text: str) -> str:
    """A string literal (Spark reads backslash escapes in literals, Trino and Athena do not)."""
    if dialect == "databricks":
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def lake_columns(dataset: str) -> dict[str, str]:
    """The lake columns of a dataset that its versioned views read, with their DuckDB types (the newest view's)."""
    columns: dict[str, str] = {}
    for spec in sorted((s for s in view_specs().values() if s["dataset"] == dataset), key=lambda s: len(s["columns"])):
        for c in spec["columns"]:
            columns[c.get("from", c["name"])] = c["type"]
    return columns


def ddl(dialect: str, location: str, *, schema: str = "finops") -> str:
    """The statements (separated by ``;`` lines) creating the tables and views over the lake at ``location`` (the
    hub root as the engine reads it: ``s3://bucket/hub``, ``abfss://...``, ``/Volumes/...``)."""
    if dialect not in DIALECTS:
        raise UsageError(f"unknown dialect {dialect!r}; one of {', '.join(DIALECTS)}")
    base = location.rstrip("/")
    prefix = "hive." if dialect == "trino" else ""
    head = f"-- FinOps hub lake tables ({dialect}), generated from schemas/catalog/views.json\n"
    if dialect == "trino":
        head += "-- the Hive connector's catalog needs hive.recursive-directories=true: the lake's folders are nested\n"
    out = [f"{head}CREATE {'DATABASE' if dialect == 'athena' else 'SCHEMA'} IF NOT EXISTS {prefix}{schema}"]
    path = "_metadata.file_path" if dialect == "databricks" else '"$path"'
    for dataset in DATASETS:
        table = f"{prefix}{schema}.{dataset.lower()}"
        folder = f"{base}/{INGESTION}/{dataset}"
        cols = ",\n  ".join(f"{_quote(dialect, n, ddl=True)} {_type(dialect, t)}" for n, t in lake_columns(dataset).items())
        if dialect == "databricks":
            location = _string(dialect, glob_escape(folder))  # Spark globs a table's location too
            out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n) USING PARQUET\n"
                       f"OPTIONS (recursiveFileLookup 'true', pathGlobFilter '*.parquet')\nLOCATION {location}")
        elif dialect == "trino":
            out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n)\n"
                       f"WITH (external_location = {_string(dialect, folder)}, format = 'PARQUET')")
        else:
            out.append(f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n  {cols}\n)\nSTORED AS PARQUET\n"
                       f"LOCATION {_string(dialect, folder + '/')}")
        pattern = _string(dialect, path_pattern(dataset))
        month = (f"concat(regexp_extract({path}, {pattern}, 1), '-', regexp_extract({path}, {pattern}, 2))"
                 if dialect == "databricks" else
                 f"regexp_extract({path}, {pattern}, 1) || '-' || regexp_extract({path}, {pattern}, 2)")
        for name, spec in view_specs().items():
            if spec["dataset"] != dataset:
                continue
            select = ",\n  ".join(f"CAST({_quote(dialect, c.get('from', c['name']))} AS {_type(dialect, c['type'])}) "
                                  f"AS {_quote(dialect, c['name'])}" for c in spec["columns"])
            out.append(f"CREATE OR REPLACE VIEW {prefix}{schema}.{name.lower()} AS SELECT\n  {select},\n  {month} AS {MONTH}\n"
                       f"FROM {table}")
    return ";\n\n".join(out) + ";\n"


def statements(text: str) -> list[str]:
    """The statements of :func:`ddl`'s text, one by one (for engines that run one statement a call)."""
    return [s.strip().rstrip(";") for s in text.split(";\n\n") if s.strip()]
