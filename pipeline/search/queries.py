"""Story search as people ask it: free text plus filters (entity, source, since, no duplicates) -> the query
the stories and articles indices answer; used by `newsflow search`, the alerts API and subscriptions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import QueryError
from pipeline.search.backend import SearchBackend
from pipeline.settings import Settings

ENTITY_TYPES = ("person", "organization", "location")
_SINCE = re.compile(r"^(\d+)([mhdw])$")
_SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class SearchFilters:
    """What `newsflow search` narrows articles by, already validated (see `parse_filters`)."""

    entities: tuple[tuple[str, str], ...] = ()  # (type, canonical name): every one must match
    sources: tuple[str, ...] = ()  # any one may match
    since: str | None = None  # Elasticsearch date math, e.g. "now-24h"
    unique: bool = False  # leave out verbatim copies (is_duplicate: true)

    def __bool__(self) -> bool:
        return bool(self.entities or self.sources or self.since or self.unique)


def parse_entity(spec: str) -> tuple[str, str]:
    """`person:"Vladimir Putin"` -> ("person", "Vladimir Putin"). Names are matched exactly (canonical names,
    as shown in Kibana), so a typo in the type must fail loudly rather than silently match nothing."""
    kind, sep, name = spec.partition(":")
    kind, name = kind.strip().lower(), name.strip().strip('"').strip("'").strip()
    if not sep or not name:
        raise QueryError(f'bad --entity {spec!r}: use TYPE:NAME, e.g. person:"Vladimir Putin"')
    if kind not in ENTITY_TYPES:
        raise QueryError(f"bad --entity {spec!r}: type must be one of {', '.join(ENTITY_TYPES)}")
    return kind, name


def parse_since(spec: str, name: str = "--since") -> str:
    """`24h` / `7d` / `30m` / `2w` -> `now-24h` (date math the engine evaluates, so no clock skew here).
    The one reading of a look-back for the CLI and the API (`name` is what the message calls the input)."""
    match = _SINCE.match(spec.strip())
    if not match or int(match.group(1)) == 0:
        units = ", ".join(f"{u} ({name})" for u, name in _SINCE_UNITS.items())
        raise QueryError(f"bad {name} {spec!r}: use a positive number and a unit, e.g. 24h, 7d, 30m; units: {units}")
    return f"now-{int(match.group(1))}{match.group(2)}"


def parse_filters(
    entities: Sequence[str] = (), sources: Sequence[str] = (), since: str | None = None, unique: bool = False
) -> SearchFilters:
    """Validate every filter before any request is sent: malformed input is one QueryError line."""
    names = tuple(s.strip() for s in sources)
    if any(not n for n in names):
        raise QueryError("bad --source '': give the outlet name as shown in results, e.g. --source \"Harbor Times\"")
    return SearchFilters(
        entities=tuple(parse_entity(e) for e in entities),
        sources=names,
        since=parse_since(since) if since is not None else None,
        unique=unique,
    )


def filter_clauses(filters: SearchFilters) -> list[dict[str, Any]]:
    """Filter context (no scoring, cacheable): exact terms on keyword fields, a range on the publish time."""
    clauses: list[dict[str, Any]] = [{"term": {f"entities.{kind}": name}} for kind, name in filters.entities]
    if filters.sources:
        clauses.append({"terms": {"source": list(filters.sources)}})
    if filters.since:
        clauses.append({"range": {"@timestamp": {"gte": filters.since}}})
    if filters.unique:
        clauses.append({"term": {"is_duplicate": False}})
    return clauses


def build_query(text: str, filters: SearchFilters | None = None) -> dict[str, Any]:
    """The article query: words (scored, all required) plus filters. Words are optional when filters narrow."""
    must: list[dict[str, Any]] = []
    if text.strip():
        must.append(
            {
                "simple_query_string": {
                    "query": text,
                    "fields": ["title^3", "summary^2", "text"],
                    "default_operator": "and",
                }
            }
        )
    return {"bool": {"must": must or [{"match_all": {}}], "filter": filter_clauses(filters or SearchFilters())}}


@dataclass
class StoryHit:
    story: dict[str, Any]
    articles: list[dict[str, Any]] = field(default_factory=list)


def find_stories(
    backend: SearchBackend, settings: Settings, text: str, size: int = 10, filters: SearchFilters | None = None
) -> list[StoryHit]:
    """Best-matching stories (one hit per story via collapse), each with its matching articles, oldest first.

    Without words there is no relevance, so the newest matching articles decide the order instead.
    """
    idx = settings.search.indices
    filters = filters or SearchFilters()
    body: dict[str, Any] = {
        "size": size,
        "query": build_query(text, filters),
        "collapse": {"field": "story_id"},
        "_source": ["story_id"],
    }
    if not text.strip():
        body["sort"] = [{"@timestamp": "desc"}]
    try:
        hits = backend.search(idx.articles, body)["hits"]["hits"]
    except Exception as exc:
        raise QueryError(f"search failed for {text!r}: {engine_reason(exc)}") from None
    story_ids = [h["_source"]["story_id"] for h in hits]
    stories = backend.get_many(idx.stories, story_ids)
    members = backend.search(
        idx.articles,
        {
            "size": 50 * max(1, len(story_ids)),
            "query": {"bool": {"filter": [{"terms": {"story_id": story_ids}}, *filter_clauses(filters)]}},
            "sort": [{"@timestamp": "asc"}],
            "_source": ["id", "title", "source", "url", "story_id", "duplicate_of", "@timestamp"],
        },
    )["hits"]["hits"]
    out = {sid: StoryHit(stories.get(sid, {"story_id": sid, "title": "(story not indexed yet)"})) for sid in story_ids}
    for m in members:
        out[m["_source"]["story_id"]].articles.append(m["_source"])
    return list(out.values())


def engine_reason(exc: Exception) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and "error" in info:
        err = info["error"]
        return str(err.get("root_cause", [{}])[0].get("reason") or err.get("reason") or err)
    return f"{type(exc).__name__}: {exc}"
