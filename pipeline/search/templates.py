"""Index templates shared by Elasticsearch 8 and OpenSearch 2 (the same JSON works on both).

Articles are time-partitioned: each goes to the monthly index of its `@timestamp` (published), e.g.
`newsflow-articles-2026.11`, and readers use the alias `newsflow-articles`, which the template attaches to every
monthly index. The partition is a pure function of the document, so a replayed article always lands on the same
index and overwrites itself; a data stream or rollover alias could not promise that (after a rollover the same id
would be written again into the new backing index). Stories stay one index: one document per story.

Unknown fields are ignored (`dynamic: false`): they stay in `_source` but never create mappings, so a
malformed producer cannot cause a mapping explosion. Bump TEMPLATE_VERSION when a mapping changes;
`SearchBackend.ensure_templates` then installs the new template and adds new fields to existing indices.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from pipeline.settings import Indices

TEMPLATE_VERSION = 3  # 3: stories.merged_into
PARTITION_FORMAT = "%Y.%m"  # monthly article indices; "%Y.%m.%d" would make them daily


def article_index(indices: Indices, published: datetime) -> str:
    """The monthly index an article is written to, from its published time in UTC (deterministic)."""
    utc = published.astimezone(UTC)
    return f"{indices.articles}-{_partition(utc.year, utc.month, utc.day)}"


@lru_cache(maxsize=4096)
def _partition(year: int, month: int, day: int) -> str:
    """The partition suffix of a UTC day; cached, as `strftime` is a noticeable share of building a batch."""
    return date(year, month, day).strftime(PARTITION_FORMAT)


def article_index_pattern(indices: Indices) -> str:
    """Every monthly article index (and nothing else: the alias itself has no dash suffix)."""
    return f"{indices.articles}-*"

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
            "merged_into": _KEYWORD,  # a small story merged into a bigger one: the id it lives on under
        },
    }


def index_templates(indices: Indices) -> dict[str, dict[str, Any]]:
    """Template name -> composable index template body (the articles template also carries the read alias)."""
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}
    meta = {"managed_by": "newsflow", "template_version": TEMPLATE_VERSION}
    return {
        indices.articles: {
            "index_patterns": [article_index_pattern(indices)],
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": meta,
            "template": {"settings": settings, "mappings": article_mappings(), "aliases": {indices.articles: {}}},
        },
        indices.stories: {
            "index_patterns": [indices.stories],
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": meta,
            "template": {"settings": settings, "mappings": story_mappings()},
        },
    }


def mapping_changes(
    current: dict[str, Any], wanted: dict[str, Any], path: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """Compare `properties` of a live index with the template's: (additions to put_mapping, incompatible fields).

    Only additions are applied in place (a new field, a new sub-field, a new multi-field): an existing field
    cannot change type without a reindex, so such a difference is reported, never forced.
    """
    additions: dict[str, Any] = {}
    conflicts: list[str] = []
    for name, spec in wanted.items():
        have = current.get(name)
        where = f"{path}{name}"
        if have is None:
            additions[name] = spec
        elif "properties" in spec:
            if "type" in have and have["type"] not in ("object", "nested"):
                conflicts.append(f"{where}: {have['type']} -> object")
                continue
            sub, bad = mapping_changes(have.get("properties", {}), spec["properties"], f"{where}.")
            conflicts.extend(bad)
            if sub:
                additions[name] = {**{k: v for k, v in spec.items() if k != "properties"}, "properties": sub}
        elif have.get("type", "object") != spec.get("type", "object"):
            conflicts.append(f"{where}: {have.get('type', 'object')} -> {spec.get('type', 'object')}")
        elif set(spec.get("fields", {})) - set(have.get("fields", {})):
            additions[name] = {**have, "fields": {**have.get("fields", {}), **spec["fields"]}}
    return additions, conflicts


def field_paths(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every field in a `properties` mapping (to report what a migration added)."""
    out: list[str] = []
    for name, spec in properties.items():
        out.append(f"{prefix}{name}")
        out.extend(field_paths(spec.get("properties", {}), f"{prefix}{name}."))
        out.extend(f"{prefix}{name}.{sub}" for sub in spec.get("fields", {}))
    return out
