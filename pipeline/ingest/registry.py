"""The feed registry and per-feed poll state, on two compacted Kafka topics, and the scale-out poller.

- `kafka.topics.feeds` (compacted): key = feed id, value = FeedConfig JSON, tombstone = removed. Seeded from
  `config/feeds.yaml` when empty; `newsflow feeds add|remove|import` write to it. Every poller reads it.
- `kafka.topics.feed_state` (compacted): key = feed id, value = FeedState JSON (validators, interval, next due
  time, health, recent item ids). Pollers keep no state of their own beyond the bounded seen-store, so any
  poller can continue any feed.

Scale-out: every poller consumes the registry topic in one consumer group (`poller.group_id`). Kafka assigns
each partition to exactly one live member, so the feeds split without overlap; when a poller dies its session
times out and its partitions (hence feeds) are assigned to the survivors. On assignment a poller re-reads its
partitions from the beginning (the compacted topic is the whole registry) and the state topic for where the
previous owner left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from pydantic import ValidationError

from pipeline.errors import StackError, first_problem
from pipeline.ingest.poller import Poller, load_states
from pipeline.ingest.schedule import FeedState
from pipeline.ingest.text import one_line
from pipeline.settings import FeedConfig, Settings
from pipeline.stream import bus

log = logging.getLogger(__name__)


def feed_of(value: dict[str, Any]) -> FeedConfig | None:
    """A registry record as a feed, or None (one warning line) for one that is not a valid feed, e.g. a URL
    written before URLs were checked at the door: it is never polled (`newsflow feeds remove ID` drops it)."""
    try:
        return FeedConfig.model_validate(value)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        which = value.get("id") or value.get("url") if isinstance(value, dict) else None
        log.warning("skipping invalid feed record %s: %s: %s", which, where, problem.removeprefix("Value error, "))
        return None


class RegistryWriteFailed(StackError):
    """The broker did not acknowledge a registry write: nothing may be reported as done."""


class Registry:
    """Writes to the registry and state topics (one producer; acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = bus.producer(settings)

    @property
    def _timeout_s(self) -> float:
        return self.settings.kafka.request_timeout_ms / 1000

    def put_feed(self, feed: FeedConfig) -> None:
        """Write a feed under its stable id, without waiting (the poller's 301 updates; `put_feeds` waits)."""
        self._send_feed(feed)

    def put_feeds(self, feeds: Iterable[FeedConfig]) -> int:
        """Write feeds and wait until the broker acknowledged every one (acks=all); RegistryWriteFailed (one
        line) otherwise, so nobody is told a feed was added that is not in the registry."""
        sent = [(feed.feed_id(), self._send_feed(feed)) for feed in feeds]
        for fid, future in sent:
            self._confirm(future, f"feed {fid}")
        return len(sent)

    def _send_feed(self, feed: FeedConfig) -> Any:
        fid = feed.feed_id()
        value = feed.model_copy(update={"id": fid}).model_dump_json(exclude_none=True).encode()
        try:
            return self.producer.send(self.settings.kafka.topics.feeds, key=fid, value=value)
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            raise RegistryWriteFailed(self._failed(f"feed {fid}", exc)) from None

    def _confirm(self, future: Any, what: str) -> None:
        try:
            future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise RegistryWriteFailed(self._failed(what, exc)) from None

    def _failed(self, what: str, exc: Exception) -> str:
        topic = self.settings.kafka.topics.feeds
        detail = one_line(f"{type(exc).__name__}: {exc}".rstrip(": "))
        return f"the feed registry ({topic} at {self.settings.kafka.bootstrap_servers}) did not take {what}: {detail}"

    def remove_feed(self, feed_id: str) -> None:
        """Tombstones on both topics: compaction then forgets the feed entirely."""
        t = self.settings.kafka.topics
        for topic in (t.feeds, t.feed_state):
            self._confirm(self.producer.send(topic, key=feed_id, value=None), f"the removal of feed {feed_id}")

    def close(self) -> None:
        """Flush what is still unsent (the poller's moves), bounded: a broker that is gone cannot hold exit."""
        with contextlib.suppress(KafkaError):
            self.producer.flush(timeout=self._timeout_s)
        self.producer.close(timeout=self._timeout_s)


def feed_records(settings: Settings) -> dict[str, dict[str, Any]]:
    """The registry as stored: feed id -> record, valid or not."""
    return bus.read_table(settings, settings.kafka.topics.feeds)


def load_feeds(settings: Settings) -> dict[str, FeedConfig]:
    return {k: f for k, v in feed_records(settings).items() if (f := feed_of(v))}


def seed_if_empty(settings: Settings, feeds: Iterable[FeedConfig]) -> int:
    """Put `config/feeds.yaml` into an empty registry (later the registry, not the file, is the truth)."""
    bus.ensure_topics(settings)
    if load_feeds(settings):
        return 0
    return add_feeds(settings, feeds)


def add_feeds(settings: Settings, feeds: Iterable[FeedConfig]) -> int:
    """Add or update feeds (keyed by id) and wait for the broker's ack of each; returns how many were written.
    Raises RegistryWriteFailed (one line) if any write was not acknowledged."""
    reg = Registry(settings)
    try:
        return reg.put_feeds(feeds)
    finally:
        reg.close()


# ---------------------------------------------------------------------------------------------------------
# Scale-out: the consumer-group assignment drives which feeds this poller polls
# ---------------------------------------------------------------------------------------------------------

Event = tuple[str, Any]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Assignment) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.owner.emit(("revoke", {tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            self.owner.consumer.seek_to_beginning(*assigned)  # the compacted topic is the whole registry
        self.owner.newly_assigned = {tp.partition for tp in assigned}


class Assignment(threading.Thread):
    """A thread owning the group consumer of the registry topic (kafka-python is synchronous); it hands
    events to the poller's event loop: revoke(partitions), assign(partitions, states), feed(partition, ...)."""

    def __init__(self, settings: Settings, emit: Callable[[Event], None]) -> None:
        super().__init__(name="registry-assignment", daemon=True)
        self.settings = settings
        self.emit = emit
        self.newly_assigned: set[int] | None = None
        self._halt = threading.Event()  # not `_stop`: Thread.join() calls its own _stop()
        cfg = settings.poller
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=cfg.group_id,
            enable_auto_commit=False,  # we always re-read from the beginning; offsets mean nothing here
            auto_offset_reset="earliest",
            session_timeout_ms=int(cfg.session_timeout_s * 1000),
            heartbeat_interval_ms=max(1000, int(cfg.session_timeout_s * 1000 / 3)),
            request_timeout_ms=max(settings.kafka.request_timeout_ms, int(cfg.session_timeout_s * 1000) + 5000),
        )
        self.consumer.subscribe([settings.kafka.topics.feeds], listener=_Listener(self))

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                batches = self.consumer.poll(timeout_ms=500)
                if self.newly_assigned is not None and not self._announce(self.newly_assigned):
                    continue  # states unreadable: the partitions were rewound, this batch comes again
                for tp, records in batches.items():
                    for r in records:
                        self._forward(tp.partition, r.key, r.value)
            except Exception as exc:  # a broker hiccup: keep the group membership alive and retry
                log.warning("registry consumer: %s: %s", type(exc).__name__, exc)
                self._halt.wait(1.0)
        with contextlib.suppress(Exception):
            self.consumer.close()

    def _announce(self, assigned: set[int]) -> bool:
        """Tell the poller its new partitions with the state their feeds were left in (read before any feed
        record is forwarded, so a taken-over feed continues with its validators and backoff)."""
        try:
            states = load_states(self.settings) if assigned else {}
        except Exception as exc:
            log.warning("cannot read feed states (%s); retrying", exc)
            topic = self.settings.kafka.topics.feeds
            self.consumer.seek_to_beginning(*[TopicPartition(topic, p) for p in assigned])
            self._halt.wait(1.0)
            return False
        self.newly_assigned = None
        self.emit(("assign", (assigned, states)))
        return True

    def _forward(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """One registry record to the poller; an unreadable one is skipped (never stops the others)."""
        if key is None:
            return
        try:
            data = json.loads(value) if value is not None else None
        except ValueError:
            log.warning("skipping unreadable registry record %r", key)
            return
        self.emit(("feed", (partition, key.decode("utf-8", errors="replace"), data)))

    def stop(self) -> None:
        self._halt.set()


class ScaledPoller:
    """A Poller whose feed set follows this process's share of the registry partitions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings)
        self.poller = Poller(settings, [], on_moved=self.registry.put_feed)
        self.partition_of: dict[str, int] = {}
        self.states: dict[str, FeedState] = {}
        self.owned: set[int] = set()

    def apply(self, event: Event) -> None:
        """Runs on the event loop: keep the poller's feeds equal to the feeds of the owned partitions."""
        kind, data = event
        if kind == "revoke":
            for fid, part in list(self.partition_of.items()):
                if part in data:
                    self.poller.remove_feed(fid)
                    del self.partition_of[fid]
            self.owned -= data
        elif kind == "assign":
            self.owned, self.states = set(data[0]), data[1]
            self.poller.status_extra = {"partitions": sorted(self.owned), "poller_id": self.poller.poller_id}
            log.info("poller %s owns registry partitions %s", self.poller.poller_id, sorted(self.owned))
        elif kind == "feed":
            part, fid, value = data
            if part not in self.owned:
                return
            feed = feed_of(value) if value is not None else None
            if feed is None or not feed.enabled:
                self.poller.remove_feed(fid)
                self.partition_of.pop(fid, None)
                return
            self.partition_of[fid] = part
            self.poller.set_feed(feed.model_copy(update={"id": fid}), self.states.pop(fid, None))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(self.apply, event)

        assignment = Assignment(self.settings, emit)
        assignment.start()
        try:
            await self.poller.run()
        finally:
            assignment.stop()
            await asyncio.to_thread(assignment.join, 15)

    def close(self) -> None:
        self.poller.close()
        self.registry.close()


def run(settings: Settings, *, once: bool = False) -> int:
    """`newsflow poller`: seed the registry if empty, then poll this process's share of it until stopped
    (`--once`: every registry feed once, from this process, without joining the group)."""
    bus.ensure_topics(settings)
    seeded = seed_if_empty(settings, settings.feeds)
    if seeded:
        log.info("seeded the feed registry with %d feeds from config/feeds.yaml", seeded)
    if once:
        return _run_once(settings)
    scaled = ScaledPoller(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, scaled.poller.stop)
        await scaled.run()

    try:
        asyncio.run(main())
    finally:
        scaled.close()
    return 0


def _run_once(settings: Settings) -> int:
    feeds, states = load_feeds(settings), load_states(settings)
    registry = Registry(settings)
    poller = Poller(settings, [], on_moved=registry.put_feed)
    for fid, feed in feeds.items():
        poller.set_feed(feed.model_copy(update={"id": fid}), states.get(fid))
    if not poller.feeds:
        log.warning("the feed registry has no enabled feeds (newsflow feeds add URL)")
    try:
        asyncio.run(poller.run(cycles=1))
    finally:
        poller.close()
        registry.close()
    return 0
