"""Language identification for articles.

langdetect is good on paragraphs but guesses wildly on headlines ("Obama" -> Somali, "JAPAN GET LUCKY WIN"
-> Afrikaans). News items are often title-only, so short or uncertain samples are checked against the stop
words of the languages we can tag: a headline with "to", "the", "of" in it is English even when the n-gram
profile says otherwise. The detector is seeded so the same text always gets the same answer (langdetect is
random by default).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from langdetect import DetectorFactory, LangDetectException, detect_langs

DetectorFactory.seed = 0

SAMPLE_CHARS = 800
"""Enough text for a confident guess; detection cost grows with the sample, and leads are representative."""

CONFIDENT_CHARS = 200
CONFIDENT_PROB = 0.90
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


@lru_cache(maxsize=32)
def _stop_words(lang: str) -> frozenset[str]:
    """spaCy ships stop-word lists for ~70 languages without any model; unknown codes give an empty set."""
    try:
        from spacy.util import get_lang_class

        return frozenset(get_lang_class(lang).Defaults.stop_words)
    except Exception:  # unknown language code, or a language whose extra dependencies are missing
        return frozenset()


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 4 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _stop_hits(words: list[str], lang: str) -> int:
    stops = _stop_words(lang)
    return sum(w in stops for w in words)


FAST_MIN_WORDS = 40
FAST_STOP_SHARE = 0.25
"""Running prose in a language we tag is a quarter or more its stop words (English news: 27-50%; French, German
or Dutch text scores under 7% on the English list), so it is recognised without langdetect's n-gram trials,
which cost as much as a sixth of the tagging time. Tables and short texts still go to langdetect."""

TABLE_MIN_HITS = 5


def _candidate_table(hits: dict[str, int], foreign_hits: int) -> str | None:
    """A candidate language whose stop words (`hits`) clearly outnumber those of langdetect's confident guess.

    Results tables and scorer lists are mostly foreign proper names ("Vitesse Arnhem 2 (Van den Brom 10)"),
    which the n-gram profile reads as Dutch or Catalan although every sentence around them is English.
    """
    for lang, n in hits.items():
        if n >= TABLE_MIN_HITS and n >= 2 * foreign_hits + 1:
            return lang
    return None


def detect_language(text: str, candidates: Iterable[str] = ("en",)) -> str | None:
    """ISO 639-1 code of `text`, or None when there is no linguistic content to judge.

    `candidates` are the languages the caller can process: on short or uncertain samples they win when their
    stop words are at least as present as those of langdetect's guess.
    """
    sample = text[:SAMPLE_CHARS].strip()
    if sum(c.isalpha() for c in sample) < 3:
        return None
    if _mostly_upper(sample):
        sample = sample.lower()
    found = _WORD.findall(sample)
    words = [w.lower() for w in found]
    hits = {lang: _stop_hits(words, lang) for lang in candidates}  # stop words of each candidate language
    if len(words) >= FAST_MIN_WORDS:
        for lang, n in hits.items():
            if n >= FAST_STOP_SHARE * len(words):
                return lang
    try:
        ranked = detect_langs(sample)
    except LangDetectException:
        ranked = []
    top = ranked[0].lang.split("-")[0] if ranked else None
    # The other language's stop words count only where written in lower case: capitalised "Van", "De",
    # "Da" in a list of names are name particles, not Dutch or Portuguese prose.
    foreign_hits = _stop_hits([w for w in found if w.islower()], top) if top else 0
    if top is not None and len(sample) >= CONFIDENT_CHARS and ranked[0].prob >= CONFIDENT_PROB:
        if top in hits or not (table := _candidate_table(hits, foreign_hits)):
            return top
        return table
    best, best_hits = None, 0
    for lang, n in hits.items():
        if n > best_hits:
            best, best_hits = lang, n
    if best is not None and (top is None or top == best or best_hits >= foreign_hits):
        return best
    return top
