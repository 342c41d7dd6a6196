"""`newsflow run`: poller, worker(s), indexer and alerting as child processes, one live status line,
clean Ctrl-C.

Each stage is its own process (as in production, where they scale separately); their logs go to
`<state_dir>/logs/<name>.log`. The status line is built from the heartbeat files they write. Ctrl-C / SIGTERM stop
every child whatever happens to stdout: a reader that is gone (`| tee log` killed by the same Ctrl-C, `| head -1`)
never turns the stop into a BrokenPipeError; a reader gone by itself stops the run too (exit 141, as on SIGPIPE).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

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


class QuietStdout:
    """stdout for a long-running command whose reader may go away (`newsflow run | head`, `| tee log` and
    Ctrl-C): once a write fails with a closed pipe, the descriptor is pointed at /dev/null (Python's documented
    recipe, so nothing fails again, not even the flush at exit) and `closed_pipe` is set; nothing raises."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._gone(exc)
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._gone(exc)

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (OSError, ValueError):
            return False

    def reader_gone(self) -> bool:
        """Whether stdout is a pipe whose reader has gone (`| head -1` done): noticed at once, not at the next
        line the status would print."""
        if not self.closed_pipe:
            try:
                fd = self.stream.fileno()
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    poll = select.poll()
                    poll.register(fd, select.POLLOUT)  # POLLERR is always reported: the read end is closed
                    if any(events & select.POLLERR for _, events in poll.poll(0)):
                        self.closed_pipe = True
                        silence_stdout(self.stream)
            except (OSError, ValueError, AttributeError):  # no descriptor, or no poll() on this platform
                pass
        return self.closed_pipe

    def say(self, text: str) -> None:
        self.write(text + "\n")
        self.flush()

    def _gone(self, exc: Exception) -> None:
        """A closed pipe (or stdout closed under us) ends the output; any other error is a real one."""
        if isinstance(exc, OSError) and exc.errno not in (errno.EPIPE, errno.ECONNRESET):
            raise exc
        self.closed_pipe = True
        silence_stdout(self.stream)


def silence_stdout(stream: TextIO | None = None) -> None:
    """Point stdout's descriptor at /dev/null: what is still buffered, and every later write, goes nowhere."""
    stream = stream or sys.stdout
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no descriptor (a test's StringIO): nothing to silence
        pass


def run_all(settings: Settings, *, workers: int = 1) -> int:
    """Start everything, print the live status line until Ctrl-C/SIGTERM (or until nobody reads stdout any
    more), then stop every child: the stop never depends on writing to stdout succeeding."""
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    backend.ensure_templates()
    backend.close()
    out = QuietStdout()
    out.say(
        f"newsflow: {len(settings.feeds)} feed(s), Kafka {settings.kafka.bootstrap_servers}, "
        f"search {settings.search.url}; logs in {settings.stack.state_dir / 'logs'}"
    )
    status.clear(settings.stack.state_dir)
    stopping = False

    def request_stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    # Before the first child exists: a Ctrl-C from here on stops them, never leaves one behind.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children: list[Child] = []
    progress = Progress(stream=out, every_s=30.0)  # type: ignore[arg-type]  # a TextIO for what Progress uses
    try:
        names = [(f"worker-{n}", ["worker"]) for n in range(workers)]
        names += [("indexer", ["indexer"]), ("alerts", ["alerts", "run"]), ("poller", ["poller"])]
        for name, args in names:
            if stopping:
                break
            children.append(spawn(name, args, settings))
        _watch(settings, children, progress, out, lambda: stopping)
    finally:
        try:
            progress.done("newsflow: stopping (poller, alerts, indexer, workers)...")
        finally:
            stop_all(list(reversed(children)))
        out.say("newsflow: stopped")
    if out.closed_pipe:
        return 141  # as a command killed by SIGPIPE: nobody was reading any more
    return 0 if stopping else 1


def _watch(
    settings: Settings, children: list[Child], progress: Progress, out: QuietStdout, stopping: Callable[[], bool]
) -> None:
    """The live line, until a stop is requested, stdout's reader is gone, or a child exits."""
    failing: list[str] = []
    while not stopping() and not out.reader_gone():
        dead = [c for c in children if c.proc.poll() is not None]
        if dead:
            progress.note(f"newsflow: {dead[0].name} exited with {dead[0].proc.returncode}; see {dead[0].log}")
            return
        beats = status.read_all(settings.stack.state_dir)
        kinds = list(beats.get("poller", {}).get("failing_kinds") or [])
        if [k.split(" (e.g.")[0] for k in kinds] != [k.split(" (e.g.")[0] for k in failing]:
            for line in kinds:  # one line per kind of failure, when that picture changes
                progress.note(f"poller: {line}")
            failing = kinds
        progress.update(status_line(beats)[:160])
        for _ in range(20):  # 2 s, but a stop request (or the reader going away) is seen within 0.1 s
            if stopping() or out.reader_gone():
                return
            time.sleep(0.1)
