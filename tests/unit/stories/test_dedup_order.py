"""Story assignment must not depend on arrival order.

Tagging runs in parallel, so articles reach the ordered assignment stage in varying order: the bundled demo
feeds (`pipeline/resources/demo`, ground truth in `expected.yaml`: five stories, two look-alike pairs) must give
the expected stories in every order. Also: stated days, resolved against publication dates, keep look-alike
events apart and let reports of one event that name its day in other words meet.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.devstack.demo import DEMO_DIR, expected_outcome
from pipeline.ingest.feeds import parse_feed
from pipeline.models import Article, TaggedArticle
from pipeline.nlp.entities import EntityTagger
from pipeline.nlp.textfeatures import stated_dates, tokens
from pipeline.settings import DedupSettings, EntitySettings
from pipeline.stories.engine import StoryEngine
from pipeline.stories.features import features, publication_date
from pipeline.stories.scoring import similarity

ORDERS = 200  # random arrival orders tried; about 3,400 assignments, well under a second


@pytest.fixture(scope="module")
def demo_articles() -> list[Article]:
    fetched = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)  # after every demo item's publication time
    articles: list[Article] = []
    for path in sorted(DEMO_DIR.glob("*.xml")):
        parsed = parse_feed(path.read_bytes(), feed_url=f"demo/{path.name}", fetched_at=fetched)
        articles.extend(parsed.items)
    return articles


@pytest.fixture(scope="module")
def tagged_demo(demo_articles: list[Article]) -> list[TaggedArticle]:
    """Tagged once. The tagger remembers full names across articles, but the demo's entities do not depend
    on which articles a worker tagged before: checked by a second tagger, one article at a time, backwards."""
    together = EntityTagger(EntitySettings()).tag(demo_articles)
    other_worker = EntityTagger(EntitySettings())
    for article, tagged in reversed(list(zip(demo_articles, together, strict=True))):
        (alone,) = other_worker.tag([article])
        assert alone.entities == tagged.entities, article.id
    return together


def test_demo_gives_the_expected_stories_in_any_arrival_order(tagged_demo: list[TaggedArticle]) -> None:
    expected = expected_outcome()
    assert {a.id for a in tagged_demo} == set(expected.story)
    copies = [(copy, original) for copy, original in expected.duplicate_of.items() if original]
    rng = random.Random(20261121)
    for attempt in range(ORDERS):
        order = rng.sample(tagged_demo, len(tagged_demo))
        engine = StoryEngine(DedupSettings())
        results = {a.id: engine.assign(a) for a in order}
        labels_by_story: dict[str, set[str]] = defaultdict(set)
        for aid, result in results.items():
            labels_by_story[result.story_id].add(expected.story[aid])
        got = sorted(sorted(labels) for labels in labels_by_story.values())
        assert got == sorted([label] for label in set(expected.story.values())), f"order #{attempt}: {got}"
        position = {a.id: i for i, a in enumerate(order)}
        for copy, original in copies:  # whichever of a pair arrives second is the duplicate of the first
            first, second = sorted((copy, original), key=position.__getitem__)
            assert results[second].duplicate_of == first, f"order #{attempt}: {second} not a copy of {first}"
            assert results[first].duplicate_of is None


FRIDAY = date(2026, 11, 20)


def test_stated_days_are_resolved_against_the_publication_date() -> None:
    text = "Kim arrived on Thursday and leaves next Tuesday; talks on 26 November, a vote Dec. 11, yesterday"
    assert stated_dates(tokens(text), FRIDAY) == {
        "2026-11-19",  # Thursday, and yesterday
        "2026-11-24",  # next Tuesday
        "2026-11-26",
        "2026-12-11",
    }
    # the same day named the next morning agrees; month words without a day number are no dates
    assert stated_dates(tokens("On Thursday the leaders met"), FRIDAY) == {"2026-11-19"}
    assert stated_dates(tokens("Talks may march on in December"), FRIDAY) == frozenset()


def dated(aid: str, title: str, text: str, published: datetime, **extra: object) -> TaggedArticle:
    fetched = published + timedelta(minutes=5)  # distinct from `published`: the article carries its own time
    return TaggedArticle(
        id=aid, feed="f", source=aid, title=title, text=text, published=published, fetched_at=fetched, **extra
    )


THU_EVENING = datetime(2026, 11, 19, 20, 0, tzinfo=UTC)
FRI_MORNING = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)

STORM_TODAY = dated(
    "s1",
    "Storm Ingrid floods the harbour district of Lorvik",
    "Storm Ingrid flooded the harbour district of Lorvik today, forcing 2,000 residents from their homes. The "
    "river Lorva burst its banks after 90 millimetres of rain, the mayor said, and rescue boats worked into the "
    "night. Forecasters expect the storm to move north overnight.",
    THU_EVENING,
)
STORM_NEXT_MORNING = dated(
    "s2",
    "Lorvik counts the damage after Storm Ingrid",
    "Residents of Lorvik returned on Friday to a harbour district flooded by Storm Ingrid on Thursday, when the "
    "river Lorva burst its banks. About 2,000 people spent the night in shelters; the mayor asked for army help "
    "to pump out the flooded streets.",
    FRI_MORNING,
)
EARLIER_STORM = dated(
    "s0",
    "Storm floods the harbour district of Lorvik",
    "A storm flooded the harbour district of Lorvik on Monday, forcing residents from their homes. The river "
    "Lorva burst its banks after heavy rain, the mayor said, and rescue boats worked into the night.",
    datetime(2026, 11, 16, 21, 0, tzinfo=UTC),
)


def test_reports_naming_the_same_day_in_other_words_agree() -> None:
    settings = DedupSettings()
    assert features(STORM_TODAY, settings).dates & features(STORM_NEXT_MORNING, settings).dates
    engine = StoryEngine(settings)
    assert engine.assign(STORM_TODAY).story_id == engine.assign(STORM_NEXT_MORNING).story_id


def test_a_story_stating_other_days_scores_lower() -> None:
    plain, strict = StoryEngine(DedupSettings(date_conflict_penalty=1.0)), StoryEngine(DedupSettings())
    for engine in (plain, strict):
        engine.assign(EARLIER_STORM)
    story = plain.store.stories[plain.store.articles["s0"]["story_id"]]
    feats = features(STORM_TODAY, strict.settings)
    unpenalised = similarity(story, feats, plain.settings)
    assert unpenalised >= strict.settings.similarity_threshold  # a would-be join: the penalty applies
    assert similarity(story, feats, strict.settings) == pytest.approx(0.7 * unpenalised)


def test_undated_articles_state_no_days() -> None:
    """The poller and the JSON-lines reader set `published` to the fetch time when an item has none."""
    when = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    undated = STORM_NEXT_MORNING.model_copy(update={"published": when, "fetched_at": when})
    assert publication_date(undated) is None
    assert features(undated, DedupSettings()).dates == frozenset()
    assert publication_date(STORM_NEXT_MORNING) == date(2026, 11, 20)
