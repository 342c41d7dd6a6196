"""Entity tagger throughput: `python -m pipeline.evaluation.bench_entities [--articles N] [--repeat R]`.

In one run, on the same texts: raw `nlp.pipe` of the tagger's own spaCy pipeline (same model, same components)
and `EntityTagger.tag` (language detection + re-casing + NER + gazetteer + canonicalisation). Reports tokens/s
of both and their ratio, the overhead the canonicalisation adds on top of the model. Texts are generated here,
news-like and deterministic (with ALL-CAPS headlines, datelines, possessives, aliases and a results table), so
the bench needs nothing outside the project.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from pipeline.models import Article
from pipeline.nlp.entities import EntityTagger, article_text
from pipeline.settings import EntitySettings

PEOPLE = [
    "Maria Lindqvist",
    "Omar Haddad",
    "Kenji Watanabe",
    "Grace Mbeki",
    "Luis Ortega",
    "Anna Kowalczyk",
    "Rahul Mehta",
    "Sophie Laurent",
    "Daniel Okafor",
    "Elena Petrova",
]
PLACES = [
    "Berlin",
    "Nairobi",
    "Brazil",
    "the United States",
    "Japan",
    "South Korea",
    "Toronto",
    "India",
    "the U.K.",
    "Mexico City",
    "Ohio",
    "France",
]
ORGS = [
    "the European Central Bank",
    "Northwind Energy",
    "the United Nations",
    "Helix Pharmaceuticals",
    "the IMF",
    "Bluewater Logistics",
    "the World Health Organization",
    "Orion Telecom",
]
VERBS = ["said", "warned", "announced", "told reporters", "confirmed", "denied", "argued"]
TOPICS = [
    "interest rates",
    "a new trade agreement",
    "the energy transition",
    "supply chain delays",
    "a vaccine programme",
    "regional security",
    "the budget deficit",
    "a merger proposal",
]
FILLER = [
    "Analysts expect the decision to weigh on markets in the coming weeks.",
    "The talks are scheduled to continue next month, officials added.",
    "Shares rose 2.4 percent in early trading after the announcement.",
    "Critics said the plan did not go far enough to address the concerns of workers.",
    "Western diplomats and Russian officials declined to comment on the report.",
]


def _sentence(rng: random.Random) -> str:
    person, place, org = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(ORGS)
    surname = person.split()[-1]
    forms = [
        f"{person} {rng.choice(VERBS)} in {place} on Tuesday that {org} would review {rng.choice(TOPICS)}.",
        f"{surname}’s remarks came as {org} met officials from {place} to discuss {rng.choice(TOPICS)}.",
        f'"We are ready," {surname} {rng.choice(VERBS)}, adding that {place} had asked {org} for support.',
        rng.choice(FILLER),
    ]
    return rng.choice(forms)


def make_articles(n: int, seed: int = 7) -> list[Article]:
    """News-like articles of ~250-450 tokens; every fifth has an ALL-CAPS headline, every tenth a table."""
    rng = random.Random(seed)
    articles = []
    for i in range(n):
        title = f"{rng.choice(PEOPLE).split()[-1]} says {rng.choice(ORGS).removeprefix('the ')} will act"
        if i % 5 == 0:
            title = title.upper()
        city = rng.choice(["BERLIN", "NAIROBI", "TOKYO", "TORONTO"])
        paragraphs = [f"{city} (Newswire) - " + " ".join(_sentence(rng) for _ in range(4))]
        paragraphs += [" ".join(_sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(3)]
        if i % 10 == 0:
            paragraphs.append(
                "\n".join(
                    f"{t} {rng.randint(0, 4)} {u} {rng.randint(0, 4)}"
                    for t, u in [
                        ("Toronto", "Ohio"),
                        ("Berlin", "Nairobi"),
                        ("Northwind Energy", "Orion Telecom"),
                    ]
                )
            )
        articles.append(
            Article(id=f"bench-{i}", feed="bench", source="bench", title=title, text="\n\n".join(paragraphs))
        )
    return articles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds; the best of each is kept")
    args = parser.parse_args(argv)

    settings = EntitySettings()
    tagger = EntityTagger(settings)
    articles = make_articles(args.articles)
    texts = [article_text(a) for a in articles]
    nlp = tagger.nlp
    for _doc in nlp.pipe(texts[:20]):  # warm-up
        pass
    tokens = sum(len(nlp.make_doc(text)) for text in texts)
    raw_best = tag_best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=settings.batch_size):
            pass
        raw_best = min(raw_best, time.perf_counter() - started)
        started = time.perf_counter()
        tagger.tag(articles)
        tag_best = min(tag_best, time.perf_counter() - started)
    raw_tps, tag_tps = tokens / raw_best, tokens / tag_best
    print(f"model {settings.model}, components {nlp.pipe_names}, {len(texts)} articles, {tokens} tokens")
    print(f"raw nlp.pipe : {raw_tps:10,.0f} tokens/s  ({raw_best:.2f}s)")
    print(f"EntityTagger : {tag_tps:10,.0f} tokens/s  ({tag_best:.2f}s)")
    print(f"ratio        : {tag_tps / raw_tps:.2f}  (target >= 0.80)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
