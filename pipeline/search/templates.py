"""Index templates shared by Elasticsearch 8 and OpenSearch 2 (the same JSON works on both).

Unknown fields are ignored (`dynamic: false`): they stay in `_source` but never create mappings, so a
malformed producer cannot cause a mapping explosion. Bump TEMPLATE_VERSION when a mapping changes.
"""

from __future__ import annotations

from typing import Any

from pipeline.settings import Indices

TEMPLATE_VERSION = 1

_ENGLISH_TEXT: dict[str, Any] = {"type": "text", "analyzer": "english"}
_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}

ENTITY_FIELDS: dict[str, Any] = {
    "properties": {
        "person": _KEYWORD,
        "organization": _KEYWORD,
        "location": _KEYWORD,
        "other": _KEYWORD,
    }
}


def article_mappings() -> dict[str, Any]:
    return {
        "dynamic": False,
        "properties": {
            "@timestamp": {"type": "date"},
            "ingested_at": {"type": "date"},
            "fetched_at": {"type": "date"},
            "schema_version": {"type": "short"},
            "id": _KEYWORD,
            "url": _KEYWORD,
            "feed": _KEYWORD,
            "source": _KEYWORD,
            "language": _KEYWORD,
            "story_id": _KEYWORD,
            "duplicate_of": _KEYWORD,
            "is_duplicate": {"type": "boolean"},
            "title": {**_ENGLISH_TEXT, "fields": {"keyword": _KEYWORD}},
            "summary": _ENGLISH_TEXT,
            "text": _ENGLISH_TEXT,
            "entities": ENTITY_FIELDS,
            "entity_details": {"type": "object", "enabled": False},
        },
    }


def story_mappings() -> dict[str, Any]:
    return {
        "dynamic": False,
        "properties": {
            "@timestamp": {"type": "date"},
            "first_seen": {"type": "date"},
            "last_seen": {"type": "date"},
            "story_id": _KEYWORD,
            "title": {**_ENGLISH_TEXT, "fields": {"keyword": _KEYWORD}},
            "article_count": {"type": "integer"},
            "duplicate_count": {"type": "integer"},
            "source_count": {"type": "integer"},
            "sources": _KEYWORD,
            "article_ids": _KEYWORD,
            "entities": ENTITY_FIELDS,
            "revision": {"type": "long"},
        },
    }


def index_templates(indices: Indices) -> dict[str, dict[str, Any]]:
    """Template name -> composable index template body."""
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}
    meta = {"managed_by": "newsflow", "template_version": TEMPLATE_VERSION}
    return {
        indices.articles: {
            "index_patterns": [f"{indices.articles}*"],
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": meta,
            "template": {"settings": settings, "mappings": article_mappings()},
        },
        indices.stories: {
            "index_patterns": [f"{indices.stories}*"],
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": meta,
            "template": {"settings": settings, "mappings": story_mappings()},
        },
    }
