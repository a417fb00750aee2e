"""Dated bill files (Tencent's bill storage, Alibaba's OSS bill subscription): a bill a day, then the month's whole one.

Which of a delivery's files are read (:func:`latest_snapshots`: the month's whole file, else the latest day's or every
day's; one bill type), which rows a kept file leaves out (a day's rows of a month whose whole file is read), the
conflicts between snapshots of different months (:func:`one_snapshot`), and across deliveries whether a run is older
than the snapshot its folder holds (:func:`newer_snapshot`). The names and rules are data: ``snapshots`` in
``schemas/<provider>/focus.json``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from hub.errors import HubError
from hub.runs import RunRecord

if TYPE_CHECKING:
    from hub.sources.native import Written


class Snapshots(BaseModel):
    """How a provider names a month's daily bill files and its final one, and what a daily file holds."""

    model_config = ConfigDict(extra="forbid")
    #: a regex with a ``stamp`` group (``yyyymm``: the month's final file; ``yyyymmdd``: a day's) on a file's name
    pattern: str
    #: ``cumulative``: a day's file holds the month so far (Tencent); ``increments``: only that day's bills (Alibaba)
    days: Literal["cumulative", "increments"]
    #: the provider's bill types, as ``_``-separated parts of the file names, most detailed first: files of one folder
    #: and month whose names differ only by their type bill the same costs, and only the first type there is read
    bills: list[str] = []


def snapshot_of(pattern: str, path: str) -> tuple[tuple[str, str, str], str] | None:
    """The bill a dated file belongs to (its folder, its name without the ``stamp`` and extension, the stamp's month)
    and its day (``""`` for the month's final ``yyyymm`` file), or None for another file."""
    folder, name = posixpath.split(path)
    found = re.search(pattern, name)
    if found is None:
        return None
    stamp, rest = found.group("stamp"), name[found.end("stamp"):]
    rest = re.sub(r"\.(zip|csv|csv\.gz|parquet)$", "", rest, flags=re.IGNORECASE)
    return (folder, name[:found.start("stamp")] + "*" + rest, stamp[:6]), stamp[6:]


def file_month(pattern: str | None, name: str) -> str | None:
    """``YYYY-MM`` of a dated file's stamp (:func:`snapshot_of`; each ``!``-separated part of ``name`` tried from the
    last, an archive member before its archive), or None."""
    for part in reversed(name.split("!")) if pattern else ():
        if (found := snapshot_of(pattern, part)) is not None:
            month = found[0][2]
            return f"{month[:4]}-{month[4:]}"
    return None


@dataclass(frozen=True)
class Selection:
    """The files of a delivery to read, those left out (the run record's ``skippedFiles``), and per kept file the
    months (``YYYY-MM``) whose rows it must leave out."""

    files: tuple[tuple[str, int], ...]
    skipped: list[str]
    drop: dict[str, set[str]]


def _anywhere(bill: tuple[str, str, str]) -> tuple[str, str, str]:
    """A bill's key whatever sub-folder of the delivery its file is in (days in date folders, ``daily/`` beside
    ``monthly/``: one bill, counted once)."""
    return ("", *bill[1:])


def latest_snapshots(snapshots: Snapshots | None, files: tuple[tuple[str, int], ...]) -> Selection:
    """The files of a delivery to read, those left out, and the months whose rows a kept file must leave out. Files
    whose names differ only by their ``stamp`` and share its month are one bill: when the month's final ``yyyymm``
    file is there, only it is read; else, for ``cumulative`` days (each holding the month so far) the latest day's,
    for ``increments`` every day's. Bills that differ only by their type (``bills``) are the same costs: the first
    type's is read. With ``increments`` a day's file may hold rows of the month before (delayed ones): those are left
    out where that month's final file is read, which holds them. Other files are all read."""
    if snapshots is None:
        return Selection(files, [], {})
    bills: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for path, _ in files:
        if (found := snapshot_of(snapshots.pattern, path)) is not None:
            bills.setdefault(_anywhere(found[0]), []).append((found[1], path))
    keep: dict[str, tuple[str, str, str]] = {}
    for bill, dated in bills.items():
        final = [path for day, path in dated if not day]
        if final:
            keep[final[0]] = bill
        elif snapshots.days == "cumulative":
            keep[max(dated)[1]] = bill
        else:
            keep.update((path, bill) for _, path in dated)
    if snapshots.bills:  # one bill type per folder, account and month
        ranked = {path: _bill_type(snapshots.bills, bill) for path, bill in keep.items()}
        best: dict[tuple, int] = {}
        for key, rank in ranked.values():
            best[key] = min(rank, best.get(key, rank))
        keep = {path: bill for path, bill in keep.items() if ranked[path][1] == best[ranked[path][0]]}
    drop: dict[str, set[str]] = {}
    if snapshots.days == "increments":
        finals = {bill for bill, dated in bills.items() if any(not day for day, _ in dated)}
        for path, (folder, series, month) in keep.items():
            months = {f"{m[:4]}-{m[4:]}" for f, s, m in finals if (f, s) == (folder, series) and m != month}
            if months:
                drop[path] = months
    skipped = sorted(path for dated in bills.values() for _, path in dated if path not in keep)
    return Selection(tuple(f for f in files if f[0] not in skipped), skipped, drop)


