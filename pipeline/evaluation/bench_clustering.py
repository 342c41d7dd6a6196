"""Clustering throughput and memory, on synthetic articles generated here (no shared data needed).

Prints (1) articles/s of the full clustering step (tag with the stream's EntityTagger, then assign), (2)
articles/s of assignment alone with `--stories` live stories in the window (default 100,000), and (3) the
memory those live stories take (RSS delta and Python-heap delta), and (4) one settle pass (merging quiet small
stories) over that window once it is all quiet. Usage:
`python -m pipeline.evaluation.bench_clustering [--stories N] [--probe N] [--full N]`.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pipeline.models import Article, TaggedArticle
from pipeline.settings import load_settings
from pipeline.stories.engine import StoryEngine
from pipeline.stories.features import with_features
from pipeline.stories.offline import default_tagger

T0 = datetime(2026, 1, 5, tzinfo=UTC)
FETCH_LAG_MIN = 7.0  # minutes from publication to the poller fetching an item


def vocabulary(n: int = 20_000) -> list[str]:
    """Real English words, most frequent first (wordfreq ships them), so IDF behaves as on real text."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", n) if w.isalpha()]


class Synth:
    """Deterministic synthetic news: each story has its own rare words and names; reports mix them with
    common English, so stories overlap in vocabulary the way real ones do."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary()
        self.common = self.words[:2000]
        self.rare = self.words[2000:]

    def story(self) -> list[str]:
        names = [f"{self.rng.choice(self.rare).title()}{self.rng.choice(self.rare)}" for _ in range(3)]
        return self.rng.sample(self.rare, 15) + names

    def article(self, aid: str, topic: list[str], minutes: float, length: int = 250) -> TaggedArticle:
        rng = self.rng
        words = [rng.choice(topic) if rng.random() < 0.3 else rng.choice(self.common) for _ in range(length)]
        title = " ".join(rng.sample(topic, 5) + rng.sample(self.common, 3)).capitalize()
        when = T0 + timedelta(minutes=minutes)
        fetched = when + timedelta(minutes=FETCH_LAG_MIN)  # dated, as real feed items: stated days get resolved
        return TaggedArticle(
            id=aid,
            feed="bench",
            source=f"outlet-{rng.randrange(50)}",
            title=title,
            text=" ".join(words) + ".",
            published=when,
            fetched_at=fetched,
        )

    def stream(self, n: int, n_stories: int, prefix: str, start_min: float = 0.0) -> Iterator[TaggedArticle]:
        """`n` reports over `n_stories` stories, in time order over one day."""
        topics = [self.story() for _ in range(n_stories)]
        for i in range(n):
            yield self.article(f"{prefix}{i}", topics[i % n_stories], start_min + i * 1440.0 / max(n, 1))


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def rate(n: int, wall: float, cpu: float, unit: str = "articles") -> str:
    """Throughput by wall clock and by this process's CPU time (the machine is shared: wall time varies)."""
    return f"{n / wall:,.0f} {unit}/s wall, {n / cpu:,.0f} {unit}/s per CPU-second"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=100_000, help="live stories in the window")
    parser.add_argument("--probe", type=int, default=5_000, help="articles timed against the live stories")
    parser.add_argument("--full", type=int, default=1_000, help="articles timed through tag + assign")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure the Python heap (slower)")
    args = parser.parse_args(argv)
    settings = load_settings()
    synth = Synth()

    # 1. full step: tag + assign, fresh engine
    tag = default_tagger(settings)
    full = [
        Article(**a.model_dump(exclude={"language", "entities"}))
        for a in synth.stream(args.full, max(1, args.full // 4), "f")
    ]
    engine = StoryEngine(settings.dedup)
    wall, cpu = time.perf_counter(), time.process_time()
    batch = settings.worker.tag_batch_size
    for i in range(0, len(full), batch):
        chunk = full[i : i + batch]
        for article in tag(chunk) if tag else [TaggedArticle(**a.model_dump()) for a in chunk]:
            engine.assign(article)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    what = "EntityTagger + assign" if tag else "assign only: pipeline.nlp.entities not available"
    print(f"full clustering step ({what}), {args.full} articles: {rate(args.full, wall, cpu)}")

    # 2. fill the window with N live stories (one report each), measuring memory
    gc.collect()
    # Stories of two reports count as big here (`small_story_max` 1; assignment does not use it), so the
    # settle pass in step 4 has the probes' 2-report stories to score every quiet single report against.
    engine = StoryEngine(settings.dedup.model_copy(update={"small_story_max": 1}))
    rss0 = rss_mb()
    if args.tracemalloc:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    for article in synth.stream(args.stories, args.stories, "w"):
        engine.assign(article)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.collect()
    live = len(engine.store.stories)
    per100k = 100_000 / max(live, 1)
    print(f"filled {live:,} live stories: {rate(args.stories, wall, cpu)}")
    rss = rss_mb() - rss0
    line = f"memory per 100k live stories (store + derived index): {rss * per100k:,.0f} MB RSS"
    if args.tracemalloc:
        heap = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        line += f", {heap * per100k:,.0f} MB Python heap"
    print(line + f" ({rss * 1024 / max(live, 1):.1f} KiB per story)")

    # 3. assignment alone against the full window, as the assign stage runs it (decode the tagged message,
    # assign): with the features the tagging stage attached, and with the assign stage computing them (what an
    # article without them costs; `newsflow cluster` too). Each on its own probes: pairs of reports of new
    # stories, so half open a story and half join one.
    runs = (("features from the tag stage", "p", True), ("features computed here", "q", False))
    for name, prefix, precomputed in runs:
        probe_topics = [synth.story() for _ in range(args.probe // 2)]
        probes = [synth.article(f"{prefix}{i}", probe_topics[i // 2], 1440.0 + i * 0.01) for i in range(args.probe)]
        messages = [  # the tagging stage's output; its work is not timed here
            (with_features(a, settings.dedup) if precomputed else a).model_dump_json().encode() for a in probes
        ]
        wall, cpu = time.perf_counter(), time.process_time()
        joined = sum(not engine.assign(TaggedArticle.model_validate_json(m)).is_new_story for m in messages)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"assignment alone with {live:,} live stories, {name}: {rate(args.probe, wall, cpu)} "
            f"({args.probe} articles, {joined} joined an existing story)"
        )
    # 4. the stream's upkeep: one settle pass once the whole window has gone quiet (every small story is
    # scored once against the bigger ones), i.e. the most a single pass can have to do
    quiet = max(state["t1"] for state in engine.store.stories.values()) + settings.dedup.settle_minutes * 60 + 1
    small = sum(state["n"] <= engine.settings.small_story_max for state in engine.store.stories.values())
    big = len(engine.store.stories) - small
    wall, cpu = time.perf_counter(), time.process_time()
    merged = len(engine.settle(quiet))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"settle pass over {small:,} quiet single-report stories against {big:,} bigger ones ({merged} merged): "
        f"{rate(small, wall, cpu, 'stories')}"
    )
    started = time.perf_counter()
    removed = engine.expire(T0 + timedelta(days=30))
    print(f"expire of {removed:,} stories: {time.perf_counter() - started:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
