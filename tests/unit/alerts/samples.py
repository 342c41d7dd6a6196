"""Subscriptions and enriched articles for the alerts unit tests: one story ("s-1") reported by growing sources."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.alerts.models import Subscription, WebhookChannel
from pipeline.models import EnrichedArticle, Story

NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)


def sub(name: str = "nk", **kw: object) -> Subscription:
    fields: dict[str, object] = {"name": name, "owner": "ann", "query": "North Korea"}
    fields.update(kw)
    fields.setdefault("channels", [WebhookChannel(url="http://127.0.0.1:1/hook")])
    return Subscription.model_validate(fields)


def enriched(article_id: str, sources: list[str], *, duplicate_of: str | None = None, rev: int = 1) -> EnrichedArticle:
    story = Story(
        story_id="s-1",
        title="Russian leader arrives in Pyongyang",
        sources=sources,
        article_ids=[f"a{i}" for i in range(1, len(sources) + 1)],
        article_count=len(sources),
        first_seen=NOW,
        last_seen=NOW,
        revision=rev,
    )
    return EnrichedArticle(
        id=article_id,
        feed="http://f",
        source=sources[-1],
        title="x",
        story_id="s-1",
        duplicate_of=duplicate_of,
        story=story,
    )
