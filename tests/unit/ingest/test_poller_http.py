"""The poller against a real local HTTP server (no Kafka: a fake producer records what would be produced).

Covers conditional GET / 304, 301 vs 302, 429/503 + Retry-After, Cache-Control max-age, RSS <ttl>, gzip,
GUID changes, bad encodings, timeouts, oversized and malicious feeds, and backoff that never drops a feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import poller
from pipeline.ingest.poller import Poller
from pipeline.ingest.results import FeedResult
from pipeline.models import Article
from pipeline.settings import FeedConfig, Settings
from pipeline.stream import bus

Reply = tuple[int, dict[str, str], bytes]


def rss(items: list[tuple[str, str, str]], *, ttl: int | None = None, encoding: str = "utf-8") -> bytes:
    """A small RSS 2.0 document; items are (guid, link, title)."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{g}</guid>" + (f"<link>{link}</link>" if link else "")
        + f"<title>{t}</title><description>About {t}.</description>"
        "<pubDate>Mon, 02 Mar 2026 10:00:00 GMT</pubDate></item>"
        for g, link, t in items
    )
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl is not None else ""
    doc = f"<?xml version='1.0' encoding='{encoding}'?><rss version='2.0'><channel><title>T</title>"
    return (doc + f"<link>https://site.example/</link>{ttl_tag}{body}</channel></rss>").encode(encoding)


ONE = rss([("g1", "https://site.example/a1", "First story")])


@dataclass
class Site:
    """Routes: path -> function(request headers) -> (status, headers, body). Records every request."""

    base: str = ""
    routes: dict[str, Callable[[dict[str, str]], Reply]] = field(default_factory=dict)
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.hits if p == path)


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.hits.append((self.path, headers))
            route = state.routes.get(self.path)
            status, extra, body = route(headers) if route else (404, {}, b"not found")
            self.send_response(status)
            stream = extra.pop("X-Stream", None) is not None  # no length: the body ends when the socket closes
            for k, v in extra.items():
                self.send_header(k, v)
            if stream:
                self.send_header("Connection", "close")
                self.close_connection = True
            elif "Content-Length" not in extra:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (size cap)
                self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


class FakeProducer:
    """A transactional producer that keeps what each committed transaction held; `fail_commits` aborts some."""

    def __init__(self) -> None:
        self.committed: list[tuple[str, str, bytes | None]] = []
        self.pending: list[tuple[str, str, bytes | None]] = []
        self.fail_commits = 0

    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        self.pending = []

    def send(self, topic: str, key: str, value: bytes | None) -> None:
        self.pending.append((topic, key, value))

    def commit_transaction(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise RuntimeError("broker gone")
        self.committed.extend(self.pending)

    def abort_transaction(self) -> None:
        self.pending = []

    def close(self, timeout: float | None = None) -> None:
        pass


def make_poller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feeds: list[FeedConfig], **poller_cfg: Any) -> Poller:
    monkeypatch.setattr(bus, "producer", lambda *a, **k: FakeProducer())
    monkeypatch.setattr(poller.status, "write", lambda *a, **k: None)
    cfg = {"allow_private_hosts": ["127.0.0.1"], "seen_db": tmp_path / "seen.sqlite", "jitter": 0.0, **poller_cfg}
    settings = Settings(poller=cfg, stack={"state_dir": tmp_path})
    return Poller(settings, feeds)


def fake(p: Poller) -> FakeProducer:
    producer = p.outbox._producer
    assert isinstance(producer, FakeProducer)
    return producer


def sent(p: Poller) -> list[Article]:
    """The items of committed transactions."""
    topic = p.settings.kafka.topics.articles
    return [Article.model_validate_json(v) for t, _, v in fake(p).committed if t == topic and v]


def poll(p: Poller) -> list[FeedResult]:
    return asyncio.run(p.poll_once())


def state_of(p: Poller, url: str) -> Any:
    return next(s for s in p.states.values() if s.url == url or s.feed_id == FeedConfig(url=url).feed_id())


# --- conditional GET ---------------------------------------------------------------------------------------


