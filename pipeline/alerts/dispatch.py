"""Deciding, claiming and delivering alerts.

The alerts index is both the dedup record and the outbox. For each original article of a story, the story is
percolated once; every matching subscription gets its alert *claimed* with `op_type=create` under the dedup key
(subscription, story, kind) — a 409 means another worker, an earlier run or a replay already claimed it, so
nothing is sent twice. A claimed `new` alert stays `pending` for `settle_s`: reports of the same story arriving
meanwhile refresh its title and sources, so ten outlets at once still make one alert, naming all of them. Then
one worker wins `pending -> sending` (optimistic concurrency), delivers on every channel with retries and
exponential backoff, and writes the result: `sent`, `partial` or `dead` (dead-letter), with attempts and the last
error per channel. A crash after the claim leaves a `pending` document that any worker resumes later.

Digest subscriptions (hourly/daily) are not claimed per story: their matches are collected (`digest.py`) and
flushed once per period into one digest document in the same log, delivered by the same machinery.
"""

from __future__ import annotations

import functools
import json
import logging
import smtplib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal

import httpx

from pipeline.alerts.digest import DigestBook, Digests
from pipeline.alerts.messages import Outgoing, digest_title, render, webhook_body
from pipeline.alerts.models import (
    Alert,
    AlertKind,
    Channel,
    Digest,
    EmailChannel,
    KafkaChannel,
    Subscription,
    WebhookChannel,
)
from pipeline.alerts.models import dedup_key as make_key
from pipeline.alerts.store import SubscriptionStore, create_index, refresh_story, story_document
from pipeline.models import EnrichedArticle, Story, utcnow
from pipeline.search.backend import SearchBackend
from pipeline.settings import AlertSettings, Settings

log = logging.getLogger(__name__)

Status = Literal["collecting", "pending", "sending", "sent", "partial", "dead", "cancelled"]
Clock = Callable[[], datetime]


# ------------------------------------------------------------------------------------------ decision (pure)


@dataclass(frozen=True)
class Logged:
    """What the alerts log already says about a subscription's `new` alert for a story."""

    status: str
    source_count: int


@dataclass(frozen=True)
class Action:
    """`claim`: create the alert (first writer wins); `refresh`: update a still-pending alert's story fields;
    `collect`: file the story for a digest subscription's next digest."""

    op: Literal["claim", "refresh", "collect"]
    alert: Alert


RECENT_STORIES_KEPT = 10_000  # stories the dispatcher remembers (newest snapshot, followers): a few MB


def _remember(recent: dict[str, Any], key: str, value: Any) -> None:
    """Put `key` last (most recent) and forget the least recent keys beyond RECENT_STORIES_KEPT."""
    recent.pop(key, None)
    recent[key] = value
    while len(recent) > RECENT_STORIES_KEPT:
        del recent[next(iter(recent))]


def alertable(article: EnrichedArticle) -> bool:
    """Only original reports with a story snapshot can alert: a duplicate or near-copy adds nothing new."""
    return article.duplicate_of is None and article.story is not None


def make_alert(sub: Subscription, article: EnrichedArticle, kind: AlertKind) -> Alert:
    """The alert carries the story as of this article (its newest snapshot), not the article itself."""
    story = article.story
    assert story is not None
    return Alert(
        subscription_id=sub.id,
        story_id=story.story_id,
        kind=kind,
        title=story.title,
        sources=list(story.sources),
        article_ids=list(story.article_ids),
        story_revision=story.revision,
        polled_at=article.fetched_at,
    )


def update_due(source_count: int, notified_sources: int, update_after: int) -> bool:
    """An `update` once the story has `update_after` more outlets than when the `new` alert went out."""
    return update_after > 0 and source_count - notified_sources >= update_after


