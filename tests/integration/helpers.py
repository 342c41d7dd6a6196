"""Helpers for integration tests: child processes, waiting on the index, reading topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from pipeline.search import SearchBackend
from pipeline.settings import Settings


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m pipeline ARGS` with the test's isolated settings."""
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
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the engine may be restarting: keep waiting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def indexed_ids(backend: SearchBackend, settings: Settings) -> list[str]:
    """Every article document id in the test's index (duplicates in the list would mean double indexing)."""
    backend.refresh()
    hits = backend.search(
        settings.search.indices.articles, {"size": 10_000, "query": {"match_all": {}}, "_source": False}
    )["hits"]["hits"]
    return [h["_id"] for h in hits]


def read_topic(settings: Settings, topic: str, timeout_ms: int = 5000) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
        enable_auto_commit=False,
    )
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"
