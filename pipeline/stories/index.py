"""The candidate index: which live stories an article (or a quiet story, in `settle`) is worth scoring against.

An inverted index over each story's heaviest terms and entities, plus what upkeep needs to find its work
without scanning every story (each story's latest report time, which stories are big, which quiet ones
`settle` has looked at). All of it is derived from `StateStore.stories`, kept in memory only and rebuilt
lazily (`load`), so a restarted engine assigns like one that never stopped. Orders never depend on set
iteration (salted per process): ties are broken by story id.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping

from pipeline.nlp.textfeatures import top_terms
from pipeline.settings import DedupSettings
from pipeline.stories.features import Features
from pipeline.stories.store import StoryState


class CandidateIndex:
    """term -> story ids, story -> its index terms and last time; big stories; stories `settle` has seen."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings
        self.postings: dict[str, set[str]] = {}
        self.index_terms: dict[str, tuple[str, ...]] = {}
        self.last_seen: dict[str, float] = {}
        self.settled: set[str] = set()  # quiet stories `settle` has looked at (a new report takes one out)
        self.big: set[str] = set()  # stories of more than `small_story_max` reports: what small ones merge into

    def load(self, stories: Mapping[str, StoryState]) -> None:
        """Index every story of the store (after a restart the tables are the truth)."""
        for sid in sorted(stories):
            self.add(stories[sid])

    def add(self, state: StoryState) -> None:
        """Index a new or changed story."""
        sid = state["id"]
        terms = tuple(top_terms(state["vec"], self.settings.index_terms)) + tuple("e:" + e for e in state["evec"])
        old = self.index_terms.get(sid, ())
        if old != terms:
            for term in set(old) - set(terms):
                bucket = self.postings.get(term)
                if bucket is not None:
                    bucket.discard(sid)
                    if not bucket:
                        del self.postings[term]
            for term in set(terms) - set(old):
                self.postings.setdefault(term, set()).add(sid)
            self.index_terms[sid] = terms
        self.last_seen[sid] = state["t1"]
        if state["n"] > self.settings.small_story_max:
            self.big.add(sid)

    def remove(self, sid: str) -> None:
        """Forget a story (expired, or merged into another)."""
        self.settled.discard(sid)
        self.big.discard(sid)
        for term in self.index_terms.pop(sid, ()):
            bucket = self.postings.get(term)
            if bucket is not None:
                bucket.discard(sid)
                if not bucket:
                    del self.postings[term]
        self.last_seen.pop(sid, None)

    def candidates(self, feats: Features, among: set[str] | None = None) -> list[str]:
        """Stories sharing heavy terms or entities with the article, most overlap first.

        The work is bounded: posting lists are visited rarest first until `candidate_budget` story ids have
        been touched, so a word that is in thousands of live stories costs nothing (the rarer words and names
        find the story anyway) and assignment stays cheap however many stories are open.
        """
        query = list(top_terms(feats.body, self.settings.query_terms).items())
        query += [("e:" + name, w) for name, w in feats.ents.items()]
        lists = [(len(p), term, w, p) for term, w in query if (p := self.postings.get(term))]
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


def _kth_largest(histogram: Counter[int], k: int) -> int:
    """The k-th largest value of a multiset given as value -> multiplicity (k <= its size)."""
    seen = 0
    for value in sorted(histogram, reverse=True):
        seen += histogram[value]
        if seen >= k:
            return value
    return min(histogram)
