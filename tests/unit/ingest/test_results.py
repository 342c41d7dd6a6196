"""PollTotals: the running counts a poller reports, from its FeedResults."""

from __future__ import annotations

from pipeline.ingest.results import FeedResult, PollTotals


def test_poll_totals_add() -> None:
    totals = PollTotals()
    totals.add([
        FeedResult("u1", ok=True, status=200, new_items=3, seen_items=2),
        FeedResult("u2", ok=False, error="HTTP 500"),
        FeedResult("u3", ok=False),  # no message: still counted and named
        FeedResult("u4", ok=True, status=304, not_modified=True),
    ])
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
