"""Subscriptions without services: validation, the compiled percolator query, the percolated document."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.alerts.store import compile_query, story_document
from pipeline.models import Entity
from tests.unit.alerts.samples import enriched, sub


def test_subscription_validation_and_query_compilation() -> None:
    with pytest.raises(ValidationError):
        sub(channels=[])
    with pytest.raises(ValidationError):
        sub(channels=[{"type": "email", "to": "not-an-address"}])
    q = compile_query(sub(entities={"person": ["Vladimir Putin"]}, sources=["Harbor Times"], languages=["en"]))
    assert q["bool"]["must"][0]["query_string"]["query"] == "North AND Korea"  # rendered from the checked parse
    assert {"term": {"entities.person": "Vladimir Putin"}} in q["bool"]["filter"]
    assert compile_query(sub(query=""))["bool"]["must"] == [{"match_all": {}}]


def test_percolated_document_carries_story_sources_and_entities() -> None:
    e = enriched("a2", ["Harbor Times", "Meridian Post"])
    assert e.story is not None
    e.story.entities = [Entity(name="Kim Jong Un", type="person")]
    doc = story_document(e)
    assert doc["source"] == ["Harbor Times", "Meridian Post"]
    assert doc["entities"]["person"] == ["Kim Jong Un"]
