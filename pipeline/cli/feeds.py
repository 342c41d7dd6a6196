"""`newsflow feeds add|list|remove|import|export`: the feed registry from the command line.

The registry is the compacted Kafka topic `kafka.topics.feeds` (see `pipeline/ingest/registry.py`); `list` joins it
with the state topic to show each feed's health as the pollers last saw it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.errors import ConfigError, FeedError, first_problem
from pipeline.ingest import registry
from pipeline.ingest.opml import export_opml, parse_opml
from pipeline.ingest.safety import check_feed_url
from pipeline.ingest.schedule import FeedState
from pipeline.settings import FeedConfig, Settings
from pipeline.stream import bus


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return (
        f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
    )


def _ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else _duration(max(0.0, now - ts)) + " ago"


def _every(row: dict[str, Any]) -> str:
    """The current interval; for a failing feed, when its backed-off retry is due (it is never dropped)."""
    if row["health"] == "FAILING" and row["next_due_in_s"] is not None:
        return "r" + _duration(max(0.0, row["next_due_in_s"]))
    return _duration(row["interval_s"])


def feed_row(fid: str, feed: FeedConfig, state: FeedState | None, now: float) -> dict[str, Any]:
    """One feed's health as plain data (the `--json` output and the table both use it)."""
    st = state or FeedState(fid, feed.url)
    health = "new" if state is None or st.last_polled is None else ("ok" if st.healthy else "FAILING")
    return {
        "id": fid,
        "name": feed.name,
        "url": feed.url,
        "enabled": feed.enabled,
        "tags": feed.tags,
        "health": health if feed.enabled else "disabled",
        "consecutive_errors": st.consecutive_errors,
        "last_success": st.last_success,
        "last_error": st.last_error,
        "status": st.status,
        "items_24h": st.items_since(now - 86400),
        "interval_s": st.interval_s,
        "next_due_in_s": (st.next_due - now) if st.last_polled is not None else None,
        "etag": st.etag,
        "last_modified": st.last_modified,
        "poller": st.poller,
    }


def cmd_list(settings: Settings, as_json: bool) -> int:
    feeds, states = registry.load_feeds(settings), registry.load_states(settings)
    now = time.time()
    rows = [feed_row(fid, f, states.get(fid), now) for fid, f in sorted(feeds.items(), key=lambda kv: kv[1].url)]
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if not rows:
        print("no feeds in the registry (newsflow feeds add URL | newsflow feeds import FILE.opml)")
        return 0
    print(f"{'ID':16}  {'HEALTH':8} {'HTTP':>4} {'EVERY':>6} {'LAST OK':>9} {'24H':>4}  {'VALIDATORS':10}  FEED")
    print("(EVERY: current interval; rNN: a failing feed's next retry, backing off up to the max interval)")
    for r in rows:
        validators = "+".join(k for k, v in (("etag", r["etag"]), ("lm", r["last_modified"])) if v) or "-"
        line = (
            f"{r['id']:16}  {r['health']:8} {r['status'] or '-':>4} {_every(r):>6} "
            f"{_ago(r['last_success'], now):>9} {r['items_24h']:>4}  {validators:10}  {r['name'] or ''} {r['url']}"
        )
        print(line.rstrip())
        if r["last_error"]:
            print(f"{'':18}last error: {r['last_error'][:160]}")
    failing = sum(r["health"] == "FAILING" for r in rows)
    print(f"{len(rows)} feeds, {failing} failing")
    return 0


