"""Story clustering: give every article a `story_id` and, for copies, a `duplicate_of`.

One pass, one article at a time, in arrival order (the stream feeds this stage from one ordered partition):

1. Replay: an article id already in `store.articles` gets its recorded answer back and changes nothing, so
   at-least-once delivery after a crash is harmless.
2. Copies: an exact key (canonical URL, or a fingerprint of the words) seen before, or a near-verbatim body
   (Jaccard of word 3-shingles, estimated from bottom-k sketches kept per story) makes the article a duplicate
   of the first-seen one. Duplicates join that story but never count as new reporting.
3. Story: candidate open stories come from an inverted index over each story's heaviest terms; each candidate
   is scored by a weighted sum of cosines between the article and the story's centroids (body words, title
   words, canonical entities), with general-English IDF and the lead of an article weighted up. A story that
   disagrees with the article on several kinds of event facts at once (the years, people and places each side
   states: another fight of the same boxer, last year's patch) has its score cut by `conflict_penalty`; one
   none of whose calendar days the article names ("on Thursday", "26 November", resolved against each one's
   publication date: Kim arriving in Russia vs. Putin's trip announced the next day) by
   `date_conflict_penalty`. The best candidate at or above the threshold wins, if the score is also not far
   below those its members joined with (`cohesion`); otherwise the article opens a new story.

State lives in three JSON-able mappings (`StateStore`: changelog-backed tables in the stream, dicts offline); story
centroids are stored as small integers times one scale per vector, which CPython keeps far more compactly
than floats. The candidate index is derived from `store.stories` and rebuilt lazily, so a restarted engine
assigns like one that never stopped. No randomness, no wall clock: the same input in the same order gives
the same output.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.jsonl import read_articles, write_rows
from pipeline.models import Article, DedupFeatures, Entity, Story, StoryMove, TaggedArticle
from pipeline.nlp.textfeatures import (
    Vector,
    content_fingerprint,
    copy_key_url,
    dot,
    idf,
    norm,
    normalise,
    shingle_sketch,
    sketch_jaccard,
    stated_dates,
    tfidf,
    tokens,
    top_terms,
    years,
)
from pipeline.settings import DedupSettings, Settings, WorkerSettings

StoryState = dict[str, Any]

_SKETCH_K = 64
FEATURES_VERSION = 1  # bump when `features` computes anything differently: features of older code get recomputed
# Offline, `settle` runs this often in event time: as often as the stream's upkeep does by default.
SETTLE_EVERY_S: float = WorkerSettings.model_fields["maintenance_every_s"].default
_STORY_YEARS = 24  # years kept per story, from its first reports (bounded state)


class StateStore(Protocol):
    """Where the engine keeps its state: three changelog-backed tables in the stream (`pipeline.stream.state`),
    dicts offline."""

    @property
    def stories(self) -> MutableMapping[str, StoryState]:
        """story_id -> story state (the source of truth)"""

    @property
    def articles(self) -> MutableMapping[str, dict[str, Any]]:
        """article_id -> {"story_id", "duplicate_of"}"""

    @property
    def keys(self) -> MutableMapping[str, str]:
        """dedup key (canonical url / content fingerprint) -> first article id"""


@dataclass
class MemoryStore:
    """A dict-backed StateStore, for the offline CLI, tests and benchmarks."""

    stories: MutableMapping[str, StoryState] = field(default_factory=dict)
    articles: MutableMapping[str, dict[str, Any]] = field(default_factory=dict)
    keys: MutableMapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """The engine's answer for one article, with the story snapshot after the update."""

    article_id: str
    story_id: str
    duplicate_of: str | None
    story: Story
    is_new_story: bool
    replayed: bool


@dataclass(frozen=True)
class Merge:
    """A settled small story merged into a bigger one (`StoryEngine.settle`): its articles now belong to
    `story_id`, whose snapshot after the merge is `story`."""

    merged_story_id: str
    merged_revision: int  # its last revision
    article_ids: tuple[str, ...]
    published: tuple[float, ...]  # of each article (records from before this was kept: the story's start)
    story_id: str
    story: Story


Features = DedupFeatures  # what the engine compares; also the message the tagging stage attaches to an article


# ---------------------------------------------------------------------------------------------- features


def event_time(article: Article) -> float:
    """When the article reports: its publication time, unless that is clearly wrong (in the future)."""
    published, fetched = article.published, article.fetched_at
    t = published if published <= fetched + timedelta(hours=6) else fetched
    return t.timestamp()


