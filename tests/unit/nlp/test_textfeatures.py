"""Text features of the story engine that are not covered through it (test_dedup.py)."""

from __future__ import annotations


def test_copy_key_url_matches_one_page_across_scheme_host_variant_slash_and_tracking() -> None:
    from pipeline.nlp.textfeatures import copy_key_url

    spellings = [
        "https://www.example.com/news/putin-visit/?utm_source=rss#top",
        "http://example.com/news/putin-visit",
        "https://m.EXAMPLE.com:443/news/putin-visit/",
    ]
    assert {copy_key_url(u) for u in spellings} == {"example.com/news/putin-visit"}
    assert copy_key_url("https://example.com/news/putin-visit?page=2") != copy_key_url(spellings[1])
    assert copy_key_url("mailto:desk@example.com") is None and copy_key_url("  ") is None and copy_key_url(None) is None
