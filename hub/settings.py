"""Hub settings (`config/settings.json`), in the reference's format. Read and validated, never rewritten."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.errors import UsageError

if TYPE_CHECKING:
    from hub.store import Store


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


#: Longest retention a setting may ask for: 100 years (a larger number is a typo, not a policy).
MAX_DAYS = 36_500
MAX_MONTHS = 1_200


class _Deleting(BaseModel):
    """What says what to delete: a misspelt key (``day``, ``msexport``) is an error, never a silent default that deletes."""

    model_config = ConfigDict(extra="forbid")


class DaysRetention(_Deleting):
    days: StrictInt = Field(0, ge=0, le=MAX_DAYS)  # strict: true/false or "7" are refused, not read as numbers


class ExportsRetention(_Deleting):
    #: None: other clouds' delivered files are kept (a sync tool would bring deleted files back)
    days: StrictInt | None = Field(None, ge=0, le=MAX_DAYS)


class MonthsRetention(_Deleting):
    months: StrictInt = Field(13, ge=0, le=MAX_MONTHS)

    def oldest(self, now: datetime | None = None) -> str | None:
        """The oldest month kept (``YYYY-MM``): the current month (UTC) and the N - 1 before it; None when 0 (all)."""
        if self.months <= 0:
            return None
        now = now or datetime.now(timezone.utc)
        index = now.year * 12 + now.month - 1 - (self.months - 1)
        return f"{index // 12:04d}-{index % 12 + 1:02d}"

    def keeps(self, month: str, now: datetime | None = None) -> bool:
        """Whether lake month ``month`` (``YYYY-MM``) is inside the window retention keeps."""
        oldest = self.oldest(now)
        return oldest is None or month >= oldest


class Retention(_Deleting):
    """``raw`` and ``final`` are the reference's keys, accepted and not used (``raw/`` keeps ``ingestion``'s months)."""


    msexports: DaysRetention = DaysRetention(days=0)
    exports: ExportsRetention = ExportsRetention()
    ingestion: MonthsRetention = MonthsRetention(months=13)
    raw: DaysRetention = DaysRetention(days=0)
    final: MonthsRetention = MonthsRetention(months=13)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key of a new section is an error, not silently ignored


class PullProvider(_Strict):
    """How ``hub watch`` pulls one provider's bill API (``hub pull`` uses the endpoint, paging and retry settings too)."""

    #: ``hub watch`` pulls only enabled providers (``hub pull`` works either way)
    enabled: StrictBool = False
    #: hour of the day, in the provider's time zone (UTC+8), from which yesterday's bill is pulled
    pull_hour: StrictInt = Field(2, ge=0, le=23)
    #: days back that a watcher started after downtime catches up on (days never pulled)
    catchup_days: StrictInt = Field(35, ge=0, le=400)
    #: each daily pull also re-pulls this many days before yesterday (late usage), until their month is closed
    refresh_days: StrictInt = Field(2, ge=0, le=31)
    #: API host (``host[:port]`` or ``http(s)://host[:port]``, no path or user); None: the provider's public endpoint
    endpoint: str | None = None
    #: Huawei: ``international`` (``bssintl``) or ``china`` (``bss``); ignored by the others
    site: Literal["international", "china"] = "international"
    #: records per API page (each provider's maximum when None)
    page_size: StrictInt | None = Field(None, ge=1, le=1000)
    #: attempts of one API call on throttling, 5xx or network errors, with exponential backoff
    retries: StrictInt = Field(6, ge=0, le=20)
    #: first backoff in seconds (doubled each attempt, with jitter, at most 60 s)
    backoff_seconds: StrictFloat = Field(1.0, ge=0, le=60)
    #: wall-clock seconds one pull may take before it stops (what was not pulled is pulled next time)
    time_budget_seconds: StrictFloat = Field(1800.0, gt=0, le=86400)
    #: seconds one HTTP request may take
    request_timeout_seconds: StrictFloat = Field(60.0, gt=0, le=600)
    #: billing currency (ISO 4217) of pulled lines that carry none, written into each pulled day's manifest (Tencent's
    #: API gives no currency for a whole response: a China-site account names CNY); None: the provider's usual one
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return iso_currency(value) if value else value  # "cny" means CNY, as a budget's "usd"

    @field_validator("endpoint")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None:
            port = _ENDPOINT.fullmatch(value)
            if not port or (port.group(1) and not 0 < int(port.group(1)) < 65536):
                raise ValueError("host[:port] or http(s)://host[:port], without a path or a user")
        return value


class Pull(_Strict):
    """``pull``: scheduled bill-API pulls, one entry per provider."""

    alibaba: PullProvider = PullProvider()
    huawei: PullProvider = PullProvider()
    tencent: PullProvider = PullProvider()


def iso_currency(value: str) -> str:
    """``value`` upper-cased when it is an ISO 4217 code (``RMB`` is not: the yuan is ``CNY``)."""
    from transforms.focus_validate import currencies

    if value.upper() not in currencies():
        raise ValueError("not an ISO 4217 currency code (USD, EUR, CNY for the yuan)")
    return value.upper()


