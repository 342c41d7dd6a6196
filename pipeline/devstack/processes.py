"""The JVMs as OS processes: spawn detached with a pid file, is-it-ours, is-it-alive, stop, and port checks.

Process facts (cmdline, state, who listens on a port) come from psutil. We only signal a pid whose pid file
*and* cmdline are ours: a recycled pid or another checkout's component is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from pipeline.devstack.common import LOCALHOST, component_dir, console_log, pid_file
from pipeline.devstack.logs import shorten
from pipeline.errors import StackError
from pipeline.settings import Settings

Echo = Callable[[str], object]

# Children started by this Python process: polling them reaps zombies, so "is it still alive?" stays truthful.
_children: dict[int, subprocess.Popen[bytes]] = {}


def cmdline(pid: int) -> list[str]:
    """The process's argv; empty if it is gone, a zombie or not readable."""
    try:
        return [part for part in psutil.Process(pid).cmdline() if part]
    except (psutil.Error, ValueError):  # ValueError: a negative pid
        return []


def is_ours(pid: int, markers: list[str]) -> bool:
    argv = cmdline(pid)
    return bool(argv) and all(m in argv for m in markers)


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (also used for heartbeats by `newsflow status`)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def spawn(settings: Settings, name: str, cmd: list[str]) -> int:
    """Start detached (own session, so Ctrl-C on the CLI never reaches it), output appended to console.log."""
    cdir = component_dir(settings, name)
    with console_log(settings, name).open("ab") as out:
        out.write(f"\n=== newsflow stack: starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    tmp = pid_file(settings, name).with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_file(settings, name))
    return proc.pid


@contextlib.contextmanager
def exclusive(settings: Settings, name: str, echo: Echo) -> Iterator[None]:
    """Serialise start/stop of one component across processes (tests, `make run` and a shell may race)."""
    path = component_dir(settings, name) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"{name}: another newsflow process is starting or stopping it; waiting ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(name: str, pid: int, markers: list[str], timeout_s: float, say: Echo) -> None:
    """SIGTERM, SIGKILL after `timeout_s` (only if the pid still carries `markers`); raises if it survives."""
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout_s):
        say(f"{name}: pid {pid} ignored SIGTERM for {timeout_s:.0f} s; sending SIGKILL")
        if is_ours(pid, markers):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 10.0):
            raise StackError(f"{name}: pid {pid} survived SIGKILL; check `ps -p {pid}`")
    _children.pop(pid, None)


# ------------------------------------------------------------------------------------------------------ ports


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        return s.connect_ex((host, port)) == 0


def port_free(port: int, host: str = LOCALHOST) -> bool:
    """Can we bind it? SO_REUSEADDR so a TIME_WAIT left by our own last run does not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def port_owner(port: int) -> str | None:
    """Best effort "pid 123 (python3 -m http.server)" for a listening TCP port (v4 or v6)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return f"pid {conn.pid} ({shorten(' '.join(cmdline(conn.pid)), 80)})"
    return None
