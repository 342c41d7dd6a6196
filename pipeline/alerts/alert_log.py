"""The alert log: the alerts index, both the dedup record and the outbox (and the delivery log), one document
per alert or digest.

An alert is *claimed* with `op_type=create` under its dedup key (subscription, story, kind): a 409 means another
worker, an earlier run or a replay already claimed it, so nothing is sent twice. A claimed alert waits `pending`
until `deliver_after`; one worker wins `pending -> sending` (optimistic concurrency: seq_no and primary term) and
writes the result, `sent`, `partial` or `dead` (dead-letter), with attempts and the last error per channel. A crash
after the claim leaves a `pending` document that any worker resumes later (`orphans`). A digest is opened here
`collecting` under (subscription, period), sealed `pending` with its stories and delivered the same way.

Its own module so that the digest flusher (`digest.py`) and the dispatcher both use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.alerts.decision import Logged
from pipeline.alerts.messages import digest_title
from pipeline.alerts.models import Alert, Digest, Subscription
from pipeline.alerts.models import dedup_key as make_key
from pipeline.alerts.store import create_index, refresh_story
from pipeline.search.backend import SearchBackend
from pipeline.settings import AlertSettings

Status = Literal["collecting", "pending", "sending", "sent", "partial", "dead", "cancelled"]


def alerts_mappings() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "dynamic": False,
        "properties": {
            "subscription_id": keyword,
            "subscription_name": keyword,
            "owner": keyword,
            "story_id": keyword,
            "kind": keyword,
            "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
            "sources": keyword,
            "status": keyword,
            "attempts": {"type": "integer"},
            "last_error": {"type": "text"},
            "created_at": {"type": "date"},
            "polled_at": {"type": "date"},
            "frequency": keyword,
            "period_start": {"type": "date"},
            "period_end": {"type": "date"},
            "deliver_after": {"type": "date"},
            "finished_at": {"type": "date"},
            "latency_s": {"type": "float"},
            "deliveries": {"type": "object", "enabled": False},
        },
    }


def _unless_conflict(write: Callable[[], Any]) -> Any | None:
    """The engine's answer to a conditional write, or None if it refused it with a 409: someone else wrote first
    (both search clients carry the HTTP status of an error answer in `status_code`)."""
    try:
        return write()
    except Exception as exc:
        if getattr(exc, "status_code", None) == 409:
            return None
        raise


class AlertLog:
    """The alerts index: dedup claims, the delivery outbox and the delivery log in one document per alert."""

    def __init__(self, backend: SearchBackend, settings: AlertSettings) -> None:
        self.client: Any = backend.client
        self.index = settings.alerts_index

    def ensure_index(self) -> None:
        create_index(self.client, self.index, alerts_mappings())

    def logged_new(self, sub_ids: list[str], story_id: str) -> dict[str, Logged]:
        """The `new` alerts already claimed for this story, by subscription id (realtime mget: no refresh)."""
        if not sub_ids:
            return {}
        keys = [make_key(s, story_id, "new") for s in sub_ids]
        docs = self.client.mget(index=self.index, body={"ids": keys})["docs"]
        return {
            d["_source"]["subscription_id"]: Logged(d["_source"]["status"], len(d["_source"].get("sources", [])))
            for d in docs
            if d.get("found")
        }

    def claim(self, alert: Alert, sub: Subscription, deliver_after: datetime) -> bool:
        """Create the alert under its dedup key; False if it already exists (409): someone else has it."""
        doc = {
            **alert.model_dump(mode="json"),
            "subscription_name": sub.name,
            "owner": sub.owner,
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            "deliver_after": deliver_after.isoformat(),
            "deliveries": [],
        }
        return _unless_conflict(lambda: self.client.create(index=self.index, id=alert.dedup_key, body=doc)) is not None

    def refresh_pending(self, alert: Alert) -> None:
        """Newer story fields onto a still-pending alert (a no-op once delivery started or for older snapshots)."""
        script = refresh_story(alert, "pending")
        self.client.update(index=self.index, id=alert.dedup_key, body={"script": script}, retry_on_conflict=5)

    def get(self, key: str) -> dict[str, Any] | None:
        doc = self.client.get(index=self.index, id=key, ignore=[404])
        return dict(doc) if doc and doc.get("found") else None

    def start_delivery(self, key: str) -> dict[str, Any] | None:
        """Move `pending -> sending` if nobody else did (seq_no check); returns the alert document if we won."""
        doc = self.get(key)
        if doc is None or doc["_source"].get("status") != "pending":
            return None
        won = _unless_conflict(
            lambda: self.client.update(
                index=self.index,
                id=key,
                body={"doc": {"status": "sending"}},
                if_seq_no=doc["_seq_no"],
                if_primary_term=doc["_primary_term"],
            )
        )
        return None if won is None else dict(doc["_source"])

    def finish(
        self, key: str, status: Status, deliveries: list[dict[str, Any]], latency_s: float | None = None
    ) -> None:
        """The delivery result: overall status, attempts and the last error (for the dead-letter view), and
        `latency_s`, seconds from the poll of the report to the end of delivery."""
        errors = [d["last_error"] for d in deliveries if d.get("last_error")]
        doc = {
            "status": status,
            "deliveries": deliveries,
            "attempts": max((d["attempts"] for d in deliveries), default=0),
            "last_error": errors[-1] if errors else None,
            "finished_at": datetime.now(UTC).isoformat(),
            "latency_s": latency_s,
        }
        self.client.update(index=self.index, id=key, body={"doc": doc}, refresh=True)

    def open_digest(self, digest: Digest, sub: Subscription) -> tuple[int, int] | None:
        """Create the (subscription, period) digest, `collecting`; its (seq_no, primary_term) if we created it,
        None if it exists (another flusher, or this period was already sent)."""
        doc = {
            **digest.model_dump(mode="json"),
            "kind": "digest",
            "subscription_name": sub.name,
            "owner": sub.owner,
            "title": f"{digest.frequency} digest (collecting)",
            "status": "collecting",
            "attempts": 0,
            "last_error": None,
            "deliveries": [],
        }
        created = _unless_conflict(lambda: self.client.create(index=self.index, id=digest.dedup_key, body=doc))
        return None if created is None else (int(created["_seq_no"]), int(created["_primary_term"]))

    def seal_digest(self, digest: Digest, version: tuple[int, int]) -> bool:
        """`collecting -> pending` with its stories (`cancelled` if none are left), unless someone else sealed it
        since `version`; False then."""
        doc = {
            "items": [i.model_dump(mode="json") for i in digest.items],
            "sources": sorted({s for i in digest.items for s in i.sources}),
            "title": digest_title(digest),
            "status": "pending" if digest.items else "cancelled",
            "deliver_after": datetime.now(UTC).isoformat(),
        }
        sealed = _unless_conflict(
            lambda: self.client.update(
                index=self.index,
                id=digest.dedup_key,
                body={"doc": doc},
                if_seq_no=version[0],
                if_primary_term=version[1],
                refresh=True,
            )
        )
        return sealed is not None

    def stale_digests(self, older_than: datetime) -> list[tuple[Digest, tuple[int, int]]]:
        """Digests still `collecting` since before `older_than`: their flusher died before sealing them."""
        body = {
            "size": 1000,
            "seq_no_primary_term": True,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"kind": "digest"}},
                        {"term": {"status": "collecting"}},
                        {"range": {"created_at": {"lt": older_than.isoformat()}}},
                    ]
                }
            },
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [(parse_digest(h["_source"]), (int(h["_seq_no"]), int(h["_primary_term"]))) for h in hits]

    def orphans(self, older_than: datetime) -> list[str]:
        """Pending alerts nobody delivered (their worker died after the claim)."""
        body = {
            "size": 1000,
            "_source": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"status": "pending"}},
                        {"range": {"deliver_after": {"lt": older_than.isoformat()}}},
                    ]
                }
            },
        }
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [h["_id"] for h in hits]

    def recent(self, owner: str | None = None, size: int = 50) -> list[dict[str, Any]]:
        """Newest alerts first (for `newsflow alerts`)."""
        query: dict[str, Any] = {"term": {"owner": owner}} if owner else {"match_all": {}}
        body = {"size": size, "query": query, "sort": [{"created_at": "desc"}]}
        hits = self.client.search(index=self.index, body=body, ignore_unavailable=True)["hits"]["hits"]
        return [h["_source"] for h in hits]


def parse_digest(doc: dict[str, Any]) -> Digest:
    return Digest.model_validate({k: doc[k] for k in Digest.model_fields if k in doc})


def parse_alert_or_digest(doc: dict[str, Any]) -> Alert | Digest:
    """An alerts-log document as what it announces: one story's alert, or a digest."""
    if doc.get("kind") == "digest":
        return parse_digest(doc)
    return Alert.model_validate({k: doc[k] for k in Alert.model_fields if k in doc})
