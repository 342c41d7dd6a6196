"""Text features for story clustering: tokens, general-English IDF, sparse vectors, fingerprints.

Everything here is a pure, deterministic function of the text (no per-process hash seeds, no clock), so two
workers, or one worker before and after a restart, compute the same features for the same article.

IDF comes from a general English word-frequency resource (`wordfreq`), not from the stream: the stream's own
statistics are burst-shaped (one big story floods its words) and would make the assignment of an article
depend on everything seen before it. A word's frequency in running text is turned into a document-frequency
estimate for a news-length document, which is what IDF needs.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from operator import itemgetter
from urllib.parse import urlsplit

import numpy as np
from wordfreq import get_frequency_dict

from pipeline import urls

Vector = dict[str, float]

_WORD = re.compile(r"[^\W_]+(?:[.'’-][^\W_]+)*")
# A news article is a few hundred tokens: a word with per-token probability p appears in about p*L of them.
_DOC_TOKENS = 400.0
# Words wordfreq has never seen (names, typos, other scripts) get this IDF: rare, but not infinitely so.
MAX_IDF = 11.0
# Below this IDF a word carries no topical signal ("the", "said", "year"): dropped from vectors.
MIN_IDF = 1.0
# Numbers (dates, counts, magnitudes) tell look-alike events apart; a shared number alone is weak evidence.
NUMBER_IDF = 3.0
_NUMBER = re.compile(r"[\d.,:/-]+")
# Words after the first ~LEAD_SPAN of an article fade to plain weight (see tfidf's `lead`).
LEAD_SPAN = 40.0


@lru_cache(maxsize=1)
def _frequencies() -> Mapping[str, float]:
    """wordfreq's English table as word -> frequency per token; loaded once (about 0.1 s)."""
    return get_frequency_dict("en", wordlist="best")


@lru_cache(maxsize=200_000)
def idf(word: str) -> float:
    """IDF estimate of a lowercase word for a news-length document: ln(1 / min(1, p * L)), clipped."""
    if _NUMBER.fullmatch(word):
        return NUMBER_IDF
    p = _frequencies().get(word, 0.0)
    if p <= 0.0:
        if "-" in word or "." in word:  # "kim-jong" / "u.s": fall back on the rarest part
            parts = [q for q in re.split(r"[-.]", word) if q]
            if parts:
                return max(idf(q) for q in parts)
        return MAX_IDF
    return min(MAX_IDF, max(0.0, -math.log(min(1.0, p * _DOC_TOKENS))))


@lru_cache(maxsize=200_000)
def _norm_token(raw: str) -> str:
    """Lowercase, drop possessive 's and a plural s, so 'Korea's' == 'korea' and 'strikes' == 'strike'."""
    w = raw.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'.-")
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")) and w[-2].isalpha():
        if w.endswith("ies"):
            w = w[:-3] + "y"
        elif w.endswith(("ses", "xes", "zes", "ches", "shes")):
            w = w[:-2]
        else:
            w = w[:-1]
    return w


# Years written out (1950-2049): the cheapest fact that tells a report from one about last year's look-alike.
_YEARS = frozenset(str(y) for y in range(1950, 2050))


