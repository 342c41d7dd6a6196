"""The engine's state: the shape of a story (`StoryState`), its compact encodings, and where it is kept.

State lives in three JSON-able mappings (`StateStore`: changelog-backed tables in the stream, dicts offline), so
it must stay plain dicts, lists, strings and numbers: `StoryState` is a TypedDict, a type for the checker only.
Story centroids are stored as small integers times one scale per vector, which CPython keeps far more compactly
than floats, and shingle sketches as hex strings. Everything the engine derives from this (the candidate
index) is rebuilt from it, so the tables alone are the truth after a restart.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict

import numpy as np

from pipeline.nlp.textfeatures import Vector, top_terms


class StoryEntity(TypedDict):
    """One canonical entity of a story: counts add up over its reports, up to 5 surface forms are kept."""

    type: str
    count: int
    mentions: list[str]


class StoryState(TypedDict):
    """One story as the engine keeps it (a plain dict: it is written to the changelog as JSON).

    Reads tolerate records of older code without `years`, `dates`, `keys` or the `*_scale` weights (`.get`).
    """

    id: str  # "s-" + a hash of its first article's id
    title: str
    t0: float  # event time of its first report, epoch seconds
    t1: float  # ... and of its latest
    n: int  # original reports
    dups: int  # copies: listed, but no weight
    sources: list[str]
    article_ids: list[str]  # originals and copies, in arrival order
    keys: list[str]  # the exact-copy keys it claimed in `StateStore.keys`, so expiry can drop them
    entities: dict[str, StoryEntity]  # canonical name -> entity
    vec: dict[str, int]  # body centroid: quantised weights, times `vec_scale`; `vec_norm` its norm
    vec_scale: float
    vec_norm: float
    tvec: dict[str, int]  # title centroid
    tvec_scale: float
    tvec_norm: float
    evec: dict[str, int]  # entity centroid
    evec_scale: float
    evec_norm: float
    sketches: dict[str, str]  # article id -> hex shingle sketch, of its latest originals
    years: list[str]  # event facts of its first reports, bounded per kind
    dates: list[str]
    joins: int  # reports that joined it (and merged in), and the sum of their scores: the cohesion test
    join_sum: float
    revision: int
    settled: NotRequired[bool]  # `settle` found no story to merge it into; dropped when news comes in


# The three centroids by their keys, so code can loop over them with keys the type checker knows.
Centroid = Literal["vec", "tvec", "evec"]
CentroidScale = Literal["vec_scale", "tvec_scale", "evec_scale"]
CentroidNorm = Literal["vec_norm", "tvec_norm", "evec_norm"]
CENTROIDS: tuple[tuple[Centroid, CentroidScale, CentroidNorm], ...] = (
    ("vec", "vec_scale", "vec_norm"),
    ("tvec", "tvec_scale", "tvec_norm"),
    ("evec", "evec_scale", "evec_norm"),
)


class StateStore(Protocol):
    """Where the engine keeps its state: three changelog-backed tables in the stream (`pipeline.stream.state`),
    dicts offline."""

    @property
    def stories(self) -> MutableMapping[str, Any]:
        """story_id -> StoryState (the source of truth). Typed `Any` because the stream's table holds the JSON
        it decodes (`dict[str, Any]`), which a TypedDict does not accept; the engine reads values as StoryState."""

    @property
    def articles(self) -> MutableMapping[str, dict[str, Any]]:
        """article_id -> {"story_id", "duplicate_of", "published"}"""

    @property
    def keys(self) -> MutableMapping[str, str]:
        """dedup key (canonical url / content fingerprint) -> first article id"""


@dataclass
class MemoryStore:
    """A dict-backed StateStore, for the offline CLI, tests and benchmarks."""

    stories: MutableMapping[str, StoryState] = field(default_factory=dict)
    articles: MutableMapping[str, dict[str, Any]] = field(default_factory=dict)
    keys: MutableMapping[str, str] = field(default_factory=dict)


def story_names(state: StoryState, kind: str) -> frozenset[str]:
    """The story's entities of one type: its people or places, as event facts."""
    return frozenset(n for n, e in state["entities"].items() if e["type"] == kind)


# ------------------------------------------------------------------------------------------ encodings

_LEVELS = 255  # a story centroid's weights are integers 1..255 times one float scale


def add_to_centroid(acc: dict[str, int], scale: float, vec: Vector, keep: int) -> tuple[dict[str, int], float]:
    """acc * scale + vec, truncated to the `keep` heaviest terms (bounded state per story), re-quantised."""
    out = {k: q * scale for k, q in acc.items()}
    for k, v in vec.items():
        out[k] = out.get(k, 0.0) + v
    return _quantise(top_terms(out, keep))


def _quantise(vec: Vector) -> tuple[dict[str, int], float]:
    """Weights as integers of one scale (8 bits of precision; weights below half a step are dropped).

    CPython shares the objects of small integers while every float is a 24-byte object of its own: this
    saves about 1.5 KB per live story. Cosines do not depend on the scale, so only `add_to_centroid` needs it.
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


def sketch_to_hex(sketch: list[int]) -> str:
    """A sketch as fixed-width big-endian hex (JSON-able, 8 characters a value), in one C call."""
    return np.asarray(sketch, dtype=">u4").tobytes().hex()


def sketch_from_hex(text: str) -> list[int]:
    return np.frombuffer(bytes.fromhex(text), dtype=">u4").tolist()
