"""One search-backend interface, two implementations: Elasticsearch 8 and OpenSearch 2.

The two clients expose the same API shape for what newsflow needs, so the shared behaviour lives in
`SearchBackend`; a subclass only says how to build its client and how to post a bulk body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from pipeline.errors import StackError
from pipeline.search.encoding import OpenSearchOrjsonSerializer, encode_bulk
from pipeline.search.templates import (
    article_index,
    article_index_pattern,
    article_mappings,
    field_paths,
    index_templates,
    mapping_changes,
)
from pipeline.settings import SearchSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# All the indexer reads from a bulk answer: items are matched by position, so their ids are not needed, and a
# smaller answer is read and decoded sooner (every item keeps its `status`, so positions are preserved).
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"
_IDS_PER_QUERY = 1000


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
    """Shared behaviour; subclasses set `kind`, `_make_client` and `_send_bulk`."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.client: Any = self._make_client(settings)

    def _make_client(self, settings: SearchSettings) -> Any:
        raise NotImplementedError

    # --- setup ---------------------------------------------------------------------------------------------
    def ensure_templates(self) -> list[str]:
        """Install/upgrade templates and bring existing indices up to date, idempotently; returns what changed.

        A new TEMPLATE_VERSION is put as a template (new monthly indices get it) and its compatible mapping
        additions are put on every existing index, so old documents stay where they are and stay searchable.
        """
        idx = self.settings.indices
        changed = self._migrate_unpartitioned_articles()
        for name, body in index_templates(idx).items():
            current = self.client.indices.get_index_template(name=name, ignore=[404]) or {}
            versions = [t["index_template"].get("version") for t in current.get("index_templates", [])]
            if body["version"] not in versions:
                self.client.indices.put_index_template(name=name, body=body)
                changed.append(f"template {name} v{body['version']}")
            changed.extend(self._update_existing_mappings(body))
        if not self.client.indices.exists(index=idx.stories):
            self.client.indices.create(index=idx.stories, ignore=[400])
            changed.append(f"index {idx.stories}")
        if not self.client.indices.exists_alias(name=idx.articles):
            # The alias must resolve before the first article arrives (searches, counts, Kibana index patterns).
            first = article_index(idx, datetime.now(UTC))
            self.client.indices.create(index=first, ignore=[400])
            changed.append(f"index {first} (alias {idx.articles})")
        changed.extend(self._attach_alias())
        return changed

    def _update_existing_mappings(self, template: dict[str, Any]) -> list[str]:
        """Put the template's new fields on indices created from an older template version."""
        wanted = template["template"]["mappings"]["properties"]
        live = self.client.indices.get_mapping(index=",".join(template["index_patterns"]), ignore=[404]) or {}
        changed: list[str] = []
        for index, body in sorted(live.items()):
            if not isinstance(body, dict) or "mappings" not in body:
                continue
            have = body["mappings"].get("properties", {})
            additions, conflicts = mapping_changes(have, wanted)
            for conflict in conflicts:
                log.warning("index %s: %s needs a reindex; left as it is", index, conflict)
            if additions:
                self.client.indices.put_mapping(index=index, body={"properties": additions})
                added = sorted(set(field_paths(additions)) - set(field_paths(have)))
                changed.append(f"mapping {index}: +{', +'.join(added)}")
                changed.append(self._backfill(index))
        return changed

    def _backfill(self, index: str) -> str:
        """Make new fields searchable on old documents: their values are already in `_source` (unmapped
        fields are kept there), an in-place update-by-query indexes them. It runs as a background task;
        `conflicts=proceed` skips documents the indexer rewrites meanwhile (those get the new mapping anyway)."""
        self.client.indices.refresh(index=index)  # documents written just before are included too
        task = self.client.update_by_query(
            index=index, conflicts="proceed", wait_for_completion=False, refresh=True
        )
        return f"backfill {index}: task {task.get('task')}"

    def _attach_alias(self) -> list[str]:
        """Monthly indices made before the alias existed in the template get it too (the template only acts
        on index creation)."""
        idx = self.settings.indices
        pattern = article_index_pattern(idx)
        indices = self.client.indices.get(index=pattern, ignore=[404]) or {}
        missing = sorted(n for n, body in indices.items() if idx.articles not in (body.get("aliases") or {}))
        if not missing:
            return []
        actions = [{"add": {"index": n, "alias": idx.articles}} for n in missing]
        self.client.indices.update_aliases(body={"actions": actions})
        return [f"alias {idx.articles} -> {n}" for n in missing]

    def _migrate_unpartitioned_articles(self) -> list[str]:
        """Move a pre-partitioning concrete `newsflow-articles` index into monthly indices, without a moment
        where a document exists nowhere.

        The alias cannot be created while an index of that name exists, so: copy it to a holding index (not
        matched by any template), delete the original, then reindex the holding copy into the monthly indices
        (the template creates them with the alias) and delete the holding copy once every document is there.
        Each step is resumable: a crash leaves either the original or the holding copy in place.
        """
        idx = self.settings.indices
        holding = f"{idx.articles}.premigration"
        changed: list[str] = []
        is_concrete = self.client.indices.exists(index=idx.articles) and not self.client.indices.exists_alias(
            name=idx.articles
        )
        if is_concrete:
            if not self.client.indices.exists(index=holding):
                self.client.indices.create(index=holding, body={"mappings": article_mappings()})
            self._reindex(idx.articles, holding, script=None)
            self.client.indices.delete(index=idx.articles)
            changed.append(f"index {idx.articles} -> {holding}")
        if not self.client.indices.exists(index=holding):
            return changed
        # Install the current template first, so the monthly indices are created with the alias.
        templates = index_templates(idx)
        self.client.indices.put_index_template(name=idx.articles, body=templates[idx.articles])
        script = {
            "lang": "painless",
            "source": "ctx._index = params.prefix + ctx._source['@timestamp'].substring(0, 7).replace('-', '.')",
            "params": {"prefix": f"{idx.articles}-"},
        }
        moved = self._reindex(holding, idx.articles, script=script)
        self.client.indices.refresh(index=holding)
        expected = self.count(holding)
        # No alias means the reindex created no monthly index: nothing was moved.
        has_alias = bool(expected) and self.client.indices.exists_alias(name=idx.articles)
        if has_alias:
            self.client.indices.refresh(index=idx.articles)
        if expected and (not has_alias or self.count(idx.articles, {"match_all": {}}) < expected):
            raise StackError(f"migration of {idx.articles}: fewer documents in the monthly indices than in {holding}")
        self.client.indices.delete(index=holding)
        changed.append(f"{moved} article(s) {holding} -> {article_index_pattern(idx)}")
        return changed

    def _reindex(self, source: str, dest: str, script: dict[str, Any] | None) -> int:
        """Server-side copy, waiting for the result; returns how many documents were written."""
        body: dict[str, Any] = {"source": {"index": source}, "dest": {"index": dest}}
        if script is not None:
            body["script"] = script
        result = self.client.reindex(body=body, wait_for_completion=True, refresh=True, request_timeout=3600)
        if result.get("failures"):
            raise StackError(f"reindex {source} -> {dest} failed: {_reason(result['failures'][0])}")
        return int(result.get("created", 0)) + int(result.get("updated", 0))

    # --- writes --------------------------------------------------------------------------------------------
    def bulk(self, actions: list[dict[str, Any]], encoded: Sequence[bytes] | None = None) -> list[BulkOutcome]:
        """Send the actions in one bulk request; returns one outcome per action, in order. `encoded`, when
        given, holds each action already encoded (`encoding.encode_action`), so the caller can do that work
        away from the thread that waits on the engine.

        The request body is built here with orjson rather than through the client's bulk helper: the helper
        re-encodes every line through the client's serializer, chunks, and retries 429s on its own schedule,
        while the indexer sizes its batches and retries failed items itself. The engine answers items in
        request order, so outcomes are matched by position (a duplicate id in one batch stays two items).
        A transport failure, or an HTTP error for the whole request, gives every item that status (0 when
        there is none, e.g. connection refused or a timeout: retryable).
        """
        if not actions:
            return []
        if encoded is not None and len(encoded) != len(actions):
            raise ValueError(f"{len(encoded)} encoded actions for {len(actions)} actions")
        try:
            body = b"".join(encoded) if encoded is not None else encode_bulk(actions)
            response = self._send_bulk(body)
        except Exception as exc:  # engine down, timeout, whole-request HTTP error
            status, failure = _request_failure(exc)
            return [BulkOutcome(a, False, status, failure) for a in actions]
        items = response.get("items") or []
        outcomes: list[BulkOutcome] = []
        for i, action in enumerate(actions):
            if i >= len(items):
                outcomes.append(BulkOutcome(action, False, 0, "no result for this item"))
                continue
            result = next(iter(items[i].values()))
            status = _status(result.get("status"))
            error = result.get("error")
            ok = error is None and 200 <= status < 300
            outcomes.append(BulkOutcome(action, ok, status, None if ok else _reason(error or f"status {status}")))
        return outcomes

    def _send_bulk(self, body: bytes) -> dict[str, Any]:
        """POST an NDJSON body to `_bulk`; the two clients name the body parameter differently."""
        raise NotImplementedError

    def refresh(self) -> None:
        names = ",".join([self.settings.indices.articles, self.settings.indices.stories])
        self.client.indices.refresh(index=names, ignore_unavailable=True)

    # --- reads ---------------------------------------------------------------------------------------------
    # `index` may be the articles alias (every monthly index) or a single index; all reads work on both.
    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.search(index=index, body=body, ignore_unavailable=True))

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        return int(self.client.count(index=index, body=body, ignore_unavailable=True)["count"])

    def get_many(self, index: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Documents by id. mget refuses an alias over several indices, so the articles alias is read with an
        `ids` query (near-real-time: call `refresh` first for documents written in the last second)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        if index != self.settings.indices.articles:
            docs = self.client.mget(index=index, body={"ids": ids})["docs"]
            return {d["_id"]: d["_source"] for d in docs if d.get("found")}
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            hits = self.search(index, {"size": len(chunk), "query": {"ids": {"values": chunk}}})["hits"]["hits"]
            found.update((h["_id"], h["_source"]) for h in hits)
        return found

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def close(self) -> None:
        self.client.close()


def _status(value: Any) -> int:
    """HTTP status of a bulk item; a transport failure has none ("N/A" in opensearch-py): 0, i.e. retryable."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _request_failure(exc: BaseException) -> tuple[int, str]:
    """Status and message for a bulk request that failed as a whole. Both clients put the HTTP status of an
    error answer in `status_code` (opensearch-py says "N/A" and elasticsearch-py has none for transport
    failures): no HTTP status means 0, i.e. retryable."""
    status = _status(getattr(exc, "status_code", None))
    return status, f"{type(exc).__name__}: {exc}"


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
            serializer=OpenSearchOrjsonSerializer(),
            pool_maxsize=settings.connections,
        )

    def _send_bulk(self, body: bytes) -> dict[str, Any]:
        return dict(self.client.bulk(body=body, filter_path=BULK_FILTER_PATH))


class ElasticsearchBackend(SearchBackend):
    kind = "elasticsearch"

    def _make_client(self, settings: SearchSettings) -> Any:
        from elasticsearch import Elasticsearch
        from elasticsearch.serializer import OrjsonSerializer

        auth = (settings.username, settings.password or "") if settings.username else None
        return Elasticsearch(
            settings.url,
            basic_auth=auth,
            verify_certs=settings.verify_certs,
            request_timeout=settings.request_timeout_s,
            serializer=OrjsonSerializer(),
            connections_per_node=settings.connections,
        )

    def _send_bulk(self, body: bytes) -> dict[str, Any]:
        return dict(self.client.bulk(operations=body, filter_path=BULK_FILTER_PATH).body)


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
