"""Subscriptions as percolator queries: one percolate request matches a story against every subscription.

Each subscription is one document in the subscriptions index: its query compiled into a `percolator` field plus
the subscription itself (unindexed, in `spec`). The index maps the article/story fields the queries use exactly
as the articles index does (English analysis for text, keywords for entities/source/language), so a query means
the same thing here as in `newsflow search`.
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from pipeline.alerts.models import Alert, Channel, Subscription, SubscriptionSpec, WebhookChannel
from pipeline.alerts.topics import check_kafka_channels
from pipeline.errors import ConflictError, QueryError
from pipeline.ingest.safety import OutboundPolicy
from pipeline.models import EnrichedArticle
from pipeline.search.backend import SearchBackend
from pipeline.search.documents import entity_fields
from pipeline.search.query_text import CheckedQuery, check_query, check_values, query_string_clause, shown
from pipeline.search.templates import ENTITY_FIELDS, article_mappings
from pipeline.settings import AlertSettings, QueryLimits

TEXT_FIELDS = ("title", "summary", "text")
MAX_MATCHES = 10_000  # subscriptions returned by one percolate request


def subscriptions_mappings() -> dict[str, Any]:
    """The percolator field plus the queried fields, analysed like the articles index."""
    articles = article_mappings()["properties"]
    return {
        "dynamic": False,
        "properties": {
            "query": {"type": "percolator"},
            **{f: articles[f] for f in (*TEXT_FIELDS, "source", "language")},
            "entities": ENTITY_FIELDS,
            "owner": {"type": "keyword"},
            "name": {"type": "keyword"},
            "frequency": {"type": "keyword"},
            "created_at": {"type": "date"},
            "spec": {"type": "object", "enabled": False},
        },
    }


def check_subscription(spec: SubscriptionSpec, limits: QueryLimits) -> CheckedQuery:
    """At the door (API, CLI, the store): the query in the safe subset (`pipeline/search/query_text.py`) and the
    name and filters within `search.query_limits`, before anything reaches the search engine."""
    checked = check_query(spec.query, limits, "subscription query")
    check_values([spec.name], limits, "subscription name")
    check_values([name for _, name in spec.entities.items()], limits, "entity names")
    check_values(spec.sources, limits, "sources")
    check_values(spec.languages, limits, "languages")
    return checked


def compile_query(sub: Subscription, limits: QueryLimits | None = None) -> dict[str, Any]:
    """The subscription as one bool query: text in `must`, filters in `filter` (no scoring needed). The text
    goes to the engine as the query string rendered from its checked parse tree, never as typed."""
    checked = check_subscription(sub, limits or QueryLimits())
    must: list[dict[str, Any]] = [query_string_clause(checked, TEXT_FIELDS)] if checked else []
    filters: list[dict[str, Any]] = [{"term": {f"entities.{f}": name}} for f, name in sub.entities.items()]
    if sub.sources:
        filters.append({"terms": {"source": sub.sources}})
    if sub.languages:
        filters.append({"terms": {"language": sub.languages}})
    if not must and not filters:
        must.append({"match_all": {}})
    return {"bool": {"must": must, "filter": filters}}


def story_document(article: EnrichedArticle) -> dict[str, Any]:
    """What is percolated: the article's text, plus the story's sources and entities (so a source or entity
    filter sees the whole story, not only the report that just arrived)."""
    story = article.story
    sources = list(dict.fromkeys([*(story.sources if story else []), article.source]))
    entities = list(article.entities) + (list(story.entities) if story else [])
    return {
        "title": article.title or (story.title if story else ""),
        "summary": article.summary,
        "text": article.text,
        "source": sources,
        "language": article.language,
        "entities": entity_fields(entities),
    }


def webhook_policy(alerts: AlertSettings) -> OutboundPolicy:
    return OutboundPolicy.allowing(alerts.allow_private_hosts, "alerts.allow_private_hosts")


def check_channels(channels: list[Channel], alerts: AlertSettings) -> None:
    """At the door (API, CLI): refuse a webhook the outbound policy would refuse, before anything is stored."""
    policy = webhook_policy(alerts)
    for channel in channels:
        if isinstance(channel, WebhookChannel):
            policy.check_url(channel.url, "webhook URL")
    check_kafka_channels(channels, alerts)  # Kafka topics: the operator's allow-list only (alerts/topics.py)


class SubscriptionStore:
    """Subscriptions of every owner in one index; reads and deletes are scoped to an owner."""

    def __init__(self, backend: SearchBackend, alerts: AlertSettings) -> None:
        self.backend = backend
        self.client: Any = backend.client
        self.index = alerts.subscriptions_index
        search = getattr(backend, "settings", None)
        self.limits: QueryLimits = getattr(search, "query_limits", None) or QueryLimits()

    def ensure_index(self) -> None:
        create_index(self.client, self.index, subscriptions_mappings())

    def validate(self, sub: Subscription) -> dict[str, Any]:
        """The compiled query, or QueryError (one line, the query cut) if it is outside the safe subset or the
        limits, or the engine cannot parse it against this mapping."""
        query = compile_query(sub, self.limits)
        result = self.client.indices.validate_query(index=self.index, body={"query": query}, explain=True)
        if not result.get("valid"):
            explanations = result.get("explanations") or [{}]
            reason = explanations[0].get("error") or json.dumps(result.get("error", "invalid query"))
            raise QueryError(f"invalid subscription query {shown(sub.query)}: {_one_line(reason)}")
        return query

    def add(self, sub: Subscription) -> Subscription:
        """Validate, then store (refreshed at once, so the next story already sees it). The channels were checked
        at the door (`check_channels`: the API and CLI call it once, before anything is stored)."""
        self.ensure_index()
        self.client.index(index=self.index, id=sub.id, body=self._document(sub), refresh=True)
        return sub

    def replace(self, sub_id: str, owner: str, spec: SubscriptionSpec) -> Subscription | None:
        """Give one of the owner's subscriptions a new spec (id, owner and creation time stay), validated like a
        new one; None if it is not theirs or does not exist.

        Optimistic concurrency: the write only applies to the version just read, so an update racing a delete
        cannot bring the subscription back, and of two racing updates one fails instead of being lost.
        """
        found = self._get(sub_id, owner)
        if found is None:
            return None
        current, seq_no, primary_term = found
        fields = spec.model_dump(include=set(SubscriptionSpec.model_fields))
        sub = Subscription(**fields, id=current.id, owner=owner, created_at=current.created_at)
        answer = self.client.index(
            index=self.index,
            id=sub.id,
            body=self._document(sub),
            refresh=True,
            if_seq_no=seq_no,
            if_primary_term=primary_term,
            ignore=[409],
        )
        if answer.get("status") == 409:
            raise ConflictError(f"subscription {sub.id} was changed or deleted meanwhile; read it again and retry")
        return sub

    def _document(self, sub: Subscription) -> dict[str, Any]:
        return {
            "query": self.validate(sub),
            "owner": sub.owner,
            "name": sub.name,
            "frequency": sub.frequency,
            "created_at": sub.created_at.isoformat(),
            "spec": sub.model_dump(mode="json"),
        }

    def get(self, sub_id: str, owner: str | None = None) -> Subscription | None:
        """One subscription; None if missing or owned by someone else (`owner=None`: internal, any owner)."""
        found = self._get(sub_id, owner)
        return found[0] if found else None

    def _get(self, sub_id: str, owner: str | None) -> tuple[Subscription, int, int] | None:
        """The subscription with the version it was read at (sequence number, primary term)."""
        doc = self.client.get(index=self.index, id=sub_id, ignore=[404])
        if not doc or not doc.get("found"):
            return None
        sub = Subscription.model_validate(doc["_source"]["spec"])
        if owner is not None and sub.owner != owner:
            return None
        return sub, doc["_seq_no"], doc["_primary_term"]

    def list(self, owner: str) -> list[Subscription]:
        """An owner's subscriptions, oldest first."""
        if not self.client.indices.exists(index=self.index):
            return []
        body = {"size": MAX_MATCHES, "query": {"term": {"owner": owner}}, "sort": [{"created_at": "asc"}]}
        hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
        return [Subscription.model_validate(h["_source"]["spec"]) for h in hits]

    def delete(self, sub_id: str, owner: str) -> bool:
        """Remove one of the owner's subscriptions; False if it is not theirs (or does not exist)."""
        if self.get(sub_id, owner) is None:
            return False
        self.client.delete(index=self.index, id=sub_id, refresh=True, ignore=[404])
        return True

    def recent_matches(
        self, sub: Subscription, articles_index: str, since: str, size: int
    ) -> builtins.list[tuple[str, str]]:
        """(story id, title) of recent stories with an original article matching the subscription, newest first.

        `since` is date math (`now-7d`). The articles index maps the queried fields as the percolator index does,
        so the query means the same; source filters see the article's own source (not the whole story's).
        """
        body: dict[str, Any] = {
            "size": size,
            "query": {
                "bool": {
                    "must": [compile_query(sub, self.limits)],
                    "filter": [{"range": {"@timestamp": {"gte": since}}}, {"term": {"is_duplicate": False}}],
                }
            },
            "collapse": {"field": "story_id"},
            "sort": [{"@timestamp": "desc"}],
            "_source": ["story_id", "title"],
        }
        hits = self.backend.search(articles_index, body)["hits"]["hits"]
        return [(h["_source"]["story_id"], h["_source"]["title"]) for h in hits]

    def match(self, document: dict[str, Any]) -> builtins.list[Subscription]:
        """Every subscription whose query matches the document, in one percolate request."""
        body = {
            "size": MAX_MATCHES,
            "query": {"percolate": {"field": "query", "document": document}},
            "_source": ["spec"],
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [Subscription.model_validate(h["_source"]["spec"]) for h in hits]


# ------------------------------------------------------------------------------------------ shared by the logs


def create_index(client: Any, index: str, mappings: dict[str, Any]) -> None:
    """A one-shard index with these mappings, unless it exists (a 400 on create: another process won)."""
    if not client.indices.exists(index=index):
        body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings}
        client.indices.create(index=index, body=body, ignore=[400])


