"""Allocation rules: ``config/allocation.json``, validated with pydantic. A bad file is a usage error naming the file
and the field. What each rule means is in the README ("Cost allocation")."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from hub.errors import UsageError
from hub.settings import refuse_duplicate_keys, validated
from hub.store import ALLOCATION_RULES, Store

RULES = ALLOCATION_RULES
METRICS = ("EffectiveCost", "BilledCost", "ListCost", "ContractedCost")
#: Columns a mapping or a pool may match on (besides the dimensions' resolved values).
MATCH_COLUMNS = ("ProviderName", "BillingAccountId", "SubAccountId", "SubAccountName", "x_ResourceGroupName", "ServiceName",
                 "ServiceCategory", "ChargeCategory", "ChargeClass", "ChargeFrequency", "RegionId", "ResourceId",
                 "ResourceType", "PublisherName", "CommitmentDiscountStatus", "PricingCategory", "SkuId", "BillingCurrency")
UNALLOCATED, NOT_ALLOWLISTED = "__unallocated__", "__not_allowlisted__"
SENTINELS = (UNALLOCATED, NOT_ALLOWLISTED)
#: Columns of the Allocation dataset a dimension's ``column`` may not take (the run's own, and the lake's it carries).
#: Columns of the resolution of one dimension, after its output column's name (``x_CostCenter`` + suffix).
SUFFIXES = ("", "Status", "Reason", "Source", "TagKey", "RawValue")
RESERVED = ("x_Amount", "x_Period", "x_PoolPeriodId", "x_SourceRowId", "x_AllocationRunId", "x_ConfigVersion",
            "x_CostMetric", "x_AllocationKind", "x_ResourceGroupName", "x_SourceChanges", "x_SourceValues",
            "x_Month")  # x_Month: the catalog's month folder column


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyNormalization(_Strict):
    casefold: bool = True
    strip: bool = True
    remove_chars: str = " -_.:"
    #: prefixes taken off keys before comparing (AWS user-defined tags are ``user:<key>`` in some exports)
    strip_prefixes: list[str] = ["user:"]


class Dimension(_Strict):
    """One allocation dimension (cost center, product): where its value comes from, how it is cleaned."""

    #: output column (default ``x_`` + the dimension's name in PascalCase): an ``x_`` name of letters and digits
    column: str | None = Field(None, pattern=r"^x_[A-Za-z][A-Za-z0-9]{0,62}$")
    #: tag keys, highest priority first; compared after ``key_normalization``
    tag_keys: list[Annotated[str, Field(pattern=r"\S")]] = Field(min_length=1)
    key_normalization: KeyNormalization = KeyNormalization()
    #: canonical value -> other spellings (matched case-insensitively)
    value_aliases: dict[str, list[str]] = {}
    #: two keys of the same priority with different values: unallocated (reason conflict), the first key, or an error
    conflict: Literal["unallocated", "first_alias", "error"] = "unallocated"
    #: where a missing value is looked for next, in order
    fallback: list[Literal["resource_group", "subscription", "mapping"]] = []
    #: what sends a row down the fallback chain
    fallback_on: list[Literal["missing", "not_allowlisted"]] = ["missing"]
    #: resource_wins: the row's own tag first; scope_wins: resource group, then subscription tags first
    inheritance_mode: Literal["resource_wins", "scope_wins"] = "resource_wins"
    #: name of an allowlist; None accepts any value
    allowlist: str | None = None
    #: value of rows where nothing matched (None: ``__unallocated__``)
    default: str | None = None


class _Dated(_Strict):
    """Effective-dated: ``valid_from`` inclusive, ``valid_to`` exclusive (either open)."""

    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> _Dated:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class AllowlistEntry(_Dated):
    value: str = Field(min_length=1)
    aliases: list[str] = []


class ScopeTags(_Dated):
    """Tags of a subscription / account / project, or of a resource group, effective-dated (rows carry only theirs)."""

    scope: Literal["subscription", "resource_group"]
    #: the SubAccountId
    subscription: str
    #: the resource group (x_ResourceGroupName), for scope resource_group
    resource_group: str | None = None
    tags: dict[str, str]

    @model_validator(mode="after")
    def _group(self) -> ScopeTags:
        if (self.scope == "resource_group") != (self.resource_group is not None):
            raise ValueError("resource_group is required with scope resource_group, and only then")
        return self


Match = dict[str, str | list[str]]


def _check_match(match: Match, dimensions: set[str], *, pools: bool) -> None:
    for column, wanted in match.items():
        if column not in MATCH_COLUMNS and not (pools and column in dimensions):
            allowed = ", ".join([*MATCH_COLUMNS, *(sorted(dimensions) if pools else [])])
            raise ValueError(f"cannot match on {column!r} (one of: {allowed})")
        if isinstance(wanted, list) and not wanted:
            raise ValueError(f"match.{column}: an empty list matches no row")


class Mapping(_Dated):
    """A static rule: rows matching every ``match`` column (a value or a list of values) get ``set``; first wins."""

    id: str
    match: Match = Field(min_length=1)
    set: dict[str, str] = Field(min_length=1)


class Weight(_Strict):
    metric: Literal["cost"] = "cost"
    charge_categories: list[str] = Field(["Usage"], min_length=1)


class Targets(_Strict):
    dimension: str
    #: "*": every value (allowlisted, if the dimension has an allowlist) with a weight in the period; or a list (values
    #: and split keys of a dimension with an allowlist must be on it, and take its spelling)
    values: Literal["*"] | list[str] = "*"
    #: fixed method: value -> percentage (decimal text), summing to exactly 100
    split: dict[str, Decimal] = {}


class Pool(_Strict):
    """Shared costs: rows matching ``match`` (first pool wins) are split each month and currency over targets."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    match: Match = Field(min_length=1)
    method: Literal["even", "fixed", "proportional"]
    weight: Weight = Weight()
    targets: Targets
    on_zero_weight: Literal["unallocated", "even", "error"] = "unallocated"


