"""Rewriting a lake folder's own files through a query: what re-normalization (prices after costs) and the pairing
of legacy cost exports share. Each file is read (a local copy on blob stores), written through the query into the
run's staging folder under the same name, and recorded as a part; the caller checks the result and swaps it in
(:mod:`hub.swap`), so readers see the old files or the new ones, never a mix.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable

import duckdb

from hub import convert, runs
from hub.runs import RunRecord
from hub.store import Store
from transforms.typing import literal, scan

#: Builds the query of one file: (its relation, its column names) -> SQL.
Query = Callable[[str, list[str]], str]


def local_copy(store: Store, rel: str, tmp: str) -> str:
    """A path DuckDB can read ``rel`` from: the file itself on local roots, else a copy in ``tmp``."""
    path = store.local_path(rel)
    if path is None:
        path = os.path.join(tmp, "in", rel.replace("/", "_"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        store.get_file(rel, path)
    return path


def rewrite_files(store: Store, con: duckdb.DuckDBPyConnection, rec: RunRecord, rels: list[str], local: list[str],
                  query: Query, tmp: str, *, drop_empty: bool = False) -> list[str]:
    """Write every file through ``query`` into ``rec.staging`` (same names); parts go to ``rec.parts``. With
    ``drop_empty`` a file left without rows is not staged (the swap then removes it). Returns the written local
    paths."""
    store.delete_tree(rec.staging or "")
    outputs = []
    for rel, path in zip(rels, local, strict=True):
        name = posixpath.basename(rel)
        staged = f"{rec.staging}/{name}"
        out = store.local_path(staged) or os.path.join(tmp, "out", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        source = scan('read_parquet', literal(path))
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        rows = convert.write_parquet(con, [f"* FROM ({query(source, columns)})"], "", out, file=rel, select_only=True)
        if drop_empty and rows == 0:
            os.remove(out)
            continue
        if store.local_path(staged) is None:
            store.put_file(out, staged)
        rec.parts.append(runs.PartResult(blob=rel, output=rel, rows=rows))
        outputs.append(out)
    return outputs