def publication_date(article: Article) -> date | None:
    """The day an article was published; None when it carries no publication time of its own (the poller
    and the JSON-lines reader then set `published` to the fetch time), as there is nothing to resolve
    "on Thursday" against."""
    if article.published == article.fetched_at:
        return None
    return datetime.fromtimestamp(event_time(article), UTC).date()


def entity_vector(entities: Sequence[Entity]) -> Vector:
    """Canonical entities weighted by the rarity of their rarest word: 'Pyongyang' says more than 'Monday'."""
    vec: Vector = {}
    for ent in entities:
        name = ent.name.strip().lower()
        words = tokens(name)
        if not words:
            continue
        weight = max(idf(w) for w in words) * (1.0 + math.log(ent.count))
        vec[name] = vec.get(name, 0.0) + weight
    return normalise(vec)


def story_features(state: StoryState) -> Features:
    """A story seen as one article (its centroids, facts and latest time): to score it against another."""
    return Features.model_construct(  # trusted values, no validation: settle builds one per quiet story
        recipe="story",
        body=normalise(state["vec"]),
        title=normalise(state["tvec"]),
        ents=normalise(state["evec"]),
        sketch=[],
        keys=(),
        time=state["t1"],
        title_quality=title_quality(state["title"]),
        years=frozenset(state.get("years", ())),
        people=_story_names(state, "person"),
        places=_story_names(state, "location"),
        dates=frozenset(state.get("dates", ())),
    )


def _story_names(state: StoryState, kind: str) -> frozenset[str]:
    """The story's entities of one type: its people or places, as event facts."""
    return frozenset(n for n, e in state["entities"].items() if e["type"] == kind)


def title_quality(title: str) -> float:
    """How well-formed a headline is: a full, mid-length, sentence-case line beats a fragment or a shout."""
    words = title.split()
    if not words:
        return -10.0
    q = 1.0 - min(1.0, abs(len(words) - 10) / 12)
    letters = "".join(filter(str.isalpha, title))  # filter/map run in C: this is called per article
    if letters and sum(map(str.isupper, letters)) / len(letters) > 0.6:
        q -= 0.6  # ALL CAPS
    if title.rstrip().endswith(("...", "…", ",", ";", ":", "-")):
        q -= 0.6  # truncated
    if title[0].islower():
        q -= 0.3
    if " | " in title or title.count(" - ") >= 2:
        q -= 0.2  # site-name clutter
    return q


def article_keys(article: Article, title_toks: list[str], body_toks: list[str]) -> tuple[str, ...]:
    """Exact-copy keys: canonical URL, fingerprint of the body words, and for title-only items the title."""
    keys: list[str] = []
    if url := copy_key_url(article.url):
        keys.append("u:" + url)
    if fp := content_fingerprint(body_toks):
        keys.append("c:" + fp)
    elif not body_toks and (fp := content_fingerprint([*title_toks, *tokens(article.source)])):
        keys.append("t:" + fp)
    return tuple(keys)


def features(article: TaggedArticle, settings: DedupSettings) -> Features:
    """Vectors, sketch and keys of one article. The title is part of the body vector, and also its own."""
    title_toks = tokens(article.title)
    body_toks = tokens(article.body)
    text_toks = body_toks if _starts_with(body_toks, title_toks) else title_toks + body_toks
    return Features(
        recipe=feature_recipe(settings),
        body=top_terms(tfidf(text_toks, lead=settings.lead_weight), settings.article_terms),
        title=tfidf(title_toks),
        ents=entity_vector(article.entities),
        sketch=shingle_sketch(body_toks, k=_SKETCH_K),
        keys=article_keys(article, title_toks, body_toks),
        time=event_time(article),
        title_quality=title_quality(article.title),
        years=years(text_toks),
        people=_names(article.entities, "person"),
        places=_names(article.entities, "location"),
        dates=stated_dates(text_toks, day) if (day := publication_date(article)) else frozenset(),
    )


def feature_recipe(settings: DedupSettings) -> str:
    """What shapes an article's features: the code's version and the settings `features` reads."""
    return f"v{FEATURES_VERSION} terms={settings.article_terms} lead={settings.lead_weight}"


