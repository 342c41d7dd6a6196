"""Unit tests of `newsflow search` filters: parsing (`parse_filters`) and the query they become (`build_query`).

No engine: malformed input must fail before any request is sent, which the CLI test proves by making
`connect` explode if it is ever called.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import commands as cli
from pipeline.cli import report
from pipeline.errors import QueryError
from pipeline.search import queries
from pipeline.search.queries import SearchFilters, build_query, parse_entity, parse_filters, parse_since
from pipeline.settings import get_settings


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("person:Vladimir Putin", ("person", "Vladimir Putin")),
        ('person:"Vladimir Putin"', ("person", "Vladimir Putin")),  # quotes kept by a shell or a script
        ("Organization: United Nations ", ("organization", "United Nations")),
        ("location:Washington, D.C.", ("location", "Washington, D.C.")),
        ("person:Name: With Colon", ("person", "Name: With Colon")),
    ],
)
def test_parse_entity(spec: str, expected: tuple[str, str]) -> None:
    assert parse_entity(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo", "bad --entity 'foo': use TYPE:NAME, e.g. person:\"Vladimir Putin\""),
        ("person:", "bad --entity 'person:': use TYPE:NAME"),
        ('person:""', "bad --entity 'person:\"\"': use TYPE:NAME"),
        ("planet:X", "bad --entity 'planet:X': type must be one of person, organization, location"),
        ("other:X", "bad --entity 'other:X': type must be one of person, organization, location"),
    ],
)
def test_parse_entity_rejects_malformed_input(spec: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_entity(spec)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("24h", "now-24h"), ("7d", "now-7d"), ("30m", "now-30m"), ("2w", "now-2w"), ("07d", "now-7d"), (" 1h ", "now-1h")],
)
def test_parse_since(spec: str, expected: str) -> None:
    assert parse_since(spec) == expected


@pytest.mark.parametrize("spec", ["yesterday", "24", "h", "0h", "-1d", "1.5h", "24H", "7 days", ""])
def test_parse_since_rejects_malformed_input(spec: str) -> None:
    with pytest.raises(QueryError, match=r"^bad --since .*: use a positive number and a unit, e.g. 24h, 7d, 30m"):
        parse_since(spec)


def test_parse_filters_collects_everything_and_rejects_an_empty_source() -> None:
    filters = parse_filters(["person:A", "location:B"], ["Harbor Times", " Wire "], "24h", unique=True)
    assert filters == SearchFilters(
        entities=(("person", "A"), ("location", "B")), sources=("Harbor Times", "Wire"), since="now-24h", unique=True
    )
    assert filters
    assert not parse_filters()
    with pytest.raises(QueryError, match=r"^bad --source ''"):
        parse_filters(sources=[" "])


def test_build_query_without_filters_is_the_scored_text_query() -> None:
    """The text goes to the engine as the query string rendered from its checked parse (`query_text`)."""
    query = build_query("Putin North Korea")
    assert query == {
        "bool": {
            "must": [
                {
                    "query_string": {
                        "query": "Putin AND North AND Korea",
                        "fields": ["title^3", "summary^2", "text"],
                        "default_operator": "AND",
                        "allow_leading_wildcard": False,
                    }
                }
            ],
            "filter": [],
        }
    }


def test_build_query_puts_every_filter_in_filter_context() -> None:
    filters = parse_filters(
        ["person:Vladimir Putin", "organization:United Nations"], ["A", "B"], since="7d", unique=True
    )
    query = build_query("summit", filters)["bool"]
    assert query["must"][0]["query_string"]["query"] == "summit"
    assert query["filter"] == [
        {"term": {"entities.person": "Vladimir Putin"}},
        {"term": {"entities.organization": "United Nations"}},
        {"terms": {"source": ["A", "B"]}},
        {"range": {"@timestamp": {"gte": "now-7d"}}},
        {"term": {"is_duplicate": False}},
    ]


def test_build_query_without_text_matches_all_within_the_filters() -> None:
    query = build_query("  ", parse_filters(sources=["A"]))
    assert query == {"bool": {"must": [{"match_all": {}}], "filter": [{"terms": {"source": ["A"]}}]}}


class FakeBackend:
    """Records the request bodies `find_stories` sends and answers with one story."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        if "collapse" in body:
            return {"hits": {"hits": [{"_source": {"story_id": "s-1"}}]}}
        return {"hits": {"hits": [{"_source": {"story_id": "s-1", "title": "t", "source": "A"}}]}}

    def get_many(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: {"story_id": i, "title": "story"} for i in ids}


def test_find_stories_applies_filters_to_the_story_hits_and_the_articles_shown() -> None:
    backend = FakeBackend()
    filters = parse_filters(sources=["A"], unique=True)
    hits = queries.find_stories(backend, get_settings(), "", 5, filters)  # type: ignore[arg-type]
    assert [h.story["story_id"] for h in hits] == ["s-1"]
    first, members = backend.bodies
    assert first["query"] == build_query("", filters)
    assert first["sort"] == [{"@timestamp": "desc"}]  # no words, no relevance: newest first
    assert members["query"]["bool"]["filter"] == [
        {"terms": {"story_id": ["s-1"]}},
        {"terms": {"source": ["A"]}},
        {"term": {"is_duplicate": False}},
    ]


# --- the CLI: one line, exit code 1, and no request ------------------------------------------------------------
@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)

    def connect(*_: object) -> None:
        raise AssertionError("a request was about to be sent")

    monkeypatch.setattr(report, "connect", connect)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--entity", "foo"], "bad --entity 'foo': use TYPE:NAME"),
        (["putin", "--entity", "planet:X"], "bad --entity 'planet:X': type must be one of"),
        (["--since", "yesterday"], "bad --since 'yesterday'"),
        ([], "empty query: give some words to search for"),
    ],
)
@pytest.mark.usefixtures("no_engine")
def test_cli_malformed_filters_are_one_line_and_send_nothing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["search", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"newsflow: error: {message}")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("no_engine")
def test_cli_passes_parsed_filters_to_search(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_search(settings: object, text: str, **kw: Any) -> int:
        seen.update(kw, text=text)
        return 0

    monkeypatch.setattr(report, "search", fake_search)
    argv = ["search", "--entity", 'person:"Vladimir Putin"', "--source", "A", "--source", "B", "--since", "30m"]
    assert cli.main([*argv, "--unique", "--json"]) == 0
    assert seen == {
        "text": "",
        "size": 10,
        "as_json": True,
        "filters": SearchFilters((("person", "Vladimir Putin"),), ("A", "B"), "now-30m", True),
    }
