"""Indexer: enriched articles from Kafka -> search engine, in bulk, at least once, idempotently.

Offsets are committed only after every document of the batch is acknowledged by the search engine (or set
aside in the dead-letter topic for a reason that no retry can fix). Transient failures (429, 5xx, timeouts,
engine down) are retried item by item with capped exponential backoff, for as long as it takes: a search engine
outage pauses indexing, it never loses or skips documents.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from pipeline import bus, status
from pipeline.models import DeadLetter, EnrichedArticle
from pipeline.search import BulkOutcome, SearchBackend, connect
from pipeline.search.documents import bulk_actions
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IndexerStats:
    batches: int = 0
    indexed: int = 0
    dead_letters: int = 0
    retries: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.time)


class Indexer:
    """Consumes `kafka.topics.enriched` and writes article + story documents."""

    def __init__(self, settings: Settings, backend: SearchBackend | None = None) -> None:
        self.settings = settings
        self.backend = backend or connect(settings.search)
        self.stats = IndexerStats()
        self._stop = threading.Event()
        self._producer = bus.producer(settings)
        self.consumer = KafkaConsumer(
            settings.kafka.topics.enriched,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=settings.indexer.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.search.bulk_max_docs,
            max_poll_interval_ms=max(300_000, int(settings.search.retry_backoff_max_s * 4000)),
            client_id="newsflow-indexer",
        )

    def stop(self) -> None:
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self, *, idle_exit_s: float | None = None) -> IndexerStats:
        """Index until stopped (or, for tests and the demo, until nothing arrived for `idle_exit_s`)."""
        self.backend.ensure_templates()
        last_data = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._collect_batch()
                if batch:
                    self.index_batch(batch)
                    last_data = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s:
                    break
                status.write("indexer", self._status())
        finally:
            status.write("indexer", {**self._status(), "state": "stopped"}, force=True)
            self.consumer.close(autocommit=False)
            self._producer.close()
        return self.stats

    def _collect_batch(self) -> list[ConsumerRecord]:
        """Gather records until the batch is full or `bulk_max_seconds` has passed since the first one."""
        records: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(records) < self.settings.search.bulk_max_docs and not self._stop.is_set():
            timeout = self.settings.indexer.poll_timeout_ms
            if deadline is not None:
                timeout = max(0, int((deadline - time.monotonic()) * 1000))
            polled = self.consumer.poll(
                timeout_ms=timeout, max_records=self.settings.search.bulk_max_docs - len(records)
            )
            for part in polled.values():
                records.extend(part)
            if records and deadline is None:
                deadline = time.monotonic() + self.settings.search.bulk_max_seconds
            if not polled and (not records or time.monotonic() >= (deadline or 0)):
                break
        return records

    def index_batch(self, records: list[ConsumerRecord]) -> None:
        """Parse, bulk-write with retries, dead-letter the unfixable, then commit the batch's offsets."""
        articles, dead = parse_records(records, self.settings.kafka.topics.enriched)
        actions = bulk_actions(articles, self.settings.search.indices)
        rejected = self._write_with_retries(actions)
        dead.extend(
            bus.dead_letter("indexer", f"rejected by search engine: {o.error}", str(o.action.get("_source")))
            for o in rejected
        )
        if dead:
            bus.send_dead_letters(self.settings, self._producer, dead)
            self.stats.dead_letters += len(dead)
            for d in dead:
                log.warning("dead-lettered a record: %s", d.reason)
        self.consumer.commit(offsets=commit_offsets(records))
        self.stats.batches += 1
        self.stats.indexed += sum(1 for a in actions if a["_index"] == self.settings.search.indices.articles) - sum(
            1 for o in rejected if o.action["_index"] == self.settings.search.indices.articles
        )

    def _write_with_retries(self, actions: list[dict[str, Any]]) -> list[BulkOutcome]:
        """Retry only the failed, retryable items; returns the items rejected for their content."""
        pending, attempt = actions, 0
        rejected: list[BulkOutcome] = []
        while pending:
            outcomes = self.backend.bulk(pending)
            rejected.extend(o for o in outcomes if not o.ok and not o.retryable and not o.stale_version)
            pending = [o.action for o in outcomes if o.retryable]
            if not pending:
                break
            if self._stop.is_set():
                raise InterruptedError("stopped while the search engine was failing; batch not committed")
            attempt += 1
            self.stats.retries += 1
            delay = min(self.settings.search.retry_backoff_max_s, self.settings.search.retry_backoff_s * 2**attempt)
            self.stats.last_error = next(o.error for o in outcomes if o.retryable)
            log.warning(
                "search engine: %d item(s) failed (%s); retry %d in %.1fs",
                len(pending),
                self.stats.last_error,
                attempt,
                delay,
            )
            status.write("indexer", self._status())
            self._stop.wait(delay)
        return rejected

    def _status(self) -> dict[str, Any]:
        return {
            "indexed": self.stats.indexed,
            "dead_letters": self.stats.dead_letters,
            "retries": self.stats.retries,
            "last_error": self.stats.last_error,
            "backend": self.backend.kind,
        }


def parse_records(records: list[ConsumerRecord], topic: str) -> tuple[list[EnrichedArticle], list[DeadLetter]]:
    """Valid messages become articles; anything else becomes a dead letter saying why."""
    articles: list[EnrichedArticle] = []
    dead: list[DeadLetter] = []
    for r in records:
        try:
            articles.append(EnrichedArticle.model_validate_json(r.value))
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = f"invalid enriched article: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            dead.append(
                bus.dead_letter("indexer", reason, r.value, topic=topic, partition=r.partition, offset=r.offset)
            )
    return articles, dead


def commit_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, Any]:
    """Next offset to read per partition (Kafka commits the position *after* the last processed record)."""
    from kafka.structs import OffsetAndMetadata

    highest: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        highest[tp] = max(highest.get(tp, -1), r.offset)
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in highest.items()}


def run(settings: Settings) -> int:
    """`newsflow indexer`: run until SIGINT/SIGTERM."""
    bus.ensure_topics(settings)
    indexer = Indexer(settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: indexer.stop())
    log.info("indexer: %s at %s -> %s", settings.kafka.topics.enriched, settings.search.url, indexer.backend.kind)
    indexer.run()
    return 0
