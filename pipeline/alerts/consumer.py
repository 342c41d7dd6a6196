"""The alerting stage: enriched articles from Kafka -> alert claims -> deliveries.

At least once, and still exactly one alert: offsets are committed only after the claims of a poll's articles
are written to the alerts log; a replay (crash, rebalance, a fresh consumer group) claims the same dedup keys
again, gets 409s and sends nothing. Delivery runs from the log on a thread pool, so a dead webhook retrying
never stops the consumer or any other alert. Between polls the stage also flushes the digests whose period ended.
Each process reports a heartbeat (`alerts-<pid>`) for
`newsflow status` and `newsflow run`'s status line.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from kafka import KafkaConsumer
from pydantic import ValidationError

from pipeline import status
from pipeline.alerts.dispatch import Clock, Dispatcher
from pipeline.models import EnrichedArticle, is_story_move, utcnow
from pipeline.search import connect
from pipeline.settings import AlertSettings, Settings

log = logging.getLogger(__name__)


def make_consumer(settings: Settings, alerts: AlertSettings) -> KafkaConsumer:
    """Own consumer group: alerting reads the enriched topic independently of the indexer."""
    return KafkaConsumer(
        settings.kafka.topics.enriched,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=alerts.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # the assign stage writes in transactions
        max_poll_records=500,
        client_id="newsflow-alerts",
    )


def parse(raw: bytes) -> EnrichedArticle | None:
    """An enriched article, or None for a record no alert can come from: a story move (its articles already
    alerted, or not, when they came) is skipped quietly, anything unreadable is logged and skipped."""
    if raw and is_story_move(raw):
        return None
    try:
        return EnrichedArticle.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("skipping an unreadable enriched record: %s", str(exc).splitlines()[0])
        return None


def run(
    settings: Settings,
    alerts: AlertSettings | None = None,
    stop: threading.Event | None = None,
    clock: Clock = utcnow,
) -> int:
    """`newsflow alerts run`: consume until `stop` is set (or SIGTERM/SIGINT in the main thread). `clock` decides
    digest periods (a test moves it past a period's end instead of waiting for it)."""
    alerts = alerts or settings.alerts
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    backend = connect(settings.search)
    dispatcher = Dispatcher(settings, alerts, backend, clock=clock)
    dispatcher.setup()
    consumer = make_consumer(settings, alerts)
    beat = f"alerts-{os.getpid()}"  # one file per process: the status line adds them up
    state_dir = settings.stack.state_dir
    try:
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=alerts.poll_timeout_ms)
            records = [r for rs in batches.values() for r in rs]
            for record in records:
                article = parse(record.value)
                if article is not None:
                    dispatcher.process(article)  # raises if the log is unreachable: nothing is committed
            if records:
                consumer.commit()
                dispatcher.figures.consumed += len(records)
            dispatcher.deliver_due()
            status.write(beat, dispatcher.status(), state_dir=state_dir)
        # Let claimed alerts leave before exiting (their settle time is short); the rest resume as orphans.
        deadline = time.monotonic() + alerts.settle_s + 1.0
        while dispatcher.busy and time.monotonic() < deadline:
            dispatcher.deliver_due()
            time.sleep(0.05)
    finally:
        consumer.close()
        dispatcher.close(wait=True)
        backend.close()
        status.write(beat, {**dispatcher.status(), "state": "stopped"}, force=True, state_dir=state_dir)
    return 0
