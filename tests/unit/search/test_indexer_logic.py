"""Unit tests of the indexer's pure helpers and the bulk-outcome semantics (no Kafka, no search engine)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import elastic_transport
import opensearchpy.exceptions as os_exc
import pytest

from pipeline.models import DeadLetter, EnrichedArticle
from pipeline.search.backend import RETRYABLE_STATUS, BulkOutcome, SearchBackend, describe_unreachable
from pipeline.search.encoding import encode_action
from pipeline.search.indexer import (
    Indexer,
    IndexerStats,
    StoryRevisions,
    parse_batch,
    rejection_letters,
)
from pipeline.settings import SearchSettings, Settings
from tests.unit.records import Rec as Record

TOPIC = "t.enriched"


def _enriched(article_id: str = "a1") -> bytes:
    return EnrichedArticle(
        id=article_id,
        feed="https://alpha.example/rss",
        source="Alpha",
        title="A title",
        published=datetime(2024, 3, 1, tzinfo=UTC),
        story_id="s1",
    ).model_dump_json().encode()


# --- parse_batch -------------------------------------------------------------------------------------------


def test_parse_batch_keeps_valid_and_dead_letters_the_rest() -> None:
    records = [
        Record(TOPIC, 0, 0, _enriched("a1")),
        Record(TOPIC, 1, 7, b"{not json"),
        Record(TOPIC, 2, 3, json.dumps({"id": "x", "feed": "f", "source": "s"}).encode()),  # no story_id
        Record(TOPIC, 0, 1, _enriched("a2")),
        Record(TOPIC, 0, 2, json.dumps({"schema_version": 2, "id": "y"}).encode()),
    ]
    parsed, dead = parse_batch(records, TOPIC)  # type: ignore[arg-type]
    articles = [m for _, m in parsed if isinstance(m, EnrichedArticle)]

    assert [a.id for a in articles] == ["a1", "a2"]
    assert all(isinstance(a, EnrichedArticle) for a in articles)
    assert articles[0].story_id == "s1"

    assert len(dead) == 3
    assert all(isinstance(d, DeadLetter) for d in dead)
    assert all(d.stage == "indexer" and d.topic == TOPIC for d in dead)
    bad_json, no_story, wrong_version = dead

    assert (bad_json.partition, bad_json.offset) == (1, 7)
    assert bad_json.reason.startswith("invalid enriched article")
    assert "Invalid JSON" in bad_json.reason
    assert bad_json.payload == "{not json"  # original bytes kept

    assert (no_story.partition, no_story.offset) == (2, 3)
    assert no_story.reason == "invalid enriched article: story_id: Field required"

    assert "schema_version" in wrong_version.reason
    assert "Input should be 1" in wrong_version.reason


def test_parse_records_undecodable_and_null_values_become_dead_letters() -> None:
    records = [Record(TOPIC, 0, 0, b"\xff\xfe{"), Record(TOPIC, 0, 1, None)]
    parsed, dead = parse_batch(records, TOPIC)  # type: ignore[arg-type]
    articles = [m for _, m in parsed if isinstance(m, EnrichedArticle)]
    assert articles == []
    assert [d.offset for d in dead] == [0, 1]
    assert dead[0].payload == "\ufffd\ufffd{"  # decoded with replacement, not dropped
    assert dead[1].payload == ""
    assert all(d.reason.startswith("invalid enriched article") for d in dead)


# --- BulkOutcome -------------------------------------------------------------------------------------------

ARTICLE_ACTION: dict[str, Any] = {"_op_type": "index", "_index": "a", "_id": "1", "_source": {}}
STORY_ACTION: dict[str, Any] = {
    "_op_type": "index", "_index": "s", "_id": "s1", "version": 3, "version_type": "external_gte", "_source": {}
}


@pytest.mark.parametrize("status", [*sorted(RETRYABLE_STATUS), 0])
def test_transient_failures_are_retryable(status: int) -> None:
    assert BulkOutcome(ARTICLE_ACTION, False, status, "boom").retryable is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_content_failures_are_not_retryable(status: int) -> None:
    assert BulkOutcome(ARTICLE_ACTION, False, status, "mapper_parsing_exception").retryable is False


@pytest.mark.parametrize("status", [200, 201, 0, 503])
def test_successes_are_never_retryable(status: int) -> None:
    assert BulkOutcome(ARTICLE_ACTION, True, status).retryable is False


def test_stale_version_only_for_versioned_409() -> None:
    assert BulkOutcome(STORY_ACTION, False, 409, "version_conflict").stale_version is True
    assert BulkOutcome(STORY_ACTION, False, 409, "version_conflict").retryable is False
    assert BulkOutcome(ARTICLE_ACTION, False, 409, "version_conflict").stale_version is False
    assert BulkOutcome(STORY_ACTION, False, 400, "bad").stale_version is False
    assert BulkOutcome(STORY_ACTION, True, 201).stale_version is False


# --- describe_unreachable ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        os_exc.ConnectionError("N/A", "Connection refused", None),
        os_exc.ConnectionTimeout("TIMEOUT", "timed out", None),
        elastic_transport.ConnectionError("Connection refused"),
        elastic_transport.ConnectionTimeout("timed out"),
    ],
    ids=["opensearch-conn", "opensearch-timeout", "es-conn", "es-timeout"],
)
def test_connection_failures_are_described_in_one_line(exc: BaseException) -> None:
    msg = describe_unreachable(exc)
    assert msg == (
        f"search engine not reachable ({type(exc).__name__}); is it running? try `newsflow stack status`"
    )


def test_other_errors_are_not_described() -> None:
    import elasticsearch

    assert describe_unreachable(ValueError("x")) is None
    assert describe_unreachable(KeyError("x")) is None
    meta = elastic_transport.ApiResponseMeta(
        status=404, http_version="1.1", headers=elastic_transport.HttpHeaders(), duration=0.0, node=None  # type: ignore[arg-type]
    )
    assert describe_unreachable(elasticsearch.NotFoundError("index_not_found", meta, {})) is None


@pytest.mark.parametrize(
    "exc",
    [
        os_exc.NotFoundError(404, "index_not_found_exception", {}),
        os_exc.RequestError(400, "parsing_exception", {}),
        os_exc.AuthenticationException(401, "security_exception", {}),
    ],
    ids=["404", "400", "401"],
)
def test_opensearch_http_errors_are_not_unreachable(exc: BaseException) -> None:
    assert describe_unreachable(exc) is None


# --- rejection_letters -------------------------------------------------------------------------------------


def test_rejected_articles_are_dead_lettered_with_their_original_message_and_position() -> None:
    raw = _enriched("a1")
    parsed, _ = parse_batch([Record(TOPIC, 2, 41, raw)], TOPIC)  # type: ignore[list-item]
    article_action = {"_op_type": "index", "_index": "a-2024.03", "_id": "a1", "_source": {"id": "a1"}}
    story_action = {**STORY_ACTION, "_source": {"story_id": "s1"}}
    letters = rejection_letters(
        [
            BulkOutcome(article_action, False, 400, "mapper_parsing_exception: failed to parse [published]"),
            BulkOutcome(story_action, False, 400, "illegal_argument_exception: too long"),
        ],
        parsed,
        TOPIC,
    )
    article, story = letters
    assert article.payload == raw.decode()
    assert (article.topic, article.partition, article.offset) == (TOPIC, 2, 41)
    assert article.reason.startswith("rejected by search engine (a-2024.03/a1): mapper_parsing_exception")
    assert json.loads(story.payload) == {"story_id": "s1"}  # a snapshot: the refused document itself
    assert "s/s1" in story.reason and story.offset is None


# --- stale story snapshots ---------------------------------------------------------------------------------


def _story_action(story_id: str, revision: int) -> dict[str, Any]:
    return {**STORY_ACTION, "_id": story_id, "version": revision, "_source": {"revision": revision}}


def _items(*actions: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
    return [(a, encode_action(a)) for a in actions]


def test_story_snapshots_older_than_an_acknowledged_revision_are_dropped() -> None:
    known = StoryRevisions(capacity=100)
    known.record([
        BulkOutcome(_story_action("s1", 5), True, 200),
        BulkOutcome(_story_action("s2", 3), False, 409, "version_conflict"),  # the engine holds a newer one
        BulkOutcome(_story_action("s3", 7), False, 400, "mapper_parsing_exception"),  # refused: proves nothing
        BulkOutcome(_story_action("s4", 9), False, 503, "unavailable"),  # not written: proves nothing
        BulkOutcome(ARTICLE_ACTION, True, 201),  # articles are not versioned: never dropped
    ])
    items = _items(
        _story_action("s1", 4), _story_action("s1", 5), _story_action("s1", 6),
        _story_action("s2", 2), _story_action("s3", 1), _story_action("s4", 1), ARTICLE_ACTION,
    )
    kept = [(a["_id"], a.get("version")) for a, _ in known.drop_stale(items)]
    # equal revisions are still sent: a replay rewrites itself exactly as before
    assert kept == [("s1", 5), ("s1", 6), ("s3", 1), ("s4", 1), ("1", None)]
    assert all(line == encode_action(a) for a, line in known.drop_stale(items))


def test_story_revisions_only_go_up_and_forget_the_least_recent_stories_first() -> None:
    known = StoryRevisions(capacity=2)
    known.record([BulkOutcome(_story_action("s1", 5), True, 200)])
    known.record([BulkOutcome(_story_action("s1", 2), False, 409, "conflict")])  # a lower bound never lowers
    assert known.drop_stale(_items(_story_action("s1", 4))) == []
    known.record([BulkOutcome(_story_action("s2", 1), True, 200), BulkOutcome(_story_action("s3", 1), True, 200)])
    assert [a["_id"] for a, _ in known.drop_stale(_items(_story_action("s1", 1)))] == ["s1"]  # forgotten: sent
    assert known.drop_stale(_items(_story_action("s3", 0))) == []
    off = StoryRevisions(capacity=0)
    off.record([BulkOutcome(_story_action("s1", 5), True, 200)])
    assert len(off.drop_stale(_items(_story_action("s1", 1)))) == 1


# --- the write path with retries (a stub engine, no Kafka) -------------------------------------------------


class ScriptedBackend(SearchBackend):
    """Answers bulk requests from a script of per-item statuses, recording what each request carried."""

    kind = "scripted"

    def __init__(self, *answers: list[int]) -> None:
        super().__init__(SearchSettings())
        self.answers = list(answers)
        self.requests: list[list[bytes]] = []

    def _make_client(self, settings: SearchSettings) -> Any:
        return None

    def _send_bulk(self, body: bytes) -> dict[str, Any]:
        lines = body.splitlines(keepends=True)
        self.requests.append([a + b for a, b in zip(lines[::2], lines[1::2], strict=True)])
        statuses = self.answers.pop(0)
        assert len(statuses) == len(self.requests[-1])
        items = [{"index": {"status": s, **({} if s < 300 else {"error": {"type": f"e{s}", "reason": "r"}})}}
                 for s in statuses]
        return {"errors": any(s >= 300 for s in statuses), "items": items}


def _indexer(backend: SearchBackend) -> Indexer:
    """The indexer's write path without Kafka clients (they are only used by the loop and `_settle`)."""
    import threading

    settings = Settings()
    settings = settings.model_copy(
        update={"search": settings.search.model_copy(update={"retry_backoff_s": 0.001, "retry_backoff_max_s": 0.01})}
    )
    indexer = Indexer.__new__(Indexer)
    indexer.settings, indexer.backend, indexer.stats = settings, backend, IndexerStats()
    indexer._story_revisions = StoryRevisions(settings.indexer.story_revision_cache)
    indexer._stop = threading.Event()
    return indexer


