"""Casing repair: ALL-CAPS lines (headlines, datelines) re-cased before NER, every character offset kept.

The statistical model reads case as a name signal and both over- and under-tags shouted text. A shouted word
takes the casing the same article gives it mid-sentence, else a gazetteer name's casing; failing both, a
dictionary word is lower-cased and anything else is a name (title case) or, when short, an acronym. The
re-cased text has exactly the original's length, so mentions map back to the original surface forms.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable

from pipeline.nlp.gazetteer import Gazetteer
from pipeline.nlp.structure import NUMERIC, sentence_initial

_WORD = re.compile(r"[^\W_]+(?:[’'.&-][^\W_]+)*")


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 4 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _same_length_case(src: str, target: str) -> str:
    """Apply `target`'s casing to `src` character by character; never changes the length."""
    if len(src) != len(target):
        return src
    return "".join(t if t.lower() == s.lower() else s for s, t in zip(src, target, strict=True))


def _recase_char(s: str, upper: bool) -> str:
    t = s.upper() if upper else s.lower()
    return t if len(t) == 1 else s


def capitalise(word: str) -> str:
    return "".join(_recase_char(c, i == 0) for i, c in enumerate(word))


def _lower(word: str) -> str:
    return "".join(_recase_char(c, False) for c in word)


class CaseModel:
    """How words are cased in the mixed-case parts of one article: "China" vs "win" vs "turkey"."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lower: Counter[str] = Counter()
        self.forms: dict[str, Counter[str]] = {}
        for line in lines:
            for m in _WORD.finditer(line):
                word = m.group()
                if not word[0].isalpha():
                    continue
                low = word.lower()
                if word == low:
                    self.lower[low] += 1
                elif not sentence_initial(line, m.start()):
                    self.forms.setdefault(low, Counter())[word] += 1

    def form(self, word: str) -> str | None:
        """The article's own casing of `word`, or None when the article never shows it mid-sentence."""
        low = word.lower()
        caps = self.forms.get(low)
        n_caps = sum(caps.values()) if caps else 0
        if self.lower[low] > n_caps:
            return low
        if caps:
            return caps.most_common(1)[0][0]
        return None


class Recaser:
    """Rewrites ALL-CAPS lines and dateline words into normal casing, keeping every character offset."""

    MAX_PHRASE = 4

    def __init__(
        self, gazetteer: Gazetteer, stop_words: frozenset[str], vocabulary: frozenset[str] = frozenset()
    ) -> None:
        self.gaz = gazetteer
        self.stop_words = stop_words
        self.vocabulary = vocabulary | stop_words
        """lower-case dictionary words: a shouted word we cannot place is lower-cased only if it is one"""

    def dictionary_word(self, low: str) -> bool:
        """The word or a regular inflection of it is in the dictionary ("REPORTS", "WARNED", "TALKS")."""
        if len(self.vocabulary) < 1000:
            return True  # no real dictionary: lower-case everything unknown, the safe choice for precision
        low = re.sub(r"['’]s$", "", low)
        stems = {low, low[:-1], low[:-2], low[:-3], low[:-3] + "y", low[:-2] + "e", low[:-3] + "e"}
        return any(stem in self.vocabulary for stem in stems if len(stem) >= 2)

    def recase(self, text: str) -> str:
        lines = text.split("\n")
        caps = [_mostly_upper(line) for line in lines]
        if not any(caps) and not any(self._dateline_end(line) for line in lines):
            return text
        model = CaseModel(self._strip_dateline(line) for line, c in zip(lines, caps, strict=True) if not c)
        out = []
        for line, is_caps in zip(lines, caps, strict=True):
            if is_caps:
                row = any(NUMERIC.fullmatch(t) for t in line.split())
                out.append(self._recase_span(line, 0, len(line), model, sentence_case=True, title=row))
            elif (end := self._dateline_end(line)) > 0:
                out.append(self._recase_span(line, 0, end, model, sentence_case=False, title=True))
            else:
                out.append(line)
        return "\n".join(out)

    @staticmethod
    def _dateline_end(line: str) -> int:
        """End of a leading run of capital words ("MOSCOW (Reuters) -", "AL-AIN, United Arab Emirates")."""
        m = re.match(r"\s*((?:[A-Z][A-Z'’.&-]+\s?){1,4})(?=\s*(?:[,(]|-\s|\d))", line)
        if m is None or not any(c.islower() for c in line):
            return 0
        return m.end(1)

    def _strip_dateline(self, line: str) -> str:
        end = self._dateline_end(line)
        return " " * end + line[end:] if end else line

    def _word_form(self, word: str, model: CaseModel, title: bool) -> str:
        if (form := model.form(word)) is not None:
            return form
        low = word.lower()
        if low not in self.stop_words and (proper := self.gaz.phrases.get(low)) is not None:
            return proper
        if title:
            return capitalise(word)
        if self.dictionary_word(low):
            return _lower(word)
        # Not a dictionary word: a name ("ZELENSKY" -> "Zelensky") or an acronym ("NHL" stays).
        return word if len(word) <= 4 and word.isalpha() else capitalise(word)

    def _recase_span(
        self, line: str, start: int, end: int, model: CaseModel, *, sentence_case: bool, title: bool = False
    ) -> str:
        chars = list(line)
        words = list(_WORD.finditer(line, start, end))
        i = 0
        first = True
        while i < len(words):
            taken = 1
            replacement: list[str] | None = None
            for n in range(min(self.MAX_PHRASE, len(words) - i), 1, -1):
                group = words[i : i + n]
                if any(line[a.end() : b.start()].strip() for a, b in itertools.pairwise(group)):
                    continue
                proper = self.gaz.phrases.get(" ".join(w.group().lower() for w in group))
                if proper is not None and proper.count(" ") == n - 1:
                    replacement = proper.split(" ")
                    taken = n
                    break
            if replacement is None:
                form = self._word_form(words[i].group(), model, title)
                if first and sentence_case:
                    form = capitalise(form[:1]) + form[1:]
                replacement = [form]
            for w, form in zip(words[i : i + taken], replacement, strict=True):
                chars[w.start() : w.end()] = list(_same_length_case(w.group(), form))
            first = False
            i += taken
        return "".join(chars)
