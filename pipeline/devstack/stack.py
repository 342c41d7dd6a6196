"""The local dev stack: a single-node Kafka (KRaft) and a single-node OpenSearch run as plain JVM processes.

This module is what `newsflow stack up|down|status` (and the test fixtures) drive: make each component healthy
(reuse ours, else use an external one, else start ours and wait), stop ours, and report both. A Kafka or search
engine already reachable at the configured address but not started by us (e.g. docker compose) is used as is
and never touched. The pieces: `kafka` / `opensearch` (config, command line, health), `maven` (java and the
classpath), `processes` (pid files, spawn, stop, ports), `logs` (the failure line), `common` (names, paths).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.devstack import kafka, logs, maven, opensearch, processes
from pipeline.devstack.common import COMPONENTS, KAFKA, LOCALHOST, OPENSEARCH, Probe, check_name, pid_file
from pipeline.devstack.processes import Echo, pid_alive
from pipeline.errors import StackError
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentStatus:
    """One component as `newsflow stack status` sees it."""

    name: str
    managed: bool  # started by newsflow (pid file + cmdline verified)
    pid: int | None
    version: str | None
    address: str
    healthy: bool
    detail: str

    @property
    def external(self) -> bool:
        """Reachable and healthy, but not ours: we use it and never stop it."""
        return self.healthy and not self.managed


# ------------------------------------------------------------------------------------- kafka or opensearch


def _markers(settings: Settings, name: str) -> list[str]:
    return kafka.markers(settings) if name == KAFKA else opensearch.markers(settings)


def _log_offsets(settings: Settings, name: str) -> list[tuple[Path, int]]:
    return logs.offsets(kafka.log_paths(settings) if name == KAFKA else opensearch.log_paths(settings))


def _probe_ours(settings: Settings, name: str, timeout_s: float = 5.0) -> Probe:
    if name == KAFKA:
        return kafka.probe_ours(settings, timeout_s)
    return opensearch.probe_ours(settings, timeout_s)


def _probe_configured(settings: Settings, name: str, timeout_s: float = 5.0) -> Probe:
    if name == KAFKA:
        return kafka.probe_configured(settings, timeout_s)
    return opensearch.probe_configured(settings, timeout_s)


def _configured_address(settings: Settings, name: str) -> str:
    return settings.kafka.bootstrap_servers if name == KAFKA else settings.search.url


def _managed_address(settings: Settings, name: str) -> str:
    return kafka.kafka_address(settings) if name == KAFKA else opensearch.search_address(settings)


def _points_at_stack(settings: Settings, name: str) -> bool:
    """Do the client settings address the stack we would start? (If not, starting ours helps nobody.)"""
    if name == KAFKA:
        host, port = kafka.first_bootstrap(settings.kafka.bootstrap_servers)
        wanted = settings.stack.kafka.port
    else:
        parts = urlsplit(settings.search.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        wanted = settings.stack.opensearch.http_port
    return port == wanted and host in (LOCALHOST, "localhost", "::1", "0.0.0.0")


def running_pid(settings: Settings, name: str) -> int | None:
    """Our live process for `name`, or None: the pid file must exist and its pid's cmdline must match."""
    pid = processes.read_pid(pid_file(settings, name))
    if pid is None or not pid_alive(pid) or not processes.is_ours(pid, _markers(settings, name)):
        return None
    return pid


def check_ports(settings: Settings, name: str) -> None:
    """Fail with one clear line if something else holds a port we need (the runner would silently move on)."""
    for setting, port in kafka.ports(settings) if name == KAFKA else opensearch.ports(settings):
        if not processes.port_free(port):
            owner = processes.port_owner(port)
            by = f" by {owner}" if owner else " by another process"
            raise StackError(
                f"{name}: port {port} on {LOCALHOST} is already taken{by} and it is not a healthy {name} "
                f"we can use; stop it or set {setting} (NEWSFLOW_{setting.upper().replace('.', '__')})"
            )


# ---------------------------------------------------------------------------------------------------- start


def _launch(settings: Settings, name: str, echo: Echo) -> tuple[int, list[tuple[Path, int]]]:
    java = maven.java(settings)
    cp = maven.classpath(settings, name)
    version = maven.pom_version(name)
    echo(f"{name}: starting {version} on {_managed_address(settings, name)} ...")
    cmd = kafka.prepare(settings, java, cp) if name == KAFKA else opensearch.prepare(settings, java, cp)
    check_ports(settings, name)  # again, right before binding: the format step took a moment
    offsets = _log_offsets(settings, name)
    return processes.spawn(settings, name, cmd), offsets


