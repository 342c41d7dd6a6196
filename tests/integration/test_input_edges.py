"""Where input enters and output leaves, on loopback against the real Kafka and OpenSearch:

- the Kafka alert channel posts only to the operator's allow-list, never into the pipeline's own topics or
  Kafka's internals: refused by the real CLI and the real API (422, nothing stored), delivered to a listed topic;
- a dead letter read back from Kafka keeps the partition, offset and exact bytes of the record it sets aside;
- `newsflow run` whose stdout reader has gone stops every child on SIGINT;
- `newsflow alerts log` into a pipe closed early (`| head -1`) ends quietly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from kafka import TopicPartition

from pipeline.alerts.alert_log import AlertLog
from pipeline.alerts.delivery import Senders
from pipeline.alerts.messages import render
from pipeline.alerts.models import Alert, KafkaChannel
from pipeline.api.alerts import API_KEY_HEADER
from pipeline.search import connect
from pipeline.stream import bus
from pipeline.stream.loops import AtLeastOnceLoop
from pipeline.stream.tag import TagStage
from tests.conftest import Isolated
from tests.integration.helpers import api_process, read_records, read_topic, stop, wait_until
from tests.unit.alerts.samples import sub
from tests.unit.stream.test_stream import FakeTagger, article

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "ann-key-0123456789"


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=ROOT,
        check=False,
    )


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


# --- the Kafka channel -------------------------------------------------------------------------------------


@pytest.fixture
def allowed(isolated: Isolated) -> Iterator[str]:
    """The one topic this test's operator allows alerts to post to; the subscriptions index is removed after."""
    topic = f"{isolated.settings.kafka.topics.articles.split('.')[0]}.alerts-out"
    isolated.env["NEWSFLOW_ALERTS__KAFKA_TOPICS"] = json.dumps([topic])
    yield topic
    backend = connect(isolated.settings.search)
    backend.client.indices.delete(index=isolated.settings.alerts.subscriptions_index, ignore=[404])
    backend.close()


def test_the_cli_refuses_a_kafka_channel_into_the_pipeline_or_off_the_list(isolated: Isolated, allowed: str) -> None:
    topics = isolated.settings.kafka.topics
    add = ("subscriptions", "--owner", "ann", "add", "loop", "North Korea", "--kafka")
    cases = {
        # this run's own topic: it cannot be listed (a config error, below), so it is never on the list
        topics.articles: "not in the operator's allow-list alerts.kafka_topics",
        "newsflow.articles.v1": "one of the pipeline's own topics",  # the default names, whatever is configured
        "__consumer_offsets": "an internal Kafka topic",
        "someone.elses": "not in the operator's allow-list alerts.kafka_topics",
    }
    for topic, said in cases.items():
        done = run_cli(isolated.env, *add, topic)
        assert done.returncode == 1 and done.stdout == "", done.stderr
        assert one_line(done.stderr) == f"newsflow: error: refusing Kafka topic {topic!r}: {said}"
    off = run_cli({**isolated.env, "NEWSFLOW_ALERTS__KAFKA_TOPICS": "[]"}, *add, allowed)
    assert "the Kafka channel is off (alerts.kafka_topics is empty)" in one_line(off.stderr)
    listed_own = run_cli({**isolated.env, "NEWSFLOW_ALERTS__KAFKA_TOPICS": json.dumps([topics.articles])}, "status")
    assert listed_own.returncode == 2
    assert "invalid setting alerts.kafka_topics" in one_line(listed_own.stderr)
    done = run_cli(isolated.env, *add, allowed)
    assert done.returncode == 0, done.stderr
    listed = run_cli(isolated.env, "subscriptions", "--owner", "ann", "list", "--json")
    assert [c["topic"] for s in map(json.loads, listed.stdout.splitlines()) for c in s["channels"]] == [allowed]


