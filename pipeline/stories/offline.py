"""The engine run offline, over a whole batch of articles, as the stream would run it: `newsflow cluster` and
evaluation.

Kept apart from the engine because it plays the stream's part: it tags in the stream's batch size, feeds one
fresh engine in the given order, and runs `settle` as the stream's periodic pass does, on event time instead of
the wall clock, so offline figures are the stream's.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.jsonl import read_articles, write_rows
from pipeline.models import Article, TaggedArticle
from pipeline.settings import DedupSettings, Settings, WorkerSettings
from pipeline.stories.engine import Assignment, StoryEngine
from pipeline.stories.features import event_time

# Offline, `settle` runs this often in event time: as often as the stream's upkeep does by default.
SETTLE_EVERY_S: float = WorkerSettings.model_fields["maintenance_every_s"].default

Tagger = Callable[[Sequence[Article]], list[TaggedArticle]]


def default_tagger(settings: Settings) -> Tagger | None:
    """The stream's tagger (`pipeline.nlp.entities.EntityTagger`), or None when that module is not available."""
    try:
        from pipeline.nlp.entities import EntityTagger  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    tagger = EntityTagger(settings.entities)
    return tagger.tag  # type: ignore[no-any-return,unused-ignore]


def tag_all(articles: Sequence[Article], settings: Settings, tagger: Tagger | None) -> list[TaggedArticle]:
    """Tag articles in the stream's batch size, with `tagger` or else the stream's (none: untagged)."""
    tagged: list[TaggedArticle] = []
    batch = max(1, settings.worker.tag_batch_size)
    for i in range(0, len(articles), batch):
        chunk = articles[i : i + batch]
        tagged.extend(tagger(chunk) if tagger else [TaggedArticle(**a.model_dump()) for a in chunk])
    return tagged


def assign_all(tagged: Iterable[TaggedArticle], settings: DedupSettings) -> list[Assignment]:
    """One fresh engine over articles in the given order, as the stream runs it: what `newsflow cluster` and
    evaluation run. `settle` runs as the stream's periodic pass does, on event time (the latest article's),
    and once more at the end of the input, which is all in the past; the answers are final: an article whose
    small story was merged into another carries that story's id."""
    engine = StoryEngine(settings)
    results: list[Assignment] = []
    watermark = last_settle = -math.inf
    for article in tagged:
        results.append(engine.assign(article))
        watermark = max(watermark, event_time(article))
        if watermark - last_settle >= SETTLE_EVERY_S:
            engine.settle(watermark)
            last_settle = watermark
    engine.settle(math.inf)
    final = {aid: rec["story_id"] for aid, rec in engine.store.articles.items()}
    return [replace(r, story_id=final.get(r.article_id, r.story_id)) for r in results]


def cli_cluster(input_path: Path, output_path: Path, settings: Settings, *, tagger: Tagger | None = None) -> int:
    """`newsflow cluster`: tag, then assign, over the articles of a JSON-lines file in file order.

    Runs exactly the stream's engine and configuration. Writes `{"id", "story_id", "duplicate_of"}` rows and a
    one-line summary on stderr; returns the exit status. A malformed row raises BadInputError naming its line
    (before anything is written). `tagger` replaces the stream's tagger (evaluation only).
    """
    started = time.perf_counter()
    articles = [article for _, article in read_articles(input_path)]
    tag = tagger or default_tagger(settings)
    results = assign_all(tag_all(articles, settings, tag), settings.dedup)
    rows = [{"id": r.article_id, "story_id": r.story_id, "duplicate_of": r.duplicate_of} for r in results]
    stories = {r.story_id for r in results}
    duplicates = sum(r.duplicate_of is not None for r in results)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        write_rows(rows, out)
    seconds = time.perf_counter() - started
    note = "" if tag else " (no entity tagger available: entities unused)"
    print(
        f"clustered {len(rows)} articles into {len(stories)} stories, {duplicates} duplicates, in {seconds:.1f}s{note}",
        file=sys.stderr,
    )
    return 0
