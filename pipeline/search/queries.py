"""Story search as people ask it: free text plus filters (entity, source, since, no duplicates) -> the query
the stories and articles indices answer; used by `newsflow search`, the alerts API and subscriptions.

The text is read by `query_text` (the safe subset, within `search.query_limits`); what the engine answers when
it fails is told apart here (`engine_failure`): a refused query, a timeout, a busy or unreachable engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import QueryError
from pipeline.search.backend import SearchBackend, describe_unreachable
from pipeline.search.query_text import check_query, check_values, query_string_clause, shown
from pipeline.settings import QueryLimits, Settings

ENTITY_TYPES = ("person", "organization", "location")
_SINCE = re.compile(r"^(\d{1,6})([mhdw])$")
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


SEARCH_FIELDS = ("title^3", "summary^2", "text")


def build_query(text: str, filters: SearchFilters | None = None, limits: QueryLimits | None = None) -> dict[str, Any]:
    """The article query: words (scored, all required) plus filters. Words are optional when filters narrow.
    The text and the filters are checked first (`query_text`): a QueryError line, nothing sent."""
    limits = limits or QueryLimits()
    filters = filters or SearchFilters()
    checked = check_query(text, limits, "search query")
    check_values([name for _, name in filters.entities], limits, "--entity values")
    check_values(filters.sources, limits, "--source values")
    must = [query_string_clause(checked, SEARCH_FIELDS)] if checked else [{"match_all": {}}]
    return {"bool": {"must": must, "filter": filter_clauses(filters)}}


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
        "query": build_query(text, filters, settings.search.query_limits),
        "collapse": {"field": "story_id"},
        "_source": ["story_id"],
    }
    if not text.strip():
        body["sort"] = [{"@timestamp": "desc"}]
    try:
        hits = backend.search(idx.articles, body)["hits"]["hits"]
    except Exception as exc:
        failure = engine_failure(exc)
        if failure is None:
            raise
        raise QueryError(f"search failed for {shown(text)}: {failure.detail}") from None
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


def engine_reason(exc: BaseException, keep: int = 200) -> str:
    """The engine's own reason for an error answer: its innermost cause (e.g. `too_many_clauses: maxClauseCount
    is set to 1024`, not "Failed to parse query [...the whole query...]"), on one line, cut to `keep` characters."""
    reason = f"{type(exc).__name__}: {exc}"
    for body in (getattr(exc, "info", None), getattr(exc, "body", None)):  # opensearch-py, elasticsearch-py
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            reason = _innermost(body["error"])
            break
    reason = " ".join(reason.split())
    return reason if len(reason) <= keep else f"{reason[:keep]}..."


def _innermost(error: dict[str, Any]) -> str:
    shards = error.get("failed_shards") or []
    if shards and isinstance(shards[0], dict) and isinstance(shards[0].get("reason"), dict):
        error = shards[0]["reason"]
    elif not isinstance(error.get("caused_by"), dict) and error.get("root_cause"):
        error = error["root_cause"][0]
    while isinstance(error.get("caused_by"), dict):
        error = error["caused_by"]
    kind, reason = error.get("type"), error.get("reason")
    return f"{kind}: {reason}" if kind and reason else str(reason or kind or error)


@dataclass(frozen=True)
class EngineFailure:
    """What an engine failure means for whoever asked: an HTTP status for the API and one line."""

    status: int
    detail: str


def engine_failure(exc: BaseException) -> EngineFailure | None:
    """Tell a refused query (422), a timeout (504), a busy engine (503), an engine error (502) and an unreachable
    engine (503) apart; None if `exc` is no search-client error. Only a failed connection says "not reachable":
    an engine that took the request and did not answer in time is reachable, and overloaded or stuck."""
    from elastic_transport import ConnectionTimeout as EsTimeout
    from elasticsearch import ApiError as EsApiError
    from opensearchpy.exceptions import ConnectionTimeout as OsTimeout
    from opensearchpy.exceptions import TransportError as OsTransportError
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(exc, EsTimeout) and any(isinstance(e, ConnectTimeoutError) for e in getattr(exc, "errors", ())):
        return EngineFailure(503, describe_unreachable(exc) or "search engine not reachable")
    if isinstance(exc, OsTimeout | EsTimeout):
        return EngineFailure(504, "the search engine did not answer in time (it may be overloaded); try again later")
    if unreachable := describe_unreachable(exc):
        return EngineFailure(503, unreachable)
    if not isinstance(exc, OsTransportError | EsApiError):
        return None
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "meta", None), "status", None)
    if not isinstance(status, int):
        return None
    reason = engine_reason(exc)
    if status == 400:
        return EngineFailure(422, f"the search engine refused the query: {reason}")
    if status in (408, 504):
        return EngineFailure(504, f"the search engine did not answer in time: {reason}")
    if status == 429:
        return EngineFailure(503, f"the search engine is busy (429), try again later: {reason}")
    if status >= 500:
        return EngineFailure(502, f"the search engine failed ({status}): {reason}")
    return None
