"""parse_feed and item_id, on small feeds written here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import FeedError
from pipeline.ingest.feeds import FUTURE_TOLERANCE, item_id, parse_feed
from tests.unit.ingest.samples import FEED_URL, NOW, RSS2, parse, rss

# --- formats ---------------------------------------------------------------------------------------------

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom Example</title>
  <link href="https://atom.example.org/"/>
  <entry>
    <title type="html">Markets &amp;amp; money</title>
    <link rel="alternate" href="https://atom.example.org/posts/1#comments"/>
    <id>tag:atom.example.org,2024:1</id>
    <updated>2024-04-01T10:00:00Z</updated>
    <summary>A summary.</summary>
    <content type="html">&lt;p&gt;Body text&lt;/p&gt;&lt;style&gt;p { color: red }&lt;/style&gt;</content>
  </entry>
</feed>"""

RSS1 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="http://rdf.example.net/"><title>RDF Site</title><link>http://rdf.example.net/</link></channel>
  <item rdf:about="http://rdf.example.net/1">
    <title>RDF item</title><link>http://rdf.example.net/1</link>
    <description>Desc</description><dc:date>2024-04-01T10:00:00+02:00</dc:date>
  </item>
</rdf:RDF>"""


def test_rss2_item_is_normalised() -> None:
    feed = parse(RSS2)
    assert feed.title == "Example News"
    assert feed.link == "https://news.example.com/"
    assert feed.ttl_s == 1800
    assert feed.bozo is None
    [a] = feed.items
    assert a.url == "https://news.example.com/2024/first"
    assert a.title == "First story"
    assert a.summary == "Short & sweet."
    assert a.text == "The full text.\n\nSecond paragraph."
    assert a.published == datetime(2024, 4, 30, 8, 0, tzinfo=UTC)
    assert a.fetched_at == NOW
    assert a.feed == FEED_URL
    assert a.source == "Example News"
    assert a.id == item_id(url="https://news.example.com/2024/first", guid=None)


def test_atom_entry_is_normalised() -> None:
    [a] = parse(ATOM).items
    assert a.title == "Markets & money"
    assert a.url == "https://atom.example.org/posts/1"
    assert a.summary == "A summary."
    assert a.text == "Body text"
    assert a.published == datetime(2024, 4, 1, 10, 0, tzinfo=UTC)
    assert a.source == "Atom Example"


def test_rss1_item_is_normalised() -> None:
    feed = parse(RSS1)
    [a] = feed.items
    assert (a.title, a.url, a.summary) == ("RDF item", "http://rdf.example.net/1", "Desc")
    assert a.published == datetime(2024, 4, 1, 8, 0, tzinfo=UTC)


def test_article_serialises_as_the_poller_produces_it() -> None:
    [a] = parse(RSS2).items
    dumped = a.model_dump(mode="json")
    assert dumped["published"] == "2024-04-30T08:00:00Z"
    assert {"id", "feed", "source", "url", "title", "summary", "text", "published", "fetched_at"} <= set(
        dumped
    )


def test_empty_but_valid_feed_gives_no_items_not_an_error() -> None:
    feed = parse(rss(""))
    assert feed.items == [] and feed.title == "Example News"


def test_summary_falls_back_to_the_start_of_the_text() -> None:
    long_text = " ".join(["word"] * 400)
    [a] = parse(
        rss(
            f"<item><title>t</title><link>https://x.example/1</link>"
            f'<content:encoded xmlns:content="http://purl.org/rss/1.0/modules/content/">{long_text}'
            "</content:encoded></item>"
        )
    ).items
    assert a.text == long_text
    assert a.summary.endswith("…") and len(a.summary) <= 501


# --- source ----------------------------------------------------------------------------------------------


def test_source_prefers_given_name_then_feed_title_then_host() -> None:
    item = "<item><title>x</title><link>https://news.example.com/a</link></item>"
    assert parse(rss(item), source="The Example").items[0].source == "The Example"
    assert parse(rss(item)).items[0].source == "Example News"
    untitled = rss(item, channel="<link>https://www.site.example/</link>")
    assert parse(untitled).items[0].source == "site.example"
    assert parse(rss(item, channel="")).items[0].source == "news.example.com"


# --- ids -------------------------------------------------------------------------------------------------


def _one(item: str) -> str:
    return parse(rss(item)).items[0].id


def test_id_is_stable_when_guid_missing_empty_or_changed_but_link_stays() -> None:
    link = "<link>https://news.example.com/a?utm_campaign=x</link><title>T</title>"
    ids = {
        _one(f"<item>{link}<guid isPermaLink='false'>guid-1</guid></item>"),
        _one(f"<item>{link}<guid isPermaLink='false'>guid-2-after-cms-migration</guid></item>"),
        _one(f"<item>{link}<guid></guid></item>"),
        _one(f"<item>{link}</item>"),
        _one("<item><link>https://news.example.com/a#top</link><title>T (updated)</title></item>"),
    }
    assert len(ids) == 1


def test_id_falls_back_to_guid_then_content() -> None:
    by_guid = _one("<item><title>T</title><guid isPermaLink='false'>g-1</guid></item>")
    assert by_guid == _one("<item><title>T, edited</title><guid isPermaLink='false'>g-1</guid></item>")
    assert by_guid != _one("<item><title>T</title><guid isPermaLink='false'>g-2</guid></item>")
    by_content = _one("<item><title>Only a title</title><description>and text</description></item>")
    assert by_content == _one("<item><title>Only  a title</title><description>and text</description></item>")
    assert by_content != _one("<item><title>Other title</title><description>and text</description></item>")


def test_non_url_guid_is_not_mistaken_for_a_link() -> None:
    [a] = parse(rss("<item><title>T</title><guid>12345</guid></item>")).items
    assert a.url is None
    assert a.id == item_id(url=None, guid="12345", feed=FEED_URL)


def test_permalink_guid_is_used_as_link() -> None:
    [a] = parse(rss("<item><title>T</title><guid>https://news.example.com/p/1</guid></item>")).items
    assert a.url == "https://news.example.com/p/1"


def test_item_id_is_namespaced_for_guid_and_content_only() -> None:
    assert item_id(url="https://a.example/x", guid="1", feed="f1") == item_id(
        url="https://a.example/x", guid="2"
    )
    assert item_id(url=None, guid="1", feed="f1") != item_id(url=None, guid="1", feed="f2")
    assert len(item_id(url=None, guid=None, title="t")) == 32


# --- links -----------------------------------------------------------------------------------------------


def test_relative_links_resolve_against_the_feed_url() -> None:
    items = parse(rss("<item><title>a</title><link>/2024/rel?fbclid=1</link></item>")).items
    assert items[0].url == "https://news.example.com/2024/rel"
    atom = ATOM.replace("https://atom.example.org/posts/1#comments", "posts/2")
    assert parse(atom).items[0].url == "https://news.example.com/posts/2"


def test_relative_links_resolve_against_the_final_url_after_redirects() -> None:
    feed = parse(
        rss("<item><title>a</title><link>b/c</link></item>"), base_url="https://moved.example/x/feed"
    )
    assert feed.items[0].url == "https://moved.example/x/b/c"
    assert feed.items[0].feed == FEED_URL


def test_non_http_links_are_dropped() -> None:
    [a] = parse(rss("<item><title>a</title><link>javascript:alert(1)</link></item>")).items
    assert a.url is None


# --- dates -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("<pubDate>Tue, 30 Apr 2024 10:00:00 GMT</pubDate>", datetime(2024, 4, 30, 10, tzinfo=UTC)),
        ("<pubDate>Tue, 30 Apr 2024 10:00:00 -0500</pubDate>", datetime(2024, 4, 30, 15, tzinfo=UTC)),
        ("<pubDate>2024-04-30T10:00:00</pubDate>", datetime(2024, 4, 30, 10, tzinfo=UTC)),  # naive = UTC
        ("", NOW),  # missing
        ("<pubDate>not a date</pubDate>", NOW),
        ("<pubDate>Wed, 01 May 2030 10:00:00 GMT</pubDate>", NOW),  # future: clamped
        ("<pubDate>Wed, 01 May 2024 12:10:00 GMT</pubDate>", NOW + timedelta(minutes=10)),  # within tolerance
    ],
)
def test_dates_are_utc_and_never_in_the_future(date: str, expected: datetime) -> None:
    [a] = parse(rss(f"<item><title>t</title><link>https://x.example/1</link>{date}</item>")).items
    assert a.published == expected
    assert a.published.tzinfo is not None
    assert a.published <= NOW + FUTURE_TOLERANCE


def test_naive_fetched_at_is_taken_as_utc() -> None:
    feed = parse_feed(
        rss("<item><title>t</title></item>").encode(), feed_url=FEED_URL, fetched_at=NOW.replace(tzinfo=None)
    )
    assert feed.items[0].published == NOW


def test_summary_html_is_cleaned() -> None:
    desc = "&lt;p&gt;Hi&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;p&gt;there &amp;amp; you&lt;/p&gt;"
    [a] = parse(rss(f"<item><title>t</title><description>{desc}</description></item>")).items
    assert a.summary == "Hi\n\nthere & you"


# --- encodings -------------------------------------------------------------------------------------------


def test_iso_8859_1_feed_gives_accented_titles() -> None:
    doc = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>Notícias</title>'
        "<item><title>Ação e reação à crise</title><link>https://pt.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    feed = parse(doc)
    assert feed.title == "Notícias"
    assert feed.items[0].title == "Ação e reação à crise"


def test_http_charset_is_used_when_the_document_does_not_declare_one() -> None:
    doc = "<rss version='2.0'><channel><title>Zürich</title><item><title>Größe</title></item></channel></rss>"
    feed = parse(doc.encode("latin-1"), content_type="application/rss+xml; charset=ISO-8859-1")
    assert feed.items[0].title == "Größe"


def test_windows_1252_declared_as_iso_8859_1_keeps_curly_quotes() -> None:
    doc = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>x</title>'
        "<item><title>“Quoted” – naïve €5</title></item></channel></rss>"
    ).encode("cp1252")
    assert parse(doc).items[0].title == "“Quoted” – naïve €5"


def test_windows_1252_declared_as_utf8_is_recovered() -> None:
    doc = rss("<item><title>“Café” déjà vu</title></item>").encode("cp1252")
    feed = parse(doc)
    assert feed.items[0].title == "“Café” déjà vu"
    assert feed.bozo is not None


def test_utf16_with_bom_is_decoded() -> None:
    doc = rss("<item><title>Ünïcödé</title></item>").replace('encoding="utf-8"', 'encoding="utf-16"')
    assert parse(doc.encode("utf-16")).items[0].title == "Ünïcödé"


def test_cyrillic_without_declaration_is_detected() -> None:
    title = "Как пережить новогоднюю ночь без потерь"
    doc = f"<rss version='2.0'><channel><title>x</title><item><title>{title}</title></item></channel></rss>"
    assert parse(doc.encode("koi8-r")).items[0].title == title


# --- robustness ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        b"\x00\x01\x02garbage\xff\xfe",
        b"<html><body>Not a feed</body></html>",
        b"{}",
        b"<rss",
        b"<rss version='2.0'><channel><item></item>",  # broken, and its only item is empty: not a quiet feed
    ],
)
def test_unusable_input_raises_one_line_feed_error(content: bytes) -> None:
    with pytest.raises(FeedError) as info:
        parse(content)
    assert "\n" not in str(info.value)


def test_items_without_title_link_or_text_are_dropped_and_counted() -> None:
    feed = parse(
        rss("<item></item><item><guid isPermaLink='false'>x</guid></item><item><title>kept</title></item>")
    )
    assert [a.title for a in feed.items] == ["kept"]
    assert feed.dropped == 2
    assert any("dropped 2" in w for w in feed.warnings)


def test_ill_formed_feed_is_recovered_with_a_bozo_warning() -> None:
    doc = rss("<item><title>Fish &amp; chips & peas</title><link>https://x.example/a?b=1&c=2</link></item>")
    feed = parse(doc)
    assert feed.items[0].title == "Fish & chips & peas"
    assert feed.bozo and "\n" not in feed.bozo