def _wait_healthy(
    settings: Settings, name: str, pid: int, offsets: list[tuple[Path, int]], started: float
) -> Probe:
    deadline = started + settings.stack.start_timeout_s
    while True:
        if not pid_alive(pid):
            raise StackError(f"{name} exited during startup: {logs.failure_hint(offsets)}")
        result = _probe_ours(settings, name, timeout_s=3.0)
        if result.healthy:
            return result
        if time.monotonic() > deadline:
            raise StackError(
                f"{name} (pid {pid}) not healthy after {settings.stack.start_timeout_s:.0f} s "
                f"({result.detail}); last log line: {logs.failure_hint(offsets)}"
            )
        time.sleep(0.5)


def _bring_up(settings: Settings, name: str, echo: Echo) -> None:
    """Make one component healthy: reuse ours, else use an external one, else start ours and wait."""
    started = time.monotonic()
    with processes.exclusive(settings, name, echo):
        _bring_up_locked(settings, name, echo, started)


def _bring_up_locked(settings: Settings, name: str, echo: Echo, started: float) -> None:
    pid = running_pid(settings, name)
    if pid is not None:
        result = _probe_ours(settings, name)
        if not result.healthy:
            echo(f"{name}: running (pid {pid}) but not healthy yet ({result.detail}); waiting ...")
            result = _wait_healthy(settings, name, pid, _log_offsets(settings, name), started)
        where = _managed_address(settings, name)
        echo(f"{name}: already running (pid {pid}), {_managed_version(name, result)} on {where}, healthy")
        return
    external = _probe_configured(settings, name, timeout_s=3.0)
    if external.healthy:
        echo(
            f"{name}: using {external.version or name} already at {_configured_address(settings, name)} "
            "(not started by newsflow; left alone by `stack down`)"
        )
        return
    if not _points_at_stack(settings, name):
        echo(
            f"{name}: warning: the configured address {_configured_address(settings, name)} is not the local "
            f"stack's {_managed_address(settings, name)}; starting the local one anyway"
        )
    check_ports(settings, name)
    new_pid, offsets = _launch(settings, name, echo)
    _wait_healthy(settings, name, new_pid, offsets, started)
    echo(f"{name}: healthy after {time.monotonic() - started:.1f} s (pid {new_pid})")


def _in_parallel(
    settings: Settings, names: tuple[str, ...], fn: Callable[[Settings, str, Echo], None], echo: Echo
) -> None:
    """Run `fn` per component in threads; echo is serialised; all failures end up in one StackError line."""
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            echo(line)

    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack") as pool:
        futures = [pool.submit(fn, settings, name, say) for name in names]
    failures = [f.exception() for f in futures if f.exception() is not None]
    for exc in failures:
        if not isinstance(exc, StackError):
            raise exc  # type: ignore[misc]  # a bug, not a user-facing problem: keep the traceback
    if failures:
        raise StackError("; ".join(dict.fromkeys(str(e) for e in failures)))  # same cause once


def up(settings: Settings, *, echo: Echo = print) -> None:
    """Start (or reuse) Kafka and OpenSearch in parallel and return once both are healthy."""
    started = time.monotonic()
    settings.stack.state_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(settings, OPENSEARCH) is None and maven.cached_classpath(settings, OPENSEARCH) is None:
        # Cold: OpenSearch boots slowest, so it gets Maven first; Kafka's resolve then overlaps its boot.
        echo("stack: resolving jars with Maven (first run only) ...")
        maven.classpath(settings, OPENSEARCH)
    _in_parallel(settings, COMPONENTS, _bring_up, echo)
    echo(f"stack: up in {time.monotonic() - started:.1f} s (state in {settings.stack.state_dir})")


def start_component(settings: Settings, name: str, *, echo: Echo | None = None) -> None:
    """Start one component on its existing data (tests restart Kafka or OpenSearch mid-stream)."""
    check_name(name)
    settings.stack.state_dir.mkdir(parents=True, exist_ok=True)
    _bring_up(settings, name, echo or log.info)


def ensure_up(settings: Settings, *, echo: Echo | None = None) -> None:
    """Cheap when everything is already healthy; otherwise `up` with progress on stderr."""
    if all(s.healthy for s in status(settings)):
        return
    up(settings, echo=echo or (lambda line: print(line, file=sys.stderr)))


