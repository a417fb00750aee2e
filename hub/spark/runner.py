"""The parts of a delivery converted as Spark tasks.

The driver makes a DataFrame of one row per part (``spark.range`` with one partition per part) and maps it with
``mapInArrow``: each task opens the hub root itself, converts its part with the local engine's code
(:func:`hub.conversion.convert_part`: the same DuckDB SQL, DuckDB threads = ``spark.task.cpus``) into the run's
staging folder, and returns the part's outcome (rows, input totals, FOCUS check counts) as one small row. The driver
then reconciles, validates, swaps and records as for a local run. A task that raises is retried by Spark (attempts
write under attempt-unique names, renamed to the part's name: a retry gives the same file); bad input is an outcome,
not a failure, so it is never retried; a part failing on every attempt fails the job: ``PartFailed``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from hub.conversion import PartJob, PartOutcome, convert_part
from hub.errors import HubError
from hub.store import Store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: What a task returns: the part's index and its pickled :class:`hub.conversion.PartOutcome`.
OUTCOME = pa.schema([("part", pa.int64()), ("outcome", pa.binary())])
OUTCOME_DDL = "part long, outcome binary"


class SparkRunner:
    """A :data:`hub.conversion.PartsRunner` on ``spark``. ``fail_attempts`` (tests): part index -> how many first
    attempts of it raise."""

    def __init__(self, spark: SparkSession, *, fail_attempts: dict[int, int] | None = None) -> None:
        self.spark = spark
        self.fail_attempts = fail_attempts or {}
        #: the outcomes of the last delivery's parts (the benchmark reads their ``seconds``)
        self.last: list[PartOutcome] = []

    def __call__(self, store: Store, jobs: list[PartJob]) -> list[PartOutcome]:
        jobs = [dataclasses.replace(j, fail_attempts=self.fail_attempts.get(j.index, 0)) for j in jobs]
        parts = self.spark.range(0, len(jobs), 1, numPartitions=len(jobs))  # one part a task
        # the executors may run in another working folder (a Spark Connect server): a local root goes as an absolute path
        root = os.path.abspath(store.root) if store.is_local else store.source
        task = functools.partial(_convert, root, jobs)
        try:
            rows = parts.mapInArrow(task, OUTCOME_DDL).collect()
        except Exception as exc:  # noqa: BLE001 - Py4J, PythonException or Spark Connect: the job failed
            raise HubError(f"a part failed on every attempt: {_cause(exc)}", file=_failed(exc, jobs).blob,
                           code="PartFailed") from None
        self.last = [pickle.loads(r["outcome"]) for r in sorted(rows, key=lambda r: r["part"])]  # noqa: S301 - our tasks
        return self.last


def _convert(root: str, jobs: list[PartJob], batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The task: convert the parts whose indexes arrive (one), return their outcomes."""
    from pyspark import TaskContext

    context = TaskContext.get()
    threads = int(context.cpus()) if context is not None else 1
    attempt = context.attemptNumber() if context is not None else 0
    store = Store(root)
    for batch in batches:
        for index in batch.column(0).to_pylist():
            try:
                outcome = convert_part(store, jobs[index], threads=threads, attempt=attempt)
            except Exception as exc:  # a failure Spark retries; the job's error then names the part (_failed)
                raise PartError(index, exc) from exc
            yield pa.RecordBatch.from_pylist([{"part": index, "outcome": pickle.dumps(outcome)}], schema=OUTCOME)


class PartError(RuntimeError):
    """A task's unexpected failure, marked with its part's index (Spark's job error does not say which task failed)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause} [hub-part {index}]")


def _failed(exc: BaseException, jobs: list[PartJob]) -> PartJob:
    """The part whose task failed the job, as its :class:`PartError` says, else as Spark's ``Task N in stage`` does
    (a worker that crashed raised nothing: one part a task, task N is part N), else the first."""
    found = re.search(r"\[hub-part (\d+)\]", str(exc)) or re.search(r"\bTask (\d+) in stage\b", str(exc))
    index = int(found.group(1)) if found else 0
    return jobs[index] if index < len(jobs) else jobs[0]


def _cause(exc: BaseException) -> str:
    """The last Python error line of a failed Spark job (the executor's), else the exception's first line."""
    text = str(exc)
    if marked := re.findall(r"PartError: (.+?) \[hub-part \d+\]", text):  # a task's own failure, as it was raised
        return marked[-1].strip()[:300]
    if crashed := re.findall(r"(Python worker exited unexpectedly[^\n]*)", text):  # killed (out of memory, a signal)
        return crashed[-1].strip()[:300]
    found = re.findall(r"^\s*(\w+(?:Error|Exception): .+)$", text, flags=re.MULTILINE)
    python = [f for f in found if not f.startswith(("org.", "java", "py4j", "pyspark"))]
    line = (python or found or [text.strip().splitlines()[0] if text.strip() else type(exc).__name__])[-1]
    return line.strip()[:300]
