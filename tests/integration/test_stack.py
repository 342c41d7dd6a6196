"""The real local stack (default state dir, shared with the other integration tests; left running at the end).

Restarts are only exercised on components newsflow manages: an external Kafka/OpenSearch is never stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from pipeline import devstack as stack
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    s = load_settings()
    stack.ensure_up(s)
    yield s
    stack.ensure_up(s)  # whatever happened above, leave the shared stack running


def _managed(settings: Settings, name: str) -> None:
    if stack.running_pid(settings, name) is None:
        pytest.skip(f"{name} is external (not started by newsflow); not restarting it")


def _restart(settings: Settings, name: str) -> None:
    """Stop must really stop the process (port closed), start must bring it back healthy."""
    pid = stack.running_pid(settings, name)
    assert pid is not None
    assert stack.stop_component(settings, name) is True
    assert stack.running_pid(settings, name) is None
    port = settings.stack.kafka.port if name == "kafka" else settings.stack.opensearch.http_port
    assert not stack.port_open("127.0.0.1", port), f"{name} still listening after stop"
    stack.start_component(settings, name)
    assert stack.running_pid(settings, name) not in (None, pid)


def test_up_is_idempotent_and_fast_when_running(settings: Settings) -> None:
    lines: list[str] = []
    started = time.monotonic()
    stack.up(settings, echo=lines.append)
    assert time.monotonic() - started < 10
    for name in stack.COMPONENTS:
        line = next(ln for ln in lines if ln.startswith(f"{name}:"))
        assert "already running" in line or "not started by newsflow" in line, line


def test_status_reports_healthy_with_versions(settings: Settings) -> None:
    statuses = {s.name: s for s in stack.status(settings)}
    assert set(statuses) == {"kafka", "opensearch"}
    assert all(s.healthy for s in statuses.values()), stack.format_status(list(statuses.values()))
    kafka, search = statuses["kafka"], statuses["opensearch"]
    if kafka.managed:
        assert kafka.version == "3.9.1"
        assert kafka.pid == stack.running_pid(settings, "kafka")
    if search.managed:
        assert search.version == "opensearch 2.19.1"
    text = stack.format_status(list(statuses.values()))
    assert "healthy" in text or "external" in text


def test_opensearch_restart_keeps_documents(settings: Settings) -> None:
    _managed(settings, "opensearch")
    index = f"newsflow-stacktest-{uuid.uuid4().hex[:8]}"
    url = stack.search_address(settings)
    with httpx.Client(base_url=url, timeout=30) as client:
        client.put(f"/{index}", json={"settings": {"number_of_replicas": 0}}).raise_for_status()
        for i in range(5):
            # refresh=wait_for makes them searchable but does not flush: recovery must come from the translog
            r = client.put(f"/{index}/_doc/{i}", params={"refresh": "wait_for"}, json={"n": i})
            r.raise_for_status()
        assert client.get(f"/{index}/_count").json()["count"] == 5
    try:
        _restart(settings, "opensearch")
        with httpx.Client(base_url=url, timeout=30) as client:
            health = client.get(
                f"/_cluster/health/{index}", params={"wait_for_status": "yellow", "timeout": "30s"}
            )
            assert health.json()["status"] in ("yellow", "green")
            assert client.get(f"/{index}/_count").json()["count"] == 5
            assert client.get(f"/{index}/_doc/3").json()["_source"] == {"n": 3}
    finally:
        stack.ensure_up(settings)
        httpx.delete(f"{url}/{index}", timeout=30)


def test_kafka_restart_keeps_messages(settings: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    _managed(settings, "kafka")
    bootstrap = stack.kafka_address(settings)
    topic = f"newsflow.stacktest.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = [f"message-{i}".encode() for i in range(20)]
    for value in sent:
        producer.send(topic, value=value, key=value[-1:])
    producer.flush(timeout=30)
    producer.close()

    try:
        _restart(settings, "kafka")
        consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        try:
            while len(received) < len(sent) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    received.extend(record.value for record in records)
        finally:
            consumer.close()
        assert sorted(received) == sorted(sent)
    finally:
        stack.ensure_up(settings)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
