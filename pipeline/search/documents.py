"""Messages -> search documents and bulk actions.

Document ids are the article id and the story id, so re-processing overwrites instead of duplicating. Story
documents are written with external versioning (`version = story.revision`, `external_gte`): an older snapshot
that arrives late (a replay, a second indexer) can never overwrite a newer one. An article's index is the
monthly partition of its published time (`templates.article_index`), so a replay targets the same index too.

A story move (a small story merged into a bigger one) re-files the article with a partial update of its
`story_id` and retires the merged story's document: it is overwritten, one revision up, by a stub naming the
story it was merged into (no `@timestamp`, so time-filtered views leave it out). A stub rather than a delete:
a late snapshot of the merged story (another partition, a replay) is refused by its lower version for good,
while a delete's tombstone is forgotten after a minute.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from pipeline.models import EnrichedArticle, Entity, Story, StoryMove
from pipeline.search.templates import article_index
from pipeline.settings import Indices

MAX_ID_BYTES = 512  # both engines refuse longer ids, and refuse the WHOLE bulk request that carries one

_KEYWORD_TYPES = {"person": "person", "organization": "organization", "location": "location"}
_ENTITY_LIST = TypeAdapter(list[Entity])  # one call per article instead of a model_dump per entity


def entity_fields(entities: list[Entity]) -> dict[str, list[str]]:
    """Canonical names by type, as keyword arrays (`entities.person`, ...)."""
    out: dict[str, list[str]] = defaultdict(list)
    for e in entities:
        field = _KEYWORD_TYPES.get(e.type, "other")
        if e.name not in out[field]:
            out[field].append(e.name)
    return dict(out)


def unindexable_reason(article: EnrichedArticle) -> str | None:
    """Why an article cannot be sent at all, else None. Checked before the bulk request because the engine
    answers an over-long id with a request-level 400 that would fail every other document with it."""
    for what, value in (("article id", article.id), ("story id", article.story_id)):
        size = len(value.encode("utf-8"))
        if size > MAX_ID_BYTES:
            return f"{what} is {size} bytes; the search engine accepts at most {MAX_ID_BYTES}"
    return None


def article_document(article: EnrichedArticle, ingested_at: datetime | None = None) -> dict[str, Any]:
    return _article_document(article, (ingested_at or datetime.now(UTC)).isoformat())


def _article_document(article: EnrichedArticle, ingested_at: str) -> dict[str, Any]:
    return {
        "@timestamp": article.published.isoformat(),
        "ingested_at": ingested_at,
        "fetched_at": article.fetched_at.isoformat(),
        "schema_version": article.schema_version,
        "id": article.id,
        "url": article.url,
        "feed": article.feed,
        "source": article.source,
        "language": article.language,
        "story_id": article.story_id,
        "duplicate_of": article.duplicate_of,
        "is_duplicate": article.duplicate_of is not None,
        "title": article.title,
        "summary": article.summary,
        "text": article.text,
        "entities": entity_fields(article.entities),
        "entity_details": _ENTITY_LIST.dump_python(article.entities),
    }


def story_document(story: Story) -> dict[str, Any]:
    return {
        "@timestamp": story.first_seen.isoformat(),
        "first_seen": story.first_seen.isoformat(),
        "last_seen": story.last_seen.isoformat(),
        "story_id": story.story_id,
        "title": story.title,
        "article_count": story.article_count,
        "duplicate_count": story.duplicate_count,
        "source_count": len(story.sources),
        "sources": story.sources,
        "article_ids": story.article_ids,
        "entities": entity_fields(story.entities),
        "revision": story.revision,
    }


def bulk_actions(
    articles: list[EnrichedArticle], indices: Indices, moves: list[StoryMove] | None = None
) -> list[dict[str, Any]]:
    """One index action per article, one per story (its newest snapshot in this batch), then the moves: an
    update per moved article and a stub per merged story. Moves come last, so in one request an article is
    written before it is moved (the engine applies one shard's items in request order)."""
    moves = moves or []
    now = datetime.now(UTC).isoformat()  # one ingest time for the whole batch
    actions: list[dict[str, Any]] = [
        {
            "_op_type": "index",
            "_index": article_index(indices, a.published),
            "_id": a.id,
            "_source": _article_document(a, now),
        }
        for a in articles
    ]
    newest: dict[str, Story] = {}
    for story in [a.story for a in articles] + [m.story for m in moves]:
        if story is not None and (story.story_id not in newest or story.revision > newest[story.story_id].revision):
            newest[story.story_id] = story
    actions.extend(_story_action(indices, s.story_id, s.revision, story_document(s)) for s in newest.values())
    actions.extend(
        {
            "_op_type": "update",
            "_index": article_index(indices, m.published),
            "_id": m.article_id,
            "_source": {"doc": {"story_id": m.story_id}},
        }
        for m in moves
    )
    retired = {m.merged_story_id: m for m in moves}
    actions.extend(
        _story_action(indices, m.merged_story_id, m.merged_revision + 1, {"merged_into": m.story_id})
        for m in retired.values()
    )
    return actions


def _story_action(indices: Indices, story_id: str, revision: int, document: dict[str, Any]) -> dict[str, Any]:
    """A story document written at its revision (external versioning: an older one never overwrites it)."""
    return {
        "_op_type": "index",
        "_index": indices.stories,
        "_id": story_id,
        "version": revision,
        "version_type": "external_gte",
        "_source": {"story_id": story_id, **document, "revision": revision},
    }
