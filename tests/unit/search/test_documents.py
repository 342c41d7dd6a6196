"""Unit tests of `pipeline/search/documents.py` and `pipeline/search/templates.py` (no search engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.models import EnrichedArticle, Entity, Story
from pipeline.search.documents import article_document, bulk_actions, entity_fields, story_document
from pipeline.search.templates import (
    TEMPLATE_VERSION,
    article_index,
    article_mappings,
    field_paths,
    index_templates,
    mapping_changes,
    story_mappings,
)
from pipeline.settings import Indices

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
INDICES = Indices(articles="t-articles", stories="t-stories")

ENTITIES = [
    Entity(name="Angela Merkel", type="person", mentions=["Merkel"], count=2),
    Entity(name="European Union", type="organization"),
    Entity(name="Berlin", type="location"),
    Entity(name="Olympic Games", type="event"),
    Entity(name="iPhone", type="product"),
    Entity(name="Angela Merkel", type="person"),  # repeated: listed once
]


def _story(story_id: str = "s1", revision: int = 1, **kw: Any) -> Story:
    base: dict[str, Any] = {
        "story_id": story_id,
        "title": f"Story {story_id} r{revision}",
        "article_count": revision,
        "duplicate_count": 0,
        "sources": ["Alpha", "Beta"],
        "first_seen": T0,
        "last_seen": T0 + timedelta(hours=revision),
        "entities": ENTITIES[:3],
        "article_ids": [f"a{n}" for n in range(revision)],
        "revision": revision,
    }
    base.update(kw)
    return Story(**base)


def _article(article_id: str, story: Story | None = None, **kw: Any) -> EnrichedArticle:
    base: dict[str, Any] = {
        "id": article_id,
        "feed": "https://alpha.example/rss",
        "source": "Alpha",
        "url": f"https://alpha.example/{article_id}",
        "title": f"Title {article_id}",
        "summary": "summary",
        "text": "body text",
        "published": datetime(2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        "fetched_at": T0,
        "language": "en",
        "entities": ENTITIES,
        "story_id": story.story_id if story else "s1",
        "story": story,
    }
    base.update(kw)
    return EnrichedArticle(**base)


def _walk(props: dict[str, Any], doc: dict[str, Any], prefix: str = "") -> list[str]:
    """Every field path of `doc` that the mapping `props` does not declare."""
    missing: list[str] = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if key not in props:
            missing.append(path)
            continue
        spec = props[key]
        if isinstance(value, dict) and "properties" in spec:
            missing.extend(_walk(spec["properties"], value, f"{path}."))
        elif isinstance(value, dict):
            assert spec.get("type") == "object", f"{path} is an object but mapped as {spec}"
    return missing


# --- documents ---------------------------------------------------------------------------------------------


def test_entity_fields_group_canonical_names_by_type() -> None:
    assert entity_fields(ENTITIES) == {
        "person": ["Angela Merkel"],
        "organization": ["European Union"],
        "location": ["Berlin"],
        "other": ["Olympic Games", "iPhone"],
    }
    assert entity_fields([]) == {}


def test_article_document_fields() -> None:
    ingested = datetime(2024, 3, 2, tzinfo=UTC)
    doc = article_document(_article("a1"), ingested)
    assert doc["@timestamp"] == "2024-03-01T12:30:00+00:00"  # published, normalised to UTC
    assert doc["ingested_at"] == "2024-03-02T00:00:00+00:00"
    assert doc["fetched_at"] == "2024-03-01T12:00:00+00:00"
    assert doc["id"] == "a1"
    assert doc["story_id"] == "s1"
    assert doc["schema_version"] == 1
    assert doc["language"] == "en"
    assert doc["entities"]["person"] == ["Angela Merkel"]
    assert doc["entities"]["organization"] == ["European Union"]
    assert doc["entities"]["location"] == ["Berlin"]
    assert doc["entities"]["other"] == ["Olympic Games", "iPhone"]
    assert doc["entity_details"][0] == {
        "name": "Angela Merkel", "type": "person", "mentions": ["Merkel"], "count": 2
    }
    assert len(doc["entity_details"]) == len(ENTITIES)
    assert doc["is_duplicate"] is False
    assert doc["duplicate_of"] is None


def test_article_document_marks_duplicates() -> None:
    doc = article_document(_article("a2", duplicate_of="a1"))
    assert doc["is_duplicate"] is True
    assert doc["duplicate_of"] == "a1"


def test_article_document_defaults_ingested_at_to_now() -> None:
    before = datetime.now(UTC)
    doc = article_document(_article("a1"))
    after = datetime.now(UTC)
    assert before <= datetime.fromisoformat(doc["ingested_at"]) <= after


def test_story_document_fields() -> None:
    doc = story_document(_story("s9", revision=3))
    assert doc["@timestamp"] == T0.isoformat()
    assert doc["first_seen"] == T0.isoformat()
    assert doc["last_seen"] == (T0 + timedelta(hours=3)).isoformat()
    assert doc["story_id"] == "s9"
    assert doc["revision"] == 3
    assert doc["source_count"] == 2
    assert doc["sources"] == ["Alpha", "Beta"]
    assert doc["article_ids"] == ["a0", "a1", "a2"]
    assert doc["entities"] == {
        "person": ["Angela Merkel"], "organization": ["European Union"], "location": ["Berlin"]
    }


# --- bulk actions ------------------------------------------------------------------------------------------


def test_bulk_actions_one_article_action_each_and_newest_story_snapshot() -> None:
    s1r1, s1r3, s1r2 = _story("s1", 1), _story("s1", 3), _story("s1", 2)
    s2r5 = _story("s2", 5)
    articles = [
        _article("a1", s1r1),
        _article("a2", s1r3),
        _article("a3", s1r2),  # an older snapshot arriving later in the batch must not win
        _article("a4", s2r5),
        _article("a5", None, story_id="s3"),  # no snapshot: no story action
    ]
    actions = bulk_actions(articles, INDICES)

    article_actions = [a for a in actions if a["_index"].startswith("t-articles-")]
    story_actions = [a for a in actions if a["_index"] == "t-stories"]
    assert len(actions) == 7
    assert [a["_id"] for a in article_actions] == ["a1", "a2", "a3", "a4", "a5"]
    assert {a["_index"] for a in article_actions} == {"t-articles-2024.03"}  # the month of `published`
    assert all(a["_op_type"] == "index" for a in actions)
    assert all("version" not in a and "version_type" not in a for a in article_actions)
    assert [a["_source"]["id"] for a in article_actions] == ["a1", "a2", "a3", "a4", "a5"]
    # every article in one batch shares the same ingest time
    assert len({a["_source"]["ingested_at"] for a in article_actions}) == 1

    by_id = {a["_id"]: a for a in story_actions}
    assert sorted(by_id) == ["s1", "s2"]
    assert by_id["s1"]["version"] == 3
    assert by_id["s1"]["_source"]["revision"] == 3
    assert by_id["s1"]["_source"]["title"] == "Story s1 r3"
    assert by_id["s2"]["version"] == 5
    assert all(a["version_type"] == "external_gte" for a in story_actions)
    assert actions[:5] == article_actions  # articles first, then stories


def test_bulk_actions_empty_batch() -> None:
    assert bulk_actions([], INDICES) == []


def test_article_index_is_the_utc_month_of_published() -> None:
    cest = timezone(timedelta(hours=2))
    assert article_index(INDICES, datetime(2024, 3, 1, 1, 30, tzinfo=cest)) == "t-articles-2024.02"  # UTC: Feb 29
    assert article_index(INDICES, datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) == "t-articles-2024.12"


def test_a_replayed_article_targets_the_same_index_and_id() -> None:
    """Idempotency across partitions: the target is a function of the message, not of when it is indexed."""
    first = bulk_actions([_article("a1")], INDICES)[0]
    again = bulk_actions([_article("a1")], INDICES)[0]
    assert (first["_index"], first["_id"]) == (again["_index"], again["_id"])


# --- templates ---------------------------------------------------------------------------------------------


def test_every_article_document_field_is_mapped() -> None:
    doc = article_document(_article("a1", _story(), duplicate_of="a0"))
    props = article_mappings()["properties"]
    assert _walk(props, doc) == []
    # the entity keyword sub-fields exist for every type entity_fields can produce
    assert set(props["entities"]["properties"]) == {"person", "organization", "location", "other"}


def test_every_story_document_field_is_mapped() -> None:
    doc = story_document(_story(entities=ENTITIES))
    assert _walk(story_mappings()["properties"], doc) == []


def test_walk_detects_an_unmapped_field() -> None:
    """The helper above must be able to fail."""
    assert _walk({"a": {"type": "keyword"}}, {"a": "x", "b": 1, "c": {"d": 1}}) == ["b", "c"]
    assert _walk({"e": {"properties": {"x": {}}}}, {"e": {"x": ["v"], "y": ["w"]}}) == ["e.y"]


@pytest.mark.parametrize("mappings", [article_mappings, story_mappings])
def test_mappings_are_not_dynamic(mappings: Any) -> None:
    assert mappings()["dynamic"] is False


def test_field_types_used_in_queries() -> None:
    a = article_mappings()["properties"]
    s = story_mappings()["properties"]
    assert a["@timestamp"]["type"] == "date"
    assert a["story_id"]["type"] == "keyword"  # collapse + terms queries need a keyword
    assert a["is_duplicate"]["type"] == "boolean"
    assert a["entity_details"] == {"type": "object", "enabled": False}
    assert s["revision"]["type"] == "long"
    assert s["story_id"]["type"] == "keyword"


def test_index_templates_use_configured_names() -> None:
    templates = index_templates(INDICES)
    assert sorted(templates) == ["t-articles", "t-stories"]
    art, sto = templates["t-articles"], templates["t-stories"]
    assert art["index_patterns"] == ["t-articles-*"]  # the monthly indices, not the alias name itself
    assert art["template"]["aliases"] == {"t-articles": {}}  # every monthly index is read through the alias
    assert sto["index_patterns"] == ["t-stories"]
    assert "aliases" not in sto["template"]
    assert art["version"] == sto["version"] == TEMPLATE_VERSION
    assert art["template"]["mappings"] == article_mappings()
    assert sto["template"]["mappings"] == story_mappings()
    assert art["_meta"]["managed_by"] == "newsflow"


# --- template migrations -----------------------------------------------------------------------------------


def test_mapping_changes_of_an_up_to_date_index_are_none() -> None:
    props = article_mappings()["properties"]
    assert mapping_changes(props, props) == ({}, [])


def test_mapping_changes_finds_new_fields_subfields_and_multifields() -> None:
    current = {
        "title": {"type": "text"},
        "entities": {"properties": {"person": {"type": "keyword"}}},
        "url": {"type": "keyword"},
    }
    wanted = {
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "entities": {"properties": {"person": {"type": "keyword"}, "event": {"type": "keyword"}}},
        "url": {"type": "keyword"},
        "paywalled": {"type": "boolean"},
    }
    additions, conflicts = mapping_changes(current, wanted)
    assert conflicts == []
    assert additions == {
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "entities": {"properties": {"event": {"type": "keyword"}}},
        "paywalled": {"type": "boolean"},
    }
    assert sorted(set(field_paths(additions)) - set(field_paths(current))) == [
        "entities.event", "paywalled", "title.keyword"
    ]


def test_mapping_changes_reports_type_changes_instead_of_applying_them() -> None:
    additions, conflicts = mapping_changes(
        {"count": {"type": "integer"}, "entities": {"type": "keyword"}},
        {"count": {"type": "long"}, "entities": {"properties": {"person": {"type": "keyword"}}}},
    )
    assert additions == {}
    assert conflicts == ["count: integer -> long", "entities: keyword -> object"]


def test_a_story_move_updates_the_article_after_it_is_written_and_retires_the_merged_story() -> None:
    from pipeline.models import StoryMove

    small = _article("a5", _story("s-small", 2))
    big = _story("s-big", 7)
    move = StoryMove(
        article_id="a5", published=small.published, story_id="s-big", merged_story_id="s-small",
        merged_revision=2, story=big,
    )
    actions = bulk_actions([small], INDICES, [move, move])  # the same move twice (a replay) is harmless
    ops = [(a["_op_type"], a["_index"], a["_id"], a.get("version")) for a in actions]
    month = "t-articles-2024.03"
    assert ops[0] == ("index", month, "a5", None)  # written before it is moved, in the same request
    assert ("update", month, "a5", None) in ops[2:] and ops.index(("update", month, "a5", None)) > 0
    assert ("index", "t-stories", "s-big", 7) in ops
    stubs = [a for a in actions if a["_id"] == "s-small" and a["_source"].get("merged_into")]
    assert len(stubs) == 1 and stubs[0]["version"] == 3 and stubs[0]["version_type"] == "external_gte"
    assert stubs[0]["_source"] == {"story_id": "s-small", "merged_into": "s-big", "revision": 3}
    update = next(a for a in actions if a["_op_type"] == "update")
    assert update["_source"] == {"doc": {"story_id": "s-big"}}
