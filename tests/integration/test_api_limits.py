"""The hostile requests of the "one API request can take down the search engine" issue, sent on loopback to the
real API (`newsflow api`, its own process) over the real OpenSearch, and the CLI's `subscriptions add` and
`search` with the same queries. After every one the engine must be as healthy as before and answer its health
check within two seconds, and its log must show no OutOfMemoryError / StackOverflowError; nothing hostile is
stored, the API's memory stays flat, and no answer is the misleading 503 "is it running?".

Run with `-s` to see the figures (latency per request, API memory, engine health time)."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.api.alerts import API_KEY_HEADER
from pipeline.devstack import opensearch as local_opensearch
from pipeline.models import EnrichedArticle, Story
from pipeline.search import SearchBackend
from pipeline.settings import Settings
from tests.conftest import Isolated
from tests.integration import helpers
from tests.integration.helpers import articles_in_engine, newsflow

pytestmark = pytest.mark.integration

KEYS = {"ann": "ann-key-0123456789", "bob": "bob-key-0123456789"}
NOW = datetime.now(UTC)
MB = 1024 * 1024
HOSTILE_QUERIES = {
    "catastrophic regex": "/(a+)+(b+)+(c+)+(d+)+(e+)+(f+)+$/",
    "leading wildcards": "*a*b*c*",
    "fuzzy": "korea~2",
    "any field (_id)": "_id:*",
    "any field (owner)": "owner:bob",
    "5,000 nested parentheses (10 KB)": "(" * 5000 + "a" + ")" * 5000,
    "6 nested parentheses": "((((((korea))))))",
    "2,000 OR-ed terms (24 KB)": " OR ".join(f"term{i:04d}" for i in range(2000)),
    "60 KB of words": "korea " * 10_000,
}
CLI_CASES = ("catastrophic regex", "5,000 nested parentheses (10 KB)", "2,000 OR-ed terms (24 KB)", "any field (_id)")


def article(art_id: str, story_id: str, title: str) -> EnrichedArticle:
    published = NOW - timedelta(hours=1)
    story = Story(story_id=story_id, title=title, first_seen=published, last_seen=published)
    return EnrichedArticle(
        id=art_id,
        feed="http://test/feed.xml",
        source="Harbor Times",
        title=title,
        summary=f"{title}, officials said.",
        published=published,
        story_id=story_id,
        story=story,
    )


ARTICLES = [article("k1", "s-korea", "North Korea fires a missile"), article("v1", "s-volcano", "Volcano erupts")]


# ------------------------------------------------------------------------------------------------ helpers


class Engine:
    """The shared search engine's health as this test found it, checked again after every hostile request."""

    def __init__(self, stack: Settings) -> None:
        self.url = stack.search.url
        self.status, _ = self.health()
        self.logs = {p: p.stat().st_size for p in local_opensearch.log_paths(stack) if p.exists()}
        self.slowest = 0.0

    def health(self) -> tuple[str, float]:
        started = time.monotonic()
        answer = httpx.get(f"{self.url}/_cluster/health", timeout=5)
        return answer.json()["status"], time.monotonic() - started

    def check(self, after: str) -> None:
        status, took = self.health()
        self.slowest = max(self.slowest, took)
        assert status == self.status, f"engine {status} (was {self.status}) after {after}"
        assert took < 2.0, f"engine health took {took:.2f}s after {after}"

    def errors_logged(self) -> list[str]:
        """Fatal JVM errors the engine logged since this test began."""
        found = []
        for path, size in self.logs.items():
            with path.open("rb") as f:
                f.seek(size)
                text = f.read().decode(errors="replace")
            found += re.findall(r".*(?:OutOfMemoryError|StackOverflowError).*", text)
        return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def api_process(isolated: Isolated, tmp_path: Path, name: str, **env: str) -> Iterator[tuple[str, int]]:
    """`newsflow api` in its own process with the test's settings (+ `env`); yields (base URL, pid)."""
    with helpers.api_process({**isolated.env, **env}, KEYS, tmp_path / f"{name}.log") as running:
        yield running


