"""`newsflow run`: poller, worker(s), indexer and alerting as child processes, one live status line,
clean Ctrl-C.

Each stage is its own process (as in production, where they scale separately); their logs go to
`<state_dir>/logs/<name>.log`. The status line is built from the heartbeat files they write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline import status
from pipeline.progress import Progress
from pipeline.search import connect
from pipeline.settings import Settings
from pipeline.stream import bus

STOP_TIMEOUT_S = 20.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def spawn(name: str, args: list[str], settings: Settings, env: Mapping[str, str] | None = None) -> Child:
    """Start `python -m pipeline ARGS` with its output in a log file (which keeps the libraries' warnings too)."""
    logs = settings.stack.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    handle: IO[bytes] = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NEWSFLOW_LOG_LIBRARIES": "1", **(env or {})},
        start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
    )
    handle.close()
    return Child(name, proc, log_path)


def stop_all(children: list[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait, then SIGKILL whatever is still there."""
    for c in children:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for c in children:
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def status_line(beats: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: feeds polled/failed, articles produced, stories, duplicates, indexed (and alerts, once the
    alerting stage has reported)."""
    p = beats.get("poller", {})
    workers = [b for name, b in beats.items() if name.startswith("worker")]
    w = {k: sum(int(b.get(k) or 0) for b in workers) for k in ("new_stories", "duplicates", "dead_letters")}
    i = beats.get("indexer", {})
    line = (
        f"feeds polled {p.get('polled', 0)} (failed {p.get('failed', 0)}) | articles {p.get('produced', 0)}"
        f" | stories {w.get('new_stories', 0)} | duplicates {w.get('duplicates', 0)}"
        f" | indexed {i.get('indexed', 0)} | dead letters {w.get('dead_letters', 0) + i.get('dead_letters', 0)}"
    )
    alerting = [b for name, b in beats.items() if name.startswith("alerts")]
    if alerting:
        a = {k: sum(int(b.get(k) or 0) for b in alerting) for k in ("sent", "partial", "dead")}
        line += f" | alerts sent {a['sent'] + a['partial']} (dead {a['dead']})"
    if p.get("polled") and p.get("polled") == p.get("failed"):
        line += " | feeds unreachable (offline?) - see `newsflow status`"
    if i.get("last_error") and i.get("retries"):
        line += f" | search engine retrying: {str(i['last_error'])[:60]}"
    return line


def run_all(settings: Settings, *, workers: int = 1) -> int:
    """Start everything, print the live status line until Ctrl-C, then stop cleanly."""
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    backend.ensure_templates()
    backend.close()
    print(
        f"newsflow: {len(settings.feeds)} feed(s), Kafka {settings.kafka.bootstrap_servers}, "
        f"search {settings.search.url}; logs in {settings.stack.state_dir / 'logs'}"
    )
    status.clear(settings.stack.state_dir)
    children = [spawn(f"worker-{n}", ["worker"], settings) for n in range(workers)]
    children += [
        spawn("indexer", ["indexer"], settings),
        spawn("alerts", ["alerts", "run"], settings),
        spawn("poller", ["poller"], settings),
    ]
    stopping = False

    def request_stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    progress = Progress(every_s=30.0)
    failing: list[str] = []
    try:
        while not stopping:
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                progress.note(f"newsflow: {dead[0].name} exited with {dead[0].proc.returncode}; see {dead[0].log}")
                break
            beats = status.read_all(settings.stack.state_dir)
            kinds = list(beats.get("poller", {}).get("failing_kinds") or [])
            if [k.split(" (e.g.")[0] for k in kinds] != [k.split(" (e.g.")[0] for k in failing]:
                for line in kinds:  # one line per kind of failure, when that picture changes
                    progress.note(f"poller: {line}")
                failing = kinds
            progress.update(status_line(beats)[:160])
            time.sleep(2.0)
    finally:
        progress.done("newsflow: stopping (poller, alerts, indexer, workers)...")
        stop_all(list(reversed(children)))
        print("newsflow: stopped")
    return 0 if stopping else 1
