"""`make demo`: the real pipeline on sample feeds we wrote, served from a local HTTP server.

Four outlets report five stories in their own words (two pairs of look-alike events that must stay apart),
plus a verbatim wire copy and a lightly edited re-post. The demo polls them, lets the worker and indexer do
their job, and prints what came out: stories, duplicates, top entities, and a search to try.

It also shows an alert firing: a subscription to "North Korea" posts to a local webhook the demo prints, through
the real alerting stage. The demo keeps to its own subscriptions index, alert log and consumer group (the
configured names + `-demo`), so it never alerts anyone's real subscriptions, and it polls with a seen-state of
its own, so every run produces the sample articles again (the worker files them under the stories it gave them
before) and alerts again: the subscription is new each run and removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from pipeline import status
from pipeline.alerts.models import Subscription, WebhookChannel
from pipeline.alerts.store import SubscriptionStore
from pipeline.devstack import supervisor
from pipeline.ingest.feeds import parse_feed
from pipeline.ingest.poller import Poller
from pipeline.progress import Progress
from pipeline.search import SearchBackend, connect
from pipeline.settings import AlertSettings, FeedConfig, Settings
from pipeline.stream import bus
from pipeline.urls import canonical_url

DEMO_DIR = Path(__file__).resolve().parents[1] / "resources" / "demo"
WAIT_FOR_INDEX_S = 240.0
WAIT_FOR_ALERTS_S = 60.0
DEMO_QUERY = "North Korea"
DEMO_OWNER = "demo"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def guess_type(self, path: Any) -> str:
        return "application/xml" if str(path).endswith(".xml") else str(super().guess_type(path))


@contextlib.contextmanager
def serve_directory(folder: Path, port: int = 0) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (ephemeral port by default); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def demo_feeds(base_url: str, folder: Path = DEMO_DIR) -> list[FeedConfig]:
    return [FeedConfig(url=f"{base_url}/{p.name}", tags=["demo"]) for p in sorted(folder.glob("*.xml"))]


def demo_settings(settings: Settings, base_url: str, seen_db: Path | None = None) -> Settings:
    """Same settings, but polling the local sample feeds (explicitly allowed although on loopback), with the
    seen-state in `seen_db` when given and the feed state in a topic of its own."""
    poller = settings.poller.model_copy(
        update={
            "allow_private_hosts": [*settings.poller.allow_private_hosts, "127.0.0.1"],
            "seen_db": seen_db or settings.poller.seen_db,
        }
    )
    # The sample feeds' state goes to a topic of the demo's own: it never mixes with the real feeds' state.
    topics = settings.kafka.topics.model_copy(update={"feed_state": f"{settings.kafka.topics.feed_state}-demo"})
    kafka = settings.kafka.model_copy(update={"topics": topics})
    return settings.model_copy(update={"feeds": demo_feeds(base_url), "poller": poller, "kafka": kafka})


# ------------------------------------------------------------------------------------------ the demo alert


class AlertReceiver:
    """A local webhook: records each alert with its receipt time; `fresh()` hands out the ones not yet shown."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._shown = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    outer.received.append((time.time(), json.loads(body)))
                    self.send_response(204)
                except ValueError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fresh(self) -> list[tuple[float, dict[str, Any]]]:
        new = self.received[self._shown :]
        self._shown += len(new)
        return new

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_alert_settings(alerts: AlertSettings) -> AlertSettings:
    """The demo's own subscriptions index, alert log, digest index and consumer group: the configured + `-demo`."""
    return alerts.model_copy(
        update={
            "subscriptions_index": f"{alerts.subscriptions_index}-demo",
            "alerts_index": f"{alerts.alerts_index}-demo",
            "digest_index": f"{alerts.digest_index}-demo",
            "group_id": f"{alerts.group_id}-demo",
            "allow_private_hosts": [*alerts.allow_private_hosts, "127.0.0.1"],  # the demo's local webhook
        }
    )


def alert_env(alerts: AlertSettings) -> dict[str, str]:
    """The environment that gives the alerting child process these alert settings."""
    keys = ("subscriptions_index", "alerts_index", "digest_index", "group_id")
    env = {f"NEWSFLOW_ALERTS__{k.upper()}": str(getattr(alerts, k)) for k in keys}
    return {**env, "NEWSFLOW_ALERTS__ALLOW_PRIVATE_HOSTS": json.dumps(alerts.allow_private_hosts)}


