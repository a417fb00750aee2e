"""The lake read by Spark: every Parquet file of a dataset (the folders are positional, ``<yyyy>/<mm>/<scope>``, not
``key=value``, so Spark's partition discovery does not apply), with the month and scope taken from each file's path."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hub.export_schemas import EXPORT_FOLDER, datasets
from hub.store import INGESTION

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MONTH = "x_Month"
SCOPE = "x_Scope"
#: Spark's error conditions for a dataset folder that is missing or holds no Parquet file yet.
NO_FILES = ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA")


def empty_schema(dataset: str) -> str:
    """A Spark DDL schema of a dataset's catalog columns, ``x_Month`` and ``x_Scope``."""
    from hub.spark.ddl import spark_schema

    return f"{spark_schema(dataset)}, `{MONTH}` STRING, `{SCOPE}` STRING"


def path_pattern(dataset: str) -> str:
    """A Java regex for a lake file's path: groups year, month, scope folder (the last ``ingestion/<dataset>/`` of the
    path, so a root whose own path looks like the lake's cannot change a row's month), without the sub-folder legacy
    Azure exports keep their rows in (``.../actualcost``: ``subfolder`` in ``datasets.json``) and without an export's
    own sub-folder (``.../export~<name>``: ``perExport``), as the run records name the scope."""
    subs = "|".join(sorted({m["subfolder"] for m in datasets().values() if m.get("subfolder")}))
    tail = (f"(?:/(?:{subs}))?" if subs else "") + f"(?:/{EXPORT_FOLDER}[^/]+)?"
    return rf"^.*/{INGESTION}/{dataset}/(\d{{4}})/(\d{{2}})/(.*?){tail}/[^/]+\.parquet$"


def glob_escape(path: str) -> str:
    """``path`` with the characters Hadoop's path globbing reads (``[]{}*?\\``) escaped: a root under ``team[1]/``
    is read as it is, never as ``team1/`` (another hub) or as nothing."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def read_dataset(spark: SparkSession, root: str, dataset: str = "Costs") -> DataFrame:
    """A dataset of the lake under ``root`` (a path or URL Spark reads: ``/Volumes/...``, ``abfss://...``,
    ``s3a://...``) as one DataFrame, schemas merged across files, with ``x_Month`` (``yyyy-mm``) and ``x_Scope``. A
    dataset without files yet (a new hub) is an empty frame with the catalog's columns, as DuckDB's catalog gives."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F  # noqa: N812 - Spark's convention

    base = glob_escape(f"{root.rstrip('/')}/{INGESTION}/{dataset}")
    try:
        frame = (spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true")
                 .option("pathGlobFilter", "*.parquet").parquet(base))
        frame.schema  # noqa: B018 - Spark Connect resolves lazily: the missing folder is found here
    except AnalysisException as exc:
        if (exc.getCondition() if hasattr(exc, "getCondition") else exc.getErrorClass()) not in NO_FILES:
            raise
        return spark.createDataFrame([], empty_schema(dataset))
    path, pattern = F.col("_metadata.file_path"), path_pattern(dataset)
    month = F.concat(F.regexp_extract(path, pattern, 1), F.lit("-"), F.regexp_extract(path, pattern, 2))
    # Spark's file_path is a URI (a space is %20): the scope folder's name decoded, a literal "+" kept as it is; then
    # a segment the lake made visible (``%5fshared``, ``hub.store.visible``) as the scope is named (``_shared``)
    scope = F.url_decode(F.regexp_replace(F.regexp_extract(path, pattern, 3), r"\+", "%2B"))
    scope = F.regexp_replace(F.regexp_replace(scope, "(^|/)%5f", "$1_"), "(^|/)%2e", "$1.")
    return frame.withColumn(MONTH, month).withColumn(SCOPE, scope)
