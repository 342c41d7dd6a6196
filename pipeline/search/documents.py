"""Messages -> search documents and bulk actions.

Document ids are the article id and the story id, so re-processing overwrites instead of duplicating. Story
documents are written with external versioning (`version = story.revision`, `external_gte`): an older snapshot
that arrives late (a replay, a second indexer) can never overwrite a newer one. An article's index is the
monthly partition of its published time (`templates.article_index`), so a replay targets the same index too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from pipeline.models import EnrichedArticle, Entity, Story
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


def bulk_actions(articles: list[EnrichedArticle], indices: Indices) -> list[dict[str, Any]]:
    """One index action per article plus one per story (its newest snapshot in this batch)."""
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
    for a in articles:
        if a.story is not None and (
            a.story.story_id not in newest or a.story.revision > newest[a.story.story_id].revision
        ):
            newest[a.story.story_id] = a.story
    actions.extend(
        {
            "_op_type": "index",
            "_index": indices.stories,
            "_id": s.story_id,
            "version": s.revision,
            "version_type": "external_gte",
            "_source": story_document(s),
        }
        for s in newest.values()
    )
    return actions
