"""The assign stage's state: three tables kept in memory and logged to one compacted changelog topic.

Each write marks its key; `changes()` yields the records that bring the changelog up to date (the latest value
of every changed key, a tombstone for a deleted one), and the stage writes them in the same Kafka transaction
as the outputs and input offsets they belong to. So the changelog holds exactly the state of the last committed
transaction, and `restore` (read_committed) rebuilds it for whichever worker takes the partition over. Values
are serialised when the transaction is written, not on every write, so in-place changes are captured too.

Changelog record key: `<table>/<key>`; value: the JSON value, or none (tombstone) when deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, MutableMapping
from typing import Any, TypeVar

import orjson
from kafka import KafkaConsumer, TopicPartition

from pipeline.stream import bus

log = logging.getLogger(__name__)

V = TypeVar("V")


class ChangelogTable(MutableMapping[str, V]):
    """A dict that remembers which keys changed since the last `clear_changes`."""

    def __init__(self) -> None:
        self.data: dict[str, V] = {}
        self.changed: set[str] = set()

    def __getitem__(self, key: str) -> V:
        return self.data[key]

    def __setitem__(self, key: str, value: V) -> None:
        self.data[key] = value
        self.changed.add(key)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.changed.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data


class ChangelogState:
    """The story engine's store (`stories`, `articles`, `keys`; see `pipeline.stories.store.StateStore`)."""

    def __init__(self) -> None:
        self.stories: ChangelogTable[dict[str, Any]] = ChangelogTable()
        self.articles: ChangelogTable[dict[str, Any]] = ChangelogTable()
        self.keys: ChangelogTable[str] = ChangelogTable()

    def _tables(self) -> dict[str, ChangelogTable[Any]]:
        return {"stories": self.stories, "articles": self.articles, "keys": self.keys}

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """Changelog records for every key changed since the last `clear_changes`."""
        records: list[tuple[bytes, bytes | None]] = []
        for name, table in self._tables().items():
            for key in table.changed:
                value = table.data.get(key)
                encoded = None if key not in table.data else orjson.dumps(value)
                records.append((f"{name}/{key}".encode(), encoded))
        return records

    def clear_changes(self) -> None:
        for table in self._tables().values():
            table.changed.clear()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record (restore)."""
        if key is None:
            return
        name, _, k = key.decode().partition("/")
        table = self._tables().get(name)
        if table is None:
            log.warning("skipping changelog record of unknown table %r", name)
            return
        if value is None:
            table.data.pop(k, None)
        else:
            table.data[k] = orjson.loads(value)

    def sizes(self) -> dict[str, int]:
        return {name: len(table) for name, table in self._tables().items()}


def restore(consumer: KafkaConsumer, tp: TopicPartition, timeout_s: float) -> ChangelogState:
    """Read the changelog partition from its start to its end (`consumer`: read_committed, no group).

    Call it after the stage's transactional producer was initialised: that fences the previous owner and
    completes its open transaction, so the end read here is final and nothing more of it can appear."""
    state = ChangelogState()
    started = time.monotonic()
    records = 0
    for r in bus.records_to_end(consumer, [tp], timeout_s):
        state.apply(r.key, r.value)
        records += 1
    state.clear_changes()
    log.info(
        "restored %s[%d]: %d records in %.1fs, %s",
        tp.topic,
        tp.partition,
        records,
        time.monotonic() - started,
        state.sizes(),
    )
    return state
