"""One search-backend interface, two implementations: Elasticsearch 8 and OpenSearch 2.

The two clients expose the same API shape for what newsflow needs, so the shared behaviour lives in
`SearchBackend`; a subclass only says how to build its client and which bulk helper to use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from pipeline.errors import StackError
from pipeline.search.templates import index_templates
from pipeline.settings import SearchSettings

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class BulkOutcome:
    """Per-item result of a bulk request, reduced to what the indexer decides on."""

    action: dict[str, Any]
    ok: bool
    status: int
    error: str | None = None

    @property
    def retryable(self) -> bool:
        return not self.ok and (self.status in RETRYABLE_STATUS or self.status == 0)

    @property
    def stale_version(self) -> bool:
        """A newer story snapshot is already indexed: the write is redundant, not failed."""
        return self.status == 409 and "version_type" in self.action


class SearchBackend:
    """Shared behaviour; subclasses set `kind`, `_make_client` and `_bulk_helper`."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.client: Any = self._make_client(settings)

    def _make_client(self, settings: SearchSettings) -> Any:
        raise NotImplementedError

    def _bulk_helper(self) -> Callable[..., Iterable[tuple[bool, dict[str, Any]]]]:
        raise NotImplementedError

    # --- setup ---------------------------------------------------------------------------------------------
    def ensure_templates(self) -> list[str]:
        """Install/upgrade index templates (idempotent) and create the indices; returns what changed."""
        changed: list[str] = []
        for name, body in index_templates(self.settings.indices).items():
            current = self.client.indices.get_index_template(name=name, ignore=[404]) or {}
            versions = [t["index_template"].get("version") for t in current.get("index_templates", [])]
            if body["version"] not in versions:
                self.client.indices.put_index_template(name=name, body=body)
                changed.append(f"template {name} v{body['version']}")
            if not self.client.indices.exists(index=name):
                self.client.indices.create(index=name, ignore=[400])
                changed.append(f"index {name}")
        return changed

    # --- writes --------------------------------------------------------------------------------------------
    def bulk(self, actions: list[dict[str, Any]]) -> list[BulkOutcome]:
        """Send actions; returns one outcome per action in order. Transport failures mark every item retryable."""
        helper = self._bulk_helper()
        by_key = {(a["_index"], a["_id"]): a for a in actions}
        outcomes: dict[tuple[str, str], BulkOutcome] = {}
        try:
            # The helper retries 429s itself and then yields those items late, so match results by key.
            for ok, item in helper(
                self.client,
                actions,
                chunk_size=self.settings.bulk_max_docs,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=2,
                initial_backoff=self.settings.retry_backoff_s,
                max_backoff=self.settings.retry_backoff_max_s,
            ):
                result = next(iter(item.values()))
                key = (result.get("_index", ""), str(result.get("_id", "")))
                action = by_key.get(key)
                if action is None:
                    continue
                status = int(result.get("status", 0) or 0)
                error = None if ok else _reason(result.get("error") or result.get("exception"))
                outcomes[key] = BulkOutcome(action, ok, status, error)
        except Exception as exc:  # connection refused, timeouts: the engine is down, everything left is retryable
            failure = f"{type(exc).__name__}: {exc}"
            return [outcomes.get(k) or BulkOutcome(a, False, 0, failure) for k, a in by_key.items()]
        missing = "no result for this item"
        return [outcomes.get(k) or BulkOutcome(a, False, 0, missing) for k, a in by_key.items()]

    def refresh(self) -> None:
        names = ",".join([self.settings.indices.articles, self.settings.indices.stories])
        self.client.indices.refresh(index=names, ignore_unavailable=True)

    # --- reads ---------------------------------------------------------------------------------------------
    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.search(index=index, body=body))

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        return int(self.client.count(index=index, body=body)["count"])

    def get_many(self, index: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        docs = self.client.mget(index=index, body={"ids": ids})["docs"]
        return {d["_id"]: d["_source"] for d in docs if d.get("found")}

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def close(self) -> None:
        self.client.close()


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        return f"{reason} (caused by {_reason(cause)})" if cause else reason
    return str(error)


class OpenSearchBackend(SearchBackend):
    kind = "opensearch"

    def _make_client(self, settings: SearchSettings) -> Any:
        from opensearchpy import OpenSearch

        auth = (settings.username, settings.password) if settings.username else None
        return OpenSearch(
            hosts=[settings.url],
            http_auth=auth,
            verify_certs=settings.verify_certs,
            timeout=settings.request_timeout_s,
        )

    def _bulk_helper(self) -> Callable[..., Iterable[tuple[bool, dict[str, Any]]]]:
        from opensearchpy.helpers import streaming_bulk

        return streaming_bulk  # type: ignore[no-any-return,unused-ignore]


class ElasticsearchBackend(SearchBackend):
    kind = "elasticsearch"

    def _make_client(self, settings: SearchSettings) -> Any:
        from elasticsearch import Elasticsearch

        auth = (settings.username, settings.password or "") if settings.username else None
        return Elasticsearch(
            settings.url,
            basic_auth=auth,
            verify_certs=settings.verify_certs,
            request_timeout=settings.request_timeout_s,
        )

    def _bulk_helper(self) -> Callable[..., Iterable[tuple[bool, dict[str, Any]]]]:
        from elasticsearch.helpers import streaming_bulk

        return streaming_bulk


BACKENDS: dict[str, type[SearchBackend]] = {"opensearch": OpenSearchBackend, "elasticsearch": ElasticsearchBackend}


def detect_kind(settings: SearchSettings) -> str:
    """Ask the server what it is: OpenSearch says so in `version.distribution`; Elasticsearch does not."""
    auth = (settings.username, settings.password or "") if settings.username else None
    try:
        info = httpx.get(settings.url, auth=auth, timeout=5.0, verify=settings.verify_certs).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise StackError(
            f"search engine not reachable at {settings.url} ({type(exc).__name__}); "
            "start it with `newsflow stack up` or set NEWSFLOW_SEARCH__URL"
        ) from None
    return "opensearch" if info.get("version", {}).get("distribution") == "opensearch" else "elasticsearch"


def connect(settings: SearchSettings) -> SearchBackend:
    """The configured backend, or the one the server says it is (`backend: auto`)."""
    kind = detect_kind(settings) if settings.backend == "auto" else settings.backend
    return BACKENDS[kind](settings)


def describe_unreachable(exc: BaseException) -> str | None:
    """One line for a search-client connection failure (either client's types), else None: an HTTP error
    answer (404, 400, 401...) means the engine IS reachable and must be reported as what it is."""
    from elastic_transport import ConnectionError as EsConnectionError
    from elastic_transport import ConnectionTimeout as EsConnectionTimeout
    from opensearchpy.exceptions import ConnectionError as OsConnectionError

    if not isinstance(exc, EsConnectionError | EsConnectionTimeout | OsConnectionError):
        return None
    return f"search engine not reachable ({type(exc).__name__}); is it running? try `newsflow stack status`"
