"""End-to-end benchmark: feeds on loopback -> poller -> Kafka -> worker(s) -> indexer -> OpenSearch.

Usage: `python -m pipeline.evaluation.bench_e2e [--feeds 50] [--items 40] [--workers 1] [--fresh 40]`
(`make bench-e2e`; also part of `make bench`). A command, not a test: it asserts nothing, it prints figures.

One run on the real local stack, with topics, indices, consumer groups and state of its own
(`isolation.isolated_env` through `chaos.Run`, but with the configured batching: the tests' shorter
`tag_batch_window_s` / `bulk_max_seconds` overrides are removed), all deleted at the end. The feeds are
`--feeds` RSS files served over HTTP on 127.0.0.1, `--items` items each, from `chaos.synthetic_articles`
(stories of 1-5 reports by different outlets, some verbatim copies, 80-115 words each); every feed is polled
with min = max interval 1 s and jitter 0 (`poller --static`). Worker(s) and indexer start first and the bench
waits until they are ready (model loaded, all workers in the tag group, indices created); then the poller starts.
What each figure measures:

- sustained articles/s: feeds x items / (moment the last of them is searchable - the earliest Kafka record
  timestamp in the articles topic, i.e. the poller's first produce). "Searchable" = counted by a search
  right after an explicit refresh, polled at 5 Hz (so up to 0.2 s late).
- raw NER rate: the same texts, read back from the index and built as the tagger builds them (`article_text`,
  cut at `entities.max_chars`), through `nlp.pipe` of the configured model loaded as the tagger loads it
  (`nlp.model.load_model`: tokenizer + NER only), batch size `entities.batch_size`, in this process after the
  children have stopped; best of two passes after a warm-up. The ratio is e2e / raw.
- CPU share: CPU seconds (user + system, psutil) each process used during the throughput window (poller
  start -> last searchable) divided by that window's wall time; 100 % is one core (this machine has
  `os.cpu_count()`). Listed: poller, worker(s), indexer, Kafka, OpenSearch, this process (HTTP server and
  the search polling) and the whole machine. The lifetime share (CPU / process age) of each child is also shown.
- freshness: with the pipeline warm and idle (3 s after the throughput phase), `--fresh` new items are written
  (atomically) into the feeds, round-robin, at 20 items/s, while the index is searched for them (refresh +
  terms query on their URLs) at 20 Hz. poll->searchable = first seen - the article's `fetched_at` as indexed
  (set by the poller when the poll that fetched it got its response); write->searchable = first seen - the
  moment the bench wrote the item, which adds the wait for the next poll (up to 1 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
from kafka import KafkaConsumer, TopicPartition

from pipeline.devstack.demo import serve_directory
from pipeline.evaluation.chaos import Run, cleanup, feed_xml, settings_for, synthetic_articles, wait_for
from pipeline.evaluation.isolation import indexed_count
from pipeline.models import Article
from pipeline.nlp.entities import article_text
from pipeline.nlp.model import load_model
from pipeline.search import SearchBackend, connect
from pipeline.settings import Settings, load_settings
from pipeline.stream import bus

FRESH_RATE = 20.0  # items/s written during the freshness phase
TEST_OVERRIDES = ("NEWSFLOW_SEARCH__BULK_MAX_SECONDS", "NEWSFLOW_WORKER__TAG_BATCH_WINDOW_S")


def write_feed(site: Path, i: int, items: list[Article]) -> None:
    """Feed `i` with `items` newest first, replaced atomically (a poll never reads half a file). The loopback
    server's Last-Modified has whole seconds, so each version gets an mtime at least 1 s past the previous one
    (else a second write within the same second would be answered 304 to a poller that saw the first)."""
    path, tmp = site / f"f{i}.xml", site / f".f{i}.xml.tmp"
    previous = path.stat().st_mtime if path.exists() else 0.0
    tmp.write_text(feed_xml(f"Outlet {i}", items[::-1]))
    mtime = max(time.time(), math.floor(previous) + 1.0)
    os.utime(tmp, (mtime, mtime))
    tmp.replace(path)


def first_produce(settings: Settings, timeout_s: float = 30.0) -> float | None:
    """The earliest record timestamp (producer CreateTime, seconds) in the run's articles topic."""
    topic = settings.kafka.topics.articles
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        stamps: list[int] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                if tp in pending and records:
                    stamps.append(records[0].timestamp)
                    pending.discard(tp)
                    consumer.pause(tp)
        return min(stamps) / 1000 if stamps else None
    finally:
        consumer.close()


def group_members(settings: Settings, group: str) -> int:
    client = bus.admin(settings)
    try:
        info = client.describe_consumer_groups([group])[0]
        return len(info.members) if info.state == "Stable" else 0
    finally:
        client.close()


