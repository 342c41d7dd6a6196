"""`newsflow run` with its alerting stage, at demo scale: the bundled demo feeds served locally, polled by the
real poller, tagged and clustered by the worker, alerted to a local webhook. Measures the latency the
issue asks for: from the poll of a story's first report (`polled_at`, its `fetched_at`) to webhook receipt.

The pipeline is warmed up first (one unrelated item must alert) so the figure is the steady state, not the
worker's start-up; then the demo items appear in the feeds at once.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from pipeline import status
from pipeline.alerts.models import Subscription, WebhookChannel
from pipeline.alerts.store import SubscriptionStore
from pipeline.devstack.demo import DEMO_DIR, AlertReceiver, serve_directory
from pipeline.ingest import registry
from pipeline.search import connect
from pipeline.settings import FeedConfig, WorkerSettings, load_settings
from pipeline.stream import bus
from tests.conftest import Isolated
from tests.integration.helpers import log_tail, spawn, stop, wait_until

pytestmark = pytest.mark.integration

ITEM = re.compile(r"\s*<(item|entry)>.*?</\1>", re.DOTALL)
WARM_UP = (
    "<item><title>Harbor bakery wins the national bread prize</title>"
    "<link>https://harbortimes.example/local/bakery-prize</link>"
    "<description>A family bakery on the waterfront took first place at the national bread awards.</description>"
    "</item>"
)
DEMO_ITEMS = 17  # see pipeline/resources/demo/expected.yaml
TARGET_S = 5.0


def without_items(feed: str) -> str:
    return ITEM.sub("", feed)


def test_run_alerts_within_seconds_of_the_poll(
    isolated: Isolated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = isolated.env["NEWSFLOW_KAFKA__TOPICS__ARTICLES"].split(".")[0]
    extra = {
        "NEWSFLOW_STACK__STATE_DIR": str(tmp_path / "state"),  # own heartbeats and logs: `run` clears them
        "NEWSFLOW_KAFKA__TOPICS__FEEDS": f"{prefix}.feeds",
        "NEWSFLOW_KAFKA__TOPICS__FEED_STATE": f"{prefix}.feedstate",
        "NEWSFLOW_POLLER__GROUP_ID": f"{prefix}-poller",
        "NEWSFLOW_POLLER__INTERVAL_S": "1",
        "NEWSFLOW_POLLER__MIN_INTERVAL_S": "1",
        "NEWSFLOW_POLLER__MAX_INTERVAL_S": "2",
        "NEWSFLOW_POLLER__JITTER": "0",
        # Measured with the shipped tagging window, not the shorter one the other tests use.
        "NEWSFLOW_WORKER__TAG_BATCH_WINDOW_S": str(WorkerSettings().tag_batch_window_s),
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    env = {**isolated.env, **extra}
    settings = load_settings()
    state_dir = settings.stack.state_dir

    site = tmp_path / "site"
    site.mkdir()
    demo = {p.name: p.read_text(encoding="utf-8") for p in sorted(DEMO_DIR.glob("*.xml"))}
    for name, text in demo.items():
        empty = without_items(text)
        if name == "harbor-times.xml":
            empty = empty.replace("</channel>", f"{WARM_UP}</channel>")
        (site / name).write_text(empty, encoding="utf-8")

    backend = connect(settings.search)
    store = SubscriptionStore(backend, settings.alerts)
    hook = AlertReceiver()

    def alerting_done(items: int) -> bool:
        """The alerting stage has read every item (original or not) and has nothing waiting or in flight."""
        beats = [b for n, b in status.read_all(state_dir).items() if n.startswith("alerts-")]
        return bool(beats) and beats[0]["consumed"] >= items and beats[0]["pending"] == 0

    def stories() -> set[str]:
        """Demo stories alerted to the match-everything subscription (after the warm-up alert)."""
        return {b["story_id"] for _, b in hook.received[1:] if b["id"].startswith(everything.id)}

    everything = store.add(Subscription(name="all", owner="ann", channels=[WebhookChannel(url=hook.url)]))
    store.add(Subscription(name="nk", owner="ann", query="North Korea", channels=[WebhookChannel(url=hook.url)]))
    log = tmp_path / "run.log"
    try:
        with serve_directory(site) as base:
            bus.ensure_topics(settings)
            registry.add_feeds(settings, [FeedConfig(url=f"{base}/{name}") for name in demo])
            run = spawn(["run"], env, log)
            try:
                wait_until(lambda: hook.received or run.poll() is not None, 240, "the warm-up alert", interval=0.2)
                assert run.poll() is None, log_tail(log)
                assert [b["title"] for _, b in hook.received] == ["Harbor bakery wins the national bread prize"]

                switched = time.time()
                for name, text in demo.items():
                    (site / name).write_text(text, encoding="utf-8")
                wait_until(lambda: alerting_done(DEMO_ITEMS + 1), 120, "every demo item through alerting", 0.2)
                time.sleep(settings.alerts.settle_s + 3)  # any second alert for the same story would arrive by now
                running = status.read_all(state_dir)
            finally:
                stop(run)
        after_stop = status.read_all(state_dir)
    finally:
        hook.close()
        for index in (settings.alerts.subscriptions_index, settings.alerts.alerts_index):
            backend.client.indices.delete(index=index, ignore=[404])

    alerts = [(at, body) for at, body in hook.received[1:]]
    latencies = sorted(at - datetime.fromisoformat(b["polled_at"]).timestamp() for at, b in alerts)
    print(
        f"\n{len(alerts)} alerts for {len(stories())} stories from {DEMO_ITEMS} demo items; poll -> webhook receipt: "
        f"min {latencies[0]:.2f}s, median {latencies[len(latencies) // 2]:.2f}s, max {latencies[-1]:.2f}s "
        f"(settle window {settings.alerts.settle_s}s); first alert {min(a for a, _ in alerts) - switched:.2f}s "
        "after the feeds changed"
    )
    keys = [b["id"] for _, b in alerts]
    assert len(keys) == len(set(keys)), keys  # exactly one alert per (subscription, story, kind)
    new_stories = sum(b.get("new_stories", 0) for n, b in running.items() if n.startswith("worker"))
    assert len(stories()) == new_stories - 1  # one alert per story the worker made, bar the warm-up
    nk = {b["story_id"]: b["title"] for _, b in alerts if not b["id"].startswith(everything.id)}
    assert 1 <= len(nk) <= 2 and set(nk) <= stories(), nk  # Putin's visit, Kim's trip: not strikes or the ECB
    assert not any(word in title for title in nk.values() for word in ("strike", "ECB", "Nordair", "Iberojet")), nk
    assert latencies[-1] < TARGET_S, latencies

    # `newsflow run` ran the alerting stage with a heartbeat; the status line counted what it sent.
    assert {n.split("-")[0] for n in running} >= {"poller", "indexer", "worker", "alerts"}
    alerting = [b for n, b in after_stop.items() if n.startswith("alerts-")]
    assert len(alerting) == 1 and alerting[0]["state"] == "stopped" and alerting[0]["sent"] == len(hook.received)
    assert f"alerts sent {len(hook.received)} (dead 0)" in log.read_text(errors="replace")
