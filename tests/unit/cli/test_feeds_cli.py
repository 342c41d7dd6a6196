"""`newsflow feeds add|remove` against a registry held in memory (no Kafka): editing a feed changes only the options
given, and nothing is reported as added before the broker acknowledged the write."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from pipeline.cli import commands as cli
from pipeline.ingest import registry
from pipeline.settings import FeedConfig, get_settings
from pipeline.stream import bus

URL = "http://127.0.0.1:8001/world.xml"  # numeric, allow-listed below: the door check needs no DNS


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class Broker:
    """The registry topic as a table, and a producer writing into it (or failing to, when `error` is set)."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}
        self.error: Exception | None = None
        self.writes: list[dict[str, Any] | None] = []

    def send(self, topic: str, key: str, value: bytes | None) -> Future:
        record = json.loads(value) if value is not None else None
        self.writes.append(record)
        if self.error is None:
            if record is None:
                self.table.pop(key, None)
            else:
                self.table[key] = record
        return Future(self.error)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def broker(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSFLOW_STACK__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NEWSFLOW_POLLER__ALLOW_PRIVATE_HOSTS", '["127.0.0.1"]')
    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)
    b = Broker()
    monkeypatch.setattr(bus, "producer", lambda *a, **k: b)
    monkeypatch.setattr(bus, "ensure_topics", lambda settings: [])
    monkeypatch.setattr(registry, "feed_records", lambda settings: dict(b.table))
    get_settings.cache_clear()
    yield b
    get_settings.cache_clear()


def _feed(b: Broker, url: str = URL) -> dict[str, Any]:
    return b.table[FeedConfig(url=url).feed_id()]


def test_editing_a_feed_changes_only_what_was_given(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["feeds", "add", URL, "--name", "World", "--tag", "world", "--tag", "news"]) == 0
    fid = FeedConfig(url=URL).feed_id()
    assert capsys.readouterr().out == f"added {fid} {URL}\n"
    assert cli.main(["feeds", "add", URL, "--min-interval", "900"]) == 0
    assert capsys.readouterr().out == f"updated {fid} {URL}: min_interval_s 900.0\n"
    assert _feed(broker) == {
        "url": URL, "id": fid, "name": "World", "tags": ["world", "news"], "enabled": True, "min_interval_s": 900.0
    }
    assert cli.main(["feeds", "add", URL, "--disabled"]) == 0
    assert cli.main(["feeds", "add", URL, "--tag", "asia"]) == 0
    assert _feed(broker)["enabled"] is False and _feed(broker)["tags"] == ["asia"] and _feed(broker)["name"] == "World"
    assert cli.main(["feeds", "add", URL, "--enabled"]) == 0
    assert _feed(broker)["enabled"] is True and _feed(broker)["min_interval_s"] == 900.0
    capsys.readouterr()
    writes = len(broker.writes)
    assert cli.main(["feeds", "add", URL]) == 0  # nothing given: nothing written
    assert capsys.readouterr().out == f"unchanged {fid} {URL}\n" and len(broker.writes) == writes


def test_a_moved_feed_is_edited_under_its_own_id(broker: Broker) -> None:
    moved = "http://127.0.0.1:8001/moved.xml"
    broker.table["old-id"] = {"url": moved, "id": "old-id", "name": "Old", "tags": ["t"], "enabled": True}
    assert cli.main(["feeds", "add", moved, "--max-interval", "7200"]) == 0
    assert broker.table["old-id"] == {
        "url": moved, "id": "old-id", "name": "Old", "tags": ["t"], "enabled": True, "max_interval_s": 7200.0
    }
    assert list(broker.table) == ["old-id"]


def test_an_invalid_option_is_one_line(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["feeds", "add", URL, "--min-interval", "-5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("newsflow: error: invalid feed min_interval_s: ") and err.count("\n") == 1
    assert broker.writes == []


def test_added_is_printed_only_once_the_broker_acknowledged(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    broker.error = KafkaTimeoutError("Batch for TopicPartition(topic='t.feeds', partition=3) expired")
    assert cli.main(["feeds", "add", URL]) == 1
    out, err = capsys.readouterr()
    assert "added" not in out
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("newsflow: error: the feed registry (newsflow.feeds.v1 at 127.0.0.1:9092) did not take feed")
    assert "KafkaTimeoutError" in err
    assert broker.table == {}


def test_import_waits_for_every_ack_too(broker: Broker, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    opml = tmp_path / "f.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline text="a" xmlUrl="http://127.0.0.1:8001/a.xml"/>'
        '<outline text="b" xmlUrl="file:///etc/passwd"/></body></opml>'
    )
    broker.error = KafkaTimeoutError("expired")
    assert cli.main(["feeds", "import", str(opml)]) == 1
    out, err = capsys.readouterr()
    assert "imported" not in out and "did not take feed" in err
    assert "skipped: refusing feed URL 'file:///etc/passwd': only http and https are allowed" in out
    broker.error = None
    assert cli.main(["feeds", "import", str(opml)]) == 0
    assert "imported 1 feeds" in capsys.readouterr().out


def test_a_stored_record_that_is_no_feed_can_be_removed(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    """Written before URLs were checked at the door: never polled, not listed, but removable by URL or id."""
    broker.table["bad"] = {"url": "http://[::1", "id": "bad", "enabled": True}
    assert registry.load_feeds(get_settings()) == {}
    assert cli.main(["feeds", "remove", "http://[::1"]) == 0
    assert capsys.readouterr().out == "removed bad\n" and broker.table == {}
