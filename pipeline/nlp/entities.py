"""Canonical entity tagging: spaCy NER + casing repair + gazetteers + an alias table.

Kibana filters and alert subscriptions match entities by exact name, so raw NER output is not enough:
"Putin" and "Vladimir Putin" must be one person, "North Korea’s" must be "North Korea", "the US"/"U.S." must
be "United States", and "Russian"/"Western" are adjectives, not places. Steps per article:

1. language detection (`pipeline.nlp.language`); only configured languages are tagged, the rest get no entities;
2. ALL-CAPS lines (headlines, datelines) are re-cased from evidence in the same article and the gazetteers
   (`casing`), because the statistical model reads case as a name signal and both over- and under-tags shouted
   text;
3. spaCy NER (`model`: only the `ner` component: it has its own tok2vec, so tagger/parser/lemmatizer are
   skipped), plus gazetteer matches the model missed (`gazetteer`: countries, US states, large cities,
   alias-table names);
4. structure the small model misreads settles the type (`structure`): wire datelines are places, results-row
   names are teams, bracketed "Name 23" lists and cricket scorecard lines are people; "Given-name Surname" pairs
   (given names from the gender-guesser / names packages) are people, organisation suffixes and prefixes ("Leeds
   United", "Volvo AB", "Bank Indonesia") make organisations, event words ("Canadian Open") make events;
5. mention clean-up (`spans`: articles, possessives, titles, stray punctuation) and demonym filtering;
6. canonicalisation (`canonical`): alias table / gazetteer, then surnames, acronyms and club short names
   ("Leeds") resolved to the full name in the same article, then to full names remembered from earlier articles;
7. one `Entity` per canonical name, with its majority type and every surface form seen (split by type when
   structure forces two: "New York" the dateline and "New York" the team in the standings).

This module is the stage's entry point (`EntityTagger`, `newsflow tag`) and the rules that weigh the model's
labels against that evidence; the modules named above, beside it, each own one kind of evidence. The text
handed to spaCy has exactly the original's length, so reported mentions are original surface forms.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.models import Article, Entity, EntityType, TaggedArticle
from pipeline.nlp.canonical import (
    Mention,
    PeopleMemory,
    display_name,
    group_mentions,
    propagate,
    resolve_acronyms,
    resolve_clubs,
    resolve_people,
)
from pipeline.nlp.casing import CaseModel, Recaser
from pipeline.nlp.gazetteer import build_gazetteer
from pipeline.nlp.language import detect_language
from pipeline.nlp.model import dictionary_words, load_first_names, load_model
from pipeline.nlp.spans import PARTICLES, clean_span, is_name, split_span
from pipeline.nlp.structure import (
    EVENT_SUFFIXES,
    ORG_SUFFIXES,
    cricket_spans,
    dateline_spans,
    merge_suffix_names,
    row_names,
    scorer_spans,
    sentence_initial,
    suffix_names,
    table_rows,
)

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from pipeline.settings import EntitySettings, Settings

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
        from spacy.matcher import PhraseMatcher

        self.settings = settings
        nlp = load_model(settings.model)
        self.nlp: Language = nlp
        model_lang = str(nlp.lang)
        self.languages = [lang for lang in settings.languages if lang == model_lang] or [model_lang]
        self.gazetteer = build_gazetteer(settings.aliases, settings.city_min_population)
        self.recaser = Recaser(self.gazetteer, frozenset(nlp.Defaults.stop_words), dictionary_words(nlp))
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        names = sorted(self.gazetteer.match_names)
        for name, doc in zip(names, nlp.tokenizer.pipe(names), strict=True):  # type: ignore[union-attr]
            self.matcher.add(self.gazetteer.match_names[name], [doc])
        self.memory = PeopleMemory(settings.remember_people)
        self.first_names = frozenset(
            n for n in load_first_names() if self.gazetteer.lookup(n) is None and n not in ORG_SUFFIXES
        )

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
            if end - start == 1 and sentence_initial(text, doc[start].idx):
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
        if not sentence_initial(text, start):
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
            for s, e, with_country in row_names(text, rows):
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
            and all((w[:1].isupper() and w[1:].islower()) or w in PARTICLES for w in words[1:])
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
        spans = merge_suffix_names(spans, suffix_names(text, self.gazetteer, self.recaser.vocabulary))
        pieces = [(a, b, label) for s, e, label in spans for a, b in split_span(text, s, e)]
        for s, e, label in pieces:
            override = _OVERRIDE_TYPES.get(label)
            if label not in LABEL_TYPES and label not in ("NORP", "MISC") and override is None:
                continue
            s, e = clean_span(text, s, e, label)
            cleaned = text[s:e]
            if override is not None:
                if not is_name(cleaned, "PERSON", self.gazetteer):
                    continue
                m = Mention(s, e, label, cleaned, original[s:e], display_name(cleaned), override, True)
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
            if not is_name(cleaned, label, self.gazetteer) or label == "NORP":
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
                m.canonical, m.type = display_name(cleaned), LABEL_TYPES[label]
            else:
                continue
            venue = re.match(r"\s*:", text[e : e + 3]) is not None  # "In Lisbon : Benfica 2 ..."
            if not m.forced and m.type in ("location", "organization") and _inside(s, rows) and not venue:
                m.type, m.forced = "organization", True
            mentions.append(m)
        resolve_people(mentions, self.memory)
        resolve_acronyms(mentions)
        resolve_clubs(mentions)
        mentions.extend(propagate(text, original, mentions, self.recaser.stop_words))
        return group_mentions(mentions)


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