def decide(
    article: EnrichedArticle,
    matched: list[Subscription],
    logged: Mapping[str, Logged],
    update_after: int,
) -> list[Action]:
    """What to write for one article, given the matching subscriptions and the log's `new` alerts by
    subscription id. Never sends: claims are what make delivery exactly-once."""
    if not alertable(article) or article.story is None:
        return []
    actions: list[Action] = []
    sources = len(article.story.sources)
    for sub in matched:
        if sub.frequency != "instant":  # a digest: collected now, sent once per period
            actions.append(Action("collect", make_alert(sub, article, "new")))
            continue
        previous = logged.get(sub.id)
        if previous is None:
            actions.append(Action("claim", make_alert(sub, article, "new")))
        elif previous.status == "pending":
            actions.append(Action("refresh", make_alert(sub, article, "new")))
        elif sub.updates and update_due(sources, previous.source_count, update_after):
            actions.append(Action("claim", make_alert(sub, article, "update")))
    return actions


# ------------------------------------------------------------------------------------------ the alerts log


def alerts_mappings() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "dynamic": False,
        "properties": {
            "subscription_id": keyword,
            "subscription_name": keyword,
            "owner": keyword,
            "story_id": keyword,
            "kind": keyword,
            "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
            "sources": keyword,
            "status": keyword,
            "attempts": {"type": "integer"},
            "last_error": {"type": "text"},
            "created_at": {"type": "date"},
            "polled_at": {"type": "date"},
            "frequency": keyword,
            "period_start": {"type": "date"},
            "period_end": {"type": "date"},
            "deliver_after": {"type": "date"},
            "finished_at": {"type": "date"},
            "latency_s": {"type": "float"},
            "deliveries": {"type": "object", "enabled": False},
        },
    }


def _unless_conflict(write: Callable[[], Any]) -> Any | None:
    """The engine's answer to a conditional write, or None if it refused it with a 409: someone else wrote first
    (both search clients carry the HTTP status of an error answer in `status_code`)."""
    try:
        return write()
    except Exception as exc:
        if getattr(exc, "status_code", None) == 409:
            return None
        raise


