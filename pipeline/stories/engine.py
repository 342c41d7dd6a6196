"""Story clustering: the `StoryEngine` gives every article a `story_id` and, for copies, a `duplicate_of`.

One pass, one article at a time, in arrival order (the stream feeds this stage from one ordered partition):

1. Replay: an article id already in `store.articles` gets its recorded answer back and changes nothing, so
   at-least-once delivery after a crash is harmless.
2. Copies: an exact key (canonical URL, or a fingerprint of the words) seen before, or a near-verbatim body
   (`scoring.near_copy_of`) makes the article a duplicate of the first-seen one. Duplicates join that story but
   never count as new reporting.
3. Story: candidate open stories come from the inverted index (`index`), each is scored and the best one that
   accepts the article wins (`scoring`); otherwise the article opens a new story (`story`).

This module owns that sequence and the writes that make it replayable; the features it compares, the state it
keeps, the scores and the periodic upkeep (`settle`, `expire`: `upkeep`) each live in their own module. No
randomness, no wall clock: the same input in the same order gives the same output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.models import Article, Story, TaggedArticle
from pipeline.settings import DedupSettings
from pipeline.stories.features import Features, article_features
from pipeline.stories.index import CandidateIndex
from pipeline.stories.scoring import best_story, is_open, window_s
from pipeline.stories.store import MemoryStore, StateStore, StoryState
from pipeline.stories.story import add_duplicate, add_original, new_story, snapshot
from pipeline.stories.upkeep import Merge, Upkeep


@dataclass(frozen=True)
class Assignment:
    """The engine's answer for one article, with the story snapshot after the update."""

    article_id: str
    story_id: str
    duplicate_of: str | None
    story: Story
    is_new_story: bool
    replayed: bool


class StoryEngine:
    """Assigns articles to stories over a StateStore; see the module docstring for the method."""

    def __init__(self, settings: DedupSettings, store: StateStore | None = None) -> None:
        self.settings = settings
        self.store: StateStore = store if store is not None else MemoryStore()
        self._window = window_s(settings)
        self._index = CandidateIndex(settings)  # derived from store.stories, built on first use
        self._upkeep = Upkeep(settings, self.store, self._index)
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
        state: StoryState | None = (
            self.store.stories.get(self.store.articles[original]["story_id"]) if original else None
        )
        if state is None:
            state, original, score = best_story(self._open_candidates(feats), feats, self.settings)
        is_new = state is None
        if state is None:
            state = new_story(article, feats, self.settings)
        elif original is not None:
            add_duplicate(state, article, feats)
        else:
            add_original(state, article, feats, score, self.settings)
        self._index.settled.discard(state["id"])  # news again: `settle` looks at it once more when it is quiet
        self._record(state, article, original, feats)
        return Assignment(article.id, state["id"], original, snapshot(state), is_new_story=is_new, replayed=False)

    def settle(self, now: float) -> list[Merge]:
        """Merge small stories that went quiet into the story they belong to (`upkeep.Upkeep.settle`); returns
        the merges. The stream calls this with the wall clock, the offline CLI with the latest event time and
        once more at the end of its input."""
        self._ensure_index()
        return self._upkeep.settle(now)

    def expire(self, now: datetime) -> int:
        """Drop stories idle for longer than the window, with their articles and keys; returns how many."""
        self._ensure_index()
        return self._upkeep.expire(now)

    # -- assignment ------------------------------------------------------------------------------------

    def _replay(self, article_id: str) -> Assignment | None:
        """The recorded answer for an article seen before (at-least-once delivery), else None."""
        record = self.store.articles.get(article_id)
        state: StoryState | None = self.store.stories.get(record["story_id"]) if record is not None else None
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

    def _exact_copy_of(self, feats: Features) -> str | None:
        """The first-seen article sharing an exact key with this one, if it is still live."""
        for key in feats.keys:
            first = self.store.keys.get(key)
            if first is not None and first in self.store.articles:
                record = self.store.articles[first]
                return record.get("duplicate_of") or first
        return None

    def _open_candidates(self, feats: Features) -> list[tuple[str, StoryState]]:
        """The candidate stories (`CandidateIndex.candidates` order) still open at the article's time."""
        found: list[tuple[str, StoryState]] = []
        for sid in self._index.candidates(feats):
            state: StoryState | None = self.store.stories.get(sid)
            if state is not None and is_open(state, feats.time, self._window):
                found.append((sid, state))
        return found

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
        self._index.add(state)

    def _ensure_index(self) -> None:
        """Build the candidate index from the store once (after a restart the tables are the truth)."""
        if self._ready:
            return
        self._index.load(self.store.stories)
        self._ready = True
