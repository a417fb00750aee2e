"""Sources: one module per provider family, each knowing where its deliveries land, when one is complete, what it
covers and how its files map to FOCUS. They all hand their staged runs to one load engine (:mod:`hub.engine`).

``source -> transform -> load engine -> lake -> readers``:

- :mod:`hub.sources.msexports`: Azure Cost Management exports under ``msexports/`` (manifest written last);
- :mod:`hub.sources.native`: other clouds' native FOCUS exports under ``exports/<provider>/`` (an empty
  ``manifest.json``, or one naming the billing currency, written last), mapped by ``schemas/<provider>/focus.json``;
- :mod:`hub.sources.custom`: FOCUS-aligned Parquet a producer writes into ``ingestion/`` itself (empty manifest).

Transforms (:mod:`transforms`) are pure SQL builders; the lake layout is :mod:`hub.store`'s; readers are
:mod:`hub.catalog`, :mod:`hub.query`, :mod:`hub.cost_analysis`, :mod:`hub.server`, :mod:`hub.powerbi`, :mod:`hub.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from hub.runs import RunRecord
from hub.settings import Settings
from hub.store import EXPORTS, MSEXPORTS, Store


@dataclass(frozen=True)
class Hooks:
    """What a source does around the engine's swap: before it (still undone when it fails: the run stays
    ``swapping`` and is finished on restart), and after the commit."""

    before_swap: Callable[[Store, RunRecord], None]
    #: None: nothing after the commit (no work owed for it)
    after_commit: Callable[[Store, RunRecord, Settings, list[RunRecord]], None] | None = None


NONE = Hooks(lambda store, rec: None)


def hooks(rec: RunRecord) -> Hooks:
    """The hooks of the source a run record belongs to (told by where its delivery lies)."""
    if rec.manifest.startswith(f"{MSEXPORTS}/"):
        from hub.sources import msexports

        return msexports.HOOKS
    if rec.manifest.startswith(f"{EXPORTS}/"):
        from hub.sources import native

        return native.HOOKS
    if rec.manifest.startswith("allocation:"):  # the hub's own work on the lake: hub.allocation
        from hub import allocation

        return allocation.HOOKS
    return NONE


def refresh_checkpoint(checkpoint: dict[str, str] | None, area: str, present: set[str] | dict, final: dict[str, str]) -> None:
    """The watcher's listing checkpoint after a source's pass over ``area``: its entries of manifests no longer
    ``present`` dropped (deleted by retention, taken away, changed), then the signatures found ``final`` recorded. The
    other areas' entries are left alone."""
    if checkpoint is None:
        return
    for rel in [k for k in checkpoint if k.startswith(f"{area}/") and k not in present]:
        del checkpoint[rel]
    checkpoint.update(final)


#: When this process first saw a listing (delivery, signature) whose files carry a modification time in the future.
_FIRST_SEEN: dict[tuple[str, str], datetime] = {}


def unsettled(delivery: str, signature: str, moved: datetime | None, now: datetime, settle: float) -> bool:
    """True while a delivery's files may still be written: the last of them changed less than ``settle`` seconds ago
    (``moved``). A modification time in the future (a clock ahead, times kept by a copy) tells nothing: such a
    delivery must keep the same listing ``signature`` for ``settle`` seconds from when this process first saw it."""
    if settle <= 0 or moved is None:
        return False
    if moved <= now:
        return (now - moved).total_seconds() < settle
    if len(_FIRST_SEEN) > 10_000:  # a bound for a watcher running for months (the oldest entries go)
        for key in list(_FIRST_SEEN)[:5_000]:
            del _FIRST_SEEN[key]
    seen = _FIRST_SEEN.setdefault((delivery, signature), now)
    if (now - seen).total_seconds() < settle:
        return True
    del _FIRST_SEEN[(delivery, signature)]  # settled: taken now
    return False
