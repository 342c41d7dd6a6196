"""PollTotals: the running counts a poller reports, from its FeedResults."""

from __future__ import annotations

from pipeline.ingest.results import FeedResult, PollTotals


def test_poll_totals_add() -> None:
    totals = PollTotals()
    totals.add(
        [
            FeedResult("u1", ok=True, status=200, new_items=3, seen_items=2),
            FeedResult("u2", ok=False, error="HTTP 500"),
            FeedResult("u3", ok=False),  # no message: still counted and named
            FeedResult("u4", ok=True, status=304, not_modified=True),
        ]
    )
    assert (totals.polled, totals.failed, totals.produced) == (4, 2, 3)
    assert totals.last_errors == {"u2": "HTTP 500", "u3": "failed"}
    assert totals.cycles == 0  # cycles are counted by the poller, not by add()

    totals.add([FeedResult("u2", ok=True, status=200, new_items=1), FeedResult("u3", ok=False, error="DNS")])
    assert (totals.polled, totals.failed, totals.produced) == (6, 3, 4)
    assert totals.last_errors == {"u3": "DNS"}  # a recovered feed is no longer listed


def test_poll_totals_add_nothing() -> None:
    totals = PollTotals()
    totals.add([])
    assert (totals.polled, totals.failed, totals.produced, totals.last_errors) == (0, 0, 0, {})


def test_many_failing_feeds_are_one_line_per_kind() -> None:
    """Offline, eight feeds fail alike: one line says so (and what to suspect), not eight."""
    from pipeline.ingest.results import failure_summary

    unresolvable = "cannot fetch {0}: ConnectError: cannot resolve host 'outlet{1}.example'"
    errors = {
        f"https://outlet{i}.example/rss": unresolvable.format(f"https://outlet{i}.example/rss", i) for i in range(8)
    }
    errors["https://gone.example/rss"] = "HTTP 410 Gone from https://gone.example/rss"
    errors["https://slow.example/rss"] = "timed out after 30 s"
    lines = failure_summary(errors)
    assert lines[0].startswith("8 feeds failing: their hosts do not resolve (no network or DNS?) (e.g. https://outlet0")
    assert sorted(lines[1:]) == [
        "1 feed failing: HTTP 410 (e.g. https://gone.example/rss: HTTP 410 Gone from https://gone.example/rss)",
        "1 feed failing: timed out (e.g. https://slow.example/rss: timed out after 30 s)",
    ]