def skip_to_end(settings: Settings, group_id: str) -> None:
    """Commit the enriched topic's end offsets for `group_id`: the demo's alerting stage reads only this run's
    articles, not whatever earlier runs (or `newsflow run`) left in the topic."""
    topic = settings.kafka.topics.enriched
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if partitions:
            ends = consumer.end_offsets(partitions)
            consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in partitions})
    finally:
        consumer.close()


def announce(body: dict[str, Any]) -> str:
    """What the webhook prints as an alert arrives."""
    return f'webhook received a "{body.get("kind")}" alert: {body.get("title")}'


def describe_alert(received_at: float, body: dict[str, Any]) -> str:
    """One line per alert: title, sources, and how long after the poll of its first report it arrived."""
    polled = body.get("polled_at")
    after = f", {received_at - datetime.fromisoformat(polled).timestamp():.1f} s from poll to webhook" if polled else ""
    sources = body.get("sources") or []
    return f'"{body.get("title")}" | {len(sources)} sources: {", ".join(sources)}{after}'


def wait_for_alerting(settings: Settings, child: supervisor.Child, produced: int, timeout_s: float) -> bool:
    """Until the alerting process has read `produced` articles and has no alert waiting or in flight (False if
    it exited or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.proc.poll() is None:
        beat = status.read_all(settings.stack.state_dir).get(f"alerts-{child.proc.pid}", {})
        if beat.get("consumed", 0) >= produced and beat.get("pending") == 0:
            return True
        time.sleep(0.5)
    return False


@dataclass
class Expected:
    """Ground truth written alongside the sample feeds: article id -> story label / original id."""

    story: dict[str, str]
    duplicate_of: dict[str, str | None]


def expected_outcome(folder: Path = DEMO_DIR) -> Expected:
    """Article ids are computed by the same parser the poller uses, so they match what gets indexed."""
    truth = yaml.safe_load((folder / "expected.yaml").read_text())["items"]
    ids: dict[str, str] = {}
    for path in sorted(folder.glob("*.xml")):
        parsed = parse_feed(path.read_bytes(), feed_url=f"demo/{path.name}", fetched_at=datetime.now(UTC))
        ids.update({a.url or "": a.id for a in parsed.items})
    by_link = {canonical_url(link): v for link, v in truth.items()}
    return Expected(
        story={ids[link]: v["story"] for link, v in by_link.items()},
        duplicate_of={
            ids[link]: (ids[canonical_url(v["duplicate_of"])] if v.get("duplicate_of") else None)
            for link, v in by_link.items()
        },
    )


def wait_for_articles(
    backend: SearchBackend,
    settings: Settings,
    ids: list[str],
    timeout_s: float,
    receiver: AlertReceiver | None = None,
) -> int:
    """Poll the index until every id is searchable (or time runs out); returns how many are. Alerts reaching
    `receiver` meanwhile are printed as they come."""
    started = time.monotonic()
    deadline = started + timeout_s
    found = 0
    progress = Progress(every_s=5.0)
    while time.monotonic() < deadline:
        for _, body in receiver.fresh() if receiver else []:
            progress.note(f"  {announce(body)}")
        backend.refresh()
        found = backend.count(settings.search.indices.articles, {"ids": {"values": ids}})
        progress.update(f"  indexed {found}/{len(ids)} sample articles ({time.monotonic() - started:.0f} s)")
        if found == len(ids):
            break
        time.sleep(2.0)
    progress.done()
    return found


def summarize(backend: SearchBackend, settings: Settings, expected: Expected) -> list[str]:
    """The closing summary: articles, stories, duplicates, top entities, and whether stories came out right."""
    docs = backend.get_many(settings.search.indices.articles, expected.story)
    got_story = {i: d["story_id"] for i, d in docs.items()}
    dups = {i: d.get("duplicate_of") for i, d in docs.items()}
    label_to_stories: dict[str, set[str]] = {}
    for i, label in expected.story.items():
        if i in got_story:
            label_to_stories.setdefault(label, set()).add(got_story[i])
    merged = len(set(got_story.values())) < len(label_to_stories)
    split = [label for label, stories in label_to_stories.items() if len(stories) > 1]
    entities: Counter[str] = Counter()
    for d in docs.values():
        for kind, names in (d.get("entities") or {}).items():
            entities.update(f"{n} ({kind})" for n in names)
    dup_ok = sum(1 for i, orig in expected.duplicate_of.items() if orig and dups.get(i) == orig)
    lines = [
        f"articles indexed: {len(docs)} of {len(expected.story)}",
        f"stories: {len(set(got_story.values()))} (expected {len(set(expected.story.values()))})"
        + ("" if not (split or merged) else f"; split: {', '.join(split) or '-'}; merged look-alikes: {merged}"),
        f"duplicates: {sum(1 for v in dups.values() if v)} marked, "
        f"{dup_ok} of {sum(1 for v in expected.duplicate_of.values() if v)} expected copies found",
        "top entities: " + ", ".join(f"{name} x{n}" for name, n in entities.most_common(8)),
    ]
    return lines


def alert_lines(receiver: AlertReceiver, sub: Subscription, finished: bool, log: Path) -> list[str]:
    """The summary's alert part: every alert the webhook received, or why there is none."""
    if not receiver.received:
        why = "" if finished else f" (the alerting stage did not finish in time: see {log})"
        return [f'alerts: none received for "{sub.query}"{why}']
    n = len(receiver.received)
    head = f'alerts: {n} for the subscription "{sub.query}", one per story (latency includes the worker start-up):'
    return [head, *(f"  {describe_alert(at, body)}" for at, body in receiver.received)]


