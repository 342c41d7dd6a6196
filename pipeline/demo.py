"""`make demo`: the real pipeline on sample feeds we wrote, served from a local HTTP server.

Four outlets report five stories in their own words (two pairs of look-alike events that must stay apart),
plus a verbatim wire copy and a lightly edited re-post. The demo polls them, lets the worker and indexer do
their job, and prints what came out: stories, duplicates, top entities, and a search to try.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from pipeline import bus, supervisor
from pipeline.feeds import parse_feed
from pipeline.poller import Poller
from pipeline.search import SearchBackend, connect
from pipeline.settings import FeedConfig, Settings
from pipeline.urls import canonical_url

DEMO_DIR = Path(__file__).parent / "resources" / "demo"
WAIT_FOR_INDEX_S = 240.0


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def guess_type(self, path: Any) -> str:
        return "application/xml" if str(path).endswith(".xml") else str(super().guess_type(path))


@contextlib.contextmanager
def serve_directory(folder: Path, port: int = 0) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (ephemeral port by default); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def demo_feeds(base_url: str, folder: Path = DEMO_DIR) -> list[FeedConfig]:
    return [FeedConfig(url=f"{base_url}/{p.name}", tags=["demo"]) for p in sorted(folder.glob("*.xml"))]


def demo_settings(settings: Settings, base_url: str) -> Settings:
    """Same settings, but polling the local sample feeds (explicitly allowed although on loopback)."""
    poller = settings.poller.model_copy(
        update={"allow_private_hosts": [*settings.poller.allow_private_hosts, "127.0.0.1"]}
    )
    return settings.model_copy(update={"feeds": demo_feeds(base_url), "poller": poller})


@dataclass
class Expected:
    """Ground truth written alongside the sample feeds: article id -> story label / original id."""

    story: dict[str, str]
    duplicate_of: dict[str, str | None]


def expected_outcome(folder: Path = DEMO_DIR) -> Expected:
    """Article ids are computed by the same parser the poller uses, so they match what gets indexed."""
    truth = yaml.safe_load((folder / "expected.yaml").read_text())["items"]
    ids: dict[str, str] = {}
    for path in sorted(folder.glob("*.xml")):
        parsed = parse_feed(path.read_bytes(), feed_url=f"demo/{path.name}", fetched_at=datetime.now(UTC))
        ids.update({a.url or "": a.id for a in parsed.items})
    by_link = {canonical_url(link): v for link, v in truth.items()}
    return Expected(
        story={ids[link]: v["story"] for link, v in by_link.items()},
        duplicate_of={
            ids[link]: (ids[canonical_url(v["duplicate_of"])] if v.get("duplicate_of") else None)
            for link, v in by_link.items()
        },
    )


def wait_for_articles(backend: SearchBackend, settings: Settings, ids: list[str], timeout_s: float) -> int:
    """Poll the index until every id is searchable (or time runs out); returns how many are."""
    deadline = time.monotonic() + timeout_s
    found = 0
    while time.monotonic() < deadline:
        backend.refresh()
        found = backend.count(settings.search.indices.articles, {"ids": {"values": ids}})
        print(f"\r  indexed {found}/{len(ids)} sample articles", end="", flush=True)
        if found == len(ids):
            break
        time.sleep(2.0)
    print()
    return found


def summarize(backend: SearchBackend, settings: Settings, expected: Expected) -> list[str]:
    """The closing summary: articles, stories, duplicates, top entities, and whether stories came out right."""
    docs = backend.get_many(settings.search.indices.articles, expected.story)
    got_story = {i: d["story_id"] for i, d in docs.items()}
    dups = {i: d.get("duplicate_of") for i, d in docs.items()}
    label_to_stories: dict[str, set[str]] = {}
    for i, label in expected.story.items():
        if i in got_story:
            label_to_stories.setdefault(label, set()).add(got_story[i])
    merged = len(set(got_story.values())) < len(label_to_stories)
    split = [label for label, stories in label_to_stories.items() if len(stories) > 1]
    entities: Counter[str] = Counter()
    for d in docs.values():
        for kind, names in (d.get("entities") or {}).items():
            entities.update(f"{n} ({kind})" for n in names)
    dup_ok = sum(1 for i, orig in expected.duplicate_of.items() if orig and dups.get(i) == orig)
    lines = [
        f"articles indexed: {len(docs)} of {len(expected.story)}",
        f"stories: {len(set(got_story.values()))} (expected {len(set(expected.story.values()))})"
        + ("" if not (split or merged) else f"; split: {', '.join(split) or '-'}; merged look-alikes: {merged}"),
        f"duplicates: {sum(1 for v in dups.values() if v)} marked, "
        f"{dup_ok} of {sum(1 for v in expected.duplicate_of.values() if v)} expected copies found",
        "top entities: " + ", ".join(f"{name} x{n}" for name, n in entities.most_common(8)),
    ]
    return lines


def run(settings: Settings, *, keep_serving: bool = False) -> int:
    """Serve the sample feeds, run worker + indexer, poll once, wait for the index, print the summary."""
    expected = expected_outcome()
    bus.ensure_topics(settings)
    backend = connect(settings.search)
    backend.ensure_templates()
    with serve_directory(DEMO_DIR) as base_url:
        print(f"demo: serving {len(list(DEMO_DIR.glob('*.xml')))} sample feeds at {base_url}")
        children = [
            supervisor.spawn("demo-worker", ["worker"], settings),
            supervisor.spawn("demo-indexer", ["indexer"], settings),
        ]
        try:
            poller = Poller(demo_settings(settings, base_url))
            import asyncio

            results = asyncio.run(poller.poll_once())
            poller.close()
            produced = sum(r.new_items for r in results)
            print(
                f"demo: polled {len(results)} feeds, {sum(not r.ok for r in results)} failed, "
                f"{produced} new articles produced (already-seen items are not produced twice)"
            )
            print("demo: waiting for worker (tagging + story assignment) and indexer ...")
            wait_for_articles(backend, settings, list(expected.story), WAIT_FOR_INDEX_S)
            print("\n".join(["", "== newsflow demo summary ==", *summarize(backend, settings, expected)]))
            print('\ntry:  .venv/bin/newsflow search "Putin North Korea"')
            if keep_serving:
                print(f"serving the sample feeds at {base_url} (Ctrl-C to stop)")
                while True:
                    time.sleep(3600)
        finally:
            supervisor.stop_all(children)
    return 0
