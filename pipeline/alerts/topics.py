"""Where a Kafka channel may post: only topics the operator listed in `alerts.kafka_topics` (empty, the default:
the Kafka channel is refused), and never the pipeline's own topics (`kafka.topics.*`, configured or default) or
Kafka's internal `__` topics, even if listed. Checked at the door (API, CLI: `store.check_channels`, nothing
stored) and again at send time (`delivery.Senders.kafka`: a subscription stored before the list changed is
dead-lettered in the alert log with the reason, never sent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.alerts.models import Channel, KafkaChannel
from pipeline.ingest.safety import OutboundRefused
from pipeline.settings import AlertSettings, Topics

LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # what Kafka accepts as a topic name


class TopicRefused(OutboundRefused):
    """A Kafka channel's topic that is not allowed: one line, permanent (the API answers 422)."""


def reserved_topics(topics: Topics | None = None) -> set[str]:
    """The pipeline's own topics: the configured names and the defaults (another deployment on the same broker
    may run with them)."""
    return set(Topics().model_dump().values()) | (set(topics.model_dump().values()) if topics else set())


def check_kafka_topic(topic: str, alerts: AlertSettings, topics: Topics | None = None) -> None:
    """Raise TopicRefused unless a Kafka channel may post to `topic`."""
    where = f"refusing Kafka topic {topic!r}"
    if not LEGAL_TOPIC.fullmatch(topic):
        raise TopicRefused(f"{where}: not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    if topic.startswith("__"):
        raise TopicRefused(f"{where}: an internal Kafka topic")
    if topic in reserved_topics(topics):
        raise TopicRefused(f"{where}: one of the pipeline's own topics")
    if not alerts.kafka_topics:
        raise TopicRefused(f"{where}: the Kafka channel is off (alerts.kafka_topics is empty)")
    if topic not in alerts.kafka_topics:
        raise TopicRefused(f"{where}: not in the operator's allow-list alerts.kafka_topics")


def check_kafka_channels(channels: Iterable[Channel], alerts: AlertSettings, topics: Topics | None = None) -> None:
    """Every Kafka channel of a subscription, at the door."""
    for channel in channels:
        if isinstance(channel, KafkaChannel):
            check_kafka_topic(channel.topic, alerts, topics)
