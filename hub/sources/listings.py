"""The providers' own manifests in a delivery (AWS legacy CUR ``<report>-Manifest.json`` with ``reportKeys``, Data
Exports ``<export>-Manifest.json`` with ``dataFiles``): which of the delivery's files they let it read.

A manifest speaks for the files under its scope: its own folder, or for a Data Exports manifest under
``metadata/BILLING_PERIOD=…/`` the matching ``data/BILLING_PERIOD=…/`` folder. The outermost scope governs: a legacy
CUR's billing-period manifest names the month's current assembly, and the copies AWS writes inside each assembly
speak only when it is absent. A file of a governing scope that its manifest does not list (an older assembly AWS keeps
beside the restated one, a file a restatement dropped that ``aws s3 sync`` left behind) is left out; a listed file that
belongs inside the delivery and is not there is ``IngestionFilesNotFound``.
"""

from __future__ import annotations

import json
import posixpath
import re

from hub.errors import HubError
from hub.store import utf8

SUFFIX = "-manifest.json"


def is_listing(path: str) -> bool:
    """An AWS manifest (``…-Manifest.json``), by its name."""
    return posixpath.basename(path).lower().endswith(SUFFIX)


def scope(listing: str) -> str:
    """The folder whose files a manifest speaks for."""
    parts = posixpath.dirname(listing).split("/")
    if "metadata" in parts:  # Data Exports: metadata/BILLING_PERIOD=…/ lists data/BILLING_PERIOD=…/
        at = len(parts) - 1 - parts[::-1].index("metadata")
        parts[at] = "data"
    return "/".join(parts)


def keys(listing: str, raw: bytes | None) -> list[str]:
    """The object keys a manifest lists (legacy CUR ``reportKeys``, Data Exports ``dataFiles`` without ``s3://bucket/``)."""
    try:
        data = json.loads(raw if raw is not None else b"")
    except ValueError:
        raise HubError("is not valid JSON", file=listing, code="ManifestInvalid") from None
    found = (data.get("reportKeys") or data.get("dataFiles") or []) if isinstance(data, dict) else []
    if not isinstance(found, list) or not all(isinstance(k, str) and k.strip("/") for k in found):
        raise HubError("reportKeys / dataFiles is not a list of file names", file=listing, code="ManifestInvalid")
    if not all(utf8(k) for k in found):  # "\udce9": how Python writes a name that is not UTF-8; no key is named so
        raise HubError("reportKeys / dataFiles holds a lone surrogate escape (\\udcXX): no file name", file=listing,
                       code="ManifestInvalid")
    return [k.split("://", 1)[1].split("/", 1)[-1] if "://" in k else k.lstrip("/") for k in found]


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")


def _place(key: str, folder: str, files: list[str]) -> tuple[str | None, bool]:
    """Where a listed key lies under ``folder`` (the scope): by the scope's own folder name in the key (the rest of the
    key below it), else the one file of the scope whose path below it ends the key; and whether that place is known."""
    name = folder.rsplit("/", 1)[-1]
    parts = key.split("/")
    if name in parts[:-1]:
        at = len(parts) - 1 - parts[-2::-1].index(name) - 1
        return f"{folder}/{'/'.join(parts[at + 1:])}", True
    hits = [f for f in files if key == f[len(folder) + 1:] or key.endswith("/" + f[len(folder) + 1:])]
    return (hits[0] if len(hits) == 1 else None), False


#: A billing period's folder: a legacy CUR's ``<yyyymmdd-yyyymmdd>``, a Data Exports partition ``BILLING_PERIOD=…``.
PERIOD = re.compile(r"\d{8}-\d{8}|BILLING_PERIOD=[^/]+")


def report_of(path: str) -> str | None:
    """The AWS report a delivered file belongs to, by its path: the folder holding its billing-period folder (a legacy
    CUR's ``<report>/<yyyymmdd-yyyymmdd>/``; a Data Exports export's folder above ``data/BILLING_PERIOD=…/``), or None
    outside a billing-period folder."""
    parts = path.split("/")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if PERIOD.fullmatch(parts[i]):
            data = parts[i].startswith("BILLING_PERIOD=") and i > 0 and parts[i - 1] == "data"
            return "/".join(parts[: i - 1 if data else i])
    return None