class Rules(_Strict):
    version: Literal[1] = 1
    cost_metric: Literal["EffectiveCost", "BilledCost", "ListCost", "ContractedCost"] = "EffectiveCost"
    #: decimal places of allocated amounts (inputs rounded half-even to them; splits in quanta of 10^-scale)
    amount_scale: StrictInt = Field(10, ge=0, le=18)
    dimensions: dict[str, Dimension] = Field(min_length=1)
    allowlists: dict[str, list[AllowlistEntry]] = {}
    scope_tags: list[ScopeTags] = []
    mappings: list[Mapping] = []
    pools: list[Pool] = []
    #: months starting before this date keep their allocation once written
    lock_before: date | None = None
    #: a correction (ChargeClass Correction) of a locked month: allocated in its own month (original_period) or in the
    #: month being allocated (current_period, finance's "post it to the open period")
    late_corrections: Literal["original_period", "current_period"] = "original_period"

    @field_validator("dimensions")
    @classmethod
    def _names(cls, dims: dict[str, Dimension]) -> dict[str, Dimension]:
        for name in dims:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
                raise ValueError(f"dimension name {name!r}: lower case letters, digits and _")
        return dims

    @field_validator("scope_tags")
    @classmethod
    def _no_overlap(cls, scopes: list[ScopeTags]) -> list[ScopeTags]:
        """Two entries of one scope (kind, subscription, resource group: without case, as the resolver matches them)
        must not both count on a day."""
        if overlap := _overlap(scopes):
            raise ValueError(overlap)
        return scopes

    @field_validator("allowlists")
    @classmethod
    def _one_value_a_spelling(cls, lists: dict[str, list[AllowlistEntry]]) -> dict[str, list[AllowlistEntry]]:
        """A spelling (value or alias, case-folded) names one value on any day: else rows tagged with it and targets
        written with it could go to two values (one team, two cost centers)."""
        for name, entries in lists.items():
            if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", name):  # it names the API-managed entries' file
                raise ValueError(f"allowlist name {name!r}: letters, digits, '_', '-' and '.' only (at most 64, not "
                                 "starting with '.')")
            if clash := ambiguous(entries):
                spelling, first, second = clash
                raise ValueError(f"allowlist {name}: {spelling!r} names both {first!r} and {second!r} on some day")
        return lists

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        dims = set(self.dimensions)
        columns = [self.column(d) for d in self.dimensions]
        written = [c + s for c in columns for s in SUFFIXES]  # x_CostCenter, x_CostCenterSource, ...
        if len({c.casefold() for c in written}) != len(written):
            raise ValueError("dimensions: two dimensions write the same column (a dimension's column is another's "
                             "with Status, Reason, Source, TagKey or RawValue after it)")
        reserved = {r.casefold() for r in RESERVED}
        if taken := sorted(c for c in written if c.casefold() in reserved):
            raise ValueError(f"dimensions: column {taken[0]!r} is one the allocation writes itself")
        for name, dim in self.dimensions.items():
            if dim.allowlist and dim.allowlist not in self.allowlists:
                raise ValueError(f"dimensions.{name}.allowlist: no allowlist named {dim.allowlist!r}")
            if dim.default is not None and sentinel(dim.default):
                raise ValueError(f"dimensions.{name}.default: {dim.default!r} is a status the allocation writes")
        for m in self.mappings:
            _check_match(m.match, dims, pools=False)
            if unknown := set(m.set) - dims:
                raise ValueError(f"mapping {m.id}: sets unknown dimension {sorted(unknown)[0]!r}")
            if bad := next((v for v in m.set.values() if sentinel(v)), None):
                raise ValueError(f"mapping {m.id}: sets {bad!r}, a status the allocation writes")
        ids = [p.id for p in self.pools]
        if len(set(ids)) != len(ids):
            raise ValueError("pool ids must be unique")
        if len({m.id for m in self.mappings}) != len(self.mappings):
            raise ValueError("mapping ids must be unique")
        for i, p in enumerate(self.pools):
            _check_match(p.match, dims, pools=True)
            for column, wanted in p.match.items():  # a dimension's values as resolved: in its allowlist's spelling
                if column in dims and (allowlist := self.dimensions[column].allowlist):
                    p.match[column] = _canonical_match(wanted, f"pools.{i}.match.{column}", allowlist,
                                                       spellings(self.allowlists[allowlist]))
        for i, p in enumerate(self.pools):
            if p.targets.dimension not in dims:
                raise ValueError(f"pool {p.id}: targets.dimension {p.targets.dimension!r} is not a dimension")
            if allowlist := self.dimensions[p.targets.dimension].allowlist:
                _canonical_targets(p.targets, f"pools.{i}", allowlist, spellings(self.allowlists[allowlist]))
            if p.method == "fixed":
                if any(v < 0 for v in p.targets.split.values()):
                    raise ValueError(f"pool {p.id}: negative percentage")
                if any(v > 100 for v in p.targets.split.values()):  # before adding them up: 1e999999999 would overflow
                    raise ValueError(f"pool {p.id}: a percentage above 100")
                if not p.targets.split or sum(p.targets.split.values(), Decimal(0)) != 100:
                    raise ValueError(f"pool {p.id}: a fixed split must give percentages summing to exactly 100 (write "
                                     "them as strings, \"33.3333333333\", for exact decimals: JSON numbers are read as "
                                     "binary floats)")
            if (p.method == "fixed") != bool(p.targets.split) or (p.method == "fixed" and p.targets.values != "*"):
                raise ValueError(f"pool {p.id}: targets.split goes with method fixed (and targets.values with the others)")
            if isinstance(p.targets.values, list) and not p.targets.values:
                raise ValueError(f"pool {p.id}: targets.values is an empty list (no target: use \"*\" or name them)")
            targets = list(p.targets.split) if p.method == "fixed" else (
                p.targets.values if isinstance(p.targets.values, list) else [])
            if bad := next((t for t in targets if not t.strip() or t in SENTINELS), None):
                raise ValueError(f"pool {p.id}: {bad!r} cannot be a target (blank, or a status the allocation writes)")
            if len(set(targets)) != len(targets):
                raise ValueError(f"pool {p.id}: a target is listed twice")
            for other in self.pools:  # a pool's targets must not be what selects a pool (no cycles)
                selector = other.match.get(p.targets.dimension)
                chosen = {selector} if isinstance(selector, str) else set(selector or [])
                if chosen & set(targets):
                    raise ValueError(f"pool {p.id}: target {sorted(chosen & set(targets))[0]!r} selects pool {other.id}")
        return self

    def column(self, dimension: str) -> str:
        dim = self.dimensions[dimension]
        return dim.column or "x_" + "".join(part.capitalize() for part in dimension.split("_"))

    def version_hash(self) -> str:
        """Hash of the rules as given (x_ConfigVersion): any change makes a new version."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def casefold(text: str) -> str:
    """A value as compared with others: NFC, stripped, case-folded (``ß`` is ``ss``)."""
    return unicodedata.normalize("NFC", text).strip().casefold()


def sentinel(value: str) -> bool:
    """Whether a value is spelled as a status the allocation writes (``__unallocated__``), compared as values are."""
    return casefold(value) in {casefold(s) for s in SENTINELS}


def _meet(a: _Dated, b: _Dated) -> bool:
    """The two validity periods share a day."""
    return (a.valid_to is None or b.valid_from is None or b.valid_from < a.valid_to) and (
        b.valid_to is None or a.valid_from is None or a.valid_from < b.valid_to)


def ambiguous(entries: list[AllowlistEntry]) -> tuple[str, str, str] | None:
    """The first spelling (value or alias) that two different values hold on a common day, with the two values."""
    by_spelling: dict[str, list[AllowlistEntry]] = {}
    for e in entries:
        for s in {casefold(x) for x in (e.value, *e.aliases)}:
            by_spelling.setdefault(s, []).append(e)
    for spelling, holders in by_spelling.items():
        for i, a in enumerate(holders):
            for b in holders[i + 1:]:
                if casefold(a.value) != casefold(b.value) and _meet(a, b):
                    return spelling, a.value, b.value
    return None


def spellings(entries: list[AllowlistEntry]) -> dict[str, str]:
    """An allowlist's spellings (values and aliases, case-folded) -> the canonical value."""
    return {casefold(s): e.value for e in entries for s in (e.value, *e.aliases)}


