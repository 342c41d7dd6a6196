"""The poller's local SQLite seen-store: ids of items already produced (aged out after `poller.seen_ttl_days`)
and each feed's validators (ETag / Last-Modified) and last result, so a restart still sends a conditional GET.

The committed feed state in Kafka covers the last document read (`pipeline/ingest/poller.py`); this store,
updated after the commit, remembers older items. Pollers on one machine may share the file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from pipeline.ingest.results import FeedResult


class SeenStore:
    """Durable, bounded memory of produced item ids and per-feed validators (ETag / Last-Modified)."""

    def __init__(self, path: Path, ttl_days: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_days * 86400
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives a process crash, cheap commits
        self.db.execute("PRAGMA busy_timeout=10000")  # pollers on one machine may share the file
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, seen_at REAL NOT NULL)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS feeds (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT,"
            " status INTEGER, last_success REAL, last_error TEXT)"
        )
        self.db.commit()

    def unseen(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        known = {row[0] for row in self.db.execute(f"SELECT id FROM seen WHERE id IN ({marks})", ids)}
        return set(ids) - known

    def mark(self, ids: Iterable[str]) -> None:
        now = time.time()
        self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", [(i, now) for i in ids])
        self.db.commit()

    def expire(self) -> int:
        cur = self.db.execute("DELETE FROM seen WHERE seen_at < ?", (time.time() - self.ttl_s,))
        self.db.commit()
        return cur.rowcount

    def saved_validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) of the feed's last successful response, so a restart still sends a conditional
        GET; (None, None) for a feed never fetched."""
        row = self.db.execute("SELECT etag, last_modified FROM feeds WHERE url = ?", (url,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def record(self, result: FeedResult, etag: str | None = None, last_modified: str | None = None) -> None:
        now = time.time()
        if result.ok:
            self.db.execute(
                "INSERT INTO feeds (url, etag, last_modified, status, last_success, last_error)"
                " VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(url) DO UPDATE SET"
                " etag=COALESCE(excluded.etag, feeds.etag),"
                " last_modified=COALESCE(excluded.last_modified, feeds.last_modified),"
                " status=excluded.status, last_success=excluded.last_success, last_error=NULL",
                (result.url, etag, last_modified, result.status, now),
            )
        else:
            self.db.execute(
                "INSERT INTO feeds (url, status, last_error) VALUES (?, ?, ?) ON CONFLICT(url) DO UPDATE SET"
                " status=excluded.status, last_error=excluded.last_error",
                (result.url, result.status, result.error),
            )
        self.db.commit()

    def close(self) -> None:
        self.db.close()
