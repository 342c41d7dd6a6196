"""The XML entity screen, through parse_feed: XXE and entity-expansion documents are refused, harmless
plain-text entities and DOCTYPEs still parse."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.errors import FeedError
from tests.unit.ingest.samples import parse, rss

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + ']>\n<rss version="2.0"><channel><title>t</title><item><title>&lol9;</title></item></channel></rss>'
)


@pytest.mark.parametrize("layout", ["lines", "one-line"])
def test_billion_laughs_is_refused_quickly(layout: str) -> None:
    doc = BILLION_LAUGHS if layout == "lines" else BILLION_LAUGHS.replace("\n", "")
    start = time.perf_counter()
    with pytest.raises(FeedError, match="entit"):
        parse(doc)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>',
        '<!DOCTYPE rss [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
        '<!DOCTYPE rss [<!ENTITY xxe PUBLIC "-//x" "http://169.254.169.254/latest/meta-data/">]>',
    ],
)
def test_external_entities_are_refused(doctype: str) -> None:
    body = '<rss version="2.0"><channel><title>t</title><item><title>a &xxe; b</title></item></channel></rss>'
    doc = f'<?xml version="1.0"?>{doctype}{body}'
    with pytest.raises(FeedError, match="entit"):
        parse(doc)


def test_external_entity_hidden_in_utf16_is_refused() -> None:
    doc = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    doc += '<rss version="2.0"><channel><item><title>&xxe;</title></item></channel></rss>'
    with pytest.raises(FeedError, match="entit"):
        parse(doc.encode("utf-16"))


def test_entity_declaration_behind_a_long_comment_is_refused() -> None:
    doc = (
        '<?xml version="1.0"?><!-- '
        + "x" * 200_000
        + ' --><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    )
    doc += '<rss version="2.0"><channel><item><title>&xxe;</title></item></channel></rss>'
    with pytest.raises(FeedError, match="entit"):
        parse(doc)


def test_entity_declaration_quoted_in_an_article_is_not_refused() -> None:
    quoted = "<![CDATA[Never accept <!ENTITY xxe SYSTEM 'file:///etc/passwd'> from a stranger]]>"
    [a] = parse(rss(f"<item><title>XXE explained</title><description>{quoted}</description></item>")).items
    assert a.title == "XXE explained"
    assert a.summary.startswith("Never accept") and a.summary.endswith("from a stranger")


def test_plain_text_entities_still_work_and_nothing_is_read_from_disk() -> None:
    doc = (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY copy "&#169;"><!ENTITY org "Example Org">]>'
        '<rss version="2.0"><channel><title>&org;</title>'
        "<item><title>&copy; 2024 &org;</title></item></channel></rss>"
    )
    feed = parse(doc)
    assert feed.items[0].title == "© 2024 Example Org"
    assert "root:" not in json.dumps([a.model_dump(mode="json") for a in feed.items])


def test_doctype_without_entities_is_accepted() -> None:
    doc = rss("<item><title>t</title></item>").replace(
        "<rss",
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://x/rss-0.91.dtd">\n<rss',
    )
    assert parse(doc).items[0].title == "t"
