"""`newsflow search` output as a reader counts it: the counts agree with the list, times are marked UTC, long
outlet lists are cut."""

from __future__ import annotations

from pipeline.cli.report import cut, format_story
from pipeline.search.queries import StoryHit


def hit(article_count: int, duplicates: int, articles: list[dict[str, str]], sources: list[str]) -> StoryHit:
    story = {
        "story_id": "s-1",
        "title": "Putin to visit North Korea",
        "article_count": article_count,
        "duplicate_count": duplicates,
        "sources": sources,
        "first_seen": "2026-11-20T09:30:00+01:00",
    }
    h = StoryHit(story)
    h.articles.extend(articles)
    return h


def test_the_counts_add_up_to_what_is_listed() -> None:
    """Three originals from three outlets and one wire copy: four reports, all four listed."""
    arts = [{"id": f"a{i}", "source": o, "title": "t"} for i, o in enumerate(("Meridian", "Harbor", "Wire"))]
    arts.append({"id": "a3", "source": "Wire2", "title": "t", "duplicate_of": "a0"})
    text = format_story(1, hit(3, 1, arts, ["Meridian", "Harbor", "Wire"]))
    assert "4 reports from 3 outlets, 1 of them a copy of another report" in text
    assert sum(line.startswith("   - ") for line in text.splitlines()) == 4
    assert "first seen 2026-11-20 08:30 UTC" in text and "more in this story" not in text
    assert "- Wire2: t  [copy of the Meridian report]" in text


def test_reports_not_matching_the_query_are_counted_not_hidden() -> None:
    text = format_story(2, hit(8, 0, [{"source": "A", "title": "t"}], ["A", "B", "C", "D", "E", "F", "G"]))
    assert "8 reports from 7 outlets" in text and "(+7 more in this story that do not match the query)" in text
    assert "outlets: A, B, C, D, E +2 more" in text
    assert cut(["a"], 5) == "a" and "1 report from 1 outlet ·" in format_story(1, hit(1, 0, [], ["A"]))
