"""What a person sees: `newsflow search` results and `newsflow status`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline import status as heartbeat
from pipeline.errors import NewsflowError, QueryError
from pipeline.search import SearchBackend, connect
from pipeline.settings import Settings

STALE_AFTER_S = 30.0


@dataclass
class StoryHit:
    story: dict[str, Any]
    articles: list[dict[str, Any]] = field(default_factory=list)


def find_stories(backend: SearchBackend, settings: Settings, text: str, size: int = 10) -> list[StoryHit]:
    """Best-matching stories (one hit per story via collapse), each with its articles, oldest first."""
    idx = settings.search.indices
    query = {
        "simple_query_string": {
            "query": text,
            "fields": ["title^3", "summary^2", "text"],
            "default_operator": "and",
        }
    }
    try:
        hits = backend.search(
            idx.articles,
            {"size": size, "query": query, "collapse": {"field": "story_id"}, "_source": ["story_id"]},
        )["hits"]["hits"]
    except Exception as exc:
        raise QueryError(f"search failed for {text!r}: {_short(exc)}") from None
    story_ids = [h["_source"]["story_id"] for h in hits]
    stories = backend.get_many(idx.stories, story_ids)
    members = backend.search(
        idx.articles,
        {
            "size": 50 * max(1, len(story_ids)),
            "query": {"terms": {"story_id": story_ids}},
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


def search(settings: Settings, text: str, *, size: int = 10, as_json: bool = False) -> int:
    """`newsflow search`: matching stories with their articles."""
    if not text.strip():
        raise QueryError("empty query: give some words to search for")
    backend = connect(settings.search)
    hits = find_stories(backend, settings, text, size)
    if as_json:
        print(json.dumps([{"story": h.story, "articles": h.articles} for h in hits], default=str, indent=2))
    elif not hits:
        print(f"no stories match {text!r}")
    else:
        print("\n\n".join(format_story(i, h) for i, h in enumerate(hits, start=1)))
    return 0


def consumer_lag(settings: Settings) -> dict[str, int]:
    """Group -> messages not yet processed, for the indexer and the Faust worker."""
    from kafka import KafkaConsumer

    from pipeline import bus

    client = bus.admin(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    lags: dict[str, int] = {}
    try:
        for group in (settings.indexer.group_id, settings.worker.app_id):
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
    for name, data in beats.items():
        fresh = data["age_s"] < STALE_AFTER_S
        state = data.get("state") or "running"
        if state != "stopped" and not fresh:
            state = f"silent for {data['age_s']:.0f}s"
            problems += 1
        figures = ", ".join(
            f"{k}={v}"
            for k, v in data.items()
            if k not in {"pid", "updated", "age_s", "failing_feeds", "state"} and v is not None
        )
        print(f"  {name:<8} {state:<22} {figures}")
        for url, err in (data.get("failing_feeds") or {}).items():
            print(f"           failing: {url}: {err}")
    try:
        for group, lag in consumer_lag(settings).items():
            print(f"lag: {group}: {lag} message(s) behind")
        counts = index_counts(settings)
        print(f"index: {counts['articles']} articles ({counts['duplicates']} duplicates), {counts['stories']} stories")
    except NewsflowError as exc:
        problems += 1
        print(f"unavailable: {exc}")
    return 1 if problems else 0