def test_the_api_refuses_them_with_422_and_stores_nothing(isolated: Isolated, allowed: str, tmp_path: Path) -> None:
    headers = {API_KEY_HEADER: KEY}
    with api_process(isolated.env, {"ann": KEY}, tmp_path / "api.log") as (base, _):

        def create(topic: str) -> httpx.Response:
            body = {"name": "loop", "query": "Korea", "channels": [{"type": "kafka", "topic": topic}]}
            return httpx.post(f"{base}/subscriptions", json=body, headers=headers, timeout=30)

        own = create(isolated.settings.kafka.topics.articles)
        assert own.status_code == 422 and "refusing Kafka topic" in own.json()["detail"]
        default = create("newsflow.articles.v1")
        assert default.status_code == 422 and "one of the pipeline's own topics" in default.json()["detail"]
        internal = create("__consumer_offsets")
        assert internal.status_code == 422 and "an internal Kafka topic" in internal.json()["detail"]
        assert create(allowed).status_code == 201
        stored = httpx.get(f"{base}/subscriptions", headers=headers, timeout=30).json()
        assert [c["topic"] for s in stored for c in s["channels"]] == [allowed]


def test_an_alert_reaches_a_listed_topic_and_never_an_own_one(isolated: Isolated, allowed: str) -> None:
    settings = isolated.settings.model_copy(
        update={"alerts": isolated.settings.alerts.model_copy(update={"kafka_topics": [allowed]})}
    )
    senders = Senders(settings, settings.alerts)
    try:
        subscription = sub(channels=[KafkaChannel(topic=allowed)])
        alert = Alert(subscription_id=subscription.id, story_id="s-1", kind="new", title="Volcano", sources=["A"])
        senders.send(render(alert, subscription), KafkaChannel(topic=allowed))
        (posted,) = read_topic(settings, allowed, 10_000)
        assert posted["story_id"] == "s-1" and posted["title"] == "Volcano"
        before = len(read_records(settings, settings.kafka.topics.articles, 5000))
        with pytest.raises(Exception, match="one of the pipeline's own topics"):
            senders.send(render(alert, subscription), KafkaChannel(topic=settings.kafka.topics.articles))
        assert len(read_records(settings, settings.kafka.topics.articles, 5000)) == before
    finally:
        senders.close()
        admin = bus.admin(settings)
        admin.delete_topics([allowed])
        admin.close()


# --- dead letters ------------------------------------------------------------------------------------------


def test_a_dead_letter_read_back_from_kafka_keeps_partition_offset_and_bytes(isolated: Isolated) -> None:
    settings = isolated.settings
    topics = settings.kafka.topics
    bus.ensure_topics(settings)
    raw = b"\xff\xfe\x00 not UTF-8, not JSON"
    poison = article("poison-1", title="poison").model_dump_json(indent=2).encode()  # the tagger crashes on it
    prod = bus.producer(settings)
    placed = {
        "raw": prod.send(topics.articles, key="raw", value=raw, partition=2).get(30),
        "poison": prod.send(topics.articles, key="poison", value=poison, partition=1).get(30),
    }
    prod.send(topics.articles, key="good", value=article("good-1").model_dump_json().encode(), partition=0).get(30)
    prod.close()
    loop = AtLeastOnceLoop(
        settings,
        TagStage(settings, FakeTagger()),  # type: ignore[arg-type]
        source=topics.articles,
        group=settings.worker.tag_group,
        batch_size=8,
    )
    loop.start()
    try:
        dead = wait_until(lambda: len(d := read_topic(settings, topics.deadletter, 2000)) >= 2 and d, 60, "2 dead")
    finally:
        loop.stop()
        loop.join(30)
    by_partition = {d["partition"]: d for d in dead}
    assert len(dead) == 2 and set(by_partition) == {1, 2}
    undecodable, crashed = by_partition[2], by_partition[1]
    assert (undecodable["topic"], undecodable["offset"]) == (topics.articles, placed["raw"].offset)
    assert base64.b64decode(undecodable["payload_base64"]) == raw
    assert (crashed["topic"], crashed["offset"]) == (topics.articles, placed["poison"].offset)
    assert crashed["payload"].encode() == poison and crashed["payload_base64"] is None
    assert crashed["reason"] == "tagging failed: RuntimeError: model crashed"
    assert len(read_records(settings, topics.tagged, 5000)) == 1  # the good one flowed on
    ends = bus.admin(settings)
    try:
        committed = ends.list_consumer_group_offsets(settings.worker.tag_group)
    finally:
        ends.close()
    assert committed[TopicPartition(topics.articles, 2)].offset == placed["raw"].offset + 1


