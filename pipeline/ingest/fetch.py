"""Fetching feeds over HTTP: one shared client whose connections go through the outbound policy to the address
it checked (`pipeline/ingest/safety.py`: pinned, so no DNS rebinding), conditional GET, redirects followed by hand
(each hop a new URL the policy sees), a size cap on the decoded body, and failures as one-line `FetchError`s
carrying a 429/503 Retry-After. The poller and `newsflow feed parse URL` (`fetch_feed`) both fetch
through here, so a feed is read the same way by both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from pipeline.errors import FeedError
from pipeline.ingest.safety import OutboundPolicy, OutboundRefused, pinned_transport
from pipeline.ingest.schedule import now_s, parse_retry_after
from pipeline.settings import PollerSettings, Settings

MAX_REDIRECTS = 5


class FetchError(FeedError):
    """A failed fetch that may carry the server's wish about when to come back (429/503 Retry-After)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass
class Response:
    status: int
    content: bytes
    final_url: str
    headers: httpx.Headers
    permanent_url: str | None = None  # where a chain of 301/308 from the start led (the feed has moved)


def http_client(cfg: PollerSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One client for all feeds: connection reuse per host; httpx sends Accept-Encoding gzip/deflate and
    decodes the body, so the size cap in `fetch` applies to the decompressed bytes (zip bombs stop there).
    `transport` is for tests (httpx.MockTransport); otherwise connections are pinned by the outbound policy."""
    headers = {
        "User-Agent": cfg.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    if transport is None:
        transport = pinned_transport(feed_policy(cfg), limits)
    return httpx.AsyncClient(
        timeout=cfg.timeout_s, headers=headers, follow_redirects=False, limits=limits, transport=transport
    )


def feed_policy(cfg: PollerSettings) -> OutboundPolicy:
    return OutboundPolicy.allowing(cfg.allow_private_hosts, "poller.allow_private_hosts")


async def fetch(
    client: httpx.AsyncClient, url: str, cfg: PollerSettings, validators: dict[str, str] | None = None
) -> Response:
    """GET with conditional headers, URL safety on every redirect hop, and a size cap.

    Redirects are followed by hand so each hop is checked (a public URL redirecting to 169.254.169.254 is
    the classic SSRF path) and so a chain of permanent ones (301/308) from the start can move the feed.
    `newsflow feed parse URL` uses it too (`fetch_feed`).
    """
    current = url
    policy = feed_policy(cfg)
    permanent: str | None = None
    chain_permanent = True
    try:
        for _ in range(MAX_REDIRECTS + 1):
            policy.check_syntax(current, "feed URL")  # the addresses are checked where they are connected to
            async with client.stream("GET", current, headers=validators) as resp:
                if resp.is_redirect and resp.headers.get("location"):
                    current = urljoin(current, resp.headers["location"])
                    chain_permanent = chain_permanent and resp.status_code in (301, 308)
                    permanent = current if chain_permanent else permanent
                    continue
                if resp.status_code == 304:
                    return Response(304, b"", current, resp.headers, permanent)
                if resp.status_code >= 400:
                    retry = parse_retry_after(resp.headers.get("retry-after"), now_s())
                    raise FetchError(
                        f"HTTP {resp.status_code} {resp.reason_phrase} from {current}"
                        + (f" (retry after {retry:.0f} s)" if retry is not None else ""),
                        status=resp.status_code,
                        retry_after=retry if resp.status_code in (429, 503) else None,
                    )
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cfg.max_bytes and not resp.headers.get("content-encoding"):
                    raise FetchError(f"response larger than poller.max_bytes ({cfg.max_bytes} bytes)")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > cfg.max_bytes:
                        raise FetchError(f"response larger than poller.max_bytes ({cfg.max_bytes} bytes)")
                return Response(resp.status_code, bytes(body), current, resp.headers, permanent)
    except OutboundRefused as exc:
        message = str(exc) if str(exc).startswith(("refusing", "invalid")) else f"refusing feed URL {current!r}: {exc}"
        raise FetchError(message) from None
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch {current}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")


def fetch_deadline_s(cfg: PollerSettings) -> float:
    """The most one feed fetch may take in all (`poller.timeout_s` bounds each read, so a server dripping a byte
    at a time would never trip it): the poller's and `newsflow feed parse URL`'s overall deadline."""
    return cfg.timeout_s * 2


def fetch_feed(url: str, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Response:
    """GET a feed exactly as the poller does (`fetch`: URL safety on every redirect hop, timeout, size cap, and
    the poller's overall deadline), without conditional headers; for `newsflow feed parse URL`. `transport` is
    for tests (httpx.MockTransport)."""
    deadline = fetch_deadline_s(settings.poller)

    async def get() -> Response:
        async with http_client(settings.poller, transport) as client:
            try:
                async with asyncio.timeout(deadline):
                    return await fetch(client, url, settings.poller)
            except TimeoutError:
                raise FetchError(f"timed out after {deadline:g} s fetching {url}") from None

    return asyncio.run(get())
