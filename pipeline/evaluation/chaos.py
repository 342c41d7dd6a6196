"""Chaos runs: SIGKILL a component mid-stream, restart it, and count what was lost or doubled.

Each round runs on the real local stack (Kafka + OpenSearch) with topics, groups and indices of its own
(`isolation.isolated_env`), the components as child processes (`python -m pipeline ...`):

- `worker`: synthetic articles (stories of several differently worded reports, some verbatim copies) on the
  articles topic; worker and indexer running; the worker is killed at moments chosen from the kill modes below
  and restarted each time. Checked: every article id in the index exactly once, each with one story id in the
  enriched topic (a replay must return the recorded story), no dead letters.
- `indexer`: enriched articles on the enriched topic; the indexer is killed mid-batch and restarted. Checked:
  every id indexed, the documents counted once.
- `poller`: feeds served over HTTP on loopback, new items added between cycles; the poller (scheduled, polling
  every second) is killed mid-cycle and restarted. Checked: the articles topic (read_committed, as the worker
  reads it) holds every item exactly once.

Worker kill modes: `random` (a random moment), `tag-commit` / `assign-commit` (right after that stage's group
committed offsets, polled every 20 ms), `assign-busy` (while the assign stage has input waiting, a random few
hundred ms in). `make chaos` runs many rounds; `tests/integration/test_chaos.py` runs a short one of each.
Usage: `python -m pipeline.evaluation.chaos [--rounds N] [--targets worker,indexer,poller] [--articles N]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from kafka import KafkaConsumer, TopicPartition

from pipeline.devstack.demo import serve_directory
from pipeline.evaluation.bench_indexer import delete_indices
from pipeline.evaluation.isolation import (
    indexed_count,
    indexed_ids,
    isolated_env,
    read_records,
    read_topic,
    spawn,
    stop,
)
from pipeline.models import Article, EnrichedArticle, Story
from pipeline.search import SearchBackend, connect
from pipeline.settings import Settings, load_settings
from pipeline.stream import bus

log = logging.getLogger(__name__)

KILL_MODES = ("random", "tag-commit", "assign-commit", "assign-busy")
WORDS = (  # noqa: SIM905 - a word list reads better as text
    "harbour council budget vote minister river bridge school police market energy storm trade court election "
    "health rail port water city region union farmers price strike museum festival airport hospital factory "
    "mayor senate treaty border drought flood wildfire vaccine tariff pipeline refinery satellite launch "
    "summit protest verdict appeal merger layoffs pension housing rent ferry tunnel stadium orchestra"
).split()
FILLER = "the a of to in and on for with after before said told officials on monday week plan new local".split()  # noqa: SIM905
PEOPLE = ["Anna Berg", "Marco Rossi", "Lena Park", "Tom Hale", "Sara Ode", "Ivan Petrov", "Mia Chen", "Omar Haddad"]
PLACES = ["Oslo", "Lyon", "Porto", "Gdansk", "Nairobi", "Osaka", "Quito", "Adelaide"]


@dataclass
class RoundResult:
    target: str
    expected: int
    found: int
    lost: int
    doubled: int
    story_changed: int = 0
    dead_letters: int = 0
    kills: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.story_changed == 0 and self.dead_letters == 0

    @classmethod
    def tally(cls, target: str, expected: set[str], seen: list[str], **extra: Any) -> RoundResult:
        """The round's counts from every id that arrived (an id twice in `seen` is a double)."""
        counts = Counter(seen)
        found = set(counts) & expected
        doubled = sum(c - 1 for c in counts.values())
        return cls(target, len(expected), len(found), len(expected - found), doubled, **extra)

    def line(self) -> str:
        return (
            f"{self.target:<8} {'OK  ' if self.ok else 'FAIL'} {self.found}/{self.expected} found, "
            f"lost {self.lost}, doubled {self.doubled}, story changed {self.story_changed}, "
            f"dead letters {self.dead_letters}; kills: {', '.join(self.kills) or '-'}; {self.seconds:.0f} s"
        )