def run(settings: Settings, *, keep_serving: bool = False) -> int:
    """Serve the sample feeds, run worker + indexer + alerting with a demo subscription, poll once, wait for the
    index and the alerts, print the summary; the subscription and the processes are gone at the end."""
    expected = expected_outcome()
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    backend.ensure_templates()
    alerts = demo_alert_settings(settings.alerts)
    skip_to_end(settings, alerts.group_id)
    store = SubscriptionStore(backend, alerts)
    receiver = AlertReceiver()
    hook = WebhookChannel(url=receiver.url)
    sub = store.add(Subscription(name=f"{DEMO_QUERY} (demo)", owner=DEMO_OWNER, query=DEMO_QUERY, channels=[hook]))
    try:
        with serve_directory(DEMO_DIR) as base_url, tempfile.TemporaryDirectory(prefix="newsflow-demo-") as scratch:
            print(f"demo: serving {len(list(DEMO_DIR.glob('*.xml')))} sample feeds at {base_url}")
            print(f'demo: subscribed to "{DEMO_QUERY}", alerts go to a local webhook at {receiver.url}')
            children = [
                supervisor.spawn("demo-worker", ["worker"], settings),
                supervisor.spawn("demo-indexer", ["indexer"], settings),
                supervisor.spawn("demo-alerts", ["alerts", "run"], settings, env=alert_env(alerts)),
            ]
            alerting = children[-1]
            try:
                polling = demo_settings(settings, base_url, Path(scratch) / "seen.sqlite")
                bus.ensure_topics(polling)
                poller = Poller(polling)
                results = asyncio.run(poller.poll_once())
                poller.close()
                produced = sum(r.new_items for r in results)
                print(
                    f"demo: polled {len(results)} feeds, {sum(not r.ok for r in results)} failed, "
                    f"{produced} new articles produced"
                )
                print("demo: waiting for worker (tagging + story assignment), indexer and alerting ...")
                wait_for_articles(backend, settings, list(expected.story), WAIT_FOR_INDEX_S, receiver)
                finished = wait_for_alerting(settings, alerting, produced, WAIT_FOR_ALERTS_S)
                for _, body in receiver.fresh():
                    print(f"  {announce(body)}")
                summary = [*summarize(backend, settings, expected), *alert_lines(receiver, sub, finished, alerting.log)]
                print("\n".join(["", "== newsflow demo summary ==", *summary]))
                print('\ntry:  .venv/bin/newsflow search "Putin North Korea"')
                if keep_serving:
                    print(f"serving the sample feeds at {base_url} (Ctrl-C to stop)")
                    while True:
                        time.sleep(3600)
            finally:
                supervisor.stop_all(children)
    finally:
        store.delete(sub.id, DEMO_OWNER)
        receiver.close()
    return 0
