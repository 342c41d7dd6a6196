"""Structural evidence: where the layout of wire text settles what a name is, whatever the model says.

The small model misreads structure: in results rows and standings a place name is the team, the words of a
dateline are the place the story was filed from, bracketed "Name 23" lists and cricket scorecard lines are
people, organisation suffixes and prefixes ("Leeds United", "Volvo AB", "Bank Indonesia") make organisations,
event words ("Canadian Open") make events. Pure functions of the text (and the gazetteer, for place names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pipeline.nlp.gazetteer import Gazetteer


def sentence_initial(text: str, start: int) -> bool:
    """Whether `start` opens a line, sentence, quote, bracket or list item: a capital there tells no name."""
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i < 0 or text[i] in "\n.!?:;\"“‘'(-–—•|"


NUMERIC = re.compile(r"[-+(]?\d[\d.,:/'-]*[)%]?")
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
        numeric = sum(bool(NUMERIC.fullmatch(t)) for t in tokens)
        prose = any(t[:1].islower() and t.isalpha() and t not in _ROW_WORDS for t in tokens)
        alpha = any(any(c.isalpha() for c in t) for t in tokens)
        if numeric and alpha and not prose and not _DATE.search(line):
            rows.append((offset, offset + len(line)))
        offset += len(line) + 1
    return rows


_ROW_SCORE = re.compile(r"(?P<country>\s+\(\s*[^()\n\d]{2,30}?\s*\))?\s+[-+(]?\d")
"""What follows a team in a row: its score, maybe after its country ("Benfica ( Portugal ) 2")."""


def row_names(text: str, rows: list[tuple[int, int]]) -> Iterator[tuple[int, int, bool]]:
    """Name runs followed by a number in a table row: the teams or competitors of the row; the flag says
    whether a bracketed country came between (then the name may as well be an athlete)."""
    for start, end in rows:
        for m in _ROW_NAME.finditer(text, start, end):
            if re.search(r"\.\s*$", text[start : m.start()]):
                continue  # "... . Attendance 55,000": a label after a full stop, not a team
            if (score := _ROW_SCORE.match(text, m.end(), end)) and len(m.group()) > 1:
                yield m.start(), m.end(), score.group("country") is not None


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


def suffix_names(text: str, gaz: Gazetteer, vocabulary: frozenset[str]) -> Iterator[tuple[int, int]]:
    """Organisation names by their own words (see `_SUFFIX_NAME`), minus a leading sentence word ("Shares of
    Volvo AB") and the places named so ("Mexico City"), which the gazetteer knows."""
    for m in _SUFFIX_NAME.finditer(text):
        s, e = m.span()
        words = list(re.finditer(r"\S+", m.group()))
        while len(words) > 2 and (
            (words[0].group().lower() in vocabulary and sentence_initial(text, s + words[0].start()))
            or words[0].group() in ("of", "de", "&", "The")
        ):
            words.pop(0)
        s = m.start() + words[0].start()
        if gaz.lookup(text[s:e]) is None:
            yield s, e


def merge_suffix_names(
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