def synthetic_articles(n: int, rng: random.Random, start: datetime | None = None) -> list[Article]:
    """`n` articles in stories of 1-5 reports, each outlet wording its report differently; every tenth report a
    verbatim copy of another outlet's. 80-110 words each, so tagging costs what a real summary does."""
    start = start or datetime(2026, 11, 1, tzinfo=UTC)
    out: list[Article] = []
    story = 0
    while len(out) < n:
        core = rng.sample(WORDS, 12)
        who, where = rng.choice(PEOPLE), rng.choice(PLACES)
        reports = rng.randint(1, 5)
        first: Article | None = None
        for r in range(reports):
            if len(out) >= n:
                break
            i = len(out)
            words = [rng.choice(core if rng.random() < 0.6 else FILLER) for _ in range(rng.randint(80, 110))]
            text = f"{who} said in {where} that " + " ".join(words) + "."
            if first is not None and r == reports - 1 and rng.random() < 0.3:
                text = first.summary  # a verbatim wire copy
            article = Article(
                id=f"chaos-{i:05d}",
                feed=f"http://outlet{r}.example/rss",
                source=f"Outlet {r}",
                url=f"https://outlet{r}.example/{story}/{i}",
                title=f"{who} {core[0]} {core[1]} in {where} ({story})",
                summary=text,
                published=start + timedelta(minutes=10 * story + r),
            )
            first = first or article
            out.append(article)
        story += 1
    return out


class Run:
    """One round's isolated settings, state dir, child processes and logs."""

    def __init__(self, name: str, prefix: str = "chaos", **extra_env: str) -> None:
        prefix = f"{prefix}{uuid.uuid4().hex[:6]}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"newsflow-{name}-"))
        self.env = {**isolated_env(prefix, self.dir), "NEWSFLOW_STACK__STATE_DIR": str(self.dir / "state")}
        self.env.update(extra_env)
        self.settings = settings_for(self.env)
        self.procs: list[Any] = []
        bus.ensure_topics(self.settings)

    def start(self, *args: str) -> Any:
        proc = spawn(list(args), self.env, self.dir / f"{args[0]}.log")
        self.procs.append(proc)
        return proc

    def close(self, keep_logs: bool) -> None:
        """Stop the children; unless the logs are kept (a failed round), delete the run's data too."""
        for proc in self.procs:
            stop(proc)
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
            backend = connect(self.settings.search)
            try:
                if problems := cleanup(self.settings, backend):
                    log.warning("could not delete the run's %s", ", ".join(problems))
            finally:
                backend.close()


def cleanup(settings: Settings, backend: SearchBackend) -> list[str]:
    """Delete the run's indices, templates, topics and consumer groups; returns what could not be deleted."""
    problems = []
    try:
        delete_indices(backend)
        for template in (settings.search.indices.articles, settings.search.indices.stories):
            backend.client.indices.delete_index_template(name=template, ignore=[404])
    except Exception as exc:
        problems.append(f"indices ({type(exc).__name__})")
    admin = bus.admin(settings)
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([t for t in bus.topic_layout(settings) if t in existing])
    except Exception as exc:
        problems.append(f"topics ({type(exc).__name__})")
    w = settings.worker
    groups = [w.tag_group, w.assign_group, settings.indexer.group_id, settings.poller.group_id]
    try:
        known = {g[0] for g in admin.list_consumer_groups()}
        if wanted := [g for g in groups if g in known]:
            admin.delete_consumer_groups(wanted)
    except Exception as exc:
        problems.append(f"consumer groups ({type(exc).__name__})")
    finally:
        admin.close()
    return problems


def settings_for(env: dict[str, str]) -> Settings:
    """The settings a child process started with `env` will have."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def produce(settings: Settings, topic: str, messages: list[tuple[str, bytes]]) -> None:
    prod = bus.producer(settings)
    for key, value in messages:
        prod.send(topic, key=key, value=value)
    prod.flush()
    prod.close()


def committed_total(settings: Settings, group: str) -> int:
    """Sum of the group's committed offsets (changes whenever it commits)."""
    client = bus.admin(settings)
    try:
        return sum(om.offset for om in client.list_consumer_group_offsets(group).values() if om.offset >= 0)
    finally:
        client.close()


def group_lag(settings: Settings, group: str, topic: str) -> int:
    client = bus.admin(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, isolation_level="read_committed")
    try:
        committed = {tp: om.offset for tp, om in client.list_consumer_group_offsets(group).items()}
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = consumer.end_offsets(tps)
        return sum(max(0, ends[tp] - max(0, committed.get(tp, 0))) for tp in tps)
    finally:
        consumer.close()
        client.close()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # the broker is busy: look again
            pass
        time.sleep(interval)
    return False


