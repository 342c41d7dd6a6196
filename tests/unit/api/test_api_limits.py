"""Limits at the API's edge without a real search engine: body size (413), rate limits (429 + Retry-After),
hostile queries refused before the store is touched (422, never the 503 the store would give here), and what
the engine's failures become (422 / 504 / 503 / 502), against small fake engines on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import elastic_transport
import elasticsearch
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opensearchpy import exceptions as os_exc
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError

from pipeline.api.alerts import API_KEY_HEADER, create_app, hash_key
from pipeline.api.limits import BodyLimit, TokenBuckets
from pipeline.search.queries import engine_failure, engine_reason
from pipeline.settings import ApiKey, ApiSettings, SearchSettings, Settings

KEY = "ann-secret-key"
HOOK = [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}]
TOO_MANY_CLAUSES = {
    "error": {
        "root_cause": [{"type": "query_shard_exception", "reason": "Failed to parse query [" + "w OR " * 2000 + "]"}],
        "type": "search_phase_execution_exception",
        "reason": "all shards failed",
        "failed_shards": [
            {
                "shard": 0,
                "reason": {
                    "type": "query_shard_exception",
                    "reason": "Failed to parse query [" + "w OR " * 2000 + "]",
                    "caused_by": {
                        "type": "parse_exception",
                        "reason": "Cannot parse '" + "w OR " * 2000 + "'",
                        "caused_by": {"type": "too_many_clauses", "reason": "maxClauseCount is set to 1024"},
                    },
                },
            }
        ],
    },
    "status": 400,
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_for(url: str, **api: Any) -> Settings:
    return Settings(
        search=SearchSettings(url=url, backend="opensearch"),
        api=ApiSettings(keys=[ApiKey(owner="ann", sha256=hash_key(KEY))], **api),
    )


def client_for(settings: Settings, address: str = "testclient", app: FastAPI | None = None) -> TestClient:
    """A client of `app` (default: a new app for `settings`) calling from `address`."""
    app = app or create_app(settings)
    return TestClient(app, raise_server_exceptions=False, client=(address, 50000))


@pytest.fixture
def down() -> Settings:
    """Settings whose search engine is nowhere: anything reaching the store answers 503."""
    return settings_for(f"http://127.0.0.1:{closed_port()}")


# --- token buckets ------------------------------------------------------------------------------------------


def test_token_buckets_refill_at_their_rate_and_stay_bounded() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5) and buckets.wait("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.wait("a") == 0.0 and buckets.take("a") == 0.0 and buckets.take("a") > 0
    assert buckets.take("b") == 0.0 and buckets.wait("never-seen") == 0.0
    buckets.take("c")  # a third key: the least recently used ("a") is forgotten, so starts full again
    assert set(buckets._buckets) == {"b", "c"} and buckets.take("a") == 0.0


# --- body size ----------------------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_a_413_before_the_key_check_and_unread(down: Settings) -> None:
    with client_for(down) as http:
        for headers in ({}, {API_KEY_HEADER: "wrong"}, {API_KEY_HEADER: KEY}):
            answer = http.post("/subscriptions", headers=headers, content=b"x" * 70_000)
            assert answer.status_code == 413, answer.text
            assert answer.json()["detail"] == "request body too large (70,000 bytes; at most 65,536 bytes)"
            assert answer.headers["connection"] == "close"
        fine = http.post("/subscriptions", headers={API_KEY_HEADER: KEY}, json={"name": "x"})
        assert fine.status_code == 422 and fine.json()["detail"][0]["loc"] == ["body", "channels"]  # read, parsed


def test_a_streamed_body_is_counted_and_cut_off_at_the_limit(down: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"y" * 10_000

    with client_for(down) as http:
        answer = http.post("/subscriptions", headers={API_KEY_HEADER: KEY}, content=chunks())
        assert answer.status_code == 413 and answer.json()["detail"].startswith("request body too large (at most")


def test_body_limit_stops_reading_and_drops_the_apps_own_answer() -> None:
    """Plain ASGI: the app reads chunk by chunk; past the limit it sees a disconnect, the client the 413."""
    read: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            read.append(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"the app's answer"})

    incoming = [{"type": "http.request", "body": b"z" * 600, "more_body": True} for _ in range(10)]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodyLimit(app, max_bytes=1024)(scope, receive, send))
    assert len(read) == 1 and len(incoming) == 8  # the second chunk crossed the limit; nothing after it was read
    assert sent[0]["status"] == 413 and b"the app's answer" not in b"".join(m.get("body", b"") for m in sent)


# --- rate limits --------------------------------------------------------------------------------------------


def test_wrong_keys_are_limited_per_address_and_then_every_key_from_it_is_refused(down: Settings) -> None:
    settings = down.model_copy(update={"api": down.api.model_copy(update={"bad_key_burst": 3})})
    app = create_app(settings)
    with client_for(settings, "10.0.0.1", app) as attacker, client_for(settings, "10.0.0.2", app) as other:
        codes = [attacker.get("/subscriptions", headers={API_KEY_HEADER: f"guess-{i}"}).status_code for i in range(8)]
        assert codes == [401, 401, 401, 429, 429, 429, 429, 429]
        refused = attacker.get("/subscriptions", headers={API_KEY_HEADER: KEY})  # right key, same address
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"].startswith("too many wrong API keys from this address; retry in")
        assert attacker.get("/openapi.json").status_code == 200  # keyless requests only count per address
        # Another address of the same app is not affected.
        assert other.get("/subscriptions/x/test?since=bad", headers={API_KEY_HEADER: KEY}).status_code == 422


def test_a_key_is_limited_on_its_own(down: Settings) -> None:
    settings = down.model_copy(update={"api": down.api.model_copy(update={"key_burst": 2, "key_rate_per_s": 0.5})})
    app = create_app(settings)
    with client_for(settings, "10.0.0.1", app) as one, client_for(settings, "10.0.0.2", app) as two:
        assert one.get("/subscriptions/x/test?since=bad", headers={API_KEY_HEADER: KEY}).status_code == 422
        assert two.get("/subscriptions/x/test?since=bad", headers={API_KEY_HEADER: KEY}).status_code == 422
        third = one.get("/subscriptions/x/test?since=bad", headers={API_KEY_HEADER: KEY})
        assert third.status_code == 429 and third.headers["retry-after"] == "2"
        assert third.json()["detail"] == "too many requests with this API key; retry in 2 s"


def test_an_address_is_limited_on_every_request(down: Settings) -> None:
    slow = {"address_burst": 3, "address_rate_per_s": 0.01}
    settings = down.model_copy(update={"api": down.api.model_copy(update=slow)})
    with client_for(settings) as http:
        codes = [http.get("/openapi.json").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]


# --- hostile queries: refused before the store ---------------------------------------------------------------

HOSTILE = [
    "/(a+)+(b+)+(c+)+(d+)+(e+)+$/",
    "*a*b*c*",
    "korea~2",
    "_id:*",
    "owner:bob",
    "(" * 5000 + "a" + ")" * 5000,
    " ".join(f"term{i}" for i in range(2000)),
]


@pytest.mark.parametrize("query", HOSTILE, ids=["regex", "wildcards", "fuzzy", "_id", "owner", "nested", "terms"])
def test_hostile_queries_are_422_before_the_store_is_touched(down: Settings, query: str) -> None:
    with client_for(down) as http:
        for method, path in (("POST", "/subscriptions"), ("PUT", "/subscriptions/x")):
            answer = http.request(
                method, path, headers={API_KEY_HEADER: KEY}, json={"name": "x", "query": query, "channels": HOOK}
            )
            assert answer.status_code == 422, answer.text  # the store would have said 503
            detail = answer.json()["detail"]
            assert detail.startswith("invalid subscription query ") and len(detail) < 300 and "\n" not in detail


# --- the engine's failures ----------------------------------------------------------------------------------


class FakeEngine(BaseHTTPRequestHandler):
    """Answers HEAD with 200 (the index exists) and everything else with the server's `answer`."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, body = self.server.answer  # type: ignore[attr-defined]
        if status is None:  # hang: never answer
            time.sleep(5)
            return
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEngine)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        ((400, TOO_MANY_CLAUSES), 422, "the search engine refused the query: too_many_clauses: maxClauseCount is set"),
        ((429, {"error": {"type": "circuit_breaking_exception", "reason": "[parent] Data too large"}}), 503, "busy"),
        ((500, {"error": {"type": "null_pointer_exception", "reason": "boom"}}), 502, "failed (500)"),
        ((None, None), 504, "the search engine did not answer in time"),
    ],
    ids=["rejected", "busy", "error", "timeout"],
)
def test_engine_failures_are_told_apart(
    engine: ThreadingHTTPServer, answer: tuple[int | None, Any], status: int, detail: str
) -> None:
    engine.answer = answer  # type: ignore[attr-defined]
    settings = settings_for(f"http://127.0.0.1:{engine.server_address[1]}", engine_timeout_s=0.5)
    with client_for(settings) as http:
        started = time.monotonic()
        response = http.get("/subscriptions", headers={API_KEY_HEADER: KEY})
        assert time.monotonic() - started < 4
    assert response.status_code == status, response.text
    text = response.json()["detail"]
    assert detail in text and "is it running" not in text and "\n" not in text and len(text) < 300


