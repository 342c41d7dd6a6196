"""Alert subscriptions end to end on the real stack: Kafka enriched topic -> percolator match in OpenSearch ->
exactly one alert per story, delivered to a local webhook receiver and a real local SMTP server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import status
from pipeline.alerts.alert_log import AlertLog
from pipeline.alerts.models import EmailChannel, Subscription, WebhookChannel, dedup_key
from pipeline.alerts.store import SubscriptionStore
from pipeline.devstack.demo import AlertReceiver
from pipeline.errors import ConflictError, QueryError
from pipeline.models import EnrichedArticle, Story
from pipeline.search import connect
from pipeline.settings import AlertSettings, Settings
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import AlertStage, Mailbox, free_port, wait_until

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)
TITLE = "Russian president lands in Pyongyang for rare summit"
SUMMARY = (
    "Vladimir Putin arrived in North Korea early on Tuesday for talks with Kim Jong Un, "
    "his first trip to the country in more than twenty years."
)


def alert_settings(iso: Isolated, smtp_port: int) -> AlertSettings:
    """The test's own indices and group (from `isolated`), its SMTP server and quick retries."""
    return iso.settings.alerts.model_copy(update={"smtp_port": smtp_port, "attempts": 3, "backoff_s": 0.1})


def snapshot(n: int, sources: list[str], duplicates: int = 0) -> Story:
    return Story(
        story_id="story-nk",
        title=TITLE,
        article_count=n,
        duplicate_count=duplicates,
        sources=sources,
        first_seen=NOW,
        last_seen=NOW,
        article_ids=["nk-1", "nk-2", "nk-3"][:n],
        revision=n,
    )


def reports() -> list[EnrichedArticle]:
    """Two outlets in their own words, then a wire service's verbatim copy of the first."""
    first = EnrichedArticle(
        id="nk-1",
        feed="http://harbor/feed.xml",
        source="Harbor Times",
        title=TITLE,
        summary=SUMMARY,
        language="en",
        story_id="story-nk",
        story=snapshot(1, ["Harbor Times"]),
    )
    second = EnrichedArticle(
        id="nk-2",
        feed="http://meridian/feed.xml",
        source="Meridian Post",
        title="Putin and Kim shake hands as Moscow courts North Korea",
        summary="Kim Jong Un met the Kremlin leader at Pyongyang airport; defence and trade are on the agenda.",
        language="en",
        story_id="story-nk",
        story=snapshot(2, ["Harbor Times", "Meridian Post"]),
    )
    copy = first.model_copy(
        update={
            "id": "nk-3",
            "feed": "http://wire/feed.xml",
            "source": "Wire Digest",
            "duplicate_of": "nk-1",
            "story": snapshot(3, ["Harbor Times", "Meridian Post"], duplicates=1),
        }
    )
    return [first, second, copy]


def other_story() -> EnrichedArticle:
    """A second, unrelated story (after the consumer is warm: the steady-state latency)."""
    story = Story(
        story_id="story-nk2",
        title="North Korea test-fires a missile into the sea, Seoul says",
        article_count=1,
        sources=["Harbor Times"],
        first_seen=NOW,
        last_seen=NOW,
        article_ids=["nk2-1"],
    )
    return EnrichedArticle(
        id="nk2-1",
        feed="http://harbor/feed.xml",
        source="Harbor Times",
        title=story.title,
        summary="South Korea's military said the launch came hours after the summit ended.",
        language="en",
        story_id=story.story_id,
        story=story,
    )


def produce(settings: Settings, items: list[EnrichedArticle]) -> float:
    """Produce and wait for the broker's ack; returns the time just before the first send."""
    prod = bus.producer(settings)
    started = time.time()
    for a in items:
        prod.send(settings.kafka.topics.enriched, key=a.id, value=a.model_dump_json().encode())
    prod.flush()
    prod.close()
    return started


def committed(settings: Settings, group: str) -> int:
    client = bus.admin(settings)
    try:
        return sum(o.offset for o in client.list_consumer_group_offsets(group).values())
    finally:
        client.close()


def test_a_bad_query_is_rejected_and_nothing_is_stored(isolated: Isolated) -> None:
    alerts = alert_settings(isolated, 25)
    backend = connect(isolated.settings.search)
    store = SubscriptionStore(backend, alerts)
    bad = Subscription(name="bad", owner="ann", query='title:("unclosed', channels=[WebhookChannel(url="http://x")])
    with pytest.raises(QueryError) as err:
        store.add(bad)
    assert "\n" not in str(err.value) and "unclosed" in str(err.value)
    assert store.list("ann") == []
    good = store.add(Subscription(name="ok", owner="ann", query="Korea", channels=[WebhookChannel(url="http://x")]))
    assert [s.id for s in store.list("ann")] == [good.id]
    assert store.list("bob") == [] and store.get(good.id, "bob") is None
    assert not store.delete(good.id, "bob") and store.delete(good.id, "ann")
    backend.client.indices.delete(index=alerts.subscriptions_index, ignore=[404])


