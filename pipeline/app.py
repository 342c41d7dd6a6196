"""The stream topology (faust-streaming), top-down:

    articles (N partitions, key=article id)
        -> tag        parallel: language + canonical entities (batched spaCy),     [any worker]
                      and the features story assignment compares
    tagged (1 partition)
        -> assign     ordered: exact/near duplicates + story assignment            [one worker at a time]
                      state: three changelog-backed tables (stories, assignments, dedup keys)
                      every minute: quiet small stories merge into the story they belong to
                      (the leader's upkeep ticks make a batch of their own when no news arrives)
    enriched (N partitions, key=article id)  -> indexer, alerts (separate processes)
                      enriched articles, and story moves re-filing a merged story's articles
    deadletter  <- anything that cannot be processed, with the reason and original bytes

Why two stages: tagging is the expensive, embarrassingly parallel part; story assignment must see every article
in one order so that two reports of the same event arriving at different workers still meet. Assignment is
cheap, so one partition is not the bottleneck; its tables have a standby replica on the other workers, so a
crash or rebalance moves it without losing stories.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from pydantic import ValidationError

from pipeline import bus, diagnostics, status
from pipeline.dedup import StoryEngine, story_moves, with_features
from pipeline.entities import EntityTagger
from pipeline.errors import first_problem
from pipeline.models import (
    Article,
    DeadLetter,
    EnrichedArticle,
    StoryMove,
    TaggedArticle,
    UpkeepTick,
    is_upkeep_tick,
)
from pipeline.settings import DedupSettings, Settings
from pipeline.watchdog import StallWatchdog, partition_views, rewind

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


@dataclass
class TableStore:
    """The dedup engine's state, held in Faust tables (so: in Kafka changelogs)."""

    stories: MutableMapping[str, dict[str, Any]]
    articles: MutableMapping[str, dict[str, Any]]
    keys: MutableMapping[str, str]


@dataclass
class WorkerStats:
    tagged: int = 0
    assigned: int = 0
    new_stories: int = 0
    duplicates: int = 0
    merged_stories: int = 0  # small stories merged into a bigger one once quiet
    dead_letters: int = 0
    events: int = 0  # messages handled by either stage, replays included: the watchdog's progress measure
    rewinds: int = 0
    live_stories: int | None = None  # in the window, as of the last upkeep (the worker running the assign stage)
    last_upkeep: float | None = None  # wall-clock time of the last upkeep run

    def as_status(self) -> dict[str, Any]:
        """Heartbeat figures; the upkeep time as its age, which `newsflow status` checks against the period."""
        figures = dict(self.__dict__)
        last = figures.pop("last_upkeep")
        figures["upkeep_s_ago"] = None if last is None else round(time.time() - last)
        return figures


def in_publication_order(
    batch: list[bytes], topic: str
) -> tuple[list[tuple[bytes, TaggedArticle]], list[DeadLetter]]:
    """A batch of the assign stage, decoded and sorted by publication time (then id); undecodable records as
    dead letters; upkeep ticks are dropped. Reports that reach this stage together were tagged in parallel, in
    no meaningful order: taken in publication order, the outlet that published first is the original of a copy
    (`duplicate_of`) and its story's first report, whichever tagging partition happened to finish first."""
    articles: list[tuple[bytes, TaggedArticle]] = []
    dead: list[DeadLetter] = []
    for raw in batch:
        if raw and is_upkeep_tick(raw):
            continue  # it has done its job by making a batch
        try:
            articles.append((raw, parse_message(raw, TaggedArticle)))
        except ValueError as exc:
            dead.append(bus.dead_letter("assign", str(exc), raw, topic=topic))
    articles.sort(key=lambda item: (item[1].published, item[1].id))
    return articles, dead


M = TypeVar("M", bound=Article)


def parse_message(raw: bytes | None, model: type[M]) -> M:
    """Decode one message; raises ValueError with a readable reason for anything that is not a `model` v1."""
    if not raw:
        raise ValueError("empty message")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        field, problem = first_problem(exc)
        article = "an" if model.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"not {article} {model.__name__} v1: {field}: {problem}") from None


