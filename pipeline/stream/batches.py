"""Gathering batches from a kafka-python consumer, and the offsets that commit exactly what was processed."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata


def collect(
    consumer: KafkaConsumer,
    max_records: int,
    window_s: float,
    first_wait_ms: int,
    stop: threading.Event | None = None,
) -> list[ConsumerRecord]:
    """Records until `max_records` or `window_s` after the first one; waits at most `first_wait_ms` for a first.

    A rebalance can only happen inside `poll`, so between two calls of this the previous batch is either
    committed or given up: the consumer loops never process records of a partition they no longer own."""
    records: list[ConsumerRecord] = []
    deadline: float | None = None
    while len(records) < max_records and not (stop is not None and stop.is_set()):
        timeout = first_wait_ms if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        polled = consumer.poll(timeout_ms=timeout, max_records=max_records - len(records))
        for part in polled.values():
            records.extend(part)
        if records and deadline is None:
            deadline = time.monotonic() + window_s
        if not polled and (not records or time.monotonic() >= (deadline or 0)):
            break
    return records


def next_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, Any]:
    """Next offset to read per partition (Kafka commits the position *after* the last processed record)."""
    highest: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        highest[tp] = max(highest.get(tp, -1), r.offset)
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in highest.items()}
