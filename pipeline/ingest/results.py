"""Outcomes of polling: `FeedResult` (what one poll of one feed did) and `PollTotals` (the running counts a
poller reports in its status). Their own module because both the poller and the seen-store (which records each
result) use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class FeedResult:
    """What one poll of one feed did."""

    url: str
    ok: bool
    status: int | None = None
    new_items: int = 0
    seen_items: int = 0
    not_modified: bool = False
    error: str | None = None


@dataclass
class PollTotals:
    cycles: int = 0
    polled: int = 0
    failed: int = 0
    produced: int = 0
    last_errors: dict[str, str] = field(default_factory=dict)

    def add(self, results: Iterable[FeedResult]) -> None:
        for r in results:
            self.polled += 1
            self.produced += r.new_items
            if r.ok:
                self.last_errors.pop(r.url, None)
            else:
                self.failed += 1
                self.last_errors[r.url] = r.error or "failed"
