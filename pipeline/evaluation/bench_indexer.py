"""Indexer throughput against the engine's own ceiling: the same bulk requests, in one run.

Each round writes the same synthetic articles twice, into fresh indices with the real templates:

1. indexer: the articles as messages on an enriched topic (produced once, before any clock), consumed by a new
   `Indexer` with its own consumer group. Timed from constructing the indexer (Kafka and search-engine
   clients, template check, consumer-group join) to its last offset commit: Kafka fetch, message parsing and
   validation, building documents, story-snapshot filtering, encoding, bulk writes, dead-letter checks and
   offset commits are all inside. The idle wait before it exits is not counted.
2. raw: the client's bulk helper (`streaming_bulk`) replays exactly the bulk requests the indexer sent (the
   same documents, story snapshots included, with the same request boundaries), from ready-made action
   dicts: timed from the first request to the last answer, i.e. the helper's encoding plus the engine.

So the ratio (1)/(2) is what the pipeline costs over a bare bulk load of the same work; the target is >= 0.8.
The indices are deleted between the two, so neither writes into the other's segments, and the order
alternates between rounds (odd: indexer first; even: raw first, replaying the previous round's requests)
so warm-up and background merges favour neither. A first warm-up round (a freshly started engine and JVM
ran it at about half speed) is printed but not counted; the median of the counted rounds is the result.
Everything created is deleted afterwards. Usage:
`python -m pipeline.evaluation.bench_indexer [--docs N] [--rounds R] [--warmup W]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.models import EnrichedArticle, Entity, Story
from pipeline.search import SearchBackend, connect
from pipeline.search.indexer import Indexer
from pipeline.settings import Settings, load_settings
from pipeline.stream import bus

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


Requests = list[bytes]  # the bulk requests the indexer sent, as NDJSON bodies (compact, invisible to the GC)


@dataclass
class Timed:
    """One measured load: seconds, articles in the index afterwards, bulk items sent (articles + stories),
    and for the indexer the seconds before its first bulk request (clients, template check, group join,
    first fetch and batch): a fixed cost that is part of its time, shown apart so it can be judged."""

    seconds: float
    articles: int
    items: int
    startup: float = 0.0


def produce(settings: Settings, articles: list[EnrichedArticle]) -> None:
    prod = bus.producer(settings, linger_ms=50, batch_size=256 * 1024)
    for a in articles:
        prod.send(settings.kafka.topics.enriched, key=a.id, value=a.model_dump_json().encode())
    prod.flush()
    prod.close()


def through_indexer(settings: Settings, recorded: Requests) -> tuple[float, float]:
    """Seconds from constructing the indexer to its last commit, and to its first bulk request; every bulk
    request it sends is appended to `recorded` (the replay for the raw load)."""
    started = time.monotonic()
    first_request: list[float] = []
    indexer = Indexer(settings)
    send = indexer.backend._send_bulk

    def recording(body: bytes) -> dict[str, Any]:
        if not first_request:
            first_request.append(time.monotonic())
        recorded.append(body)  # the body the indexer built anyway: keeping it costs nothing
        return send(body)

    indexer.backend._send_bulk = recording  # type: ignore[method-assign]
    try:
        stats = indexer.run(idle_exit_s=1.5)
    finally:
        indexer.backend.close()
    if stats.last_commit_at is None or not first_request:
        raise RuntimeError("the indexer committed nothing")
    return stats.last_commit_at - started, first_request[0] - started


def decode_requests(requests: Requests) -> list[list[dict[str, Any]]]:
    """The recorded requests as the helper's action dicts (`_op_type`, metadata, `_source`)."""
    decoded: list[list[dict[str, Any]]] = []
    for body in requests:
        lines = [json.loads(line) for line in body.splitlines() if line]
        actions: list[dict[str, Any]] = []
        for meta_line, source in zip(lines[::2], lines[1::2], strict=True):
            ((op, meta),) = meta_line.items()
            actions.append({"_op_type": op, **meta, "_source": source})
        decoded.append(actions)
    return decoded


