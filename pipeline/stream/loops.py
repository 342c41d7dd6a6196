"""Consumer loops that run a stage with a delivery guarantee (kafka-python, one thread each).

Why not Faust: faust-streaming's consumer marks offsets it never delivered to an agent as processed. When the
fetch position jumps past the offset it last handed out (it does after a restart, when records fetched during
table recovery are dropped and the seek back to the committed offset races the fetcher), `_drain_messages`
records the skipped range as a "gap", and gaps count as acknowledged: the next commit moves past articles that
were never tagged (measured: 290 of 2,400 articles lost after one SIGKILL, lag 0). Here a rebalance can only
happen inside `poll`, between batches, and each loop commits exactly the records it handled.

- `AtLeastOnceLoop` (tagging): handle a batch, send the outputs, wait until the broker acknowledged every one
  (acks=all), then commit the batch's offsets. A crash before the commit repeats the batch; that is harmless
  because tagging is pure and the assign stage answers a replayed article from its records.
- `TransactionalLoop` (assignment): outputs, the stage's table changes and the input offsets go in one Kafka
  transaction per batch, so they become visible together or not at all. The transactional id belongs to the
  input partition: whoever takes the partition over fences the previous owner (a paused "zombie" can no longer
  commit) before it restores the tables from the changelog and resumes from the committed offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError

from pipeline.settings import Settings
from pipeline.stream import bus
from pipeline.stream.batches import collect, next_offsets
from pipeline.stream.codec import Output, StageResult
from pipeline.stream.state import ChangelogState, restore

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str

    def handle(self, records: list[ConsumerRecord]) -> StageResult: ...


class StatefulStage(Stage, Protocol):
    def bind(self, state: ChangelogState | None) -> None: ...

    def upkeep_due(self) -> bool: ...

    def upkeep(self) -> StageResult: ...


@dataclass
class LoopStats:
    batches: int = 0
    processed: int = 0  # messages the stage handled, replays included
    dead_letters: int = 0
    retries: int = 0  # batches given up on an error and done again
    restores: int = 0  # state restored from the changelog (partition assigned, or after an aborted transaction)
    last_error: str | None = None


def consumer(settings: Settings, source: str, group: str, *, max_records: int, **extra: Any) -> KafkaConsumer:
    """A group member that commits only by hand and reads only committed transactions."""
    session_ms = int(settings.worker.session_timeout_s * 1000)
    return KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=group,
        client_id=f"newsflow-{group}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=max_records,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=session_ms // 5,
        request_timeout_ms=settings.kafka.request_timeout_ms,
        **extra,
    )


class _Loop:
    """What both loops share: the stop flag, batching, backoff and the thread they run in."""

    def __init__(self, settings: Settings, name: str, *, batch_size: int, window_s: float) -> None:
        self.settings = settings
        self.name = name
        self.batch_size = batch_size
        self.window_s = window_s
        self.stats = LoopStats()
        self._failing = 0  # failures in a row: the backoff grows with these, and starts over after a success
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None  # set when the loop died; the worker exits non-zero
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=f"stage-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.failure = exc
            log.exception("%s stage stopped on an error", self.name)

    def run(self) -> None:
        raise NotImplementedError

    def _collect(self, kafka: KafkaConsumer) -> list[ConsumerRecord]:
        first_wait_ms = int(self.settings.worker.poll_timeout_s * 1000)
        return collect(kafka, self.batch_size, self.window_s, first_wait_ms, self.stop_event)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Count, log once in words, and wait a little before the batch is done again (never skipped)."""
        self.stats.retries += 1
        self._failing += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s stage: %s failed (%s); doing it again", self.name, what, self.stats.last_error)
        w = self.settings.worker
        self.stop_event.wait(min(w.retry_backoff_max_s, w.retry_backoff_s * 2 ** min(self._failing - 1, 16)))


