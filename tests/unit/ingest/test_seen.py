"""The seen-store: durable, aged-out item ids and per-feed validators (SQLite in a temporary folder)."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.ingest.results import FeedResult
from pipeline.ingest.seen import SeenStore

FEED = "https://alpha.example/rss"


# --- SeenStore: ids ----------------------------------------------------------------------------------------


def test_unseen_then_mark(store: SeenStore, db_path: Path) -> None:
    assert db_path.exists()
    assert store.unseen([]) == set()
    assert store.unseen(["a", "b", "c"]) == {"a", "b", "c"}
    store.mark(["a", "c"])
    assert store.unseen(["a", "b", "c", "d"]) == {"b", "d"}
    store.mark(iter(["b"]))  # any iterable, e.g. a generator
    assert store.unseen(["a", "b", "c"]) == set()


def test_seen_ids_survive_reopen(db_path: Path) -> None:
    first = SeenStore(db_path, ttl_days=30)
    first.mark(["a1", "a2"])
    first.close()
    second = SeenStore(db_path, ttl_days=30)
    try:
        assert second.unseen(["a1", "a2", "a3"]) == {"a3"}
    finally:
        second.close()


def test_expire_removes_only_rows_older_than_ttl(store: SeenStore) -> None:
    store.mark(["old", "recent", "new"])
    now = time.time()
    store.db.execute("UPDATE seen SET seen_at = ? WHERE id = 'old'", (now - 31 * 86400,))
    store.db.execute("UPDATE seen SET seen_at = ? WHERE id = 'recent'", (now - 29 * 86400,))
    store.db.commit()
    assert store.expire() == 1
    assert store.unseen(["old", "recent", "new"]) == {"old"}
    assert store.expire() == 0


def test_expire_with_tiny_ttl_forgets_everything(db_path: Path) -> None:
    s = SeenStore(db_path, ttl_days=1e-9)  # ~0.1 ms
    try:
        s.mark(["x", "y"])
        time.sleep(0.01)
        assert s.expire() == 2
        assert s.unseen(["x", "y"]) == {"x", "y"}
    finally:
        s.close()


def test_mark_again_refreshes_seen_at(store: SeenStore) -> None:
    store.mark(["a"])
    store.db.execute("UPDATE seen SET seen_at = 0")
    store.db.commit()
    store.mark(["a"])
    assert store.expire() == 0
    assert store.unseen(["a"]) == set()


# --- SeenStore: feed validators ----------------------------------------------------------------------------


def test_no_validators_for_unknown_feed(store: SeenStore) -> None:
    assert store.saved_validators(FEED) == (None, None)


def test_validators_after_successful_record(store: SeenStore) -> None:
    store.record(FeedResult(FEED, ok=True, status=200), etag='"v1"', last_modified="Fri, 01 Mar 2024 12:00:00 GMT")
    assert store.saved_validators(FEED) == ('"v1"', "Fri, 01 Mar 2024 12:00:00 GMT")
    assert store.saved_validators("https://other.example/rss") == (None, None)


def test_not_modified_keeps_previous_validators(store: SeenStore) -> None:
    store.record(FeedResult(FEED, ok=True, status=200), etag='"v1"', last_modified=None)
    store.record(FeedResult(FEED, ok=True, status=304, not_modified=True))  # 304 carries no new validators
    assert store.saved_validators(FEED) == ('"v1"', None)
    store.record(FeedResult(FEED, ok=True, status=200), etag='"v2"')
    assert store.saved_validators(FEED) == ('"v2"', None)


def test_failure_keeps_validators_and_records_error(store: SeenStore) -> None:
    store.record(FeedResult(FEED, ok=True, status=200), etag='"v1"')
    store.record(FeedResult(FEED, ok=False, status=None, error="HTTP 503 Service Unavailable"))
    assert store.saved_validators(FEED) == ('"v1"', None)
    row = store.db.execute("SELECT status, last_error, last_success FROM feeds WHERE url = ?", (FEED,)).fetchone()
    assert row[0] is None
    assert row[1] == "HTTP 503 Service Unavailable"
    assert row[2] is not None  # the earlier success is remembered
    store.record(FeedResult(FEED, ok=True, status=200))
    row = store.db.execute("SELECT status, last_error FROM feeds WHERE url = ?", (FEED,)).fetchone()
    assert row == (200, None)


def test_failure_of_a_new_feed_has_no_validators(store: SeenStore) -> None:
    store.record(FeedResult(FEED, ok=False, error="timeout"))
    assert store.saved_validators(FEED) == (None, None)