_REFRESH_STORY = (
    "if (ctx._source.status != params.status || ctx._source.story_revision >= params.revision) "
    "{ ctx.op = 'noop'; return; } "
    "ctx._source.title = params.title; ctx._source.sources = params.sources; "
    "ctx._source.article_ids = params.article_ids; ctx._source.story_revision = params.revision;"
)


def refresh_story(alert: Alert, status: str) -> dict[str, Any]:
    """A scripted update putting the alert's (newer) story snapshot on a document while it is still `status`:
    a no-op once it moved on, or for an older snapshot."""
    params = {
        "status": status,
        "title": alert.title,
        "sources": alert.sources,
        "article_ids": alert.article_ids,
        "revision": alert.story_revision,
    }
    return {"lang": "painless", "source": _REFRESH_STORY, "params": params}


def _one_line(text: str) -> str:
    """The engine's parse error without the shard prefix, the long token list and the query it quotes."""
    text = " ".join(str(text).split())
    if "Cannot parse" in text:
        text = text[text.index("Cannot parse") :]
    for tail in (" Was expecting", "; nested:"):  # parse errors / lexical errors: the rest repeats the cause
        text = text.split(tail)[0]
    if text.startswith("Cannot parse '") and "': " in text:
        text = "Cannot parse the query: " + text.rsplit("': ", 1)[1]
    text = text.rstrip(".]; ")
    return text if len(text) <= 200 else f"{text[:200]}..."
