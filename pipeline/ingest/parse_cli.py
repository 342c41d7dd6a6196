"""`newsflow feed parse FILE_OR_URL...`: read feed files or fetch URLs (`fetch_feed`, as the poller fetches) and
print `parse_feed`'s Articles as JSON lines, a bad feed as one {"feed", "error"} line. In `ingest` rather than
`pipeline/cli/` because `pipeline.evaluation.feeds_robustness` runs it too, and evaluation may not import cli.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import FeedError
from pipeline.ingest.feeds import parse_feed
from pipeline.ingest.fetch import fetch_feed
from pipeline.ingest.text import one_line
from pipeline.settings import Settings


def _load(source: str, settings: Settings) -> tuple[bytes, str, str | None, str]:
    """(content, feed_url, content_type, base_url) for a file path or an http(s) URL."""
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme in ("http", "https"):
        response = fetch_feed(source, settings)
        return response.content, source, response.headers.get("content-type"), response.final_url
    if scheme:
        raise FeedError(f"unsupported input {source!r}: give a file path or an http(s) URL")
    path = Path(source)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FeedError(f"cannot read {source}: {exc.strerror or exc}") from None
    return content, path.resolve().as_uri(), None, path.resolve().as_uri()


def cli_parse(inputs: list[str], settings: Settings) -> int:
    """`newsflow feed parse FILE_OR_URL...`: one JSON line per Article, or one {"feed", "error"} per bad feed.

    Exit 0 when every input was processed (an unparseable feed is processed: its error was printed), 1 when
    some input could not be read or fetched. Warnings go to stderr as single lines.
    """
    status = 0
    out = sys.stdout
    for source in inputs:
        fetched_at = datetime.now(UTC)
        try:
            content, feed_url, content_type, base = _load(source, settings)
        except FeedError as exc:
            print(json.dumps({"feed": source, "error": str(exc)}, ensure_ascii=False), file=out, flush=True)
            status = 1
            continue
        try:
            parsed = parse_feed(
                content, feed_url=feed_url, fetched_at=fetched_at, content_type=content_type, base_url=base
            )
        except FeedError as exc:
            print(json.dumps({"feed": source, "error": str(exc)}, ensure_ascii=False), file=out, flush=True)
            continue
        except Exception as exc:  # a bug must still be one line, never a traceback, and must not stop the run
            message = f"internal error: {one_line(f'{type(exc).__name__}: {exc}')}"
            print(json.dumps({"feed": source, "error": message}, ensure_ascii=False), file=out, flush=True)
            status = 1
            continue
        for article in parsed.items:
            out.write(json.dumps(article.model_dump(mode="json"), ensure_ascii=False) + "\n")
        out.flush()
        for warning in parsed.warnings:
            print(f"warning: {source}: {warning}", file=sys.stderr)
    return status