def with_features(article: TaggedArticle, settings: DedupSettings) -> TaggedArticle:
    """The article carrying its features: the parallel tagging stage computes them, so the one ordered assign
    stage does not (they are about half of its work per article)."""
    return article.model_copy(update={"features": features(article, settings)})


def article_features(article: TaggedArticle, settings: DedupSettings) -> Features:
    """The features the tagging stage attached if they were made by the same recipe, else computed here."""
    carried = article.features
    if carried is None or carried.recipe != feature_recipe(settings):
        return features(article, settings)
    return carried


def _names(entities: Iterable[Entity], kind: str) -> frozenset[str]:
    return frozenset(e.name for e in entities if e.type == kind)


def _starts_with(body: list[str], title: list[str]) -> bool:
    """ECB+-style and many feeds repeat the headline as the first sentence: don't count it twice."""
    return bool(title) and body[: len(title)] == title


# ------------------------------------------------------------------------------------------- the engine


class StoryEngine:
    """Assigns articles to stories over a StateStore; see the module docstring for the method."""

    def __init__(self, settings: DedupSettings, store: StateStore | None = None) -> None:
        self.settings = settings
        self.store: StateStore = store if store is not None else MemoryStore()
        self._window = settings.story_window_hours * 3600.0
        # Derived from store.stories, rebuilt lazily: term -> story ids, story -> its index terms, last time.
        self._postings: dict[str, set[str]] = {}
        self._index_terms: dict[str, tuple[str, ...]] = {}
        self._last_seen: dict[str, float] = {}
        self._settled: set[str] = set()  # quiet stories `settle` has looked at (a new report takes one out)
        self._big: set[str] = set()  # stories of more than `small_story_max` reports: what small ones merge into
        self._ready = False

    # -- public contract -------------------------------------------------------------------------------

    def assign(self, article: TaggedArticle) -> Assignment:
        """Give `article` its story (and duplicate_of); idempotent per article id."""
        self._ensure_index()
        if (replayed := self._replay(article.id)) is not None:
            return replayed
        feats = article_features(article, self.settings)
        original = self._exact_copy_of(feats)
        score = 1.0
        state = self.store.stories.get(self.store.articles[original]["story_id"]) if original else None
        if state is None:
            state, original, score = self._best_story(feats)
        is_new = state is None
        if state is None:
            state = self._new_story(article, feats)
        elif original is not None:
            self._add_duplicate(state, article, feats)
        else:
            self._add_original(state, article, feats, score)
        self._record(state, article, original, feats)
        return Assignment(article.id, state["id"], original, snapshot(state), is_new_story=is_new, replayed=False)

    def _replay(self, article_id: str) -> Assignment | None:
        """The recorded answer for an article seen before (at-least-once delivery), else None."""
        record = self.store.articles.get(article_id)
        state = self.store.stories.get(record["story_id"]) if record is not None else None
        if record is None or state is None:
            return None
        return Assignment(
            article_id,
            record["story_id"],
            record.get("duplicate_of"),
            snapshot(state),
            is_new_story=False,
            replayed=True,
        )

    def expire(self, now: datetime) -> int:
        """Drop stories idle for longer than the window, with their articles and keys; returns how many."""
        self._ensure_index()
        cutoff = now.timestamp() - self._window
        stale = sorted(sid for sid, last in self._last_seen.items() if last < cutoff)
        for sid in stale:
            state = self.store.stories.get(sid)
            self._unindex(sid)
            if state is None:
                continue
            for aid in state["article_ids"]:
                self.store.articles.pop(aid, None)
            for key in state.get("keys", ()):
                self.store.keys.pop(key, None)
            del self.store.stories[sid]
        return len(stale)

    # -- copies ----------------------------------------------------------------------------------------

    def _exact_copy_of(self, feats: Features) -> str | None:
        """The first-seen article sharing an exact key with this one, if it is still live."""
        for key in feats.keys:
            first = self.store.keys.get(key)
            if first is not None and first in self.store.articles:
                record = self.store.articles[first]
                return record.get("duplicate_of") or first
        return None

    def _near_copy_of(self, state: StoryState, feats: Features) -> str | None:
        """An original of this story whose shingles the article nearly repeats (light edits, new URL)."""
        if len(feats.sketch) < 8:
            return None
        best, best_j = None, 0.0
        for aid, hexed in state["sketches"].items():
            j = sketch_jaccard(feats.sketch, _unhex(hexed), _SKETCH_K)
            if j >= self.settings.near_duplicate_threshold and j > best_j:
                best, best_j = aid, j
        return best

    # -- stories ---------------------------------------------------------------------------------------

    def _best_story(self, feats: Features) -> tuple[StoryState | None, str | None, float]:
        """The best open story the article may join (and a near-copy original in it), with the score.

        A story accepts an article scoring at least the threshold and at least `cohesion` times the mean score
        its members joined with: a tight story does not take a newcomer that is merely on the same topic,
        which is how look-alike events (a second strike, a second earthquake) snowball into one story.
        """
        s = self.settings
        scored: list[tuple[float, str, StoryState]] = []
        for sid in self._candidates(feats):
            state = self.store.stories.get(sid)
            if state is None or not self._open(state, feats.time):
                continue
            scored.append((self.similarity(state, feats), sid, state))
        scored.sort(key=lambda x: (-x[0], x[1]))
        for score, _, state in scored[:3]:  # a copy of a report is similar to that report's story
            if score >= s.similarity_threshold and (original := self._near_copy_of(state, feats)):
                return state, original, score
        for score, _, state in scored:
            if score < s.similarity_threshold:
                break
            if state["joins"] == 0 or score >= s.cohesion * state["join_sum"] / state["joins"]:
                return state, None, score
        return None, None, 0.0

    def similarity(self, state: StoryState, feats: Features) -> float:
        """Weighted cosines of body, title and entity vectors; a channel missing on either side drops out.

        Article vectors are unit length and story norms are stored, so each cosine is one sparse dot product.
        A would-be join that disagrees on `conflict_kinds` kinds of event facts is scored down (`_conflicts`).
        """
        s = self.settings
        parts = [(s.body_weight, _cos_unit(feats.body, state["vec"], state["vec_norm"]))]
        if feats.title and state["tvec"]:
            parts.append((s.title_weight, _cos_unit(feats.title, state["tvec"], state["tvec_norm"])))
        if feats.ents and state["evec"]:
            parts.append((s.entity_weight, _cos_unit(feats.ents, state["evec"], state["evec_norm"])))
        total = sum(w for w, _ in parts)
        score = sum(w * v for w, v in parts) / total if total > 0 else 0.0
        if score >= s.similarity_threshold and self._conflicts(state, feats) >= s.conflict_kinds:
            score *= s.conflict_penalty
        if score >= s.similarity_threshold and _disjoint(feats.dates, state.get("dates", ())):
            score *= s.date_conflict_penalty
        return score

    @staticmethod
    def _conflicts(state: StoryState, feats: Features) -> int:
        """How many kinds of event facts (years, people, places) both sides state and none of which agree.

        Two fights of one boxer differ in the opponent, two earthquakes in the place, a patch and last year's
        in the year: one disagreement is common between reports of one event (each names its own witnesses),
        several at once are not. Only scored for a would-be join, so the cost is a few set operations.
        """
        return (
            _disjoint(feats.years, state.get("years", ()))
            + _disjoint(feats.people, _story_names(state, "person"))
            + _disjoint(feats.places, _story_names(state, "location"))
        )

    def settle(self, now: float) -> list[Merge]:
        """Merge small stories that went quiet into the story they belong to; returns the merges.

        A report that opened a story of its own was compared with the stories as they were on its arrival, and
        the story it belongs to may have been too young to recognise it then (another angle, the one outlet that
        led with a name the others added later). Once a story of at most `small_story_max` reports has had no
        new one for `settle_minutes` (event time, against `now`), it is scored once more, as one article,
        against the bigger open stories, and merged into the best one scoring at least the threshold (no
        cohesion test: the bigger story's members joined it while it was forming). Bigger stories are never
        merged into another: an established story keeps its id. The stream calls this with the wall clock, the
        offline CLI with the latest event time and once more at the end of its input.
        """
        self._ensure_index()
        s = self.settings
        if s.small_story_max <= 0:
            return []
        cutoff = now - s.settle_minutes * 60.0
        due = sorted(sid for sid, last in self._last_seen.items() if last <= cutoff and sid not in self._settled)
        merges: list[Merge] = []
        for sid in due:
            small = self.store.stories.get(sid)
            self._settled.add(sid)
            if small is None or small["n"] > s.small_story_max or small.get("settled"):
                continue
            target, score = self._settle_target(small)
            if target is None:
                small["settled"] = True  # considered once: stays its own story
                self.store.stories[sid] = small
                continue
            moved = tuple(small["article_ids"])
            started: float = small["t0"]
            published = tuple(float((self.store.articles.get(aid) or {}).get("published", started)) for aid in moved)
            self._merge_into(target, small, score)
            merges.append(Merge(sid, small["revision"], moved, published, target["id"], snapshot(target)))
        return merges

    def _settle_target(self, small: StoryState) -> tuple[StoryState | None, float]:
        """The bigger open story scoring best against the small one, if any reaches the threshold."""
        s = self.settings
        best: tuple[StoryState | None, float] = (None, 0.0)
        if not self._big:
            return best
        query = story_features(small)
        for sid in self._candidates(query, among=self._big):
            other = self.store.stories[sid]
            if not (self._open(other, small["t0"]) and self._open(other, small["t1"])):
                continue
            score = self.similarity(other, query)
            if score >= s.similarity_threshold and score > best[1]:
                best = (other, score)
        return best

    def _merge_into(self, state: StoryState, other: StoryState, score: float) -> None:
        """Move a story's reports, centroids and facts into `state`; the other story is gone afterwards.

        Writes go in an order a replay can finish: article records first, then the grown story, the small
        one's removal last (a story that already holds the small one's articles is not added to twice).
        """
        s = self.settings
        for aid in other["article_ids"]:
            if (record := self.store.articles.get(aid)) is not None:
                self.store.articles[aid] = {**record, "story_id": state["id"]}
        if set(other["article_ids"]).isdisjoint(state["article_ids"]):
            for name, keep in (("vec", s.story_terms), ("tvec", s.story_title_terms), ("evec", s.story_entities)):
                vec = {k: q * other[name + "_scale"] for k, q in other[name].items()}
                state[name], state[name + "_scale"] = _add(state[name], state[name + "_scale"], vec, keep)
                state[name + "_norm"] = norm(state[name])
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
            self._keep_facts(state, other.get("years", ()), other.get("dates", ()))
            self._keep_sketches(state, other["sketches"])
            state["t0"], state["t1"] = min(state["t0"], other["t0"]), max(state["t1"], other["t1"])
            state["revision"] += 1
        self.store.stories[state["id"]] = state
        self._index(state)
        self._unindex(other["id"])
        del self.store.stories[other["id"]]

    def _open(self, state: StoryState, t: float) -> bool:
        """A story takes articles from `window` before its first report until `window` after its last."""
        return state["t0"] - self._window <= t <= state["t1"] + self._window

    def _candidates(self, feats: Features, among: set[str] | None = None) -> list[str]:
        """Stories sharing heavy terms or entities with the article, most overlap first.

        The work is bounded: posting lists are visited rarest first until `candidate_budget` story ids have
        been touched, so a word that is in thousands of live stories costs nothing (the rarer words and names
        find the story anyway) and assignment stays cheap however many stories are open.
        """
        query = list(top_terms(feats.body, self.settings.query_terms).items())
        query += [("e:" + name, w) for name, w in feats.ents.items()]
        lists = [(len(p), term, w, p) for term, w in query if (p := self._postings.get(term))]
        lists.sort(key=lambda x: (x[0], x[1]))
        budget, k = self.settings.candidate_budget, self.settings.max_candidates
        shared: Counter[str] = Counter()
        for size, _, _, postings in lists:
            if size > budget:
                break
            budget -= size
            # Counting runs in C: this loop is the hot spot at 100k stories. `among` narrows the count (settle:
            # the bigger stories only) with a set intersection, also in C.
            shared.update(postings if among is None else postings & among)
        if len(shared) <= k:
            return sorted(shared, key=lambda sid: (-shared[sid], sid))
        # The k most-shared stories, ties broken by id, not by set order (which is salted per process): same
        # candidates after a restart. Overlap counts are small integers, so the k-th largest comes from their
        # histogram (counted in C) instead of a sort of every story touched.
        floor = _kth_largest(Counter(shared.values()), k)
        above = sorted((sid for sid, n in shared.items() if n > floor), key=lambda sid: (-shared[sid], sid))
        tied = [sid for sid, n in shared.items() if n == floor]
        heapq.heapify(tied)  # in C, like the pops: the smallest ids of a long tie without sorting them all
        return above + [heapq.heappop(tied) for _ in range(k - len(above))]

    def _new_story(self, article: TaggedArticle, feats: Features) -> StoryState:
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
        self._add_original(state, article, feats, None)
        return state

    def _add_original(self, state: StoryState, article: TaggedArticle, feats: Features, score: float | None) -> None:
        """A new report: it moves the centroids, adds its source and entities, and may give a better title.

        `score` is the similarity it joined with (None for the story's first report).
        """
        s = self.settings
        if score is not None:
            state["joins"] += 1
            state["join_sum"] += score
            if article.title.strip():
                self._maybe_retitle(state, article.title.strip(), feats)
        state["n"] += 1
        for name, vec, keep in (
            ("vec", feats.body, s.story_terms),
            ("tvec", feats.title, s.story_title_terms),
            ("evec", feats.ents, s.story_entities),
        ):
            state[name], state[name + "_scale"] = _add(state[name], state.get(name + "_scale", 1.0), vec, keep)
            state[name + "_norm"] = norm(state[name])
        if article.source not in state["sources"]:
            state["sources"].append(article.source)
        _merge_entities(state["entities"], ((e.name, e.type, e.count, e.mentions) for e in article.entities))
        self._keep_facts(state, feats.years, feats.dates)
        if feats.sketch:
            self._keep_sketches(state, {article.id: _hex(feats.sketch)})
        self._touch(state, article, feats)

    def _keep_facts(self, state: StoryState, years: Collection[str], dates: Collection[str]) -> None:
        """Add event facts the story does not hold yet, up to its bound per kind (the first reports' win)."""
        for name, facts, keep in (("years", years, _STORY_YEARS), ("dates", dates, self.settings.story_dates)):
            kept = state.setdefault(name, [])
            kept.extend(sorted(set(facts).difference(kept))[: max(0, keep - len(kept))])

    def _keep_sketches(self, state: StoryState, sketches: dict[str, str]) -> None:
        """Add originals' sketches, keeping the latest `sketches_per_story` (copies follow their original closely)."""
        kept = state["sketches"]
        kept.update(sketches)
        while len(kept) > self.settings.sketches_per_story:
            del kept[next(iter(kept))]

    def _add_duplicate(self, state: StoryState, article: TaggedArticle, feats: Features) -> None:
        """A copy: counted and listed, but it adds no source, no weight and no entities."""
        state["dups"] += 1
        self._touch(state, article, feats)

    def _touch(self, state: StoryState, article: TaggedArticle, feats: Features) -> None:
        state.pop("settled", None)  # news again: `settle` looks at it once more when it is quiet again
        self._settled.discard(state["id"])
        state["t0"] = min(state["t0"], feats.time)
        state["t1"] = max(state["t1"], feats.time)
        state["article_ids"].append(article.id)
        state["revision"] += 1

    def _maybe_retitle(self, state: StoryState, title: str, feats: Features) -> None:
        """Keep the title that is best-formed and most typical of the story's headlines."""
        current = state["title"]
        cur_score = title_quality(current) + _cos_unit(tfidf(tokens(current)), state["tvec"], state["tvec_norm"])
        new_score = feats.title_quality + _cos_unit(feats.title, state["tvec"], state["tvec_norm"])
        if new_score > cur_score + 1e-9:
            state["title"] = title

    def _record(self, state: StoryState, article: Article, original: str | None, feats: Features) -> None:
        """Persist the answer. The article record goes last: it is the commit mark replay looks for."""
        for key in feats.keys:
            if key not in self.store.keys:
                self.store.keys[key] = article.id
                state["keys"].append(key)  # kept with the story so expiry can drop them
        self.store.stories[state["id"]] = state  # re-assigned, not mutated in place: the table marks it changed
        # `published` locates the article's document (monthly index) if a merge moves it to another story.
        record = {"story_id": state["id"], "duplicate_of": original, "published": article.published.timestamp()}
        self.store.articles[article.id] = record
        self._index(state)

    # -- derived index -----------------------------------------------------------------------------------

    def _ensure_index(self) -> None:
        """Build the candidate index from the store once (after a restart the tables are the truth)."""
        if self._ready:
            return
        for sid in sorted(self.store.stories):
            self._index(self.store.stories[sid])
        self._ready = True

    def _index(self, state: StoryState) -> None:
        sid = state["id"]
        terms = tuple(top_terms(state["vec"], self.settings.index_terms)) + tuple("e:" + e for e in state["evec"])
        old = self._index_terms.get(sid, ())
        if old != terms:
            for term in set(old) - set(terms):
                bucket = self._postings.get(term)
                if bucket is not None:
                    bucket.discard(sid)
                    if not bucket:
                        del self._postings[term]
            for term in set(terms) - set(old):
                self._postings.setdefault(term, set()).add(sid)
            self._index_terms[sid] = terms
        self._last_seen[sid] = state["t1"]
        if state["n"] > self.settings.small_story_max:
            self._big.add(sid)

    def _unindex(self, sid: str) -> None:
        self._settled.discard(sid)
        self._big.discard(sid)
        for term in self._index_terms.pop(sid, ()):
            bucket = self._postings.get(term)
            if bucket is not None:
                bucket.discard(sid)
                if not bucket:
                    del self._postings[term]
        self._last_seen.pop(sid, None)