def _overlap(scopes: list[ScopeTags]) -> str | None:
    """The first two entries (by start) of one scope whose validity periods overlap, as a message; None if none do."""
    by_scope: dict[tuple[str, str, str | None], list[int]] = {}
    for i, s in enumerate(scopes):
        by_scope.setdefault((s.scope, s.subscription.lower(), (s.resource_group or "").lower()), []).append(i)
    for found in by_scope.values():
        latest: int | None = None  # the entry seen so far that ends last
        for i in sorted(found, key=lambda i: scopes[i].valid_from or date.min):
            if latest is not None and _ends(scopes[latest]) > (scopes[i].valid_from or date.min):
                return _overlap_message(scopes, *sorted((latest, i)))
            if latest is None or _ends(scopes[i]) > _ends(scopes[latest]):
                latest = i
    return None


def _overlap_message(scopes: list[ScopeTags], a: int, b: int) -> str:
    """Entries ``a`` and ``b`` (positions) of one scope count on the same days: which, what and when."""
    first, second = scopes[a], scopes[b]
    start = max(first.valid_from or date.min, second.valid_from or date.min)
    end = min(_ends(first), _ends(second))
    what = f"subscription {first.subscription!r}" if first.scope == "subscription" else \
        f"resource group {first.resource_group!r} of subscription {first.subscription!r}"
    since = f"from {start.isoformat()}" if start > date.min else "from any date"
    until = f"until {end.isoformat()}" if end < date.max else "with no end"
    return f"scope_tags.{a} and scope_tags.{b} both give the tags of {what} {since} {until}: periods must not overlap"


