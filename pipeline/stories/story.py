"""How a story's state grows: a first report, another report, a copy, a merged-in story; and its public snapshot.

The one place that writes a `StoryState`'s fields, so its bounds hold everywhere: centroids keep their heaviest
terms, a story keeps the sketches of its latest originals and the event facts of its first reports, and a copy
adds no source, no weight and no entities. Changes are made in place; the caller writes the state back to the
store (re-assigned, so a changelog table marks it changed) and keeps the candidate index up to date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Literal

from pipeline.models import Article, Story, TaggedArticle
from pipeline.nlp.textfeatures import norm, tfidf, tokens
from pipeline.settings import DedupSettings
from pipeline.stories.features import Features, title_quality
from pipeline.stories.scoring import cos_unit
from pipeline.stories.store import CENTROIDS, StoryEntity, StoryState, add_to_centroid, sketch_to_hex

_STORY_YEARS = 24  # years kept per story, from its first reports (bounded state)


def story_id_for(article_id: str) -> str:
    """Deterministic story id from the first article's id."""
    return "s-" + hashlib.blake2b(article_id.encode("utf-8"), digest_size=8).hexdigest()


def new_story(article: TaggedArticle, feats: Features, settings: DedupSettings) -> StoryState:
    """The story an article opens: empty, then grown by it as its first report."""
    sid = story_id_for(article.id)
    state: StoryState = {
        "id": sid,
        "title": article.title.strip() or _fallback_title(article),
        "t0": feats.time,
        "t1": feats.time,
        "n": 0,
        "dups": 0,
        "sources": [],
        "article_ids": [],
        "keys": [],
        "entities": {},
        "vec": {},
        "vec_scale": 1.0,
        "vec_norm": 0.0,
        "tvec": {},
        "tvec_scale": 1.0,
        "tvec_norm": 0.0,
        "evec": {},
        "evec_scale": 1.0,
        "evec_norm": 0.0,
        "sketches": {},
        "years": [],
        "dates": [],
        "joins": 0,
        "join_sum": 0.0,
        "revision": 0,
    }
    add_original(state, article, feats, None, settings)
    return state


def add_original(
    state: StoryState, article: TaggedArticle, feats: Features, score: float | None, settings: DedupSettings
) -> None:
    """A new report: it moves the centroids, adds its source and entities, and may give a better title.

    `score` is the similarity it joined with (None for the story's first report).
    """
    s = settings
    if score is not None:
        state["joins"] += 1
        state["join_sum"] += score
        if article.title.strip():
            _maybe_retitle(state, article.title.strip(), feats)
    state["n"] += 1
    vectors = (feats.body, feats.title, feats.ents)  # in `CENTROIDS` order
    for (name, scale, norm_of), vec, keep in zip(CENTROIDS, vectors, _sizes(s), strict=True):
        state[name], state[scale] = add_to_centroid(state[name], state.get(scale, 1.0), vec, keep)
        state[norm_of] = norm(state[name])
    if article.source not in state["sources"]:
        state["sources"].append(article.source)
    _merge_entities(state["entities"], ((e.name, e.type, e.count, e.mentions) for e in article.entities))
    _keep_facts(state, feats.years, feats.dates, s)
    if feats.sketch:
        _keep_sketches(state, {article.id: sketch_to_hex(feats.sketch)}, s)
    _touch(state, article, feats)


def add_duplicate(state: StoryState, article: TaggedArticle, feats: Features) -> None:
    """A copy: counted and listed, but it adds no source, no weight and no entities."""
    state["dups"] += 1
    _touch(state, article, feats)


