"""Self-healing for messages Faust fetched but never handed to an agent.

faust-streaming can drop fetched messages inside the worker without processing them: around recovery it skips
messages it considers stale and relies on a later seek to committed offsets to fetch them again, which does not
always happen (faust-streaming#596; measured here: a worker restarted after SIGKILL stalls about one run in five,
its agents idle, the dropped offsets a gap that also blocks every later commit). Nothing is lost in Kafka (the
offsets are uncommitted), but this process would never look at them again.

The watchdog notices the signature - the worker made no progress for a while, yet for some partition the client
has fetched past the committed offset and no message of that partition is in flight - and seeks that partition
back to its committed offset. The re-fetched messages are processed again; both stages are idempotent (tagging
is pure, assignment of a replayed article returns its first answer), so a rewind can only repeat work, never
change a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionView:
    """One input partition as the worker's consumer sees it."""

    position: int | None  # next offset the client will fetch
    committed: int  # next offset to process according to the group (the log start when nothing is committed)
    in_flight: bool  # a message of this partition is being processed right now

    @property
    def fetched_unprocessed(self) -> bool:
        return self.position is not None and self.position > self.committed and not self.in_flight


class StallWatchdog:
    """Decides which partitions to rewind: fetched-but-unprocessed for `after_s` while the worker stood still."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._progress: int | None = None
        self._suspects: dict[Hashable, tuple[PartitionView, float]] = {}

    def idle(self, progress: int) -> bool:
        """Record the progress counter; False (suspicions dropped) if the worker moved since the last look.

        Asked first, so the partition views (Kafka round trips) are only gathered while the worker stands still.
        """
        if progress != self._progress:
            self._progress = progress
            self._suspects.clear()
            return False
        return True

    def due(self, views: Mapping[Hashable, PartitionView]) -> list[Hashable]:
        """The partitions that have looked the same, fetched but unprocessed, for `after_s` of idleness."""
        now = self._clock()
        due: list[Hashable] = []
        for tp, view in views.items():
            if not view.fetched_unprocessed:
                self._suspects.pop(tp, None)
                continue
            seen = self._suspects.get(tp)
            if seen is None or seen[0] != view:  # new or changed: start the clock again
                self._suspects[tp] = (view, now)
            elif now - seen[1] >= self.after_s:
                due.append(tp)
                del self._suspects[tp]
        return due


async def partition_views(consumer: Any, topics: set[str]) -> dict[Any, PartitionView]:
    """Position, committed offset and in-flight state of the assigned partitions of `topics` (Faust consumer)."""
    tps = [tp for tp in consumer.assignment() if tp.topic in topics]
    if not tps:
        return {}
    busy = {m.tp for m in list(consumer._unacked_messages)}
    never_committed = [tp for tp in tps if consumer._committed_offset.get(tp) is None]
    starts = await consumer.earliest_offsets(*never_committed) if never_committed else {}
    views = {}
    for tp in tps:
        committed = consumer._committed_offset.get(tp)
        views[tp] = PartitionView(
            position=await consumer.position(tp),
            committed=committed if committed is not None else int(starts.get(tp) or 0),
            in_flight=tp in busy,
        )
    return views


async def rewind(consumer: Any, tp: Any, view: PartitionView) -> None:
    log.warning(
        "%s[%d]: fetched up to offset %s, committed offset still %d, nothing in flight and the worker idle; "
        "seeking back to %d to process them (a known faust recovery race)",
        tp.topic,
        tp.partition,
        view.position,
        view.committed,
        view.committed,
    )
    await consumer.seek(tp, view.committed)