def cmd_add(settings: Settings, url: str, given: dict[str, Any]) -> int:
    """Add the feed at `url`, or, if the registry has it (by id or URL), change only the fields `given` (a
    `--min-interval` keeps its name, tags and the rest). Printed only once the broker acknowledged the write."""
    check_feed_url(url, settings.poller.allow_private_hosts)  # refused at the door: one line, nothing written
    bus.ensure_topics(settings)
    feeds = registry.load_feeds(settings)
    fid = _feed(url=url).feed_id()
    current = feeds.get(fid) or next((f for f in feeds.values() if f.url == url), None)
    if current is None:
        feed, verb = _feed(url=url, **given), "added"
    else:
        changed = {k: v for k, v in given.items() if getattr(current, k) != v}
        if not changed:
            print(f"unchanged {current.feed_id()} {current.url}")
            return 0
        feed = _feed(**{**current.model_dump(exclude_none=True), **changed})
        verb = "updated"
    registry.add_feeds(settings, [feed])  # waits for the broker's ack; RegistryWriteFailed (one line) otherwise
    what = "" if current is None else ": " + ", ".join(f"{k} {v!r}" for k, v in changed.items())
    print(f"{verb} {feed.feed_id()} {feed.url}{what}")
    return 0


def _feed(**fields: Any) -> FeedConfig:
    """A FeedConfig from command-line values; an invalid one is one line naming the option."""
    try:
        return FeedConfig(**fields)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ConfigError(f"invalid feed {where}: {problem.removeprefix('Value error, ')}") from None


def _resolve(settings: Settings, ref: str) -> str:
    """A feed id, or the id of the registry feed with this URL (also a record that is not a valid feed, e.g. a
    URL stored before URLs were checked at the door, so it can be removed)."""
    records = registry.feed_records(settings)
    if ref in records:
        return ref
    matches = [fid for fid, value in records.items() if isinstance(value, dict) and value.get("url") == ref]
    if not matches:
        raise ConfigError(f"no feed {ref!r} in the registry (newsflow feeds list)")
    return matches[0]


def cmd_remove(settings: Settings, ref: str) -> int:
    fid = _resolve(settings, ref)
    reg = registry.Registry(settings)
    try:
        reg.remove_feed(fid)
    finally:
        reg.close()
    print(f"removed {fid}")
    return 0


def read_feed_file(path: Path, skipped: list[str] | None = None) -> list[FeedConfig]:
    """OPML (by content; outlines whose URL cannot be a feed are left out, their reasons put in `skipped`), or a
    YAML file like config/feeds.yaml (an invalid entry refuses the file, as at config load)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            raw = (yaml.safe_load(data) or {}).get("feeds") or []
        except (yaml.YAMLError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a feeds file: {str(exc).splitlines()[0]}") from None
        feeds = []
        for n, entry in enumerate(raw):
            try:
                feeds.append(FeedConfig.model_validate(entry))
            except ValidationError as exc:  # named as at config load: feeds.3.url
                where, problem = first_problem(exc)
                raise ConfigError(
                    f"{path}: invalid feeds.{n}.{where}: {problem.removeprefix('Value error, ')}"
                ) from None
        return feeds
    try:
        return parse_opml(data, skipped)
    except FeedError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def cmd_import(settings: Settings, path: Path) -> int:
    feeds = []
    skipped: list[str] = []  # OPML outlines whose URL is not a feed URL at all
    read = read_feed_file(path, skipped)
    for reason in skipped:
        print(f"skipped: {reason}")
    for feed in read:
        try:
            check_feed_url(feed.url, settings.poller.allow_private_hosts)
            feeds.append(feed)
        except FeedError as exc:
            print(f"skipped: {exc}")
    bus.ensure_topics(settings)
    known = {f.url for f in registry.load_feeds(settings).values()}
    new = [f for f in feeds if f.url not in known]
    registry.add_feeds(settings, new)
    print(f"imported {len(new)} feeds from {path} ({len(feeds) - len(new)} already in the registry)")
    return 0


def cmd_export(settings: Settings, output: Path | None) -> int:
    feeds = sorted(registry.load_feeds(settings).values(), key=lambda f: f.url)
    text = export_opml(feeds)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"exported {len(feeds)} feeds to {output}", file=sys.stderr)
    return 0
