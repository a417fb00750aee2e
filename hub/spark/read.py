"""The lake read by Spark: every Parquet file of a dataset (the folders are positional, ``<yyyy>/<mm>/<scope>``, not
``key=value``, so Spark's partition discovery does not apply), with the month and scope taken from each file's path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.store import INGESTION

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MONTH = "x_Month"
SCOPE = "x_Scope"


def path_pattern(dataset: str) -> str:
    """A Java regex for a lake file's path: groups year, month, scope folder (the last ``ingestion/<dataset>/`` of the
    path, so a root whose own path looks like the lake's cannot change a row's month)."""
    return rf"^.*/{INGESTION}/{dataset}/(\d{{4}})/(\d{{2}})/(.*)/[^/]+\.parquet$"


def read_dataset(spark: SparkSession, root: str, dataset: str = "Costs") -> DataFrame:
    """A dataset of the lake under ``root`` (a path or URL Spark reads: ``/Volumes/...``, ``abfss://...``,
    ``s3a://...``) as one DataFrame, schemas merged across files, with ``x_Month`` (``yyyy-mm``) and ``x_Scope``."""
    from pyspark.sql import functions as F  # noqa: N812 - Spark's convention

    base = f"{root.rstrip('/')}/{INGESTION}/{dataset}"
    frame = (spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true")
             .option("pathGlobFilter", "*.parquet").parquet(base))
    path, pattern = F.col("_metadata.file_path"), path_pattern(dataset)
    month = F.concat(F.regexp_extract(path, pattern, 1), F.lit("-"), F.regexp_extract(path, pattern, 2))
    # Spark's file_path is a URI (a space is %20): the scope folder's name decoded, a literal "+" kept as it is; then
    # a segment the lake made visible (``%5fshared``, ``hub.store.visible``) as the scope is named (``_shared``)
    scope = F.url_decode(F.regexp_replace(F.regexp_extract(path, pattern, 3), r"\+", "%2B"))
    scope = F.regexp_replace(F.regexp_replace(scope, "(^|/)%5f", "$1_"), "(^|/)%2e", "$1.")
    return frame.withColumn(MONTH, month).withColumn(SCOPE, scope)
