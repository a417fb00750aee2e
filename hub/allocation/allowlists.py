"""Allowlists managed through the API (``hub serve``): effective-dated entries under ``config/allowlists/<name>.json``,
merged with the rules file's own, and an append-only audit log (``config/allowlists/audit/``, one file per change:
who, when, the values before and after, why). A change is never retroactive: a value added today is valid from today,
a value removed today valid until today; back-dating needs a reason."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pydantic import BaseModel, ValidationError

from hub import lease
from hub.allocation.rules import AllowlistEntry, Rules, casefold
from hub.errors import UsageError
from hub.store import CONFIG, Store

FOLDER = f"{CONFIG}/allowlists"
AUDIT = f"{FOLDER}/audit"


class ChangeRefused(Exception):
    """A change the API answers 400 (duplicates, back-dating without a reason) or 404 (no such value)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def path(name: str) -> str:
    return f"{FOLDER}/{name}.json"


def stored(store: Store, name: str) -> list[dict]:
    """The API-managed entries of an allowlist (with who and why)."""
    if not store.exists(path(name)):
        return []
    try:
        data = json.loads(store.read_bytes(path(name)))
    except ValueError:
        raise UsageError(f"{store.full(path(name))}: not valid JSON") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise UsageError(f"{store.full(path(name))}: must hold a JSON list of entries (objects)")
    return data


def merged(store: Store, data: dict) -> dict:
    """Rules data (a parsed ``config/allocation.json``) with each allowlist's API-managed entries added. Data of the
    wrong shape is left as it is, for the validation to report naming the field."""
    lists, dims = data.get("allowlists") or {}, data.get("dimensions") or {}
    if not isinstance(lists, dict) or not isinstance(dims, dict):
        return data
    lists = dict(lists)
    names = {d["allowlist"] for d in dims.values() if isinstance(d, dict) and isinstance(d.get("allowlist"), str)}
    fields = set(AllowlistEntry.model_fields)
    for name in sorted(names | set(lists)):
        lists.setdefault(name, [])  # named by a dimension, filled through the API only
        if isinstance(lists[name], list) and (extra := stored(store, name)):
            for i, e in enumerate(extra):  # each checked on its own, naming its file (not the rules file)
                try:
                    AllowlistEntry.model_validate({k: v for k, v in e.items() if k in fields})
                except ValidationError as exc:
                    where = ".".join(str(p) for p in exc.errors()[0]["loc"])
                    raise UsageError(f"{store.full(path(name))}: invalid allowlist entry {i}"
                                     f"{f' at {where}' if where else ''}: {exc.errors()[0]['msg']}") from None
            lists[name] = [*lists[name], *({k: v for k, v in e.items() if k in fields} for e in extra)]
    return {**data, "allowlists": lists} if lists else data


def active(entries: list[dict], day: date) -> list[str]:
    """Values (canonical spellings) valid on ``day``."""
    out = []
    for e in entries:
        start, end = e.get("valid_from"), e.get("valid_to")
        if (start is None or date.fromisoformat(str(start)) <= day) and (end is None or day < date.fromisoformat(str(end))):
            out.append(e["value"])
    return out


@dataclass(frozen=True)
class Change:
    who: str
    reason: str | None = None
    valid_from: date | None = None  # back-dating (needs a reason)


def list_name(rules: Rules, dimension: str) -> str:
    """The allowlist a dimension is checked against (its ``allowlist``); a dimension without one takes any value."""
    name = rules.dimensions[dimension].allowlist
    if name is None:
        raise ChangeRefused(f"the {dimension} dimension has no allowlist in config/allocation.json", status=404)
    return name


