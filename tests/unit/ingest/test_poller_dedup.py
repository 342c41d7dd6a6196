"""Poller.unseen_items: the poller's de-duplication of feed items against the seen-store (no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.ingest.poller import Poller
from pipeline.ingest.seen import SeenStore
from pipeline.models import Article

FEED = "https://alpha.example/rss"


def _item(article_id: str, title: str = "") -> Article:
    return Article(
        id=article_id, feed=FEED, source="Alpha", title=title or article_id, published=datetime(2024, 3, 1, tzinfo=UTC)
    )


@pytest.fixture
def poller(store: SeenStore) -> Poller:
    p = Poller.__new__(Poller)  # skip __init__: it builds a Kafka producer
    p.seen = store
    return p


def test_unseen_items_filters_already_produced(poller: Poller, store: SeenStore) -> None:
    store.mark(["b"])
    fresh = poller.unseen_items([_item("a"), _item("b"), _item("c")])
    assert [a.id for a in fresh] == ["a", "c"]
    assert poller.unseen_items([]) == []


def test_unseen_items_first_occurrence_wins(poller: Poller) -> None:
    fresh = poller.unseen_items([_item("a", "first"), _item("a", "second")])
    assert [(a.id, a.title) for a in fresh] == [("a", "first")]


def test_unseen_items_keeps_feed_order_with_repeated_ids(poller: Poller) -> None:
    fresh = poller.unseen_items([_item("a", "first"), _item("b"), _item("a", "second")])
    assert [(a.id, a.title) for a in fresh] == [("a", "first"), ("b", "b")]
