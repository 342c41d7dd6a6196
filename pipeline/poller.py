"""Poller: feeds over HTTP -> normalised Articles -> Kafka (`kafka.topics.articles`, key = article id).

At least once, never twice: an item is remembered as produced only after the broker acknowledged it (acks=all,
idempotent producer), and the seen-state lives in a local SQLite file that survives restarts and ages out.
Conditional GET (ETag / Last-Modified) keeps unchanged feeds cheap. A failing feed is reported, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from pipeline import bus, status
from pipeline.errors import FeedError
from pipeline.feeds import parse_feed
from pipeline.models import Article
from pipeline.settings import FeedConfig, Settings
from pipeline.urls import check_feed_url

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
HEARTBEAT_S = 5.0


@dataclass
class FeedResult:
    """What one poll of one feed did."""

    url: str
    ok: bool
    status: int | None = None
    new_items: int = 0
    seen_items: int = 0
    not_modified: bool = False
    error: str | None = None


@dataclass
class PollTotals:
    cycles: int = 0
    polled: int = 0
    failed: int = 0
    produced: int = 0
    last_errors: dict[str, str] = field(default_factory=dict)

    def add(self, results: Iterable[FeedResult]) -> None:
        for r in results:
            self.polled += 1
            self.produced += r.new_items
            if r.ok:
                self.last_errors.pop(r.url, None)
            else:
                self.failed += 1
                self.last_errors[r.url] = r.error or "failed"


class SeenStore:
    """Durable, bounded memory of produced item ids and per-feed validators (ETag / Last-Modified)."""

    def __init__(self, path: Path, ttl_days: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_days * 86400
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seen_at REAL NOT NULL)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS feeds (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT,"
            " status INTEGER, last_success REAL, last_error TEXT)"
        )
        self.db.commit()

    def unseen(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        known = {row[0] for row in self.db.execute(f"SELECT id FROM seen WHERE id IN ({marks})", ids)}
        return set(ids) - known

    def mark(self, ids: Iterable[str]) -> None:
        now = time.time()
        self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", [(i, now) for i in ids])
        self.db.commit()

    def expire(self) -> int:
        cur = self.db.execute("DELETE FROM seen WHERE seen_at < ?", (time.time() - self.ttl_s,))
        self.db.commit()
        return cur.rowcount

    def validators(self, url: str) -> dict[str, str]:
        row = self.db.execute("SELECT etag, last_modified FROM feeds WHERE url = ?", (url,)).fetchone()
        headers: dict[str, str] = {}
        if row and row[0]:
            headers["If-None-Match"] = row[0]
        if row and row[1]:
            headers["If-Modified-Since"] = row[1]
        return headers

    def record(self, result: FeedResult, etag: str | None = None, last_modified: str | None = None) -> None:
        now = time.time()
        if result.ok:
            self.db.execute(
                "INSERT INTO feeds (url, etag, last_modified, status, last_success, last_error)"
                " VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(url) DO UPDATE SET"
                " etag=COALESCE(excluded.etag, feeds.etag),"
                " last_modified=COALESCE(excluded.last_modified, feeds.last_modified),"
                " status=excluded.status, last_success=excluded.last_success, last_error=NULL",
                (result.url, etag, last_modified, result.status, now),
            )
        else:
            self.db.execute(
                "INSERT INTO feeds (url, status, last_error) VALUES (?, ?, ?) ON CONFLICT(url) DO UPDATE SET"
                " status=excluded.status, last_error=excluded.last_error",
                (result.url, result.status, result.error),
            )
        self.db.commit()

    def close(self) -> None:
        self.db.close()


@dataclass
class Response:
    status: int
    content: bytes
    final_url: str
    headers: httpx.Headers


class Poller:
    """Polls the configured feeds in cycles and produces new items to Kafka."""

    def __init__(self, settings: Settings, feeds: list[FeedConfig] | None = None) -> None:
        self.settings = settings
        self.feeds = [f for f in (feeds if feeds is not None else settings.feeds) if f.enabled]
        seen_db = settings.poller.seen_db or settings.stack.state_dir / "poller" / "seen.sqlite"
        self.seen = SeenStore(seen_db, settings.poller.seen_ttl_days)
        self.producer = bus.producer(settings, value_serializer=lambda a: a.model_dump_json().encode())
        self.totals = PollTotals()
        self._stop = asyncio.Event()

    def close(self) -> None:
        self.producer.close()
        self.seen.close()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, cycles: int | None = None) -> PollTotals:
        """Poll every `poller.interval_s` until stopped (or for `cycles` cycles)."""
        while not self._stop.is_set():
            await self.poll_once()
            if cycles is not None and self.totals.cycles >= cycles:
                break
            await self._sleep(self.settings.poller.interval_s)
        status.write("poller", {**self.status(), "state": "stopped"}, force=True)
        return self.totals

    async def _sleep(self, seconds: float) -> None:
        """Wait for the next cycle (or a stop), still reporting a heartbeat so `status` knows we're alive."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=min(left, HEARTBEAT_S))
            status.write("poller", {**self.status(), "state": "waiting for next cycle"})

    async def poll_once(self) -> list[FeedResult]:
        """One cycle over all feeds, at most `poller.concurrency` at a time."""
        limit = asyncio.Semaphore(self.settings.poller.concurrency)
        headers = {
            "User-Agent": self.settings.poller.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
        }
        async with httpx.AsyncClient(
            timeout=self.settings.poller.timeout_s, headers=headers, follow_redirects=False
        ) as client:

            async def guarded(feed: FeedConfig) -> FeedResult:
                async with limit:
                    return await self.poll_feed(client, feed)

            results = list(await asyncio.gather(*(guarded(f) for f in self.feeds)))
        self.seen.expire()
        self.totals.cycles += 1
        self.totals.add(results)
        for r in results:
            if not r.ok:
                log.warning("feed %s: %s", r.url, r.error)
        if self.feeds and all(not r.ok for r in results):
            log.warning("no feed could be polled this cycle (offline? every feed failed)")
        status.write("poller", self.status(), force=True)
        return results

    async def poll_feed(self, client: httpx.AsyncClient, feed: FeedConfig) -> FeedResult:
        """Fetch, parse and produce one feed; any failure becomes a FeedResult with a one-line error."""
        try:
            response = await self.fetch(client, feed.url)
            if response.status == 304:
                result = FeedResult(feed.url, ok=True, status=304, not_modified=True)
                self.seen.record(result)
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
            fresh = self.unseen_items(parsed.items)
            await asyncio.to_thread(self.produce, fresh)
            self.seen.mark(a.id for a in fresh)  # only after the broker acknowledged every one of them
            new = len(fresh)
            result = FeedResult(
                feed.url, ok=True, status=response.status, new_items=new, seen_items=len(parsed.items) - new
            )
            self.seen.record(result, response.headers.get("etag"), response.headers.get("last-modified"))
            return result
        except FeedError as exc:
            result = FeedResult(feed.url, ok=False, error=str(exc))
        except Exception as exc:  # a bug or a broker outage must not stop the other feeds
            log.exception("feed %s failed unexpectedly", feed.url)
            result = FeedResult(feed.url, ok=False, error=f"{type(exc).__name__}: {exc}")
        self.seen.record(result)
        return result

    async def fetch(self, client: httpx.AsyncClient, url: str) -> Response:
        """GET with conditional headers, URL safety on every redirect hop, and a size cap."""
        current, cfg = url, self.settings.poller
        try:
            for _ in range(MAX_REDIRECTS + 1):
                check_feed_url(current, cfg.allow_private_hosts)
                async with client.stream("GET", current, headers=self.seen.validators(url)) as resp:
                    if resp.is_redirect and resp.headers.get("location"):
                        current = urljoin(current, resp.headers["location"])
                        continue
                    if resp.status_code == 304:
                        return Response(304, b"", current, resp.headers)
                    if resp.status_code >= 400:
                        raise FeedError(f"HTTP {resp.status_code} {resp.reason_phrase} from {current}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > cfg.max_bytes:
                            raise FeedError(f"response larger than poller.max_bytes ({cfg.max_bytes} bytes)")
                    return Response(resp.status_code, bytes(body), current, resp.headers)
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot fetch {current}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        raise FeedError(f"more than {MAX_REDIRECTS} redirects from {url}")

    def unseen_items(self, items: list[Article]) -> list[Article]:
        """Items not produced before (first occurrence wins when a feed repeats an id)."""
        fresh = self.seen.unseen([a.id for a in items])
        first: dict[str, Article] = {}
        for a in items:
            first.setdefault(a.id, a)
        return [a for a in first.values() if a.id in fresh]

    def produce(self, items: list[Article]) -> None:
        """Produce and block until the broker acknowledged every record (acks=all)."""
        futures = [self.producer.send(self.settings.kafka.topics.articles, key=a.id, value=a) for a in items]
        self.producer.flush()
        for f in futures:
            f.get(timeout=self.settings.kafka.request_timeout_ms / 1000)

    def status(self) -> dict[str, Any]:
        t = self.totals
        return {
            "feeds": len(self.feeds),
            "cycles": t.cycles,
            "polled": t.polled,
            "failed": t.failed,
            "produced": t.produced,
            "failing_feeds": dict(list(t.last_errors.items())[:20]),
        }


def run(settings: Settings, *, cycles: int | None = None) -> int:
    """`newsflow poller`: poll until SIGINT/SIGTERM (or for `cycles` cycles)."""
    bus.ensure_topics(settings)
    poller = Poller(settings)
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
