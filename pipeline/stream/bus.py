"""Kafka plumbing shared by the stages: topic setup, a durable producer, dead-letter records.

Every component uses kafka-python; the worker stages build their consumer loops on it (`pipeline/stream/loops.py`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError

from pipeline.errors import StackError
from pipeline.models import DeadLetter
from pipeline.settings import Settings

log = logging.getLogger(__name__)


COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}


def topic_layout(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic -> (partitions, config). `tagged` has ONE partition: story assignment is a single ordered stage;
    its changelog has as many (partition p holds the tables of tagged partition p). The feed registry and
    feed state are compacted tables keyed by feed id (`pipeline/ingest/registry.py`)."""
    t, n = settings.kafka.topics, settings.kafka.partitions
    return {
        t.articles: (n, {}),
        t.tagged: (1, {}),
        t.assign_state: (1, COMPACTED),
        t.enriched: (n, {}),
        t.deadletter: (1, {}),
        t.feeds: (settings.poller.registry_partitions, COMPACTED),
        t.feed_state: (settings.poller.registry_partitions, COMPACTED),
    }


def admin(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            client_id="newsflow-admin",
            request_timeout_ms=settings.kafka.request_timeout_ms,
        )
    except NoBrokersAvailable as exc:
        raise StackError(
            f"Kafka is not reachable at {settings.kafka.bootstrap_servers} ({exc.__class__.__name__}); "
            "start it with `newsflow stack up`"
        ) from None


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics (idempotent); returns the ones created."""
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        missing = [
            NewTopic(
                name, num_partitions=parts, replication_factor=settings.kafka.replication_factor, topic_configs=config
            )
            for name, (parts, config) in topic_layout(settings).items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race: fine
                client.create_topics(missing)
        return [t.name for t in missing]
    finally:
        client.close()


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that only reports success once every in-sync replica has the record (acks=all, idempotent)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2_147_483_647,
        "max_in_flight_requests_per_connection": 1,  # kafka-python's idempotent producer requires 1
        "linger_ms": 20,
        "request_timeout_ms": settings.kafka.request_timeout_ms,
        "key_serializer": lambda k: k.encode("utf-8") if isinstance(k, str) else k,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except NoBrokersAvailable as exc:
        raise StackError(
            f"Kafka is not reachable at {settings.kafka.bootstrap_servers} ({exc.__class__.__name__}); "
            "start it with `newsflow stack up`"
        ) from None


def dead_letter(
    stage: str,
    reason: str,
    payload: bytes | str | None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> DeadLetter:
    """Build the record that explains why a message was set aside, keeping its original bytes."""
    exact: str | None = None
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text, exact = payload.decode("utf-8", errors="replace"), base64.b64encode(payload).decode("ascii")
    else:
        text = payload or ""
    return DeadLetter(
        stage=stage,
        reason=reason[:2000],
        payload=text,
        payload_base64=exact,
        topic=topic,
        partition=partition,
        offset=offset,
    )


def send_dead_letters(settings: Settings, prod: KafkaProducer, records: Iterable[DeadLetter]) -> int:
    """Produce dead letters and wait for the broker's ack: a dead letter that is lost is data lost."""
    futures = [
        prod.send(settings.kafka.topics.deadletter, key=r.stage, value=r.model_dump_json().encode()) for r in records
    ]
    for f in futures:
        f.get(timeout=settings.kafka.request_timeout_ms / 1000)
    return len(futures)


def reader(settings: Settings) -> KafkaConsumer:
    """A consumer of no group that sees only committed transactions, for reading a topic from its start."""
    return KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        request_timeout_ms=settings.kafka.request_timeout_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


def records_to_end(consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float) -> Iterator[Any]:
    """Every record of `tps` from the start to the end offsets as they are now (read_committed: the last stable
    offset), partition by partition in the order polled. StackError if that takes over `timeout_s`."""
    if not tps:
        return
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if time.monotonic() > deadline:
            at = {tp.partition: f"{consumer.position(tp)}/{end[tp]}" for tp in tps}
            raise StackError(f"reading {tps[0].topic} took over {timeout_s:.0f}s (at {at}); is Kafka overloaded?")
        for tp, records in consumer.poll(timeout_ms=500).items():
            yield from (r for r in records if r.offset < end[tp])


def partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]


def read_table(settings: Settings, topic: str, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """The latest committed JSON value per key of a compacted topic (tombstones remove the key), read to its
    current end; unreadable records are skipped with a warning."""
    consumer = reader(settings)
    try:
        table: dict[str, dict[str, Any]] = {}
        for r in records_to_end(consumer, partitions(consumer, topic), timeout_s):
            _apply(table, r.key, r.value)
        return table
    finally:
        consumer.close()


def _apply(table: dict[str, dict[str, Any]], key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    k = key.decode("utf-8", errors="replace")
    if value is None:
        table.pop(k, None)
        return
    try:
        table[k] = json.loads(value)
    except ValueError:
        log.warning("skipping unreadable record %s", k)
