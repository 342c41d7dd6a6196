"""Span clean-up: a model or rule span is cut into names and each is trimmed to the name itself.

Spans in wire text run across separators ("Aston Villa 1 Derby", "Cricket - Australia") and carry articles,
possessives, titles and punctuation ("President Vladimir Putin", "North Korea’s"); exact-name filters need
the bare name. `is_name` then drops what is no name at all: time zones, table headers, nationality adjectives.
"""

from __future__ import annotations

import re

from pipeline.nlp.gazetteer import Gazetteer

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


_PHONE_TAIL = re.compile(r"\s\+\d[\d\s-]*")
"""Wire-story signatures ("Santiago newsroom +56-2-699") glue a phone number onto the desk name."""


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
PARTICLES = frozenset({"de", "van", "von", "da", "di", "del", "al", "el", "bin", "ibn", "le", "la", "du"})


def clean_span(text: str, start: int, end: int, label: str) -> tuple[int, int]:
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
        if (m := _LOWER_EDGE.search(text[start:end])) and (m.group(1) or m.group(2)) not in PARTICLES:
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


def is_name(text: str, label: str, gaz: Gazetteer) -> bool:
    """Reject what is not a name: no capital letter, a lone character, a number, a nationality adjective,
    a time zone, or a row of single letters (table headers such as "W L")."""
    if len(text) < 2 or not any(c.isupper() for c in text) or not any(c.isalpha() for c in text):
        return False
    if text in _NOT_NAMES or all(len(w) == 1 for w in text.split()) or text.lower() in _PERSON_TITLES:
        return False
    if label in ("GPE", "LOC", "NORP", "ORG") and " " not in text and gaz.is_demonym(text):
        return label == "ORG" and text not in gaz.demonyms
    return True