class AlertLog:
    """The alerts index: dedup claims, the delivery outbox and the delivery log in one document per alert."""

    def __init__(self, backend: SearchBackend, settings: AlertSettings) -> None:
        self.client: Any = backend.client
        self.index = settings.alerts_index

    def ensure_index(self) -> None:
        create_index(self.client, self.index, alerts_mappings())

    def logged_new(self, sub_ids: list[str], story_id: str) -> dict[str, Logged]:
        """The `new` alerts already claimed for this story, by subscription id (realtime mget: no refresh)."""
        if not sub_ids:
            return {}
        keys = [make_key(s, story_id, "new") for s in sub_ids]
        docs = self.client.mget(index=self.index, body={"ids": keys})["docs"]
        return {
            d["_source"]["subscription_id"]: Logged(d["_source"]["status"], len(d["_source"].get("sources", [])))
            for d in docs
            if d.get("found")
        }

    def claim(self, alert: Alert, sub: Subscription, deliver_after: datetime) -> bool:
        """Create the alert under its dedup key; False if it already exists (409): someone else has it."""
        doc = {
            **alert.model_dump(mode="json"),
            "subscription_name": sub.name,
            "owner": sub.owner,
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            "deliver_after": deliver_after.isoformat(),
            "deliveries": [],
        }
        return _unless_conflict(lambda: self.client.create(index=self.index, id=alert.dedup_key, body=doc)) is not None

    def refresh_pending(self, alert: Alert) -> None:
        """Newer story fields onto a still-pending alert (a no-op once delivery started or for older snapshots)."""
        script = refresh_story(alert, "pending")
        self.client.update(index=self.index, id=alert.dedup_key, body={"script": script}, retry_on_conflict=5)

    def get(self, key: str) -> dict[str, Any] | None:
        doc = self.client.get(index=self.index, id=key, ignore=[404])
        return dict(doc) if doc and doc.get("found") else None

    def start_delivery(self, key: str) -> dict[str, Any] | None:
        """Move `pending -> sending` if nobody else did (seq_no check); returns the alert document if we won."""
        doc = self.get(key)
        if doc is None or doc["_source"].get("status") != "pending":
            return None
        won = _unless_conflict(
            lambda: self.client.update(
                index=self.index,
                id=key,
                body={"doc": {"status": "sending"}},
                if_seq_no=doc["_seq_no"],
                if_primary_term=doc["_primary_term"],
            )
        )
        return None if won is None else dict(doc["_source"])

    def finish(
        self, key: str, status: Status, deliveries: list[dict[str, Any]], latency_s: float | None = None
    ) -> None:
        """The delivery result: overall status, attempts and the last error (for the dead-letter view), and
        `latency_s`, seconds from the poll of the report to the end of delivery."""
        errors = [d["last_error"] for d in deliveries if d.get("last_error")]
        doc = {
            "status": status,
            "deliveries": deliveries,
            "attempts": max((d["attempts"] for d in deliveries), default=0),
            "last_error": errors[-1] if errors else None,
            "finished_at": datetime.now(UTC).isoformat(),
            "latency_s": latency_s,
        }
        self.client.update(index=self.index, id=key, body={"doc": doc}, refresh=True)

    def open_digest(self, digest: Digest, sub: Subscription) -> tuple[int, int] | None:
        """Create the (subscription, period) digest, `collecting`; its (seq_no, primary_term) if we created it,
        None if it exists (another flusher, or this period was already sent)."""
        doc = {
            **digest.model_dump(mode="json"),
            "kind": "digest",
            "subscription_name": sub.name,
            "owner": sub.owner,
            "title": f"{digest.frequency} digest (collecting)",
            "status": "collecting",
            "attempts": 0,
            "last_error": None,
            "deliveries": [],
        }
        created = _unless_conflict(lambda: self.client.create(index=self.index, id=digest.dedup_key, body=doc))
        return None if created is None else (int(created["_seq_no"]), int(created["_primary_term"]))

    def seal_digest(self, digest: Digest, version: tuple[int, int]) -> bool:
        """`collecting -> pending` with its stories (`cancelled` if none are left), unless someone else sealed it
        since `version`; False then."""
        doc = {
            "items": [i.model_dump(mode="json") for i in digest.items],
            "sources": sorted({s for i in digest.items for s in i.sources}),
            "title": digest_title(digest),
            "status": "pending" if digest.items else "cancelled",
            "deliver_after": datetime.now(UTC).isoformat(),
        }
        sealed = _unless_conflict(
            lambda: self.client.update(
                index=self.index,
                id=digest.dedup_key,
                body={"doc": doc},
                if_seq_no=version[0],
                if_primary_term=version[1],
                refresh=True,
            )
        )
        return sealed is not None

    def stale_digests(self, older_than: datetime) -> list[tuple[Digest, tuple[int, int]]]:
        """Digests still `collecting` since before `older_than`: their flusher died before sealing them."""
        body = {
            "size": 1000,
            "seq_no_primary_term": True,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"kind": "digest"}},
                        {"term": {"status": "collecting"}},
                        {"range": {"created_at": {"lt": older_than.isoformat()}}},
                    ]
                }
            },
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [(parse_digest(h["_source"]), (int(h["_seq_no"]), int(h["_primary_term"]))) for h in hits]

    def orphans(self, older_than: datetime) -> list[str]:
        """Pending alerts nobody delivered (their worker died after the claim)."""
        body = {
            "size": 1000,
            "_source": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"status": "pending"}},
                        {"range": {"deliver_after": {"lt": older_than.isoformat()}}},
                    ]
                }
            },
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [h["_id"] for h in hits]

    def recent(self, owner: str | None = None, size: int = 50) -> list[dict[str, Any]]:
        """Newest alerts first (for `newsflow alerts`)."""
        query: dict[str, Any] = {"term": {"owner": owner}} if owner else {"match_all": {}}
        body = {"size": size, "query": query, "sort": [{"created_at": "desc"}]}
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [h["_source"] for h in hits]


# ------------------------------------------------------------------------------------------ channels


class PermanentError(Exception):
    """A failure no retry can fix (e.g. HTTP 404 from a webhook): dead-letter at once."""


