"""Digest periods: fixed-length windows aligned to the Unix epoch.

Alignment to the epoch lets every alerting worker (and `newsflow alerts digest`) agree on a moment's period without
coordinating, so (subscription, period) is a key they all compute alike. With the default lengths an `hourly`
period is a clock hour and a `daily` one a UTC day. The clock is always passed in, so a period boundary can be
tested without waiting for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.alerts.models import DigestFrequency
from pipeline.settings import AlertSettings

DIGEST_FREQUENCIES: tuple[DigestFrequency, ...] = ("hourly", "daily")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Cut:
    """What one flush sends: the period the digest is filed under, and the instant before which matches count."""

    period: Period
    until: datetime


def period_length(frequency: DigestFrequency, alerts: AlertSettings) -> int:
    return alerts.hourly_period_s if frequency == "hourly" else alerts.daily_period_s


def period_of(when: datetime, length_s: int) -> Period:
    """The period holding `when`: [k * length, (k + 1) * length) seconds since the epoch."""
    start = int(when.timestamp() // length_s) * length_s
    return Period(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + length_s, UTC))


def cut(now: datetime, length_s: int, grace_s: float, *, early: bool = False) -> Cut:
    """The latest period that ended at least `grace_s` before `now`, up to its end; `early` (`--now`): the
    current, unfinished period, up to `now`."""
    if early:
        return Cut(period_of(now, length_s), now)
    current = period_of(now - timedelta(seconds=grace_s), length_s)
    done = Period(current.start - timedelta(seconds=length_s), current.start)
    return Cut(done, done.end)
