"""Upkeep of the live stories, apart from assignment: merging settled small stories, expiring idle ones.

Both run from the engine's periodic pass (`StoryEngine.settle`, `StoryEngine.expire`): the stream calls them on
the wall clock, the offline run (`pipeline.stories.offline`) on event time. A merge re-files articles that were
already sent downstream under another story, so it comes with the messages that move them (`story_moves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.models import Story, StoryMove
from pipeline.nlp.textfeatures import normalise
from pipeline.settings import DedupSettings
from pipeline.stories.features import Features, title_quality
from pipeline.stories.index import CandidateIndex
from pipeline.stories.scoring import is_open, similarity, window_s
from pipeline.stories.store import StateStore, StoryState, story_names
from pipeline.stories.story import absorb, snapshot


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


class Upkeep:
    """Settle and expire over the engine's store and candidate index (both shared with the engine)."""

    def __init__(self, settings: DedupSettings, store: StateStore, index: CandidateIndex) -> None:
        self.settings = settings
        self.store = store
        self.index = index

    def settle(self, now: float) -> list[Merge]:
        """Merge small stories that went quiet into the story they belong to; returns the merges.

        A report that opened a story of its own was compared with the stories as they were on its arrival, and
        the story it belongs to may have been too young to recognise it then (another angle, the one outlet that
        led with a name the others added later). Once a story of at most `small_story_max` reports has had no
        new one for `settle_minutes` (event time, against `now`), it is scored once more, as one article,
        against the bigger open stories, and merged into the best one scoring at least the threshold (no
        cohesion test: the bigger story's members joined it while it was forming). Bigger stories are never
        merged into another: an established story keeps its id.
        """
        s = self.settings
        if s.small_story_max <= 0:
            return []
        cutoff = now - s.settle_minutes * 60.0
        index = self.index
        due = sorted(sid for sid, last in index.last_seen.items() if last <= cutoff and sid not in index.settled)
        merges: list[Merge] = []
        for sid in due:
            small: StoryState | None = self.store.stories.get(sid)
            index.settled.add(sid)
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
        if not self.index.big:
            return best
        query = story_features(small)
        window = window_s(s)
        for sid in self.index.candidates(query, among=self.index.big):
            other: StoryState = self.store.stories[sid]
            if not (is_open(other, small["t0"], window) and is_open(other, small["t1"], window)):
                continue
            score = similarity(other, query, s)
            if score >= s.similarity_threshold and score > best[1]:
                best = (other, score)
        return best

    def _merge_into(self, state: StoryState, other: StoryState, score: float) -> None:
        """Move a story's reports, centroids and facts into `state`; the other story is gone afterwards.

        Writes go in an order a replay can finish: article records first, then the grown story, the small
        one's removal last (a story that already holds the small one's articles is not added to twice).
        """
        for aid in other["article_ids"]:
            if (record := self.store.articles.get(aid)) is not None:
                self.store.articles[aid] = {**record, "story_id": state["id"]}
        if set(other["article_ids"]).isdisjoint(state["article_ids"]):
            absorb(state, other, score, self.settings)
        self.store.stories[state["id"]] = state
        self.index.add(state)
        self.index.remove(other["id"])
        del self.store.stories[other["id"]]

    def expire(self, now: datetime) -> int:
        """Drop stories idle for longer than the window, with their articles and keys; returns how many."""
        cutoff = now.timestamp() - window_s(self.settings)
        stale = sorted(sid for sid, last in self.index.last_seen.items() if last < cutoff)
        for sid in stale:
            state: StoryState | None = self.store.stories.get(sid)
            self.index.remove(sid)
            if state is None:
                continue
            for aid in state["article_ids"]:
                self.store.articles.pop(aid, None)
            for key in state.get("keys", ()):
                self.store.keys.pop(key, None)
            del self.store.stories[sid]
        return len(stale)


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
        people=story_names(state, "person"),
        places=story_names(state, "location"),
        dates=frozenset(state.get("dates", ())),
    )


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
