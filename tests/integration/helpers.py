"""Helpers for integration tests: child processes, waiting on the index, reading topics."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from pipeline import status
from pipeline.alerts.dispatch import Clock
from pipeline.api.alerts import hash_key
from pipeline.evaluation.isolation import indexed_ids, read_records, read_topic, spawn, stop
from pipeline.models import EnrichedArticle, utcnow
from pipeline.search import SearchBackend, connect
from pipeline.search.documents import bulk_actions
from pipeline.settings import AlertSettings, Settings


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


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def newsflow(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, with the test's isolated settings (inherited environment)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120, check=False
    )


def free_port() -> int:
    """A port nobody listens on (bound, then released): for a server to start on, or an unreachable URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def articles_in_engine(settings: Settings, articles: list[EnrichedArticle]) -> Iterator[SearchBackend]:
    """The test's own articles and stories indices holding `articles`; they and their templates are removed after."""
    backend = connect(settings.search)
    backend.ensure_templates()
    outcomes = backend.bulk(bulk_actions(articles, settings.search.indices))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    backend.refresh()
    try:
        yield backend
    finally:
        idx = settings.search.indices
        with contextlib.suppress(Exception):  # best-effort cleanup of this test's own indices and templates
            for pattern in (f"{idx.articles}*", f"{idx.stories}*"):
                for name in backend.client.indices.get(index=pattern):
                    backend.client.indices.delete(index=name)
                for template in backend.client.indices.get_index_template(name=pattern).get("index_templates", []):
                    backend.client.indices.delete_index_template(name=template["name"])
        backend.close()


class Mailbox:
    """aiosmtpd handler: every message the SMTP server accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real local SMTP server: (what it received, its port)."""
    from aiosmtpd.controller import Controller

    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


class AlertStage:
    """`newsflow alerts run` in a thread (its heartbeat in `state_dir`), stopped by `close`; `clock` decides the
    digest periods (a test moves it on instead of waiting for a period to end)."""

    def __init__(self, settings: Settings, alerts: AlertSettings, state_dir: Path, clock: Clock = utcnow) -> None:
        from pipeline.alerts.consumer import run

        self.state_dir = state_dir
        self.stop = threading.Event()
        settings = settings.model_copy(update={"stack": settings.stack.model_copy(update={"state_dir": state_dir})})
        self.thread = threading.Thread(target=run, args=(settings, alerts, self.stop, clock), daemon=True)
        self.thread.start()

    def beat(self) -> dict[str, Any]:
        """The stage's latest heartbeat ({} before the first)."""
        beats = [b for n, b in status.read_all(self.state_dir).items() if n.startswith("alerts-")]
        return beats[0] if beats else {}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


__all__ = ["indexed_ids", "read_records", "read_topic", "spawn", "stop"]  # re-exported for the tests


@contextlib.contextmanager
def api_process(env: dict[str, str], keys: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`newsflow api` in its own process with `env`, accepting `keys` (owner -> key); yields (base URL, pid)."""
    port = free_port()
    hashed = [{"owner": owner, "sha256": hash_key(key)} for owner, key in keys.items()]
    env = {**env, "NEWSFLOW_API__PORT": str(port), "NEWSFLOW_API__KEYS": json.dumps(hashed)}
    proc = spawn(["api"], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is not None or httpx.get(f"{base}/openapi.json").status_code == 200,
            60,
            f"the API ({log.stem}) to listen",
            interval=0.2,
        )
        assert proc.poll() is None, log.read_text()
        yield base, proc.pid
    finally:
        stop(proc)
