"""`newsflow search` filters on the real search engine: each filter really narrows the stories and articles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.cli import report
from pipeline.models import EnrichedArticle, Entity, Story
from pipeline.search import SearchBackend
from pipeline.search.queries import find_stories, parse_filters
from tests.conftest import Isolated
from tests.integration.helpers import articles_in_engine

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def enriched(
    art_id: str, story_id: str, source: str, age: timedelta, entities: list[Entity], duplicate_of: str | None = None
) -> EnrichedArticle:
    published = NOW - age
    story = Story(story_id=story_id, title=f"Story {story_id}", first_seen=published, last_seen=published)
    return EnrichedArticle(
        id=art_id,
        feed=f"http://test/{source}.xml",
        source=source,
        url=f"https://{source.replace(' ', '').lower()}.example/{art_id}",
        title=f"Summit report {art_id}",
        summary=f"Leaders met at the summit ({art_id}).",
        published=published,
        entities=entities,
        story_id=story_id,
        story=story,
        duplicate_of=duplicate_of,
    )


PUTIN = Entity(name="Vladimir Putin", type="person")
KIM = Entity(name="Kim Jong Un", type="person")
UN = Entity(name="United Nations", type="organization")
PYONGYANG = Entity(name="Pyongyang", type="location")

ARTICLES = [
    enriched("a1", "s-1", "Harbor Times", timedelta(hours=1), [PUTIN, PYONGYANG]),
    enriched("a2", "s-1", "Wire Digest", timedelta(minutes=30), [PUTIN, PYONGYANG], duplicate_of="a1"),
    enriched("a3", "s-2", "Meridian Post", timedelta(days=3), [UN]),
    enriched("a4", "s-3", "Northern Ledger", timedelta(days=10), [KIM, PYONGYANG]),
]


@pytest.fixture
def backend(isolated: Isolated) -> Iterator[SearchBackend]:
    with articles_in_engine(isolated.settings, ARTICLES) as engine:
        yield engine


def search(iso: Isolated, engine: SearchBackend, text: str = "", **filters: object) -> dict[str, list[str]]:
    """Story id -> ids of the articles shown under it."""
    hits = find_stories(engine, iso.settings, text, 10, parse_filters(**filters))  # type: ignore[arg-type]
    return {h.story["story_id"]: sorted(a["id"] for a in h.articles) for h in hits}


def test_each_filter_narrows_stories_and_articles(isolated: Isolated, backend: SearchBackend) -> None:
    assert search(isolated, backend, "summit") == {"s-1": ["a1", "a2"], "s-2": ["a3"], "s-3": ["a4"]}
    assert search(isolated, backend, entities=["person:Vladimir Putin"]) == {"s-1": ["a1", "a2"]}
    assert search(isolated, backend, entities=["location:Pyongyang"]) == {"s-1": ["a1", "a2"], "s-3": ["a4"]}
    assert search(isolated, backend, entities=["location:Pyongyang", "person:Kim Jong Un"]) == {"s-3": ["a4"]}
    assert search(isolated, backend, entities=["organization:United nations"]) == {}  # exact canonical names
    assert search(isolated, backend, sources=["Meridian Post"]) == {"s-2": ["a3"]}
    assert search(isolated, backend, sources=["Meridian Post", "Northern Ledger"]) == {"s-2": ["a3"], "s-3": ["a4"]}
    assert search(isolated, backend, since="24h") == {"s-1": ["a1", "a2"]}
    assert search(isolated, backend, since="45m") == {"s-1": ["a2"]}
    assert search(isolated, backend, since="7d") == {"s-1": ["a1", "a2"], "s-2": ["a3"]}
    assert search(isolated, backend, unique=True) == {"s-1": ["a1"], "s-2": ["a3"], "s-3": ["a4"]}
    assert search(isolated, backend, "summit", entities=["person:Vladimir Putin"], unique=True, since="24h") == {
        "s-1": ["a1"]
    }


def test_search_command_prints_filtered_json(
    isolated: Isolated, backend: SearchBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    filters = parse_filters(sources=["Wire Digest"])
    assert report.search(isolated.settings, "", as_json=True, filters=filters) == 0
    [hit] = json.loads(capsys.readouterr().out)
    assert hit["story"]["story_id"] == "s-1"
    assert [(a["id"], a["duplicate_of"]) for a in hit["articles"]] == [("a2", "a1")]
    assert report.search(isolated.settings, "", filters=parse_filters(sources=["Nobody"])) == 0
    assert capsys.readouterr().out == "no stories match source 'Nobody'\n"
