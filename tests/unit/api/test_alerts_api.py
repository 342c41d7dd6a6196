"""The subscriptions API without a search engine: keys, request validation, error answers, the OpenAPI document.

The search URL points at a port nobody listens on, so anything that reaches the store answers 503: a 401 or 422
here proves the request was refused before any storage was touched.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from pipeline.api.alerts import API_KEY_HEADER, KeyRing, create_app, hash_key, new_key
from pipeline.settings import ApiKey, ApiSettings, SearchSettings, Settings

ANN_KEY = "ann-secret-key"
VALID = {"name": "nk", "query": "North Korea", "channels": [{"type": "webhook", "url": "http://127.0.0.1:1/hook"}]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(
        search=SearchSettings(url=f"http://127.0.0.1:{closed_port()}"),
        api=ApiSettings(keys=[ApiKey(owner="ann", sha256=hash_key(ANN_KEY))]),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_keys_are_kept_as_hashes_and_map_to_their_owner() -> None:
    key = new_key()
    assert len(key) >= 40 and new_key() != key
    ring = KeyRing([ApiKey(owner="ann", sha256=hash_key(key)), ApiKey(owner="bob", sha256=hash_key("b"))])
    assert ring.owner(key) == "ann" and ring.owner("b") == "bob"
    assert ring.owner(hash_key(key)) is None  # the configured hash is not itself a key
    assert ring.owner("") is None and ring.owner(None) is None and ring.owner(key + "x") is None


def test_a_configured_key_must_be_a_sha256() -> None:
    with pytest.raises(ValidationError):
        ApiKey(owner="ann", sha256="plain-text-key")


@pytest.mark.parametrize("headers", [{}, {API_KEY_HEADER: "wrong"}, {API_KEY_HEADER: hash_key(ANN_KEY)}])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/subscriptions"),
        ("POST", "/subscriptions"),
        ("GET", "/subscriptions/x"),
        ("PUT", "/subscriptions/x"),
        ("DELETE", "/subscriptions/x"),
        ("GET", "/subscriptions/x/test"),
    ],
)
def test_every_route_needs_a_valid_key(client: TestClient, headers: dict[str, str], method: str, path: str) -> None:
    response = client.request(method, path, headers=headers, json=VALID)
    assert response.status_code == 401, response.text
    assert API_KEY_HEADER in response.json()["detail"]
    assert response.headers["www-authenticate"] == API_KEY_HEADER


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**VALID, "channels": []}, "channels"),
        ({**VALID, "channels": [{"type": "webhook", "url": "ftp://x"}]}, "url"),
        ({**VALID, "channels": [{"type": "email", "to": "nobody"}]}, "to"),
        ({**VALID, "owner": "bob"}, "owner"),  # the owner comes from the key, never from the body
        ({**VALID, "frequency": "weekly"}, "frequency"),
        ({k: v for k, v in VALID.items() if k != "name"}, "name"),
    ],
)
def test_a_malformed_subscription_is_a_422_naming_the_field(client: TestClient, body: dict, where: str) -> None:
    response = client.post("/subscriptions", headers={API_KEY_HEADER: ANN_KEY}, json=body)
    assert response.status_code == 422, response.text
    assert any(where in [str(p) for p in e["loc"]] for e in response.json()["detail"]), response.json()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9200/newsflow-articles/_doc", "a loopback address"),  # the search engine itself
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[::ffff:10.0.0.1]/hook", "a private address"),
    ],
)
def test_a_webhook_aimed_inside_is_a_422_and_nothing_is_stored(client: TestClient, url: str, why: str) -> None:
    """Refused before the store is touched: the search engine is unreachable here, and the answer is still a 422
    (the store would have given a 503)."""
    body = {**VALID, "channels": [{"type": "webhook", "url": url}]}
    response = client.post("/subscriptions", headers={API_KEY_HEADER: ANN_KEY}, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"refusing webhook URL {url!r}") and why in detail and "\n" not in detail
    replaced = client.put("/subscriptions/x", headers={API_KEY_HEADER: ANN_KEY}, json=body)
    assert replaced.status_code == 422, replaced.text


def test_a_malformed_since_is_a_422_with_the_same_reason_as_the_cli(client: TestClient) -> None:
    response = client.get("/subscriptions/x/test?since=yesterday", headers={API_KEY_HEADER: ANN_KEY})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("bad since 'yesterday': use a positive number and a unit")


def test_search_engine_down_is_one_line_503(client: TestClient) -> None:
    response = client.get("/subscriptions", headers={API_KEY_HEADER: ANN_KEY})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "search engine not reachable" in detail and "\n" not in detail


def test_openapi_is_published_with_the_key_scheme(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/subscriptions", "/subscriptions/{sub_id}", "/subscriptions/{sub_id}/test"}
    assert set(doc["paths"]["/subscriptions/{sub_id}"]) == {"get", "put", "delete"}
    assert doc["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "an API key from `api.keys`",
    }
    assert "owner" not in doc["components"]["schemas"]["SubscriptionSpec"]["properties"]
    assert client.get("/docs").status_code == 200


def test_since_reads_like_the_cli_before_any_lookup(client: TestClient) -> None:
    """`07d` is accepted by the CLI, so by the API too; the subscription lookup (here: unknown id) comes after."""
    response = client.get("/subscriptions/x/test?since=07d", headers={API_KEY_HEADER: ANN_KEY})
    assert response.status_code == 503, response.text  # reached the store (unreachable in unit tests)
