"""``hub ingest --engine spark``, and the entry point of a Spark job (Databricks, Fabric, EMR, Dataproc...) that already
has a session: every pending delivery ingested as by ``hub ingest``, the parts of Azure exports converted as Spark
tasks (:class:`hub.spark.runner.SparkRunner`); reconciliation, swap, run records and the lease stay on the driver.

    from pipelines import spark_etl
    result = spark_etl.ingest(spark, "/Volumes/finops/hub/root")
    assert result.ok, [r.error for r in result.all if r.error]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import conversion
from hub.errors import UsageError
from hub.spark.runner import SparkRunner
from hub.store import Store
from pipelines.ingest import IngestResult
from pipelines.ingest import ingest as ingest_here

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def ingest(spark: SparkSession, root: str | Store, *, runner: SparkRunner | None = None, **options: Any) -> IngestResult:
    """Ingest ``root`` (a path every executor reaches: ``/Volumes/...``, ``/lakehouse/default/Files/...``, a mount, or
    an fsspec URL whose credentials the executors have in their environment) on ``spark``; ``options`` are those of
    :func:`pipelines.ingest.ingest` (``retry``, ``force``...)."""
    store = root if isinstance(root, Store) else Store(root)
    if store.options:  # executors open the root again from its URL alone: they would fail every part
        raise UsageError("the executors open the hub root from its URL: give them its credentials in their environment "
                         f"(or a path they reach), not as storage options of the Store ({', '.join(sorted(store.options))})")
    with conversion.parts_runner(runner or SparkRunner(spark)):
        return ingest_here(store, **options)