def _ends(entry: _Dated) -> date:
    """The first day an entry no longer counts (``date.max`` when open)."""
    return entry.valid_to or date.max


def _canonical_match(wanted: str | list[str], where: str, allowlist: str, known: dict[str, str]) -> str | list[str]:
    """A pool's match values of a dimension with an allowlist in its spelling (case-insensitively, aliases too), as the
    rows' resolved values are; the sentinels (``__unallocated__``, ``__not_allowlisted__``) as they are."""

    def canonical(value: str) -> str:
        if value in (UNALLOCATED, NOT_ALLOWLISTED):
            return value
        if (found := known.get(casefold(value))) is None:
            raise ValueError(f"{where}: {value!r} is not on the allowlist {allowlist!r}")
        return found

    if isinstance(wanted, str):
        return canonical(wanted)
    return list(dict.fromkeys(canonical(v) for v in wanted))


def _canonical_targets(targets: Targets, where: str, allowlist: str, known: dict[str, str]) -> None:
    """A pool's explicit targets in their allowlist's spelling (matched case-insensitively, aliases too); a target not
    on the allowlist is an error naming the field (ALLOCATION.md 6.4.3)."""

    def canonical(value: str, field: str) -> str:
        if (found := known.get(casefold(value))) is None:
            raise ValueError(f"{where}.targets.{field}: {value!r} is not on the allowlist {allowlist!r}")
        return found

    split = [(canonical(k, "split"), v) for k, v in targets.split.items()]
    if len(dict(split)) != len(split):
        raise ValueError(f"{where}.targets.split: a target is listed twice")
    targets.split = dict(split)
    if isinstance(targets.values, list):
        targets.values = [canonical(v, "values") for v in targets.values]


