"""Offsets to commit for a batch: exactly the records handled, per partition (used by every consumer loop)."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from pipeline.stream.batches import next_offsets
from tests.unit.records import Rec as Record

TOPIC = "t.enriched"


def test_next_offsets_is_highest_offset_plus_one_per_partition() -> None:
    records = [
        Record(TOPIC, 0, 10, b""),
        Record(TOPIC, 0, 12, b""),
        Record(TOPIC, 0, 11, b""),  # out of order: the highest still wins
        Record(TOPIC, 3, 0, b""),
        Record("other", 0, 5, b""),
    ]
    offsets = next_offsets(records)  # type: ignore[arg-type]
    assert set(offsets) == {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 3), TopicPartition("other", 0)}
    assert offsets[TopicPartition(TOPIC, 0)].offset == 13
    assert offsets[TopicPartition(TOPIC, 3)].offset == 1
    assert offsets[TopicPartition("other", 0)].offset == 6
    assert all(isinstance(v, OffsetAndMetadata) for v in offsets.values())
    assert offsets[TopicPartition(TOPIC, 0)].metadata == ""


def test_next_offsets_of_nothing_is_empty() -> None:
    assert next_offsets([]) == {}
