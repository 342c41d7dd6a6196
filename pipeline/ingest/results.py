"""Outcomes of polling: `FeedResult` (what one poll of one feed did) and `PollTotals` (the running counts a
poller reports in its status). Their own module because both the poller and the seen-store (which records each
result) use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Failure classes, in the order they are tried: (pattern in the one-line error, what to tell a person).
FAILURE_CLASSES = (
    (
        re.compile(r"cannot resolve|Name or service not known|name resolution|nodename nor servname", re.I),
        "their hosts do not resolve (no network or DNS?)",
    ),
    (re.compile(r"refusing|invalid feed URL", re.I), "refused by the outbound policy or not a valid URL"),
    (re.compile(r"timed out|Timeout", re.I), "timed out"),
    (re.compile(r"ConnectError|Connection refused|unreachable|ConnectionReset", re.I), "the connection failed"),
    (re.compile(r"HTTP (\d{3})"), "HTTP {0}"),
    (re.compile(r"not a feed|malformed|XML|parse", re.I), "the response is not a readable feed"),
)


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


def failure_summary(errors: Mapping[str, str], examples: int = 1) -> list[str]:
    """One line per kind of failure ("8 feeds unreachable: their hosts do not resolve (no network or DNS?)"),
    with an example, instead of one line per feed: what a person can act on when many feeds fail alike."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for url, error in errors.items():
        kind = "other errors"
        for pattern, label in FAILURE_CLASSES:
            if m := pattern.search(error):
                kind = label.format(*m.groups())
                break
        groups.setdefault(kind, []).append((url, error))
    lines = []
    for kind, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        feeds = f"{len(items)} feed{'s' if len(items) != 1 else ''}"
        sample = "; ".join(f"{url}: {error}" for url, error in items[:examples])
        lines.append(f"{feeds} failing: {kind} (e.g. {sample})")
    return lines
