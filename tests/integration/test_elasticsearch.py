"""The same index design on a real Elasticsearch 8 (elasticsearch-py). Runs when NEWSFLOW_ES_URL points at one,
e.g. `docker compose up -d elasticsearch` then `NEWSFLOW_ES_URL=http://127.0.0.1:9200 make test`; there is no
Elasticsearch on a machine without Docker, so the group is skipped there (and says why)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.models import EnrichedArticle, Story
from pipeline.search import connect
from pipeline.search.backend import ElasticsearchBackend, SearchBackend, detect_kind
from pipeline.search.documents import bulk_actions
from pipeline.settings import Indices, SearchSettings

ES_URL = os.environ.get("NEWSFLOW_ES_URL")
pytestmark = [
    pytest.mark.elasticsearch,
    pytest.mark.skipif(not ES_URL, reason="set NEWSFLOW_ES_URL to an Elasticsearch 8 to run this group"),
]


@pytest.fixture
def backend() -> Iterator[SearchBackend]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = SearchSettings(
        url=ES_URL or "", backend="auto", indices=Indices(articles=f"{prefix}-articles", stories=f"{prefix}-stories")
    )
    be = connect(settings)
    yield be
    for pattern in (f"{prefix}-articles*", f"{prefix}-stories"):
        be.client.indices.delete(index=pattern, ignore_unavailable=True)
    for name in (settings.indices.articles, settings.indices.stories):
        be.client.indices.delete_index_template(name=name, ignore=[404])
    be.close()


def test_the_server_is_detected_as_elasticsearch(backend: SearchBackend) -> None:
    assert detect_kind(backend.settings) == "elasticsearch"
    assert isinstance(backend, ElasticsearchBackend)


def test_templates_bulk_versioned_stories_and_search_work_on_elasticsearch(backend: SearchBackend) -> None:
    assert backend.ensure_templates()
    assert backend.ensure_templates() == []
    now = datetime.now(UTC)
    new = Story(story_id="s-1", title="Newer", article_count=2, first_seen=now, last_seen=now, revision=2)
    old = new.model_copy(update={"title": "Older", "revision": 1})
    articles = [
        EnrichedArticle(
            id=f"a{i}",
            feed="f",
            source=f"S{i}",
            title=f"Harbour strike day {i}",
            story_id="s-1",
            story=new if i else old,
            published=now,
        )
        for i in range(3)
    ]
    for batch in (articles, articles[::-1]):  # replays, in any order
        outcomes = backend.bulk(bulk_actions(batch, backend.settings.indices))
        assert all(o.ok or o.stale_version for o in outcomes), [o.error for o in outcomes]
    backend.refresh()
    assert backend.count(backend.settings.indices.articles) == 3
    assert backend.get_many(backend.settings.indices.stories, ["s-1"])["s-1"]["title"] == "Newer"
    hits = backend.search(backend.settings.indices.articles, {"query": {"match": {"title": "strike"}}})
    assert hits["hits"]["total"]["value"] == 3
