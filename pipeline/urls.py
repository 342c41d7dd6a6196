"""URL canonicalisation (for stable article ids and clean links) and feed-URL safety checks (SSRF guard).

`canonical_url` makes the many spellings of one article's address compare equal: the same story reached via a
newsletter (`utm_*`, `mc_cid`), a social share (`fbclid`) or with a `#comments` fragment must get one id.
`check_feed_url` stops a configured or redirected feed URL from making the poller talk to the machine itself,
the private network or a cloud metadata service.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Collection
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

from pipeline.errors import FeedError

DEFAULT_PORTS = {"http": 80, "https": 443}

# Query keys that only say how a reader arrived, never which document they get. Exact keys (lower-case);
# anything starting with a prefix in TRACKING_PREFIXES goes too. Deliberately conservative: `ref`, `source`
# or `id` can select content on some sites, so they stay.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "igshid",
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "hsctatracking",
        "oly_anon_id",
        "oly_enc_id",
        "rb_clickid",
        "s_cid",
        "vero_conv",
        "vero_id",
        "wickedid",
        "ncid",
        "cmpid",
        "sr_share",
        "at_medium",
        "at_campaign",
        "at_custom1",
        "at_custom2",
        "at_custom3",
        "at_custom4",
        "xtor",
        "wt_mc",
        "wt_zmc",
        "spm",
        "share_source",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "piwik_", "ga_", "hmb_")

# RFC 3986 "unreserved": percent-escapes of these are decoded, all other escapes are kept (upper-cased).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters allowed verbatim in a path / query part (RFC 3986 pchar + "/" + "?"); others are escaped.
_PATH_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:@/%"))
_QUERY_SAFE = frozenset(_PATH_SAFE | set("?"))

# Cloud metadata endpoints. Most are already link-local/private, listed so the refusal says why.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _normalise_escapes(part: str, safe: frozenset[str]) -> str:
    """Decode escapes of unreserved characters, upper-case the others, escape anything not allowed raw.

    Escapes of reserved characters (`%2F`, `%26`) are kept: decoding them would change the URL's meaning.
    """

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    out: list[str] = []
    for ch in _PCT.sub(fix, part):
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    # A lone "%" not followed by two hex digits is not an escape: escape it.
    return re.sub(r"%(?![0-9A-F]{2})", "%25", "".join(out))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: `/a/./b/../c` -> `/a/c`, keeping a trailing slash."""
    segments: list[str] = []
    parts = path.split("/")
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == ".":
            if last:
                segments.append("")
            continue
        if seg == "..":
            if len(segments) > 1:
                segments.pop()
            if last:
                segments.append("")
            continue
        segments.append(seg)
    result = "/".join(segments)
    return result if result.startswith("/") else "/" + result


def _host(parts: SplitResult) -> str:
    """Lower-case host without a trailing dot; IDNs as punycode so both spellings match."""
    host = (parts.hostname or "").rstrip(".")
    # Not IDNA-encodable (an odd label): keep it as given, lower-cased.
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    return host.lower()


def _is_tracking(key: str) -> bool:
    k = key.lower()
    return k in TRACKING_PARAMS or k.startswith(TRACKING_PREFIXES)


def _canonical_query(query: str) -> str:
    """Drop tracking pairs, sort the rest by decoded key (stable); each kept pair keeps its own spelling."""
    pairs = []
    for raw in query.replace(";", "&").split("&"):
        if not raw:
            continue
        key = unquote_plus(raw.split("=", 1)[0])
        if _is_tracking(key):
            continue
        pairs.append((key, _normalise_escapes(raw, _QUERY_SAFE)))
    pairs.sort(key=lambda p: p[0])
    return "&".join(p[1] for p in pairs)


def canonical_url(url: str) -> str:
    """The canonical spelling of an http(s) URL; other schemes and unparseable input come back stripped.

    Lower-cases scheme and host, drops user info, default ports, the fragment and tracking parameters, sorts
    the query, removes dot segments and normalises percent-escapes. The path's case and trailing slash are
    kept: servers may treat them as different documents.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return url
    host = _host(parts)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalise_escapes(parts.path or "/", _PATH_SAFE))
    return urlunsplit((scheme, netloc, path, _canonical_query(parts.query), ""))


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
