"""`newsflow feed parse URL` stops where the poller stops: an overall deadline of `poller.timeout_s * 2`, so a
server dripping its body a byte at a time (each read well within the read timeout) cannot hold it for minutes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.ingest.fetch import fetch_deadline_s
from pipeline.ingest.parse_cli import cli_parse
from pipeline.settings import Settings


@pytest.fixture
def slow_drip() -> Iterator[str]:
    """A loopback server that answers 200 and then sends one byte every 0.1 s for 20 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    halt = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 400\r\n\r\n<rss>")
            for _ in range(200):
                if halt.wait(0.1):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def serve() -> None:
        while not halt.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/feed.xml"
    halt.set()
    thread.join(5)
    server.close()


def test_feed_parse_gives_up_at_the_pollers_deadline(slow_drip: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(poller={"timeout_s": 0.5, "allow_private_hosts": ["127.0.0.1"]})
    assert fetch_deadline_s(settings.poller) == 1.0
    started = time.monotonic()
    assert cli_parse([slow_drip], settings) == 1
    took = time.monotonic() - started
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"feed": slow_drip, "error": f"timed out after 1 s fetching {slow_drip}"}
    assert 0.9 < took < 3.0, took