def http_url(url: str) -> str:
    """``url`` when it is an http(s) URL naming a host, with a numeric port if any and no user info; the error never
    repeats the URL (it may hold a secret)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the url must start with http:// or https:// and name a host")
    if "@" in parts.netloc:
        raise ValueError("the url must not hold user info (user:password@): give a bearer token in token_env")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError("the url's port must be a number from 0 to 65535") from None
    return url


class EventSink(_Strict):
    """One place CloudEvents go."""

    type: Literal["http", "file", "stdout"]
    #: http: the target URL
    url: str | None = None
    #: http: CloudEvents HTTP binary mode (data as the body, attributes as ``ce-`` headers) or structured mode
    mode: Literal["binary", "structured"] = "binary"
    #: http: retries of a failed attempt (0: one attempt) before the event goes to the dead-letter folder (re-sent later)
    retries: StrictInt = Field(3, ge=0, le=20)
    #: http: seconds one request may take
    timeout_seconds: StrictFloat = Field(10.0, gt=0, le=300)
    #: http: name of an environment variable holding a bearer token for the target (never written anywhere)
    token_env: str | None = None
    #: file: JSON-lines file (a local path, relative to the current directory)
    path: str | None = None

    @model_validator(mode="after")
    def _target(self) -> EventSink:
        if self.type == "http" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("an http sink needs a url starting with http:// or https://")
        if self.type == "http":
            http_url(self.url or "")
        if self.type == "file" and not self.path:
            raise ValueError("a file sink needs a path")
        return self

    @property
    def target(self) -> tuple[str, str, str]:
        """What the sink sends to (its dead-letter queue is named after it): type, url or path, mode."""
        return self.type, self.url or self.path or "", self.mode

    @property
    def destination(self) -> tuple[str, ...]:
        """Where the events end up, whatever the spelling: a URL and its mode, a file's absolute path, stdout."""
        if self.type == "file":
            return self.type, os.path.realpath(os.path.expanduser(self.path or ""))  # links and "//" resolved
        return (self.type, self.url or "", self.mode) if self.type == "http" else (self.type,)


#: An API endpoint: a host name or address, an optional port, nothing else.
_ENDPOINT = re.compile(r"(?:https?://)?[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::([0-9]{1,5}))?/?")
#: A CloudEvents source: a non-empty URI-reference (no white space or control characters).
_SOURCE = re.compile(r"[^\s\x00-\x1f\x7f]{1,1024}")


class Events(_Strict):
    """``events``: where CloudEvents about deliveries and pulled bills go (none by default)."""

    sinks: list[EventSink] = []
    #: the CloudEvents ``source`` of the hub's own events (a non-empty URI-reference: no spaces or control characters)
    source: str = "finops-hub"

    @field_validator("source")
    @classmethod
    def _uri_reference(cls, value: str) -> str:
        if not _SOURCE.fullmatch(value):
            raise ValueError("a non-empty URI-reference (CloudEvents requires it): no spaces, at most 1,024 characters")
        return value

    @model_validator(mode="after")
    def _one_sink_per_target(self) -> Events:
        # two sinks of one target would share its dead-letter queue: one's queued events re-sent with the other's token
        first: dict[tuple[str, ...], int] = {}
        for i, sink in enumerate(self.sinks, 1):
            if (j := first.setdefault(sink.destination, i)) != i:
                raise ValueError(f"sinks {j} and {i} send to the same {sink.type} target: one sink per target (another "
                                 "query string makes another url)")
        return self
    #: pulled bills: also one ``<provider>.account_billing.daily`` event per product per day
    billing_records: StrictBool = True


class Scope(_Model):
    scope: str


class Settings(_Model):
    """The settings file. Unknown fields are kept (the reference adds fields over time)."""

    schema_: str = Field("https://aka.ms/finops/hubs/settings-schema", alias="$schema")
    type: str = "HubInstance"
    version: str = "0.1.0"
    scopes: list[Scope] = []
    retention: Retention = Retention()
    pull: Pull = Pull()
    events: Events = Events()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2) + "\n"


M = TypeVar("M", bound=BaseModel)


class DuplicateKey(ValueError):
    """A JSON object giving one key twice (JSON parsers keep the last silently: a split's target counted once)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` of :func:`json.loads` refusing a key given twice in one object (:class:`DuplicateKey`)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def refuse_duplicate_keys(text: str, *, file: str, what: str) -> None:
    """A usage error naming the file when one of its JSON objects gives a key twice (other JSON errors are left to the
    caller's parser, which names them)."""
    try:
        json.loads(text, object_pairs_hook=unique_pairs)
    except DuplicateKey as exc:
        raise UsageError(f"{file}: invalid {what}: {exc.key!r} is given twice in one object") from None
    except (ValueError, RecursionError):
        pass


def validated(model: type[M], text: str, *, file: str, what: str) -> M:
    """A config file's JSON text as ``model``; a bad file is a usage error naming the file and the field (a key given
    twice in one object too)."""
    refuse_duplicate_keys(text, file=file, what=what)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise UsageError(f"{file}: invalid {what} at {where}: {first['msg']}") from None


def parse_settings(text: str, *, file: str = "config/settings.json") -> Settings:
    """Validate settings text; a bad file is a usage error naming the file and the field."""
    return validated(Settings, text or "{}", file=file, what="settings")


def load_settings(store: Store) -> Settings:
    """The store's ``config/settings.json``, or the defaults when there is none."""
    from hub.store import SETTINGS

    return parse_settings(store.read_text(SETTINGS), file=store.full(SETTINGS)) if store.exists(SETTINGS) else Settings()
