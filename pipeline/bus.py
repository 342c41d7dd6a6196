"""Kafka plumbing shared by the stages: topic setup, a durable producer, dead-letter records.

The Faust worker has its own aiokafka clients; everything else (poller, indexer, CLI) uses kafka-python here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError

from pipeline.errors import StackError
from pipeline.models import DeadLetter
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def topic_layout(settings: Settings) -> dict[str, int]:
    """Topic -> partitions. `tagged` has ONE partition: story assignment is a single ordered stage."""
    t, n = settings.kafka.topics, settings.kafka.partitions
    return {t.articles: n, t.tagged: 1, t.enriched: n, t.deadletter: 1}


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
            NewTopic(name, num_partitions=parts, replication_factor=settings.kafka.replication_factor)
            for name, parts in topic_layout(settings).items()
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
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else (payload or "")
    return DeadLetter(stage=stage, reason=reason[:2000], payload=text, topic=topic, partition=partition, offset=offset)


def send_dead_letters(settings: Settings, prod: KafkaProducer, records: Iterable[DeadLetter]) -> int:
    """Produce dead letters and wait for the broker's ack: a dead letter that is lost is data lost."""
    futures = [
        prod.send(settings.kafka.topics.deadletter, key=r.stage, value=r.model_dump_json().encode()) for r in records
    ]
    for f in futures:
        f.get(timeout=settings.kafka.request_timeout_ms / 1000)
    return len(futures)
