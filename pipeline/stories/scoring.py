"""How well an article fits a story, and which story it joins: the scores and the decision rule.

Each candidate is scored by a weighted sum of cosines between the article and the story's centroids (body words,
title words, canonical entities; general-English IDF, the lead of an article weighted up). A story that
disagrees with the article on several kinds of event facts at once (the years, people and places each side
states: another fight of the same boxer, last year's patch) has its score cut by `conflict_penalty`; one none of
whose calendar days the article names ("on Thursday", "26 November", resolved against each one's publication
date: Kim arriving in Russia vs. Putin's trip announced the next day) by `date_conflict_penalty`. The best
candidate at or above the threshold wins, if the score is also not far below those its members joined with
(`cohesion`). Pure functions of a story state, features and settings, shared by assignment and `settle`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from pipeline.nlp.textfeatures import Vector, dot, sketch_jaccard
from pipeline.settings import DedupSettings
from pipeline.stories.features import SKETCH_K, Features
from pipeline.stories.store import StoryState, sketch_from_hex, story_names


def window_s(settings: DedupSettings) -> float:
    """How long a story stays open before its first and after its last report, in seconds."""
    return settings.story_window_hours * 3600.0


def is_open(state: StoryState, t: float, window: float) -> bool:
    """A story takes articles from `window` before its first report until `window` after its last."""
    return state["t0"] - window <= t <= state["t1"] + window


def similarity(state: StoryState, feats: Features, settings: DedupSettings) -> float:
    """Weighted cosines of body, title and entity vectors; a channel missing on either side drops out.

    Article vectors are unit length and story norms are stored, so each cosine is one sparse dot product.
    A would-be join that disagrees on `conflict_kinds` kinds of event facts is scored down (`conflicts`).
    """
    s = settings
    parts = [(s.body_weight, cos_unit(feats.body, state["vec"], state["vec_norm"]))]
    if feats.title and state["tvec"]:
        parts.append((s.title_weight, cos_unit(feats.title, state["tvec"], state["tvec_norm"])))
    if feats.ents and state["evec"]:
        parts.append((s.entity_weight, cos_unit(feats.ents, state["evec"], state["evec_norm"])))
    total = sum(w for w, _ in parts)
    score = sum(w * v for w, v in parts) / total if total > 0 else 0.0
    if score >= s.similarity_threshold and conflicts(state, feats) >= s.conflict_kinds:
        score *= s.conflict_penalty
    if score >= s.similarity_threshold and _disjoint(feats.dates, state.get("dates", ())):
        score *= s.date_conflict_penalty
    return score


def conflicts(state: StoryState, feats: Features) -> int:
    """How many kinds of event facts (years, people, places) both sides state and none of which agree.

    Two fights of one boxer differ in the opponent, two earthquakes in the place, a patch and last year's
    in the year: one disagreement is common between reports of one event (each names its own witnesses),
    several at once are not. Only scored for a would-be join, so the cost is a few set operations.
    """
    return (
        _disjoint(feats.years, state.get("years", ()))
        + _disjoint(feats.people, story_names(state, "person"))
        + _disjoint(feats.places, story_names(state, "location"))
    )


def near_copy_of(state: StoryState, feats: Features, settings: DedupSettings) -> str | None:
    """An original of this story whose shingles the article nearly repeats (light edits, new URL): the
    Jaccard of word 3-shingles, estimated from the bottom-k sketches kept per story."""
    if len(feats.sketch) < 8:
        return None
    best, best_j = None, 0.0
    for aid, hexed in state["sketches"].items():
        j = sketch_jaccard(feats.sketch, sketch_from_hex(hexed), SKETCH_K)
        if j >= settings.near_duplicate_threshold and j > best_j:
            best, best_j = aid, j
    return best


def best_story(
    candidates: Iterable[tuple[str, StoryState]], feats: Features, settings: DedupSettings
) -> tuple[StoryState | None, str | None, float]:
    """The best of the open candidate stories the article may join (and a near-copy original in it), with the
    score; (None, None, 0.0) when it joins none.

    A story accepts an article scoring at least the threshold and at least `cohesion` times the mean score
    its members joined with: a tight story does not take a newcomer that is merely on the same topic,
    which is how look-alike events (a second strike, a second earthquake) snowball into one story.
    """
    s = settings
    scored = [(similarity(state, feats, s), sid, state) for sid, state in candidates]
    scored.sort(key=lambda x: (-x[0], x[1]))
    for score, _, state in scored[:3]:  # a copy of a report is similar to that report's story
        if score >= s.similarity_threshold and (original := near_copy_of(state, feats, s)):
            return state, original, score
    for score, _, state in scored:
        if score < s.similarity_threshold:
            break
        if state["joins"] == 0 or score >= s.cohesion * state["join_sum"] / state["joins"]:
            return state, None, score
    return None, None, 0.0


def cos_unit(unit: Vector, vec: Mapping[str, float], vec_norm: float) -> float:
    """Cosine of a unit vector with a vector of known norm."""
    return dot(unit, vec) / vec_norm if vec_norm > 0 else 0.0


def _disjoint(mine: frozenset[str], story: Collection[str]) -> bool:
    """Both sides state facts of a kind and none of them agree."""
    return bool(mine) and bool(story) and mine.isdisjoint(story)
