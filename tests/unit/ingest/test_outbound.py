"""The outbound-request policy on loopback only: a resolver stub answers for made-up host names, so no test
sends a packet to a private or public address. What is checked is what is connected to, on every hop."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pipeline.errors import FeedError
from pipeline.ingest import safety
from pipeline.ingest.fetch import fetch_feed
from pipeline.ingest.safety import OutboundPolicy, OutboundRefused
from pipeline.settings import Settings
from tests.unit.loopback import Resolver, Server


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    r = Resolver({})
    monkeypatch.setattr(safety, "getaddrinfo", r)
    return r


def test_the_connection_goes_to_the_checked_address_and_keeps_the_host_name(server: Server, resolver: Resolver) -> None:
    """`feeds.test` exists only in the stub: reaching the server proves the transport connected to the address
    the policy resolved (and checked), not to a second lookup of its own."""
    resolver.answers["feeds.test"] = ["127.0.0.1"]
    settings = Settings(poller={"allow_private_hosts": ["feeds.test"]})
    fetch_feed(f"http://feeds.test:{server.port}/rss", settings)
    assert server.hits == [("/rss", f"feeds.test:{server.port}")]
    assert resolver.calls == ["feeds.test"]  # resolved once, by the policy


def test_loopback_is_refused_unless_allow_listed(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}/rss"
    with pytest.raises(FeedError, match=r"127\.0\.0\.1, a loopback address .*poller.allow_private_hosts"):
        fetch_feed(url, Settings())
    assert server.hits == []
    fetch_feed(url, Settings(poller={"allow_private_hosts": ["127.0.0.1"]}))
    assert len(server.hits) == 1


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://localhost:{port}/other", "a loopback address"),  # the same server, under a name not allowed
    ],
)
def test_a_redirect_to_a_refused_address_is_refused_before_connecting(
    location: str, error: str, server: Server
) -> None:
    server.routes["/rss"] = (302, {"Location": location.format(port=server.port)})
    settings = Settings(poller={"allow_private_hosts": ["127.0.0.1"]})
    with pytest.raises(FeedError, match=error):
        fetch_feed(f"http://127.0.0.1:{server.port}/rss", settings)
    assert [path for path, _ in server.hits] == ["/rss"]  # the second hop never left the machine


def test_dns_rebinding_is_refused_at_connect_time(server: Server, resolver: Resolver) -> None:
    """The door check sees a public answer; by the time of the request the name points at loopback."""
    resolver.answers["rebind.test"] = ["8.8.8.8", "127.0.0.1"]
    policy = OutboundPolicy()
    policy.check_url(f"http://rebind.test:{server.port}/hook", "webhook URL")  # accepted: public (not contacted)

    async def get() -> None:
        async with httpx.AsyncClient(transport=safety.pinned_transport(policy)) as client:
            await client.get(f"http://rebind.test:{server.port}/hook")

    with pytest.raises(OutboundRefused, match=r"'rebind.test' resolves to 127\.0\.0\.1, a loopback address"):
        asyncio.run(get())
    assert server.hits == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("http://[::1", "invalid webhook URL"),
        ("http://[::1]:8080/x", "a loopback address"),
        ("http://10.1.2.3/x", "a private address"),
        ("http://[fd00:ec2::254]/latest", "a cloud metadata address"),
    ],
)
def test_the_door_check_names_what_is_wrong(url: str, error: str) -> None:
    with pytest.raises(OutboundRefused, match=error):
        OutboundPolicy().check_url(url, "webhook URL")
