"""What a person sees: `newsflow search` results and `newsflow status`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline import status as heartbeat
from pipeline.errors import NewsflowError, QueryError
from pipeline.search import connect
from pipeline.search.queries import SearchFilters, StoryHit, find_stories
from pipeline.settings import Settings

STALE_AFTER_S = 30.0
FINISHED_SHOWN_S = 600.0  # processes that ended longer ago than this are counted, not listed (tests leave many)


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

    from pipeline.stream import bus

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
    from pipeline import devstack as stack

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
    from pipeline import devstack as stack

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