def indexed_texts(backend: SearchBackend, settings: Settings) -> list[str]:
    """The indexed articles' texts as the tagger built them from the polled items."""
    body = {"size": 10_000, "query": {"match_all": {}}, "_source": ["feed", "source", "title", "summary", "text"]}
    hits = backend.search(settings.search.indices.articles, body)["hits"]["hits"]
    cut = settings.entities.max_chars
    return [article_text(Article(id=h["_id"], **h["_source"]))[:cut] for h in hits]


def raw_ner_rate(settings: Settings, texts: list[str]) -> tuple[float, float]:
    """(texts/s, seconds) of the configured model's `nlp.pipe`, best of two passes after a warm-up."""
    nlp = load_model(settings.entities.model)
    for _doc in nlp.pipe(texts[:50], batch_size=settings.entities.batch_size):
        pass
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=settings.entities.batch_size):
            pass
        best = min(best, time.perf_counter() - started)
    return len(texts) / best, best


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class CpuMeter:
    """CPU seconds of named processes (and of the whole machine) between two samples."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.last: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = self.last.get(name, 0.0)
        m = psutil.cpu_times()
        out["(machine)"] = m.user + m.system + m.nice + getattr(m, "irq", 0) + getattr(m, "softirq", 0)
        self.last = out
        return out

    def lifetime_shares(self) -> dict[str, float]:
        now = time.time()
        shares = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                shares[name] = (t.user + t.system) / max(1e-9, now - proc.create_time())
            except psutil.Error:
                pass
        return shares


def freshness(
    site: Path, backend: SearchBackend, settings: Settings, per_feed: list[list[Article]], fresh: list[Article]
) -> tuple[list[float], list[float], int]:
    """Write `fresh` into the feeds at FRESH_RATE while searching for them at 20 Hz.
    Returns (poll->searchable, write->searchable, items never seen within 60 s)."""
    written: dict[str, float] = {}
    lock = threading.Lock()

    def writer() -> None:
        start = time.monotonic()
        for k, item in enumerate(fresh):
            time.sleep(max(0.0, start + k / FRESH_RATE - time.monotonic()))
            i = k % len(per_feed)
            per_feed[i].append(item)
            write_feed(site, i, per_feed[i])
            with lock:
                written[item.url or ""] = time.time()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen: dict[str, tuple[float, float]] = {}  # url -> (fetched_at, first seen)
    urls = {a.url or "" for a in fresh}
    deadline = time.monotonic() + len(fresh) / FRESH_RATE + 60
    index = settings.search.indices.articles
    while len(seen) < len(urls) and time.monotonic() < deadline:
        tick = time.monotonic()
        pending = sorted(urls - set(seen))
        backend.refresh()
        body = {"size": len(pending), "query": {"terms": {"url": pending}}, "_source": ["url", "fetched_at"]}
        now = time.time()
        for hit in backend.search(index, body)["hits"]["hits"]:
            src = hit["_source"]
            seen.setdefault(src["url"], (datetime.fromisoformat(src["fetched_at"]).timestamp(), now))
        time.sleep(max(0.0, tick + 0.05 - time.monotonic()))
    thread.join()
    poll = [s - f for f, s in seen.values()]
    write = [s - written[u] for u, (_, s) in seen.items() if u in written]
    return poll, write, len(urls) - len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=50)
    parser.add_argument("--items", type=int, default=40, help="items per feed at the start")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fresh", type=int, default=40, help="items added while the pipeline is warm and idle")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    from pipeline import devstack as stack

    main_settings = load_settings()
    stack.ensure_up(main_settings)
    total = args.feeds * args.items
    pool = synthetic_articles(total + args.fresh, random.Random(args.seed))
    per_feed = [pool[:total][i :: args.feeds] for i in range(args.feeds)]
    fresh = pool[total:]
    site = Path(tempfile.mkdtemp(prefix="newsflow-bench-e2e-feeds-"))
    for i, items in enumerate(per_feed):
        write_feed(site, i, items)
    with serve_directory(site) as base:
        feeds = [{"url": f"{base}/f{i}.xml", "min_interval_s": 1, "max_interval_s": 1} for i in range(args.feeds)]
        poller_env = {"NEWSFLOW_FEEDS": json.dumps(feeds), "NEWSFLOW_POLLER__JITTER": "0"}
        run = Run("bench-e2e", prefix="benche2e", **poller_env, NEWSFLOW_POLLER__INTERVAL_S="1")
        for key in TEST_OVERRIDES:  # the configured batching, not the tests' shortcuts
            run.env.pop(key, None)
        run.settings = s = settings_for(run.env)
        backend = connect(s.search)
        failed = True
        try:
            failed = bench(args, run, s, backend, site, per_feed, fresh, total, main_settings)
        finally:
            run.close(keep_logs=args.keep_logs or failed)
            problems = cleanup(s, backend)
            shutil.rmtree(site, ignore_errors=True)
            if problems:
                print(f"note: not cleaned up: {', '.join(problems)}")
            if failed:
                print(f"logs kept in {run.dir}")
    return 1 if failed else 0


def bench(
    args: argparse.Namespace,
    run: Run,
    s: Settings,
    backend: SearchBackend,
    site: Path,
    per_feed: list[list[Article]],
    fresh: list[Article],
    total: int,
    main_settings: Settings,
) -> bool:
    """The measured part of `main`; returns whether it failed."""
    from pipeline.devstack import stack as stack_status

    status_dir = run.dir / "state" / "status"
    procs = {"indexer": run.start("indexer")}
    for n in range(args.workers):
        procs[f"worker-{n}"] = run.start("worker")

    def ready() -> bool:
        beats = list(status_dir.glob("worker-*.json")) if status_dir.exists() else []
        return (
            len(beats) >= args.workers
            and group_members(s, s.worker.tag_group) == args.workers
            and bool(backend.client.indices.exists_alias(name=s.search.indices.articles))
        )

    if not wait_for(ready, 180, interval=0.5):
        print("bench_e2e: worker(s)/indexer not ready within 180 s")
        return True
    poller_start = time.time()
    procs["poller"] = run.start("poller", "--static")
    pids = {name: p.pid for name, p in procs.items()}
    for name in ("kafka", "opensearch"):
        if (pid := stack_status.running_pid(main_settings, name)) is not None:
            pids[name] = pid
    pids["bench (this)"] = os.getpid()
    meter = CpuMeter(pids)
    cpu_before = meter.sample()
    last_searchable = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        tick = time.monotonic()
        try:
            if indexed_count(backend, s) >= total:
                last_searchable = time.time()
                break
        except Exception:  # the engine is busy: look again
            pass
        if any(p.poll() is not None for p in procs.values()):
            print("bench_e2e: a child process exited; see its log")
            return True
        time.sleep(max(0.0, tick + 0.2 - time.monotonic()))
    cpu_after = meter.sample()
    if last_searchable is None:
        print(f"bench_e2e: only {indexed_count(backend, s)}/{total} articles searchable within 900 s")
        return True
    window = last_searchable - poller_start
    started = first_produce(s) or poller_start
    e2e_rate = total / (last_searchable - started)
    lifetime = meter.lifetime_shares()

    texts = indexed_texts(backend, s)  # before the fresh items arrive: the texts of the throughput phase
    time.sleep(3.0)  # warm and idle
    poll_lat, write_lat, missing = freshness(site, backend, s, per_feed, fresh) if fresh else ([], [], 0)
    for name in [n for n in procs if n != "poller"] + ["poller"]:  # the poller last: nothing new meanwhile
        procs[name].send_signal(15)
    for proc in procs.values():
        proc.wait(timeout=60)
    raw_rate, raw_s = raw_ner_rate(s, texts)

    cores = os.cpu_count() or 1
    print(
        f"bench_e2e: {args.feeds} feeds x {args.items} items = {total} articles, {args.workers} worker(s), "
        f"model {s.entities.model}, {cores} cores"
    )
    print(
        f"sustained (first produce -> last searchable, cold start): {total} articles in "
        f"{last_searchable - started:.1f} s = {e2e_rate:.1f} articles/s "
        f"(poller start -> first produce {started - poller_start:.1f} s)"
    )
    print(f"raw nlp.pipe, same {len(texts)} texts, this process: {raw_rate:.1f} articles/s ({raw_s:.1f} s)")
    print(f"ratio e2e / raw NER: {e2e_rate / raw_rate:.2f}  (goal >= 0.80)")
    print(f"CPU share during the throughput window ({window:.1f} s; 100% = one core of {cores}):")
    for name in cpu_before:
        share = (cpu_after[name] - cpu_before[name]) / window
        life = f"   lifetime {lifetime[name]:6.1%}" if name in lifetime and name in procs else ""
        print(f"  {name:<14} {share:7.1%}{life}")
    if fresh:
        print(
            f"freshness: {len(fresh)} items written at {FRESH_RATE:.0f}/s into the idle pipeline, "
            f"{len(fresh) - missing} seen ({missing} not within 60 s)"
        )
        if poll_lat:
            print(
                f"  poll->searchable  p50 {percentile(poll_lat, 50):.2f} s  p95 {percentile(poll_lat, 95):.2f} s  "
                f"max {max(poll_lat):.2f} s  (goal p95 <= 2 s)"
            )
            print(
                f"  write->searchable p50 {percentile(write_lat, 50):.2f} s  p95 {percentile(write_lat, 95):.2f} s  "
                f"max {max(write_lat):.2f} s  (includes the wait for the next poll, <= 1 s)"
            )
    return missing > 0


if __name__ == "__main__":
    sys.exit(main())
