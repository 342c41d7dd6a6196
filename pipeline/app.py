"""The stream topology, top-down:

    articles (N partitions, key=article id)                                  <- poller (transactional)
        -> tag        parallel: language + canonical entities (batched spaCy),     [any worker; at least once]
                      and the features story assignment compares
    tagged (1 partition)
        -> assign     ordered: exact/near duplicates + story assignment            [one worker at a time;
                      state: stories, assignments, dedup keys (changelog topic)      exactly once]
                      every `worker.maintenance_every_s`: quiet small stories merge into their bigger story
    enriched (N partitions, key=article id)  -> indexer, alerts (separate processes)
                      enriched articles, and story moves re-filing a merged story's articles
    deadletter  <- anything that cannot be processed, with the reason and original bytes

Why two stages: tagging is the expensive, embarrassingly parallel part; story assignment must see every article
in one order so that two reports of the same event arriving at different workers still meet. Assignment is
cheap, so one partition is not the bottleneck. Every worker runs both stages; the one that owns the tagged
partition assigns, and another takes over (restoring the tables from the changelog) if it dies.

Delivery: see `pipeline/stream/loops.py`. Offsets are committed only after every output derived from them is
acknowledged by the broker (tag) or in the same transaction as those outputs and the state change (assign).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from typing import Any

from pipeline import status
from pipeline.settings import Settings
from pipeline.stream import bus
from pipeline.stream.assign import AssignStage, AssignStats
from pipeline.stream.loops import AtLeastOnceLoop, TransactionalLoop, _Loop
from pipeline.stream.tag import TagStage

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STAGES = ("tag", "assign")


def tag_loop(settings: Settings) -> AtLeastOnceLoop:
    """articles -> tag -> tagged. Loads the spaCy model first, so the worker joins the group ready to work."""
    from pipeline.nlp.entities import EntityTagger

    topics = settings.kafka.topics
    stage = TagStage(settings, EntityTagger(settings.entities))
    return AtLeastOnceLoop(
        settings,
        stage,
        source=topics.articles,
        group=settings.worker.tag_group,
        batch_size=settings.worker.tag_batch_size,
    )


def assign_loop(settings: Settings, stats: AssignStats) -> TransactionalLoop:
    """tagged -> assign -> enriched, with the story tables on the changelog topic."""
    topics = settings.kafka.topics
    return TransactionalLoop(
        settings,
        lambda: AssignStage(settings, stats),
        name="assign",
        source=topics.tagged,
        group=settings.worker.assign_group,
        state_topic=topics.assign_state,
        batch_size=settings.worker.assign_batch_size,
    )


def heartbeat(loops: dict[str, _Loop], assign: AssignStats) -> dict[str, Any]:
    """The worker's figures for `newsflow status` and the live line of `newsflow run`."""
    beat: dict[str, Any] = {"stages": ",".join(loops)}
    if (tag := loops.get("tag")) is not None:
        beat["tagged"] = tag.stats.processed
    if "assign" in loops:
        beat.update(
            assigned=assign.assigned,
            new_stories=assign.new_stories,
            duplicates=assign.duplicates,
            merged_stories=assign.merged_stories,
            live_stories=assign.live_stories,
            upkeep_s_ago=None if assign.last_upkeep is None else round(time.time() - assign.last_upkeep),
            restores=loops["assign"].stats.restores,
        )
    beat["dead_letters"] = sum(loop.stats.dead_letters for loop in loops.values())
    beat["retries"] = sum(loop.stats.retries for loop in loops.values())
    errors = [loop.stats.last_error for loop in loops.values() if loop.stats.last_error]
    beat["last_error"] = errors[-1] if errors else None
    return beat


def run_worker(settings: Settings, stages: tuple[str, ...] = STAGES) -> int:
    """`newsflow worker`: both stages in one process (start several to scale out tagging).

    SIGTERM/SIGINT finish the batch in hand and leave the groups; SIGKILL at any moment loses nothing (the
    uncommitted batch is done again, by this worker after a restart or by another). `kill -USR1 <pid>` writes
    every thread's stack to stderr."""
    bus.ensure_topics(settings)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    assign_stats = AssignStats()
    loops: dict[str, _Loop] = {}
    if "tag" in stages:
        loops["tag"] = tag_loop(settings)
    if "assign" in stages:
        loops["assign"] = assign_loop(settings, assign_stats)
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        stopping.set()
        for loop in loops.values():
            loop.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for loop in loops.values():
        loop.start()
    name = f"worker-{os.getpid()}"
    while any(loop.alive for loop in loops.values()):
        if any(loop.failure is not None for loop in loops.values()):
            stop()
        status.write(name, heartbeat(loops, assign_stats), force=True)
        time.sleep(0.2) if stopping.is_set() else stopping.wait(HEARTBEAT_S)
    for loop in loops.values():
        loop.join()
    failed = [n for n, loop in loops.items() if loop.failure is not None]
    status.write(name, {**heartbeat(loops, assign_stats), "state": "failed" if failed else "stopped"}, force=True)
    if failed:
        log.error("worker stopped: the %s stage failed (see the log above)", ", ".join(failed))
        return 1
    return 0
