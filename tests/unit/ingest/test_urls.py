"""canonical_url and check_feed_url. No network: only literal IPs and `localhost` are resolved."""

from __future__ import annotations

import pytest

from pipeline.errors import FeedError
from pipeline.ingest.safety import check_feed_url, refusal_reason
from pipeline.urls import canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/", "https://example.com/a/"),
        ("https://example.com/%7euser/%2f", "https://example.com/~user/%2F"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://user:secret@example.com/a", "https://example.com/a"),
        ("https://example.com./a", "https://example.com/a"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("  https://example.com/a  ", "https://example.com/a"),
    ],
)
def test_canonical_url_normalises_spelling(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_drops_tracking_params_and_sorts_query() -> None:
    url = (
        "https://example.com/story?utm_source=rss&b=2&utm_medium=feed&a=1&fbclid=X&gclid=Y"
        "&mc_cid=1&mc_eid=2&UTM_Campaign=z&msclkid=m"
    )
    assert canonical_url(url) == "https://example.com/story?a=1&b=2"


def test_canonical_url_keeps_meaningful_params_and_their_spelling() -> None:
    assert canonical_url("https://example.com/?q=a+b&id=7&page=2") == "https://example.com/?id=7&page=2&q=a+b"
    # an escaped "&" inside a value must stay escaped, or the query would split differently
    assert canonical_url("https://example.com/?q=a%26b") == "https://example.com/?q=a%26b"


def test_canonical_url_only_tracking_query_leaves_no_question_mark() -> None:
    assert canonical_url("https://example.com/a?utm_source=x") == "https://example.com/a"


def test_canonical_url_same_article_many_spellings() -> None:
    spellings = [
        "https://www.example.com/news/1?utm_source=twitter",
        "HTTPS://WWW.EXAMPLE.COM:443/news/1#top",
        "https://www.example.com/news/./1?fbclid=abc",
    ]
    assert len({canonical_url(u) for u in spellings}) == 1


def test_canonical_url_leaves_other_schemes_alone() -> None:
    assert canonical_url("mailto:someone@example.com") == "mailto:someone@example.com"
    assert canonical_url("urn:uuid:1234") == "urn:uuid:1234"
    assert canonical_url("not a url") == "not a url"
    assert canonical_url("http://[::1") == "http://[::1"  # unparseable: returned, not raised


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/feed",
        "http://localhost:8080/feed",
        "http://10.1.2.3/feed",
        "http://192.168.0.10/feed",
        "http://172.16.5.4/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/feed",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:10.0.0.1]/feed",
        "http://0.0.0.0/feed",
        "http://100.64.0.1/feed",
        "http://224.0.0.1/feed",
        "http://2130706433/feed",  # 127.0.0.1 as a decimal number
    ],
)
def test_check_feed_url_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(FeedError, match="refusing feed URL"):
        check_feed_url(url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/feed", "gopher://example.com/", "javascript:alert(1)"]
)
def test_check_feed_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(FeedError, match="only http and https"):
        check_feed_url(url)


def test_check_feed_url_refuses_missing_host() -> None:
    with pytest.raises(FeedError, match="no host"):
        check_feed_url("http:///feed")


def test_check_feed_url_accepts_public_literal_address() -> None:
    check_feed_url("https://93.184.216.34/feed.xml")
    check_feed_url("https://[2606:4700:4700::1111]/feed.xml")


def test_check_feed_url_allow_list_skips_the_address_check() -> None:
    check_feed_url("http://localhost:8080/feed", allow_hosts=["localhost"])
    check_feed_url("http://127.0.0.1:8080/feed", allow_hosts=["127.0.0.1"])
    check_feed_url("http://LOCALHOST./feed", allow_hosts=["localhost"])
    with pytest.raises(FeedError):
        check_feed_url("http://10.0.0.1/feed", allow_hosts=["localhost"])
    with pytest.raises(FeedError, match="only http"):
        check_feed_url("file:///etc/passwd", allow_hosts=["localhost", ""])


def test_refusal_reason_names_the_metadata_service() -> None:
    assert refusal_reason("169.254.169.254") == "a cloud metadata address"
    assert refusal_reason("fd00:ec2::254") == "a cloud metadata address"
    assert refusal_reason("8.8.8.8") is None
    assert refusal_reason("2002:7f00:1::1") == "a loopback address"  # 6to4 wrapping 127.0.0.1
