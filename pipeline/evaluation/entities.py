"""Entity tagging evaluation: `python -m pipeline.evaluation.entities [--limit N] [--errors] [--dev [PATH]]`.

1. CoNLL++ (corrected CoNLL-2003 English test, Reuters): for each of the 231 articles, the set of (lower-cased
   mention, type) the tagger reports is compared with the gold PER/ORG/LOC set; precision/recall/F1 are
   micro-averaged over articles, overall and per type. Document level, because that is what search filters and
   alert subscriptions see: "is Japan on this article", not token offsets. MISC is not scored.
2. The two seed reports (`seeds/putin-north-korea.jsonl`): the canonical entities each must carry.

3. `--dev`: the project's own development set (`tests/unit/data/entities_dev.jsonl`, hand-written news snippets
   with hand-made gold), scored the same way. Rules are developed and their errors inspected against this set
   only; CoNLL++ is measured, never tuned on.

The data lives in `../shared` beside the checkout (or `$NEWSFLOW_SHARED`); it is evaluation-only and never
copied into the project. Without it the command prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.models import Article, TaggedArticle
from pipeline.nlp.entities import EntityTagger
from pipeline.settings import EntitySettings

TYPE_TO_CONLL = {"person": "PER", "organization": "ORG", "location": "LOC"}
SCORED = ("PER", "ORG", "LOC")


def shared_dir() -> Path:
    """`$NEWSFLOW_SHARED`, else the `shared/` folder beside the checkout."""
    if explicit := os.environ.get("NEWSFLOW_SHARED"):
        return Path(explicit)
    return Path(__file__).resolve().parents[2].parent / "shared"


@dataclass
class ConllDoc:
    sentences: list[list[str]] = field(default_factory=list)
    gold: set[tuple[str, str]] = field(default_factory=set)

    def article(self, index: int) -> Article:
        """First line as the title, the rest as text: how a news item arrives."""
        lines = [" ".join(s) for s in self.sentences]
        title, text = (lines[0], "\n".join(lines[1:])) if lines else ("", "")
        return Article(id=f"conll-{index:03d}", feed="conll", source="conll", title=title, text=text)


def read_conll(path: Path) -> Iterator[ConllDoc]:
    """CoNLL-2003 columns (token POS chunk NER), IOB2 or IOB1; `-DOCSTART-` separates articles."""
    doc = ConllDoc()
    sentence: list[str] = []
    span: list[str] = []
    span_type = ""

    def close_span() -> None:
        nonlocal span, span_type
        if span and span_type in SCORED:
            doc.gold.add((" ".join(span).lower(), span_type))
        span, span_type = [], ""

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("-DOCSTART-"):
            close_span()
            if sentence:
                doc.sentences.append(sentence)
            if doc.sentences:
                yield doc
            doc, sentence = ConllDoc(), []
            continue
        if not line:
            close_span()
            if sentence:
                doc.sentences.append(sentence)
            sentence = []
            continue
        cols = line.split()
        token, tag = cols[0], cols[-1]
        sentence.append(token)
        if tag == "O":
            close_span()
            continue
        prefix, etype = tag.split("-", 1)
        if prefix == "B" or etype != span_type:
            close_span()
            span_type = etype
        span.append(token)
    close_span()
    if sentence:
        doc.sentences.append(sentence)
    if doc.sentences:
        yield doc


def predicted(tagged: TaggedArticle) -> set[tuple[str, str]]:
    """Every reported surface form, typed; only the three scored types."""
    out: set[tuple[str, str]] = set()
    for entity in tagged.entities:
        if (conll := TYPE_TO_CONLL.get(entity.type)) is not None:
            out.update((m.lower(), conll) for m in entity.mentions)
    return out


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


DEV_SET = Path(__file__).resolve().parents[2] / "tests" / "unit" / "data" / "entities_dev.jsonl"


def read_dev(path: Path) -> list[tuple[Article, set[tuple[str, str]]]]:
    """Dev-set rows {"id", "title", "text", "gold": [[mention, PER|ORG|LOC|MISC], ...]}; MISC is not scored."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        article = Article(id=row["id"], feed="dev", source="dev", title=row["title"], text=row["text"])
        gold = {(str(m).lower(), str(t)) for m, t in row["gold"] if t in SCORED}
        out.append((article, gold))
    return out