def _records(*ids: str) -> list[Record]:
    return [Record(TOPIC, 0, n, _enriched(i)) for n, i in enumerate(ids)]


def test_only_failed_items_are_retried_and_a_rejected_article_is_dead_lettered() -> None:
    # three articles without story snapshots: a1 goes in, a2 is busy twice, a3 is refused for its content
    backend = ScriptedBackend([201, 429, 400], [503], [201])
    indexer = _indexer(backend)
    written = indexer._write(indexer._prepare(_records("a1", "a2", "a3")))  # type: ignore[arg-type]

    first, second, third = backend.requests
    assert len(first) == 3
    assert second == [first[1]] == third  # only a2, the retryable one, and byte for byte the same lines
    assert indexer.stats.retries == 2
    assert written.indexed == 2  # a1 and, after two retries, a2
    assert [d.offset for d in written.dead] == [2]  # a3: refused for its content, with its position
    assert written.dead[0].reason.startswith("rejected by search engine")


def test_a_stale_snapshot_is_not_sent_once_a_newer_one_is_acknowledged() -> None:
    def with_story(article_id: str, revision: int) -> bytes:
        from pipeline.models import Story

        article = EnrichedArticle.model_validate_json(_enriched(article_id))
        story = Story(story_id="s1", title="t", first_seen=article.published, last_seen=article.published,
                      revision=revision)
        return article.model_copy(update={"story": story}).model_dump_json().encode()

    backend = ScriptedBackend([201, 200], [201])
    indexer = _indexer(backend)
    indexer._write(indexer._prepare([Record(TOPIC, 0, 0, with_story("a1", 4))]))  # type: ignore[list-item]
    written = indexer._write(indexer._prepare([Record(TOPIC, 1, 0, with_story("a2", 2))]))  # type: ignore[list-item]
    assert [len(r) for r in backend.requests] == [2, 1]  # the second batch: the article only
    assert written.indexed == 1 and written.dead == [] and written.stale_skipped == 1  # counted when settled