def years(toks: Iterable[str]) -> frozenset[str]:
    """The years among a text's tokens ("2013" in "September 18th, 2013"; not "2,013" nor "v2013")."""
    return _YEARS.intersection(toks)


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_DAYS = {str(d): d for d in range(1, 32)} | {f"{d}{s}": d for d in range(1, 32) for s in ("st", "nd", "rd", "th")}
_WEEKDAYS = {
    name: number
    for number, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_RELATIVE_DAYS = {"today": 0, "tonight": 0, "yesterday": -1}
_DATE_WORDS = frozenset(_MONTHS) | frozenset(_WEEKDAYS) | frozenset(_RELATIVE_DAYS)
# A day of a month is resolved to its occurrence nearest the publication date, if within half a year of it.
_DATE_REACH_DAYS = 183


def stated_dates(toks: Sequence[str], published: date) -> frozenset[str]:
    """The calendar days a text says things happen on ("on Thursday", "Dec. 11", "26 November", "yesterday"),
    resolved against its publication date, as ISO dates.

    A weekday is the last such day up to publication ("next Tuesday" the first after it), a day of a month its
    nearest occurrence. Resolution is what makes days comparable: a report written the next morning ("on
    Thursday") agrees with one written the same evening ("today"), and two reports naming "Thursday" a week
    apart do not. A month word counts only next to a day number ("May 4"; "4th of May" does not), so the verb
    "may" or "march" is no date.
    """
    out: set[str] = set()
    if _DATE_WORDS.isdisjoint(toks):  # most texts: one pass in C instead of a Python loop over every word
        return frozenset()
    last = len(toks) - 1
    for i in [i for i, tok in enumerate(toks) if tok in _DATE_WORDS]:
        tok = toks[i]
        if (weekday := _WEEKDAYS.get(tok)) is not None:
            if i > 0 and toks[i - 1] == "next":
                ahead = (weekday - published.weekday()) % 7 or 7
                out.add((published + timedelta(days=ahead)).isoformat())
            else:
                out.add((published - timedelta(days=(published.weekday() - weekday) % 7)).isoformat())
        elif (shift := _RELATIVE_DAYS.get(tok)) is not None:
            out.add((published + timedelta(days=shift)).isoformat())
        elif (month := _MONTHS.get(tok)) is not None:
            day = _DAYS.get(toks[i + 1] if i < last else "") or _DAYS.get(toks[i - 1] if i > 0 else "")
            if day and (resolved := _nearest_date(month, day, published)) is not None:
                out.add(resolved.isoformat())
    return frozenset(out)


def _nearest_date(month: int, day: int, published: date) -> date | None:
    """The occurrence of month/day nearest `published`; None if impossible (31 June) or too far off."""
    candidates = []
    for year in (published.year - 1, published.year, published.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue
    best = min(candidates, key=lambda d: abs((d - published).days), default=None)
    return best if best is not None and abs((best - published).days) <= _DATE_REACH_DAYS else None


def tokens(text: str) -> list[str]:
    """Normalised word tokens of `text` (any script; numbers kept: magnitudes and dates tell events apart)."""
    return list(filter(None, map(_norm_token, _WORD.findall(text))))


# IDF by word, read inline by tfidf (a dict read beats a call per term); bounded, then lru_cache alone.
_IDF_CACHE: dict[str, float] = {}
_IDF_CACHE_SIZE = 500_000


def tfidf(toks: Sequence[str], *, lead: float = 0.0) -> Vector:
    """Sublinear-TF x IDF vector, L2-normalised; words below MIN_IDF are dropped. Empty text -> {}.

    `lead` > 0 weights early words more (news is written as an inverted pyramid: the event is in the first
    sentences, background - often an earlier look-alike event - comes later): an occurrence at position i
    counts 1 + lead * exp(-i / LEAD_SPAN).
    """
    counts: dict[str, float] = dict(Counter(toks))  # counted in C; the lead bonus only touches the lead
    if lead:
        for term, decay in zip(toks, _lead_decay(), strict=False):
            counts[term] += lead * decay
    vec: Vector = {}
    known, log = _IDF_CACHE.get, math.log  # this loop runs for every article
    for term, n in counts.items():
        w = known(term)
        if w is None:
            w = idf(term)
            if len(_IDF_CACHE) < _IDF_CACHE_SIZE:
                _IDF_CACHE[term] = w
        if w >= MIN_IDF:
            vec[term] = (1.0 + log(n)) * w
    return normalise(vec)


@lru_cache(maxsize=1)
def _lead_decay() -> tuple[float, ...]:
    """exp(-i / LEAD_SPAN) for the positions where it still matters."""
    return tuple(math.exp(-i / LEAD_SPAN) for i in range(int(LEAD_SPAN * 4)))


def normalise(vec: Mapping[str, float]) -> Vector:
    """Scale to unit L2 norm (a copy); the zero vector stays empty."""
    n = norm(vec)
    return {k: v / n for k, v in vec.items()} if n > 0 else {}


def dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Sparse dot product. fsum makes it independent of the (per-process salted) set iteration order."""
    return math.fsum([a[k] * b[k] for k in a.keys() & b.keys()])


def norm(vec: Mapping[str, float]) -> float:
    """L2 norm."""
    return math.sqrt(math.fsum([v * v for v in vec.values()]))


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine of two sparse vectors of any scale (0 when either is empty)."""
    na, nb = norm(a), norm(b)
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def top_terms(vec: Mapping[str, float], k: int) -> Vector:
    """The k heaviest terms. The sort is stable, so ties keep insertion order, which is itself a function of
    the input (and survives JSON): truncation is deterministic without a slower two-key sort."""
    if len(vec) <= k:
        return dict(vec)
    return dict(sorted(vec.items(), key=itemgetter(1), reverse=True)[:k])


def stable_hash(text: str) -> int:
    """A 32-bit hash that is the same in every process (Python's hash() of str is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


@lru_cache(maxsize=200_000)
def _token_hash(token: str) -> int:
    return stable_hash(token)


def shingle_sketch(toks: list[str], *, k: int = 64, limit: int = 600) -> list[int]:
    """Bottom-k sketch of the word 3-shingles of the first `limit` words: a compact, JSON-able stand-in for
    the shingle set (copies share their beginning; the cap bounds the work on very long texts).

    A shingle's hash mixes its words' cached stable hashes arithmetically: cheaper than hashing joined text,
    and just as stable across processes.
    """
    n = min(len(toks), limit)
    if n < 3:
        return []
    hs = np.array(list(map(_token_hash, toks[:n])), dtype=np.uint64)
    p = np.uint64(0x01000193)
    # uint64 products wrap mod 2**64; the low 32 bits kept are exactly those of the unbounded arithmetic
    mixed = ((((hs[:-2] * p) ^ hs[1:-1]) * p ^ hs[2:]) * p) & np.uint64(0xFFFFFFFF)
    mixed.sort()  # sort + mask of repeats: what np.unique does, without its general-purpose overhead
    first = np.empty(mixed.shape, dtype=bool)
    first[0] = True
    np.not_equal(mixed[1:], mixed[:-1], out=first[1:])
    return mixed[first][:k].tolist()


def sketch_jaccard(a: list[int], b: list[int], k: int = 64) -> float:
    """Jaccard estimate from two bottom-k sketches (Broder): the share of the union's bottom-k in both."""
    if not a or not b:
        return 0.0
    sa, sb = set(a), set(b)
    union = sorted(sa | sb)[:k]
    return sum(1 for h in union if h in sa and h in sb) / len(union)


def content_fingerprint(words: Sequence[str]) -> str | None:
    """Hash of the text's words only: survives whitespace, punctuation, case and markup changes."""
    if len(words) < 8:  # too short to tell a copy from a coincidence
        return None
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=12).hexdigest()


def copy_key_url(url: str | None) -> str | None:
    """The canonical URL (`pipeline.urls`) also without scheme, `www.`/`m.` and trailing slash: for spotting a
    re-post of one page, where http/https or the mobile host of one outlet are the same page."""
    if not url or not url.strip():
        return None
    canonical = urls.canonical_url(url)
    parts = urlsplit(canonical)
    if parts.scheme not in urls.DEFAULT_PORTS or not parts.netloc:
        return None
    host = parts.netloc.removeprefix("www.").removeprefix("m.")
    path = parts.path.rstrip("/") or "/"
    return f"{host}{path}" + (f"?{parts.query}" if parts.query else "")
