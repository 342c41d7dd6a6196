"""Indexer: enriched articles from Kafka -> search engine, in bulk, at least once, idempotently.

A batch closes at `search.bulk_max_docs` records or `search.bulk_max_seconds` after its first record. Offsets
are committed only after every document of the batch is acknowledged by the search engine (or set aside in the
dead-letter topic, with the reason and the original message, for a reason that no retry can fix). Transient
failures (429, 5xx, timeouts, engine down, a bulk call that breaks off half-way) are retried for the failed
items only, with capped exponential backoff, for as long as it takes: a search engine outage pauses indexing,
it never loses or skips documents. Writes are idempotent (see `search/documents.py`), so a batch delivered
again after a crash or a consumer-group rebalance overwrites itself instead of doubling.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from pydantic import ValidationError

from pipeline import status
from pipeline.errors import first_problem
from pipeline.models import DeadLetter, EnrichedArticle, StoryMove, is_story_move
from pipeline.search import BulkOutcome, SearchBackend, connect
from pipeline.search.backend import describe_unreachable
from pipeline.search.bulk import BulkWriter, Item, Message, Prepared, StoryRevisions, Written
from pipeline.search.documents import bulk_actions, unindexable_reason
from pipeline.search.encoding import encode_action
from pipeline.settings import Settings
from pipeline.stream import bus
from pipeline.stream.batches import next_offsets

log = logging.getLogger(__name__)

# Tracked objects a batch allocates per article (model, entities, story, document, action), roughly: the
# collector's young generation is sized to a few batches of them (see `_collector_for_batches`).
_GC_OBJECTS_PER_ARTICLE = 100


@dataclass
class IndexerStats:
    batches: int = 0
    indexed: int = 0  # article documents acknowledged by the engine
    dead_letters: int = 0
    retries: int = 0
    uncommitted_batches: int = 0  # indexed, but the group rebalanced before the commit: they come again
    stale_snapshots_skipped: int = 0  # story snapshots older than one already acknowledged: not sent
    last_error: str | None = None
    started: float = field(default_factory=time.time)
    last_commit_at: float | None = None  # time.monotonic() of the last successful commit (benchmarks)


class Indexer:
    """Consumes `kafka.topics.enriched` and writes article + story documents."""

    def __init__(self, settings: Settings, backend: SearchBackend | None = None) -> None:
        self.settings = settings
        self.backend = backend or connect(settings.search)
        self.stats = IndexerStats()
        self._story_revisions = StoryRevisions(settings.indexer.story_revision_cache)
        self._stop = threading.Event()
        self._producer = bus.producer(settings)
        self.consumer = KafkaConsumer(
            settings.kafka.topics.enriched,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=settings.indexer.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # the assign stage writes in transactions
            max_poll_records=settings.search.bulk_max_docs,
            # Fewer, larger fetches: a round trip per partition per 1 MB (the default) starves the bulk writer.
            max_partition_fetch_bytes=8 * 1024 * 1024,
            max_poll_interval_ms=max(300_000, int(settings.search.retry_backoff_max_s * 4000)),
            client_id="newsflow-indexer",
        )

    def stop(self) -> None:
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self, *, idle_exit_s: float | None = None) -> IndexerStats:
        """Index until stopped (or, for tests and the demo, until nothing arrived for `idle_exit_s`).

        While the writer threads (`BulkWriter`, `search.bulk_concurrency` bulk requests in flight) wait on the
        engine, this thread fetches, parses, builds and encodes the next batch and hands it over. Finished
        batches are settled here (dead letters sent, offsets committed) in order, while later ones are being
        written; offsets are committed only after their documents are acknowledged, and never past a batch
        that failed.
        """
        started = time.monotonic()
        try:
            self._setup_indices()
            young = self.settings.search.bulk_max_docs * _GC_OBJECTS_PER_ARTICLE
            with _collector_for_batches(young):
                writer = BulkWriter(self._write, workers=self.settings.search.bulk_concurrency)
                try:
                    self._loop(writer, idle_exit_s, last_data=started)
                except BaseException:
                    self._stop.set()  # a writer retrying against a dead engine gives up, uncommitted
                    raise
                finally:
                    writer.close()
        except InterruptedError as exc:  # stopped while the engine was failing: the batch stays uncommitted
            log.warning("indexer stopped: %s", exc)
        finally:
            status.write("indexer", {**self._status(), "state": "stopped"}, force=True)
            self.consumer.close(autocommit=False)
            self._producer.close()
        return self.stats

    def _loop(self, writer: BulkWriter, idle_exit_s: float | None, last_data: float) -> None:
        """Feed the writer and settle what it finished until stopped or idle (nothing arrived for `idle_exit_s`
        since `last_data`); then settle what is left."""
        while not self._stop.is_set():
            # Settle what is finished; with `ahead` batches pending, wait for the oldest first.
            while (done := writer.next_done(block=writer.full)) is not None:
                self._settle(*done)
            # With a batch pending, take only what is already fetched: if nothing is, settle the oldest
            # batch first instead of holding its commit back for a whole poll timeout.
            batch = self._collect_batch(first_wait_ms=0 if writer.pending else None)
            if batch:
                prepared = self._prepare(batch)
                if prepared.moves:  # a move updates a document an earlier batch may still be writing
                    while (done := writer.next_done(block=True)) is not None:
                        self._settle(*done)
                writer.submit(batch, prepared)
                last_data = time.monotonic()
            elif (done := writer.next_done(block=True)) is not None:
                self._settle(*done)
            elif idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s:
                break
            status.write("indexer", self._status())
        while (done := writer.next_done(block=True)) is not None:
            self._settle(*done)

    def _setup_indices(self) -> None:
        """Templates must be in place before the first write; an engine that is still starting is waited for."""
        attempt = 0
        while True:
            try:
                self.backend.ensure_templates()
                return
            except Exception as exc:
                if describe_unreachable(exc) is None:
                    raise
                if self._stop.is_set():
                    raise InterruptedError("stopped before the search engine was reachable") from None
                attempt += 1
                self.stats.last_error = describe_unreachable(exc)
                log.warning("%s; retry %d in %.1fs", self.stats.last_error, attempt, self._backoff(attempt))
                self._stop.wait(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return min(self.settings.search.retry_backoff_max_s, self.settings.search.retry_backoff_s * 2**attempt)

    def _collect_batch(self, first_wait_ms: int | None = None) -> list[ConsumerRecord]:
        """Gather records until the batch is full or `bulk_max_seconds` has passed since the first one.
        Until a first record arrives, wait at most `first_wait_ms` (default `indexer.poll_timeout_ms`)."""
        records: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(records) < self.settings.search.bulk_max_docs and not self._stop.is_set():
            timeout = self.settings.indexer.poll_timeout_ms if first_wait_ms is None else first_wait_ms
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

    def _prepare(self, records: list[ConsumerRecord]) -> Prepared:
        """Parse messages, build bulk actions and encode them: the CPU work, done in the consumer's thread
        while the previous batch is being written, so the writer thread only waits on the engine."""
        topic = self.settings.kafka.topics.enriched
        parsed, dead = parse_batch(records, topic)
        articles = [m for _, m in parsed if isinstance(m, EnrichedArticle)]
        moves = [m for _, m in parsed if isinstance(m, StoryMove)]
        actions = bulk_actions(articles, self.settings.search.indices, moves)
        return Prepared(parsed, dead, [(a, encode_action(a)) for a in actions], len(moves))

    def _write(self, batch: Prepared) -> Written:
        """Bulk-write one batch, retrying transient failures. No Kafka calls: it runs in the writer thread."""
        topic = self.settings.kafka.topics.enriched
        items = self._story_revisions.drop_stale(batch.items)
        outcomes = self._write_with_retries(items)
        self._story_revisions.record(outcomes)
        rejected = [o for o in outcomes if not o.ok and not o.stale_version]
        dead = batch.dead + rejection_letters(rejected, batch.parsed, topic)
        stories = self.settings.search.indices.stories
        indexed = sum(1 for o in outcomes if o.ok and o.action["_index"] != stories and o.action["_op_type"] == "index")
        return Written(dead, indexed, stale_skipped=len(batch.items) - len(items))

    def _settle(self, records: list[ConsumerRecord], written: Written) -> None:
        """Dead letters first (acked by the broker), then the batch's offsets."""
        if written.dead:
            bus.send_dead_letters(self.settings, self._producer, written.dead)
            self.stats.dead_letters += len(written.dead)
            for d in written.dead:
                log.warning("dead-lettered a record: %s", d.reason)
        self._commit(records)
        self.stats.batches += 1
        self.stats.indexed += written.indexed
        self.stats.stale_snapshots_skipped += written.stale_skipped

    def _commit(self, records: list[ConsumerRecord]) -> None:
        """Commit the batch. If the group rebalanced meanwhile (a long outage outlasts `max.poll.interval.ms`),
        the commit is refused: the records come again, to this or another indexer, and overwrite themselves."""
        try:
            self.consumer.commit(offsets=next_offsets(records))
        except CommitFailedError as exc:
            self.stats.uncommitted_batches += 1
            log.warning("batch indexed but its offsets not committed (%s); it will be delivered again", exc)
            return
        self.stats.last_commit_at = time.monotonic()

    def _write_with_retries(self, items: list[Item]) -> list[BulkOutcome]:
        """Retry only the failed, retryable items until none is left; returns every item's final outcome."""
        pending, attempt = items, 0
        final: list[BulkOutcome] = []
        while pending:
            outcomes = self.backend.bulk([a for a, _ in pending], [line for _, line in pending])
            final.extend(o for o in outcomes if not o.retryable)
            pending = [item for item, o in zip(pending, outcomes, strict=True) if o.retryable]
            if not pending:
                break
            if self._stop.is_set():
                raise InterruptedError("stopped while the search engine was failing; batch not committed")
            attempt += 1
            self.stats.retries += 1
            delay = self._backoff(attempt)
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
        return final

    def _status(self) -> dict[str, Any]:
        return {
            "indexed": self.stats.indexed,
            "dead_letters": self.stats.dead_letters,
            "retries": self.stats.retries,
            "last_error": self.stats.last_error,
            "backend": self.backend.kind,
        }


