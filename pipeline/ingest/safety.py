"""Feed-URL safety (SSRF guard): a configured or redirected feed URL must not make the poller talk to the machine
itself, the private network or a cloud metadata service.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from pipeline.errors import FeedError
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


def _allowed(allow_hosts: Collection[str]) -> set[str]:
    return {h.strip().rstrip(".").lower().strip("[]") for h in allow_hosts}


def needs_dns(url: str, allow_hosts: Collection[str] = ()) -> bool:
    """Whether `check_feed_url` would resolve the host, a blocking call: not for allowed hosts and IP literals,
    nor for an unparseable URL (refused at once)."""
    try:
        host = (urlsplit(url.strip()).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return bool(host) and host not in _allowed(allow_hosts)


def check_feed_url(url: str, allow_hosts: Collection[str] = ()) -> None:
    """Raise FeedError unless `url` is http(s) and every address its host resolves to is public.

    Every resolved address is checked (not just the first) because the HTTP client may pick any of them.
    `allow_hosts` (host names or literal IPs, e.g. a local test server) skips the address check. A remaining
    gap: DNS can answer differently when the client connects (rebinding); pin the checked address in the
    transport to close it.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FeedError(f"invalid feed URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FeedError(f"refusing feed URL {url!r}: only http and https are allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise FeedError(f"refusing feed URL {url!r}: no host")
    if host in _allowed(allow_hosts):
        return
    try:
        infos = socket.getaddrinfo(host, port or DEFAULT_PORTS[scheme], proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise FeedError(f"cannot resolve host {host!r} of feed URL {url!r}: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise FeedError(f"cannot resolve host {host!r} of feed URL {url!r}: no addresses")
    for address in addresses:
        if (why := refusal_reason(address)) is not None:
            raise FeedError(
                f"refusing feed URL {url!r}: host {host!r} resolves to {address}, {why} "
                "(add it to poller.allow_private_hosts to allow)"
            )
