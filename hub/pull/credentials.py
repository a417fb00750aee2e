"""Bill-API credentials: from environment variables, else from a secret file; never from settings.

The secret file is ``config/secrets.json`` under a local hub root, or the file named by ``HUB_SECRETS_FILE``. It must
be readable by its owner only (mode 0600 or stricter). Its shape::

    {"alibaba": {"access_key_id": "...", "access_key_secret": "..."},
     "huawei": {"ak": "...", "sk": "...", "domain_id": "..."},
     "tencent": {"secret_id": "...", "secret_key": "..."}}

Every value found is registered with :data:`hub.store.SECRETS`, so no message, log line or record can show it.
"""

from __future__ import annotations

import json
import os
import stat

from hub.errors import UsageError
from hub.store import CONFIG, SECRETS, Store

SECRETS_FILE = f"{CONFIG}/secrets.json"
SECRETS_ENV = "HUB_SECRETS_FILE"


def secret_file(store: Store) -> str | None:
    """The secret file to read, if there is one."""
    named = os.environ.get(SECRETS_ENV)
    if named:
        if not os.path.isfile(named):
            raise UsageError(f"{SECRETS_ENV} names {named}, which is not a file")
        return named
    local = store.local_path(SECRETS_FILE) if store.is_local else None
    return local if local and os.path.isfile(local) else None


def _read(path: str) -> dict:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{path}: a secret file must be readable by its owner only (chmod 600 {path})")
    try:
        data = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115 - a small file, read once
    except (OSError, ValueError):
        raise UsageError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must hold a JSON object with one object per provider")
    return data


def load(store: Store, provider: str, fields: dict[str, list[str]]) -> dict[str, str]:
    """``provider``'s credentials, field by field: the first set environment variable of ``fields[name]``, else the
    secret file's ``provider.name``. A missing one is a usage error naming where it may come from (never a value)."""
    path = secret_file(store)
    stored = _read(path).get(provider) or {} if path else {}
    if not isinstance(stored, dict):
        raise UsageError(f"{path}: {provider} must be a JSON object")
    out: dict[str, str] = {}
    for name, variables in fields.items():
        value = next((os.environ[v] for v in variables if os.environ.get(v)), None) or stored.get(name)
        if not isinstance(value, str) or not value:
            where = " or ".join(variables) + f", or {provider}.{name} in {path or SECRETS_FILE} ({SECRETS_ENV})"
            raise UsageError(f"{provider} credentials: {name} is missing: set {where}")
        out[name] = value
        SECRETS.add(value)
    return out
