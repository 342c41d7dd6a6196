"""The assign stage takes each batch in publication order, so a copy never becomes the original."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.models import TaggedArticle
from pipeline.settings import DedupSettings
from pipeline.stories.engine import StoryEngine
from pipeline.stream.assign import in_publication_order

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
TEXT = (
    "Vladimir Putin will travel to Pyongyang next week for talks with Kim Jong Un, the Kremlin said on Monday, "
    "his first visit to North Korea in more than two decades."
)


@dataclass
class Rec:
    value: bytes | None
    offset: int
    topic: str = "t.tagged"
    partition: int = 0


def tagged(aid: str, source: str, minutes: int) -> TaggedArticle:
    when = T0 + timedelta(minutes=minutes)
    return TaggedArticle(
        id=aid,
        feed=f"https://{source}.example/rss",
        source=source,
        title="Putin to visit North Korea",
        text=TEXT,
        published=when,
        fetched_at=when + timedelta(minutes=1),
        language="en",
    )


def test_a_batch_is_assigned_in_publication_order_whatever_order_tagging_finished_in() -> None:
    original, wire_copy = tagged("orig", "meridian", 0), tagged("copy", "wire", 40)
    batch = [
        Rec(wire_copy.model_dump_json().encode(), 0),
        Rec(b"{not json", 1),
        Rec(original.model_dump_json().encode(), 2),
    ]
    articles, dead = in_publication_order(batch, "assign")
    assert [a.id for _, a in articles] == ["orig", "copy"]
    assert [r.offset for r, _ in articles] == [2, 0]  # each keeps its own record
    assert len(dead) == 1 and dead[0].reason.startswith("not a TaggedArticle v1") and dead[0].stage == "assign"
    assert (dead[0].topic, dead[0].offset, dead[0].payload) == ("t.tagged", 1, "{not json")
    engine = StoryEngine(DedupSettings())
    results = [engine.assign(a) for _, a in articles]
    assert results[1].duplicate_of == "orig" and results[0].duplicate_of is None