# ----------------------------------------------------------------------------------------------------- stop


def stop_component(settings: Settings, name: str, *, echo: Echo | None = None) -> bool:
    """SIGTERM our process, SIGKILL after `stop_timeout_s`; True if one was stopped. Never touches others."""
    check_name(name)
    say = echo or log.info
    with processes.exclusive(settings, name, say):
        return _stop_locked(settings, name, say)


def _stop_locked(settings: Settings, name: str, say: Echo) -> bool:
    path = pid_file(settings, name)
    pid = running_pid(settings, name)
    if pid is None:
        if path.exists():
            path.unlink(missing_ok=True)  # stale: the process is gone or the pid now belongs to someone else
        return False
    started = time.monotonic()
    if name == OPENSEARCH:
        opensearch.flush(settings)
    processes.terminate(name, pid, _markers(settings, name), settings.stack.stop_timeout_s, say)
    path.unlink(missing_ok=True)
    say(f"{name}: stopped (pid {pid}) in {time.monotonic() - started:.1f} s")
    return True


def _take_down(settings: Settings, name: str, echo: Echo) -> None:
    if not stop_component(settings, name, echo=echo):
        ext = _probe_configured(settings, name, timeout_s=2.0)
        note = (
            f" (the one at {_configured_address(settings, name)} is not ours; left running)"
            if ext.healthy
            else ""
        )
        echo(f"{name}: not running{note}")


def down(settings: Settings, *, echo: Echo = print) -> None:
    """Stop our Kafka and OpenSearch (in parallel); idempotent, and external services are left alone."""
    _in_parallel(settings, COMPONENTS, _take_down, echo)


# ---------------------------------------------------------------------------------------------------- status


def _managed_version(name: str, result: Probe) -> str:
    """Ours: Kafka's exact version is the pinned jar's (the API only tells 3.9); OpenSearch's from `GET /`."""
    if name == KAFKA:
        return maven.pom_version(KAFKA)
    return result.version or f"opensearch {maven.pom_version(OPENSEARCH)}"


def _component_status(settings: Settings, name: str) -> ComponentStatus:
    pid = running_pid(settings, name)
    if pid is not None:
        result = _probe_ours(settings, name, timeout_s=3.0)
        version = _managed_version(name, result)
        detail = (
            f"pid {pid}, {result.detail}" if result.healthy else f"pid {pid}, not healthy: {result.detail}"
        )
        return ComponentStatus(
            name, True, pid, version, _managed_address(settings, name), result.healthy, detail
        )
    result = _probe_configured(settings, name, timeout_s=3.0)
    address = _configured_address(settings, name)
    if result.healthy:
        return ComponentStatus(name, False, None, result.version, address, True, f"external, {result.detail}")
    return ComponentStatus(name, False, None, None, address, False, f"not running ({result.detail})")


def status(settings: Settings) -> list[ComponentStatus]:
    """Both components, probed in parallel (a down Kafka costs a connect timeout, not a sequence of them)."""
    with ThreadPoolExecutor(max_workers=len(COMPONENTS), thread_name_prefix="stack-status") as pool:
        return list(pool.map(lambda n: _component_status(settings, n), COMPONENTS))


def format_status(statuses: list[ComponentStatus]) -> str:
    rows = [("COMPONENT", "STATE", "VERSION", "ADDRESS", "DETAIL")]
    for s in statuses:
        state = (
            ("healthy" if s.healthy else "unhealthy") if s.managed else ("external" if s.healthy else "down")
        )
        rows.append((s.name, state, s.version or "-", s.address, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip()
        for r in rows
    )


# ------------------------------------------------------------------------------------------------------- cli


def cli(action: str, settings: Settings) -> int:
    """`newsflow stack up|down|status`: prints, returns the exit code (status: 0 only if all healthy)."""
    try:
        if action == "up":
            up(settings)
            print(format_status(status(settings)))
            return 0
        if action == "down":
            down(settings)
            return 0
        if action == "status":
            statuses = status(settings)
            print(format_status(statuses))
            return 0 if all(s.healthy for s in statuses) else 1
    except StackError as exc:
        print(f"newsflow stack {action}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"newsflow stack: unknown action {action!r} (expected up, down or status)", file=sys.stderr)
    return 2
