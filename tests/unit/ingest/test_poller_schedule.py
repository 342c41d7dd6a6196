"""Scheduling rules (pure): adaptive intervals, server hints, backoff, jitter, the due queue, OPML, feed ids."""

from __future__ import annotations

import random

import pytest

from pipeline.errors import FeedError
from pipeline.ingest.opml import export_opml, parse_opml
from pipeline.ingest.schedule import (
    Bounds,
    DueQueue,
    FeedState,
    adaptive_interval,
    cache_max_age,
    error_delay,
    jittered,
    parse_retry_after,
    record_new_items,
    success_interval,
)
from pipeline.settings import FeedConfig

B = Bounds(min_s=60, max_s=3600, initial_s=300)
NOW = 1_800_000_000.0


def test_bounds_feed_values_win_and_never_invert() -> None:
    assert Bounds.resolve(None, None, 60, 3600, 300) == Bounds(60, 3600, 300)
    assert Bounds.resolve(600, None, 60, 3600, 300) == Bounds(600, 3600, 600)
    assert Bounds.resolve(None, 30, 60, 3600, 300) == Bounds(60, 60, 60)


def test_busy_feed_is_polled_often_quiet_feed_rarely() -> None:
    busy = [NOW - i * 600 for i in range(50)]  # an item every 10 minutes
    assert adaptive_interval(busy, 300, True, B, NOW) == pytest.approx(300, rel=0.05)
    hourly = [NOW - i * 3600 * 4 for i in range(10)]  # every 4 hours
    assert adaptive_interval(hourly, 300, True, B, NOW) == 3600  # clamped to the max
    flood = [NOW - i for i in range(200)]
    assert adaptive_interval(flood, 300, True, B, NOW) == 60  # clamped to the min


def test_quiet_feed_stretches_towards_max() -> None:
    interval = 300.0
    for _ in range(20):
        interval = adaptive_interval([], interval, False, B, NOW)
    assert interval == 3600
    assert adaptive_interval([], 300, True, B, NOW) == 300


def test_server_hints_raise_interval_up_to_max() -> None:
    st = FeedState("f", "u", interval_s=300)
    assert success_interval(st, B, got_new=True, ttl_s=1800, max_age_s=None, now=NOW) == 1800
    assert success_interval(st, B, got_new=True, ttl_s=None, max_age_s=100, now=NOW) == 300
    assert success_interval(st, B, got_new=True, ttl_s=None, max_age_s=10**6, now=NOW) == 3600


def test_retry_after_and_cache_control_parsing() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:00 GMT", 1_800_000_000.0) is not None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert cache_max_age("public, max-age=600") == 600
    assert cache_max_age('max-age="60", s-maxage=900') == 900
    assert cache_max_age("no-cache") is None


def test_error_backoff_grows_with_jitter_then_stays_at_max() -> None:
    rng = random.Random(1)
    delays = [error_delay(n, B, rng) for n in range(1, 12)]
    assert 30 <= delays[0] <= 60
    assert 60 <= delays[1] <= 120
    assert delays[-1] == 3600 and delays[-2] == 3600
    assert all(d <= 3600 for d in delays)


def test_jitter_spreads_within_fraction() -> None:
    rng = random.Random(2)
    values = {round(jittered(100, 0.1, rng), 3) for _ in range(50)}
    assert len(values) > 40 and all(90 <= v <= 110 for v in values)


def test_item_times_are_bounded_and_age_out() -> None:
    st = FeedState("f", "u", item_times=[NOW - 8 * 86400])
    record_new_items(st, 10_000, NOW)
    assert len(st.item_times) == 500 and st.items_since(NOW - 86400) == 500


def test_state_roundtrip_ignores_unknown_keys() -> None:
    st = FeedState("f", "u", etag='"x"', consecutive_errors=2)
    back = FeedState.from_json({**st.to_json(), "future_field": 1})
    assert back == st and not back.healthy
    assert back.validators() == {"If-None-Match": '"x"'}


def test_due_queue_orders_and_reschedules() -> None:
    q = DueQueue()
    q.schedule("a", 30)
    q.schedule("b", 10)
    q.schedule("c", 20)
    q.schedule("a", 5)  # rescheduled earlier: the old entry is ignored
    assert q.next_due() == 5
    assert q.pop_due(15) == ["a", "b"]
    assert q.pop_due(15) == []
    q.discard("c")
    assert q.next_due() is None and len(q) == 0


def test_feed_id_is_stable_and_case_insensitive_on_host() -> None:
    a = FeedConfig(url="https://Example.COM/rss#x").feed_id()
    assert a == FeedConfig(url="https://example.com/rss").feed_id()
    assert FeedConfig(url="https://moved.example/rss", id=a).feed_id() == a
    assert len(a) == 16


OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>subs</title></head><body>
  <outline text="World">
    <outline type="rss" text="BBC" title="BBC World" xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml"/>
    <outline type="rss" text="Caf\xc3\xa9 &amp; Co" xmlUrl="https://cafe.example/feed" category="/food/coffee,x"/>
  </outline>
  <outline type="rss" text="dup" xmlUrl="https://cafe.example/feed"/>
  <outline text="folder without feeds"/>
</body></opml>"""


def test_opml_import() -> None:
    feeds = parse_opml(OPML)
    assert [(f.name, f.url, f.tags) for f in feeds] == [
        ("BBC World", "https://feeds.bbci.co.uk/news/world/rss.xml", ["World"]),
        ("Café & Co", "https://cafe.example/feed", ["World", "food", "coffee", "x"]),
    ]


def test_opml_roundtrip() -> None:
    feeds = [FeedConfig(url="https://a.example/rss?x=1&y=2", name='A <"quoted">', tags=["t1", "t2"])]
    back = parse_opml(export_opml(feeds).encode())
    assert [(f.url, f.name, f.tags) for f in back] == [(feeds[0].url, feeds[0].name, ["t1", "t2"])]


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<opml><body><outline xmlUrl='https://x.example/&b;'/></body></opml>",
        b'<!DOCTYPE opml SYSTEM "http://evil.example/x.dtd"><opml><body/></opml>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE o [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml/>'.encode(
            "utf-16"
        ),
        b"<opml><body><outline",
        b"<html><body/></html>",
    ],
)
def test_opml_refuses_unsafe_or_broken(doc: bytes) -> None:
    with pytest.raises(FeedError):
        parse_opml(doc)
