"""Request limits at the API's edge, ahead of routing, key checks and body parsing (plain ASGI middleware).

- `BodyLimit`: a body over `api.max_body_bytes` is a 413. A declared `Content-Length` is judged before a byte of
  the body is read; a body without one (chunked) is counted as it arrives and cut off at the limit.
- `RateLimit`: token buckets per client address (every request), per API key (requests with a valid key) and for
  wrong keys per address (each wrong key takes a token; once they are gone, every request carrying a key from
  that address is a 429 until they refill, so the answer says nothing about whether a key is right). A refused
  request is a 429 with `Retry-After`.

Both answer with the API's one-line `{"detail": ...}` and never touch the search engine.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.settings import ApiSettings

MAX_TRACKED = 10_000  # buckets remembered per kind; the least recently used are forgotten first


class TokenBuckets:
    """`rate` tokens per second up to `burst`, one bucket per key. A forgotten bucket starts full again, which
    only ever errs towards letting a request through; memory stays bounded whatever the keys are."""

    def __init__(
        self, rate: float, burst: int, max_keys: int = MAX_TRACKED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_keys, self.clock = rate, float(burst), max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def take(self, key: str) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is (nothing taken)."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
            else:
                self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until a token is there (0.0: one is), taking nothing."""
        with self._lock:
            if key not in self._buckets:
                return 0.0
            tokens = self._tokens(key, self.clock())
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


async def refuse(scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer without reading the request body; the connection is closed after it, so an unread body is not
    read afterwards either."""
    response = JSONResponse({"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"})
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class BodyLimit:
    """413 for a request body over `max_bytes`: by its Content-Length before reading, or while it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await refuse(scope, send, 400, "malformed Content-Length header")
                return
            if int(declared) > self.max_bytes:
                await refuse(scope, send, 413, self._too_large(f"{int(declared):,} bytes; "))
                return
        received = 0
        cut_off = answered = False

        async def counted() -> Message:
            nonlocal received, cut_off, answered
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The app sees a client that went away (it answers nothing more: see `guarded`), and the
                    # client gets the 413, unless the app had already started its answer.
                    cut_off = True
                    if not answered:
                        answered = True
                        await refuse(scope, send, 413, self._too_large(""))
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if cut_off:
                return
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        await self.app(scope, counted, guarded)

    def _too_large(self, declared: str) -> str:
        return f"request body too large ({declared}at most {self.max_bytes:,} bytes)"


class RateLimit:
    """429 + Retry-After once an address, an API key, or an address's wrong keys are over their rate."""

    def __init__(
        self,
        app: ASGIApp,
        api: ApiSettings,
        key_id: Callable[[str], str | None],
        header: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.key_id, self.header = app, key_id, header
        self.addresses = TokenBuckets(api.address_rate_per_s, api.address_burst, clock=clock)
        self.keys = TokenBuckets(api.key_rate_per_s, api.key_burst, clock=clock)
        self.bad_keys = TokenBuckets(api.bad_key_rate_per_s, api.bad_key_burst, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if wait := self.addresses.take(address):
            await _too_many(scope, send, "requests from this address", wait)
            return
        key = Headers(scope=scope).get(self.header)
        if key is not None:
            if wait := self.bad_keys.wait(address):
                await _too_many(scope, send, "wrong API keys from this address", wait)
                return
            who = self.key_id(key)
            if who is None:
                self.bad_keys.take(address)  # this one still gets its 401
            elif wait := self.keys.take(who):
                await _too_many(scope, send, "requests with this API key", wait)
                return
        await self.app(scope, receive, send)


async def _too_many(scope: Scope, send: Send, what: str, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    await refuse(scope, send, 429, f"too many {what}; retry in {seconds} s", {"Retry-After": str(seconds)})