def _bill_type(types: list[str], bill: tuple[str, str, str]) -> tuple[tuple, int]:
    """A bill's key without its type (folder, name with the type left out, month) and the type's rank (the last for
    a name without a known type)."""
    folder, series, month = bill
    parts = series.split("_")
    at = next((i for i, part in enumerate(parts) if part in types), None)
    if at is None:
        return (folder, series, month), len(types)
    return (folder, "_".join(parts[:at] + ["#"] + parts[at + 1:]), month), types.index(parts[at])


def one_snapshot(pattern: str, written: list[Written]) -> None:
    """Dated files of one bill kept for different months must not hold rows of the same month and account (a file of
    the 1st holding the month before, say): ``SourceConflict`` naming the later file, never a month counted twice."""
    seen: dict[tuple, tuple[str, str]] = {}
    for w in written:
        archive = w.file.split("!")[0]
        if (found := snapshot_of(pattern, archive)) is None:
            continue
        (_, series, month), _ = found
        for group in w.groups:
            other, other_month = seen.setdefault((series, group), (archive, month))
            if other_month != month:
                raise HubError(f"holds rows of {group[0]} that {other}, a snapshot of the same bill, holds too: deliver one "
                               "month's files per folder", file=w.file, code="SourceConflict")


def _rank(pattern: str, rec: RunRecord) -> tuple[str, str] | None:
    """How complete the dated bill files of a run are: the bill's name (without folder and stamp) and its latest stamp
    (a month's whole file above its days); None for a run with another file."""
    ranks = []
    for part in rec.parts:
        found = snapshot_of(pattern, part.blob.split("!")[0])
        if found is None:
            return None
        (_, series, month), day = found
        ranks.append((series, month + (day or "99")))
    return max(ranks) if ranks and len({series for series, _ in ranks}) == 1 else None


def newer_snapshot(pattern: str, rec: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The committed run of another delivery that put a later snapshot of the same bill in ``rec``'s folder (Tencent's
    May 20th, or May's whole file, against a May 10th synced into another folder afterwards), if any."""
    mine = _rank(pattern, rec)
    if mine is None:
        return None
    for old in records:
        if old.state == "committed" and old.destination == rec.destination and old.manifest != rec.manifest \
                and not delayed(pattern, old):  # rows a later month's day file held of this month: no snapshot of it
            theirs = _rank(pattern, old)
            if theirs is not None and theirs[0] == mine[0] and theirs[1] > mine[1]:
                return old
    return None


def days_only(pattern: str, rec: RunRecord) -> bool:
    """``rec``'s files are all day files of a dated bill (no month's whole file among them)."""
    found = [snapshot_of(pattern, p.blob.split("!")[0]) for p in rec.parts]
    return bool(found) and all(f is not None and f[1] for f in found)


def same_day(snapshots: Snapshots, rec: RunRecord, records: list[RunRecord], exists: Callable[[str], bool]
             ) -> tuple[str, str] | None:
    """A day file of ``rec`` whose bill and day another delivery's committed run already put in ``rec``'s folder (the
    same day synced into two folders, under the same bill type or another: ``bills``, the same costs), as (``rec``'s
    file, the other delivery's manifest), if any."""
    def key(path: str) -> tuple[str, str] | None:
        if (found := snapshot_of(snapshots.pattern, path.split("!")[0])) is None:
            return None
        (_, series, month), _ = _bill_type(snapshots.bills, ("", found[0][1], found[0][2]))
        return series, month + found[1]

    mine = {}
    for part in rec.parts:
        if (day := key(part.blob)) is not None:
            mine.setdefault(day, part.blob)
    for old in records:
        if old.state == "committed" and old.destination == rec.destination and old.manifest != rec.manifest:
            for part in old.parts:
                if (day := key(part.blob)) in mine and exists(part.output):
                    return mine[day], old.manifest
    return None


def delayed(pattern: str, rec: RunRecord) -> bool:
    """``rec``'s rows come from day files of other months only (rows delayed into a later month's file)."""
    months = {file_month(pattern, p.blob) for p in rec.parts}
    return bool(months) and None not in months and f"{rec.month}" not in months


def whole_month(pattern: str, rec: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The committed run of another delivery that put ``rec``'s month's whole file (``yyyymm``) in its folder."""
    for old in records:
        if old.state == "committed" and old.destination == rec.destination and old.manifest != rec.manifest:
            for part in old.parts:
                found = snapshot_of(pattern, part.blob.split("!")[0])
                if found is not None and found[1] == "" and f"{found[0][2][:4]}-{found[0][2][4:]}" == rec.month:
                    return old
    return None