def kill_moment(run: Run, mode: str, rng: random.Random) -> str:
    """Wait for the moment `mode` names; returns what happened (for the round's line)."""
    w = run.settings.worker
    if mode == "random":
        delay = rng.uniform(1.0, 8.0)
        time.sleep(delay)
        return f"random@{delay:.1f}s"
    if mode in ("tag-commit", "assign-commit"):
        group = w.tag_group if mode == "tag-commit" else w.assign_group
        before = committed_total(run.settings, group)
        hit = wait_for(lambda: committed_total(run.settings, group) != before, 60)
        return mode if hit else f"{mode}(none in 60s)"
    tagged = run.settings.kafka.topics.tagged
    hit = wait_for(lambda: group_lag(run.settings, w.assign_group, tagged) > 0, 60)
    time.sleep(rng.uniform(0.0, 0.3))
    return "assign-busy" if hit else "assign-busy(idle)"


def worker_round(articles: int, kills: list[str], seed: int, keep_logs: bool = False) -> RoundResult:
    """Articles through worker + indexer; the worker SIGKILLed once per entry of `kills` and restarted."""
    rng = random.Random(seed)
    started = time.monotonic()
    run = Run("worker", NEWSFLOW_WORKER__SESSION_TIMEOUT_S="6")
    ok = False
    try:
        s = run.settings
        items = synthetic_articles(articles, rng)
        run.start("indexer")
        worker = run.start("worker")
        produce(s, s.kafka.topics.articles, [(a.id, a.model_dump_json().encode()) for a in items])
        done: list[str] = []
        for mode in kills:
            done.append(kill_moment(run, mode, rng))
            stop(worker, kill=True)
            worker = run.start("worker")
        backend = connect(s.search)
        expected = {a.id for a in items}
        wait_for(lambda: len(indexed_ids(backend, s)) >= len(expected), 600, interval=2.0)
        time.sleep(3)  # anything doubled or late would show up now
        ids = indexed_ids(backend, s)
        stories: dict[str, set[str]] = defaultdict(set)
        for m in read_topic(s, s.kafka.topics.enriched):
            if m.get("message") != "story_move":  # a merge re-files an article on purpose: not a replay
                stories[m["id"]].add(m["story_id"])
        result = RoundResult.tally(
            "worker",
            expected,
            ids,
            story_changed=sum(1 for v in stories.values() if len(v) > 1),
            dead_letters=len(read_records(s, s.kafka.topics.deadletter)),
            kills=done,
            seconds=time.monotonic() - started,
        )
        ok = result.ok
        return result
    finally:
        run.close(keep_logs=keep_logs or not ok)


def indexer_round(articles: int, kills: int, seed: int, keep_logs: bool = False) -> RoundResult:
    """Enriched articles straight to the indexer; it is SIGKILLed `kills` times mid-stream and restarted."""
    rng = random.Random(seed)
    started = time.monotonic()
    run = Run("indexer", NEWSFLOW_SEARCH__BULK_MAX_DOCS="100")
    ok = False
    try:
        s = run.settings
        now = datetime.now(UTC)
        messages = []
        for a in synthetic_articles(articles, rng):
            story = Story(story_id=f"s-{a.id}", title=a.title, article_count=1, first_seen=now, last_seen=now)
            e = EnrichedArticle(**a.model_dump(), story_id=story.story_id, story=story)
            messages.append((e.id, e.model_dump_json().encode()))
        produce(s, s.kafka.topics.enriched, messages)
        backend = connect(s.search)
        indexer = run.start("indexer")
        done = []
        for _ in range(kills):  # each kill lands mid-stream: once the restarted indexer has made progress
            floor = indexed_count(backend, s) + 1
            if floor > articles:
                break
            wait_for(lambda floor=floor: indexed_count(backend, s) >= floor, 120, interval=0.02)  # type: ignore[misc]
            time.sleep(rng.uniform(0, 0.1))
            stop(indexer, kill=True)
            done.append(f"at {indexed_count(backend, s)}")
            indexer = run.start("indexer")
        wait_for(lambda: len(indexed_ids(backend, s)) >= articles, 300, interval=1.0)
        time.sleep(2)
        ids = indexed_ids(backend, s)
        expected = {k for k, _ in messages}
        result = RoundResult.tally(
            "indexer",
            expected,
            ids,
            dead_letters=len(read_records(s, s.kafka.topics.deadletter)),
            kills=done,
            seconds=time.monotonic() - started,
        )
        ok = result.ok
        return result
    finally:
        run.close(keep_logs=keep_logs or not ok)


