"""The tagging stage computes story features; the assign stage uses them, and gives the same answers."""

from __future__ import annotations

import json

import pytest

from pipeline.models import TaggedArticle
from pipeline.settings import DedupSettings
from pipeline.stories.engine import StoryEngine
from pipeline.stories.features import article_features, feature_recipe, features, with_features
from tests.unit.stories.test_dedup import BRIDGE, KIM_IN_RUSSIA, PUTIN_A, PUTIN_B, STRIKE_A, STRIKE_B

STREAM = [PUTIN_A, KIM_IN_RUSSIA, STRIKE_A, PUTIN_B, BRIDGE, STRIKE_B]


def through_the_topic(article: TaggedArticle, settings: DedupSettings) -> TaggedArticle:
    """What the assign stage reads: the tagging stage's output, with features, as JSON on the tagged topic."""
    return TaggedArticle.model_validate_json(with_features(article, settings).model_dump_json())


def answers(engine: StoryEngine, articles: list[TaggedArticle]) -> list[tuple[str, str | None, int]]:
    return [(r.story_id, r.duplicate_of, r.story.article_count) for r in map(engine.assign, articles)]


def test_features_from_the_topic_give_the_same_stories_as_computing_them() -> None:
    settings = DedupSettings()
    carried = [through_the_topic(a, settings) for a in STREAM]
    assert all(a.features is not None and a.features.recipe == feature_recipe(settings) for a in carried)
    assert article_features(carried[0], settings) == features(STREAM[0], settings)  # exact, floats included
    assert answers(StoryEngine(settings), carried) == answers(StoryEngine(settings), STREAM)


@pytest.mark.parametrize("change", [{"article_terms": 20}, {"lead_weight": 0.0}])
def test_features_made_with_other_settings_are_recomputed(change: dict[str, object]) -> None:
    """During a config change the tagging stage may still run the old settings: the assign stage notices."""
    old, new = DedupSettings(), DedupSettings(**change)  # type: ignore[arg-type]
    carried = through_the_topic(PUTIN_A, old)
    assert feature_recipe(old) != feature_recipe(new)
    assert article_features(carried, new) == features(PUTIN_A, new) != features(PUTIN_A, old)


def test_features_of_another_shape_do_not_cost_the_article() -> None:
    """A rolling upgrade: a tagging stage of another version sends features this code cannot read."""
    settings = DedupSettings()
    raw = json.loads(with_features(PUTIN_A, settings).model_dump_json())
    del raw["features"]["sketch"]
    raw["features"]["body"] = "not a vector"
    article = TaggedArticle.model_validate_json(json.dumps(raw))
    assert article.features is None and article.id == PUTIN_A.id
    assert article_features(article, settings) == features(PUTIN_A, settings)
