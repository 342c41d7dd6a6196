"""Deciding alerts, without services: what to write to the alerts log for one enriched article.

Only an original report with a story snapshot can alert. Every matching instant subscription gets its `new`
alert *claimed* (the claim, not this module, makes delivery exactly-once); a report arriving while that alert is
still `pending` (its settle time) *refreshes* its title and sources instead, so ten outlets at once still make one
alert naming all of them; once `update_after` more outlets report the story, an `update` alert is claimed.
Digest subscriptions (hourly/daily) are not claimed per story: the story is *collected* for their next digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.alerts.models import Alert, AlertKind, Subscription
from pipeline.models import EnrichedArticle


@dataclass(frozen=True)
class Logged:
    """What the alerts log already says about a subscription's `new` alert for a story."""

    status: str
    source_count: int


@dataclass(frozen=True)
class Action:
    """`claim`: create the alert (first writer wins); `refresh`: update a still-pending alert's story fields;
    `collect`: file the story for a digest subscription's next digest."""

    op: Literal["claim", "refresh", "collect"]
    alert: Alert


def alertable(article: EnrichedArticle) -> bool:
    """Only original reports with a story snapshot can alert: a duplicate or near-copy adds nothing new."""
    return article.duplicate_of is None and article.story is not None


def make_alert(sub: Subscription, article: EnrichedArticle, kind: AlertKind) -> Alert:
    """The alert carries the story as of this article (its newest snapshot), not the article itself."""
    story = article.story
    assert story is not None
    return Alert(
        subscription_id=sub.id,
        story_id=story.story_id,
        kind=kind,
        title=story.title,
        sources=list(story.sources),
        article_ids=list(story.article_ids),
        story_revision=story.revision,
        polled_at=article.fetched_at,
    )


def update_due(source_count: int, notified_sources: int, update_after: int) -> bool:
    """An `update` once the story has `update_after` more outlets than when the `new` alert went out."""
    return update_after > 0 and source_count - notified_sources >= update_after


def decide(
    article: EnrichedArticle,
    matched: list[Subscription],
    logged: Mapping[str, Logged],
    update_after: int,
) -> list[Action]:
    """What to write for one article, given the matching subscriptions and the log's `new` alerts by
    subscription id. Never sends: claims are what make delivery exactly-once."""
    if not alertable(article) or article.story is None:
        return []
    actions: list[Action] = []
    sources = len(article.story.sources)
    for sub in matched:
        if sub.frequency != "instant":  # a digest: collected now, sent once per period
            actions.append(Action("collect", make_alert(sub, article, "new")))
            continue
        previous = logged.get(sub.id)
        if previous is None:
            actions.append(Action("claim", make_alert(sub, article, "new")))
        elif previous.status == "pending":
            actions.append(Action("refresh", make_alert(sub, article, "new")))
        elif sub.updates and update_due(sources, previous.source_count, update_after):
            actions.append(Action("claim", make_alert(sub, article, "update")))
    return actions
