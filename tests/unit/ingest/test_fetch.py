"""fetch_feed (the poller's fetch, synchronously) against httpx.MockTransport: limits, status, redirects (the
address checks on every hop need the real transport: `test_outbound.py`)."""

from __future__ import annotations

import httpx
import pytest

from pipeline.errors import FeedError
from pipeline.ingest.fetch import fetch_feed
from pipeline.settings import Settings
from tests.unit.ingest.samples import RSS2


def _settings(**poller: object) -> Settings:
    return Settings(poller={"allow_private_hosts": ["feeds.test"], **poller})


def test_fetch_feed_enforces_the_size_limit_and_status() -> None:
    big = httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(FeedError, match="max_bytes"):
        fetch_feed("http://feeds.test/rss", _settings(max_bytes=1024), transport=big)
    gone = httpx.MockTransport(lambda r: httpx.Response(410))
    with pytest.raises(FeedError, match="HTTP 410"):
        fetch_feed("http://feeds.test/rss", _settings(), transport=gone)


def test_fetch_feed_returns_body_type_and_final_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"location": "/new"})
        return httpx.Response(200, content=RSS2.encode(), headers={"content-type": "application/rss+xml"})

    fetched = fetch_feed("http://feeds.test/old", _settings(), transport=httpx.MockTransport(handler))
    assert fetched.final_url == "http://feeds.test/new"
    assert fetched.headers["content-type"] == "application/rss+xml"
    assert fetched.content.startswith(b"<?xml")
