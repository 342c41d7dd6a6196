"""What story assignment compares about one article: its `Features` (vectors, copy keys, sketch, event facts).

Computed once per article, and preferably not by the engine: the parallel tagging stage attaches them
(`with_features`), so the one ordered assign stage only assigns (they are about half of its work per article).
`feature_recipe` names the code version and the settings that shaped them; features of another recipe are
recomputed (`article_features`). Pure functions of the article and the settings: no state, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from pipeline.models import Article, DedupFeatures, Entity, TaggedArticle
from pipeline.nlp.textfeatures import (
    Vector,
    content_fingerprint,
    copy_key_url,
    idf,
    normalise,
    shingle_sketch,
    stated_dates,
    tfidf,
    tokens,
    top_terms,
    years,
)
from pipeline.settings import DedupSettings

Features = DedupFeatures  # what the engine compares; also the message the tagging stage attaches to an article

SKETCH_K = 64  # bottom-k size of a shingle sketch
FEATURES_VERSION = 1  # bump when `features` computes anything differently: features of older code get recomputed


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
        sketch=shingle_sketch(body_toks, k=SKETCH_K),
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
