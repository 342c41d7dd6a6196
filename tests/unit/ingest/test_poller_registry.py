"""The scale-out poller's bookkeeping (no Kafka): its feeds follow the registry partitions it owns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import poller, registry
from pipeline.ingest.schedule import FeedState
from pipeline.settings import FeedConfig, Settings
from pipeline.stream import bus


class NullProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    def send(self, topic: str, key: Any = None, value: Any = None) -> Any:
        self.sent.append((topic, key, value))
        return self

    def get(self, timeout: float | None = None) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass

    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self) -> None:
        pass

    def abort_transaction(self) -> None:
        pass


@pytest.fixture
def scaled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> registry.ScaledPoller:
    monkeypatch.setattr(bus, "producer", lambda *a, **k: NullProducer())
    monkeypatch.setattr(poller.status, "write", lambda *a, **k: None)
    settings = Settings(poller={"seen_db": tmp_path / "seen.sqlite"}, stack={"state_dir": tmp_path})
    return registry.ScaledPoller(settings)


def feed_value(url: str, **kw: Any) -> dict[str, Any]:
    return FeedConfig(url=url, **kw).model_dump(exclude_none=True)


def test_feeds_follow_owned_partitions(scaled: registry.ScaledPoller) -> None:
    a, b = FeedConfig(url="https://a.example/rss"), FeedConfig(url="https://b.example/rss")
    prior = FeedState(a.feed_id(), a.url, etag='"e"', next_due=123.0, consecutive_errors=3)
    scaled.apply(("assign", ({0, 1}, {a.feed_id(): prior})))
    scaled.apply(("feed", (0, a.feed_id(), feed_value(a.url))))
    scaled.apply(("feed", (1, b.feed_id(), feed_value(b.url))))
    scaled.apply(("feed", (2, "other", feed_value("https://c.example/rss"))))  # not ours
    assert {f.url for f in scaled.poller.feeds} == {a.url, b.url}
    st = scaled.poller.states[a.feed_id()]
    assert st.etag == '"e"' and st.consecutive_errors == 3  # continues where the previous owner left off
    assert scaled.poller.queue.next_due() == 0.0  # b is new: due now; a keeps its due time
    scaled.apply(("revoke", {0}))
    assert [f.url for f in scaled.poller.feeds] == [b.url]
    scaled.apply(("feed", (1, b.feed_id(), None)))  # tombstone: removed from the registry
    assert scaled.poller.feeds == []
    scaled.close()


def test_disabled_and_moved_feeds(scaled: registry.ScaledPoller) -> None:
    a = FeedConfig(url="https://a.example/rss")
    scaled.apply(("assign", ({0}, {})))
    scaled.apply(("feed", (0, a.feed_id(), feed_value(a.url))))
    scaled.apply(("feed", (0, a.feed_id(), feed_value("https://a.example/new-rss", id=a.feed_id()))))
    assert [f.url for f in scaled.poller.feeds] == ["https://a.example/new-rss"]
    assert scaled.poller.feeds[0].feed_id() == a.feed_id()
    scaled.apply(("feed", (0, a.feed_id(), feed_value(a.url, enabled=False))))
    assert scaled.poller.feeds == []
    scaled.close()


def test_moves_and_removals_are_written_to_the_topics(scaled: registry.ScaledPoller) -> None:
    producer = scaled.registry.producer
    assert isinstance(producer, NullProducer)
    scaled.registry.put_feed(FeedConfig(url="https://a.example/moved", id="abc"))
    topics = scaled.settings.kafka.topics
    assert [(t, k) for t, k, _ in producer.sent] == [(topics.feeds, "abc")]
    scaled.registry.remove_feed("abc")
    assert [(t, v) for t, _, v in producer.sent[1:]] == [(topics.feeds, None), (topics.feed_state, None)]
    scaled.close()
