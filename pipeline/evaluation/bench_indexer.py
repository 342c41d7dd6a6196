"""Indexer throughput against the engine's own ceiling, on the same synthetic documents in one run.

1. raw: the search client's bulk helper writes the documents straight into fresh indices (no Kafka, no
   parsing) - what the engine can take from one client with the same bulk size;
2. indexer: the same articles as messages on a fresh enriched topic, consumed by `Indexer.run` from start
   until its last commit (the idle wait before it exits is not counted) - Kafka fetch, parsing, batching,
   bulk writes, dead-letter checks and offset commits included.

The ratio (2)/(1) says how much the pipeline costs over a bare bulk load; the target is >= 0.8. Both use
the real templates, unique topic/index names, and everything created is deleted afterwards. Usage:
`python -m pipeline.evaluation.bench_indexer [--docs N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import bus
from pipeline.indexer import Indexer
from pipeline.models import EnrichedArticle, Entity, Story
from pipeline.search import SearchBackend, connect
from pipeline.search.documents import bulk_actions
from pipeline.settings import Indices, Settings, load_settings

T0 = datetime(2026, 10, 20, tzinfo=UTC)  # spans two monthly indices
WORDS = [
    "harbour",
    "authority",
    "council",
    "minister",
    "election",
    "budget",
    "storm",
    "river",
    "bridge",
    "court",
    "ruling",
    "police",
    "market",
    "shares",
    "energy",
    "prices",
    "strike",
    "union",
    "hospital",
    "school",
    "research",
    "vaccine",
    "museum",
    "festival",
    "football",
    "league",
    "transfer",
    "coach",
    "airline",
    "airport",
    "railway",
    "tunnel",
    "wind",
    "farm",
    "drought",
    "harvest",
]
PLACES = ["Berlin", "Lisbon", "Osaka", "Nairobi", "Quito", "Oslo", "Perth", "Seoul"]


def synthetic_articles(n: int, seed: int = 11) -> list[EnrichedArticle]:
    """Deterministic articles shaped like real ones: ~1.5 kB of text, entities, a story snapshot every
    article (ten articles per story, increasing revisions), published over six weeks."""
    rng = random.Random(seed)
    out: list[EnrichedArticle] = []
    for i in range(n):
        published = T0 + timedelta(minutes=3 * i % (60 * 24 * 42))
        place = PLACES[i % len(PLACES)]
        story = Story(
            story_id=f"story-{i // 10:06d}",
            title=f"{place} {rng.choice(WORDS)} {i // 10}",
            article_count=i % 10 + 1,
            first_seen=published,
            last_seen=published,
            sources=[f"Outlet {k}" for k in range(i % 10 + 1)],
            entities=[Entity(name=place, type="location")],
            article_ids=[f"bench-{j:07d}" for j in range(i - i % 10, i + 1)],
            revision=i % 10 + 1,
        )
        out.append(
            EnrichedArticle(
                id=f"bench-{i:07d}",
                feed=f"https://outlet{i % 50}.example/rss",
                source=f"Outlet {i % 50}",
                url=f"https://outlet{i % 50}.example/news/{i}",
                title=" ".join(rng.choices(WORDS, k=9)),
                summary=" ".join(rng.choices(WORDS, k=30)),
                text=" ".join(rng.choices(WORDS, k=220)),
                published=published,
                language="en",
                entities=[Entity(name=place, type="location"), Entity(name=f"Person {i % 300}", type="person")],
                story_id=story.story_id,
                story=story,
            )
        )
    return out


def bench_settings(prefix: str) -> Settings:
    """Settings with topics, indices and the consumer group of this run only (env wins over the files)."""
    os.environ.update(
        {
            "NEWSFLOW_KAFKA__TOPICS__ENRICHED": f"{prefix}.enriched",
            "NEWSFLOW_KAFKA__TOPICS__DEADLETTER": f"{prefix}.deadletter",
            "NEWSFLOW_INDEXER__GROUP_ID": f"{prefix}-indexer",
            "NEWSFLOW_SEARCH__INDICES__ARTICLES": f"{prefix}-articles",
            "NEWSFLOW_SEARCH__INDICES__STORIES": f"{prefix}-stories",
        }
    )
    return load_settings()


def raw_bulk(backend: SearchBackend, articles: list[EnrichedArticle], indices: Indices) -> tuple[float, int]:
    """Seconds to bulk-load the documents with the client's helper, and how many were acknowledged."""
    actions = bulk_actions(articles, indices)  # built before the clock starts: this is the engine's ceiling
    helper = backend._bulk_helper()
    started = time.perf_counter()
    ok = sum(
        1
        for good, _ in helper(backend.client, actions, chunk_size=backend.settings.bulk_max_docs, raise_on_error=False)
        if good
    )
    return time.perf_counter() - started, ok


