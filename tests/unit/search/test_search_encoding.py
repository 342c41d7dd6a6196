"""Unit tests of the bulk body encoding, the clients' orjson serializers and `SearchBackend.bulk`'s outcome
matching (no search engine: the request is answered by a stub)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import elastic_transport
import opensearchpy.exceptions as os_exc
import pytest

from pipeline.search.backend import ElasticsearchBackend, OpenSearchBackend, SearchBackend
from pipeline.search.encoding import OpenSearchOrjsonSerializer, dumps, encode_action, encode_bulk
from pipeline.settings import SearchSettings

ARTICLE = {"_op_type": "index", "_index": "a-2024.03", "_id": "a1", "_source": {"id": "a1", "title": "Zürich"}}
STORY = {
    "_op_type": "index", "_index": "s", "_id": "s1", "version": 3, "version_type": "external_gte",
    "_source": {"story_id": "s1"},
}


# --- encoding ----------------------------------------------------------------------------------------------


def test_encode_action_writes_metadata_then_document() -> None:
    lines = encode_action(STORY).split(b"\n")
    assert lines[-1] == b""  # newline-terminated
    assert json.loads(lines[0]) == {"index": {"_index": "s", "_id": "s1", "version": 3, "version_type": "external_gte"}}
    assert json.loads(lines[1]) == {"story_id": "s1"}
    assert len(lines) == 3


def test_encode_action_delete_has_no_document_and_index_is_the_default() -> None:
    assert encode_action({"_op_type": "delete", "_index": "i", "_id": "x"}) == b'{"delete":{"_index":"i","_id":"x"}}\n'
    assert encode_action({"_index": "i", "_id": "x", "_source": {}}) == b'{"index":{"_index":"i","_id":"x"}}\n{}\n'


def test_encode_bulk_is_the_actions_lines_and_keeps_text_as_utf8() -> None:
    body = encode_bulk([ARTICLE, STORY])
    assert body == encode_action(ARTICLE) + encode_action(STORY)
    assert "Zürich".encode() in body  # not \\u-escaped


def test_dumps_converts_what_the_clients_convert_and_falls_back_past_orjson_limits() -> None:
    value = {"at": datetime(2024, 3, 1, 12, tzinfo=UTC), "day": date(2024, 3, 1), "n": Decimal("1.5"),
             "u": UUID(int=1)}
    assert json.loads(dumps(value)) == {
        "at": "2024-03-01T12:00:00+00:00", "day": "2024-03-01", "n": 1.5, "u": str(UUID(int=1))
    }
    assert json.loads(dumps({"huge": 2**70})) == {"huge": 2**70}  # orjson refuses > 64 bits; stdlib does not
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_opensearch_serializer_passes_text_through_and_round_trips() -> None:
    ser = OpenSearchOrjsonSerializer()
    assert ser.dumps('{"already": "json"}') == '{"already": "json"}'
    assert ser.dumps(b"raw") == b"raw"
    out = ser.dumps({"a": [1, 2], "at": datetime(2024, 1, 1, tzinfo=UTC), "t": "é"})
    assert isinstance(out, str)  # the client's bulk helper joins text lines
    assert ser.loads(out) == {"a": [1, 2], "at": "2024-01-01T00:00:00+00:00", "t": "é"}
    assert ser.dumps({"huge": 2**70}) == '{"huge":1180591620717411303424}'
    with pytest.raises(os_exc.SerializationError):
        ser.loads("{not json")


def test_both_clients_are_built_with_orjson_serializers() -> None:
    from elasticsearch.serializer import OrjsonSerializer

    settings = SearchSettings(url="http://127.0.0.1:1")
    os_backend = OpenSearchBackend(settings)
    assert isinstance(os_backend.client.transport.serializer, OpenSearchOrjsonSerializer)
    es_backend = ElasticsearchBackend(settings)
    assert isinstance(es_backend.client.transport.serializers.get_serializer("application/json"), OrjsonSerializer)


# --- SearchBackend.bulk ------------------------------------------------------------------------------------


class StubBackend(SearchBackend):
    """Answers each bulk request with the next canned answer (or raises it), recording the bodies."""

    kind = "stub"

    def __init__(self, *answers: dict[str, Any] | BaseException) -> None:
        super().__init__(SearchSettings())
        self.answers = list(answers)
        self.bodies: list[bytes] = []

    def _make_client(self, settings: SearchSettings) -> Any:
        return None

    def _send_bulk(self, body: bytes) -> dict[str, Any]:
        self.bodies.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _item(status: int, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": {"status": status, **({"error": error} if error else {})}}


def test_bulk_matches_items_by_position_and_reads_their_errors() -> None:
    dup = {**ARTICLE, "_source": {"id": "a1", "title": "again"}}  # the same id twice in one batch: two items
    backend = StubBackend({
        "errors": True,
        "items": [
            _item(201),
            _item(429, {"type": "es_rejected_execution_exception", "reason": "queue full"}),
            _item(409, {"type": "version_conflict_engine_exception", "reason": "newer"}),
            _item(400, {"type": "mapper_parsing_exception", "reason": "bad",
                        "caused_by": {"type": "x", "reason": "y"}}),
        ],
    })
    ok, busy, stale, bad = backend.bulk([ARTICLE, dup, STORY, ARTICLE])
    assert backend.bodies == [encode_bulk([ARTICLE, dup, STORY, ARTICLE])]
    assert ok.ok and ok.status == 201 and ok.error is None and ok.action is ARTICLE
    assert busy.retryable and busy.action is dup and busy.error == "es_rejected_execution_exception: queue full"
    assert stale.stale_version and not stale.retryable
    assert not bad.ok and not bad.retryable
    assert bad.error == "mapper_parsing_exception: bad (caused by x: y)"


def test_bulk_sends_pre_encoded_lines_as_given() -> None:
    backend = StubBackend({"errors": False, "items": [_item(201), _item(200)]})
    lines = [encode_action(ARTICLE), encode_action(STORY)]
    assert all(o.ok for o in backend.bulk([ARTICLE, STORY], lines))
    assert backend.bodies == [b"".join(lines)]
    with pytest.raises(ValueError):
        backend.bulk([ARTICLE, STORY], lines[:1])


def test_bulk_items_missing_from_the_answer_are_retryable() -> None:
    backend = StubBackend({"errors": False, "items": [_item(201)]})
    first, second = backend.bulk([ARTICLE, STORY])
    assert first.ok
    assert second.retryable and second.error == "no result for this item"


@pytest.mark.parametrize(
    ("exc", "status", "retryable"),
    [
        (os_exc.ConnectionError("N/A", "Connection refused", None), 0, True),
        (os_exc.ConnectionTimeout("TIMEOUT", "timed out", None), 0, True),
        (os_exc.TransportError(429, "too_many_requests", {}), 429, True),
        (os_exc.TransportError(503, "unavailable", {}), 503, True),
        (os_exc.TransportError(413, "request too large", {}), 413, False),
        (elastic_transport.ConnectionError("Connection refused"), 0, True),
        (elastic_transport.ConnectionTimeout("timed out"), 0, True),
    ],
    ids=["os-refused", "os-timeout", "os-429", "os-503", "os-413", "es-refused", "es-timeout"],
)
def test_a_failed_request_gives_every_item_its_status(exc: BaseException, status: int, retryable: bool) -> None:
    outcomes = StubBackend(exc).bulk([ARTICLE, STORY])
    assert [o.status for o in outcomes] == [status, status]
    assert all(o.retryable is retryable and not o.ok for o in outcomes)
    assert all(type(exc).__name__ in (o.error or "") for o in outcomes)


def test_bulk_of_nothing_sends_nothing() -> None:
    backend = StubBackend()
    assert backend.bulk([]) == []
    assert backend.bodies == []


def test_an_elasticsearch_http_error_for_the_whole_request_keeps_its_status() -> None:
    import elasticsearch

    meta = elastic_transport.ApiResponseMeta(
        status=429, http_version="1.1", headers=elastic_transport.HttpHeaders(), duration=0.0, node=None  # type: ignore[arg-type]
    )
    outcomes = StubBackend(elasticsearch.ApiError("too_many_requests", meta, {})).bulk([ARTICLE])
    assert outcomes[0].status == 429 and outcomes[0].retryable
