"""Lake folders an older hub version laid out otherwise, moved to today's layout before any delivery is taken.

Reservation recommendations (``perExport`` in ``datasets.json``) keep each export's rows in its own sub-folder of the
scope folder (``<scope>/export~<name>/``), so that a scope's exports per resource type or look-back period never
replace each other. Hub versions before that wrote them to the scope folder itself: each committed delivery of that
layout has its files moved into its export's folder (and its ``raw/`` copy with them) and its record updated, so that
the export's next delivery replaces them there and the others' stay. A move is a rename on a local folder; on a blob
store it is a copy then a delete, and a crash in between is finished by the next ingestion (the record, saved last,
still names the scope folder).
"""

from __future__ import annotations

import posixpath

from hub import runs
from hub.export_schemas import EXPORT_FOLDER, destination
from hub.runs import RunRecord
from hub.store import MSEXPORTS, Store, dataset_folder, raw_folder


def to_export_folders(store: Store, records: list[RunRecord]) -> list[str]:
    """Move the committed deliveries among ``records`` that a ``perExport`` type wrote to its scope folder into their
    export's sub-folder (records updated in place and saved). Returns their keys."""
    moved = []
    for rec in records:
        target = _folder(rec)
        if target is None or target == rec.destination:
            continue
        store.check_fence()
        assert rec.destination is not None
        for part in rec.parts:
            name = posixpath.basename(part.output)
            for old, new in ((rec.destination, target), (raw_folder(rec.destination), raw_folder(target))):
                if store.exists(f"{old}/{name}"):
                    store.move(f"{old}/{name}", f"{new}/{name}")
            part.output = f"{target}/{name}"
        rec.destination = target
        runs.save(store, rec)
        moved.append(rec.key)
    return moved


def _folder(rec: RunRecord) -> str | None:
    """Where today's layout keeps a committed msexports delivery's files (None: not a delivery this module moves)."""
    if (rec.state != "committed" or not rec.manifest.startswith(f"{MSEXPORTS}/") or not rec.destination
            or not rec.exportType or not rec.month or rec.scope is None):
        return None
    target = destination(rec.exportType, rec.exportName)
    if target is None or target[1] is None or not target[1].startswith(EXPORT_FOLDER):
        return None
    year, month = map(int, rec.month.split("-"))
    return dataset_folder(target[0], year, month, rec.scope, target[1])