def norm_key(key: str, how: KeyNormalization) -> str:
    """A tag key as compared: stripped, case-folded (``ß`` is ``ss``), without the separator characters."""
    out = unicodedata.normalize("NFC", key)
    if how.strip:
        out = out.strip()
    for prefix in how.strip_prefixes:
        if out.casefold().startswith(prefix.casefold()):
            out = out[len(prefix):]
            break
    if how.casefold:
        out = out.casefold()
    return "".join(c for c in out if c not in how.remove_chars)


def parse(text: str, *, file: str = RULES) -> Rules:
    return validated(Rules, text, file=file, what="allocation rules")


def load(store: Store, path: str | None = None) -> Rules | None:
    """The hub's rules (``config/allocation.json``), or those of ``path`` (a local file: a candidate, ``--preview``);
    None when the hub has none. Either way with the API-managed allowlist entries of the hub merged in, as a run uses them."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not UTF-8 text") from None
        return parse_merged(store, text, file=path)
    if not store.exists(RULES):
        return None
    return parse_merged(store, store.read_text(RULES), file=store.full(RULES))


def parse_merged(store: Store, text: str, *, file: str) -> Rules:
    """Rules text with the hub's API-managed allowlist entries (``config/allowlists/``) merged in, validated."""
    from hub.allocation import allowlists

    refuse_duplicate_keys(text, file=file, what="allocation rules")  # merging would keep one of them silently
    try:
        data = json.loads(text)
    except ValueError:
        return parse(text, file=file)  # names the JSON error
    except RecursionError:
        raise UsageError(f"{file}: invalid allocation rules: nested too deeply") from None
    return parse(json.dumps(allowlists.merged(store, data)) if isinstance(data, dict) else text, file=file)