def raw_request(
    base: str, head: str, body: Iterable[bytes] = (), source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], dict[str, Any], int]:
    """Send a request head, then body pieces only while the server has not answered; returns (status, headers,
    JSON body, body bytes sent). A server that answers before reading lets a client stop sending."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        sent = 0
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(payload or b"{}"), sent


def _length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length:\s*(\d+)", data)
    return int(match.group(1)) if match else 0


def chunked(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // piece):
        yield f"{piece:x}\r\n".encode() + b"q" * piece + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.fixture
def engine_indices(isolated: Isolated) -> Iterator[SearchBackend]:
    with articles_in_engine(isolated.settings, ARTICLES) as backend:
        yield backend
        backend.client.indices.delete(index=isolated.settings.alerts.subscriptions_index, ignore=[404])


def stored(backend: SearchBackend, isolated: Isolated) -> int:
    index = isolated.settings.alerts.subscriptions_index
    if not backend.client.indices.exists(index=index):
        return 0
    backend.client.indices.refresh(index=index)
    return int(backend.client.count(index=index)["count"])


def as_(owner: str) -> dict[str, str]:
    return {API_KEY_HEADER: KEYS[owner]}


# -------------------------------------------------------------------------------------------------- tests


def test_hostile_requests_never_reach_the_engine(
    isolated: Isolated, stack: Settings, engine_indices: SearchBackend, tmp_path: Path
) -> None:
    engine = Engine(stack)
    hook = [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}]
    figures: list[str] = []
    with api_process(isolated, tmp_path, "api") as (base, pid), httpx.Client(base_url=base, timeout=30) as http:
        memory_before = rss_mb(pid)

        # Bodies: refused by their size, before the key check and before they are read.
        started = time.monotonic()
        for headers in ("", f"{API_KEY_HEADER}: {KEYS['ann']}\n"):
            head = f"POST /subscriptions HTTP/1.1\nHost: x\nContent-Type: application/json\n{headers}"
            status, _, body, _ = raw_request(base, head + f"Content-Length: {50 * MB}\n")  # not a byte sent
            assert status == 413 and body["detail"] == "request body too large (52,428,800 bytes; at most 65,536 bytes)"
            engine.check("a declared 50 MB body")
        keyed = f"POST /subscriptions HTTP/1.1\nHost: x\n{API_KEY_HEADER}: {KEYS['ann']}\n"
        pieces = (b"x" * 65536 for _ in range(48))
        status, _, body, sent = raw_request(base, keyed + f"Content-Length: {3 * MB}\n", pieces)
        assert status == 413 and sent < 3 * MB, (body, sent)  # answered before the body was all there
        engine.check("a 3 MB body")
        status, _, body, sent = raw_request(base, keyed + "Transfer-Encoding: chunked\n", chunked(3 * MB))
        assert status == 413 and body["detail"] == "request body too large (at most 65,536 bytes)", body
        figures.append(f"bodies (50 MB declared x2, 3 MB, 3 MB chunked): 413 in {time.monotonic() - started:.2f}s")
        engine.check("a 3 MB chunked body")

        # Queries: refused (422, one short line) before the store, POST and PUT alike; nothing stored.
        good = http.post("/subscriptions", headers=as_("ann"), json={"name": "nk", "query": "kor*", "channels": hook})
        assert good.status_code == 201, good.text
        sub_id = good.json()["id"]
        for what, query in HOSTILE_QUERIES.items():
            started = time.monotonic()
            payload = {"name": "x", "query": query, "channels": hook}
            answers = [
                http.post("/subscriptions", headers=as_("ann"), json=payload),
                http.put(f"/subscriptions/{sub_id}", headers=as_("ann"), json=payload),
            ]
            took = time.monotonic() - started
            for answer in answers:
                assert answer.status_code == 422, (what, answer.status_code, answer.text[:300])
                detail = answer.json()["detail"]
                assert detail.startswith("invalid subscription query ") and len(detail) < 300, (what, detail)
            figures.append(f"{what}: 422 x2 in {took * 1000:.0f} ms: {answers[0].json()['detail'][:110]}")
            engine.check(what)
        assert stored(engine_indices, isolated) == 1
        kept = http.get(f"/subscriptions/{sub_id}", headers=as_("ann")).json()
        assert kept["query"] == "kor*"
        tested = http.get(f"/subscriptions/{sub_id}/test", headers=as_("ann"))  # the safe prefix still works
        assert tested.json() == [{"story_id": "s-korea", "title": "North Korea fires a missile"}], tested.text
        memory_after = rss_mb(pid)
        figures.append(f"API memory {memory_before:.0f} -> {memory_after:.0f} MB")
        assert memory_after - memory_before < 30, figures

    # The CLI applies the same checks: `subscriptions add` and `search`, one line each, nothing stored or sent.
    for what in CLI_CASES:
        query = HOSTILE_QUERIES[what]
        added = newsflow("subscriptions", "--owner", "ann", "add", "x", query, "--webhook", "http://127.0.0.1:1/h")
        assert added.returncode == 1 and added.stdout == "", (what, added.stderr)
        assert added.stderr.startswith("newsflow: error: invalid subscription query ") and added.stderr.count("\n") == 1
        assert len(added.stderr) < 300, added.stderr
        searched = newsflow("search", query)
        assert searched.returncode == 1 and searched.stderr.startswith("newsflow: error: invalid search query ")
        assert searched.stderr.count("\n") == 1 and len(searched.stderr) < 300, searched.stderr
        engine.check(f"the CLI with {what}")
    assert stored(engine_indices, isolated) == 1
    found = newsflow("search", "kor* OR volcano", "--json")
    assert found.returncode == 0 and {h["story"]["story_id"] for h in json.loads(found.stdout)} == {
        "s-korea",
        "s-volcano",
    }, found.stderr

    assert engine.errors_logged() == []
    figures.append(f"engine {engine.status} after every request; slowest health check {engine.slowest * 1000:.0f} ms")
    print("\n" + "\n".join(figures))


def test_rate_limits_per_address_and_key(isolated: Isolated, stack: Settings, tmp_path: Path) -> None:
    """300 wrong keys in well under 5 s from one address: 10 are 401, the rest 429 with Retry-After; the right
    key from that address is refused too (a 429 says nothing about a key), another address is served; a
    forged X-Forwarded-For does not make a new address; one key flooding gets its own 429s."""
    engine = Engine(stack)
    with api_process(isolated, tmp_path, "api") as (base, _):
        attacker = httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
        neighbour = httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=10)
        with attacker, neighbour:
            started = time.monotonic()
            codes: collections.Counter[int] = collections.Counter()
            retry_after = set()
            for i in range(300):
                headers = {API_KEY_HEADER: f"guess-{i}", "X-Forwarded-For": f"10.1.{i // 250}.{i % 250}"}
                answer = attacker.get("/subscriptions", headers=headers)
                codes[answer.status_code] += 1
                if answer.status_code == 429:
                    retry_after.add(int(answer.headers["retry-after"]))
            took = time.monotonic() - started
            assert took < 5 and codes == {401: 10, 429: 290}, (took, codes)
            assert retry_after and min(retry_after) >= 1
            assert attacker.get("/subscriptions", headers=as_("ann")).status_code == 429
            engine.check("300 wrong keys")

            assert neighbour.get("/subscriptions", headers=as_("ann")).status_code == 200
            flood = collections.Counter(
                neighbour.get("/subscriptions/x/test?since=bad", headers=as_("bob")).status_code for _ in range(45)
            )
            assert flood[422] >= 30 and flood[429] >= 10, flood  # key_burst 30, then 10/s: 429 with Retry-After
            assert neighbour.get("/subscriptions", headers=as_("ann")).status_code == 200  # ann's key is hers
            engine.check("one key flooding")
    print(f"\n300 wrong keys in {took:.2f}s: {dict(codes)}, Retry-After {sorted(retry_after)}; one key: {dict(flood)}")


def test_engine_refusals_and_timeouts_are_422_and_504_not_is_it_running(
    isolated: Isolated, stack: Settings, engine_indices: SearchBackend, tmp_path: Path
) -> None:
    """With the query limits raised past what the engine takes, the engine's own refusal is a 422 with its
    reason (not the query); an engine that takes the request and never answers is a 504 after
    `api.engine_timeout_s`. Neither is a 503 "not reachable ... is it running?"."""
    engine = Engine(stack)
    hook = [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}]
    wide = {"NEWSFLOW_SEARCH__QUERY_LIMITS__MAX_TERMS": "5000", "NEWSFLOW_SEARCH__QUERY_LIMITS__MAX_CHARS": "60000"}
    many = HOSTILE_QUERIES["2,000 OR-ed terms (24 KB)"]
    hanging, hang_port = silent_server()
    try:
        hung_env = {
            "NEWSFLOW_SEARCH__URL": f"http://127.0.0.1:{hang_port}",
            "NEWSFLOW_SEARCH__BACKEND": "opensearch",
            "NEWSFLOW_API__ENGINE_TIMEOUT_S": "1",
        }
        with (
            api_process(isolated, tmp_path, "api-wide", **wide) as (wide_base, _),
            api_process(isolated, tmp_path, "api-hung", **hung_env) as (hung_base, _),
        ):
            refused = httpx.post(
                f"{wide_base}/subscriptions", headers=as_("ann"), json={"name": "x", "query": many, "channels": hook}
            )
            reason = refused.json()["detail"]
            assert refused.status_code == 422 and "too many boolean clauses" in reason and len(reason) < 300, reason
            engine.check("2,000 terms let through to the engine")
            assert stored(engine_indices, isolated) == 0

            started = time.monotonic()
            timed_out = httpx.get(f"{hung_base}/subscriptions", headers=as_("ann"), timeout=30)
            took = time.monotonic() - started
            detail = timed_out.json()["detail"]
            assert timed_out.status_code == 504 and "did not answer in time" in detail, timed_out.text
            assert "is it running" not in detail and took < 5, (took, detail)
    finally:
        hanging.set()

    searched = newsflow_env(wide, "search", many)
    assert searched.returncode == 1 and searched.stderr.count("\n") == 1 and len(searched.stderr) < 300
    assert "the search engine refused the query: too_many_clauses" in searched.stderr, searched.stderr
    engine.check("a 2,000-term search let through to the engine")
    assert engine.errors_logged() == []
    print(f"\nengine refusal: 422 {reason!r}\nsilent engine: 504 after {took:.2f}s: {detail}")


PIECES = [
    *("korea", "Kim", "AND", "OR", "NOT", "&&", "||", "title:", "summary:", "text:", "ANDROID", "kor*", "10:30"),
    *('"', "(", ")", "-", "+", "!", "*", ":", "/", "&", "|", "=", "<", ">", ",", ".", "'", "\\", "é", "—"),
    *(" ", " ", " "),
]


def test_whatever_the_checker_accepts_the_engine_parses(isolated: Isolated) -> None:
    """The checker and the engine must never disagree: random strings of words, operators and reserved
    characters; each one the checker accepts is validated by the engine (against the percolator mapping)."""
    import random

    from pipeline.alerts.models import Subscription, WebhookChannel
    from pipeline.alerts.store import SubscriptionStore
    from pipeline.errors import QueryError
    from pipeline.search import connect
    from pipeline.search.query_text import check_query

    rng = random.Random(20261208)
    backend = connect(isolated.settings.search)
    store = SubscriptionStore(backend, isolated.settings.alerts)
    store.ensure_index()
    limits = isolated.settings.search.query_limits
    accepted: list[str] = []
    refused = 0
    try:
        while len(accepted) < 300:
            text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14)))
            try:
                check_query(text, limits)
            except QueryError:
                refused += 1
                continue
            accepted.append(text)
            hook = [WebhookChannel(url="http://127.0.0.1:1/h")]
            store.validate(Subscription(name="p", owner="ann", query=text, channels=hook))  # QueryError if not
    finally:
        backend.client.indices.delete(index=store.index, ignore=[404])
        backend.close()
    print(f"\n{len(accepted)} accepted queries all valid in the engine ({refused} refused by the checker)")


def silent_server() -> tuple[threading.Event, int]:
    """A TCP server that accepts requests and never answers (an engine stuck in GC); set the event to stop."""
    done = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                held.append(conn)
        for conn in held:
            conn.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return done, int(server.getsockname()[1])


def newsflow_env(env: dict[str, str], *args: str) -> Any:
    """`newsflow ARGS` with `env` on top of the test's settings."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
