"""Canonical URLs: the many spellings of one article's address compare equal, for stable article ids and
clean links. The same story reached via a newsletter (`utm_*`, `mc_cid`), a social share (`fbclid`) or with a
`#comments` fragment must get one id.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

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


def feed_url_problem(url: str) -> str | None:
    """Why `url` cannot be a feed (not http(s), no host, unparseable), in the words of the outbound policy's
    syntax check (`pipeline/ingest/safety.py`), or None. Syntax only: no DNS (config load, `FeedConfig`)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        return f"invalid feed URL {url!r}: {exc}"
    if parts.scheme.lower() not in DEFAULT_PORTS:
        return f"refusing feed URL {url!r}: only http and https are allowed"
    if not parts.hostname:
        return f"refusing feed URL {url!r}: no host"
    return None
