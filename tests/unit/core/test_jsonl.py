"""Unit tests of the JSON-lines input of `newsflow cluster` / `newsflow tag` (`pipeline/jsonl.py`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import BadInputError
from pipeline.jsonl import InputRow, read_articles, write_rows


def _file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> list:
    return list(read_articles(path))


def test_valid_rows_become_articles_in_file_order(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        json.dumps({"id": "a1", "title": "One", "summary": "S", "text": "T", "url": "https://x.example/1",
                    "published": "2024-03-01T12:00:00Z", "source": "Alpha"}),
        json.dumps({"id": "a2", "title": "Two"}),
    )
    rows = _read(path)
    assert [row.id for row, _ in rows] == ["a1", "a2"]
    _, first = rows[0]
    assert (first.id, first.title, first.summary, first.text) == ("a1", "One", "S", "T")
    assert first.url == "https://x.example/1"
    assert first.source == "Alpha"
    assert first.feed == "file"
    assert first.published == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    _, second = rows[1]
    assert second.source == "unknown"
    assert second.url is None
    assert second.summary == ""
    # no publication time: the fetch time, shared by the whole file
    assert second.published == second.fetched_at == first.fetched_at


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a", "title": "t", "story": "s9", "extra": {"deep": [1, 2]}}))
    [(row, article)] = _read(path)
    assert not hasattr(row, "extra")
    assert "extra" not in row.model_dump()
    assert article.title == "t"


def test_null_text_fields_are_empty(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a", "title": None, "summary": None, "text": None}))
    [(row, article)] = _read(path)
    assert (row.title, row.summary, row.text) == ("", "", "")
    assert article.summary == ""


def test_integer_id_is_accepted_as_text(tmp_path: Path) -> None:
    path = _file(tmp_path, '{"id": 42, "title": "t"}')
    [(row, article)] = _read(path)
    assert row.id == "42"
    assert article.id == "42"


def test_published_is_parsed_to_utc(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        json.dumps({"id": "offset", "published": "2024-03-01T12:00:00+02:00"}),
        json.dumps({"id": "naive", "published": "2024-03-01T12:00:00"}),
        json.dumps({"id": "zulu", "published": "2024-03-01T23:30:00Z"}),
    )
    published = {a.id: a.published for _, a in _read(path)}
    assert published["offset"] == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert published["naive"] == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)  # naive = UTC
    assert published["zulu"] == datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
    assert all(p.utcoffset().total_seconds() == 0 for p in published.values())  # type: ignore[union-attr]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = _file(tmp_path, "", json.dumps({"id": "a"}), "   ", "\t", json.dumps({"id": "b"}), "")
    assert [a.id for _, a in _read(path)] == ["a", "b"]


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    assert _read(path) == []


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a"}), "", '{"id": "b", "title": ')
    with pytest.raises(BadInputError) as info:
        _read(path)
    assert str(info.value).startswith(f"{path}:3: not valid JSON (")
    assert info.value.exit_code == 1


def test_missing_id_names_line_and_field(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a"}), json.dumps({"title": "no id"}))
    with pytest.raises(BadInputError) as info:
        _read(path)
    assert str(info.value) == f"{path}:2: field 'id': Field required"


def test_bad_published_names_line_and_field(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a", "published": "yesterday"}))
    with pytest.raises(BadInputError, match=r":1: field 'published': "):
        _read(path)


def test_non_object_row_is_rejected(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a"}), "[1, 2]")
    with pytest.raises(BadInputError) as info:
        _read(path)
    assert str(info.value) == f"{path}:2: expected a JSON object"


def test_rows_before_the_bad_one_are_yielded_lazily(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a"}), "nope")
    it = read_articles(path)
    assert next(it)[1].id == "a"
    with pytest.raises(BadInputError, match=":2: not valid JSON"):
        next(it)


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(BadInputError) as info:
        _read(missing)
    assert str(info.value) == f"cannot read {missing}: No such file or directory"


def test_empty_id_names_line_and_field(tmp_path: Path) -> None:
    path = _file(tmp_path, json.dumps({"id": "a"}), json.dumps({"id": ""}))
    with pytest.raises(BadInputError, match=r":2: field 'id'"):
        _read(path)


def test_non_utf8_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "title": "caf\xe9"}\n')
    with pytest.raises(BadInputError, match=r":2: "):
        _read(path)


def test_boolean_id_is_rejected(tmp_path: Path) -> None:
    path = _file(tmp_path, '{"id": true}')
    with pytest.raises(BadInputError, match=r":1: field 'id'"):
        _read(path)


def test_float_id_is_rejected(tmp_path: Path) -> None:
    path = _file(tmp_path, '{"id": 1.5}')
    with pytest.raises(BadInputError, match=r":1: field 'id': Input should be a valid string"):
        _read(path)


def test_input_row_model_directly() -> None:
    row = InputRow.model_validate({"id": 7, "summary": None})
    assert (row.id, row.summary, row.published, row.source) == ("7", "", None, None)


def test_write_rows() -> None:
    out = io.StringIO()
    n = write_rows([{"id": "a", "story_id": "s1", "duplicate_of": None}, {"id": "é", "at": datetime(2024, 1, 1)}], out)
    assert n == 2
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0]) == {"id": "a", "story_id": "s1", "duplicate_of": None}
    assert lines[1] == '{"id": "é", "at": "2024-01-01 00:00:00"}'