# --- the feed registry ------------------------------------------------------------------------------------


def test_feeds_add_edits_only_what_was_given_in_the_real_registry(isolated: Isolated) -> None:
    url = "http://127.0.0.1:9/world.xml"  # allow-listed loopback: the door check needs no DNS
    added = run_cli(isolated.env, "feeds", "add", url, "--name", "World", "--tag", "world", "--tag", "news")
    assert added.returncode == 0 and added.stdout.startswith("added "), added.stderr
    edited = run_cli(isolated.env, "feeds", "add", url, "--min-interval", "900")
    assert edited.returncode == 0 and edited.stdout.endswith(f"{url}: min_interval_s 900.0\n"), edited.stderr
    (row,) = map(json.loads, run_cli(isolated.env, "feeds", "list", "--json").stdout.splitlines())
    assert (row["name"], row["tags"], row["enabled"]) == ("World", ["world", "news"], True)
    refused = run_cli(isolated.env, "feeds", "add", "gopher://example.com/1")
    assert refused.returncode == 1 and "only http and https" in one_line(refused.stderr)


# --- closed pipes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigint", [True, False], ids=["tee-then-ctrl-c", "head-1"])
def test_newsflow_run_with_its_reader_gone_stops_every_child(isolated: Isolated, tmp_path: Path, sigint: bool) -> None:
    """`make run | tee log`, then Ctrl-C: tee is gone first, and the supervisor must still stop everything.
    `newsflow run | head -1`: nobody reads any more, so it stops by itself (exit 141, as on SIGPIPE)."""
    env = {
        **os.environ,
        **isolated.env,
        "NEWSFLOW_FEEDS": "[]",
        "NEWSFLOW_STACK__STATE_DIR": str(tmp_path / "state"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    parent = psutil.Process(proc.pid)
    children: list[psutil.Process] = []
    try:
        assert proc.stdout.readline().startswith(b"newsflow: 0 feed(s)")
        children = wait_until(lambda: len(c := parent.children()) == 4 and c, 60, "four stages", interval=0.2)
        proc.stdout.close()  # the reader is gone
        if sigint:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        err = proc.stderr.read().decode()
    finally:
        with contextlib.suppress(psutil.Error):
            children = children or parent.children()
        if proc.poll() is None:
            stop(proc)
    _, alive = psutil.wait_procs(children, timeout=5)
    leaked = [p.cmdline() for p in alive]
    for p in alive:  # a regression must not leave them running on the shared machine
        p.kill()
    assert leaked == []
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141 or (sigint and code == 0), (code, err)  # 0 if the SIGINT came first


@pytest.fixture
def alert_log(isolated: Isolated) -> Iterator[None]:
    """A few sent alerts in this test's alerts log; the index is removed after."""
    backend = connect(isolated.settings.search)
    log = AlertLog(backend, isolated.settings.alerts)
    log.ensure_index()
    now = datetime.now(UTC)
    for i in range(5):
        doc = {
            "created_at": (now - timedelta(minutes=i)).isoformat(),
            "status": "sent",
            "kind": "new",
            "subscription_name": "korea",
            "title": f"Story {i}",
            "owner": "ann",
        }
        backend.client.index(index=isolated.settings.alerts.alerts_index, id=f"k{i}", body=doc)
    backend.client.indices.refresh(index=isolated.settings.alerts.alerts_index)
    yield
    backend.client.indices.delete(index=isolated.settings.alerts.alerts_index, ignore=[404])
    backend.close()


def test_alerts_log_into_head_ends_quietly(isolated: Isolated, alert_log: None) -> None:
    command = f"{sys.executable} -m pipeline alerts log | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, **isolated.env},
        cwd=ROOT,
        timeout=60,
    )
    assert done.stderr == "", done.stderr
    assert json.loads(done.stdout)["title"] == "Story 0"
    early = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "alerts", "log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **isolated.env},
        cwd=ROOT,
    )
    assert early.stdout is not None and early.stderr is not None
    early.stdout.close()  # closed before the command wrote its first line
    err = early.stderr.read().decode()
    assert early.wait(timeout=60) == 141 and err == ""
