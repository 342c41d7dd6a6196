"""What a person sees: `newsflow search` results and `newsflow status`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import status as heartbeat
from pipeline.errors import NewsflowError, QueryError
from pipeline.search import SearchBackend, connect
from pipeline.settings import Settings

STALE_AFTER_S = 30.0
FINISHED_SHOWN_S = 600.0  # processes that ended longer ago than this are counted, not listed (tests leave many)


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
        raise QueryError(f"search failed for {text!r}: {_short(exc)}") from None
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


def _short(exc: Exception) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and "error" in info:
        err = info["error"]
        return str(err.get("root_cause", [{}])[0].get("reason") or err.get("reason") or err)
    return f"{type(exc).__name__}: {exc}"


def format_story(n: int, hit: StoryHit) -> str:
    s = hit.story
    sources = ", ".join(s.get("sources", []))
    lines = [
        f"{n}. {s.get('title', '')}",
        f"   story {s.get('story_id')} · {s.get('article_count', len(hit.articles))} articles"
        f" ({s.get('duplicate_count', 0)} duplicates) · sources: {sources or '-'}"
        f" · first seen {s.get('first_seen', '?')[:16]}",
    ]
    for a in hit.articles:
        dup = f"  [duplicate of {a['duplicate_of']}]" if a.get("duplicate_of") else ""
        lines.append(f"   - {a.get('source', '?')}: {a.get('title', '')}{dup}")
        if a.get("url"):
            lines.append(f"     {a['url']}")
    return "\n".join(lines)


def search(
    settings: Settings, text: str, *, size: int = 10, as_json: bool = False, filters: SearchFilters | None = None
) -> int:
    """`newsflow search`: matching stories with their matching articles."""
    filters = filters or SearchFilters()
    if not text.strip() and not filters:
        # Wording pinned by tests/unit/test_cli.py; `newsflow search --help` lists the filters.
        raise QueryError("empty query: give some words to search for")
    backend = connect(settings.search)
    hits = find_stories(backend, settings, text, size, filters)
    if as_json:
        print(json.dumps([{"story": h.story, "articles": h.articles} for h in hits], default=str, indent=2))
    elif not hits:
        print(f"no stories match {describe(text, filters)}")
    else:
        print("\n\n".join(format_story(i, h) for i, h in enumerate(hits, start=1)))
    return 0


def describe(text: str, filters: SearchFilters) -> str:
    """What was asked, for the 'no stories match' line."""
    parts = [repr(text)] if text.strip() else []
    parts += [f'{kind}:"{name}"' for kind, name in filters.entities]
    parts += [f"source {' or '.join(repr(s) for s in filters.sources)}"] if filters.sources else []
    parts += [f"since {filters.since.removeprefix('now-')}"] if filters.since else []
    parts += ["no duplicates"] if filters.unique else []
    return ", ".join(parts)


def consumer_lag(settings: Settings) -> dict[str, int]:
    """Group -> messages not yet processed: the two worker stages, the indexer and the alerting stage."""
    from kafka import KafkaConsumer

    from pipeline import bus

    client = bus.admin(settings)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False, isolation_level="read_committed"
    )
    lags: dict[str, int] = {}
    try:
        w = settings.worker
        for group in (w.tag_group, w.assign_group, settings.indexer.group_id, settings.alerts.group_id):
            offsets = client.list_consumer_group_offsets(group)
            if not offsets:
                continue
            ends = consumer.end_offsets(list(offsets))
            lags[group] = sum(max(0, ends[tp] - om.offset) for tp, om in offsets.items() if om.offset >= 0)
    finally:
        consumer.close()
        client.close()
    return lags


def index_counts(settings: Settings) -> dict[str, int]:
    backend = connect(settings.search)
    idx = settings.search.indices
    backend.refresh()
    return {
        "articles": backend.count(idx.articles),
        "duplicates": backend.count(idx.articles, {"term": {"is_duplicate": True}}),
        "stories": backend.count(idx.stories),
    }


def component_state(beat: Mapping[str, Any], settings: Settings) -> tuple[str, bool]:
    """A component's state from its heartbeat, and whether that is a problem (alive but stuck)."""
    from pipeline import stack

    state = beat.get("state") or "running"
    pid = beat.get("pid")
    if state != "stopped" and not (isinstance(pid, int) and pid > 0 and stack.pid_alive(pid)):
        return "exited", False  # its last figures are still worth showing; a later run replaces them
    if state != "stopped" and beat["age_s"] >= STALE_AFTER_S:
        return f"silent for {beat['age_s']:.0f}s", True  # alive but not reporting
    if state == "running" and (beat.get("upkeep_s_ago") or 0) > 3 * settings.worker.maintenance_every_s:
        return "upkeep overdue", True  # the assign stage takes no batches: stories neither merge nor close
    return state, False


def status(settings: Settings) -> int:
    """`newsflow status`: stack health, each component's heartbeat, consumer lag, index counts."""
    from pipeline import stack

    problems = 0
    print("stack:")
    components = stack.status(settings)
    problems += sum(1 for c in components if not c.healthy)
    print(stack.format_status(components))
    print("components:")
    beats = heartbeat.read_all(settings.stack.state_dir)
    if not beats:
        print("  (no component has reported yet: start them with `newsflow run`)")
    hidden = 0
    for name, data in sorted(beats.items(), key=lambda kv: kv[1]["age_s"]):
        state, failing = component_state(data, settings)
        problems += failing
        if state in ("exited", "stopped") and data["age_s"] > FINISHED_SHOWN_S:
            hidden += 1
            continue
        figures = ", ".join(
            f"{k}={v}"
            for k, v in data.items()
            if k not in {"pid", "updated", "age_s", "failing_feeds", "state"} and v is not None
        )
        print(f"  {name:<8} {state:<22} {figures}")
        for url, err in (data.get("failing_feeds") or {}).items():
            print(f"           failing: {url}: {err}")
    if hidden:
        print(f"  ({hidden} process(es) that finished over {FINISHED_SHOWN_S / 60:.0f} min ago not shown)")
    try:
        for group, lag in consumer_lag(settings).items():
            print(f"lag: {group}: {lag} message(s) behind")
        counts = index_counts(settings)
        print(f"index: {counts['articles']} articles ({counts['duplicates']} duplicates), {counts['stories']} stories")
    except NewsflowError as exc:
        problems += 1
        print(f"unavailable: {exc}")
    return 1 if problems else 0
