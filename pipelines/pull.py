"""``hub pull`` (and the pulls inside ``hub watch``): bill-API days pulled as deliveries, their CloudEvents sent, then
ingested like any other delivery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from hub import events, pull
from hub.errors import UsageError
from hub.settings import Events, load_settings
from hub.store import Store
from pipelines.ingest import IngestResult, ingest


@dataclass
class PullRun:
    """What ``hub pull`` did: the pulls (one per provider), what was sent, and the ingestion that followed."""

    pulls: list[pull.PullResult] = field(default_factory=list)
    published: list[events.PublishResult] = field(default_factory=list)
    ingested: IngestResult | None = None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pulls) and (self.ingested is None or self.ingested.ok)


def days_asked(provider: str, day: str | None, month: str | None, now: datetime | None = None) -> list[date]:
    """``--date`` (one day), ``--month`` (each of its days) or, with neither, yesterday in the provider's time."""
    pull.check_provider(provider)
    if day and month:
        raise UsageError("give --date or --month, not both")
    if month:
        return pull.month_days(month)
    if day:
        try:
            return [date.fromisoformat(day)]
        except ValueError:
            raise UsageError(f"--date must be YYYY-MM-DD, not {day!r}") from None
    return [pull.yesterday(provider, now)]


def run(store: Store, provider: str, days: list[date], *, then_ingest: bool = True, now: datetime | None = None) -> PullRun:
    """Pull ``days`` now (whatever the schedule says), each day's events sent as soon as it is recorded, then ingest."""
    settings = load_settings(store)
    out = PullRun()
    out.pulls.append(pull.pull(store, provider, days, settings, now=now, on_day=_sender(store, settings.events, out)))
    if then_ingest:
        out.ingested = ingest(store)
    return out


def scheduled(store: Store, *, now: datetime | None = None) -> PullRun:
    """The watcher's pass: each enabled provider's due days (each day's events sent as soon as it is recorded), and
    the dead letters of the event sinks re-sent. The ingestion is the watcher's own next step."""
    settings = load_settings(store)
    out = PullRun()
    out.pulls = pull.scheduled(store, settings, now=now, on_day=_sender(store, settings.events, out))
    if settings.events.sinks and not any(p.events for p in out.pulls):
        out.published.append(events.flush(store, settings.events))
    return out


def _sender(store: Store, settings: Events, out: PullRun) -> Callable[[list], None] | None:
    """Publishes a pulled day's events at once (written to the outbox first): a pull killed on a later day, or a
    provider failing after another's day, loses none."""
    if not settings.sinks:
        return None
    return lambda batch: out.published.append(events.publish(store, settings, batch))
