"""The query checker (`pipeline/search/query_text.py`): the safe subset, the limits, the rendered query string,
and error lines that never echo the whole input. No search engine: what is refused here is never sent."""

from __future__ import annotations

import pytest

from pipeline.alerts.store import check_subscription, compile_query
from pipeline.errors import QueryError
from pipeline.search.queries import build_query
from pipeline.search.query_text import SHOWN_CHARS, check_query, check_values, query_string_clause, shown
from pipeline.settings import QueryLimits
from tests.unit.alerts.samples import sub

LIMITS = QueryLimits()


def rendered(text: str) -> str:
    return check_query(text, LIMITS).query_string()


@pytest.mark.parametrize(
    ("text", "query_string"),
    [
        ("North Korea", "North AND Korea"),
        ('"North Korea" OR Pyongyang', '"North Korea" OR Pyongyang'),
        ("Kim -Putin", "Kim AND (NOT Putin)"),
        ("Kim NOT Putin", "Kim AND (NOT Putin)"),
        ("Kim !Putin", "Kim AND (NOT Putin)"),
        ("+Kim +Putin", "Kim AND Putin"),
        ("a OR NOT b", "a OR (NOT b)"),  # `a OR NOT b` in Lucene syntax would mean "a but not b"
        ("NOT NOT NOT a", "(NOT a)"),  # a chain of NOTs adds no depth
        ("a && b || c", "(a AND b) OR c"),  # OR binds loosest
        ("a b OR c d", "(a AND b) OR (c AND d)"),
        ("-(a b)", "(NOT (a AND b))"),
        ('title:(Kim OR Putin) summary:"nuclear test"', '(title:Kim OR title:Putin) AND summary:"nuclear test"'),
        ("text:korea*", "text:korea*"),
        ("kor*", "kor*"),
        ("Jong-un 24/7 AT&T Yahoo! 10:30 <x>", r"Jong\-un AND 24\/7 AND AT\&T AND Yahoo\! AND 10\:30 AND \<x\>"),
        ('"a \\"quoted\\" word"', r'"a \"quoted\" word"'),
        ('"what? ~fuzzy* /re/ [a TO b] owner:bob"', '"what? ~fuzzy* /re/ [a TO b] owner:bob"'),  # inside quotes: text
        ("Kim - Putin +", "Kim AND Putin"),  # a lone dash or plus is punctuation
        ("((((a))))", "a"),
        ("title:AND text:&& summary:OR", r"title:\AND AND text:\&\& AND summary:\OR"),  # words, not operators
    ],
)
def test_the_safe_subset_is_rendered_with_every_reserved_character_escaped(text: str, query_string: str) -> None:
    assert rendered(text) == query_string


def test_blank_text_is_no_query() -> None:
    assert not check_query("", LIMITS) and not check_query("   ", LIMITS)
    assert check_query("", LIMITS).query_string() == ""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/(a+)+(b+)+(c+)+(d+)+$/", "regular expressions (/.../) are not supported (at character 1)"),
        ("*a*b*c*", "a wildcard (*) is only allowed at the end of a word, e.g. korea* (at character 1)"),
        ("k*rea", "a wildcard (*) is only allowed at the end of a word"),
        ("*", "a wildcard needs at least 3 letters or digits before the *"),
        ("ko*", "a wildcard needs at least 3 letters or digits before the *"),
        ("--*", "a wildcard needs at least 3 letters or digits before the *"),
        ("te?t", "the ? wildcard is not supported"),
        ("korea~", "fuzzy and proximity searches (~) are not supported (at character 6)"),
        ("korea~2", "fuzzy and proximity searches (~) are not supported"),
        ('"north korea"~5', "fuzzy and proximity searches (~) are not supported"),
        ("korea^10", "boosts (^) are not supported"),
        ("[a TO z]", "ranges ([...], {...}) are not supported"),
        ("{a TO z}", "ranges ([...], {...}) are not supported"),
        (r"a\:b", "backslash escapes are not supported"),
        ("_id:*", "unknown field '_id' (fields: title, summary, text) (at character 1)"),
        ("owner:bob", "unknown field 'owner'"),
        ("_exists_:title", "unknown field '_exists_'"),
        ("spec.owner:bob", "unknown field 'spec.owner'"),
        ("title:text:korea", "a field inside a field"),
        ("title:(text:korea)", "a field inside a field"),
        ("title: korea", "nothing after title:"),
        ('title:("open', "unclosed quote (at character 8)"),
        ("(a", "unclosed ( (at character 1)"),
        ("a)", "unmatched ) (at character 2)"),
        ("()", "empty parentheses"),
        ('""', 'empty quotes ""'),
        ("AND a", "AND with nothing before it"),
        ("a OR", "the query ends with an operator"),
        ("a NOT", "the query ends with an operator"),
        ("a\x00b", "control characters are not allowed"),
        ("(" * 6 + "a" + ")" * 6, "parentheses nested deeper than 5 (at character 6)"),
    ],
)
def test_everything_else_is_refused_with_the_reason_and_where(text: str, reason: str) -> None:
    with pytest.raises(QueryError) as err:
        check_query(text, LIMITS, "subscription query")
    message = str(err.value)
    assert message.startswith("invalid subscription query ") and reason in message and "\n" not in message