def absorb(state: StoryState, other: StoryState, score: float, settings: DedupSettings) -> None:
    """Add another story's reports, centroids and facts to `state` (a merge; `score`: the other scored as one
    article against `state`, counted once per report it brings)."""
    s = settings
    for (name, scale, norm_of), keep in zip(CENTROIDS, _sizes(s), strict=True):
        vec = {k: q * other[scale] for k, q in other[name].items()}
        state[name], state[scale] = add_to_centroid(state[name], state[scale], vec, keep)
        state[norm_of] = norm(state[name])
    state["n"] += other["n"]
    state["dups"] += other["dups"]
    state["joins"] += other["n"]
    state["join_sum"] += score * other["n"]
    state["sources"].extend(src for src in other["sources"] if src not in state["sources"])
    state["article_ids"].extend(other["article_ids"])
    state["keys"].extend(other.get("keys", ()))
    _merge_entities(
        state["entities"], ((n, e["type"], e["count"], e["mentions"]) for n, e in other["entities"].items())
    )
    _keep_facts(state, other.get("years", ()), other.get("dates", ()), s)
    _keep_sketches(state, other["sketches"], s)
    state["t0"], state["t1"] = min(state["t0"], other["t0"]), max(state["t1"], other["t1"])
    state["revision"] += 1


def snapshot(state: StoryState) -> Story:
    """The public Story model of a story state.

    Validated from plain dicts in one call (pydantic's compiled core): a long-running story has hundreds of
    entities, and building an `Entity` model per entity on each of its new reports cost a quarter more.
    """
    ents = sorted(state["entities"].items(), key=lambda kv: (-kv[1]["count"], kv[0]))
    return Story.model_validate(
        {
            "story_id": state["id"],
            "title": state["title"],
            "article_count": state["n"],
            "duplicate_count": state["dups"],
            "sources": list(state["sources"]),
            "first_seen": datetime.fromtimestamp(state["t0"], UTC),
            "last_seen": datetime.fromtimestamp(state["t1"], UTC),
            "entities": [
                {"name": n, "type": e["type"], "mentions": list(e["mentions"]), "count": e["count"]} for n, e in ents
            ],
            "article_ids": list(state["article_ids"]),
            "revision": max(1, state["revision"]),
        }
    )


def _sizes(settings: DedupSettings) -> tuple[int, int, int]:
    """How many terms each centroid keeps, in `CENTROIDS` order (bounded state per story)."""
    return settings.story_terms, settings.story_title_terms, settings.story_entities


def _keep_facts(state: StoryState, years: Collection[str], dates: Collection[str], settings: DedupSettings) -> None:
    """Add event facts the story does not hold yet, up to its bound per kind (the first reports' win)."""
    name: Literal["years", "dates"]
    for name, facts, keep in (("years", years, _STORY_YEARS), ("dates", dates, settings.story_dates)):
        kept = state.setdefault(name, [])
        kept.extend(sorted(set(facts).difference(kept))[: max(0, keep - len(kept))])


def _keep_sketches(state: StoryState, sketches: dict[str, str], settings: DedupSettings) -> None:
    """Add originals' sketches, keeping the latest `sketches_per_story` (copies follow their original closely)."""
    kept = state["sketches"]
    kept.update(sketches)
    while len(kept) > settings.sketches_per_story:
        del kept[next(iter(kept))]


def _touch(state: StoryState, article: TaggedArticle, feats: Features) -> None:
    """News again: `settle` looks at the story once more when it is quiet again."""
    state.pop("settled", None)
    state["t0"] = min(state["t0"], feats.time)
    state["t1"] = max(state["t1"], feats.time)
    state["article_ids"].append(article.id)
    state["revision"] += 1


def _maybe_retitle(state: StoryState, title: str, feats: Features) -> None:
    """Keep the title that is best-formed and most typical of the story's headlines."""
    current = state["title"]
    cur_score = title_quality(current) + cos_unit(tfidf(tokens(current)), state["tvec"], state["tvec_norm"])
    new_score = feats.title_quality + cos_unit(feats.title, state["tvec"], state["tvec_norm"])
    if new_score > cur_score + 1e-9:
        state["title"] = title


def _merge_entities(acc: dict[str, StoryEntity], entities: Iterable[tuple[str, str, int, list[str]]]) -> None:
    """Add (name, type, count, mentions) to a story's entities: counts add up, up to 5 surface forms are kept."""
    for name, kind, count, mentions in entities:
        cur = acc.setdefault(name, {"type": kind, "count": 0, "mentions": []})
        cur["count"] += count
        for m in mentions:
            if m not in cur["mentions"] and len(cur["mentions"]) < 5:
                cur["mentions"].append(m)


def _fallback_title(article: Article) -> str:
    words = article.body.split()
    return " ".join(words[:12]) + ("…" if len(words) > 12 else "") if words else article.id
