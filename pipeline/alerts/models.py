"""Alert subscriptions and the alerts they produce.

A `Subscription` is what a person asked to hear about; an `Alert` is one notice about one story. The alert's
`dedup_key` — (subscription, story, kind) — is the durable identity that makes "exactly one alert per story" hold
across retries, restarts and several alerting workers: it is the document id in the alerts log, written with
`op_type=create`, so only the first writer wins. A `Digest` (hourly/daily subscriptions) is one message per
period listing the stories matched in it; its key — (subscription, period) — plays the same role.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.models import utcnow

Frequency = Literal["instant", "hourly", "daily"]
DigestFrequency = Literal["hourly", "daily"]
AlertKind = Literal["new", "update"]

MAX_KEY_BYTES = 512  # both search engines refuse longer document ids


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookChannel(_Model):
    """JSON POST to `url`; `slack=True` posts a Slack-compatible `{"text": ...}` body instead."""

    type: Literal["webhook"] = "webhook"
    url: str
    slack: bool = False

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        return v


class EmailChannel(_Model):
    """One plain-text + HTML message per alert, over the configured SMTP server."""

    type: Literal["email"] = "email"
    to: str

    @field_validator("to")
    @classmethod
    def _address(cls, v: str) -> str:
        if "@" not in v or v.startswith("@") or v.endswith("@") or any(c.isspace() for c in v):
            raise ValueError(f"not an email address: {v!r}")
        return v


class KafkaChannel(_Model):
    """The alert as JSON on a Kafka topic, for downstream consumers."""

    type: Literal["kafka"] = "kafka"
    topic: str = Field(min_length=1)


Channel = Annotated[WebhookChannel | EmailChannel | KafkaChannel, Field(discriminator="type")]


class EntityFilter(_Model):
    """Canonical entity names (as tagged, e.g. "Vladimir Putin"); every listed name must be on the story."""

    person: list[str] = Field(default_factory=list)
    organization: list[str] = Field(default_factory=list)
    location: list[str] = Field(default_factory=list)

    def items(self) -> list[tuple[str, str]]:
        """(field, name) pairs, in a stable order."""
        return [(f, n) for f in ("person", "organization", "location") for n in getattr(self, f)]


class SubscriptionSpec(_Model):
    """What a person asks for: everything of a subscription they may set (the API's request body)."""

    name: str = Field(min_length=1)
    query: str = Field("", description="query-string syntax over title, summary and text; empty = any story")
    entities: EntityFilter = Field(default_factory=EntityFilter)
    sources: list[str] = Field(default_factory=list, description="only stories reported by one of these outlets")
    languages: list[str] = Field(default_factory=list, description="only articles in one of these languages")
    channels: list[Channel] = Field(min_length=1)
    frequency: Frequency = "instant"
    updates: bool = Field(True, description="also an `update` alert when the story grows by enough sources")


class Subscription(SubscriptionSpec):
    """A stored subscription: the spec plus what newsflow assigns (id, owner, creation time)."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = Field(min_length=1)
    created_at: datetime = Field(default_factory=utcnow)


class Alert(_Model):
    """One notice about one story for one subscription."""

    subscription_id: str
    story_id: str
    kind: AlertKind
    title: str
    sources: list[str] = Field(default_factory=list)
    article_ids: list[str] = Field(default_factory=list)
    story_revision: int = 1
    polled_at: datetime | None = Field(None, description="when the report that raised the alert was polled")
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.subscription_id, self.story_id, self.kind)


def dedup_key(subscription_id: str, story_id: str, kind: str) -> str:
    """Readable `sub|story|kind`, hashed only when too long for a document id (ids are stable either way)."""
    key = f"{subscription_id}|{story_id}|{kind}"
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
        return key
    return f"{subscription_id}|sha256:{hashlib.sha256(story_id.encode('utf-8')).hexdigest()}|{kind}"


class DigestItem(_Model):
    """One story in a digest, as of the newest snapshot seen before the digest was sealed."""

    story_id: str
    title: str
    sources: list[str] = Field(default_factory=list)
    article_ids: list[str] = Field(default_factory=list)
    story_revision: int = 1
    polled_at: datetime | None = None
    matched_at: datetime


class Digest(_Model):
    """One message for one subscription and period: every story first matched in it (or left over before it)."""

    subscription_id: str
    frequency: DigestFrequency
    period_start: datetime
    period_end: datetime = Field(description="matches before this instant are in (the period's end, or `--now`)")
    items: list[DigestItem] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def dedup_key(self) -> str:
        return digest_key(self.subscription_id, self.period_start)


def digest_key(subscription_id: str, period_start: datetime) -> str:
    """`sub|digest|<period start, UTC>`: one digest per subscription and period, whoever flushes it."""
    return f"{subscription_id}|digest|{period_start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
