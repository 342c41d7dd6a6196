"""Story-clustering quality: B-cubed and pairwise P/R/F1 on ECB+ dev, and the Putin/North Korea seed pair.

Runs what `newsflow cluster` runs (`tag_all`, then `assign_all`: the stream's tagger and engine, default config)
over `shared/data/ecbplus/ecbplus-dev.jsonl` in file order and scores `story_id` against the gold `cluster`.
Then, to show how much of that figure is luck: the same tagged articles in shuffled arrival orders, and random
halves of the topics (stand-ins for unseen topics; nothing here is fitted per half). Skips cleanly (exit 0)
when `shared/` is absent. Usage: `python -m pipeline.evaluation.clusters [--no-entities] [--orders N]
[--halves N] [--set dedup.FIELD=VALUE ...]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.jsonl import read_articles
from pipeline.models import TaggedArticle
from pipeline.settings import DedupSettings, Settings, load_settings
from pipeline.stories.offline import Tagger, assign_all, default_tagger, tag_all

# Fixed seeds: the robustness lines are the same on every run, so a change in them is the engine's doing.
SHUFFLE_SEED = 13
HALVES_SEED = 29

Scores = dict[str, float]


def shared_dir() -> Path:
    """`$NEWSFLOW_SHARED`, else `shared/` beside the checkout."""
    env = os.environ.get("NEWSFLOW_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


def _prf(p: float, r: float) -> Scores:
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def bcubed(gold: Mapping[str, str], pred: Mapping[str, str]) -> Scores:
    """B-cubed: per item, the share of its predicted cluster that is truly its own (P) and vice versa (R)."""
    items = list(gold)
    gold_members: dict[str, set[str]] = defaultdict(set)
    pred_members: dict[str, set[str]] = defaultdict(set)
    for i in items:
        gold_members[gold[i]].add(i)
        pred_members[pred[i]].add(i)
    p = r = 0.0
    for i in items:
        both = len(gold_members[gold[i]] & pred_members[pred[i]])
        p += both / len(pred_members[pred[i]])
        r += both / len(gold_members[gold[i]])
    return _prf(p / len(items), r / len(items))


def pairwise(gold: Mapping[str, str], pred: Mapping[str, str]) -> Scores:
    """Pairwise: precision/recall over the item pairs put together."""

    def pairs(counts: Counter[object]) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    items = list(gold)
    same_both = pairs(Counter((gold[i], pred[i]) for i in items))
    same_pred = pairs(Counter(pred[i] for i in items))
    same_gold = pairs(Counter(gold[i] for i in items))
    return _prf(same_both / same_pred if same_pred else 1.0, same_both / same_gold if same_gold else 1.0)


def tagged_file(path: Path, settings: Settings, tagger: Tagger | None) -> list[TaggedArticle]:
    """The file's articles in file order, tagged as `newsflow cluster` tags them."""
    return tag_all([article for _, article in read_articles(path)], settings, tagger)


def stories(tagged: Sequence[TaggedArticle], settings: DedupSettings) -> dict[str, str]:
    """Article id -> story id from one fresh engine over `tagged` in the given order."""
    return {r.article_id: r.story_id for r in assign_all(tagged, settings)}


def spread(values: Sequence[float]) -> str:
    return f"mean {statistics.mean(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"


def shuffled_f1(tagged: list[TaggedArticle], gold: Mapping[str, str], settings: DedupSettings, n: int) -> list[float]:
    """B-cubed F1 over `n` random arrival orders of the same tagged articles (tags from the file-order run)."""
    rng = random.Random(SHUFFLE_SEED)
    return [bcubed(gold, stories(rng.sample(tagged, len(tagged)), settings))["f1"] for _ in range(n)]


def half_topics_f1(
    tagged: list[TaggedArticle], gold: Mapping[str, str], topics: Mapping[str, object], settings: DedupSettings, n: int
) -> list[float]:
    """B-cubed F1 on `n` random halves of the topics, each in file order."""
    rng = random.Random(HALVES_SEED)
    names = sorted(set(topics.values()), key=str)
    scores = []
    for _ in range(n):
        chosen = set(rng.sample(names, len(names) // 2))
        subset = [a for a in tagged if topics[a.id] in chosen]
        scores.append(bcubed({a.id: gold[a.id] for a in subset}, stories(subset, settings))["f1"])
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-entities", action="store_true", help="cluster without any entity tagger")
    parser.add_argument("--set", action="append", default=[], help="dedup.FIELD=VALUE override (ablations)")
    parser.add_argument("--orders", type=int, default=10, help="shuffled arrival orders to score (0: none)")
    parser.add_argument("--halves", type=int, default=10, help="random halves of the topics to score (0: none)")
    args = parser.parse_args(argv)
    shared = shared_dir()
    ecb = shared / "data" / "ecbplus" / "ecbplus-dev.jsonl"
    seeds = shared / "data" / "seeds" / "putin-north-korea.jsonl"
    if not ecb.exists():
        print(f"skipped: {ecb} not found (shared data is only beside a checkout; set NEWSFLOW_SHARED)")
        return 0
    dedup: dict[str, object] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        dedup[key.removeprefix("dedup.")] = json.loads(value)
    settings = load_settings()
    settings = settings.model_copy(update={"dedup": settings.dedup.model_copy(update=dedup)})
    # the stream's EntityTagger, as `newsflow cluster` runs; not even loaded for --no-entities
    tagger: Tagger | None = None if args.no_entities else default_tagger(settings)

    rows = [json.loads(line) for line in ecb.read_text(encoding="utf-8").splitlines()]
    gold = {row["id"]: row["cluster"] for row in rows}
    topics = {row["id"]: row["topic"] for row in rows}
    tagged = tagged_file(ecb, settings, tagger)
    pred = stories(tagged, settings.dedup)
    b3, pw = bcubed(gold, pred), pairwise(gold, pred)
    print(
        f"ECB+ dev: {len(gold)} articles, {len(set(gold.values()))} gold clusters, "
        f"{len(set(pred.values()))} stories"
    )
    for name, s in (("B-cubed", b3), ("pairwise", pw)):
        print(f"  {name:9s} P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f}")
    if args.orders:
        scores = shuffled_f1(tagged, gold, settings.dedup, args.orders)
        print(f"  B-cubed F1, {args.orders} shuffled arrival orders: {spread(scores)}")
    if args.halves:
        scores = half_topics_f1(tagged, gold, topics, settings.dedup, args.halves)
        print(f"  B-cubed F1, {args.halves} random halves of the topics (file order): {spread(scores)}")
    ok = True
    if seeds.exists():
        seed_pred = stories(tagged_file(seeds, settings, tagger), settings.dedup)
        together = len(set(seed_pred.values())) == 1
        ok = together
        print(
            "seed pair (putin-north-korea): "
            + ("one story" if together else f"SPLIT into {len(set(seed_pred.values()))} stories")
        )
    else:
        print(f"seed pair skipped: {seeds} not found")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
