"""The spaCy pipeline and the word lists the tagger loads once: the model's dictionary and given names.

Only the tokenizer and `ner` run: NER has its own tok2vec in the small English models, so tagger, parser and
lemmatizer are skipped (a shared tok2vec is kept for larger models whose NER listens to one). The lemmatizer
is still loaded, never run, for its word tables: the dictionary that tells the recaser a shouted word is a
common word. Given names come from the `gender-guesser` and `names` packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from spacy.language import Language


def load_model(model: str) -> Language:
    """The installed spaCy package `model`, with only its tokenizer and NER (+ entity ruler) enabled."""
    import spacy

    try:
        # Only the tokenizer and `ner` run: NER has its own embedding layer in the small English models.
        # The lemmatizer is loaded (never run) for its word tables, used to re-case ALL-CAPS text.
        nlp = spacy.load(model, exclude=["parser", "tagger", "attribute_ruler", "senter"])
    except OSError as exc:
        raise ConfigError(f"entities.model {model!r} is not installed: {exc}") from None
    keep = {"ner", "entity_ruler"} | ({"tok2vec"} if _ner_listens(nlp) else set())
    nlp.select_pipes(enable=[name for name in nlp.pipe_names if name in keep])
    return nlp


def _ner_listens(nlp: Language) -> bool:
    """Whether `ner` reads a shared tok2vec (larger models) rather than embedding tokens itself."""
    if "ner" not in nlp.pipe_names:
        raise ConfigError("entities.model has no 'ner' component")
    model = nlp.get_pipe("ner").model  # type: ignore[attr-defined]
    return any(layer.name.startswith("tok2vec-listener") for layer in model.walk())


def dictionary_words(nlp: Language) -> frozenset[str]:
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