def client_bulk_helper(backend: SearchBackend) -> Callable[..., Iterable[tuple[bool, dict[str, Any]]]]:
    """The client's own `streaming_bulk` (the baseline; the indexer posts its own bodies instead)."""
    if backend.kind == "opensearch":
        from opensearchpy.helpers import streaming_bulk

        return streaming_bulk  # type: ignore[no-any-return,unused-ignore]
    from elasticsearch.helpers import streaming_bulk as es_streaming_bulk

    return es_streaming_bulk


def raw_bulk(backend: SearchBackend, requests: list[list[dict[str, Any]]], threads: int = 1) -> float:
    """Seconds for the client's bulk helper to send the same requests, one helper call per request, with
    `threads` calls (requests) in flight at a time."""
    helper = client_bulk_helper(backend)

    def send(actions: list[dict[str, Any]]) -> None:
        for ok, item in helper(backend.client, actions, chunk_size=len(actions), raise_on_error=False):
            result = next(iter(item.values()))
            if not ok and result.get("status") != 409:  # 409: a stale story snapshot, as for the indexer
                raise RuntimeError(f"raw bulk load: an item failed: {result}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(send, requests):
            pass
    return time.perf_counter() - started


def delete_indices(backend: SearchBackend) -> None:
    """Delete this run's article and story indices."""
    idx = backend.settings.indices
    for name in backend.client.indices.get(index=f"{idx.articles}-*,{idx.stories}", ignore=[404]) or {}:
        if name not in ("error", "status"):  # the body of a 404 answer
            backend.client.indices.delete(index=name, ignore=[404])


def reset(backend: SearchBackend) -> None:
    """Every load starts equal: this run's indices deleted and set up again (templates kept), and the
    objects already in memory (the bench's own data) frozen, so the garbage collector only walks what the
    load itself allocates; `gc.unfreeze` after the load."""
    delete_indices(backend)
    backend.ensure_templates()
    gc.collect()
    gc.freeze()


def articles_indexed(backend: SearchBackend) -> int:
    backend.refresh()
    return backend.count(backend.settings.indices.articles)


def measure_indexer(settings: Settings, backend: SearchBackend, round_no: int, recorded: Requests) -> Timed:
    group = f"{settings.indexer.group_id}-{round_no}"
    round_settings = settings.model_copy(update={"indexer": settings.indexer.model_copy(update={"group_id": group})})
    reset(backend)
    try:
        seconds, startup = through_indexer(round_settings, recorded)
    finally:
        gc.unfreeze()
    return Timed(seconds, articles_indexed(backend), sum(r.count(b"\n") // 2 for r in recorded), startup)


def measure_raw(backend: SearchBackend, requests: Requests, threads: int) -> Timed:
    actions = decode_requests(requests)  # ready-made documents: building them is not the helper's work
    reset(backend)
    try:
        seconds = raw_bulk(backend, actions, threads)
    finally:
        gc.unfreeze()
    return Timed(seconds, articles_indexed(backend), sum(len(a) for a in actions))


def cleanup(backend: SearchBackend, settings: Settings) -> None:
    """Delete every index, template and topic this run created."""
    delete_indices(backend)
    for template in (settings.search.indices.articles, settings.search.indices.stories):
        backend.client.indices.delete_index_template(name=template, ignore=[404])
    admin = bus.admin(settings)
    try:
        admin.delete_topics([settings.kafka.topics.enriched, settings.kafka.topics.deadletter])
    except Exception as exc:  # a leftover topic is harmless; say so and go on
        print(f"note: bench topics not deleted ({type(exc).__name__})")
    finally:
        admin.close()


@dataclass
class Round:
    raw: Timed  # the helper, one request at a time (`streaming_bulk` as documented)
    raw_parallel: Timed  # the helper, as many requests in flight as the indexer keeps
    indexer: Timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=20_000, help="synthetic enriched articles (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="indexer + raw pairs; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, printed and not counted")
    args = parser.parse_args(argv)

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = bench_settings(prefix)
    in_flight = settings.search.bulk_concurrency
    articles = synthetic_articles(args.docs)
    n, stories = len(articles), len({a.story_id for a in articles})
    backend = connect(settings.search)
    rounds: list[Round] = []
    try:
        bus.ensure_topics(settings)
        produce(settings, articles)
        del articles  # on the topic now; a real indexer process does not hold them either
        previous: Requests = []
        for round_no in range(1, args.warmup + args.rounds + 1):
            recorded: Requests = []
            if round_no % 2 == 1:
                idx = measure_indexer(settings, backend, round_no, recorded)
                raw = measure_raw(backend, recorded, threads=1)
                raw_parallel = measure_raw(backend, recorded, threads=in_flight)
            else:
                raw = measure_raw(backend, previous, threads=1)
                raw_parallel = measure_raw(backend, previous, threads=in_flight)
                idx = measure_indexer(settings, backend, round_no, recorded)
            previous = recorded
            rounds.append(Round(raw, raw_parallel, idx))
    finally:
        cleanup(backend, settings)
        backend.close()
    return report(rounds, n, stories, backend.kind, settings, warmup=args.warmup)


def report(rounds: list[Round], n: int, stories: int, kind: str, settings: Settings, warmup: int = 0) -> int:
    """Print every round and the median ratios of those after the warm-up; non-zero if any load lost articles."""
    in_flight = settings.search.bulk_concurrency
    print(
        f"bench_indexer: {n} articles, {stories} stories (a snapshot on every article), {kind}, "
        f"bulk size {settings.search.bulk_max_docs} articles + their stories' newest snapshots, "
        f"{settings.kafka.partitions} partitions, {len(rounds) - warmup} round(s) after {warmup} warm-up round(s)"
    )
    print(
        "  raw      = client bulk helper replaying the indexer's requests, one at a time, first request -> last answer"
    )
    print(f"  raw x{in_flight}   = the same with {in_flight} requests in flight (threads), as the indexer keeps")
    print(
        f"  indexer  = Kafka -> Indexer.run ({in_flight} bulk requests in flight), construction -> last offset commit"
    )
    ratios, parallel_ratios, steady = [], [], []
    ok = True
    for i, r in enumerate(rounds, 1 - warmup):
        raw_rate, par_rate, idx_rate = n / r.raw.seconds, n / r.raw_parallel.seconds, n / r.indexer.seconds
        ok = ok and all(t.articles == n for t in (r.raw, r.raw_parallel, r.indexer))
        counted = i >= 1
        if counted:
            ratios.append(idx_rate / raw_rate)
            parallel_ratios.append(idx_rate / par_rate)
            steady.append(r.raw.seconds / (r.indexer.seconds - r.indexer.startup))
        name = f"round {i}" if counted else "warm-up"
        print(
            f"  {name}: raw {raw_rate:5.0f}/s ({r.raw.seconds:5.2f} s) | raw x{in_flight} {par_rate:5.0f}/s "
            f"({r.raw_parallel.seconds:5.2f} s) | indexer {idx_rate:5.0f}/s ({r.indexer.seconds:5.2f} s, start-up "
            f"{r.indexer.startup:.2f} s) | {r.indexer.items} items | ratio {idx_rate / raw_rate:.2f} (x{in_flight}: "
            f"{idx_rate / par_rate:.2f})" + ("" if counted else " | not counted")
        )
    print(f"  indexer / raw (median of rounds): {statistics.median(ratios):.2f} (target >= 0.80)")
    print(f"  indexer / raw x{in_flight} (median): {statistics.median(parallel_ratios):.2f}")
    print(f"  for information, indexer / raw without the indexer's start-up: {statistics.median(steady):.2f}")
    if not ok:
        print("  WARNING: not every article was indexed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
