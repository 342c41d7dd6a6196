"""Two pollers split the feed registry without overlap; when one is SIGKILLed its feeds move to the other,
and no article is produced twice. Feeds are served from a local http.server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.devstack.demo import serve_directory
from pipeline.ingest import registry
from pipeline.settings import FeedConfig, Settings, load_settings
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import log_tail, read_topic, spawn, stop, wait_until

pytestmark = pytest.mark.integration

FEEDS = 12


def write_feeds(folder: Path, n: int) -> None:
    for i in range(n):
        items = "".join(
            f"<item><title>Feed {i} story {j}</title><link>https://site{i}.example/s/{j}</link>"
            f"<description>Report {j} of feed {i}.</description></item>"
            for j in range(2)
        )
        (folder / f"f{i}.xml").write_text(
            f"<?xml version='1.0'?><rss version='2.0'><channel><title>Feed {i}</title>{items}</channel></rss>"
        )


@pytest.fixture
def scaled(isolated: Isolated, monkeypatch: pytest.MonkeyPatch) -> Isolated:
    prefix = isolated.env["NEWSFLOW_KAFKA__TOPICS__ARTICLES"].split(".")[0]
    extra = {
        "NEWSFLOW_KAFKA__TOPICS__FEEDS": f"{prefix}.feeds",
        "NEWSFLOW_KAFKA__TOPICS__FEED_STATE": f"{prefix}.feedstate",
        "NEWSFLOW_POLLER__GROUP_ID": f"{prefix}-poller",
        "NEWSFLOW_POLLER__REGISTRY_PARTITIONS": "6",
        "NEWSFLOW_POLLER__INTERVAL_S": "1",
        "NEWSFLOW_POLLER__MIN_INTERVAL_S": "1",
        "NEWSFLOW_POLLER__MAX_INTERVAL_S": "2",
        "NEWSFLOW_POLLER__JITTER": "0",
        "NEWSFLOW_POLLER__SESSION_TIMEOUT_S": "6",
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    iso = Isolated({**isolated.env, **extra})
    return iso


@pytest.fixture
def pollers(scaled: Isolated, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    yield procs
    for proc in procs.values():
        stop(proc)


def history(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of `topic` up to its current end (pollers keep writing: no waiting for silence)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(json.loads(r.value) for r in records if r.value is not None)
        return out
    finally:
        consumer.close()


def owners(settings: Settings, since: float, until: float | None = None) -> dict[str, set[int]]:
    """feed id -> pids of the pollers that polled it in [since, until] (from the state topic's history)."""
    seen: dict[str, set[int]] = defaultdict(set)
    for rec in history(settings, settings.kafka.topics.feed_state):
        polled = rec.get("last_polled") or 0
        if polled >= since and (until is None or polled <= until) and rec.get("poller"):
            seen[rec["feed_id"]].add(int(str(rec["poller"]).rsplit(":", 1)[1]))
    return seen


def test_two_pollers_split_feeds_and_take_over_from_a_killed_one(
    scaled: Isolated, pollers: dict[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings = load_settings()
    site = tmp_path / "site"
    site.mkdir()
    write_feeds(site, FEEDS)
    bus.ensure_topics(settings)
    with serve_directory(site) as base:
        bus.ensure_topics(settings)
        feeds = [FeedConfig(url=f"{base}/f{i}.xml", name=f"Feed {i}") for i in range(FEEDS)]
        assert registry.add_feeds(settings, feeds) == FEEDS
        ids = {f.feed_id() for f in feeds}
        pollers["a"] = spawn(["poller"], scaled.env, tmp_path / "a.log")
        pollers["b"] = spawn(["poller"], scaled.env, tmp_path / "b.log")
        pids = {pollers["a"].pid, pollers["b"].pid}
        started = time.time()

        def tails() -> str:
            return "\n".join(f"--- {n} ---\n{log_tail(tmp_path / f'{n}.log')}" for n in ("a", "b"))

        def split_cleanly() -> Any:
            now = time.time()
            recent = owners(settings, now - 4.5, now)
            used = set().union(*recent.values()) if recent else set()
            ok = set(recent) == ids and all(len(p) == 1 for p in recent.values()) and used == pids
            return recent if ok else None

        try:
            wait_until(split_cleanly, 120, "both pollers polling disjoint halves of the registry", 1.5)
            time.sleep(3)
            split = wait_until(split_cleanly, 30, "the split staying disjoint", 1.0)
        except AssertionError:
            raise AssertionError(tails()) from None
        per_poller = defaultdict(int)
        for p in split.values():
            per_poller[next(iter(p))] += 1
        assert set(per_poller) == pids and min(per_poller.values()) >= 1, per_poller

        print(f"TIMING split at {time.time() - started:.1f}s")
        stop(pollers["a"], kill=True)  # SIGKILL: no leave-group, its session must time out
        killed_at = time.time()
        survivor = pollers["b"].pid

        def taken_over() -> bool:
            after = owners(settings, killed_at + 0.5)
            return set(after) == ids and all(p == {survivor} for p in after.values())

        try:
            wait_until(taken_over, 90, "the survivor polling every feed", 2.0)
        except AssertionError:
            raise AssertionError(tails()) from None
        print(f"TIMING takeover after {time.time() - killed_at:.1f}s")
        assert pollers["b"].poll() is None, "the survivor is still running"

    produced = [r["id"] for r in read_topic(settings, settings.kafka.topics.articles, 3000)]
    assert len(produced) == len(set(produced)) == FEEDS * 2, f"{len(produced)} produced, {len(set(produced))} unique"
    assert os.path.exists(tmp_path / "seen.sqlite")