def test_only_a_failed_connection_is_not_reachable(down: Settings) -> None:
    with client_for(down) as http:
        response = http.get("/subscriptions", headers={API_KEY_HEADER: KEY})
    assert response.status_code == 503 and "not reachable" in response.json()["detail"]


def es_error(cls: type[elasticsearch.ApiError], status: int, body: dict[str, Any]) -> elasticsearch.ApiError:
    meta = elastic_transport.ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=elastic_transport.HttpHeaders(),
        duration=0.0,
        node=None,  # type: ignore[arg-type]
    )
    return cls("error", meta, body)


def test_engine_failure_reads_both_clients() -> None:
    read_timeout = ReadTimeoutError(None, "/", "Read timed out. (read timeout=10)")  # type: ignore[arg-type]
    cases = [
        (os_exc.ConnectionTimeout("TIMEOUT", "Read timed out", read_timeout), 504),
        (os_exc.ConnectionError("N/A", "Connection refused", None), 503),
        (os_exc.RequestError(400, "search_phase_execution_exception", TOO_MANY_CLAUSES), 422),
        (elastic_transport.ConnectionTimeout("timed out", errors=(read_timeout,)), 504),
        (elastic_transport.ConnectionTimeout("timed out", errors=(ConnectTimeoutError(),)), 503),
        (elastic_transport.ConnectionError("refused"), 503),
        (es_error(elasticsearch.BadRequestError, 400, TOO_MANY_CLAUSES), 422),
        (es_error(elasticsearch.ApiError, 503, {"error": {"type": "x", "reason": "y"}}), 502),
    ]
    for exc, status in cases:
        failure = engine_failure(exc)
        assert failure is not None and failure.status == status, (exc, failure)
    assert engine_failure(ValueError("x")) is None
    assert engine_failure(os_exc.NotFoundError(404, "index_not_found_exception", {})) is None
    reason = engine_reason(os_exc.RequestError(400, "search_phase_execution_exception", TOO_MANY_CLAUSES))
    assert reason == "too_many_clauses: maxClauseCount is set to 1024"
