"""The ordered story-assignment stage: tagged articles -> duplicates marked, one story per event -> enriched.

Kafka-free: `handle` takes a batch of records, `upkeep` merges quiet small stories and closes idle ones; both
change the engine's tables (`ChangelogState`) and return what to send. The consumer loop
(`TransactionalLoop`) writes the outputs, the tables' changes and the input offsets in one Kafka transaction,
so after a crash the restored tables, the committed offsets and the emitted articles always agree: nothing is
assigned twice or lost, and a replayed article (the tagging stage is at-least-once) gets its recorded answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from kafka.consumer.fetcher import ConsumerRecord

from pipeline.models import DeadLetter, EnrichedArticle, StoryMove, TaggedArticle
from pipeline.settings import Settings
from pipeline.stories.engine import StoryEngine
from pipeline.stories.upkeep import story_moves
from pipeline.stream.codec import Output, Record, StageResult, dead_letter, decode
from pipeline.stream.state import ChangelogState

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


@dataclass
class AssignStats:
    assigned: int = 0
    new_stories: int = 0
    duplicates: int = 0
    merged_stories: int = 0  # small stories merged into a bigger one once quiet
    live_stories: int | None = None  # in the window, as of the last upkeep
    last_upkeep: float | None = None  # wall-clock time of the last upkeep run


def in_publication_order(records: list[R], stage: str) -> tuple[list[tuple[R, TaggedArticle]], list[DeadLetter]]:
    """A batch decoded and sorted by publication time (then id); undecodable records as dead letters.

    Reports that reach this stage together were tagged in parallel, in no meaningful order: taken in
    publication order, the outlet that published first is the original of a copy (`duplicate_of`) and its
    story's first report, whichever tagging partition happened to finish first."""
    articles: list[tuple[R, TaggedArticle]] = []
    dead: list[DeadLetter] = []
    for r in records:
        try:
            articles.append((r, decode(r.value, TaggedArticle)))
        except ValueError as exc:
            dead.append(dead_letter(stage, str(exc), r))
    articles.sort(key=lambda item: (item[1].published, item[1].id))
    return articles, dead


class AssignStage:
    name = "assign"

    def __init__(self, settings: Settings, stats: AssignStats | None = None) -> None:
        self.settings = settings
        self.stats = stats if stats is not None else AssignStats()  # shared by the partition owners of a worker
        self.engine: StoryEngine | None = None
        self._last_upkeep = time.monotonic()

    def bind(self, state: ChangelogState | None) -> None:
        """Work on restored tables (a partition was assigned), or on none (it was revoked)."""
        self.engine = StoryEngine(self.settings.dedup, state) if state is not None else None
        self._last_upkeep = time.monotonic()

    def handle(self, records: list[ConsumerRecord]) -> StageResult:
        engine = self._engine()
        enriched = self.settings.kafka.topics.enriched
        result = StageResult()
        articles, result.dead = in_publication_order(records, self.name)
        for r, article in articles:
            try:
                answer = engine.assign(article)
            except Exception as exc:
                log.exception("story assignment failed; dead-lettering the article")
                reason = f"story assignment failed: {type(exc).__name__}: {exc}"
                result.dead.append(dead_letter(self.name, reason, r))
                continue
            out = EnrichedArticle(
                **article.model_dump(exclude={"features"}),  # the assign stage's business only
                story_id=answer.story_id,
                duplicate_of=answer.duplicate_of,
                story=answer.story,
            )
            result.outputs.append(Output(enriched, out.id.encode(), out.model_dump_json().encode()))
            result.processed += 1
            if not answer.replayed:
                self.stats.assigned += 1
                self.stats.new_stories += int(answer.is_new_story)
                self.stats.duplicates += int(answer.duplicate_of is not None)
        return result

    def upkeep_due(self) -> bool:
        return (
            self.engine is not None and time.monotonic() - self._last_upkeep >= self.settings.worker.maintenance_every_s
        )

    def upkeep(self) -> StageResult:
        """Quiet small stories into the story they belong to (one `StoryMove` per re-filed article, keyed like
        the article so it follows the article's own message in its partition); idle stories closed."""
        engine = self._engine()
        now = datetime.now(UTC)
        moves: list[StoryMove] = []
        for merge in engine.settle(now.timestamp()):
            moves.extend(story_moves(merge))
            self.stats.merged_stories += 1
        engine.expire(now)
        self._last_upkeep = time.monotonic()
        self.stats.live_stories, self.stats.last_upkeep = len(engine.store.stories), time.time()
        enriched = self.settings.kafka.topics.enriched
        return StageResult([Output(enriched, m.article_id.encode(), m.model_dump_json().encode()) for m in moves])

    def _engine(self) -> StoryEngine:
        if self.engine is None:
            raise RuntimeError("assign stage used before its state was restored")
        return self.engine