class AtLeastOnceLoop(_Loop):
    """Consume `source` in `group`; per batch: handle, send, wait for every ack, commit."""

    def __init__(self, settings: Settings, stage: Stage, *, source: str, group: str, batch_size: int) -> None:
        super().__init__(settings, stage.name, batch_size=batch_size, window_s=settings.worker.tag_batch_window_s)
        self.stage, self.source, self.group = stage, source, group

    def run(self) -> None:
        kafka = consumer(self.settings, self.source, self.group, max_records=self.batch_size)
        producer = bus.producer(self.settings)
        kafka.subscribe([self.source])
        try:
            while not self.stop_event.is_set():
                records = self._collect(kafka)
                if records:
                    self._process(kafka, producer, records)
        finally:
            producer.close(timeout=10)
            kafka.close(autocommit=False)

    def _process(self, kafka: KafkaConsumer, producer: KafkaProducer, records: list[ConsumerRecord]) -> None:
        try:
            result = self.stage.handle(records)
            sent = [producer.send(o.topic, key=o.key, value=o.value) for o in result.outputs]
            sent += [producer.send(t, key=k, value=v) for t, k, v in _dead_letter_records(self.settings, result)]
            producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
            for future in sent:
                future.get(timeout=0)  # raises if the broker did not acknowledge it
        except Exception as exc:  # not committed: this batch is handled again from its first offset
            _rewind(kafka, records)
            self._failed("a batch", exc)
            return
        try:
            kafka.commit(offsets=next_offsets(records))
        except CommitFailedError as exc:  # the group rebalanced meanwhile: another member does it again
            log.info("%s stage: batch handled but not committed (%s); it will be delivered again", self.name, exc)
        except KafkaError as exc:  # coordinator moved or unreachable: do the batch again (outputs repeat, harmless)
            _rewind(kafka, records)
            self._failed("a commit", exc)
            return
        self.stats.batches += 1
        self._failing = 0
        self.stats.processed += result.processed
        self.stats.dead_letters += len(result.dead)


@dataclass
class _Owned:
    """A partition this worker owns in the transactional stage: its producer, tables and stage."""

    producer: KafkaProducer
    state: ChangelogState
    stage: StatefulStage

    def close(self) -> None:
        self.stage.bind(None)
        self.producer.close(timeout=5)


