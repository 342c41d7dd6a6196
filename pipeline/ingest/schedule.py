"""When to poll each feed next: per-feed state, adaptive intervals, server hints, backoff, and a due-time queue.

Pure logic (no I/O), so every rule is unit-testable with a fixed clock and a seeded random generator:

- a feed that posts often is polled often: the interval is half the mean gap between its recent new items,
  clamped to the feed's (or the global) min/max; a quiet feed drifts up towards the max;
- the server may ask for less: RSS `<ttl>` and `Cache-Control: max-age` raise the interval (up to the max),
  `Retry-After` on 429/503 is honoured as given (up to `retry_after_max_s`);
- errors back off exponentially from the min interval, with jitter, and then keep retrying at the max interval
  for ever: a failing feed is shown unhealthy, never dropped;
- every interval gets +/- jitter so thousands of feeds added at once do not stay synchronised.
"""

from __future__ import annotations

import heapq
import random
import re
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

RATE_WINDOW_S = 7 * 86400  # posting rate is measured over the last week of new items
MAX_ITEM_TIMES = 500  # bound on remembered new-item times per feed (state record size)
MAX_RECENT_IDS = 500  # bound on remembered item ids of the feed's latest document
QUIET_GROWTH = 1.5  # a feed without new items stretches its interval by this factor per poll


@dataclass(frozen=True)
class Bounds:
    """A feed's interval bounds in seconds, resolved from its own config or the global defaults."""

    min_s: float
    max_s: float
    initial_s: float

    @classmethod
    def resolve(
        cls, feed_min: float | None, feed_max: float | None, default_min: float, default_max: float, initial: float
    ) -> Bounds:
        """Feed bounds win over the global ones; a max below the min is lifted to the min (never inverted)."""
        lo = feed_min if feed_min is not None else default_min
        hi = feed_max if feed_max is not None else default_max
        hi = max(hi, lo)
        return cls(lo, hi, min(max(initial, lo), hi))


@dataclass
class FeedState:
    """Everything a poller needs to continue a feed where another left off (stored in the state topic)."""

    feed_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    interval_s: float | None = None
    next_due: float = 0.0
    last_polled: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    status: int | None = None
    consecutive_errors: int = 0
    item_times: list[float] = field(default_factory=list)
    recent_ids: list[str] = field(default_factory=list)
    poller: str | None = None

    @property
    def healthy(self) -> bool:
        return self.consecutive_errors == 0

    def items_since(self, since: float) -> int:
        return sum(1 for t in self.item_times if t >= since)

    def validators(self) -> dict[str, str]:
        """Conditional-GET headers from the last successful response."""
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedState:
        """Tolerant of unknown keys (a newer poller may add some) and of missing ones."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


_MAX_AGE = re.compile(r"(?:^|[,\s])(s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


def cache_max_age(cache_control: str | None) -> float | None:
    """`max-age` (or `s-maxage`) from Cache-Control; `no-cache`/`no-store` give no hint rather than zero."""
    if not cache_control:
        return None
    ages = [float(m.group(2)) for m in _MAX_AGE.finditer(cache_control)]
    return max(ages) if ages else None


def adaptive_interval(
    item_times: list[float], previous: float | None, got_new: bool, bounds: Bounds, now: float
) -> float:
    """Half the mean gap between recent new items (so a typical item waits half a gap), clamped.

    With fewer than two new items in the window there is no rate: a feed that just produced something keeps
    its interval; a quiet one stretches it by QUIET_GROWTH towards the max.
    """
    recent = sorted(t for t in item_times if t >= now - RATE_WINDOW_S)
    base = previous if previous is not None else bounds.initial_s
    if len(recent) >= 2 and recent[-1] > recent[0]:
        span = max(now - recent[0], recent[-1] - recent[0])
        interval = span / len(recent) / 2
        if not got_new:
            interval = max(interval, base)  # no news this time: never speed up on a stale rate
    else:
        interval = base if got_new else base * QUIET_GROWTH
    return min(max(interval, bounds.min_s), bounds.max_s)


def success_interval(
    state: FeedState, bounds: Bounds, *, got_new: bool, ttl_s: float | None, max_age_s: float | None, now: float
) -> float:
    """The next interval after a good poll: adaptive, raised by the server's ttl / max-age up to the max."""
    interval = adaptive_interval(state.item_times, state.interval_s, got_new, bounds, now)
    hint = max(ttl_s or 0.0, max_age_s or 0.0)
    if hint > interval:
        interval = min(hint, bounds.max_s)
    return interval


def error_delay(consecutive_errors: int, bounds: Bounds, rng: random.Random) -> float:
    """Exponential backoff from the min interval with 'equal jitter', capped at the max (retried for ever)."""
    exp = bounds.min_s * (2 ** min(max(consecutive_errors - 1, 0), 30))
    capped = min(exp, bounds.max_s)
    return capped / 2 + rng.uniform(0, capped / 2) if capped < bounds.max_s else capped


def jittered(interval: float, fraction: float, rng: random.Random) -> float:
    """interval * (1 +/- fraction): spreads feeds that were added together over time."""
    return max(0.0, interval * (1 + rng.uniform(-fraction, fraction)))


def record_new_items(state: FeedState, count: int, now: float) -> None:
    """Remember when new items arrived (bounded): the posting rate and the `items in 24 h` figure use it."""
    if count:
        state.item_times.extend([now] * min(count, MAX_ITEM_TIMES))
    cutoff = now - RATE_WINDOW_S
    state.item_times = [t for t in state.item_times if t >= cutoff][-MAX_ITEM_TIMES:]


class DueQueue:
    """Feed ids ordered by next-due time. Removing a feed is lazy: stale heap entries are skipped on pop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, feed_id: str, due: float) -> None:
        """(Re)schedule a feed; a later call replaces the earlier due time."""
        self._due[feed_id] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, feed_id))

    def discard(self, feed_id: str) -> None:
        self._due.pop(feed_id, None)

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        """Feeds due at `now` (earliest first), removed from the queue until rescheduled."""
        out: list[str] = []
        while self._heap:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _, _, feed_id = heapq.heappop(self._heap)
            del self._due[feed_id]
            out.append(feed_id)
        return out

    def _drop_stale(self) -> None:
        while self._heap:
            due, _, feed_id = self._heap[0]
            if self._due.get(feed_id) == due:
                return
            heapq.heappop(self._heap)


def now_s() -> float:
    """Wall-clock seconds: due times are shared between pollers through the state topic, so not monotonic."""
    return time.time()
