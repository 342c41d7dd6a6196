"""The subscriptions REST API (`newsflow api`): the CLI's store and validation, scoped by API key.

An API key stands for its owner; every route reads and writes only that owner's subscriptions, and another
owner's id answers 404 exactly like a missing one, so ids cannot be probed. Only SHA-256 hashes of keys are
configured (`api.keys`), so the config never holds a usable secret. The OpenAPI document is `/openapi.json`
(browsable at `/docs`).

At the edge (`limits.py`), before routing, key check or body parsing: a body over `api.max_body_bytes` is a 413,
too many requests per address, per key or wrong keys per address are a 429 with Retry-After. A subscription's
query, name and filters are checked (`check_subscription`: the safe query subset, `search.query_limits`) before
the store is touched. The engine's own answers are told apart (`engine_failure`): a refused query is a 422, a
timeout a 504, and only a failed connection is a 503 "not reachable".

No `from __future__ import annotations` here: FastAPI reads the routes' annotations at runtime, and the
dependency aliases are local to `create_app`.
"""

import hashlib
import logging
import secrets
import threading
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from pipeline import __version__
from pipeline.alerts.models import Subscription, SubscriptionSpec
from pipeline.alerts.store import SubscriptionStore, check_channels, check_subscription
from pipeline.api.limits import BodyLimit, RateLimit
from pipeline.errors import ConflictError, NewsflowError, QueryError, StackError
from pipeline.ingest.safety import OutboundRefused
from pipeline.search import connect
from pipeline.search.queries import engine_failure, parse_since
from pipeline.settings import AlertSettings, ApiKey, Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
KEY_BYTES = 32


class StoryMatch(BaseModel):
    """A recent story that the subscription would have matched."""

    story_id: str
    title: str


def hash_key(key: str) -> str:
    """What `api.keys` holds for a key: its hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(KEY_BYTES)


class KeyRing:
    """Key hash -> owner. Looking up the hash of a high-entropy key leaks nothing useful through timing."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._owners = {k.sha256: k.owner for k in keys}

    def owner(self, key: str | None) -> str | None:
        return self._owners.get(hash_key(key)) if key else None

    def key_id(self, key: str) -> str | None:
        """The configured hash of a valid key (what its rate limit is kept under), else None."""
        hashed = hash_key(key)
        return hashed if key and hashed in self._owners else None


class LazyStore:
    """Connects on first use, so the API starts (and answers 401/422) while the search engine is still down.
    Every engine call waits at most `api.engine_timeout_s` (then 504)."""

    def __init__(self, settings: Settings, alerts: AlertSettings) -> None:
        self.search = settings.search.model_copy(update={"request_timeout_s": settings.api.engine_timeout_s})
        self.alerts = alerts
        self._store: SubscriptionStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> SubscriptionStore:
        with self._lock:
            if self._store is None:
                self._store = SubscriptionStore(connect(self.search), self.alerts)
            return self._store


