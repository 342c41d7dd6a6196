"""`newsflow feed parse` (cli_parse): files and URLs in, JSON lines out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.ingest.parse_cli import cli_parse
from pipeline.settings import Settings
from tests.unit.ingest.samples import RSS2


def test_cli_parse_prints_articles_and_errors_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.xml"
    good.write_text(RSS2, encoding="utf-8")
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"\x00garbage")
    status = cli_parse([str(good), str(bad)], Settings())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert lines[0]["title"] == "First story" and lines[0]["published"] == "2024-04-30T08:00:00Z"
    assert lines[0]["feed"] == good.resolve().as_uri()
    assert lines[1] == {"feed": str(bad), "error": lines[1]["error"]} and "\n" not in lines[1]["error"]


def test_cli_parse_reports_unreadable_inputs_and_refused_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli_parse(
        [str(tmp_path / "missing.xml"), "http://127.0.0.1:9/feed", "file:///etc/passwd"], Settings()
    )
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [o["feed"] for o in out] == [
        str(tmp_path / "missing.xml"),
        "http://127.0.0.1:9/feed",
        "file:///etc/passwd",
    ]
    assert "cannot read" in out[0]["error"]
    assert "loopback" in out[1]["error"]
    assert "unsupported input" in out[2]["error"]
