"""Digests: hourly/daily subscriptions get one message per period listing the stories that matched in it.

Matches are collected durably in the digest index, one document per (subscription, story): the first match files
the story (its `matched_at` decides the period), later reports of it refresh title and sources while it waits, so
a replay or a second worker never adds it twice, and a story is in one digest only.

A flush, for each frequency, takes the latest finished period (plus `digest_grace_s`, so matches written at its
very end are in) and, for every subscription with collected stories before its end:

1. opens the digest in the alerts log under (subscription, period) with `op_type=create`: one flusher wins, any
   other (another worker, `newsflow alerts digest`, a retry) gets a 409 and moves on;
2. claims the waiting stories one by one (`collected -> included`, a scripted update, so a story can only be
   claimed by one digest even when two periods are flushed at once);
3. seals the digest with the claimed stories (`collecting -> pending`, guarded by sequence number). From there it
   is delivered exactly like an instant alert: one worker wins `pending -> sending`, retries, dead-letter.

A flusher that dies between 1 and 3 leaves a `collecting` digest that any flush resumes after `orphan_after_s`.
Stories that missed their period's digest (written after it was sealed) go out with the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.alerts.alert_log import AlertLog
from pipeline.alerts.models import Alert, Digest, DigestFrequency, DigestItem
from pipeline.alerts.models import dedup_key as make_key
from pipeline.alerts.periods import DIGEST_FREQUENCIES, cut, period_length
from pipeline.alerts.store import SubscriptionStore, create_index, refresh_story
from pipeline.search.backend import SearchBackend
from pipeline.settings import AlertSettings

MAX_SUBSCRIPTIONS = 10_000  # subscriptions with a digest due, per frequency and flush


def item_key(subscription_id: str, story_id: str) -> str:
    return make_key(subscription_id, story_id, "digest")


def digest_items_mappings() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "dynamic": False,
        "properties": {
            "subscription_id": keyword,
            "story_id": keyword,
            "frequency": keyword,
            "status": keyword,  # collected -> included
            "digest": keyword,  # the key of the digest that claimed it
            "matched_at": {"type": "date"},
            "story_revision": {"type": "integer"},
        },
    }


_CLAIM = (
    "if (ctx._source.status != 'collected') { ctx.op = 'noop'; return; } "
    "ctx._source.status = 'included'; ctx._source.digest = params.key;"
)
_RELEASE = (
    "if (ctx._source.status != 'included' || ctx._source.digest != params.key) { ctx.op = 'noop'; return; } "
    "ctx._source.status = 'collected'; ctx._source.digest = null;"
)


class DigestBook:
    """The digest index: stories waiting for their subscription's next digest."""

    def __init__(self, backend: SearchBackend, alerts: AlertSettings) -> None:
        self.client: Any = backend.client
        self.index = alerts.digest_index
        self._ready = False

    def ensure_index(self) -> None:
        """Created on the first match of a digest subscription, not before (most setups have none)."""
        if not self._ready:
            create_index(self.client, self.index, digest_items_mappings())
            self._ready = True

    def collect(self, alert: Alert, frequency: DigestFrequency, matched_at: datetime) -> None:
        """File the alert's story for its subscription's digest (an upsert: first match files, later refresh)."""
        self.ensure_index()
        item = DigestItem(
            story_id=alert.story_id,
            title=alert.title,
            sources=alert.sources,
            article_ids=alert.article_ids,
            story_revision=alert.story_revision,
            polled_at=alert.polled_at,
            matched_at=matched_at,
        )
        doc = {
            **item.model_dump(mode="json"),
            "subscription_id": alert.subscription_id,
            "frequency": frequency,
            "status": "collected",
            "digest": None,
        }
        self.client.update(
            index=self.index,
            id=item_key(alert.subscription_id, alert.story_id),
            body={"script": refresh_story(alert, "collected"), "upsert": doc},
            retry_on_conflict=5,
        )

    def refresh(self) -> None:
        """Make every acknowledged match searchable: a flush must see what was written before it started."""
        self.client.indices.refresh(index=self.index, ignore_unavailable=True)

    def due(self, frequency: DigestFrequency, until: datetime) -> list[str]:
        """Subscriptions with stories collected before `until`."""
        body = {
            "size": 0,
            "query": self._waiting(until, {"term": {"frequency": frequency}}),
            "aggs": {"subs": {"terms": {"field": "subscription_id", "size": MAX_SUBSCRIPTIONS}}},
        }
        found = self.client.search(index=self.index, body=body, ignore_unavailable=True)
        return [b["key"] for b in (found.get("aggregations") or {}).get("subs", {}).get("buckets", [])]

    def claim(self, subscription_id: str, until: datetime, key: str, limit: int) -> int:
        """Claim up to `limit` of the subscription's waiting stories (oldest first) for digest `key`; returns how
        many this call won (a story another flush claimed first is left to it)."""
        if limit <= 0:
            return 0
        body = {
            "size": limit,
            "_source": False,
            "query": self._waiting(until, {"term": {"subscription_id": subscription_id}}),
            "sort": [{"matched_at": "asc"}],
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        won = 0
        for hit in hits:
            script = {"lang": "painless", "source": _CLAIM, "params": {"key": key}}
            result = self.client.update(index=self.index, id=hit["_id"], body={"script": script}, retry_on_conflict=5)
            won += result.get("result") == "updated"
        return won

    def claimed(self, key: str, size: int) -> list[DigestItem]:
        """The stories claimed for digest `key`, in the order they first matched."""
        self.refresh()
        body = {"size": size, "query": {"term": {"digest": key}}, "sort": [{"matched_at": "asc"}]}
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [DigestItem.model_validate({k: h["_source"][k] for k in DigestItem.model_fields}) for h in hits]

    def release(self, digest: Digest, keep: set[str], size: int) -> None:
        """Put stories claimed for `digest` but not in it as sealed back in the queue (for the next one)."""
        key = digest.dedup_key
        for item in self.claimed(key, size):
            if item.story_id in keep:
                continue
            script = {"lang": "painless", "source": _RELEASE, "params": {"key": key}}
            self.client.update(
                index=self.index,
                id=item_key(digest.subscription_id, item.story_id),
                body={"script": script},
                retry_on_conflict=5,
            )

    def drop(self, subscription_id: str) -> None:
        """Forget the waiting stories of a deleted subscription."""
        scope = [{"term": {"subscription_id": subscription_id}}, {"term": {"status": "collected"}}]
        query = {"bool": {"filter": scope}}
        self.client.delete_by_query(index=self.index, body={"query": query}, conflicts="proceed", refresh=True)

    @staticmethod
    def _waiting(until: datetime, scope: dict[str, Any]) -> dict[str, Any]:
        return {
            "bool": {
                "filter": [
                    scope,
                    {"term": {"status": "collected"}},
                    {"range": {"matched_at": {"lt": until.astimezone(UTC).isoformat()}}},
                ]
            }
        }


class Digests:
    """Flushes the digests due at a given moment (the clock is passed in, so periods are testable)."""

    def __init__(self, store: SubscriptionStore, log: AlertLog, book: DigestBook, alerts: AlertSettings) -> None:
        self.store, self.log, self.book, self.alerts = store, log, book, alerts

    def flush(self, now: datetime, *, early: bool = False) -> list[str]:
        """Open, fill and seal every digest due at `now` (`early`: also the current period, up to now); returns
        the keys of the digests ready for delivery."""
        self.book.refresh()
        ready: list[str] = []
        for frequency in DIGEST_FREQUENCIES:
            due = cut(now, period_length(frequency, self.alerts), self.alerts.digest_grace_s, early=early)
            for sub_id in self.book.due(frequency, due.until):
                sub = self.store.get(sub_id)
                if sub is None:
                    self.book.drop(sub_id)
                    continue
                digest = Digest(
                    subscription_id=sub_id, frequency=frequency, period_start=due.period.start, period_end=due.until
                )
                version = self.log.open_digest(digest, sub)
                if version is not None and self.seal(digest, version):
                    ready.append(digest.dedup_key)
        stale = datetime.now(UTC) - timedelta(seconds=self.alerts.orphan_after_s)
        for digest, version in self.log.stale_digests(stale):
            if self.seal(digest, version):
                ready.append(digest.dedup_key)
        return ready

    def seal(self, digest: Digest, version: tuple[int, int]) -> bool:
        """Claim the waiting stories and seal the digest; True if it holds stories to deliver."""
        key, limit = digest.dedup_key, self.alerts.digest_max_stories
        already = len(self.book.claimed(key, limit))  # > 0 only when resuming a dead flusher's digest
        self.book.claim(digest.subscription_id, digest.period_end, key, limit - already)
        sealed = digest.model_copy(update={"items": self.book.claimed(key, limit)})
        if self.log.seal_digest(sealed, version):
            return bool(sealed.items)
        # Another flusher sealed this digest first: what it listed is final, anything else we claimed goes back.
        doc = self.log.get(key)
        if doc is not None and doc["_source"].get("status") != "collecting":
            self.book.release(digest, {i["story_id"] for i in doc["_source"].get("items", [])}, limit)
        return False
