"""The worker's stages and state without Kafka: what a batch turns into, and the changelog round trip that a
take-over relies on (restored tables must answer exactly as the ones that wrote them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pipeline.models import Article, EnrichedArticle, TaggedArticle
from pipeline.settings import DedupSettings, Settings
from pipeline.stories.engine import StoryEngine
from pipeline.stream.assign import AssignStage, in_publication_order
from pipeline.stream.state import ChangelogState
from pipeline.stream.tag import TagStage
from tests.unit.records import Rec

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
TEXT = (
    "Vladimir Putin will travel to Pyongyang next week for talks with Kim Jong Un, the Kremlin said on Monday, "
    "his first visit to North Korea in more than two decades."
)


def rec(value: bytes | None, offset: int, topic: str = "articles") -> Rec:
    return Rec(topic, 0, offset, value)


def article(aid: str, minutes: int = 0, title: str = "Putin to visit North Korea", source: str = "a") -> Article:
    when = T0 + timedelta(minutes=minutes)
    feed = f"https://{source}.example/rss"
    return Article(id=aid, feed=feed, source=source, title=title, text=TEXT, published=when, fetched_at=when)


def tagged(aid: str, minutes: int = 0, source: str = "a") -> TaggedArticle:
    return TaggedArticle(**article(aid, minutes, source=source).model_dump(), language="en")


class FakeTagger:
    """Tags by copying; an article titled "poison" makes any batch holding it fail."""

    def tag(self, articles: Sequence[Article]) -> list[TaggedArticle]:
        if any(a.title == "poison" for a in articles):
            raise RuntimeError("model crashed")
        return [TaggedArticle(**a.model_dump(), language="en") for a in articles]


def test_tag_stage_isolates_a_poison_article_and_keeps_the_rest() -> None:
    stage = TagStage(Settings(), FakeTagger())  # type: ignore[arg-type]
    batch = [
        rec(article("a").model_dump_json().encode(), 0),
        rec(article("p", title="poison").model_dump_json().encode(), 1),
        rec(b"\xff\xfe not utf-8", 2),
        rec(article("b").model_dump_json().encode(), 3),
    ]
    result = stage.handle(batch)  # type: ignore[arg-type]
    assert [o.key for o in result.outputs] == [b"a", b"b"] and result.processed == 2
    reasons = sorted(d.reason for d in result.dead)
    assert reasons[0].startswith("not an Article v1") and reasons[1].startswith("tagging failed: RuntimeError")
    bad = next(d for d in result.dead if d.offset == 2)
    assert bad.payload_base64 is not None  # the exact bytes survive in the dead letter
    out = TaggedArticle.model_validate_json(result.outputs[0].value or b"")
    assert out.features is not None  # computed here, so the ordered stage only assigns


def test_a_restored_changelog_answers_replays_exactly_as_the_original_tables() -> None:
    """What `changes()` writes is what a new owner reads back: replayed articles get their recorded story,
    and a new duplicate joins the same story."""
    settings = Settings()
    stage = AssignStage(settings)
    state = ChangelogState()
    stage.bind(state)
    first = stage.handle([rec(tagged("orig").model_dump_json().encode(), 0, "tagged")])  # type: ignore[list-item]
    log = state.changes()
    assert log and all(k.split(b"/")[0] in {b"stories", b"articles", b"keys"} for k, _ in log)
    state.clear_changes()
    assert state.changes() == []

    restored = ChangelogState()
    for key, value in log:
        restored.apply(key, value)
    assert restored.sizes() == state.sizes()
    again = AssignStage(settings)
    again.bind(restored)
    replay = again.handle([rec(tagged("orig").model_dump_json().encode(), 0, "tagged")])  # type: ignore[list-item]
    copy = again.handle([rec(tagged("copy", 30).model_dump_json().encode(), 1, "tagged")])  # type: ignore[list-item]
    story = EnrichedArticle.model_validate_json(first.outputs[0].value or b"").story_id
    assert EnrichedArticle.model_validate_json(replay.outputs[0].value or b"").story_id == story
    dup = EnrichedArticle.model_validate_json(copy.outputs[0].value or b"")
    assert dup.story_id == story and dup.duplicate_of == "orig"
    assert again.stats.assigned == 1  # the replay is not counted as new work


def test_deletions_reach_the_changelog_as_tombstones() -> None:
    state = ChangelogState()
    state.keys["k"] = "v"
    state.clear_changes()
    del state.keys["k"]
    assert state.changes() == [(b"keys/k", None)]
    restored = ChangelogState()
    restored.apply(b"keys/k", b'"v"')
    restored.apply(b"keys/k", None)
    restored.apply(b"unknown/x", b"1")  # a table of a newer version: skipped, not fatal
    assert restored.sizes() == {"stories": 0, "articles": 0, "keys": 0}


def test_a_batch_is_assigned_in_publication_order_whatever_order_tagging_finished_in() -> None:
    """Reports tagged in parallel arrive in no meaningful order: taken by publication time, a copy never becomes
    the original."""
    original, wire_copy = tagged("orig", 0, "meridian"), tagged("copy", 40, "wire")
    batch = [
        rec(wire_copy.model_dump_json().encode(), 0, "t.tagged"),
        rec(b"{not json", 1, "t.tagged"),
        rec(original.model_dump_json().encode(), 2, "t.tagged"),
    ]
    articles, dead = in_publication_order(batch, "assign")
    assert [a.id for _, a in articles] == ["orig", "copy"]
    assert [r.offset for r, _ in articles] == [2, 0]  # each keeps its own record
    assert len(dead) == 1 and dead[0].reason.startswith("not a TaggedArticle v1") and dead[0].stage == "assign"
    assert (dead[0].topic, dead[0].offset, dead[0].payload) == ("t.tagged", 1, "{not json")
    engine = StoryEngine(DedupSettings())
    results = [engine.assign(a) for _, a in articles]
    assert results[1].duplicate_of == "orig" and results[0].duplicate_of is None