# ---------------------------------------------------------------------------------------------- helpers


def story_moves(merge: Merge) -> list[StoryMove]:
    """The messages that re-file a merged story's articles downstream: one per article (keyed by it)."""
    return [
        StoryMove(
            article_id=aid,
            published=datetime.fromtimestamp(published, UTC),
            story_id=merge.story_id,
            merged_story_id=merge.merged_story_id,
            merged_revision=merge.merged_revision,
            story=merge.story,
        )
        for aid, published in zip(merge.article_ids, merge.published, strict=True)
    ]


def story_id_for(article_id: str) -> str:
    """Deterministic story id from the first article's id."""
    return "s-" + hashlib.blake2b(article_id.encode("utf-8"), digest_size=8).hexdigest()


def _disjoint(mine: frozenset[str], story: Collection[str]) -> bool:
    """Both sides state facts of a kind and none of them agree."""
    return bool(mine) and bool(story) and mine.isdisjoint(story)


def _kth_largest(histogram: Counter[int], k: int) -> int:
    """The k-th largest value of a multiset given as value -> multiplicity (k <= its size)."""
    seen = 0
    for value in sorted(histogram, reverse=True):
        seen += histogram[value]
        if seen >= k:
            return value
    return min(histogram)


def _fallback_title(article: Article) -> str:
    words = article.body.split()
    return " ".join(words[:12]) + ("…" if len(words) > 12 else "") if words else article.id