def tag_isolating_failures(
    tagger: EntityTagger, articles: list[Article]
) -> tuple[list[TaggedArticle], list[DeadLetter]]:
    """Tag a batch; if the batch fails, retry one by one so a single poison article cannot block the others."""
    try:
        return tagger.tag(articles), []
    except Exception:
        log.exception("tagging a batch of %d failed; isolating the bad article(s)", len(articles))
    good: list[TaggedArticle] = []
    dead: list[DeadLetter] = []
    for a in articles:
        try:
            good.extend(tagger.tag([a]))
        except Exception as exc:
            dead.append(bus.dead_letter("tag", f"tagging failed: {type(exc).__name__}: {exc}", a.model_dump_json()))
    return good, dead


def tag_with_features(
    tagger: EntityTagger, articles: list[Article], dedup: DedupSettings
) -> tuple[list[TaggedArticle], list[DeadLetter]]:
    """The parallel stage's work on a batch: entities, then the features story assignment needs, so the one
    ordered assign stage only assigns."""
    tagged, dead = tag_isolating_failures(tagger, articles)
    return [_with_features_if_possible(t, dedup) for t in tagged], dead


def _with_features_if_possible(article: TaggedArticle, dedup: DedupSettings) -> TaggedArticle:
    try:
        return with_features(article, dedup)
    except Exception:  # the assign stage computes them again, and dead-letters the article if that fails too
        log.exception("computing the story features of %s failed; leaving them to the assign stage", article.id)
        return article


