"""The dispatcher: the alerting stage's engine, from an enriched article to delivered alerts and digests.

For each original article of a story, the story is percolated once and the decision (`decision.py`) written to
the alert log (`alert_log.py`): claims, refreshes of still-pending alerts, and matches collected for digest
subscriptions (`digest.py`), whose digests are flushed once per period into the same log. A claimed `new` alert
stays `pending` for `settle_s`, so reports of the same story arriving meanwhile still make one alert, naming all
of their outlets. Then one worker wins it and delivers it on every channel (`delivery.py`) on a thread pool, and
records the outcome; pending alerts orphaned by a crash are picked up again now and then.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.alerts.alert_log import AlertLog, Status, parse_alert_or_digest
from pipeline.alerts.decision import alertable, decide, make_alert
from pipeline.alerts.delivery import Senders, channel_target, overall, with_retries
from pipeline.alerts.digest import DigestBook, Digests
from pipeline.alerts.messages import render
from pipeline.alerts.models import Alert, Subscription
from pipeline.alerts.models import dedup_key as make_key
from pipeline.alerts.store import SubscriptionStore, story_document
from pipeline.models import EnrichedArticle, Story, utcnow
from pipeline.search.backend import SearchBackend
from pipeline.settings import AlertSettings, Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

RECENT_STORIES_KEPT = 10_000  # stories the dispatcher remembers (newest snapshot, followers): a few MB


def _remember(recent: dict[str, Any], key: str, value: Any) -> None:
    """Put `key` last (most recent) and forget the least recent keys beyond RECENT_STORIES_KEPT."""
    recent.pop(key, None)
    recent[key] = value
    while len(recent) > RECENT_STORIES_KEPT:
        del recent[next(iter(recent))]


def latency(alert: Alert, now: datetime) -> float | None:
    """Seconds from the poll of the report that raised the alert to `now` (None for alerts without it)."""
    return None if alert.polled_at is None else round((now - alert.polled_at).total_seconds(), 3)


@dataclass
class Figures:
    """What the alerting stage did since it started (its heartbeat); updated from the delivery threads."""

    consumed: int = 0
    claimed: int = 0
    collected: int = 0  # matches filed for digests
    digests: int = 0  # digests sealed for delivery
    sent: int = 0
    partial: int = 0
    dead: int = 0
    cancelled: int = 0
    last_latency_s: float | None = None  # poll -> delivered, of the latest sent alert
    max_latency_s: float | None = None

    def delivered(self, status: Status, latency_s: float | None) -> None:
        if status in ("sent", "partial", "dead", "cancelled"):
            setattr(self, status, getattr(self, status) + 1)
        if status in ("sent", "partial") and latency_s is not None:
            self.last_latency_s = latency_s
            self.max_latency_s = max(latency_s, self.max_latency_s or 0.0)


class Dispatcher:
    """Claims alerts for enriched articles, collects and flushes digests, and delivers both from the alerts log
    on a thread pool. `clock` decides matches' digest periods and which periods are due (tests move it on)."""

    def __init__(
        self,
        settings: Settings,
        alerts: AlertSettings,
        backend: SearchBackend,
        clock: Clock = utcnow,
    ) -> None:
        self.alerts = alerts
        self.clock = clock
        self.store = SubscriptionStore(backend, alerts)
        self.log = AlertLog(backend, alerts)
        self.book = DigestBook(backend, alerts)
        self.digests = Digests(self.store, self.log, self.book, alerts)
        self.senders = Senders(settings, alerts)
        self._due: dict[str, float] = {}  # dedup key -> time.time() it may be delivered
        # Recent stories (bounded, see `_remember`): the newest snapshot seen, and the subscriptions this worker
        # claimed a `new` alert or filed a digest item for, which every later report of the story refreshes.
        self._newest: dict[str, Story] = {}
        self._following: dict[str, dict[str, Subscription]] = {}
        self._pool = ThreadPoolExecutor(alerts.delivery_threads, thread_name_prefix="alert-delivery")
        self._in_flight: dict[str, Future[Status | None]] = {}
        self._next_orphan_scan = 0.0
        self._next_digest_check = 0.0
        self.figures = Figures()
        self._figures_lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        """The heartbeat: figures so far plus alerts waiting (settle time) or being delivered."""
        with self._figures_lock:
            return {**asdict(self.figures), "pending": len(self._due) + len(self._in_flight)}

    def setup(self) -> None:
        self.store.ensure_index()
        self.log.ensure_index()

    def process(self, article: EnrichedArticle) -> None:
        """Percolate the article's story once and write the resulting claims/refreshes (durable on return)."""
        article = self._with_newest_story(article)
        if not alertable(article) or article.story is None:
            return
        matched = self.store.match(story_document(article))
        self._refresh_followed(article, {s.id for s in matched})
        if not matched:
            return
        logged = self.log.logged_new([s.id for s in matched], article.story.story_id)
        by_id = {s.id: s for s in matched}
        for action in decide(article, matched, logged, self.alerts.update_after_sources):
            sub = by_id[action.alert.subscription_id]
            if action.op == "collect" and sub.frequency != "instant":
                self.book.collect(action.alert, sub.frequency, self.clock())
                self._follow(action.alert.story_id, sub)
                with self._figures_lock:
                    self.figures.collected += 1
                continue
            if action.op == "refresh":
                self.log.refresh_pending(action.alert)
                continue
            settle = self.alerts.settle_s if action.alert.kind == "new" else 0.0
            when = time.time() + settle
            if self.log.claim(action.alert, sub, datetime.fromtimestamp(when, UTC)):
                self._due[action.alert.dedup_key] = when
                if action.alert.kind == "new":
                    self._follow(action.alert.story_id, sub)
                with self._figures_lock:
                    self.figures.claimed += 1
            elif action.alert.kind == "new":  # lost a race to another worker: still share our sources
                self.log.refresh_pending(action.alert)

    def _with_newest_story(self, article: EnrichedArticle) -> EnrichedArticle:
        """The article with the newest snapshot of its story seen so far. Reports of one story sit in different
        partitions and are read in no particular order; an alert claimed on the first report should still
        name the outlets of a later one that was read just before."""
        story = article.story
        if story is None:
            return article
        known = self._newest.get(story.story_id)
        newest = known if known is not None and known.revision > story.revision else story
        _remember(self._newest, story.story_id, newest)
        return article if newest is story else article.model_copy(update={"story": newest})

    def _refresh_followed(self, article: EnrichedArticle, matched: set[str]) -> None:
        """A report of a story whose `new` alert is still settling, or that a digest filed, refreshes it even if
        the report alone does not match the subscription (a follow-up that says "Pyongyang" where the first
        said "North Korea"): the subscription matched the story, and should name every outlet of it."""
        assert article.story is not None
        story_id = article.story.story_id
        for sub_id, sub in self._following.get(story_id, {}).items():
            if sub_id in matched:  # refreshed by `decide`
                continue
            if sub.frequency != "instant":
                self.book.collect(make_alert(sub, article, "new"), sub.frequency, self.clock())
            elif make_key(sub_id, story_id, "new") in self._due:  # still settling: delivery has not started
                self.log.refresh_pending(make_alert(sub, article, "new"))

    def _follow(self, story_id: str, sub: Subscription) -> None:
        _remember(self._following, story_id, {**self._following.get(story_id, {}), sub.id: sub})

    def flush_digests(self, *, early: bool = False) -> list[str]:
        """Seal the digests due now (`early`: the current periods too) and queue them for delivery."""
        keys = self.digests.flush(self.clock(), early=early)
        queued = time.time()
        for key in keys:
            self._due.setdefault(key, queued)
        with self._figures_lock:
            self.figures.digests += len(keys)
        return keys

    def deliver(self, keys: list[str]) -> list[Status | None]:
        """Deliver these alerts or digests now and wait for the outcome (`newsflow alerts digest`)."""
        for key in keys:
            self._due.pop(key, None)
        return [f.result() for f in [self._pool.submit(self._deliver, key) for key in keys]]

    def deliver_due(self) -> None:
        """Start delivering every alert whose settle time passed (and, now and then, orphaned ones and the
        digests whose period ended)."""
        now = time.time()
        if now >= self._next_digest_check:
            self._next_digest_check = now + self.alerts.digest_check_s
            self.flush_digests()
        if now >= self._next_orphan_scan:
            self._next_orphan_scan = now + self.alerts.orphan_after_s
            older = datetime.fromtimestamp(now - self.alerts.orphan_after_s, UTC)
            for key in self.log.orphans(older):
                self._due.setdefault(key, now)
        for key, when in list(self._due.items()):
            if when <= now and key not in self._in_flight:
                del self._due[key]
                future = self._pool.submit(self._deliver, key)
                self._in_flight[key] = future
                future.add_done_callback(functools.partial(self._forget, key))

    def _forget(self, key: str, _future: Future[Status | None]) -> None:
        self._in_flight.pop(key, None)

    def _deliver(self, key: str) -> Status | None:
        """Win the alert (or digest), send it on every channel (each with its own retries), record the outcome."""
        try:
            doc = self.log.start_delivery(key)
            if doc is None:
                return None
            message = parse_alert_or_digest(doc)
            sub = self.store.get(message.subscription_id)
            if sub is None:
                self.log.finish(key, "cancelled", [])
                self._count("cancelled", None)
                return "cancelled"
            out = render(message, sub)
            results: list[dict[str, Any]] = []
            for channel in sub.channels:
                result = with_retries(
                    functools.partial(self.senders.send, out, channel),
                    self.alerts.attempts,
                    self.alerts.backoff_s,
                    self.alerts.backoff_max_s,
                )
                target = channel_target(channel)
                results.append(
                    {"channel": channel.type, "target": target, **result, "at": datetime.now(UTC).isoformat()}
                )
                if result["status"] == "dead":
                    log.warning("alert %s: %s %s dead-lettered: %s", key, channel.type, target, result)
            status = overall(results)
            # A digest waits for its period by design: poll -> delivery latency means nothing there.
            took = latency(message, datetime.now(UTC)) if isinstance(message, Alert) else None
            self.log.finish(key, status, results, took)
            self._count(status, took)
            return status
        except Exception:
            log.exception("alert %s: delivery failed; it stays in the log for a retry", key)
            return None

    def _count(self, status: Status, latency_s: float | None) -> None:
        with self._figures_lock:
            self.figures.delivered(status, latency_s)

    @property
    def busy(self) -> bool:
        """Alerts waiting for their settle time or being delivered."""
        return bool(self._due or self._in_flight)

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        self.senders.close()
