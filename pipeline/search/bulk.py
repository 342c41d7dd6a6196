"""Writing prepared batches to the search engine: the writer threads that keep bulk requests in flight while
the consumer thread reads and commits in order (`BulkWriter`), and the cache of acknowledged story revisions
that keeps snapshots the engine would refuse out of the requests (`StoryRevisions`)."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from pipeline.models import DeadLetter, EnrichedArticle, StoryMove
from pipeline.search.backend import BulkOutcome

Item = tuple[dict[str, Any], bytes]  # a bulk action and its encoded lines
Message = EnrichedArticle | StoryMove  # what the enriched topic carries


@dataclass
class Prepared:
    """One batch ready to send: parsed messages (with their records), early dead letters, bulk actions with
    their encoded lines."""

    parsed: list[tuple[ConsumerRecord, Message]]
    dead: list[DeadLetter]
    items: list[Item]
    moves: int = 0  # story moves among the messages: written only after every earlier batch (see `_loop`)


@dataclass
class Written:
    """What writing one batch produced: records to dead-letter and how many articles were acknowledged."""

    dead: list[DeadLetter]
    indexed: int
    stale_skipped: int = 0  # story snapshots left out as older than one the engine holds


class StoryRevisions:
    """The newest story revision this indexer knows the engine holds, for the most recently written stories.

    Story documents are written with external versioning, so a snapshot older than the indexed one is refused
    (409) anyway; with several partitions, snapshots of one story arrive out of order and many are. Knowing
    the acknowledged revision lets the indexer leave those out of the request instead of making the engine
    parse and refuse them. Only acknowledged writes count (a 409 also proves the engine holds a newer one),
    so a snapshot is skipped only when the engine would refuse it; equal revisions are still sent (a replay
    rewrites itself, as before). Bounded: the least recently written stories are forgotten first, which only
    means their old snapshots are sent and refused by the engine as before.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()  # shared by the writer threads

    def drop_stale(self, items: list[Item]) -> list[Item]:
        """The items without story snapshots older than the acknowledged revision of their story."""
        known = self._known
        if not known:
            return items
        with self._lock:
            return [
                (a, line)
                for a, line in items
                if "version_type" not in a or a["version"] >= known.get(a["_id"], a["version"])
            ]

    def record(self, outcomes: list[BulkOutcome]) -> None:
        """Remember the revisions the engine acknowledged (written, or refused because it holds a newer one)."""
        if self.capacity <= 0:
            return
        known = self._known
        acknowledged = [o.action for o in outcomes if "version_type" in o.action and (o.ok or o.stale_version)]
        with self._lock:
            for action in acknowledged:
                story, revision = action["_id"], action["version"]
                revision = max(revision, known.pop(story, revision))
                known[story] = revision  # re-inserted: the newest entries are at the end
            while len(known) > self.capacity:
                del known[next(iter(known))]


Done = tuple[list[ConsumerRecord], Written | BaseException]


class BulkWriter:
    """Writer threads: write prepared batches, up to `workers` at a time, and hand the results back in order.

    A worker takes the next batch itself the moment it is free, so the engine does not wait for the consumer
    thread to wake up, notice and hand over more work. With two or more workers, two bulk requests are in
    flight: a single request is indexed by one engine thread, so one at a time leaves a core idle. At most
    `ahead` batches are handed over and not yet settled, which bounds memory and how far writes run ahead of
    commits. Workers never touch Kafka. Results come back in submission order whatever order the requests
    finish in, so offsets are committed in order; after a batch fails (an exception), no batch not yet
    started is written: the consumer thread must not commit past a batch that was not acknowledged.
    """

    def __init__(self, write: Callable[[Prepared], Written], *, workers: int = 1, ahead: int | None = None) -> None:
        self.ahead = max(ahead or workers + 1, workers)
        self._write = write
        self._todo: queue.SimpleQueue[tuple[int, Prepared] | None] = queue.SimpleQueue()
        self._results: dict[int, Written | BaseException] = {}
        self._waiting: collections.deque[tuple[int, list[ConsumerRecord]]] = collections.deque()
        self._finished = threading.Condition()
        self._failure: BaseException | None = None  # the first batch that failed: later ones are not written
        self._closing = False
        self._next_seq = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"bulk-writer-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> int:
        """Batches handed over whose result has not been taken yet."""
        return len(self._waiting)

    @property
    def full(self) -> bool:
        return self.pending >= self.ahead

    def submit(self, records: list[ConsumerRecord], prepared: Prepared) -> None:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._waiting.append((seq, records))
        self._todo.put((seq, prepared))

    def next_done(self, *, block: bool) -> tuple[list[ConsumerRecord], Written] | None:
        """The oldest batch once finished (waiting for it if `block`), or None; re-raises its failure."""
        if not self._waiting:
            return None
        seq, records = self._waiting[0]
        with self._finished:
            if block:
                self._finished.wait_for(lambda: seq in self._results)
            elif seq not in self._results:
                return None
            result = self._results.pop(seq)
        self._waiting.popleft()
        if isinstance(result, BaseException):
            raise result
        return records, result

    def close(self) -> None:
        """Let the batches being written finish, then stop the threads (batches not yet started are dropped)."""
        self._closing = True
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while (item := self._todo.get()) is not None:
            seq, prepared = item
            if self._closing:
                continue
            result: Written | BaseException
            if self._failure is not None:  # not written: it stays uncommitted, and the cause is raised for it
                result = self._failure
            else:
                try:
                    result = self._write(prepared)
                except BaseException as exc:  # handed to the consumer thread, which raises it
                    self._failure = result = exc
            with self._finished:
                self._results[seq] = result
                self._finished.notify_all()