async def flush_state(app: faust.App) -> None:
    """A real durability barrier for table changelog writes.

    faust's own ``producer.flush()`` gives up on its send buffer after 0.1 s without progress, so on a slow broker
    it can return with changelog records still queued; loop until the buffer is empty, then flush the client.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app: topics, tables and the two agents."""
    topics = settings.kafka.topics
    datadir = settings.stack.state_dir / "faust" / f"{settings.worker.app_id}-{os.getpid()}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka.bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=1,
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.session_timeout_s / 5,
        web_enabled=False,
    )
    articles_topic = app.topic(topics.articles, partitions=settings.kafka.partitions)
    tagged_topic = app.topic(topics.tagged, partitions=1)
    enriched_topic = app.topic(topics.enriched, partitions=settings.kafka.partitions)
    deadletter_topic = app.topic(topics.deadletter, partitions=1)

    table_opts: dict[str, Any] = {
        "partitions": 1,  # co-partitioned with the single-partition `tagged` topic
        "use_partitioner": True,  # written per batch (after `take`), not per event
        "schema": faust.Schema(key_serializer="json", value_serializer="json"),
    }
    store = TableStore(
        stories=app.Table("stories", **table_opts),
        articles=app.Table("assignments", **table_opts),
        keys=app.Table("dedup-keys", **table_opts),
    )
    stats = WorkerStats()
    heartbeat = f"worker-{os.getpid()}"  # one file per worker process; the status line adds them up
    engine_holder: dict[str, StoryEngine] = {}
    tagger_holder: dict[str, EntityTagger] = {}

    async def send_dead(records: list[DeadLetter]) -> None:
        for d in records:
            log.warning("dead letter from %s: %s", d.stage, d.reason)
            await deadletter_topic.send(key=d.stage.encode(), value=d.model_dump_json().encode())
        stats.dead_letters += len(records)

    @app.agent(articles_topic, name="tag")
    async def tag(stream: faust.StreamT[bytes]) -> None:
        """Parallel stage: decode, detect language, tag entities (spaCy, batched, off the event loop)."""
        loop = asyncio.get_running_loop()
        if "tagger" not in tagger_holder:
            tagger_holder["tagger"] = await loop.run_in_executor(None, EntityTagger, settings.entities)
        tagger = tagger_holder["tagger"]
        async for batch in stream.take(settings.worker.tag_batch_size, within=settings.worker.tag_batch_window_s):
            good: list[Article] = []
            dead: list[DeadLetter] = []
            for raw in batch:
                try:
                    good.append(parse_message(raw, Article))
                except ValueError as exc:
                    dead.append(bus.dead_letter("tag", str(exc), raw, topic=topics.articles))
            tagged, failed = await loop.run_in_executor(None, tag_with_features, tagger, good, settings.dedup)
            for t in tagged:
                await tagged_topic.send(key=t.id.encode(), value=t.model_dump_json().encode())
            await send_dead(dead + failed)
            stats.tagged += len(tagged)
            stats.events += len(batch)
            status.write(heartbeat, stats.as_status())

    @app.task
    async def _diagnostics() -> None:
        """`kill -USR1 <pid>` logs what every task awaits (installed after the worker's own signal handlers)."""
        diagnostics.install_dump_on_signal(
            asyncio.get_running_loop(), extra=lambda: diagnostics.consumer_state(app.consumer)
        )

    @app.timer(interval=HEARTBEAT_S)
    async def _heartbeat() -> None:
        """Figures for `newsflow status`, also while idle (the per-batch writes are throttled)."""
        status.write(heartbeat, stats.as_status(), force=True)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _drop_engine(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """The derived in-memory index is rebuilt from the tables after the next assignment."""
        engine_holder.clear()

    @app.agent(tagged_topic, name="assign")
    async def assign(stream: faust.StreamT[bytes]) -> None:
        """Ordered stage: one story per event, duplicates marked; replay of an article returns its old answer.

        Per batch: assign every article (table writes), flush the producer so those changelog writes are
        durable, and only then emit the enriched articles. A crash can therefore never leave an emitted
        assignment that the recovered tables do not know, so a replayed article keeps its story.
        """
        last_expire = time.monotonic()
        async for batch in stream.take(settings.worker.assign_batch_size, within=settings.worker.tag_batch_window_s):
            if "engine" not in engine_holder:  # first batch after (re)assignment: tables are recovered
                engine_holder["engine"] = StoryEngine(settings.dedup, store)
            engine = engine_holder["engine"]
            outputs: list[EnrichedArticle] = []
            articles, dead = in_publication_order(batch, topics.tagged)
            for raw, article in articles:
                try:
                    result = engine.assign(article)
                except Exception as exc:
                    log.exception("story assignment failed; dead-lettering the article")
                    reason = f"story assignment failed: {type(exc).__name__}: {exc}"
                    dead.append(bus.dead_letter("assign", reason, raw, topic=topics.tagged))
                    continue
                outputs.append(
                    EnrichedArticle(
                        **article.model_dump(exclude={"features"}),  # the assign stage's business only
                        story_id=result.story_id,
                        duplicate_of=result.duplicate_of,
                        story=result.story,
                    )
                )
                if not result.replayed:
                    stats.assigned += 1
                    stats.new_stories += int(result.is_new_story)
                    stats.duplicates += int(result.duplicate_of is not None)
            moves: list[StoryMove] = []
            if time.monotonic() - last_expire > settings.worker.maintenance_every_s:
                now = datetime.now(UTC)
                for merge in engine.settle(now.timestamp()):  # quiet small stories into their bigger one
                    moves.extend(story_moves(merge))
                    stats.merged_stories += 1
                engine.expire(now)
                last_expire = time.monotonic()
                stats.live_stories, stats.last_upkeep = len(engine.store.stories), time.time()
            await flush_state(app)  # state first ...
            for e in outputs:  # ... then the effects that depend on it
                await enriched_topic.send(key=e.id.encode(), value=e.model_dump_json().encode())
            for m in moves:  # keyed like the article: after its own message in its partition
                await enriched_topic.send(key=m.article_id.encode(), value=m.model_dump_json().encode())
            await send_dead(dead)
            # Ticks are not progress: counted, they would hide a stall of the partition from the watchdog.
            stats.events += sum(not (raw and is_upkeep_tick(raw)) for raw in batch)
            status.write(heartbeat, stats.as_status())

    @app.timer(interval=settings.worker.maintenance_every_s / 2, on_leader=True)
    async def _upkeep_tick() -> None:
        """Make the assign stage take a batch now and then, so its upkeep also runs while no news arrives.

        Twice per upkeep period, so an idle stream's upkeep is at most half a period late. Only the leader sends.
        """
        await tagged_topic.send(key=b"upkeep", value=UpkeepTick().model_dump_json().encode())

    watchdog = StallWatchdog(settings.worker.stall_rewind_after_s)

    @app.timer(interval=settings.worker.stall_check_s)
    async def _watch_for_dropped_messages() -> None:
        """Re-fetch messages Faust fetched but never processed (see `pipeline/watchdog.py`)."""
        if "tagger" not in tagger_holder or app.rebalancing or app.in_recovery or not app.consumer.assignment():
            return  # still starting (spaCy loading) or rebalancing: idle for a reason
        if not watchdog.idle(stats.events):
            return
        views = await partition_views(app.consumer, {topics.articles, topics.tagged})
        for tp in watchdog.due(views):
            await rewind(app.consumer, tp, views[tp])
            stats.rewinds += 1

    return app


def run_worker(settings: Settings, *, loglevel: str = "warning") -> int:
    """`newsflow worker`: one Faust worker process (start several to scale out tagging)."""
    bus.ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False)
    worker.execute_from_commandline()
    return 0
