"""Poller benchmark: 5,000 generated feeds from a local HTTP server, two full cycles from one process.

Targets (issue 5): cycle 1 in <= 60 s with <= 300 MB peak RSS; cycle 2 answered mostly by 304 (the server
honours If-None-Match) and producing zero items. The server runs in its own process so its CPU and memory
are not counted. Items really go to the local Kafka, to topics named for this run (deleted afterwards).
Usage: `python -m pipeline.evaluation.bench_poller [--feeds N] [--items N] [--concurrency N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.ingest.poller import Poller
from pipeline.settings import FeedConfig, load_settings
from pipeline.stream import bus

CYCLE_LIMIT_S = 60.0
RSS_LIMIT_MB = 300.0


def feed_document(i: int, items: int) -> bytes:
    """A small RSS 2.0 feed; deterministic, so its ETag can be too."""
    body = "".join(
        f"<item><title>Feed {i} reports headline {j} about the harbour vote</title>"
        f"<link>https://site{i}.example/news/{j}?utm_source=rss</link><guid>https://site{i}.example/news/{j}</guid>"
        f"<description>Short summary {j} of outlet {i}: the board approved the plan.</description>"
        f"<pubDate>Mon, 02 Mar 2026 10:{j % 60:02d}:00 GMT</pubDate></item>"
        for j in range(items)
    )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Outlet {i}</title>"
        f"<link>https://site{i}.example/</link>{body}</channel></rss>"
    ).encode()


def serve(port_out: Any, items: int) -> None:
    """The feed server (child process): /f{i}.xml with ETag "{i}-v1"; If-None-Match -> 304."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real feed servers do

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/").removesuffix(".xml")
            if not name.startswith("f") or not name[1:].isdigit():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            i = int(name[1:])
            etag = f'"{i}-v1"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = feed_document(i, items)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # listen() backlog: the default 5 drops handshakes under 64 parallel connects

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """CPU seconds of this process (all threads): on a shared machine, wall time alone says little."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=5000)
    ap.add_argument("--items", type=int, default=3, help="items per feed")
    ap.add_argument("--concurrency", type=int, default=32, help="as poller.concurrency (default 32)")
    args = ap.parse_args(argv)

    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(queue, args.items), daemon=True)
    server.start()
    port = queue.get(timeout=30)
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        base = load_settings()
        settings = base.model_copy(
            update={
                "kafka": base.kafka.model_copy(
                    update={
                        "topics": base.kafka.topics.model_copy(
                            update={"articles": f"{run_id}.articles", "feed_state": f"{run_id}.feed-state"}
                        )
                    }
                ),
                "poller": base.poller.model_copy(
                    update={
                        "allow_private_hosts": ["127.0.0.1"],
                        "seen_db": Path(tmp) / "seen.sqlite",
                        "concurrency": args.concurrency,
                        # one local server stands in for 5,000 sites: the per-host limit would serialise them
                        "per_host_concurrency": args.concurrency,
                    }
                ),
                "stack": base.stack.model_copy(update={"state_dir": Path(tmp)}),
            }
        )
        bus.ensure_topics(settings)
        feeds = [FeedConfig(url=f"http://127.0.0.1:{port}/f{i}.xml") for i in range(args.feeds)]
        poller = Poller(settings, feeds)
        rss_before = peak_rss_mb()
        try:
            figures = []
            for cycle in (1, 2):
                t0, cpu0 = time.perf_counter(), cpu_s()
                results = asyncio.run(poller.poll_once())
                elapsed, cpu = time.perf_counter() - t0, cpu_s() - cpu0
                figures.append(
                    {
                        "cycle": cycle,
                        "seconds": elapsed,
                        "feeds": len(results),
                        "failed": sum(not r.ok for r in results),
                        "not_modified": sum(r.not_modified for r in results),
                        "items": sum(r.new_items for r in results),
                        "peak_rss_mb": peak_rss_mb(),
                        "cpu_s": cpu,
                    }
                )
                f = figures[-1]
                print(
                    f"cycle {cycle}: {f['feeds']} feeds in {elapsed:.1f} s ({f['feeds'] / elapsed:.0f} feeds/s), "
                    f"{f['failed']} failed, {f['not_modified']} answered 304 "
                    f"({f['not_modified'] / max(1, f['feeds']):.1%}), {f['items']} items produced, "
                    f"peak RSS {f['peak_rss_mb']:.0f} MB, poller CPU {cpu:.1f} s",
                    flush=True,
                )
                if f["failed"]:
                    errors = [r.error for r in results if not r.ok][:3]
                    print(f"  first errors: {errors}")
        finally:
            poller.close()
            server.terminate()
            _delete_topic(settings, f"{run_id}.articles")
            _delete_topic(settings, f"{run_id}.feed-state")
    first, second = figures
    checks = [
        (f"cycle 1 <= {CYCLE_LIMIT_S:.0f} s", first["seconds"] <= CYCLE_LIMIT_S),
        (f"peak RSS <= {RSS_LIMIT_MB:.0f} MB", max(first["peak_rss_mb"], second["peak_rss_mb"]) <= RSS_LIMIT_MB),
        ("cycle 1 produced every item", first["items"] == args.feeds * args.items),
        ("cycle 2 mostly 304", second["not_modified"] > 0.9 * second["feeds"]),
        ("cycle 2 produced nothing", second["items"] == 0),
    ]
    print(f"(RSS before polling: {rss_before:.0f} MB)")
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


def _delete_topic(settings: Any, topic: str) -> None:
    """The bench's topic is throw-away: leave the local Kafka as we found it."""
    try:
        client = bus.admin(settings)
        try:
            client.delete_topics([topic])
        finally:
            client.close()
    except Exception as exc:  # cleanup only
        print(f"(could not delete {topic}: {exc})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
