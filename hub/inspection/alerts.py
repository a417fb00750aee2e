"""Alert policies: an inspection's events, filtered by severity and kind, sent to Alertmanager-compatible webhooks
(the JSON body Alertmanager's ``webhook_config`` posts, version 4), with a silence period per policy and subject kept
in the inspection's state. A target that fails after its retries is reported, never stops the inspection."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from hub.convert import scrub
from hub.events.sinks import opener, post_once, public_url
from hub.inspection.rules import SEVERITIES, AlertPolicy, Rules
from hub.store import SECRETS, redact

#: Seconds before the first retry of a failed webhook call (doubled each time).
BACKOFF = 0.5
#: Alerts kept for a failing target (the newest; a target down for months does not grow the state without bound).
MAX_PENDING = 1000


@dataclass
class Sent:
    notified: int = 0
    silenced: int = 0
    errors: list[str] = field(default_factory=list)


#: How long the state remembers an alert (for silences, and to send an anomaly's resolution where it was alerted).
KEEP = timedelta(days=366)


def severity(kind: str, data: dict) -> str:
    """An event's severity: an anomaly's own; a budget threshold's by its percentage (>= 100: critical, >= 80: major)."""
    if kind.startswith("anomaly."):
        return str(data.get("severity") or "minor")
    pct = float((data.get("threshold") or {}).get("percent") or 0)
    return "critical" if pct >= 100 else "major" if pct >= 80 else "minor"


def _alert(kind: str, subject: str, data: dict, sev: str, now: datetime) -> dict:
    """One Alertmanager alert (labels identify it; annotations describe it)."""
    resolved = kind == "anomaly.resolved"
    if kind.startswith("anomaly."):
        labels = {"alertname": "CostAnomaly", "monitor": str(data.get("monitor")), "key": str(data.get("key")),
                  "currency": str(data.get("currency")), "severity": sev, "direction": str(data.get("direction"))}
        summary = (f"{data.get('direction')} cost anomaly on {data.get('monitor')} {data.get('key')}: impact "
                   f"{data.get('impact')} {data.get('currency')} ({data.get('start')} to {data.get('end')})")
        starts = f"{data.get('start')}T00:00:00Z"
        ends = f"{data.get('end')}T23:59:59Z" if resolved else "0001-01-01T00:00:00Z"
        fingerprint = str(data.get("id"))
    else:
        threshold = data.get("threshold") or {}
        labels = {"alertname": "BudgetThreshold", "budget": subject, "currency": str(data.get("currency")), "severity": sev,
                  "threshold": f"{threshold.get('type')} {threshold.get('percent'):g} %"}
        summary = (f"budget {subject} {threshold.get('type')} {threshold.get('percent'):g} % crossed: actual "
                   f"{data.get('actual')} of {data.get('amount')} {data.get('currency')}, forecast {data.get('forecast')}")
        starts, ends = f"{data.get('day')}T00:00:00Z", "0001-01-01T00:00:00Z"
        fingerprint = f"{subject}/{data.get('month')}/{threshold.get('type')}/{threshold.get('percent')}"
    return {"status": "resolved" if resolved else "firing", "labels": labels,
            "annotations": {"summary": summary, "description": description(data)},
            "startsAt": starts, "endsAt": ends, "generatorURL": "", "fingerprint": fingerprint}


#: Characters an alert's description may hold (Alertmanager receivers cut or refuse longer annotations).
DESCRIPTION_MAX = 4000


def description(data: dict) -> str:
    """An event's data as JSON text of at most :data:`DESCRIPTION_MAX` characters, always whole JSON: without the daily
    ``series`` (the CloudEvent has it), then with fewer causes, then without the causes and history (cutting the text
    left it unreadable)."""
    short = {k: v for k, v in data.items() if k != "series"}
    causes = list(short.get("causes") or [])
    while True:
        text = json.dumps(short, default=str, sort_keys=True)
        if len(text) <= DESCRIPTION_MAX:
            return text
        if causes:
            causes.pop()
            short["causes"] = causes
        elif short.keys() & {"causes", "history"}:
            short = {k: v for k, v in short.items() if k not in ("causes", "history")}
        else:  # only long names left: the fields a receiver needs, each cut
            return json.dumps({k: str(v)[:200] for k, v in short.items()}, sort_keys=True)[:DESCRIPTION_MAX]


def payload(policy: AlertPolicy, alerts: list[dict]) -> dict:
    """The webhook body: Alertmanager's version 4 grouping of ``alerts`` for the policy (the receiver)."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {"version": "4", "groupKey": f"{{}}:{{policy=\"{policy.id}\"}}", "truncatedAlerts": 0,
            "status": "firing" if firing else "resolved", "receiver": policy.id, "groupLabels": {"policy": policy.id},
            "commonLabels": common, "commonAnnotations": {}, "externalURL": "", "alerts": alerts}


def _target_id(policy: AlertPolicy, index: int) -> str:
    """A policy's target in the state: its position and a digest of its URL (never the URL: it may hold a secret)."""
    return f"{policy.id}#{index}:{hashlib.sha256(policy.targets[index].url.encode()).hexdigest()[:16]}"