def test_etag_gives_304_and_nothing_new(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def feed(h: dict[str, str]) -> Reply:
        if h.get("if-none-match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {"ETag": '"v1"', "Content-Type": "application/rss+xml"}, ONE

    site.routes["/f.xml"] = feed
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/f.xml"))])
    first = poll(p)
    second = poll(p)
    assert first[0].new_items == 1 and first[0].status == 200
    assert second[0].not_modified and second[0].status == 304 and second[0].new_items == 0
    assert site.hits[1][1]["if-none-match"] == '"v1"'
    assert len(sent(p)) == 1
    p.close()


def test_an_aborted_transaction_changes_nothing_and_the_items_come_next_poll(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items and state commit together: after an abort neither the validators nor the recent ids moved, so
    the next poll fetches the whole document again (no 304) and produces the items once."""
    site.routes["/f.xml"] = lambda h: (
        (304, {"ETag": '"v1"'}, b"") if h.get("if-none-match") == '"v1"' else (200, {"ETag": '"v1"'}, ONE)
    )
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/f.xml"))])
    fake(p).fail_commits = 1
    first = poll(p)[0]
    assert not first.ok and "broker gone" in (first.error or "")
    assert sent(p) == [] and state_of(p, site.url("/f.xml")).etag is None
    second = poll(p)[0]
    assert second.ok and second.status == 200 and second.new_items == 1
    assert len(sent(p)) == 1
    topics = p.settings.kafka.topics
    kinds = [t for t, _, _ in fake(p).committed]
    assert kinds == [topics.feed_state, topics.articles, topics.feed_state]  # the failure's state, then both
    assert poll(p)[0].status == 304 and len(sent(p)) == 1
    p.close()


def test_last_modified_and_restart_keeps_validators(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = "Mon, 02 Mar 2026 10:00:00 GMT"

    def feed(h: dict[str, str]) -> Reply:
        return (304, {}, b"") if h.get("if-modified-since") == lm else (200, {"Last-Modified": lm}, ONE)

    site.routes["/f.xml"] = feed
    feeds = [FeedConfig(url=site.url("/f.xml"))]
    p = make_poller(tmp_path, monkeypatch, feeds)
    poll(p)
    p.close()
    again = make_poller(tmp_path, monkeypatch, feeds)  # a restart: validators come from the durable store
    assert poll(again)[0].status == 304
    again.close()


def test_gzip_is_requested_and_decoded(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site.routes["/gz.xml"] = lambda h: (200, {"Content-Encoding": "gzip"}, gzip.compress(ONE))
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/gz.xml"))])
    r = poll(p)[0]
    assert r.ok and r.new_items == 1, r.error
    assert "gzip" in site.hits[0][1]["accept-encoding"]
    p.close()


# --- redirects ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "moves"), [(301, True), (308, True), (302, False), (307, False)])
def test_permanent_redirects_update_the_url(
    code: int, moves: bool, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.routes["/old.xml"] = lambda h: (code, {"Location": "/new.xml"}, b"")
    site.routes["/new.xml"] = lambda h: (200, {}, ONE)
    moved: list[FeedConfig] = []
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/old.xml"))])
    p.on_moved = moved.append
    assert poll(p)[0].new_items == 1
    poll(p)
    if moves:
        assert [f.url for f in p.feeds] == [site.url("/new.xml")]
        assert [f.url for f in moved] == [site.url("/new.xml")]
        assert site.count("/old.xml") == 1 and site.count("/new.xml") == 2
        assert p.feeds[0].feed_id() == FeedConfig(url=site.url("/old.xml")).feed_id()  # same feed, same state
    else:
        assert [f.url for f in p.feeds] == [site.url("/old.xml")] and not moved
        assert site.count("/old.xml") == 2
    assert len(sent(p)) == 1  # the move produces nothing twice
    p.close()


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # SSRF: every hop is checked
        ("/f.xml", "more than 5 redirects"),  # a loop
    ],
)
def test_refused_redirects(
    location: str, error: str, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.routes["/f.xml"] = lambda h: (302, {"Location": location}, b"")
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/f.xml"))])
    r = poll(p)[0]
    assert not r.ok and error in (r.error or ""), r.error
    p.close()


# --- politeness: 429/503, Cache-Control, ttl, backoff ----------------------------------------------------


def test_429_retry_after_seconds_is_honoured(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site.routes["/busy.xml"] = lambda h: (429, {"Retry-After": "1800"}, b"slow down")
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/busy.xml"))])
    before = time.time()
    r = poll(p)[0]
    st = state_of(p, site.url("/busy.xml"))
    assert not r.ok and r.status == 429 and "429" in (r.error or "")
    assert 1800 <= st.next_due - before <= 1800 + 5
    assert not st.healthy and st.consecutive_errors == 1
    assert p.feeds, "a rate-limited feed stays registered"
    p.close()


def test_503_retry_after_http_date(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from email.utils import formatdate

    site.routes["/down.xml"] = lambda h: (503, {"Retry-After": formatdate(time.time() + 600, usegmt=True)}, b"")
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/down.xml"))])
    before = time.time()
    poll(p)
    due = state_of(p, site.url("/down.xml")).next_due - before
    assert 590 <= due <= 606
    p.close()


def test_cache_control_and_ttl_stretch_the_interval(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.routes["/cc.xml"] = lambda h: (200, {"Cache-Control": "public, max-age=1200"}, ONE)
    site.routes["/ttl.xml"] = lambda h: (200, {}, rss([("t", "https://site.example/t", "T")], ttl=30))  # minutes
    site.routes["/huge.xml"] = lambda h: (200, {"Cache-Control": "max-age=999999"}, ONE)
    feeds = [FeedConfig(url=site.url(p)) for p in ("/cc.xml", "/ttl.xml", "/huge.xml")]
    p = make_poller(tmp_path, monkeypatch, feeds, min_interval_s=60, max_interval_s=3600, interval_s=300)
    poll(p)
    assert state_of(p, site.url("/cc.xml")).interval_s == 1200
    assert state_of(p, site.url("/ttl.xml")).interval_s == 1800
    assert state_of(p, site.url("/huge.xml")).interval_s == 3600  # hints never exceed the max interval
    p.close()


def test_failing_feed_backs_off_and_is_never_dropped(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.routes["/ok.xml"] = lambda h: (200, {}, ONE)
    feeds = [FeedConfig(url=site.url("/gone.xml")), FeedConfig(url=site.url("/ok.xml"), max_interval_s=100)]
    p = make_poller(tmp_path, monkeypatch, feeds, min_interval_s=10, max_interval_s=160)
    delays = []
    for _ in range(7):
        t0 = time.time()
        poll(p)
        delays.append(state_of(p, site.url("/gone.xml")).next_due - t0)
    st = state_of(p, site.url("/gone.xml"))
    assert st.consecutive_errors == 7 and "404" in (st.last_error or "") and st.status == 404
    assert delays[0] <= 11 and delays[-1] >= 159 and delays[-1] <= 161  # backs off to the max and stays
    assert len(p.feeds) == 2 and p.status()["unhealthy"] == 1
    assert state_of(p, site.url("/ok.xml")).healthy
    p.close()


# --- items ---------------------------------------------------------------------------------------------------


def test_guid_change_does_not_republish(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [
        rss([("guid-1", "https://site.example/a?utm_source=x", "Story")]),
        rss([("guid-CHANGED", "https://site.example/a", "Story")]),  # CMS migration: new guid, same article
        rss([("x1", "", "No link, guid only")]),
        rss([("x1", "", "No link, guid only")]),
    ]
    calls = iter(docs)
    site.routes["/f.xml"] = lambda h: (200, {}, next(calls))
    p = make_poller(tmp_path, monkeypatch, [FeedConfig(url=site.url("/f.xml"))])
    news = [poll(p)[0].new_items for _ in docs]
    assert news == [1, 0, 1, 0]
    assert sent(p)[0].url == "https://site.example/a"  # tracking parameters stripped
    p.close()


def test_latin1_feed_decodes_accents(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = rss([("e1", "https://site.example/e", "Élection à Zürich: café")], encoding="iso-8859-1")
    site.routes["/l1.xml"] = lambda h: (200, {"Content-Type": "text/xml"}, body)
    site.routes["/lie.xml"] = lambda h: (200, {"Content-Type": "text/xml; charset=utf-8"}, body)  # header lies
    feeds = [FeedConfig(url=site.url("/l1.xml")), FeedConfig(url=site.url("/lie.xml"))]
    p = make_poller(tmp_path, monkeypatch, feeds)
    results = poll(p)
    assert all(r.ok for r in results), [r.error for r in results]
    assert sent(p)[0].title == "Élection à Zürich: café"
    p.close()


# --- limits and hostile feeds ---------------------------------------------------------------------------------


def test_timeout_is_one_clean_error(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(h: dict[str, str]) -> Reply:
        time.sleep(1.5)
        return 200, {}, ONE

    site.routes["/slow.xml"] = slow
    site.routes["/ok.xml"] = lambda h: (200, {}, ONE)
    feeds = [FeedConfig(url=site.url("/slow.xml")), FeedConfig(url=site.url("/ok.xml"))]
    p = make_poller(tmp_path, monkeypatch, feeds, timeout_s=0.5)
    t0 = time.monotonic()
    slow_r, ok_r = poll(p)
    assert time.monotonic() - t0 < 1.4
    assert not slow_r.ok and "Timeout" in (slow_r.error or "") and "\n" not in (slow_r.error or "")
    assert ok_r.ok and ok_r.new_items == 1
    p.close()


def test_oversized_responses_are_cut_off(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = b"<rss>" + b"x" * 300_000 + b"</rss>"
    site.routes["/declared.xml"] = lambda h: (200, {}, big)
    bomb = gzip.compress(b"<rss>" + b" " * 5_000_000 + b"</rss>")  # ~5 KB on the wire, 5 MB unpacked
    site.routes["/bomb.xml"] = lambda h: (200, {"Content-Encoding": "gzip"}, bomb)
    site.routes["/endless.xml"] = lambda h: (200, {"X-Stream": "1"}, big)  # no Content-Length to go by
    feeds = [FeedConfig(url=site.url(x)) for x in ("/declared.xml", "/bomb.xml", "/endless.xml")]
    p = make_poller(tmp_path, monkeypatch, feeds, max_bytes=100_000)
    for r in poll(p):
        assert not r.ok and "max_bytes" in (r.error or ""), r.error
    p.close()


def test_malicious_xml_is_refused_cleanly(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode() for c, p in zip("bcdefghi", "abcdefgh", strict=True)
        )
        + b"]><rss version='2.0'><channel><title>&i;</title><item><title>x</title></item></channel></rss>"
    )
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<rss version='2.0'><channel><title>t</title><item><title>&x;</title></item></channel></rss>"
    )
    site.routes["/lol.xml"] = lambda h: (200, {}, lol)
    site.routes["/xxe.xml"] = lambda h: (200, {}, xxe)
    site.routes["/junk.xml"] = lambda h: (200, {}, b"\x00\xff\xfe garbage <<<")
    feeds = [FeedConfig(url=site.url(x)) for x in ("/lol.xml", "/xxe.xml", "/junk.xml")]
    p = make_poller(tmp_path, monkeypatch, feeds)
    results = poll(p)
    errors = [r.error or "" for r in results]
    assert not any(r.ok for r in results) and not any("\n" in e for e in errors), errors
    assert "nested or parameter XML entity" in errors[0] and "external XML entity" in errors[1], errors  # screened
    assert "not a feed" in errors[2], errors  # broken XML yielding nothing is an error, not an empty feed
    assert sent(p) == []
    p.close()


def test_per_host_limit(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def feed(h: dict[str, str]) -> Reply:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.1)
        with lock:
            active["now"] -= 1
        return 200, {}, ONE

    for i in range(8):
        site.routes[f"/f{i}.xml"] = feed
    feeds = [FeedConfig(url=site.url(f"/f{i}.xml")) for i in range(8)]
    p = make_poller(tmp_path, monkeypatch, feeds, per_host_concurrency=2, concurrency=16)
    assert all(r.ok for r in poll(p))
    assert active["max"] == 2
    p.close()


# --- the scheduler -------------------------------------------------------------------------------------------


def test_scheduler_polls_each_feed_when_due(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run(): a healthy feed comes back at its interval, a failing one keeps being retried (backing off),
    a rate-limited one waits as asked; adding a feed while running gets it polled at once."""
    site.routes["/ok.xml"] = lambda h: (200, {}, ONE)
    site.routes["/err.xml"] = lambda h: (500, {}, b"boom")
    site.routes["/busy.xml"] = lambda h: (429, {"Retry-After": "3600"}, b"")
    site.routes["/late.xml"] = lambda h: (200, {}, rss([("l", "https://site.example/late", "Late")]))
    feeds = [FeedConfig(url=site.url(x)) for x in ("/ok.xml", "/err.xml", "/busy.xml")]
    p = make_poller(tmp_path, monkeypatch, feeds, interval_s=0.2, min_interval_s=0.2, max_interval_s=0.4)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, p.set_feed, FeedConfig(url=site.url("/late.xml")))
        loop.call_later(2.5, p.stop)
        await p.run()

    asyncio.run(scenario())
    assert 4 <= site.count("/ok.xml") <= 14
    assert site.count("/err.xml") >= 4 and site.count("/busy.xml") == 1
    assert site.count("/late.xml") >= 2
    assert {a.title for a in sent(p)} == {"First story", "Late"}
    assert not state_of(p, site.url("/err.xml")).healthy and len(p.feeds) == 4
    status = p.status()  # scheduled polling has no cycles: the heartbeat says when the next poll is due
    assert "cycles" not in status and 0 <= status["next_poll_in_s"] <= 3600
    p.close()