class Senders:
    """One delivery attempt per channel type; raising means the attempt failed."""

    def __init__(self, settings: Settings, alerts: AlertSettings) -> None:
        self.settings, self.alerts = settings, alerts
        self._http = httpx.Client(timeout=alerts.webhook_timeout_s)
        self._producer: Any = None
        self._lock = threading.Lock()

    def send(self, out: Outgoing, channel: Channel) -> None:
        if isinstance(channel, WebhookChannel):
            self.webhook(out, channel)
        elif isinstance(channel, EmailChannel):
            self.email(out, channel)
        else:
            self.kafka(out, channel)

    def webhook(self, out: Outgoing, channel: WebhookChannel) -> None:
        """JSON POST; a Slack-style channel gets `{"text": ...}` instead."""
        response = self._http.post(channel.url, json=webhook_body(out, channel))
        if response.status_code >= 400:
            error = f"HTTP {response.status_code} from {channel.url}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                raise PermanentError(error)
            raise RuntimeError(error)

    def email(self, out: Outgoing, channel: EmailChannel) -> None:
        a = self.alerts
        msg = EmailMessage()
        msg["Subject"] = out.subject
        msg["From"] = a.smtp_from
        msg["To"] = channel.to
        msg["X-Newsflow-Alert"] = out.key
        msg.set_content(out.text)
        msg.add_alternative(out.html, subtype="html")
        with smtplib.SMTP(a.smtp_host, a.smtp_port, timeout=a.webhook_timeout_s) as smtp:
            if a.smtp_starttls:
                smtp.starttls()
            if a.smtp_username:
                smtp.login(a.smtp_username, a.smtp_password or "")
            smtp.send_message(msg)

    def kafka(self, out: Outgoing, channel: KafkaChannel) -> None:
        from pipeline.stream import bus

        with self._lock:
            if self._producer is None:
                self._producer = bus.producer(self.settings)
        value = json.dumps(out.payload).encode()
        self._producer.send(channel.topic, key=out.key, value=value).get(timeout=10)

    def close(self) -> None:
        self._http.close()
        if self._producer is not None:
            self._producer.close()


def backoff_delays(attempts: int, base: float, cap: float) -> list[float]:
    """Waits between attempts: base, 2*base, 4*base ... capped (attempts-1 of them)."""
    return [min(cap, base * 2**i) for i in range(max(0, attempts - 1))]


def with_retries(
    attempt: Callable[[], None], attempts: int, base: float, cap: float, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Try up to `attempts` times with exponential backoff; the result says `sent` or `dead` and why."""
    delays = backoff_delays(attempts, base, cap)
    last_error: str | None = None
    for n in range(1, attempts + 1):
        try:
            attempt()
            return {"status": "sent", "attempts": n, "last_error": last_error}
        except PermanentError as exc:
            return {"status": "dead", "attempts": n, "last_error": str(exc)}
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:500]
            if n <= len(delays):
                sleep(delays[n - 1])
    return {"status": "dead", "attempts": attempts, "last_error": last_error}


def overall(results: list[dict[str, Any]]) -> Status:
    sent = sum(r["status"] == "sent" for r in results)
    return "sent" if sent == len(results) else ("dead" if sent == 0 else "partial")


def parse_digest(doc: dict[str, Any]) -> Digest:
    return Digest.model_validate({k: doc[k] for k in Digest.model_fields if k in doc})


def parse_message(doc: dict[str, Any]) -> Alert | Digest:
    """An alerts-log document as what it announces: one story's alert, or a digest."""
    if doc.get("kind") == "digest":
        return parse_digest(doc)
    return Alert.model_validate({k: doc[k] for k in Alert.model_fields if k in doc})


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


def _target(channel: Channel) -> str:
    if isinstance(channel, WebhookChannel):
        return channel.url
    return channel.to if isinstance(channel, EmailChannel) else channel.topic


# ------------------------------------------------------------------------------------------ the dispatcher


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
            message = parse_message(doc)
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
                results.append(
                    {"channel": channel.type, "target": _target(channel), **result, "at": datetime.now(UTC).isoformat()}
                )
                if result["status"] == "dead":
                    log.warning("alert %s: %s %s dead-lettered: %s", key, channel.type, _target(channel), result)
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