def notify(rules: Rules, state: dict, events: list[tuple[str, str, dict, str]], now: datetime | None = None) -> Sent:
    """Send each policy's share of ``events``; ``state['alerts']`` (updated) remembers when each subject was last
    notified, for the silence period. A target that fails keeps its alerts in ``state['alertsPending']`` and gets
    them, before any new ones, at the next inspection (a target that left its policy drops them)."""
    now = now or datetime.now(timezone.utc)
    last = state.setdefault("alerts", {})
    for key in [k for k, at in last.items() if not isinstance(at, str) or at < (now - KEEP).isoformat()]:
        del last[key]  # one entry per anomaly and budget threshold: a year of them is kept, not all of them
    pending: dict[str, list[dict]] = state.setdefault("alertsPending", {})
    targets = {_target_id(p, i): (p, t) for p in rules.alerts for i, t in enumerate(p.targets)}
    for tid in [t for t in pending if t not in targets]:
        del pending[tid]
    out = Sent()
    for tid, held in list(pending.items()):  # what a target missed, first
        policy, target = targets[tid]
        error = _post(target, payload(policy, held))
        if error:
            out.errors.append(f"alert policy {policy.id}: {error} ({len(held)} alerts kept for the next inspection)")
        else:
            out.notified += len(held)
            del pending[tid]
    for policy in rules.alerts:
        batch = []
        for kind, subject, data, identity in events:
            short = kind.removeprefix("finops-hub.")
            sev = severity(short, data)
            anomaly = str(data.get("id") or subject) if short.startswith("anomaly.") else None
            # a resolution goes wherever the anomaly was alerted, whatever its severity now (an anomaly shrinks while
            # the baseline learns its level: opened critical, resolved major)
            firing = [f"{policy.id}|anomaly.{k}|{anomaly}" for k in ("firing", "opened", "updated")]  # older states: by kind
            alerted = anomaly is not None and any(k in last for k in firing)
            if short not in policy.events or (SEVERITIES.index(sev) < SEVERITIES.index(policy.min_severity)
                                              and not (short == "anomaly.resolved" and alerted)):
                continue
            # an anomaly is silenced per anomaly, opened or updated alike (another one of the same series is news); a
            # budget per threshold (its 100 % never silenced by its 50 %)
            if short in ("anomaly.opened", "anomaly.updated"):
                key = firing[0]
                before = max((last[k] for k in firing if isinstance(last.get(k), str)), default=None)
            else:
                key = f"{policy.id}|{short}|{identity if short == 'budget.threshold' else anomaly or subject}"
                before = last.get(key)
            if short != "anomaly.resolved" and before and now - datetime.fromisoformat(before) < timedelta(
                    hours=policy.silence_hours):
                out.silenced += 1
                continue
            batch.append(_alert(short, subject, data, sev, now))
            last[key] = now.isoformat()
            if short == "anomaly.resolved":  # the receiver's last word is "resolved": the anomaly coming back is news,
                for k in firing:  # never silenced by the alert of its earlier firing
                    last.pop(k, None)
        if batch:
            for index, target in enumerate(policy.targets):
                tid = _target_id(policy, index)
                if tid in pending:  # still failing above: the new alerts wait behind the old ones
                    pending[tid] = (pending[tid] + batch)[-MAX_PENDING:]
                    continue
                error = _post(target, payload(policy, batch))
                if error:
                    pending[tid] = batch[-MAX_PENDING:]
                    out.errors.append(f"alert policy {policy.id}: {error} ({len(batch)} alerts kept for the next inspection)")
                else:
                    out.notified += len(batch)
    return out


def _post(target, body: dict) -> str | None:  # noqa: ANN001 - an AlertTarget
    """POST the body, retrying 408 / 429 / 5xx / network errors; None when delivered, else a one-line reason naming the
    host (never the URL's user info, path or query, nor the token). A redirect is not followed (it would carry the token
    elsewhere and turn the POST into a GET): it fails."""
    headers = {"Content-Type": "application/json"}
    token = (os.environ.get(target.token_env) or "").strip() if target.token_env else ""
    if token:
        SECRETS.add(token)
        headers["Authorization"] = f"Bearer {token}"

    def clean(text: str) -> str:
        return scrub((text.replace(token, "***") if token else text).replace(target.url, public_url(target.url)))

    request = urllib.request.Request(target.url, data=json.dumps(body, default=str).encode(), headers=headers, method="POST")
    http = opener()
    reason: str | None = None
    for attempt in range(target.retries + 1):
        reason, retryable = post_once(http, request, target.timeout_seconds, clean)
        if reason is None or not retryable:
            break
        if attempt < target.retries:
            time.sleep(BACKOFF * 2 ** attempt)
    if reason is None:
        return None
    return redact(f"{urlsplit(target.url).netloc.rsplit('@', 1)[-1] or 'the target'}: {reason}")
