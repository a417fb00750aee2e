"""Hub settings (`config/settings.json`), in the reference's format. Read and validated, never rewritten."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from hub.errors import UsageError

if TYPE_CHECKING:
    from hub.store import Store


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


#: Longest retention a setting may ask for: 100 years (a larger number is a typo, not a policy).
MAX_DAYS = 36_500
MAX_MONTHS = 1_200


class DaysRetention(_Model):
    days: StrictInt = Field(0, ge=0, le=MAX_DAYS)  # strict: true/false or "7" are refused, not read as numbers


class ExportsRetention(_Model):
    #: None: other clouds' delivered files are kept (a sync tool would bring deleted files back)
    days: StrictInt | None = Field(None, ge=0, le=MAX_DAYS)


class MonthsRetention(_Model):
    months: StrictInt = Field(13, ge=0, le=MAX_MONTHS)


class Retention(_Model):
    msexports: DaysRetention = DaysRetention(days=0)
    exports: ExportsRetention = ExportsRetention()
    ingestion: MonthsRetention = MonthsRetention(months=13)
    raw: DaysRetention = DaysRetention(days=0)
    final: MonthsRetention = MonthsRetention(months=13)


class Scope(_Model):
    scope: str


class Settings(_Model):
    """The settings file. Unknown fields are kept (the reference adds fields over time)."""

    schema_: str = Field("https://aka.ms/finops/hubs/settings-schema", alias="$schema")
    type: str = "HubInstance"
    version: str = "0.1.0"
    scopes: list[Scope] = []
    retention: Retention = Retention()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2) + "\n"


def parse_settings(text: str, *, file: str = "config/settings.json") -> Settings:
    """Validate settings text; a bad file is a usage error naming the file and the field."""
    try:
        return Settings.model_validate_json(text or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise UsageError(f"{file}: invalid settings at {where}: {first['msg']}") from None


def load_settings(store: Store) -> Settings:
    """The store's ``config/settings.json``, or the defaults when there is none."""
    from hub.store import SETTINGS

    return parse_settings(store.read_text(SETTINGS), file=store.full(SETTINGS)) if store.exists(SETTINGS) else Settings()
