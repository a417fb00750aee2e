"""The hub on Apache Spark (``pip install 'finops-hub[spark]'``): Spark schedules the conversion, the hub keeps the
rest.

- :mod:`hub.spark.session`: a session from a master (``local[2]``, ``yarn``...) or a Spark Connect URL;
- :mod:`hub.spark.runner`: each part of a delivery converted by one Spark task (``DataFrame.mapInArrow``, so Spark
  Connect and serverless work too) with the same DuckDB SQL as the local engine; the driver keeps reconciliation,
  swap and run record;
- :mod:`hub.spark.read`: the lake read by Spark, month and scope taken from each file's path;
- :mod:`hub.spark.ddl`: tables over the lake for Databricks SQL / Spark, Trino and Athena, from ``schemas/catalog/``.

``pipelines.spark_etl.ingest(spark, root)`` is the entry point for a job that already has a session.
"""
