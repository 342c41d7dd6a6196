"""Typed, versioned messages that travel between stages.

Every message carries `schema_version`; a consumer rejects (dead-letters) a version it does not know rather than
guessing. Topic names live in settings (`kafka.topics`), not here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator

EntityType = Literal["person", "organization", "location", "event", "product", "misc"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted, so every stage compares like with like."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


class Article(_Message):
    """One feed item, normalised by the poller. Topic: `kafka.topics.articles`, key: `id`."""

    schema_version: Literal[1] = 1
    id: str = Field(min_length=1, description="stable id: hash of canonical URL, else GUID, else content")
    feed: str = Field(description="URL of the feed the item came from")
    source: str = Field(description="outlet name (feed title or host)")
    url: str | None = None
    title: str = ""
    summary: str = ""
    text: str = ""
    published: datetime = Field(default_factory=utcnow)
    fetched_at: datetime = Field(default_factory=utcnow)

    _utc = field_validator("published", "fetched_at")(_as_utc)

    @property
    def body(self) -> str:
        """The longest textual content we have: full text, else summary."""
        return self.text if len(self.text) >= len(self.summary) else self.summary


class Entity(_Message):
    """A canonical entity on one article."""

    name: str
    type: EntityType
    mentions: list[str] = Field(default_factory=list, description="surface forms seen in the article")
    count: int = Field(1, ge=1)


class DedupFeatures(_Message):
    """What story assignment needs from one article (`pipeline.stories.features.features`), computed once: by the
    parallel tagging stage, so the one ordered assign stage only assigns. `recipe` names the code version and the
    settings that shaped them; the assign stage recomputes features made by another recipe (say, during a config
    change)."""

    schema_version: Literal[1] = 1
    recipe: str
    body: dict[str, float] = Field(description="unit TF-IDF vector of title + text, the lead weighted up")
    title: dict[str, float]
    ents: dict[str, float] = Field(description="unit vector of canonical entities")
    sketch: list[int] = Field(description="bottom-k hashes of word 3-shingles (near copies)")
    keys: tuple[str, ...] = Field(description="exact-copy keys: canonical URL, body or title fingerprint")
    time: float = Field(description="event time, epoch seconds")
    title_quality: float
    # Event facts that tell look-alike events apart (`pipeline.stories.scoring.conflicts`)
    years: frozenset[str]
    people: frozenset[str]
    places: frozenset[str]
    dates: frozenset[str] = Field(description="calendar days the article says things happened on (dated ones)")


class TaggedArticle(Article):
    """Article + language + entities, from the tagging stage. Topic: `kafka.topics.tagged` (one partition)."""

    language: str | None = None
    entities: list[Entity] = Field(default_factory=list)
    features: DedupFeatures | None = Field(None, description="for story assignment; not passed on downstream")

    @field_validator("features", mode="wrap")
    @classmethod
    def _features_or_none(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> DedupFeatures | None:
        """Features another code version shaped differently (a rolling upgrade) are recomputed by the assign
        stage: no reason to dead-letter the article."""
        try:
            return cast(DedupFeatures | None, handler(value))
        except ValidationError:
            return None


class EnrichedArticle(TaggedArticle):
    """Tagged article + its story. Topic: `kafka.topics.enriched`, key: `id`. Indexed as one document."""

    story_id: str
    duplicate_of: str | None = None
    story: Story | None = Field(None, description="snapshot of the story after this article joined it")


class Story(_Message):
    """One real-world event. Snapshots carry `revision`, so an older snapshot never overwrites a newer one."""

    schema_version: Literal[1] = 1
    story_id: str
    title: str
    article_count: int = 0
    duplicate_count: int = 0
    sources: list[str] = Field(default_factory=list)
    first_seen: datetime
    last_seen: datetime
    entities: list[Entity] = Field(default_factory=list)
    article_ids: list[str] = Field(default_factory=list)
    revision: int = Field(1, ge=1)

    _utc = field_validator("first_seen", "last_seen")(_as_utc)


STORY_MOVE_PREFIX = b'{"message":"story_move"'


class StoryMove(_Message):
    """An article re-filed under another story: its small story went quiet and was merged into the bigger one
    it belongs to (`StoryEngine.settle`). Topic: `kafka.topics.enriched`, key: the article id, so it comes
    after that article's own message in the same partition and a consumer applies the two in order.

    `message` is the first field, so consumers of the enriched topic tell the two kinds apart by the first
    bytes (`is_story_move`) instead of trying one schema and then the other on every article.
    """

    message: Literal["story_move"] = "story_move"
    schema_version: Literal[1] = 1
    article_id: str = Field(min_length=1)
    published: datetime = Field(description="the article's publication time: it locates its monthly index")
    story_id: str = Field(description="the story the article belongs to now")
    merged_story_id: str = Field(description="the small story that no longer exists")
    merged_revision: int = Field(ge=0, description="the merged story's last revision")
    story: Story = Field(description="snapshot of the story after the merge")

    _utc = field_validator("published")(_as_utc)


def is_story_move(raw: bytes) -> bool:
    """Whether a message of the enriched topic is a `StoryMove` (else an `EnrichedArticle`)."""
    return raw.startswith(STORY_MOVE_PREFIX)


class DeadLetter(_Message):
    """A record that could not be processed, with why. Topic: `kafka.topics.deadletter`."""

    schema_version: Literal[1] = 1
    stage: str
    reason: str
    payload: str = Field(description="the original message as text (invalid UTF-8 shown as U+FFFD)")
    payload_base64: str | None = Field(None, description="the exact original bytes, when they are not UTF-8")
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    at: datetime = Field(default_factory=utcnow)


EnrichedArticle.model_rebuild()