def _cos_unit(unit: Vector, vec: Vector, vec_norm: float) -> float:
    """Cosine of a unit vector with a vector of known norm."""
    return dot(unit, vec) / vec_norm if vec_norm > 0 else 0.0


def _add(acc: dict[str, int], scale: float, vec: Vector, keep: int) -> tuple[dict[str, int], float]:
    """acc * scale + vec, truncated to the `keep` heaviest terms (bounded state per story), re-quantised."""
    out = {k: q * scale for k, q in acc.items()}
    for k, v in vec.items():
        out[k] = out.get(k, 0.0) + v
    return _quantise(top_terms(out, keep))


_LEVELS = 255  # a story centroid's weights are integers 1..255 times one float scale


def _quantise(vec: Vector) -> tuple[dict[str, int], float]:
    """Weights as integers of one scale (8 bits of precision; weights below half a step are dropped).

    CPython shares the objects of small integers while every float is a 24-byte object of its own: this
    saves about 1.5 KB per live story. Cosines do not depend on the scale, so only `_add` needs it.
    """
    top = max(vec.values(), default=0.0)
    if top <= 0.0:
        return {}, 1.0
    scale = top / _LEVELS
    out = {}
    for k, v in vec.items():
        if (q := round(v / scale)) > 0:
            out[k] = q
    return out, scale


def _merge_entities(acc: dict[str, dict[str, Any]], entities: Iterable[tuple[str, str, int, list[str]]]) -> None:
    """Add (name, type, count, mentions) to a story's entities: counts add up, up to 5 surface forms are kept."""
    for name, kind, count, mentions in entities:
        cur = acc.setdefault(name, {"type": kind, "count": 0, "mentions": []})
        cur["count"] += count
        for m in mentions:
            if m not in cur["mentions"] and len(cur["mentions"]) < 5:
                cur["mentions"].append(m)


def _hex(sketch: list[int]) -> str:
    """A sketch as fixed-width big-endian hex (JSON-able, 8 characters a value), in one C call."""
    return np.asarray(sketch, dtype=">u4").tobytes().hex()


def _unhex(text: str) -> list[int]:
    return np.frombuffer(bytes.fromhex(text), dtype=">u4").tolist()


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


# ------------------------------------------------------------------------------------------------ CLI

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
