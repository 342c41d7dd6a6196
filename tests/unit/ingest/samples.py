"""Feeds written here for the parsing, fetch and `newsflow feed parse` unit tests, and `parse` with fixed
feed URL and fetch time."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.ingest.feeds import ParsedFeed, parse_feed

FEED_URL = "https://news.example.com/feed.xml"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def parse(content: bytes | str, **kwargs: object) -> ParsedFeed:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return parse_feed(data, feed_url=FEED_URL, fetched_at=NOW, **kwargs)  # type: ignore[arg-type]


def rss(
    items: str, channel: str = "<title>Example News</title><link>https://news.example.com/</link>"
) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{channel}{items}</channel></rss>'
    )


RSS2 = rss(
    """
    <ttl>30</ttl>
    <item>
      <title>First story</title>
      <link>https://news.example.com/2024/first?utm_source=rss&amp;utm_medium=feed</link>
      <guid isPermaLink="false">story-1</guid>
      <description>&lt;p&gt;Short &amp;amp; sweet.&lt;/p&gt;</description>
      <content:encoded xmlns:content="http://purl.org/rss/1.0/modules/content/"><![CDATA[
        <p>The <b>full</b> text.</p><p>Second paragraph.</p>]]></content:encoded>
      <pubDate>Tue, 30 Apr 2024 10:00:00 +0200</pubDate>
    </item>
    """
)