def test_an_update_applies_only_to_the_version_it_read(isolated: Isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    """PUT racing DELETE (or another PUT): the write is conditional on the version read, so a deleted
    subscription is not brought back and the losing update fails with a clear message instead of being lost."""
    alerts = alert_settings(isolated, 25)
    backend = connect(isolated.settings.search)
    store = SubscriptionStore(backend, alerts)
    hook = [WebhookChannel(url="http://x")]
    sub = store.add(Subscription(name="korea", owner="ann", query="Korea", channels=hook))
    changed = sub.model_copy(update={"query": "Pyongyang"})
    assert store.replace(sub.id, "ann", changed) == changed and store.get(sub.id, "ann") == changed
    assert store.replace(sub.id, "bob", changed) is None  # not bob's

    read_before = store._get(sub.id, "ann")  # the racing request read here ...
    store.replace(sub.id, "ann", sub.model_copy(update={"query": "Kim"}))  # ... then another update landed
    monkeypatch.setattr(store, "_get", lambda *_: read_before)
    with pytest.raises(ConflictError, match="changed or deleted meanwhile"):
        store.replace(sub.id, "ann", sub.model_copy(update={"query": "stale"}))
    monkeypatch.undo()
    assert store.get(sub.id, "ann").query == "Kim"  # type: ignore[union-attr]

    read_before = store._get(sub.id, "ann")
    assert store.delete(sub.id, "ann")  # a delete lands between the racing request's read and its write
    monkeypatch.setattr(store, "_get", lambda *_: read_before)
    with pytest.raises(ConflictError):
        store.replace(sub.id, "ann", sub.model_copy(update={"query": "resurrected"}))
    monkeypatch.undo()
    assert store.get(sub.id, "ann") is None and store.list("ann") == []
    backend.client.indices.delete(index=alerts.subscriptions_index, ignore=[404])


def test_one_alert_per_story_exactly_once_with_dead_letter_and_email(
    isolated: Isolated, webhook: AlertReceiver, mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    settings = isolated.settings
    box, smtp_port = mailbox
    alerts = alert_settings(isolated, smtp_port)
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    store = SubscriptionStore(backend, alerts)
    alert_log = AlertLog(backend, alerts)
    hook = store.add(
        Subscription(name="nk", owner="ann", query="North Korea", channels=[WebhookChannel(url=webhook.url)])
    )
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    broken = store.add(
        Subscription(name="nk-broken", owner="bob", query="North Korea", channels=[WebhookChannel(url=dead_url)])
    )
    mail = store.add(
        Subscription(name="nk-mail", owner="cy", query='"North Korea"', channels=[EmailChannel(to="cy@example.test")])
    )
    store.add(Subscription(name="volcano", owner="dee", query="volcano", channels=[WebhookChannel(url=webhook.url)]))

    consumer = AlertStage(settings, alerts, tmp_path)
    try:
        produced_at = produce(settings, reports())
        wait_until(lambda: webhook.received, 30, "the webhook alert", interval=0.02)
        latency = webhook.received[0][0] - produced_at
        print(f"\nalert latency, produce -> webhook receipt: {latency:.2f}s (settle window {alerts.settle_s}s)")
        wait_until(lambda: box.messages, 30, "the email alert", interval=0.1)
        dead = wait_until(
            lambda: (
                (d := alert_log.get(dedup_key(broken.id, "story-nk", "new"))) and d["_source"]["status"] == "dead" and d
            ),
            30,
            "the broken webhook dead-lettered",
            interval=0.2,
        )
        warm_at = produce(settings, [other_story()])  # the consumer has joined its group by now
        wait_until(lambda: len(webhook.received) >= 2, 30, "the second story's alert", interval=0.02)
        warm = webhook.received[1][0] - warm_at
        print(f"alert latency, warm consumer: {warm:.2f}s")
        time.sleep(alerts.settle_s + 1.5)  # anything doubled would arrive by now
    finally:
        consumer.close()

    assert [b["story_id"] for _, b in webhook.received] == ["story-nk", "story-nk2"], webhook.received
    body = webhook.received[0][1]
    assert body["kind"] == "new" and body["title"] == TITLE and body["story_id"] == "story-nk"
    assert sorted(body["sources"]) == ["Harbor Times", "Meridian Post"]  # both outlets, not the wire copy
    assert body["id"] == dedup_key(hook.id, "story-nk", "new")
    assert latency < 5.0 and warm < 5.0
    polled = datetime.fromisoformat(body["polled_at"])  # the first report's poll time, as produced
    assert abs(polled.timestamp() - produced_at) < 1.0, (polled, produced_at)

    # The stage's heartbeat: what `newsflow status` and `newsflow run` show.
    (name, beat), *others = status.read_all(tmp_path).items()
    assert not others and name.startswith("alerts-") and beat["state"] == "stopped"
    assert {k: beat[k] for k in ("consumed", "claimed", "sent", "dead", "pending")} == {
        "consumed": 4,  # three reports of story-nk, one of story-nk2
        "claimed": 6,
        "sent": 4,  # two webhook, two email
        "dead": 2,  # the unreachable webhook, once per story
        "pending": 0,
    }
    assert 0 < beat["last_latency_s"] <= beat["max_latency_s"] < 5.0

    assert len(box.messages) == 2
    msg = box.messages[0]
    assert msg["To"] == "cy@example.test" and TITLE in msg["Subject"]
    parts = {p.get_content_type(): str(p.get_content()) for p in msg.walk() if not p.is_multipart()}
    assert "Meridian Post" in parts["text/plain"] and "<li>Harbor Times</li>" in parts["text/html"]

    failure = dead["_source"]
    assert failure["attempts"] == alerts.attempts and "Connect" in failure["last_error"]
    assert failure["deliveries"][0]["target"] == dead_url
    sent = alert_log.get(dedup_key(mail.id, "story-nk", "new"))
    assert sent is not None and sent["_source"]["status"] == "sent" and 0 < sent["_source"]["latency_s"] < 5.0
    logged = alert_log.recent()
    assert {a["subscription_name"] for a in logged} == {"nk", "nk-broken", "nk-mail"} and len(logged) == 6

    # Replays: a fresh consumer group re-reads everything, and the same messages are produced again.
    replay = alerts.model_copy(update={"group_id": f"{alerts.group_id}-replay"})
    again = AlertStage(settings, replay, tmp_path / "replay")
    try:
        produce(settings, reports())
        wait_until(lambda: committed(settings, replay.group_id) >= 7, 30, "the replay consumed", interval=0.2)
        time.sleep(alerts.settle_s + 1.5)
    finally:
        again.close()
    assert len(webhook.received) == 2 and len(box.messages) == 2
    assert len(alert_log.recent()) == 6
    for index in (alerts.subscriptions_index, alerts.alerts_index):
        backend.client.indices.delete(index=index, ignore=[404])


def test_a_follow_up_that_does_not_match_alone_still_joins_the_alert_and_the_digest(
    isolated: Isolated, webhook: AlertReceiver, tmp_path: Path
) -> None:
    """A subscription matches a story; a later report of it that never says the query's words still adds its
    outlet to the settling alert and to the digest item, whichever of the two reports is read first."""
    from pipeline.alerts.digest import item_key

    settings = isolated.settings
    alerts = alert_settings(isolated, 25).model_copy(update={"settle_s": 4.0})
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    store = SubscriptionStore(backend, alerts)
    hook = [WebhookChannel(url=webhook.url)]
    instant = store.add(Subscription(name="nk", owner="ann", query="North Korea", channels=hook))
    daily = store.add(Subscription(name="nk-daily", owner="ann", query="North Korea", channels=hook, frequency="daily"))

    def story(story_id: str) -> tuple[EnrichedArticle, EnrichedArticle]:
        first, second, _ = reports()
        follow_up = second.model_copy(  # says "Pyongyang", never "North Korea"
            update={"title": "Putin and Kim shake hands at Pyongyang airport"}
        )
        pair = (first, follow_up)
        return tuple(  # type: ignore[return-value]
            a.model_copy(
                update={
                    "id": f"{story_id}-{a.id}",
                    "story_id": story_id,
                    "story": a.story.model_copy(update={"story_id": story_id}),  # type: ignore[union-attr]
                }
            )
            for a in pair
        )

    stage = AlertStage(settings, alerts, tmp_path)
    try:
        matching, follow_up = story("s-match-first")
        produce(settings, [matching])
        wait_until(lambda: stage.beat().get("consumed", 0) >= 1, 30, "the first report read", interval=0.1)
        produce(settings, [follow_up])
        late_match, early_follow_up = story("s-follow-up-first")
        produce(settings, [early_follow_up])
        wait_until(lambda: stage.beat().get("consumed", 0) >= 3, 30, "the follow-up read", interval=0.1)
        produce(settings, [late_match])
        wait_until(lambda: len(webhook.received) >= 2, 30, "both alerts", interval=0.1)
        items = backend.get_many(
            alerts.digest_index, [item_key(daily.id, s) for s in ("s-match-first", "s-follow-up-first")]
        )
    finally:
        stage.close()
    for _, body in webhook.received:
        assert body["id"] == dedup_key(instant.id, body["story_id"], "new")
        assert sorted(body["sources"]) == ["Harbor Times", "Meridian Post"], body
    assert {b["story_id"] for _, b in webhook.received} == {"s-match-first", "s-follow-up-first"}
    assert [sorted(i["sources"]) for i in items.values()] == [["Harbor Times", "Meridian Post"]] * 2, items
    for index in (alerts.subscriptions_index, alerts.alerts_index, alerts.digest_index):
        backend.client.indices.delete(index=index, ignore=[404])
    backend.close()
