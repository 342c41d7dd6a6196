"""The subscriptions REST API as `newsflow api` serves it (uvicorn, its own process) on the real OpenSearch:
keys scope every route to one owner, a bad query stores nothing, an update reaches the percolator, `test`
finds recent stories in the articles index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pipeline.alerts.store import SubscriptionStore
from pipeline.api.alerts import API_KEY_HEADER
from pipeline.models import EnrichedArticle, Story
from pipeline.search import SearchBackend
from tests.conftest import Isolated
from tests.integration.helpers import api_process, articles_in_engine, newsflow

pytestmark = pytest.mark.integration

KEYS = {"ann": "ann-key-0123456789", "bob": "bob-key-0123456789"}
NOW = datetime.now(UTC)


def article(art_id: str, story_id: str, title: str, age: timedelta, duplicate_of: str | None = None) -> EnrichedArticle:
    published = NOW - age
    story = Story(story_id=story_id, title=title, first_seen=published, last_seen=published)
    return EnrichedArticle(
        id=art_id,
        feed="http://test/feed.xml",
        source="Harbor Times",
        title=title,
        summary=f"{title}, officials said.",
        published=published,
        story_id=story_id,
        story=story,
        duplicate_of=duplicate_of,
    )


ARTICLES = [
    article("v1", "s-volcano", "Volcano erupts near the capital", timedelta(hours=2)),
    article("v2", "s-volcano", "Volcano erupts near the capital", timedelta(hours=1), duplicate_of="v1"),
    article("k1", "s-korea", "North Korea fires a missile", timedelta(hours=3)),
    article("o1", "s-old", "Old volcano report from last month", timedelta(days=30)),
]


@pytest.fixture
def engine(isolated: Isolated) -> Iterator[SearchBackend]:
    """The test's own articles indices (with the stories above) and subscriptions index, removed afterwards."""
    with articles_in_engine(isolated.settings, ARTICLES) as backend:
        yield backend
        backend.client.indices.delete(index=isolated.settings.alerts.subscriptions_index, ignore=[404])


@pytest.fixture
def api(isolated: Isolated, engine: SearchBackend, tmp_path: Path) -> Iterator[str]:
    """`newsflow api` in its own process, configured from the environment; yields its base URL."""
    with api_process(isolated.env, KEYS, tmp_path / "api.log") as (base, _):
        yield base


def as_(owner: str) -> dict[str, str]:
    return {API_KEY_HEADER: KEYS[owner]}


def test_owners_see_and_change_only_their_own_subscriptions(
    isolated: Isolated, api: str, engine: SearchBackend
) -> None:
    alerts = isolated.settings.alerts
    store = SubscriptionStore(engine, alerts)
    hook = [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}]
    with httpx.Client(base_url=api, timeout=30) as http:
        created = http.post(
            "/subscriptions", headers=as_("ann"), json={"name": "nk", "query": "Korea", "channels": hook}
        )
        assert created.status_code == 201, created.text
        sub = created.json()
        assert sub["owner"] == "ann" and sub["query"] == "Korea"

        bad = http.post(
            "/subscriptions", headers=as_("ann"), json={"name": "x", "query": 'title:("open', "channels": hook}
        )
        assert bad.status_code == 422 and "open" in bad.json()["detail"] and "\n" not in bad.json()["detail"]
        engine.client.indices.refresh(index=alerts.subscriptions_index)
        assert engine.client.count(index=alerts.subscriptions_index)["count"] == 1  # nothing else stored

        assert http.get("/subscriptions", headers=as_("ann")).json() == [sub]
        assert http.get(f"/subscriptions/{sub['id']}", headers=as_("ann")).json() == sub
        assert http.get("/subscriptions", headers={API_KEY_HEADER: "nope"}).status_code == 401

        # Another owner: the same id is "not found" for every route, and nothing of ann's changes.
        assert http.get("/subscriptions", headers=as_("bob")).json() == []
        for method in ("GET", "PUT", "DELETE"):
            body = {"name": "mine", "query": "anything", "channels": hook} if method == "PUT" else None
            answer = http.request(method, f"/subscriptions/{sub['id']}", headers=as_("bob"), json=body)
            assert answer.status_code == 404, (method, answer.text)
        assert http.get(f"/subscriptions/{sub['id']}/test", headers=as_("bob")).status_code == 404
        assert http.get(f"/subscriptions/{sub['id']}", headers=as_("ann")).json() == sub

        # An update replaces the spec and the percolator query; id, owner and creation time stay.
        updated = http.put(
            f"/subscriptions/{sub['id']}",
            headers=as_("ann"),
            json={"name": "volcanoes", "query": "volcano", "channels": hook},
        )
        assert updated.status_code == 200, updated.text
        assert {k: updated.json()[k] for k in ("id", "owner", "created_at")} == {
            k: sub[k] for k in ("id", "owner", "created_at")
        }
        assert [s.id for s in store.match({"title": "A volcano erupts"})] == [sub["id"]]
        assert store.match({"title": "North Korea fires a missile"}) == []
        rejected = http.put(
            f"/subscriptions/{sub['id']}", headers=as_("ann"), json={"name": "v", "query": "a:(", "channels": hook}
        )
        assert rejected.status_code == 422
        assert http.get(f"/subscriptions/{sub['id']}", headers=as_("ann")).json()["query"] == "volcano"

        # `test`: recent original reports only (not the month-old one, one entry for the story).
        tested = http.get(f"/subscriptions/{sub['id']}/test", headers=as_("ann"), params={"since": "7d"})
        assert tested.status_code == 200 and tested.json() == [
            {"story_id": "s-volcano", "title": "Volcano erupts near the capital"}
        ]
        longer = http.get(f"/subscriptions/{sub['id']}/test", headers=as_("ann"), params={"since": "60d"}).json()
        assert [m["story_id"] for m in longer] == ["s-volcano", "s-old"]

        assert http.delete(f"/subscriptions/{sub['id']}", headers=as_("ann")).status_code == 204
        assert http.get(f"/subscriptions/{sub['id']}", headers=as_("ann")).status_code == 404
        assert http.get("/subscriptions", headers=as_("ann")).json() == []


def test_cli_add_list_show_test_rm(engine: SearchBackend) -> None:
    hook = ["--webhook", "http://127.0.0.1:1/hook"]
    added = newsflow("subscriptions", "--owner", "ann", "add", "volcanoes", "volcano", *hook)
    assert added.returncode == 0, added.stderr
    sub_id = added.stdout.strip()

    bad = newsflow("subscriptions", "--owner", "ann", "add", "bad", 'title:("x', *hook)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("newsflow: error: invalid subscription query") and bad.stderr.count("\n") == 1
    assert "unclosed quote (at character 8)" in bad.stderr  # the checker's reason: the engine is never asked

    listed = newsflow("subscriptions", "--owner", "ann", "list", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [sub_id]
    shown = newsflow("subscriptions", "--owner", "ann", "show", sub_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["query"] == "volcano"
    tested = newsflow("subscriptions", "--owner", "ann", "test", sub_id, "--since", "7d")
    assert tested.stdout.splitlines() == ["s-volcano  Volcano erupts near the capital"], tested.stderr

    for action in ("show", "test", "rm"):  # another owner's id is "no subscription", and stays
        other = newsflow("subscriptions", "--owner", "bob", action, sub_id)
        assert other.returncode == 1 and other.stderr == f"newsflow: error: no subscription {sub_id} of owner bob\n"
    assert newsflow("subscriptions", "--owner", "ann", "rm", sub_id).returncode == 0
    assert newsflow("subscriptions", "--owner", "ann", "list").stdout == ""
