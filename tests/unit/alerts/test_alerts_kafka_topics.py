"""The Kafka channel posts only to the operator's allow-list (`alerts.kafka_topics`): refused at the door when the
list is empty or the topic is not on it, and always for the pipeline's own topics and Kafka's `__` topics, even
when listed; again at send time, where a refusal is dead at once and nothing reaches Kafka."""

from __future__ import annotations

import pytest

from pipeline.alerts.delivery import Senders, with_retries
from pipeline.alerts.messages import render
from pipeline.alerts.models import Alert, KafkaChannel, WebhookChannel
from pipeline.alerts.store import check_channels
from pipeline.alerts.topics import TopicRefused, check_kafka_topic
from pipeline.errors import ConfigError
from pipeline.ingest.safety import OutboundRefused
from pipeline.settings import AlertSettings, Settings, Topics
from tests.unit.alerts.samples import sub

OWN = list(Topics().model_dump().values())


def test_the_kafka_channel_is_off_unless_the_operator_lists_topics() -> None:
    with pytest.raises(TopicRefused, match=r"refusing Kafka topic 'alerts\.out': the Kafka channel is off"):
        check_channels([KafkaChannel(topic="alerts.out")], AlertSettings())
    check_channels([KafkaChannel(topic="alerts.out")], AlertSettings(kafka_topics=["alerts.out"]))
    with pytest.raises(TopicRefused, match=r"not in the operator's allow-list alerts\.kafka_topics"):
        check_channels([KafkaChannel(topic="alerts.other")], AlertSettings(kafka_topics=["alerts.out"]))


@pytest.mark.parametrize("topic", [*OWN, "__consumer_offsets", "__transaction_state"])
def test_own_and_internal_topics_are_refused_even_when_listed(topic: str) -> None:
    alerts = AlertSettings(kafka_topics=[topic])  # as a section built in code: the Settings check is bypassed
    with pytest.raises(TopicRefused, match=r"internal Kafka topic|the pipeline's own topics"):
        check_kafka_topic(topic, alerts)
    assert issubclass(TopicRefused, OutboundRefused)  # the API answers 422, the CLI one line


def test_the_configured_own_topics_are_refused_too_and_bad_names_are_not_topics() -> None:
    mine = Topics(articles="t1.articles")
    with pytest.raises(TopicRefused, match="own topics"):
        check_kafka_topic("t1.articles", AlertSettings(kafka_topics=["t1.articles"]), mine)
    with pytest.raises(TopicRefused, match="not a Kafka topic name"):
        check_kafka_topic("a topic", AlertSettings(kafka_topics=["a topic"]))


def test_webhook_channels_are_not_affected() -> None:
    alerts = AlertSettings(allow_private_hosts=["127.0.0.1"])
    check_channels([WebhookChannel(url="http://127.0.0.1:1/x")], alerts)


@pytest.mark.parametrize(
    ("listed", "env", "said"),
    [
        ("newsflow.articles.v1", {}, "the pipeline's own kafka.topics.articles"),
        ("t1.out", {"NEWSFLOW_KAFKA__TOPICS__ENRICHED": "t1.out"}, "the pipeline's own kafka.topics.enriched"),
        ("__consumer_offsets", {}, "an internal Kafka topic"),
    ],
)
def test_listing_an_own_or_internal_topic_is_a_config_error(
    listed: str, env: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NEWSFLOW_ALERTS__KAFKA_TOPICS", f'["{listed}"]')
    with pytest.raises(ConfigError) as info:
        Settings()
    assert str(info.value).startswith(f"invalid setting alerts.kafka_topics: '{listed}' is {said}")


def test_a_topic_no_longer_allowed_is_dead_at_send_time_without_touching_kafka() -> None:
    accepted = AlertSettings(kafka_topics=["alerts.out"])
    check_channels([KafkaChannel(topic="alerts.out")], accepted)  # accepted at the door, then the list changed
    now = AlertSettings()
    senders = Senders(Settings(alerts=now), now)
    subscription = sub(channels=[KafkaChannel(topic="alerts.out")])
    alert = Alert(subscription_id=subscription.id, story_id="s-1", kind="new", title="T", sources=["A"])
    out = render(alert, subscription)
    result = with_retries(lambda: senders.send(out, KafkaChannel(topic="alerts.out")), 4, 0.01, 0.01)
    assert result["status"] == "dead" and result["attempts"] == 1
    assert "the Kafka channel is off" in result["last_error"]
    assert senders._producer is None  # never connected


def test_an_own_topic_is_refused_at_send_time_whatever_the_alert_settings_say() -> None:
    settings = Settings(kafka={"topics": {"articles": "t2.articles"}})
    listed = AlertSettings(kafka_topics=["t2.articles"])  # a section built in code, bypassing the config check
    senders = Senders(settings, listed)
    subscription = sub(channels=[KafkaChannel(topic="t2.articles")])
    alert = Alert(subscription_id=subscription.id, story_id="s-1", kind="new", title="T", sources=["A"])
    result = with_retries(lambda: senders.send(render(alert, subscription), KafkaChannel(topic="t2.articles")), 4, 0, 0)
    assert result["status"] == "dead" and "one of the pipeline's own topics" in result["last_error"]
    assert senders._producer is None
