"""Alert decisions without services: who gets which alert for which article, retries and backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pipeline.alerts.dispatch import (
    Figures,
    Logged,
    PermanentError,
    backoff_delays,
    decide,
    latency,
    overall,
    with_retries,
)
from pipeline.alerts.messages import render, webhook_body
from pipeline.alerts.models import Alert, Subscription, WebhookChannel, dedup_key
from pipeline.alerts.store import compile_query, story_document
from pipeline.models import EnrichedArticle, Entity, Story

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


def test_first_original_report_claims_one_new_alert_per_matching_subscription() -> None:
    a, b = sub("a"), sub("b")
    actions = decide(enriched("a1", ["Harbor Times"]), [a, b], {}, update_after=3)
    assert [(x.op, x.alert.kind, x.alert.subscription_id) for x in actions] == [
        ("claim", "new", a.id),
        ("claim", "new", b.id),
    ]
    assert actions[0].alert.title == "Russian leader arrives in Pyongyang"
    assert actions[0].alert.dedup_key == dedup_key(a.id, "s-1", "new")


def test_duplicates_never_alert() -> None:
    copy = enriched("a3", ["Harbor Times", "Meridian Post"], duplicate_of="a1")
    assert decide(copy, [sub()], {}, update_after=1) == []


def test_later_report_refreshes_a_pending_alert_instead_of_a_second_one() -> None:
    s = sub()
    second = enriched("a2", ["Harbor Times", "Meridian Post"], rev=2)
    actions = decide(second, [s], {s.id: Logged("pending", 1)}, update_after=3)
    assert [(x.op, x.alert.kind) for x in actions] == [("refresh", "new")]
    assert actions[0].alert.sources == ["Harbor Times", "Meridian Post"]


def test_update_only_when_enough_new_sources_and_enabled() -> None:
    s = sub()
    four = enriched("a4", ["A", "B", "C", "D"], rev=4)
    assert decide(four, [s], {s.id: Logged("sent", 2)}, update_after=3) == []
    five = enriched("a5", ["A", "B", "C", "D", "E"], rev=5)
    assert [(x.op, x.alert.kind) for x in decide(five, [s], {s.id: Logged("sent", 2)}, update_after=3)] == [
        ("claim", "update")
    ]
    assert decide(five, [s], {s.id: Logged("sent", 2)}, update_after=0) == []
    quiet = sub(updates=False)
    assert decide(five, [quiet], {quiet.id: Logged("sent", 2)}, update_after=3) == []


def test_digest_subscriptions_collect_instead_of_claiming() -> None:
    daily = sub(frequency="daily")
    actions = decide(enriched("a1", ["A"]), [daily], {}, update_after=3)
    assert [(x.op, x.alert.subscription_id, x.alert.story_id) for x in actions] == [("collect", daily.id, "s-1")]
    five = enriched("a5", ["A", "B", "C", "D", "E"], rev=5)  # growth never turns a digest into an update alert
    assert [x.op for x in decide(five, [daily], {daily.id: Logged("sent", 1)}, update_after=3)] == ["collect"]
    copy = enriched("a3", ["A", "B"], duplicate_of="a1")
    assert decide(copy, [daily], {}, update_after=3) == []


def test_dedup_key_is_stable_and_bounded() -> None:
    assert dedup_key("s", "story", "new") == "s|story|new"
    long = dedup_key("s", "x" * 600, "new")
    assert len(long.encode()) <= 512 and long == dedup_key("s", "x" * 600, "new")


def test_retries_back_off_then_dead_letter() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    result = with_retries(failing, attempts=4, base=0.5, cap=1.5, sleep=waits.append)
    assert result["status"] == "dead" and result["attempts"] == 4 and "refused" in result["last_error"]
    assert waits == [0.5, 1.0, 1.5] == backoff_delays(4, 0.5, 1.5)
    assert len(calls) == 4


def test_permanent_errors_are_not_retried_and_a_later_success_is_sent() -> None:
    def gone() -> None:
        raise PermanentError("HTTP 404")

    assert with_retries(gone, 5, 0.1, 1, sleep=lambda _: None) == {
        "status": "dead",
        "attempts": 1,
        "last_error": "HTTP 404",
    }
    outcomes = iter([ConnectionError("x"), None])

    def flaky() -> None:
        if (exc := next(outcomes)) is not None:
            raise exc

    assert with_retries(flaky, 3, 0.1, 1, sleep=lambda _: None)["status"] == "sent"
    assert overall([{"status": "sent"}, {"status": "dead"}]) == "partial"


def test_slack_payload_is_text_only() -> None:
    s = sub()
    alert = Alert(subscription_id=s.id, story_id="s-1", kind="new", title="T", sources=["A", "B"])
    out = render(alert, s)
    slack = webhook_body(out, WebhookChannel(url="http://x", slack=True))
    assert slack == {"text": out.text} and "T" in slack["text"] and "A, B" in slack["text"]
    plain = webhook_body(out, WebhookChannel(url="http://x"))
    assert plain["id"] == alert.dedup_key and plain["sources"] == ["A", "B"]


def test_subscription_validation_and_query_compilation() -> None:
    with pytest.raises(ValidationError):
        sub(channels=[])
    with pytest.raises(ValidationError):
        sub(channels=[{"type": "email", "to": "not-an-address"}])
    q = compile_query(sub(entities={"person": ["Vladimir Putin"]}, sources=["Harbor Times"], languages=["en"]))
    assert q["bool"]["must"][0]["query_string"]["default_operator"] == "AND"
    assert {"term": {"entities.person": "Vladimir Putin"}} in q["bool"]["filter"]
    assert compile_query(sub(query=""))["bool"]["must"] == [{"match_all": {}}]


def test_percolated_document_carries_story_sources_and_entities() -> None:
    e = enriched("a2", ["Harbor Times", "Meridian Post"])
    assert e.story is not None
    e.story.entities = [Entity(name="Kim Jong Un", type="person")]
    doc = story_document(e)
    assert doc["source"] == ["Harbor Times", "Meridian Post"]
    assert doc["entities"]["person"] == ["Kim Jong Un"]


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