# --- the writer thread -------------------------------------------------------------------------------------


def _prepared(tag: str) -> Any:
    from pipeline.search.indexer import Prepared

    return Prepared(parsed=[], dead=[], items=[({"tag": tag}, b"")])


def test_the_writer_hands_results_back_in_order_and_bounds_what_is_pending() -> None:
    import threading

    from pipeline.search.indexer import BulkWriter, Written

    gate = threading.Event()
    written: list[str] = []

    def write(prepared: Any) -> Written:
        gate.wait(5)
        written.append(prepared.items[0][0]["tag"])
        return Written(dead=[], indexed=len(written))

    writer = BulkWriter(write, ahead=2)
    assert writer.next_done(block=True) is None  # nothing pending: never blocks
    writer.submit([Record(TOPIC, 0, 0, b"")], _prepared("a"))  # type: ignore[list-item]
    assert not writer.full and writer.next_done(block=False) is None
    writer.submit([Record(TOPIC, 0, 1, b"")], _prepared("b"))  # type: ignore[list-item]
    assert writer.full and writer.pending == 2
    gate.set()
    first, second = writer.next_done(block=True), writer.next_done(block=True)
    assert first is not None and second is not None
    assert [r.offset for r in first[0]] == [0] and first[1].indexed == 1
    assert [r.offset for r in second[0]] == [1] and second[1].indexed == 2
    assert written == ["a", "b"] and writer.pending == 0
    writer.close()