class TransactionalLoop(_Loop):
    """Consume `source` in `group`; per batch one transaction: outputs + state changes + input offsets."""

    def __init__(
        self,
        settings: Settings,
        make_stage: Callable[[], StatefulStage],
        *,
        name: str,
        source: str,
        group: str,
        state_topic: str,
        batch_size: int,
    ) -> None:
        super().__init__(settings, name, batch_size=batch_size, window_s=settings.worker.tag_batch_window_s)
        self.make_stage, self.source, self.group, self.state_topic = make_stage, source, group, state_topic
        self.owned: dict[TopicPartition, _Owned] = {}

    def run(self) -> None:
        restore_s = self.settings.worker.restore_timeout_s
        kafka = consumer(
            self.settings,
            self.source,
            self.group,
            max_records=self.batch_size,
            max_poll_interval_ms=int(max(300.0, 2 * restore_s) * 1000),  # a restore happens between two polls
        )
        loop = self

        class Revoke(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                for tp in revoked:  # called inside poll: never in the middle of a transaction
                    if (owned := loop.owned.pop(tp, None)) is not None:
                        owned.close()

            def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                pass  # set up lazily by the loop, after poll returns

        kafka.subscribe([self.source], listener=Revoke())
        try:
            while not self.stop_event.is_set():
                records = self._collect(kafka)
                fresh = self._own_assigned(kafka)
                by_tp: dict[TopicPartition, list[ConsumerRecord]] = {}
                for r in records:
                    tp = TopicPartition(r.topic, r.partition)
                    if tp in self.owned and tp not in fresh:  # a fresh owner re-reads from the committed offset
                        by_tp.setdefault(tp, []).append(r)
                for tp, owned in list(self.owned.items()):
                    batch = by_tp.get(tp, [])
                    if batch or owned.stage.upkeep_due():
                        self._transaction(kafka, tp, owned, batch)
        finally:
            for owned in self.owned.values():
                owned.close()
            self.owned.clear()
            kafka.close(autocommit=False)

    def _own_assigned(self, kafka: KafkaConsumer) -> set[TopicPartition]:
        """Set up every assigned partition not set up yet; returns those set up now."""
        fresh: set[TopicPartition] = set()
        for tp in kafka.assignment():
            if tp in self.owned:
                continue
            try:
                self.owned[tp] = self._take_over(kafka, tp)
                fresh.add(tp)
            except KafkaError as exc:
                self._failed(f"taking over {tp.topic}[{tp.partition}]", exc)
        return fresh

    def _take_over(self, kafka: KafkaConsumer, tp: TopicPartition) -> _Owned:
        """Fence the previous owner, restore the tables, resume from the committed offset: in this order, so
        the tables and the offset are those of the same, last committed, transaction."""
        started = time.monotonic()
        producer = bus.producer(self.settings, transactional_id=f"{self.group}.{tp.partition}")
        try:
            producer.init_transactions()
            reader = bus.reader(self.settings)
            try:
                state = restore(
                    reader, TopicPartition(self.state_topic, tp.partition), self.settings.worker.restore_timeout_s
                )
            finally:
                reader.close()
            committed = kafka.committed(tp)
        except BaseException:
            producer.close(timeout=0)
            raise
        if committed is None:
            kafka.seek_to_beginning(tp)
        else:
            kafka.seek(tp, committed)
        stage = self.make_stage()
        stage.bind(state)
        self.stats.restores += 1
        log.info(
            "%s stage: took over %s[%d] at offset %s in %.1fs",
            self.name,
            tp.topic,
            tp.partition,
            committed,
            time.monotonic() - started,
        )
        return _Owned(producer, state, stage)

    def _transaction(
        self, kafka: KafkaConsumer, tp: TopicPartition, owned: _Owned, records: list[ConsumerRecord]
    ) -> None:
        producer = owned.producer
        try:
            producer.begin_transaction()
            result = owned.stage.handle(records) if records else StageResult()
            if owned.stage.upkeep_due():
                result.outputs.extend(owned.stage.upkeep().outputs)
            for key, value in owned.state.changes():
                producer.send(self.state_topic, key=key, value=value, partition=tp.partition)
            for o in result.outputs:
                producer.send(o.topic, key=o.key, value=o.value)
            for topic, key, value in _dead_letter_records(self.settings, result):
                producer.send(topic, key=key, value=value)
            if records:
                producer.send_offsets_to_transaction(next_offsets(records), self.group)
            producer.commit_transaction()
        except Exception as exc:
            # The tables now hold changes that were never committed: start over from the changelog.
            self.owned.pop(tp, None)
            try:
                producer.abort_transaction()
            except Exception:  # fenced or broker gone: the transaction is aborted by the broker anyway
                log.debug("abort failed", exc_info=True)
            owned.close()
            self._failed(f"a transaction on {tp.topic}[{tp.partition}]", exc)
            return
        owned.state.clear_changes()
        self.stats.batches += 1
        self._failing = 0
        self.stats.processed += result.processed
        self.stats.dead_letters += len(result.dead)


def _rewind(kafka: KafkaConsumer, records: list[ConsumerRecord]) -> None:
    """Seek each partition of a batch back to its first record, so the batch is fetched again."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    for tp, offset in first.items():
        if tp in kafka.assignment():
            kafka.seek(tp, offset)


def _dead_letter_records(settings: Settings, result: StageResult) -> list[tuple[str, bytes, bytes]]:
    for d in result.dead:
        log.warning("dead letter from %s: %s", d.stage, d.reason)
    return [(settings.kafka.topics.deadletter, d.stage.encode(), d.model_dump_json().encode()) for d in result.dead]


__all__ = ["AtLeastOnceLoop", "LoopStats", "Output", "StageResult", "TransactionalLoop"]
