"""The indexer on the real local stack: a search-engine outage mid-stream, documents the engine refuses,
monthly article indices behind one alias, and a template upgrade over existing data.

The indexer runs in a thread (`Indexer.run`) so a test can read its stats; it is the same code `newsflow
indexer` runs. Messages are produced straight onto the test's enriched topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline import devstack as local_stack
from pipeline.models import EnrichedArticle, Story
from pipeline.search import SearchBackend, connect
from pipeline.search import templates as tpl
from pipeline.search.documents import bulk_actions
from pipeline.search.indexer import Indexer
from pipeline.settings import Settings
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import indexed_ids, read_topic, wait_until

pytestmark = pytest.mark.integration

JAN = datetime(2025, 1, 15, 9, tzinfo=UTC)
FEB = datetime(2025, 2, 15, 9, tzinfo=UTC)


def enriched(i: int, published: datetime = JAN, **kw: Any) -> EnrichedArticle:
    story = Story(
        story_id=f"s-{i // 10}",
        title=f"Story {i // 10}",
        article_count=1,
        first_seen=published,
        last_seen=published,
        revision=i % 10 + 1,
    )
    fields: dict[str, Any] = {
        "id": f"art-{i:05d}",
        "feed": "http://test/feed.xml",
        "source": f"Outlet {i % 5}",
        "url": f"https://outlet{i % 5}.example/news/{i}",
        "title": f"Harbour authority {i} approves expansion plan",
        "summary": f"Board votes on plan {i}.",
        "published": published + timedelta(minutes=i),
        "language": "en",
        "story_id": story.story_id,
        "story": story,
    }
    fields.update(kw)
    return EnrichedArticle.model_validate(fields)


def produce(settings: Settings, items: list[EnrichedArticle]) -> None:
    prod = bus.producer(settings)
    for a in items:
        prod.send(settings.kafka.topics.enriched, key=a.id, value=a.model_dump_json().encode())
    prod.flush()
    prod.close()


class Running:
    """An indexer in a thread; `finish` waits for its idle exit and re-raises what it raised."""

    def __init__(self, settings: Settings, idle_exit_s: float) -> None:
        self.indexer = Indexer(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(idle_exit_s,), daemon=True)
        self.thread.start()

    def _run(self, idle_exit_s: float) -> None:
        try:
            self.indexer.run(idle_exit_s=idle_exit_s)
        except BaseException as exc:  # surfaced in the test thread by finish()
            self.error = exc

    def finish(self, timeout: float = 120.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "indexer did not exit"
        if self.error is not None:
            raise self.error


@pytest.fixture
def settings(isolated: Isolated) -> Iterator[Settings]:
    """The test's settings, with short backoff so a restarted engine is noticed quickly; its indices and
    templates are removed afterwards."""
    base = isolated.settings
    s = base.model_copy(update={"search": base.search.model_copy(update={"retry_backoff_max_s": 2.0})})
    bus.ensure_topics(s)
    yield s
    backend = connect(s.search)
    for pattern in (f"{s.search.indices.articles}*", s.search.indices.stories):
        for name in backend.client.indices.get(index=pattern, ignore=[404], expand_wildcards="all") or {}:
            if name not in ("error", "status"):
                backend.client.indices.delete(index=name, ignore=[404])
    for name in (s.search.indices.articles, s.search.indices.stories):
        backend.client.indices.delete_index_template(name=name, ignore=[404])
    backend.close()


def article_count(backend: SearchBackend, index: str) -> int:
    backend.client.indices.refresh(index=index)
    return backend.count(index)


# --- (a) an outage mid-stream ------------------------------------------------------------------------------


def test_search_engine_outage_mid_stream_indexes_every_article_exactly_once(settings: Settings) -> None:
    items = [enriched(i, JAN if i % 2 else FEB) for i in range(600)]
    alias = settings.search.indices.articles
    produce(settings, items[:200])
    running = Running(settings, idle_exit_s=20)
    backend = connect(settings.search)
    wait_until(lambda: len(indexed_ids(backend, settings)) >= 50, 60, "first articles indexed")

    stopped = False
    try:
        stopped = local_stack.stop_component(settings, "opensearch")
        if not stopped:
            running.indexer.stop()
            pytest.skip("the search engine is not managed by this checkout's local stack: cannot stop it")
        produce(settings, items[200:400])  # Kafka takes them while the engine is down
        wait_until(lambda: running.indexer.stats.retries >= 2, 60, "the indexer retrying against a dead engine")
        produce(settings, items[400:])
        time.sleep(5)  # a while longer down, with work pending
    finally:
        if stopped:
            local_stack.start_component(settings, "opensearch")

    wait_until(lambda: len(indexed_ids(backend, settings)) >= len(items), 240, "all articles indexed")
    running.finish(timeout=180)
    ids = indexed_ids(backend, settings)
    assert len(ids) == len(items) == article_count(backend, alias)  # exactly once ...
    assert sorted(ids) == sorted(a.id for a in items)  # ... and every one of them
    assert running.indexer.stats.dead_letters == 0
    assert running.indexer.stats.retries >= 2


# --- (b) documents the engine refuses ----------------------------------------------------------------------


def test_refused_documents_are_dead_lettered_with_the_reason_and_the_rest_flows(settings: Settings) -> None:
    good = [enriched(i) for i in range(40)]
    # A producer bug gives one article an id longer than the engine's 512-byte limit; the engine would refuse
    # the whole bulk request for it, so the indexer must set it aside before sending.
    long_id = enriched(500, id="x" * 600)
    # A story snapshot whose article_count overflows the mapped `integer`: a real mapper_parsing_exception.
    overflow = enriched(501)
    assert overflow.story is not None
    overflow = overflow.model_copy(
        update={"story": overflow.story.model_copy(update={"story_id": "s-huge", "article_count": 3_000_000_000})}
    )
    produce(settings, [*good[:20], long_id, overflow, *good[20:]])

    running = Running(settings, idle_exit_s=5)
    running.finish()
    backend = connect(settings.search)
    assert sorted(indexed_ids(backend, settings)) == sorted(a.id for a in [*good, overflow])
    dead = wait_until(lambda: read_topic(settings, settings.kafka.topics.deadletter, 2000), 30, "dead letters")
    assert len(dead) == 2 == running.indexer.stats.dead_letters, [d["reason"] for d in dead]
    by_reason = {("long-id" if "bytes" in d["reason"] else "overflow"): d for d in dead}
    too_long = by_reason["long-id"]
    assert too_long["reason"] == "not indexable: article id is 600 bytes; the search engine accepts at most 512"
    assert EnrichedArticle.model_validate_json(too_long["payload"]).id == long_id.id  # the original message
    assert too_long["topic"] == settings.kafka.topics.enriched and too_long["offset"] is not None
    assert "mapper_parsing_exception" in by_reason["overflow"]["reason"]
    assert "article_count" in by_reason["overflow"]["reason"]
    assert "s-huge" in by_reason["overflow"]["reason"]
    assert running.indexer.stats.indexed == len(good) + 1


# --- (c) monthly indices -----------------------------------------------------------------------------------


def test_articles_land_in_their_month_and_reprocessing_never_doubles(settings: Settings) -> None:
    alias = settings.search.indices.articles
    items = [enriched(i, JAN if i % 3 else FEB) for i in range(90)]
    produce(settings, items)
    Running(settings, idle_exit_s=5).finish()
    backend = connect(settings.search)
    jan, feb = f"{alias}-2025.01", f"{alias}-2025.02"
    assert article_count(backend, jan) == 60 and article_count(backend, feb) == 30
    assert sorted(indexed_ids(backend, settings)) == sorted(a.id for a in items)
    assert set(backend.client.indices.get_alias(name=alias)) >= {jan, feb}
    assert set(backend.get_many(alias, [items[0].id, items[1].id])) == {items[0].id, items[1].id}

    produce(settings, items)  # the same messages again (a replay, a reset consumer group)
    again = Running(settings, idle_exit_s=5)
    again.finish()
    assert again.indexer.stats.indexed == len(items)  # written again ...
    assert article_count(backend, jan) == 60 and article_count(backend, feb) == 30  # ... over themselves
    assert article_count(backend, alias) == len(items)
    hits = backend.search(alias, {"query": {"match": {"title": "harbour expansion"}}, "size": 0})
    assert hits["hits"]["total"]["value"] == len(items)


# --- (d) template migration --------------------------------------------------------------------------------


def test_template_upgrade_keeps_old_documents_and_adds_new_fields(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias = settings.search.indices.articles
    current = tpl.article_mappings()

    def v1_mappings() -> dict[str, Any]:  # v1 did not map `summary` yet
        return {**current, "properties": {k: v for k, v in current["properties"].items() if k != "summary"}}

    def v2_mappings() -> dict[str, Any]:  # v2 maps `summary` and a new `word_count`
        return {**current, "properties": {**current["properties"], "word_count": {"type": "integer"}}}

    backend = connect(settings.search)
    monkeypatch.setattr(tpl, "TEMPLATE_VERSION", 1)
    monkeypatch.setattr(tpl, "article_mappings", v1_mappings)
    changes = backend.ensure_templates()
    assert f"template {alias} v1" in changes
    old = [enriched(i, JAN) for i in range(25)]
    assert all(o.ok for o in backend.bulk(bulk_actions(old, settings.search.indices)))
    jan = f"{alias}-2025.01"
    assert "summary" not in backend.client.indices.get_mapping(index=jan)[jan]["mappings"]["properties"]

    monkeypatch.setattr(tpl, "TEMPLATE_VERSION", 2)
    monkeypatch.setattr(tpl, "article_mappings", v2_mappings)
    changes = backend.ensure_templates()
    assert f"template {alias} v2" in changes
    assert f"mapping {jan}: +summary, +word_count" in changes, changes
    assert backend.ensure_templates() == []  # idempotent once migrated

    assert article_count(backend, alias) == len(old)  # nothing lost
    hits = backend.search(alias, {"query": {"match": {"title": "harbour"}}, "size": 0})
    assert hits["hits"]["total"]["value"] == len(old)  # still searchable on the old fields
    # ...and on the newly mapped one, once the background backfill has re-indexed the old documents in place
    wait_until(
        lambda: backend.count(alias, {"match": {"summary": "board votes"}}) == len(old), 60, "old docs backfilled"
    )
    new = [enriched(100, FEB)]
    assert all(o.ok for o in backend.bulk(bulk_actions(new, settings.search.indices)))
    feb = f"{alias}-2025.02"
    assert "word_count" in backend.client.indices.get_mapping(index=feb)[feb]["mappings"]["properties"]
    assert article_count(backend, alias) == len(old) + 1


# --- (e) an install from before monthly indices ------------------------------------------------------------


@pytest.mark.parametrize("legacy_docs", [0, 3])
def test_a_pre_partitioning_articles_index_is_migrated_without_loss(settings: Settings, legacy_docs: int) -> None:
    """A concrete `newsflow-articles` index (the first design) becomes monthly indices behind the alias."""
    backend = connect(settings.search)
    alias = settings.search.indices.articles
    backend.client.indices.create(index=alias, body={"mappings": tpl.article_mappings()})
    for i in range(legacy_docs):
        doc = enriched(i, JAN if i % 2 else FEB)
        backend.client.index(index=alias, id=doc.id, body={"@timestamp": doc.published.isoformat(), "id": doc.id})
    backend.client.indices.refresh(index=alias)

    backend.ensure_templates()

    assert backend.client.indices.exists_alias(name=alias)
    assert sorted(indexed_ids(backend, settings)) == sorted(enriched(i).id for i in range(legacy_docs))
    assert backend.ensure_templates() == []  # nothing left to migrate


# --- (e) story moves -------------------------------------------------------------------------------------------


def test_a_story_move_refiles_its_article_and_retires_the_merged_story(settings: Settings) -> None:
    """Articles of a small story, then the moves the worker emits when it merges that story into a bigger one:
    each article ends up under the bigger story (in its own monthly index), the merged story's document
    becomes a stub naming where it went, and a late snapshot of the merged story cannot bring it back."""
    from pipeline.models import StoryMove

    big = [enriched(i) for i in range(3)]  # story s-0, revisions 1..3
    small = [
        enriched(
            i,
            FEB,
            story_id="s-small",
            story=Story(story_id="s-small", title="Bridge", first_seen=FEB, last_seen=FEB, revision=i - 9),
        )
        for i in (10, 11)
    ]
    merged = Story(
        story_id="s-0",
        title="Story 0",
        article_count=5,
        first_seen=JAN,
        last_seen=FEB,
        revision=5,
        article_ids=[a.id for a in big + small],
    )
    moves = [
        StoryMove(
            article_id=a.id,
            published=a.published,
            story_id="s-0",
            merged_story_id="s-small",
            merged_revision=2,
            story=merged,
        )
        for a in small
    ]
    late = small[0].model_copy(update={"id": "art-00012", "story": small[0].story})  # snapshot revision 1
    produce(settings, big + small)
    prod = bus.producer(settings)
    for m in moves:
        prod.send(settings.kafka.topics.enriched, key=m.article_id, value=m.model_dump_json().encode())
    prod.flush()
    prod.close()
    produce(settings, [late])
    running = Running(settings, idle_exit_s=3.0)
    running.finish()

    backend = connect(settings.search)
    try:
        backend.refresh()
        docs = backend.client.search(
            index=settings.search.indices.articles, body={"size": 10, "query": {"match_all": {}}}
        )["hits"]["hits"]
        story_of = {d["_id"]: d["_source"]["story_id"] for d in docs}
        assert story_of == {**{a.id: "s-0" for a in big + small}, "art-00012": "s-small"}
        assert {d["_index"] for d in docs if d["_id"] in {"art-00010", "art-00011"}} == {
            tpl.article_index(settings.search.indices, FEB)
        }
        stories = settings.search.indices.stories
        stub = backend.client.get(index=stories, id="s-small")
        assert stub["_source"] == {"story_id": "s-small", "merged_into": "s-0", "revision": 3}
        assert stub["_version"] == 3  # the late revision-1 snapshot was refused
        story = backend.client.get(index=stories, id="s-0")["_source"]
        assert story["article_count"] == 5 and story["revision"] == 5
        assert running.indexer.stats.dead_letters == 0 and running.indexer.stats.indexed == 6
    finally:
        backend.close()