def create_app(settings: Settings) -> FastAPI:
    """The API for these settings (a factory, so tests and `newsflow api` build the same thing)."""
    alerts = settings.alerts
    limits = settings.search.query_limits
    keys = KeyRing(settings.api.keys)
    store_of = LazyStore(settings, alerts)
    api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="an API key from `api.keys`")
    app = FastAPI(
        title="newsflow subscriptions",
        version=__version__,
        description="Alert subscriptions: tell a person once per story. Every route needs an `X-API-Key`.",
    )
    # The last added runs first: rate limits, then the body limit, then routing (and only then key checks).
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(RateLimit, api=settings.api, key_id=keys.key_id, header=API_KEY_HEADER)

    def owner(key: Annotated[str | None, Security(api_key)]) -> str:
        found = keys.owner(key)
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"missing or invalid API key (send it in the {API_KEY_HEADER} header)",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        return found

    # The store is reached inside the routes, not as a dependency: FastAPI resolves dependencies before it
    # validates the body, and a malformed request must be a 422 even while the search engine is down.
    Owner = Annotated[str, Depends(owner)]

    def own(sub_id: str, who: str) -> Subscription:
        found = store_of().get(sub_id, who)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscription {sub_id}")
        return found

    @app.exception_handler(QueryError)
    def _invalid(request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)

    @app.exception_handler(OutboundRefused)
    def _refused(request: Request, exc: OutboundRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)

    @app.exception_handler(ConflictError)
    def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(NewsflowError)
    def _newsflow(request: Request, exc: NewsflowError) -> JSONResponse:
        code = status.HTTP_503_SERVICE_UNAVAILABLE if isinstance(exc, StackError) else status.HTTP_400_BAD_REQUEST
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if failure := engine_failure(exc):  # refused 422, timeout 504, busy/unreachable 503, engine error 502
            log.warning("%s %s: %s", request.method, request.url.path, failure.detail)
            return JSONResponse({"detail": failure.detail}, status_code=failure.status)
        log.exception("%s %s failed", request.method, request.url.path)
        detail = f"internal error: {type(exc).__name__} (details in the API's log)"
        return JSONResponse({"detail": detail}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)

    @app.post("/subscriptions", status_code=status.HTTP_201_CREATED, response_model=Subscription)
    def create(spec: SubscriptionSpec, who: Owner) -> Subscription:
        """Subscribe; a query outside the safe subset or the limits (see the README), one the search engine cannot
        parse, or a webhook the outbound policy refuses (loopback, private or metadata addresses unless allow-listed
        in `alerts.allow_private_hosts`), is refused (422) and nothing is stored."""
        check_subscription(spec, limits)  # before the store: refused even while it is down, and never sent to it
        check_channels(spec.channels, settings.alerts)
        return store_of().add(Subscription(**spec.model_dump(), owner=who))

    @app.get("/subscriptions", response_model=list[Subscription])
    def list_(who: Owner) -> list[Subscription]:
        """Your subscriptions, oldest first."""
        return store_of().list(who)

    @app.get("/subscriptions/{sub_id}", response_model=Subscription)
    def get(sub_id: str, who: Owner) -> Subscription:
        return own(sub_id, who)

    @app.put("/subscriptions/{sub_id}", response_model=Subscription)
    def replace(sub_id: str, spec: SubscriptionSpec, who: Owner) -> Subscription:
        """Replace a subscription's spec (id, owner and creation time stay); validated like a new one."""
        check_subscription(spec, limits)
        check_channels(spec.channels, settings.alerts)
        saved = store_of().replace(sub_id, who, spec)
        if saved is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscription {sub_id}")
        return saved

    @app.delete("/subscriptions/{sub_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete(sub_id: str, who: Owner) -> None:
        if not store_of().delete(sub_id, who):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscription {sub_id}")

    @app.get("/subscriptions/{sub_id}/test", response_model=list[StoryMatch])
    def test(
        sub_id: str,
        who: Owner,
        since: Annotated[str, Query(description="how far back, e.g. 24h, 7d (as `newsflow search --since`)")] = "7d",
    ) -> list[StoryMatch]:
        """Recent stories this subscription would have matched (newest first)."""
        look_back = parse_since(since, "since")  # a malformed value is a QueryError: 422 with the reason
        sub = own(sub_id, who)
        found = store_of().recent_matches(sub, settings.search.indices.articles, look_back, alerts.test_stories)
        return [StoryMatch(story_id=story_id, title=title) for story_id, title in found]

    return app


def serve(settings: Settings) -> int:
    """`newsflow api`: serve until Ctrl-C/SIGTERM (uvicorn handles both)."""
    import uvicorn

    if not settings.api.keys:
        log.warning("no API keys configured (api.keys): every request will be refused; see `newsflow api key`")
    api = settings.api
    uvicorn.run(
        create_app(settings),
        host=api.host,
        port=api.port,
        log_level="info",
        # The client address (rate limits) comes from X-Forwarded-For only when the peer is a trusted proxy;
        # uvicorn's default would trust any local peer, so a local client could pick its own address.
        proxy_headers=bool(api.trusted_proxies),
        forwarded_allow_ips=",".join(api.trusted_proxies) or None,
    )
    return 0
