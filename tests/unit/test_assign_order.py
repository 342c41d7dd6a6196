"""The assign stage takes each batch in publication order, so a copy never becomes the original."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.app import in_publication_order
from pipeline.dedup import StoryEngine
from pipeline.models import TaggedArticle
from pipeline.settings import DedupSettings

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
TEXT = (
    "Vladimir Putin will travel to Pyongyang next week for talks with Kim Jong Un, the Kremlin said on Monday, "
    "his first visit to North Korea in more than two decades."
)


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
    batch = [wire_copy.model_dump_json().encode(), b"{not json", original.model_dump_json().encode()]
    articles, dead = in_publication_order(batch, "t.tagged")
    assert [a.id for _, a in articles] == ["orig", "copy"]
    assert [raw for raw, _ in articles] == [batch[2], batch[0]]  # each keeps its own bytes
    assert len(dead) == 1 and dead[0].reason.startswith("not a TaggedArticle v1") and dead[0].stage == "assign"
    engine = StoryEngine(DedupSettings())
    results = [engine.assign(a) for _, a in articles]
    assert results[1].duplicate_of == "orig" and results[0].duplicate_of is None


def test_upkeep_ticks_make_a_batch_but_are_no_articles() -> None:
    """The leader's ticks only give the assign stage a batch to run its upkeep on: not assigned, not dead."""
    from pipeline.models import UpkeepTick, is_upkeep_tick

    tick = UpkeepTick().model_dump_json().encode()
    assert is_upkeep_tick(tick) and not is_upkeep_tick(tagged("a", "meridian", 0).model_dump_json().encode())
    articles, dead = in_publication_order([tick, tagged("a", "meridian", 0).model_dump_json().encode(), tick], "t")
    assert [a.id for _, a in articles] == ["a"] and dead == []
