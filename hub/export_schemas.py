"""Input schemas of Cost Management exports: mapping files under ``schemas/msexports/``.

One file per ``<type>_<dataVersion>[_ea|_mca].json`` lists the export's columns in order with their type
(``string``, ``decimal``, ``timestamp``, ``boolean``) and, when the lake uses another name, ``as``; ``aliases``:
other header spellings of the same field (older layouts, MCA camelCase), matched like the name without regard to
case or surrounding whitespace; ``required``: the conversion needs it (a file without it is ``SchemaMismatch``);
``optional``: a field only some layouts have (not reported as missing); ``preferred``: spellings taken before
the name when a file has both. ``datasets.json`` ``sameAs`` lists other ``dataVersion`` values an export type
delivers in a layout one mapping file covers (headers are matched by name, so column order does not matter).
``datasets.json`` maps an export type to its lake dataset, how EA/MCA is told apart and which amounts a
run reconciles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal
from urllib.parse import quote

from hub.errors import SchemaError

ColumnType = Literal["string", "decimal", "timestamp", "boolean"]
TYPES = ("string", "decimal", "timestamp", "boolean")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    target: str
    aliases: tuple[str, ...] = ()
    required: bool = False
    optional: bool = False
    #: spellings taken before the name when a file has both (``SubscriptionGuid`` over an old numeric ``SubscriptionId``)
    preferred: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every header spelling of the column, in the order a file's headers are tried."""
        return (*self.preferred, self.name, *self.aliases)


def totals_spec(export_type: str) -> dict:
    """What runs of an export type reconcile (``totals`` in ``datasets.json``; empty when nothing)."""
    return datasets().get(export_type.strip().lower(), {}).get("totals") or {}


#: Prefix of the sub-folder of the scope folder that holds one export's rows, for export types whose exports of one
#: scope hold different rows (``perExport`` in ``datasets.json``: reservation recommendations per resource type).
EXPORT_FOLDER = "export~"


def export_folder(export_name: str | None) -> str | None:
    """The sub-folder of a ``perExport`` export (its name lower-cased, as Azure compares them, and percent-encoded but
    for letters, digits, ``-``, ``_`` and ``.``); None for a manifest without a name: the scope folder itself."""
    name = (export_name or "").strip().lower()
    return EXPORT_FOLDER + quote(name, safe="-_.") if name else None


def destination(export_type: str, export_name: str | None = None) -> tuple[str, str | None] | None:
    """The lake dataset and sub-folder of an export, known from the manifest alone (None when the type is unknown)."""
    meta = datasets().get(export_type.strip().lower())
    if meta is None:
        return None
    return meta["dataset"], export_folder(export_name) if meta.get("perExport") else meta.get("subfolder")


@dataclass(frozen=True)
class ExportSchema:
    export_type: str
    data_version: str
    agreement: str | None
    dataset: str
    columns: tuple[Column, ...]
    #: input currency column, output currency column, {output amount: input amount column}
    totals: dict = field(default_factory=dict)
    #: also keep the typed, not normalized export in ``raw/`` (datasets.json ``keepRaw``)
    keep_raw: bool = False

    @property
    def key(self) -> str:
        suffix = f"_{self.agreement.lower()}" if self.agreement else ""
        return f"{self.export_type.lower()}_{self.data_version}{suffix}"


def _dir():  # noqa: ANN202 - importlib Traversable
    return resources.files("schemas") / "msexports"


@cache
def datasets() -> dict[str, dict]:
    """``datasets.json``, keyed by lower-cased export type."""
    data = json.loads((_dir() / "datasets.json").read_text())
    return {k.lower(): v for k, v in data.items() if not k.startswith("_")}


def normalize_version(version: str | None) -> str:
    return (version or "").strip().replace(" ", "").lower()


@cache
def _load(key: str) -> ExportSchema | None:
    path = _dir() / f"{key}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        meta = datasets()[data["type"].lower()]
        cols = tuple(Column(c["name"], c["type"], c.get("as", c["name"]), tuple(c.get("aliases", ())), bool(c.get("required")),
                            bool(c.get("optional")), tuple(c.get("preferred", ()))) for c in data["columns"])
        if any(c.type not in TYPES for c in cols):
            raise ValueError(f"unknown column type in {sorted({c.type for c in cols} - set(TYPES))}")
        return ExportSchema(data["type"], data["dataVersion"], data.get("agreement"), meta["dataset"], cols,
                            meta.get("totals") or {}, bool(meta.get("keepRaw")))
    except (KeyError, ValueError, TypeError) as exc:
        raise SchemaError(f"broken mapping file: {exc}", file=f"schemas/msexports/{key}.json",
                          code="SchemaLoadFailed") from None


def schema_by_key(key: str) -> ExportSchema | None:
    """The schema of a run record's ``schemaKey`` (None when no mapping file has it)."""
    return _load(key)


def raw_datasets() -> list[str]:
    """Lake datasets whose typed exports are also kept in ``raw/``."""
    return sorted({m["dataset"] for m in datasets().values() if m.get("keepRaw")})


def supported() -> list[str]:
    """Every ``<type>_<version>[_agreement]`` with a mapping file."""
    return sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".json") and p.name != "datasets.json")


def find_schema(export_type: str, data_version: str | None, header: list[str], *, file: str) -> ExportSchema:
    """Pick the schema for a type + version, telling EA from MCA by a header column where needed."""
    meta = datasets().get(export_type.strip().lower())
    if meta is None:
        raise SchemaError(f"unknown export type {export_type!r}", file=file)
    version = normalize_version(data_version)
    version = {normalize_version(k): v for k, v in meta.get("sameAs", {}).items()}.get(version, version)
    base = f"{export_type.strip().lower()}_{version}"
    agreement_col = meta.get("agreementColumn")
    if agreement_col:
        agreement = "mca" if agreement_col.lower() in {h.lower() for h in header} else "ea"
        candidates = [f"{base}_{agreement}"]
    else:
        candidates = [base]
    for key in candidates:
        schema = _load(key)
        if schema is not None:
            return schema
    known = ", ".join(k for k in supported() if k.startswith(export_type.strip().lower())) or "none"
    raise SchemaError(f"no schema for {export_type} version {data_version!r} ({candidates[0]}); known: {known}",
                      file=file)