@contextmanager
def _collector_for_batches(young_objects: int) -> Iterator[None]:
    """Keep Python's cycle collector from running dozens of times per batch.

    A batch allocates tens of thousands of short-lived objects (models, documents, actions) that hold no
    cycles and are freed by reference counting; with the default thresholds the collector still runs every
    700 allocations, promotes the batch in flight into older generations and rescans them, and its full
    collections walk every module and client object. That was a third of the indexer's CPU. So what is alive
    at start is frozen (never scanned), and the young generation is collected every `young_objects`
    allocations instead. Both are restored on exit; cycles, if any, are still collected, only less often.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], young_objects), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def parse_batch(
    records: list[ConsumerRecord], topic: str
) -> tuple[list[tuple[ConsumerRecord, Message]], list[DeadLetter]]:
    """Articles and story moves with their records (a document the engine rejects later is dead-lettered with
    its original bytes and position, not a re-serialisation); anything invalid becomes a dead letter."""
    parsed: list[tuple[ConsumerRecord, Message]] = []
    dead: list[DeadLetter] = []
    for r in records:
        kind = "story move" if r.value and is_story_move(r.value) else "enriched article"
        try:
            message: Message = (
                StoryMove.model_validate_json(r.value)
                if kind == "story move"
                else EnrichedArticle.model_validate_json(r.value)
            )
        except ValidationError as exc:
            field, msg = first_problem(exc)
            reason = f"invalid {kind}: {field}: {msg}"
            dead.append(
                bus.dead_letter("indexer", reason, r.value, topic=topic, partition=r.partition, offset=r.offset)
            )
            continue
        if isinstance(message, EnrichedArticle) and (problem := unindexable_reason(message)):
            reason = f"not indexable: {problem}"
            dead.append(
                bus.dead_letter("indexer", reason, r.value, topic=topic, partition=r.partition, offset=r.offset)
            )
        else:
            parsed.append((r, message))
    return parsed, dead


def rejection_letters(
    rejected: list[BulkOutcome], parsed: list[tuple[ConsumerRecord, Message]], topic: str
) -> list[DeadLetter]:
    """Dead letters for documents the engine refused for their content (mapping errors and the like).

    An article or a story move keeps its message bytes and position; a story snapshot or stub (built from
    several messages) keeps the document that was refused."""
    by_key = {("update", m.article_id) if isinstance(m, StoryMove) else ("index", m.id): r for r, m in parsed}
    letters: list[DeadLetter] = []
    for o in rejected:
        reason = f"rejected by search engine ({o.action['_index']}/{o.action['_id']}): {o.error}"
        key = (o.action.get("_op_type", "index"), o.action["_id"])
        record = by_key.get(key) if "version_type" not in o.action else None
        if record is None:
            letters.append(bus.dead_letter("indexer", reason, json.dumps(o.action.get("_source"), default=str)))
        else:
            letters.append(
                bus.dead_letter(
                    "indexer", reason, record.value, topic=topic, partition=record.partition, offset=record.offset
                )
            )
    return letters


def run(settings: Settings) -> int:
    """`newsflow indexer`: run until SIGINT/SIGTERM."""
    bus.ensure_topics(settings)
    indexer = Indexer(settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: indexer.stop())
    log.info("indexer: %s at %s -> %s", settings.kafka.topics.enriched, settings.search.url, indexer.backend.kind)
    indexer.run()
    return 0
