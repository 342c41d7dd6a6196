"""Poller: feeds over HTTP -> normalised Articles -> Kafka (`kafka.topics.articles`, key = article id).

Exactly once into the articles topic: a poll's new items and the feed's state record (validators, schedule, the
ids of the document just read) are produced in one Kafka transaction (`pipeline/ingest/outbox.py`), so a poller killed
at any moment leaves either both or neither; a restarted poller, or another one taking the feed over, reads the
committed state and does not re-emit what the last document held. A local SQLite seen-store
(`pipeline/ingest/seen.py`, updated after the commit, aged out) remembers older items. Conditional GET (ETag /
Last-Modified) keeps unchanged feeds cheap; fetching is `pipeline/ingest/fetch.py`, parsing
`pipeline/ingest/feeds.py`.

Each feed has its own next-due time (`pipeline/ingest/schedule.py`): adaptive to its posting rate within min/max,
stretched by `<ttl>` / Cache-Control max-age, delayed by 429/503 Retry-After, backed off exponentially on errors
(retried for ever at the max: a failing feed is unhealthy, never dropped), with jitter. At most
`poller.concurrency` requests are in flight, `poller.per_host_concurrency` per host. 301/308 move the feed.
`poll_once` polls everything now (demo, tests, bench, `--once`); `run` is the scheduler. Which feeds a process
polls comes from the registry in scale-out mode (`pipeline/ingest/registry.py`) or from the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pipeline import status
from pipeline.errors import FeedError
from pipeline.ingest.feeds import parse_feed
from pipeline.ingest.fetch import Response, fetch, http_client
from pipeline.ingest.outbox import Record, TransactionalOutbox
from pipeline.ingest.results import FeedResult, PollTotals, failure_summary
from pipeline.ingest.schedule import (
    MAX_RECENT_IDS,
    Bounds,
    DueQueue,
    FeedState,
    cache_max_age,
    error_delay,
    jittered,
    now_s,
    record_new_items,
    success_interval,
)
from pipeline.ingest.seen import SeenStore
from pipeline.models import Article
from pipeline.settings import FeedConfig, Settings
from pipeline.stream import bus

log = logging.getLogger(__name__)


HEARTBEAT_S = 5.0
EXPIRE_EVERY_S = 3600.0
SUMMARY_EVERY_S = 60.0

MoveSink = Callable[[FeedConfig], None]


class Poller:
    """Polls feeds when each is due (or all at once with `poll_once`) and produces new items to Kafka.

    Feeds can be added and removed while running (`set_feed` / `remove_feed`): the registry-driven scale-out
    mode (`pipeline/ingest/registry.py`) does that on partition assignment. Every poll ends with one transaction: the
    new items plus the feed's state. `on_moved` receives a feed whose URL changed after a permanent redirect.
    `transactional_id` must be stable across restarts of the same poller (so the broker aborts what a killed
    one left open at once) and unique among live pollers; by default it names this process.
    """

    def __init__(
        self,
        settings: Settings,
        feeds: list[FeedConfig] | None = None,
        *,
        on_moved: MoveSink | None = None,
        poller_id: str | None = None,
        transactional_id: str | None = None,
    ) -> None:
        self.settings = settings
        seen_db = settings.poller.seen_db or settings.stack.state_dir / "poller" / "seen.sqlite"
        self.seen = SeenStore(seen_db, settings.poller.seen_ttl_days)
        self.totals = PollTotals()
        self.on_moved = on_moved
        self.poller_id = poller_id or f"{socket.gethostname()}:{os.getpid()}"
        self.outbox = TransactionalOutbox(settings, transactional_id or f"{settings.poller.group_id}.{self.poller_id}")
        self.rng = random.Random()
        self.queue = DueQueue()
        self.states: dict[str, FeedState] = {}
        self._by_id: dict[str, FeedConfig] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._scheduled = False  # polling each feed when due (`run()` without cycles), not in cycles
        self._global: asyncio.Semaphore | None = None
        self._handling: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._in_flight: set[str] = set()
        self.status_extra: dict[str, Any] = {}  # e.g. the registry partitions this poller owns
        for feed in feeds if feeds is not None else settings.feeds:
            self.set_feed(feed)

    # --- the feed set -------------------------------------------------------------------------------------

    @property
    def feeds(self) -> list[FeedConfig]:
        return list(self._by_id.values())

    def set_feed(self, feed: FeedConfig, state: FeedState | None = None) -> None:
        """Add or update a feed (disabled ones are removed). Without a stored state it is due now, and its
        validators come from the local store so a restart still sends a conditional GET."""
        fid = feed.feed_id()
        if not feed.enabled:
            self.remove_feed(fid)
            return
        self._by_id[fid] = feed
        if state is not None:
            self.states[fid] = state
        elif fid not in self.states:
            self.states[fid] = self._local_state(fid, feed.url)
        if fid not in self._in_flight:  # else it is rescheduled when that poll ends
            self.queue.schedule(fid, self.states[fid].next_due)
        self._wake.set()

    def remove_feed(self, feed_id: str) -> None:
        self._by_id.pop(feed_id, None)
        self.states.pop(feed_id, None)
        self.queue.discard(feed_id)

    def _local_state(self, fid: str, url: str) -> FeedState:
        etag, last_modified = self.seen.saved_validators(url)
        return FeedState(fid, url, etag=etag, last_modified=last_modified)

    def _bounds(self, feed: FeedConfig) -> Bounds:
        cfg = self.settings.poller
        return Bounds.resolve(
            feed.min_interval_s, feed.max_interval_s, cfg.min_interval_s, cfg.max_interval_s, cfg.interval_s
        )

    # --- lifecycle ----------------------------------------------------------------------------------------

    def close(self) -> None:
        self.outbox.close()
        self.seen.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self, *, cycles: int | None = None) -> PollTotals:
        """Poll each feed when it is due until stopped; with `cycles`, poll everything that many times."""
        self._wake = asyncio.Event()  # an Event binds to the loop that first waits on it: one per run()
        if cycles is not None:
            for i in range(cycles):
                await self.poll_once()
                if i + 1 < cycles:
                    await self._sleep(self.settings.poller.min_interval_s)
        else:
            self._scheduled = True
            async with http_client(self.settings.poller) as client:
                await self._schedule_loop(client)
        status.write("poller", {**self.status(), "state": "stopped"}, force=True)
        return self.totals

    async def _sleep(self, seconds: float) -> None:
        """Wait (or until a stop/wake), still reporting a heartbeat so `status` knows we're alive."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(left, HEARTBEAT_S))
            status.write("poller", {**self.status(), "state": "waiting for due feeds"})
            if self._wake.is_set():
                return

    async def _schedule_loop(self, client: httpx.AsyncClient) -> None:
        """Start every due feed (the semaphores bound what is in flight), then sleep until the next due time
        or until something changes (a poll finished and rescheduled its feed, a feed was added)."""
        running: set[asyncio.Task[FeedResult]] = set()
        last_expire = last_summary = time.monotonic()
        reported: list[str] = []
        while not self._stop.is_set():
            for fid in self.queue.pop_due(now_s()):
                if (feed := self._by_id.get(fid)) is not None:
                    task = asyncio.create_task(self._poll_scheduled(client, feed))
                    running.add(task)
                    task.add_done_callback(running.discard)
            if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                last_summary, reported = time.monotonic(), self._report_failures(reported)
            if time.monotonic() - last_expire > EXPIRE_EVERY_S:
                self.seen.expire()
                last_expire = time.monotonic()
            due = self.queue.next_due()
            await self._sleep(HEARTBEAT_S if due is None else max(0.0, min(due - now_s(), HEARTBEAT_S)))
        if running:  # let polls in flight finish (their items are produced and marked, or not at all)
            await asyncio.wait(running, timeout=self.settings.poller.timeout_s * 2)

    def _report_failures(self, reported: list[str]) -> list[str]:
        """The failing feeds by kind, when that picture changed since the last report."""
        lines = failure_summary(self.totals.last_errors)
        kinds = [line.split(" (e.g.")[0] for line in lines]
        if kinds != [line.split(" (e.g.")[0] for line in reported]:
            for line in lines:
                log.warning("%s", line)
        return lines

    async def _poll_scheduled(self, client: httpx.AsyncClient, feed: FeedConfig) -> FeedResult:
        result = await self.poll_feed(client, feed)
        self.totals.add([result])
        if not result.ok:  # summarised by kind every SUMMARY_EVERY_S (`_report_failures`), not one line per poll
            log.debug("feed %s: %s", result.url, result.error)
        fid = feed.feed_id()
        if fid in self._by_id and (state := self.states.get(fid)) is not None:
            self.queue.schedule(fid, state.next_due)
        self._wake.set()
        return result

    async def poll_once(self) -> list[FeedResult]:
        """One cycle over all feeds regardless of due times (used by `--once`, the demo and the bench)."""
        async with http_client(self.settings.poller) as client:
            results = list(await asyncio.gather(*(self.poll_feed(client, f) for f in self.feeds)))
        self.seen.expire()
        self.totals.cycles += 1
        self.totals.add(results)
        failed = {r.url: r.error or "failed" for r in results if not r.ok}
        for line in failure_summary(failed):
            log.warning("%s", line)
        if results and len(failed) == len(results):
            log.warning("no feed could be polled this cycle (offline? every feed failed)")
        status.write("poller", self.status(), force=True)
        return results

    # --- one feed -----------------------------------------------------------------------------------------

    def _bind_limits(self) -> None:
        """Semaphores belong to one event loop; `poll_once` may be called under successive asyncio.run()s."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._global = asyncio.Semaphore(self.settings.poller.concurrency)
            self._handling = asyncio.Semaphore(2 * self.settings.poller.concurrency)
            self._hosts = {}

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        """At most `per_host_concurrency` requests to one host, so many feeds on one site never burst it."""
        host = (urlsplit(url).hostname or "").lower()
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.settings.poller.per_host_concurrency)
        return self._hosts[host]

    async def poll_feed(self, client: httpx.AsyncClient, feed: FeedConfig) -> FeedResult:
        """Fetch, parse and produce one feed, then update its state and next due time. Any failure becomes a
        FeedResult with a one-line error; the feed stays scheduled (backing off), never dropped."""
        self._bind_limits()
        assert self._global is not None
        fid = feed.feed_id()
        state = self.states.get(fid) or self._local_state(fid, feed.url)
        self.states[fid] = state
        self._in_flight.add(fid)
        try:
            assert self._handling is not None
            # A poll waiting for its transaction gives its HTTP slot to the next fetch; `_handling` bounds how
            # many documents are parsed or waiting for a commit at once (memory).
            async with self._handling:
                async with self._global, self._host_limit(feed.url):
                    async with asyncio.timeout(self.settings.poller.timeout_s * 2):  # slow-drip servers
                        response = await fetch(client, feed.url, self.settings.poller, state.validators())
                result = await self._handle(feed, state, response)
        except FeedError as exc:
            result = FeedResult(feed.url, ok=False, status=getattr(exc, "status", None), error=str(exc))
            self._failed(feed, state, result, getattr(exc, "retry_after", None))
        except TimeoutError:
            result = FeedResult(feed.url, ok=False, error=f"timed out after {self.settings.poller.timeout_s * 2:g} s")
            self._failed(feed, state, result, None)
        except Exception as exc:  # a bug or a broker outage must not stop the other feeds
            log.exception("feed %s failed unexpectedly", feed.url)
            result = FeedResult(feed.url, ok=False, error=f"{type(exc).__name__}: {exc}")
            self._failed(feed, state, result, None)
        finally:
            self._in_flight.discard(fid)
        if not result.ok:
            self._publish(state)
        return result

    async def _handle(self, feed: FeedConfig, state: FeedState, response: Response) -> FeedResult:
        """A successful response: produce unseen items (304: nothing to do) and schedule the next poll."""
        now = now_s()
        max_age = cache_max_age(response.headers.get("cache-control"))
        if response.status == 304:
            result = FeedResult(feed.url, ok=True, status=304, not_modified=True)
            self.seen.record(result)
            self._succeeded(feed, state, response, new=0, ttl_s=None, max_age_s=max_age, now=now)
            self._publish(state)
            return result
        parsed = await asyncio.to_thread(  # CPU-bound: keep the event loop serving other feeds
            parse_feed,
            response.content,
            feed_url=feed.url,
            fetched_at=datetime.now(UTC),
            content_type=response.headers.get("content-type"),
            source=feed.name,
            base_url=response.final_url,
        )
        in_last_document = set(state.recent_ids)  # the previous poll's document, from the committed state
        fresh = [a for a in self.unseen_items(parsed.items) if a.id not in in_last_document]
        new = len(fresh)
        result = FeedResult(
            feed.url, ok=True, status=response.status, new_items=new, seen_items=len(parsed.items) - new
        )
        etag, last_modified = response.headers.get("etag"), response.headers.get("last-modified")
        after = copy.deepcopy(state)  # `state` stays as it was unless the transaction commits
        after.etag, after.last_modified = etag, last_modified  # a 200 without validators: none apply any more
        after.recent_ids = list(dict.fromkeys(a.id for a in parsed.items))[:MAX_RECENT_IDS]
        self._succeeded(feed, after, response, new=new, ttl_s=parsed.ttl_s, max_age_s=max_age, now=now)
        await self._commit(after, fresh)  # raises if aborted: the feed backs off and is polled again
        if feed.feed_id() in self._by_id:  # not removed while polling
            self.states[feed.feed_id()] = after
        self.seen.mark(a.id for a in fresh)
        self.seen.record(result, etag, last_modified)
        return result

    def _succeeded(
        self,
        feed: FeedConfig,
        state: FeedState,
        response: Response,
        *,
        new: int,
        ttl_s: float | None,
        max_age_s: float | None,
        now: float,
    ) -> None:
        bounds, cfg = self._bounds(feed), self.settings.poller
        record_new_items(state, new, now)
        max_age_s = min(max_age_s, cfg.retry_after_max_s) if max_age_s is not None else None
        interval = success_interval(state, bounds, got_new=new > 0, ttl_s=ttl_s, max_age_s=max_age_s, now=now)
        state.interval_s = interval
        state.next_due = now + jittered(interval, cfg.jitter, self.rng)
        state.status = response.status
        state.last_polled = state.last_success = now
        state.consecutive_errors = 0
        state.last_error = None
        if response.permanent_url and response.permanent_url != feed.url:
            self._moved(feed, state, response.permanent_url)

    def _failed(self, feed: FeedConfig, state: FeedState, result: FeedResult, retry_after: float | None) -> None:
        """Back off (or wait as long as the server asked, within limits); the feed stays scheduled."""
        now, bounds, cfg = now_s(), self._bounds(feed), self.settings.poller
        self.seen.record(result)
        state.consecutive_errors += 1
        state.status = result.status
        state.last_polled = state.last_error_at = now
        state.last_error = result.error
        if retry_after is not None:
            delay = min(max(retry_after, bounds.min_s), cfg.retry_after_max_s)
        else:
            delay = error_delay(state.consecutive_errors, bounds, self.rng)
        state.next_due = now + delay

    def _moved(self, feed: FeedConfig, state: FeedState, new_url: str) -> None:
        """A permanent redirect: from now on poll the new URL (same feed id, so state and registry key stay)."""
        log.info("feed %s moved permanently to %s", feed.url, new_url)
        moved = feed.model_copy(update={"url": new_url, "id": feed.feed_id()})
        self._by_id[feed.feed_id()] = moved
        state.url = new_url
        if self.on_moved is not None:
            self.on_moved(moved)

    async def _commit(self, state: FeedState, items: list[Article]) -> None:
        """Items and the state that says they were produced, in one transaction (blocks until committed)."""
        t = self.settings.kafka.topics
        records = [Record(t.articles, a.id, a.model_dump_json().encode()) for a in items]
        await asyncio.to_thread(self.outbox.send, [*records, self._state_record(state)])

    def _publish(self, state: FeedState) -> None:
        """A poll without items (304, failure): its state is advisory (schedule, backoff; a lost record costs one
        extra poll), so it rides along with the next transaction without waiting for it."""
        try:
            self.outbox.send([self._state_record(state)], wait=False)
        except Exception as exc:
            log.warning("cannot publish state of feed %s: %s", state.feed_id, exc)

    def _state_record(self, state: FeedState) -> Record:
        state.poller = self.poller_id
        return Record(self.settings.kafka.topics.feed_state, state.feed_id, json.dumps(state.to_json()).encode())

    def unseen_items(self, items: list[Article]) -> list[Article]:
        """Items not produced before (first occurrence wins when a feed repeats an id)."""
        fresh = self.seen.unseen([a.id for a in items])
        first: dict[str, Article] = {}
        for a in items:
            first.setdefault(a.id, a)
        return [a for a in first.values() if a.id in fresh]

    def status(self) -> dict[str, Any]:
        t = self.totals
        unhealthy = sum(1 for s in self.states.values() if not s.healthy)
        # Scheduled polling has no cycles (each feed is polled when due): say when the next poll is instead.
        timing: dict[str, Any] = {"cycles": t.cycles}
        if self._scheduled:
            due = self.queue.next_due()
            timing = {"next_poll_in_s": None if due is None else round(max(0.0, due - now_s()), 1)}
        return {
            "feeds": len(self._by_id),
            "unhealthy": unhealthy,
            **timing,
            "polled": t.polled,
            "failed": t.failed,
            "produced": t.produced,
            "failing_feeds": dict(list(t.last_errors.items())[:20]),
            "failing_kinds": failure_summary(t.last_errors),  # one line per kind of failure, for `newsflow run`
            **self.status_extra,
        }


def load_states(settings: Settings) -> dict[str, FeedState]:
    """Every feed's last committed state (`kafka.topics.feed_state`)."""
    return {k: FeedState.from_json(v) for k, v in bus.read_table(settings, settings.kafka.topics.feed_state).items()}


def static_transactional_id(settings: Settings) -> str:
    """A poller of the config file is the only user of its seen-store, so the store's path names it."""
    seen_db = settings.poller.seen_db or settings.stack.state_dir / "poller" / "seen.sqlite"
    digest = hashlib.sha1(str(Path(seen_db).resolve()).encode()).hexdigest()[:12]
    return f"{settings.poller.group_id}.static.{socket.gethostname()}.{digest}"


def run(settings: Settings, *, cycles: int | None = None) -> int:
    """`newsflow poller --static`: poll config/feeds.yaml until SIGINT/SIGTERM (or for `cycles` cycles),
    continuing from each feed's committed state."""
    bus.ensure_topics(settings)
    states = load_states(settings)
    poller = Poller(settings, [], transactional_id=static_transactional_id(settings))
    for feed in settings.feeds:
        poller.set_feed(feed, states.get(feed.feed_id()))
    if not poller.feeds:
        log.warning("no enabled feeds configured (config/feeds.yaml)")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, poller.stop)
        await poller.run(cycles=cycles)

    try:
        asyncio.run(main())
    finally:
        poller.close()
    return 0