def produce(settings: Settings, articles: list[EnrichedArticle]) -> None:
    prod = bus.producer(settings, linger_ms=50, batch_size=256 * 1024)
    for a in articles:
        prod.send(settings.kafka.topics.enriched, key=a.id, value=a.model_dump_json().encode())
    prod.flush()
    prod.close()


def through_indexer(settings: Settings) -> tuple[float, int]:
    """Seconds from the indexer's start to its last commit, and how many articles it indexed."""
    indexer = Indexer(settings)
    started = time.monotonic()
    stats = indexer.run(idle_exit_s=3.0)
    if stats.last_commit_at is None:
        raise RuntimeError("the indexer committed nothing")
    return stats.last_commit_at - started, stats.indexed


def cleanup(backend: SearchBackend, settings: Settings, raw: Indices) -> None:
    """Delete every index, template and topic this run created."""
    from kafka.admin import KafkaAdminClient

    for idx in (settings.search.indices, raw):
        for name in backend.client.indices.get(index=f"{idx.articles}-*,{idx.stories}", ignore=[404]) or {}:
            if name not in ("error", "status"):
                backend.client.indices.delete(index=name, ignore=[404])
        for template in (idx.articles, idx.stories):
            backend.client.indices.delete_index_template(name=template, ignore=[404])
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.delete_topics([settings.kafka.topics.enriched, settings.kafka.topics.deadletter])
    except Exception as exc:  # a leftover topic is harmless; say so and go on
        print(f"note: bench topics not deleted ({type(exc).__name__})")
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=20_000, help="synthetic enriched articles (default 20,000)")
    args = parser.parse_args(argv)

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = bench_settings(prefix)
    raw = Indices(articles=f"{prefix}-raw-articles", stories=f"{prefix}-raw-stories")
    articles = synthetic_articles(args.docs)
    backend = connect(settings.search)
    raw_backend = connect(settings.search.model_copy(update={"indices": raw}))
    results: dict[str, Any] = {}
    try:
        raw_backend.ensure_templates()  # the same templates and mappings as the indexer's indices
        results["raw_s"], results["raw_ok"] = raw_bulk(raw_backend, articles, raw)
        bus.ensure_topics(settings)
        produce(settings, articles)
        results["idx_s"], results["idx_ok"] = through_indexer(settings)
        raw_backend.refresh()
        backend.refresh()
        results["raw_count"] = raw_backend.count(raw.articles)
        results["idx_count"] = backend.count(settings.search.indices.articles)
    finally:
        cleanup(backend, settings, raw)
        raw_backend.close()
        backend.close()

    n = len(articles)
    stories = len({a.story_id for a in articles})
    raw_rate, idx_rate = n / results["raw_s"], n / results["idx_s"]
    print(
        f"bench_indexer: {n} articles (+{stories} story documents, {n} story snapshots), {backend.kind}, "
        f"bulk size {settings.search.bulk_max_docs}, {settings.kafka.partitions} partitions"
    )
    print(
        f"  raw bulk helper : {raw_rate:8.0f} articles/s  ({results['raw_s']:.2f} s, "
        f"{results['raw_count']} articles in the index)"
    )
    print(
        f"  indexer (Kafka) : {idx_rate:8.0f} articles/s  ({results['idx_s']:.2f} s start -> last commit, "
        f"{results['idx_count']} articles in the index)"
    )
    print(f"  ratio           : {idx_rate / raw_rate:.2f} (target >= 0.80)")
    if results["raw_count"] != n or results["idx_count"] != n:
        print("  WARNING: not every article was indexed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
