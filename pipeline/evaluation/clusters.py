"""Story-clustering quality: B-cubed and pairwise P/R/F1 on ECB+ dev, and the Putin/North Korea seed pair.

Runs the offline contract (`cli_cluster`: tag, then assign, default config) over `shared/data/ecbplus/
ecbplus-dev.jsonl` and scores `story_id` against the gold `cluster`. Skips cleanly (exit 0) when `shared/` is
absent. Usage: `python -m pipeline.evaluation.clusters [--no-entities] [--set dedup.FIELD=VALUE ...]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.dedup import Tagger, cli_cluster
from pipeline.models import TaggedArticle
from pipeline.settings import Settings, load_settings

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


def run(path: Path, settings: Settings, tagger: Tagger | None) -> dict[str, str]:
    """Run the CLI contract on `path`; returns article id -> story id."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        cli_cluster(path, out, settings, tagger=tagger)
        return {row["id"]: row["story_id"] for row in map(json.loads, out.read_text().splitlines())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-entities", action="store_true", help="cluster without any entity tagger")
    parser.add_argument("--set", action="append", default=[], help="dedup.FIELD=VALUE override (ablations)")
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
    tagger: Tagger | None = None  # None: the stream's EntityTagger, as `newsflow cluster` runs
    if args.no_entities:
        tagger = lambda batch: [TaggedArticle(**a.model_dump()) for a in batch]  # noqa: E731

    gold = {
        row["id"]: row["cluster"] for row in map(json.loads, ecb.read_text(encoding="utf-8").splitlines())
    }
    pred = run(ecb, settings, tagger)
    b3, pw = bcubed(gold, pred), pairwise(gold, pred)
    print(
        f"ECB+ dev: {len(gold)} articles, {len(set(gold.values()))} gold clusters, "
        f"{len(set(pred.values()))} stories"
    )
    for name, s in (("B-cubed", b3), ("pairwise", pw)):
        print(f"  {name:9s} P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f}")
    ok = True
    if seeds.exists():
        seed_pred = run(seeds, settings, tagger)
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
