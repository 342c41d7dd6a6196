"""Canonicalisation: one name for every mention of the same thing, and one `Entity` per name.

Kibana filters and alert subscriptions match by exact name: "Putin" must become "Vladimir Putin" (the full name
in the same article, else one remembered from earlier articles), "ECB" the "European Central Bank" beside it,
"Leeds" the "Leeds United" of the same story. Untagged repeats of an established name are added, then mentions
are grouped by name with their majority type (split by type when structure forces two).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from dataclasses import dataclass

from pipeline.models import Entity, EntityType
from pipeline.nlp.casing import capitalise

_CONNECTORS = frozenset(
    {"of", "the", "and", "for", "de", "du", "des", "la", "le", "&", "on", "in", "to", "at"}
)


@dataclass
class Mention:
    """One occurrence of a name in the article, and what it resolves to."""

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


def _initials(name: str) -> str:
    return "".join(w[0] for w in re.split(r"[\s-]+", name) if w and w.lower() not in _CONNECTORS).upper()


def display_name(text: str) -> str:
    """Canonical display form: collapsed spacing; long all-caps names (shouted datelines) get title case."""
    text = re.sub(r"\s+", " ", text).strip()
    if text.isupper() and (len(text) > 5 or " " in text) and not re.search(r"\d|\.", text):
        return " ".join(capitalise(w) for w in text.split(" "))
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


def resolve_people(mentions: list[Mention], memory: PeopleMemory) -> None:
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


def resolve_acronyms(mentions: list[Mention]) -> None:
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


def resolve_clubs(mentions: list[Mention]) -> None:
    """The town alone -> the one club of the article named after it; a dateline place is left alone."""
    clubs: dict[str, set[str]] = {}
    for m in mentions:
        if (short := _club_short(m)) is not None:
            clubs.setdefault(short, set()).add(m.canonical)
    for m in mentions:
        full = clubs.get(m.canonical)
        if full and len(full) == 1 and not (m.forced and m.type != "organization"):
            m.canonical, m.type = next(iter(full)), "organization"


def propagate(
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


def group_mentions(mentions: list[Mention]) -> list[Entity]:
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
