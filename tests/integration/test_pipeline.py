"""The whole flow on the real local stack: feeds over HTTP -> poller -> Kafka -> worker (tag, assign) -> indexer ->
OpenSearch, plus the failure cases the foundation promises to survive."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from pipeline import status
from pipeline.devstack.demo import DEMO_DIR, Expected, demo_feeds, expected_outcome, serve_directory
from pipeline.ingest.poller import Poller
from pipeline.ingest.results import FeedResult
from pipeline.models import Article, EnrichedArticle, Story
from pipeline.search import connect
from pipeline.search.documents import bulk_actions
from pipeline.search.queries import find_stories
from pipeline.settings import FeedConfig, Settings
from pipeline.stories.features import feature_recipe
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import indexed_ids, log_tail, read_topic, spawn, stop, wait_until

pytestmark = pytest.mark.integration


class Procs:
    """Worker/indexer child processes of one test, stopped (and their logs shown on failure) at the end."""

    def __init__(self, iso: Isolated, logs: Path) -> None:
        self.iso, self.logs = iso, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.procs[name] = spawn(list(args), self.iso.env, self.logs / f"{name}.log")
        return self.procs[name]

    def tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{log_tail(self.logs / f'{n}.log')}" for n in self.procs)


@pytest.fixture
def procs(isolated: Isolated, tmp_path: Path) -> Iterator[Procs]:
    bus.ensure_topics(isolated.settings)
    p = Procs(isolated, tmp_path)
    yield p
    for proc in p.procs.values():
        stop(proc)


def article(i: int, **kw: object) -> Article:
    base = datetime(2026, 11, 20, 8, tzinfo=UTC)
    fields: dict[str, object] = {
        "id": f"art-{i:04d}",
        "feed": "http://test/feed.xml",
        "source": f"Outlet {i % 7}",
        "url": f"https://outlet{i % 7}.example/news/{i}",
        "title": f"Harbour authority {i} approves expansion plan number {i}",
        "summary": f"Board votes on plan {i} for berth {i} after long public consultation {i}.",
        "published": base + timedelta(minutes=i),
    }
    fields.update(kw)
    return Article.model_validate(fields)


def produce(iso: Isolated, items: list[Article]) -> None:
    prod = bus.producer(iso.settings)
    for a in items:
        prod.send(iso.settings.kafka.topics.articles, key=a.id, value=a.model_dump_json().encode())
    prod.flush()
    prod.close()


def poll_demo_feeds(settings: Settings, cycles: int = 1) -> list[list[FeedResult]]:
    """Serve the bundled sample feeds locally and run `cycles` poll cycles over them."""
    with serve_directory(DEMO_DIR) as base:
        poller = Poller(settings, demo_feeds(base))
        try:
            return [asyncio.run(poller.poll_once()) for _ in range(cycles)]
        finally:
            poller.close()


def wait_for_demo_docs(settings: Settings, procs: Procs, expected: Expected, timeout: float) -> dict[str, Any]:
    """Wait until every sample article is indexed (child logs on failure); returns the article documents."""
    backend = connect(settings.search)
    try:
        wait_until(lambda: len(indexed_ids(backend, settings)) == len(expected.story), timeout, "all articles indexed")
    except AssertionError:
        raise AssertionError(procs.tails()) from None
    return backend.get_many(settings.search.indices.articles, list(expected.story))


def test_kafka_roundtrip(isolated: Isolated) -> None:
    settings = isolated.settings
    bus.ensure_topics(settings)
    produce(isolated, [article(1), article(2)])
    consumer = KafkaConsumer(
        settings.kafka.topics.articles,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    got = sorted(Article.model_validate_json(m.value).id for m in consumer)
    consumer.close()
    assert got == ["art-0001", "art-0002"]


def test_index_writes_are_idempotent_and_story_snapshots_never_go_back(isolated: Isolated) -> None:
    settings = isolated.settings
    backend = connect(settings.search)
    backend.ensure_templates()
    assert backend.ensure_templates() == []  # second run: nothing to change
    now = datetime.now(UTC)
    story = Story(story_id="s-1", title="Newer title", article_count=2, first_seen=now, last_seen=now, revision=2)
    old = story.model_copy(update={"title": "Older title", "revision": 1})
    a = EnrichedArticle(**article(1).model_dump(), story_id="s-1", story=story)
    b = EnrichedArticle(**article(2).model_dump(), story_id="s-1", story=old)
    for batch in ([a], [a, b], [b]):  # replays, in any order
        outcomes = backend.bulk(bulk_actions(batch, settings.search.indices))
        assert all(o.ok or o.stale_version for o in outcomes), [o.error for o in outcomes]
    assert sorted(indexed_ids(backend, settings)) == ["art-0001", "art-0002"]
    stories = backend.get_many(settings.search.indices.stories, ["s-1"])
    assert stories["s-1"]["title"] == "Newer title"
    hits = backend.search(settings.search.indices.articles, {"query": {"match": {"title": "harbour expansion"}}})
    assert hits["hits"]["total"]["value"] == 2


def test_end_to_end_feeds_to_search(isolated: Isolated, procs: Procs) -> None:
    """Sample feeds we wrote: differently worded reports become one story, the wire copy a duplicate."""
    settings = isolated.settings
    expected = expected_outcome()
    procs.start("worker", "worker")
    procs.start("indexer", "indexer")
    results, again = poll_demo_feeds(settings, cycles=2)
    assert all(r.ok for r in results), [r.error for r in results]
    assert sum(r.new_items for r in results) == len(expected.story)
    assert sum(r.new_items for r in again) == 0  # seen-state: nothing is produced twice

    docs = wait_for_demo_docs(settings, procs, expected, 180)
    backend = connect(settings.search)
    putin = [i for i, label in expected.story.items() if label == "putin-visit"]
    assert len({docs[i]["story_id"] for i in putin}) == 1, "the Putin reports must be one story"
    for copy, original in expected.duplicate_of.items():
        if original:  # whichever of the pair arrived first is the original (tagging runs in parallel)
            marks = {docs[copy]["duplicate_of"], docs[original]["duplicate_of"]}
            assert marks in ({original, None}, {copy, None}), (copy, original, marks)
            assert docs[copy]["story_id"] == docs[original]["story_id"]
    story = backend.get_many(settings.search.indices.stories, [docs[putin[0]]["story_id"]])
    assert story, "story document indexed"
    only = next(iter(story.values()))
    assert only["article_count"] >= 3 and len(only["sources"]) == len(set(only["sources"])) >= 3
    hits = find_stories(backend, settings, "Putin North Korea")
    assert hits and hits[0].story["story_id"] == docs[putin[0]]["story_id"]
    assert {a["id"] for a in hits[0].articles} >= set(putin)
    # The tagging stage attached the story features the assign stage uses; they go no further downstream.
    tagged = [m for m in read_topic(settings, settings.kafka.topics.tagged) if "id" in m]
    assert tagged and all(m["features"]["recipe"] == feature_recipe(settings.dedup) for m in tagged)
    assert all(m.get("features") is None for m in read_topic(settings, settings.kafka.topics.enriched))


@pytest.mark.timeout(400)
def test_worker_killed_mid_stream_still_indexes_every_article_once(isolated: Isolated, procs: Procs) -> None:
    """SIGKILL mid-stream, restart: every article indexed once, no story id changed (`test_chaos.py` kills more)."""
    settings = isolated.settings
    items = [article(i) for i in range(120)]
    procs.start("indexer", "indexer")
    worker = procs.start("worker", "worker", "--loglevel", "info")
    produce(isolated, items[:60])
    backend = connect(settings.search)
    wait_until(lambda: len(indexed_ids(backend, settings)) >= 10, 120, "first articles indexed")
    produce(isolated, items[60:])
    stop(worker, kill=True)  # SIGKILL: no clean shutdown, no final commit
    procs.start("worker-restarted", "worker", "--loglevel", "info")
    try:
        # The dead member holds its partitions until its session times out; then rebalance and table recovery.
        wait_until(lambda: len(indexed_ids(backend, settings)) >= len(items), 180, "all articles indexed")
    except AssertionError as exc:
        beats = status.read_all(settings.stack.state_dir)
        raise AssertionError(f"{exc}\nheartbeats: {beats}\n{procs.tails()}") from None
    ids = indexed_ids(backend, settings)
    assert sorted(ids) == sorted(a.id for a in items)  # every article, and each exactly once
    enriched = read_topic(settings, settings.kafka.topics.enriched)
    by_article: dict[str, set[str]] = {}
    for e in enriched:
        if e.get("message") == "story_move":  # a merge re-files an article on purpose: not a replay
            continue
        by_article.setdefault(e["id"], set()).add(e["story_id"])
    moved = {a: s for a, s in by_article.items() if len(s) > 1}
    assert not moved, f"replayed articles changed story: {len(moved)} of {len(by_article)}: {sorted(moved)[:10]}"


def test_a_quiet_small_story_is_merged_in_the_stream_and_refiled_in_the_index(isolated: Isolated, procs: Procs) -> None:
    """The worker's upkeep merges a small story into the story it belongs to (`StoryEngine.settle`) and the
    indexer re-files its article: three reports make a story, a side report of the same event opens its own
    (it is less alike than the story's cohesion bar), and once it has been quiet for a while it lives under the
    big story. The reports are dated now, so the side report is not quiet yet when they are assigned, and nothing
    is sent after them: the upkeep that merges it runs on a batch made by the leader's upkeep ticks alone.
    Tagged articles go straight to the assign stage, so the entities are the fixtures' own."""
    from tests.unit.stories.test_dedup import BRIDGE, PUTIN_A, PUTIN_B, PUTIN_C

    settings = isolated.settings
    isolated.env["NEWSFLOW_WORKER__MAINTENANCE_EVERY_S"] = "2"  # upkeep every 2 s, ticks every second
    isolated.env["NEWSFLOW_DEDUP__SMALL_STORY_MAX"] = "2"  # three reports make a big story here
    isolated.env["NEWSFLOW_DEDUP__SETTLE_MINUTES"] = "0.15"  # quiet after 9 s
    shift = datetime.now(UTC) - BRIDGE.published  # the same reports, the side report published just now
    reports = [
        a.model_copy(update={"published": a.published + shift, "fetched_at": a.fetched_at + shift})
        for a in (PUTIN_A, PUTIN_B, PUTIN_C, BRIDGE)
    ]
    procs.start("worker", "worker")
    procs.start("indexer", "indexer")
    prod = bus.producer(settings)

    def send(*items: Any) -> None:
        for a in items:
            prod.send(settings.kafka.topics.tagged, key=a.id, value=a.model_dump_json().encode())
        prod.flush()

    backend = connect(settings.search)
    try:
        send(*reports)
        try:
            wait_until(lambda: len(indexed_ids(backend, settings)) == 4, 120, "four articles indexed")
            enriched = read_topic(settings, settings.kafka.topics.enriched)
            assigned = {m["id"]: m["story_id"] for m in enriched if "id" in m}
            big, small = assigned["a1"], assigned["a5"]
            assert big != small  # a story of its own on arrival

            def refiled() -> bool:
                backend.refresh()
                return backend.get_many(settings.search.indices.articles, ["a5"])["a5"]["story_id"] == big

            wait_until(refiled, 90, "the side report re-filed under the big story", interval=1.0)
            quiet_for = datetime.now(UTC) - reports[-1].published
            assert quiet_for >= timedelta(seconds=9)  # merged by an upkeep run after it went quiet, not on arrival
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{procs.tails()}") from None
        stub = backend.get_many(settings.search.indices.stories, [small])[small]
        assert stub["merged_into"] == big
        story = backend.get_many(settings.search.indices.stories, [big])[big]
        assert story["article_count"] == 4 and "a5" in story["article_ids"]
    finally:
        prod.close()
        backend.close()


def test_bad_feeds_and_poison_messages_do_not_stop_the_rest(isolated: Isolated, procs: Procs, tmp_path: Path) -> None:
    settings = isolated.settings
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken.xml").write_text("<rss><channel><item><title>unclosed")
    (site / "good.xml").write_bytes((DEMO_DIR / "harbor-times.xml").read_bytes())
    procs.start("worker", "worker")
    procs.start("indexer", "indexer")
    with serve_directory(site) as base:
        feeds = [
            FeedConfig(url=f"{base}/missing.xml"),
            FeedConfig(url=f"{base}/broken.xml"),
            FeedConfig(url=f"{base}/good.xml"),
        ]
        poller = Poller(settings, feeds)
        results = {r.url.rsplit("/", 1)[1]: r for r in asyncio.run(poller.poll_once())}
        poller.close()
    assert not results["missing.xml"].ok and "404" in (results["missing.xml"].error or "")
    assert not results["broken.xml"].ok and "\n" not in (results["broken.xml"].error or "")
    assert results["good.xml"].ok and results["good.xml"].new_items > 0

    prod = bus.producer(settings)
    prod.send(settings.kafka.topics.articles, key="poison", value=b"\x00\xffnot an article")
    prod.send(settings.kafka.topics.articles, key="wrong", value=b'{"schema_version": 1, "title": "no id"}')
    prod.flush()
    prod.close()
    produce(isolated, [article(900)])
    backend = connect(settings.search)
    want = results["good.xml"].new_items + 1
    try:
        wait_until(lambda: len(indexed_ids(backend, settings)) >= want, 180, "good articles indexed")
    except AssertionError:
        raise AssertionError(procs.tails()) from None
    dead = wait_until(lambda: read_topic(settings, settings.kafka.topics.deadletter, 2000), 60, "dead letters")
    reasons = " | ".join(d["reason"] for d in dead)
    assert len(dead) == 2 and all(d["stage"] == "tag" for d in dead), reasons
    assert "not an Article" in reasons or "Invalid JSON" in reasons


def test_two_workers_still_file_reports_of_one_event_together(isolated: Isolated, procs: Procs) -> None:
    """Tagging is spread over two workers; assignment is one ordered stage, so the reports still meet."""
    settings = isolated.settings
    expected = expected_outcome()
    workers = [procs.start("worker-a", "worker"), procs.start("worker-b", "worker")]
    procs.start("indexer", "indexer")
    wait_until(lambda: group_size(settings) == 2, 120, "both workers in the consumer group")
    (results,) = poll_demo_feeds(settings)
    assert sum(r.new_items for r in results) == len(expected.story)
    docs = wait_for_demo_docs(settings, procs, expected, 240)
    putin = [i for i, label in expected.story.items() if label == "putin-visit"]
    assert len({docs[i]["story_id"] for i in putin}) == 1

    def tagged() -> list[int]:
        beats = status.read_all(settings.stack.state_dir)
        return [beats.get(f"worker-{w.pid}", {}).get("tagged", 0) for w in workers]

    counts = wait_until(lambda: sum(tagged()) >= len(expected.story) and tagged(), 30, "worker heartbeats")
    assert all(n > 0 for n in counts), f"both workers must have tagged articles: {counts}"


def group_size(settings: Settings) -> int:
    """Members of the tagging group (both must have joined before articles arrive)."""
    client = bus.admin(settings)
    try:
        groups = client.describe_consumer_groups([settings.worker.tag_group])
        return len(groups[0].members) if groups and groups[0].state == "Stable" else 0
    finally:
        client.close()
