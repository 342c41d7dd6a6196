"""The alerting stage without services: alert latency, heartbeat figures, the records the consumer skips."""

from __future__ import annotations

from datetime import timedelta

from pipeline.alerts.decision import decide
from pipeline.alerts.dispatch import Figures, latency
from pipeline.alerts.messages import render
from tests.unit.alerts.samples import NOW, enriched, sub


def test_alert_carries_the_poll_time_and_latency_is_measured_from_it() -> None:
    article = enriched("a1", ["Harbor Times"]).model_copy(update={"fetched_at": NOW})
    alert = decide(article, [sub()], {}, update_after=3)[0].alert
    assert alert.polled_at == NOW and render(alert, sub()).payload["polled_at"] == "2026-11-20T08:00:00Z"
    assert latency(alert, NOW + timedelta(seconds=1.25)) == 1.25
    assert latency(alert.model_copy(update={"polled_at": None}), NOW) is None


def test_figures_count_outcomes_and_keep_latency_of_delivered_alerts_only() -> None:
    figures = Figures()
    figures.delivered("sent", 1.5)
    figures.delivered("dead", 9.0)  # a dead alert never arrived: no latency
    figures.delivered("partial", 0.5)
    figures.delivered("cancelled", None)
    assert (figures.sent, figures.partial, figures.dead, figures.cancelled) == (1, 1, 1, 1)
    assert (figures.last_latency_s, figures.max_latency_s) == (0.5, 1.5)


def test_the_alert_consumer_passes_over_story_moves_and_unreadable_records() -> None:
    """A story move re-files an article that was already considered when it came: no alert can come from it."""
    from datetime import UTC, datetime

    from pipeline.alerts.consumer import parse
    from pipeline.models import EnrichedArticle, Story, StoryMove

    now = datetime(2026, 11, 20, tzinfo=UTC)
    story = Story(story_id="s-big", title="t", first_seen=now, last_seen=now)
    move = StoryMove(
        article_id="a5", published=now, story_id="s-big", merged_story_id="s-small", merged_revision=1, story=story
    )
    article = EnrichedArticle(id="a1", feed="f", source="src", title="t", story_id="s-big", published=now)
    assert parse(move.model_dump_json().encode()) is None
    assert parse(b"not json") is None
    parsed = parse(article.model_dump_json().encode())
    assert parsed is not None and parsed.id == "a1"
