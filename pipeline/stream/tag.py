"""The parallel tagging stage: articles -> language, canonical entities and story features -> tagged articles.

Kafka-free: `handle` takes a batch of records and returns what to send; the consumer loop (`AtLeastOnceLoop`)
sends it and commits the batch once the broker has acknowledged all of it. Tagging is pure, so a batch handled
twice (after a crash before the commit) gives the same tagged articles, and the assign stage returns its
recorded answer for an article it has already seen.
"""

from __future__ import annotations

import logging

from kafka.consumer.fetcher import ConsumerRecord

from pipeline.models import Article, DeadLetter, TaggedArticle
from pipeline.nlp.entities import EntityTagger
from pipeline.settings import Settings
from pipeline.stories.features import with_features
from pipeline.stream import bus
from pipeline.stream.codec import Output, StageResult, dead_letter, decode

log = logging.getLogger(__name__)


class TagStage:
    name = "tag"

    def __init__(self, settings: Settings, tagger: EntityTagger) -> None:
        self.settings = settings
        self.tagger = tagger

    def handle(self, records: list[ConsumerRecord]) -> StageResult:
        topics = self.settings.kafka.topics
        good: list[Article] = []
        read: list[ConsumerRecord] = []  # the record of each good article, for a dead letter with its bytes
        dead: list[DeadLetter] = []
        for r in records:
            try:
                good.append(decode(r.value, Article))
                read.append(r)
            except ValueError as exc:
                dead.append(dead_letter(self.name, str(exc), r))
        tagged, failed = self.tag_isolating_failures(good, read)
        outputs = [
            Output(topics.tagged, t.id.encode(), self._with_features(t).model_dump_json().encode()) for t in tagged
        ]
        return StageResult(outputs, dead + failed, processed=len(tagged))

    def tag_isolating_failures(
        self, articles: list[Article], records: list[ConsumerRecord] | None = None
    ) -> tuple[list[TaggedArticle], list[DeadLetter]]:
        """Tag a batch; if the batch fails, retry one by one so a single poison article cannot block the others.
        A poison article's dead letter keeps its record's exact bytes and position (`records`, one per article)."""
        try:
            return self.tagger.tag(articles), []
        except Exception:
            log.exception("tagging a batch of %d failed; isolating the bad article(s)", len(articles))
        good: list[TaggedArticle] = []
        dead: list[DeadLetter] = []
        for n, a in enumerate(articles):
            try:
                good.extend(self.tagger.tag([a]))
            except Exception as exc:
                reason = f"tagging failed: {type(exc).__name__}: {exc}"
                if records is not None:
                    dead.append(dead_letter(self.name, reason, records[n]))
                else:
                    dead.append(bus.dead_letter(self.name, reason, a.model_dump_json()))
        return good, dead

    def _with_features(self, article: TaggedArticle) -> TaggedArticle:
        """The features story assignment compares, computed here in parallel so the ordered stage only assigns;
        if that fails the assign stage computes them again (and dead-letters the article if it fails there too)."""
        try:
            return with_features(article, self.settings.dedup)
        except Exception:
            log.exception("computing the story features of %s failed; leaving them to the assign stage", article.id)
            return article
