"""Digests on the real stack: hourly/daily subscriptions collect matches in OpenSearch and send one message per
period, to a local webhook receiver (JSON and Slack-style) and a real local SMTP server; a second flush, a replay
of the same reports, a restarted stage send nothing new."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.alerts.periods import cut
from pipeline.api.alerts import API_KEY_HEADER, create_app, hash_key
from pipeline.devstack.demo import AlertReceiver
from pipeline.models import EnrichedArticle, Story
from pipeline.search import SearchBackend, connect
from pipeline.settings import AlertSettings, ApiKey, ApiSettings
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import AlertStage, Mailbox, newsflow, wait_until
from tests.integration.test_alerts import TITLE, other_story, produce, reports

pytestmark = pytest.mark.integration

ANN_KEY = "ann-digest-key-0123456789"
OTHER_TITLE = other_story().title


class FakeClock:
    """The alerting stage's clock, moved on by the test instead of waiting for a period to end."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(isolated: Isolated) -> Iterator[SearchBackend]:
    backend = connect(isolated.settings.search)
    yield backend
    a = isolated.settings.alerts
    for index in (a.subscriptions_index, a.alerts_index, a.digest_index):
        backend.client.indices.delete(index=index, ignore=[404])
    backend.close()


def waiting(backend: SearchBackend, alerts: AlertSettings) -> dict[str, dict[str, Any]]:
    """The digest index: story id -> its item."""
    backend.client.indices.refresh(index=alerts.digest_index, ignore_unavailable=True)
    body = {"size": 100, "query": {"match_all": {}}}
    hits = backend.client.search(index=alerts.digest_index, body=body, ignore_unavailable=True)["hits"]["hits"]
    return {h["_source"]["story_id"]: h["_source"] for h in hits}


def digests_logged(backend: SearchBackend, alerts: AlertSettings) -> list[dict[str, Any]]:
    backend.client.indices.refresh(index=alerts.alerts_index)
    body = {"size": 100, "query": {"term": {"kind": "digest"}}, "sort": [{"created_at": "asc"}]}
    return [h["_source"] for h in backend.client.search(index=alerts.alerts_index, body=body)["hits"]["hits"]]


def both_stories_waiting(backend: SearchBackend, alerts: AlertSettings) -> bool:
    items = waiting(backend, alerts)
    return set(items) == {"story-nk", "story-nk2"} and len(items["story-nk"]["sources"]) == 2