def _one_assembly(scopes: dict[str, str]) -> None:
    """Two report versions of one billing period, each in its own folder with its own manifest (legacy CUR assemblies
    ``<yyyymmdd-yyyymmdd>/<assembly>/``, Data Exports executions of the "create new report" option under
    ``BILLING_PERIOD=…/``), and no manifest above them naming the current one: both would be read, the month counted
    twice (``SourceConflict``)."""
    governing = [m for m, f in scopes.items() if not any(o != f and f.startswith(o + "/") for o in scopes.values())]
    by_period: dict[str, list[str]] = {}
    for path in governing:
        parent = posixpath.dirname(scopes[path])
        if PERIOD.fullmatch(posixpath.basename(parent)):
            by_period.setdefault(parent, []).append(path)
    for parent, found in by_period.items():
        if len({scopes[p] for p in found}) > 1:
            raise HubError(f"holds {len(found)} versions of one billing period ({', '.join(sorted(found)[:2])}) and no "
                           "billing-period manifest naming the current one: sync that folder's <report>-Manifest.json too "
                           "(Data Exports with new reports: sync only the current execution's folders)",
                           file=parent, code="SourceConflict")


def one_version(files: tuple[tuple[str, int], ...], scopes: tuple[str, ...] = (), versions: tuple[str, ...] = ()) -> None:
    """A billing-period folder (``<yyyymmdd-yyyymmdd>/``, ``BILLING_PERIOD=…/``) no AWS manifest speaks for (``scopes``:
    the folders the delivery's governing manifests speak for; synced with ``--exclude '*.json'``, or the data files
    copied alone) whose files lie in two or more of its sub-folders (legacy CUR assemblies, Data Exports executions),
    or in it and a sub-folder, or beside another delivery of it (``versions``: their folders, each with its own
    ``manifest.json``), holds two versions of one month, nothing telling the current one: both would be read, the
    month counted twice (``SourceConflict``)."""
    found: dict[str, set[str]] = {}
    for path, _ in files:
        parts = path.split("/")
        for i in range(len(parts) - 2, -1, -1):  # the nearest billing-period folder above the file
            if PERIOD.fullmatch(parts[i]):
                found.setdefault("/".join(parts[:i + 1]), set()).add(parts[i + 1] if i + 2 < len(parts) else "")
                break
    for folder in versions:
        if (parent := posixpath.dirname(folder)) in found:
            found[parent].add(posixpath.basename(folder))
    for parent, seen in sorted(found.items()):
        governed = any(s == parent or _under(s, parent) or _under(parent, s) for s in scopes)
        if len(seen) > 1 and not governed:
            shown = ", ".join(sorted(f or "(the folder itself)" for f in seen)[:2])
            raise HubError(f"holds {len(seen)} versions of one billing period ({shown}) and no AWS manifest naming the "
                           "current one: sync the report's -Manifest.json files too (or only the current version's folder)",
                           file=parent, code="SourceConflict")


def select(folder: str, files: tuple[tuple[str, int], ...], listings: tuple[tuple[str, bytes | None], ...],
           own: tuple[str, ...]) -> tuple[tuple[tuple[str, int], ...], list[str]]:
    """The files of a delivery (its manifest's ``folder``) to read, and those its governing manifests leave out.
    ``listings``: every AWS manifest of the delivery and of the folders above it, with its content; ``own``: those
    inside the delivery (only their listed files must all be there)."""
    if not listings:
        return files, []
    scopes = {path: scope(path) for path, _ in listings}
    paths = [p for p, _ in files]
    _one_assembly(scopes)
    left: set[str] = set()
    for path, raw in listings:
        mine = scopes[path]
        if any(other != mine and _under(mine, other) for other in scopes.values()):
            continue  # a copy inside a wider manifest's scope (a CUR assembly's): the wider one governs
        inside = [p for p in paths if _under(p, mine)]
        wanted, missing = set(), []
        for key in keys(path, raw):
            place, known = _place(key, mine, inside)
            if place in inside:
                wanted.add(place)
            elif (known and place is not None and _under(place, folder)) or (not known and path in own):
                missing.append(place[len(mine) + 1:] if known and place else key.rsplit("/", 1)[-1])
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise HubError(f"lists {len(missing)} file(s) not in the delivery: {shown}", file=path, code="IngestionFilesNotFound")
        left |= set(inside) - wanted
    return tuple(f for f in files if f[0] not in left), sorted(left)