def feed_xml(name: str, items: list[Article]) -> str:
    entries = "".join(
        f"<item><title>{escape(a.title)}</title><link>{escape(a.url or '')}</link><guid>{escape(a.id)}</guid>"
        f"<description>{escape(a.summary)}</description>"
        f"<pubDate>{a.published.strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate></item>"
        for a in items
    )
    head = "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
    return f"{head}<title>{name}</title>{entries}</channel></rss>"


def poller_round(feeds: int, items_per_feed: int, kills: int, seed: int, keep_logs: bool = False) -> RoundResult:
    """Feeds grow by a few items a second while the scheduled poller runs; it is SIGKILLed `kills` times
    mid-cycle and restarted. Every item must reach the articles topic exactly once."""
    rng = random.Random(seed)
    started = time.monotonic()
    site = Path(tempfile.mkdtemp(prefix="newsflow-chaos-feeds-"))
    pool = synthetic_articles(feeds * items_per_feed, rng)
    per_feed = [pool[i::feeds] for i in range(feeds)]
    shown = [0] * feeds
    ok = False
    with serve_directory(site) as base:
        feed_list = [{"url": f"{base}/f{i}.xml", "min_interval_s": 1, "max_interval_s": 2} for i in range(feeds)]

        def publish(more: int) -> None:
            for i in range(feeds):
                shown[i] = min(len(per_feed[i]), shown[i] + more)
                # newest first, as feeds list them; an item keeps its guid, so the poller's id is stable
                (site / f"f{i}.xml").write_text(feed_xml(f"Feed {i}", per_feed[i][: shown[i]][::-1][:50]))

        publish(3)
        run = Run("poller", NEWSFLOW_FEEDS=json.dumps(feed_list), NEWSFLOW_POLLER__JITTER="0")
        try:
            s = run.settings
            poller = run.start("poller", "--static")
            done = []
            for k in range(kills + 2):
                time.sleep(rng.uniform(0.5, 2.5))
                publish(rng.randint(1, 4))
                if k < kills:
                    stop(poller, kill=True)
                    done.append(f"kill {k + 1}")
                    poller = run.start("poller", "--static")
            while any(shown[i] < len(per_feed[i]) for i in range(feeds)):
                publish(5)
                time.sleep(1.0)
            expected = {a.url or "" for f in per_feed for a in f}  # the poller derives its own ids: match links
            topic = s.kafka.topics.articles

            def produced() -> Counter[str]:
                return Counter(Article.model_validate_json(v).url or "" for _, v in read_records(s, topic) if v)

            wait_for(lambda: set(produced()) >= expected, 120, interval=1.0)
            time.sleep(3)
            counts = produced()
            result = RoundResult.tally(
                "poller",
                expected,
                list(counts.elements()),
                kills=done,
                seconds=time.monotonic() - started,
            )
            ok = result.ok
            return result
        finally:
            run.close(keep_logs=keep_logs or not ok)
            shutil.rmtree(site, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--targets", default="worker,indexer,poller")
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs per round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(KILL_MODES), help="worker kill modes, taken in turn")
    args = parser.parse_args(argv)
    from pipeline import devstack as stack

    stack.ensure_up(load_settings())
    failed = 0
    totals: Counter[str] = Counter()
    for r in range(args.rounds):
        seed = args.seed + r
        for target in args.targets.split(","):
            if target == "worker":
                chosen = args.modes.split(",")
                modes = [chosen[(r + k) % len(chosen)] for k in range(args.kills)]
                result = worker_round(args.articles, modes, seed)
            elif target == "indexer":
                result = indexer_round(args.articles * 2, args.kills, seed)
            elif target == "poller":
                result = poller_round(20, 30, args.kills, seed)
            else:
                parser.error(f"unknown target {target!r}")
            print(f"round {r + 1}: {result.line()}", flush=True)
            failed += not result.ok
            totals.update(lost=result.lost, doubled=result.doubled, story_changed=result.story_changed)
    print(f"{args.rounds} round(s): {failed} failed; totals {dict(totals)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