def static(store: Store, name: str) -> list[dict]:
    """The rules file's own entries of an allowlist (not changed through the API)."""
    from hub.allocation.rules import RULES

    if not store.exists(RULES):
        return []
    try:
        data = json.loads(store.read_text(RULES))
    except ValueError:
        return []
    lists = data.get("allowlists") if isinstance(data, dict) else None
    entries = lists.get(name) if isinstance(lists, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def values(store: Store, rules: Rules, dimension: str, day: date) -> list[str]:
    """Every value of the dimension's allowlist valid on ``day`` (rules file and API), sorted."""
    name = list_name(rules, dimension)
    return sorted(set(active(static(store, name) + stored(store, name), day)), key=casefold)


def change(store: Store, rules: Rules, dimension: str, action: str, keys: list[str], how: Change,
           today: date | None = None, wait: float = 30.0) -> list[str]:
    """``add`` keys, ``replace`` the list by keys, or ``remove`` keys, from ``how.valid_from`` (default today) on;
    returns the values valid on that day after it. Written as
    a diff of effective-dated entries, then recorded in the audit log; one change at a time across processes (two
    ``hub serve`` on one hub: a lease of its own around the read-modify-write, else one change was lost)."""
    with lease.exclusive(store, "allowlists", wait=wait) as held:
        if held is None:
            raise ChangeRefused("another process is changing the allowlists; try again", status=503)
        return _change(store, rules, dimension, action, keys, how, today)


def _reaches(e: dict, day: date) -> bool:
    """The entry is valid on ``day`` or on some day after it."""
    return e.get("valid_to") is None or day < date.fromisoformat(str(e["valid_to"]))


def _change(store: Store, rules: Rules, dimension: str, action: str, keys: list[str], how: Change,
            today: date | None) -> list[str]:
    """The change says what the list is from its ``validFrom`` on (``start``): it is compared with the list in force
    then, and with the entries reaching past it (dated changes made before), never with today's list only."""
    today = today or datetime.now(timezone.utc).date()
    start = how.valid_from or today
    if how.valid_from and how.valid_from < today and not how.reason:
        raise ChangeRefused("back-dating a change (validFrom in the past) needs a reason")
    folded = [casefold(k) for k in keys]
    if len(set(folded)) != len(folded):
        raise ChangeRefused("the values contain duplicate keys")
    if any(not k.strip() or len(k) > 128 for k in keys):
        raise ChangeRefused("a key is 1-128 characters, not only spaces")
    if (action != "remove" and not all(k.isprintable() for k in keys)) or not (how.reason or "").isprintable():
        # a control or bidi character (U+202E) would reorder or hide text in the audit log, reports and terminals (a
        # value written before this rule, or into the file by hand, can still be removed)
        raise ChangeRefused("keys and the reason hold printable characters only (no control or bidi characters)")
    name = list_name(rules, dimension)
    fixed = {casefold(e["value"]) for e in static(store, name) if isinstance(e, dict) and e.get("value")}
    entries = stored(store, name)
    before = values(store, rules, dimension, start)
    live = {casefold(v) for v in before}  # in force on the change's first day
    ahead = {casefold(e["value"]) for e in entries if _reaches(e, start)}  # in force then or from a later day
    if action == "add" and live & set(folded):
        raise ChangeRefused("the existing and provided values combined contain duplicate keys")
    # an alias of another value (in force then or later) is that value's spelling: listing it as a value of its own
    # would make one spelling name two values (rows tagged with it and targets written with it going apart)
    aliases = {casefold(a): e["value"] for e in static(store, name) + entries if _reaches(e, start)
               for a in e.get("aliases") or [] if isinstance(a, str)}
    if action != "remove" and (alias := next((k for k in keys if casefold(aliases.get(casefold(k), k)) != casefold(k)), None)):
        raise ChangeRefused(f"{alias!r} is an alias of {aliases[casefold(alias)]!r}: use that value")
    if action == "remove":
        for key, k in zip(keys, folded, strict=True):
            if k in fixed:
                raise ChangeRefused(f"{key!r} is defined in config/allocation.json: change it there")
            if k not in live:
                raise ChangeRefused(f"no value {key!r} in the list", status=404)
    gone = set(folded) if action == "remove" else (ahead - set(folded) - fixed if action == "replace" else set())
    new = set() if action == "remove" else set(folded) - live  # on the list from ``start``, not in force then
    stays = set(folded) & live if action == "replace" else set()  # in force then and listed: kept from then on
    stamp = {"created_at": datetime.now(timezone.utc).isoformat(), "created_by": how.who, "reason": how.reason}
    kept = []
    for e in entries:
        k = casefold(e["value"])
        if _reaches(e, start) and k in gone | new | stays:
            since = date.fromisoformat(str(e["valid_from"])) if e.get("valid_from") else None
            if k in stays:  # an end scheduled before is cancelled; a later entry of it is covered by this one
                if since and since > start:
                    continue
                e = {**e, "valid_to": None} if e.get("valid_to") else e
            elif since and since >= start:
                continue  # not in force before the change: dropped (a new value's entry from ``start`` replaces it)
            elif k in gone:  # ended where the change takes effect: no gap, no overlap; never later than it ended
                e = {**e, "valid_to": start.isoformat(), "ended_by": how.who, "ended_reason": how.reason}
        kept.append(e)
    for key in keys:
        if casefold(key) in new:
            kept.append({"value": key.strip(), "aliases": [], "valid_from": start.isoformat(), "valid_to": None, **stamp})
    store.write_bytes(path(name), json.dumps(kept, indent=1).encode())
    after = values(store, rules, dimension, start)
    record = {"at": stamp["created_at"], "who": how.who, "list": name, "dimension": dimension, "action": action,
              "old": before, "new": after, "reason": how.reason, "validFrom": start.isoformat()}
    store.write_bytes(f"{AUDIT}/{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json",
                      json.dumps(record).encode())
    return after


def audit(store: Store, shape: type[BaseModel] | None = None) -> list:
    """Every change, newest first (each checked against ``shape`` when given); a record that cannot be read is a
    :class:`UsageError` naming its file."""
    base = store.full(AUDIT)
    files = sorted(store.fs.ls(base, detail=False), reverse=True) if store.fs.exists(base) else []
    out = []
    for f in files:
        if not f.endswith(".json"):
            continue
        name = f"{AUDIT}/{f.rsplit('/', 1)[-1]}"
        try:
            record = json.loads(store.fs.cat_file(f))
            out.append(shape.model_validate(record) if shape else record)
        except (ValueError, ValidationError):  # JSONDecodeError and pydantic's ValidationError are ValueErrors
            raise UsageError(f"{name}: not a valid audit record (a JSON object with at, who, list, dimension, action, "
                             "old, new)") from None
    return out