def score(
    name: str, tagger: EntityTagger, items: list[tuple[Article, set[tuple[str, str]]]], show_errors: bool
) -> float:
    """Document-level P/R/F1 per type and overall; `show_errors` lists misses and false hits."""
    started = time.perf_counter()
    tagged = tagger.tag([article for article, _ in items])
    elapsed = time.perf_counter() - started
    counts: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str, str]] = Counter()
    for (_, gold), result in zip(items, tagged, strict=True):
        pred = predicted(result)
        for mention, etype in pred | gold:
            outcome = (
                "tp"
                if (mention, etype) in pred and (mention, etype) in gold
                else ("fp" if (mention, etype) in pred else "fn")
            )
            counts[(etype, outcome)] += 1
            if outcome != "tp":
                errors[(outcome, etype, mention)] += 1
    languages = Counter(t.language for t in tagged)
    print(f"{name}: {len(items)} articles, tagged in {elapsed:.1f}s, languages {dict(languages)}")
    print(f"{'type':<8}{'P':>7}{'R':>7}{'F1':>7}{'tp':>7}{'fp':>7}{'fn':>7}")
    total = Counter[str]()
    for etype in SCORED:
        tp, fp, fn = (counts[(etype, k)] for k in ("tp", "fp", "fn"))
        total.update(tp=tp, fp=fp, fn=fn)
        p, r, f = prf(tp, fp, fn)
        print(f"{etype:<8}{p:7.3f}{r:7.3f}{f:7.3f}{tp:7d}{fp:7d}{fn:7d}")
    p, r, f = prf(total["tp"], total["fp"], total["fn"])
    print(f"{'all':<8}{p:7.3f}{r:7.3f}{f:7.3f}{total['tp']:7d}{total['fp']:7d}{total['fn']:7d}")
    if show_errors:
        for (outcome, etype, mention), n in errors.most_common(80):
            print(f"  {outcome} {etype} {mention!r} x{n}")
    return f


def evaluate_conll(tagger: EntityTagger, path: Path, limit: int | None, show_errors: bool) -> float:
    docs = list(read_conll(path))[:limit]
    return score("CoNLL++ test", tagger, [(d.article(i), d.gold) for i, d in enumerate(docs)], show_errors)


def evaluate_dev(tagger: EntityTagger, path: Path, show_errors: bool) -> float:
    return score(f"dev set {path.name}", tagger, read_dev(path), show_errors)


SEED_PERSON = "Vladimir Putin"
SEED_LOCATIONS = ("North Korea", "Russia", "China", "United States", "Japan", "South Korea")


def check_seeds(tagger: EntityTagger, path: Path) -> bool:
    """The seed story's entities: one canonical Putin, the six countries, no possessives or adjectives."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    articles = [
        Article(
            id=r["id"],
            feed="seed",
            source="seed",
            title=r.get("title", ""),
            summary=r.get("summary", ""),
            text=r.get("text", ""),
        )
        for r in rows
    ]
    ok = True
    for index, tagged in enumerate(tagger.tag(articles)):
        people = [e.name for e in tagged.entities if e.type == "person"]
        places = {e.name for e in tagged.entities if e.type == "location"}
        bad = [
            e.name
            for e in tagged.entities
            if "’" in e.name or "'s" in e.name or e.name.endswith(("ian", "ern"))
        ]
        problems = []
        if people.count(SEED_PERSON) != 1 or any("Putin" in p and p != SEED_PERSON for p in people):
            problems.append(f"persons {people}")
        if index == 0 and (missing := [loc for loc in SEED_LOCATIONS if loc not in places]):
            problems.append(f"missing locations {missing}")
        if bad:
            problems.append(f"possessive/adjective entities {bad}")
        ok = ok and not problems
        summary = ", ".join(f"{e.name} ({e.type}, {e.count})" for e in tagged.entities)
        print(
            f"seed {tagged.id} [{tagged.language}]: {'OK' if not problems else 'FAIL ' + '; '.join(problems)}"
        )
        print(f"  {summary}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N CoNLL articles")
    parser.add_argument("--errors", action="store_true", help="list the most frequent misses and false hits")
    parser.add_argument(
        "--dev",
        nargs="?",
        const=str(DEV_SET),
        default=None,
        help="score the project's own development set instead of CoNLL++ (default path: %(const)s)",
    )
    args = parser.parse_args(argv)
    if args.dev is not None:
        evaluate_dev(EntityTagger(EntitySettings()), Path(args.dev), args.errors)
        return 0
    shared = shared_dir()
    conll = shared / "data" / "ner" / "conllpp_test.txt"
    seeds = shared / "data" / "seeds" / "putin-north-korea.jsonl"
    if not conll.exists() and not seeds.exists():
        print(f"skipped: evaluation data not found under {shared} (set NEWSFLOW_SHARED)")
        return 0
    tagger = EntityTagger(EntitySettings())
    if seeds.exists():
        seeds_ok = check_seeds(tagger, seeds)
        print(f"seed check: {'OK' if seeds_ok else 'FAIL'}")
    if conll.exists():
        evaluate_conll(tagger, conll, args.limit, args.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
