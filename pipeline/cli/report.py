"""What a person sees: `newsflow search` results and `newsflow status`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline import status as heartbeat
from pipeline.errors import NewsflowError, QueryError
from pipeline.search import connect
from pipeline.search.queries import SearchFilters, StoryHit, build_query, find_stories
from pipeline.settings import Settings

STALE_AFTER_S = 30.0
FINISHED_SHOWN_S = 600.0  # processes that ended longer ago than this are counted, not listed (tests leave many)


def format_story(n: int, hit: StoryHit, *, max_sources: int = 5) -> str:
    """A story as a reader counts it: reports, outlets, copies; the counts agree with what is listed below."""
    s = hit.story
    sources = list(s.get("sources", []))
    reports = int(s.get("article_count", 0)) + int(s.get("duplicate_count", 0)) or len(hit.articles)
    copies = int(s.get("duplicate_count", 0))
    counts = f"{_plural(reports, 'report')} from {_plural(len(sources), 'outlet')}"
    if copies:
        counts += f", {copies} of them {'a copy' if copies == 1 else 'copies'} of another report"
    lines = [
        f"{n}. {s.get('title', '')}",
        f"   story {s.get('story_id')} · {counts} · first seen {_utc(s.get('first_seen'))}",
        f"   outlets: {cut(sources, max_sources) or '-'}",
    ]
    source_of = {a.get("id"): a.get("source", "?") for a in hit.articles}
    for a in hit.articles:
        original = a.get("duplicate_of")
        dup = f"  [copy of the {source_of[original]} report]" if original in source_of else ""
        dup = dup or (f"  [copy of {original}]" if original else "")
        lines.append(f"   - {a.get('source', '?')}: {a.get('title', '')}{dup}")
        if a.get("url"):
            lines.append(f"     {a['url']}")
    if 0 < len(hit.articles) < reports:
        lines.append(f"   (+{reports - len(hit.articles)} more in this story that do not match the query)")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def cut(items: list[str], keep: int) -> str:
    """A list for one line: the first `keep`, then "+N more"."""
    shown = ", ".join(items[:keep])
    return f"{shown} +{len(items) - keep} more" if len(items) > keep else shown


def _utc(value: object) -> str:
    """An ISO time as "YYYY-MM-DD HH:MM UTC" (marked, so nobody reads it as local time)."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return "?"
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def search(
    settings: Settings, text: str, *, size: int = 10, as_json: bool = False, filters: SearchFilters | None = None
) -> int:
    """`newsflow search`: matching stories with their matching articles."""
    filters = filters or SearchFilters()
    if not text.strip() and not filters:
        # Wording pinned by tests/unit/test_cli.py; `newsflow search --help` lists the filters.
        raise QueryError("empty query: give some words to search for")
    build_query(text, filters, settings.search.query_limits)  # a query outside the limits stops here, unsent
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
            lags[group] = sum(
                messages_between(consumer, tp, om.offset, ends[tp]) for tp, om in offsets.items() if om.offset >= 0
            )
    finally:
        consumer.close()
        client.close()
    return lags


def messages_between(consumer: Any, tp: Any, start: int, end: int, exact_up_to: int = 1000) -> int:
    """Committed messages in [start, end). Transactions leave a commit marker after their records, which takes an
    offset but is no message, so an idle, caught-up group sits a few offsets short of the end: small gaps are
    counted record by record; large ones (a real backlog) are the offset difference, close enough."""
    gap = end - start
    if gap <= 0 or gap > exact_up_to:
        return max(0, gap)
    consumer.assign([tp])
    consumer.seek(tp, start)
    count, deadline = 0, time.monotonic() + 5.0
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            count += sum(1 for r in records if r.offset < end)
    return count if consumer.position(tp) >= end else gap


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
