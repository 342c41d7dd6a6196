"""A transactional outbox for the poller: a feed's new items and its state record reach Kafka together or not
at all, so a poller killed at any moment never produces an item twice and never skips one.

The state record (`kafka.topics.feed_state`, the feed's `recent_ids` among it) is what tells a restarted poller
which items it already produced; written in the same transaction as the items, it cannot say "produced" for an
item that is not there, nor miss one that is (consumers read with isolation_level=read_committed). Polls of many
feeds finish at once, so transactions are group commits: whatever records are waiting when the previous
transaction ends go into the next one, and every caller learns the outcome of the transaction it was in.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from pipeline.settings import Settings
from pipeline.stream import bus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    topic: str
    key: str
    value: bytes | None


class TransactionalOutbox:
    """`send(records)` blocks until the transaction holding them is committed (or raises if it was aborted)."""

    def __init__(self, settings: Settings, transactional_id: str) -> None:
        self.settings = settings
        self._producer = bus.producer(
            settings,
            transactional_id=transactional_id,
            # A crashed poller's open transaction holds back read_committed consumers until it times out.
            transaction_timeout_ms=int(settings.poller.transaction_timeout_s * 1000),
        )
        self._producer.init_transactions()
        self._waiting: list[tuple[list[Record], Future[None]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def send(self, records: list[Record], *, wait: bool = True) -> None:
        """Into the next transaction; `wait=False` for advisory records (a feed state after a 304), whose loss
        costs one extra poll: the caller does not wait for the commit, a failure is only logged. Records keep
        their order either way (one queue, one transaction at a time)."""
        if not records:
            return
        done: Future[None] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("outbox closed")
            self._waiting.append((records, done))
            self._cond.notify()
        if wait:
            done.result()
        else:
            done.add_done_callback(_log_failure)

    def close(self) -> None:
        """Commit what is waiting, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._producer.close(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closed)
                batch, self._waiting = self._waiting, []
                if not batch and self._closed:
                    return
            self._commit(batch)

    def _commit(self, batch: list[tuple[list[Record], Future[None]]]) -> None:
        try:
            self._producer.begin_transaction()
            for records, _ in batch:
                for r in records:
                    self._producer.send(r.topic, key=r.key, value=r.value)
            self._producer.commit_transaction()
        except Exception as exc:
            log.warning("a transaction of %d feed(s) failed (%s); their items are produced again next poll",
                        len(batch), exc)
            try:
                self._producer.abort_transaction()
            except Exception:  # the broker aborts it anyway once it times out
                log.debug("abort failed", exc_info=True)
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)


def _log_failure(done: Future[None]) -> None:
    if (exc := done.exception()) is not None:
        log.debug("advisory records lost with an aborted transaction: %s", exc)
