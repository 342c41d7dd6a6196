"""Runs of the real pipeline that share the local stack without sharing data: each run (a test, a chaos round,
a benchmark) gets topics, indices, consumer groups and state of its own, and its components as child processes
with exactly those settings. Used by the integration tests and by `pipeline.evaluation.chaos`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.search import SearchBackend
from pipeline.settings import Settings
from pipeline.stream import bus


def isolated_env(prefix: str, state_dir: Path) -> dict[str, str]:
    """NEWSFLOW_* variables giving a run its own topics, indices, consumer groups and seen-state."""
    return {
        "NEWSFLOW_WORKER__APP_ID": f"{prefix}-worker",
        "NEWSFLOW_INDEXER__GROUP_ID": f"{prefix}-indexer",
        "NEWSFLOW_KAFKA__TOPICS__ARTICLES": f"{prefix}.articles",
        "NEWSFLOW_KAFKA__TOPICS__TAGGED": f"{prefix}.tagged",
        "NEWSFLOW_KAFKA__TOPICS__ENRICHED": f"{prefix}.enriched",
        "NEWSFLOW_KAFKA__TOPICS__DEADLETTER": f"{prefix}.deadletter",
        "NEWSFLOW_KAFKA__TOPICS__ASSIGN_STATE": f"{prefix}.assign-state",
        "NEWSFLOW_KAFKA__TOPICS__FEEDS": f"{prefix}.feeds",
        "NEWSFLOW_KAFKA__TOPICS__FEED_STATE": f"{prefix}.feedstate",
        "NEWSFLOW_POLLER__GROUP_ID": f"{prefix}-poller",
        "NEWSFLOW_SEARCH__INDICES__ARTICLES": f"{prefix}-articles",
        "NEWSFLOW_SEARCH__INDICES__STORIES": f"{prefix}-stories",
        "NEWSFLOW_ALERTS__SUBSCRIPTIONS_INDEX": f"{prefix}-subscriptions",
        "NEWSFLOW_ALERTS__ALERTS_INDEX": f"{prefix}-alerts",
        "NEWSFLOW_ALERTS__GROUP_ID": f"{prefix}-alerts",
        "NEWSFLOW_ALERTS__DIGEST_INDEX": f"{prefix}-digest-items",
        "NEWSFLOW_POLLER__SEEN_DB": str(state_dir / "seen.sqlite"),
        "NEWSFLOW_POLLER__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        "NEWSFLOW_ALERTS__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',  # the tests' local webhooks
        "NEWSFLOW_SEARCH__BULK_MAX_SECONDS": "0.3",
        "NEWSFLOW_WORKER__TAG_BATCH_WINDOW_S": "0.2",
    }


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m pipeline ARGS` with the run's settings, output appended to `log`."""
    handle = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    handle.close()
    return proc


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 30.0) -> None:
    """SIGTERM (a clean stop) or SIGKILL (a crash); SIGKILL anyway if it does not stop within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_topic(settings: Settings, topic: str, timeout_ms: int = 30_000) -> list[dict[str, Any]]:
    """Every committed message of `topic`, decoded as JSON (what a read_committed consumer sees)."""
    return [json.loads(v) for _, v in read_records(settings, topic, timeout_ms) if v is not None]


def read_records(settings: Settings, topic: str, timeout_ms: int = 30_000) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed (key, value) of `topic` up to its current end, in partition order."""
    consumer = bus.reader(settings)
    try:
        records = sorted(
            bus.records_to_end(consumer, bus.partitions(consumer, topic), timeout_ms / 1000),
            key=lambda r: (r.partition, r.offset),
        )
        return [(r.key, r.value) for r in records]
    finally:
        consumer.close()


def indexed_ids(backend: SearchBackend, settings: Settings) -> list[str]:
    """Every article document id in the run's index (duplicates in the list would mean double indexing)."""
    backend.refresh()
    hits = backend.search(
        settings.search.indices.articles, {"size": 10_000, "query": {"match_all": {}}, "_source": False}
    )["hits"]["hits"]
    return [h["_id"] for h in hits]


def indexed_count(backend: SearchBackend, settings: Settings) -> int:
    """How many article documents the run's index holds (cheap enough to poll)."""
    backend.refresh()
    body = {"size": 0, "track_total_hits": True, "query": {"match_all": {}}}
    return int(backend.search(settings.search.indices.articles, body)["hits"]["total"]["value"])