def test_limits_on_length_words_depth_and_wildcards() -> None:
    limits = QueryLimits(max_chars=100, max_terms=5, max_depth=2, max_prefixes=1, min_prefix_chars=4)
    assert check_query("a b c d e", limits).terms == 5
    assert check_query('"a b c" d', limits).terms == 4  # each word of a phrase counts
    for text, reason in [
        ("x" * 101, "longer than 100 characters"),
        ("a b c d e f", "more than 5 words"),
        ('"a b c d e f"', "more than 5 words"),
        ("((((a))))", "parentheses nested deeper than 2"),
        ("kore* nort*", "too many wildcard terms (at most 1)"),
        ("kor*", "a wildcard needs at least 4 letters or digits"),
    ]:
        with pytest.raises(QueryError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            check_query(text, limits)
    assert check_query("((a))", limits).depth == 2
    with pytest.raises(QueryError, match=r"too many wildcard terms \(none allowed\)"):
        check_query("korea*", QueryLimits(max_prefixes=0))


def test_the_hostile_inputs_of_the_issue_are_refused_quickly_and_never_echoed_in_full() -> None:
    """5,000 nested parentheses (10 KB: StackOverflowError in an engine thread before), a 2,000-term query
    (16 KB, echoed whole in the error before), a 50 MB query (OutOfMemoryError in the engine before)."""
    nested = "(" * 5000 + "a" + ")" * 5000
    terms = " ".join(f"term{i:04d}" for i in range(2000))
    huge = "a " * 1_000_000
    for text in (nested, terms, huge, "(" * 900 + "a" + ")" * 90):
        with pytest.raises(QueryError) as err:
            check_query(text, LIMITS, "search query")
        message = str(err.value)
        assert len(message) < SHOWN_CHARS + 200 and "\n" not in message, message
        assert f"({len(text):,} characters)" in message  # how long it was, not what it was
    wide = QueryLimits(max_chars=10**6)
    with pytest.raises(QueryError, match="parentheses nested deeper than 5"):
        check_query(nested, wide)
    with pytest.raises(QueryError, match="more than 50 words"):
        check_query(terms, wide)


def test_shown_cuts_and_keeps_one_line() -> None:
    assert shown("North Korea") == "'North Korea'"
    assert shown("a\nb") == "'a b'"
    long = "x" * 500
    assert shown(long) == f"{'x' * SHOWN_CHARS!r}... (500 characters)"


def test_filter_values_and_names_are_bounded() -> None:
    check_values(["Harbor Times"], LIMITS, "sources")
    with pytest.raises(QueryError, match=r"^too many sources \(51; at most 50\)$"):
        check_values([f"s{i}" for i in range(51)], LIMITS, "sources")
    with pytest.raises(QueryError, match=r"is longer than 200 characters$") as err:
        check_values(["y" * 10_000], LIMITS, "entity names")
    assert len(str(err.value)) < 120


def test_subscriptions_and_search_go_through_the_same_checker() -> None:
    with pytest.raises(QueryError, match=r"^invalid subscription query '_id:\*': unknown field '_id'"):
        compile_query(sub(query="_id:*"))
    with pytest.raises(QueryError, match=r"^subscription name 'nnnn"):
        check_subscription(sub(name="n" * 300), LIMITS)
    with pytest.raises(QueryError, match=r"^too many sources"):
        check_subscription(sub(sources=[f"s{i}" for i in range(60)]), LIMITS)
    with pytest.raises(QueryError, match=r"^invalid search query '\*a\*b\*c\*'"):
        build_query("*a*b*c*")
    query = compile_query(sub(query='title:korea* OR "North Korea"'))
    assert query["bool"]["must"] == [
        query_string_clause(check_query('title:korea* OR "North Korea"', LIMITS), ("title", "summary", "text"))
    ]
    assert query["bool"]["must"][0]["query_string"]["query"] == 'title:korea* OR "North Korea"'
