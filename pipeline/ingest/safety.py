"""The outbound-request policy: every request newsflow makes on someone's behalf (feeds, webhooks, and whatever
fetches article pages) goes through it, so a configured, redirected or subscribed URL cannot make newsflow talk to
the machine itself, the private network or a cloud metadata service (SSRF).

The host is resolved once per connection, every address of the answer is checked (no loopback, private,
link-local, multicast, reserved or metadata ranges unless the operator allow-listed the host), and the connection
goes to exactly the checked address: `pinned_transport` gives httpx a network backend that does the resolving
itself, so there is no second DNS answer to differ from the first (DNS rebinding), on every redirect hop and for
every new connection. TLS still verifies the certificate against the host name (SNI), not the address.
`check_url` is the same check at the door (the API and CLI refuse a webhook before storing it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from pipeline.errors import FeedError, NewsflowError
from pipeline.urls import DEFAULT_PORTS

# Cloud metadata endpoints. Most are already link-local/private, listed so the refusal says why.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(address: str) -> str | None:
    """Why an address must not be fetched from (None if it is a public unicast address)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"unparseable address {address!r}"
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return refusal_reason(str(inner))
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for flag, label in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    ):
        if getattr(ip, flag):
            return label
    if not ip.is_global:  # shared address space (100.64/10), documentation ranges, ...
        return "a non-public address"
    return None

# The resolver, one name so tests can answer for any host without DNS (a rebinding stub).
getaddrinfo = socket.getaddrinfo


class OutboundRefused(NewsflowError):
    """A request the policy does not allow; one line that says where and why. Permanent: retrying cannot help."""


class Unresolvable(OutboundRefused):
    """The host has no address (now): at the door a refusal, at send time a transient connect error."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Which hosts may be reached. `allow_hosts` (names or literal IPs, e.g. a local test server) are reached
    whatever they resolve to; `setting` names the config key that lists them, for the refusal message."""

    allow_hosts: frozenset[str] = frozenset()
    setting: str = "poller.allow_private_hosts"

    @classmethod
    def allowing(cls, hosts: Iterable[str], setting: str) -> OutboundPolicy:
        return cls(frozenset(h.rstrip(".").lower() for h in hosts), setting)

    def allowed(self, host: str) -> bool:
        return host.rstrip(".").lower() in self.allow_hosts

    def check_syntax(self, url: str, what: str = "URL") -> tuple[str, int]:
        """(host, port) of an http(s) URL with a host; raises OutboundRefused otherwise. No DNS."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"invalid {what} {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise OutboundRefused(f"refusing {what} {url!r}: only http and https are allowed")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise OutboundRefused(f"refusing {what} {url!r}: no host")
        return host, port or DEFAULT_PORTS[scheme]

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to: resolved once, each checked unless the host is allow-listed."""
        host = host.rstrip(".").lower()
        try:
            infos = getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise Unresolvable(f"cannot resolve host {host!r}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise Unresolvable(f"cannot resolve host {host!r}: no addresses")
        if self.allowed(host):
            return addresses
        for address in addresses:  # all of them: a client may pick any
            if (why := refusal_reason(address)) is not None:
                raise OutboundRefused(
                    f"host {host!r} resolves to {address}, {why} (add it to {self.setting} to allow)"
                )
        return addresses

    def addresses(self, host: str, port: int) -> list[str]:
        """`resolve` for a connection: a failed lookup is a connect error (retried), a refusal is not."""
        try:
            return self.resolve(host, port)
        except Unresolvable as exc:
            raise httpcore.ConnectError(str(exc)) from None

    def check_url(self, url: str, what: str = "URL") -> None:
        """The whole check without connecting (at the door: a feed or webhook being added). A host that does not
        resolve now is let through: the connection-time check refuses it if it later resolves inside."""
        host, port = self.check_syntax(url, what)
        if self.allowed(host):
            return
        try:
            self.resolve(host, port)
        except Unresolvable:  # no answer (yet, or offline): nothing to refuse; every connection is checked again
            return
        except OutboundRefused as exc:
            raise OutboundRefused(f"refusing {what} {url!r}: {exc}") from None


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy, self._inner = policy, httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self.policy.addresses(host, port):
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.NetworkStream:
        raise OutboundRefused("refusing a unix socket connection")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PinnedAsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy, self._inner = policy, httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception | None = None
        if _is_ip(host):  # nothing to look up: no thread needed
            addresses = self.policy.addresses(host, port)
        else:  # DNS blocks: not on the event loop
            addresses = await asyncio.to_thread(self.policy.addresses, host, port)
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("refusing a unix socket connection")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return True
    except ValueError:
        return False


def _pool_args(limits: httpx.Limits) -> dict[str, typing.Any]:
    context: ssl.SSLContext = httpx.create_ssl_context(trust_env=False)
    return {
        "ssl_context": context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


def pinned_transport(policy: OutboundPolicy, limits: httpx.Limits | None = None) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `policy` to the address it checked. No proxy from
    the environment: a proxy would do its own resolving."""
    limits = limits or httpx.Limits()
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(**_pool_args(limits), network_backend=_PinnedAsyncBackend(policy))
    return transport


def pinned_sync_transport(policy: OutboundPolicy, limits: httpx.Limits | None = None) -> httpx.HTTPTransport:
    limits = limits or httpx.Limits()
    transport = httpx.HTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.ConnectionPool(**_pool_args(limits), network_backend=_PinnedBackend(policy))
    return transport


def check_feed_url(url: str, allow_hosts: Collection[str] = ()) -> None:
    """Raise FeedError unless `url` is http(s) and every address its host resolves to is public (or the host is
    allow-listed in `poller.allow_private_hosts`). The poller's transport repeats this check on the address it
    connects to; this is the check at the door (`feeds add`, config)."""
    try:
        OutboundPolicy.allowing(allow_hosts, "poller.allow_private_hosts").check_url(url, "feed URL")
    except OutboundRefused as exc:
        raise FeedError(str(exc)) from None