def test_after_a_failed_batch_the_writer_writes_nothing_more_and_the_failure_is_raised() -> None:
    from pipeline.search.indexer import BulkWriter, Written

    written: list[str] = []

    def write(prepared: Any) -> Written:
        tag = prepared.items[0][0]["tag"]
        if tag == "bad":
            raise InterruptedError("stopped while the search engine was failing")
        written.append(tag)
        return Written(dead=[], indexed=1)

    writer = BulkWriter(write, ahead=3)
    for n, tag in enumerate(["ok", "bad", "after"]):
        writer.submit([Record(TOPIC, 0, n, b"")], _prepared(tag))  # type: ignore[list-item]
    assert writer.next_done(block=True) is not None
    with pytest.raises(InterruptedError):
        writer.next_done(block=True)
    writer.close()
    assert written == ["ok"]  # "after" was never written: its offsets must not be committed past "bad"


def test_with_two_requests_in_flight_results_still_come_back_in_submission_order() -> None:
    import threading

    from pipeline.search.indexer import BulkWriter, Written

    first_may_finish = threading.Event()
    finished: list[str] = []

    def write(prepared: Any) -> Written:
        tag = prepared.items[0][0]["tag"]
        if tag == "slow":
            first_may_finish.wait(5)  # released only once "fast" has been written
        finished.append(tag)
        if tag == "fast":
            first_may_finish.set()
        return Written(dead=[], indexed=1)

    writer = BulkWriter(write, workers=2)
    writer.submit([Record(TOPIC, 0, 0, b"")], _prepared("slow"))  # type: ignore[list-item]
    writer.submit([Record(TOPIC, 0, 1, b"")], _prepared("fast"))  # type: ignore[list-item]
    first, second = writer.next_done(block=True), writer.next_done(block=True)
    writer.close()
    assert finished == ["fast", "slow"]  # both were in flight together
    assert first is not None and second is not None
    assert [first[0][0].offset, second[0][0].offset] == [0, 1]  # settled (committed) in order all the same


def test_a_batch_taken_after_another_failed_is_not_written_and_raises_that_failure() -> None:
    from pipeline.search.indexer import BulkWriter, Written

    written: list[str] = []
    failure = InterruptedError("stopped while the search engine was failing")

    def write(prepared: Any) -> Written:
        tag = prepared.items[0][0]["tag"]
        if tag == "bad":
            raise failure
        written.append(tag)
        return Written(dead=[], indexed=1)

    writer = BulkWriter(write, workers=1, ahead=3)
    for n, tag in enumerate(["bad", "after"]):
        writer.submit([Record(TOPIC, 0, n, b"")], _prepared(tag))  # type: ignore[list-item]
    for _ in ("bad", "after"):  # "after" was taken after "bad" failed: not written, it holds the same failure
        with pytest.raises(InterruptedError) as raised:
            writer.next_done(block=True)
        assert raised.value is failure
    writer.close()
    assert written == []