def test_a_daily_digest_lists_both_stories_once_and_a_second_flush_sends_nothing(
    isolated: Isolated,
    engine: SearchBackend,
    webhook: AlertReceiver,
    mailbox: tuple[Mailbox, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, smtp_port = mailbox
    monkeypatch.setenv("NEWSFLOW_ALERTS__SMTP_PORT", str(smtp_port))  # for the `newsflow` child processes
    settings = isolated.settings
    # The stage checks for due digests once at start (nothing yet), then not again during the test: here the
    # `newsflow alerts digest --now` command sends the digest.
    alerts = settings.alerts.model_copy(update={"smtp_port": smtp_port, "digest_check_s": 3600.0})
    bus.ensure_topics(settings)
    added = newsflow(
        "subscriptions", "--owner", "ann", "add", "nk-daily", "North Korea", "--frequency", "daily",
        "--webhook", webhook.url, "--slack", webhook.url, "--email", "cy@example.test",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sub_id = added.stdout.strip()
    assert newsflow("subscriptions", "--owner", "ann", "list").stdout.split()[-1] == "daily"

    stage = AlertStage(settings, alerts, tmp_path / "stage")
    try:
        produce(settings, [*reports(), other_story()])
        wait_until(lambda: both_stories_waiting(engine, alerts), 60, "both stories collected", interval=0.2)
        assert webhook.received == [] and box.messages == []  # a daily subscription does not alert per story

        flushed = newsflow("alerts", "digest", "--now")
        assert flushed.returncode == 0, flushed.stderr
        day = cut(datetime.now(UTC), alerts.daily_period_s, alerts.digest_grace_s, early=True).period.start
        assert flushed.stdout.startswith(f"nk-daily (ann): daily digest, 2 stories, {day:%Y-%m-%d} 00:00-")
        assert flushed.stdout.rstrip().endswith("-> sent") and flushed.stdout.count("\n") == 1, flushed.stdout

        again = newsflow("alerts", "digest", "--now")
        assert again.returncode == 0 and again.stdout == "no digest due\n", again.stdout + again.stderr

        # A replay of every report (a restarted stage, a new consumer group) files nothing new.
        produce(settings, [*reports(), other_story()])
        wait_until(lambda: stage.beat().get("consumed", 0) >= 8, 30, "the replay consumed", interval=0.2)
        assert stage.beat()["collected"] == 6  # both originals of story-nk and story-nk2, twice; never the copy
        third = newsflow("alerts", "digest", "--now")
        assert third.stdout == "no digest due\n", third.stdout + third.stderr
    finally:
        stage.close()

    bodies = [body for _, body in webhook.received]
    assert len(bodies) == 2 and len(box.messages) == 1, (bodies, box.messages)
    (body,) = [b for b in bodies if "stories" in b]
    assert body["kind"] == "digest" and body["frequency"] == "daily" and body["subscription"] == "nk-daily"
    assert body["id"] == f"{sub_id}|digest|{day:%Y-%m-%dT%H:%M:%SZ}"
    assert [s["title"] for s in body["stories"]] == [TITLE, OTHER_TITLE]
    assert sorted(body["stories"][0]["sources"]) == ["Harbor Times", "Meridian Post"]  # not the wire copy
    (slack,) = [b for b in bodies if "stories" not in b]
    assert list(slack) == ["text"] and TITLE in slack["text"] and OTHER_TITLE in slack["text"]

    msg = box.messages[0]
    assert msg["To"] == "cy@example.test" and msg["Subject"] == "[newsflow] nk-daily: daily digest, 2 stories"
    parts = {p.get_content_type(): str(p.get_content()) for p in msg.walk() if not p.is_multipart()}
    assert TITLE in parts["text/plain"] and OTHER_TITLE in parts["text/plain"]
    assert "<li><b>Russian president lands" in parts["text/html"] and "Meridian Post" in parts["text/html"]

    (logged,) = digests_logged(engine, alerts)
    assert logged["status"] == "sent" and [i["story_id"] for i in logged["items"]] == ["story-nk", "story-nk2"]
    assert {d["status"] for d in logged["deliveries"]} == {"sent"} and len(logged["deliveries"]) == 3


def new_story(story_id: str, title: str) -> EnrichedArticle:
    now = datetime.now(UTC)
    story = Story(story_id=story_id, title=title, sources=["Harbor Times"], first_seen=now, last_seen=now)
    return EnrichedArticle(
        id=f"{story_id}-1",
        feed="http://harbor/feed.xml",
        source="Harbor Times",
        title=title,
        summary="The announcement came from Pyongyang's state media.",
        language="en",
        story_id=story_id,
        story=story,
    )


def test_the_alerting_stage_sends_each_hourly_digest_when_its_period_ends(
    isolated: Isolated, engine: SearchBackend, webhook: AlertReceiver, tmp_path: Path
) -> None:
    key_settings = isolated.settings.model_copy(
        update={"api": ApiSettings(keys=[ApiKey(owner="ann", sha256=hash_key(ANN_KEY))])}
    )
    spec = {
        "name": "nk-hourly",
        "query": "North Korea",
        "frequency": "hourly",
        "channels": [{"type": "webhook", "url": webhook.url}],
    }
    with TestClient(create_app(key_settings)) as api:
        created = api.post("/subscriptions", headers={API_KEY_HEADER: ANN_KEY}, json=spec)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]

    settings = isolated.settings
    alerts = settings.alerts.model_copy(update={"digest_check_s": 0.2})
    clock = FakeClock(datetime(2026, 11, 20, 8, 20, tzinfo=UTC))
    grace = timedelta(seconds=alerts.digest_grace_s)
    bus.ensure_topics(settings)
    stage = AlertStage(settings, alerts, tmp_path / "stage", clock)
    try:
        produce(settings, [*reports(), other_story()])
        wait_until(lambda: both_stories_waiting(engine, alerts), 60, "both stories collected", interval=0.2)
        clock.now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC) + grace - timedelta(seconds=1)
        time.sleep(1.0)  # five digest checks
        assert webhook.received == []  # 08:00-09:00 ended, but its grace has not

        clock.now += timedelta(seconds=1)
        wait_until(lambda: webhook.received, 30, "the 08:00 digest", interval=0.1)
        produce(settings, [new_story("story-nk3", "North Korea opens a new rail link to Russia")])
        wait_until(lambda: "story-nk3" in waiting(engine, alerts), 30, "the third story collected", interval=0.2)
        clock.now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC) + grace
        wait_until(lambda: len(webhook.received) >= 2, 30, "the 09:00 digest", interval=0.1)
        clock.now += timedelta(hours=5)  # later periods hold nothing: no empty digests
        wait_until(lambda: stage.beat().get("pending") == 0, 10, "the stage idle", interval=0.2)
        time.sleep(1.0)  # five more checks: anything doubled would be sent by now
    finally:
        stage.close()

    bodies = [body for _, body in webhook.received]
    assert [b["id"] for b in bodies] == [
        f"{sub_id}|digest|2026-11-20T08:00:00Z",
        f"{sub_id}|digest|2026-11-20T09:00:00Z",
    ]
    assert [[s["story_id"] for s in b["stories"]] for b in bodies] == [["story-nk", "story-nk2"], ["story-nk3"]]
    assert (bodies[0]["period_start"], bodies[0]["period_end"]) == ("2026-11-20T08:00:00Z", "2026-11-20T09:00:00Z")
    beat = stage.beat()
    assert (beat["collected"], beat["digests"], beat["sent"], beat["dead"]) == (4, 2, 2, 0)
    assert [d["status"] for d in digests_logged(engine, alerts)] == ["sent", "sent"]
