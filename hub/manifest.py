"""The Cost Management export manifest (`manifest.json`), validated with pydantic.

Field names are matched case-insensitively; unknown fields are ignored, so hand-made minimal manifests
(`{blobCount, dataRowCount, exportConfig{...}, runInfo{runId, startDate}, blobs[{blobName}]}`) work.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from hub.errors import ManifestError


def _canonical_keys(model: type[BaseModel], data: Any) -> Any:
    """Rename keys of ``data`` to the model's field names, ignoring case."""
    if not isinstance(data, dict):
        return data
    names = {name.lower(): name for name in model.model_fields}
    return {names.get(str(k).lower(), k): v for k, v in data.items()}


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _canonical_keys(cls, data)


class Blob(_Part):
    blobName: str
    byteCount: int | None = None
    dataRowCount: int | None = None


class ExportConfig(_Part):
    type: str
    dataVersion: str | None = None
    resourceId: str
    exportName: str | None = None
    apiVersion: str | None = None


#: The US spelling of a date Cost Management writes, with the time when it gives one (it orders deliveries): an
#: optional time (seconds, up to seven fraction digits, AM/PM) and zone (Z, UTC, an offset).
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?\s*([AaPp][Mm])?"
                      r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?)?")


class RunInfo(_Part):
    runId: str
    startDate: datetime
    endDate: datetime | None = None
    submittedTime: datetime | None = None

    @field_validator("startDate", "endDate", "submittedTime", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> Any:
        if isinstance(v, str) and (found := _US_DATE.fullmatch(v.strip())):  # MM/DD/YYYY, maybe with a time
            month, day, year, hour, minute, second, fraction, half, zone = found.groups()
            hour = int(hour or 0)
            if half:  # 12 AM is midnight, 12 PM noon
                hour = hour % 12 + (12 if half.upper() == "PM" else 0)
            zone = "" if zone is None else "+00:00" if zone.upper() in ("Z", "UTC") else zone
            return (f"{year}-{int(month):02d}-{int(day):02d}T{hour:02d}:{minute or '00'}:{second or '00'}"
                    f"{'.' + fraction[:6] if fraction else ''}{zone}")
        if isinstance(v, str) and len(v) >= 10 and v[2] == "/" and v[5] == "/":
            raise ValueError(f"{v!r}: not a date of the form MM/DD/YYYY [hh:mm[:ss[.fff]] [AM|PM]] [Z|+hh:mm]")
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day)
        if isinstance(v, (int, float)) or isinstance(v, str) and re.fullmatch(r"\s*[+-]?[0-9]+(\.[0-9]*)?\s*", v):
            raise ValueError(f"{v!r}: a date is text such as 2024-05-01T00:00:00Z, not a number (read as seconds since 1970)")
        return v

    @field_validator("startDate", "endDate", "submittedTime")
    @classmethod
    def _in_range(cls, v: datetime | None) -> datetime | None:
        """A year from 1900 to 9998: beyond, moving a time to UTC or to the month's end overflows."""
        if v is not None and not 1900 <= v.year <= 9998:
            raise ValueError(f"{v.isoformat()}: a year from 1900 to 9998")
        return v

    @field_validator("runId")
    @classmethod
    def _run_id(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c in v for c in "/\\:\x00") or v in (".", ".."):
            raise ValueError("runId must be a plain name (no '/', '\\', ':')")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> RunInfo:
        """An export's period ends after it starts (compared as written, as the month folder is)."""
        if self.endDate is not None and self.endDate.replace(tzinfo=None) < self.startDate.replace(tzinfo=None):
            raise ValueError(f"endDate {self.endDate:%Y-%m-%d} is before startDate {self.startDate:%Y-%m-%d}")
        return self


class DeliveryConfig(_Part):
    compressionMode: str | None = None
    fileFormat: str | None = None


class Manifest(_Part):
    manifestVersion: str | None = None
    byteCount: int | None = None
    blobCount: int | None = None
    dataRowCount: int | None = None
    exportConfig: ExportConfig
    runInfo: RunInfo
    deliveryConfig: DeliveryConfig | None = None
    blobs: list[Blob] = []

    @property
    def year_month(self) -> tuple[int, int]:
        return self.runInfo.startDate.year, self.runInfo.startDate.month


def _lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def parse_manifest(raw: bytes, *, file: str) -> Manifest:
    """Parse manifest bytes; broken JSON -> ``ManifestReadFailed``, missing/bad fields -> ``ManifestInvalid``."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"not valid JSON ({exc})", file=file, code="ManifestReadFailed") from None
    if not isinstance(data, dict):
        raise ManifestError("manifest must be a JSON object", file=file, code="ManifestReadFailed")
    if _lone_surrogate(data):  # "\udce9": how Python writes a name that is not UTF-8; no file is named so in UTF-8
        raise ManifestError("a text holds a lone surrogate escape (\\udcXX): not text a file name or field can hold",
                            file=file)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{where}: {first['msg']}", file=file) from None
    if manifest.blobCount is not None and manifest.blobCount != len(manifest.blobs):
        raise ManifestError(f"blobCount is {manifest.blobCount} but {len(manifest.blobs)} blobs are listed", file=file)
    return manifest
